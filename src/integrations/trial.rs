//! `calltap integrations test NAME --call ID`: an integration run on a stored call,
//! step by step, printed as it goes; with `--dry-run` the requests, e-mails and
//! messages are printed and not sent. Nothing is written to the store.

use std::fmt::Write as _;

use crate::base::Timestamp;
use crate::call::record::{CallRecord, Outcome};
use crate::config::{Config, IntegrationConfig};
use crate::events::deliver::LinkSigner;
use crate::events::{call_event, unanswered_kind, Event, EventKind};
use crate::store::runs::{RunStatus, StepStatus};

use super::context::Scope;
use super::runner::{finish, settle, Compiled};
use super::step::{prepare, Sender};

/// The event a stored call gives an integration: the one the call ended with
/// (`call.ended`, or `call.missed`, `call.busy` ...) when the integration runs on it,
/// else the first type the integration runs on.
pub fn event_of_call(record: &CallRecord, it: &IntegrationConfig, config: &Config) -> Event {
    let natural = match record.outcome {
        Outcome::Answered => EventKind::Ended,
        other => unanswered_kind(other),
    };
    let kind = if it.wants(natural.as_str()) {
        natural
    } else {
        it.on
            .iter()
            .find_map(|t| EventKind::parse(t))
            .unwrap_or(natural)
    };
    let at = Timestamp::from_nanos(record.end_ns);
    call_event(kind, &record.id, 0, at, record, config)
}

/// Runs integration `name` on `record`; answers the report and whether the run
/// succeeded (a dry run succeeds when every step could be prepared).
pub async fn try_on_call(
    config: &Config,
    name: &str,
    record: &CallRecord,
    dry_run: bool,
    signer: Option<LinkSigner>,
) -> Result<(String, bool), String> {
    let it = config
        .integrations
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| {
            crate::config::no_such_entry(
                "integration",
                name,
                config.integrations.iter().map(|i| i.name.as_str()),
            )
        })?;
    super::check(config)?;
    let compiled = Compiled::new(it, config.smtp.as_ref(), signer)?;
    let event = event_of_call(record, it, config);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "integration {name} on call {} ({} {}){}",
        record.id,
        event.kind.as_str(),
        event.id,
        if dry_run {
            ", dry run: nothing is sent"
        } else {
            ""
        }
    );
    match compiled.selects(&event) {
        Ok(true) => {}
        Ok(false) => {
            let _ = writeln!(
                out,
                "when is false for this call: the integration would not run"
            );
            return Ok((out, false));
        }
        Err(e) => {
            let _ = writeln!(out, "the run would fail: {e}");
            return Ok((out, false));
        }
    }
    let mut run = compiled.new_run(0, event);
    let mut ok = true;
    for index in 0..it.steps.len() {
        let step = &it.steps[index];
        if dry_run {
            let earlier = it.steps[..index].iter().map(|s| s.name.as_str());
            let saved = it.steps[..index]
                .iter()
                .flat_map(|s| s.save.keys().map(String::as_str));
            let scope = Scope::stand_in(
                serde_json::to_value(&run.event).map_err(|e| e.to_string())?,
                earlier,
                saved,
            );
            if let (Some(when), Some(text)) = (&compiled.step_when[index], &step.when) {
                match scope.holds(when) {
                    Ok(v) => {
                        let _ = writeln!(out, "\nstep {} when {text}: {v}", step.name);
                    }
                    Err(e) => {
                        let _ = writeln!(
                            out,
                            "\nstep {} when {text}: not known before the answers ({e})",
                            step.name
                        );
                    }
                }
            }
            let delivery = format!("{}.{}", run.id, step.name);
            let headers = Sender::headers(step, name, run.event.kind.as_str(), &delivery);
            match prepare(step, &scope, headers) {
                Ok(prepared) => {
                    let _ = writeln!(
                        out,
                        "\nstep {} ({}):\n{prepared}",
                        step.name,
                        step.kind.as_str()
                    );
                }
                Err(e) => {
                    ok = false;
                    let _ = writeln!(
                        out,
                        "\nstep {} ({}): cannot be prepared: {e}",
                        step.name,
                        step.kind.as_str()
                    );
                }
            }
            continue;
        }
        // A test run tries each step once: retries are the daemon's.
        if let Some((attempted, took)) = compiled.attempt(&mut run, index).await {
            if !settle(&compiled.config, &mut run, index, attempted, took) {
                run.steps[index].status = StepStatus::Failed;
            }
        }
        let r = &run.steps[index];
        let _ = writeln!(
            out,
            "step {}: {}{}{}{}",
            r.name,
            r.status.as_str(),
            r.code.map(|c| format!(", answer {c}")).unwrap_or_default(),
            r.duration_ms
                .map(|d| format!(", {d} ms"))
                .unwrap_or_default(),
            r.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
        );
    }
    if !dry_run {
        finish(&compiled.config, &mut run);
        ok = run.status == RunStatus::Succeeded;
        if !run.saved.is_empty() {
            let saved = serde_json::to_string(&run.saved).unwrap_or_default();
            let _ = writeln!(out, "saved: {saved}");
        }
        let _ = writeln!(
            out,
            "run {}{}",
            if ok { "succeeded" } else { "failed" },
            run.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok((out, ok))
}
