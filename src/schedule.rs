//! The scheduler of `fathom serve`: each source is ingested on its own
//! schedule (an interval such as `15m`, or a five-field cron expression in
//! UTC), followed by an incremental transform; `POST /api/v1/runs` asks for
//! a run now.
//!
//! Only one runner does a job at a time: a job lock in the state database
//! (a PostgreSQL advisory lock shared by every replica; with SQLite, one
//! process). A replica that finds the lock taken skips its turn. A failed
//! run is recorded in the ledger (so `/freshness` shows the source
//! degraded) and tried again after `retry_after`. On shutdown the current
//! run gets `shutdown_grace_seconds` to finish, else it is abandoned: its
//! commits so far are whole (every warehouse write is atomic) and its
//! ledger entry says it was abandoned.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use fathom_api::RunTrigger;
use fathom_warehouse::Warehouse;
use fathom_warehouse::state::{RunStatus, StateDb};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::config::Config;

/// `[schedule]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Run the scheduler in `fathom serve`. Default true.
    pub enabled: bool,
    /// Schedule of sources not named in `sources`: an interval (`30s`,
    /// `15m`, `1h`, `1d`) or a cron expression (`*/15 * * * *`, UTC).
    /// Default `1h`.
    pub every: String,
    /// Schedules by source name, overriding `every`.
    pub sources: BTreeMap<String, String>,
    /// Wait before trying a failed source again (never longer than its
    /// interval). Default `5m`.
    pub retry_after: String,
    /// Seconds a running job may take to finish at shutdown before it is
    /// abandoned. Default 30.
    pub shutdown_grace_seconds: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            every: "1h".to_owned(),
            sources: BTreeMap::new(),
            retry_after: "5m".to_owned(),
            shutdown_grace_seconds: 30,
        }
    }
}

/// When a job runs.
#[derive(Debug, Clone)]
pub enum When {
    /// Every so often, from the server's start.
    Every(Duration),
    /// At the times a cron expression matches (UTC).
    Cron(Box<croner::Cron>),
}

/// `30s`, `15m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("`{text}` needs a unit: s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("`{text}` does not start with a number"))?;
    let seconds = match unit.trim() {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        other => bail!("`{other}` in `{text}` is not a unit: use s, m, h or d"),
    };
    if seconds == 0 {
        bail!("`{text}`: a schedule needs a positive interval");
    }
    Ok(Duration::from_secs(seconds))
}

impl FromStr for When {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        if text.split_whitespace().count() >= 5 {
            let cron = croner::Cron::from_str(text)
                .map_err(|e| anyhow::anyhow!("`{text}` is not a cron expression: {e}"))?;
            Ok(Self::Cron(Box::new(cron)))
        } else {
            parse_duration(text).map(Self::Every)
        }
    }
}

impl When {
    /// The next run after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Every(interval) => {
                after + chrono::Duration::from_std(*interval).unwrap_or(chrono::Duration::hours(1))
            }
            // A pattern that never matches again runs no more.
            Self::Cron(cron) => cron
                .find_next_occurrence(&after, false)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Roughly how far apart runs are (caps the retry delay).
    fn spacing(&self, now: DateTime<Utc>) -> Duration {
        let next = self.next_after(now);
        (self.next_after(next) - next)
            .to_std()
            .unwrap_or(Duration::from_secs(3600))
    }
}

/// One source's job.
#[derive(Debug)]
struct Job {
    source: String,
    when: When,
    next: DateTime<Utc>,
}

/// Checks `[schedule]` against the sources; the jobs. A cron job is first
/// due at its next slot; an interval job one interval after the source was
/// last read (from `last_read`), or now if it never was — so a new
/// installation ingests at once and a restart does not read everything
/// again.
fn jobs(
    config: &Config,
    now: DateTime<Utc>,
    last_read: &BTreeMap<String, DateTime<Utc>>,
) -> Result<Vec<Job>> {
    let names: Vec<&str> = config.sources.iter().map(|s| s.name()).collect();
    for name in config.schedule.sources.keys() {
        if !names.contains(&name.as_str()) {
            bail!(
                "[schedule.sources] names `{name}`, which is not a configured source ({})",
                names.join(", ")
            );
        }
    }
    let default: When = config.schedule.every.parse().context("[schedule] every")?;
    names
        .into_iter()
        .map(|name| {
            let when = match config.schedule.sources.get(name) {
                Some(text) => text
                    .parse()
                    .with_context(|| format!("[schedule.sources] {name}"))?,
                None => default.clone(),
            };
            let next = match (&when, last_read.get(name)) {
                (When::Cron(_), _) => when.next_after(now),
                (When::Every(_), Some(last)) => when.next_after(*last).max(now),
                (When::Every(_), None) => now,
            };
            Ok(Job {
                source: name.to_owned(),
                next,
                when,
            })
        })
        .collect()
}

