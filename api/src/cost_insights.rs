//! Endpoints answering what the Backstage Cost Insights plugin's client API
//! returns, so a portal team's client is a few `fetch` calls: the last
//! complete billing date, a user's groups, a group's projects (its
//! components), daily cost
//! of a group, a project or any catalog entity, and daily metric data —
//! over the plugin's ISO 8601 repeating intervals (`R2/P30D/2026-07-01`).
//! Amounts are effective cost in one currency (`?currency=`, default USD).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{Datelike, Duration, Months, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cost::{cost_caller, members, newest_cost_day, no_cost_yet};
use crate::{Api, ApiError, ApiResult, authorize_scope, cached_json, json_rows, quoted, scope_ref};

/// The plugin's repeating interval: `count` periods of `period` ending
/// before `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Intervals {
    count: u32,
    period: Period,
    end: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Days(u32),
    /// `P3M`: calendar quarters.
    Quarter,
}

impl Intervals {
    /// `R<n>/P<d>D/<end>` or `R<n>/P3M/<end>`, as the plugin writes them.
    fn parse(text: &str) -> ApiResult<Self> {
        let bad = || {
            ApiError::bad_request(format!(
                "intervals `{text}`: use an ISO 8601 repeating interval such as R2/P30D/2026-07-01 \
                 (durations P<n>D or P3M, the end date exclusive)"
            ))
        };
        let mut parts = text.split('/');
        let (Some(repeat), Some(duration), Some(end), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let count: u32 = repeat
            .strip_prefix('R')
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=12).contains(n))
            .ok_or_else(bad)?;
        let period = match duration {
            "P3M" => Period::Quarter,
            other => Period::Days(
                other
                    .strip_prefix('P')
                    .and_then(|d| d.strip_suffix('D'))
                    .and_then(|d| d.parse().ok())
                    .filter(|d| (1..=366).contains(d))
                    .ok_or_else(bad)?,
            ),
        };
        let end = NaiveDate::parse_from_str(end, "%Y-%m-%d").map_err(|_| bad())?;
        Ok(Self { count, period, end })
    }

    /// The first day, as the plugin computes it: `count` periods before
    /// the last included day (for quarters, before that day's quarter).
    fn start(self) -> NaiveDate {
        let last = self.end - Duration::days(1);
        match self.period {
            Period::Days(days) => last - Duration::days(i64::from(days) * i64::from(self.count)),
            Period::Quarter => {
                let quarter = NaiveDate::from_ymd_opt(last.year(), (last.month0() / 3) * 3 + 1, 1)
                    .unwrap_or(last);
                quarter
                    .checked_sub_months(Months::new(3 * self.count))
                    .unwrap_or(quarter)
            }
        }
    }

    /// The first day of the last period: the change compares it with the
    /// period before.
    fn current_start(self) -> NaiveDate {
        match self.period {
            Period::Days(days) => self.end - Duration::days(i64::from(days)),
            Period::Quarter => self
                .end
                .checked_sub_months(Months::new(3))
                .unwrap_or(self.end),
        }
    }
}

/// `?intervals=&currency=`.
#[derive(Debug, Deserialize)]
pub(crate) struct IntervalQuery {
    intervals: Option<String>,
    currency: Option<String>,
}

impl IntervalQuery {
    fn intervals(&self) -> ApiResult<Intervals> {
        let text = self.intervals.as_deref().ok_or_else(|| {
            ApiError::bad_request("`intervals` is required, e.g. R2/P30D/2026-07-01")
        })?;
        Intervals::parse(text)
    }

    fn currency(&self) -> String {
        self.currency.clone().unwrap_or_else(|| "USD".to_owned())
    }
}

