//! `fathom detect`: every series of the warehouse scored by the detector,
//! written to `anomaly_scores` (every series × day) and `anomalies` (one
//! row per anomaly, with its driver).
//!
//! A run continues from the state the last one saved (`saved`): it reads
//! only the recent days, checks that the days it already scored did not
//! change, scores the new days and appends their rows — exactly what a
//! full run would write for them, since a day's score depends only on the
//! days before it. Anything it cannot prove unchanged (a new detector,
//! changed scopes, an older month rewritten, a day that changed) makes it
//! a full run, which rescores everything and replaces both tables.

mod drivers;
mod full;
mod incremental;
mod rows;
pub mod saved;
mod series;

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use datafusion::prelude::SessionContext;
use fathom_models::TableDef;
use fathom_models::tables::{
    ANOMALIES, ANOMALY_SCORES, COST_DAILY, ERROR_COUNTS_DAILY, SERVICE_METRICS_DAILY,
};
use fathom_warehouse::Warehouse;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use drivers::{Contribution, SHARE_DAYS, contributions};
pub use series::{Series, SeriesKey, load};

use crate::anomaly::Anomaly;
use crate::detector::{Detector, DetectorConfig, Scored, StateError};
use saved::SavedSeries;

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
    Arrow(#[from] ArrowError),
    /// A query returned columns of another shape than expected.
    #[error("reading the series: {0}")]
    Shape(String),
    /// A saved state that was readable when checked but not when used.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a detection run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectReport {
    /// `full` (every series rescored, both tables replaced) or
    /// `incremental` (new days scored and appended).
    pub mode: String,
    /// Why a run was full.
    pub full_reason: Option<String>,
    /// Series scored (in an incremental run: those with new days).
    pub series: usize,
    /// Rows of `anomaly_scores` written: series × days with a value or a
    /// baseline.
    pub points: usize,
    /// Anomalies found (in an incremental run: anomalies written anew —
    /// new ones and those that may still grow).
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
    /// Running the detector and writing `anomaly_scores`, which overlap
    /// in a full run: rows are written as series are scored.
    pub score_and_write_scores: f64,
    /// Writing `anomalies` and the saved state.
    pub write_anomalies: f64,
}

/// The input tables whose versions a run records (the scope membership
/// is compared by content: it is rewritten by every transform run).
const INPUTS: [&TableDef; 3] = [&COST_DAILY, &SERVICE_METRICS_DAILY, &ERROR_COUNTS_DAILY];

/// Scores every series in `warehouse`: continuing the saved state when it
/// can (unless `full`), else from scratch.
pub async fn run(warehouse: &Warehouse, full: bool) -> Result<DetectReport, DetectError> {
    let started = Instant::now();
    let reason = if full {
        "asked for".to_owned()
    } else {
        match incremental::run(warehouse, started).await? {
            Ok(report) => return Ok(report),
            Err(reason) => reason,
        }
    };
    full::run(warehouse, started, reason).await
}

/// The versions of the input tables now.
async fn input_versions(
    warehouse: &Warehouse,
) -> Result<BTreeMap<String, Option<u64>>, DetectError> {
    let mut out = BTreeMap::new();
    for def in INPUTS {
        out.insert(def.name.to_owned(), warehouse.version(def).await?);
    }
    Ok(out)
}

/// A digest of the scope membership (which components each team and the
/// org count): a change regroups every group's cost series.
async fn members_digest(ctx: &SessionContext) -> Result<u64, DetectError> {
    let mut hash = Sha256::new();
    let Ok(frame) = ctx
        .sql(
            "SELECT scope, scope_kind, entity_ref FROM dora_scope_members \
             ORDER BY scope, scope_kind, entity_ref",
        )
        .await
    else {
        // No membership yet: only components' series exist.
        return Ok(saved::digest(hash));
    };
    for batch in frame.collect().await? {
        for column in batch.columns() {
            let text = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
            let text = arrow::array::AsArray::as_string::<i32>(&text);
            for value in text.iter() {
                hash.update(value.unwrap_or("\u{0}").as_bytes());
                hash.update([0xff]);
            }
        }
    }
    Ok(saved::digest(hash))
}

/// Records the output tables' versions in `saved` and writes it: the
/// next run continues from it.
async fn save(warehouse: &Warehouse, saved: &mut saved::Saved) -> Result<(), DetectError> {
    saved.scores_version = warehouse.version(&ANOMALY_SCORES).await?;
    saved.anomalies_version = warehouse.version(&ANOMALIES).await?;
    warehouse
        .write_own_file(saved::FILE, saved.encode())
        .await?;
    Ok(())
}

/// The run's wall time and phases (seconds since `started` at the end of
/// reading and of scoring).
fn finish(report: &mut DetectReport, started: Instant, read: f64, scored: f64) {
    report.seconds = started.elapsed().as_secs_f64();
    report.phases = Phases {
        read,
        score_and_write_scores: scored - read,
        write_anomalies: report.seconds - scored,
    };
}

/// The anomalies a run writes, and their counts for the report.
#[derive(Debug, Default)]
struct Found {
    rows: rows::AnomalyRows,
    anomalies: usize,
    open: usize,
    by_kind: BTreeMap<String, usize>,
}

impl Found {
    /// One anomaly of `series` with its drivers.
    fn push(&mut self, series: &Series, anomaly: &Anomaly, drivers: &[Contribution]) {
        *self
            .by_kind
            .entry(format!("{}/{}", series.key.metric, anomaly.kind.as_str()))
            .or_default() += 1;
        self.anomalies += 1;
        self.open += usize::from(anomaly.open);
        self.rows.push(series, anomaly, drivers);
    }

    /// Adds the counts to `report`; the rows as a batch.
    fn into_report(self, report: &mut DetectReport) -> Result<RecordBatch, ArrowError> {
        report.anomalies += self.anomalies;
        report.open += self.open;
        for (kind, count) in self.by_kind {
            *report.by_kind.entry(kind).or_default() += count;
        }
        self.rows.finish()
    }
}

/// Scores `series` from its first day: its `anomaly_scores` rows into
/// `scores`, its anomalies (with their drivers) into `found`; returns what
/// to keep for the next run — the detector's state and the points from
/// the first anomaly that may still grow.
fn score_whole(series: &Series, scores: &mut rows::ScoreRows, found: &mut Found) -> SavedSeries {
    let mut detector = Detector::new(DetectorConfig::default(), &DAILY_CANDIDATES);
    let points: Vec<Scored> = series.values.iter().map(|v| detector.push(*v)).collect();
    scores.push(series, &points);
    let mut tail_from = points.len();
    for anomaly in crate::assemble(&points, DetectorConfig::default().level_points) {
        let drivers = contributions(&anomaly, &points, &series.parts);
        found.push(series, &anomaly, &drivers);
        if anomaly.open {
            tail_from = tail_from.min(anomaly.first);
        }
    }
    SavedSeries {
        first: series.first,
        detector: detector.snapshot(),
        tail_from,
        tail: points[tail_from..].to_vec(),
    }
}

/// Seasonal periods tested on daily series: a week.
pub const DAILY_CANDIDATES: [usize; 1] = [7];
