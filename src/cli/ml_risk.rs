//! `fathom ml train-risk`, `fathom ml risk` and `fathom ml evaluate-risk`:
//! the deployment risk model trained on the warehouse's history, scoring
//! every deployment, and the same method run on any labelled CSV.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fathom_ml::risk::backtest::{Backtest, BacktestConfig, Method};
use fathom_ml::risk::{self, store};
use fathom_warehouse::Warehouse;
use fathom_warehouse::state::{RiskModelRecord, StateDb};

use super::{Config, open_state, open_warehouse};

/// Backtest settings from the command line.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct BacktestArgs {
    /// Test slices of the rolling-origin backtest.
    #[arg(long, default_value_t = 4)]
    folds: usize,
    /// Share of the history (oldest first) before the first cutoff.
    #[arg(long, default_value_t = 0.5)]
    first_train_share: f64,
}

impl BacktestArgs {
    fn config(&self, embargo_seconds: i64) -> BacktestConfig {
        BacktestConfig {
            folds: self.folds,
            first_train_share: self.first_train_share,
            embargo_seconds,
            ..BacktestConfig::default()
        }
    }
}

/// `fathom ml train-risk`: backtest, train on every deployment with a
/// final outcome, store and record the model.
pub(super) async fn train_risk(
    config: &Config,
    args: &BacktestArgs,
    json: bool,
) -> Result<ExitCode> {
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let (artifact, evaluation) =
        train_and_record(&warehouse, &state, &args.config(store::LABEL_DELAY_SECONDS)).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "version": artifact.version,
                "window": artifact.window,
                "model": artifact.model,
                "backtest": evaluation,
            }))?
        );
    } else {
        println!(
            "trained {} on {} deployments ({} to {}), {:.1} % failed; operating threshold {:.3}",
            artifact.version,
            artifact.model.rows,
            artifact.window.0.date_naive(),
            artifact.window.1.date_naive(),
            artifact.model.base_rate * 100.0,
            artifact.model.threshold
        );
        print_backtest(&evaluation, "deployments");
        print_coefficients(&artifact.model);
        println!("score the deployments with `fathom ml risk`");
    }
    Ok(ExitCode::SUCCESS)
}

/// Trains, stores the artifact and records it in the state database.
async fn train_and_record(
    warehouse: &Warehouse,
    state: &StateDb,
    config: &BacktestConfig,
) -> Result<(store::Artifact, Backtest)> {
    let (artifact, evaluation) = store::train(warehouse, config).await?;
    state
        .record_risk_model(&RiskModelRecord {
            version: artifact.version.clone(),
            trained_at: artifact.trained_at,
            path: store::artifact_path(&artifact.version),
            rows_trained: i64::try_from(artifact.model.rows).unwrap_or(i64::MAX),
            auc: evaluation.methods.first().and_then(|m| m.auc),
            summary: serde_json::to_string(&summary(&evaluation))?,
        })
        .await?;
    Ok((artifact, evaluation))
}

/// The demo's risk step: the model trained on the world's history, its
/// backtest AUC next to both baselines, every deployment scored.
/// What the demo's risk step measured (its `--summary`).
#[derive(Debug, serde::Serialize)]
pub(super) struct RiskFigures {
    /// The model artifact's version.
    version: String,
    /// Deployments in the backtest, and the failed ones.
    deployments: usize,
    failures: usize,
    /// AUC of each method: the model first, then the baselines.
    auc: Vec<MethodAuc>,
    /// The model's precision and recall at its operating threshold.
    precision: Option<f64>,
    recall: Option<f64>,
    /// AUC of the generator's own failure probabilities on the same folds:
    /// the most any model could reach on this world (failures are drawn,
    /// so even the true probabilities rank them imperfectly).
    generator_auc: Option<f64>,
}

/// One method's backtest AUC.
#[derive(Debug, serde::Serialize)]
pub(super) struct MethodAuc {
    method: String,
    auc: Option<f64>,
}

