//! `fathom audit` and `fathom runs`: the audit log and the run ledger.

use std::process::ExitCode;

use anyhow::Result;

use super::{Config, open_state};

/// `fathom audit`.
pub(super) async fn audit(config: &Config, limit: i64, json: bool) -> Result<ExitCode> {
    let state = open_state(config).await?;
    for record in state.audit_log(limit).await? {
        if json {
            println!("{}", serde_json::to_string(&record)?);
        } else {
            println!(
                "{}  {:24}  {:16}  {}",
                record.occurred_at.format("%Y-%m-%d %H:%M:%S"),
                record.actor,
                record.action,
                record.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn runs(config: &Config, limit: i64, json: bool) -> Result<ExitCode> {
    let state = open_state(config).await?;
    let runs = state.runs(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:36}  {:20}  {:9}  {:>8}  command",
        "run id", "started (UTC)", "status", "seconds"
    );
    for run in runs {
        let seconds = run
            .finished_at
            .map(|f| {
                format!(
                    "{:.1}",
                    (f - run.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "-".to_owned());
        let status = serde_json::to_value(run.status)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        println!(
            "{:36}  {:20}  {:9}  {:>8}  {}",
            run.run_id,
            run.started_at.format("%Y-%m-%d %H:%M:%S"),
            status,
            seconds,
            run.command
        );
        for (name, count) in &run.row_counts {
            println!("{:38}{name}: {count}", "");
        }
        for error in &run.errors {
            println!("{:38}error: {error}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}
