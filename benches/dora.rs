//! DORA marts at the scale of a large organisation: the generated world's
//! core tables (`fathom sim export --core-tables`: 1,000 services × 365
//! days by default) imported into a fresh local warehouse; then `fathom
//! transform --full` (time and peak memory; `[transforms]
//! memory_limit_mib` as configured, unbounded by default); the same `dora_deployments` and
//! `dora_changes` SQL in DuckDB (2 threads, as Fathom has) over the same
//! Delta tables' live Parquet files, as a ratio, and whether both engines
//! wrote the same rows (multiset equality); then one new day imported and
//! an incremental run with the same `--as-of`, and another day with the
//! windows moved a day (each compared with a full recompute of the same
//! data). Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench dora` (`FATHOM_BENCH_SERVICES`,
//! `FATHOM_BENCH_DAYS`, `FATHOM_BENCH_TEAMS` change the size,
//! `FATHOM_TRANSFORMS__MEMORY_LIMIT_MIB` the budget). DuckDB comes from
//! `pip install duckdb`; without it that comparison is skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Duration;
use fathom_ingest::{NoProgress, import_files};
use fathom_sim::WorldConfig;
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};

#[path = "support/timed.rs"]
mod timed;

#[path = "support/duck.rs"]
mod duck;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The marts DuckDB runs, in order (the second reads the first).
const COMPARED: [&str; 2] = ["dora_deployments", "dora_changes"];

fn mart_seconds(report: &serde_json::Value, mart: &str) -> f64 {
    report["marts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mart"] == mart)
        .and_then(|m| m["seconds"].as_f64())
        .unwrap_or(f64::NAN)
}

fn print_marts(report: &serde_json::Value) {
    for mart in report["marts"].as_array().into_iter().flatten() {
        println!(
            "  {:<20} {:<24} {:>10} rows {:>7.1} s",
            mart["mart"].as_str().unwrap_or_default(),
            mart["recomputed"].as_str().unwrap_or_default(),
            mart["rows"].as_u64().unwrap_or_default(),
            mart["seconds"].as_f64().unwrap_or_default()
        );
    }
}

