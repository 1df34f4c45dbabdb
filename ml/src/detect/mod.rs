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

use fathom_models::TableDef;
use fathom_models::tables::{
    ANOMALIES, ANOMALY_SCORES, COST_DAILY, ERROR_COUNTS_DAILY, SERVICE_METRICS_DAILY,
};
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, read_only_session};
use serde::Serialize;

pub use drivers::{Contribution, SHARE_DAYS, contributions};
pub use series::{Series, SeriesKey, load};

use crate::anomaly::Anomaly;
use crate::detector::{Detector, DetectorConfig, Scored, StateError};

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
async fn members_digest(warehouse: &Warehouse) -> Result<u64, DetectError> {
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let mut hash = saved::Fnv::default();
    let Ok(frame) = ctx
        .sql(
            "SELECT scope, scope_kind, entity_ref FROM dora_scope_members \
             ORDER BY scope, scope_kind, entity_ref",
        )
        .await
    else {
        // No membership yet: only components' series exist.
        return Ok(hash.finish());
    };
    for batch in frame.collect().await? {
        for column in batch.columns() {
            let text = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
            let text = arrow::array::AsArray::as_string::<i32>(&text);
            for value in text.iter() {
                hash.add(value.unwrap_or("\u{0}").as_bytes());
                hash.add(&[0xff]);
            }
        }
    }
    Ok(hash.finish())
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

/// The anomalies of `points` with their drivers.
fn found_in(points: &[Scored], series: &Series) -> Vec<(Anomaly, Vec<Contribution>)> {
    crate::assemble(points, DetectorConfig::default().level_points)
        .into_iter()
        .map(|anomaly| {
            let drivers = contributions(&anomaly, points, &series.parts);
            (anomaly, drivers)
        })
        .collect()
}

/// What to keep of a scored series: the detector's state and the points
/// from the first anomaly that may still grow (positions from 0).
fn keep(
    first: chrono::NaiveDate,
    detector: &Detector,
    points: &[Scored],
    anomalies: &[Anomaly],
) -> saved::SavedSeries {
    let tail_from = anomalies
        .iter()
        .filter(|a| a.open)
        .map(|a| a.first)
        .min()
        .unwrap_or(points.len());
    saved::SavedSeries {
        first,
        detector: detector.snapshot(),
        tail_from,
        tail: points[tail_from.min(points.len())..].to_vec(),
    }
}

/// Seasonal periods tested on daily series: a week.
pub const DAILY_CANDIDATES: [usize; 1] = [7];
