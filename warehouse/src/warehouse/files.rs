//! Files the warehouse keeps for itself next to its tables, under
//! `_fathom/` (not a table, so no reader of tables sees them): state that
//! must live and die with the tables it describes — e.g. the anomaly
//! detector's state per series, which a daily run continues from. A file
//! is written whole in one put: readers see the old one or the new one.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::Warehouse;
use crate::{Error, Result};

/// Folder of the warehouse's own files.
const FOLDER: &str = "_fathom";

impl Warehouse {
    fn files_store(&self) -> Result<(Arc<dyn ObjectStore>, Path)> {
        match &self.memory_store {
            Some(store) => Ok((store.clone(), Path::from(FOLDER))),
            None => {
                let (store, root) = self.location.object_store(&self.storage_options)?;
                Ok((store, root.join(FOLDER)))
            }
        }
    }

    /// The warehouse's own file `name`; `None` when there is none.
    pub async fn read_own_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let (store, folder) = self.files_store()?;
        match store.get(&folder.clone().join(name)).await {
            Ok(found) => Ok(Some(
                found.bytes().await.map_err(|e| storage(name, &e))?.to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(name, &e)),
        }
    }

    /// Writes the warehouse's own file `name` whole.
    pub async fn write_own_file(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let (store, folder) = self.files_store()?;
        store
            .put(&folder.clone().join(name), bytes.into())
            .await
            .map_err(|e| storage(name, &e))?;
        Ok(())
    }

    /// Removes the warehouse's own file `name` (nothing when absent).
    pub async fn remove_own_file(&self, name: &str) -> Result<()> {
        let (store, folder) = self.files_store()?;
        match store.delete(&folder.clone().join(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(name, &e)),
        }
    }
}

fn storage(name: &str, error: &object_store::Error) -> Error {
    Error::InvalidLocation {
        url: format!("{FOLDER}/{name}"),
        reason: error.to_string(),
    }
}
