//! Writing what a stream decoded: raw payloads, rows merged into the core
//! tables with identities mapped, quarantined records — and only then the
//! cursor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use fathom_models::TableDef;
use fathom_models::tables::QUARANTINE;
use fathom_warehouse::Warehouse;
use sha2::{Digest, Sha256};

use crate::identity::IdentityMap;
use crate::import::{Rejection, json_rows_to_batch, quarantine_batch};
use crate::source::{Decoded, Payload, SourceConfig, SourceError};
use crate::{Error, Result};

pub(super) fn text(batch: &RecordBatch, column: usize, row: usize) -> Option<String> {
    use arrow::array::Array;
    let array =
        arrow::compute::cast(batch.column(column), &arrow::datatypes::DataType::Utf8).ok()?;
    let strings = array.as_any().downcast_ref::<StringArray>()?;
    (!strings.is_null(row)).then(|| strings.value(row).to_owned())
}

/// What one flush did.
#[derive(Debug, Default)]
pub(super) struct Flushed {
    pub(super) payloads: usize,
    pub(super) rows: BTreeMap<String, usize>,
    pub(super) changed: BTreeMap<String, usize>,
    pub(super) unmapped: BTreeMap<String, usize>,
    pub(super) quarantined: usize,
    pub(super) warning: Option<String>,
}

/// Keeps `payloads` in the raw layer, decodes them unit by unit, maps
/// identities and merges the rows; bad records go to quarantine.
pub(super) async fn flush(
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
pub(super) type TableRows = (
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
    replace: Option<Replace<'_>>,
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
            Some(Replace { partitions, within }) => {
                let stats = warehouse
                    .replace_partitions_within(table, partitions, within, &[batch])
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

/// What a write replaces instead of merging: the rows of these partitions
/// that share the `within` columns' values with a written row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replace<'a> {
    /// Partition values (`YYYY-MM`).
    pub partitions: &'a [String],
    /// Columns bounding the replacement inside a partition; none: the
    /// whole partition.
    pub within: &'static [&'static str],
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
