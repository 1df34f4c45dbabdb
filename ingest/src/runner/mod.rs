//! The ingest runner: for each source and stream, read the cursor, fetch,
//! keep every payload in the raw layer, decode, map identities, merge into
//! the core tables, and **only then** advance the cursor. A crash between
//! any two steps replays the unfinished work; merges make the replay
//! harmless.
//!
//! A source whose upstream is down (circuit open, credentials refused,
//! rate limit exhausted) is reported degraded and skipped for the rest of
//! the run; the other sources carry on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use fathom_models::tables::CATALOG_ENTITIES;
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query, read_only_session};
use fathom_warehouse::state::StateDb;

use crate::identity::IdentityMap;
use crate::source::{
    Collector, FetchContext, Message, Payload, ProductionDeployment, SourceConfig, SourceError,
};
use crate::{Error, Result};

mod report;
mod reprocess;
mod write;

pub use self::report::{IngestReport, SourceReport, StreamReport};
pub use self::reprocess::reprocess;
use self::write::{Flushed, flush, text};
pub(crate) use self::write::{Replace, Written, decode_units, raw_batch, write_decoded};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Only the source with this name.
    pub source: Option<String>,
    /// Only records changed after this instant, where the upstream can
    /// filter (first runs and backfills).
    pub since: Option<DateTime<Utc>>,
    /// Ignore stored cursors: fetch everything again.
    pub full: bool,
}

/// Progress of a run, for bars.
pub trait IngestProgress: Send + Sync {
    /// A stream starts.
    fn stream_started(&self, source: &str, stream: &str);
    /// A payload arrived.
    fn payload(&self, source: &str, stream: &str);
    /// A stream ended.
    fn stream_finished(&self, report: &StreamReport);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIngestProgress;

impl IngestProgress for NoIngestProgress {
    fn stream_started(&self, _: &str, _: &str) {}
    fn payload(&self, _: &str, _: &str) {}
    fn stream_finished(&self, _: &StreamReport) {}
}

/// Payloads held before a commit.
const FLUSH_PAYLOADS: usize = 2_000;
/// Bytes of payloads held before a commit.
const FLUSH_BYTES: usize = 64 << 20;

/// Production environments by default (brief §6).
pub const DEFAULT_PRODUCTION_PATTERN: &str = "(?i)^prod(uction)?([-_].*)?$";

/// Runs `sources` (or the one named in `options`).
pub async fn ingest(
    warehouse: &Warehouse,
    state: &StateDb,
    sources: &[SourceConfig],
    options: &IngestOptions,
    run_id: &str,
    progress: Arc<dyn IngestProgress>,
) -> Result<IngestReport> {
    let selected = select(sources, options)?;
    let mut reports: Vec<SourceReport> = Vec::new();
    let mut clients = Vec::new();
    for source in &selected {
        let mut report = SourceReport {
            name: source.name().to_owned(),
            kind: source.kind().to_owned(),
            ..SourceReport::default()
        };
        if source.reads_files() {
            clients.push(None);
            reports.push(report);
            continue;
        }
        let client = match source.client() {
            Ok(client) => Some(client),
            Err(e) => {
                report.degraded = true;
                report.error = Some(e.to_string());
                None
            }
        };
        clients.push(client);
        reports.push(report);
    }
    // Two phases: every source's own streams, then the streams that need
    // other sources' rows (change sets need every deployment).
    for late in [false, true] {
        for ((source, client), report) in selected.iter().zip(&clients).zip(reports.iter_mut()) {
            if source.reads_files() {
                if !late {
                    let identities = IdentityMap::load(warehouse)
                        .await
                        .map_err(Error::Identity)?;
                    report.streams = run_files(
                        warehouse,
                        state,
                        source,
                        options.full,
                        run_id,
                        &identities,
                        &progress,
                    )
                    .await?;
                    if let Some(error) = report.streams.iter().find_map(|s| s.error.clone()) {
                        report.degraded = true;
                        report.error = Some(error);
                    }
                }
                continue;
            }
            let Some(client) = client else { continue };
            // Mappings come from the catalog: read once, and again only
            // after a stream changed it.
            let mut identities = IdentityMap::load(warehouse)
                .await
                .map_err(Error::Identity)?;
            for stream in source.streams().iter().filter(|s| is_late(s) == late) {
                if report.degraded {
                    break;
                }
                progress.stream_started(source.name(), stream);
                let stream_report = run_stream(
                    warehouse,
                    state,
                    source,
                    client,
                    stream,
                    options,
                    run_id,
                    &identities,
                    &progress,
                )
                .await?;
                if stream_report
                    .rows_changed
                    .get(CATALOG_ENTITIES.name)
                    .is_some_and(|n| *n > 0)
                {
                    identities = IdentityMap::load(warehouse)
                        .await
                        .map_err(Error::Identity)?;
                }
                progress.stream_finished(&stream_report);
                if let Some(error) = &stream_report.error
                    && (client.is_open() || stream_report.upstream_down)
                {
                    report.degraded = true;
                    report.error = Some(error.clone());
                }
                report.streams.push(stream_report);
            }
            report.api_calls = client.stats.requests.load(Ordering::Relaxed);
            report.retries = client.stats.retries.load(Ordering::Relaxed);
            report.not_modified = client.stats.not_modified.load(Ordering::Relaxed);
            report.rate_limit_wait_seconds =
                client.stats.rate_limit_wait_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        }
    }
    Ok(IngestReport { sources: reports })
}

/// Runs a file source's stream.
async fn run_files(
    warehouse: &Warehouse,
    state: &StateDb,
    source: &SourceConfig,
    full: bool,
    run_id: &str,
    identities: &IdentityMap,
    progress: &Arc<dyn IngestProgress>,
) -> Result<Vec<StreamReport>> {
    let mut ctx = crate::files::FileRun {
        warehouse,
        state,
        name: source.name(),
        stream: "",
        run_id,
        full,
        identities,
        progress,
    };
    let report = match source {
        SourceConfig::CostReport(config) => {
            ctx.stream = crate::files::cost_report::STREAM;
            progress.stream_started(ctx.name, ctx.stream);
            crate::files::cost_report::run(&ctx, config).await?
        }
        SourceConfig::PortalEvents(config) => {
            ctx.stream = crate::files::events::STREAM;
            progress.stream_started(ctx.name, ctx.stream);
            crate::files::events::run(&ctx, config).await?
        }
        _ => return Ok(Vec::new()),
    };
    progress.stream_finished(&report);
    Ok(vec![report])
}

/// The configured sources `options` asks for (all, or the one named).
fn select<'a>(
    sources: &'a [SourceConfig],
    options: &IngestOptions,
) -> Result<Vec<&'a SourceConfig>> {
    let selected: Vec<&SourceConfig> = sources
        .iter()
        .filter(|s| options.source.as_deref().is_none_or(|n| n == s.name()))
        .collect();
    match &options.source {
        Some(name) if selected.is_empty() => Err(Error::UnknownSource {
            name: name.clone(),
            known: sources.iter().map(|s| s.name().to_owned()).collect(),
        }),
        _ => Ok(selected),
    }
}

