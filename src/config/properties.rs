//! `[[properties]]`: the property schema the importer sees at `/properties/schema`,
//! and where calltap takes each value from.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{k, Locator, PathSeg};
use super::ConfigError;

/// The contract's property types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    String,
    Number,
    Boolean,
    Enum,
}

impl PropertyType {
    /// The name used in the file and in `/properties/schema`.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Number => "number",
            PropertyType::Boolean => "boolean",
            PropertyType::Enum => "enum",
        }
    }
}

impl fmt::Display for PropertyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a property's value comes from, as written in `source = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Department,
    Header,
    Did,
    Trunk,
    ClientPrefix,
    RingSeconds,
    LossPercent,
    Mos,
    Codec,
    Transferred,
    DtmfDigits,
    TalkSeconds,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Department => "department",
            SourceKind::Header => "header",
            SourceKind::Did => "did",
            SourceKind::Trunk => "trunk",
            SourceKind::ClientPrefix => "client_prefix",
            SourceKind::RingSeconds => "ring_seconds",
            SourceKind::LossPercent => "loss_percent",
            SourceKind::Mos => "mos",
            SourceKind::Codec => "codec",
            SourceKind::Transferred => "transferred",
            SourceKind::DtmfDigits => "dtmf_digits",
            SourceKind::TalkSeconds => "talk_seconds",
        }
    }

    /// The property types a source can fill. A header is text parsed at run time into
    /// whatever type was declared; the call's own figures have one natural type.
    pub fn allowed_types(self) -> &'static [PropertyType] {
        use PropertyType::*;
        match self {
            SourceKind::Header => &[String, Number, Boolean, Enum],
            SourceKind::Department
            | SourceKind::ClientPrefix
            | SourceKind::Codec
            | SourceKind::Trunk => &[String, Enum],
            SourceKind::Did | SourceKind::DtmfDigits => &[String],
            SourceKind::RingSeconds
            | SourceKind::LossPercent
            | SourceKind::Mos
            | SourceKind::TalkSeconds => &[Number],
            SourceKind::Transferred => &[Boolean],
        }
    }
}

/// Number prefixes mapped to a value (`"38044" = "Kyiv"`), matched longest first
/// against the digits of the normalised client number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixMap(BTreeMap<String, String>);

impl PrefixMap {
    /// The value of the longest prefix of `normalized` (a leading `+` is ignored, on
    /// both the number and the prefixes as written), or `None`.
    pub fn lookup(&self, normalized: &str) -> Option<&str> {
        let digits = normalized.strip_prefix('+').unwrap_or(normalized);
        (1..=digits.len())
            .rev()
            .filter(|&len| digits.is_char_boundary(len))
            .find_map(|len| self.0.get(&digits[..len]))
            .map(String::as_str)
    }

    /// Prefixes (without `+`) and their values, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a validated property takes its value from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertySource {
    /// The operator's department.
    Department,
    /// A SIP header of the initial INVITE (the name, e.g. "X-Queue"), parsed at run
    /// time into the declared type; absent or unparsable means the property is absent.
    Header(String),
    /// The dialled number (DID) of an incoming call.
    Did,
    /// The trunk's address (the SIP provider's side of the trunk leg), when calltap
    /// put the conversation's legs together beside a B2BUA PBX.
    Trunk,
    /// The longest matching prefix of the normalised client number.
    ClientPrefix(PrefixMap),
    /// Seconds from INVITE to answer.
    RingSeconds,
    /// Percentage of RTP packets lost, both directions.
    LossPercent,
    /// Estimated mean opinion score (1 to 5).
    Mos,
    /// The audio codec name ("PCMU", "PCMA", "G722").
    Codec,
    /// Whether the call was transferred.
    Transferred,
    /// DTMF digits the client sent (RFC 4733 or SIP INFO).
    DtmfDigits,
    /// Seconds of conversation (the call's duration).
    TalkSeconds,
}

impl PropertySource {
    pub fn kind(&self) -> SourceKind {
        match self {
            PropertySource::Department => SourceKind::Department,
            PropertySource::Header(_) => SourceKind::Header,
            PropertySource::Did => SourceKind::Did,
            PropertySource::Trunk => SourceKind::Trunk,
            PropertySource::ClientPrefix(_) => SourceKind::ClientPrefix,
            PropertySource::RingSeconds => SourceKind::RingSeconds,
            PropertySource::LossPercent => SourceKind::LossPercent,
            PropertySource::Mos => SourceKind::Mos,
            PropertySource::Codec => SourceKind::Codec,
            PropertySource::Transferred => SourceKind::Transferred,
            PropertySource::DtmfDigits => SourceKind::DtmfDigits,
            PropertySource::TalkSeconds => SourceKind::TalkSeconds,
        }
    }
}

/// One property of the schema, validated: its type fits its source, `values` is
/// non-empty exactly when the type is enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "PropertyEntry")]
pub struct Property {
    /// The key the importer sees, unique.
    pub key: String,
    pub kind: PropertyType,
    /// The allowed values of an enum property; empty for other types.
    pub values: Vec<String>,
    pub source: PropertySource,
}

/// A `[[properties]]` entry as written; checked into a [`Property`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PropertyEntry {
    key: String,
    #[serde(rename = "type")]
    kind: PropertyType,
    values: Option<Vec<String>>,
    source: SourceKind,
    header: Option<String>,
    prefixes: Option<BTreeMap<String, String>>,
}

impl From<Property> for PropertyEntry {
    fn from(p: Property) -> Self {
        let (header, prefixes) = match &p.source {
            PropertySource::Header(name) => (Some(name.clone()), None),
            PropertySource::ClientPrefix(map) => (None, Some(map.0.clone())),
            _ => (None, None),
        };
        PropertyEntry {
            key: p.key,
            kind: p.kind,
            values: (p.kind == PropertyType::Enum).then_some(p.values),
            source: p.source.kind(),
            header,
            prefixes,
        }
    }
}

