//! The anomaly endpoints: the anomalies `fathom detect` found, each with
//! its series drawn against the baseline, its drivers and the deployments
//! that may have caused it — and the feedback that measures the detector
//! on a team's own data.
//!
//! Who sees what: every role reads the operational anomalies of the scopes
//! it may read (a team-limited caller: its teams, sub-teams and their
//! components); cost anomalies only the cost roles, as cost itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::NaiveDate;
use fathom_warehouse::state::{Feedback, Verdict};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::access::{Visible, visible};
use crate::auth::{Caller, caller};
use crate::{
    Api, ApiError, ApiResult, authorize_scope, cached_json, json_body, json_rows, quoted, scope_ref,
};

/// The kinds `anomalies.kind` holds.
const KINDS: [&str; 4] = ["spike", "drop", "level_shift", "trend"];

/// How far around an anomaly its detail draws the series: four weeks of
/// baseline before it, two after.
const DAYS_BEFORE: i64 = 28;
const DAYS_AFTER: i64 = 14;

/// Deployments finished this long before an anomaly's first day (or on
/// it: the series are daily) are its candidate causes.
const CANDIDATE_HOURS: i64 = 48;

/// `?scope=&kind=&status=&metric=&from=&to=&limit=` of the list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnomalyQuery {
    scope: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// The body of a verdict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedbackBody {
    verdict: String,
    #[serde(default)]
    note: Option<String>,
}

/// A SQL predicate on `anomalies`' columns: what `caller` may read.
fn readable(caller: &Caller, visible: &Visible) -> String {
    let cost = if caller.role.sees_cost() {
        "true"
    } else {
        "metric <> 'cost'"
    };
    format!("{cost} AND {}", visible.sql_filter("lower(scope)"))
}

fn day(name: &str, text: &str) -> ApiResult<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request(format!("{name} `{text}`: use a date, YYYY-MM-DD")))
}

/// `GET /api/v1/anomalies`: anomalies overlapping `from`–`to` (default:
/// the 90 days to the newest scored day), open ones first, then cost by
/// dollars and the rest by impact relative to the expected.
pub(crate) async fn anomalies(
    State(api): State<Arc<Api>>,
    Query(params): Query<AnomalyQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let visible = visible(&api, &caller).await?;
    let mut filters = vec![readable(&caller, &visible)];
    if let Some(raw) = params.scope.as_deref().filter(|s| !s.is_empty()) {
        let scope = scope_ref(raw)?;
        if !visible.allows(&scope) {
            return Err(ApiError::forbidden(format!(
                "`{scope}` is outside the teams this caller may see (their teams, sub-teams and \
                 components only)"
            )));
        }
        // A scope's own series and those of its components.
        filters.push(if scope == "org" {
            "true".to_owned()
        } else {
            format!(
                "(lower(scope) = {s} OR lower(scope) IN \
                 (SELECT lower(entity_ref) FROM dora_scope_members WHERE scope = {s}))",
                s = quoted(&scope)
            )
        });
    }
    if let Some(kind) = params.kind.as_deref().filter(|s| !s.is_empty()) {
        if !KINDS.contains(&kind) {
            return Err(ApiError::bad_request(format!(
                "kind `{kind}`: use {}",
                KINDS.join(", ")
            )));
        }
        filters.push(format!("kind = {}", quoted(kind)));
    }
    match params.status.as_deref().unwrap_or("all") {
        "all" | "" => {}
        status @ ("open" | "closed") => filters.push(format!("status = '{status}'")),
        other => {
            return Err(ApiError::bad_request(format!(
                "status `{other}`: use open, closed or all"
            )));
        }
    }
    if let Some(metric) = params.metric.as_deref().filter(|s| !s.is_empty()) {
        if metric == "cost" && !caller.role.sees_cost() {
            return Err(ApiError::forbidden(
                "cost anomalies are visible to the cost-viewer, analyst and admin roles",
            ));
        }
        filters.push(format!("metric = {}", quoted(metric)));
    }
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit: use 1–500"));
    }
    let newest = json_rows(
        &api,
        "SELECT CAST(max(date) AS VARCHAR) AS newest FROM anomaly_scores",
    )
    .await?
    .first()
    .and_then(|row| row.get("newest").and_then(Value::as_str).map(str::to_owned));
    let to = match (params.to.as_deref(), newest.as_deref()) {
        (Some(to), _) => Some(day("to", to)?),
        (None, Some(newest)) => Some(day("newest day", newest)?),
        (None, None) => None,
    };
    let from = match (params.from.as_deref(), to) {
        (Some(from), _) => Some(day("from", from)?),
        (None, Some(to)) => Some(to - chrono::Duration::days(89)),
        (None, None) => None,
    };
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(ApiError::bad_request(format!(
                "from {from} is after to {to}"
            )));
        }
        filters.push(format!(
            "last_day >= DATE '{from}' AND first_day <= DATE '{to}'"
        ));
    }
    let rows = json_rows(
        &api,
        &format!(
            "SELECT anomaly_id, metric, scope, scope_kind, unit, dimension, kind, direction, \
             CAST(first_day AS VARCHAR) AS first_day, CAST(last_day AS VARCHAR) AS last_day, status, \
             CAST(peak_day AS VARCHAR) AS peak_day, peak_score, days, actual, expected, impact, \
             CASE WHEN abs(expected) > 0 THEN impact / abs(expected) END AS relative_impact, \
             driver, driver_share \
             FROM anomalies WHERE {} \
             ORDER BY status = 'open' DESC, metric = 'cost' DESC, \
             CASE WHEN metric = 'cost' THEN abs(impact) \
                  ELSE abs(impact) / greatest(abs(expected), 1e-9) END DESC, anomaly_id",
            filters.join(" AND ")
        ),
    )
    .await?;
    let total = rows.len();
    let page: Vec<Map<String, Value>> = rows.into_iter().take(limit).collect();
    let ids: Vec<&str> = page
        .iter()
        .filter_map(|row| row.get("anomaly_id").and_then(Value::as_str))
        .collect();
    let verdicts = newest_verdicts(&api.state.feedback_on(&ids).await?);
    let listed: Vec<Value> = page
        .into_iter()
        .map(|mut row| {
            let id = row.get("anomaly_id").and_then(Value::as_str).unwrap_or("");
            let verdict = verdicts.get(id).map(|v| v.as_str());
            row.insert("verdict".to_owned(), json!(verdict));
            Value::Object(row)
        })
        .collect();
    let body = json!({
        "from": from.map(|d| d.to_string()),
        "to": to.map(|d| d.to_string()),
        "total": total,
        "anomalies": listed,
    });
    Ok(cached_json(&headers, &body))
}

