//! A `fathom import` killed at any moment leaves every table at its last
//! committed version: never a partial load, and the next load completes it
//! with no duplicates.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::support::{count, day_timestamp, fathom_bin, local_warehouse};

const N_ROWS: usize = 200_000;

#[tokio::test]
async fn killed_imports_leave_no_partial_rows_and_reload_has_no_duplicates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("warehouse");
    let csv_path = dir.path().join("deployments.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
    writeln!(
        file,
        "deployment_id,source,entity_ref,environment,status,revision,started_at"
    )?;
    for i in 0..N_ROWS {
        writeln!(
            file,
            "dep-{i},import,service-{},production,success,{:040x},{}",
            i % 50,
            i,
            day_timestamp((i % 365) as u32)
        )?;
    }
    file.flush()?;
    drop(file);

    let import = || {
        Command::new(fathom_bin())
            .args(["import", "deployments"])
            .arg(&csv_path)
            .env("FATHOM_WAREHOUSE__URL", &data)
            .env_remove("FATHOM_STATE__DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let warehouse = local_warehouse(&data)?;
    let mut killed_while_running = 0;
    for delay_ms in [100u64, 400, 900, 1600, 2500, 4000] {
        let mut child = import()?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait()?.is_none() {
            child.kill()?;
            killed_while_running += 1;
        }
        child.wait()?;
        let rows = count(&warehouse, "SELECT count(*) FROM deployments").await?;
        assert!(
            rows == 0 || rows == N_ROWS as i64,
            "after a kill at {delay_ms} ms the table holds {rows} rows: a partial load"
        );
    }
    assert!(
        killed_while_running > 0,
        "no import was still running when killed"
    );
    println!("{killed_while_running} import(s) killed mid-run");

    // Two complete loads after the kills: all rows, once each.
    for _ in 0..2 {
        let status = import()?.wait()?;
        assert!(status.success());
        assert_eq!(
            count(&warehouse, "SELECT count(*) FROM deployments").await?,
            N_ROWS as i64
        );
        assert_eq!(
            count(
                &warehouse,
                "SELECT count(DISTINCT deployment_id) FROM deployments"
            )
            .await?,
            N_ROWS as i64
        );
    }
    Ok(())
}
