//! Sources delivered as files into an object store rather than served by an
//! API: cloud cost reports (AWS CUR 2.0, FOCUS exports) and portal usage
//! events. A file source lists its location, reads what is new or changed
//! since its cursor (a fingerprint per file or billing period), decodes it
//! and writes it; the cursor moves only after the write committed.
//!
//! The delivered files are their own raw layer: they stay where the
//! provider put them, so nothing is copied into `raw_*` tables, and a
//! re-read (`--full`) decodes them again with no other upstream.

pub mod cost_report;
pub mod events;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use fathom_warehouse::{StorageOptions, WarehouseLocation};

use crate::source::SourceError;

/// Where a file source reads from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileLocation {
    /// Name of the source in runs, cursors and `--source`. Default: its type.
    #[serde(default)]
    pub name: Option<String>,
    /// Directory or object-store URL the files are delivered to
    /// (`s3://bucket/prefix`, `file:///…` or a path).
    pub location: String,
    /// Object-store settings (as for the warehouse, e.g.
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`); the `AWS_*` environment applies
    /// too.
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
}

/// A listed file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    pub path: Path,
    pub size: u64,
    /// What changes when the file is rewritten: ETag when the store has
    /// one, else size and modification time.
    pub version: String,
}

impl FileLocation {
    pub(crate) fn open(&self, source: &str) -> Result<(Arc<dyn ObjectStore>, Path), SourceError> {
        let config_error = |message: String| SourceError::Config {
            source_name: source.to_owned(),
            message,
        };
        let location = WarehouseLocation::parse(&self.location)
            .map_err(|e| config_error(format!("location: {e}")))?;
        location
            .object_store(&StorageOptions(self.storage.clone()))
            .map_err(|e| config_error(format!("location: {e}")))
    }
}

/// The store of `location` and every file in it, sorted by path.
pub(crate) async fn open_and_list(
    location: &FileLocation,
    source: &str,
) -> Result<(Arc<dyn ObjectStore>, Vec<Listed>), SourceError> {
    let (store, prefix) = location.open(source)?;
    let listed = list(&*store, &prefix, source).await?;
    Ok((store, listed))
}

/// Every file under `prefix`, sorted by path.
pub(crate) async fn list(
    store: &dyn ObjectStore,
    prefix: &Path,
    source: &str,
) -> Result<Vec<Listed>, SourceError> {
    let mut files: Vec<Listed> = store
        .list(Some(prefix))
        .map_ok(|meta| Listed {
            version: meta.e_tag.clone().unwrap_or_else(|| {
                format!("{}@{}", meta.size, meta.last_modified.timestamp_micros())
            }),
            size: meta.size,
            path: meta.location,
        })
        .try_collect()
        .await
        .map_err(|e| store_error(source, prefix, &e))?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// A file's bytes.
pub(crate) async fn read(
    store: &dyn ObjectStore,
    path: &Path,
    source: &str,
) -> Result<Bytes, SourceError> {
    let got = store
        .get(path)
        .await
        .map_err(|e| store_error(source, path, &e))?;
    got.bytes().await.map_err(|e| store_error(source, path, &e))
}

fn store_error(source: &str, path: &Path, error: &object_store::Error) -> SourceError {
    SourceError::Refused {
        source_name: source.to_owned(),
        message: format!("reading `{path}`: {error}"),
    }
}

/// A number that may arrive as JSON number or as text (CSV exports).
pub(crate) fn number(row: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => spreadsheet_number(s)
            .map(Some)
            .ok_or_else(|| format!("`{key}` is not a number: `{s}`")),
        Some(other) => Err(format!("`{key}` is not a number: {other}")),
    }
}

/// A number as text, including the way spreadsheet-made exports write
/// amounts (`$1,000.00 `): a leading currency sign and thousands
/// separators are accepted; a comma that could be a decimal separator is
/// not guessed at.
fn spreadsheet_number(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<f64>() {
        return Some(n);
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, text),
    };
    let rest = rest.trim_start_matches(['$', '€', '£']).trim();
    let mut groups = rest.split('.').next().unwrap_or_default().split(',');
    let first = groups.next().unwrap_or_default();
    let grouped = !first.is_empty()
        && first.len() <= 3
        && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()));
    if rest.contains(',') && !grouped {
        return None;
    }
    let n = rest.replace(',', "").parse::<f64>().ok()?;
    Some(if negative { -n } else { n })
}

/// Text, empty as none.
pub(crate) fn text<'a>(row: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    row.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// An instant as exports write it: RFC 3339, or naive (UTC) with `T` or a
/// space, or a bare date (ISO, or US month/day/year).
pub(crate) fn instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%MZ",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), format) {
            return Some(t.and_utc());
        }
    }
    for format in ["%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%y %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    // ISO dates, and the US-style dates spreadsheet-made exports carry
    // (the FOCUS sample data has `4/1/25`).
    ["%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y"]
        .iter()
        .find_map(|format| NaiveDate::parse_from_str(text, format).ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Arrow batches as JSON objects, one per row (maps become objects,
/// timestamps text, nulls absent).
pub(crate) fn batch_rows(
    batches: &[arrow::array::RecordBatch],
) -> Result<Vec<Map<String, Value>>, String> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&arrow::array::RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .map_err(|e| format!("cannot convert rows: {e}"))?;
    writer
        .finish()
        .map_err(|e| format!("cannot convert rows: {e}"))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("cannot convert rows: {e}"))
}

/// The rows of a Parquet file.
pub(crate) fn parquet_rows(bytes: Bytes) -> Result<Vec<Map<String, Value>>, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?
        .build()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("Parquet data cannot be read: {e}"))?;
    batch_rows(&batches)
}

/// The rows of a CSV file with a header, every value as text (empty and
/// `null` as null).
pub fn csv_rows(bytes: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("CSV header cannot be read: {e}"))?
        .clone();
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("CSV line {}: {e}", n + 2))?;
        rows.push(
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| {
                    // Exports write a missing value as nothing or as `null`.
                    let value = if v.is_empty() || v.eq_ignore_ascii_case("null") {
                        Value::Null
                    } else {
                        Value::from(v)
                    };
                    (h.trim_start_matches('\u{feff}').to_owned(), value)
                })
                .collect(),
        );
    }
    Ok(rows)
}

/// What a file source's run needs from the runner.
pub(crate) struct FileRun<'a> {
    pub warehouse: &'a fathom_warehouse::Warehouse,
    pub state: &'a fathom_warehouse::state::StateDb,
    pub name: &'a str,
    /// The source's one stream; its name keys the cursor.
    pub stream: &'static str,
    pub run_id: &'a str,
    pub full: bool,
    pub identities: &'a crate::identity::IdentityMap,
    pub progress: &'a Arc<dyn crate::runner::IngestProgress>,
}

impl FileRun<'_> {
    pub(crate) fn report(&self, stream: &str) -> crate::runner::StreamReport {
        crate::runner::StreamReport {
            source: self.name.to_owned(),
            stream: stream.to_owned(),
            ..crate::runner::StreamReport::default()
        }
    }

    /// The stream report of a location that cannot be read: the source is
    /// degraded, the run goes on.
    pub(crate) fn failed(
        &self,
        mut report: crate::runner::StreamReport,
        error: SourceError,
    ) -> crate::runner::StreamReport {
        report.error = Some(error.to_string());
        report.upstream_down = true;
        report
    }

    /// The stored cursor (empty with `--full` or none yet).
    pub(crate) async fn cursor<T: serde::de::DeserializeOwned + Default>(
        &self,
    ) -> crate::Result<T> {
        if self.full {
            return Ok(T::default());
        }
        let stored = self.state.cursor(self.name, self.stream_name()).await?;
        Ok(stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    pub(crate) async fn save_cursor<T: Serialize>(&self, cursor: &T) -> crate::Result<()> {
        let text = serde_json::to_string(cursor).map_err(|e| crate::Error::Task(e.to_string()))?;
        self.state
            .set_cursor(self.name, self.stream_name(), &text)
            .await?;
        Ok(())
    }

    fn stream_name(&self) -> &'static str {
        self.stream
    }

    pub(crate) async fn write(
        &self,
        stream: &str,
        decoded: crate::source::Decoded,
        replace: Option<crate::runner::Replace<'_>>,
    ) -> crate::Result<crate::runner::Written> {
        crate::runner::write_decoded(
            self.warehouse,
            self.name,
            stream,
            decoded,
            self.identities,
            self.run_id,
            replace,
        )
        .await
    }
}

pub(crate) fn add_written(
    report: &mut crate::runner::StreamReport,
    written: crate::runner::Written,
) {
    for (table, n) in written.rows {
        *report.rows.entry(table).or_default() += n;
    }
    for (table, n) in written.changed {
        *report.rows_changed.entry(table).or_default() += n;
    }
    for (table, n) in written.unmapped {
        *report.unmapped.entry(table).or_default() += n;
    }
    report.quarantined += written.quarantined;
}
