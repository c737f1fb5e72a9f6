//! `[numbers]`: how phone numbers are normalised, so the same client dialled as
//! `050 123 45 67`, `+380501234567` and `00380501234567` is one client, and operator
//! phones compare equal to what the trunk delivers.

use serde::{Deserialize, Serialize};

/// The dialling plan of the site, as far as normalising numbers needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumbersConfig {
    /// The site's country calling code without `+` ("1", "44", "380"). Default none:
    /// without it a nationally dialled number cannot be made international, so such
    /// numbers are left as digits rather than guessed.
    pub country_code: Option<String>,
    /// Dialled before a national number ("0" in most of Europe, "1" in North America,
    /// "8" in some CIS plans). Default "0", the most common; empty means none.
    pub national_prefix: String,
    /// Dialled before an international number ("00" under ITU E.164 recommendation,
    /// "011" in North America). Default "00"; empty means none.
    pub international_prefix: String,
    /// A number with fewer digits than this is an internal extension and is left as it
    /// is. Default 7: the shortest subscriber numbers in use are 7 digits, while PBX
    /// extensions rarely exceed 5 or 6.
    pub min_external_digits: usize,
}

impl Default for NumbersConfig {
    fn default() -> Self {
        NumbersConfig {
            country_code: None,
            national_prefix: "0".into(),
            international_prefix: "00".into(),
            min_external_digits: 7,
        }
    }
}

/// `+digits` when `digits` can be an E.164 number: a country code never starts with 0,
/// and the whole is at most 15 digits.
fn e164(digits: &str) -> Option<String> {
    (!digits.starts_with('0') && !digits.is_empty() && digits.len() <= 15)
        .then(|| format!("+{digits}"))
}

