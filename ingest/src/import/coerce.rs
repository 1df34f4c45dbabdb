//! Coercing text (or foreign-typed) columns to a table's schema, row errors
//! collected instead of failing the batch.
//!
//! Conversions are vectorised with Arrow's casts; a value that was present
//! in the input but null after the cast is a value that failed, and becomes a
//! rejection naming the line, the column and the offending text.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, ListBuilder, MapBuilder, MapFieldNames, RecordBatch,
    StringArray, StringBuilder, new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use fathom_models::{
    ColumnType, EntityRef, LIST_ITEM_FIELD, MAP_ENTRIES_FIELD, MAP_KEY_FIELD, MAP_VALUE_FIELD,
    TableDef, Vocabulary,
};

use fathom_warehouse::{superseded_rows, without_rows};

use super::read::RawChunk;

/// A record that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// File it came from.
    pub location: String,
    /// 1-based line (CSV, NDJSON) or row (Parquet).
    pub line_number: i64,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// What is wrong, in words a user can act on.
    pub reason: String,
    /// The record as read (a JSON object of its fields).
    pub raw_record: String,
}

/// Good rows of a chunk (typed, bad rows removed) and its rejections.
pub(crate) struct Coerced {
    pub batch: Option<RecordBatch>,
    pub lines: Vec<i64>,
    pub rejections: Vec<Rejection>,
}

