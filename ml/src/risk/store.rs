//! The risk model over the warehouse: the labelled frame from
//! `deployment_features` and `dora_deployments`, training with its
//! backtest, the model artifact (`_fathom/risk/<version>.json`), and
//! scores written to `deployment_risk`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::array::{ListBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use fathom_models::LIST_ITEM_FIELD;
use fathom_models::tables::DEPLOYMENT_RISK;
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, read_only_session};
use serde::{Deserialize, Serialize};

use super::backtest::{Backtest, BacktestConfig, Method, backtest};
use super::frame::Frame;
use super::model::Model;
use super::words;

/// The model's features: `deployment_features` columns, and three derived
/// from them (the service's recent failure rate, Friday, weekend).
pub const FEATURES: [&str; 27] = [
    "changes",
    "pull_requests",
    "direct_pushes",
    "commits",
    "lines_added",
    "lines_deleted",
    "files_changed",
    "largest_change_lines",
    "size_vs_recent",
    "directories",
    "file_entropy",
    "reviewers",
    "reviews",
    "unreviewed_changes",
    "review_hours_mean",
    "days_since_previous",
    "recent_deployments",
    "recent_failure_rate",
    "author_min_prior_changes",
    "author_recent_failures",
    "hour_utc",
    "friday",
    "weekend",
    "during_incident",
    "hotfix",
    "after_long_pause",
    "is_rollback",
];

/// The two baselines every evaluation reports beside the model: the
/// deployment's size alone, and its service's recent failure rate alone.
pub const BASELINES: [&str; 2] = ["lines_added", "recent_failure_rate"];

/// A deployment's outcome is final this long after it finished: an
/// incident is blamed on the latest deployment before it up to the
/// incident gap (7 days by default) later.
pub const LABEL_DELAY_SECONDS: i64 = 7 * 86_400;

/// Why the warehouse side failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the warehouse.
    #[error(transparent)]
    Warehouse(#[from] fathom_warehouse::Error),
    /// A query.
    #[error("reading the deployment features: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// Building rows.
    #[error("building the risk rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Training or evaluation.
    #[error(transparent)]
    Risk(#[from] super::RiskError),
    /// The model artifact.
    #[error("the risk model artifact: {0}")]
    Artifact(String),
    /// Nothing to work on.
    #[error("{0}")]
    Empty(String),
}

/// Every deployment with features: the frame (labels false where still
/// unknown), and which rows have a final label.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Rows, in the order read.
    pub frame: Frame,
    /// Environment of each row.
    pub environments: Vec<String>,
    /// Whether each row's outcome is final.
    pub labelled: Vec<bool>,
    /// The outcome as `dora_deployments` has it now (null while unknown).
    pub outcomes: Vec<Option<bool>>,
}

impl Loaded {
    /// The rows whose outcome is final.
    pub fn labelled_rows(&self) -> Vec<usize> {
        (0..self.frame.len())
            .filter(|&r| self.labelled[r])
            .collect()
    }

    /// The frame of the rows whose outcome is final: what training and
    /// its backtest read.
    pub fn labelled(&self) -> Frame {
        let rows = self.labelled_rows();
        let frame = &self.frame;
        Frame {
            features: frame.features.clone(),
            values: rows.iter().map(|&r| frame.values[r].clone()).collect(),
            labels: rows.iter().map(|&r| frame.labels[r]).collect(),
            times: rows.iter().map(|&r| frame.times[r]).collect(),
            ids: rows.iter().map(|&r| frame.ids[r].clone()).collect(),
            groups: rows.iter().map(|&r| frame.groups[r].clone()).collect(),
        }
    }
}

/// The features [`inputs`] derives, with the `deployment_features`
/// columns each is computed from; every other feature is a column itself.
const DERIVED: [(&str, &[&str]); 3] = [
    (
        "recent_failure_rate",
        &["recent_failures", "recent_deployments"],
    ),
    ("friday", &["weekday"]),
    ("weekend", &["weekday"]),
];