/// An instant as DataFusion prints a timestamp cast to text
/// (`2026-06-30 12:00:00`, with or without an offset).
fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.replace(' ', "T");
    text.parse::<DateTime<Utc>>()
        .or_else(|_| format!("{text}Z").parse::<DateTime<Utc>>())
        .ok()
}

/// Streams that run after every source's own streams.
fn is_late(stream: &str) -> bool {
    stream == "changes"
}

#[allow(clippy::too_many_arguments)]
async fn run_stream(
    warehouse: &Warehouse,
    state: &StateDb,
    source: &SourceConfig,
    client: &crate::http::HttpClient,
    stream: &str,
    options: &IngestOptions,
    run_id: &str,
    identities: &IdentityMap,
    progress: &Arc<dyn IngestProgress>,
) -> Result<StreamReport> {
    let name = source.name();
    let mut report = StreamReport {
        source: name.to_owned(),
        stream: stream.to_owned(),
        ..StreamReport::default()
    };
    let cursor = if options.full {
        None
    } else {
        state.cursor(name, stream).await?
    };
    let ctx = match fetch_context(warehouse, source, stream, options).await {
        Ok(mut ctx) => {
            ctx.datadog_services = identities.datadog_service_names();
            ctx
        }
        Err(e) => {
            report.error = Some(e);
            return Ok(report);
        }
    };
    let (collector, mut receiver) = Collector::channel(64);
    let mut pending_cursor: Option<String> = None;
    let fetch = async move {
        let result = source
            .fetch(client, stream, cursor.as_deref(), &ctx, &collector)
            .await;
        drop(collector);
        result
    };
    let consume = async {
        let mut pending: Vec<Payload> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut warnings = Vec::new();
        while let Some(message) = receiver.recv().await {
            match message {
                Message::Payload(payload) => {
                    progress.payload(name, stream);
                    pending_bytes += payload.body.len();
                    pending.push(payload);
                }
                // Each commit to a Delta table costs a new version, so
                // checkpoints are committed in batches: the cursor is saved
                // only with the data it covers.
                Message::Checkpoint(cursor) => {
                    if pending.len() < FLUSH_PAYLOADS && pending_bytes < FLUSH_BYTES {
                        if let Some(cursor) = cursor {
                            pending_cursor = Some(cursor);
                        }
                        continue;
                    }
                    let flushed = std::mem::take(&mut pending);
                    pending_bytes = 0;
                    let outcome =
                        flush(warehouse, source, stream, &flushed, identities, run_id).await?;
                    if let Some(cursor) = cursor.or_else(|| pending_cursor.take()) {
                        state.set_cursor(name, stream, &cursor).await?;
                    }
                    pending_cursor = None;
                    warnings.push(outcome);
                }
                Message::Warning(text) => {
                    warnings.push(Flushed {
                        warning: Some(text),
                        ..Flushed::default()
                    });
                }
            }
        }
        Ok::<_, Error>((pending, warnings))
    };
    let (fetched, consumed) = tokio::join!(fetch, consume);
    let (pending, outcomes) = consumed?;
    let mut outcomes = outcomes;
    // Whatever arrived is kept even when the fetch failed part-way, with
    // the last checkpoint it reached; only a complete fetch stores the
    // final cursor.
    let last = flush(warehouse, source, stream, &pending, identities, run_id).await?;
    outcomes.push(last);
    match fetched {
        Ok(final_cursor) => {
            if let Some(cursor) = final_cursor.or(pending_cursor) {
                state.set_cursor(name, stream, &cursor).await?;
            }
        }
        Err(e) => {
            if let Some(cursor) = pending_cursor {
                state.set_cursor(name, stream, &cursor).await?;
            }
            report.upstream_down = matches!(&e, SourceError::Http(http) if http.is_upstream_down());
            report.error = Some(e.to_string());
        }
    }
    for outcome in outcomes {
        report.payloads += outcome.payloads;
        report.quarantined += outcome.quarantined;
        for (table, n) in outcome.rows {
            *report.rows.entry(table).or_default() += n;
        }
        for (table, n) in outcome.changed {
            *report.rows_changed.entry(table).or_default() += n;
        }
        for (table, n) in outcome.unmapped {
            *report.unmapped.entry(table).or_default() += n;
        }
        report.warnings.extend(outcome.warning);
    }
    Ok(report)
}

