//! The DORA endpoints: the five keys of a scope (from the in-memory index),
//! their trend per week or month, and the rows behind each number, paged
//! by keyset cursors; tiers re-graded for another benchmark with the
//! function the pages use.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use fathom_transforms::tiers::{Benchmark, Tier, TieredMetric};
use fathom_transforms::{ExplainedMetric, WINDOWS};
use fathom_warehouse::query::query;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    Api, ApiError, ApiResult, cached_json, json_rows, quoted, rows_as_json, visible_scope,
};

/// The window in days from `7d`/`30d`/`90d`/`365d` (or a bare number).
pub(crate) fn window_days(text: Option<&str>) -> ApiResult<u32> {
    let text = text.unwrap_or("30d");
    text.trim_end_matches('d')
        .parse::<u32>()
        .ok()
        .filter(|d| WINDOWS.contains(d))
        .ok_or_else(|| ApiError::bad_request(format!("window `{text}`: use 7d, 30d, 90d or 365d")))
}

/// `?window=&env=&benchmark=` of the DORA endpoints.
#[derive(Debug, Deserialize)]
pub(crate) struct DoraQuery {
    window: Option<String>,
    env: Option<String>,
    benchmark: Option<String>,
}

pub(crate) const COUNTS: [&str; 9] = [
    "deployments",
    "failed_jobs",
    "deploy_days",
    "changes",
    "failed_deployments",
    "incidents",
    "rework_deployments",
    "window_days",
    "period_days",
];

pub(crate) const METRICS: [&str; 10] = [
    "deployments_per_day",
    "deployments_per_week",
    "median_deploy_days_per_week",
    "lead_time_p50_seconds",
    "lead_time_p90_seconds",
    "change_failure_rate",
    "failed_deployment_recovery_p50_seconds",
    "time_to_restore_p50_seconds",
    "rework_rate",
    "overall_tier",
];

/// A `dora_metrics`/`dora_trends` row reshaped: counts, metrics and tiers,
/// the tiers by `benchmark` (the stored ones when it is the configured
/// benchmark, else looked up again).
pub(crate) fn dora_body(row: &Map<String, Value>, benchmark: Option<&Benchmark>) -> Value {
    let pick = |names: &[&str]| -> Map<String, Value> {
        names
            .iter()
            .filter_map(|n| row.get(*n).map(|v| ((*n).to_owned(), v.clone())))
            .collect()
    };
    let mut metrics = pick(&METRICS[..9]);
    for key in METRICS[..9].iter() {
        metrics.entry((*key).to_owned()).or_insert(Value::Null);
    }
    let stored = row
        .get("benchmark")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let number = |name: &str| row.get(name).and_then(Value::as_f64);
    let mut tiers = Map::new();
    let mut benchmark_name = stored.to_owned();
    match benchmark.filter(|b| b.name != stored) {
        None => {
            for (key, column) in [
                ("deployment_frequency", "deployment_frequency_tier"),
                ("lead_time", "lead_time_tier"),
                ("change_failure_rate", "change_failure_rate_tier"),
                ("recovery", "recovery_tier"),
                ("overall", "overall_tier"),
            ] {
                tiers.insert(
                    key.to_owned(),
                    row.get(column).cloned().unwrap_or(Value::Null),
                );
            }
        }
        Some(b) => {
            benchmark_name = b.name.to_owned();
            for (key, _, tier) in benchmark_tiers(&number, b) {
                tiers.insert(
                    key.to_owned(),
                    tier.map_or(Value::Null, |t| Value::from(t.as_str())),
                );
            }
        }
    }
    json!({
        "counts": pick(&COUNTS),
        "metrics": metrics,
        "benchmark": benchmark_name,
        "tiers": tiers,
    })
}

