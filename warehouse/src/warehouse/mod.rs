//! The warehouse: one Delta table per model under a root location.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, Operator, binary_expr, col};
use datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{StructField, StructType};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore};
use fathom_models::{ALL_TABLES, TableDef};
use tracing::{debug, info};

use crate::table_write::{MergeStats, dedupe_last_wins, now_micros, prepare_batch};
use crate::{Error, Result, StorageOptions, WarehouseLocation};

mod changes;
mod files;

pub use changes::AddedRows;
mod replace;
mod streamed;

pub use streamed::RowStreams;
mod upgrade;

/// What `optimize` did to one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptimizeStats {
    /// Files written by compaction.
    pub files_added: u64,
    /// Small files replaced.
    pub files_removed: u64,
    /// Partitions touched.
    pub partitions_optimized: u64,
}

/// What `vacuum` did (or would do, in a dry run) to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumStats {
    /// Files deleted (or that would be).
    pub files_deleted: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// The committed state of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStatus {
    /// Table name.
    pub name: &'static str,
    /// Latest committed version; `None` when the table was never created.
    pub version: Option<u64>,
    /// Data files in the latest version.
    pub n_files: usize,
}

/// Handle on the warehouse. Cheap to clone; holds no open tables, so every
/// operation sees the latest committed version.
#[derive(Clone)]
pub struct Warehouse {
    location: WarehouseLocation,
    storage_options: StorageOptions,
    /// `memory://` tables must share one store, or each open would see an
    /// empty one.
    memory_store: Option<Arc<dyn ObjectStore>>,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("location", &self.location)
            .field("storage_options", &self.storage_options)
            .finish_non_exhaustive()
    }
}

impl Warehouse {
    /// Opens the warehouse at `location`, creating the local directory if
    /// needed. Tables are created lazily, on first write.
    pub fn open(location: WarehouseLocation, storage_options: StorageOptions) -> Result<Self> {
        if location.is_local() {
            let path = location
                .root()
                .to_file_path()
                .map_err(|()| Error::InvalidLocation {
                    url: location.to_string(),
                    reason: "not a local path".to_owned(),
                })?;
            std::fs::create_dir_all(&path).map_err(|e| Error::InvalidLocation {
                url: location.to_string(),
                reason: format!("cannot create directory `{}`: {e}", path.display()),
            })?;
        }
        let memory_store = location
            .is_memory()
            .then(|| Arc::new(object_store::memory::InMemory::new()) as Arc<dyn ObjectStore>);
        Ok(Self {
            location,
            storage_options,
            memory_store,
        })
    }