/// Whether `name` is a valid SIP/HTTP header name (an RFC 3261 token).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Checks every entry and the uniqueness of keys; errors point at the key at fault.
pub(crate) fn check_properties(
    entries: Vec<PropertyEntry>,
    loc: &Locator<'_>,
) -> Result<Vec<Property>, ConfigError> {
    let mut out: Vec<Property> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let at = |key: &str| vec![k("properties"), PathSeg::Index(i), k(key)];
        if entry.key.trim().is_empty() {
            return Err(loc.error(&at("key"), "a property key cannot be empty"));
        }
        if let Some(first) = out.iter().position(|p| p.key == entry.key) {
            return Err(loc.error(
                &at("key"),
                format!(
                    "{:?} is already the key of property #{}",
                    entry.key,
                    first + 1
                ),
            ));
        }
        let allowed = entry.source.allowed_types();
        if !allowed.contains(&entry.kind) {
            let names: Vec<_> = allowed.iter().map(|t| t.as_str()).collect();
            return Err(loc.error(
                &at("source"),
                format!(
                    "source {:?} cannot fill a {:?} property: it gives {}",
                    entry.source.as_str(),
                    entry.kind.as_str(),
                    names.join(" or ")
                ),
            ));
        }
        let values = match (entry.kind, entry.values) {
            (PropertyType::Enum, None) => {
                return Err(loc.error(
                    &at("type"),
                    "an enum property needs `values`, the list of allowed values",
                ))
            }
            (PropertyType::Enum, Some(values)) => {
                if values.is_empty() {
                    return Err(
                        loc.error(&at("values"), "an enum property needs at least one value")
                    );
                }
                for (j, v) in values.iter().enumerate() {
                    if v.trim().is_empty() {
                        return Err(loc.error(&at("values"), "enum values cannot be empty"));
                    }
                    if values[..j].contains(v) {
                        return Err(loc.error(&at("values"), format!("{v:?} is listed twice")));
                    }
                }
                values
            }
            (kind, Some(_)) => {
                return Err(loc.error(
                    &at("values"),
                    format!(
                        "`values` is only for enum properties, and this one is {:?}",
                        kind.as_str()
                    ),
                ))
            }
            (_, None) => Vec::new(),
        };
        if entry.header.is_some() && entry.source != SourceKind::Header {
            return Err(loc.error(
                &at("header"),
                "`header` is only used with source = \"header\"",
            ));
        }
        if entry.prefixes.is_some() && entry.source != SourceKind::ClientPrefix {
            return Err(loc.error(
                &at("prefixes"),
                "`prefixes` is only used with source = \"client_prefix\"",
            ));
        }
        let source = match entry.source {
            SourceKind::Header => match entry.header {
                Some(name) if is_header_name(name.trim()) => PropertySource::Header(name.trim().to_owned()),
                Some(name) => {
                    return Err(loc.error(&at("header"), format!("{name:?} is not a SIP header name")))
                }
                None => {
                    return Err(loc.error(
                        &at("source"),
                        "source \"header\" needs `header`, the SIP header name (e.g. header = \"X-Queue\")",
                    ))
                }
            },
            SourceKind::ClientPrefix => {
                let Some(prefixes) = entry.prefixes else {
                    return Err(loc.error(
                        &at("source"),
                        "source \"client_prefix\" needs `prefixes`, e.g. prefixes = { \"38044\" = \"Kyiv\" }",
                    ));
                };
                let mut map = BTreeMap::new();
                for (prefix, value) in prefixes {
                    let at_prefix = || {
                        vec![k("properties"), PathSeg::Index(i), k("prefixes"), k(&prefix)]
                    };
                    let digits = prefix.strip_prefix('+').unwrap_or(&prefix);
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(loc.error(&at_prefix(), format!("{prefix:?} is not a number prefix (digits, optionally after \"+\")")));
                    }
                    if entry.kind == PropertyType::Enum && !values.contains(&value) {
                        return Err(loc.error(&at_prefix(), format!("{value:?} is not one of this enum property's values")));
                    }
                    if map.insert(digits.to_owned(), value).is_some() {
                        return Err(loc.error(&at_prefix(), format!("prefix {digits:?} is written twice (with and without \"+\")")));
                    }
                }
                if map.is_empty() {
                    return Err(loc.error(&at("prefixes"), "needs at least one prefix"));
                }
                PropertySource::ClientPrefix(PrefixMap(map))
            }
            SourceKind::Department => PropertySource::Department,
            SourceKind::Did => PropertySource::Did,
            SourceKind::Trunk => PropertySource::Trunk,
            SourceKind::RingSeconds => PropertySource::RingSeconds,
            SourceKind::LossPercent => PropertySource::LossPercent,
            SourceKind::Mos => PropertySource::Mos,
            SourceKind::Codec => PropertySource::Codec,
            SourceKind::Transferred => PropertySource::Transferred,
            SourceKind::DtmfDigits => PropertySource::DtmfDigits,
            SourceKind::TalkSeconds => PropertySource::TalkSeconds,
        };
        out.push(Property {
            key: entry.key,
            kind: entry.kind,
            values,
            source,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let map = PrefixMap(
            [("380", "Ukraine"), ("38044", "Kyiv"), ("38032", "Lviv")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
        );
        assert_eq!(map.lookup("+380441234567"), Some("Kyiv"));
        assert_eq!(map.lookup("+380501234567"), Some("Ukraine"));
        assert_eq!(map.lookup("+15551230101"), None);
    }
}
