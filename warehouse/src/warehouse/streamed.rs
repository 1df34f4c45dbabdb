//! Replacing rows from a stream, in one commit: a mart's batches are
//! conformed and written to Parquet as the engine produces them, so a
//! mart is never held whole in memory (nor concatenated, nor re-hashed for
//! duplicate keys: the marts' SQL produces unique keys, and a property
//! test checks it). The commit happens once every batch is written;
//! readers see the old rows or the new ones, as with [`Warehouse::replace_where`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use fathom_models::TableDef;
use futures::StreamExt;

use super::Warehouse;
use crate::table_write::{ReplaceStats, now_micros, prepare_batch};
use crate::{Error, Result};

/// Rows produced by the engine, one stream per partition of its plan.
/// The streams run in the session that planned them (its memory pool
/// bounds them); the write around them holds a few Parquet row groups.
pub struct RowStreams {
    /// The partitions' streams.
    pub streams: Vec<SendableRecordBatchStream>,
}

impl std::fmt::Debug for RowStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStreams")
            .field("partitions", &self.streams.len())
            .finish_non_exhaustive()
    }
}

/// What the streams reported while the write read them.
#[derive(Debug, Default)]
struct Tally {
    rows: AtomicUsize,
    /// The first error a stream produced: the write's own error wraps it
    /// beyond recognition (an exhausted memory pool must still be told
    /// apart from a storage failure).
    failure: Mutex<Option<DataFusionError>>,
}

/// One partition's stream, handed out once: the write plan is executed
/// once, and a second execution must fail rather than write nothing.
struct OnceStream {
    def: &'static TableDef,
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
    now: i64,
    tally: Arc<Tally>,
}

impl std::fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceStream")
            .field("table", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        let Some(input) = taken else {
            let error = DataFusionError::Internal(format!(
                "the rows of `{}` were already read once",
                self.def.name
            ));
            return Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(error) }),
            ));
        };
        let def = self.def;
        let now = self.now;
        let tally = self.tally.clone();
        let conformed = input.map(move |batch| {
            let conformed = batch.and_then(|batch| {
                prepare_batch(def, &batch, now).map_err(|e| DataFusionError::External(Box::new(e)))
            });
            match &conformed {
                Ok(batch) => {
                    tally.rows.fetch_add(batch.num_rows(), Ordering::Relaxed);
                }
                Err(error) => {
                    if let Ok(mut slot) = tally.failure.lock()
                        && slot.is_none()
                    {
                        *slot = Some(clone_error(error));
                    }
                }
            }
            conformed
        });
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            conformed,
        ))
    }
}

/// A copy of `error` good enough to report (DataFusion errors are not
/// `Clone`): exhaustion keeps its kind, anything else its message.
fn clone_error(error: &DataFusionError) -> DataFusionError {
    match error.find_root() {
        DataFusionError::ResourcesExhausted(message) => {
            DataFusionError::ResourcesExhausted(message.clone())
        }
        _ => DataFusionError::Execution(error.to_string()),
    }
}

/// The write's input: a scan of the streams, conformed to `def`.
fn source_plan(
    def: &'static TableDef,
    rows: RowStreams,
    tally: &Arc<Tally>,
) -> Result<LogicalPlan> {
    let schema = def.arrow_schema();
    let now = now_micros();
    let partitions: Vec<Arc<dyn PartitionStream>> = rows
        .streams
        .into_iter()
        .map(|stream| {
            Arc::new(OnceStream {
                def,
                schema: schema.clone(),
                stream: Mutex::new(Some(stream)),
                now,
                tally: tally.clone(),
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    let table = StreamingTable::try_new(schema, partitions)?;
    Ok(LogicalPlanBuilder::scan(def.name, provider_as_source(Arc::new(table)), None)?.build()?)
}

impl Warehouse {
    /// Replaces the whole table with the rows of `rows`, in one commit,
    /// without holding them in memory (marts recomputed in full). A table
    /// whose stored columns differ from the model's gets the model's
    /// columns in the same commit.
    pub async fn replace_all_streamed(
        &self,
        def: &'static TableDef,
        rows: RowStreams,
    ) -> Result<ReplaceStats> {
        let table = self.open_or_create(def).await?;
        let rows_removed = self
            .count_where(def, &table, &datafusion::logical_expr::lit(true))
            .await?;
        let schema_mode =
            super::stored_columns_differ(def, &table)?.then_some(SchemaMode::Overwrite);
        self.write_streamed(def, table, None, schema_mode, rows, rows_removed)
            .await
    }

    /// Replaces the rows matching `predicate` with the rows of `rows`, in
    /// one commit, without holding them in memory (marts recomputed for
    /// some components, scopes or months). Every row written must match
    /// `predicate`.
    pub async fn replace_where_streamed(
        &self,
        def: &'static TableDef,
        predicate: Expr,
        rows: RowStreams,
    ) -> Result<ReplaceStats> {
        let table = self.ensure_table(def).await?;
        let rows_removed = self.count_where(def, &table, &predicate).await?;
        self.write_streamed(def, table, Some(predicate), None, rows, rows_removed)
            .await
    }

    /// Replaces every row of the given partitions (`YYYY-MM` values of
    /// the table's partition column) with the rows of `rows`, in one
    /// commit, without holding them in memory (marts recomputed for some
    /// months). A partition listed without rows is emptied.
    pub async fn replace_partitions_streamed(
        &self,
        def: &'static TableDef,
        partitions: &[String],
        rows: RowStreams,
    ) -> Result<ReplaceStats> {
        if partitions.is_empty() {
            return Ok(ReplaceStats::default());
        }
        let predicate = super::replace::in_partitions(def, partitions)?;
        self.replace_where_streamed(def, predicate, rows).await
    }

    async fn write_streamed(
        &self,
        def: &'static TableDef,
        table: deltalake::DeltaTable,
        predicate: Option<Expr>,
        schema_mode: Option<SchemaMode>,
        rows: RowStreams,
        rows_removed: u64,
    ) -> Result<ReplaceStats> {
        let tally = Arc::new(Tally::default());
        let plan = source_plan(def, rows, &tally)?;
        let mut write = table
            .write(Vec::new())
            .with_input_plan(plan)
            .with_save_mode(SaveMode::Overwrite)
            .with_partition_columns(def.partition_columns());
        if let Some(predicate) = predicate {
            write = write.with_replace_where(predicate);
        }
        if let Some(mode) = schema_mode {
            write = write.with_schema_mode(mode);
        }
        let written = write.await.map_err(|error| {
            // The streams' own failure (the mart's query ran out of memory,
            // a row did not conform) is the cause worth reporting.
            match tally.failure.lock().ok().and_then(|mut slot| slot.take()) {
                Some(cause) => Error::from_engine(cause),
                None => Error::delta(def.name, error),
            }
        })?;
        Ok(ReplaceStats {
            rows_removed,
            rows_written: tally.rows.load(Ordering::Relaxed),
            version: written.version(),
        })
    }
}