    /// A warehouse in process memory, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::open(
            WarehouseLocation::parse("memory:///")?,
            StorageOptions::default(),
        )
    }

    /// Where the warehouse lives.
    pub fn location(&self) -> &WarehouseLocation {
        &self.location
    }

    fn builder(&self, def: &TableDef) -> Result<DeltaTableBuilder> {
        let url = self.location.table_url(def.name)?;
        let builder =
            DeltaTableBuilder::from_url(url.clone()).map_err(|e| Error::delta(def.name, e))?;
        Ok(match &self.memory_store {
            Some(store) => builder.with_storage_backend(store.clone(), url),
            None => builder.with_storage_options(
                self.storage_options
                    .0
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            ),
        })
    }

    /// The directory of a table on the local file system, if local.
    fn local_table_dir(&self, def: &TableDef) -> Result<Option<std::path::PathBuf>> {
        if !self.location.is_local() {
            return Ok(None);
        }
        let url = self.location.table_url(def.name)?;
        url.to_file_path()
            .map(Some)
            .map_err(|()| Error::InvalidLocation {
                url: url.to_string(),
                reason: "not a local path".to_owned(),
            })
    }

    /// Opens a table at its latest committed version; `None` if it was never
    /// created.
    pub async fn open_table(&self, def: &TableDef) -> Result<Option<DeltaTable>> {
        if let Some(dir) = self.local_table_dir(def)?
            && !dir.exists()
        {
            return Ok(None);
        }
        let mut table = self
            .builder(def)?
            .build()
            .map_err(|e| Error::delta(def.name, e))?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(Error::delta(def.name, e)),
        }
    }

    /// Opens a table, creating it with the model's schema if it does not
    /// exist yet. A table an earlier release wrote gets the model's new (nullable)
    /// columns first: every write but a whole rewrite goes through here.
    pub async fn ensure_table(&self, def: &TableDef) -> Result<DeltaTable> {
        let table = self.open_or_create(def).await?;
        upgrade::add_missing_columns(def, table).await
    }

    /// Opens a table as stored, creating it with the model's schema if it
    /// does not exist yet (a whole rewrite brings its own schema).
    pub(crate) async fn open_or_create(&self, def: &TableDef) -> Result<DeltaTable> {
        if let Some(table) = self.open_table(def).await? {
            return Ok(table);
        }
        let table = self
            .builder(def)?
            .build()
            .map_err(|e| Error::delta(def.name, e))?;
        let created = table
            .create()
            .with_table_name(def.name)
            .with_comment(def.description)
            .with_columns(kernel_fields(def)?)
            .with_partition_columns(def.partition_columns())
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(table) => {
                info!(table = def.name, "created table");
                Ok(table)
            }
            // Another process created it first: use theirs.
            Err(create_error) => match self.open_table(def).await? {
                Some(table) => Ok(table),
                None => Err(Error::delta(def.name, create_error)),
            },
        }
    }

    /// Upserts rows on the table's primary key in one commit: new keys are
    /// inserted, existing keys whose content differs are updated, identical
    /// rows are left alone. Rows sharing a key within `batches` collapse to
    /// the last one. Loading the same rows twice therefore changes nothing.
    pub async fn merge(&self, def: &TableDef, batches: &[RecordBatch]) -> Result<MergeStats> {
        self.merge_impl(def, batches, true).await
    }

    /// Inserts the rows whose keys are not in the table yet and leaves the
    /// others alone, even when their content differs. For append-only
    /// records that can be delivered twice (raw payloads: the same answer
    /// fetched again must not rewrite the row).
    pub async fn insert_missing(
        &self,
        def: &TableDef,
        batches: &[RecordBatch],
    ) -> Result<MergeStats> {
        self.merge_impl(def, batches, false).await
    }

    async fn merge_impl(
        &self,
        def: &TableDef,
        batches: &[RecordBatch],
        update_matched: bool,
    ) -> Result<MergeStats> {
        let prepared = prepare_all(def, batches)?;
        let (source, superseded) = dedupe_last_wins(def, &prepared)?;
        let Some(source) = source else {
            return Ok(MergeStats::default());
        };
        let rows_in = source.num_rows();
        let table = self.ensure_table(def).await?;
        let n_files = table
            .snapshot()
            .map(|s| s.log_data().num_files())
            .map_err(|e| Error::delta(def.name, e))?;
        if n_files == 0 {
            // Nothing to match against: a plain append is the same merge,
            // without the join.
            let table = table
                .write(vec![source])
                .with_save_mode(SaveMode::Append)
                .with_partition_columns(def.partition_columns())
                .await
                .map_err(|e| Error::delta(def.name, e))?;
            return Ok(MergeStats {
                rows_in,
                rows_superseded: superseded,
                rows_inserted: rows_in,
                rows_updated: 0,
                rows_unchanged: 0,
                version: table.version(),
            });
        }
        let ctx = SessionContext::new();
        let source_frame = ctx.read_batch(source)?;
        let (table, metrics) = table
            .merge(source_frame, key_predicate(def))
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_update(|update| {
                let predicate = if update_matched {
                    content_changed(def)
                } else {
                    datafusion::logical_expr::lit(false)
                };
                let mut update = update.predicate(predicate);
                for column in def.columns.iter().filter(|c| !def.is_key(c.name)) {
                    update = update.update(column.name, source_col(column.name));
                }
                update
            })
            .map_err(|e| Error::delta(def.name, e))?
            .when_not_matched_insert(|insert| {
                def.columns.iter().fold(insert, |insert, column| {
                    insert.set(column.name, source_col(column.name))
                })
            })
            .map_err(|e| Error::delta(def.name, e))?
            .await
            .map_err(|e| Error::delta(def.name, e))?;
        debug!(table = def.name, ?metrics, "merged");
        let changed = metrics.num_target_rows_inserted + metrics.num_target_rows_updated;
        Ok(MergeStats {
            rows_in,
            rows_superseded: superseded,
            rows_inserted: metrics.num_target_rows_inserted,
            rows_updated: metrics.num_target_rows_updated,
            rows_unchanged: rows_in.saturating_sub(changed),
            version: table.version(),
        })
    }

    /// The table's latest version; `None` if it was never created.
    pub async fn version(&self, def: &TableDef) -> Result<Option<u64>> {
        Ok(self.open_table(def).await?.and_then(|t| t.version()))
    }

    /// Whether the stored table's columns (names, in order) differ from
    /// the model's: a mart written by an earlier release, to be rewritten
    /// whole with the new columns. False when the table does not exist.
    pub async fn columns_changed(&self, def: &TableDef) -> Result<bool> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(false);
        };
        stored_columns_differ(def, &table)
    }

    /// Deletes the rows matching `predicate` (retention), in one commit.
    /// Returns the number of rows deleted.
    pub async fn delete_where(&self, def: &TableDef, predicate: Expr) -> Result<u64> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(0);
        };
        let matching = self.count_where(def, &table, &predicate).await?;
        if matching == 0 {
            return Ok(0);
        }
        table
            .delete()
            .with_predicate(predicate)
            .await
            .map_err(|e| Error::delta(def.name, e))?;
        Ok(matching)
    }

    /// How many rows of `def` match `predicate` (0 for a table never
    /// written).
    pub async fn count_matching(&self, def: &TableDef, predicate: &Expr) -> Result<u64> {
        match self.open_table(def).await? {
            Some(table) => self.count_where(def, &table, predicate).await,
            None => Ok(0),
        }
    }

    async fn count_where(
        &self,
        def: &TableDef,
        table: &DeltaTable,
        predicate: &Expr,
    ) -> Result<u64> {
        let n_files = table
            .snapshot()
            .map(|s| s.log_data().num_files())
            .map_err(|e| Error::delta(def.name, e))?;
        if n_files == 0 {
            return Ok(0);
        }
        let ctx = SessionContext::new();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| Error::delta(def.name, e))?;
        let provider = table.table_provider().await?;
        let frame = ctx.read_table(provider)?.filter(predicate.clone())?;
        Ok(frame.count().await? as u64)
    }

    /// Appends rows in one commit, without matching keys. For tables whose
    /// rows are never re-delivered (raw payloads) or when the caller knows
    /// the keys are new.
    pub async fn append(&self, def: &TableDef, batches: &[RecordBatch]) -> Result<Option<u64>> {
        let prepared = prepare_all(def, batches)?;
        if prepared.is_empty() {
            return Ok(None);
        }
        let table = self.ensure_table(def).await?;
        let table = table
            .write(prepared)
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(def.partition_columns())
            .await
            .map_err(|e| Error::delta(def.name, e))?;
        Ok(table.version())
    }

    /// Compacts small files. Data is unchanged; readers of older versions
    /// keep working until `vacuum` removes the replaced files.
    pub async fn optimize(&self, def: &TableDef) -> Result<OptimizeStats> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(OptimizeStats::default());
        };
        let (_, metrics) = table
            .optimize()
            .await
            .map_err(|e| Error::delta(def.name, e))?;
        Ok(OptimizeStats {
            files_added: metrics.num_files_added,
            files_removed: metrics.num_files_removed,
            partitions_optimized: metrics.partitions_optimized,
        })
    }

    /// Deletes files no version newer than `retention` refers to, including
    /// files left behind by interrupted writes. Retention below the table's
    /// default (7 days) is refused unless `enforce_retention` is false,
    /// because readers of older versions would break.
    pub async fn vacuum(
        &self,
        def: &TableDef,
        retention: chrono::Duration,
        enforce_retention: bool,
        dry_run: bool,
    ) -> Result<VacuumStats> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(VacuumStats {
                files_deleted: 0,
                dry_run,
            });
        };
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(enforce_retention)
            .with_dry_run(dry_run)
            .await
            .map_err(|e| Error::delta(def.name, e))?;
        Ok(VacuumStats {
            files_deleted: metrics.files_deleted.len(),
            dry_run: metrics.dry_run,
        })
    }

    /// The committed version and file count of a table.
    pub async fn status(&self, def: &TableDef) -> Result<TableStatus> {
        let table = self.open_table(def).await?;
        let (version, n_files) = match &table {
            Some(table) => (
                table.version(),
                table
                    .snapshot()
                    .map(|s| s.log_data().num_files())
                    .map_err(|e| Error::delta(def.name, e))?,
            ),
            None => (None, 0),
        };
        Ok(TableStatus {
            name: def.name,
            version,
            n_files,
        })
    }

    /// Registers every model table in `ctx` at its latest committed version.
    /// A table never written is registered empty with its schema, so queries
    /// plan the same on a new warehouse, and reading creates nothing.
    pub async fn register_tables(&self, ctx: &SessionContext) -> Result<()> {
        for def in ALL_TABLES {
            self.register_table(ctx, def).await?;
        }
        Ok(())
    }

    /// Registers (or re-registers) one table in `ctx` at its latest
    /// committed version, empty with its schema if never written.
    pub async fn register_table(&self, ctx: &SessionContext, def: &TableDef) -> Result<()> {
        if ctx.table_exist(def.name)? {
            ctx.deregister_table(def.name)?;
        }
        match self.open_table(def).await? {
            Some(table) => {
                table
                    .update_datafusion_session(&ctx.state())
                    .map_err(|e| Error::delta(def.name, e))?;
                let provider = plain_provider(def.name, &table, table.table_provider().await?)?;
                let provider = upgrade::with_model_columns(ctx, def, &table, provider)?;
                ctx.register_table(def.name, provider)?;
            }
            None => {
                let empty = MemTable::try_new(def.arrow_schema(), vec![vec![]])?;
                ctx.register_table(def.name, Arc::new(empty))?;
            }
        }
        Ok(())
    }
}

