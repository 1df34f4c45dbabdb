//! What a daily refresh recomputes: after a bulk import, only what the
//! new day touched (every imported row shares one `updated_at`, and must
//! not look new again the day after); when the day touched most
//! components, the component marts whole (cheaper than restricting them).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::properties::{Commit, Service, land, mart_rows, rows, start};
use crate::{NoProgress, Parameters, RunOptions, run};

type Tables = BTreeMap<&'static str, Vec<Map<String, Value>>>;

/// A service deploying every `every` minutes from `first`, one commit each.
fn service(first: u32, every: u32, count: u32) -> Service {
    Service {
        deployments: (0..count)
            .map(|d| {
                let commit = Commit {
                    age: 120,
                    link: 0,
                    pr: 0,
                    shared: false,
                    files: 0,
                };
                (first + every * d, true, false, vec![commit])
            })
            .collect(),
        incidents: Vec::new(),
    }
}

/// The core tables' rows of `name`'s `services`.
fn team(name: &str, services: &[Service]) -> Tables {
    let mut tables = BTreeMap::new();
    rows(name, services, &mut tables);
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_after_a_bulk_import_recomputes_only_what_the_day_touched() -> anyhow::Result<()> {
    // Forty days of history for two teams, imported at once.
    let history: Vec<Service> = (0..4).map(|s| service(s * 7, 720, 80)).collect();
    let mut bulk = team("team-a", &history);
    for (table, more) in team("team-b", &history) {
        bulk.entry(table).or_default().extend(more);
    }
    let warehouse = fathom_warehouse::Warehouse::in_memory()?;
    land(&warehouse, &bulk).await.map_err(anyhow::Error::msg)?;
    let parameters = Parameters::default();
    let as_of = start() + chrono::Duration::days(41);
    let options = |previous, as_of| RunOptions {
        only: None,
        as_of,
        full: false,
        previous,
    };
    let first = run(&warehouse, &parameters, options(None, as_of), &NoProgress).await?;
    assert!(first.plan.starts_with("full"), "{}", first.plan);

    // The next day: one more deployment of team-a's first service (its
    // rows are the 81st deployment of `history[0]`, the rest repeats what
    // is already there and is dropped by the key).
    let day: Vec<Service> = vec![service(0, 720, 81)];
    let mut next = team("team-a", &day);
    let new_id = "team-a-svc0:80";
    for table in next.values_mut() {
        table.retain(|row| {
            row.get("deployment_id").and_then(Value::as_str) == Some(new_id)
                || row
                    .get("sha")
                    .and_then(Value::as_str)
                    .is_some_and(|sha| sha.starts_with("team-a-svc0-80-"))
        });
    }
    next.retain(|_, rows| !rows.is_empty());
    assert!(next.contains_key("deployments"), "{next:?}");
    land(&warehouse, &next).await.map_err(anyhow::Error::msg)?;
    let later = as_of + chrono::Duration::days(1);
    let daily = run(
        &warehouse,
        &parameters,
        options(first.watermark.as_ref(), later),
        &NoProgress,
    )
    .await?;
    assert!(
        daily.plan.starts_with("incremental: 1 component(s)"),
        "{}",
        daily.plan
    );
    let deployments = daily
        .marts
        .iter()
        .find(|m| m.mart == "dora_deployments")
        .map(|m| m.recomputed.clone());
    assert_eq!(deployments.as_deref(), Some("1 component(s)"));

    // And it leaves what a full recompute leaves.
    let ours = mart_rows(&warehouse).await.map_err(anyhow::Error::msg)?;
    let fresh = fathom_warehouse::Warehouse::in_memory()?;
    land(&fresh, &bulk).await.map_err(anyhow::Error::msg)?;
    land(&fresh, &next).await.map_err(anyhow::Error::msg)?;
    run(&fresh, &parameters, options(None, later), &NoProgress).await?;
    let full = mart_rows(&fresh).await.map_err(anyhow::Error::msg)?;
    for (mart, rows) in &full {
        assert!(ours.get(mart) == Some(rows), "{mart} differs");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_touching_most_components_recomputes_the_component_marts_whole() -> anyhow::Result<()>
{
    // 120 services, ten deployments each; then a day in which 40 of them
    // (a third) deploy once more.
    let history: Vec<Service> = (0..120).map(|s| service(s, 720, 10)).collect();
    let bulk = team("team-a", &history);
    let warehouse = fathom_warehouse::Warehouse::in_memory()?;
    land(&warehouse, &bulk).await.map_err(anyhow::Error::msg)?;
    let parameters = Parameters::default();
    let as_of = start() + chrono::Duration::days(41);
    let options = |previous| RunOptions {
        only: None,
        as_of,
        full: false,
        previous,
    };
    let first = run(&warehouse, &parameters, options(None), &NoProgress).await?;
    let day: Vec<Service> = (0..120).map(|s| service(s, 720, 11)).collect();
    let mut next = team("team-a", &day);
    for table in next.values_mut() {
        table.retain(|row| {
            let last = |text: &str| {
                (0..40).any(|s| {
                    text == format!("team-a-svc{s}:10")
                        || text.starts_with(&format!("team-a-svc{s}-10-"))
                })
            };
            row.get("deployment_id")
                .and_then(Value::as_str)
                .is_some_and(last)
                || row.get("sha").and_then(Value::as_str).is_some_and(last)
        });
    }
    next.retain(|_, rows| !rows.is_empty());
    land(&warehouse, &next).await.map_err(anyhow::Error::msg)?;
    let daily = run(
        &warehouse,
        &parameters,
        options(first.watermark.as_ref()),
        &NoProgress,
    )
    .await?;
    assert!(
        daily
            .plan
            .starts_with("incremental: 40 component(s) (over a quarter"),
        "{}",
        daily.plan
    );
    for mart in ["dora_deployments", "dora_changes"] {
        let step = daily
            .marts
            .iter()
            .find(|m| m.mart == mart)
            .map(|m| m.recomputed.as_str());
        assert_eq!(step, Some("all"), "{mart}");
    }
    let ours = mart_rows(&warehouse).await.map_err(anyhow::Error::msg)?;
    let fresh = fathom_warehouse::Warehouse::in_memory()?;
    land(&fresh, &bulk).await.map_err(anyhow::Error::msg)?;
    land(&fresh, &next).await.map_err(anyhow::Error::msg)?;
    run(&fresh, &parameters, options(None), &NoProgress).await?;
    let full = mart_rows(&fresh).await.map_err(anyhow::Error::msg)?;
    for (mart, rows) in &full {
        assert!(ours.get(mart) == Some(rows), "{mart} differs");
    }
    Ok(())
}
