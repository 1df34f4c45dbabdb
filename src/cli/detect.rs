//! `fathom detect`: every series scored for anomalies (also run after
//! `fathom transform` and by the scheduler).

use std::process::ExitCode;

use anyhow::Result;
use fathom_ml::detect::DetectReport;

use super::{Config, open_state, open_warehouse, pipeline};

/// Runs the detect stage under its own ledger record.
pub(super) async fn run_detect(config: &Config, full: bool) -> Result<DetectReport> {
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let run_id = state.start_run("detect").await?;
    Ok(pipeline(config, &warehouse, &state)
        .detect(&run_id, full)
        .await?)
}

/// One line per metric and kind, then where to look.
pub(super) fn print_report(report: &DetectReport) {
    println!(
        "detect ({}): {} series, {} days scored, {} anomalies ({} open) in {:.1}s (read {:.1}s, score and write scores {:.1}s, write anomalies {:.1}s)",
        report.mode,
        report.series,
        report.points,
        report.anomalies,
        report.open,
        report.seconds,
        report.phases.read,
        report.phases.score_and_write_scores,
        report.phases.write_anomalies
    );
    if let Some(reason) = &report.full_reason {
        println!("  full run: {reason}");
    }
    for (kind, count) in &report.by_kind {
        println!("  {kind:<32} {count:>6}");
    }
    if report.anomalies > 0 {
        println!(
            "  largest: fathom sql \"SELECT metric, scope, kind, first_day, last_day, status, impact, unit, driver FROM anomalies ORDER BY abs(impact) DESC LIMIT 10\""
        );
    }
}

pub(super) async fn detect(config: &Config, full: bool, json: bool) -> Result<ExitCode> {
    let report = run_detect(config, full).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}