/// `provider` (the table's) reading the same files with the same types,
/// but without the column comments: queries see plain columns, so a union
/// of two tables' columns or a comparison needs no casts to drop them. The
/// comments stay in the Delta schema for other engines, and in the data
/// dictionary.
fn plain_provider(
    name: &str,
    table: &DeltaTable,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let schema = provider.schema();
    if schema.fields().iter().all(|f| f.metadata().is_empty()) {
        return Ok(provider);
    }
    let plain: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(name, e))?
        .snapshot()
        .clone();
    let scan = deltalake::delta_datafusion::DeltaScanNext::new(
        snapshot,
        deltalake::delta_datafusion::DeltaScanConfig::new()
            .with_schema(Arc::new(arrow::datatypes::Schema::new(plain))),
    )?;
    Ok(Arc::new(scan))
}

/// Non-empty batches conformed to the table, stamped with one `updated_at`.
fn prepare_all(def: &TableDef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let now = now_micros();
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| prepare_batch(def, b, now))
        .collect()
}

/// The model's columns as Delta fields, with descriptions as `comment`
/// metadata so other engines (Spark, Databricks) show them.
fn kernel_fields(def: &TableDef) -> Result<Vec<StructField>> {
    let schema = def.arrow_schema();
    let kernel: StructType = schema.as_ref().try_into_kernel()?;
    Ok(kernel
        .fields()
        .zip(def.columns)
        .map(|(field, column)| {
            field
                .clone()
                .with_metadata([("comment", column.description)])
        })
        .collect())
}

