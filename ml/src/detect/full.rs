//! The full run: every series scored from its first day on every core,
//! each worker streaming its `anomaly_scores` rows into the table's write
//! batch by batch while it scores the next series (the rows of a large
//! organisation's two years, tens of millions, are never held together);
//! then `anomalies` replaced and the state saved for the next run.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use fathom_warehouse::query::{QueryLimits, read_only_session};
use fathom_warehouse::{RowStreams, Warehouse};

use super::saved::{Saved, SavedSeries, fingerprint};
use super::series::{Series, SeriesKey, load};
use super::{
    ANOMALIES, ANOMALY_SCORES, DetectError, DetectReport, Found, finish, input_versions,
    members_digest, rows, save, score_whole,
};

/// Series scored per batch of `anomaly_scores` rows (a few hundred
/// thousand rows: the write sees batches of a useful size, and only a
/// few of them are in memory at once).
const SERIES_PER_BATCH: usize = 500;

/// What one scoring worker found besides the rows it streamed.
#[derive(Debug, Default)]
struct Share {
    found: Found,
    points: usize,
    kept: Vec<(SeriesKey, SavedSeries)>,
}

/// Rescores everything (`reason` says why) and replaces both tables.
pub(super) async fn run(
    warehouse: &Warehouse,
    started: Instant,
    reason: String,
) -> Result<DetectReport, DetectError> {
    // Versions before the read: a write in between is seen again by the
    // next run, never missed.
    let inputs = input_versions(warehouse).await?;
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let members = members_digest(&ctx).await?;
    let all = Arc::new(load(&ctx, None).await?);
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
    let streams = RowStreams {
        streams: vec![Box::pin(RecordBatchStreamAdapter::new(schema, stream))],
    };
    let written = warehouse
        .replace_all_streamed(&ANOMALY_SCORES, streams)
        .await;
    let mut report = DetectReport {
        mode: "full".to_owned(),
        full_reason: Some(reason),
        series: all.len(),
        ..DetectReport::default()
    };
    let mut shares = Vec::with_capacity(workers);
    for handle in handles {
        shares.push(
            handle
                .await
                .map_err(|e| DetectError::Shape(format!("a scoring worker failed: {e}")))??,
        );
    }
    written?;
    let scored = started.elapsed().as_secs_f64();
    let mut anomalies = Vec::with_capacity(shares.len());
    let mut saved = Saved {
        fingerprint: fingerprint(),
        members,
        inputs,
        ..Saved::default()
    };
    for share in shares {
        report.points += share.points;
        anomalies.push(share.found.into_report(&mut report)?);
        saved.series.extend(share.kept);
    }
    warehouse.replace_all(&ANOMALIES, &anomalies).await?;
    save(warehouse, &mut saved).await?;
    finish(&mut report, started, read, scored);
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
) -> Result<Share, arrow::error::ArrowError> {
    let mut share = Share::default();
    let mut scores = rows::ScoreRows::default();
    let mut pending = 0;
    for series in all.iter().skip(worker).step_by(workers) {
        let kept = score_whole(series, &mut scores, &mut share.found);
        share.kept.push((series.key.clone(), kept));
        pending += 1;
        if pending == SERIES_PER_BATCH {
            share.points += scores.len();
            let batch = std::mem::take(&mut scores).finish()?;
            if sender.blocking_send(Ok(batch)).is_err() {
                return Ok(share);
            }
            pending = 0;
        }
    }
    if scores.len() > 0 {
        share.points += scores.len();
        let batch = scores.finish()?;
        let _ = sender.blocking_send(Ok(batch));
    }
    Ok(share)
}
