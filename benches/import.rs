//! Import throughput: 1 million deployment rows from CSV into a fresh local
//! warehouse (one commit), then the same file again (a merge that finds every
//! row unchanged). Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench import` (set `FATHOM_BENCH_ROWS` to change
//! the row count).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use fathom_ingest::{NoProgress, import_files};
use fathom_models::tables::DEPLOYMENTS;
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};

fn main() -> Result<()> {
    let n_rows: usize = std::env::var("FATHOM_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let csv_path = dir.path().join("deployments.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
    writeln!(
        file,
        "deployment_id,source,entity_ref,service_name,environment,status,revision,started_at,finished_at,is_rollback"
    )?;
    let statuses = ["success", "success", "success", "failure"];
    for i in 0..n_rows {
        let service = i % 5_000;
        let day = i % 730;
        let (month, dom) = (1 + (day / 28) % 12, 1 + day % 28);
        let year = 2025 + day / 365;
        writeln!(
            file,
            "argocd:svc-{service}:{i},argocd,svc-{service},svc-{service},production,{},{:040x},{year}-{month:02}-{dom:02}T{:02}:{:02}:00Z,{year}-{month:02}-{dom:02} {:02}:{:02}:30,false",
            statuses[i % 4],
            i,
            i % 24,
            i % 60,
            i % 24,
            i % 60,
        )?;
    }
    file.flush()?;
    drop(file);
    let bytes = std::fs::metadata(&csv_path)?.len();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let location = WarehouseLocation::parse(&dir.path().join("warehouse").display().to_string())?;
        let warehouse = Warehouse::open(location, StorageOptions::default())?;
        for pass in ["fresh load", "reload (all unchanged)"] {
            let started = Instant::now();
            let report = import_files(
                &warehouse,
                &DEPLOYMENTS,
                std::slice::from_ref(&csv_path),
                None,
                "bench",
                Arc::new(NoProgress),
            )
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            anyhow::ensure!(report.rows_loaded() == n_rows, "loaded {} of {n_rows}", report.rows_loaded());
            println!(
                "import {pass}: {n_rows} rows, {:.1} MB CSV in {seconds:.2} s = {:.0} rows/s ({:.1} MB/s)",
                bytes as f64 / 1e6,
                n_rows as f64 / seconds,
                bytes as f64 / 1e6 / seconds
            );
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
