//! Usage marts at the scale of a large organisation: portal events of
//! 36,000 people in 3,600 teams (100 departments) over 365 days — about
//! 50 million events — written into a fresh local warehouse with the
//! catalog's people and memberships; then `fathom transform --full` (time
//! and peak memory), every usage mart's own SQL in DuckDB (2 threads, as
//! Fathom has) over the same Delta tables' live Parquet files, as a ratio
//! and row for row; then one new day of events and an incremental run.
//! Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench usage` (`FATHOM_BENCH_USERS`,
//! `FATHOM_BENCH_DAYS` change the size; `FATHOM_BENCH_DIR` keeps the
//! warehouse there). DuckDB comes from
//! `pip install duckdb`; without it that comparison is skipped.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use fathom_models::tables::{CATALOG_ENTITIES, ENTITY_RELATIONS, PORTAL_EVENTS};
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};
use serde_json::{Map, Value, json};

#[path = "support/timed.rs"]
mod timed;

#[path = "support/rows.rs"]
mod rows;
use rows::{append, draw, object};

#[path = "support/duck.rs"]
mod duck;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const TEAM_SIZE: usize = 10;
const DEPARTMENTS: usize = 100;
const USAGE_MARTS: [&str; 7] = [
    "usage_daily",
    "usage_active",
    "usage_features",
    "usage_search",
    "usage_search_queries",
    "usage_templates",
    "usage_entities",
];

/// The catalog: departments, teams of [`TEAM_SIZE`], their people.
async fn catalog(warehouse: &Warehouse, users: usize) -> Result<()> {
    let teams = users.div_ceil(TEAM_SIZE);
    let mut entities = Vec::new();
    let mut relations = Vec::new();
    for d in 0..DEPARTMENTS {
        entities.push(object(
            json!({"entity_ref": format!("group:default/dept-{d}"), "kind": "group",
            "namespace": "default", "name": format!("dept-{d}"), "entity_type": "department"}),
        ));
    }
    for t in 0..teams {
        entities.push(object(
            json!({"entity_ref": format!("group:default/team-{t}"), "kind": "group",
            "namespace": "default", "name": format!("team-{t}"), "entity_type": "team",
            "parent_ref": format!("group:default/dept-{}", t % DEPARTMENTS)}),
        ));
    }
    for u in 0..users {
        entities.push(object(
            json!({"entity_ref": format!("user:default/u{u}"), "kind": "user",
            "namespace": "default", "name": format!("u{u}")}),
        ));
        relations.push(object(json!({"source_ref": format!("user:default/u{u}"),
            "relation_type": "memberOf", "target_ref": format!("group:default/team-{}", u / TEAM_SIZE)})));
    }
    append(warehouse, &CATALOG_ENTITIES, &entities).await?;
    append(warehouse, &ENTITY_RELATIONS, &relations).await
}

/// The events of day `d` (from `first`): each person active on a working
/// day with their team's adoption (5 %–95 %), 1–20 events — page views of
/// entities and docs, searches (one in eight finds nothing; most are
/// followed by a click), template runs.
fn day_events(users: usize, first: NaiveDate, d: i64) -> Vec<Map<String, Value>> {
    let day = first + Duration::days(d);
    let weekend = day.weekday().number_from_monday() > 5;
    let midnight = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default());
    let mut out = Vec::new();
    for u in 0..users {
        let team = u / TEAM_SIZE;
        let adoption = 0.05 + 0.9 * draw(team as u64);
        let p = if weekend { 0.03 } else { adoption * 0.7 };
        let key = (d as u64) << 32 | u as u64;
        if draw(key) >= p {
            continue;
        }
        let n = 1 + (draw(key ^ 0xA5A5) * 20.0) as usize;
        for e in 0..n {
            let r = draw(key.wrapping_mul(31).wrapping_add(e as u64));
            let at = midnight + Duration::seconds(8 * 3600 + (r * 36_000.0) as i64);
            let id = format!("{d}-{u}-{e}");
            let base = json!({"event_id": id, "occurred_at": at.to_rfc3339(),
                "user_hash": format!("h{u}"), "user_team_ref": format!("group:default/team-{team}")});
            let mut event = object(base);
            let component = format!("component:default/svc-{}", (r * 5_000.0) as usize);
            let fields = if r < 0.55 {
                json!({"action": "navigate", "plugin_id": "catalog", "entity_ref": component})
            } else if r < 0.8 {
                json!({"action": "navigate", "plugin_id": "techdocs", "entity_ref": component})
            } else if r < 0.95 {
                let results = if r < 0.82 { 0 } else { 3 };
                json!({"action": "search", "plugin_id": "search", "subject": format!("svc-{}", (r * 200.0) as usize),
                       "attributes": {"value": results.to_string()}})
            } else {
                json!({"action": "create", "plugin_id": "scaffolder",
                       "entity_ref": format!("template:default/t{}", (r * 100.0) as usize % 5),
                       "attributes": {"value": "120", "status": if r > 0.995 { "failed" } else { "completed" }}})
            };
            event.extend(object(fields));
            let searched = event.get("action") == Some(&Value::from("search"));
            out.push(event);
            if searched && r >= 0.82 && draw(key ^ e as u64) < 0.7 {
                out.push(object(json!({"event_id": format!("{id}-click"),
                    "occurred_at": (at + Duration::seconds(30)).to_rfc3339(),
                    "user_hash": format!("h{u}"), "user_team_ref": format!("group:default/team-{team}"),
                    "action": "discover", "plugin_id": "search", "attributes": {"value": "1"}})));
            }
        }
    }
    out
}

