//! Bulk import of files into a core table.
//!
//! Each file is read into text columns (or typed columns for Parquet),
//! coerced to the table's schema column by column, and split into good rows
//! and rejections. All good rows of all files are then merged in **one**
//! commit — a load is all or nothing, and re-running it changes nothing —
//! after the rejections are merged into `quarantine` keyed by a hash of the
//! record, so re-importing the same bad file adds no second copy (and a
//! kill between the two commits loses nothing a re-run does not restore).

pub mod attribute;
mod coerce;
mod read;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use fathom_models::TableDef;
use fathom_models::tables::QUARANTINE;
use fathom_warehouse::{MergeStats, Warehouse};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

pub use coerce::Rejection;
pub use read::shown_names;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line (a JSON array of objects is accepted too).
    NdJson,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The format a file name implies, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" | "jsonl" | "json" => Some(Self::NdJson),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::NdJson => "ndjson",
            Self::Parquet => "parquet",
        }
    }
}

/// Receives progress of an import (the CLI draws bars from it).
pub trait ImportProgress: Send + Sync {
    /// A file is about to be read.
    fn file_started(&self, path: &Path, total_bytes: u64);
    /// More of the current file was read.
    fn advanced(&self, bytes_read: u64, rows_read: u64);
    /// The current file is done.
    fn file_finished(&self, report: &FileReport);
    /// Rows are being committed to the warehouse.
    fn writing(&self, table: &str, rows: usize);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ImportProgress for NoProgress {
    fn file_started(&self, _: &Path, _: u64) {}
    fn advanced(&self, _: u64, _: u64) {}
    fn file_finished(&self, _: &FileReport) {}
    fn writing(&self, _: &str, _: usize) {}
}

/// What happened to one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its format, when it could be determined.
    pub format: Option<&'static str>,
    /// Records read (good and bad).
    pub rows_read: u64,
    /// Records that passed validation.
    pub rows_accepted: u64,
    /// Records sent to quarantine.
    pub rows_rejected: u64,
    /// Input columns the table does not have (ignored).
    pub ignored_columns: Vec<String>,
    /// Why the file could not be read at all, if it could not.
    pub error: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Target table.
    pub table: String,
    /// One entry per file, in the order given.
    pub files: Vec<FileReport>,
    /// The merge into the target table.
    pub merge: MergeStats,
    /// Rejections written to quarantine (new or already there).
    pub quarantined: usize,
    /// Rows that named no component: attributed from the catalog, or not.
    pub attribution: attribute::Attribution,
}

impl ImportReport {
    /// Rows now in the table from this load (inserted, updated or already
    /// identical).
    pub fn rows_loaded(&self) -> usize {
        self.merge.rows_inserted + self.merge.rows_updated + self.merge.rows_unchanged
    }

    /// Records rejected across all files.
    pub fn rows_rejected(&self) -> u64 {
        self.files.iter().map(|f| f.rows_rejected).sum()
    }

    /// Files that could not be read at all.
    pub fn failed_files(&self) -> usize {
        self.files.iter().filter(|f| f.error.is_some()).count()
    }
}

/// Imports `paths` into `table`: reads, validates, merges the good rows in
/// one commit and quarantines the rest. Files that cannot be read are
/// reported, not fatal; an error is returned only when storage fails.
pub async fn import_files(
    warehouse: &Warehouse,
    table: &'static TableDef,
    paths: &[PathBuf],
    format_override: Option<FileFormat>,
    run_id: &str,
    progress: Arc<dyn ImportProgress>,
) -> Result<ImportReport> {
    let mut report = ImportReport {
        table: table.name.to_owned(),
        ..ImportReport::default()
    };
    let mut accepted: Vec<RecordBatch> = Vec::new();
    let mut rejections: Vec<Rejection> = Vec::new();
    for path in paths {
        let path = path.clone();
        let task_progress = progress.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            read_and_coerce(table, &path, format_override, task_progress.as_ref())
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        progress.file_finished(&outcome.report);
        accepted.extend(outcome.batches);
        rejections.extend(outcome.rejections);
        report.files.push(outcome.report);
    }
    // Rejections are committed first: a process killed between the two
    // commits leaves the rejected rows recorded and the load undone, and
    // the next run of the same import completes it (both merges are
    // idempotent). The other order would lose the rejected rows.
    if !rejections.is_empty() {
        progress.writing(QUARANTINE.name, rejections.len());
        let batch = quarantine_batch("import", table.name, run_id, &rejections)?;
        warehouse.merge(&QUARANTINE, &[batch]).await?;
        report.quarantined = rejections.len();
    }
    if attribute::attributable(table)
        && accepted.iter().any(|b| {
            b.column_by_name("entity_ref")
                .is_some_and(|c| c.null_count() > 0)
        })
    {
        let map = crate::identity::IdentityMap::load(warehouse)
            .await
            .map_err(Error::Task)?;
        for batch in &mut accepted {
            let (attributed, counts) =
                attribute::attribute(table, batch, &map).map_err(Error::Task)?;
            *batch = attributed;
            report.attribution.derived += counts.derived;
            report.attribution.unattributed += counts.unattributed;
        }
    }
    let rows: usize = accepted.iter().map(RecordBatch::num_rows).sum();
    progress.writing(table.name, rows);
    report.merge = warehouse.merge(table, &accepted).await?;
    Ok(report)
}