/// When each source was last read, from the run ledger (a run read a
/// source when its counts name it, as `/freshness` reads them).
async fn last_reads(config: &Config, state: &StateDb) -> Result<BTreeMap<String, DateTime<Utc>>> {
    let runs = state.runs(1000).await?;
    Ok(config
        .sources
        .iter()
        .filter_map(|source| {
            let key = format!("{}.api_calls", source.name());
            runs.iter()
                .find(|r| r.row_counts.contains_key(&key))
                .map(|r| (source.name().to_owned(), r.started_at))
        })
        .collect())
}

/// Ledger entries of the job in progress, to close if it is abandoned.
type OpenRuns = Arc<Mutex<Vec<String>>>;

/// What a job run came to.
enum Outcome {
    Done,
    Failed(String),
    /// Another runner holds the lock.
    Skipped,
}

/// Runs the schedule until `stopped` turns true.
pub async fn run(
    config: Config,
    warehouse: Warehouse,
    state: StateDb,
    mut triggers: mpsc::Receiver<RunTrigger>,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let retry = parse_duration(&config.schedule.retry_after).context("[schedule] retry_after")?;
    let grace = Duration::from_secs(config.schedule.shutdown_grace_seconds);
    let mut jobs = jobs(&config, Utc::now(), &last_reads(&config, &state).await?)?;
    for job in &jobs {
        tracing::info!(source = %job.source, next = %job.next, "scheduled");
    }
    let mut queued: Vec<String> = Vec::new();
    let mut inbox_open = true;
    loop {
        let now = Utc::now();
        if queued.is_empty()
            && let Some(job) = jobs.iter().filter(|j| j.next <= now).min_by_key(|j| j.next)
        {
            queued.push(job.source.clone());
        }
        if let Some(source) = queued.first().cloned() {
            queued.remove(0);
            let open: OpenRuns = Arc::default();
            let work = run_job(&config, &warehouse, &state, &source, open.clone());
            tokio::pin!(work);
            let outcome = tokio::select! {
                outcome = &mut work => outcome,
                () = until_stopped(&mut stopped) => {
                    tracing::info!(%source, grace_seconds = grace.as_secs(), "shutting down: waiting for the running job");
                    match tokio::time::timeout(grace, &mut work).await {
                        Ok(_) => {}
                        Err(_) => abandon(&state, &open).await,
                    }
                    return Ok(());
                }
            };
            let now = Utc::now();
            if let Some(job) = jobs.iter_mut().find(|j| j.source == source) {
                job.next = match &outcome {
                    Outcome::Failed(error) => {
                        let wait = retry.min(job.when.spacing(now));
                        tracing::warn!(%source, %error, retry_in_seconds = wait.as_secs(), "scheduled run failed");
                        now + chrono::Duration::from_std(wait)
                            .unwrap_or(chrono::Duration::minutes(5))
                    }
                    Outcome::Done | Outcome::Skipped => job.when.next_after(now),
                };
            }
            continue;
        }
        let next = jobs.iter().map(|j| j.next).min();
        let sleep = next
            .and_then(|n| (n - Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            () = until_stopped(&mut stopped) => return Ok(()),
            trigger = triggers.recv(), if inbox_open => match trigger {
                Some(trigger) => {
                    tracing::info!(by = %trigger.requested_by, source = ?trigger.source, "run requested");
                    match trigger.source {
                        Some(source) => queued.push(source),
                        None => queued.extend(jobs.iter().map(|j| j.source.clone())),
                    }
                }
                // The API is gone: keep the schedule.
                None => inbox_open = false,
            },
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Completes when the server is told to stop (the borrow of the flag ends
/// inside, so the future stays `Send`).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Marks the runs of an abandoned job as failed, saying why.
async fn abandon(state: &StateDb, open: &OpenRuns) {
    let runs = open.lock().map(|r| r.clone()).unwrap_or_default();
    for run_id in runs {
        let error =
            "abandoned: the server shut down before the run finished (what it committed is whole)";
        if let Err(e) = state
            .finish_run(
                &run_id,
                RunStatus::Failed,
                &BTreeMap::new(),
                &[error.to_owned()],
            )
            .await
        {
            tracing::warn!(%run_id, error = %e, "cannot record the abandoned run");
        }
    }
}

/// Every pipeline stage for one source (see
/// [`fathom_pipeline::Pipeline::refresh`]); the open run is kept in `open`
/// so a shutdown can mark it abandoned.
async fn run_job(
    config: &Config,
    warehouse: &Warehouse,
    state: &StateDb,
    source: &str,
    open: OpenRuns,
) -> Outcome {
    let started = |run_id: &str| {
        if let Ok(mut runs) = open.lock() {
            *runs = vec![run_id.to_owned()];
        }
    };
    let outcome = crate::cli::pipeline(config, warehouse, state)
        .refresh(source, &started)
        .await;
    if let Ok(mut runs) = open.lock() {
        runs.clear();
    }
    match outcome {
        Ok(fathom_pipeline::Refreshed::Skipped) => Outcome::Skipped,
        Ok(fathom_pipeline::Refreshed::Done {
            degraded: Some(errors),
        }) => Outcome::Failed(errors),
        Ok(fathom_pipeline::Refreshed::Done { degraded: None }) => Outcome::Done,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_jobs_start_from_the_last_read() -> Result<()> {
        let config: Config = toml::from_str(
            "[[sources]]\ntype = \"backstage\"\nname = \"catalog\"\nbase_url = \"http://x\"\ntoken = \"t\"\n\
             [[sources]]\ntype = \"backstage\"\nname = \"other\"\nbase_url = \"http://x\"\ntoken = \"t\"\n\
             [[sources]]\ntype = \"backstage\"\nname = \"nightly\"\nbase_url = \"http://x\"\ntoken = \"t\"\n\
             [schedule]\nevery = \"1h\"\n[schedule.sources]\nnightly = \"0 2 * * *\"\n",
        )?;
        let now: DateTime<Utc> = "2026-11-26T10:00:00Z".parse()?;
        let last = BTreeMap::from([
            ("catalog".to_owned(), "2026-11-26T09:40:00Z".parse()?),
            ("nightly".to_owned(), "2026-11-20T02:00:00Z".parse()?),
        ]);
        let jobs = jobs(&config, now, &last)?;
        let next = |name: &str| jobs.iter().find(|j| j.source == name).map(|j| j.next);
        // Read 20 minutes ago: due in 40. Never read: due now. Cron: its slot.
        assert_eq!(next("catalog"), Some("2026-11-26T10:40:00Z".parse()?));
        assert_eq!(next("other"), Some(now));
        assert_eq!(next("nightly"), Some("2026-11-27T02:00:00Z".parse()?));
        Ok(())
    }

    #[test]
    fn schedules_parse_intervals_and_cron() -> Result<()> {
        assert_eq!(parse_duration("30s")?, Duration::from_secs(30));
        assert_eq!(parse_duration("15m")?, Duration::from_secs(900));
        assert_eq!(parse_duration("2h")?, Duration::from_secs(7200));
        assert_eq!(parse_duration("1d")?, Duration::from_secs(86_400));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("5w").is_err());

        let at: DateTime<Utc> = "2026-11-26T10:07:30Z".parse()?;
        let every: When = "15m".parse()?;
        assert_eq!(
            every.next_after(at),
            "2026-11-26T10:22:30Z".parse::<DateTime<Utc>>()?
        );
        let cron: When = "*/15 * * * *".parse()?;
        assert_eq!(
            cron.next_after(at),
            "2026-11-26T10:15:00Z".parse::<DateTime<Utc>>()?
        );
        assert_eq!(cron.spacing(at), Duration::from_secs(900));
        let nightly: When = "30 2 * * *".parse()?;
        assert_eq!(
            nightly.next_after(at),
            "2026-11-27T02:30:00Z".parse::<DateTime<Utc>>()?
        );
        assert!("61 * * * *".parse::<When>().is_err());
        Ok(())
    }
}
