//! The usage endpoints: a scope's portal adoption (active users, adoption,
//! stickiness, its trend and what it uses most), and the organisation's
//! features, search success and template runs. Every number comes from the
//! usage marts as written — numbers about fewer than `[usage]
//! k_anonymity` people are already null there, flagged `suppressed` — so
//! nothing here can publish one. A caller limited to teams reads its own
//! groups' adoption and its teams' template rows, never the
//! organisation-wide breakdowns.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{Datelike, Months, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Visible, visible};
use crate::auth::caller;
use crate::{Api, ApiError, ApiResult, authorize_scope, cached_json, json_rows, quoted, scope_ref};

/// `?period=` of the scope endpoint: `90d` (days, 1–1096) or `12m`
/// (calendar months, 1–36).
#[derive(Debug, Deserialize)]
pub(crate) struct UsageQuery {
    period: Option<String>,
}

/// `?months=` of the organisation's endpoints (1–36, default 6).
#[derive(Debug, Deserialize)]
pub(crate) struct MonthsQuery {
    months: Option<u32>,
}

/// The first day of `period` ending on `last`, and whether it counts days.
fn period_start(text: &str, last: NaiveDate) -> ApiResult<(NaiveDate, bool)> {
    let bad = || {
        ApiError::bad_request(format!(
            "period `{text}`: use a number of days (`90d`, 1–1096) or months (`12m`, 1–36)"
        ))
    };
    let Some((at, unit)) = text.char_indices().last() else {
        return Err(bad());
    };
    let n: u32 = text[..at].parse().map_err(|_| bad())?;
    match unit {
        'd' if (1..=1096).contains(&n) => {
            Ok((last - chrono::Duration::days(i64::from(n) - 1), true))
        }
        'm' if (1..=36).contains(&n) => Ok((
            last.with_day(1)
                .and_then(|first| first.checked_sub_months(Months::new(n - 1)))
                .unwrap_or(last),
            false,
        )),
        _ => Err(bad()),
    }
}

/// The first month (`YYYY-MM`) of the last `months` ending at the newest
/// day of usage.
fn first_month(months: Option<u32>, last: NaiveDate) -> ApiResult<String> {
    let months = months.unwrap_or(6);
    if !(1..=36).contains(&months) {
        return Err(ApiError::bad_request(format!(
            "months `{months}`: use 1–36"
        )));
    }
    let first = last
        .with_day(1)
        .and_then(|first| first.checked_sub_months(Months::new(months - 1)))
        .unwrap_or(last);
    Ok(first.format("%Y-%m").to_string())
}

/// The newest day of usage, or 404 when the usage marts hold nothing.
async fn newest_usage_day(api: &Api) -> ApiResult<NaiveDate> {
    json_rows(
        api,
        "SELECT CAST(max(period_start) AS VARCHAR) AS newest FROM usage_active WHERE grain = 'day'",
    )
    .await?
    .first()
    .and_then(|row| row.get("newest").and_then(Value::as_str))
    .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
    .ok_or_else(|| {
        ApiError::not_found(
            "no portal usage yet: the usage marts are computed by `fathom transform` from portal events",
        )
    })
}

/// Refuses a caller limited to teams (403): the organisation's
/// breakdowns are made of every team's people.
async fn organisation_caller(api: &Api, headers: &HeaderMap) -> ApiResult<()> {
    let caller = caller(api, headers).await?;
    if visible(api, &caller).await? == Visible::All {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the organisation's usage breakdowns are for callers not limited to teams",
        ))
    }
}

const ACTIVE_COLUMNS: &str = "CAST(period_start AS VARCHAR) AS period_start, members, active_users, \
     weekly_active_users, monthly_active_users, new_users, returning_users, adoption, stickiness, \
     suppressed, suppression";

