//! Shaping rows for a table before they are written: conforming a batch to
//! the model's schema, deriving the partition column, and collapsing rows
//! that share a primary key (last one wins).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder, TimestampMicrosecondArray,
    new_null_array,
};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Date32Type, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use chrono::{Datelike, NaiveDate};
use fathom_models::TableDef;

use crate::{Error, Result};

/// What a merge did to a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Rows offered to the merge (after collapsing duplicate keys).
    pub rows_in: usize,
    /// Rows offered whose key appeared again later in the same input; only the
    /// last occurrence was written.
    pub rows_superseded: usize,
    /// New keys written.
    pub rows_inserted: usize,
    /// Existing keys whose content changed.
    pub rows_updated: usize,
    /// Existing keys offered with identical content (nothing written for them).
    pub rows_unchanged: usize,
    /// Table version after the write; `None` when nothing needed writing.
    pub version: Option<u64>,
}

/// What a partition replacement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaceStats {
    /// Rows the replaced partitions held before.
    pub rows_removed: u64,
    /// Rows they hold now.
    pub rows_written: usize,
    /// Table version after the write.
    pub version: Option<u64>,
}

fn mismatch(def: &TableDef, reason: String) -> Error {
    Error::SchemaMismatch {
        table: def.name.to_owned(),
        reason,
    }
}

