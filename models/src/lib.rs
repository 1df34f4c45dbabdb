//! The shared vocabulary of Fathom: every warehouse table declared once, and
//! the domain types every other crate speaks (entity refs).
//!
//! This crate does no I/O and is synchronous, so every crate may depend on it.
//! A table's declaration ([`TableDef`]) is the single source of its name, Arrow
//! schema, primary key, partitioning and documentation: the warehouse creates
//! tables from it, the importer coerces input to it, and `fathom schema`
//! prints the data dictionary from it.

pub mod dictionary;
mod entity_ref;
mod schema;
pub mod tables;

pub use entity_ref::{EntityRef, EntityRefError};
pub use schema::{
    ColumnDef, ColumnType, LIST_ITEM_FIELD, MAP_ENTRIES_FIELD, MAP_KEY_FIELD, MAP_VALUE_FIELD,
    MonthPartition, TableDef, Vocabulary, map_entries_field,
};
pub use tables::{ALL_TABLES, table};
