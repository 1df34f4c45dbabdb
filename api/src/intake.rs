//! Intake: deliveries pushed to Fathom — generic deployments and
//! incidents from any tool, GitHub webhooks, Backstage analytics events.
//! Each is committed before the answer, applied once per delivery id
//! (marked only when something of it was accepted, so a corrected retry
//! of a refused delivery is applied), and audited; bad records go to
//! quarantine with their reason, never dropped.

use std::sync::Arc;

use arrow::array::RecordBatch;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::{Api, ApiError, ApiResult, Role, body_bytes, caller, json_body};

/// `POST /api/v1/intake/deployments` and `/intake/incidents`: records
/// from any CI/CD or incident tool in the generic format (the columns of
/// the `deployments` or `incidents` table, as `fathom import` reads them:
/// one object, an array, or `{"records": [...]}`). Durable before the
/// answer: the good records are merged (by primary key, so a re-sent
/// record changes nothing) and the bad ones quarantined with their reason
/// before `200`. A delivery seen before (`X-Delivery-Id`) is acknowledged
/// without being applied again. Admins only.
pub(crate) async fn intake(
    State(api): State<Arc<Api>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("intake is for admin tokens"));
    }
    let body: Value = json_body(body)?;
    let def = match kind.as_str() {
        "deployments" => &fathom_models::tables::DEPLOYMENTS,
        "incidents" => &fathom_models::tables::INCIDENTS,
        other => {
            return Err(ApiError::not_found(format!(
                "no intake `{other}`; intakes: deployments, incidents"
            )));
        }
    };
    let delivery = headers
        .get("x-delivery-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = format!("intake:{kind}");
    if let Some(answer) = duplicate(&api, &stream, delivery.as_deref()).await? {
        return Ok(answer);
    }
    // Items that are not objects are quarantined with the rest of the
    // delivery's bad records (their position kept), never dropped.
    let mut not_objects = Vec::new();
    let records: Vec<Map<String, Value>> = match body {
        Value::Object(mut map) => match map.remove("records") {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::Object(m) => Some(m),
                    other => {
                        not_objects.push((i, other));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "`records` must be an array of objects",
                ));
            }
            None => vec![map],
        },
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => Ok(m),
                _ => Err(ApiError::bad_request("every record must be a JSON object")),
            })
            .collect::<ApiResult<_>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "send a record, an array of records, or {\"records\": [...]}",
            ));
        }
    };
    if records.is_empty() && not_objects.is_empty() {
        return Err(ApiError::bad_request("no records"));
    }
    let refs: Vec<&Map<String, Value>> = records.iter().collect();
    let location = format!(
        "intake {}",
        delivery.as_deref().unwrap_or("(no delivery id)")
    );
    let (batch, mut rejected) = if refs.is_empty() {
        (None, Vec::new())
    } else {
        fathom_ingest::import::json_rows_to_batch(def, &refs, &location)
            .map_err(ApiError::bad_request)?
    };
    rejected.extend(not_objects.into_iter().map(|(i, value)| {
        let raw = value.to_string();
        fathom_ingest::import::Rejection {
            location: location.clone(),
            line_number: i as i64 + 1,
            column: None,
            reason: format!(
                "record {} of `records` is {}, not a JSON object",
                i + 1,
                json_kind(&value)
            ),
            raw_record: raw,
        }
    }));
    let accepted = batch.as_ref().map_or(0, RecordBatch::num_rows);
    if let Some(batch) = batch {
        api.warehouse.merge(def, &[batch]).await?;
    }
    if !rejected.is_empty() {
        let quarantine = fathom_ingest::import::quarantine_batch(
            "intake",
            &kind,
            delivery.as_deref().unwrap_or("intake"),
            &rejected,
        )
        .map_err(ApiError::internal)?;
        api.warehouse
            .merge(&fathom_models::tables::QUARANTINE, &[quarantine])
            .await?;
    }
    // A delivery is done only when something of it was accepted: a
    // corrected retry of a refused one (same id) must still be applied.
    if accepted > 0 {
        delivered(&api, &stream, delivery.as_deref()).await?;
    }
    audit_delivery(
        &api,
        &caller.actor,
        &stream,
        delivery.as_deref(),
        accepted,
        rejected.len(),
    )
    .await;
    let rejections: Vec<Value> = rejected
        .iter()
        .map(|r| json!({"record": r.line_number, "column": r.column, "reason": r.reason}))
        .collect();
    let status = if accepted == 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({
            "delivery": delivery,
            "accepted": accepted,
            "quarantined": rejected.len(),
            "rejections": rejections,
        })),
    )
        .into_response())
}

/// The kind of a JSON value, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Records a delivery in the audit log (who sent what, and what became of
/// it); a failure to write it is logged, not answered.
async fn audit_delivery(
    api: &Api,
    actor: &str,
    stream: &str,
    delivery: Option<&str>,
    accepted: usize,
    quarantined: usize,
) {
    let detail = json!({"delivery": delivery, "accepted": accepted, "quarantined": quarantined});
    if let Err(e) = api.state.audit(actor, stream, delivery, &detail).await {
        tracing::warn!(error = %e, "cannot write the audit log");
    }
}