fn newest_verdicts(feedback: &[Feedback]) -> BTreeMap<String, Verdict> {
    feedback
        .iter()
        .map(|f| (f.anomaly_id.clone(), f.verdict))
        .collect()
}

/// The anomaly `id` if `caller` may read it: 404 when there is none, 403
/// when it is outside the caller's teams or is cost and the role may not
/// see cost.
async fn readable_anomaly(api: &Api, caller: &Caller, id: &str) -> ApiResult<Map<String, Value>> {
    let row = json_rows(
        api,
        &format!(
            "SELECT anomaly_id, metric, scope, scope_kind, unit, dimension, kind, direction, \
             CAST(first_day AS VARCHAR) AS first_day, CAST(last_day AS VARCHAR) AS last_day, status, \
             CAST(peak_day AS VARCHAR) AS peak_day, peak_score, days, actual, expected, impact, \
             driver, driver_share, drivers FROM anomalies WHERE anomaly_id = {}",
            quoted(id)
        ),
    )
    .await?
    .into_iter()
    .next()
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "no anomaly `{id}` (ids come from GET /api/v1/anomalies)"
        ))
    })?;
    let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or_default();
    if text("metric") == "cost" && !caller.role.sees_cost() {
        return Err(ApiError::forbidden(
            "cost anomalies are visible to the cost-viewer, analyst and admin roles",
        ));
    }
    authorize_scope(api, caller, &text("scope").to_ascii_lowercase()).await?;
    Ok(row)
}

