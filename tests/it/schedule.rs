//! The scheduler inside `fathom serve`: an admin asks for a run, the
//! source is ingested and the marts brought up to date, a failing source
//! is retried and shows degraded, and roles and unknown sources are
//! refused.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use fathom_sim::WorldConfig;
use fathom_sim::serve::SimOptions;
use serde_json::{Value, json};

use crate::api::{serve, token};
use crate::ingest::Sim;
use crate::support::{count, local_warehouse};

/// A small world's simulators and a configuration reading them.
fn small_world(options: SimOptions) -> Result<(Sim, tempfile::TempDir, std::path::PathBuf)> {
    let world = WorldConfig {
        teams: 2,
        services: 4,
        days: 30,
        ..WorldConfig::default()
    };
    let sim = Sim::start(world, options)?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    Ok((sim, dir, config))
}

/// The ledger's runs whose command starts with `prefix`.
fn runs_of<'a>(runs: &'a Value, prefix: &str) -> Vec<&'a Value> {
    runs["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["command"].as_str().is_some_and(|c| c.starts_with(prefix)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_runs_sources_when_asked_and_retries_failures() -> Result<()> {
    let (_sim, dir, config) = small_world(SimOptions::default())?;
    // A second catalog whose upstream refuses connections (port 9), and
    // schedules far away so only requests (and retries) run.
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(
        "\n[[sources]]\ntype = \"backstage\"\nname = \"broken\"\nbase_url = \"http://127.0.0.1:9\"\n\
         token = \"x\"\n[sources.http]\nmax_retries = 0\n\n\
         [schedule]\nevery = \"1d\"\nretry_after = \"1s\"\n[schedule.sources]\nbroken = \"0 3 * * *\"\n",
    );
    std::fs::write(&config, text)?;
    let config = config.display().to_string();
    let admin = token(dir.path(), "admin", "")?;
    let viewer = token(dir.path(), "viewer", "")?;
    let server = serve(dir.path(), &[("FATHOM_CONFIG", &config)], "127.0.0.1:0")?;
    let http = reqwest::Client::new();
    let trigger = |secret: &str, body: Value| {
        http.post(format!("{}/api/v1/runs", server.base))
            .bearer_auth(secret)
            .json(&body)
            .send()
    };
    assert_eq!(trigger(&viewer, json!({})).await?.status(), 403);
    let unknown = trigger(&admin, json!({"source": "nope"})).await?;
    assert_eq!(unknown.status(), 404);
    let accepted = trigger(&admin, json!({"source": "backstage"})).await?;
    assert_eq!(accepted.status(), 202);
    assert_eq!(
        accepted.json::<Value>().await?["queued"],
        json!(["backstage"])
    );
    assert_eq!(
        trigger(&admin, json!({"source": "broken"})).await?.status(),
        202
    );

    // The catalog is ingested, then transformed; the broken source fails
    // and is tried again a second later.
    let started = Instant::now();
    let runs = loop {
        let runs: Value = http
            .get(format!("{}/api/v1/runs", server.base))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        let ingested = runs_of(&runs, "ingest --source backstage (scheduled)");
        let transformed = runs_of(&runs, "transform (scheduled)");
        let broken = runs_of(&runs, "ingest --source broken (scheduled)");
        if ingested.iter().any(|r| r["status"] == "succeeded")
            && transformed.iter().any(|r| r["status"] == "succeeded")
            && broken.len() >= 2
        {
            break runs;
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("scheduled runs did not happen: {runs:#}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for run in runs_of(&runs, "ingest --source broken (scheduled)") {
        assert_ne!(run["status"], "succeeded", "{run}");
    }
    let freshness: Value = http
        .get(format!("{}/api/v1/freshness", server.base))
        .bearer_auth(&viewer)
        .send()
        .await?
        .json()
        .await?;
    let sources = freshness["sources"].as_array().cloned().unwrap_or_default();
    let state_of = |name: &str| {
        sources
            .iter()
            .find(|s| s["source"] == name)
            .map(|s| s["degraded"].clone())
    };
    assert_eq!(state_of("broken"), Some(json!(true)), "{freshness}");
    assert_eq!(state_of("backstage"), Some(json!(false)), "{freshness}");
    drop(server);

    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let components = count(
        &warehouse,
        "SELECT count(*) FROM catalog_entities WHERE kind = 'component'",
    )
    .await?;
    // The world's 4 services (and whatever else its catalog lists).
    assert!(components >= 4, "{components}");
    Ok(())
}

/// SIGTERM during a scheduled run: the run gets its grace period, then is
/// abandoned, and the ledger says so (nothing is left "running").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_run_that_outlasts_its_grace() -> Result<()> {
    // Every GitHub answer takes 3 s: a run lasts far longer than the grace.
    let (_sim, dir, config) = small_world(SimOptions {
        faults: "github:latency_ms=3000".parse()?,
        ..SimOptions::default()
    })?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str("\n[schedule]\nevery = \"1d\"\nshutdown_grace_seconds = 1\n");
    std::fs::write(&config, text)?;
    let config = config.display().to_string();
    let admin = token(dir.path(), "admin", "")?;
    let server = serve(dir.path(), &[("FATHOM_CONFIG", &config)], "127.0.0.1:0")?;
    let http = reqwest::Client::new();
    let accepted = http
        .post(format!("{}/api/v1/runs", server.base))
        .bearer_auth(&admin)
        .json(&json!({"source": "github"}))
        .send()
        .await?;
    assert_eq!(accepted.status(), 202);
    // Wait until the run is under way.
    let started = Instant::now();
    loop {
        let runs: Value = http
            .get(format!("{}/api/v1/runs", server.base))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        if runs_of(&runs, "ingest --source github (scheduled)")
            .iter()
            .any(|r| r["status"] == "running")
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the run did not start: {runs:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopping = Instant::now();
    server.terminate()?;
    let stopped_in = stopping.elapsed();
    // The grace (1 s) and the wind-down, not the run's minutes.
    assert!(stopped_in < Duration::from_secs(20), "{stopped_in:?}");

    let output = crate::dora::fathom_in(dir.path(), &["runs", "--json"])?;
    let runs: Value = serde_json::from_slice(&output.stdout)?;
    let run = runs
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["command"] == "ingest --source github (scheduled)")
        .cloned()
        .unwrap_or_default();
    assert_eq!(run["status"], "failed", "{runs:#}");
    assert!(run["errors"].to_string().contains("abandoned"), "{run:#}");
    Ok(())
}
