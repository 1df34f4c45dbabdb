//! Storage of the warehouse: Delta Lake tables on object storage, and the
//! state database (cursors, run ledger, tokens, audit log).
//!
//! This is the only crate that writes storage. Every write to a table is one
//! Delta commit, so a process killed at any moment leaves each table at its
//! last committed version: files written by an interrupted commit are never
//! referenced and are removed later by `vacuum`.
//!
//! Tables are addressed under one root URL: `file:///…` (default
//! `./fathom-data`), `s3://bucket/prefix` (credentials from the environment;
//! an S3-compatible endpoint can be configured) or `memory://` for tests.

mod error;
mod location;
pub mod query;
pub mod state;
mod table_write;
mod warehouse;

pub use error::{Error, Result};
pub use location::{StorageOptions, WarehouseLocation};
pub use table_write::{MergeStats, ReplaceStats, prepare_batch, superseded_rows, without_rows};
pub use warehouse::{AddedRows, OptimizeStats, RowStreams, TableStatus, VacuumStats, Warehouse};