/// The columns a load supplies, all nullable here (the warehouse re-checks
/// required columns on write, and derives the partition column where a
/// row does not name it: a cloud line's billing period may differ from
/// its charge day's month).
pub(crate) fn load_schema(table: &TableDef) -> Arc<Schema> {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| Field::new(c.name, c.column_type.arrow_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Whether input must supply this column (required, and not derived).
pub(crate) fn must_supply(table: &TableDef, column: &str) -> bool {
    let derived = table.partition.is_some_and(|p| p.column == column) || column == "updated_at";
    !derived && table.column(column).is_some_and(|c| !c.nullable)
}

pub(crate) fn coerce_chunk(
    table: &TableDef,
    chunk: RawChunk,
    location: &str,
) -> Result<Coerced, String> {
    let n_rows = chunk.lines.len();
    let schema = load_schema(table);
    let mut row_errors: HashMap<usize, Vec<(&'static str, String)>> = HashMap::new();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (idx, column) in table.columns.iter().enumerate() {
        let target = column.column_type.arrow_type();
        let (array, errors) = match &chunk.columns[idx] {
            None => (new_null_array(&target, n_rows), Vec::new()),
            Some(input) => coerce_array(input, column.column_type)?,
        };
        let (array, errors) = match column.vocabulary {
            Some(vocabulary) => normalise(&array, vocabulary, errors),
            None => (array, errors),
        };
        for (row, message) in errors {
            row_errors
                .entry(row)
                .or_default()
                .push((column.name, message));
        }
        if must_supply(table, column.name) && array.null_count() > 0 {
            let key_or_required = if table.is_key(column.name) {
                "primary key column"
            } else {
                "required column"
            };
            for row in (0..n_rows).filter(|&row| array.is_null(row)) {
                let errors = row_errors.entry(row).or_default();
                if !errors.iter().any(|(name, _)| *name == column.name) {
                    errors.push((
                        column.name,
                        format!("{key_or_required} `{}` is missing or empty", column.name),
                    ));
                }
            }
        }
        columns.push(array);
    }
    let mut rejections = chunk.malformed;
    if !row_errors.is_empty() {
        let mut bad_rows: Vec<usize> = row_errors.keys().copied().collect();
        bad_rows.sort_unstable();
        for row in bad_rows {
            let errors = row_errors.remove(&row).unwrap_or_default();
            let reason = errors
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            rejections.push(Rejection {
                location: location.to_owned(),
                line_number: chunk.lines[row],
                column: errors.first().map(|(name, _)| (*name).to_owned()),
                reason,
                raw_record: raw_record(table, &chunk.columns, row)?,
            });
        }
    }
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())?;
    let rejected: std::collections::HashSet<i64> =
        rejections.iter().map(|r| r.line_number).collect();
    let keep: BooleanArray = chunk
        .lines
        .iter()
        .map(|line| Some(!rejected.contains(line)))
        .collect();
    let lines = chunk
        .lines
        .iter()
        .copied()
        .filter(|line| !rejected.contains(line))
        .collect();
    let batch = filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?;
    Ok(Coerced {
        batch: (batch.num_rows() > 0).then_some(batch),
        lines,
        rejections,
    })
}

/// The fields of one input row as a JSON object, for the quarantine.
fn raw_record(
    table: &TableDef,
    columns: &[Option<ArrayRef>],
    row: usize,
) -> Result<String, String> {
    let mut object = serde_json::Map::new();
    let options = FormatOptions::default();
    for (column, array) in table.columns.iter().zip(columns) {
        let Some(array) = array else { continue };
        let value = if array.is_null(row) {
            serde_json::Value::Null
        } else {
            let formatter =
                ArrayFormatter::try_new(array.as_ref(), &options).map_err(|e| e.to_string())?;
            serde_json::Value::String(formatter.value(row).to_string())
        };
        object.insert(column.name.to_owned(), value);
    }
    Ok(serde_json::Value::Object(object).to_string())
}

type RowErrors = Vec<(usize, String)>;

/// Converts one input column to `column_type`, returning per-row errors.
fn coerce_array(
    input: &ArrayRef,
    column_type: ColumnType,
) -> Result<(ArrayRef, RowErrors), String> {
    let target = column_type.arrow_type();
    // Text always goes through the text path: an empty field is a null in
    // every format, and refs need canonicalising.
    if input.data_type() == &target && target != DataType::Utf8 {
        return Ok((input.clone(), Vec::new()));
    }
    let text: StringArray = match input.data_type() {
        DataType::Utf8 => blank_to_null(
            input
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or("not text")?,
        ),
        DataType::LargeUtf8 | DataType::Utf8View => {
            let as_text = cast_with_options(input, &DataType::Utf8, &CastOptions::default())
                .map_err(|e| e.to_string())?;
            blank_to_null(
                as_text
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or("not text")?,
            )
        }
        // Typed input (Parquet): cast directly, a failed value becomes null.
        _ => return cast_checked(input, column_type),
    };
    match column_type {
        ColumnType::Utf8 => Ok((Arc::new(text), Vec::new())),
        ColumnType::EntityRef(default_kind) => Ok(entity_refs(&text, default_kind)),
        ColumnType::StringMap => string_maps(&text),
        ColumnType::StringList => string_lists(&text),
        ColumnType::Int64
        | ColumnType::Float64
        | ColumnType::Boolean
        | ColumnType::Timestamp
        | ColumnType::Date => {
            let text: ArrayRef = Arc::new(text);
            cast_checked(&text, column_type)
        }
    }
}

/// A closed-list column's values in their stored spelling; a value the
/// list does not know becomes a row error (the row is quarantined).
fn normalise(
    array: &ArrayRef,
    vocabulary: &Vocabulary,
    mut errors: RowErrors,
) -> (ArrayRef, RowErrors) {
    let Some(text) = array.as_any().downcast_ref::<StringArray>() else {
        return (array.clone(), errors);
    };
    let out: StringArray = text
        .iter()
        .enumerate()
        .map(|(row, value)| {
            let value = value?;
            let known = vocabulary.normalise(value);
            if known.is_none() {
                errors.push((row, vocabulary.refusal(value)));
            }
            known
        })
        .collect();
    (Arc::new(out), errors)
}

fn blank_to_null(input: &StringArray) -> StringArray {
    if !input.iter().any(|v| v.is_some_and(|s| s.trim().is_empty())) {
        return input.clone();
    }
    input
        .iter()
        .map(|v| v.filter(|s| !s.trim().is_empty()))
        .collect()
}

fn cast_checked(
    input: &ArrayRef,
    column_type: ColumnType,
) -> Result<(ArrayRef, RowErrors), String> {
    let target = column_type.arrow_type();
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    let output = cast_with_options(input, &target, &options).map_err(|e| {
        format!(
            "values of type {} cannot be read as {}: {e}",
            input.data_type(),
            column_type.sql_name()
        )
    })?;
    let mut errors = Vec::new();
    if output.null_count() > input.null_count() {
        let formatter = ArrayFormatter::try_new(input.as_ref(), &FormatOptions::default())
            .map_err(|e| e.to_string())?;
        let hint = match column_type {
            ColumnType::Timestamp => {
                " (use RFC 3339 such as 2026-01-31T09:30:00Z, or YYYY-MM-DD HH:MM:SS in UTC)"
            }
            ColumnType::Date => " (use YYYY-MM-DD)",
            ColumnType::Boolean => " (use true/false)",
            _ => "",
        };
        for row in 0..input.len() {
            if input.is_valid(row) && output.is_null(row) {
                errors.push((
                    row,
                    format!(
                        "`{}` is not a valid {}{hint}",
                        formatter.value(row),
                        column_type.sql_name()
                    ),
                ));
            }
        }
    }
    Ok((output, errors))
}

fn entity_refs(text: &StringArray, default_kind: Option<&'static str>) -> (ArrayRef, RowErrors) {
    let mut errors = Vec::new();
    let mut builder =
        StringBuilder::with_capacity(text.len(), text.value_data().len() + text.len() * 20);
    // Refs repeat a lot (one service, many deployments): parse each once.
    let mut cache: HashMap<&str, Option<String>> = HashMap::new();
    for (row, value) in text.iter().enumerate() {
        let Some(value) = value else {
            builder.append_null();
            continue;
        };
        let parsed = cache.entry(value).or_insert_with(|| {
            EntityRef::parse_with_defaults(value, default_kind, "default")
                .ok()
                .map(|r| r.to_string())
        });
        match parsed {
            Some(canonical) => builder.append_value(canonical),
            None => {
                let reason = EntityRef::parse_with_defaults(value, default_kind, "default")
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                errors.push((row, reason));
                builder.append_null();
            }
        }
    }
    (Arc::new(builder.finish()), errors)
}

fn json_scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn string_maps(text: &StringArray) -> Result<(ArrayRef, RowErrors), String> {
    let mut errors = Vec::new();
    let mut builder = MapBuilder::new(
        Some(MapFieldNames {
            entry: MAP_ENTRIES_FIELD.into(),
            key: MAP_KEY_FIELD.into(),
            value: MAP_VALUE_FIELD.into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for (row, value) in text.iter().enumerate() {
        let Some(value) = value else {
            builder.append(false).map_err(|e| e.to_string())?;
            continue;
        };
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(value) {
            Ok(object) => {
                for (key, value) in &object {
                    builder.keys().append_value(key);
                    builder.values().append_option(json_scalar_text(value));
                }
                builder.append(true).map_err(|e| e.to_string())?;
            }
            Err(e) => {
                errors.push((
                    row,
                    format!("`{value}` is not a JSON object of strings ({e})"),
                ));
                builder.append(false).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok((Arc::new(builder.finish()), errors))
}

fn string_lists(text: &StringArray) -> Result<(ArrayRef, RowErrors), String> {
    let mut errors = Vec::new();
    let mut builder = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        LIST_ITEM_FIELD,
        DataType::Utf8,
        true,
    )));
    for (row, value) in text.iter().enumerate() {
        let Some(value) = value else {
            builder.append(false);
            continue;
        };
        let trimmed = value.trim();
        if trimmed.starts_with('[') {
            match serde_json::from_str::<Vec<serde_json::Value>>(trimmed) {
                Ok(items) => {
                    for item in &items {
                        builder.values().append_option(json_scalar_text(item));
                    }
                    builder.append(true);
                }
                Err(e) => {
                    errors.push((row, format!("`{value}` is not a JSON array ({e})")));
                    builder.append(false);
                }
            }
        } else {
            // Plain text lists are comma-separated (`a, b, c`).
            for item in trimmed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                builder.values().append_value(item);
            }
            builder.append(true);
        }
    }
    Ok((Arc::new(builder.finish()), errors))
}

/// Within one file, a key given twice keeps its last occurrence; the earlier
/// rows are returned as rejections naming the line that superseded them.
pub(crate) fn split_duplicates(
    table: &TableDef,
    batches: &mut Vec<RecordBatch>,
    lines: &[i64],
    location: &str,
) -> Result<Vec<Rejection>, String> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let batch = concat_batches(&first.schema(), batches.iter()).map_err(|e| e.to_string())?;
    let superseded = superseded_rows(table, &batch).map_err(|e| e.to_string())?;
    if superseded.is_empty() {
        return Ok(Vec::new());
    }
    let columns: Vec<Option<ArrayRef>> = table
        .columns
        .iter()
        .map(|c| batch.column_by_name(c.name).cloned())
        .collect();
    let mut rejections = Vec::with_capacity(superseded.len());
    for (loser, winner) in &superseded {
        let key_text = table
            .primary_key
            .iter()
            .filter_map(|k| {
                let array = batch.column_by_name(k)?;
                let formatter =
                    ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).ok()?;
                Some(format!("{k}={}", formatter.value(*loser)))
            })
            .collect::<Vec<_>>()
            .join(", ");
        rejections.push(Rejection {
            location: location.to_owned(),
            line_number: lines[*loser],
            column: table.primary_key.first().map(|k| (*k).to_owned()),
            reason: format!(
                "duplicate primary key ({key_text}) in the same file; line {} supersedes it",
                lines[*winner]
            ),
            raw_record: raw_record(table, &columns, *loser)?,
        });
    }
    let kept = without_rows(&batch, superseded.iter().map(|(loser, _)| *loser))
        .map_err(|e| e.to_string())?;
    *batches = vec![kept];
    Ok(rejections)
}
