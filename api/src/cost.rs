//! The cost endpoint: a scope's cost per day or month over a period, what
//! it is made of, and its month-over-month change with the driver — for
//! the roles that may see cost (cost viewers, analysts, admins), within
//! the scopes the caller may read.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{Datelike, Months, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::caller;
use crate::{Api, ApiError, ApiResult, authorize_scope, cached_json, json_rows, quoted, scope_ref};

/// `?period=&granularity=&basis=` of the cost endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct CostQuery {
    period: Option<String>,
    granularity: Option<String>,
    basis: Option<String>,
}

/// `?period=&month=` of the coverage endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct CoverageQuery {
    period: Option<String>,
    month: Option<String>,
}

/// How far back the period reaches, ending at the last day with cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Days(u32),
    Months(u32),
}

impl Period {
    /// `30d` (days) or `12m` (calendar months, the last one included).
    fn parse(text: &str) -> ApiResult<Self> {
        let bad = || {
            ApiError::bad_request(format!(
                "period `{text}`: use a number of days (`30d`, 1–1096) or months (`12m`, 1–36)"
            ))
        };
        let Some((at, unit)) = text.char_indices().last() else {
            return Err(bad());
        };
        let n: u32 = text[..at].parse().map_err(|_| bad())?;
        match unit {
            'd' if (1..=1096).contains(&n) => Ok(Self::Days(n)),
            'm' if (1..=36).contains(&n) => Ok(Self::Months(n)),
            _ => Err(bad()),
        }
    }

    /// The first day of the period ending on `last`.
    fn start(self, last: NaiveDate) -> NaiveDate {
        match self {
            Self::Days(n) => last - chrono::Duration::days(i64::from(n) - 1),
            Self::Months(n) => last
                .with_day(1)
                .and_then(|first| first.checked_sub_months(Months::new(n - 1)))
                .unwrap_or(last),
        }
    }
}

/// Refuses callers whose role may not see cost (403).
pub(crate) async fn cost_caller(api: &Api, headers: &HeaderMap) -> ApiResult<crate::auth::Caller> {
    let caller = caller(api, headers).await?;
    if caller.role.sees_cost() {
        Ok(caller)
    } else {
        Err(ApiError::forbidden(
            "cost is visible to the cost-viewer, analyst and admin roles",
        ))
    }
}

/// The newest day with cost, if any.
pub(crate) async fn newest_cost_day(api: &Api) -> ApiResult<Option<NaiveDate>> {
    Ok(json_rows(
        api,
        "SELECT CAST(max(date) AS VARCHAR) AS newest FROM cost_daily",
    )
    .await?
    .first()
    .and_then(|row| row.get("newest").and_then(Value::as_str))
    .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()))
}

/// 404: the cost marts hold nothing yet.
pub(crate) fn no_cost_yet() -> ApiError {
    ApiError::not_found(
        "no cost yet: the cost marts are computed by `fathom transform` from OpenCost and cost report data",
    )
}

/// SQL: the `cost_daily` rows (alias `d`) of `scope` — for `org` every
/// row, shared cost included.
pub(crate) fn members(scope: &str) -> String {
    if scope == "org" {
        "true".to_owned()
    } else {
        format!(
            "d.entity_ref IN (SELECT entity_ref FROM dora_scope_members WHERE scope = {})",
            quoted(scope)
        )
    }
}

