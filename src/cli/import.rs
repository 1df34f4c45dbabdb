//! `fathom import`: files into a table, one commit, bad rows quarantined.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use fathom_ingest::{FileFormat, ImportProgress, NoProgress};

use super::{Config, ImportFormat, lookup_table, open_state, open_warehouse, pipeline};
use crate::progress::ImportBars;

pub(super) async fn import(
    config: &Config,
    table: &str,
    files: &[PathBuf],
    format: Option<ImportFormat>,
    json: bool,
) -> Result<ExitCode> {
    let table = lookup_table(table)?;
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let command = format!("import {} ({} file(s))", table.name, files.len());
    let run_id = state.start_run(&command).await?;
    let progress: Arc<dyn ImportProgress> =
        if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Arc::new(NoProgress)
        } else {
            Arc::new(ImportBars::new())
        };
    let format = format.map(|f| match f {
        ImportFormat::Csv => FileFormat::Csv,
        ImportFormat::Ndjson => FileFormat::NdJson,
        ImportFormat::Parquet => FileFormat::Parquet,
    });
    let report = pipeline(config, &warehouse, &state)
        .import(&run_id, table, files, format, progress)
        .await
        .with_context(|| format!("import into `{}` failed; nothing was committed", table.name))?;
    let loaded = report.rows_loaded();
    let rejected = report.rows_rejected();

    if json {
        let files: Vec<serde_json::Value> = report
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path.display().to_string(),
                    "format": f.format,
                    "rows_read": f.rows_read,
                    "rows_accepted": f.rows_accepted,
                    "rows_rejected": f.rows_rejected,
                    "ignored_columns": f.ignored_columns,
                    "error": f.error,
                })
            })
            .collect();
        let value = serde_json::json!({
            "run_id": run_id,
            "table": table.name,
            "rows_loaded": loaded,
            "rows_inserted": report.merge.rows_inserted,
            "rows_updated": report.merge.rows_updated,
            "rows_unchanged": report.merge.rows_unchanged,
            "rows_rejected": rejected,
            "entity_refs_derived": report.attribution.derived,
            "unattributed": report.attribution.unattributed,
            "files": files,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for f in &report.files {
            match &f.error {
                Some(error) => eprintln!("{}: error: {error}", f.path.display()),
                None => eprintln!(
                    "{}: {} read, {} accepted, {} rejected",
                    f.path.display(),
                    f.rows_read,
                    f.rows_accepted,
                    f.rows_rejected
                ),
            }
            if !f.ignored_columns.is_empty() {
                eprintln!(
                    "  ignored columns not in `{}`: {}",
                    table.name,
                    fathom_ingest::import::shown_names(&f.ignored_columns)
                );
            }
        }
        println!(
            "{}: {loaded} loaded ({} new, {} changed, {} unchanged), {rejected} rejected{}",
            table.name,
            report.merge.rows_inserted,
            report.merge.rows_updated,
            report.merge.rows_unchanged,
            if rejected > 0 {
                format!(
                    " (see: fathom sql \"SELECT line_number, column_name, reason FROM quarantine WHERE run_id = '{run_id}'\")"
                )
            } else {
                String::new()
            }
        );
    }
    if !json && report.attribution.derived > 0 {
        println!(
            "  {} row(s) named no component: attributed from the catalog by repository or application",
            report.attribution.derived
        );
    }
    if report.attribution.unattributed > 0 {
        eprintln!(
            "warning: {} row(s) of `{}` name no component and none could be derived (their repository or application matches no catalog annotation: github.com/project-slug, argocd/app-name); they are kept and shown on Data health. Import the catalog first, or give them an entity_ref.",
            report.attribution.unattributed, table.name
        );
    }
    Ok(if loaded == 0 {
        eprintln!("error: nothing could be loaded into `{}`", table.name);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
