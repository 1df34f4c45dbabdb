//! `fathom ingest` and `fathom reprocess`, and their reports.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::{Config, open_state, open_warehouse, pipeline};

pub(super) async fn ingest(
    config: &Config,
    source: Option<String>,
    since: Option<chrono::NaiveDate>,
    full: bool,
    json: bool,
) -> Result<ExitCode> {
    if config.sources.is_empty() {
        bail!(
            "no sources configured; add `[[sources]]` to fathom.toml (see fathom.example.toml, or `fathom sim serve` for a ready-made snippet)"
        );
    }
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let command = match &source {
        Some(name) => format!("ingest --source {name}"),
        None => "ingest".to_owned(),
    };
    let run_id = state.start_run(&command).await?;
    let options = fathom_ingest::runner::IngestOptions {
        source,
        since: since
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
        full,
    };
    let progress = ingest_progress(json);
    let report = pipeline(config, &warehouse, &state)
        .ingest(&run_id, &options, progress)
        .await?;
    show_ingest_report(&run_id, &report, json)?;
    Ok(if report.has_failures() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Bars on a terminal, unless the output is JSON.
pub(super) fn ingest_progress(json: bool) -> Arc<dyn fathom_ingest::runner::IngestProgress> {
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Arc::new(fathom_ingest::runner::NoIngestProgress)
    } else {
        Arc::new(crate::progress::IngestBars::new())
    }
}

/// The report of an ingest or reprocess run, as JSON or a table.
pub(super) fn show_ingest_report(
    run_id: &str,
    report: &fathom_ingest::runner::IngestReport,
    json: bool,
) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run_id": run_id, "report": report}))?
        );
    } else {
        print_ingest_report(report);
        println!("run {run_id}");
    }
    Ok(())
}

pub(super) fn print_ingest_report(report: &fathom_ingest::runner::IngestReport) {
    println!(
        "{:<12} {:<12} {:>8} {:>9} {:>9} {:>9} {:>11}  status",
        "source", "stream", "payloads", "rows", "changed", "unmapped", "quarantined"
    );
    for source in &report.sources {
        for stream in &source.streams {
            let status = match &stream.error {
                Some(error) => format!("error: {error}"),
                None if !stream.warnings.is_empty() => {
                    format!("{} warning(s)", stream.warnings.len())
                }
                None => "ok".to_owned(),
            };
            println!(
                "{:<12} {:<12} {:>8} {:>9} {:>9} {:>9} {:>11}  {status}",
                source.name,
                stream.stream,
                stream.payloads,
                stream.rows.values().sum::<usize>(),
                stream.rows_changed.values().sum::<usize>(),
                stream.unmapped.values().sum::<usize>(),
                stream.quarantined,
            );
            for warning in &stream.warnings {
                println!("{:<12} {:<12} warning: {warning}", "", "");
            }
        }
        let degraded = if source.degraded {
            format!(
                " — DEGRADED: {}",
                source.error.as_deref().unwrap_or("upstream unavailable")
            )
        } else {
            String::new()
        };
        if matches!(source.kind.as_str(), "cost_report" | "portal_events") {
            // File sources make no API calls.
            if !degraded.is_empty() {
                println!("{:<12}{degraded}", source.name);
            }
            continue;
        }
        println!(
            "{:<12} {} API calls ({} retries, {} not modified, {:.1}s waiting for rate limits){}",
            source.name,
            source.api_calls,
            source.retries,
            source.not_modified,
            source.rate_limit_wait_seconds,
            degraded
        );
    }
}

pub(super) async fn reprocess(
    config: &Config,
    source: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    if config.sources.is_empty() {
        bail!("no sources configured; add `[[sources]]` to fathom.toml");
    }
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let run_id = state.start_run("reprocess").await?;
    let options = fathom_ingest::runner::IngestOptions {
        source,
        ..fathom_ingest::runner::IngestOptions::default()
    };
    let progress = ingest_progress(json);
    let report = pipeline(config, &warehouse, &state)
        .reprocess(&run_id, &options, progress)
        .await?;
    show_ingest_report(&run_id, &report, json)?;
    Ok(ExitCode::SUCCESS)
}
