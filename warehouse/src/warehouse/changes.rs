//! What changed in a table since a version, read from the Delta log:
//! whether rows may have been removed (readers following `updated_at` must
//! start over), which partitions the commits touched (readers that
//! recompute by month recompute exactly those), and how old the rows they
//! added can be (readers following `updated_at` read from there).

use std::collections::BTreeSet;

use fathom_models::TableDef;

use super::Warehouse;
use crate::{Error, Result};

/// What the commits after a version added, from their files' statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddedRows {
    /// Data files added.
    pub files: usize,
    /// The smallest value of the column among their rows, microseconds
    /// since the epoch (statistics keep milliseconds: this is at most 1 ms
    /// below the true minimum, never above); `None` without files.
    pub oldest: Option<i64>,
}

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
        let Some(files) = data_changes(def, &table, first, current, &["add", "remove"]).await?
        else {
            return Ok(None);
        };
        let mut changed = BTreeSet::new();
        for file in files {
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
        Ok(Some(changed))
    }

    /// The oldest value of timestamp `column` among the rows of every
    /// data file committed after `version`, from the files' statistics.
    /// Exact for appends; a merge that rewrites a file re-adds its
    /// untouched rows too, which can only make the answer older (a reader
    /// then reads more than it must, never less). `None` when it cannot
    /// be told: a commit is no longer in the log, or a file has no
    /// statistics for `column`.
    pub async fn added_since(
        &self,
        def: &TableDef,
        version: u64,
        column: &str,
    ) -> Result<Option<AddedRows>> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(None);
        };
        let Some(current) = table.version() else {
            return Ok(None);
        };
        if current < version {
            return Ok(None);
        }
        let Some(files) = data_changes(def, &table, version + 1, current, &["add"]).await? else {
            return Ok(None);
        };
        let mut added = AddedRows::default();
        for file in files {
            let Some(oldest) = file
                .get("stats")
                .and_then(serde_json::Value::as_str)
                .and_then(|stats| serde_json::from_str::<serde_json::Value>(stats).ok())
                .and_then(|stats| {
                    let minimum = stats.get("minValues")?.get(column)?.as_str()?.to_owned();
                    chrono::DateTime::parse_from_rfc3339(&minimum).ok()
                })
                .map(|t| t.timestamp_micros())
            else {
                return Ok(None);
            };
            added.files += 1;
            added.oldest = Some(added.oldest.map_or(oldest, |o| o.min(oldest)));
        }
        Ok(Some(added))
    }
}

/// The file actions of kinds `kinds` (`add`, `remove`) that change data,
/// in the commits `first..=current` of `table` (compaction moves rows
/// without changing them, and is left out); `None` when a commit is no
/// longer in the log.
async fn data_changes(
    def: &TableDef,
    table: &deltalake::DeltaTable,
    first: u64,
    current: u64,
    kinds: &[&str],
) -> Result<Option<Vec<serde_json::Value>>> {
    let store = table.log_store();
    let mut files = Vec::new();
    for commit in first..=current {
        let Some(bytes) = store
            .read_commit_entry(commit)
            .await
            .map_err(|e| Error::delta(def.name, e))?
        else {
            return Ok(None);
        };
        for line in bytes.split(|b| *b == b'\n') {
            let Ok(mut action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            for kind in kinds {
                let Some(file) = action.get_mut(*kind).map(serde_json::Value::take) else {
                    continue;
                };
                if file.get("dataChange").and_then(serde_json::Value::as_bool) != Some(false) {
                    files.push(file);
                }
            }
        }
    }
    Ok(Some(files))
}
