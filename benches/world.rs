//! Generation of the benchmark world: 5,000 services × 730 days, streamed a
//! service at a time (histories are generated, their deployment truth is
//! written out as JSON lines, and only compact facts are kept for the DORA
//! roll-up). Prints time and size; asserts nothing.
//!
//! Run with `cargo bench --bench world` (`FATHOM_BENCH_SERVICES`,
//! `FATHOM_BENCH_DAYS` and `FATHOM_BENCH_TEAMS` change the size).

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use fathom_sim::WorldConfig;
use fathom_sim::truth::TruthBuilder;
use fathom_sim::world::{Org, ServiceHistory};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let config = WorldConfig {
        services: env_or("FATHOM_BENCH_SERVICES", 5_000),
        days: env_or("FATHOM_BENCH_DAYS", 730),
        teams: env_or("FATHOM_BENCH_TEAMS", 500),
        ..WorldConfig::default()
    };
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let org = Org::generate(&config);
    let mut builder = TruthBuilder::new(config, &org);
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("deployments.jsonl"))?);
    let (mut commits, mut pull_requests, mut deployments, mut incidents) =
        (0usize, 0usize, 0usize, 0usize);
    for idx in 0..org.components.len() {
        let history = ServiceHistory::generate(&config, &org, idx);
        commits += history.commits.len();
        pull_requests += history.pull_requests.len();
        deployments += history.deployments.len();
        incidents += history.incidents.len();
        for truth in builder.add(&history) {
            serde_json::to_writer(&mut out, &truth)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    let generated = started.elapsed().as_secs_f64();
    let dora = builder.finish();
    let total = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(dir.path().join("deployments.jsonl"))?.len();
    println!(
        "world {} services x {} days ({} teams): {commits} commits, {pull_requests} pull requests, \
         {deployments} deployments, {incidents} incidents",
        config.services, config.days, config.teams
    );
    println!(
        "generated in {generated:.1} s, DORA roll-up of {} rows in {:.1} s, total {total:.1} s; \
         deployment truth {:.1} MB as JSON lines",
        dora.len(),
        total - generated,
        bytes as f64 / 1e6
    );
    Ok(())
}
