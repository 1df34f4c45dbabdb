//! The run ledger over HTTP: `GET /runs` (admins), `POST /runs` (hand a
//! run to the scheduler) and `/freshness` per configured source.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Api, ApiError, ApiResult, Role, RunTrigger, body_bytes, caller};

/// The body of `POST /api/v1/runs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerRequest {
    /// A source name; absent: every source.
    source: Option<String>,
}

/// `POST /api/v1/runs` (admin): ingest a source (or all) now, then
/// transform. Answers 202 once the scheduler has the request; the run shows
/// in `GET /runs` and `/freshness`.
pub(crate) async fn trigger_run(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let body = body_bytes(body)?;
    let caller = caller(&api, &headers).await?;
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("triggering runs is for admins"));
    }
    let request: TriggerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("send {{\"source\": \"<name>\"}} or nothing: {e}"))
        })?
    };
    if let Some(source) = &request.source
        && !api.config.sources.contains(source)
    {
        return Err(ApiError::not_found(format!(
            "no source `{source}`; configured: {}",
            api.config.sources.join(", ")
        )));
    }
    let Some(triggers) = &api.triggers else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler_off",
            "the scheduler is off ([schedule] enabled = false); run `fathom ingest` instead",
        ));
    };
    triggers
        .try_send(RunTrigger {
            source: request.source.clone(),
            requested_by: caller.actor.clone(),
        })
        .map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "the scheduler already has runs waiting; try again shortly",
            )
        })?;
    api.state
        .audit(
            &caller.actor,
            "run.trigger",
            request.source.as_deref(),
            &json!({}),
        )
        .await
        .map_err(ApiError::internal)?;
    let queued: Vec<&String> = match &request.source {
        Some(source) => vec![source],
        None => api.config.sources.iter().collect(),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": queued}))).into_response())
}

/// `GET /api/v1/runs`: the run ledger, newest first (admins).
pub(crate) async fn runs(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("the run ledger is for admins"));
    }
    let runs = api.state.runs(100).await.map_err(ApiError::internal)?;
    Ok(axum::Json(json!({"runs": runs})).into_response())
}

/// The run ledger as dashboard rows (newest first): what each run wrote,
/// quarantined and failed with.
pub(crate) async fn run_rows(api: &Api, limit: i64) -> ApiResult<Vec<Value>> {
    let runs = api.state.runs(limit).await.map_err(ApiError::internal)?;
    Ok(runs
        .iter()
        .map(|r| {
            let sum = |wanted: &dyn Fn(&str) -> bool| -> i64 {
                r.row_counts
                    .iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(_, v)| *v)
                    .sum()
            };
            json!({
                "run_id": r.run_id,
                "command": r.command,
                "status": r.status,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "rows": sum(&|k| k.ends_with(".loaded") || k.ends_with(".rows") || k.ends_with(".written")),
                "quarantined": sum(&|k| k.ends_with(".quarantined") || k.starts_with("quarantine.")),
                "unattributed": sum(&|k| k.ends_with(".unmapped")),
                "errors": r.errors.join("; "),
            })
        })
        .collect())
}

/// The alerts not delivered (waiting, refused or dead), newest first:
/// what Data health shows of the outbox.
pub(crate) async fn alert_rows(api: &Api, limit: usize) -> ApiResult<Vec<Value>> {
    use fathom_warehouse::state::DeliveryState;
    let mut rows = Vec::new();
    for state in [
        DeliveryState::Dead,
        DeliveryState::Failed,
        DeliveryState::Pending,
        DeliveryState::Sending,
    ] {
        let entries = api
            .state
            .alert_deliveries(Some(state), limit)
            .await
            .map_err(ApiError::internal)?;
        rows.extend(entries.into_iter().map(|e| {
            json!({
                "state": e.state,
                "title": e.payload["title"],
                "rule": e.rule,
                "channel": e.channel,
                "severity": e.severity,
                "attempts": e.attempts,
                "created_at": e.created_at,
                "next_attempt_at": e.next_attempt_at,
                "last_error": e.last_error,
            })
        }));
    }
    Ok(rows)
}

/// `GET /api/v1/freshness`: per configured source, its last run, last
/// successful run, how long ago that was, and whether it is degraded (its
/// last run failed), with the error.
pub(crate) async fn freshness(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller(&api, &headers).await?;
    let sources = freshness_rows(&api).await?;
    Ok(axum::Json(json!({"sources": sources})).into_response())
}

/// Per configured source, from the run ledger: its freshness.
pub(crate) async fn freshness_rows(api: &Api) -> ApiResult<Vec<Value>> {
    let runs = api.state.runs(500).await.map_err(ApiError::internal)?;
    fathom_warehouse::state::source_freshness(&runs, &api.config.sources, chrono::Utc::now())
        .iter()
        .map(|f| serde_json::to_value(f).map_err(ApiError::internal))
        .collect()
}
