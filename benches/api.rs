//! The API under load, from this (second) process over loopback, against a
//! `fathom serve` child process:
//!
//! - `GET /api/v1/dora/{ref}` at a fixed 1,000 requests/s for 10 s (open
//!   loop: requests are sent on schedule whether or not earlier ones have
//!   answered, so slow answers show as latency, not as a lower rate), then
//!   as fast as 32 connections go for 5 s;
//! - a SQL aggregate over the `deployments` table grown to 10 million rows,
//!   through `POST /api/v1/sql`, five times.
//!
//! The warehouse is the demo world (`fathom demo --no-serve`) plus
//! synthetic deployment rows appended in one-million-row commits. Figures
//! are printed, never asserted. Run with `cargo bench --bench api`
//! (`FATHOM_BENCH_SQL_ROWS`, `FATHOM_BENCH_RATE`, `FATHOM_BENCH_SECONDS`
//! change the sizes).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use fathom_models::tables::DEPLOYMENTS;
use fathom_warehouse::{StorageOptions, Warehouse, WarehouseLocation};
use support::fathom;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One million synthetic deployments starting at row `first`.
fn deployments(first: usize, n: usize) -> Result<RecordBatch> {
    let base = 1_735_689_600_000_000_i64; // 2025-01-01T00:00:00Z
    let ids: StringArray = (first..first + n)
        .map(|i| Some(format!("bench-{i}")))
        .collect();
    let sources: StringArray = (0..n).map(|_| Some("bench")).collect();
    let entities: StringArray = (first..first + n)
        .map(|i| Some(format!("component:default/svc-{}", i % 5_000)))
        .collect();
    let environments: StringArray = (first..first + n)
        .map(|i| Some(if i % 3 == 0 { "staging" } else { "production" }))
        .collect();
    let statuses: StringArray = (first..first + n)
        .map(|i| Some(if i % 7 == 0 { "failure" } else { "success" }))
        .collect();
    let started: TimestampMicrosecondArray = (first..first + n)
        .map(|i| Some(base + (i as i64 % 63_072_000) * 1_000_000))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let durations: Float64Array = (first..first + n).map(|i| Some((i % 900) as f64)).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("deployment_id", Arc::new(ids)),
        ("source", Arc::new(sources)),
        ("entity_ref", Arc::new(entities)),
        ("environment", Arc::new(environments)),
        ("status", Arc::new(statuses)),
        ("started_at", Arc::new(started)),
        ("duration_seconds", Arc::new(durations)),
    ];
    Ok(RecordBatch::try_from_iter(columns)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(what: &str, mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: {} answers in {:.1} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {errors} errors",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let sql_rows: usize = env_or("FATHOM_BENCH_SQL_ROWS", 10_000_000);
    let rate: u64 = env_or("FATHOM_BENCH_RATE", 1_000);
    let seconds: u64 = env_or("FATHOM_BENCH_SECONDS", 10);
    let dir = tempfile::tempdir()?;
    let demo = support::demo_world(dir.path())?;

    let warehouse = Warehouse::open(
        WarehouseLocation::parse(&demo.join("data").display().to_string())?,
        StorageOptions::default(),
    )?;
    let started = Instant::now();
    let mut first = 0;
    while first < sql_rows {
        let n = (sql_rows - first).min(1_000_000);
        warehouse
            .append(&DEPLOYMENTS, &[deployments(first, n)?])
            .await?;
        first += n;
    }
    println!(
        "appended {sql_rows} deployments in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let config = demo.join("fathom.toml");
    let secret = |text: String| text.lines().nth(1).map(str::to_owned).context("no secret");
    let viewer = secret(fathom(
        &config,
        &["tokens", "create", "--name", "bench", "--role", "viewer"],
    )?)?;
    let analyst = secret(fathom(
        &config,
        &[
            "tokens",
            "create",
            "--name",
            "bench-sql",
            "--role",
            "analyst",
        ],
    )?)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0", "--postgres-listen="])
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env("FATHOM_SCHEDULE__ENABLED", "false")
        .env("FATHOM_API__RATE_LIMIT_PER_MINUTE", "0")
        .env("FATHOM_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let base = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix("/api/v1"))
        .context("no address")?
        .to_owned();
    let result = load(&base, &viewer, &analyst, rate, seconds).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn load(base: &str, viewer: &str, analyst: &str, rate: u64, seconds: u64) -> Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("{base}/api/v1/dora/group%3Adefault%2Fteam-payments?window=30d");
    // Warm up (and check the scope exists).
    for _ in 0..200 {
        let answer = http.get(&url).bearer_auth(viewer).send().await?;
        if !answer.status().is_success() {
            bail!("{url}: {}", answer.status());
        }
        answer.bytes().await?;
    }

    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = rate * seconds;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..total {
        ticks.tick().await;
        let (http, url, token, sender) =
            (http.clone(), url.clone(), viewer.to_owned(), sender.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match http.get(&url).bearer_auth(&token).send().await {
                Ok(answer) => answer.status().is_success() && answer.bytes().await.is_ok(),
                Err(_) => false,
            };
            let _ = sender.send((sent.elapsed(), ok));
        });
    }
    drop(sender);
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some((latency, ok)) = receiver.recv().await {
        if ok {
            latencies.push(latency);
        } else {
            errors += 1;
        }
    }
    report(
        &format!("GET /dora/{{ref}} at {rate}/s for {seconds} s"),
        latencies,
        errors,
        started.elapsed(),
    );

    // As fast as 32 connections go.
    let deadline = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (http, url, token) = (http.clone(), url.clone(), viewer.to_owned());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(answer) => answer.status().is_success() && answer.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await?;
        latencies.extend(l);
        errors += e;
    }
    report(
        "GET /dora/{ref}, 32 connections flat out",
        latencies,
        errors,
        started.elapsed(),
    );

    let sql = "SELECT environment, status, count(*) AS deployments, \
               avg(duration_seconds) AS mean_seconds, max(started_at) AS latest \
               FROM deployments GROUP BY environment, status ORDER BY 1, 2";
    let mut times = Vec::new();
    for _ in 0..5 {
        let sent = Instant::now();
        let answer = http
            .post(format!("{base}/api/v1/sql"))
            .bearer_auth(analyst)
            .json(&serde_json::json!({"sql": sql}))
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("SQL: {} {}", answer.status(), answer.text().await?);
        }
        let rows: serde_json::Value = answer.json().await?;
        times.push(sent.elapsed());
        if times.len() == 1 {
            let total: u64 = rows
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["deployments"].as_u64())
                .sum();
            println!("SQL aggregate over {total} deployments: {sql}");
        }
    }
    let ms: Vec<String> = times
        .iter()
        .map(|t| format!("{:.0}", t.as_secs_f64() * 1000.0))
        .collect();
    times.sort();
    println!(
        "SQL aggregate via POST /api/v1/sql, 5 runs: {} ms (median {:.0} ms)",
        ms.join(", "),
        times[2].as_secs_f64() * 1000.0
    );
    Ok(())
}
