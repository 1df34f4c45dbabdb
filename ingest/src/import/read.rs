//! Reading CSV, NDJSON and Parquet files into chunks of columns named like
//! the table's, without interpreting values (that is `coerce`'s job).
//!
//! Rows that cannot even be split into fields (a CSV line with the wrong
//! number of fields, an NDJSON line that is not a JSON object, bytes that are
//! not UTF-8) become rejections here, with their line number.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use fathom_models::TableDef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::coerce::{Rejection, must_supply};
use super::{FileFormat, ImportProgress};

/// Rows per chunk: big enough for vectorised casts, small enough that a
/// chunk's text stays a few MB.
const CHUNK_ROWS: usize = 65_536;

/// A chunk of input rows, as columns aligned with the table's.
pub(crate) struct RawChunk {
    /// One entry per table column; `None` when the input lacks it. Text
    /// (CSV, NDJSON) or the file's own types (Parquet).
    pub columns: Vec<Option<ArrayRef>>,
    /// Line (or row) number of each row.
    pub lines: Vec<i64>,
    /// Input columns the table does not have.
    pub ignored_columns: Vec<String>,
    /// Rows rejected before any value was read.
    pub malformed: Vec<Rejection>,
}

impl RawChunk {
    pub(crate) fn n_rows(&self) -> usize {
        self.lines.len() + self.malformed.len()
    }
}

type Sink<'a> = dyn FnMut(RawChunk) -> Result<(), String> + 'a;

pub(crate) fn read_file(
    table: &TableDef,
    path: &Path,
    format: FileFormat,
    progress: &dyn ImportProgress,
    sink: &mut Sink<'_>,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let total_bytes = file
        .metadata()
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
        .len();
    progress.file_started(path, total_bytes);
    if total_bytes == 0 {
        return Err(format!(
            "`{}` is empty (0 bytes); a {} file needs {}",
            path.display(),
            format.name(),
            match format {
                FileFormat::Csv => "at least a header line",
                FileFormat::NdJson => "one JSON object per line",
                FileFormat::Parquet => "a Parquet footer",
            }
        ));
    }
    match format {
        FileFormat::Csv => read_csv(table, path, file, progress, sink),
        FileFormat::NdJson => read_ndjson(table, path, file, progress, sink),
        FileFormat::Parquet => read_parquet(table, path, file, progress, sink),
    }
}

/// Maps input column names to table column indices: exact name first, then
/// ignoring case and surrounding spaces.
fn match_columns(
    table: &TableDef,
    names: &[String],
) -> Result<(Vec<Option<usize>>, Vec<String>), String> {
    let mut mapping = Vec::with_capacity(names.len());
    let mut ignored = Vec::new();
    let mut seen: HashMap<usize, &str> = HashMap::new();
    for name in names {
        let clean = name.trim().trim_start_matches('\u{feff}');
        let idx = table
            .columns
            .iter()
            .position(|c| c.name == clean)
            .or_else(|| {
                table
                    .columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(clean))
            });
        if let Some(idx) = idx {
            if let Some(previous) = seen.insert(idx, name) {
                return Err(format!(
                    "columns `{}` and `{}` both map to `{}`; keep one",
                    shown_names(&[previous]),
                    shown_names(&[name]),
                    table.columns[idx].name
                ));
            }
        } else {
            ignored.push(clean.to_owned());
        }
        mapping.push(idx);
    }
    Ok((mapping, ignored))
}

fn require_columns(
    table: &TableDef,
    path: &Path,
    mapping: &[Option<usize>],
    names: &[String],
) -> Result<(), String> {
    let missing: Vec<&str> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(idx, c)| must_supply(table, c.name) && !mapping.contains(&Some(*idx)))
        .map(|(_, c)| c.name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "`{}` has no column {} required by table `{}` (the file has: {}); `fathom schema {}` lists its columns",
        path.display(),
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", "),
        table.name,
        shown_names(names),
        table.name,
    ))
}

/// Column names as a message shows them: at most 20, each with control
/// and non-ASCII bytes escaped and cut to 64 characters, then how many
/// more there are. (A header of a million columns, or of binary bytes,
/// must not become a megabyte of terminal noise.)
pub fn shown_names<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 20;
    const LONGEST: usize = 64;
    let mut shown: Vec<String> = names
        .iter()
        .take(SHOWN)
        .map(|name| {
            let escaped: String = name.as_ref().escape_default().collect();
            if escaped.chars().count() > LONGEST {
                format!("{}…", escaped.chars().take(LONGEST).collect::<String>())
            } else {
                escaped
            }
        })
        .collect();
    if names.len() > SHOWN {
        shown.push(format!("… {} more", names.len() - SHOWN));
    }
    shown.join(", ")
}

