//! The checks serde cannot make: limits, and keys that must agree, each refusal naming
//! the file, line and key.

use super::*;

impl FileConfig {
    /// Checks what the deserializer could not: limits, and keys that must agree.
    pub(super) fn check(self, loc: &Locator<'_>) -> Result<Config, ConfigError> {
        let at = |section: &str, key: &str| vec![k(section), k(key)];

        if self.store.path.as_os_str().is_empty() {
            return Err(loc.error(&at("store", "path"), "the store path cannot be empty"));
        }

        // Read by "opus" and "mp3" only; another format leaves it unused (switching the
        // format back does not make the file wrong).
        if let (RecordingFormat::Opus, Some(kbps)) =
            (self.recording.format, self.recording.bitrate_kbps)
        {
            if !OPUS_KBPS.contains(&kbps) {
                return Err(loc.error(
                    &at("recording", "bitrate_kbps"),
                    format!(
                        "{kbps} kbit/s is outside {}-{} (both parties together: Opus's \
                         speech floor is 6 kbit/s a party)",
                        OPUS_KBPS.start(),
                        OPUS_KBPS.end()
                    ),
                ));
            }
        }
        #[cfg(feature = "mp3")]
        if let (RecordingFormat::Mp3, Some(kbps)) =
            (self.recording.format, self.recording.bitrate_kbps)
        {
            const MP3_KBPS: [u32; 6] = [16, 24, 32, 40, 48, 64];
            if !MP3_KBPS.contains(&kbps) {
                return Err(loc.error(
                    &at("recording", "bitrate_kbps"),
                    format!("{kbps} kbit/s is not an MP3 rate for speech: one of {MP3_KBPS:?}"),
                ));
            }
        }

        let a = &self.api;
        match (&a.tls_cert, &a.tls_key) {
            (Some(_), None) => {
                return Err(loc.error(
                    &at("api", "tls_cert"),
                    "tls_cert needs tls_key too (set both, or neither)",
                ))
            }
            (None, Some(_)) => {
                return Err(loc.error(
                    &at("api", "tls_key"),
                    "tls_key needs tls_cert too (set both, or neither)",
                ))
            }
            _ => {}
        }
        security::check(a, loc)?;
        super::ui::check(&self.ui, loc)?;

        // (section, key, value, least, why the least)
        let minimums: [(&str, &str, u64, u64, &str); 20] = [
            (
                "store",
                "max_events",
                self.store.max_events,
                100,
                "a burst of calls must fit while endpoints catch up",
            ),
            (
                "api",
                "link_ttl_secs",
                a.link_ttl_secs,
                1,
                "a link must live at least a second",
            ),
            (
                "api",
                "max_window_days",
                a.max_window_days.into(),
                1,
                "the importer asks for at least a day",
            ),
            (
                "api",
                "max_body_bytes",
                a.max_body_bytes.bytes(),
                1024,
                "a POST /calls body with filters needs up to a kilobyte",
            ),
            (
                "api",
                "header_timeout_secs",
                a.header_timeout_secs,
                1,
                "0 would close every connection before its request",
            ),
            (
                "api",
                "body_timeout_secs",
                a.body_timeout_secs,
                1,
                "0 would refuse every request body",
            ),
            (
                "api",
                "idle_timeout_secs",
                a.idle_timeout_secs,
                1,
                "0 would close every kept-alive connection at once",
            ),
            (
                "api",
                "max_connections",
                a.max_connections,
                1,
                "0 would refuse every connection",
            ),
            (
                "api",
                "max_connections_per_source",
                a.max_connections_per_source,
                1,
                "0 would refuse every connection",
            ),
            (
                "calls",
                "max_call_secs",
                self.calls.max_call_secs,
                1,
                "0 would end every call at once",
            ),
            (
                "calls",
                "ring_timeout_secs",
                self.calls.ring_timeout_secs,
                1,
                "0 would miss every call",
            ),
            (
                "calls",
                "media_timeout_secs",
                self.calls.media_timeout_secs,
                1,
                "0 would end every call at once",
            ),
            (
                "calls",
                "max_dialogs",
                self.calls.max_dialogs as u64,
                1,
                "0 would track no call",
            ),
            (
                "calls",
                "max_no_response",
                self.calls.max_no_response as u64,
                1,
                "0 would end every call before its first response",
            ),
            (
                "limits",
                "max_tcp_streams",
                self.limits.max_tcp_streams as u64,
                1,
                "0 would ignore SIP over TCP",
            ),
            (
                "limits",
                "tcp_buffer_bytes",
                self.limits.tcp_buffer_bytes.bytes(),
                64 * ByteSize::KIB,
                "one SIP message may be up to 64KiB",
            ),
            (
                "limits",
                "tcp_idle_secs",
                self.limits.tcp_idle_secs,
                1,
                "0 would drop every stream",
            ),
            (
                "limits",
                "max_fragment_buffers",
                self.limits.max_fragment_buffers as u64,
                1,
                "0 would drop all fragmented SIP",
            ),
            (
                "limits",
                "fragment_timeout_secs",
                self.limits.fragment_timeout_secs,
                1,
                "fragments arrive over some time",
            ),
            (
                "limits",
                "max_fragmented_bytes",
                self.limits.max_fragmented_bytes.bytes(),
                65_535,
                "one IP datagram may be up to 65535 bytes",
            ),
        ];
        for (section, key, value, least, why) in minimums {
            if value < least {
                return Err(loc.error(
                    &at(section, key),
                    format!("{value} is too small: at least {least} ({why})"),
                ));
            }
        }

        if a.max_connections_per_source > a.max_connections {
            return Err(loc.error(
                &at("api", "max_connections_per_source"),
                format!(
                    "{} is more than max_connections ({}): one source can never hold more \
                     than every connection",
                    a.max_connections_per_source, a.max_connections
                ),
            ));
        }
        // Timeouts are slept on: a year keeps clear of any overflow in time arithmetic.
        for (key, value) in [
            ("header_timeout_secs", a.header_timeout_secs),
            ("body_timeout_secs", a.body_timeout_secs),
            ("idle_timeout_secs", a.idle_timeout_secs),
        ] {
            if value > MAX_TIMEOUT_SECS {
                return Err(loc.error(
                    &at("api", key),
                    format!("{value} is too large: at most {MAX_TIMEOUT_SECS} (a year)"),
                ));
            }
        }

        let c = &self.capture;
        for (i, name) in c.interfaces.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 15
                && !name.contains(|ch: char| ch == '/' || ch.is_whitespace());
            let path = [k("capture"), k("interfaces"), PathSeg::Index(i)];
            if !valid {
                return Err(loc.error(
                    &path,
                    format!(
                        "{name:?} is not an interface name (1 to 15 characters, no '/' or spaces)"
                    ),
                ));
            }
            if c.interfaces[..i].contains(name) {
                return Err(loc.error(&path, format!("{name:?} is listed twice")));
            }
        }
        if c.sip_ports.is_empty() {
            return Err(loc.error(
                &at("capture", "sip_ports"),
                "needs at least one port, or no SIP is seen",
            ));
        }
        for (i, &port) in c.sip_ports.iter().enumerate() {
            let path = [k("capture"), k("sip_ports"), PathSeg::Index(i)];
            if port == 0 {
                return Err(loc.error(&path, "0 is not a port"));
            }
            if c.sip_ports[..i].contains(&port) {
                return Err(loc.error(&path, format!("{port} is listed twice")));
            }
        }