/// `GET /api/v1/cost/{scope}`: the series, the breakdown by source and
/// category, and the months with their change.
pub(crate) async fn cost(
    State(api): State<Arc<Api>>,
    Path(raw): Path<String>,
    Query(params): Query<CostQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = cost_caller(&api, &headers).await?;
    let scope = scope_ref(&raw)?;
    authorize_scope(&api, &caller, &scope).await?;
    let granularity = params.granularity.as_deref().unwrap_or("month");
    let bucket = match granularity {
        "day" => "CAST(d.date AS VARCHAR)",
        "month" => "d.billing_period",
        other => {
            return Err(ApiError::bad_request(format!(
                "granularity `{other}`: use day or month"
            )));
        }
    };
    let basis = params.basis.as_deref().unwrap_or("effective");
    let amount = match basis {
        "billed" => "d.billed_cost",
        "effective" => "d.effective_cost",
        other => {
            return Err(ApiError::bad_request(format!(
                "basis `{other}`: use billed or effective"
            )));
        }
    };
    let default_period = if granularity == "day" { "30d" } else { "12m" };
    let period = Period::parse(params.period.as_deref().unwrap_or(default_period))?;

    let known = scope == "org"
        || !json_rows(
            &api,
            &format!(
                "SELECT 1 AS known FROM dora_scope_members WHERE scope = {} LIMIT 1",
                quoted(&scope)
            ),
        )
        .await?
        .is_empty();
    if !known {
        return Err(ApiError::not_found(format!(
            "no scope `{scope}` (scopes come from the catalog)"
        )));
    }
    let Some(last) = newest_cost_day(&api).await? else {
        return Err(no_cost_yet());
    };
    let start = period.start(last);
    let window = match period {
        Period::Days(_) => format!("d.date BETWEEN DATE '{start}' AND DATE '{last}'"),
        Period::Months(_) => format!("d.billing_period >= '{}'", start.format("%Y-%m")),
    };
    let rows = format!("FROM cost_daily d WHERE {} AND {window}", members(&scope));
    let series = json_rows(
        &api,
        &format!(
            "SELECT {bucket} AS period, d.billing_currency AS currency, sum({amount}) AS cost \
             {rows} GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )
    .await?;
    let breakdown = json_rows(
        &api,
        &format!(
            "SELECT d.cost_source, d.service_category, d.charge_category, d.attribution, \
             d.billing_currency AS currency, sum({amount}) AS cost \
             {rows} GROUP BY 1, 2, 3, 4, 5 ORDER BY 5, 6 DESC, 1, 2, 3, 4"
        ),
    )
    .await?;
    let months = json_rows(
        &api,
        &format!(
            "SELECT billing_period AS month, billing_currency AS currency, effective_cost, \
             billed_cost, previous_effective_cost, change, change_ratio, significant, complete, \
             driver, driver_change FROM cost_monthly \
             WHERE scope = {} AND billing_period >= '{}' ORDER BY 1, 2",
            quoted(&scope),
            start.format("%Y-%m")
        ),
    )
    .await?;
    let body = json!({
        "scope": scope,
        "basis": basis,
        "granularity": granularity,
        "from": start.to_string(),
        "to": last.to_string(),
        "series": series,
        "breakdown": breakdown,
        "months": months,
    });
    Ok(cached_json(&headers, &body))
}

/// `GET /api/v1/cost/{component}/benchmark`: the component's unit costs
/// per month, and its peer group in the latest month.
pub(crate) async fn benchmark(
    State(api): State<Arc<Api>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = cost_caller(&api, &headers).await?;
    let scope = scope_ref(&raw)?;
    authorize_scope(&api, &caller, &scope).await?;
    if !scope.starts_with("component:") {
        return Err(ApiError::bad_request(format!(
            "`{scope}`: benchmarks compare components with their peers; ask for a component"
        )));
    }
    let months = json_rows(
        &api,
        &format!(
            "SELECT billing_period AS month, billing_currency AS currency, effective_cost, \
             requests, deployments, merged_pull_requests, cost_per_1k_requests, \
             cost_per_deployment, cost_per_merged_pull_request, cost_in_engineers, cpu_efficiency, \
             ram_efficiency, peer_group, peers, percentile, peer_median, gap_to_peer_median \
             FROM cost_benchmarks WHERE entity_ref = {} ORDER BY 1, 2",
            quoted(&scope)
        ),
    )
    .await?;
    let Some(latest) = months.last().cloned() else {
        return Err(ApiError::not_found(format!(
            "no cost benchmark for `{scope}` yet (it needs cost in `cost_daily`)"
        )));
    };
    let text = |key: &str| latest.get(key).and_then(Value::as_str).unwrap_or_default();
    let peers = json_rows(
        &api,
        &format!(
            "SELECT entity_ref, effective_cost, requests, cost_per_1k_requests, percentile \
             FROM cost_benchmarks WHERE billing_period = {} AND billing_currency = {} \
             AND peer_group = {} ORDER BY percentile, entity_ref",
            quoted(text("month")),
            quoted(text("currency")),
            quoted(text("peer_group"))
        ),
    )
    .await?;
    let body = json!({
        "scope": scope,
        "latest": latest,
        "peers": peers,
        "months": months,
    });
    Ok(cached_json(&headers, &body))
}

/// `GET /api/v1/cost/coverage?period=12m&month=`: tag coverage per month,
/// and the unmapped resources of the latest month (or `month`), largest
/// first — the work list of whoever owns tagging.
pub(crate) async fn coverage(
    State(api): State<Arc<Api>>,
    Query(params): Query<CoverageQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = cost_caller(&api, &headers).await?;
    // Coverage is the whole organisation's.
    authorize_scope(&api, &caller, "org").await?;
    let period = Period::parse(params.period.as_deref().unwrap_or("12m"))?;
    let months = json_rows(
        &api,
        "SELECT billing_period AS month, cost_source, provider, billing_currency AS currency, \
         taggable_cost, mapped_cost, unmapped_cost, coverage, unmapped_resources \
         FROM cost_coverage ORDER BY 1, 2, 3, 4",
    )
    .await?;
    let Some(latest) = months
        .iter()
        .filter_map(|m| m.get("month").and_then(Value::as_str))
        .max()
        .map(str::to_owned)
    else {
        return Err(no_cost_yet());
    };
    let last = NaiveDate::parse_from_str(&format!("{latest}-01"), "%Y-%m-%d")
        .map_err(|e| ApiError::internal(format!("month `{latest}`: {e}")))?;
    let since = period.start(last).format("%Y-%m").to_string();
    let months: Vec<_> = months
        .into_iter()
        .filter(|m| m.get("month").and_then(Value::as_str) >= Some(since.as_str()))
        .collect();
    let listed = match params.month {
        Some(month)
            if months
                .iter()
                .any(|m| m.get("month").and_then(Value::as_str) == Some(month.as_str())) =>
        {
            month
        }
        Some(month) => {
            return Err(ApiError::not_found(format!(
                "no cost coverage for month `{month}` (months are `YYYY-MM` within the period)"
            )));
        }
        None => latest.clone(),
    };
    let unmapped = json_rows(
        &api,
        &format!(
            "SELECT cost_source, provider, resource, billing_currency AS currency, \
             sum(cost) AS unmapped_cost FROM ( \
                 SELECT 'cloud' AS cost_source, provider, coalesce(resource_id, line_item_id) AS resource, \
                        coalesce(billing_currency, 'USD') AS billing_currency, effective_cost_usd AS cost \
                 FROM cloud_costs_daily \
                 WHERE billing_period = {month} AND charge_category = 'usage' AND entity_ref IS NULL \
                 UNION ALL \
                 SELECT 'kubernetes', 'kubernetes', allocation_name, 'USD', total_cost_usd \
                 FROM cost_allocations_daily \
                 WHERE month = {month} AND entity_ref IS NULL AND strpos(allocation_name, '__idle__') = 0 \
             ) u GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 3 LIMIT 100",
            month = quoted(&listed)
        ),
    )
    .await?;
    // Commitment discounts of the same months: utilization, waste and
    // coverage per provider, account and type.
    let commitments = json_rows(
        &api,
        &format!(
            "SELECT billing_period AS month, provider, billing_account_id, \
             commitment_discount_type AS commitment_type, billing_currency AS currency, commitments, \
             used_commitment, unused_commitment, utilization, covered_list_cost, eligible_list_cost, \
             coverage, savings, purchases_billed \
             FROM cost_commitments WHERE billing_period >= {since} ORDER BY 1, 2, 3, 4, 5",
            since = quoted(&since)
        ),
    )
    .await?;
    let body = json!({
        "from": since,
        "to": latest,
        "months": months,
        "unmapped_month": listed,
        "unmapped": unmapped,
        "commitments": commitments,
    });
    Ok(cached_json(&headers, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_reach_back() -> ApiResult<()> {
        let last = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap_or_default();
        assert_eq!(Period::parse("30d")?.start(last).to_string(), "2026-06-01");
        assert_eq!(Period::parse("1m")?.start(last).to_string(), "2026-06-01");
        assert_eq!(Period::parse("12m")?.start(last).to_string(), "2025-07-01");
        for bad in ["", "d", "0d", "12", "37m", "x1m", "1y", "1é"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