/// `GET /api/v1/anomalies/{id}`: the anomaly, its series with the baseline
/// around it, every driver's contribution, the candidate deployments and
/// the feedback given.
pub(crate) async fn anomaly(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let mut row = readable_anomaly(&api, &caller, &id).await?;
    let text = |key: &str| {
        row.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (first, last) = (
        day("first_day", &text("first_day"))?,
        day("last_day", &text("last_day"))?,
    );
    let series = json_rows(
        &api,
        &format!(
            "SELECT CAST(date AS VARCHAR) AS date, value, expected, lower, upper, score, anomalous \
             FROM anomaly_scores WHERE metric = {} AND scope = {} AND unit = {} AND {} \
             AND date BETWEEN DATE '{}' AND DATE '{}' ORDER BY date",
            quoted(&text("metric")),
            quoted(&text("scope")),
            quoted(&text("unit")),
            match row.get("dimension").and_then(Value::as_str) {
                Some(part) => format!("dimension = {}", quoted(part)),
                None => "dimension IS NULL".to_owned(),
            },
            first - chrono::Duration::days(DAYS_BEFORE),
            last + chrono::Duration::days(DAYS_AFTER),
        ),
    )
    .await?;
    let candidates = candidates(&api, &text("scope"), &text("scope_kind"), first).await?;
    // The stored JSON text becomes JSON.
    let drivers = row
        .remove("drivers")
        .and_then(|v| {
            v.as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        })
        .unwrap_or_else(|| json!([]));
    let feedback = api.state.feedback(Some(&id)).await?;
    let body = json!({
        "anomaly": row,
        "drivers": drivers,
        "series": series,
        "candidate_deployments": candidates,
        "feedback": feedback,
    });
    Ok(cached_json(&headers, &body))
}

/// Production deployments that finished in the 48 hours before the
/// anomaly's first day or on it: of the component itself first, then of
/// the components it depends on (catalog `dependsOn`); for a group, of its
/// components; for the organisation, of any. Within a rank, failed
/// deployments first, then the latest. At most 10.
async fn candidates(
    api: &Api,
    scope: &str,
    scope_kind: &str,
    first: NaiveDate,
) -> ApiResult<Vec<Map<String, Value>>> {
    let s = quoted(&scope.to_ascii_lowercase());
    let targets = match scope_kind {
        "component" => format!(
            "SELECT {s} AS target, 0 AS hop \
             UNION ALL SELECT DISTINCT lower(target_ref) AS target, 1 AS hop FROM entity_relations \
             WHERE lower(source_ref) = {s} AND relation_type = 'dependsOn' AND lower(target_ref) <> {s}"
        ),
        "group" => format!(
            "SELECT DISTINCT lower(entity_ref) AS target, 0 AS hop FROM dora_scope_members \
             WHERE scope = {s}"
        ),
        _ => {
            "SELECT DISTINCT lower(entity_ref) AS target, 0 AS hop FROM dora_deployments".to_owned()
        }
    };
    let start = first.and_hms_opt(0, 0, 0).unwrap_or_default();
    json_rows(
        api,
        &format!(
            "WITH targets AS ({targets}), \
             found AS ( \
                 SELECT d.deployment_id, d.entity_ref, d.environment, d.revision, \
                 CAST(d.finished_at AS VARCHAR) AS finished, \
                 d.change_count, d.failed, d.is_rollback, min(t.hop) AS hop \
                 FROM dora_deployments d JOIN targets t ON lower(d.entity_ref) = t.target \
                 WHERE d.completed \
                 AND d.finished_at >= to_timestamp('{from}') AND d.finished_at < to_timestamp('{until}') \
                 GROUP BY d.deployment_id, d.entity_ref, d.environment, d.revision, d.finished_at, \
                 d.change_count, d.failed, d.is_rollback \
             ) \
             SELECT deployment_id, entity_ref, environment, revision, \
             finished AS finished_at, change_count, failed, is_rollback, hop, \
             CASE WHEN hop = 0 THEN 'self' ELSE 'dependency' END AS relation \
             FROM found ORDER BY hop, failed DESC, finished DESC, deployment_id LIMIT 10",
            from = (start - chrono::Duration::hours(CANDIDATE_HOURS)).format("%Y-%m-%dT%H:%M:%SZ"),
            until = (start + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        ),
    )
    .await
}

/// `POST /api/v1/anomalies/{id}/feedback` (cost viewers, analysts,
/// admins): `{"verdict": "yes" | "no" | "planned", "note": "…"}` —
/// stored with who said it, audited; the newest verdict counts.
pub(crate) async fn feedback(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    if !caller.role.sees_cost() {
        return Err(ApiError::forbidden(
            "feedback on anomalies is for the cost-viewer, analyst and admin roles",
        ));
    }
    let request: FeedbackBody = json_body(body)?;
    let verdict: Verdict = request.verdict.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "verdict `{}`: use yes (a real anomaly), no (a false alarm) or planned (planned activity)",
            request.verdict
        ))
    })?;
    let note = request
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::bad_request("note: at most 2,000 characters"));
    }
    readable_anomaly(&api, &caller, &id).await?;
    let given = api
        .state
        .give_feedback(&id, &caller.actor, verdict, note)
        .await?;
    api.state
        .audit(
            &caller.actor,
            "anomaly.feedback",
            Some(&id),
            &json!({"verdict": verdict.as_str(), "note": note}),
        )
        .await?;
    Ok(cached_json(&HeaderMap::new(), &json!(given)))
}
