//! Anomaly detection at the scale of a large organisation: 5,000
//! components in teams of ten over two years — daily cost in two
//! categories and the operational series (requests, errors, p95 latency,
//! CPU, memory) — written into a fresh local warehouse; then `fathom
//! detect` (the backfill: every series scored from its first day; time and
//! peak memory of the process), one new day of data with `fathom detect`
//! again (the daily run, continuing the saved state), and `fathom detect
//! --full` for comparison. Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench anomalies` (`FATHOM_BENCH_SERVICES`,
//! `FATHOM_BENCH_DAYS` change the size; `FATHOM_BENCH_DIR` keeps the
//! warehouse there).

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{Datelike, Duration, NaiveDate};
use fathom_models::tables::{COST_DAILY, DORA_SCOPE_MEMBERS, SERVICE_METRICS_DAILY};
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};
use serde_json::json;

// Shared with the other benchmarks; this one uses part of it.
#[allow(dead_code)]
#[path = "support/timed.rs"]
mod timed;

#[path = "support/rows.rs"]
mod rows;
use rows::{append, draw, object};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const TEAM_SIZE: usize = 10;
/// Days written per append (bounds the generator's memory).
const CHUNK_DAYS: i64 = 30;

fn component(c: usize) -> String {
    format!("component:default/service-{c:05}")
}

/// Components, their teams and the organisation, as the DORA scopes.
async fn scopes(warehouse: &Warehouse, services: usize) -> Result<()> {
    let mut rows = Vec::new();
    for c in 0..services {
        let entity = component(c);
        let team = format!("group:default/team-{:04}", c / TEAM_SIZE);
        for (scope, kind) in [
            (entity.as_str(), "component"),
            (team.as_str(), "group"),
            ("org", "org"),
        ] {
            rows.push(object(
                json!({"scope": scope, "scope_kind": kind, "entity_ref": entity}),
            ));
        }
    }
    append(warehouse, &DORA_SCOPE_MEMBERS, &rows).await
}

/// One day of one component: weekday rhythm, growth, ±5 % noise, and a
/// rare spike so the detector's anomaly paths run too.
fn factor(c: usize, day: i64, date: NaiveDate) -> f64 {
    let weekend = date.weekday().number_from_monday() > 5;
    let season = if weekend { 0.6 } else { 1.0 };
    let key = (c as u64) << 20 | day as u64;
    let spike = if draw(key ^ 0xA5A5) < 0.002 { 3.0 } else { 1.0 };
    season * (1.0 + 0.0005 * day as f64) * (0.95 + 0.1 * draw(key)) * spike
}

/// Cost and operational rows of days `from..to`.
async fn days(
    warehouse: &Warehouse,
    services: usize,
    first: NaiveDate,
    from: i64,
    to: i64,
) -> Result<usize> {
    let (mut cost, mut metrics) = (Vec::new(), Vec::new());
    for day in from..to {
        let date = first + Duration::days(day);
        let month = date.format("%Y-%m").to_string();
        for c in 0..services {
            let f = factor(c, day, date);
            let base = 5.0 + 50.0 * draw(c as u64);
            let entity = component(c);
            for (category, share) in [("Compute", 0.8), ("Storage", 0.2)] {
                let amount = base * share * if category == "Storage" { 1.0 } else { f };
                cost.push(object(json!({
                    "date": date.to_string(), "billing_period": month, "entity_ref": entity,
                    "cost_source": "kubernetes", "provider": "kubernetes", "service_category": category,
                    "charge_category": "usage", "attribution": "direct", "allocated": false,
                    "billing_currency": "USD", "billed_cost": amount, "effective_cost": amount, "lines": 1,
                })));
            }
            let requests = (200_000.0 * (0.2 + draw(c as u64 ^ 7)) * f).round() as i64;
            let noise = draw(((c as u64) << 20 | day as u64) ^ 0x5A5A);
            metrics.push(object(json!({
                "date": date.to_string(), "month": month, "source": "datadog",
                "service_name": format!("service-{c:05}"), "entity_ref": entity,
                "request_count": requests, "error_count": (requests as f64 * 0.002 * (0.8 + 0.4 * noise)).round() as i64,
                "latency_p95_seconds": 0.1 + 0.05 * f, "cpu_usage_cores": 0.5 * f,
                "memory_usage_bytes": 2.0e9 * (0.9 + 0.1 * noise),
            })));
        }
    }
    append(warehouse, &COST_DAILY, &cost).await?;
    append(warehouse, &SERVICE_METRICS_DAILY, &metrics).await?;
    Ok(cost.len() + metrics.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let services: usize = env_or("FATHOM_BENCH_SERVICES", 5_000);
    let history: i64 = env_or("FATHOM_BENCH_DAYS", 730);
    let kept = std::env::var_os("FATHOM_BENCH_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir()?;
    let data = kept.unwrap_or_else(|| temp.path().join("data"));
    std::fs::create_dir_all(&data)?;
    let location = WarehouseLocation::parse(&data.display().to_string())?;
    let warehouse = Warehouse::open(location, StorageOptions::default())?;
    let first = NaiveDate::from_ymd_opt(2024, 7, 1).context("date")?;

    let started = Instant::now();
    scopes(&warehouse, services).await?;
    let mut rows = 0;
    let mut from = 0;
    while from < history {
        let to = (from + CHUNK_DAYS).min(history);
        rows += days(&warehouse, services, first, from, to).await?;
        from = to;
    }
    println!(
        "anomalies bench: {services} components × {history} days: {rows} rows of cost_daily and service_metrics_daily written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (seconds, peak, report) = timed::fathom(&data, &["detect", "--json"])?;
    println!(
        "backfill (fathom detect): {seconds:.1} s, peak {peak:.0} MB — {} series, {} scored days, {} anomalies",
        report["series"], report["points"], report["anomalies"]
    );
    days(&warehouse, services, first, history, history + 1).await?;
    let (seconds, peak, report) = timed::fathom(&data, &["detect", "--json"])?;
    println!(
        "daily (one new day, fathom detect, {} run{}): {seconds:.1} s, peak {peak:.0} MB — {} series, {} scored days; phases {}",
        report["mode"].as_str().unwrap_or("?"),
        report["full_reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
        report["series"],
        report["points"],
        report["phases"]
    );
    // What the daily run would cost if it rescored everything.
    let (seconds, peak, _) = timed::fathom(&data, &["detect", "--full", "--json"])?;
    println!("full rescoring (fathom detect --full): {seconds:.1} s, peak {peak:.0} MB");
    Ok(())
}
