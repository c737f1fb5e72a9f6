//! `GET /integrations/runs`: integration runs, newest first, each step with its status,
//! answer code, duration and error; paged with `before`. Behind `X-Secret-Key` like
//! the contract routes: runs show call data.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::store::runs::Run;

/// Runs per page unless `limit` says otherwise, and the most it may ask for.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsQuery {
    limit: Option<usize>,
    /// The `next` of the previous page: outbox sequence, `:`, integration.
    before: Option<String>,
    integration: Option<String>,
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let before = match &q.before {
        None => None,
        Some(text) => Some(
            text.split_once(':')
                .and_then(|(seq, name)| Some((seq.parse::<u64>().ok()?, name.to_owned())))
                .ok_or_else(|| {
                    ApiError::bad_request("before: the previous page's next (SEQUENCE:NAME)")
                })?,
        ),
    };
    let live = state.live();
    if let Some(name) = &q.integration {
        if !live.integrations.iter().any(|i| &i.name == name) {
            return Err(ApiError::not_found(format!(
                "no integration is named {name:?}"
            )));
        }
    }
    let integrations: Vec<Value> = live
        .integrations
        .iter()
        .map(|i| {
            json!({
                "name": i.name,
                "on": i.on,
                "steps": i.steps.iter().map(|s| json!({"name": s.name, "kind": s.kind.as_str()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    state
        .blocking(move |store| {
            // One more than asked, to know whether there is a next page.
            let before = before.as_ref().map(|(seq, name)| (*seq, name.as_str()));
            let mut runs = store.runs(limit + 1, before, q.integration.as_deref())?;
            let next = (runs.len() > limit)
                .then(|| format!("{}:{}", runs[limit - 1].seq, runs[limit - 1].integration));
            runs.truncate(limit);
            Ok(Json(json!({
                "integrations": integrations,
                "runs": runs.iter().map(view).collect::<Vec<_>>(),
                "next": next,
            })))
        })
        .await
}

/// A run as the API shows it: the event by reference, not whole.
fn view(run: &Run) -> Value {
    json!({
        "id": run.id,
        "integration": run.integration,
        "eventId": run.event.id,
        "eventType": run.event.kind.as_str(),
        "callId": run.event.call_id,
        "status": run.status,
        "createdMs": run.created_ms,
        "finishedMs": run.finished_ms,
        "error": run.error,
        "saved": run.saved,
        "steps": run.steps.iter().map(|s| json!({
            "name": s.name,
            "status": s.status,
            "attempts": s.attempts,
            "code": s.code,
            "durationMs": s.duration_ms,
            "error": s.error,
            "nextAttemptMs": (s.status == crate::store::runs::StepStatus::Pending && s.attempts > 0).then_some(s.next_attempt_ms),
        })).collect::<Vec<_>>(),
    })
}
