//! `cost_commitments` on the FOCUS specification's own commitment samples
//! (decoded by the cost-report reader, as a delivery would be): utilization
//! and coverage of a commitment fully used and of one nobody used, computed
//! by hand from the sample files.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::properties::register;
use super::{MARTS, Parameters, compute};

/// The sample's rows as `cloud_costs_daily` rows; `None` without fixtures.
fn sample(name: &str) -> Result<Option<Vec<Map<String, Value>>>, String> {
    let dir = std::env::var_os("FATHOM_FIXTURES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
        });
    let path = dir.join("focus/sample_data").join(name);
    if !path.is_file() {
        println!(
            "skipped: {} not found (set FATHOM_FIXTURES_DIR)",
            path.display()
        );
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    let rows = fathom_ingest::files::csv_rows(&bytes)?;
    let config: fathom_ingest::files::cost_report::CostReportConfig =
        serde_json::from_value(serde_json::json!({"name": "focus", "location": "/tmp"}))
            .map_err(|e| e.to_string())?;
    let mut decoded = fathom_ingest::source::Decoded::default();
    fathom_ingest::files::cost_report::decode_rows(&config, name, None, &rows, &mut decoded);
    if !decoded.rejects.is_empty() {
        return Err(format!("{name}: {:?}", decoded.rejects));
    }
    Ok(Some(decoded.rows.into_iter().map(|r| r.values).collect()))
}

/// `cost_commitments`' `all` row of `lines`: utilization, unused,
/// coverage, eligible list cost, savings.
async fn commitments(lines: Vec<Map<String, Value>>) -> Result<Vec<String>, String> {
    let mut tables: BTreeMap<&'static str, Vec<Map<String, Value>>> = BTreeMap::new();
    tables.insert("cloud_costs_daily", lines);
    let ctx = register(&tables)?;
    let mart = MARTS
        .iter()
        .find(|m| m.def.name == "cost_commitments")
        .ok_or("no cost_commitments")?;
    let batches = compute(&ctx, mart, &Parameters::default(), crate::default_as_of())
        .await
        .map_err(|e| e.to_string())?;
    let table = datafusion::datasource::MemTable::try_new(
        batches.first().map_or_else(
            || mart.def.arrow_schema(),
            arrow::array::RecordBatch::schema,
        ),
        vec![batches],
    )
    .map_err(|e| e.to_string())?;
    ctx.register_table("answer", std::sync::Arc::new(table))
        .map_err(|e| e.to_string())?;
    let batches = ctx
        .sql(
            "SELECT CAST(utilization AS VARCHAR), CAST(unused_commitment AS VARCHAR), \
             CAST(coverage AS VARCHAR), CAST(eligible_list_cost AS VARCHAR), CAST(savings AS VARCHAR), \
             CAST(purchases_billed AS VARCHAR) \
             FROM answer WHERE commitment_discount_type = 'all'",
        )
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let rows = fathom_warehouse::query::text_rows(&batches).map_err(|e| e.to_string())?;
    match rows.as_slice() {
        [row] => Ok(row.clone()),
        other => Err(format!("expected one `all` row, got {other:?}")),
    }
}

/// Fully used: the 1.50 commitment covers a VM listed at 3.00. Used 1.50,
/// nothing unused: utilization 1, coverage 1 (3.00 of 3.00), saved 1.50.
#[tokio::test]
async fn a_fully_used_commitment_is_fully_utilized_and_covers_its_usage() -> Result<(), String> {
    let Some(lines) = sample(
        "commitment_discount_flexibility_one_hundred_percent_utilization_without_commitment_discount_flexibility.csv",
    )?
    else {
        return Ok(());
    };
    assert_eq!(
        commitments(lines).await?,
        ["1.0", "0.0", "1.0", "3.0", "1.5", "1.5"]
    );
    Ok(())
}

/// Unused: the large VM the commitment was for did not run (its 1.50 is
/// unused), a medium VM ran on demand (2.00). Utilization 0, waste 1.50,
/// coverage 0 of 2.00 eligible, savings −1.50.
#[tokio::test]
async fn an_unused_commitment_is_waste_and_covers_nothing() -> Result<(), String> {
    let Some(lines) = sample(
        "commitment_discount_flexibility_zero_percent_utilization_without_commitment_discount_flexibility.csv",
    )?
    else {
        return Ok(());
    };
    assert_eq!(
        commitments(lines).await?,
        ["0.0", "1.5", "0.0", "2.0", "-1.5", "1.5"]
    );
    Ok(())
}
