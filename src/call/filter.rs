//! Property filters in the contract's three forms (CONTRACT.md, `propertyFilters`):
//! an exact value, a one-of list, and numeric conditions. One parser and one matcher,
//! shared by `POST /calls` and the webhooks' `properties` filter, so both read a filter
//! the same way. Errors are plain messages; each caller puts them in its own frame (a
//! 400 for the API, a file line for the configuration).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::call::record::PropertyValue;
use crate::config::{Property, PropertyType};

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
    fn parse(s: &str) -> Option<Op> {
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

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Eq => value == bound,
            Op::Ne => value != bound,
            Op::Gt => value > bound,
            Op::Gte => value >= bound,
            Op::Lt => value < bound,
            Op::Lte => value <= bound,
        }
    }
}

impl Scalar {
    fn matches(&self, value: &PropertyValue) -> bool {
        match (self, value) {
            (Scalar::Text(a), PropertyValue::Text(b)) => a == b,
            (Scalar::Number(a), PropertyValue::Number(b)) => a == b,
            (Scalar::Bool(a), PropertyValue::Bool(b)) => a == b,
            _ => false,
        }
    }

    fn from_json(value: &Value) -> Option<Scalar> {
        match value {
            Value::String(s) => Some(Scalar::Text(s.clone())),
            Value::Number(n) => n.as_f64().map(Scalar::Number),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }
}

/// A property value as JSON carries it (an event's `data.properties`).
pub fn property_value(value: &Value) -> Option<PropertyValue> {
    match value {
        Value::String(s) => Some(PropertyValue::Text(s.clone())),
        Value::Number(n) => n.as_f64().map(PropertyValue::Number),
        Value::Bool(b) => Some(PropertyValue::Bool(*b)),
        _ => None,
    }
}

impl Filter {
    pub fn matches(&self, value: Option<&PropertyValue>) -> bool {
        match self {
            Filter::Exact(want) => value.is_some_and(|v| want.matches(v)),
            Filter::OneOf(list) => {
                list.is_empty() || value.is_some_and(|v| list.iter().any(|w| w.matches(v)))
            }
            Filter::Numeric { conditions, .. } if conditions.is_empty() => true,
            Filter::Numeric { any, conditions } => {
                let Some(PropertyValue::Number(n)) = value else {
                    return false;
                };
                let holds = |&(op, bound): &(Op, f64)| op.holds(*n, bound);
                if *any {
                    conditions.iter().any(holds)
                } else {
                    conditions.iter().all(holds)
                }
            }
        }
    }
}

/// Property key -> filter; every one must match (AND), as in the contract.
pub type PropertyFilters = Vec<(String, Filter)>;

/// Whether `values` satisfy every filter.
pub fn all_match(filters: &PropertyFilters, values: &BTreeMap<String, PropertyValue>) -> bool {
    filters
        .iter()
        .all(|(key, filter)| filter.matches(values.get(key)))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_compare_as_the_contract_says() {
        let cases = [
            (Op::Eq, 5.0, true),
            (Op::Ne, 5.0, false),
            (Op::Gt, 4.0, true),
            (Op::Gt, 5.0, false),
            (Op::Gte, 5.0, true),
            (Op::Lt, 6.0, true),
            (Op::Lt, 5.0, false),
            (Op::Lte, 5.0, true),
        ];
        for (op, bound, expected) in cases {
            assert_eq!(op.holds(5.0, bound), expected, "{op:?} {bound}");
        }
    }

    #[test]
    fn numeric_conditions_need_a_number_value() {
        let f = Filter::Numeric {
            any: false,
            conditions: vec![(Op::Gt, 1.0)],
        };
        assert!(f.matches(Some(&PropertyValue::Number(2.0))));
        assert!(!f.matches(Some(&PropertyValue::Text("2".into()))));
        assert!(!f.matches(None));
    }
}
