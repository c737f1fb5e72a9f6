//! Which events an endpoint is sent: its event types and its filters over the event's
//! `data` (the contract call object as of the event).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::call::filter::{all_match, property_value};
use crate::config::WebhookConfig;
use crate::events::Event;

/// Whether `hook` wants `event`.
pub fn selects(hook: &WebhookConfig, event: &Event) -> bool {
    let data = &event.data;
    let text = |field: &str| data.get(field).and_then(Value::as_str);
    if !hook.wants(event.kind.as_str()) {
        return false;
    }
    if !hook.directions.is_empty()
        && !text("direction").is_some_and(|d| hook.directions.iter().any(|w| w == d))
    {
        return false;
    }
    if !hook.operators.is_empty()
        && !text("operatorId").is_some_and(|o| hook.operators.iter().any(|w| w == o))
    {
        return false;
    }
    // Only events of a call that is over carry `duration`; earlier ones cannot know.
    if let Some(talk) = data.get("duration").and_then(Value::as_f64) {
        if talk < hook.min_talk_seconds as f64 {
            return false;
        }
    }
    if !hook.property_filters.is_empty() {
        let values: BTreeMap<String, _> = data
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| property_value(v).map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default();
        if !all_match(&hook.property_filters, &values) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::filter::parse_filters;
    use crate::capture::Timestamp;
    use crate::config::{Property, PropertySource, PropertyType, WebhookConfig};
    use crate::events::EventKind;
    use serde_json::json;

    fn event(kind: EventKind, data: Value) -> Event {
        Event::new(kind, "c-1", 0, Timestamp::from_nanos(0), data)
    }

    #[test]
    fn types_directions_operators_talk_time_and_properties_select() {
        let mut hook = WebhookConfig::new("crm", "http://127.0.0.1:1/");
        let ended = event(
            EventKind::Ended,
            json!({"direction": "incoming", "operatorId": "101", "duration": 30,
                   "properties": {"Queue": "support", "Score": 7}}),
        );
        let ringing = event(
            EventKind::Ringing,
            json!({"direction": "incoming", "operatorId": "101"}),
        );
        assert!(selects(&hook, &ended) && selects(&hook, &ringing));

        hook.events = vec!["call.ended".into()];
        assert!(selects(&hook, &ended) && !selects(&hook, &ringing));
        hook.events.clear();

        hook.directions = vec!["outgoing".into()];
        assert!(!selects(&hook, &ended));
        hook.directions = vec!["incoming".into()];
        assert!(selects(&hook, &ended));

        hook.operators = vec!["102".into()];
        assert!(!selects(&hook, &ended));
        hook.operators = vec!["102".into(), "101".into()];
        assert!(selects(&hook, &ended));

        hook.min_talk_seconds = 31;
        assert!(!selects(&hook, &ended));
        assert!(
            selects(&hook, &ringing),
            "a ringing call has no talk time yet"
        );
        hook.min_talk_seconds = 30;
        assert!(selects(&hook, &ended));

        let properties = [
            Property {
                key: "Queue".into(),
                kind: PropertyType::String,
                values: Vec::new(),
                source: PropertySource::Header("X-Queue".into()),
            },
            Property {
                key: "Score".into(),
                kind: PropertyType::Number,
                values: Vec::new(),
                source: PropertySource::Header("X-Score".into()),
            },
        ];
        hook.property_filters = parse_filters(
            &json!({"Queue": ["sales", "support"], "Score": {"conditions": [{"operator": "gt", "value": 5}]}}),
            &properties,
        )
        .expect("filters");
        assert!(selects(&hook, &ended));
        hook.property_filters =
            parse_filters(&json!({"Queue": "sales"}), &properties).expect("filters");
        assert!(!selects(&hook, &ended));
        assert!(!selects(&hook, &ringing), "no properties, no match");
    }
}
