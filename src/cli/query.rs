//! `fathom sql` and `fathom schema`: queries and the data dictionary.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use fathom_models::{ALL_TABLES, TableDef, dictionary};
use fathom_warehouse::query::{OutputFormat, QueryLimits};

use super::{Config, SchemaFormat, SqlFormat, lookup_table, open_warehouse};

pub(super) async fn sql(config: &Config, query: &str, format: SqlFormat) -> Result<ExitCode> {
    // Refuse writes before touching storage, so the message is immediate.
    fathom_warehouse::query::ensure_read_only(query)?;
    let warehouse = open_warehouse(config)?;
    let limits = QueryLimits {
        memory_limit_bytes: Some(config.query.memory_limit_mib.saturating_mul(1 << 20)),
        ..QueryLimits::default()
    };
    let ctx = fathom_transforms::functions::analyst_session(&warehouse, limits).await?;
    let (schema, batches) = fathom_warehouse::query::query(&ctx, query).await?;
    let format = match format {
        SqlFormat::Table => OutputFormat::Table,
        SqlFormat::Csv => OutputFormat::Csv,
        SqlFormat::Json => OutputFormat::Json,
        SqlFormat::Ndjson => OutputFormat::NdJson,
        SqlFormat::Arrow => OutputFormat::ArrowIpc,
    };
    let bytes = fathom_warehouse::query::encode(&schema, &batches, format)?;
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn schema(table: Option<&str>, format: SchemaFormat) -> Result<ExitCode> {
    let tables = match table {
        Some(name) => vec![lookup_table(name)?],
        None => dictionary::all(),
    };
    let text = match format {
        SchemaFormat::Text => dictionary::text(&tables, &fathom_transforms::marts::lineage),
        SchemaFormat::Markdown => dictionary::markdown(&tables, &fathom_transforms::marts::lineage),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

pub(super) fn selected_tables(table: Option<&str>) -> Result<Vec<&'static TableDef>> {
    Ok(match table {
        Some(name) => vec![lookup_table(name)?],
        None => ALL_TABLES.iter().collect(),
    })
}