/// `{date, amount}` for every day of the intervals (0 where nothing was
/// recorded) and `{ratio, amount}` of the last period against the one
/// before (no ratio when that one was 0).
fn series(rows: &[serde_json::Map<String, Value>], intervals: Intervals) -> (Value, Value) {
    let amounts: std::collections::BTreeMap<String, f64> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.get("date")?.as_str()?.to_owned(),
                r.get("amount").and_then(Value::as_f64).unwrap_or(0.0),
            ))
        })
        .collect();
    let current_start = intervals.current_start();
    let previous_start = match intervals.period {
        Period::Days(days) => current_start - Duration::days(i64::from(days)),
        Period::Quarter => current_start
            .checked_sub_months(Months::new(3))
            .unwrap_or(current_start),
    };
    let (mut previous, mut current) = (0.0, 0.0);
    let mut aggregation = Vec::new();
    let mut day = intervals.start();
    while day < intervals.end {
        let key = day.to_string();
        let amount = amounts.get(&key).copied().unwrap_or(0.0);
        if day >= current_start {
            current += amount;
        } else if day >= previous_start {
            previous += amount;
        }
        aggregation.push(json!({"date": key, "amount": amount}));
        day += Duration::days(1);
    }
    let mut change = json!({"amount": current - previous});
    if previous != 0.0
        && let Value::Object(map) = &mut change
    {
        map.insert("ratio".to_owned(), json!((current - previous) / previous));
    }
    (Value::Array(aggregation), change)
}

/// Daily effective cost of `scope` (`org`: everything) over `intervals`.
async fn daily_cost(
    api: &Api,
    scope: &str,
    intervals: Intervals,
    currency: &str,
) -> ApiResult<Value> {
    let rows = json_rows(
        api,
        &format!(
            "SELECT CAST(d.date AS VARCHAR) AS date, sum(d.effective_cost) AS amount \
             FROM cost_daily d WHERE {} AND d.billing_currency = {} \
             AND d.date >= DATE '{}' AND d.date < DATE '{}' GROUP BY 1",
            members(scope),
            quoted(currency),
            intervals.start(),
            intervals.end
        ),
    )
    .await?;
    let (aggregation, change) = series(&rows, intervals);
    Ok(json!({"id": scope, "aggregation": aggregation, "change": change}))
}

/// `getLastCompleteBillingDate`: the day before the newest day with cost
/// (the newest may still be filling), as a JSON string.
pub(crate) async fn last_complete_billing_date(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    cost_caller(&api, &headers).await?;
    let Some(newest) = newest_cost_day(&api).await? else {
        return Err(no_cost_yet());
    };
    Ok(cached_json(
        &headers,
        &json!((newest - Duration::days(1)).to_string()),
    ))
}

/// `getUserGroups`: the groups a user is a member of in the catalog, as
/// `{id, name}` (the group's title, else its name). The user is a login
/// id (`jdoe`, meaning `user:default/jdoe`) or a user ref.
pub(crate) async fn user_groups(
    State(api): State<Arc<Api>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    cost_caller(&api, &headers).await?;
    let user = if user.contains(':') {
        scope_ref(&user)?
    } else {
        format!("user:default/{}", user.to_ascii_lowercase())
    };
    let rows = json_rows(
        &api,
        &format!(
            "SELECT g.entity_ref AS id, coalesce(g.title, g.name) AS name \
             FROM entity_relations r JOIN catalog_entities g ON g.entity_ref = r.target_ref \
             WHERE r.source_ref = {} AND r.relation_type = 'memberOf' AND g.kind = 'group' \
             ORDER BY 1",
            quoted(&user)
        ),
    )
    .await?;
    Ok(cached_json(
        &headers,
        &Value::Array(rows.into_iter().map(Value::Object).collect()),
    ))
}

/// `getGroupProjects`: the group's components (its sub-groups' included),
/// as `{id}`.
pub(crate) async fn group_projects(
    State(api): State<Arc<Api>>,
    Path(group): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = cost_caller(&api, &headers).await?;
    let scope = scope_ref(&group)?;
    authorize_scope(&api, &caller, &scope).await?;
    let rows = json_rows(
        &api,
        &format!(
            "SELECT entity_ref AS id FROM dora_scope_members WHERE scope = {} ORDER BY 1",
            quoted(&scope)
        ),
    )
    .await?;
    Ok(cached_json(
        &headers,
        &Value::Array(rows.into_iter().map(Value::Object).collect()),
    ))
}

