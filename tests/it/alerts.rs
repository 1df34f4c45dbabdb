//! Alerts end to end through the binary: a degraded source is an event;
//! `fathom alerts run` queues it for the rule's webhook and delivers it,
//! signed. Killed (SIGKILL) while the receiver holds the request, the run
//! loses nothing: the next run on the host sees the owner gone and sends
//! the same alert again, under the same delivery id, so the receiver
//! accepts it once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fathom_pipeline::notify::channels::verify_webhook_signature;
use fathom_warehouse::state::{DeliveryState, StateDb};
use serde_json::Value;

use crate::support::fathom_bin;

const SECRET: &str = "receiver-secret";

/// What the receiver saw: every request as it arrived (delivery id, body),
/// and the ones it answered 200 to.
#[derive(Clone, Default)]
struct Receiver {
    arrived: Arc<Mutex<Vec<(String, Value)>>>,
    accepted: Arc<Mutex<Vec<String>>>,
    /// While true, requests are held unanswered.
    hold: Arc<Mutex<bool>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if !verify_webhook_signature(SECRET, &body, &header("x-fathom-signature")) {
        return StatusCode::UNAUTHORIZED;
    }
    let delivery = header("x-fathom-delivery");
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut arrived) = receiver.arrived.lock() {
        arrived.push((delivery.clone(), json));
    }
    while receiver.hold.lock().map(|h| *h).unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Ok(mut accepted) = receiver.accepted.lock() {
        // An idempotent receiver: a delivery id it has answered is not
        // applied again.
        if !accepted.contains(&delivery) {
            accepted.push(delivery);
        }
    }
    StatusCode::OK
}

fn fathom_with(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(fathom_bin());
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("FATHOM_TEST_HOOK_SECRET", SECRET)
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env_remove("FATHOM_WAREHOUSE__URL");
    command
}