/// Writes the events of days `from..to`, a month's worth per append.
async fn events(
    warehouse: &Warehouse,
    users: usize,
    first: NaiveDate,
    from: i64,
    to: i64,
) -> Result<usize> {
    let mut pending = Vec::new();
    let mut written = 0;
    for d in from..to {
        pending.extend(day_events(users, first, d));
        if pending.len() >= 2_000_000 || d + 1 == to {
            append(warehouse, &PORTAL_EVENTS, &pending).await?;
            written += pending.len();
            pending.clear();
        }
    }
    Ok(written)
}

fn print_marts(report: &Value) {
    for mart in report["marts"].as_array().into_iter().flatten() {
        let name = mart["mart"].as_str().unwrap_or_default();
        if name.starts_with("usage_") {
            println!(
                "  {:<20} {:<24} {:>10} rows {:>7.1} s",
                name,
                mart["recomputed"].as_str().unwrap_or_default(),
                mart["rows"].as_u64().unwrap_or_default(),
                mart["seconds"].as_f64().unwrap_or_default()
            );
        }
    }
}

fn usage_seconds(report: &Value) -> f64 {
    report["marts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["mart"].as_str().is_some_and(|n| n.starts_with("usage_")))
        .filter_map(|m| m["seconds"].as_f64())
        .sum()
}

fn main() -> Result<()> {
    let users: usize = env_or("FATHOM_BENCH_USERS", 36_000);
    let days: i64 = env_or("FATHOM_BENCH_DAYS", 365);
    // The year ends mid-month, so the new day of the incremental run lands
    // in a month that already holds half a month of events (the 1st of a
    // month would flatter the refresh).
    let first = NaiveDate::from_ymd_opt(2025, 12, 17).context("date")?;
    // FATHOM_BENCH_DIR keeps the warehouse for a closer look afterwards.
    let dir = tempfile::tempdir()?;
    let data = match std::env::var_os("FATHOM_BENCH_DIR") {
        Some(kept) => std::path::PathBuf::from(kept).join("data"),
        None => dir.path().join("data"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let warehouse = Warehouse::open(
        WarehouseLocation::parse(&data.display().to_string())?,
        StorageOptions::default(),
    )?;
    let started = Instant::now();
    runtime.block_on(catalog(&warehouse, users))?;
    let n = runtime.block_on(events(&warehouse, users, first, 0, days))?;
    println!(
        "world: {users} people in {} teams, {days} days: {n} portal events (generated and written in {:.1} s)",
        users.div_ceil(TEAM_SIZE),
        started.elapsed().as_secs_f64()
    );
    let end = first + Duration::days(days);
    let as_of = end.format("%Y-%m-%d").to_string();
    let (full, full_mb, report) = timed::transform(&data, &as_of, &["--full"])?;
    let ours = usage_seconds(&report);
    println!(
        "fathom transform --full: {full:.1} s, peak {full_mb:.0} MB; the usage marts {ours:.1} s"
    );
    print_marts(&report);
    let as_of_instant = Utc.from_utc_datetime(&end.and_hms_opt(0, 0, 0).unwrap_or_default());
    if let Some(duck) =
        runtime.block_on(duck::duckdb(&warehouse, &data, as_of_instant, &USAGE_MARTS))?
    {
        let theirs: f64 = duck.marts.iter().map(|m| m.1).sum();
        println!(
            "DuckDB 2 threads, the same SQL over the same Parquet, written to Parquet: {theirs:.1} s, peak {:.0} MB; \
             Fathom's usage marts / DuckDB = {:.2}",
            duck.peak_mb,
            ours / theirs
        );
        for (mart, seconds, rows, only_fathom, only_duckdb) in &duck.marts {
            let fathom = report["marts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["mart"] == mart.as_str())
                .and_then(|m| m["seconds"].as_f64())
                .unwrap_or(f64::NAN);
            println!(
                "  DuckDB {mart}: {seconds:.1} s, {rows} rows; Fathom / DuckDB = {:.2}; rows only Fathom wrote: {only_fathom}, only DuckDB: {only_duckdb}",
                fathom / seconds
            );
        }
    }

    // One new day, then an incremental run.
    let added = runtime.block_on(events(&warehouse, users, first, days, days + 1))?;
    let next = (end + Duration::days(1)).format("%Y-%m-%d").to_string();
    let (incremental, incremental_mb, report) = timed::transform(&data, &next, &[])?;
    println!(
        "fathom transform after one new day ({added} events): {incremental:.1} s, peak {incremental_mb:.0} MB ({}); \
         the usage marts {:.1} s: full / incremental = {:.1}",
        report["plan"].as_str().unwrap_or_default(),
        usage_seconds(&report),
        ours / usage_seconds(&report)
    );
    print_marts(&report);
    Ok(())
}
