//! Matching a call's property values against property filters (their forms and parser
//! are `config::filters`): `POST /calls` and the webhooks' `properties` filter.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::call::record::PropertyValue;
pub use crate::config::filters::{
    parse_filter, parse_filters, Filter, Op, PropertyFilters, Scalar,
};

impl Op {
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

/// Whether `values` satisfy every filter.
pub fn all_match(filters: &PropertyFilters, values: &BTreeMap<String, PropertyValue>) -> bool {
    filters
        .iter()
        .all(|(key, filter)| filter.matches(values.get(key)))
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
