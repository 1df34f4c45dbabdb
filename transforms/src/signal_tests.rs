//! `deployment_signals` on hand-computed cases: a new issue timed to a
//! deployment with a jump in the project's events makes it suspect; a new
//! issue without a jump, or a jump without a new issue, does not; an issue
//! is blamed on the latest deployment before it, not an earlier one. An
//! hourly jump in errors after a deployment makes it suspect, unless it
//! began before the deployment, the same hours a week before were as
//! high, or a later deployment came before it.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use fathom_models::tables::{
    DEPLOYMENTS, ERROR_COUNTS_DAILY, ERROR_ISSUES_DAILY, SERVICE_METRICS_DAILY,
    SERVICE_METRICS_HOURLY,
};
use serde_json::{Map, Value, json};

use super::properties::{register, replace_in_memory, start};
use super::{Parameters, compute, marts};

type Tables = BTreeMap<&'static str, Vec<Map<String, Value>>>;

fn push(tables: &mut Tables, table: &'static str, value: Value) {
    if let Value::Object(map) = value {
        tables.entry(table).or_default().push(map);
    }
}

const API: &str = "component:default/api";

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 5, 1).unwrap_or_default() + Duration::days(n)
}

/// 30 days of the project's events (100 a day, 90–110 alternating) and
/// the service's metrics (1 % errors, p95 0.2 s); deployments on days 0
/// (baseline), 14, 20, 20 (later that day) and 26.
fn tables() -> Tables {
    let mut t = Tables::new();
    let jumps: BTreeMap<i64, f64> = BTreeMap::from([(14, 900.0), (24, 1_000.0)]);
    for n in 0..30 {
        let usual = if n % 2 == 0 { 90.0 } else { 110.0 };
        let events = jumps.get(&n).copied().unwrap_or(usual);
        push(
            &mut t,
            ERROR_COUNTS_DAILY.name,
            json!({"date": day(n).to_string(), "source": "sentry", "project_slug": "api", "entity_ref": API,
                   "event_count": events as i64}),
        );
        // The error rate quadruples on day 24 (an incident nobody deployed).
        let errors = if n == 24 { 400 } else { 100 };
        push(
            &mut t,
            SERVICE_METRICS_DAILY.name,
            json!({"date": day(n).to_string(), "source": "datadog", "service_name": "api", "entity_ref": API,
                   "request_count": 10_000, "error_count": errors, "latency_p95_seconds": 0.2}),
        );
    }
    for (id, n, hour) in [
        ("d0", 0, 10),
        ("d1", 14, 10),
        ("d2", 20, 9),
        ("d3", 20, 15),
        ("d4", 26, 10),
    ] {
        let finished = format!("{}T{hour:02}:10:00Z", day(n));
        push(
            &mut t,
            DEPLOYMENTS.name,
            json!({"deployment_id": id, "source": "import", "entity_ref": API, "environment": "production",
                   "status": "success", "started_at": format!("{}T{hour:02}:00:00Z", day(n)), "finished_at": finished}),
        );
    }
    // Issue 1: 20 minutes after d1, with the day's jump: d1 is suspect.
    // Issue 2: after d3 (the later of day 20's two), no jump: normal.
    // Issue 3: 30 hours after d4 finished: outside the 24 hours.
    for (id, first_seen) in [
        ("i1", format!("{}T10:30:00Z", day(14))),
        ("i2", format!("{}T15:40:00Z", day(20))),
        ("i3", format!("{}T16:10:00Z", day(27))),
    ] {
        let date = &first_seen[..10];
        push(
            &mut t,
            ERROR_ISSUES_DAILY.name,
            json!({"date": date, "source": "sentry", "issue_id": id, "project_slug": "api", "entity_ref": API,
                   "event_count": 5, "first_seen_at": first_seen}),
        );
    }
    t
}

type Signals = BTreeMap<(String, String), Map<String, Value>>;