/// Rows a decoder built (one JSON object per row, keyed by column name)
/// as a batch of `table`, coerced exactly like imported files: values that
/// do not fit their column become rejections naming the row (1-based
/// position in `rows`), the column and the reason.
pub fn json_rows_to_batch(
    table: &TableDef,
    rows: &[&serde_json::Map<String, serde_json::Value>],
    location: &str,
) -> std::result::Result<(Option<RecordBatch>, Vec<Rejection>), String> {
    let chunk = read::chunk_from_json_rows(table, rows);
    let coerced = coerce::coerce_chunk(table, chunk, location)?;
    Ok((coerced.batch, coerced.rejections))
}

struct FileOutcome {
    report: FileReport,
    batches: Vec<RecordBatch>,
    rejections: Vec<Rejection>,
}

fn read_and_coerce(
    table: &TableDef,
    path: &Path,
    format_override: Option<FileFormat>,
    progress: &dyn ImportProgress,
) -> FileOutcome {
    let mut report = FileReport {
        path: path.to_path_buf(),
        ..FileReport::default()
    };
    let mut outcome = FileOutcome {
        report: FileReport::default(),
        batches: Vec::new(),
        rejections: Vec::new(),
    };
    let Some(format) = format_override.or_else(|| FileFormat::from_path(path)) else {
        report.error = Some(format!(
            "cannot tell the format of `{}` from its extension; use .csv, .ndjson/.jsonl/.json or .parquet, or pass --format",
            path.display()
        ));
        outcome.report = report;
        return outcome;
    };
    report.format = Some(format.name());
    let mut ignored = BTreeSet::new();
    let mut lines: Vec<i64> = Vec::new();
    let location = path.display().to_string();
    let result = read::read_file(table, path, format, progress, &mut |chunk| {
        report.rows_read += chunk.n_rows() as u64;
        ignored.extend(chunk.ignored_columns.iter().cloned());
        let coerced = coerce::coerce_chunk(table, chunk, &location)?;
        outcome.rejections.extend(coerced.rejections);
        if let Some(batch) = coerced.batch {
            outcome.batches.push(batch);
            lines.extend(coerced.lines);
        }
        Ok(())
    });
    if let Err(message) = result {
        report.error = Some(message);
    }
    // Within one file a repeated key is ambiguous input: the last
    // occurrence wins and the earlier ones are quarantined, so the user sees
    // what was overridden.
    match coerce::split_duplicates(table, &mut outcome.batches, &lines, &location) {
        Ok(duplicates) => outcome.rejections.extend(duplicates),
        Err(message) => report.error = Some(message),
    }
    report.rows_rejected = outcome.rejections.len() as u64;
    report.rows_accepted = outcome.batches.iter().map(|b| b.num_rows() as u64).sum();
    report.ignored_columns = ignored.into_iter().collect();
    outcome.report = report;
    outcome
}

/// Longest quarantine reason kept, bytes: a reason quotes the bad value,
/// and a 9 MiB value must not be copied into every viewer's Data health
/// page (the whole record stays in `raw_record`, once).
pub const MAX_REASON_BYTES: usize = 500;

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary, saying
/// how much was left out.
pub fn bounded_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_owned();
    }
    let cut = reason.floor_char_boundary(MAX_REASON_BYTES);
    format!(
        "{}… ({} more bytes; the whole record is in raw_record)",
        &reason[..cut],
        reason.len() - cut
    )
}

/// Quarantine rows for `rejections` of `source`/`stream`, keyed by a hash of
/// the record so re-reading the same bad record adds no second row.
pub fn quarantine_batch(
    source: &str,
    stream: &str,
    run_id: &str,
    rejections: &[Rejection],
) -> Result<RecordBatch> {
    let now = chrono::Utc::now().timestamp_micros();
    let ids: StringArray = rejections
        .iter()
        .map(|r| {
            let mut hasher = Sha256::new();
            for part in [
                source,
                stream,
                &r.location,
                &r.line_number.to_string(),
                &r.reason,
                &r.raw_record,
            ] {
                hasher.update(part.as_bytes());
                hasher.update([0u8]);
            }
            Some(hex::encode(&hasher.finalize()[..16]))
        })
        .collect();
    let n = rejections.len();
    let reasons: StringArray = rejections
        .iter()
        .map(|r| Some(bounded_reason(&r.reason)))
        .collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("quarantine_id", Arc::new(ids)),
        ("source", Arc::new(StringArray::from(vec![source; n]))),
        ("stream", Arc::new(StringArray::from(vec![stream; n]))),
        (
            "location",
            Arc::new(
                rejections
                    .iter()
                    .map(|r| Some(r.location.as_str()))
                    .collect::<StringArray>(),
            ),
        ),
        (
            "line_number",
            Arc::new(
                rejections
                    .iter()
                    .map(|r| Some(r.line_number))
                    .collect::<Int64Array>(),
            ),
        ),
        (
            "column_name",
            Arc::new(
                rejections
                    .iter()
                    .map(|r| r.column.as_deref())
                    .collect::<StringArray>(),
            ),
        ),
        ("reason", Arc::new(reasons)),
        (
            "raw_record",
            Arc::new(
                rejections
                    .iter()
                    .map(|r| Some(r.raw_record.as_str()))
                    .collect::<StringArray>(),
            ),
        ),
        ("run_id", Arc::new(StringArray::from(vec![run_id; n]))),
        (
            "quarantined_at",
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ),
    ];
    Ok(RecordBatch::try_from_iter(columns).map_err(fathom_warehouse::Error::from)?)
}
