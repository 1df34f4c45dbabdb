//! Everything that brings data into the warehouse: bulk import of CSV,
//! NDJSON and Parquet files into any core table (`fathom import`), and the
//! upstream sources (`fathom ingest`): a small [`source::SourceConfig`]
//! registry, one module per upstream under `sources/`, the shared HTTP
//! policy ([`http`]), identity mapping ([`identity`]) and the runner that
//! commits data before cursors ([`runner`]).
//!
//! Bad records never stop a load and are never dropped: each goes to the
//! `quarantine` table with its file, line, column and reason, and the good
//! rows load.

pub mod files;
pub mod http;
pub mod identity;
pub mod import;
pub mod runner;
pub mod source;
pub mod sources;
#[cfg(test)]
mod test_support;
pub mod webhooks;

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
    /// `--source` names no configured source.
    #[error("no source named `{name}`; configured: {}", known.join(", "))]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The configured names.
        known: Vec<String>,
    },
    /// The catalog could not be read for identity mapping.
    #[error("cannot read the catalog for identity mapping: {0}")]
    Identity(String),
}

impl From<fathom_warehouse::Error> for Error {
    fn from(error: fathom_warehouse::Error) -> Self {
        Self::Warehouse(Box::new(error))
    }
}