/// `GET /api/v1/usage/{scope}?period=`: a group's (with its sub-groups) or
/// the organisation's active users and adoption over the period — days or
/// months — with the newest day's rolling counts, and the plugins its
/// people used most.
pub(crate) async fn usage(
    State(api): State<Arc<Api>>,
    Path(raw): Path<String>,
    Query(params): Query<UsageQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let scope = scope_ref(&raw)?;
    authorize_scope(&api, &caller, &scope).await?;
    if scope != "org" && !scope.starts_with("group:") {
        return Err(ApiError::bad_request(format!(
            "`{scope}`: usage is counted per group (with its sub-groups) or for `org`"
        )));
    }
    let last = newest_usage_day(&api).await?;
    let (start, days) = period_start(params.period.as_deref().unwrap_or("12m"), last)?;
    let grain = if days { "day" } else { "month" };
    let series = json_rows(
        &api,
        &format!(
            "SELECT {ACTIVE_COLUMNS} FROM usage_active WHERE scope = {} AND grain = '{grain}' \
             AND period_start >= DATE '{start}' ORDER BY period_start",
            quoted(&scope)
        ),
    )
    .await?;
    if series.is_empty() {
        return Err(ApiError::not_found(format!(
            "no usage of `{scope}` (scopes are the catalog's groups and `org`)"
        )));
    }
    let latest = json_rows(
        &api,
        &format!(
            "SELECT {ACTIVE_COLUMNS} FROM usage_active WHERE scope = {} AND grain = 'day' \
             AND period_start = DATE '{last}'",
            quoted(&scope)
        ),
    )
    .await?;
    // The scope's teams' published rows (and, for the organisation, the
    // pooled `other` too): sums of published events, never of users.
    let teams = if scope == "org" {
        "true".to_owned()
    } else {
        format!(
            "team IN (SELECT entity_ref FROM catalog_entities WHERE kind = 'group' AND \
             (entity_ref = {scope} OR parent_ref = {scope}))",
            scope = quoted(&scope)
        )
    };
    let plugins = json_rows(
        &api,
        &format!(
            "SELECT plugin_id, sum(events) AS events FROM usage_daily \
             WHERE NOT suppressed AND {teams} AND day >= DATE '{start}' \
             GROUP BY plugin_id ORDER BY events DESC, plugin_id LIMIT 10"
        ),
    )
    .await?;
    let body = json!({
        "scope": scope,
        "grain": grain,
        "from": start.to_string(),
        "to": last.to_string(),
        "latest": latest.first(),
        "series": series,
        "top_plugins": plugins,
    });
    Ok(cached_json(&headers, &body))
}

/// `GET /api/v1/usage/features?months=`: each plugin and feature per
/// month — users, teams, events, new users and week-4 retention.
pub(crate) async fn features(
    State(api): State<Arc<Api>>,
    Query(params): Query<MonthsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    organisation_caller(&api, &headers).await?;
    let last = newest_usage_day(&api).await?;
    let first = first_month(params.months, last)?;
    let rows = json_rows(
        &api,
        &format!(
            "SELECT month, plugin_id, feature, events, users, teams, new_users, retained_week4, \
             suppressed, suppression FROM usage_features WHERE month >= {} \
             ORDER BY month, users DESC NULLS LAST, plugin_id, feature",
            quoted(&first)
        ),
    )
    .await?;
    Ok(cached_json(
        &headers,
        &json!({"from": first, "to": last.to_string(), "features": rows}),
    ))
}

/// `GET /api/v1/usage/search?months=`: search success per month and the
/// newest month's queries most often left without a click (only queries
/// at least k people typed are ever stored).
pub(crate) async fn search(
    State(api): State<Arc<Api>>,
    Query(params): Query<MonthsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    organisation_caller(&api, &headers).await?;
    let last = newest_usage_day(&api).await?;
    let first = first_month(params.months, last)?;
    let months = json_rows(
        &api,
        &format!(
            "SELECT month, searches, users, sessions, zero_result_searches, zero_result_rate, \
             clicked_searches, success_rate, mean_clicked_rank, suppressed, suppression \
             FROM usage_search WHERE month >= {} ORDER BY month",
            quoted(&first)
        ),
    )
    .await?;
    let queries = json_rows(
        &api,
        "SELECT month, query, searches, users, unclicked_searches, zero_result_searches, rank \
         FROM usage_search_queries \
         WHERE month = (SELECT max(month) FROM usage_search_queries) ORDER BY rank LIMIT 20",
    )
    .await?;
    Ok(cached_json(
        &headers,
        &json!({"from": first, "to": last.to_string(), "months": months, "unclicked_queries": queries}),
    ))
}

