//! `fathom detect`: every series of the warehouse scored by the detector,
//! written to `anomaly_scores` (every series × day) and `anomalies` (one
//! row per anomaly, with its driver), each replaced in one commit.

mod drivers;
mod rows;
mod series;

use std::collections::BTreeMap;
use std::time::Instant;

use fathom_models::tables::{ANOMALIES, ANOMALY_SCORES};
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, read_only_session};
use serde::Serialize;

pub use drivers::{Contribution, SHARE_DAYS, contributions};
pub use series::{Series, SeriesKey, load};

use crate::detector::{Detector, DetectorConfig};

/// Why detection failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// Reading or writing the warehouse.
    #[error(transparent)]
    Warehouse(#[from] fathom_warehouse::Error),
    /// A series query.
    #[error("reading the series: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// Building the output rows.
    #[error("building the anomaly rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A query returned columns of another shape than expected.
    #[error("reading the series: {0}")]
    Shape(String),
}

/// What a detection run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectReport {
    /// Series scored.
    pub series: usize,
    /// Rows of `anomaly_scores`: series × days with a value or a baseline.
    pub points: usize,
    /// Anomalies found.
    pub anomalies: usize,
    /// Of which still open.
    pub open: usize,
    /// Anomalies per metric and kind (`cost/spike`, …).
    pub by_kind: BTreeMap<String, usize>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Seasonal periods tested on daily series: a week.
pub const DAILY_CANDIDATES: [usize; 1] = [7];

/// Scores every series in `warehouse` and replaces the two output tables.
pub async fn run(warehouse: &Warehouse) -> Result<DetectReport, DetectError> {
    let started = Instant::now();
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let all = load(&ctx).await?;
    let config = DetectorConfig::default();
    let mut report = DetectReport {
        series: all.len(),
        ..DetectReport::default()
    };
    let mut scores = rows::ScoreRows::default();
    let mut found = rows::AnomalyRows::default();
    for series in &all {
        let points = Detector::score_all(config.clone(), &DAILY_CANDIDATES, &series.values);
        scores.push(series, &points);
        for anomaly in crate::assemble(&points, config.level_points) {
            let drivers = contributions(&anomaly, &points, &series.parts);
            *report
                .by_kind
                .entry(format!("{}/{}", series.key.metric, anomaly.kind.as_str()))
                .or_default() += 1;
            report.anomalies += 1;
            report.open += usize::from(anomaly.open);
            found.push(series, &anomaly, &drivers);
        }
    }
    report.points = scores.len();
    warehouse
        .replace_all(&ANOMALY_SCORES, &[scores.finish()?])
        .await?;
    warehouse
        .replace_all(&ANOMALIES, &[found.finish()?])
        .await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
