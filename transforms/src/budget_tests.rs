//! The marts' memory budget (`[transforms] memory_limit_mib`): under a
//! budget they spill and still write exactly the rows they write in
//! memory; below what a mart needs even spilling, the run fails naming the
//! setting instead of taking the process down.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::properties::{Commit, Service, land, mart_rows, rows, start};
use crate::{Error, NoProgress, Parameters, RunOptions, run};

/// A history large enough for the marts' sorts and joins to need several
/// MiB: `services` per team, each deploying every three hours for six
/// weeks with four commits of every kind, and an incident a week.
fn history(services: usize) -> BTreeMap<&'static str, Vec<Map<String, Value>>> {
    let service = |s: usize| Service {
        deployments: (0..330u32)
            .map(|d| {
                let minute = 180 * d + (s as u32 % 7) * 11;
                let commits = (0..4u8)
                    .map(|c| Commit {
                        age: 60 * i32::from(c + 1) + (d % 5) as i32 * 90,
                        link: c,
                        pr: (d % 50) as u8,
                        shared: c == 3 && d % 4 == 0,
                        files: c % 3,
                    })
                    .collect();
                (minute, d % 9 != 0, d % 31 == 0, commits)
            })
            .collect(),
        incidents: (0..6u32)
            .map(|w| (w * 7 * 1440 + 600, 45 + w * 10))
            .collect(),
    };
    let mut tables = BTreeMap::new();
    for team in ["team-a", "team-b"] {
        let team_services: Vec<Service> = (0..services).map(service).collect();
        rows(team, &team_services, &mut tables);
    }
    tables
}

fn options(full: bool) -> RunOptions<'static> {
    RunOptions {
        only: None,
        as_of: start() + chrono::Duration::days(41),
        full,
        previous: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marts_over_budget_spill_and_equal_the_marts_computed_in_memory() -> anyhow::Result<()> {
    let tables = history(12);
    let unbounded = Parameters {
        memory_limit_mib: 0,
        ..Parameters::default()
    };
    let in_memory = fathom_warehouse::Warehouse::in_memory()?;
    land(&in_memory, &tables)
        .await
        .map_err(anyhow::Error::msg)?;
    let free = run(&in_memory, &unbounded, options(true), &NoProgress).await?;
    assert!(
        free.marts.iter().all(|m| m.spilled_bytes == 0),
        "{:?}",
        free.marts
    );
    assert!(
        free.marts
            .iter()
            .any(|m| m.mart == "dora_deployments" && m.rows > 7_000),
        "{:?}",
        free.marts
    );

    let budget = Parameters {
        // Measured on this history: 32 MiB is too little even spilling
        // (every sort holds 10 MB back for its merge), at 48 and 64 MiB
        // the DORA marts spill, at 96 MiB nothing does.
        memory_limit_mib: 56,
        ..Parameters::default()
    };
    let spilling = fathom_warehouse::Warehouse::in_memory()?;
    land(&spilling, &tables).await.map_err(anyhow::Error::msg)?;
    let tight = run(&spilling, &budget, options(true), &NoProgress).await?;
    let spilled: u64 = tight.marts.iter().map(|m| m.spilled_bytes).sum();
    assert!(spilled > 0, "nothing spilled: {:?}", tight.marts);
    let expected = mart_rows(&in_memory).await.map_err(anyhow::Error::msg)?;
    let got = mart_rows(&spilling).await.map_err(anyhow::Error::msg)?;
    for (mart, rows) in &expected {
        assert_eq!(got.get(mart).map(Vec::len), Some(rows.len()), "{mart}");
        assert!(got.get(mart) == Some(rows), "{mart} differs when spilling");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mart_past_the_budget_fails_naming_the_setting() -> anyhow::Result<()> {
    let warehouse = fathom_warehouse::Warehouse::in_memory()?;
    land(&warehouse, &history(12))
        .await
        .map_err(anyhow::Error::msg)?;
    let starved = Parameters {
        memory_limit_mib: 1,
        ..Parameters::default()
    };
    let error = run(&warehouse, &starved, options(true), &NoProgress)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("the marts ran in 1 MiB"))?;
    assert!(
        matches!(error, Error::MemoryBudget { limit_mib: 1, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("`[transforms] memory_limit_mib` = 1"),
        "{message}"
    );
    // Nothing half-written: the failing mart has no rows.
    let Error::MemoryBudget { mart, .. } = error else {
        unreachable!()
    };
    let written = mart_rows(&warehouse).await.map_err(anyhow::Error::msg)?;
    assert_eq!(
        written.get(mart).map(Vec::len),
        Some(0),
        "{mart} was written"
    );
    Ok(())
}
