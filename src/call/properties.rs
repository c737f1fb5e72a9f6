//! Property values of a call, computed from the record and the `[[properties]]` schema.
//!
//! Computed when a call is served rather than when it is stored, so a changed schema (a
//! new header property, a corrected prefix map) applies to every stored call at the next
//! request, with no migration. The cost is small next to decoding the record.

use std::collections::BTreeMap;

use crate::call::record::{CallRecord, Direction, PropertyValue};
use crate::config::{Config, Property, PropertySource, PropertyType};
use crate::sip::UriParts;

/// The values of the configured properties for `record`. Keys are always schema keys;
/// a property whose source has nothing for this call, or a value that does not fit the
/// declared type (a header "soon" for a number, a value outside an enum), is left out
/// rather than sent wrong.
pub fn compute(record: &CallRecord, config: &Config) -> BTreeMap<String, PropertyValue> {
    let mut out = BTreeMap::new();
    for property in &config.properties {
        if let Some(value) = value_of(property, record, config) {
            out.insert(property.key.clone(), value);
        }
    }
    out
}

fn value_of(property: &Property, record: &CallRecord, config: &Config) -> Option<PropertyValue> {
    let number = |n: f64| n.is_finite().then_some(PropertyValue::Number(n));
    match &property.source {
        PropertySource::Department => {
            // The configuration now, so a department changed since the call applies;
            // the record's own (from when it was classified) for operators no longer listed.
            let department = config
                .operators
                .iter()
                .find(|op| op.id == record.operator.id)
                .and_then(|op| op.department.as_deref())
                .or(record.operator.department.as_deref())?;
            text(property, department)
        }
        PropertySource::Header(name) => {
            let (_, raw) = record
                .sip
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
            typed(property, raw.trim())
        }
        PropertySource::Did => {
            // The number the client dialled reaches us as the Request-URI (or, when a
            // proxy rewrote that to a contact, the To) of an incoming call. On other
            // calls the dialled number is the client's or an extension: no DID.
            if record.direction != Direction::Incoming {
                return None;
            }
            // Beside a B2BUA the record is the phone leg's, whose Request-URI is the
            // extension: the trunk leg's dialled number, kept on the conversation.
            if let Some(did) = record.conversation.did.as_deref() {
                return text(property, did);
            }
            let user = uri_user(&record.sip.request_uri)
                .filter(|u| u.bytes().any(|b| b.is_ascii_digit()))
                .or_else(|| uri_user(&record.sip.to_uri))?;
            text(property, &config.numbers.normalize_number(&user))
        }
        PropertySource::Trunk => text(property, record.conversation.trunk.as_deref()?),
        PropertySource::ClientPrefix(prefixes) => {
            let client = record.client_number.as_deref()?;
            let value = prefixes.lookup(&config.numbers.normalize_number(client))?;
            text(property, value)
        }
        PropertySource::RingSeconds => number(round2(record.ring_seconds)),
        PropertySource::TalkSeconds => number(record.duration as f64),
        PropertySource::LossPercent => number(round2(record.media.loss_percent?)),
        PropertySource::Mos => number(round2(record.media.mos?)),
        PropertySource::Codec => text(property, record.media.codecs.first()?),
        PropertySource::Transferred => Some(PropertyValue::Bool(record.transfer.is_some())),
        PropertySource::DtmfDigits => text(property, &record.media.dtmf_digits),
    }
}

/// Text parsed into the property's declared type.
fn typed(property: &Property, raw: &str) -> Option<PropertyValue> {
    match property.kind {
        PropertyType::Number => raw
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(PropertyValue::Number),
        PropertyType::Boolean => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(PropertyValue::Bool(true)),
            "false" | "no" | "0" => Some(PropertyValue::Bool(false)),
            _ => None,
        },
        PropertyType::String | PropertyType::Enum => text(property, raw),
    }
}

/// A text value: non-empty; for an enum, one of its values (matched without regard to
/// case and sent as the schema writes it, so "SALES" from a dialplan is "sales").
fn text(property: &Property, value: &str) -> Option<PropertyValue> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match property.kind {
        PropertyType::Enum => property
            .values
            .iter()
            .find(|v| v.eq_ignore_ascii_case(value))
            .map(|v| PropertyValue::Text(v.clone())),
        PropertyType::String => Some(PropertyValue::Text(value.to_owned())),
        // Validation pairs text sources with string and enum types only.
        PropertyType::Number | PropertyType::Boolean => None,
    }
}

fn uri_user(uri: &str) -> Option<String> {
    let parts = UriParts::parse(uri.as_bytes())?;
    let user = std::str::from_utf8(parts.user?).ok()?;
    (!user.is_empty()).then(|| user.to_owned())
}

