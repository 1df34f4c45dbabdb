//! `fathom transform`: the marts, with a line per mart as it is written.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{Config, open_state, open_warehouse, pipeline};

/// Prints each mart as it is written.
pub(super) struct TransformLines {
    pub(super) quiet: bool,
}

impl fathom_transforms::TransformProgress for TransformLines {
    fn planned(&self, plan: &str) {
        if !self.quiet {
            println!("{plan}");
        }
    }

    fn mart_started(&self, mart: &str) {
        // On stderr, so `--json` output stays clean.
        if !self.quiet {
            eprint!("{mart}…\r");
        }
    }

    fn mart_finished(&self, report: &fathom_transforms::MartReport) {
        if !self.quiet {
            // Spilling is worth knowing (it is why a mart got slow), and
            // noise when it did not happen.
            let spilled = if report.spilled_bytes > 0 {
                format!(
                    ", spilled {:.1} MiB to disk",
                    report.spilled_bytes as f64 / f64::from(1u32 << 20)
                )
            } else {
                String::new()
            };
            println!(
                "{:<20} {:<16} {:>9} rows (replacing {}) in {:.1}s{spilled}",
                report.mart, report.recomputed, report.rows, report.previous_rows, report.seconds
            );
        }
    }
}

pub(super) async fn transform(
    config: &Config,
    mart: Option<&str>,
    as_of: Option<&str>,
    full: bool,
    json: bool,
) -> Result<ExitCode> {
    let as_of = match as_of {
        None => fathom_transforms::default_as_of(),
        Some(text) => text
            .parse::<chrono::DateTime<chrono::Utc>>()
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            })
            .with_context(|| format!("--as-of `{text}` is not a date or an RFC 3339 instant"))?,
    };
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let run_id = state.start_run("transform").await?;
    let progress = TransformLines { quiet: json };
    let request = fathom_pipeline::TransformRequest {
        only: mart.map(str::to_owned),
        as_of,
        full,
    };
    let outcome = pipeline(config, &warehouse, &state)
        .transform(&run_id, &request, &progress)
        .await?;
    // Anomalies follow the marts they read; one mart alone is a repair,
    // not new data.
    let detected = match mart {
        None => Some(super::detect::run_detect(config, full).await?),
        Some(_) => None,
    };
    // So are the deployments' risk scores, once a model was trained.
    let risk = match mart {
        None => pipeline(config, &warehouse, &state).score_risk().await?,
        Some(_) => None,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"run_id": run_id, "plan": outcome.plan, "marts": outcome.marts, "detect": detected, "risk": risk})
            )?
        );
    } else if let Some(report) = &detected {
        super::detect::print_report(report);
        if let Some(risk) = &risk {
            println!(
                "risk: {} deployments scored with {}, {} flagged",
                risk.deployments, risk.model_version, risk.flagged
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