/// The answer to a delivery of `stream` already applied, if `id` is one.
/// (Ids are kept in the state database's cursor table.)
async fn duplicate(api: &Api, stream: &str, id: Option<&str>) -> ApiResult<Option<Response>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let seen = api
        .state
        .cursor(stream, id)
        .await
        .map_err(ApiError::internal)?
        .is_some();
    Ok(seen.then(|| axum::Json(json!({"delivery": id, "duplicate": true})).into_response()))
}

/// Records delivery `id` of `stream` as applied (after its data committed).
async fn delivered(api: &Api, stream: &str, id: Option<&str>) -> ApiResult<()> {
    if let Some(id) = id {
        api.state
            .set_cursor(stream, id, &chrono::Utc::now().to_rfc3339())
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(())
}

/// `POST /api/v1/intake/github`: a GitHub webhook delivery. The signature
/// (`X-Hub-Signature-256`) is the authentication: a delivery no configured
/// secret signed is refused before anything is stored. Deliveries are
/// applied once by `X-GitHub-Delivery`, and are in the warehouse before the
/// answer.
pub(crate) async fn github_webhook(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let body = body_bytes(body)?;
    if api.config.github_webhooks.is_empty() {
        return Err(ApiError::not_found(
            "no GitHub source accepts webhooks: set `webhook_secret_env` on a github source",
        ));
    }
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header_text("x-hub-signature-256");
    let mut refusal = None;
    let mut matched = None;
    for hook in &api.config.github_webhooks {
        match fathom_ingest::webhooks::verify_signature(hook.secret.as_bytes(), &body, signature) {
            Ok(()) => {
                matched = Some(hook);
                break;
            }
            Err(e) => refusal = Some(e),
        }
    }
    let Some(hook) = matched else {
        let message = refusal.map_or_else(|| "bad signature".to_owned(), |e| e.to_string());
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            message,
        ));
    };
    let event = header_text("x-github-event")
        .ok_or_else(|| ApiError::bad_request("the X-GitHub-Event header is missing"))?;
    let delivery = header_text("x-github-delivery")
        .ok_or_else(|| ApiError::bad_request("the X-GitHub-Delivery header is missing"))?;
    let stream = "intake:github";
    if let Some(answer) = duplicate(&api, stream, Some(delivery)).await? {
        return Ok(answer);
    }
    let report = fathom_ingest::webhooks::ingest_delivery(
        &api.warehouse,
        &hook.source,
        event,
        delivery,
        &body,
        chrono::Utc::now(),
    )
    .await
    .map_err(ApiError::internal)?;
    delivered(&api, stream, Some(delivery)).await?;
    audit_delivery(
        &api,
        &format!("github:{}", hook.source.name()),
        stream,
        Some(delivery),
        report.rows.values().sum(),
        report.quarantined,
    )
    .await;
    Ok(axum::Json(json!({
        "delivery": delivery,
        "source": hook.source.name(),
        "event": report.event,
        "action": report.action,
        "stream": report.stream,
        "rows": report.rows,
        "quarantined": report.quarantined,
        "ignored": report.ignored,
    }))
    .into_response())
}

/// `POST /api/v1/intake/events` (admin): Backstage analytics events — a
/// JSON event, an array of events, or NDJSON — pseudonymized as event files
/// are (the user is stored only as a keyed hash), committed before the
/// answer, applied once per `X-Delivery-Id`.
pub(crate) async fn intake_events(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let body = body_bytes(body)?;
    let caller = caller(&api, &headers).await?;
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("intake is for admin tokens"));
    }
    let Some(events) = &api.config.events else {
        return Err(ApiError::not_found(
            "no portal_events source: configure one (with its pseudonymize_key_env) to accept events",
        ));
    };
    let delivery = headers
        .get("x-delivery-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = "intake:events";
    if let Some(answer) = duplicate(&api, stream, delivery.as_deref()).await? {
        return Ok(answer);
    }
    // One event per line, whatever shape it came in. A body that is not
    // JSON at all is decoded line by line, so each bad line is quarantined
    // with its reason (and never copied: it may hold a user id).
    let ndjson: Vec<u8> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
        Ok(Value::Object(mut map)) => match map.remove("events") {
            Some(Value::Array(items)) => items
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
            Some(other) => {
                map.insert("events".to_owned(), other);
                Value::Object(map).to_string().into_bytes()
            }
            None => Value::Object(map).to_string().into_bytes(),
        },
        _ => body.to_vec(),
    };
    let id = delivery
        .clone()
        .unwrap_or_else(|| "(no delivery id)".to_owned());
    let posted = fathom_ingest::files::events::ingest_posted(
        &api.warehouse,
        &events.source,
        &events.pseudonymizer,
        &ndjson,
        &id,
    )
    .await
    .map_err(ApiError::internal)?;
    if posted.accepted > 0 || posted.quarantined == 0 {
        delivered(&api, stream, delivery.as_deref()).await?;
    }
    audit_delivery(
        &api,
        &caller.actor,
        stream,
        delivery.as_deref(),
        posted.accepted,
        posted.quarantined,
    )
    .await;
    let status = if posted.accepted == 0 && posted.quarantined > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({
            "delivery": delivery,
            "accepted": posted.accepted,
            "quarantined": posted.quarantined,
        })),
    )
        .into_response())
}