/// The `deployment_features` columns the model's inputs come from.
pub fn columns() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for feature in FEATURES {
        let own = [feature];
        let sources = DERIVED
            .iter()
            .find(|(name, _)| *name == feature)
            .map_or(&own[..], |(_, sources)| *sources);
        for source in sources {
            if !out.contains(source) {
                out.push(source);
            }
        }
    }
    out
}

/// The model's inputs ([`FEATURES`] order) from a row's columns (`value`
/// gives a column as a number, booleans as 0/1; NaN or `None` when
/// missing): the columns themselves, and the three derived ones.
pub fn inputs(value: impl Fn(&str) -> Option<f64>) -> Vec<f64> {
    let get = |name: &str| value(name).filter(|v| v.is_finite());
    FEATURES
        .iter()
        .map(|feature| {
            match *feature {
                "recent_failure_rate" => {
                    match (get("recent_failures"), get("recent_deployments")) {
                        (Some(f), Some(n)) if n > 0.0 => Some(f / n),
                        _ => None,
                    }
                }
                "friday" => get("weekday").map(|d| f64::from(u8::from(d == 5.0))),
                "weekend" => get("weekday").map(|d| f64::from(u8::from(d >= 6.0))),
                column => get(column),
            }
            .unwrap_or(f64::NAN)
        })
        .collect()
}

/// Reads every deployment's features and outcome.
pub async fn load(warehouse: &Warehouse) -> Result<Loaded, StoreError> {
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let read = columns();
    let columns: Vec<String> = read
        .iter()
        .map(|c| format!("CAST(f.{c} AS DOUBLE) AS {c}"))
        .collect();
    let sql = format!(
        "SELECT f.deployment_id, f.entity_ref, f.environment, f.started_at, d.finished_at, d.failed, {} \
         FROM deployment_features f JOIN dora_deployments d ON d.deployment_id = f.deployment_id \
         ORDER BY f.started_at, f.deployment_id",
        columns.join(", ")
    );
    let batches = match ctx.sql(&sql).await {
        Ok(frame) => frame.collect().await?,
        Err(e) if e.to_string().contains("not found") => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut loaded = Loaded {
        frame: Frame {
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            values: Vec::new(),
            labels: Vec::new(),
            times: Vec::new(),
            ids: Vec::new(),
            groups: Vec::new(),
        },
        environments: Vec::new(),
        labelled: Vec::new(),
        outcomes: Vec::new(),
    };
    let mut finished = Vec::new();
    for batch in &batches {
        // The engine may hand text as string views and times in any unit:
        // cast to one form.
        let cast = |i: usize, to: &DataType| arrow::compute::cast(batch.column(i), to);
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let (ids, entities, environments) = (
            cast(0, &DataType::Utf8)?,
            cast(1, &DataType::Utf8)?,
            cast(2, &DataType::Utf8)?,
        );
        let (started, ended) = (cast(3, &utc)?, cast(4, &utc)?);
        let failed = cast(5, &DataType::Boolean)?;
        let features: Vec<ArrayRef> = (0..read.len())
            .map(|f| cast(6 + f, &DataType::Float64))
            .collect::<Result<_, _>>()?;
        let text = |a: &ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
        let time = |a: &ArrayRef| {
            a.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .cloned()
        };
        let (Some(ids), Some(entities), Some(environments), Some(started), Some(ended)) = (
            text(&ids),
            text(&entities),
            text(&environments),
            time(&started),
            time(&ended),
        ) else {
            return Err(StoreError::Artifact(
                "deployment_features has columns of unexpected types".to_owned(),
            ));
        };
        let failed = failed.as_any().downcast_ref::<BooleanArray>();
        let features: Vec<Option<&Float64Array>> = features
            .iter()
            .map(|a| a.as_any().downcast_ref::<Float64Array>())
            .collect();
        for r in 0..batch.num_rows() {
            loaded.frame.ids.push(ids.value(r).to_owned());
            loaded
                .frame
                .groups
                .push((!entities.is_null(r)).then(|| entities.value(r).to_owned()));
            loaded.environments.push(environments.value(r).to_owned());
            loaded.frame.times.push(started.value(r) / 1_000_000);
            finished.push(ended.value(r) / 1_000_000);
            let outcome = failed.and_then(|f| (!f.is_null(r)).then(|| f.value(r)));
            loaded.outcomes.push(outcome);
            loaded.frame.labels.push(outcome.unwrap_or(false));
            loaded.frame.values.push(inputs(|name| {
                let c = read.iter().position(|c| *c == name)?;
                features
                    .get(c)
                    .copied()
                    .flatten()
                    .filter(|a| !a.is_null(r))
                    .map(|a| a.value(r))
            }));
        }
    }
    let newest = finished.iter().copied().max().unwrap_or(0);
    loaded.labelled = finished
        .iter()
        .zip(&loaded.outcomes)
        .map(|(f, o)| o.is_some() && *f <= newest - LABEL_DELAY_SECONDS)
        .collect();
    Ok(loaded)
}

/// A trained model with what it was trained on and how it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// Format of this file.
    pub format: u32,
    /// `risk-<UTC time of training>`.
    pub version: String,
    /// When it was trained.
    pub trained_at: DateTime<Utc>,
    /// First and last start of the deployments it was trained on.
    pub window: (DateTime<Utc>, DateTime<Utc>),
    /// The model.
    pub model: Model,
    /// The backtest of the same method on the same rows (JSON of
    /// [`Backtest`]).
    pub evaluation: serde_json::Value,
}

