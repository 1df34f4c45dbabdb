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

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, Utc};
use fathom_ingest::{NoProgress, import_files};
use fathom_models::TableDef;
use fathom_sim::WorldConfig;
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};

#[path = "support/timed.rs"]
mod timed;

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

/// DuckDB's type for an Arrow type of the warehouse.
fn duckdb_type(data_type: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as T;
    match data_type {
        T::Int64 | T::Int32 => "BIGINT".to_owned(),
        T::Float64 => "DOUBLE".to_owned(),
        T::Boolean => "BOOLEAN".to_owned(),
        T::Timestamp(_, _) => "TIMESTAMPTZ".to_owned(),
        T::Date32 => "DATE".to_owned(),
        T::List(field) => format!("{}[]", duckdb_type(field.data_type())),
        T::Map(_, _) => "MAP(VARCHAR, VARCHAR)".to_owned(),
        _ => "VARCHAR".to_owned(),
    }
}

/// A DuckDB statement making `def` readable: a view over the table's live
/// Parquet files (the Delta snapshot's, so files a later commit removed
/// are not read), or an empty table of its columns.
async fn duckdb_table(warehouse: &Warehouse, def: &TableDef) -> Result<String> {
    let files: Vec<String> = match warehouse.open_table(def).await? {
        Some(table) => table
            .get_file_uris()
            .map_err(|e| anyhow::anyhow!("{}: {e}", def.name))?
            .map(|uri| uri.trim_start_matches("file://").to_owned())
            .collect(),
        None => Vec::new(),
    };
    if files.is_empty() {
        let columns: Vec<String> = def
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| format!("\"{}\" {}", f.name(), duckdb_type(f.data_type())))
            .collect();
        return Ok(format!(
            "CREATE TABLE {} ({})",
            def.name,
            columns.join(", ")
        ));
    }
    let list = files
        .iter()
        .map(|f| format!("'{}'", f.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "CREATE VIEW {} AS SELECT * FROM read_parquet([{list}], hive_partitioning = true)",
        def.name
    ))
}

/// What DuckDB did: per mart (seconds, rows), the peak resident MB, and
/// per mart the rows only one engine wrote (Fathom's, DuckDB's).
struct DuckDb {
    marts: Vec<(String, f64, u64, u64, u64)>,
    peak_mb: f64,
}

/// The marts of [`COMPARED`] run by DuckDB over the warehouse at `data`;
/// `None` without the `duckdb` Python package.
async fn duckdb(
    warehouse: &Warehouse,
    data: &Path,
    as_of: DateTime<Utc>,
) -> Result<Option<DuckDb>> {
    let parameters = fathom_transforms::Parameters::default();
    let mut setup = Vec::new();
    let mut marts = Vec::new();
    let mut needed: Vec<&TableDef> = Vec::new();
    for name in COMPARED {
        let mart = fathom_transforms::marts::named(name).context("no such mart")?;
        for def in mart.reads {
            if !COMPARED.contains(&def.name) && !needed.iter().any(|d| d.name == def.name) {
                needed.push(def);
            }
        }
        let fathom_rows = format!(
            "{}\n",
            duckdb_table(warehouse, mart.def).await?.replacen(
                &format!(" {} ", mart.def.name),
                &format!(" fathom_{} ", mart.def.name),
                1
            )
        );
        marts.push(serde_json::json!({
            "name": name,
            "sql": parameters.fill(mart.sql, as_of)?,
            "fathom": fathom_rows,
        }));
    }
    for def in needed {
        setup.push(duckdb_table(warehouse, def).await?);
    }
    let spec = data.join("duckdb.json");
    std::fs::write(
        &spec,
        serde_json::to_vec(
            &serde_json::json!({"setup": setup, "marts": marts, "out": data.join("duckdb-out")}),
        )?,
    )?;
    // The marts' own functions, as DuckDB macros with the same meaning
    // (`functions.rs`); DataFusion's `regexp_match` returns the groups.
    let script = r#"
import duckdb, json, os, sys, time
spec = json.load(open(sys.argv[1]))
os.makedirs(spec["out"], exist_ok=True)
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
con.execute("SET TimeZone = 'UTC'")
con.execute("CREATE MACRO seconds_between(a, b) AS (epoch_us(b) - epoch_us(a)) / 1e6")
con.execute("CREATE MACRO nonnegative(x) AS CASE WHEN x < 0 THEN NULL ELSE x END")
con.execute("CREATE MACRO regexp_match(s, p) AS CASE WHEN regexp_matches(s, p) THEN [regexp_extract(s, p, 1)] END")
con.execute("CREATE MACRO regexp_like(s, p, f) AS regexp_matches(s, p, f)")
for name in ["array_element"]:
    try:
        con.execute("SELECT " + name + "([1], 1)")
    except Exception:
        con.execute("CREATE MACRO " + name + "(l, i) AS list_extract(l, i)")
for statement in spec["setup"]:
    con.execute(statement)
# Same function, another name.
renamed = {"btrim(": "trim("}
for mart in spec["marts"]:
    name = mart["name"]
    sql = mart["sql"]
    for ours, theirs in renamed.items():
        sql = sql.replace(ours, theirs)
    started = time.time()
    con.execute("CREATE TABLE " + name + " AS " + sql)
    path = os.path.join(spec["out"], name + ".parquet")
    con.execute("COPY " + name + " TO '" + path + "' (FORMAT parquet)")
    seconds = time.time() - started
    rows = con.execute("SELECT count(*) FROM " + name).fetchone()[0]
    con.execute(mart["fathom"])
    columns = ", ".join('"' + c[0] + '"' for c in con.execute("DESCRIBE " + name).fetchall())
    only_fathom = con.execute("SELECT count(*) FROM (SELECT " + columns + " FROM fathom_" + name + " EXCEPT ALL SELECT " + columns + " FROM " + name + ")").fetchone()[0]
    only_duckdb = con.execute("SELECT count(*) FROM (SELECT " + columns + " FROM " + name + " EXCEPT ALL SELECT " + columns + " FROM fathom_" + name + ")").fetchone()[0]
    print("mart", name, seconds, rows, only_fathom, only_duckdb, flush=True)
"#;
    let Some((stdout, peak)) = timed::duckdb_script(data, script, &[&spec])? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("mart ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split_whitespace().collect();
        let [name, seconds, rows, only_fathom, only_duckdb] = parts[..] else {
            bail!("duckdb printed `{line}`");
        };
        out.push((
            name.to_owned(),
            seconds.parse()?,
            rows.parse()?,
            only_fathom.parse()?,
            only_duckdb.parse()?,
        ));
    }
    Ok(Some(DuckDb {
        marts: out,
        peak_mb: peak,
    }))
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
    if let Some(duck) = runtime.block_on(duckdb(&warehouse, &data, day1))? {
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
