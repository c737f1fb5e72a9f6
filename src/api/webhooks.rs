//! `GET /webhooks/deliveries` and `POST /webhooks/deliveries/{id}/retry`: the webhook
//! delivery log, pending retries and dead letters, and sending one delivery again.
//! Behind `X-Secret-Key` like the contract routes: they show call data.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::store::deliveries::{delivery_id, split_delivery_id, Pending};

/// Entries per list: the newest of the log and the dead letters, the oldest pending.
const LIST_LIMIT: usize = 100;

fn since_epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) async fn deliveries(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    deliveries_json(&state).await.map(Json)
}

/// What `GET /webhooks/deliveries` answers (the console's Status page shows it too).
pub(crate) async fn deliveries_json(state: &AppState) -> Result<Value, ApiError> {
    let live = state.live();
    let endpoints: Vec<Value> = live
        .webhooks
        .iter()
        .map(|h| json!({"name": h.name, "url": h.url, "events": h.events}))
        .collect();
    state
        .blocking(move |store| {
            let recent = store.attempts(LIST_LIMIT)?;
            let pending: Vec<Value> = store
                .all_pending(LIST_LIMIT)?
                .into_iter()
                .map(|p| {
                    json!({
                        "id": delivery_id(&p.endpoint, &p.event.id),
                        "endpoint": p.endpoint,
                        "eventId": p.event.id,
                        "eventType": p.event.kind.as_str(),
                        "callId": p.event.call_id,
                        "attempts": p.attempts,
                        "nextAttemptMs": p.next_attempt_ms,
                        "lastError": p.last_error,
                    })
                })
                .collect();
            let dead: Vec<Value> = store
                .dead_letters(LIST_LIMIT)?
                .into_iter()
                .map(|d| {
                    json!({
                        "id": delivery_id(&d.endpoint, &d.event.id),
                        "endpoint": d.endpoint,
                        "eventId": d.event.id,
                        "eventType": d.event.kind.as_str(),
                        "callId": d.event.call_id,
                        "attempts": d.attempts,
                        "diedAtMs": d.died_at_ms,
                        "reason": d.reason,
                    })
                })
                .collect();
            Ok(json!({
                "endpoints": endpoints,
                "recent": recent,
                "pending": pending,
                "dead": dead,
            }))
        })
        .await
}

/// Sends a delivery again, now: a dead letter, or any event still in the outbox, to
/// the endpoint the id names.
pub(crate) async fn retry(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path(id) =
        path.map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))?;
    let not_found = || ApiError::not_found(format!("no delivery with id {id:?}"));
    let (endpoint, event_id) = split_delivery_id(&id).ok_or_else(not_found)?;
    if !state.live().webhooks.iter().any(|h| h.name == endpoint) {
        return Err(not_found());
    }
    let (endpoint, event_id) = (endpoint.to_owned(), event_id.to_owned());
    let found = state
        .blocking(move |store| {
            let pending = match store.resurrect(&endpoint, &event_id)? {
                Some(dead) => Some((dead.seq, dead.event)),
                None => store.find_event(&event_id)?,
            }
            .map(|(seq, event)| Pending {
                endpoint,
                seq,
                event,
                attempts: 0,
                next_attempt_ms: since_epoch_ms(),
                last_error: None,
            });
            if let Some(p) = &pending {
                store.put_pending(p)?;
                store.wake_deliveries();
            }
            Ok(pending.is_some())
        })
        .await?;
    if !found {
        return Err(not_found());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "queued", "id": id})),
    ))
}
