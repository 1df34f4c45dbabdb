//! DORA marts against the generator's own implementation of the
//! definitions (`fathom sim truth`): every production deployment's change
//! set, failure, linked incidents, recovery and rework; every change's
//! first deployment.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{Context, Result, bail};
use fathom_sim::WorldConfig;
use fathom_sim::serve::SimOptions;
use fathom_sim::truth::{DoraTruth, Truth, compare_dora};

use crate::ingest::{Sim, ingest_ok};
use crate::support::{count, fathom_bin, local_warehouse, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dora_marts_equal_the_worlds_truth() -> Result<()> {
    let world = WorldConfig {
        teams: 3,
        services: 9,
        days: 90,
        ..WorldConfig::default()
    };
    let sim = Sim::start(
        world,
        SimOptions {
            argocd_history_limit: 100_000,
            github_rate: fathom_sim::serve::github::RateBudget {
                limit: 100_000,
                window_seconds: 3_600,
            },
            ..SimOptions::default()
        },
    )?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    // GitHub again at the end: change sets need every source's deployments.
    for source in ["backstage", "github", "argocd", "datadog", "github"] {
        ingest_ok(&config, &["--source", source])?;
    }
    let output = Command::new(fathom_bin())
        .arg("--config")
        .arg(&config)
        .args(["transform", "--json", "--as-of", "2026-07-01"])
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .output()?;
    if !output.status.success() {
        bail!(
            "transform failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let truth = Truth::compute(sim.state.world());
    let warehouse = local_warehouse(&dir.path().join("data"))?;

    // Deployments: the same set, each with the same verdicts.
    let landed = rows(
        &warehouse,
        "SELECT deployment_id, CAST(failed AS VARCHAR), CAST(rework AS VARCHAR), CAST(is_baseline AS VARCHAR), \
         CAST(change_count AS VARCHAR), coalesce(array_to_string(incident_ids, ','), ''), \
         coalesce(CAST(recovery_seconds AS VARCHAR), '') \
         FROM dora_deployments WHERE completed",
    )
    .await?;
    let by_id: BTreeMap<&str, &Vec<String>> = landed.iter().map(|r| (r[0].as_str(), r)).collect();
    assert_eq!(landed.len(), truth.deployments.len());
    let mut mismatches = Vec::new();
    for expected in &truth.deployments {
        let row = by_id
            .get(expected.deployment_id.as_str())
            .with_context(|| format!("{} missing", expected.deployment_id))?;
        // The generator's incident ids are not Datadog's: compare counts.
        let linked = if row[5].is_empty() {
            0
        } else {
            row[5].split(',').count()
        };
        let recovery: Option<f64> = row[6].parse().ok();
        let same_recovery = match (recovery, expected.recovery_seconds) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-3,
            (None, None) => true,
            _ => false,
        };
        if row[1] != expected.failed.to_string()
            || row[2] != expected.rework.to_string()
            || row[4] != expected.changes.len().to_string()
            || linked != expected.linked_incidents.len()
            || !same_recovery
        {
            mismatches.push(format!("{row:?} vs {expected:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} deployments differ, e.g. {:?}",
        mismatches.len(),
        truth.deployments.len(),
        mismatches.iter().take(3).collect::<Vec<_>>()
    );

    // Changes: each deployment ships the same changes first.
    let shipped = rows(
        &warehouse,
        "SELECT deployment_id, change_id FROM dora_changes WHERE deployment_id IS NOT NULL",
    )
    .await?;
    let mut ours: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in &shipped {
        // `pr:<repo>#<n>` → `pr#<n>`, `push:<repo>@<sha>` → `push:<sha>`.
        let key = match (row[1].split_once('#'), row[1].split_once('@')) {
            (Some((_, number)), _) => format!("pr#{number}"),
            (None, Some((_, sha))) => format!("push:{sha}"),
            _ => row[1].clone(),
        };
        ours.entry(row[0].clone()).or_default().insert(key);
    }
    let theirs: BTreeMap<String, BTreeSet<String>> = truth
        .deployments
        .iter()
        .filter(|d| !d.changes.is_empty())
        .map(|d| (d.deployment_id.clone(), d.changes.iter().cloned().collect()))
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM dora_changes WHERE deployment_id IS NOT NULL AND (lead_time_seconds IS NULL OR lead_time_seconds < 0)"
        )
        .await?,
        0
    );

    // The five keys: every scope and window the world knows.
    assert_metrics_equal_truth(&warehouse, &truth).await?;

    // Each service of the world deploys to one production environment
    // (`production` through Argo CD, `prod` through GitHub): a component's
    // own environment rows equal its `all` rows, and for every scope the
    // environments' deployments and changes add up to `all`.
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM dora_metrics a JOIN dora_metrics p \
             ON p.scope = a.scope AND p.window_days = a.window_days \
             WHERE a.scope_kind = 'component' AND a.environment = 'all' AND p.environment <> 'all' \
             AND NOT (a.deployments = p.deployments AND a.changes = p.changes \
             AND a.failed_deployments = p.failed_deployments \
             AND (a.lead_time_p50_seconds IS NOT DISTINCT FROM p.lead_time_p50_seconds) \
             AND (a.overall_tier IS NOT DISTINCT FROM p.overall_tier))"
        )
        .await?,
        0
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM (SELECT a.scope, a.window_days, \
             max(a.deployments) AS total, sum(p.deployments) AS parts, \
             max(a.changes) AS total_changes, sum(p.changes) AS part_changes \
             FROM dora_metrics a JOIN dora_metrics p ON p.scope = a.scope AND p.window_days = a.window_days \
             WHERE a.environment = 'all' AND p.environment <> 'all' GROUP BY a.scope, a.window_days) sums \
             WHERE total <> parts OR total_changes <> part_changes"
        )
        .await?,
        0
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT DISTINCT environment FROM dora_metrics ORDER BY environment"
        )
        .await?,
        [["all"], ["prod"], ["production"]].map(|r| r.map(str::to_owned).to_vec())
    );
    Ok(())
}

