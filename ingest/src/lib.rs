//! Everything that brings data into the warehouse. So far: bulk import of
//! CSV, NDJSON and Parquet files into any core table (`fathom import`), the
//! way users backfill history or migrate from another tool.
//!
//! Bad records never stop a load and are never dropped: each goes to the
//! `quarantine` table with its file, line, column and reason, and the good
//! rows load.

pub mod import;

pub use import::{FileFormat, FileReport, ImportProgress, ImportReport, NoProgress, import_files};

/// Result with the ingest error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while ingesting, beyond rejected records (which are
/// quarantined, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage failed; nothing from this load was committed. Boxed because
    /// storage errors are large and rare.
    #[error(transparent)]
    Warehouse(Box<fathom_warehouse::Error>),
    /// A background task died.
    #[error("import task failed: {0}")]
    Task(String),
}

impl From<fathom_warehouse::Error> for Error {
    fn from(error: fathom_warehouse::Error) -> Self {
        Self::Warehouse(Box::new(error))
    }
}
