//! The stages, each recorded in the run ledger under the run id its caller
//! opened: the status from the stage's [`Tally`], its counts and errors; a
//! stage that fails as a whole is recorded as failed with the error.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fathom_ingest::import::{FileFormat, ImportProgress, ImportReport};
use fathom_ingest::runner::{IngestOptions, IngestProgress, IngestReport};
use fathom_models::TableDef;
use fathom_transforms::{RunOutcome, TransformProgress, Watermark};
use fathom_warehouse::state::{RunStatus, StateDb};

use crate::{Error, Pipeline, Result, Tally};

/// Where the state database keeps the marts' watermark.
const WATERMARK: (&str, &str) = ("transforms", "watermark");

/// What a stage reports to the ledger.
pub trait Recorded {
    /// The parts, failures and quarantined records the status rule reads.
    fn tally(&self) -> Tally;
    /// Counts kept with the run (`table.rows`, …).
    fn counts(&self) -> BTreeMap<String, i64>;
    /// Error messages kept with the run.
    fn errors(&self) -> Vec<String>;
}

impl Recorded for IngestReport {
    fn tally(&self) -> Tally {
        let troubled = self
            .sources
            .iter()
            .filter(|s| {
                !s.degraded && (s.error.is_some() || s.streams.iter().any(|t| t.error.is_some()))
            })
            .count();
        Tally {
            parts: self.sources.len(),
            failed_parts: self.sources.iter().filter(|s| s.degraded).count(),
            errors: troubled,
            quarantined: self.quarantined() as u64,
        }
    }

    fn counts(&self) -> BTreeMap<String, i64> {
        IngestReport::counts(self)
    }

    fn errors(&self) -> Vec<String> {
        IngestReport::errors(self)
    }
}

impl Recorded for ImportReport {
    fn tally(&self) -> Tally {
        // Nothing landed at all: every file counts as failed.
        let failed_parts = if self.rows_loaded() == 0 {
            self.files.len()
        } else {
            self.failed_files()
        };
        Tally {
            parts: self.files.len(),
            failed_parts,
            errors: self.failed_files(),
            quarantined: self.rows_rejected(),
        }
    }

    fn counts(&self) -> BTreeMap<String, i64> {
        let mut counts = BTreeMap::new();
        let table = &self.table;
        counts.insert(format!("{table}.inserted"), self.merge.rows_inserted as i64);
        counts.insert(format!("{table}.updated"), self.merge.rows_updated as i64);
        counts.insert(
            format!("{table}.unchanged"),
            self.merge.rows_unchanged as i64,
        );
        counts.insert(
            "quarantine.rejected".to_owned(),
            self.rows_rejected() as i64,
        );
        counts
    }

    fn errors(&self) -> Vec<String> {
        self.files.iter().filter_map(|f| f.error.clone()).collect()
    }
}

impl Recorded for RunOutcome {
    fn tally(&self) -> Tally {
        Tally {
            parts: self.marts.len(),
            ..Tally::default()
        }
    }

    fn counts(&self) -> BTreeMap<String, i64> {
        self.marts
            .iter()
            .map(|r| (format!("{}.rows", r.mart), r.rows as i64))
            .collect()
    }

    fn errors(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Recorded for crate::notify::NotifyReport {
    fn tally(&self) -> Tally {
        Tally {
            parts: 1,
            errors: self.errors.len(),
            ..Tally::default()
        }
    }

    fn counts(&self) -> BTreeMap<String, i64> {
        [
            ("alerts.events", self.events),
            ("alerts.queued", self.queued),
            ("alerts.delivered", self.delivered),
            ("alerts.retrying", self.retrying),
            ("alerts.held", self.held),
            ("alerts.failed", self.failed),
            ("alerts.dead", self.dead),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), i64::try_from(v).unwrap_or(i64::MAX)))
        .collect()
    }

    fn errors(&self) -> Vec<String> {
        self.errors.clone()
    }
}

impl Recorded for fathom_ml::detect::DetectReport {
    fn tally(&self) -> Tally {
        Tally {
            parts: 1,
            ..Tally::default()
        }
    }

    fn counts(&self) -> BTreeMap<String, i64> {
        BTreeMap::from([
            ("anomaly_scores.rows".to_owned(), self.points as i64),
            ("anomalies.rows".to_owned(), self.anomalies as i64),
            ("anomalies.open".to_owned(), self.open as i64),
        ])
    }

