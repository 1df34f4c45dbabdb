//! The ingest runner: for each source and stream, read the cursor, fetch,
//! keep every payload in the raw layer, decode, map identities, merge into
//! the core tables, and **only then** advance the cursor. A crash between
//! any two steps replays the unfinished work; merges make the replay
//! harmless.
//!
//! A source whose upstream is down (circuit open, credentials refused,
//! rate limit exhausted) is reported degraded and skipped for the rest of
//! the run; the other sources carry on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Utc};
use fathom_models::TableDef;
use fathom_models::tables::{CATALOG_ENTITIES, QUARANTINE};
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query, read_only_session};
use fathom_warehouse::state::StateDb;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::identity::IdentityMap;
use crate::import::{Rejection, json_rows_to_batch, quarantine_batch};
use crate::source::{
    Collector, Decoded, FetchContext, Message, Payload, ProductionDeployment, SourceConfig,
    SourceError,
};
use crate::{Error, Result};

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

/// What one stream did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamReport {
    /// Source name.
    pub source: String,
    /// Stream.
    pub stream: String,
    /// Payloads received.
    pub payloads: usize,
    /// Rows decoded, per table.
    pub rows: BTreeMap<String, usize>,
    /// Rows inserted or changed in the warehouse, per table.
    pub rows_changed: BTreeMap<String, usize>,
    /// Rows whose entity could not be found, per table.
    pub unmapped: BTreeMap<String, usize>,
    /// Records sent to quarantine.
    pub quarantined: usize,
    /// Things the user should know (e.g. history lost upstream).
    pub warnings: Vec<String>,
    /// Why the stream stopped early, if it did.
    pub error: Option<String>,
    /// Whether it stopped because the upstream is unusable (circuit open,
    /// credentials refused, rate limit exhausted, retries exhausted).
    pub upstream_down: bool,
}

/// What one source did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceReport {
    /// Source name.
    pub name: String,
    /// Source type.
    pub kind: String,
    /// Its streams.
    pub streams: Vec<StreamReport>,
    /// HTTP requests sent (including retries).
    pub api_calls: u64,
    /// Retries among them.
    pub retries: u64,
    /// Conditional requests answered "not modified".
    pub not_modified: u64,
    /// Time spent waiting for rate limits, seconds.
    pub rate_limit_wait_seconds: f64,
    /// Whether the upstream was unusable and streams were skipped.
    pub degraded: bool,
    /// Why, when it was.
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// One per source run.
    pub sources: Vec<SourceReport>,
}

impl IngestReport {
    /// Counts for the run ledger.
    pub fn counts(&self) -> BTreeMap<String, i64> {
        let mut counts = BTreeMap::new();
        for source in &self.sources {
            let prefix = &source.name;
            counts.insert(format!("{prefix}.api_calls"), source.api_calls as i64);
            counts.insert(format!("{prefix}.retries"), source.retries as i64);
            counts.insert(format!("{prefix}.not_modified"), source.not_modified as i64);
            for stream in &source.streams {
                let p = format!("{prefix}.{}", stream.stream);
                counts.insert(format!("{p}.payloads"), stream.payloads as i64);
                for (table, n) in &stream.rows {
                    *counts.entry(format!("{p}.{table}.rows")).or_default() += *n as i64;
                }
                for (table, n) in &stream.rows_changed {
                    *counts.entry(format!("{p}.{table}.changed")).or_default() += *n as i64;
                }
                for (table, n) in &stream.unmapped {
                    *counts.entry(format!("{p}.{table}.unmapped")).or_default() += *n as i64;
                }
                counts.insert(format!("{p}.quarantined"), stream.quarantined as i64);
            }
        }
        counts
    }

    /// Every error and warning, for the run ledger.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for source in &self.sources {
            if let Some(error) = &source.error {
                errors.push(format!("{}: {error}", source.name));
            }
            for stream in &source.streams {
                if let Some(error) = &stream.error {
                    errors.push(format!("{}.{}: {error}", source.name, stream.stream));
                }
                for warning in &stream.warnings {
                    errors.push(format!(
                        "{}.{}: warning: {warning}",
                        source.name, stream.stream
                    ));
                }
            }
        }
        errors
    }

    /// Records quarantined in the run.
    pub fn quarantined(&self) -> usize {
        self.sources
            .iter()
            .flat_map(|s| &s.streams)
            .map(|s| s.quarantined)
            .sum()
    }

    /// Whether anything failed or a source was degraded.
    pub fn has_failures(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.degraded || s.error.is_some() || s.streams.iter().any(|t| t.error.is_some()))
    }
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

fn text(batch: &RecordBatch, column: usize, row: usize) -> Option<String> {
    use arrow::array::Array;
    let array =
        arrow::compute::cast(batch.column(column), &arrow::datatypes::DataType::Utf8).ok()?;
    let strings = array.as_any().downcast_ref::<StringArray>()?;
    (!strings.is_null(row)).then(|| strings.value(row).to_owned())
}

