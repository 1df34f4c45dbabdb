//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result};
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query, read_only_session};

/// The `fathom` binary built for these tests.
pub fn fathom_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fathom"))
}

/// Runs `fathom` with a warehouse (and state DB) in `data_dir`.
pub fn fathom(data_dir: &Path, args: &[&str]) -> Result<Output> {
    Command::new(fathom_bin())
        .args(args)
        .env("FATHOM_WAREHOUSE__URL", data_dir)
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env_remove("FATHOM_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .context("cannot run fathom")
}

/// A local warehouse at `dir`.
pub fn local_warehouse(dir: &Path) -> Result<Warehouse> {
    let location = fathom_warehouse::WarehouseLocation::parse(&dir.display().to_string())?;
    Ok(Warehouse::open(
        location,
        fathom_warehouse::StorageOptions::default(),
    )?)
}

/// Rows of a query, each as its columns' display strings.
pub async fn rows(warehouse: &Warehouse, sql: &str) -> Result<Vec<Vec<String>>> {
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let (_, batches) = query(&ctx, sql).await?;
    Ok(fathom_warehouse::query::text_rows(&batches)?)
}

/// A single number from a query.
pub async fn count(warehouse: &Warehouse, sql: &str) -> Result<i64> {
    let rows = rows(warehouse, sql).await?;
    let text = rows
        .first()
        .and_then(|r| r.first())
        .context("query returned no rows")?;
    text.parse()
        .with_context(|| format!("not a number: {text}"))
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, content: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, content)?;
    Ok(path)
}

/// Fixed timestamp text used in generated rows.
pub fn day_timestamp(day: u32) -> String {
    format!(
        "2026-{:02}-{:02}T12:00:00Z",
        1 + (day / 28) % 12,
        1 + day % 28
    )
}