/// `dora_metrics` (all environments) equals the world's truth on every
/// scope and window it knows.
pub(crate) async fn assert_metrics_equal_truth(
    warehouse: &fathom_warehouse::Warehouse,
    truth: &Truth,
) -> Result<()> {
    let metrics = rows(
        warehouse,
        &format!(
            "SELECT {} FROM dora_metrics WHERE environment = 'all'",
            DoraTruth::COLUMNS
        ),
    )
    .await?;
    let ours: Vec<DoraTruth> = metrics
        .iter()
        .map(|r| DoraTruth::from_texts(r).with_context(|| format!("unreadable row {r:?}")))
        .collect::<Result<_>>()?;
    let (agreed, differences) = compare_dora(&truth.dora, &ours);
    assert!(
        differences.is_empty(),
        "{} differences, e.g. {:#?}",
        differences.len(),
        differences.iter().take(12).collect::<Vec<_>>()
    );
    assert_eq!(agreed, truth.dora.len());
    Ok(())
}

/// The worked example of `docs/metrics.md`: (table, file name, content).
pub(crate) const WORKED_EXAMPLE: [(&str, &str, &str); 7] = [
    (
        "catalog_entities",
        "catalog.ndjson",
        concat!(
            r#"{"entity_ref": "component:default/payments-api", "kind": "component", "namespace": "default", "name": "payments-api", "owner_ref": "team-payments", "system_ref": "system:default/payments"}"#,
            "\n",
            r#"{"entity_ref": "group:default/team-payments", "kind": "group", "namespace": "default", "name": "team-payments", "parent_ref": "group:default/engineering"}"#,
            "\n",
            r#"{"entity_ref": "group:default/engineering", "kind": "group", "namespace": "default", "name": "engineering"}"#,
            "\n",
            r#"{"entity_ref": "system:default/payments", "kind": "system", "namespace": "default", "name": "payments", "domain_ref": "domain:default/money"}"#,
            "\n"
        ),
    ),
    (
        "deployments",
        "deployments.csv",
        "deployment_id,source,entity_ref,environment,status,revision,repository_id,started_at,finished_at,is_rollback\n\
         d1,import,payments-api,production,success,r1,acme/payments,2026-06-20T09:50:00Z,2026-06-20T10:00:00Z,false\n\
         d2,import,payments-api,production,success,r2,acme/payments,2026-06-23T08:50:00Z,2026-06-23T09:00:00Z,false\n\
         d3,import,payments-api,production,success,r1,acme/payments,2026-06-23T12:50:00Z,2026-06-23T13:00:00Z,true\n\
         d4,import,payments-api,production,success,r4,acme/payments,2026-06-26T14:50:00Z,2026-06-26T15:00:00Z,false\n\
         d5,import,payments-api,production,failure,r5,acme/payments,2026-06-27T10:00:00Z,2026-06-27T10:05:00Z,false\n\
         s1,import,payments-api,staging,success,r5,acme/payments,2026-06-27T09:00:00Z,2026-06-27T09:05:00Z,false\n",
    ),
    (
        "incidents",
        "incidents.csv",
        "incident_id,source,entity_ref,created_at,resolved_at\n\
         INC-1,import,payments-api,2026-06-23T12:00:00Z,2026-06-23T18:00:00Z\n",
    ),
    (
        "deployment_changes",
        "changes.csv",
        "deployment_id,sha,repository_id\nd2,c7a,acme/payments\nd2,abc,acme/payments\nd4,c7b,acme/payments\nd4,c9,acme/payments\n",
    ),
    (
        "pull_requests",
        "pulls.csv",
        "repository_id,number,state,entity_ref,created_at,first_commit_at,merged_at\n\
         acme/payments,7,merged,payments-api,2026-06-22T10:00:00Z,2026-06-22T09:00:00Z,2026-06-23T08:00:00Z\n\
         acme/payments,9,merged,payments-api,2026-06-24T16:00:00Z,2026-06-24T15:00:00Z,2026-06-26T14:00:00Z\n",
    ),
    (
        "pull_request_commits",
        "pull_commits.csv",
        "repository_id,pull_request_number,sha\nacme/payments,7,c7a\nacme/payments,7,c7b\nacme/payments,9,c9\n",
    ),
    (
        "commits",
        "commits.csv",
        "repository_id,sha,entity_ref,authored_at,committed_at\nacme/payments,abc,payments-api,2026-06-23T07:00:00Z,2026-06-23T07:05:00Z\n",
    ),
];