async fn signals(tables: &Tables) -> Result<Signals, String> {
    let ctx = register(tables)?;
    let as_of = start() + Duration::days(60);
    for name in ["dora_deployments", "deployment_signals"] {
        let mart = marts::named(name).ok_or(name)?;
        let batches = compute(&ctx, mart, &Parameters::default(), as_of)
            .await
            .map_err(|e| e.to_string())?;
        replace_in_memory(&ctx, mart.def, batches)?;
    }
    let batches = ctx
        .sql(
            "SELECT deployment_id, signal, verdict, suspect, before, after, score, \
             CAST(changed_at AS VARCHAR) AS changed_at, array_to_string(issue_ids, ',') AS issues \
             FROM deployment_signals",
        )
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let names = [
        "deployment_id",
        "signal",
        "verdict",
        "suspect",
        "before",
        "after",
        "score",
        "changed_at",
        "issues",
    ];
    let mut out = BTreeMap::new();
    for row in fathom_warehouse::query::text_rows(&batches).map_err(|e| e.to_string())? {
        let map: Map<String, Value> = names
            .iter()
            .zip(&row)
            .map(|(n, v)| ((*n).to_owned(), Value::String(v.clone())))
            .collect();
        out.insert((row[0].clone(), row[1].clone()), map);
    }
    Ok(out)
}

#[tokio::test]
async fn a_new_issue_with_a_jump_in_errors_makes_its_deployment_suspect() -> Result<(), String> {
    let rows = signals(&tables()).await?;
    let cell = |id: &str, signal: &str, column: &str| cell(&rows, id, signal, column);
    // d1: issue 1 came 20 minutes after it, and the project's events went
    // from a median of 100 (90 and 110 alternating; deviation 10, scaled
    // 14.826) to 900: score (900 − 100) / 14.826 ≈ 54.
    assert_eq!(cell("d1", "new_issue", "verdict"), "degraded");
    assert_eq!(cell("d1", "new_issue", "issues"), "i1");
    assert_eq!(
        cell("d1", "new_issue", "changed_at"),
        "2026-05-15T10:30:00Z"
    );
    assert_eq!(cell("d1", "new_issue", "before"), "100.0");
    assert_eq!(cell("d1", "new_issue", "after"), "900.0");
    let score: f64 = cell("d1", "new_issue", "score")
        .parse()
        .map_err(|e| format!("{e}"))?;
    assert!((score - 800.0 / 14.826).abs() < 1e-9, "{score}");
    assert_eq!(cell("d1", "error_events", "verdict"), "degraded");
    for signal in ["new_issue", "error_events", "error_rate", "latency_p95"] {
        assert_eq!(cell("d1", signal, "suspect"), "true", "{signal}");
    }
    // Issue 2 is the later deployment's of day 20 (d3), and without a jump
    // it is normal: neither is suspect.
    assert_eq!(cell("d3", "new_issue", "verdict"), "normal");
    assert_eq!(cell("d2", "new_issue", "verdict"), "<none>");
    assert_eq!(cell("d3", "error_events", "suspect"), "false");
    // Day 24's jump in events and error rate had no new issue: d3's rows
    // do not reach it (its day and the next), d4 is after it; nobody is
    // suspect. Issue 3, 30 hours after d4, is blamed on nothing.
    assert_eq!(cell("d4", "new_issue", "verdict"), "<none>");
    assert_eq!(suspects(&rows), ["d1"]);
    // The baseline deployment has too few days before it.
    assert_eq!(cell("d0", "error_events", "verdict"), "unknown");
    Ok(())
}

fn cell(rows: &Signals, id: &str, signal: &str, column: &str) -> String {
    rows.get(&(id.to_owned(), signal.to_owned()))
        .and_then(|r| r.get(column))
        .and_then(Value::as_str)
        .unwrap_or("<none>")
        .to_owned()
}

fn suspects(rows: &Signals) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .filter(|(_, r)| r.get("suspect").and_then(Value::as_str) == Some("true"))
        .map(|((id, _), _)| id.clone())
        .collect();
    out.dedup();
    out
}

