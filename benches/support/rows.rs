//! What the benchmarks that write synthetic rows share: a deterministic
//! draw, JSON objects, and one append through the importer's decoding.

use anyhow::Result;
use fathom_models::TableDef;
use fathom_warehouse::Warehouse;
use serde_json::{Map, Value};

/// A deterministic draw in [0, 1) for `key` (SplitMix64).
pub fn draw(key: u64) -> f64 {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// The object of a `json!({...})`.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Writes `rows` to `def` in one append; a rejected row is an error.
pub async fn append(
    warehouse: &Warehouse,
    def: &TableDef,
    rows: &[Map<String, Value>],
) -> Result<()> {
    let refs: Vec<&Map<String, Value>> = rows.iter().collect();
    let (batch, rejected) = fathom_ingest::import::json_rows_to_batch(def, &refs, "bench")
        .map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(
        rejected.is_empty(),
        "{}: {} rows rejected, the first: {:?}",
        def.name,
        rejected.len(),
        rejected.first()
    );
    let batches: Vec<_> = batch.into_iter().collect();
    warehouse.append(def, &batches).await?;
    Ok(())
}