/// A chunk of text columns from rows given as JSON objects (strings as
/// they are, other values as their JSON text — which is how maps and lists
/// are parsed by the coercion).
pub(crate) fn chunk_from_json_rows(
    table: &TableDef,
    rows: &[&serde_json::Map<String, serde_json::Value>],
) -> RawChunk {
    let all_present = vec![true; table.columns.len()];
    let mut chunk = TextChunkBuilder::new(table, &all_present, &[]);
    for (i, row) in rows.iter().enumerate() {
        for (builder, column) in chunk.builders.iter_mut().zip(table.columns) {
            if let Some(builder) = builder {
                match row.get(column.name) {
                    None | Some(serde_json::Value::Null) => builder.append_null(),
                    Some(serde_json::Value::String(text)) => builder.append_value(text),
                    Some(other) => builder.append_value(other.to_string()),
                }
            }
        }
        chunk.lines.push(i as i64 + 1);
    }
    chunk.finish()
}

/// Accumulates text columns for one chunk.
struct TextChunkBuilder {
    builders: Vec<Option<StringBuilder>>,
    lines: Vec<i64>,
    malformed: Vec<Rejection>,
    ignored: Vec<String>,
}

impl TextChunkBuilder {
    fn new(table: &TableDef, present: &[bool], ignored: &[String]) -> Self {
        Self {
            builders: table
                .columns
                .iter()
                .zip(present)
                .map(|(_, &p)| p.then(|| StringBuilder::with_capacity(CHUNK_ROWS, CHUNK_ROWS * 16)))
                .collect(),
            lines: Vec::with_capacity(CHUNK_ROWS),
            malformed: Vec::new(),
            ignored: ignored.to_vec(),
        }
    }

    fn len(&self) -> usize {
        self.lines.len() + self.malformed.len()
    }

    fn finish(&mut self) -> RawChunk {
        RawChunk {
            columns: self
                .builders
                .iter_mut()
                .map(|b| b.as_mut().map(|b| Arc::new(b.finish()) as ArrayRef))
                .collect(),
            lines: std::mem::take(&mut self.lines),
            ignored_columns: self.ignored.clone(),
            malformed: std::mem::take(&mut self.malformed),
        }
    }
}

fn read_csv(
    table: &TableDef,
    path: &Path,
    file: File,
    progress: &dyn ImportProgress,
    sink: &mut Sink<'_>,
) -> Result<(), String> {
    let location = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| format!("cannot read the header line of `{location}`: {e}"))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let (mapping, ignored) = match_columns(table, &headers)?;
    require_columns(table, path, &mapping, &headers)?;
    let mut present = vec![false; table.columns.len()];
    for idx in mapping.iter().flatten() {
        present[*idx] = true;
    }
    let mut chunk = TextChunkBuilder::new(table, &present, &ignored);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("`{location}` could not be read past {e}")),
        }
        let line = record.position().map_or(0, |p| p.line()) as i64;
        let raw = || {
            let fields: Vec<String> = record
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            serde_json::to_string(&fields).unwrap_or_default()
        };
        if record.len() != headers.len() {
            chunk.malformed.push(Rejection {
                location: location.clone(),
                line_number: line,
                column: None,
                reason: format!(
                    "has {} fields but the header has {}",
                    record.len(),
                    headers.len()
                ),
                raw_record: raw(),
            });
        } else {
            let mut fields: Vec<&str> = Vec::with_capacity(headers.len());
            let mut bad_utf8 = None;
            for (i, field) in record.iter().enumerate() {
                match std::str::from_utf8(field) {
                    Ok(text) => fields.push(text),
                    Err(_) => {
                        bad_utf8 = Some(i);
                        break;
                    }
                }
            }
            if let Some(i) = bad_utf8 {
                chunk.malformed.push(Rejection {
                    location: location.clone(),
                    line_number: line,
                    column: Some(headers[i].clone()),
                    reason: format!("column `{}` is not valid UTF-8", headers[i]),
                    raw_record: raw(),
                });
            } else {
                for (value, target) in fields.iter().zip(&mapping) {
                    if let Some(builder) = target.and_then(|t| chunk.builders[t].as_mut()) {
                        builder.append_value(value);
                    }
                }
                chunk.lines.push(line);
            }
        }
        if chunk.len() >= CHUNK_ROWS {
            progress.advanced(reader.position().byte(), reader.position().record());
            sink(chunk.finish())?;
        }
    }
    progress.advanced(reader.position().byte(), reader.position().record());
    if chunk.len() > 0 {
        sink(chunk.finish())?;
    }
    Ok(())
}