fn output(command: &mut Command) -> Result<Output> {
    let output = command.output()?;
    ensure!(
        output.status.success(),
        "fathom failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alerts_run_killed_mid_delivery_loses_nothing_and_sends_once() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let receiver = Receiver::default();
    *receiver.hold.lock().map_err(|e| anyhow::anyhow!("{e}"))? = true;
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("fathom.toml");
    // Port 9 refuses connections: the catalog source is degraded.
    std::fs::write(
        &config,
        format!(
            "[warehouse]\nurl = \"{}\"\n\n\
             [alerts]\ndashboard_url = \"http://fathom.local\"\n\
             [[alerts.channels]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{address}/hook\"\n\
             secret_env = \"FATHOM_TEST_HOOK_SECRET\"\n\
             [[alerts.rules]]\nname = \"operations\"\nchannels = [\"hook\"]\nkinds = [\"source_degraded\"]\n\n\
             [[sources]]\ntype = \"backstage\"\nname = \"catalog\"\n\
             base_url = \"http://127.0.0.1:9\"\ntoken = \"x\"\n[sources.http]\nmax_retries = 0\n",
            data.display()
        ),
    )?;
    let ingest = fathom_with(&config, &["ingest"]).output()?;
    ensure!(!ingest.status.success(), "the source should be down");

    let mut child = fathom_with(&config, &["alerts", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    loop {
        if receiver
            .arrived
            .lock()
            .map(|a| !a.is_empty())
            .unwrap_or(false)
        {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("alerts run ended ({status}) before its request arrived");
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "no request arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed while the receiver holds its request.
    child.kill()?;
    child.wait()?;
    *receiver.hold.lock().map_err(|e| anyhow::anyhow!("{e}"))? = false;

    let state_url = format!("sqlite://{}/state.db", data.display());
    {
        let state = StateDb::connect(&state_url).await?;
        let rows = state.alert_deliveries(None, 10).await?;
        ensure!(rows.len() == 1, "{rows:?}");
        ensure!(rows[0].state == DeliveryState::Sending, "{rows:?}");
        state.close().await;
    }

    let run = output(&mut fathom_with(&config, &["alerts", "run", "--json"]))?;
    let report: Value = serde_json::from_slice(&run.stdout)?;
    assert_eq!(
        report["queued"], 0,
        "the event was queued by the killed run"
    );
    assert_eq!(report["delivered"], 1, "{report}");
    // A third run finds nothing to send.
    let again: Value = serde_json::from_slice(
        &output(&mut fathom_with(&config, &["alerts", "run", "--json"]))?.stdout,
    )?;
    assert_eq!(
        (again["queued"].as_u64(), again["delivered"].as_u64()),
        (Some(0), Some(0))
    );

    let state = StateDb::connect(&state_url).await?;
    let rows = state.alert_deliveries(None, 10).await?;
    assert_eq!(rows.len(), 1, "one alert for one event, rule and channel");
    assert_eq!(rows[0].state, DeliveryState::Delivered);
    assert_eq!(rows[0].attempts, 1, "the killed attempt never finished");

    let arrived = receiver
        .arrived
        .lock()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .clone();
    let ids: std::collections::BTreeSet<&str> = arrived.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 1, "every request carried the same delivery id");
    assert!(ids.contains(rows[0].delivery_id.as_str()));
    let accepted = receiver
        .accepted
        .lock()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .clone();
    assert_eq!(accepted, [rows[0].delivery_id.clone()]);
    let body = &arrived[arrived.len() - 1].1;
    assert_eq!(body["rule"], "operations");
    assert_eq!(body["event"]["kind"], "source_degraded");
    assert_eq!(body["event"]["scope"], "catalog");
    assert_eq!(body["event"]["link"], "http://fathom.local/health");

    let status = output(&mut fathom_with(&config, &["alerts", "status"]))?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.starts_with("alerts: 1 delivered"), "{text}");
    assert!(text.contains("Source catalog is degraded"), "{text}");
    let test = fathom_with(&config, &["alerts", "test", "--channel", "hook"]).output()?;
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stdout)
    );
    let unknown = fathom_with(&config, &["alerts", "test", "--channel", "nope"]).output()?;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no channel `nope`"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    Ok(())
}

/// The documented way to try a digest locally: `fathom alerts receive`
/// listens as a webhook channel's receiver, checks the signature, prints
/// what arrives and stops after `--count`; `fathom alerts run` sends the
/// leaders' digest to it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_reaches_a_local_receiver() -> Result<()> {
    use std::io::{BufRead, BufReader};

    let mut receiver = Command::new(fathom_bin())
        .args([
            "alerts",
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--secret-env",
            "FATHOM_TEST_HOOK_SECRET",
            "--count",
            "1",
        ])
        .env("FATHOM_TEST_HOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(
        receiver
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| anyhow::anyhow!("no address in {first:?}"))?
        .to_owned();

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("fathom.toml");
    std::fs::write(
        &config,
        format!(
            "[warehouse]\nurl = \"{}\"\n\n\
             [[alerts.channels]]\nname = \"local\"\ntype = \"webhook\"\nurl = \"{url}digest\"\n\
             secret_env = \"FATHOM_TEST_HOOK_SECRET\"\n\
             [alerts.digest]\nchannels = [\"local\"]\n",
            dir.path().join("data").display()
        ),
    )?;
    let run: Value = serde_json::from_slice(
        &output(&mut fathom_with(&config, &["alerts", "run", "--json"]))?.stdout,
    )?;
    assert_eq!(
        (run["queued"].as_u64(), run["delivered"].as_u64()),
        (Some(1), Some(1)),
        "{run}"
    );
    let status = receiver.wait()?;
    assert!(status.success(), "the receiver stops after one alert");
    let printed: Vec<String> = lines.collect::<std::io::Result<_>>()?;
    let text = printed.join("\n");
    assert!(
        text.contains("digest [digest] Weekly digest for the organisation"),
        "{text}"
    );
    assert!(
        text.contains("  Cost: No complete month of cost data."),
        "{text}"
    );
    let again: Value = serde_json::from_slice(
        &output(&mut fathom_with(&config, &["alerts", "run", "--json"]))?.stdout,
    )?;
    assert_eq!(again["queued"], 0, "once a week");
    Ok(())
}
