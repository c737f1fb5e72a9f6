//! `GET /openapi.json`: the contract as an OpenAPI 3.0 document, so an integrator can
//! check their side. Kept by hand, next to the handlers, rather than derived: the
//! contract is fixed by CONTRACT.md, not by our types, and tests/api.rs checks real
//! answers against these schemas so the two cannot drift apart unnoticed.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{AppState, Live};
use crate::config::PropertyType;

/// The document for the configuration in force: `propertyFilters` names the configured
/// properties, so the schema accepts exactly the filters the server does.
pub(crate) async fn document(State(state): State<AppState>) -> Response {
    let body = serde_json::to_vec_pretty(&spec(&state.live())).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The error answers of an operation: `codes`, and the access gate's 403 and 429, which
/// every route may answer (src/api/access.rs).
fn error_responses(codes: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    let gate = ["403", "429"];
    for code in codes
        .iter()
        .chain(gate.iter().filter(|g| !codes.contains(g)))
    {
        let description = match *code {
            "400" => "Malformed request: the message says what was wrong",
            "401" => "Missing or wrong X-Secret-Key",
            "403" => {
                "Refused: the source is not allowed ([api] allow_from, the key's own \
                 allow_from), or the link is forged, altered or expired"
            }
            "429" => "Over a rate limit: retry after the seconds in Retry-After",
            "404" => "Not found",
            "408" => "The body did not arrive within the configured time",
            "413" => "Body over the configured limit",
            "416" => "Range not satisfiable",
            _ => "Internal error",
        };
        out.insert(
            (*code).into(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(out)
}

fn ok(schema: &str, description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// A `startTime` / `stopTime`: Unix seconds, as the server takes them (see
/// `calls::time_field`).
fn unix_seconds(description: &str) -> Value {
    json!({"type": "number", "minimum": 0, "maximum": super::calls::MAX_TIME, "description": description})
}

/// `propertyFilters`: one entry per configured property, nothing else (an unknown key
/// is a 400); numeric conditions only on number properties. `null` means no filters.
fn property_filters(live: &Live) -> Value {
    let properties: serde_json::Map<String, Value> = live
        .properties
        .iter()
        .map(|p| {
            let mut forms = vec![
                json!({"$ref": "#/components/schemas/Primitive"}),
                json!({"type": "array", "items": {"$ref": "#/components/schemas/Primitive"}}),
            ];
            if p.kind == PropertyType::Number {
                forms.push(json!({"$ref": "#/components/schemas/NumericConditions"}));
            }
            (p.key.clone(), json!({"oneOf": forms}))
        })
        .collect();
    json!({
        "type": "object",
        "nullable": true,
        "description": "Property key (see /properties/schema) -> exact value, one-of list, or numeric conditions (number properties); all keys must match",
        "properties": properties,
        "additionalProperties": false
    })
}

/// The document.
pub(crate) fn spec(live: &Live) -> Value {
    let secured = json!([{"secretKey": []}]);
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "calltap Custom Telephony API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Calls and recordings of a passive SIP/RTP recorder, served to an analytics importer. Every non-2xx answer is {\"status\":\"error\",\"message\":...}."
        },
        "components": {
            "securitySchemes": {
                "secretKey": {"type": "apiKey", "in": "header", "name": "X-Secret-Key"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {
                        "status": {"type": "string", "enum": ["error"]},
                        "message": {"type": "string"}
                    }
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["success"]}}
                },
                "Contact": {
                    "type": "object",
                    "required": ["id", "phone", "name"],
                    "properties": {
                        "id": {"type": "string"},
                        "phone": {"type": "string"},
                        "name": {"type": "string"},
                        "department": {"type": "string"}
                    }
                },
                "Contacts": {
                    "type": "object",
                    "required": ["contacts"],
                    "properties": {"contacts": {"type": "array", "items": {"$ref": "#/components/schemas/Contact"}}}
                },
                "NumericConditions": {
                    "type": "object",
                    "required": ["conditions"],
                    "additionalProperties": false,
                    "properties": {
                        "mode": {"type": "string", "enum": ["all", "any"], "default": "all", "nullable": true},
                        "conditions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["operator", "value"],
                                "properties": {
                                    "operator": {"type": "string", "enum": ["eq", "ne", "gt", "gte", "lt", "lte"]},
                                    "value": {"type": "number"}
                                }
                            }
                        }
                    }
                },
                "Primitive": {
                    "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
                },
                "CallsRequest": {
                    "type": "object",
                    "required": ["startTime", "stopTime"],
                    "properties": {
                        "startTime": unix_seconds("Unix seconds, inclusive (on the call's start time); a fraction is rounded up"),
                        "stopTime": unix_seconds("Unix seconds, exclusive, not before startTime, at most [api] max_window_days after it; a fraction is rounded up"),
                        "direction": {"type": "string", "enum": ["incoming", "outgoing"], "nullable": true},
                        "operators": {
                            "type": "array",
                            "nullable": true,
                            "description": "Operator ids; an id written as a number means the same id; empty or null: every operator",
                            "items": {"oneOf": [{"type": "string"}, {"type": "number"}]}
                        },
                        "propertyFilters": property_filters(live)
                    }
                },
                "Call": {
                    "type": "object",
                    "required": ["id", "direction", "duration", "startTime", "operatorId", "operatorName", "operatorNumber"],
                    "properties": {
                        "id": {"type": "string"},
                        "clientNumber": {"type": "string"},
                        "clientName": {"type": "string"},
                        "direction": {"type": "string", "enum": ["incoming", "outgoing"]},
                        "duration": {"type": "number"},
                        "startTime": {"type": "integer"},
                        "endTime": {"type": "integer"},
                        "operatorId": {"type": "string"},
                        "operatorName": {"type": "string"},
                        "operatorNumber": {"type": "string"},
                        "whoHungUp": {"type": "string", "enum": ["operator", "client", "system"]},
                        "properties": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Primitive"}}
                    }
                },
                "Calls": {
                    "type": "object",
                    "required": ["calls"],
                    "properties": {"calls": {"type": "array", "items": {"$ref": "#/components/schemas/Call"}}}
                },
                "Property": {
                    "type": "object",
                    "required": ["key", "type"],
                    "properties": {
                        "key": {"type": "string"},
                        "type": {"type": "string", "enum": ["string", "number", "boolean", "enum"]},
                        "values": {"type": "array", "items": {"type": "string"}}
                    }
                },
                "PropertySchema": {
                    "type": "object",
                    "required": ["properties"],
                    "properties": {"properties": {"type": "array", "items": {"$ref": "#/components/schemas/Property"}}}
                },
                "WebhookAttempt": {
                    "type": "object",
                    "required": ["id", "endpoint", "eventId", "eventType", "callId", "attempt", "atMs", "outcome", "latencyMs"],
                    "properties": {
                        "id": {"type": "string", "description": "Delivery id: endpoint name, '.', event id"},
                        "endpoint": {"type": "string"},
                        "eventId": {"type": "string"},
                        "eventType": {"type": "string"},
                        "callId": {"type": "string"},
                        "attempt": {"type": "integer", "minimum": 1},
                        "atMs": {"type": "integer", "description": "Unix milliseconds"},
                        "status": {"type": "integer", "description": "The receiver's HTTP status, when it answered"},
                        "outcome": {"type": "string", "enum": ["delivered", "retrying", "dead"]},
                        "error": {"type": "string"},
                        "latencyMs": {"type": "integer", "minimum": 0}
                    }
                },
                "WebhookPending": {
                    "type": "object",
                    "required": ["id", "endpoint", "eventId", "eventType", "callId", "attempts", "nextAttemptMs"],
                    "properties": {
                        "id": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "eventId": {"type": "string"},
                        "eventType": {"type": "string"},
                        "callId": {"type": "string"},
                        "attempts": {"type": "integer", "minimum": 0},
                        "nextAttemptMs": {"type": "integer"},
                        "lastError": {"type": "string", "nullable": true}
                    }
                },
                "WebhookDead": {
                    "type": "object",
                    "required": ["id", "endpoint", "eventId", "eventType", "callId", "attempts", "diedAtMs", "reason"],
                    "properties": {
                        "id": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "eventId": {"type": "string"},
                        "eventType": {"type": "string"},
                        "callId": {"type": "string"},
                        "attempts": {"type": "integer", "minimum": 0},
                        "diedAtMs": {"type": "integer"},
                        "reason": {"type": "string"}
                    }
                },
                "WebhookDeliveries": {
                    "type": "object",
                    "required": ["endpoints", "recent", "pending", "dead"],
                    "properties": {
                        "endpoints": {"type": "array", "items": {
                            "type": "object",
                            "required": ["name", "url", "events"],
                            "properties": {
                                "name": {"type": "string"},
                                "url": {"type": "string"},
                                "events": {"type": "array", "items": {"type": "string"}, "description": "Event types sent; empty: all"}
                            }
                        }},
                        "recent": {"type": "array", "description": "The newest delivery attempts first", "items": {"$ref": "#/components/schemas/WebhookAttempt"}},
                        "pending": {"type": "array", "description": "Deliveries waiting or retrying", "items": {"$ref": "#/components/schemas/WebhookPending"}},
                        "dead": {"type": "array", "description": "Deliveries given up on, newest first", "items": {"$ref": "#/components/schemas/WebhookDead"}}
                    }
                },
                "WebhookRetryQueued": {
                    "type": "object",
                    "required": ["status", "id"],
                    "properties": {
                        "status": {"type": "string", "enum": ["queued"]},
                        "id": {"type": "string"}
                    }
                },
                "Recording": {
                    "type": "object",
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string"},
                        "filename": {"type": "string"},
                        "mimeType": {"type": "string"}
                    }
                }
            }
        },
        "paths": {
            "/health": {"get": {
                "summary": "Connectivity check",
                "security": secured,
                "responses": merge(json!({"200": ok("Health", "Up")}), error_responses(&["401", "500"]))
            }},
            "/contacts": {"get": {
                "summary": "Operators: configured, then discovered from traffic",
                "security": secured,
                "responses": merge(json!({"200": ok("Contacts", "Operators")}), error_responses(&["401", "500"]))
            }},
            "/calls": {"post": {
                "summary": "Completed calls whose start time lies in [startTime, stopTime), sorted by startTime",
                "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallsRequest"}}}},
                "responses": merge(json!({"200": ok("Calls", "Calls")}), error_responses(&["400", "401", "408", "413", "500"]))
            }},
            "/properties/schema": {"get": {
                "summary": "The call properties calltap fills",
                "security": secured,
                "responses": merge(json!({"200": ok("PropertySchema", "Property schema")}), error_responses(&["401", "500"]))
            }},
            "/calls/{id}/recording": {"get": {
                "summary": "A signed, expiring download link for the call's recording",
                "security": secured,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}}],
                "responses": merge(json!({"200": ok("Recording", "Link")}), error_responses(&["400", "401", "404", "500"]))
            }},
            "/webhooks/deliveries": {"get": {
                "summary": "Webhook deliveries: the newest attempts, what waits for a retry, and dead letters",
                "security": secured,
                "responses": merge(json!({"200": ok("WebhookDeliveries", "Deliveries")}), error_responses(&["401", "500"]))
            }},
            "/webhooks/deliveries/{id}/retry": {"post": {
                "summary": "Sends a delivery (a dead letter, or an event still in the outbox) to its endpoint again, now",
                "security": secured,
                "parameters": [{"name": "id", "in": "path", "required": true, "description": "Delivery id: endpoint name, '.', event id", "schema": {"type": "string"}}],
                "responses": merge(json!({"202": ok("WebhookRetryQueued", "Queued")}), error_responses(&["400", "401", "404", "500"]))
            }},
            "/recordings/{file}": {"get": {
                "summary": "The recording behind a link, WAV or FLAC as stored (the link's signature is the credential; Range supported)",
                "parameters": [
                    {"name": "file", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "exp", "in": "query", "required": true, "description": "Expiry, Unix seconds, in plain decimal as the link has it", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "sig", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "Range", "in": "header", "required": false, "description": "RFC 9110 byte range; one range is answered 206, an unparsable, foreign-unit or multi-range header the whole file", "schema": {"type": "string"}}
                ],
                "responses": merge(json!({
                    "200": {"description": "The recording", "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}, "audio/flac": {"schema": {"type": "string", "format": "binary"}}, "audio/ogg": {"schema": {"type": "string", "format": "binary"}}, "audio/mpeg": {"schema": {"type": "string", "format": "binary"}}}},
                    "206": {"description": "Part of the recording", "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}, "audio/flac": {"schema": {"type": "string", "format": "binary"}}, "audio/ogg": {"schema": {"type": "string", "format": "binary"}}, "audio/mpeg": {"schema": {"type": "string", "format": "binary"}}}}
                }), error_responses(&["400", "403", "404", "416", "500"]))
            }}
        }
    });
    add_integrations(&mut doc, &secured);
    doc
}

