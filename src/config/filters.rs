//! Property filters in the contract's three forms (CONTRACT.md, `propertyFilters`): an
//! exact value, a one-of list, and numeric conditions, parsed and checked against the
//! configured properties. Shared by `POST /calls` and the webhooks' `properties`
//! filter, so both read a filter the same way; matching a call's values is
//! `call::filter`'s. Errors are plain messages; each caller puts them in its own frame
//! (a 400 for the API, a file line for the configuration).

use serde_json::{Map, Value};

use super::{Property, PropertyType};

/// One filter on one property.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `{"Client city": "Kyiv"}`
    Exact(Scalar),
    /// `{"Department": ["sales", "support"]}`; an empty list sets no condition.
    OneOf(Vec<Scalar>),
    /// `{"mode": "all"|"any", "conditions": [...]}`; no conditions, no constraint.
    Numeric {
        any: bool,
        conditions: Vec<(Op, f64)>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Op {
    pub(crate) fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            _ => return None,
        })
    }
}

impl Scalar {
    pub(crate) fn from_json(value: &Value) -> Option<Scalar> {
        match value {
            Value::String(s) => Some(Scalar::Text(s.clone())),
            Value::Number(n) => n.as_f64().map(Scalar::Number),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }
}

/// Property key -> filter; every one must match (AND), as in the contract.
pub type PropertyFilters = Vec<(String, Filter)>;

/// A `propertyFilters` object, checked against the configured `properties`. The error
/// is a message that names the key (`propertyFilters.KEY: ...`) for the caller to frame.
pub fn parse_filters(value: &Value, properties: &[Property]) -> Result<PropertyFilters, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(filters) => filters
            .iter()
            .map(|(key, value)| parse_filter(key, value, properties).map(|f| (key.clone(), f)))
            .collect(),
        other => Err(format!(
            "propertyFilters must be an object of property keys, not {other}"
        )),
    }
}

/// One entry of `propertyFilters`.
pub fn parse_filter(key: &str, value: &Value, properties: &[Property]) -> Result<Filter, String> {
    let property = properties.iter().find(|p| p.key == key).ok_or_else(|| {
        let known: Vec<&str> = properties.iter().map(|p| p.key.as_str()).collect();
        if known.is_empty() {
            format!("propertyFilters: {key:?} is not a property (none are configured)")
        } else {
            format!(
                "propertyFilters: {key:?} is not a property; the properties are {} (see /properties/schema)",
                known.join(", ")
            )
        }
    })?;
    match value {
        Value::Array(list) => list
            .iter()
            .map(|v| {
                Scalar::from_json(v).ok_or_else(|| {
                    format!(
                        "propertyFilters.{key}: a list holds strings, numbers or booleans, not {v}"
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Filter::OneOf),
        Value::Object(object) => {
            if property.kind != PropertyType::Number {
                return Err(format!(
                    "propertyFilters.{key}: numeric conditions need a number property, and {key:?} is {}",
                    property.kind
                ));
            }
            parse_conditions(key, object)
        }
        other => Scalar::from_json(other).map(Filter::Exact).ok_or_else(|| {
            format!(
                "propertyFilters.{key}: expected a value, a list of values or \
                 {{\"mode\", \"conditions\"}}, not {other}"
            )
        }),
    }
}

fn parse_conditions(key: &str, object: &Map<String, Value>) -> Result<Filter, String> {
    let bad = |m: String| format!("propertyFilters.{key}: {m}");
    if let Some(unknown) = object.keys().find(|k| *k != "mode" && *k != "conditions") {
        return Err(bad(format!(
            "unknown field {unknown:?} (a condition object has \"mode\" and \"conditions\")"
        )));
    }
    let any = match object.get("mode") {
        None | Some(Value::Null) => false,
        Some(Value::String(m)) if m == "all" => false,
        Some(Value::String(m)) if m == "any" => true,
        Some(other) => return Err(bad(format!("mode must be \"all\" or \"any\", not {other}"))),
    };
    let Some(Value::Array(list)) = object.get("conditions") else {
        return Err(bad(
            "conditions must be a list of {\"operator\", \"value\"} objects".into(),
        ));
    };
    let conditions = list
        .iter()
        .map(|c| {
            let op = match c.get("operator") {
                Some(Value::String(s)) => Op::parse(s).ok_or_else(|| {
                    bad(format!(
                        "unknown operator {s:?}: use eq, ne, gt, gte, lt or lte"
                    ))
                })?,
                _ => {
                    return Err(bad(format!(
                        "each condition needs \"operator\" (eq, ne, gt, gte, lt, lte): {c}"
                    )))
                }
            };
            let value = c
                .get("value")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(format!("each condition needs a number \"value\": {c}")))?;
            Ok((op, value))
        })
        .collect::<Result<_, _>>()?;
    Ok(Filter::Numeric { any, conditions })
}
