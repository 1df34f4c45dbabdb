//! The pipeline: ingest → transform → detect (and risk scoring) → notify as
//! ordered stages, each run under its own record in the run ledger whose
//! status one rule decides ([`Tally::status`]). The CLI and the scheduler of
//! `fathom serve` both call it, so a new stage is added here, in one place:
//! a [`Stage`] variant, its place in [`STAGES`], a method on [`Pipeline`]
//! returning something with a [`Tally`], and a line in
//! [`Pipeline::refresh`].
//!
//! Also here: the marts' watermark bookkeeping (kept in the state
//! database between runs) and the retention rule of portal events.

use fathom_ingest::source::SourceConfig;
use fathom_transforms::Parameters;
use fathom_warehouse::Warehouse;
use fathom_warehouse::state::StateDb;

pub mod notify;
pub mod retention;
mod stages;
mod status;

pub use stages::{Recorded, TransformRequest};
pub use status::Tally;

/// What went wrong in a stage. Every variant has been recorded in the run
/// ledger as a failed run before it is returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The warehouse or the state database failed. Boxed: storage errors
    /// are large and rare.
    #[error(transparent)]
    Warehouse(Box<fathom_warehouse::Error>),
    /// Ingest, reprocess or import failed as a whole.
    #[error("{stage} failed: {source}")]
    Ingest {
        /// The stage.
        stage: &'static str,
        /// Why.
        #[source]
        source: Box<fathom_ingest::Error>,
    },
    /// The transform failed.
    #[error("transform failed: {0}")]
    Transform(Box<fathom_transforms::Error>),
    /// Anomaly detection failed.
    #[error("detect failed: {0}")]
    Detect(Box<fathom_ml::detect::DetectError>),
    /// Scoring deployment risk failed.
    #[error("risk scoring failed: {0}")]
    Risk(Box<fathom_ml::risk::store::StoreError>),
    /// Reading events or delivering alerts failed as a whole.
    #[error("notify failed: {0}")]
    Notify(Box<notify::NotifyError>),
}

impl From<fathom_warehouse::Error> for Error {
    fn from(error: fathom_warehouse::Error) -> Self {
        Self::Warehouse(Box::new(error))
    }
}

/// Result with the pipeline's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Read the sources into the core tables.
    Ingest,
    /// Bring the marts up to date.
    Transform,
    /// Score every series for anomalies.
    Detect,
    /// Queue and deliver the alerts the rules match.
    Notify,
}

/// The stages in the order a refresh runs them.
pub const STAGES: [Stage; 4] = [
    Stage::Ingest,
    Stage::Transform,
    Stage::Detect,
    Stage::Notify,
];

impl Stage {
    /// Its name in the ledger and in job locks.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Transform => "transform",
            Self::Detect => "detect",
            Self::Notify => "notify",
        }
    }
}

/// The pipeline over one warehouse and state database.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline<'a> {
    /// Where tables live.
    pub warehouse: &'a Warehouse,
    /// The run ledger, cursors, job locks.
    pub state: &'a StateDb,
    /// The configured sources.
    pub sources: &'a [SourceConfig],
    /// The metric definitions' parameters.
    pub parameters: &'a Parameters,
    /// Alert channels and rules.
    pub alerts: &'a notify::AlertsConfig,
}

/// What a scheduled refresh of one source did.
#[derive(Debug, Clone, PartialEq)]
pub enum Refreshed {
    /// Another runner holds the source's ingest lock.
    Skipped,
    /// The stages ran (the transform is skipped, and logged, when another
    /// runner holds it); `degraded` holds the errors when the source was
    /// down.
    Done {
        /// Errors of a degraded source.
        degraded: Option<String>,
    },
}

impl Pipeline<'_> {
    /// Every stage for one source, each under its job lock (shared by
    /// every replica): ingest the source, then bring the marts up to date
    /// incrementally. `started` hears each run id as its ledger record
    /// opens (the previous stage's record is closed by then), so a caller
    /// can mark the open one abandoned at shutdown.
    pub async fn refresh(
        &self,
        source: &str,
        started: &(dyn Fn(&str) + Sync),
    ) -> Result<Refreshed> {
        let mut degraded = None;
        for stage in STAGES {
            match stage {
                Stage::Ingest => {
                    let job = format!("{}:{source}", stage.name());
                    let Some(lock) = self.state.try_lock_job(&job).await? else {
                        tracing::info!(%source, "skipped: another runner is ingesting it");
                        return Ok(Refreshed::Skipped);
                    };
                    let run_id = self
                        .state
                        .start_run(&format!("ingest --source {source} (scheduled)"))
                        .await?;
                    started(&run_id);
                    let options = fathom_ingest::runner::IngestOptions {
                        source: Some(source.to_owned()),
                        since: None,
                        full: false,
                    };
                    let report = self
                        .ingest(
                            &run_id,
                            &options,
                            std::sync::Arc::new(fathom_ingest::runner::NoIngestProgress),
                        )
                        .await;
                    lock.release().await?;
                    let report = report?;
                    let down = report.sources.iter().any(|s| s.degraded);
                    tracing::info!(%source, %run_id, degraded = down, rows = ?report.counts(), "scheduled ingest finished");
                    if down {
                        degraded = Some(report.errors().join("; "));
                    }
                }
                Stage::Transform => {
                    let Some(lock) = self.state.try_lock_job(stage.name()).await? else {
                        tracing::info!("transform skipped: another runner is transforming");
                        continue;
                    };
                    let run_id = self.state.start_run("transform (scheduled)").await?;
                    started(&run_id);
                    let outcome = self
                        .transform(
                            &run_id,
                            &TransformRequest::default(),
                            &fathom_transforms::NoProgress,
                        )
                        .await;
                    lock.release().await?;
                    outcome?;
                }
                Stage::Detect => {
                    let Some(lock) = self.state.try_lock_job(stage.name()).await? else {
                        tracing::info!("detect skipped: another runner is detecting");
                        continue;
                    };
                    let run_id = self.state.start_run("detect (scheduled)").await?;
                    started(&run_id);
                    let outcome = self.detect(&run_id, false).await;
                    // With the marts fresh, the newest deployments get
                    // their risk scores too (when a model was trained).
                    let scored = match outcome {
                        Ok(_) => self.score_risk().await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    lock.release().await?;
                    scored?;
                }
                Stage::Notify => {
                    // Also after a degraded ingest: that is an event too.
                    if self.alerts.rules.is_empty() {
                        continue;
                    }
                    let Some(lock) = self.state.try_lock_job(stage.name()).await? else {
                        tracing::info!("notify skipped: another runner is notifying");
                        continue;
                    };
                    let run_id = self.state.start_run("alerts run (scheduled)").await?;
                    started(&run_id);
                    let outcome = self.notify(&run_id).await;
                    lock.release().await?;
                    outcome?;
                }
            }
        }
        Ok(Refreshed::Done { degraded })
    }
}
