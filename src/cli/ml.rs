//! `fathom ml`: the anomaly detector on any CSV series, its evaluation
//! against the anomalies injected into synthetic worlds, its precision as
//! users judged its alerts, and the deployment risk model (`ml_risk`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Subcommand, ValueEnum};
use fathom_ml::evaluate::{Alert, DAYS_PER_MONTH, Label, RECOVERY_POINTS, Report, evaluate};
use fathom_ml::{DetectorConfig, Scored, assemble, baseline, csv_series};
use fathom_sim::WorldConfig;
use fathom_sim::world::cost::{AnomalyFamily, AnomalyKind, LoadProfile, days};
use fathom_warehouse::state::{StateDb, precision_by_month};

use super::ml_ops::{OPS_METHODS, evaluate_operations, print_operations};
use super::ml_risk::{BacktestArgs, evaluate_csv, score_risk, train_risk};
use super::{Config, open_state};

#[derive(Debug, Subcommand)]
pub(super) enum MlCommand {
    /// Score any `timestamp,value` CSV with the anomaly detector and write
    /// `timestamp,value,anomaly_score,is_anomaly` (scores in [0, 1]; 0.5
    /// is the alarm threshold). The step is detected; unsorted or repeated
    /// timestamps are repaired with a warning.
    Detect {
        /// The series (CSV with a header; `timestamp` and `value` columns,
        /// else the first two).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the scores (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also write the baseline: `expected,lower,upper` (the band outside
        /// which one point is anomalous by itself).
        #[arg(long)]
        details: bool,
    },
    /// Evaluate the detector on synthetic worlds against the anomalies
    /// injected into them: event-level precision, recall and delay per
    /// kind, false alerts per 100 series-months, next to the trailing
    /// mean ± 3σ baseline.
    Evaluate {
        /// World seeds (comma-separated). The detector's defaults were not
        /// chosen on these.
        #[arg(long, value_delimiter = ',', default_values_t = [101u64, 102, 103, 104, 105])]
        seeds: Vec<u64>,
        /// Components per world.
        #[arg(long, default_value_t = 400)]
        services: usize,
        /// Days of history per world.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Which injected anomalies: the standard family, the unseen one
        /// (other magnitudes and durations), or both.
        #[arg(long, value_enum, default_value_t = FamilyArg::Both)]
        family: FamilyArg,
        /// Which series: daily cost, the operational series of each
        /// service (univariate vs the linfa multivariate model), or both.
        #[arg(long, value_enum, default_value_t = SeriesArg::Both)]
        series: SeriesArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train the deployment risk model on the warehouse's history: a
    /// chronological backtest of the model next to two baselines (lines
    /// added alone, the service's recent failure rate alone), then the
    /// model trained on every deployment with a final outcome, stored in
    /// the warehouse and recorded in the state database.
    TrainRisk {
        #[command(flatten)]
        backtest: BacktestArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score every production deployment with the newest risk model into
    /// `deployment_risk` (probability, flag, the three factors that raised
    /// it most).
    Risk {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the risk model's training and chronological backtest on any
    /// labelled CSV of change metrics (e.g. a public just-in-time defect
    /// dataset) and print AUC, Brier score and precision/recall for the
    /// model and baselines.
    EvaluateRisk {
        /// The CSV (with a header).
        #[arg(long)]
        input: PathBuf,
        /// Column saying whether the change failed (1/0, true/false).
        #[arg(long)]
        label: String,
        /// Column ordering the changes in time (RFC 3339, a date or Unix
        /// seconds).
        #[arg(long)]
        time: String,
        /// Feature columns (comma-separated; default: every other numeric
        /// column).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Baselines: features judged alone (default: the first feature).
        #[arg(long, value_delimiter = ',')]
        baselines: Vec<String>,
        #[command(flatten)]
        backtest: BacktestArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Precision from feedback: per calendar month, the anomalies users
    /// judged real, false alarms or planned activity (the newest verdict
    /// of each, `POST /api/v1/anomalies/{id}/feedback`).
    Feedback {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum SeriesArg {
    Cost,
    Operations,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum FamilyArg {
    Standard,
    Unseen,
    Both,
}

/// `fathom ml feedback`.
async fn feedback(state: &StateDb, json: bool) -> Result<ExitCode> {
    let months = precision_by_month(&state.feedback(None).await?);
    if json {
        println!("{}", serde_json::json!({ "months": months }));
        return Ok(ExitCode::SUCCESS);
    }
    print_feedback(&months);
    Ok(ExitCode::SUCCESS)
}

/// The verdicts users gave on anomalies, per month, as a table.
fn print_feedback(months: &[fathom_warehouse::state::FeedbackMonth]) {
    if months.is_empty() {
        println!("no feedback yet: verdicts come from POST /api/v1/anomalies/{{id}}/feedback");
        return;
    }
    println!("month      judged   yes    no  planned  precision");
    for m in months {
        let precision = m
            .precision
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.3}"));
        println!(
            "{}  {:>6}  {:>4}  {:>4}  {:>7}  {precision:>9}",
            m.month,
            m.yes + m.no + m.planned,
            m.yes,
            m.no,
            m.planned
        );
    }
    println!(
        "precision = (yes + planned) / judged; the newest verdict of each anomaly counts, in its month"
    );
}

pub(super) async fn ml(config: &Config, command: MlCommand) -> Result<ExitCode> {
    match command {
        MlCommand::Feedback { json } => feedback(&open_state(config).await?, json).await,
        MlCommand::TrainRisk { backtest, json } => train_risk(config, &backtest, json).await,
        MlCommand::Risk { json } => score_risk(config, json).await,
        MlCommand::EvaluateRisk {
            input,
            label,
            time,
            features,
            baselines,
            backtest,
            json,
        } => evaluate_csv(
            &input, &label, &time, &features, &baselines, &backtest, json,
        ),
        MlCommand::Detect {
            input,
            output,
            details,
        } => detect(&input, output.as_ref(), details),
        MlCommand::Evaluate {
            seeds,
            services,
            days,
            family,
            series,
            json,
        } => {
            let families = match family {
                FamilyArg::Standard => vec![AnomalyFamily::Standard],
                FamilyArg::Unseen => vec![AnomalyFamily::Unseen],
                FamilyArg::Both => vec![AnomalyFamily::Standard, AnomalyFamily::Unseen],
            };
            let mut results = Vec::new();
            if series != SeriesArg::Operations {
                for family in families {
                    for method in METHODS {
                        let report = evaluate_worlds(&seeds, services, days, family, method);
                        results.push((family, method, report));
                    }
                }
            }
            let operations = if series == SeriesArg::Cost {
                Vec::new()
            } else {
                evaluate_operations(&seeds, services, days)
            };
            // Beside the synthetic worlds, what users said of the real
            // anomalies over time (none without a reachable state database).
            let feedback = match open_state(config).await {
                Ok(state) => Some(precision_by_month(&state.feedback(None).await?)),
                Err(e) => {
                    eprintln!("no feedback read: {e:#}");
                    None
                }
            };
            if json {
                let cost: Vec<serde_json::Value> = results
                    .iter()
                    .map(|(family, method, report)| {
                        serde_json::json!({"family": family, "method": method.name(), "report": report})
                    })
                    .collect();
                let operations: Vec<serde_json::Value> = OPS_METHODS
                    .iter()
                    .zip(&operations)
                    .map(|(method, report)| serde_json::json!({"method": method, "report": report}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"cost": cost, "operations": operations, "feedback": feedback})
                    )?
                );
            } else {
                if !results.is_empty() {
                    print_reports(&results, &seeds, services, days);
                }
                if !operations.is_empty() {
                    print_operations(&operations, services, days);
                }
                if let Some(months) = &feedback {
                    println!(
                        "\nPrecision from users' feedback on the warehouse's anomalies, per month:"
                    );
                    print_feedback(months);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn detect(input: &PathBuf, output: Option<&PathBuf>, details: bool) -> Result<ExitCode> {
    let file = File::open(input).with_context(|| format!("cannot open `{}`", input.display()))?;
    let series = csv_series::read(BufReader::new(file))
        .with_context(|| format!("cannot read `{}`", input.display()))?;
    for warning in &series.warnings {
        eprintln!("warning: {warning}");
    }
    let scores = csv_series::score(&series, DetectorConfig::default());
    match output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot write `{}`", path.display()))?;
            csv_series::write(&series, &scores, details, BufWriter::new(file))?;
        }
        None => csv_series::write(&series, &scores, details, std::io::stdout().lock())?,
    }
    let anomalies = assemble(&scores, DetectorConfig::default().level_points);
    let flagged = series
        .rows
        .iter()
        .filter(|row| scores.get(row.slot).is_some_and(|s| s.anomalous))
        .count();
    let step = match series.axis {
        csv_series::Axis::Time => format!("{} s", series.step),
        csv_series::Axis::Number => format!("{}", series.step),
    };
    eprintln!(
        "{} rows on a step of {step}; {} flagged in {} anomalies",
        series.rows.len(),
        flagged,
        anomalies.len()
    );
    std::io::stderr().flush().ok();
    Ok(ExitCode::SUCCESS)
}

/// A detector under evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// Fathom's univariate detector.
    Robust,
    /// Trailing mean ± 3σ.
    TrailingMean,
}

const METHODS: [Method; 2] = [Method::Robust, Method::TrailingMean];

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Robust => "robust seasonal",
            Method::TrailingMean => "trailing mean ± 3σ",
        }
    }

    fn score(self, values: &[Option<f64>]) -> Vec<Scored> {
        match self {
            Method::Robust => {
                fathom_ml::Detector::score_all(DetectorConfig::default(), &[7], values)
            }
            Method::TrailingMean => baseline::trailing_mean(values),
        }
    }
}

/// Every deployed component's daily cost series of every world, scored by
/// `method`, against the injected labels.
fn evaluate_worlds(
    seeds: &[u64],
    services: usize,
    days_back: u32,
    family: AnomalyFamily,
    method: Method,
) -> Report {
    let (mut labels, mut alerts, mut points) = (Vec::new(), Vec::new(), 0usize);
    let mut series = 0usize;
    for &seed in seeds {
        let config = WorldConfig {
            seed,
            services,
            teams: (services / 8).max(1),
            days: days_back,
            anomalies: family,
            ..WorldConfig::default()
        };
        let org = fathom_sim::world::Org::generate(&config);
        let first = config.start().date_naive();
        let position = |date: NaiveDate| (date - first).num_days().max(0) as usize;
        for idx in 0..org.components.len() {
            let Some(profile) = LoadProfile::generate(&config, &org, idx) else {
                continue;
            };
            let values: Vec<Option<f64>> = days(&config)
                .map(|date| Some(profile.day(&config, date).total_cost_usd()))
                .collect();
            points += values.len();
            if let Some(anomaly) = &profile.anomaly {
                labels.push(Label {
                    series,
                    first: position(anomaly.start),
                    last: position(anomaly.end),
                    kind: label_kind(anomaly.kind).to_owned(),
                });
            }
            let scored = method.score(&values);
            for found in assemble(&scored, DetectorConfig::default().level_points) {
                alerts.push(Alert {
                    series,
                    first: found.first,
                    last: found.last,
                    kind: found.kind.as_str().to_owned(),
                });
            }
            series += 1;
        }
    }
    evaluate(&labels, &alerts, points, DAYS_PER_MONTH, RECOVERY_POINTS)
}

/// The label of an injected kind, as the evaluation names it.
pub(super) fn label_kind(kind: AnomalyKind) -> &'static str {
    match kind {
        AnomalyKind::Spike => "spike",
        AnomalyKind::LevelShift => "level_shift",
        AnomalyKind::SlowLeak => "slow_leak",
    }
}

fn print_reports(
    results: &[(AnomalyFamily, Method, Report)],
    seeds: &[u64],
    services: usize,
    days: u32,
) {
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    println!(
        "Daily cost series of every deployed component; worlds of {services} components × {days} days, seeds {}.",
        seeds.join(",")
    );
    println!(
        "\n{:<9} {:<20} {:>6} {:>5} {:>5} {:>8} {:>9} {:>6} {:>5} {:>14}",
        "family",
        "method",
        "alerts",
        "true",
        "false",
        "recovery",
        "precision",
        "recall",
        "F1",
        "false/100 s-m"
    );
    for (family, method, r) in results {
        println!(
            "{:<9} {:<20} {:>6} {:>5} {:>5} {:>8} {:>9.3} {:>6.3} {:>5.3} {:>14.2}",
            family_name(*family),
            method.name(),
            r.alerts,
            r.true_alerts,
            r.false_alerts,
            r.recovery_alerts,
            r.precision,
            r.recall,
            r.f1,
            r.false_per_100_series_months
        );
    }
    println!(
        "\n{:<9} {:<20} {:<12} {:>8} {:>5} {:>6} {:>13} {:>10}",
        "family", "method", "kind", "labelled", "found", "recall", "median delay", "kind agrees"
    );
    for (family, method, r) in results {
        for (kind, k) in &r.kinds {
            println!(
                "{:<9} {:<20} {:<12} {:>8} {:>5} {:>6.3} {:>11.1} d {:>10.3}",
                family_name(*family),
                method.name(),
                kind,
                k.labelled,
                k.found,
                k.recall,
                k.median_delay,
                k.kind_agreement
            );
        }
    }
}

fn family_name(family: AnomalyFamily) -> &'static str {
    match family {
        AnomalyFamily::Standard => "standard",
        AnomalyFamily::Unseen => "unseen",
    }
}
