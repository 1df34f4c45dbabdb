//! How fresh each source is, from the run ledger: its last run, its last
//! successful one, and whether it is degraded (its last run failed for
//! it). One rule for `/api/v1/freshness`, Data health and the alerts on
//! degraded or stale sources.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RunRecord, RunStatus};

/// One source's freshness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceFreshness {
    /// The source's name.
    pub source: String,
    /// When its last run ended (or started, if it never ended).
    pub last_run_at: Option<DateTime<Utc>>,
    /// When its last successful run ended.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Seconds since the last success.
    pub lag_seconds: Option<i64>,
    /// Its last run failed for it.
    pub degraded: bool,
    /// That run's error about it.
    pub last_error: Option<String>,
}

/// The freshness of each of `sources` from `runs` (newest first, as
/// [`super::StateDb::runs`] lists them). A run read a source when it counted
/// the source's API calls; it failed for the source when it failed as a
/// whole or recorded an error naming the source.
pub fn source_freshness(
    runs: &[RunRecord],
    sources: &[String],
    now: DateTime<Utc>,
) -> Vec<SourceFreshness> {
    sources
        .iter()
        .map(|name| {
            let calls = format!("{name}.api_calls");
            let prefix = format!("{name}: ");
            let mut read = runs.iter().filter(|r| r.row_counts.contains_key(&calls));
            let failed = |r: &RunRecord| {
                r.errors.iter().any(|e| e.starts_with(&prefix)) || r.status == RunStatus::Failed
            };
            let at = |r: &RunRecord| r.finished_at.unwrap_or(r.started_at);
            let last = read.clone().next();
            let success = read.find(|r| !failed(r));
            let degraded = last.is_some_and(failed);
            SourceFreshness {
                source: name.clone(),
                last_run_at: last.map(at),
                last_success_at: success.map(at),
                lag_seconds: success.map(|r| (now - at(r)).num_seconds()),
                degraded,
                last_error: last
                    .filter(|r| failed(r))
                    .and_then(|r| r.errors.iter().find(|e| e.starts_with(&prefix)).cloned()),
            }
        })
        .collect()
}