fn read_ndjson(
    table: &TableDef,
    path: &Path,
    mut file: File,
    progress: &dyn ImportProgress,
    sink: &mut Sink<'_>,
) -> Result<(), String> {
    let location = path.display().to_string();
    // A file holding one JSON array of objects is accepted too.
    let mut first = [0u8; 64];
    let n = file
        .read(&mut first)
        .map_err(|e| format!("cannot read `{location}`: {e}"))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read `{location}`: {e}"))?;
    let is_array = first[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let all_present = vec![true; table.columns.len()];
    let mut chunk = TextChunkBuilder::new(table, &all_present, &[]);
    let mut unknown: Vec<String> = Vec::new();
    let mut column_of: HashMap<String, Option<usize>> = HashMap::new();
    let mut row_values: Vec<Option<String>> = vec![None; table.columns.len()];
    let mut add_object = |chunk: &mut TextChunkBuilder,
                          line: i64,
                          value: Result<serde_json::Value, String>,
                          raw: &str| {
        let object = match value {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(other) => {
                let kind = match other {
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                chunk.malformed.push(Rejection {
                    location: location.clone(),
                    line_number: line,
                    column: None,
                    reason: format!("expected a JSON object, found {kind}"),
                    raw_record: raw.to_owned(),
                });
                return;
            }
            Err(reason) => {
                chunk.malformed.push(Rejection {
                    location: location.clone(),
                    line_number: line,
                    column: None,
                    reason,
                    raw_record: raw.to_owned(),
                });
                return;
            }
        };
        row_values.iter_mut().for_each(|v| *v = None);
        for (key, value) in object {
            let idx = *column_of.entry(key.clone()).or_insert_with(|| {
                let (mapping, ignored) = match_columns(table, std::slice::from_ref(&key))
                    .unwrap_or((vec![None], vec![key.clone()]));
                unknown.extend(ignored);
                mapping[0]
            });
            if let Some(idx) = idx {
                row_values[idx] = match value {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s),
                    other => Some(other.to_string()),
                };
            }
        }
        for (builder, value) in chunk.builders.iter_mut().zip(&row_values) {
            if let Some(builder) = builder {
                builder.append_option(value.as_deref());
            }
        }
        chunk.lines.push(line);
    };
    if is_array {
        let reader = BufReader::new(file);
        let elements: Vec<serde_json::Value> = serde_json::from_reader(reader)
            .map_err(|e| format!("`{location}` starts with `[` but is not a JSON array: {e}"))?;
        for (i, element) in elements.into_iter().enumerate() {
            let raw = element.to_string();
            add_object(&mut chunk, i as i64 + 1, Ok(element), &raw);
            if chunk.len() >= CHUNK_ROWS {
                sink(chunk.finish())?;
            }
        }
    } else {
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line_text = String::new();
        let mut line_number = 0i64;
        let mut bytes_read = 0u64;
        loop {
            line_text.clear();
            let n = match reader.read_line(&mut line_text) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Not UTF-8: skip to the end of the line and reject it.
                    let mut bytes = Vec::new();
                    let n = reader
                        .read_until(b'\n', &mut bytes)
                        .map_err(|e| format!("cannot read `{location}`: {e}"))?;
                    line_number += 1;
                    bytes_read += n as u64;
                    chunk.malformed.push(Rejection {
                        location: location.clone(),
                        line_number,
                        column: None,
                        reason: "line is not valid UTF-8".to_owned(),
                        raw_record: String::from_utf8_lossy(&bytes).into_owned(),
                    });
                    continue;
                }
                Err(e) => return Err(format!("cannot read `{location}`: {e}")),
            };
            line_number += 1;
            bytes_read += n as u64;
            let trimmed = line_text.trim();
            if trimmed.is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<serde_json::Value>(trimmed)
                .map_err(|e| format!("not valid JSON: {e}"));
            add_object(&mut chunk, line_number, parsed, trimmed);
            if chunk.len() >= CHUNK_ROWS {
                progress.advanced(bytes_read, line_number as u64);
                sink(chunk.finish())?;
            }
        }
        progress.advanced(bytes_read, line_number as u64);
    }
    if chunk.len() > 0 {
        let mut last = chunk.finish();
        last.ignored_columns = unknown.clone();
        sink(last)?;
    } else if !unknown.is_empty() {
        sink(RawChunk {
            columns: vec![None; table.columns.len()],
            lines: Vec::new(),
            ignored_columns: unknown,
            malformed: Vec::new(),
        })?;
    }
    Ok(())
}

fn read_parquet(
    table: &TableDef,
    path: &Path,
    file: File,
    progress: &dyn ImportProgress,
    sink: &mut Sink<'_>,
) -> Result<(), String> {
    let location = path.display().to_string();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("`{location}` is not a readable Parquet file: {e}"))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let (mapping, ignored) = match_columns(table, &names)?;
    require_columns(table, path, &mapping, &names)?;
    let reader = builder
        .with_batch_size(CHUNK_ROWS)
        .build()
        .map_err(|e| format!("`{location}` is not a readable Parquet file: {e}"))?;
    let mut row = 0i64;
    for batch in reader {
        let batch =
            batch.map_err(|e| format!("`{location}` could not be read past row {row}: {e}"))?;
        let mut columns: Vec<Option<ArrayRef>> = vec![None; table.columns.len()];
        for (input_idx, target) in mapping.iter().enumerate() {
            if let Some(target) = target {
                columns[*target] = Some(batch.column(input_idx).clone());
            }
        }
        let lines: Vec<i64> = (row + 1..=row + batch.num_rows() as i64).collect();
        row += batch.num_rows() as i64;
        progress.advanced(0, row as u64);
        sink(RawChunk {
            columns,
            lines,
            ignored_columns: ignored.clone(),
            malformed: Vec::new(),
        })?;
    }
    Ok(())
}
