//! The dashboards: `GET /api/v1/pages/{page}` answers every panel of a page
//! in one call (so a page costs one request), and the page paths, `/` and
//! `/assets/*` serve the embedded shell that draws them.
//!
//! A page's panels run on one read-only session, concurrently. Tiers are
//! stored for the configured benchmark; a page asked for another benchmark
//! gets every row's tiers recomputed with the same tables the DORA endpoint
//! uses, so the pages and the API never disagree.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fathom_dashboards::{Filters, Panel};
use fathom_transforms::tiers::Benchmark;
use fathom_warehouse::query::query;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    Api, ApiError, ApiResult, Caller, Role, access, alert_rows, benchmark, benchmark_tiers,
    cached_json, caller, freshness_rows, quoted, rows_as_json, run_rows, scope_ref, window_days,
};

/// `?window=&env=&benchmark=&scope=` of a page.
#[derive(Debug, Deserialize)]
pub(crate) struct PageDataQuery {
    window: Option<String>,
    env: Option<String>,
    benchmark: Option<String>,
    scope: Option<String>,
}

/// One panel's answer on a page.
async fn panel_answer(
    api: &Api,
    ctx: &datafusion::prelude::SessionContext,
    caller: &Caller,
    panel: &Panel,
    filters: &Filters,
    benchmark: Option<&Benchmark>,
) -> Value {
    let mut drills = Map::new();
    for (column, template) in &panel.drills {
        drills.insert(
            column.clone(),
            Value::from(Panel::drill_path(template, filters)),
        );
    }
    let mut answer = json!({
        "id": panel.id,
        "title": panel.title,
        "description": panel.description,
        "chart": {"kind": panel.chart.kind, "x": panel.chart.x, "y": panel.chart.y, "spark": panel.chart.spark, "marks": panel.chart.marks, "group": panel.chart.group},
        "drill": panel.drill.as_deref().map(|t| Panel::drill_path(t, filters)),
        "drills": drills,
    });
    let rows: Result<(Vec<String>, Vec<Value>), ApiError> = match panel.api.as_deref() {
        Some(read) => api_panel_rows(api, caller, read).await,
        None if let Err(refused) = may_read_sql_panel(caller, panel) => Err(refused),
        None => match panel.sql(filters) {
            Err(e) => Err(ApiError::bad_request(e.to_string())),
            Ok(sql) => match query(ctx, &sql).await {
                Err(e) => Err(e.into()),
                Ok((schema, batches)) => rows_as_json(&schema, &batches).map(|rows| {
                    let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
                    let rows = rows
                        .into_iter()
                        .map(|mut row| {
                            if let Some(b) = benchmark {
                                retier(&mut row, b);
                            }
                            Value::Object(row)
                        })
                        .collect();
                    (columns, rows)
                }),
            },
        },
    };
    if let Value::Object(map) = &mut answer {
        match rows {
            Ok((columns, rows)) => {
                map.insert("columns".to_owned(), json!(columns));
                map.insert("rows".to_owned(), Value::Array(rows));
            }
            // A panel the caller may not see, or one that failed, says why
            // in place; the rest of the page still draws.
            Err(e) => {
                map.insert("columns".to_owned(), json!([]));
                map.insert("rows".to_owned(), json!([]));
                map.insert(
                    "error".to_owned(),
                    json!({"code": e.code, "message": e.message}),
                );
            }
        }
    }
    answer
}

/// Whether `caller` may read an SQL panel: cost panels need a cost role;
/// callers limited to teams read only panels of one scope (theirs, checked
/// with the scope).
pub(crate) fn may_read_sql_panel(caller: &Caller, panel: &Panel) -> ApiResult<()> {
    if panel.cost && !caller.role.sees_cost() {
        return Err(ApiError::forbidden(
            "cost is visible to the cost-viewer, analyst and admin roles",
        ));
    }
    if !caller.teams.is_empty() && !panel.is_per_scope() {
        return Err(ApiError::forbidden(
            "this panel spans every team; callers limited to teams see per-scope panels only",
        ));
    }
    Ok(())
}

