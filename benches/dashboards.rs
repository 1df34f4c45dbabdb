//! How fast the dashboards draw: the default demo world (`fathom demo
//! --no-serve`: 8 teams, 40 services, 180 days), a release `fathom serve`
//! child, and headless Chromium (its cache off) loading each page ten times
//! in a fresh navigation. Reported per page: the median and slowest time from
//! navigation start to drawn (`body[data-ready=1]`, set once every panel
//! is in the DOM), and the page API call alone from this process. Figures
//! are printed, never asserted. Run with `cargo bench --bench dashboards`
//! (needs `chromium`; `FATHOM_BENCH_LOADS` changes the count).

// The tests' client; the benchmark uses part of it.
#[allow(dead_code)]
#[path = "../tests/it/cdp.rs"]
mod cdp;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use support::fathom;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let Some(binary) = cdp::chromium() else {
        eprintln!("skipping: Chromium is not installed (apt-get install chromium)");
        return Ok(());
    };
    let loads: usize = std::env::var("FATHOM_BENCH_LOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir()?;
    let demo = support::demo_world(dir.path())?;
    let config = demo.join("fathom.toml");
    let created = fathom(
        &config,
        &["tokens", "create", "--name", "bench", "--role", "admin"],
    )?;
    let token = created.lines().nth(1).context("no token")?.to_owned();
    let mut server = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .arg("--config")
        .arg(&config)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--postgres-listen",
            "127.0.0.1:0",
        ])
        .env("FATHOM_SCHEDULE__ENABLED", "false")
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = BufReader::new(server.stdout.take().context("no stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    std::thread::spawn(move || stdout.lines().for_each(drop));
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .and_then(|u| u.strip_suffix("/api/v1"))
        .with_context(|| format!("serve did not start: {line}"))?
        .to_owned();

    let http = reqwest::Client::new();
    let mut browser = cdp::Browser::launch(&binary).await?;
    // Every load fetches its script and data: a cold view, not the cache's.
    browser
        .call(
            "Network.setCacheDisabled",
            serde_json::json!({"cacheDisabled": true}),
        )
        .await?;
    browser.open(&format!("{base}/#token={token}")).await?;
    let team = "group:default/team-payments";
    let pages = [
        ("overview", "/".to_owned(), "overview"),
        ("teams", "/teams".to_owned(), "teams"),
        ("team", format!("/team?team={team}"), "team"),
        ("health", "/health".to_owned(), "health"),
    ];
    println!(
        "{:<10} {:>16} {:>16} {:>18}",
        "page", "drawn p50 (ms)", "drawn max (ms)", "API call p50 (ms)"
    );
    for (name, path, api_page) in pages {
        let mut drawn = Vec::new();
        for _ in 0..loads {
            browser.open(&format!("{base}{path}")).await?;
            let ms = browser
                .eval("performance.now()")
                .await?
                .as_f64()
                .context("no time")?;
            drawn.push(ms);
        }
        let scope = if api_page == "team" { team } else { "org" };
        let mut api = Vec::new();
        for _ in 0..loads {
            let started = Instant::now();
            let answer = http
                .get(format!("{base}/api/v1/pages/{api_page}?scope={scope}"))
                .bearer_auth(&token)
                .send()
                .await?;
            if !answer.status().is_success() {
                bail!("{api_page}: {}", answer.status());
            }
            answer.bytes().await?;
            api.push(started.elapsed().as_secs_f64() * 1_000.0);
        }
        let slowest = drawn.iter().copied().fold(0.0, f64::max);
        println!(
            "{name:<10} {:>16.0} {:>16.0} {:>18.1}",
            median(&mut drawn),
            slowest,
            median(&mut api)
        );
    }
    let problems = browser.problems();
    if !problems.is_empty() {
        bail!("the pages reported problems: {problems:#?}");
    }
    drop(browser);
    let _ = server.kill();
    let _ = server.wait();
    Ok(())
}
