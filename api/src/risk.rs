//! The deployment risk endpoints: a deployment's risk with the factors
//! behind it and the features it was computed from, a scope's riskiest
//! recent deployments, and the risk of a deployment not made yet (for
//! portal pages and CI gates). Team-scoped like DORA: every role reads the
//! deployments of the scopes it may read.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use chrono::{DateTime, Utc};
use fathom_ml::risk::store;
use fathom_transforms::candidate::{Selection, candidate};

use crate::access::visible;
use crate::auth::caller;
use crate::{Api, ApiError, ApiResult, cached_json, json_body, json_rows, quoted, scope_ref};

/// `?scope=&days=&limit=` of the riskiest list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RiskQuery {
    scope: Option<String>,
    days: Option<u32>,
    limit: Option<usize>,
}

/// The stored JSON text of `key` as JSON.
fn parse_json(row: &mut Map<String, Value>, key: &str) {
    if let Some(text) = row.get(key).and_then(Value::as_str)
        && let Ok(value) = serde_json::from_str::<Value>(text)
    {
        row.insert(key.to_owned(), value);
    }
}

/// `GET /api/v1/risk/deployments/{id}`: the deployment's risk, the three
/// factors that raised it most (in words and numbers), and every feature.
pub(crate) async fn deployment(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let mut row = json_rows(
        &api,
        &format!(
            "SELECT deployment_id, entity_ref, environment, CAST(started_at AS VARCHAR) AS started_at, \
             model_version, probability, flagged, reasons, factors, failed, \
             CAST(scored_at AS VARCHAR) AS scored_at \
             FROM deployment_risk WHERE deployment_id = {}",
            quoted(&id)
        ),
    )
    .await?
    .into_iter()
    .next()
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "no risk score for deployment `{id}`: production deployments are scored by `fathom ml risk` once they have features"
        ))
    })?;
    let entity = row
        .get("entity_ref")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let readable = visible(&api, &caller).await?;
    // An unattributed deployment belongs to no team: only callers who see
    // every scope read it.
    if !readable.allows(entity.as_deref().unwrap_or("org")) {
        return Err(ApiError::forbidden(format!(
            "deployment `{id}` is outside the teams this caller may see"
        )));
    }
    parse_json(&mut row, "factors");
    let mut features = json_rows(
        &api,
        &format!(
            "SELECT * FROM deployment_features WHERE deployment_id = {}",
            quoted(&id)
        ),
    )
    .await?
    .into_iter()
    .next()
    .unwrap_or_default();
    for key in [
        "deployment_id",
        "entity_ref",
        "environment",
        "started_at",
        "started_month",
        "updated_at",
    ] {
        features.remove(key);
    }
    let body = json!({"risk": row, "features": features});
    Ok(cached_json(&headers, &body))
}

/// `GET /api/v1/risk/deployments?scope=&days=&limit=`: the riskiest
/// deployments that started in the last `days` (default 30) before the
/// newest scored one, of a scope and its components.
pub(crate) async fn riskiest(
    State(api): State<Arc<Api>>,
    Query(params): Query<RiskQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let readable = visible(&api, &caller).await?;
    let mut filters = vec![readable.sql_filter("lower(entity_ref)")];
    if let Some(raw) = params.scope.as_deref().filter(|s| !s.is_empty()) {
        let scope = scope_ref(raw)?;
        if !readable.allows(&scope) {
            return Err(ApiError::forbidden(format!(
                "`{scope}` is outside the teams this caller may see (their teams, sub-teams and \
                 components only)"
            )));
        }
        if scope != "org" {
            filters.push(format!(
                "(lower(entity_ref) = {s} OR lower(entity_ref) IN \
                 (SELECT lower(entity_ref) FROM dora_scope_members WHERE scope = {s}))",
                s = quoted(&scope)
            ));
        }
    }
    let days = params.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request("days: use 1–366"));
    }
    let limit = params.limit.unwrap_or(20);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit: use 1–500"));
    }
    let mut rows = json_rows(
        &api,
        &format!(
            "SELECT deployment_id, entity_ref, environment, CAST(started_at AS VARCHAR) AS started_at, \
             model_version, probability, flagged, reasons, factors, failed \
             FROM deployment_risk \
             WHERE {} AND started_at >= (SELECT max(started_at) FROM deployment_risk) - INTERVAL '{days} days' \
             ORDER BY probability DESC, started_at DESC, deployment_id LIMIT {limit}",
            filters.join(" AND ")
        ),
    )
    .await?;
    for row in &mut rows {
        parse_json(row, "factors");
    }
    let model = api.state.latest_risk_model().await?;
    let body = json!({
        "days": days,
        "model": model.map(|m| json!({"version": m.version, "trained_at": m.trained_at, "auc": m.auc, "rows_trained": m.rows_trained})),
        "deployments": rows,
    });
    Ok(cached_json(&headers, &body))
}

