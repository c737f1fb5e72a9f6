//! `calltap check-config`'s summary of a configuration: what calltap will do with it,
//! with counts instead of secret values.

use std::fmt::Write as _;

use super::*;

impl Config {
    /// A short summary for `calltap check-config`: what calltap will do with this
    /// configuration, with counts instead of secret values, then any warnings.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let days = |d: u32| match d {
            0 => "forever".to_owned(),
            1 => "1 day".to_owned(),
            d => format!("{d} days"),
        };
        let s = &self.store;
        let _ = writeln!(out, "configuration: {}", self.origin);
        let _ = writeln!(
            out,
            "store: {}; records kept {}, recordings kept {}; disk cap {}; audio stops below {} free",
            s.path.display(),
            days(s.keep_days),
            days(s.recordings_keep_days),
            s.max_disk.map_or("none".to_owned(), |m| m.to_string()),
            s.min_free,
        );
        let a = &self.api;
        let _ = writeln!(
            out,
            "api: listening on {} ({}); {}, {}; links {}/recordings/..., valid {}; windows up to {} days; bodies up to {}; \
             {} connections ({} per source); timeouts: head {}, body {}, idle {}",
            a.listen,
            if a.acme.is_some() {
                "TLS, certificate by ACME"
            } else if a.tls_cert.is_some() {
                "TLS"
            } else {
                "plain HTTP"
            },
            plural(a.secret_keys.len(), "secret key"),
            plural(a.link_keys.len(), "link key"),
            a.link_base(),
            secs(a.link_ttl_secs),
            a.max_window_days,
            a.max_body_bytes,
            a.max_connections,
            a.max_connections_per_source,
            secs(a.header_timeout_secs),
            secs(a.body_timeout_secs),
            secs(a.idle_timeout_secs),
        );
        let _ = writeln!(out, "{}", security::describe(a));
        let c = &self.capture;
        let ports: Vec<String> = c.sip_ports.iter().map(u16::to_string).collect();
        let _ = writeln!(
            out,
            "capture: {}; SIP ports {}; RTP ports {}; promiscuous {}; ring {} per interface",
            if c.interfaces.is_empty() {
                "no interface (replay only)".to_owned()
            } else {
                format!("interfaces {}", c.interfaces.join(", "))
            },
            ports.join(", "),
            c.rtp_ports,
            if c.promiscuous { "on" } else { "off" },
            c.ring_size,
        );
        let n = &self.network;
        let _ = writeln!(
            out,
            "network: {}, {}, {}",
            plural(n.pbx.len(), "PBX address"),
            plural(n.trunks.len(), "trunk network"),
            plural(n.internal.len(), "internal network"),
        );
        let num = &self.numbers;
        let _ = writeln!(
            out,
            "numbers: country code {}, national prefix {:?}, international prefix {:?}, extensions below {} digits",
            num.country_code.as_ref().map_or("not set".to_owned(), |cc| format!("+{cc}")),
            num.national_prefix,
            num.international_prefix,
            num.min_external_digits,
        );
        let cl = &self.calls;
        let _ = writeln!(
            out,
            "calls: internal calls {}; ended after {} (call), {} (ringing), {} (no media); correlation header {}; up to {} dialogs, {} of them with no response; no-response INVITEs stored: {} a minute per source, {} a minute in all",
            if cl.export_internal { "exported" } else { "kept, not exported" },
            secs(cl.max_call_secs),
            secs(cl.ring_timeout_secs),
            secs(cl.media_timeout_secs),
            cl.correlation_header.as_deref().unwrap_or("none"),
            cl.max_dialogs,
            cl.max_no_response,
            cl.no_response_per_source_per_minute,
            cl.no_response_per_minute,
        );
        let l = &self.limits;
        let _ = writeln!(
            out,
            "limits: {} TCP streams of {} per direction (idle {}); {} fragment buffers, {} total, {} timeout",
            l.max_tcp_streams,
            l.tcp_buffer_bytes,
            secs(l.tcp_idle_secs),
            l.max_fragment_buffers,
            l.max_fragmented_bytes,
            secs(l.fragment_timeout_secs),
        );
        let _ = writeln!(
            out,
            "recording: {}",
            match (self.recording.enabled, self.recording.format) {
                (false, _) => "off",
                (true, RecordingFormat::Wav) => "stereo WAV",
                (true, RecordingFormat::Flac) => "stereo WAV while the call runs, stored as FLAC",
                (true, RecordingFormat::Opus) => {
                    "stereo WAV while the call runs, stored as Ogg Opus"
                }
                #[cfg(feature = "mp3")]
                (true, RecordingFormat::Mp3) => "stereo WAV while the call runs, stored as MP3",
            }
        );
        if self.operators.is_empty() {
            let _ = writeln!(out, "operators: none configured, discovered from traffic");
        } else {
            let _ = writeln!(out, "operators: {} configured", self.operators.len());
        }
        if self.properties.is_empty() {
            let _ = writeln!(out, "properties: none");
        } else {
            let list: Vec<String> = self
                .properties
                .iter()
                .map(|p| {
                    let from = match &p.source {
                        PropertySource::Header(name) => format!("header {name}"),
                        other => other.kind().as_str().to_owned(),
                    };
                    format!("{:?} ({}, from {from})", p.key, p.kind)
                })
                .collect();
            let _ = writeln!(out, "properties: {}", list.join(", "));
        }
        if self.webhooks.is_empty() {
            let _ = writeln!(out, "webhooks: none");
        }
        for hook in &self.webhooks {
            let _ = writeln!(
                out,
                "webhook {}: {} ({}); events {}; {}; timeout {}, {} attempts from {} ms doubling to {}, {} at once",
                hook.name,
                hook.url,
                if hook.secret.is_some() { "signed" } else { "unsigned" },
                if hook.events.is_empty() { "all".to_owned() } else { hook.events.join(", ") },
                if hook.template.is_some() { "templated body" } else { "the event as JSON" },
                secs(hook.timeout_secs),
                hook.max_attempts,
                hook.retry_first_ms,
                secs(hook.retry_max_secs),
                hook.concurrency,
            );
        }
        let ui = &self.ui;
        let _ = writeln!(
            out,
            "ui: {}",
            match (ui.enabled, &ui.password_hash) {
                (false, _) => "off".to_owned(),
                (true, None) => "on /ui/, no password set (nobody can log in)".to_owned(),
                (true, Some(_)) => format!(
                    "on /ui/, password set, sessions last {}",
                    plural(ui.session_hours as usize, "hour")
                ),
            }
        );
        if self.integrations.is_empty() {
            let _ = writeln!(out, "integrations: none");
        }
        for it in &self.integrations {
            let steps: Vec<String> = it
                .steps
                .iter()
                .map(|s| format!("{} ({})", s.name, s.kind.as_str()))
                .collect();
            let _ =
                writeln!(
                out,
                "integration {}: on {}{}; steps {}; timeout {}, {} attempts per step, {} at once",
                it.name,
                if it.on.is_empty() { "every event".to_owned() } else { it.on.join(", ") },
                it.when.as_deref().map(|w| format!(" when {w}")).unwrap_or_default(),
                steps.join(" -> "),
                secs(it.timeout_secs),
                it.max_attempts,
                it.concurrency,
            );
        }
        if let Some(smtp) = &self.smtp {
            let _ = writeln!(
                out,
                "smtp: {}:{} ({:?}), from {}",
                smtp.host,
                smtp.port(),
                smtp.security,
                smtp.from
            );
        }
        for warning in self.warnings() {
            let _ = writeln!(out, "warning: {warning}");
        }
        out
    }
}

fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n if what.ends_with('s') => format!("{n} {what}es"),
        n => format!("{n} {what}s"),
    }
}

fn secs(s: u64) -> String {
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}min", s / 60),
        s => format!("{s}s"),
    }
}