impl NumbersConfig {
    /// Normalises a dialled or presented number:
    /// - spaces, dashes, dots and parentheses are dropped (`+1 (555) 123-0101`);
    /// - a leading `+` means international and is kept: `+15551230101`;
    /// - anything else that is not all digits (`alice`, `*97`) is returned as cleaned;
    /// - fewer than `min_external_digits` digits: an extension, returned as is;
    /// - the international prefix becomes `+` (`00380...` -> `+380...`), also after a `+`
    ///   (`+00380...`); a result that cannot be E.164 (`0000...`: the next digit is 0,
    ///   or more than 15 digits) stays as dialled, never `+0...`;
    /// - with a country code, the national prefix becomes `+CC` (`050...` -> `+38050...`);
    /// - other digits are returned unchanged: without a prefix we cannot tell a
    ///   national number from one that already starts with a country code.
    pub fn normalize_number(&self, raw: &str) -> String {
        let cleaned: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '\t' | '-' | '.' | '(' | ')'))
            .collect();
        let (international, digits) = match cleaned.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return cleaned;
        }
        if international {
            // "+0049..." is "+49..." written with the prefix kept; what still starts with
            // 0 is no E.164 number, and stays as dialled, without a "+" it never had.
            let digits = self.without_international_prefix(digits).unwrap_or(digits);
            return e164(digits).unwrap_or_else(|| digits.to_owned());
        }
        if digits.len() < self.min_external_digits {
            return digits.to_owned();
        }
        if let Some(rest) = self.without_international_prefix(digits) {
            // "000..." and the like: a longer prefix than the plan's, or a mistake.
            return e164(rest).unwrap_or_else(|| digits.to_owned());
        }
        if let Some(cc) = &self.country_code {
            if !self.national_prefix.is_empty() {
                if let Some(rest) = digits.strip_prefix(self.national_prefix.as_str()) {
                    let national = format!("{cc}{rest}");
                    if !rest.starts_with('0') {
                        if let Some(n) = e164(&national) {
                            return n;
                        }
                    }
                    return digits.to_owned();
                }
            }
        }
        digits.to_owned()
    }

    /// `digits` after the international prefix, when they start with it.
    fn without_international_prefix<'a>(&self, digits: &'a str) -> Option<&'a str> {
        if self.international_prefix.is_empty() {
            return None;
        }
        digits
            .strip_prefix(self.international_prefix.as_str())
            .filter(|rest| !rest.is_empty())
    }

    /// Checks the plan makes sense; returns the key at fault and why.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if let Some(cc) = &self.country_code {
            if cc.is_empty() || cc.len() > 3 || !digits(cc) || cc.starts_with('0') {
                return Err((
                    "country_code",
                    format!("{cc:?} is not a country calling code (1 to 3 digits, no \"+\", e.g. \"1\", \"380\")"),
                ));
            }
        }
        for (key, value) in [
            ("national_prefix", &self.national_prefix),
            ("international_prefix", &self.international_prefix),
        ] {
            if !digits(value) || value.len() > 4 {
                return Err((
                    key,
                    format!(
                        "{value:?} is not a dialling prefix (up to 4 digits, or \"\" for none)"
                    ),
                ));
            }
        }
        if !self.national_prefix.is_empty() && self.national_prefix == self.international_prefix {
            return Err((
                "international_prefix",
                "must differ from national_prefix, or numbers cannot be told apart".into(),
            ));
        }
        if !(1..=15).contains(&self.min_external_digits) {
            return Err((
                "min_external_digits",
                format!(
                    "{} is out of range: use 1 to 15 (E.164 numbers have at most 15 digits)",
                    self.min_external_digits
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ukraine() -> NumbersConfig {
        NumbersConfig {
            country_code: Some("380".into()),
            ..NumbersConfig::default()
        }
    }

    fn north_america() -> NumbersConfig {
        NumbersConfig {
            country_code: Some("1".into()),
            national_prefix: "1".into(),
            international_prefix: "011".into(),
            min_external_digits: 7,
        }
    }

    #[test]
    fn plus_is_kept_and_separators_dropped() {
        let n = NumbersConfig::default();
        assert_eq!(n.normalize_number("+1 (555) 123-0101"), "+15551230101");
        assert_eq!(n.normalize_number("+380.50.123.45.67"), "+380501234567");
    }

    #[test]
    fn international_prefix_becomes_plus() {
        assert_eq!(
            ukraine().normalize_number("00 380 50 123 45 67"),
            "+380501234567"
        );
        assert_eq!(
            north_america().normalize_number("011380501234567"),
            "+380501234567"
        );
    }

    #[test]
    fn extra_zeros_never_make_a_plus_zero_number() {
        let n = ukraine();
        assert_eq!(n.normalize_number("+00380501234567"), "+380501234567");
        assert_eq!(n.normalize_number("000380501234567"), "000380501234567");
        assert_eq!(n.normalize_number("0000000"), "0000000");
        assert_eq!(n.normalize_number("+0123456789"), "0123456789");
        assert_eq!(
            n.normalize_number("00 1234 5678 9012 3456"),
            "001234567890123456"
        );
        let default = NumbersConfig::default();
        assert_eq!(default.normalize_number("00015551230101"), "00015551230101");
        for raw in ["0000", "00000000000", "+00000", "+0", "00+1"] {
            assert!(!default.normalize_number(raw).starts_with("+0"), "{raw}");
            assert!(!n.normalize_number(raw).starts_with("+0"), "{raw}");
        }
    }

    #[test]
    fn national_prefix_becomes_country_code() {
        assert_eq!(ukraine().normalize_number("050-123-45-67"), "+380501234567");
        assert_eq!(
            north_america().normalize_number("1 (555) 123-0101"),
            "+15551230101"
        );
    }

    #[test]
    fn without_country_code_national_numbers_stay_digits() {
        assert_eq!(
            NumbersConfig::default().normalize_number("050 123 45 67"),
            "0501234567"
        );
    }

    #[test]
    fn unprefixed_numbers_are_not_guessed() {
        assert_eq!(ukraine().normalize_number("380501234567"), "380501234567");
        assert_eq!(north_america().normalize_number("5551230101"), "5551230101");
    }

    #[test]
    fn extensions_and_names_stay_as_they_are() {
        let n = ukraine();
        assert_eq!(n.normalize_number("101"), "101");
        assert_eq!(
            n.normalize_number("0101"),
            "0101",
            "short, even with the national prefix"
        );
        assert_eq!(n.normalize_number("alice"), "alice");
        assert_eq!(n.normalize_number("*97"), "*97");
        assert_eq!(n.normalize_number(""), "");
    }

    #[test]
    fn checks_reject_a_plus_in_the_country_code_and_equal_prefixes() {
        let mut n = ukraine();
        n.country_code = Some("+380".into());
        assert_eq!(n.check().unwrap_err().0, "country_code");
        let n = NumbersConfig {
            international_prefix: "0".into(),
            ..NumbersConfig::default()
        };
        assert_eq!(n.check().unwrap_err().0, "international_prefix");
        assert!(north_america().check().is_ok());
    }
}