/// What one flush did.
#[derive(Debug, Default)]
struct Flushed {
    payloads: usize,
    rows: BTreeMap<String, usize>,
    changed: BTreeMap<String, usize>,
    unmapped: BTreeMap<String, usize>,
    quarantined: usize,
    warning: Option<String>,
}

/// Keeps `payloads` in the raw layer, decodes them unit by unit, maps
/// identities and merges the rows; bad records go to quarantine.
async fn flush(
    warehouse: &Warehouse,
    source: &SourceConfig,
    stream: &str,
    payloads: &[Payload],
    identities: &IdentityMap,
    run_id: &str,
) -> Result<Flushed> {
    let mut flushed = Flushed {
        payloads: payloads.len(),
        ..Flushed::default()
    };
    if payloads.is_empty() {
        return Ok(flushed);
    }
    if let Some(raw) = source.raw_table() {
        warehouse
            .insert_missing(raw, &[raw_batch(source.name(), payloads, run_id)?])
            .await?;
    }
    let decoded = decode_units(source, stream, payloads);
    let written = write_decoded(
        warehouse,
        source.name(),
        stream,
        decoded,
        identities,
        run_id,
        None,
    )
    .await?;
    flushed.rows = written.rows;
    flushed.changed = written.changed;
    flushed.unmapped = written.unmapped;
    flushed.quarantined = written.quarantined;
    Ok(flushed)
}

/// Decodes payloads grouped by unit, units in order of first arrival.
pub(crate) fn decode_units(source: &SourceConfig, stream: &str, payloads: &[Payload]) -> Decoded {
    let mut order: Vec<&str> = Vec::new();
    let mut units: HashMap<&str, Vec<Payload>> = HashMap::new();
    for payload in payloads {
        if !units.contains_key(payload.unit.as_str()) {
            order.push(&payload.unit);
        }
        units
            .entry(&payload.unit)
            .or_default()
            .push(payload.clone());
    }
    let mut decoded = Decoded::default();
    for unit in order {
        if let Some(unit_payloads) = units.get(unit) {
            let part = source.decode(stream, unit_payloads);
            decoded.rows.extend(part.rows);
            decoded.rejects.extend(part.rejects);
        }
    }
    decoded
}

/// A table and the rows decoded for it.
type TableRows = (
    &'static TableDef,
    Vec<serde_json::Map<String, serde_json::Value>>,
);

/// Counts of a write.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub rows: BTreeMap<String, usize>,
    pub changed: BTreeMap<String, usize>,
    pub unmapped: BTreeMap<String, usize>,
    pub quarantined: usize,
}

/// Maps identities, coerces rows to their tables, merges them and
/// quarantines what does not fit.
pub(crate) async fn write_decoded(
    warehouse: &Warehouse,
    source_name: &str,
    stream: &str,
    decoded: Decoded,
    identities: &IdentityMap,
    run_id: &str,
    replace: Option<&[String]>,
) -> Result<Written> {
    let mut written = Written::default();
    let mut by_table: BTreeMap<&'static str, TableRows> = BTreeMap::new();
    for mut row in decoded.rows {
        let has_entity = row.table.column("entity_ref").is_some();
        if has_entity
            && row
                .values
                .get("entity_ref")
                .is_none_or(serde_json::Value::is_null)
        {
            match identities.resolve(&row.identity) {
                Some(entity) => {
                    row.values
                        .insert("entity_ref".into(), serde_json::Value::from(entity));
                }
                None => {
                    *written
                        .unmapped
                        .entry(row.table.name.to_owned())
                        .or_default() += 1
                }
            }
        }
        by_table
            .entry(row.table.name)
            .or_insert_with(|| (row.table, Vec::new()))
            .1
            .push(row.values);
    }
    let mut rejections: Vec<Rejection> = decoded
        .rejects
        .into_iter()
        .map(|r| Rejection {
            location: r.location,
            line_number: r.position.unwrap_or(0),
            column: None,
            reason: r.reason,
            raw_record: r.raw,
        })
        .collect();
    for (name, (table, rows)) in by_table {
        let refs: Vec<&serde_json::Map<String, serde_json::Value>> = rows.iter().collect();
        let (batch, rejected) =
            json_rows_to_batch(table, &refs, &format!("{source_name}.{stream}"))
                .map_err(Error::Task)?;
        rejections.extend(rejected);
        let Some(batch) = batch else { continue };
        written.rows.insert(name.to_owned(), batch.num_rows());
        let changed = match replace {
            Some(partitions) => {
                let stats = warehouse
                    .replace_partitions(table, partitions, &[batch])
                    .await?;
                stats.rows_written
            }
            None => {
                let stats = warehouse.merge(table, &[batch]).await?;
                stats.rows_inserted + stats.rows_updated
            }
        };
        written.changed.insert(name.to_owned(), changed);
    }
    if !rejections.is_empty() {
        written.quarantined = rejections.len();
        let batch = quarantine_batch(source_name, stream, run_id, &rejections)?;
        warehouse.merge(&QUARANTINE, &[batch]).await?;
    }
    Ok(written)
}