/// The rows of an API panel (`api = "freshness"`, `"runs"` or `"alerts"`).
pub(crate) async fn api_panel_rows(
    api: &Api,
    caller: &Caller,
    read: &str,
) -> ApiResult<(Vec<String>, Vec<Value>)> {
    let rows = match read {
        "runs" if caller.role != Role::Admin => {
            return Err(ApiError::forbidden("the run ledger is for admins"));
        }
        "runs" => run_rows(api, 50).await?,
        "alerts" if caller.role != Role::Admin => {
            return Err(ApiError::forbidden("alert deliveries are for admins"));
        }
        "alerts" => alert_rows(api, 50).await?,
        _ => freshness_rows(api).await?,
    };
    Ok((columns_of(&rows), rows))
}

/// Rows as CSV (RFC 4180 quoting), for the export of API panels; with
/// `safe`, text a spreadsheet would run as a formula gets a leading `'`.
pub(crate) fn csv_of(columns: &[String], rows: &[Value], safe: bool) -> String {
    let field = |value: Option<&Value>| -> String {
        let text = match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if safe => {
                fathom_warehouse::query::spreadsheet_safe(s).into_owned()
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    };
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let line: Vec<String> = columns.iter().map(|c| field(row.get(c))).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// The keys of the first row, in order (API reads answer objects).
fn columns_of(rows: &[Value]) -> Vec<String> {
    rows.first()
        .and_then(Value::as_object)
        .map(|row| row.keys().cloned().collect())
        .unwrap_or_default()
}

/// Replaces a row's stored tier columns with the tiers under `b` (rows
/// without tiers are left alone).
fn retier(row: &mut Map<String, Value>, b: &Benchmark) {
    if !row.contains_key("overall_tier") {
        return;
    }
    // Graded from the row's numbers before any tier column is replaced.
    let tiers = benchmark_tiers(&|name| row.get(name).and_then(Value::as_f64), b);
    for (_, column, tier) in tiers {
        if row.contains_key(column) {
            row.insert(
                column.to_owned(),
                tier.map_or(Value::Null, |t| Value::from(t.as_str())),
            );
        }
    }
}

/// The first string of each row of `sql`.
async fn strings(ctx: &datafusion::prelude::SessionContext, sql: &str) -> ApiResult<Vec<String>> {
    let (schema, batches) = query(ctx, sql).await?;
    Ok(rows_as_json(&schema, &batches)?
        .into_iter()
        .filter_map(|row| {
            row.into_iter()
                .next()
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
        })
        .collect())
}

/// `GET /api/v1/pages/{page}`: every panel of a dashboard page for the
/// filters, with the choices the filter bar offers.
pub(crate) async fn page_data(
    State(api): State<Arc<Api>>,
    Path(page): Path<String>,
    Query(params): Query<PageDataQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    if fathom_dashboards::page(&page).is_none() {
        return Err(ApiError::not_found(format!(
            "no page `{page}`: the pages are {}",
            fathom_dashboards::page_names()
        )));
    }
    // Callers limited to teams start on their first team, not the
    // organisation they may not see.
    let scope = match (
        params.scope.as_deref().filter(|s| !s.is_empty()),
        caller.teams.first(),
    ) {
        (Some(scope), _) => scope_ref(scope)?,
        (None, Some(team)) => team.clone(),
        (None, None) => "org".to_owned(),
    };
    let visible = access::visible(&api, &caller).await?;
    if !visible.allows(&scope) {
        return Err(ApiError::forbidden(format!(
            "`{scope}` is outside the teams this caller may see (their teams, sub-teams and \
             components only)"
        )));
    }
    let filters = Filters {
        window_days: window_days(params.window.as_deref())?,
        environment: params
            .env
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "all".to_owned()),
        scope,
    };
    let benchmark = benchmark(params.benchmark.as_deref().filter(|b| !b.is_empty()))?;
    let ctx = api.session().await?;
    let environments = strings(
        &ctx,
        "SELECT DISTINCT environment FROM dora_metrics ORDER BY environment",
    )
    .await?;
    let mut teams = strings(
        &ctx,
        "SELECT DISTINCT scope FROM dora_metrics WHERE scope_kind = 'group' ORDER BY scope",
    )
    .await?;
    teams.retain(|t| visible.allows(t));
    let (schema, batches) = query(
        &ctx,
        "SELECT max(benchmark) AS benchmark, max(CAST(as_of AS VARCHAR)) AS as_of FROM dora_metrics",
    )
    .await?;
    let stored = rows_as_json(&schema, &batches)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let services = if page == "service" {
        let within = if caller.teams.is_empty() {
            "'org'".to_owned()
        } else {
            caller
                .teams
                .iter()
                .map(|t| quoted(t))
                .collect::<Vec<_>>()
                .join(", ")
        };
        strings(
            &ctx,
            &format!(
                "SELECT DISTINCT entity_ref FROM dora_scope_members WHERE scope IN ({within}) \
                 ORDER BY entity_ref"
            ),
        )
        .await?
    } else {
        Vec::new()
    };
    // The Team and Service pages need a team or a service; without one
    // they answer the choices only.
    let needs = match page.as_str() {
        "team" if !filters.scope.starts_with("group:") => Some("team"),
        "service" if !filters.scope.starts_with("component:") => Some("service"),
        _ => None,
    };
    let panels = fathom_dashboards::panels().map_err(ApiError::internal)?;
    let on_page: Vec<&Panel> = if needs.is_some() {
        Vec::new()
    } else {
        let mut on_page: Vec<&Panel> = panels.iter().filter(|p| p.pages.contains(&page)).collect();
        on_page.sort_by(|a, b| (a.order, &a.id).cmp(&(b.order, &b.id)));
        on_page
    };
    let answers = futures::future::join_all(
        on_page
            .iter()
            .map(|panel| panel_answer(&api, &ctx, &caller, panel, &filters, benchmark)),
    )
    .await;
    let body = json!({
        "page": page,
        "needs": needs,
        "filters": {
            "window_days": filters.window_days,
            "environment": filters.environment,
            "scope": filters.scope,
            "benchmark": benchmark.map_or_else(|| stored.get("benchmark").cloned().unwrap_or(Value::Null), |b| Value::from(b.name)),
        },
        "as_of": stored.get("as_of"),
        "options": {
            "windows": fathom_dashboards::WINDOWS,
            "environments": environments,
            "benchmarks": Benchmark::names().split(", ").map(str::to_owned).collect::<Vec<_>>(),
            "teams": teams,
            // Limited callers cannot see the organisation as a whole.
            "organisation": caller.teams.is_empty(),
            "report_page_views": api.config.report_page_views && api.config.events.is_some(),
            "services": services,
        },
        "panels": answers,
    });
    Ok(cached_json(&headers, &body))
}

/// `?source=&stream=&reason=&table=&limit=` of the data-health rows.
#[derive(Debug, Deserialize)]
pub(crate) struct HealthRowsQuery {
    source: Option<String>,
    stream: Option<String>,
    reason: Option<String>,
    table: Option<String>,
    limit: Option<usize>,
}

/// The tables whose unattributed rows the Data health page counts.
const UNATTRIBUTED_TABLES: [&str; 5] = [
    "deployments",
    "incidents",
    "pull_requests",
    "cost_allocations_daily",
    "cloud_costs_daily",
];

/// `GET /api/v1/health/{rows}`: the records behind the Data health counts —
/// `quarantine` (by source, stream, reason) or `unattributed` (a table's
/// rows with no entity, by source). Analysts and admins (the rows span
/// every team); at most `limit` (default 1,000), newest first.
pub(crate) async fn health_rows(
    State(api): State<Arc<Api>>,
    Path(rows): Path<String>,
    Query(params): Query<HealthRowsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    if !matches!(caller.role, Role::Analyst | Role::Admin) || !caller.teams.is_empty() {
        return Err(ApiError::forbidden(
            "the records behind data health span every team: analysts and admins only",
        ));
    }
    let limit = params.limit.unwrap_or(1_000).clamp(1, 1_000);
    let equal = |column: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| format!(" AND {column} = {}", quoted(v)))
            .unwrap_or_default()
    };
    let sql = match rows.as_str() {
        "quarantine" => format!(
            "SELECT quarantine_id, source, stream, location, line_number, column_name, reason, \
             CAST(quarantined_at AS VARCHAR) AS quarantined_at, substr(raw_record, 1, 500) AS raw_record \
             FROM quarantine WHERE true{}{}{} \
             ORDER BY quarantined_at DESC, quarantine_id LIMIT {}",
            equal("source", &params.source),
            equal("stream", &params.stream),
            equal("reason", &params.reason),
            limit + 1
        ),
        "unattributed" => {
            let table = params.table.as_deref().unwrap_or_default();
            let Some(def) = UNATTRIBUTED_TABLES
                .contains(&table)
                .then(|| fathom_models::tables::table(table))
                .flatten()
            else {
                return Err(ApiError::bad_request(format!(
                    "table `{table}`: use one of {}",
                    UNATTRIBUTED_TABLES.join(", ")
                )));
            };
            // Sources are a column of some tables only; elsewhere the
            // table has one source.
            let source = if def.column("source").is_some() {
                equal("source", &params.source)
            } else {
                String::new()
            };
            format!(
                "SELECT * FROM {} WHERE entity_ref IS NULL{source} LIMIT {}",
                def.name,
                limit + 1
            )
        }
        other => {
            return Err(ApiError::not_found(format!(
                "no `{other}` rows: use quarantine or unattributed"
            )));
        }
    };
    let ctx = api.session().await?;
    let (schema, batches) = query(&ctx, &sql).await?;
    let mut items = rows_as_json(&schema, &batches)?;
    let truncated = items.len() > limit;
    items.truncate(limit);
    Ok(cached_json(
        &headers,
        &json!({"items": items, "truncated": truncated}),
    ))
}