/// Two decimals: 7.4 rather than 7.3999999999999995 from nanosecond arithmetic.
fn round2(n: f64) -> f64 {
    (n * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::{
        EndReason, MediaFacts, OperatorRef, Outcome, SipFacts, Transfer, WhoHungUp,
    };

    fn config() -> Config {
        Config::from_toml(
            r#"
            [numbers]
            country_code = "380"
            [[operators]]
            id = "op-101"
            name = "Alice"
            extension = "101"
            department = "Sales"
            [[properties]]
            key = "Department"
            type = "enum"
            values = ["sales", "support"]
            source = "department"
            [[properties]]
            key = "Queue"
            type = "string"
            source = "header"
            header = "X-Queue"
            [[properties]]
            key = "Priority"
            type = "number"
            source = "header"
            header = "X-Priority"
            [[properties]]
            key = "VIP"
            type = "boolean"
            source = "header"
            header = "x-vip"
            [[properties]]
            key = "Segment"
            type = "enum"
            values = ["gold", "silver"]
            source = "header"
            header = "X-Segment"
            [[properties]]
            key = "DID"
            type = "string"
            source = "did"
            [[properties]]
            key = "City"
            type = "string"
            source = "client_prefix"
            prefixes = { "380" = "Ukraine", "38044" = "Kyiv" }
            [[properties]]
            key = "Ring"
            type = "number"
            source = "ring_seconds"
            [[properties]]
            key = "Talk"
            type = "number"
            source = "talk_seconds"
            [[properties]]
            key = "Loss"
            type = "number"
            source = "loss_percent"
            [[properties]]
            key = "MOS"
            type = "number"
            source = "mos"
            [[properties]]
            key = "Codec"
            type = "string"
            source = "codec"
            [[properties]]
            key = "Transferred"
            type = "boolean"
            source = "transferred"
            [[properties]]
            key = "Digits"
            type = "string"
            source = "dtmf_digits"
            "#,
            "test",
        )
        .unwrap()
    }

    fn record() -> CallRecord {
        CallRecord {
            id: "c-1".into(),
            outcome: Outcome::Answered,
            direction: Direction::Incoming,
            exported: true,
            invite_ns: 0,
            answer_ns: None,
            end_ns: 0,
            start_time: 100,
            end_time: 160,
            duration: 60,
            ring_seconds: 7.399999999,
            operator: OperatorRef {
                id: "op-101".into(),
                name: "Alice".into(),
                number: "101".into(),
                department: None,
                configured: true,
            },
            client_number: Some("0441234567".into()),
            client_name: None,
            who_hung_up: WhoHungUp::Client,
            hung_up_by: None,
            end_reason: EndReason::Bye,
            transfer: None,
            holds: 0,
            sip: SipFacts {
                request_uri: "sip:0445550000@10.0.0.5".into(),
                to_uri: "sip:101@10.0.0.5".into(),
                headers: vec![
                    ("x-queue".into(), " support-line ".into()),
                    ("X-Priority".into(), "3.5".into()),
                    ("X-VIP".into(), "Yes".into()),
                    ("X-Segment".into(), "platinum".into()),
                ],
                ..SipFacts::default()
            },
            media: MediaFacts {
                codecs: vec!["PCMA".into()],
                loss_percent: Some(0.25),
                mos: Some(4.123),
                dtmf_digits: "12#".into(),
                ..MediaFacts::default()
            },
            properties: BTreeMap::new(),
            conversation: Default::default(),
            recovered: false,
        }
    }

    #[test]
    fn every_source_gives_a_typed_value_or_nothing() {
        let values = compute(&record(), &config());
        let text = |s: &str| PropertyValue::Text(s.into());
        let expected = BTreeMap::from([
            ("Department".to_owned(), text("sales")),
            ("Queue".to_owned(), text("support-line")),
            ("Priority".to_owned(), PropertyValue::Number(3.5)),
            ("VIP".to_owned(), PropertyValue::Bool(true)),
            // "platinum" is not one of the enum's values: left out.
            ("DID".to_owned(), text("+380445550000")),
            ("City".to_owned(), text("Kyiv")),
            ("Ring".to_owned(), PropertyValue::Number(7.4)),
            ("Talk".to_owned(), PropertyValue::Number(60.0)),
            ("Loss".to_owned(), PropertyValue::Number(0.25)),
            ("MOS".to_owned(), PropertyValue::Number(4.12)),
            ("Codec".to_owned(), text("PCMA")),
            ("Transferred".to_owned(), PropertyValue::Bool(false)),
            ("Digits".to_owned(), text("12#")),
        ]);
        assert_eq!(values, expected);
    }

    #[test]
    fn missing_and_untypable_values_are_left_out() {
        let mut r = record();
        r.direction = Direction::Outgoing;
        r.sip.headers = vec![("X-Priority".into(), "high".into())];
        r.media = MediaFacts::default();
        r.client_number = None;
        r.operator.id = "discovered-7".into();
        r.transfer = Some(Transfer {
            kind: "blind".into(),
            target: "102".into(),
            by: None,
            completed: true,
        });
        let values = compute(&r, &config());
        let keys: Vec<&str> = values.keys().map(String::as_str).collect();
        assert_eq!(keys, ["Ring", "Talk", "Transferred"]);
        assert_eq!(values["Transferred"], PropertyValue::Bool(true));
    }

    #[test]
    fn no_schema_no_properties() {
        assert!(compute(&record(), &Config::default()).is_empty());
    }
}