/// The artifact's path inside the warehouse's own files.
pub fn artifact_path(version: &str) -> String {
    format!("risk/{version}.json")
}

/// The model and baselines as backtest methods over a frame with
/// [`FEATURES`].
pub fn methods(frame: &Frame) -> Vec<Method> {
    let mut out = vec![Method {
        name: "model".to_owned(),
        columns: (0..frame.features.len()).collect(),
    }];
    for baseline in BASELINES {
        if let Some(c) = frame.feature(baseline) {
            out.push(Method {
                name: format!("{baseline} alone"),
                columns: vec![c],
            });
        }
    }
    out
}

/// Backtests, then trains on every labelled deployment, and stores the
/// artifact in the warehouse.
pub async fn train(
    warehouse: &Warehouse,
    config: &BacktestConfig,
) -> Result<(Artifact, Backtest), StoreError> {
    let loaded = load(warehouse).await?;
    let labelled = loaded.labelled();
    if labelled.is_empty() {
        return Err(StoreError::Empty(
            "no deployment with a final outcome yet: run `fathom transform` after ingesting deployments (outcomes are final 7 days after a deployment)".to_owned(),
        ));
    }
    let evaluation = backtest(&labelled, &methods(&labelled), config)?;
    let all: Vec<usize> = (0..labelled.len()).collect();
    let model = Model::train(&labelled, &all, &config.train)?;
    let trained_at = Utc::now();
    let at = |t: Option<&i64>| {
        t.and_then(|t| DateTime::from_timestamp(*t, 0))
            .unwrap_or(trained_at)
    };
    let artifact = Artifact {
        format: 1,
        version: format!("risk-{}", trained_at.format("%Y%m%dT%H%M%SZ")),
        trained_at,
        window: (
            at(labelled.times.iter().min()),
            at(labelled.times.iter().max()),
        ),
        model,
        evaluation: serde_json::to_value(&evaluation)
            .map_err(|e| StoreError::Artifact(e.to_string()))?,
    };
    let bytes =
        serde_json::to_vec_pretty(&artifact).map_err(|e| StoreError::Artifact(e.to_string()))?;
    warehouse
        .write_own_file(&artifact_path(&artifact.version), bytes)
        .await?;
    Ok((artifact, evaluation))
}

