//! Tables written by an earlier release, brought to the model's columns.
//!
//! A release may add nullable columns to a table. Reading never writes:
//! a stored table that lacks some of them is registered as a view that
//! reads them as null, so queries and marts written for the new model plan
//! on any warehouse. The first write adds them to the Delta schema (one
//! metadata commit, no data rewritten; files written before read the new
//! columns as null), so every writer stores rows the same way. A required
//! column a stored table lacks cannot be filled in: that is an error
//! naming the table and column. Marts, rewritten whole, take their new
//! columns in the rewrite instead (`Warehouse::replace_all`).

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use fathom_models::TableDef;
use tracing::info;

use super::kernel_fields;
use crate::{Error, Result};

/// The model's columns `table` does not store.
fn missing<'d>(def: &'d TableDef, table: &DeltaTable) -> Result<Vec<&'d str>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(def.name, e))?;
    let schema = snapshot.schema();
    let stored: Vec<&str> = schema.fields().map(|f| f.name().as_str()).collect();
    Ok(def
        .columns
        .iter()
        .map(|c| c.name)
        .filter(|name| !stored.contains(name))
        .collect())
}

/// `table` with the model's nullable columns it lacks added to its Delta
/// schema (unchanged when it lacks none).
pub(super) async fn add_missing_columns(def: &TableDef, table: DeltaTable) -> Result<DeltaTable> {
    let absent = missing(def, &table)?;
    if absent.is_empty() {
        return Ok(table);
    }
    if let Some(required) = absent
        .iter()
        .find(|name| def.column(name).is_some_and(|c| !c.nullable))
    {
        return Err(Error::SchemaMismatch {
            table: def.name.to_owned(),
            reason: format!(
                "the stored table has no column `{required}`, which this release requires and cannot fill in for existing rows"
            ),
        });
    }
    let fields: Vec<_> = kernel_fields(def)?
        .into_iter()
        .filter(|f| absent.contains(&f.name().as_str()))
        .collect();
    let table = table
        .add_columns()
        .with_fields(fields)
        .await
        .map_err(|e| Error::delta(def.name, e))?;
    info!(table = def.name, columns = ?absent, "added the model's new columns");
    Ok(table)
}

/// `provider` (the stored table's) as the model's columns, in the
/// model's order, those it does not store read as null.
pub(super) fn with_model_columns(
    ctx: &SessionContext,
    def: &TableDef,
    table: &DeltaTable,
    provider: Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>> {
    let absent = missing(def, table)?;
    if absent.is_empty() {
        return Ok(provider);
    }
    let schema = def.arrow_schema();
    let columns: Vec<Expr> = def
        .columns
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if absent.contains(&column.name) {
                cast(lit(ScalarValue::Null), field.data_type().clone()).alias(column.name)
            } else {
                Expr::Column(Column::from_name(column.name))
            }
        })
        .collect();
    Ok(ctx.read_table(provider)?.select(columns)?.into_view())
}