/// `GET /api/v1/usage/templates?months=`: template runs, outcomes and
/// minutes saved per month, template and team. A caller limited to teams
/// gets its visible teams' rows only (no `other`, no totals).
pub(crate) async fn templates(
    State(api): State<Arc<Api>>,
    Query(params): Query<MonthsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let scopes = visible(&api, &caller).await?;
    let last = newest_usage_day(&api).await?;
    let first = first_month(params.months, last)?;
    let rows = json_rows(
        &api,
        &format!(
            "SELECT month, template_ref, team, runs, succeeded, failed, unknown_outcome, users, \
             minutes_saved, suppressed, suppression FROM usage_templates \
             WHERE month >= {} AND {} ORDER BY month, template_ref, team",
            quoted(&first),
            scopes.sql_filter("team")
        ),
    )
    .await?;
    // Per template: the published teams plus `other` are every run, as
    // long as `other` is itself published.
    let totals = if scopes == Visible::All {
        json_rows(
            &api,
            &format!(
                "SELECT template_ref, sum(runs) AS runs, sum(failed) AS failed, \
                 sum(minutes_saved) AS minutes_saved, \
                 bool_or(team = 'other' AND suppressed) AS incomplete \
                 FROM usage_templates WHERE month >= {} AND (NOT suppressed OR team = 'other') \
                 GROUP BY template_ref ORDER BY minutes_saved DESC NULLS LAST, template_ref",
                quoted(&first)
            ),
        )
        .await?
    } else {
        Vec::new()
    };
    Ok(cached_json(
        &headers,
        &json!({"from": first, "to": last.to_string(), "templates": rows, "totals": totals}),
    ))
}

/// The body of `POST /api/v1/usage/page-views`.
#[derive(Debug, Deserialize)]
pub(crate) struct PageView {
    page: String,
    #[serde(default)]
    path: Option<String>,
}

/// `POST /api/v1/usage/page-views`: one view of a dashboard page by the
/// caller, landed as a Backstage-shaped portal event of plugin `fathom`
/// (the caller's identity hashed at intake like every event's), so the
/// usage marts count Fathom's own adoption. 202 with `recorded` false when
/// reporting is off (`[api] report_page_views`) or no `portal_events`
/// source holds the pseudonymization key.
pub(crate) async fn page_view(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<axum::Json<PageView>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let axum::Json(view) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if fathom_dashboards::page(&view.page).is_none() {
        return Err(ApiError::bad_request(format!(
            "page `{}`: one of {}",
            view.page,
            fathom_dashboards::page_names()
        )));
    }
    let recorded = match (&api.config.events, api.config.report_page_views) {
        (Some(events), true) => {
            // The path only, never its query: filters can name people's
            // teams, and a subject is kept as sent.
            let path: String = view
                .path
                .as_deref()
                .unwrap_or_default()
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let event = json!({
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "action": "navigate",
                "subject": path,
                "context": {"pluginId": "fathom", "routeRef": format!("/{}", view.page), "extension": "dashboards"},
                "user": {"userEntityRef": caller.actor},
            });
            let posted = fathom_ingest::files::events::ingest_posted(
                &api.warehouse,
                &events.source,
                &events.pseudonymizer,
                event.to_string().as_bytes(),
                "dashboards",
            )
            .await
            .map_err(ApiError::internal)?;
            posted.accepted == 1
        }
        _ => false,
    };
    let mut response =
        axum::response::IntoResponse::into_response(axum::Json(json!({"recorded": recorded})));
    *response.status_mut() = axum::http::StatusCode::ACCEPTED;
    Ok(response)
}