const WEB: &str = "component:default/web";

/// Hourly metrics of `web` from day 14 to 28: 1,000 requests an hour, 10
/// failed (1 %), p95 0.2 s, except: day 22 12–15 h and day 26 12–13 h,
/// 200 failed (20 %); day 24 9–14 h, 200 failed (an incident already open
/// when w2 shipped at 10:20); days 20 and 27 12–13 h, 35 failed (a
/// pattern of the weekday). Deployments: w0 day 14 05:30 (5 hours of
/// history), w1 day 22 10:10, w2 day 24 10:20, w3 day 26 09:05, w4 day
/// 26 11:30, w5 day 27 10:10.
fn hourly_tables() -> Tables {
    let mut t = Tables::new();
    for n in 14..=28 {
        for hour in 0..24 {
            let errors = match (n, hour) {
                (22, 12..=15) | (26, 12..=13) | (24, 9..=14) => 200,
                (20 | 27, 12..=13) => 35,
                _ => 10,
            };
            push(
                &mut t,
                SERVICE_METRICS_HOURLY.name,
                json!({"hour": format!("{}T{hour:02}:00:00Z", day(n)), "source": "datadog", "service_name": "web",
                       "entity_ref": WEB, "request_count": 1_000, "error_count": errors, "latency_p95_seconds": 0.2}),
            );
        }
    }
    for (id, n, at) in [
        ("w0", 14, "05:30"),
        ("w1", 22, "10:10"),
        ("w2", 24, "10:20"),
        ("w3", 26, "09:05"),
        ("w4", 26, "11:30"),
        ("w5", 27, "10:10"),
    ] {
        push(
            &mut t,
            DEPLOYMENTS.name,
            json!({"deployment_id": id, "source": "import", "entity_ref": WEB, "environment": "production",
                   "status": "success", "started_at": format!("{}T{at}:00Z", day(n)),
                   "finished_at": format!("{}T{at}:00Z", day(n))}),
        );
    }
    t
}

#[tokio::test]
async fn an_hourly_jump_after_a_deployment_makes_it_suspect() -> Result<(), String> {
    let rows = signals(&hourly_tables()).await?;
    let rate = |id: &str, column: &str| cell(&rows, id, "error_rate_hourly", column);
    // w1: from 1 % (every hour of the 24 before; no deviation, so 5 % of
    // the median is the spread) to 20 % two hours after its hour, against
    // 1 % a week before: score (0.2 − 0.01) / 0.0005 = 380.
    assert_eq!(rate("w1", "verdict"), "degraded");
    assert_eq!(rate("w1", "changed_at"), "2026-05-23T12:00:00Z");
    assert_eq!(rate("w1", "before"), "0.01");
    assert_eq!(rate("w1", "after"), "0.2");
    let score: f64 = rate("w1", "score").parse().map_err(|e| format!("{e}"))?;
    assert!((score - 380.0).abs() < 1e-6, "{score}");
    // w2 shipped into an incident: the hour before it was as bad.
    assert_eq!(rate("w2", "verdict"), "normal");
    // Day 26's jump at 12 h follows w4 (11:30), not w3 (09:05): w3's
    // signal degraded, but the jump is w4's.
    assert_eq!(rate("w3", "verdict"), "degraded");
    assert_eq!(rate("w4", "verdict"), "degraded");
    assert_eq!(rate("w4", "changed_at"), "2026-05-27T12:00:00Z");
    // w5: 3.5 % at 12–13 h, as the same hours a week before.
    assert_eq!(rate("w5", "verdict"), "normal");
    // w0: 5 hours to compare.
    assert_eq!(rate("w0", "verdict"), "unknown");
    assert_eq!(cell(&rows, "w1", "latency_p95_hourly", "verdict"), "normal");
    assert_eq!(suspects(&rows), ["w1", "w4"]);
    Ok(())
}