/// Reads a stored artifact.
pub async fn read_artifact(warehouse: &Warehouse, version: &str) -> Result<Artifact, StoreError> {
    let bytes = warehouse
        .read_own_file(&artifact_path(version))
        .await?
        .ok_or_else(|| {
            StoreError::Artifact(format!(
                "model {version} is recorded but its file is missing from the warehouse"
            ))
        })?;
    let artifact: Artifact =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Artifact(e.to_string()))?;
    if artifact.format != 1 || artifact.model.features.len() != artifact.model.coefficients.len() {
        return Err(StoreError::Artifact(format!(
            "model {version} is of an unknown format; train again with `fathom ml train-risk`"
        )));
    }
    Ok(artifact)
}

/// One deployment's score with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// Probability of failure.
    pub probability: f64,
    /// At or above the model's threshold.
    pub flagged: bool,
    /// The three factors that raised it most (positive contributions).
    pub factors: Vec<super::Factor>,
    /// The same in words.
    pub reasons: Vec<String>,
}

/// A service's deployments, each feature's finite values sorted, to say
/// where an amount sits among them in logarithmic time (scoring every
/// deployment of a service is then n log n, not n²).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    sorted: Vec<Vec<f64>>,
    count: usize,
}

impl Peers {
    /// From rows of raw values in [`FEATURES`] order.
    pub fn new<'a>(rows: impl IntoIterator<Item = &'a [f64]>) -> Self {
        let mut peers = Self::default();
        for row in rows {
            if peers.sorted.len() < row.len() {
                peers.sorted.resize(row.len(), Vec::new());
            }
            for (c, v) in row.iter().enumerate() {
                if v.is_finite() {
                    peers.sorted[c].push(*v);
                }
            }
            peers.count += 1;
        }
        for values in &mut peers.sorted {
            values.sort_by(f64::total_cmp);
        }
        peers
    }

    /// The share (0–100) of the deployments whose value of feature `c`
    /// is at most `value`; `None` without deployments.
    pub fn percentile(&self, c: usize, value: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let below = self
            .sorted
            .get(c)
            .map_or(0, |values| values.partition_point(|v| *v <= value));
        Some(100.0 * below as f64 / self.count as f64)
    }
}

/// Scores `row` (raw values in [`FEATURES`] order) with the rank of each
/// amount among `peers` (the service's deployments) for the words.
pub fn explain(model: &Model, row: &[f64], peers: &Peers) -> Scored {
    let probability = model.score(row);
    let factors: Vec<super::Factor> = model
        .factors(row)
        .into_iter()
        .filter(|f| f.contribution > 0.0)
        .take(3)
        .collect();
    let reasons = factors
        .iter()
        .map(|f| {
            let column = model.features.iter().position(|n| *n == f.feature);
            let percentile = match (column, f.value) {
                (Some(c), Some(v)) => peers.percentile(c, v),
                _ => None,
            };
            words::describe(&f.feature, f.value, percentile)
        })
        .collect();
    Scored {
        probability,
        flagged: probability >= model.threshold,
        factors,
        reasons,
    }
}

/// What scoring wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    /// The model used.
    pub model_version: String,
    /// Deployments scored.
    pub deployments: usize,
    /// Of those, flagged.
    pub flagged: usize,
}