/// `getGroupDailyCost`, `getProjectDailyCost`, `getCatalogEntityDailyCost`:
/// one scope's daily cost (a group with its sub-groups, a component, a
/// system or domain; `org`).
pub(crate) async fn entity_daily_cost(
    State(api): State<Arc<Api>>,
    Path(entity): Path<String>,
    Query(params): Query<IntervalQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = cost_caller(&api, &headers).await?;
    let scope = scope_ref(&entity)?;
    authorize_scope(&api, &caller, &scope).await?;
    let body = daily_cost(&api, &scope, params.intervals()?, &params.currency()).await?;
    Ok(cached_json(&headers, &body))
}

/// `getDailyMetricData`: `requests` (served, from `service_metrics_daily`)
/// or `deployments` (completed production deployments) per day, for the
/// whole organisation, as the plugin compares them with cost.
pub(crate) async fn daily_metric(
    State(api): State<Arc<Api>>,
    Path(metric): Path<String>,
    Query(params): Query<IntervalQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = cost_caller(&api, &headers).await?;
    authorize_scope(&api, &caller, "org").await?;
    let intervals = params.intervals()?;
    let sql = match metric.as_str() {
        "requests" => {
            "SELECT CAST(date AS VARCHAR) AS date, CAST(sum(request_count) AS DOUBLE) AS amount \
                       FROM service_metrics_daily WHERE date >= DATE '{start}' AND date < DATE '{end}' GROUP BY 1"
        }
        "deployments" => {
            "SELECT CAST(CAST(finished_at AS DATE) AS VARCHAR) AS date, CAST(count(*) AS DOUBLE) AS amount \
                          FROM dora_deployments WHERE completed AND finished_at >= TIMESTAMP '{start}T00:00:00Z' \
                          AND finished_at < TIMESTAMP '{end}T00:00:00Z' GROUP BY 1"
        }
        other => {
            return Err(ApiError::not_found(format!(
                "no metric `{other}`: use requests or deployments"
            )));
        }
    };
    let rows = json_rows(
        &api,
        &sql.replace("{start}", &intervals.start().to_string())
            .replace("{end}", &intervals.end.to_string()),
    )
    .await?;
    let (aggregation, change) = series(&rows, intervals);
    Ok(cached_json(
        &headers,
        &json!({"id": metric, "format": "number", "aggregation": aggregation, "change": change}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_the_plugin_writes_them() -> ApiResult<()> {
        // The plugin's P30D range for a last complete day of 30 June: two
        // thirty-day periods back from it.
        let thirty = Intervals::parse("R2/P30D/2026-07-01")?;
        assert_eq!(thirty.start().to_string(), "2026-05-01");
        assert_eq!(thirty.current_start().to_string(), "2026-06-01");
        // P3M: two quarters before the last complete day's quarter.
        let quarters = Intervals::parse("R2/P3M/2026-07-01")?;
        assert_eq!(quarters.start().to_string(), "2025-10-01");
        assert_eq!(quarters.current_start().to_string(), "2026-04-01");
        for bad in [
            "",
            "R2/P30D",
            "R0/P30D/2026-07-01",
            "R2/P1Y/2026-07-01",
            "R2/P30D/July",
            "2/P30D/2026-07-01",
        ] {
            assert!(Intervals::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn every_day_is_present_and_the_change_compares_the_periods() -> ApiResult<()> {
        let intervals = Intervals::parse("R2/P2D/2026-06-05")?;
        let rows: Vec<serde_json::Map<String, Value>> = [("2026-06-02", 1.0), ("2026-06-04", 3.0)]
            .iter()
            .filter_map(|(d, a)| json!({"date": d, "amount": a}).as_object().cloned())
            .collect();
        let (aggregation, change) = series(&rows, intervals);
        assert_eq!(
            aggregation,
            json!([
                {"date": "2026-05-31", "amount": 0.0},
                {"date": "2026-06-01", "amount": 0.0},
                {"date": "2026-06-02", "amount": 1.0},
                {"date": "2026-06-03", "amount": 0.0},
                {"date": "2026-06-04", "amount": 3.0},
            ])
        );
        assert_eq!(change, json!({"amount": 2.0, "ratio": 2.0}));
        Ok(())
    }
}
