//! Marts computed from the core tables: a DataFusion session over the
//! warehouse, one `.sql` file per mart in `transforms/sql/`, Rust UDFs where
//! SQL is not enough, run in dependency order and incrementally.
//!
//! A mart is a deterministic function of its input tables. The DORA marts
//! (`dora_changes`, `dora_deployments`, `dora_metrics`, `dora_trends`) are
//! the first to arrive; until then this crate holds no code.