    fn errors(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Recorded for fathom_ml::risk::store::ScoreReport {
    fn tally(&self) -> Tally {
        Tally {
            parts: 1,
            ..Tally::default()
        }
    }

    fn counts(&self) -> BTreeMap<String, i64> {
        BTreeMap::from([
            ("deployment_risk.rows".to_owned(), self.deployments as i64),
            ("deployment_risk.flagged".to_owned(), self.flagged as i64),
        ])
    }

    fn errors(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Closes the ledger record `run_id` with what `outcome` says.
async fn record<T: Recorded, E>(
    state: &StateDb,
    run_id: &str,
    outcome: std::result::Result<T, E>,
    error: impl FnOnce(E) -> Error,
) -> Result<T> {
    match outcome {
        Ok(done) => {
            state
                .finish_run(
                    run_id,
                    done.tally().status(),
                    &done.counts(),
                    &done.errors(),
                )
                .await?;
            Ok(done)
        }
        Err(e) => {
            let error = error(e);
            state
                .finish_run(
                    run_id,
                    RunStatus::Failed,
                    &BTreeMap::new(),
                    &[format!("{error}")],
                )
                .await?;
            Err(error)
        }
    }
}

/// The error of an ingest-side stage, named after it.
fn failed(stage: &'static str) -> impl FnOnce(fathom_ingest::Error) -> Error {
    move |e| Error::Ingest {
        stage,
        source: Box::new(e),
    }
}

/// What a transform run is asked to do.
#[derive(Debug, Clone)]
pub struct TransformRequest {
    /// Only this mart, recomputed whole (the watermark stays).
    pub only: Option<String>,
    /// End of the windows.
    pub as_of: DateTime<Utc>,
    /// Recompute everything even when the watermark allows less.
    pub full: bool,
}

impl Default for TransformRequest {
    fn default() -> Self {
        Self {
            only: None,
            as_of: fathom_transforms::default_as_of(),
            full: false,
        }
    }
}

impl Pipeline<'_> {
    /// Ingests the configured sources under the ledger record `run_id`.
    pub async fn ingest(
        &self,
        run_id: &str,
        options: &IngestOptions,
        progress: Arc<dyn IngestProgress>,
    ) -> Result<IngestReport> {
        let outcome = fathom_ingest::runner::ingest(
            self.warehouse,
            self.state,
            self.sources,
            options,
            run_id,
            progress,
        )
        .await;
        record(self.state, run_id, outcome, failed("ingest")).await
    }

    /// Rebuilds the core tables from the raw layer under `run_id`. Rows may
    /// move to other components (a new mapping), so the next transform
    /// starts over instead of following changed rows.
    pub async fn reprocess(
        &self,
        run_id: &str,
        options: &IngestOptions,
        progress: Arc<dyn IngestProgress>,
    ) -> Result<IngestReport> {
        self.state.clear_cursor(WATERMARK.0, WATERMARK.1).await?;
        let outcome = fathom_ingest::runner::reprocess(
            self.warehouse,
            self.state,
            self.sources,
            options,
            run_id,
            progress,
        )
        .await;
        record(self.state, run_id, outcome, failed("reprocess")).await
    }

    /// Imports files into `table` under `run_id`: all of them in one
    /// commit, or nothing.
    pub async fn import(
        &self,
        run_id: &str,
        table: &'static TableDef,
        files: &[std::path::PathBuf],
        format: Option<FileFormat>,
        progress: Arc<dyn ImportProgress>,
    ) -> Result<ImportReport> {
        let outcome =
            fathom_ingest::import_files(self.warehouse, table, files, format, run_id, progress)
                .await;
        record(self.state, run_id, outcome, failed("import")).await
    }

    /// Scores every series for anomalies under `run_id`: the new days,
    /// continuing the saved state, or everything when `full` (or when the
    /// state cannot be continued).
    pub async fn detect(
        &self,
        run_id: &str,
        full: bool,
    ) -> Result<fathom_ml::detect::DetectReport> {
        let outcome = fathom_ml::detect::run(self.warehouse, full).await;
        record(self.state, run_id, outcome, |e| Error::Detect(Box::new(e))).await
    }

    /// Reads the events, queues what the rules match and delivers what is
    /// due, under `run_id`.
    pub async fn notify(&self, run_id: &str) -> Result<crate::notify::NotifyReport> {
        let outcome = async {
            let notifier = crate::notify::Notifier::new(self.alerts, self.state)?;
            let sources: Vec<String> = self.sources.iter().map(|s| s.name().to_owned()).collect();
            let now = Utc::now();
            let (events, queued) = notifier.queue(self.warehouse, &sources, now).await?;
            let mut report = notifier.deliver_due(now).await?;
            report.events = events;
            report.queued = queued;
            Ok(report)
        }
        .await;
        record(self.state, run_id, outcome, |e| Error::Notify(Box::new(e))).await
    }

    /// Scores every deployment with the newest risk model, under a run of
    /// its own; `None` (and no run) while no model was trained.
    pub async fn score_risk(&self) -> Result<Option<fathom_ml::risk::store::ScoreReport>> {
        let Some(model) = self.state.latest_risk_model().await? else {
            return Ok(None);
        };
        let run_id = self.state.start_run("risk").await?;
        let outcome = async {
            let artifact =
                fathom_ml::risk::store::read_artifact(self.warehouse, &model.version).await?;
            fathom_ml::risk::store::score_all(self.warehouse, &artifact).await
        }
        .await;
        record(self.state, &run_id, outcome, |e| Error::Risk(Box::new(e)))
            .await
            .map(Some)
    }

    /// Brings the marts up to date under `run_id`: incrementally from the
    /// stored watermark unless `full` or `only`, keeping the new watermark.
    pub async fn transform(
        &self,
        run_id: &str,
        request: &TransformRequest,
        progress: &dyn TransformProgress,
    ) -> Result<RunOutcome> {
        // An unreadable watermark (an older format) only costs a full run.
        let previous: Option<Watermark> = match self.state.cursor(WATERMARK.0, WATERMARK.1).await {
            Ok(text) => text.and_then(|text| serde_json::from_str(&text).ok()),
            Err(e) => {
                let e: Error = e.into();
                self.state
                    .finish_run(
                        run_id,
                        RunStatus::Failed,
                        &BTreeMap::new(),
                        &[e.to_string()],
                    )
                    .await?;
                return Err(e);
            }
        };
        let options = fathom_transforms::RunOptions {
            only: request.only.as_deref(),
            as_of: request.as_of,
            full: request.full,
            previous: previous.as_ref(),
        };
        let outcome =
            fathom_transforms::run(self.warehouse, self.parameters, options, progress).await;
        if let Ok(done) = &outcome
            && let Some(watermark) = &done.watermark
        {
            let text = serde_json::to_string(watermark).unwrap_or_default();
            self.state
                .set_cursor(WATERMARK.0, WATERMARK.1, &text)
                .await?;
        }
        record(self.state, run_id, outcome, |e| {
            Error::Transform(Box::new(e))
        })
        .await
    }
}
