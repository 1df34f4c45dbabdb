//! Cost marts at the scale of a large organisation: OpenCost allocations
//! and cloud cost lines (CUR-shaped, FOCUS columns) for 5,000 services ×
//! 365 days, imported into a fresh local warehouse; then `fathom
//! transform` whole (time and peak memory), the same `cost_daily` SQL in
//! DuckDB over the same Parquet files (as a ratio, when the `duckdb`
//! Python package is installed), and an incremental run after one new day.
//! Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench cost` (`FATHOM_BENCH_SERVICES`,
//! `FATHOM_BENCH_DAYS` change the size).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{Duration, NaiveDate};
use fathom_ingest::{NoProgress, import_files};
use fathom_models::tables::{CATALOG_ENTITIES, CLOUD_COSTS_DAILY, COST_ALLOCATIONS_DAILY};
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};

#[path = "support/timed.rs"]
mod timed;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const TEAMS: usize = 100;

/// Writes the catalog (services owned by teams) as NDJSON.
fn catalog(path: &Path, services: usize) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for team in 0..TEAMS {
        writeln!(
            out,
            r#"{{"entity_ref": "group:default/team-{team}", "kind": "group", "namespace": "default", "name": "team-{team}"}}"#
        )?;
    }
    for s in 0..services {
        writeln!(
            out,
            r#"{{"entity_ref": "component:default/svc-{s}", "kind": "component", "namespace": "default", "name": "svc-{s}", "owner_ref": "group:default/team-{}", "entity_type": "service", "lifecycle": "production"}}"#,
            s % TEAMS
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Allocations and cloud lines of `days` starting at `first`: one
/// allocation per service and day (plus the cluster's idle), a tagged
/// compute and storage line per service and day, and per day untagged
/// lines, tax and a credit. Returns the rows written.
fn cost_files(
    allocations: &Path,
    cloud: &Path,
    services: usize,
    first: NaiveDate,
    days: i64,
    append: bool,
) -> Result<(usize, usize)> {
    let open = |path: &Path| -> Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(path)?,
        ))
    };
    let mut a = open(allocations)?;
    let mut c = open(cloud)?;
    if !append {
        writeln!(
            a,
            "date,cluster,allocation_name,namespace,entity_ref,cpu_cost_usd,ram_cost_usd,pv_cost_usd,network_cost_usd,total_cost_usd"
        )?;
        writeln!(
            c,
            "billing_period,line_item_id,date,provider,billing_account_id,charge_category,service_category,resource_id,entity_ref,billed_cost_usd,effective_cost_usd,list_cost_usd,billing_currency,pricing_category"
        )?;
    }
    let (mut n_alloc, mut n_cloud) = (0, 0);
    for d in 0..days {
        let day = first + Duration::days(d);
        let period = day.format("%Y-%m");
        for s in 0..services {
            let base = 1.0 + (s % 97) as f64 * 0.13 + (d % 7) as f64 * 0.05;
            writeln!(
                a,
                "{day},prod-{},svc-{s}/deployment:api,svc-{s},svc-{s},{:.4},{:.4},{:.4},{:.4},{:.4}",
                s % 8,
                base * 0.6,
                base * 0.3,
                base * 0.05,
                base * 0.02,
                base * 0.97
            )?;
            writeln!(
                c,
                "{period},c-{day}-{s},{day},aws,acct-{},usage,Compute,i-{s},svc-{s},{:.4},{:.4},{:.4},USD,standard",
                s % 4,
                base * 2.0,
                base * 1.6,
                base * 2.0
            )?;
            writeln!(
                c,
                "{period},s-{day}-{s},{day},aws,acct-{},usage,Storage,vol-{s},svc-{s},{:.4},{:.4},{:.4},USD,standard",
                s % 4,
                base * 0.4,
                base * 0.4,
                base * 0.4
            )?;
            n_alloc += 1;
            n_cloud += 2;
        }
        writeln!(
            a,
            "{day},prod-0,__idle__,,,{:.2},0,0,0,{:.2}",
            services as f64 * 0.1,
            services as f64 * 0.1
        )?;
        n_alloc += 1;
        for u in 0..50 {
            writeln!(
                c,
                "{period},u-{day}-{u},{day},aws,acct-0,usage,Networking,nat-{u},,3.5,3.5,3.5,USD,standard"
            )?;
        }
        writeln!(
            c,
            "{period},t-{day},{day},aws,acct-0,tax,,,,{:.2},{:.2},,USD,",
            services as f64 * 0.2,
            services as f64 * 0.2
        )?;
        writeln!(
            c,
            "{period},k-{day},{day},aws,acct-0,credit,,,,-50,-50,,USD,"
        )?;
        n_cloud += 52;
    }
    a.flush()?;
    c.flush()?;
    Ok((n_alloc, n_cloud))
}

/// Seconds a mart took in a transform report.
fn mart_seconds(report: &serde_json::Value, mart: &str) -> Option<f64> {
    report["marts"]
        .as_array()?
        .iter()
        .find(|m| m["mart"] == mart)?["seconds"]
        .as_f64()
}