/// Raw-layer rows for `payloads`.
pub(crate) fn raw_batch(
    source_name: &str,
    payloads: &[Payload],
    run_id: &str,
) -> Result<RecordBatch> {
    let ids: StringArray = payloads
        .iter()
        .map(|p| {
            let mut hasher = Sha256::new();
            for part in [source_name, &p.stream, &p.unit, &p.request, &p.body] {
                hasher.update(part.as_bytes());
                hasher.update([0u8]);
            }
            Some(hex::encode(&hasher.finalize()[..16]))
        })
        .collect();
    let n = payloads.len();
    let strings = |f: &dyn Fn(&Payload) -> &str| -> ArrayRef {
        Arc::new(payloads.iter().map(|p| Some(f(p))).collect::<StringArray>())
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("payload_id", Arc::new(ids)),
        ("source", Arc::new(StringArray::from(vec![source_name; n]))),
        ("stream", strings(&|p| &p.stream)),
        ("unit", strings(&|p| &p.unit)),
        ("request", strings(&|p| &p.request)),
        (
            "fetched_at",
            Arc::new(
                payloads
                    .iter()
                    .map(|p| Some(p.fetched_at.timestamp_micros()))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
        ),
        ("run_id", Arc::new(StringArray::from(vec![run_id; n]))),
        (
            "status",
            Arc::new(
                payloads
                    .iter()
                    .map(|p| Some(i64::from(p.status)))
                    .collect::<Int64Array>(),
            ),
        ),
        ("body", strings(&|p| &p.body)),
    ];
    Ok(RecordBatch::try_from_iter(columns).map_err(fathom_warehouse::Error::from)?)
}

impl From<SourceError> for Error {
    fn from(error: SourceError) -> Self {
        Self::Task(error.to_string())
    }
}

/// Re-decodes what the raw layer holds for `sources` (or the one named in
/// `options`) and merges it again — after a decoder or identity-mapping
/// change — without calling any upstream. Payloads are decoded in the
/// order they were fetched, so the newest answer wins as it did live.
pub async fn reprocess(
    warehouse: &Warehouse,
    state: &StateDb,
    sources: &[SourceConfig],
    options: &IngestOptions,
    run_id: &str,
    progress: Arc<dyn IngestProgress>,
) -> Result<IngestReport> {
    let selected = select(sources, options)?;
    let session = read_only_session(warehouse, QueryLimits::default())
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
    let mut reports = Vec::new();
    for source in selected {
        let mut report = SourceReport {
            name: source.name().to_owned(),
            kind: source.kind().to_owned(),
            ..SourceReport::default()
        };
        let mut identities = IdentityMap::load(warehouse)
            .await
            .map_err(Error::Identity)?;
        let Some(raw_table) = source.raw_table() else {
            // The delivered files are the raw layer: read them all again.
            report.streams = run_files(
                warehouse,
                state,
                source,
                true,
                run_id,
                &identities,
                &progress,
            )
            .await?;
            reports.push(report);
            continue;
        };
        for stream in source.streams() {
            progress.stream_started(source.name(), stream);
            let sql = format!(
                "SELECT stream, unit, request, status, CAST(fetched_at AS VARCHAR) AS fetched, body FROM {} \
                 WHERE source = '{}' AND stream = '{}' ORDER BY fetched_at, payload_id",
                raw_table.name,
                source.name().replace('\'', "''"),
                stream.replace('\'', "''"),
            );
            let (_, batches) = query(&session, &sql)
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
            let mut payloads = Vec::new();
            for batch in &batches {
                for row in 0..batch.num_rows() {
                    let fetched_at = text(batch, 4, row)
                        .and_then(|t| parse_instant(&t))
                        .unwrap_or_default();
                    payloads.push(Payload {
                        stream: text(batch, 0, row).unwrap_or_default(),
                        unit: text(batch, 1, row).unwrap_or_default(),
                        request: text(batch, 2, row).unwrap_or_default(),
                        status: text(batch, 3, row)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(200),
                        fetched_at,
                        body: text(batch, 5, row).unwrap_or_default(),
                    });
                    progress.payload(source.name(), stream);
                }
            }
            let mut stream_report = StreamReport {
                source: source.name().to_owned(),
                stream: (*stream).to_owned(),
                payloads: payloads.len(),
                ..StreamReport::default()
            };
            if !payloads.is_empty() {
                let decoded = decode_units(source, stream, &payloads);
                let written = write_decoded(
                    warehouse,
                    source.name(),
                    stream,
                    decoded,
                    &identities,
                    run_id,
                    None,
                )
                .await?;
                if written
                    .changed
                    .get(CATALOG_ENTITIES.name)
                    .is_some_and(|n| *n > 0)
                {
                    identities = IdentityMap::load(warehouse)
                        .await
                        .map_err(Error::Identity)?;
                }
                stream_report.rows = written.rows;
                stream_report.rows_changed = written.changed;
                stream_report.unmapped = written.unmapped;
                stream_report.quarantined = written.quarantined;
            }
            progress.stream_finished(&stream_report);
            report.streams.push(stream_report);
        }
        reports.push(report);
    }
    Ok(IngestReport { sources: reports })
}
