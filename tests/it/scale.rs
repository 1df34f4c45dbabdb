//! The fast path to a large warehouse: `fathom sim export --core-tables`
//! writes the world's core tables as import files, and once imported they
//! give the DORA numbers of the world's own truth — the same rows ingest
//! would land from the simulators.

use anyhow::{Result, bail};
use fathom_sim::WorldConfig;
use fathom_sim::truth::Truth;

use crate::support::{count, fathom, local_warehouse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_core_tables_give_the_worlds_dora_numbers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let files = dir.path().join("world");
    let world = WorldConfig {
        teams: 3,
        services: 9,
        days: 90,
        ..WorldConfig::default()
    };
    let output = fathom(
        &data,
        &[
            "sim",
            "export",
            "--core-tables",
            "--teams",
            "3",
            "--services",
            "9",
            "--days",
            "90",
            "--to",
            &files.display().to_string(),
        ],
    )?;
    if !output.status.success() {
        bail!("export: {}", String::from_utf8_lossy(&output.stderr));
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    // It says how to load what it wrote; those commands are what we run.
    let imports: Vec<Vec<String>> = printed
        .lines()
        .filter_map(|line| line.trim().strip_prefix("fathom "))
        .map(|command| command.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        imports.iter().map(|c| c[1].as_str()).collect::<Vec<_>>(),
        [
            "catalog_entities",
            "deployments",
            "deployment_changes",
            "commits",
            "pull_requests",
            "pull_request_commits",
            "incidents"
        ],
        "{printed}"
    );
    for command in &imports {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let output = fathom(&data, &args)?;
        if !output.status.success() {
            bail!("{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    let output = fathom(&data, &["transform", "--as-of", "2026-07-01"])?;
    if !output.status.success() {
        bail!("transform: {}", String::from_utf8_lossy(&output.stderr));
    }

    let truth = Truth::compute(&fathom_sim::World::generate(world));
    let warehouse = local_warehouse(&data)?;
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM dora_deployments WHERE completed"
        )
        .await?,
        i64::try_from(truth.deployments.len())?
    );
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM quarantine").await?,
        0
    );
    crate::dora::assert_metrics_equal_truth(&warehouse, &truth).await?;
    Ok(())
}