/// What the fetch of `source` needs from the warehouse.
async fn fetch_context(
    warehouse: &Warehouse,
    source: &SourceConfig,
    stream: &str,
    options: &IngestOptions,
) -> std::result::Result<FetchContext, String> {
    let mut ctx = FetchContext {
        since: options.since,
        full: options.full,
        ..FetchContext::default()
    };
    let SourceConfig::Github(config) = source else {
        return Ok(ctx);
    };
    let session = read_only_session(warehouse, QueryLimits::default())
        .await
        .map_err(|e| e.to_string())?;
    let (_, batches) = query(
        &session,
        "SELECT full_name, default_branch FROM repositories WHERE provider = 'github' AND (archived IS NULL OR NOT archived) ORDER BY full_name",
    )
    .await
    .map_err(|e| e.to_string())?;
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let full_name = text(batch, 0, row);
            if let Some(full_name) = full_name
                && config.covers(&full_name)
            {
                ctx.repositories.push((full_name, text(batch, 1, row)));
            }
        }
    }
    // Only change sets need the production deployments (a scan of the
    // whole table).
    if stream != "changes" {
        return Ok(ctx);
    }
    let production = regex::Regex::new(&config.production_pattern())
        .map_err(|e| format!("`production_environments` is not a valid regular expression: {e}"))?;
    let (_, batches) = query(
        &session,
        "SELECT deployment_id, coalesce(entity_ref, service_name, repository_id) AS series, environment, \
         repository_id, revision, CAST(finished_at AS VARCHAR) AS finished \
         FROM deployments WHERE status = 'success' AND finished_at IS NOT NULL AND revision IS NOT NULL \
         AND repository_id LIKE 'github:%' ORDER BY finished_at, deployment_id",
    )
    .await
    .map_err(|e| e.to_string())?;
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let (
                Some(id),
                Some(series),
                Some(environment),
                Some(repository),
                Some(revision),
                Some(finished),
            ) = (
                text(batch, 0, row),
                text(batch, 1, row),
                text(batch, 2, row),
                text(batch, 3, row),
                text(batch, 4, row),
                text(batch, 5, row),
            )
            else {
                continue;
            };
            if !production.is_match(&environment) {
                continue;
            }
            let repository = repository.trim_start_matches("github:").to_owned();
            if !config.covers(&repository) {
                continue;
            }
            let finished_at =
                parse_instant(&finished).ok_or_else(|| format!("bad finished_at {finished:?}"))?;
            ctx.production_deployments.push(ProductionDeployment {
                deployment_id: id,
                series: format!("{series}|{environment}"),
                repository,
                revision,
                finished_at,
            });
        }
    }
    Ok(ctx)
}