/// Scores every deployment with features into `deployment_risk` (the table
/// replaced whole: scores of one model version at a time).
pub async fn score_all(
    warehouse: &Warehouse,
    artifact: &Artifact,
) -> Result<ScoreReport, StoreError> {
    let loaded = load(warehouse).await?;
    let model = &artifact.model;
    if model.features != loaded.frame.features {
        return Err(StoreError::Artifact(format!(
            "model {} was trained on other features; train again with `fathom ml train-risk`",
            artifact.version
        )));
    }
    let mut rows_by_group: BTreeMap<Option<&str>, Vec<&[f64]>> = BTreeMap::new();
    for (r, values) in loaded.frame.values.iter().enumerate() {
        rows_by_group
            .entry(loaded.frame.groups[r].as_deref())
            .or_default()
            .push(values);
    }
    let by_group: BTreeMap<Option<&str>, Peers> = rows_by_group
        .into_iter()
        .map(|(group, rows)| (group, Peers::new(rows)))
        .collect();
    let nobody = Peers::default();
    let n = loaded.frame.len();
    let now = Utc::now().timestamp_micros();
    let mut ids = StringBuilder::new();
    let mut entities = StringBuilder::new();
    let mut environments = StringBuilder::new();
    let mut started = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut versions = StringBuilder::new();
    let mut probabilities = Vec::with_capacity(n);
    let mut flags = Vec::with_capacity(n);
    let mut reasons = ListBuilder::new(StringBuilder::new()).with_field(Field::new(
        LIST_ITEM_FIELD,
        DataType::Utf8,
        true,
    ));
    let mut factors = StringBuilder::new();
    let mut flagged = 0;
    for r in 0..n {
        let frame = &loaded.frame;
        let peers = by_group.get(&frame.groups[r].as_deref()).unwrap_or(&nobody);
        let scored = explain(model, &frame.values[r], peers);
        flagged += usize::from(scored.flagged);
        ids.append_value(&frame.ids[r]);
        entities.append_option(frame.groups[r].as_deref());
        environments.append_value(&loaded.environments[r]);
        started.append_value(frame.times[r] * 1_000_000);
        versions.append_value(&artifact.version);
        probabilities.push(scored.probability);
        flags.push(scored.flagged);
        for reason in &scored.reasons {
            reasons.values().append_value(reason);
        }
        reasons.append(true);
        factors.append_value(
            serde_json::to_string(&scored.factors)
                .map_err(|e| StoreError::Artifact(e.to_string()))?,
        );
    }
    let outcomes: BooleanArray = loaded
        .outcomes
        .iter()
        .zip(&loaded.labelled)
        .map(|(o, l)| if *l { *o } else { None })
        .collect();
    let scored_at = TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC");
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("deployment_id", Arc::new(ids.finish())),
        ("entity_ref", Arc::new(entities.finish())),
        ("environment", Arc::new(environments.finish())),
        ("started_at", Arc::new(started.finish())),
        ("model_version", Arc::new(versions.finish())),
        ("probability", Arc::new(Float64Array::from(probabilities))),
        ("flagged", Arc::new(BooleanArray::from(flags))),
        ("reasons", Arc::new(reasons.finish())),
        ("factors", Arc::new(factors.finish())),
        ("failed", Arc::new(outcomes)),
        ("scored_at", Arc::new(scored_at)),
    ];
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?;
    warehouse.replace_all(&DEPLOYMENT_RISK, &[batch]).await?;
    Ok(ScoreReport {
        model_version: artifact.version.clone(),
        deployments: n,
        flagged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_sits_among_its_services_deployments() {
        let rows: Vec<Vec<f64>> = vec![
            vec![10.0, f64::NAN],
            vec![40.0, 1.0],
            vec![20.0, 2.0],
            vec![30.0, f64::NAN],
        ];
        let peers = Peers::new(rows.iter().map(Vec::as_slice));
        // Ties count as at most; missing values are among the deployments
        // but never below.
        assert_eq!(peers.percentile(0, 30.0), Some(75.0));
        assert_eq!(peers.percentile(0, 5.0), Some(0.0));
        assert_eq!(peers.percentile(0, 99.0), Some(100.0));
        assert_eq!(peers.percentile(1, 1.5), Some(25.0));
        assert_eq!(Peers::default().percentile(0, 1.0), None);
    }

    #[test]
    fn the_columns_read_give_every_feature() {
        let read = columns();
        assert!(read.contains(&"recent_failures") && read.contains(&"weekday"));
        assert!(!read.contains(&"friday") && !read.contains(&"recent_failure_rate"));
        let values = inputs(|c| read.contains(&c).then_some(5.0));
        assert_eq!(values.len(), FEATURES.len());
        assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    }
}
