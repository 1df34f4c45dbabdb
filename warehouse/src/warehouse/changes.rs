//! What changed in a table since a version, read from the Delta log:
//! whether rows may have been removed (readers following `updated_at` must
//! start over), and which partitions the commits touched (readers that
//! recompute by month recompute exactly those).

use std::collections::BTreeSet;

use fathom_models::TableDef;

use super::Warehouse;
use crate::{Error, Result};

impl Warehouse {
    /// Whether a commit after `version` may have removed rows without
    /// writing them again (a delete, an overwrite, a table re-created):
    /// readers that follow the table by `updated_at` must start over.
    /// Merges and appends only add or update rows.
    pub async fn removed_rows_since(&self, def: &TableDef, version: u64) -> Result<bool> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(true);
        };
        let Some(current) = table.version() else {
            return Ok(true);
        };
        if current < version {
            return Ok(true);
        }
        let newer = usize::try_from(current - version).unwrap_or(usize::MAX);
        if newer == 0 {
            return Ok(false);
        }
        let commits: Vec<_> = futures::TryStreamExt::try_collect(table.history(Some(newer)))
            .await
            .map_err(|e| Error::delta(def.name, e))?;
        Ok(commits.iter().any(|commit| {
            let operation = commit.operation.as_deref().unwrap_or_default();
            let mode = commit
                .operation_parameters
                .as_ref()
                .and_then(|p| p.get("mode"))
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            match operation {
                "MERGE" | "OPTIMIZE" | "VACUUM START" | "VACUUM END" | "SET TBLPROPERTIES" => false,
                "WRITE" => mode.eq_ignore_ascii_case("overwrite"),
                _ => true,
            }
        }))
    }

    /// The partitions (values of the table's partition column) whose rows
    /// any commit after `version` (every commit, for `None`: the table did
    /// not exist) added, removed or rewrote, read from the actions of those
    /// commits. `None` when that cannot be told: the table is not
    /// partitioned or is behind `version`, a commit is no longer in the
    /// log, or an action names no partition. Readers that recompute by
    /// partition recompute exactly these.
    pub async fn changed_partitions_since(
        &self,
        def: &TableDef,
        version: Option<u64>,
    ) -> Result<Option<BTreeSet<String>>> {
        let Some(partition) = def.partition else {
            return Ok(None);
        };
        let Some(table) = self.open_table(def).await? else {
            return Ok(None);
        };
        let Some(current) = table.version() else {
            return Ok(None);
        };
        let first = match version {
            Some(version) if current < version => return Ok(None),
            Some(version) => version + 1,
            None => 0,
        };
        let store = table.log_store();
        let mut changed = BTreeSet::new();
        for commit in first..=current {
            let Some(bytes) = store
                .read_commit_entry(commit)
                .await
                .map_err(|e| Error::delta(def.name, e))?
            else {
                return Ok(None);
            };
            for line in bytes.split(|b| *b == b'\n') {
                let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                for kind in ["add", "remove"] {
                    // Compaction moves rows without changing them.
                    let Some(file) = action.get(kind).filter(|f| {
                        f.get("dataChange").and_then(serde_json::Value::as_bool) != Some(false)
                    }) else {
                        continue;
                    };
                    match file
                        .get("partitionValues")
                        .and_then(|v| v.get(partition.column))
                        .and_then(serde_json::Value::as_str)
                    {
                        Some(value) => {
                            changed.insert(value.to_owned());
                        }
                        None => return Ok(None),
                    }
                }
            }
        }
        Ok(Some(changed))
    }
}