/// The body of `POST /api/v1/risk/score`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScoreBody {
    repository: String,
    #[serde(default)]
    pull_requests: Vec<i64>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/risk/score`: the risk of deploying `pull_requests` (or
/// the commits `from`..`to`) of `repository` to production now (or `at`),
/// with the newest model: its features computed by the feature mart's own
/// SQL as if the deployment had happened, its probability, flag and
/// reasons.
pub(crate) async fn score(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let request: ScoreBody = json_body(body)?;
    let selection = match (&request.pull_requests[..], &request.from, &request.to) {
        ([], Some(from), Some(to)) => Selection::Commits {
            from: from.clone(),
            to: to.clone(),
        },
        (numbers, None, None) if !numbers.is_empty() => {
            if numbers.len() > 500 {
                return Err(ApiError::bad_request("pull_requests: at most 500"));
            }
            Selection::PullRequests(numbers.to_vec())
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either `pull_requests` (numbers) or both `from` and `to` (commit SHAs)",
            ));
        }
    };
    let Some(model) = api.state.latest_risk_model().await? else {
        return Err(ApiError::not_found(
            "no risk model yet: train one with `fathom ml train-risk`",
        ));
    };
    let at = request.at.unwrap_or_else(Utc::now);
    let ctx = api.session().await?;
    let found = candidate(&ctx, &request.repository, &selection, at)
        .await
        .map_err(|e| match e {
            fathom_transforms::Error::NotFound(message) => ApiError::not_found(message),
            other => ApiError::internal(other),
        })?;
    let readable = visible(&api, &caller).await?;
    let entity = found.entity_ref.as_deref().map(str::to_ascii_lowercase);
    if !readable.allows(entity.as_deref().unwrap_or("org")) {
        return Err(ApiError::forbidden(format!(
            "`{}` deploys a component outside the teams this caller may see",
            request.repository
        )));
    }
    let artifact = api.caches.risk_model(&api, &model.version).await?;
    let values = store::inputs(|column| found.number(column));
    // The service's own deployments, to say where each value sits.
    let peers: Vec<Vec<f64>> = match &found.entity_ref {
        Some(entity) => {
            let columns: Vec<String> = store::columns()
                .iter()
                .map(|c| format!("CAST({c} AS DOUBLE) AS {c}"))
                .collect();
            json_rows(
                &api,
                &format!(
                    "SELECT {} FROM deployment_features WHERE entity_ref = {}",
                    columns.join(", "),
                    quoted(entity)
                ),
            )
            .await?
            .iter()
            .map(|row| store::inputs(|c| row.get(c).and_then(Value::as_f64)))
            .collect()
        }
        None => Vec::new(),
    };
    let peers = store::Peers::new(peers.iter().map(Vec::as_slice));
    let scored = store::explain(&artifact.model, &values, &peers);
    let body = json!({
        "repository": request.repository,
        "entity_ref": found.entity_ref,
        "environment": found.environment,
        "at": at,
        "changes": found.changes,
        "model_version": artifact.version,
        "probability": scored.probability,
        "flagged": scored.flagged,
        "threshold": artifact.model.threshold,
        "reasons": scored.reasons,
        "factors": scored.factors,
        "features": found
            .columns
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "deployment_id" | "updated_at"))
            .map(|(k, v)| (k.clone(), cell(v)))
            .collect::<Map<String, Value>>(),
    });
    Ok(cached_json(&HeaderMap::new(), &body))
}

/// A feature cell as JSON: a number, a boolean, null when empty, else text.
fn cell(text: &str) -> Value {
    match text {
        "" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(text.to_owned())),
    }
}

/// `GET /api/v1/deployments/{id}/signals`: every signal of the deployment
/// against what its service's errors did after it, and whether it is
/// suspect.
pub(crate) async fn signals(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let rows = json_rows(
        &api,
        &format!(
            "SELECT deployment_id, entity_ref, environment, CAST(finished_at AS VARCHAR) AS finished_at, \
             signal, before, after, week_before, score, verdict, CAST(changed_at AS VARCHAR) AS changed_at, \
             issue_ids, suspect FROM deployment_signals WHERE deployment_id = {} ORDER BY signal",
            quoted(&id)
        ),
    )
    .await?;
    let Some(first) = rows.first() else {
        return Err(ApiError::not_found(format!(
            "no signals for deployment `{id}`: completed production deployments of components get them from `fathom transform`"
        )));
    };
    let entity = first
        .get("entity_ref")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    if !visible(&api, &caller)
        .await?
        .allows(entity.as_deref().unwrap_or("org"))
    {
        return Err(ApiError::forbidden(format!(
            "deployment `{id}` is outside the teams this caller may see"
        )));
    }
    let suspect = rows
        .iter()
        .any(|r| r.get("suspect").and_then(Value::as_bool) == Some(true));
    let body = json!({
        "deployment_id": id,
        "entity_ref": first.get("entity_ref"),
        "finished_at": first.get("finished_at"),
        "suspect": suspect,
        "signals": rows
            .into_iter()
            .map(|mut r| {
                for key in ["deployment_id", "entity_ref", "environment", "finished_at", "suspect"] {
                    r.remove(key);
                }
                Value::Object(r)
            })
            .collect::<Vec<_>>(),
    });
    Ok(cached_json(&headers, &body))
}