fn target_col(name: &str) -> Expr {
    col(format!("target.{name}"))
}

fn source_col(name: &str) -> Expr {
    col(format!("source.{name}"))
}

fn key_predicate(def: &TableDef) -> Expr {
    def.primary_key
        .iter()
        .map(|key| target_col(key).eq(source_col(key)))
        .reduce(Expr::and)
        .unwrap_or_else(|| datafusion::logical_expr::lit(false))
}

/// True when any column besides the key, the derived partition and
/// `updated_at` differs, so identical reloads leave rows (and `updated_at`)
/// untouched.
fn content_changed(def: &TableDef) -> Expr {
    let partition = def.partition.map(|p| p.column);
    def.columns
        .iter()
        .filter(|c| !def.is_key(c.name) && c.name != "updated_at" && Some(c.name) != partition)
        .map(|c| {
            binary_expr(
                target_col(c.name),
                Operator::IsDistinctFrom,
                source_col(c.name),
            )
        })
        .reduce(Expr::or)
        .unwrap_or_else(|| datafusion::logical_expr::lit(false))
}

#[cfg(test)]
mod tests;

/// Whether `table`'s stored columns differ from `def`'s.
pub(crate) fn stored_columns_differ(def: &TableDef, table: &DeltaTable) -> Result<bool> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(def.name, e))?;
    let schema = snapshot.schema();
    let stored: Vec<&str> = schema.fields().map(|f| f.name().as_str()).collect();
    let model: Vec<&str> = def.columns.iter().map(|c| c.name).collect();
    Ok(stored != model)
}
