//! `[ui]`: the administrator's web console under `/ui/` (src/ui).

use serde::{Deserialize, Serialize};

use super::error::{k, Locator};
use super::ConfigError;

/// Longest session a login may give: a month.
const MAX_SESSION_HOURS: u32 = 24 * 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the console. Default true: it stays shut until a password hash is set.
    pub enabled: bool,
    /// The admin password's argon2 hash in PHC form (`$argon2id$...`), as `calltap
    /// passwd` writes it. None: nobody can log in (the login page says how to set one).
    pub password_hash: Option<String>,
    /// How long a login lasts, in hours. Default 12: a working day.
    pub session_hours: u32,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            password_hash: None,
            session_hours: 12,
        }
    }
}

pub(super) fn check(ui: &UiConfig, loc: &Locator<'_>) -> Result<(), ConfigError> {
    if ui.session_hours == 0 || ui.session_hours > MAX_SESSION_HOURS {
        return Err(loc.error(
            &[k("ui"), k("session_hours")],
            format!(
                "session_hours must be from 1 to {MAX_SESSION_HOURS}, not {}",
                ui.session_hours
            ),
        ));
    }
    if let Some(hash) = &ui.password_hash {
        let parsed = argon2::PasswordHash::new(hash).map_err(|e| {
            loc.error(
                &[k("ui"), k("password_hash")],
                format!("not a password hash in PHC form ({e}): write one with `calltap passwd`"),
            )
        })?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(loc.error(
                &[k("ui"), k("password_hash")],
                format!(
                    "the hash is {}, calltap checks argon2 hashes: write one with `calltap passwd`",
                    parsed.algorithm
                ),
            ));
        }
    }
    Ok(())
}