/// Imports every table file of `part` into `warehouse`; rows imported.
async fn import_part(warehouse: &Warehouse, part: &[(&'static str, PathBuf, u64)]) -> Result<u64> {
    let mut rows = 0;
    for (table, path, count) in part {
        if *count == 0 {
            continue;
        }
        let def = fathom_models::ALL_TABLES
            .iter()
            .find(|d| d.name == *table)
            .context("no such table")?;
        import_files(
            warehouse,
            def,
            std::slice::from_ref(path),
            None,
            "bench",
            Arc::new(NoProgress),
        )
        .await?;
        rows += count;
    }
    Ok(rows)
}

/// Every mart's rows as sorted text lines, without `updated_at`: to
/// compare an incremental run with a full recompute.
async fn mart_texts(data: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let warehouse = Warehouse::open(
        WarehouseLocation::parse(&data.display().to_string())?,
        StorageOptions::default(),
    )?;
    let ctx = fathom_transforms::mart_session();
    warehouse.register_tables(&ctx).await?;
    let mut out = Vec::new();
    for mart in fathom_transforms::MARTS {
        let batches = ctx
            .sql(&format!(
                "SELECT * EXCLUDE (updated_at) FROM {}",
                mart.def.name
            ))
            .await?
            .collect()
            .await?;
        let mut rows: Vec<String> = fathom_warehouse::query::text_rows(&batches)?
            .into_iter()
            .map(|row| row.join("|"))
            .collect();
        rows.sort_unstable();
        out.push((mart.def.name.to_owned(), rows));
    }
    Ok(out)
}

fn main() -> Result<()> {
    let config = WorldConfig {
        services: env_or("FATHOM_BENCH_SERVICES", 1_000),
        days: env_or("FATHOM_BENCH_DAYS", 365),
        teams: env_or("FATHOM_BENCH_TEAMS", 100),
        ..WorldConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let end = config.end();
    // The world's last two days arrive later, one at a time.
    let (day1, day2) = (end - Duration::days(2), end - Duration::days(1));
    let started = Instant::now();
    let export = fathom_sim::export::core_tables::write_core_tables(
        &config,
        &dir.path().join("world"),
        &[day1, day2],
        |_, _| {},
    )?;
    let history_rows: u64 = export
        .parts
        .first()
        .into_iter()
        .flatten()
        .map(|t| t.2)
        .sum();
    println!(
        "world {} services x {} days ({} teams): {history_rows} rows of history ({}) written as Parquet in {:.1} s",
        config.services,
        config.days,
        config.teams,
        export
            .parts
            .first()
            .into_iter()
            .flatten()
            .map(|(table, _, rows)| format!("{rows} {table}"))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    let location = WarehouseLocation::parse(&data.display().to_string())?;
    let warehouse = Warehouse::open(location, StorageOptions::default())?;
    let parts = &export.parts;
    let started = Instant::now();
    let rows = runtime.block_on(import_part(&warehouse, parts.first().context("no part")?))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "import: {rows} rows in {seconds:.1} s ({:.0} rows/s)",
        rows as f64 / seconds
    );

    let as_of = day1.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (full, full_mb, report) = timed::transform(&data, &as_of, &["--full"])?;
    let budget = match env_or("FATHOM_TRANSFORMS__MEMORY_LIMIT_MIB", 0u64) {
        0 => "memory unbounded".to_owned(),
        mib => format!("budget {mib} MiB"),
    };
    println!("fathom transform --full: {full:.1} s, peak {full_mb:.0} MB ({budget})");
    print_marts(&report);
    if let Some(duck) = runtime.block_on(duck::duckdb(&warehouse, &data, day1, &COMPARED))? {
        {
            let mut fathom_total = 0.0;
            let mut duck_total = 0.0;
            for (mart, seconds, rows, only_fathom, only_duckdb) in &duck.marts {
                let ours = mart_seconds(&report, mart);
                fathom_total += ours;
                duck_total += seconds;
                println!(
                    "  DuckDB {mart}: {seconds:.1} s, {rows} rows; Fathom / DuckDB = {:.2}; rows only Fathom wrote: {only_fathom}, only DuckDB: {only_duckdb}",
                    ours / seconds
                );
            }
            println!(
                "DuckDB 2 threads, {}: {duck_total:.1} s, peak {:.0} MB; Fathom {fathom_total:.1} s; Fathom / DuckDB = {:.2}",
                COMPARED.join(" + "),
                duck.peak_mb,
                fathom_total / duck_total
            );
        }
    }

    // A new day, the windows' end unchanged (late data).
    let rows = runtime.block_on(import_part(&warehouse, parts.get(1).context("no part")?))?;
    let (same, same_mb, report) = timed::transform(&data, &as_of, &[])?;
    println!(
        "after one new day ({rows} rows), same --as-of: {same:.1} s, peak {same_mb:.0} MB ({}); full / incremental = {:.1}",
        report["plan"].as_str().unwrap_or_default(),
        full / same
    );
    print_marts(&report);
    // Another day, the windows moved a day (the daily refresh).
    let rows = runtime.block_on(import_part(&warehouse, parts.get(2).context("no part")?))?;
    let moved_as_of = day2.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (moved, moved_mb, report) = timed::transform(&data, &moved_as_of, &[])?;
    println!(
        "after another day ({rows} rows), --as-of moved a day: {moved:.1} s, peak {moved_mb:.0} MB ({}); full / incremental = {:.1}",
        report["plan"].as_str().unwrap_or_default(),
        full / moved
    );
    print_marts(&report);
    let incremental = runtime.block_on(mart_texts(&data))?;
    let (recompute, recompute_mb, _) = timed::transform(&data, &moved_as_of, &["--full"])?;
    let full_again = runtime.block_on(mart_texts(&data))?;
    let differing: Vec<&str> = incremental
        .iter()
        .zip(&full_again)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.as_str())
        .collect();
    println!(
        "full recompute of the same data: {recompute:.1} s, peak {recompute_mb:.0} MB; incremental = full: {}",
        if differing.is_empty() {
            "yes, every mart".to_owned()
        } else {
            format!("NO ({})", differing.join(", "))
        }
    );
    Ok(())
}