/// `cost_daily`'s own SQL run by DuckDB (2 threads) over the tables'
/// Parquet files, its answer written to a Parquet file (as Fathom writes
/// the mart); (seconds, peak resident MB, rows), or `None` without the
/// `duckdb` Python package.
fn duckdb(data: &Path, sql: &str) -> Result<Option<(f64, f64, u64)>> {
    let script = format!(
        r#"
import duckdb, time
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
con.execute("CREATE VIEW cost_allocations_daily AS SELECT * FROM read_parquet('{data}/cost_allocations_daily/**/*.parquet', hive_partitioning = true)")
con.execute("CREATE VIEW cloud_costs_daily AS SELECT * FROM read_parquet('{data}/cloud_costs_daily/**/*.parquet', hive_partitioning = true)")
query = open('{data}/cost_daily.sql').read()
started = time.time()
con.execute("COPY (" + query + ") TO '{data}/duckdb_cost_daily.parquet' (FORMAT parquet)")
seconds = time.time() - started
rows = con.execute("SELECT count(*) FROM '{data}/duckdb_cost_daily.parquet'").fetchone()[0]
print("answer", seconds, rows)
"#,
        data = data.display()
    );
    std::fs::write(data.join("cost_daily.sql"), sql)?;
    let Some((stdout, peak)) = timed::duckdb_script(data, &script, &[])? else {
        return Ok(None);
    };
    let answer = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("answer "))
        .with_context(|| format!("duckdb printed no answer: {stdout}"))?;
    let mut parts = answer.split_whitespace();
    let seconds: f64 = parts.next().context("no time")?.parse()?;
    let rows: u64 = parts.next().context("no rows")?.parse()?;
    Ok(Some((seconds, peak, rows)))
}

fn main() -> Result<()> {
    let services: usize = env_or("FATHOM_BENCH_SERVICES", 5_000);
    let days: i64 = env_or("FATHOM_BENCH_DAYS", 365);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let first = NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?;
    let (catalog_path, allocations, cloud) = (
        dir.path().join("catalog.ndjson"),
        dir.path().join("allocations.csv"),
        dir.path().join("cloud.csv"),
    );
    let started = Instant::now();
    catalog(&catalog_path, services)?;
    let (n_alloc, n_cloud) = cost_files(&allocations, &cloud, services, first, days, false)?;
    println!(
        "world: {services} services x {days} days: {n_alloc} allocation rows, {n_cloud} cloud cost lines (generated in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let location = WarehouseLocation::parse(&data.display().to_string())?;
    let warehouse = Warehouse::open(location, StorageOptions::default())?;
    let import = |table, path: &Path| {
        runtime.block_on(import_files(
            &warehouse,
            table,
            &[path.to_path_buf()],
            None,
            "bench",
            Arc::new(NoProgress),
        ))
    };
    let started = Instant::now();
    import(&CATALOG_ENTITIES, &catalog_path)?;
    import(&COST_ALLOCATIONS_DAILY, &allocations)?;
    import(&CLOUD_COSTS_DAILY, &cloud)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "import: {} rows in {seconds:.1} s ({:.0} rows/s)",
        n_alloc + n_cloud,
        (n_alloc + n_cloud) as f64 / seconds
    );

    let (full, full_mb, report) = timed::transform(&data, "2027-01-02", &["--full"])?;
    let cost_daily = mart_seconds(&report, "cost_daily").unwrap_or(f64::NAN);
    let cost_daily_rows = report["marts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mart"] == "cost_daily")
        .and_then(|m| m["rows"].as_u64())
        .unwrap_or_default();
    println!(
        "fathom transform --full: {full:.1} s, peak {full_mb:.0} MB; cost_daily {cost_daily:.1} s ({cost_daily_rows} rows), \
         cost_monthly {:.1} s, cost_benchmarks {:.1} s, cost_commitments {:.1} s, cost_coverage {:.1} s",
        mart_seconds(&report, "cost_monthly").unwrap_or(f64::NAN),
        mart_seconds(&report, "cost_benchmarks").unwrap_or(f64::NAN),
        mart_seconds(&report, "cost_commitments").unwrap_or(f64::NAN),
        mart_seconds(&report, "cost_coverage").unwrap_or(f64::NAN),
    );
    let sql = fathom_transforms::Parameters::default().fill(
        include_str!("../transforms/sql/cost_daily.sql"),
        chrono::Utc::now(),
    )?;
    if let Some((seconds, mb, rows)) = duckdb(&data, &sql)? {
        println!(
            "DuckDB 2 threads, the same cost_daily SQL over the same Parquet, written to Parquet: {seconds:.1} s, peak {mb:.0} MB, {rows} rows; \
             Fathom's cost_daily / DuckDB = {:.2}",
            cost_daily / seconds
        );
    }

    // One new day (the first of a new month), then an incremental run.
    let next = first + Duration::days(days);
    let (day_allocations, day_cloud) = (dir.path().join("day-a.csv"), dir.path().join("day-c.csv"));
    let (a, c) = cost_files(&day_allocations, &day_cloud, services, next, 1, false)?;
    import(&COST_ALLOCATIONS_DAILY, &day_allocations)?;
    import(&CLOUD_COSTS_DAILY, &day_cloud)?;
    let (incremental, incremental_mb, report) = timed::transform(&data, "2027-01-02", &[])?;
    println!(
        "fathom transform after one new day ({} rows): {incremental:.1} s, peak {incremental_mb:.0} MB ({}); \
         full / incremental = {:.1}",
        a + c,
        report["plan"].as_str().unwrap_or_default(),
        full / incremental
    );
    for mart in report["marts"].as_array().into_iter().flatten() {
        println!(
            "  {:<18} {:>8} {:>7.1} s",
            mart["mart"].as_str().unwrap_or_default(),
            mart["recomputed"].as_str().unwrap_or_default(),
            mart["seconds"].as_f64().unwrap_or_default()
        );
    }
    Ok(())
}
