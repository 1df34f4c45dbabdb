//! Ingest throughput against the simulators: a world is generated and
//! served on loopback, then ingested into a fresh local warehouse (the
//! first, full backfill), then ingested again with nothing new (the cost of
//! staying fresh). Reports wall time, rows/s, API calls, and API calls per
//! repository per day of data. Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench ingest`. `FATHOM_BENCH_SERVICES`,
//! `FATHOM_BENCH_TEAMS` and `FATHOM_BENCH_DAYS` size the world (defaults:
//! the demo world, 40 services × 8 teams × 180 days).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use fathom_ingest::runner::{IngestOptions, IngestReport, NoIngestProgress, ingest};
use fathom_ingest::source::SourceConfig;
use fathom_sim::serve::{SimOptions, SimState, github::RateBudget, serve};
use fathom_sim::{World, WorldConfig};
use fathom_warehouse::state::StateDb;
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn totals(report: &IngestReport) -> (u64, usize, usize) {
    let calls = report.sources.iter().map(|s| s.api_calls).sum();
    let rows = report
        .sources
        .iter()
        .flat_map(|s| &s.streams)
        .map(|s| s.rows.values().sum::<usize>())
        .sum();
    let payloads = report
        .sources
        .iter()
        .flat_map(|s| &s.streams)
        .map(|s| s.payloads)
        .sum();
    (calls, rows, payloads)
}

fn main() -> Result<()> {
    let config = WorldConfig {
        teams: env("FATHOM_BENCH_TEAMS", 8) as usize,
        services: env("FATHOM_BENCH_SERVICES", 40) as usize,
        days: env("FATHOM_BENCH_DAYS", 180) as u32,
        ..WorldConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let world = World::generate(config);
        let repositories = world.org.components.len() + world.org.unclaimed_repos.len();
        let state = SimState::new(
            world,
            SimOptions {
                argocd_history_limit: usize::MAX,
                github_rate: RateBudget {
                    limit: u64::MAX / 2,
                    window_seconds: 3_600,
                },
                ..SimOptions::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve(listener, state.clone(), std::future::pending()));
        let table: toml::Table = state.sources_snippet(addr).parse()?;
        let sources: Vec<SourceConfig> = table
            .get("sources")
            .cloned()
            .context("no sources in the snippet")?
            .try_into()?;

        let dir = tempfile::tempdir()?;
        let location = WarehouseLocation::parse(&dir.path().join("warehouse").display().to_string())?;
        let warehouse = Warehouse::open(location, StorageOptions::default())?;
        let state_db =
            StateDb::connect(&format!("sqlite://{}", dir.path().join("state.db").display())).await?;
        println!(
            "world: {} teams, {} components, {} repositories, {} days",
            config.teams, config.services, repositories, config.days
        );
        for pass in ["backfill (first run)", "incremental (nothing new)"] {
            let run_id = state_db.start_run("bench ingest").await?;
            let started = Instant::now();
            let report = ingest(
                &warehouse,
                &state_db,
                &sources,
                &IngestOptions::default(),
                &run_id,
                Arc::new(NoIngestProgress),
            )
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            let (calls, rows, payloads) = totals(&report);
            println!(
                "{pass}: {seconds:.1} s, {rows} rows decoded ({:.0} rows/s), {payloads} payloads, {calls} API calls ({:.2} per repository per day of data)",
                rows as f64 / seconds.max(1e-9),
                calls as f64 / repositories as f64 / f64::from(config.days),
            );
            if report.has_failures() {
                println!("  failures: {:?}", report.errors());
            }
        }
        Ok(())
    })
}
