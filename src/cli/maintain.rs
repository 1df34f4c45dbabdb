//! Warehouse upkeep: `fathom optimize`, `fathom warehouse retain`, `fathom
//! vacuum`.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::query::selected_tables;
use super::{Config, open_warehouse};

pub(super) async fn optimize(config: &Config, table: Option<&str>) -> Result<ExitCode> {
    let warehouse = open_warehouse(config)?;
    for def in selected_tables(table)? {
        let stats = warehouse.optimize(def).await?;
        println!(
            "{}: {} file(s) compacted into {} ({} partition(s))",
            def.name, stats.files_removed, stats.files_added, stats.partitions_optimized
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn retain(config: &Config, dry_run: bool) -> Result<ExitCode> {
    let days = config.usage.retention_days;
    let warehouse = open_warehouse(config)?;
    let Some(done) =
        fathom_pipeline::retention::portal_events(&warehouse, days, chrono::Utc::now(), dry_run)
            .await?
    else {
        println!("portal_events: kept forever ([usage] retention_days = 0)");
        return Ok(ExitCode::SUCCESS);
    };
    let (n, cutoff) = (done.events, done.cutoff.to_rfc3339());
    if dry_run {
        println!(
            "portal_events: {n} event(s) before {cutoff} would be deleted ({days}-day retention)"
        );
    } else {
        println!(
            "portal_events: {n} event(s) before {cutoff} deleted ({days}-day retention); `fathom vacuum` removes their files once older versions expire"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn vacuum(
    config: &Config,
    table: Option<&str>,
    retention_hours: i64,
    force: bool,
    dry_run: bool,
) -> Result<ExitCode> {
    if retention_hours < 168 && !force {
        bail!(
            "a retention of {retention_hours}h is below the 168h default and can break readers of older versions; pass --force to allow it"
        );
    }
    let warehouse = open_warehouse(config)?;
    for def in selected_tables(table)? {
        let stats = warehouse
            .vacuum(
                def,
                chrono::Duration::hours(retention_hours),
                !force,
                dry_run,
            )
            .await?;
        let verb = if stats.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!("{}: {verb} {} file(s)", def.name, stats.files_deleted);
    }
    Ok(ExitCode::SUCCESS)
}