/// The tiers of a row's keys under benchmark `b`, as (response key, mart
/// column, tier), overall last; `number` reads the row's metric columns.
pub(crate) fn benchmark_tiers(
    number: &dyn Fn(&str) -> Option<f64>,
    b: &Benchmark,
) -> [(&'static str, &'static str, Option<Tier>); 5] {
    let recovery = match b.recovery_metric {
        fathom_transforms::tiers::RecoveryMetric::TimeToRestore => "time_to_restore_p50_seconds",
        fathom_transforms::tiers::RecoveryMetric::FailedDeploymentRecovery => {
            "failed_deployment_recovery_p50_seconds"
        }
    };
    let tier = |metric: TieredMetric, column: &str| number(column).and_then(|v| b.tier(metric, v));
    let frequency = tier(TieredMetric::DeploymentFrequency, "deployments_per_day");
    let others = [
        tier(TieredMetric::LeadTime, "lead_time_p50_seconds"),
        tier(TieredMetric::ChangeFailureRate, "change_failure_rate"),
        tier(TieredMetric::Recovery, recovery),
    ];
    [
        (
            "deployment_frequency",
            "deployment_frequency_tier",
            frequency,
        ),
        ("lead_time", "lead_time_tier", others[0]),
        ("change_failure_rate", "change_failure_rate_tier", others[1]),
        ("recovery", "recovery_tier", others[2]),
        (
            "overall",
            "overall_tier",
            fathom_transforms::tiers::overall(frequency, &others),
        ),
    ]
}

pub(crate) fn benchmark(name: Option<&str>) -> ApiResult<Option<&'static Benchmark>> {
    name.map(|n| {
        Benchmark::named(n).ok_or_else(|| {
            ApiError::bad_request(format!(
                "benchmark `{n}`: use one of {}",
                Benchmark::names()
            ))
        })
    })
    .transpose()
}

/// `GET /api/v1/dora/{scope}`: the five keys, their tiers and counts.
pub(crate) async fn dora(
    State(api): State<Arc<Api>>,
    Path(scope): Path<String>,
    Query(params): Query<DoraQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scope = visible_scope(&api, &headers, &scope).await?;
    let days = window_days(params.window.as_deref())?;
    let env = params.env.as_deref().unwrap_or("all");
    let benchmark = benchmark(params.benchmark.as_deref())?;
    let row = api.caches.dora_row(&api, &scope, days, env).await?;
    let Some(row) = row.as_ref() else {
        return Err(ApiError::not_found(format!(
            "no DORA metrics for `{scope}` over {days}d in environment `{env}` \
             (scopes come from the catalog; environments are `all` or a production environment)"
        )));
    };
    let mut body = dora_body(row, benchmark);
    if let Value::Object(map) = &mut body {
        map.insert("scope".to_owned(), Value::from(scope.clone()));
        map.insert(
            "scope_kind".to_owned(),
            row.get("scope_kind").cloned().unwrap_or(Value::Null),
        );
        map.insert("environment".to_owned(), Value::from(env));
        map.insert("window_days".to_owned(), Value::from(days));
        map.insert(
            "window_start".to_owned(),
            row.get("window_start_text").cloned().unwrap_or(Value::Null),
        );
        map.insert(
            "as_of".to_owned(),
            row.get("as_of_text").cloned().unwrap_or(Value::Null),
        );
    }
    Ok(cached_json(&headers, &body))
}

/// `?interval=week|month&env=&benchmark=` of the trend endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct TrendQuery {
    interval: Option<String>,
    env: Option<String>,
    benchmark: Option<String>,
}

/// `GET /api/v1/dora/{scope}/trend`: the keys per calendar week or month,
/// oldest first.
pub(crate) async fn trend(
    State(api): State<Arc<Api>>,
    Path(scope): Path<String>,
    Query(params): Query<TrendQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scope = visible_scope(&api, &headers, &scope).await?;
    let interval = params.interval.as_deref().unwrap_or("week");
    if interval != "week" && interval != "month" {
        return Err(ApiError::bad_request(format!(
            "interval `{interval}`: use week or month"
        )));
    }
    let env = params.env.as_deref().unwrap_or("all");
    let benchmark = benchmark(params.benchmark.as_deref())?;
    let rows = json_rows(
        &api,
        &format!(
            "SELECT *, CAST(period_start AS VARCHAR) AS start_text, CAST(period_end AS VARCHAR) AS end_text \
             FROM dora_trends WHERE scope = {} AND environment = {} AND granularity = {} \
             ORDER BY period_start",
            quoted(&scope),
            quoted(env),
            quoted(interval)
        ),
    )
    .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no DORA trend for `{scope}` in environment `{env}`"
        )));
    }
    let points: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut point = dora_body(row, benchmark);
            if let Value::Object(map) = &mut point {
                map.insert(
                    "period_start".to_owned(),
                    row.get("start_text").cloned().unwrap_or(Value::Null),
                );
                map.insert(
                    "period_end".to_owned(),
                    row.get("end_text").cloned().unwrap_or(Value::Null),
                );
            }
            point
        })
        .collect();
    let body = json!({"scope": scope, "environment": env, "interval": interval, "points": points});
    Ok(cached_json(&headers, &body))
}