/// Trains, backtests and scores the demo's risk model; `None` when no
/// model could be trained (said in the output).
pub(super) async fn demo_risk(
    warehouse: &Warehouse,
    state: &StateDb,
    world: &fathom_sim::World,
) -> Result<Option<RiskFigures>> {
    let config = BacktestConfig {
        embargo_seconds: store::LABEL_DELAY_SECONDS,
        ..BacktestConfig::default()
    };
    let (artifact, evaluation) = match train_and_record(warehouse, state, &config).await {
        Ok(trained) => trained,
        Err(e) => {
            println!(
                "
deployment risk: no model trained ({e:#})"
            );
            return Ok(None);
        }
    };
    let scored = store::score_all(warehouse, &artifact).await?;
    let generator_auc = generator_auc(warehouse, world, &config).await?;
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let aucs: Vec<String> = evaluation
        .methods
        .iter()
        .map(|m| format!("{} {}", m.method, show(m.auc)))
        .collect();
    let model = evaluation.methods.first();
    println!(
        "
deployment risk ({}): chronological backtest over {} deployments ({} failed), AUC: {} (the generator's own failure probabilities: {}); at the operating threshold precision {}, recall {}; {} deployments scored into deployment_risk, {} flagged",
        artifact.version,
        evaluation.rows,
        evaluation.failures,
        aucs.join(", "),
        show(generator_auc),
        show(model.and_then(|m| m.operating.precision)),
        show(model.and_then(|m| m.operating.recall)),
        scored.deployments,
        scored.flagged
    );
    Ok(Some(RiskFigures {
        version: artifact.version.clone(),
        deployments: evaluation.rows,
        failures: evaluation.failures,
        auc: evaluation
            .methods
            .iter()
            .map(|m| MethodAuc {
                method: m.method.clone(),
                auc: m.auc,
            })
            .collect(),
        precision: model.and_then(|m| m.operating.precision),
        recall: model.and_then(|m| m.operating.recall),
        generator_auc,
    }))
}

/// The AUC of the generator's own failure probability of each deployment,
/// judged on the same rows and folds as the model: the ceiling the model's
/// AUC is to be read against. A deployment the generator drew no outcome
/// for never fails by the draw: probability 0.
async fn generator_auc(
    warehouse: &Warehouse,
    world: &fathom_sim::World,
    config: &BacktestConfig,
) -> Result<Option<f64>> {
    let probability: std::collections::HashMap<&str, f64> = world
        .histories
        .iter()
        .flat_map(|h| &h.deployments)
        .map(|d| (d.id.as_str(), d.failure_probability.unwrap_or(0.0)))
        .collect();
    let labelled = store::load(warehouse).await?.labelled();
    probability_auc(
        labelled,
        |id| probability.get(id).copied().unwrap_or(0.0),
        config,
    )
}

/// The backtest AUC of `probability` as the one feature of `labelled`'s
/// rows (the rows and folds the model's backtest reads). The fold's fit is
/// a monotone function of the probability: the same ranking whenever its
/// coefficient is positive, as it is when the probabilities mean anything.
fn probability_auc(
    labelled: risk::Frame,
    probability: impl Fn(&str) -> f64,
    config: &BacktestConfig,
) -> Result<Option<f64>> {
    let values = labelled
        .ids
        .iter()
        .map(|id| vec![probability(id)])
        .collect();
    let frame = risk::Frame {
        features: vec!["generator_probability".to_owned()],
        values,
        ..labelled
    };
    let method = Method {
        name: "generator".to_owned(),
        columns: vec![0],
    };
    Ok(risk::backtest(&frame, &[method], config)?
        .methods
        .first()
        .and_then(|m| m.auc))
}

/// The AUC of each method, for the state database's record.
fn summary(backtest: &Backtest) -> serde_json::Value {
    backtest
        .methods
        .iter()
        .map(|m| {
            (
                m.method.clone(),
                serde_json::json!({"auc": m.auc, "brier": m.brier}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `fathom ml risk`: scores every deployment with the newest model.
pub(super) async fn score_risk(config: &Config, json: bool) -> Result<ExitCode> {
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let Some(record) = state.latest_risk_model().await? else {
        anyhow::bail!("no risk model yet: train one with `fathom ml train-risk`");
    };
    let artifact = store::read_artifact(&warehouse, &record.version).await?;
    let report = store::score_all(&warehouse, &artifact).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "scored {} deployments with {} into deployment_risk: {} flagged",
            report.deployments, report.model_version, report.flagged
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `fathom ml evaluate-risk`: the same training and backtest on a labelled
/// CSV of change metrics.
pub(super) fn evaluate_csv(
    input: &PathBuf,
    label: &str,
    time: &str,
    features: &[String],
    baselines: &[String],
    args: &BacktestArgs,
    json: bool,
) -> Result<ExitCode> {
    let file = File::open(input).with_context(|| format!("cannot open `{}`", input.display()))?;
    let read = risk::csv::read(BufReader::new(file), label, time, features)
        .with_context(|| format!("cannot read `{}`", input.display()))?;
    for (line, reason) in read.skipped.iter().take(10) {
        eprintln!("warning: line {line} left out: {reason}");
    }
    if read.skipped.len() > 10 {
        eprintln!("warning: {} more rows left out", read.skipped.len() - 10);
    }
    let frame = read.frame;
    let mut methods = vec![Method {
        name: "model".to_owned(),
        columns: (0..frame.features.len()).collect(),
    }];
    let baselines: Vec<String> = if baselines.is_empty() {
        frame.features.first().cloned().into_iter().collect()
    } else {
        baselines.to_vec()
    };
    for baseline in &baselines {
        let column = frame.feature(baseline).with_context(|| {
            format!(
                "baseline `{baseline}` is not among the features: {}",
                frame.features.join(", ")
            )
        })?;
        methods.push(Method {
            name: format!("{baseline} alone"),
            columns: vec![column],
        });
    }
    // No embargo: a CSV's labels are taken as final.
    let backtest = risk::backtest(&frame, &methods, &args.config(0))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "rows_skipped": read.skipped.len(), "backtest": backtest,
            }))?
        );
    } else {
        println!(
            "{}: {} rows ({} left out), features: {}",
            input.display(),
            frame.len(),
            read.skipped.len(),
            frame.features.join(", ")
        );
        print_backtest(&backtest, "rows");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_backtest(backtest: &Backtest, unit: &str) {
    println!(
        "\nChronological backtest: {} {unit}, {} failed; {} folds (train on everything before each cutoff, test on the next slice; AUC is the mean of the folds', pooled the AUC of all test rows together)",
        backtest.rows,
        backtest.failures,
        backtest.folds.len()
    );
    println!(
        "{:<30} {:>6} {:>6} {:>7} {:>9} {:>7} {:>8}  AUC per fold",
        "method", "AUC", "pooled", "Brier", "precision", "recall", "flagged"
    );
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    for m in &backtest.methods {
        let folds: Vec<String> = m.fold_auc.iter().map(|a| show(*a)).collect();
        println!(
            "{:<30} {:>6} {:>6} {:>7} {:>9} {:>7} {:>8}  {}",
            m.method,
            show(m.auc),
            show(m.pooled_auc),
            show(m.brier),
            show(m.operating.precision),
            show(m.operating.recall),
            m.operating.flagged,
            folds.join(" ")
        );
    }
    if let Some(model) = backtest.methods.first() {
        println!("\nCalibration of the model (test rows): predicted vs observed failure rate");
        println!(
            "{:>11} {:>7} {:>9} {:>8}",
            "bin", "count", "predicted", "observed"
        );
        for bin in &model.calibration {
            println!(
                "{:>5.2}–{:<5.2} {:>7} {:>9.3} {:>8.3}",
                bin.low, bin.high, bin.count, bin.predicted, bin.observed
            );
        }
    }
}

fn print_coefficients(model: &risk::Model) {
    let mut order: Vec<usize> = (0..model.features.len()).collect();
    order.sort_by(|&a, &b| {
        model.coefficients[b]
            .abs()
            .total_cmp(&model.coefficients[a].abs())
    });
    println!("\nCoefficients (log-odds per standard deviation), largest first:");
    for &f in order.iter().take(10) {
        println!("  {:<26} {:+.3}", model.features[f], model.coefficients[f]);
    }
}

/// The demo's suspect deployments against the deployments that truly
/// caused an incident: precision, recall (also among the services that
/// report to an error tracker) and the median time from a deployment to
/// the first signal that moved (a new issue, a degraded hour).
/// What the demo's suspect step measured against the truth (its
/// `--summary`).
#[derive(Debug, serde::Serialize)]
pub(super) struct SuspectFigures {
    /// Deployments that truly caused an incident.
    caused: usize,
    /// Deployments flagged suspect, and those that caused none.
    flagged: usize,
    false_positives: usize,
    precision: Option<f64>,
    recall: Option<f64>,
    /// Recall on the services reporting to an error tracker.
    tracked_recall: Option<f64>,
    tracked_services: usize,
    /// Median minutes from a true suspect's deployment to the first
    /// signal that moved.
    median_minutes: Option<f64>,
}

/// Scores the suspect deployments against the world's truth.
pub(super) async fn demo_suspects(
    session: &datafusion::prelude::SessionContext,
    truth: &fathom_sim::truth::Truth,
) -> Result<SuspectFigures> {
    use std::collections::{BTreeMap, BTreeSet};
    let (_, batches) = fathom_warehouse::query::query(
        session,
        "SELECT deployment_id, CAST(bool_or(suspect) AS VARCHAR) AS suspect, \
            CAST(min(date_part('epoch', changed_at) - date_part('epoch', finished_at)) AS VARCHAR) AS delay \
         FROM deployment_signals GROUP BY deployment_id",
    )
    .await?;
    let flagged: BTreeMap<String, Option<f64>> = fathom_warehouse::query::text_rows(&batches)?
        .into_iter()
        .filter(|r| r.get(1).map(String::as_str) == Some("true"))
        .map(|r| (r[0].clone(), r.get(2).and_then(|d| d.parse().ok())))
        .collect();
    let (_, batches) = fathom_warehouse::query::query(
        session,
        "SELECT DISTINCT entity_ref FROM error_counts_daily WHERE entity_ref IS NOT NULL",
    )
    .await?;
    let tracked: BTreeSet<String> = fathom_warehouse::query::text_rows(&batches)?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    let (mut tp, mut fp, mut caused, mut tracked_tp, mut tracked_caused) = (0, 0, 0, 0, 0);
    let mut delays = Vec::new();
    for d in truth.deployments.iter().filter(|d| d.completed) {
        let hit = flagged.get(&d.deployment_id);
        caused += usize::from(d.caused_incident);
        let on_tracked = tracked.contains(&d.entity_ref);
        tracked_caused += usize::from(d.caused_incident && on_tracked);
        match (hit, d.caused_incident) {
            (Some(delay), true) => {
                tp += 1;
                tracked_tp += usize::from(on_tracked);
                delays.extend(*delay);
            }
            (Some(_), false) => fp += 1,
            _ => {}
        }
    }
    delays.sort_by(f64::total_cmp);
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let figures = SuspectFigures {
        caused,
        flagged: tp + fp,
        false_positives: fp,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, caused),
        tracked_recall: ratio(tracked_tp, tracked_caused),
        tracked_services: tracked.len(),
        median_minutes: delays.get(delays.len() / 2).map(|s| s / 60.0),
    };
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    println!(
        "suspect deployments against the {caused} that truly caused an incident: precision {}, recall {} ({} flagged, {fp} false; recall {} on the {} services reporting to an error tracker); median time from deployment to the first signal that moved {}",
        show(figures.precision),
        show(figures.recall),
        figures.flagged,
        show(figures.tracked_recall),
        figures.tracked_services,
        figures
            .median_minutes
            .map_or_else(|| "-".to_owned(), |m| format!("{m:.0} min"))
    );
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 400 deployments, one in five failing, with a probability per id:
    /// one that tells every failure apart ranks perfectly; one that is the
    /// same for all ranks no better than chance.
    #[test]
    fn the_probability_ceiling_is_the_auc_of_the_probabilities() -> Result<()> {
        let n = 400;
        let labels: Vec<bool> = (0..n).map(|i| i % 5 == 0).collect();
        let frame = risk::Frame::new(vec![], vec![vec![]; n], labels);
        let config = BacktestConfig {
            embargo_seconds: 0,
            ..BacktestConfig::default()
        };
        let failed = |id: &str| id.parse::<usize>().is_ok_and(|i| i % 5 == 0);
        let telling = probability_auc(
            frame.clone(),
            |id| if failed(id) { 0.6 } else { 0.05 },
            &config,
        )?;
        assert_eq!(telling, Some(1.0));
        let flat = probability_auc(frame, |_| 0.2, &config)?;
        assert_eq!(flat, Some(0.5));
        Ok(())
    }
}