/// Conforms `batch` to the table's schema: columns in model order and type,
/// missing nullable columns as nulls, the partition column derived from its
/// source where the batch does not give it, and `updated_at` filled with `now_micros` where absent.
pub fn prepare_batch(def: &TableDef, batch: &RecordBatch, now_micros: i64) -> Result<RecordBatch> {
    let schema = def.arrow_schema();
    let n_rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(def.columns.len());
    for (column, field) in def.columns.iter().zip(schema.fields()) {
        let array = match batch.column_by_name(column.name) {
            Some(array) if array.data_type() == field.data_type() => array.clone(),
            Some(array) => cast(array, field.data_type()).map_err(|e| {
                mismatch(
                    def,
                    format!(
                        "column `{}` cannot be read as {}: {e}",
                        column.name,
                        field.data_type()
                    ),
                )
            })?,
            None if column.name == "updated_at" => new_null_array(field.data_type(), n_rows),
            // Derived below where absent, once its source is conformed.
            None if def.partition.is_some_and(|p| p.column == column.name) => {
                new_null_array(field.data_type(), n_rows)
            }
            None if column.nullable => new_null_array(field.data_type(), n_rows),
            None => {
                return Err(mismatch(
                    def,
                    format!("required column `{}` is missing", column.name),
                ));
            }
        };
        columns.push(array);
    }
    if let Some(partition) = def.partition {
        let source_idx = column_index(def, partition.source)?;
        let partition_idx = column_index(def, partition.column)?;
        // A row may name its month (a cloud line's billing period, which
        // can differ from its charge day's); otherwise it is the source's.
        let derived = month_of(&columns[source_idx]).map_err(|reason| mismatch(def, reason))?;
        let given = &columns[partition_idx];
        columns[partition_idx] = if given.null_count() == 0 {
            given.clone()
        } else if given.null_count() == n_rows {
            derived
        } else {
            let named: BooleanArray = (0..n_rows).map(|i| Some(given.is_valid(i))).collect();
            arrow::compute::kernels::zip::zip(&named, given, &derived)?
        };
    }
    if let Some(idx) = def.columns.iter().position(|c| c.name == "updated_at") {
        columns[idx] = fill_timestamp(&columns[idx], now_micros);
    }
    for (column, array) in def.columns.iter().zip(&columns) {
        if !column.nullable && array.null_count() > 0 {
            return Err(mismatch(
                def,
                format!(
                    "required column `{}` has {} null value(s)",
                    column.name,
                    array.null_count()
                ),
            ));
        }
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn column_index(def: &TableDef, name: &str) -> Result<usize> {
    def.columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| mismatch(def, format!("model declares no column `{name}`")))
}

/// `YYYY-MM` of each value of a timestamp or date column.
fn month_of(array: &ArrayRef) -> std::result::Result<ArrayRef, String> {
    let days: Vec<Option<i64>> = match array.data_type() {
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| d.map(i64::from))
            .collect(),
        DataType::Timestamp(_, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|t| t.map(|micros| micros.div_euclid(86_400_000_000)))
            .collect(),
        other => return Err(format!("cannot partition by a column of type {other}")),
    };
    let mut builder = StringBuilder::with_capacity(days.len(), days.len() * 7);
    // Rows usually arrive clustered in time, so remembering the last day
    // avoids most calendar conversions.
    let mut last: Option<(i64, String)> = None;
    for day in days {
        match day {
            None => builder.append_null(),
            Some(day) => {
                if last.as_ref().is_none_or(|(d, _)| *d != day) {
                    let date = NaiveDate::from_num_days_from_ce_opt(
                        i32::try_from(day + 719_163)
                            .map_err(|_| format!("day {day} out of range"))?,
                    )
                    .ok_or_else(|| format!("day {day} out of range"))?;
                    last = Some((day, format!("{:04}-{:02}", date.year(), date.month())));
                }
                if let Some((_, month)) = &last {
                    builder.append_value(month);
                }
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

fn fill_timestamp(array: &ArrayRef, now_micros: i64) -> ArrayRef {
    if array.null_count() == 0 {
        return array.clone();
    }
    let timestamps = array.as_primitive::<TimestampMicrosecondType>();
    let filled: TimestampMicrosecondArray = timestamps
        .iter()
        .map(|t| Some(t.unwrap_or(now_micros)))
        .collect();
    Arc::new(filled.with_timezone_opt(timestamps.timezone()))
}

/// Rows of `batch` whose primary key appears again later in the batch, each
/// paired with the row that finally wins for that key (its last occurrence),
/// in input order.
pub fn superseded_rows(def: &TableDef, batch: &RecordBatch) -> Result<Vec<(usize, usize)>> {
    let key_columns: Vec<ArrayRef> = def
        .primary_key
        .iter()
        .map(|key| {
            batch
                .column_by_name(key)
                .cloned()
                .ok_or_else(|| mismatch(def, format!("key column `{key}` is missing")))
        })
        .collect::<Result<_>>()?;
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&key_columns)?;
    let mut last_index: HashMap<&[u8], usize> = HashMap::with_capacity(batch.num_rows());
    let mut losers = Vec::new();
    for (idx, row) in rows.iter().enumerate() {
        if let Some(previous) = last_index.insert(row.data(), idx) {
            losers.push(previous);
        }
    }
    losers.sort_unstable();
    Ok(losers
        .into_iter()
        .map(|loser| {
            let winner = last_index
                .get(rows.row(loser).data())
                .copied()
                .unwrap_or(loser);
            (loser, winner)
        })
        .collect())
}

/// `batch` without the given rows.
pub fn without_rows(
    batch: &RecordBatch,
    rows: impl IntoIterator<Item = usize>,
) -> Result<RecordBatch> {
    let mut keep = vec![true; batch.num_rows()];
    for row in rows {
        if let Some(slot) = keep.get_mut(row) {
            *slot = false;
        }
    }
    let mask: BooleanArray = keep.into_iter().map(Some).collect();
    Ok(filter_record_batch(batch, &mask)?)
}

/// Collapses rows sharing a primary key to the last occurrence, keeping input
/// order otherwise. Returns the collapsed batch and how many rows were
/// superseded.
pub(crate) fn dedupe_last_wins(
    def: &TableDef,
    batches: &[RecordBatch],
) -> Result<(Option<RecordBatch>, usize)> {
    let Some(first) = batches.first() else {
        return Ok((None, 0));
    };
    let batch = concat_batches(&first.schema(), batches)?;
    let superseded = superseded_rows(def, &batch)?;
    if superseded.is_empty() {
        return Ok((Some(batch), 0));
    }
    let collapsed = without_rows(&batch, superseded.iter().map(|(loser, _)| *loser))?;
    Ok((Some(collapsed), superseded.len()))
}

/// Today in microseconds since the epoch.
pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