/// `?window=&env=&limit=&cursor=` of the drill-downs.
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    window: Option<String>,
    env: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// A calendar period instead of the window: `from` (inclusive) and
    /// `to` (exclusive), dates.
    from: Option<String>,
    to: Option<String>,
}

/// The `from`/`to` of a drill-down, when given: both dates, `from` first.
pub(crate) fn period(
    params: &PageQuery,
) -> ApiResult<Option<(chrono::NaiveDate, chrono::NaiveDate)>> {
    let date = |name: &str, text: &str| {
        // Trend rows carry timestamps; their date part is the boundary.
        chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d")
            .map_err(|_| ApiError::bad_request(format!("{name} `{text}`: use a date, YYYY-MM-DD")))
    };
    match (params.from.as_deref(), params.to.as_deref()) {
        (None, None) => Ok(None),
        (Some(from), Some(to)) => {
            let (from, to) = (date("from", from)?, date("to", to)?);
            if from >= to {
                return Err(ApiError::bad_request("`from` must be before `to`"));
            }
            Ok(Some((from, to)))
        }
        _ => Err(ApiError::bad_request(
            "give both `from` and `to`, or neither",
        )),
    }
}

/// One page of the rows behind a metric, ordered by `(time, id)`; the
/// cursor is the last row's key, so pages stay stable while rows are added.
pub(crate) async fn page(
    api: &Api,
    headers: &HeaderMap,
    scope: &str,
    params: &PageQuery,
    metric: ExplainedMetric,
    (time, id): (&str, &str),
) -> ApiResult<Response> {
    let scope = visible_scope(api, headers, scope).await?;
    let days = window_days(params.window.as_deref())?;
    let env = params.env.as_deref().unwrap_or("all");
    let limit = params.limit.unwrap_or(50).clamp(1, 1_000);
    let after = match &params.cursor {
        None => String::new(),
        Some(cursor) => {
            let bad = || ApiError::bad_request("the cursor is not one this API returned");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cursor)
                .map_err(|_| bad())?;
            let key: (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
            format!(
                "WHERE (CAST({time} AS VARCHAR) > {t} OR (CAST({time} AS VARCHAR) = {t} AND {id} > {i}))",
                t = quoted(&key.0),
                i = quoted(&key.1)
            )
        }
    };
    let explain = match period(params)? {
        Some((from, to)) => fathom_transforms::explain_period_sql(&scope, metric, from, to, env),
        None => fathom_transforms::explain_sql(&scope, metric, days, env),
    };
    let ctx = api.session().await?;
    let (schema, batches) = query(
        &ctx,
        &format!(
            "SELECT *, CAST({time} AS VARCHAR) AS cursor_time FROM ({explain}) rows {after} \
             ORDER BY CAST({time} AS VARCHAR), {id} LIMIT {}",
            limit + 1
        ),
    )
    .await?;
    let mut items = rows_as_json(&schema, &batches)?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|row| {
            let key = (
                row.get("cursor_time")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                row.get(id).and_then(Value::as_str).unwrap_or_default(),
            );
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&key).unwrap_or_default())
        })
    } else {
        None
    };
    for item in &mut items {
        item.remove("cursor_time");
    }
    let body = json!({
        "scope": scope, "window_days": days, "environment": env,
        "items": items, "next_cursor": next,
    });
    Ok(cached_json(headers, &body))
}

/// `GET /api/v1/dora/{scope}/deployments` (the production deployments of
/// the window, oldest first) and `/changes` (the changes deployed in it,
/// with lead times and stages, in deployment order).
pub(crate) async fn drill_down(
    State(api): State<Arc<Api>>,
    Path((scope, rows)): Path<(String, String)>,
    Query(params): Query<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (metric, key) = match rows.as_str() {
        "deployments" => (
            ExplainedMetric::Deployments,
            ("finished_at", "deployment_id"),
        ),
        "changes" => (ExplainedMetric::LeadTime, ("deployed_at", "change_id")),
        "failed_deployments" => (ExplainedMetric::Recovery, ("finished_at", "deployment_id")),
        "incidents" => (
            ExplainedMetric::TimeToRestore,
            ("created_at", "incident_id"),
        ),
        other => {
            return Err(ApiError::not_found(format!(
                "no `{other}` under a DORA scope: use trend, deployments, changes, \
                 failed_deployments or incidents"
            )));
        }
    };
    page(&api, &headers, &scope, &params, metric, key).await
}
