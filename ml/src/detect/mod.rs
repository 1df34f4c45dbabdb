//! `fathom detect`: every series of the warehouse scored by the detector,
//! written to `anomaly_scores` (every series × day) and `anomalies` (one
//! row per anomaly, with its driver), each replaced in one commit.

mod drivers;
mod rows;
mod series;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use fathom_models::tables::{ANOMALIES, ANOMALY_SCORES};
use fathom_warehouse::query::{QueryLimits, read_only_session};
use fathom_warehouse::{RowStreams, Warehouse};
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
    Engine(#[from] DataFusionError),
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
    /// Of which reading the series, scoring them and writing the tables.
    pub phases: Phases,
}

/// Seconds spent in each phase of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Phases {
    /// Reading the series from the warehouse.
    pub read: f64,
    /// Running the detector and writing `anomaly_scores`, which overlap:
    /// rows are written as series are scored.
    pub score_and_write_scores: f64,
    /// Writing `anomalies`.
    pub write_anomalies: f64,
}

/// Seasonal periods tested on daily series: a week.
pub const DAILY_CANDIDATES: [usize; 1] = [7];

/// Series scored per batch of `anomaly_scores` rows (a few hundred
/// thousand rows: the write sees batches of a useful size, and only a
/// few of them are in memory at once).
const SERIES_PER_BATCH: usize = 500;

/// What one scoring worker found besides the rows it streamed.
#[derive(Debug, Default)]
struct Found {
    rows: rows::AnomalyRows,
    points: usize,
    anomalies: usize,
    open: usize,
    by_kind: BTreeMap<String, usize>,
}

/// Scores every series in `warehouse` and replaces the two output tables.
///
/// The series are scored on every core, each worker streaming its
/// `anomaly_scores` rows batch by batch into the table's write while it
/// scores the next series: the rows of a large organisation's two years
/// (tens of millions) are never held together.
pub async fn run(warehouse: &Warehouse) -> Result<DetectReport, DetectError> {
    let started = Instant::now();
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let all = Arc::new(load(&ctx).await?);
    let read = started.elapsed().as_secs_f64();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, all.len().max(1));
    let schema = rows::ScoreRows::default().finish()?.schema();
    let (sender, receiver) = tokio::sync::mpsc::channel(workers * 2);
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let all = all.clone();
            let sender = sender.clone();
            tokio::task::spawn_blocking(move || score_share(&all, worker, workers, &sender))
        })
        .collect();
    drop(sender);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    let rows = RowStreams {
        streams: vec![Box::pin(RecordBatchStreamAdapter::new(schema, stream))],
    };
    let written = warehouse.replace_all_streamed(&ANOMALY_SCORES, rows).await;
    let mut report = DetectReport {
        series: all.len(),
        ..DetectReport::default()
    };
    let mut found = Vec::with_capacity(workers);
    for handle in handles {
        found.push(
            handle
                .await
                .map_err(|e| DetectError::Shape(format!("a scoring worker failed: {e}")))??,
        );
    }
    written?;
    let scored = started.elapsed().as_secs_f64();
    let mut anomalies = Vec::with_capacity(found.len());
    for share in found {
        report.points += share.points;
        report.anomalies += share.anomalies;
        report.open += share.open;
        for (kind, count) in share.by_kind {
            *report.by_kind.entry(kind).or_default() += count;
        }
        anomalies.push(share.rows.finish()?);
    }
    warehouse.replace_all(&ANOMALIES, &anomalies).await?;
    report.seconds = started.elapsed().as_secs_f64();
    report.phases = Phases {
        read,
        score_and_write_scores: scored - read,
        write_anomalies: report.seconds - scored,
    };
    Ok(report)
}

/// Scores the series `worker`, `worker + workers`, … and sends their
/// `anomaly_scores` rows in batches; stops early when the write has gone
/// (it failed: its error is the run's).
fn score_share(
    all: &[Series],
    worker: usize,
    workers: usize,
    sender: &tokio::sync::mpsc::Sender<Result<RecordBatch, DataFusionError>>,
) -> Result<Found, arrow::error::ArrowError> {
    let config = DetectorConfig::default();
    let mut found = Found::default();
    let mut scores = rows::ScoreRows::default();
    let mut pending = 0;
    for series in all.iter().skip(worker).step_by(workers) {
        let points = Detector::score_all(config.clone(), &DAILY_CANDIDATES, &series.values);
        scores.push(series, &points);
        for anomaly in crate::assemble(&points, config.level_points) {
            let drivers = contributions(&anomaly, &points, &series.parts);
            *found
                .by_kind
                .entry(format!("{}/{}", series.key.metric, anomaly.kind.as_str()))
                .or_default() += 1;
            found.anomalies += 1;
            found.open += usize::from(anomaly.open);
            found.rows.push(series, &anomaly, &drivers);
        }
        pending += 1;
        if pending == SERIES_PER_BATCH {
            found.points += scores.len();
            let batch = std::mem::take(&mut scores).finish()?;
            if sender.blocking_send(Ok(batch)).is_err() {
                return Ok(found);
            }
            pending = 0;
        }
    }
    if scores.len() > 0 {
        found.points += scores.len();
        let batch = scores.finish()?;
        let _ = sender.blocking_send(Ok(batch));
    }
    Ok(found)
}