        if let Err((key, message)) = self.numbers.check() {
            return Err(loc.error(&at("numbers", key), message));
        }

        if let Some(name) = &self.calls.correlation_header {
            if !properties::is_header_name(name) {
                return Err(loc.error(
                    &at("calls", "correlation_header"),
                    format!("{name:?} is not a SIP header name"),
                ));
            }
        }

        for (i, op) in self.operators.iter().enumerate() {
            let at = |key: &str| vec![k("operators"), PathSeg::Index(i), k(key)];
            let earlier = &self.operators[..i];
            if op.id.trim().is_empty() {
                return Err(loc.error(&at("id"), "an operator id cannot be empty"));
            }
            if let Some(first) = earlier.iter().position(|o| o.id == op.id) {
                return Err(loc.error(
                    &at("id"),
                    format!("{:?} is already the id of operator #{}", op.id, first + 1),
                ));
            }
            if op.name.trim().is_empty() {
                return Err(loc.error(&at("name"), "an operator name cannot be empty"));
            }
            for (key, value) in [
                ("extension", &op.extension),
                ("phone", &op.phone),
                ("department", &op.department),
            ] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(loc.error(
                        &at(key),
                        format!("{key} cannot be empty (leave it out instead)"),
                    ));
                }
            }
            if op.extension.is_none() && op.phone.is_none() {
                return Err(loc.error(
                    &[k("operators"), PathSeg::Index(i)],
                    format!("operator {:?} needs an extension or a phone, or no call can be matched to them", op.id),
                ));
            }
            if let Some(ext) = &op.extension {
                if let Some(first) = earlier
                    .iter()
                    .position(|o| o.extension.as_ref() == Some(ext))
                {
                    return Err(loc.error(
                        &at("extension"),
                        format!(
                            "{ext:?} is already the extension of operator #{}",
                            first + 1
                        ),
                    ));
                }
            }
        }

        let properties = properties::check_properties(self.properties, loc)?;
        let mut webhooks = self.webhooks;
        webhooks::check(&mut webhooks, &properties, loc)?;
        let mut integrations = self.integrations;
        integrations::check(&mut integrations, self.smtp.as_ref(), loc)?;

        Ok(Config {
            store: self.store,
            api: self.api,
            capture: self.capture,
            network: self.network,
            numbers: self.numbers,
            calls: self.calls,
            limits: self.limits,
            recording: self.recording,
            operators: self.operators,
            properties,
            webhooks,
            ui: self.ui,
            integrations,
            smtp: self.smtp,
            origin: loc.origin().to_owned(),
        })
    }
}