/// `/`, `/teams`, `/team`, `/service`, `/health`, `/rows`: the page shell
/// (public; its data needs a credential).
pub(crate) async fn shell() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The page loads nothing from elsewhere and runs no inline
            // script; the browser holds it to that. Inline styles are the
            // SVG labels' attributes.
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        fathom_dashboards::index_html(),
    )
        .into_response()
}

/// The dashboards' content security policy.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'none'";

/// `/assets/{file}`: the embedded script and stylesheet.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match fathom_dashboards::asset(&file) {
        Some((kind, body)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_panels_export_as_rfc4180_csv() {
        let rows = vec![
            json!({"source": "github", "last_error": "github: 502, \"bad gateway\"", "lag_seconds": 60}),
            json!({"source": "sentry", "last_error": null, "lag_seconds": 5}),
        ];
        let columns = columns_of(&rows);
        assert_eq!(columns, ["lag_seconds", "last_error", "source"]);
        assert_eq!(
            csv_of(&columns, &rows, true),
            "lag_seconds,last_error,source\n60,\"github: 502, \"\"bad gateway\"\"\",github\n5,,sentry\n"
        );
        let formula = vec![json!({"title": "=HYPERLINK(\"http://x\",\"y\")", "n": -3})];
        let columns = columns_of(&formula);
        assert_eq!(
            csv_of(&columns, &formula, true),
            "n,title\n-3,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\n"
        );
        assert_eq!(
            csv_of(&columns, &formula, false),
            "n,title\n-3,\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\n"
        );
    }

    #[test]
    fn another_benchmark_regrades_a_rows_tiers_and_leaves_other_rows_alone() {
        let Some(b) = Benchmark::named("dora-2021") else {
            panic!("dora-2021 is a benchmark");
        };
        let mut row = json!({
            "deployments_per_day": 2.0, "lead_time_p50_seconds": 1800.0,
            "change_failure_rate": 0.02, "time_to_restore_p50_seconds": 600.0,
            "failed_deployment_recovery_p50_seconds": 600.0,
            "deployment_frequency_tier": "low", "lead_time_tier": "low",
            "change_failure_rate_tier": "low", "recovery_tier": "low", "overall_tier": "low",
        });
        if let Value::Object(map) = &mut row {
            retier(map, b);
        }
        // Several deploys a day, under an hour, 2 %, ten minutes: elite.
        for column in [
            "deployment_frequency_tier",
            "lead_time_tier",
            "overall_tier",
        ] {
            assert_eq!(row[column], "elite", "{column}: {row}");
        }
        let mut plain = json!({"team": "x", "deployments": 3});
        let before = plain.clone();
        if let Value::Object(map) = &mut plain {
            retier(map, b);
        }
        assert_eq!(plain, before);
    }
}