/// The worked example of `docs/metrics.md`, loaded with `fathom import`:
/// every number the document derives by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_in_the_metrics_doc_holds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = WORKED_EXAMPLE;
    let fathom = |args: &[&str]| fathom_in(dir.path(), args);
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let deployments = rows(
        &warehouse,
        "SELECT deployment_id, CAST(completed AS VARCHAR), CAST(is_baseline AS VARCHAR), CAST(failed AS VARCHAR), \
         CAST(rework AS VARCHAR), CAST(change_count AS VARCHAR), coalesce(array_to_string(incident_ids, ','), ''), \
         coalesce(CAST(recovery_seconds AS VARCHAR), '') FROM dora_deployments ORDER BY deployment_id",
    )
    .await?;
    assert_eq!(
        deployments,
        [
            ["d1", "true", "true", "false", "false", "0", "", ""],
            [
                "d2", "true", "false", "true", "false", "2", "INC-1", "32400.0"
            ],
            ["d3", "true", "false", "false", "true", "0", "", ""],
            ["d4", "true", "false", "false", "false", "1", "", ""],
            ["d5", "false", "", "", "", "", "", ""],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    let changes = rows(
        &warehouse,
        "SELECT change_id, deployment_id, CAST(lead_time_seconds AS VARCHAR) FROM dora_changes ORDER BY change_id",
    )
    .await?;
    assert_eq!(
        changes,
        [
            ["pr:acme/payments#7", "d2", "86400.0"],
            ["pr:acme/payments#9", "d4", "172800.0"],
            ["push:acme/payments@abc", "d2", "7200.0"],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    let metrics = rows(
        &warehouse,
        "SELECT scope, CAST(window_days AS VARCHAR) AS w, deployments, failed_jobs, deploy_days, changes, \
         CAST(change_failure_rate AS VARCHAR) AS cfr, CAST(rework_rate AS VARCHAR) AS rework, \
         CAST(lead_time_p50_seconds AS VARCHAR) AS p50, CAST(lead_time_p90_seconds AS VARCHAR) AS p90, \
         CAST(median_deploy_days_per_week AS VARCHAR) AS days, \
         CAST(failed_deployment_recovery_p50_seconds AS VARCHAR) AS recovery, \
         CAST(time_to_restore_p50_seconds AS VARCHAR) AS restore, \
         deployment_frequency_tier, lead_time_tier, change_failure_rate_tier, recovery_tier, overall_tier \
         FROM dora_metrics WHERE window_days IN (7, 30) AND environment = 'all' ORDER BY scope, window_days",
    )
    .await?;
    // Tiers (dora-2023): one deployment in 7 days is weekly (high); 4 in 30
    // days is less than weekly (medium); a 2-day lead time is high, 1 day
    // elite; a 25 % failure rate low; 9 hours to recover high. The overall
    // tier is the worst of them.
    let component_7 = [
        "1", "1", "1", "1", "0.0", "0.0", "172800.0", "172800.0", "0.5", "", "", "high", "high",
        "elite", "", "high",
    ];
    let component_30 = [
        "4", "1", "3", "3", "0.25", "0.25", "86400.0", "155520.0", "0.0", "32400.0", "21600.0",
        "medium", "elite", "low", "high", "low",
    ];
    // The component, its team, the team's parent, its system, its domain and
    // the org all hold the same single service.
    let scopes = [
        "component:default/payments-api",
        "domain:default/money",
        "group:default/engineering",
        "group:default/team-payments",
        "org",
        "system:default/payments",
    ];
    let mut expected = Vec::new();
    for scope in scopes {
        for (window, values) in [("7", &component_7), ("30", &component_30)] {
            let mut row = vec![scope.to_owned(), window.to_owned()];
            row.extend(values.iter().map(|v| (*v).to_owned()));
            expected.push(row);
        }
    }
    assert_eq!(metrics, expected);

    // Trends: the calendar weeks and the month with activity.
    let trends = rows(
        &warehouse,
        "SELECT granularity, CAST(CAST(period_start AS DATE) AS VARCHAR) AS start, deployments, failed_jobs, \
         failed_deployments FROM dora_trends WHERE scope = 'component:default/payments-api' \
         AND environment = 'all' AND deployments + failed_jobs > 0 ORDER BY granularity, period_start",
    )
    .await?;
    assert_eq!(
        trends,
        [
            ["month", "2026-06-01", "4", "1", "1"],
            ["week", "2026-06-15", "1", "0", "0"],
            ["week", "2026-06-22", "3", "1", "1"],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );

    // Every number traces to its rows: the team's 30-day lead times are
    // the three changes, its change failure rate the four deployments with
    // the failed one first.
    let explain = |metric: &str| -> Result<Vec<String>> {
        let output = fathom(&[
            "explain",
            "dora",
            "--scope",
            "group:default/team-payments",
            "--metric",
            metric,
            "--window",
            "30d",
            "--format",
            "csv",
        ])?;
        if !output.status.success() {
            bail!("explain: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap_or_default().to_owned())
            .collect())
    };
    assert_eq!(
        explain("lead_time")?,
        [
            "push:acme/payments@abc",
            "pr:acme/payments#7",
            "pr:acme/payments#9"
        ]
    );
    assert_eq!(explain("change_failure_rate")?, ["d2", "d1", "d3", "d4"]);
    assert_eq!(explain("recovery")?, ["d2"]);
    Ok(())
}

/// Edge cases the definitions decide: an incident before any deployment and
/// one beyond the gap stay unlinked, an explicit link wins over the
/// nearest-deployment rule, each production environment is its own series
/// (with its own baseline), and a negative pull-request stage is null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_links_environments_and_negative_stages() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        (
            "catalog_entities",
            "catalog.ndjson",
            r#"{"entity_ref": "component:default/ledger", "kind": "component", "namespace": "default", "name": "ledger", "owner_ref": "team-ledger"}"#,
        ),
        (
            "deployments",
            "deployments.csv",
            "deployment_id,source,entity_ref,environment,status,started_at,finished_at\n\
             e1,import,ledger,prod-eu,success,2026-06-10T09:00:00Z,2026-06-10T10:00:00Z\n\
             e2,import,ledger,prod-eu,success,2026-06-20T09:00:00Z,2026-06-20T10:00:00Z\n\
             u1,import,ledger,production-us,success,2026-06-12T09:00:00Z,2026-06-12T10:00:00Z\n\
             s1,import,ledger,staging,success,2026-06-11T09:00:00Z,2026-06-11T10:00:00Z\n",
        ),
        (
            "incidents",
            "incidents.csv",
            "incident_id,source,entity_ref,created_at,resolved_at,caused_by_deployment_id\n\
             before,import,ledger,2026-06-05T00:00:00Z,2026-06-05T02:00:00Z,\n\
             explicit,import,ledger,2026-06-21T00:00:00Z,2026-06-21T04:00:00Z,e1\n\
             beyond-gap,import,ledger,2026-06-28T11:00:00Z,2026-06-28T12:00:00Z,\n",
        ),
        (
            "pull_requests",
            "pulls.csv",
            "repository_id,number,state,entity_ref,created_at,first_commit_at,first_review_at,merged_at\n\
             acme/ledger,3,merged,ledger,2026-06-15T10:00:00Z,2026-06-15T09:00:00Z,2026-06-15T08:00:00Z,2026-06-16T10:00:00Z\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployment_id, CAST(is_baseline AS VARCHAR) AS baseline, CAST(failed AS VARCHAR) AS failed, \
             coalesce(array_to_string(incident_ids, ','), '') AS incidents FROM dora_deployments ORDER BY deployment_id",
        )
        .await?,
        [
            ["e1", "true", "true", "explicit"],
            ["e2", "false", "false", ""],
            ["u1", "true", "false", ""],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    // Three production deployments (staging is not one), one failed; all
    // three incidents started in the window count for time to restore. Each
    // production environment also has its own rows: its deployments, and
    // the incidents linked to them.
    assert_eq!(
        rows(
            &warehouse,
            "SELECT environment, deployments, failed_deployments, incidents FROM dora_metrics \
             WHERE scope = 'component:default/ledger' AND window_days = 30 ORDER BY environment",
        )
        .await?,
        [
            ["all", "3", "1", "3"],
            ["prod-eu", "2", "1", "1"],
            ["production-us", "1", "0", "0"],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    // Reviewed before it was opened: the pickup stage would be negative,
    // so it is unknown (null), not a negative duration.
    assert_eq!(
        rows(
            &warehouse,
            "SELECT CAST(coding_seconds AS VARCHAR) AS coding, coalesce(CAST(pickup_seconds AS VARCHAR), 'null') AS pickup \
             FROM dora_changes",
        )
        .await?,
        [["3600.0", "null"].map(str::to_owned).to_vec()]
    );
    Ok(())
}

/// Runs `fathom` on a local warehouse in `dir/data`.
pub(crate) fn fathom_in(dir: &std::path::Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(fathom_bin())
        .args(args)
        .env("FATHOM_WAREHOUSE__URL", dir.join("data"))
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .output()?)
}

/// Windows and calendar periods cut at UTC midnight: the last second of a
/// day before the window or the week or month is out, its first second in,
/// and `as_of` itself is out (windows end exclusively). 2026-07-01 is a
/// Wednesday; 2026-06-21 a Sunday.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_cut_at_utc_week_and_month_boundaries() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        (
            "catalog_entities",
            "catalog.ndjson",
            r#"{"entity_ref": "component:default/edge", "kind": "component", "namespace": "default", "name": "edge"}"#,
        ),
        (
            "deployments",
            "deployments.csv",
            "deployment_id,source,entity_ref,environment,status,started_at,finished_at\n\
             b0,import,edge,production,success,2026-05-20T09:00:00Z,2026-05-20T10:00:00Z\n\
             m1,import,edge,production,success,2026-05-31T23:00:00Z,2026-05-31T23:59:59Z\n\
             m2,import,edge,production,success,2026-05-31T23:30:00Z,2026-06-01T00:00:00Z\n\
             w1,import,edge,production,success,2026-06-21T23:00:00Z,2026-06-21T23:59:59Z\n\
             w2,import,edge,production,success,2026-06-21T23:30:00Z,2026-06-22T00:00:00Z\n\
             r1,import,edge,production,success,2026-06-23T23:00:00Z,2026-06-23T23:59:59Z\n\
             r2,import,edge,production,success,2026-06-23T23:30:00Z,2026-06-24T00:00:00Z\n\
             last,import,edge,production,success,2026-06-30T23:00:00Z,2026-06-30T23:59:59Z\n\
             after,import,edge,production,success,2026-06-30T23:30:00Z,2026-07-01T00:00:00Z\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT CAST(window_days AS VARCHAR) AS w, deployments, deploy_days FROM dora_metrics \
             WHERE scope = 'component:default/edge' AND environment = 'all' ORDER BY window_days",
        )
        .await?,
        [
            ["7", "2", "2"],
            ["30", "6", "6"],
            ["90", "8", "8"],
            ["365", "8", "8"]
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT granularity, CAST(CAST(period_start AS DATE) AS VARCHAR) AS start, deployments \
             FROM dora_trends WHERE scope = 'component:default/edge' AND environment = 'all' \
             AND deployments > 0 ORDER BY granularity, period_start",
        )
        .await?,
        [
            ["month", "2026-05-01", "2"],
            ["month", "2026-06-01", "6"],
            ["week", "2026-05-18", "1"],
            ["week", "2026-05-25", "1"],
            ["week", "2026-06-01", "1"],
            ["week", "2026-06-15", "1"],
            ["week", "2026-06-22", "3"],
            ["week", "2026-06-29", "1"],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    Ok(())
}

/// Imports `(table, file name, content)` files with `fathom import`, then
/// computes the marts as of 2026-07-01.
pub(crate) fn load_and_transform(
    dir: &std::path::Path,
    files: &[(&str, &str, &str)],
) -> Result<()> {
    for (table, name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        let output = fathom_in(dir, &["import", table, &path.display().to_string()])?;
        if !output.status.success() {
            bail!(
                "import {table}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let output = fathom_in(dir, &["transform", "--as-of", "2026-07-01"])?;
    if !output.status.success() {
        bail!("transform: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
