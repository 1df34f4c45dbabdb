//! `fathom alerts`: queue what the rules match and deliver what is due
//! (`run`, also the scheduler's notify stage), send a test message to one
//! channel (`test`), and list deliveries, failures and dead letters
//! (`status`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use fathom_pipeline::notify::channels::Outcome;
use fathom_pipeline::notify::{Notifier, NotifyReport};
use fathom_warehouse::state::DeliveryState;

use super::{Config, open_state, open_warehouse};

#[derive(Debug, Subcommand)]
pub(super) enum AlertsCommand {
    /// Read the events (open anomalies, suspect deployments, significant
    /// cost changes, DORA tier drops, degraded sources), queue each once
    /// per matching rule and channel, and send every alert that is due.
    Run {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a test message to one channel now and say what it answered.
    Test {
        /// The channel's name (`[[alerts.channels]] name`).
        #[arg(long)]
        channel: String,
    },
    /// Listen for alerts as an n8n or webhook channel's receiver would,
    /// and print each: for trying channels and digests locally. Checks
    /// `X-Fathom-Signature` when a secret is given (a bad one is answered
    /// 401), and takes a repeated delivery id once.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// Environment variable holding the channel's secret.
        #[arg(long)]
        secret_env: Option<String>,
        /// Stop after this many alerts.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Alerts by state, the newest deliveries, and the dead letters.
    Status {
        /// How many of the newest alerts to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `fathom alerts …`.
pub(super) async fn alerts(config: &Config, command: AlertsCommand) -> Result<ExitCode> {
    if let AlertsCommand::Receive {
        listen,
        secret_env,
        count,
    } = command
    {
        return receive(&listen, secret_env.as_deref(), count).await;
    }
    let state = open_state(config).await?;
    match command {
        AlertsCommand::Run { json } => {
            let warehouse = open_warehouse(config)?;
            let report = run(config, &warehouse, &state).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "alerts: {} events, {} newly queued; {} delivered, {} to retry, {} held, {} refused, {} dead",
                    report.events,
                    report.queued,
                    report.delivered,
                    report.retrying,
                    report.held,
                    report.failed,
                    report.dead
                );
                for error in &report.errors {
                    println!("  {error}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Test { channel } => {
            let notifier = Notifier::new(&config.alerts, &state)?;
            match notifier.send_test(&channel, Utc::now()).await? {
                Outcome::Delivered => {
                    println!("{channel}: delivered");
                    Ok(ExitCode::SUCCESS)
                }
                Outcome::Retry { error, .. } => {
                    println!("{channel}: not delivered, may work later: {error}");
                    Ok(ExitCode::FAILURE)
                }
                Outcome::Refused(error) => {
                    println!("{channel}: refused: {error}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AlertsCommand::Receive { .. } => Ok(ExitCode::SUCCESS),
        AlertsCommand::Status { limit, json } => {
            let counts = state.alert_counts().await?;
            let newest = state.alert_deliveries(None, limit).await?;
            let dead = state
                .alert_deliveries(Some(DeliveryState::Dead), limit)
                .await?;
            if json {
                let counts: BTreeMap<&str, i64> =
                    counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "counts": counts, "newest": newest, "dead": dead,
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let counts: Vec<String> = counts
                .iter()
                .map(|(s, n)| format!("{n} {}", s.as_str()))
                .collect();
            println!(
                "alerts: {}",
                if counts.is_empty() {
                    "none yet".to_owned()
                } else {
                    counts.join(", ")
                }
            );
            for entry in &newest {
                let title = entry.payload["title"].as_str().unwrap_or("");
                println!(
                    "{:<10} {:<9} attempts {:<2} {:<16} {:<16} {title}",
                    entry.state.as_str(),
                    entry.severity,
                    entry.attempts,
                    entry.rule,
                    entry.channel,
                );
                if let Some(error) = entry
                    .last_error
                    .as_deref()
                    .filter(|_| entry.state != DeliveryState::Delivered)
                {
                    println!("           {error}");
                }
            }
            if !dead.is_empty() {
                println!("dead letters ({}):", dead.len());
                for entry in &dead {
                    println!(
                        "  {} {} → {}: {}",
                        entry.delivery_id,
                        entry.rule,
                        entry.channel,
                        entry.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `fathom alerts receive` shares between requests.
#[derive(Clone)]
struct Receiver {
    secret: Option<String>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    done: std::sync::Arc<tokio::sync::Notify>,
    count: Option<usize>,
}

/// `fathom alerts receive`.
async fn receive(listen: &str, secret_env: Option<&str>, count: Option<usize>) -> Result<ExitCode> {
    let secret = match secret_env {
        Some(var) => Some(
            std::env::var(var)
                .map_err(|_| anyhow::anyhow!("environment variable `{var}` is not set"))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let receiver = Receiver {
        secret,
        seen: Default::default(),
        done: Default::default(),
        count,
    };
    let done = receiver.done.clone();
    let app = axum::Router::new()
        .fallback(axum::routing::post(received))
        .with_state(receiver);
    println!(
        "receiving alerts at http://{}/ (any path)",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = done.notified() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

async fn received(
    axum::extract::State(receiver): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if let Some(secret) = &receiver.secret
        && !fathom_pipeline::notify::channels::verify_webhook_signature(
            secret,
            &body,
            header("x-fathom-signature"),
        )
    {
        println!("refused: a request whose X-Fathom-Signature does not match the secret");
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    let delivery = header("x-fathom-delivery").to_owned();
    let Ok(mut seen) = receiver.seen.lock() else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    };
    if !delivery.is_empty() && seen.contains(&delivery) {
        println!("repeat of {delivery}: already taken");
        return axum::http::StatusCode::OK;
    }
    seen.push(delivery.clone());
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let event = &json["event"];
    println!(
        "{} {} [{}] {}",
        delivery,
        event["kind"].as_str().unwrap_or("?"),
        json["rule"].as_str().unwrap_or("?"),
        event["title"].as_str().unwrap_or("")
    );
    for field in event["fields"].as_array().into_iter().flatten() {
        println!(
            "  {}: {}",
            field["name"].as_str().unwrap_or(""),
            field["value"]
                .as_str()
                .unwrap_or("")
                .replace('\n', "\n    ")
        );
    }
    if let Some(link) = event["link"].as_str() {
        println!("  {link}");
    }
    if receiver.count.is_some_and(|n| seen.len() >= n) {
        receiver.done.notify_one();
    }
    axum::http::StatusCode::OK
}

/// `fathom digest --format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum DigestFormat {
    Markdown,
    Html,
}

/// `fathom digest`: this week's digest of a team or the organisation.
pub(super) async fn digest(
    config: &Config,
    team: Option<&str>,
    format: DigestFormat,
) -> Result<ExitCode> {
    let warehouse = open_warehouse(config)?;
    let scope = match team {
        None | Some("org") => "org".to_owned(),
        Some(team) if team.contains(':') => team.to_owned(),
        Some(team) if team.contains('/') => format!("group:{team}"),
        Some(team) => format!("group:default/{team}"),
    };
    let at = config.alerts.digest.due_slot(Utc::now())?;
    let digest = fathom_pipeline::notify::digest::digest(
        &warehouse,
        &scope,
        at,
        config.alerts.dashboard_url.as_deref(),
    )
    .await?;
    match format {
        DigestFormat::Markdown => print!("{}", digest.markdown()),
        DigestFormat::Html => print!("{}", digest.html()),
    }
    Ok(ExitCode::SUCCESS)
}

/// One notify run under its own ledger record: queue, then deliver.
pub(crate) async fn run(
    config: &Config,
    warehouse: &fathom_warehouse::Warehouse,
    state: &fathom_warehouse::state::StateDb,
) -> Result<NotifyReport> {
    // A configuration mistake is said before a run is recorded.
    Notifier::new(&config.alerts, state)?;
    let run_id = state.start_run("alerts run").await?;
    Ok(super::pipeline(config, warehouse, state)
        .notify(&run_id)
        .await?)
}
