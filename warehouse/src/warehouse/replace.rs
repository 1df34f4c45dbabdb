//! Replacing rows in one commit: whole tables (marts recomputed in full),
//! partitions (a cloud bill's rewritten month, for the providers and
//! accounts a delivery carries), or the rows matching a predicate (marts
//! recomputed for some components, scopes or months).

use std::collections::BTreeSet;

use arrow::array::{Array, RecordBatch};
use datafusion::logical_expr::{Expr, col};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use fathom_models::TableDef;

use super::{Warehouse, prepare_all};
use crate::table_write::{ReplaceStats, dedupe_last_wins};
use crate::{Error, Result};

impl Warehouse {
    /// Replaces every row of the given partitions (`YYYY-MM` values of the
    /// table's partition column) with `batches`, in one commit: readers see
    /// the old month or the new one, never both or neither. For sources
    /// that rewrite a whole period (a cloud bill's open month). Rows of
    /// `batches` outside `partitions` are refused; a partition listed
    /// without rows is emptied.
    pub async fn replace_partitions(
        &self,
        def: &TableDef,
        partitions: &[String],
        batches: &[RecordBatch],
    ) -> Result<ReplaceStats> {
        if partitions.is_empty() {
            return Ok(ReplaceStats::default());
        }
        let in_partitions = in_partitions(def, partitions)?;
        self.replace_where(def, in_partitions, batches).await
    }

    /// Like [`Self::replace_partitions`], but only the rows of those
    /// partitions that share the values of the `within` columns with a row
    /// of `batches` (a cloud bill's month for the providers and billing
    /// accounts a delivery carries: two providers' or two accounts'
    /// exports of one month do not replace each other). Without rows,
    /// nothing is replaced: an empty delivery cannot say whose month it
    /// empties.
    pub async fn replace_partitions_within(
        &self,
        def: &TableDef,
        partitions: &[String],
        within: &[&str],
        batches: &[RecordBatch],
    ) -> Result<ReplaceStats> {
        if within.is_empty() {
            return self.replace_partitions(def, partitions, batches).await;
        }
        let in_partitions = in_partitions(def, partitions)?;
        let mut tuples: BTreeSet<Vec<Option<String>>> = BTreeSet::new();
        for batch in batches {
            let columns = within
                .iter()
                .map(|name| {
                    let column =
                        batch
                            .column_by_name(name)
                            .ok_or_else(|| Error::SchemaMismatch {
                                table: def.name.to_owned(),
                                reason: format!("column `{name}` is missing"),
                            })?;
                    Ok(arrow::compute::cast(
                        column,
                        &arrow::datatypes::DataType::Utf8,
                    )?)
                })
                .collect::<Result<Vec<_>>>()?;
            for row in 0..batch.num_rows() {
                tuples.insert(
                    columns
                        .iter()
                        .map(|c| {
                            c.as_any()
                                .downcast_ref::<arrow::array::StringArray>()
                                .filter(|a| a.is_valid(row))
                                .map(|a| a.value(row).to_owned())
                        })
                        .collect(),
                );
            }
        }
        let Some(owners) = tuples
            .into_iter()
            .filter_map(|tuple| {
                within
                    .iter()
                    .zip(tuple)
                    .map(|(name, value)| match value {
                        Some(value) => col(*name).eq(datafusion::logical_expr::lit(value)),
                        None => col(*name).is_null(),
                    })
                    .reduce(Expr::and)
            })
            .reduce(Expr::or)
        else {
            return Ok(ReplaceStats::default());
        };
        self.replace_where(def, in_partitions.and(owners), batches)
            .await
    }

    /// Replaces every row matching `predicate` with `batches`, in one
    /// commit: readers see the old rows or the new ones. For marts
    /// recomputed for some components or scopes. Every row of `batches`
    /// must match `predicate` (Delta refuses the commit otherwise).
    pub async fn replace_where(
        &self,
        def: &TableDef,
        predicate: Expr,
        batches: &[RecordBatch],
    ) -> Result<ReplaceStats> {
        let prepared = prepare_all(def, batches)?;
        let (source, _) = dedupe_last_wins(def, &prepared)?;
        let rows_written = source.as_ref().map_or(0, RecordBatch::num_rows);
        let table = self.ensure_table(def).await?;
        let rows_removed = self.count_where(def, &table, &predicate).await?;
        let table = match source {
            Some(source) => table
                .write(vec![source])
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(predicate)
                .with_partition_columns(def.partition_columns())
                .await
                .map_err(|e| Error::delta(def.name, e))?,
            None if rows_removed == 0 => table,
            None => {
                table
                    .delete()
                    .with_predicate(predicate)
                    .await
                    .map_err(|e| Error::delta(def.name, e))?
                    .0
            }
        };
        Ok(ReplaceStats {
            rows_removed,
            rows_written,
            version: table.version(),
        })
    }

    /// Replaces the whole table with `batches` in one commit (marts
    /// recomputed in full): readers see the old table or the new one. A
    /// table whose stored columns differ from the model's (a mart written
    /// by an earlier release) gets the model's columns in the same commit.
    pub async fn replace_all(
        &self,
        def: &TableDef,
        batches: &[RecordBatch],
    ) -> Result<ReplaceStats> {
        let prepared = prepare_all(def, batches)?;
        let (source, _) = dedupe_last_wins(def, &prepared)?;
        let rows_written = source.as_ref().map_or(0, RecordBatch::num_rows);
        let table = self.open_or_create(def).await?;
        let rows_removed = self
            .count_where(def, &table, &datafusion::logical_expr::lit(true))
            .await?;
        let batch = match source {
            Some(batch) => batch,
            None => RecordBatch::new_empty(def.arrow_schema()),
        };
        let mut write = table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_partition_columns(def.partition_columns());
        if super::stored_columns_differ(def, &table)? {
            write = write.with_schema_mode(SchemaMode::Overwrite);
        }
        let table = write.await.map_err(|e| Error::delta(def.name, e))?;
        Ok(ReplaceStats {
            rows_removed,
            rows_written,
            version: table.version(),
        })
    }
}

/// `partition IN (partitions)` over `def`'s partition column; an error for
/// a table that is not partitioned.
pub(super) fn in_partitions(def: &TableDef, partitions: &[String]) -> Result<Expr> {
    let Some(partition) = def.partition else {
        return Err(Error::SchemaMismatch {
            table: def.name.to_owned(),
            reason: "the table is not partitioned; partitions cannot be replaced".to_owned(),
        });
    };
    Ok(col(partition.column).in_list(
        partitions
            .iter()
            .map(|p| datafusion::logical_expr::lit(p.clone()))
            .collect(),
        false,
    ))
}
