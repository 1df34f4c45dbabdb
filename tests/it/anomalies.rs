//! Anomaly detection end to end: cost rows in the warehouse, `fathom
//! detect`, the rows of `anomaly_scores` and `anomalies`; and `fathom ml
//! detect` on CSV files.

use anyhow::{Result, ensure};
use chrono::{Datelike, Duration, NaiveDate};

use crate::support::{count, fathom, local_warehouse, rows, write_file};

const A: &str = "component:default/checkout-api";
const B: &str = "component:default/search-api";
const TEAM: &str = "group:default/team-checkout";

/// 120 days of cost for two components, compute and storage, weekends
/// lower; checkout-api's compute is five times its normal on day 100.
fn cost_rows(first: NaiveDate) -> String {
    let mut out = String::new();
    for d in 0..120 {
        let date = first + Duration::days(d);
        let weekend = date.weekday().number_from_monday() > 5;
        let season = if weekend { 0.6 } else { 1.0 };
        let wobble = 1.0 + 0.03 * (((d * 37) % 11) as f64 / 10.0 - 0.5);
        for (entity, base) in [(A, 40.0), (B, 25.0)] {
            for (category, share) in [("Compute", 0.8), ("Storage", 0.2)] {
                let mut cost = base * share * season * wobble;
                if entity == A && category == "Compute" && d == 100 {
                    cost *= 5.0;
                }
                out.push_str(&format!(
                    "{{\"date\":\"{date}\",\"billing_period\":\"{}\",\"entity_ref\":\"{entity}\",\
                     \"cost_source\":\"kubernetes\",\"provider\":\"kubernetes\",\"service_category\":\"{category}\",\
                     \"charge_category\":\"usage\",\"attribution\":\"direct\",\"allocated\":false,\
                     \"billing_currency\":\"USD\",\"billed_cost\":{cost},\"effective_cost\":{cost},\"lines\":1}}\n",
                    date.format("%Y-%m")
                ));
            }
        }
        // A monthly tax line: a billing event, not consumption.
        if date.day() == 1 {
            out.push_str(&format!(
                "{{\"date\":\"{date}\",\"billing_period\":\"{}\",\"entity_ref\":\"{A}\",\
                 \"cost_source\":\"cloud\",\"provider\":\"aws\",\"service_category\":\"Compute\",\
                 \"charge_category\":\"tax\",\"attribution\":\"tax\",\"allocated\":false,\
                 \"billing_currency\":\"USD\",\"billed_cost\":500,\"effective_cost\":500,\"lines\":1}}\n",
                date.format("%Y-%m")
            ));
        }
    }
    out
}

fn members() -> String {
    [
        (A, A, "component"),
        (B, B, "component"),
        (TEAM, A, "group"),
        (TEAM, B, "group"),
        ("org", A, "org"),
        ("org", B, "org"),
    ]
    .iter()
    .map(|(scope, entity, kind)| {
        format!("{{\"scope\":\"{scope}\",\"scope_kind\":\"{kind}\",\"entity_ref\":\"{entity}\"}}\n")
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_finds_a_cost_spike_with_its_driver_and_scores_every_day() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default();
    let costs = write_file(dir.path(), "cost.ndjson", cost_rows(first).as_bytes())?;
    let scopes = write_file(dir.path(), "members.ndjson", members().as_bytes())?;
    for (table, file) in [("cost_daily", &costs), ("dora_scope_members", &scopes)] {
        let output = fathom(dir.path(), &["import", table, &file.display().to_string()])?;
        ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = fathom(dir.path(), &["detect", "--json"])?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    // Two components and their team, each one cost series in USD; the org
    // series is the cost_daily total.
    assert_eq!(report["series"], 4, "{report}");

    let warehouse = local_warehouse(dir.path())?;
    // Every series has a row for each of its 120 days.
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM anomaly_scores").await?,
        4 * 120
    );
    // The tax line is not consumption: no anomaly on the firsts of months.
    let found = rows(
        &warehouse,
        "SELECT scope, kind, direction, CAST(first_day AS VARCHAR) AS first_day, \
                CAST(last_day AS VARCHAR) AS last_day, status, impact, driver, driver_share, drivers \
         FROM anomalies WHERE metric = 'cost' ORDER BY scope",
    )
    .await?;
    let spike_day = (first + Duration::days(100)).to_string();
    let scopes: Vec<&str> = found.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(scopes, vec![A, TEAM, "org"], "{found:?}");
    for row in &found {
        assert_eq!(
            (row[1].as_str(), row[2].as_str()),
            ("spike", "up"),
            "{row:?}"
        );
        assert_eq!(
            (row[3].as_str(), row[4].as_str()),
            (spike_day.as_str(), spike_day.as_str())
        );
        assert_eq!(row[5], "closed");
        assert_eq!(row[7], "kubernetes/Compute", "{row:?}");
        // The excess is four times the normal compute cost of that day.
        let impact: f64 = row[6].parse()?;
        let weekday = (first + Duration::days(100)).weekday().number_from_monday() <= 5;
        let normal = 40.0 * 0.8 * if weekday { 1.0 } else { 0.6 };
        ensure!((impact / (4.0 * normal) - 1.0).abs() < 0.1, "{row:?}");
        // The contributions add up to the impact.
        let drivers: Vec<serde_json::Value> = serde_json::from_str(&row[9])?;
        let sum: f64 = drivers
            .iter()
            .filter_map(|d| d["contribution"].as_f64())
            .sum();
        ensure!(
            (sum - impact).abs() < 1e-6 * impact.abs().max(1.0),
            "{sum} vs {impact}"
        );
    }
    // The band is drawn for each day once there is a baseline: from the
    // first refit, a week in.
    let banded = count(
        &warehouse,
        &format!(
            "SELECT count(*) FROM anomaly_scores WHERE scope = '{A}' AND metric = 'cost' \
             AND expected IS NOT NULL AND lower <= expected AND expected <= upper"
        ),
    )
    .await?;
    assert_eq!(banded, 120 - 7);
    Ok(())
}

#[test]
fn ml_detect_scores_a_csv_and_names_what_is_wrong() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut text = String::from("timestamp,value\n");
    for d in 0..90 {
        let day = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap_or_default() + Duration::days(d);
        let value = if d == 70 {
            900.0
        } else {
            100.0 + (d % 7) as f64
        };
        text.push_str(&format!("{day},{value}\n"));
    }
    let input = write_file(dir.path(), "series.csv", text.as_bytes())?;
    let scores = dir.path().join("scores.csv");
    let output = fathom(
        dir.path(),
        &[
            "ml",
            "detect",
            "--input",
            &input.display().to_string(),
            "--output",
            &scores.display().to_string(),
        ],
    )?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read_to_string(&scores)?;
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score,is_anomaly");
    assert_eq!(lines.len(), 91);
    let flagged: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.ends_with(",1"))
        .collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(flagged[0].starts_with("2025-05-10,900,"), "{flagged:?}");

    let bad = write_file(
        dir.path(),
        "bad.csv",
        b"timestamp,value\n2025-01-01,1\n2025-01-02,n/a\n",
    )?;
    let output = fathom(
        dir.path(),
        &["ml", "detect", "--input", &bad.display().to_string()],
    )?;
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("line 3") && message.contains("n/a"),
        "{message}"
    );

    let empty = write_file(dir.path(), "empty.csv", b"timestamp,value\n")?;
    let output = fathom(
        dir.path(),
        &["ml", "detect", "--input", &empty.display().to_string()],
    )?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no data rows"));
    Ok(())
}