/// `GET /integrations/runs` and its schemas.
fn add_integrations(doc: &mut Value, secured: &Value) {
    let schemas = json!({
                "IntegrationStep": {
                    "type": "object",
                    "required": ["name", "status", "attempts"],
                    "properties": {
                        "name": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "succeeded", "failed", "skipped"]},
                        "attempts": {"type": "integer", "minimum": 0},
                        "code": {"type": "integer", "nullable": true, "description": "The answer's HTTP status or SMTP reply code"},
                        "durationMs": {"type": "integer", "nullable": true, "description": "The last attempt's duration"},
                        "error": {"type": "string", "nullable": true, "description": "Why it failed, is retried, or was skipped"},
                        "nextAttemptMs": {"type": "integer", "nullable": true, "description": "Unix milliseconds of the next attempt, while a retry waits"}
                    }
                },
                "IntegrationRun": {
                    "type": "object",
                    "required": ["id", "integration", "eventId", "eventType", "callId", "status", "createdMs", "saved", "steps"],
                    "properties": {
                        "id": {"type": "string", "description": "Run id: integration name, '.', event id"},
                        "integration": {"type": "string"},
                        "eventId": {"type": "string"},
                        "eventType": {"type": "string"},
                        "callId": {"type": "string"},
                        "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
                        "createdMs": {"type": "integer", "description": "Unix milliseconds"},
                        "finishedMs": {"type": "integer", "nullable": true},
                        "error": {"type": "string", "nullable": true},
                        "saved": {"type": "object", "description": "Values kept by the steps' save"},
                        "steps": {"type": "array", "items": {"$ref": "#/components/schemas/IntegrationStep"}}
                    }
                },
                "IntegrationRuns": {
                    "type": "object",
                    "required": ["integrations", "runs", "next"],
                    "properties": {
                        "integrations": {"type": "array", "items": {
                            "type": "object",
                            "required": ["name", "on", "steps"],
                            "properties": {
                                "name": {"type": "string"},
                                "on": {"type": "array", "items": {"type": "string"}, "description": "Event types; empty: all"},
                                "steps": {"type": "array", "items": {"type": "object", "required": ["name", "kind"], "properties": {"name": {"type": "string"}, "kind": {"type": "string", "enum": ["http", "email", "chat"]}}}}
                            }
                        }},
                        "runs": {"type": "array", "description": "Newest event first", "items": {"$ref": "#/components/schemas/IntegrationRun"}},
                        "next": {"type": "string", "nullable": true, "description": "`before` for the next page; null on the last"}
                    }
                }
    });
    if let (Some(all), Value::Object(more)) = (
        doc.pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut),
        schemas,
    ) {
        all.extend(more);
    }
    let path = json!({
            "/integrations/runs": {"get": {
                "summary": "Integration runs, newest first, each step with its status, answer code, duration and error",
                "security": secured,
                "parameters": [
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                    {"name": "before", "in": "query", "required": false, "description": "The previous page's next (SEQUENCE:NAME)", "schema": {"type": "string"}},
                    {"name": "integration", "in": "query", "required": false, "description": "Only this integration's runs", "schema": {"type": "string"}}
                ],
                "responses": merge(json!({"200": ok("IntegrationRuns", "Runs")}), error_responses(&["400", "401", "404", "500"]))
            }}
    });
    if let (Some(all), Value::Object(more)) =
        (doc.get_mut("paths").and_then(Value::as_object_mut), path)
    {
        all.extend(more);
    }
}
