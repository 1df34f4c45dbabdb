//! `fathom ingest` against the simulators, checked against the world's
//! ground truth: the core tables hold exactly what the world has, a quiet
//! second run changes nothing, Argo CD history loss is reported, and
//! faults upstream cost nothing but the malformed records.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use fathom_sim::serve::{SimOptions, SimState};
use fathom_sim::truth::Truth;
use fathom_sim::{World, WorldConfig};

use crate::support::{count, fathom_bin, local_warehouse, rows};

/// Days of hourly metrics [`Sim::config`] reads: the world's last ones.
pub const HOURLY_DAYS: i64 = 3;

/// A simulator running on its own thread until dropped.
pub struct Sim {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Sim {
    pub fn start(world: WorldConfig, options: SimOptions) -> Result<Self> {
        let state = SimState::new(World::generate(world), options);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
                    return;
                };
                let _ = addr_tx.send(listener.local_addr().ok());
                let _ = fathom_sim::serve::serve(listener, served, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        let addr = addr_rx
            .recv()
            .context("simulator thread died")?
            .context("simulator could not bind")?;
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `fathom.toml` for a warehouse in `dir` reading this simulator.
    /// Datadog's hourly metrics are read for the world's last
    /// [`HOURLY_DAYS`] days only: the simulator's own snippet reads its whole
    /// history hourly (24 times the points of the daily series), which
    /// costs every test that ingests Datadog and only one checks.
    pub fn config(&self, dir: &Path) -> Result<std::path::PathBuf> {
        let path = dir.join("fathom.toml");
        let world = self.state.world();
        let last_day = fathom_sim::world::cost::days(&world.config)
            .last()
            .context("the world has no day")?;
        let hourly_days = (chrono::Utc::now().date_naive() - last_day).num_days() + HOURLY_DAYS - 1;
        let sources: Vec<String> = self
            .state
            .sources_snippet(self.addr)
            .lines()
            .map(|line| {
                if line.starts_with("hourly_days =") {
                    format!("hourly_days = {hourly_days}")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        std::fs::write(
            &path,
            format!(
                "[warehouse]\nurl = \"{}\"\n\n{}\n",
                dir.join("data").display(),
                sources.join("\n")
            ),
        )?;
        Ok(path)
    }
}

/// Runs `fathom --config <config> ingest --json …`; returns the report.
pub fn ingest(config: &Path, extra: &[&str]) -> Result<(Output, serde_json::Value)> {
    let output = Command::new(fathom_bin())
        .arg("--config")
        .arg(config)
        .arg("ingest")
        .arg("--json")
        .args(extra)
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .output()
        .context("cannot run fathom")?;
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    Ok((output, report))
}

/// `ingest`, which must succeed; returns the report.
pub fn ingest_ok(config: &Path, extra: &[&str]) -> Result<serde_json::Value> {
    let (output, report) = ingest(config, extra)?;
    if !output.status.success() {
        bail!(
            "fathom ingest {extra:?} failed: {}\n{report}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(report)
}

/// A world of this size (default seed and end).
fn sized(teams: usize, services: usize, days: u32) -> WorldConfig {
    WorldConfig {
        teams,
        services,
        days,
        ..WorldConfig::default()
    }
}

fn small_world() -> WorldConfig {
    sized(4, 12, 60)
}

fn stream<'a>(report: &'a serde_json::Value, source: &str, stream: &str) -> &'a serde_json::Value {
    report["report"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == source)
        .flat_map(|s| s["streams"].as_array().into_iter().flatten())
        .find(|s| s["stream"] == stream)
        .unwrap_or(&serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_lands_exactly_the_world() -> Result<()> {
    let world = small_world();
    // A history limit no poller can outrun, and a GitHub budget for three
    // full reads: this test is about equality.
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
    let (output, report) = ingest(&config, &[])?;
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        report
    );
    let generated = sim.state.world();
    let truth = Truth::compute(generated);
    let warehouse = local_warehouse(&dir.path().join("data"))?;

    // Catalog: every entity, and the relations that tie them.
    let org = &generated.org;
    let systems: usize = org.domains.iter().map(|(_, s)| s.len()).sum();
    let entities = org.departments.len()
        + org.teams.len()
        + org.users.len()
        + org.domains.len()
        + systems
        + org.components.len();
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM catalog_entities").await?,
        entities as i64
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM entity_relations WHERE relation_type = 'memberOf'"
        )
        .await?,
        org.users.len() as i64
    );

    // Repositories: one per component plus the unclaimed ones, which stay
    // unattributed.
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM repositories").await?,
        (org.components.len() + org.unclaimed_repos.len()) as i64
    );
    let unattributed = rows(
        &warehouse,
        "SELECT full_name FROM repositories WHERE entity_ref IS NULL ORDER BY full_name",
    )
    .await?;
    assert_eq!(
        unattributed.into_iter().flatten().collect::<Vec<_>>(),
        org.unclaimed_repos
    );

    // Commits and pull requests: every one the world has.
    let end = generated.config.end();
    let commits: usize = generated
        .histories
        .iter()
        .map(|h| h.commits.iter().filter(|c| c.committed_at <= end).count())
        .sum();
    let pulls: usize = generated
        .histories
        .iter()
        .map(|h| {
            h.pull_requests
                .iter()
                .filter(|p| p.created_at <= end)
                .count()
        })
        .sum();
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM commits").await?,
        commits as i64
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM commits WHERE entity_ref IS NULL"
        )
        .await?,
        0
    );
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM pull_requests").await?,
        pulls as i64
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM pull_requests WHERE first_commit_at IS NULL OR first_review_at IS NULL"
        )
        .await?,
        0
    );

    // Every completed production deployment, with its rollback flag; no
    // other completed production deployment.
    let expected: BTreeMap<String, bool> = truth
        .deployments
        .iter()
        .filter(|d| d.completed)
        .map(|d| (d.deployment_id.clone(), d.is_rollback))
        .collect();
    let landed: BTreeMap<String, bool> = rows(
        &warehouse,
        "SELECT deployment_id, is_rollback FROM deployments \
         WHERE status = 'success' AND regexp_like(environment, '^prod(uction)?([-_].*)?$', 'i')",
    )
    .await?
    .into_iter()
    .map(|r| (r[0].clone(), r[1] == "true"))
    .collect();
    assert_eq!(landed.len(), expected.len());
    let differing: Vec<_> = expected
        .iter()
        .filter(|(id, rollback)| landed.get(*id) != Some(rollback))
        .collect();
    assert!(differing.is_empty(), "{differing:?}");
    assert!(expected.values().any(|r| *r), "the world has rollbacks");

    // Change sets: attributing each commit to its pull request (or to
    // itself, pushed directly) and each change to the first deployment
    // that shipped it gives exactly the world's changes.
    let shipped = rows(
        &warehouse,
        "WITH change AS ( \
           SELECT dc.deployment_id, d.finished_at, \
             coalesce('pr#' || CAST(coalesce(pc.pull_request_number, pm.number) AS VARCHAR), 'push:' || dc.sha) AS change_key \
           FROM deployment_changes dc \
           JOIN deployments d ON d.deployment_id = dc.deployment_id \
           LEFT JOIN pull_request_commits pc ON pc.repository_id = dc.repository_id AND pc.sha = dc.sha \
           LEFT JOIN pull_requests pm ON pm.repository_id = dc.repository_id AND pm.merge_commit_sha = dc.sha \
         ), first AS ( \
           SELECT change_key, deployment_id, row_number() OVER (PARTITION BY d.entity_ref, change_key ORDER BY change.finished_at, change.deployment_id) AS n \
           FROM change JOIN deployments d USING (deployment_id) \
         ) SELECT deployment_id, change_key FROM first WHERE n = 1",
    )
    .await?;
    let mut landed_changes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in shipped {
        landed_changes
            .entry(row[0].clone())
            .or_default()
            .insert(row[1].clone());
    }
    let mut expected_changes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in truth
        .deployments
        .iter()
        .filter(|d| d.completed && !d.changes.is_empty())
    {
        expected_changes.insert(d.deployment_id.clone(), d.changes.iter().cloned().collect());
    }
    let mismatched: Vec<_> = expected_changes
        .iter()
        .filter(|(id, changes)| landed_changes.get(*id) != Some(changes))
        .map(|(id, _)| id)
        .take(5)
        .collect();
    assert!(
        mismatched.is_empty(),
        "change sets differ for {mismatched:?}"
    );
    assert_eq!(landed_changes.len(), expected_changes.len());

    // Incidents: every one, on the right component, with the explicit
    // deployment links the world's incidents carry.
    let mut expected_incidents: Vec<(String, String)> = Vec::new();
    let mut explicit = 0;
    for history in &generated.histories {
        for incident in history.incidents.iter().filter(|i| i.created_at <= end) {
            expected_incidents.push((
                org.component_ref(history.component),
                incident.created_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            ));
            explicit += usize::from(incident.explicit_link);
        }
    }
    expected_incidents.sort();
    let mut landed_incidents: Vec<(String, String)> = rows(
        &warehouse,
        "SELECT entity_ref, to_char(created_at, '%Y-%m-%dT%H:%M:%S') FROM incidents",
    )
    .await?
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect();
    landed_incidents.sort();
    assert!(!expected_incidents.is_empty());
    assert_eq!(landed_incidents, expected_incidents);
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM incidents WHERE caused_by_deployment_id IS NOT NULL"
        )
        .await?,
        explicit as i64
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM incidents i LEFT JOIN deployments d ON d.deployment_id = i.caused_by_deployment_id \
             WHERE i.caused_by_deployment_id IS NOT NULL AND d.deployment_id IS NULL"
        )
        .await?,
        0,
        "explicit links point at stored deployments"
    );

    // A second run with nothing new upstream: only cheap requests, and no
    // table gets a new version.
    let mut versions = Vec::new();
    for table in fathom_models::ALL_TABLES {
        versions.push((table.name, warehouse.status(table).await?.version));
    }
    let again = ingest_ok(&config, &[])?;
    let versions_after = versions.clone();
    for (table, version) in versions {
        let def = fathom_models::table(table).context("table")?;
        assert_eq!(
            warehouse.status(def).await?.version,
            version,
            "{table} changed"
        );
    }
    let github = again["report"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "github")
        .context("github report")?;
    let repos = (org.components.len() + org.unclaimed_repos.len()) as u64;
    let calls = github["api_calls"].as_u64().unwrap_or(u64::MAX);
    let not_modified = github["not_modified"].as_u64().unwrap_or(0);
    // The repository list, then one conditional request per repository
    // and stream (commits, pulls, deployments) — all but the empty
    // repository's answered 304.
    assert!(
        calls <= 1 + 3 * repos,
        "{calls} calls for {repos} repositories"
    );
    assert!(
        not_modified + 4 >= calls,
        "{not_modified} of {calls} not modified"
    );

    // `--full` reads everything again, and still changes nothing.
    let full = ingest_ok(&config, &["--full"])?;
    for (table, version) in &versions_after {
        let def = fathom_models::table(table).context("table")?;
        assert_eq!(
            warehouse.status(def).await?.version,
            *version,
            "{table} changed on --full"
        );
    }
    let full_calls = full["report"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "github")
        .and_then(|s| s["api_calls"].as_u64())
        .unwrap_or(0);
    assert!(full_calls > 10 * calls, "--full made {full_calls} calls");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_history_loss_is_reported() -> Result<()> {
    let sim = Sim::start(small_world(), SimOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    let end = sim.state.world().config.end();
    sim.state.set_now(end - chrono::Duration::days(30));
    let report = ingest_ok(&config, &["--source", "argocd"])?;
    assert_eq!(
        stream(&report, "argocd", "applications")["warnings"],
        serde_json::json!([])
    );
    // A month later, busy applications have synced more often than the
    // ten entries Argo CD keeps.
    sim.state.set_now(end);
    let (_, report) = ingest(&config, &["--source", "argocd"])?;
    let warnings = stream(&report, "argocd", "applications")["warnings"].clone();
    let text = warnings.to_string();
    if !text.contains("were dropped by Argo CD") {
        bail!("no history-loss warning: {report}");
    }
    // The run ledger keeps it too.
    let state = dir.path().join("data").join("state.db");
    let runs = Command::new(fathom_bin())
        .arg("--config")
        .arg(&config)
        .args(["runs", "--json"])
        .output()?;
    assert!(state.exists());
    assert!(String::from_utf8_lossy(&runs.stdout).contains("were dropped by Argo CD"));
    Ok(())
}

/// Every row of `table` as text (minus `updated_at`), for comparing two
/// warehouses.
async fn table_rows(
    warehouse: &fathom_warehouse::Warehouse,
    table: &str,
) -> Result<BTreeSet<String>> {
    let def = fathom_models::table(table).context("table")?;
    let columns: Vec<String> = def
        .columns
        .iter()
        .map(|c| c.name)
        .filter(|c| *c != "updated_at")
        .map(|c| format!("\"{c}\""))
        .collect();
    let sql = format!("SELECT {} FROM {table}", columns.join(", "));
    Ok(rows(warehouse, &sql)
        .await?
        .into_iter()
        .map(|r| r.join("|"))
        .collect())
}

/// Retries fast, so injected faults cost milliseconds.
fn fast_retries(config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config)?;
    let policy = "http = { backoff_initial_ms = 5, backoff_max_ms = 50, max_retries = 12 }";
    let text = text
        .replace("token = ", &format!("{policy}\ntoken = "))
        .replace(
            "type = \"opencost\"\n",
            &format!("type = \"opencost\"\n{policy}\n"),
        );
    std::fs::write(config, text)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_upstream_cost_only_the_malformed_records() -> Result<()> {
    let world = sized(2, 6, 40);
    let options = || SimOptions {
        argocd_history_limit: 100_000,
        ..SimOptions::default()
    };
    let clean_sim = Sim::start(world, options())?;
    let clean_dir = tempfile::tempdir()?;
    let clean_config = clean_sim.config(clean_dir.path())?;
    ingest_ok(&clean_config, &[])?;

    let faults = "seed=7; \
        github:error_rate=0.05,reset_rate=0.03,truncate_rate=0.03,malformed_rate=0.02,burst_every=400,burst_length=2; \
        backstage:error_rate=0.3,truncate_rate=0.2,malformed_rate=0.5; \
        argocd:error_rate=0.3,reset_rate=0.2,malformed_rate=0.5; \
        datadog:error_rate=0.2,reset_rate=0.1,truncate_rate=0.1,malformed_rate=0.3; \
        sentry:error_rate=0.2,reset_rate=0.1,truncate_rate=0.1,malformed_rate=0.2; \
        opencost:error_rate=0.2,truncate_rate=0.1,malformed_rate=0.2";
    let faulty_sim = Sim::start(
        world,
        SimOptions {
            faults: faults.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            ..options()
        },
    )?;
    let faulty_dir = tempfile::tempdir()?;
    let faulty_config = faulty_sim.config(faulty_dir.path())?;
    fast_retries(&faulty_config)?;
    let (output, report) = ingest(&faulty_config, &[])?;
    // Malformed records make the run partial, never a failure.
    assert!(
        output.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&output.stderr)
    );
    let retries: u64 = report["report"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["retries"].as_u64().unwrap_or(0))
        .sum();
    assert!(retries > 10, "faults were injected: {retries} retries");

    let clean = local_warehouse(&clean_dir.path().join("data"))?;
    let faulty = local_warehouse(&faulty_dir.path().join("data"))?;
    let quarantined = count(&faulty, "SELECT count(*) FROM quarantine").await?;
    assert!(quarantined > 0, "malformed records were injected");
    assert_eq!(
        count(
            &faulty,
            "SELECT count(*) FROM quarantine WHERE reason = '' OR raw_record IS NULL"
        )
        .await?,
        0
    );
    let mut missing_total = 0usize;
    for table in [
        "catalog_entities",
        "entity_relations",
        "repositories",
        "commits",
        "pull_requests",
        "pull_request_reviews",
        "pull_request_commits",
        "deployments",
        "incidents",
        "monitor_states",
        "service_metrics_daily",
        "error_issues_daily",
        "release_deploys",
        "cost_allocations_daily",
    ] {
        let expected = table_rows(&clean, table).await?;
        let got = table_rows(&faulty, table).await?;
        let wrong: Vec<&String> = got.difference(&expected).take(3).collect();
        assert!(
            wrong.is_empty(),
            "{table} has rows the clean run does not: {wrong:?}"
        );
        let missing = expected.difference(&got).count();
        println!("{table}: {missing} of {} rows missing", expected.len());
        missing_total += missing;
    }
    println!("{missing_total} rows missing, {quarantined} records quarantined, {retries} retries");
    // What is missing is what a malformed record carried (an entity with
    // its relations, a pull request with its commits and reviews).
    assert!(
        missing_total as i64 <= quarantined * 15,
        "{missing_total} rows missing for {quarantined} quarantined records"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_is_finished_by_the_next_run() -> Result<()> {
    let world = sized(2, 6, 40);
    let options = || SimOptions {
        argocd_history_limit: 100_000,
        ..SimOptions::default()
    };
    let clean_sim = Sim::start(world, options())?;
    let clean_dir = tempfile::tempdir()?;
    ingest_ok(&clean_sim.config(clean_dir.path())?, &[])?;
    let clean = local_warehouse(&clean_dir.path().join("data"))?;

    // Slow upstreams, so the kills land mid-run.
    let slow_sim = Sim::start(
        world,
        SimOptions {
            faults: "seed=1; github:latency_ms=3; backstage:latency_ms=50"
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            ..options()
        },
    )?;
    let dir = tempfile::tempdir()?;
    let config = slow_sim.config(dir.path())?;
    let mut kills = 0;
    for delay_ms in [300u64, 1_500, 3_000, 5_000] {
        let mut child = Command::new(fathom_bin())
            .arg("--config")
            .arg(&config)
            .args(["ingest", "--json"])
            .env_remove("FATHOM_WAREHOUSE__URL")
            .env_remove("FATHOM_STATE__DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait()?.is_none() {
            child.kill()?;
            kills += 1;
        }
        child.wait()?;
    }
    assert!(kills >= 2, "the ingest finished before it could be killed");
    let (output, report) = ingest(&config, &[])?;
    assert!(
        output.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    for table in [
        "catalog_entities",
        "entity_relations",
        "repositories",
        "commits",
        "pull_requests",
        "pull_request_reviews",
        "pull_request_commits",
        "deployments",
        "deployment_changes",
    ] {
        let expected = table_rows(&clean, table).await?;
        let got = table_rows(&warehouse, table).await?;
        assert_eq!(got.len(), expected.len(), "{table}: rows after the kills");
        assert!(
            got == expected,
            "{table} differs from an uninterrupted ingest"
        );
        let all = count(&warehouse, &format!("SELECT count(*) FROM {table}")).await?;
        assert_eq!(all as usize, got.len(), "{table} has duplicates");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocess_applies_a_new_mapping_without_calling_upstream() -> Result<()> {
    let world = sized(2, 5, 30);
    let sim = Sim::start(world, SimOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    // GitHub first, with no catalog yet: nothing can be attributed.
    ingest_ok(&config, &["--source", "github"])?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let commits = count(&warehouse, "SELECT count(*) FROM commits").await?;
    assert!(commits > 0);
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM commits WHERE entity_ref IS NULL"
        )
        .await?,
        commits
    );
    ingest_ok(&config, &["--source", "backstage"])?;
    // The upstreams go away; the raw layer is all reprocessing needs.
    drop(sim);
    let output = Command::new(fathom_bin())
        .arg("--config")
        .arg(&config)
        .args(["reprocess", "--source", "github", "--json"])
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM commits WHERE entity_ref IS NULL"
        )
        .await?,
        0
    );
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM commits").await?,
        commits
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM repositories WHERE entity_ref IS NULL"
        )
        .await?,
        1,
        "only the unclaimed repository stays unattributed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_workflows_are_deployments_when_configured() -> Result<()> {
    let world = sized(2, 8, 30);
    let sim = Sim::start(world, SimOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    let text = std::fs::read_to_string(&config)?;
    std::fs::write(
        &config,
        text.replace(
            "orgs = [\"acme\"]",
            "orgs = [\"acme\"]\ndeploy_workflows = \"(?i)^deploy$\"\ndeploy_workflow_environment = \"prod\"",
        ),
    )?;
    let (output, report) = ingest(&config, &["--source", "github"])?;
    assert!(
        output.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    // The simulated services that deploy through GitHub run a Deploy
    // workflow for each deployment: the same events, seen twice.
    let api = count(
        &warehouse,
        "SELECT count(*) FROM deployments WHERE source = 'github' AND status = 'success'",
    )
    .await?;
    let actions = count(
        &warehouse,
        "SELECT count(*) FROM deployments WHERE source = 'github-actions' AND status = 'success'",
    )
    .await?;
    assert!(api > 0);
    assert_eq!(actions, api);
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM deployments WHERE source = 'github-actions' AND environment <> 'prod'").await?,
        0
    );
    // A quiet second run reads nothing new.
    let (_, again) = ingest(&config, &["--source", "github"])?;
    assert_eq!(stream(&again, "github", "workflow_runs")["payloads"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_builds_the_catalog_from_repositories() -> Result<()> {
    let world = sized(2, 8, 20);
    let sim = Sim::start(world, SimOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    let text = std::fs::read_to_string(&config)?;
    std::fs::write(
        &config,
        text.replace("orgs = [\"acme\"]", "orgs = [\"acme\"]\ndiscovery = true"),
    )?;
    // No Backstage: the catalog comes from catalog-info.yaml files.
    let (output, report) = ingest(&config, &["--source", "github"])?;
    assert!(
        output.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let org = &sim.state.world().org;
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM catalog_entities WHERE kind = 'component' AND source = 'github-discovery'"
        )
        .await?,
        org.components.len() as i64
    );
    // Owners as written (short refs included) are canonical refs.
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM catalog_entities WHERE owner_ref NOT LIKE 'group:default/%'"
        )
        .await?,
        0
    );
    // The discovered annotations map the commits.
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM commits WHERE entity_ref IS NULL"
        )
        .await?,
        0
    );
    assert_eq!(stream(&report, "github", "catalog")["quarantined"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencost_allocations_add_up_to_the_world() -> Result<()> {
    let world = sized(2, 6, 20);
    let sim = Sim::start(world, SimOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    // The catalog first, so namespaces map to components.
    ingest_ok(&config, &["--source", "backstage"])?;
    let (output, report) = ingest(&config, &["--source", "opencost"])?;
    assert!(
        output.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = sim.state.world();
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    // One request per day of the world, then it stops at the first empty
    // day after the world's end.
    assert_eq!(
        stream(&report, "opencost", "allocations")["payloads"],
        i64::from(world.days)
    );
    // Per component, the allocation cost equals the world's to the cent.
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for load in &generated.loads {
        let total: f64 = fathom_sim::world::cost::days(&generated.config)
            .map(|day| load.day(&generated.config, day).total_cost_usd())
            .sum();
        expected.insert(generated.org.component_ref(load.component), total);
    }
    let landed = rows(
        &warehouse,
        "SELECT entity_ref, sum(total_cost_usd) FROM cost_allocations_daily WHERE entity_ref IS NOT NULL GROUP BY 1",
    )
    .await?;
    assert_eq!(landed.len(), expected.len());
    for row in landed {
        let got: f64 = row[1].parse()?;
        let want = expected
            .get(&row[0])
            .copied()
            .context("unexpected component")?;
        assert!((got - want).abs() < 0.01, "{}: {got} vs {want}", row[0]);
    }
    // Idle cost and the namespace nobody claims stay unattributed.
    let unattributed = rows(
        &warehouse,
        "SELECT DISTINCT allocation_name FROM cost_allocations_daily WHERE entity_ref IS NULL ORDER BY 1",
    )
    .await?;
    let names: Vec<String> = unattributed.into_iter().flatten().collect();
    assert!(names.contains(&"__idle__".to_owned()), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(&generated.org.unowned_namespaces[0])),
        "{names:?}"
    );
    // Nothing new: the next run asks for the next day only and stores nothing.
    let (_, again) = ingest(&config, &["--source", "opencost"])?;
    assert_eq!(stream(&again, "opencost", "allocations")["payloads"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_later_only_that_day_is_fetched() -> Result<()> {
    let world = sized(2, 8, 40);
    let sim = Sim::start(
        world,
        SimOptions {
            argocd_history_limit: 100_000,
            ..SimOptions::default()
        },
    )?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    let end = sim.state.world().config.end();
    let day_before = end - chrono::Duration::days(1);
    sim.state.set_now(day_before);
    ingest_ok(&config, &[])?;
    sim.state.set_now(end);
    let report = ingest_ok(&config, &[])?;

    // What happened that day, upstream.
    let generated = sim.state.world();
    let within = |t: chrono::DateTime<chrono::Utc>| t > day_before && t <= end;
    let changed_pulls: usize = generated
        .histories
        .iter()
        .flat_map(|h| &h.pull_requests)
        .filter(|p| within(p.created_at) || within(p.merged_at) || within(p.first_review_at))
        .count();
    let deployments: usize = generated
        .histories
        .iter()
        .flat_map(|h| &h.deployments)
        .filter(|d| within(d.started_at) || within(d.finished_at))
        .count();
    let repos = (generated.org.components.len() + generated.org.unclaimed_repos.len()) as u64;
    let github = report["report"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "github")
        .context("github report")?;
    let calls = github["api_calls"].as_u64().unwrap_or(u64::MAX);
    // One conditional request per repository and stream, three per changed
    // pull request, one per deployment's statuses, one compare per
    // production deployment — and nothing for the 39 days already read.
    let bound = 1 + 5 * repos + 3 * changed_pulls as u64 + 2 * deployments as u64 + 10;
    assert!(calls <= bound, "{calls} calls for one day (bound {bound})");

    // And the warehouse holds everything up to the end, as a single read
    // would.
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let commits: usize = generated
        .histories
        .iter()
        .map(|h| h.commits.iter().filter(|c| c.committed_at <= end).count())
        .sum();
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM commits").await?,
        commits as i64
    );
    let truth = Truth::compute(generated);
    let completed = truth.deployments.iter().filter(|d| d.completed).count();
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM deployments WHERE status = 'success' \
             AND regexp_like(environment, '^prod(uction)?([-_].*)?$', 'i')"
        )
        .await?,
        completed as i64
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_installation_tokens_are_minted_and_renewed() -> Result<()> {
    let world = sized(2, 6, 20);
    let mut app = fathom_sim::serve::GithubApp::generate(1001, 2002).map_err(anyhow::Error::msg)?;
    // Revoked after 40 requests: the run must mint replacements.
    app.token_uses = Some(40);
    let mut options = SimOptions::default();
    options.credentials.github_app = Some(app.clone());
    let sim = Sim::start(world, options)?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    let key = dir.path().join("app.pem");
    std::fs::write(&key, &app.private_key_pem)?;
    let token_line = format!(
        "token = \"{}\"\norgs = [\"acme\"]\n",
        fathom_sim::serve::Credentials::default().github_token
    );
    let text = std::fs::read_to_string(&config)?;
    assert!(text.contains(&token_line));
    std::fs::write(
        &config,
        text.replace(
            &token_line,
            &format!(
                "orgs = [\"acme\"]\n[sources.app]\napp_id = 1001\nprivate_key_path = \"{}\"\n",
                key.display()
            ),
        ),
    )?;
    let report = ingest_ok(&config, &["--source", "github"])?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let generated = sim.state.world();
    let end = generated.config.end();
    let commits: usize = generated
        .histories
        .iter()
        .map(|h| h.commits.iter().filter(|c| c.committed_at <= end).count())
        .sum();
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM commits").await?,
        commits as i64
    );
    let calls = report["report"]["sources"][0]["api_calls"]
        .as_u64()
        .unwrap_or(0);
    assert!(calls > 80, "{report}");

    // A key that is not the App's is refused with GitHub's message, and
    // the source is reported, not the run crashed.
    let other = fathom_sim::serve::GithubApp::generate(1001, 2002).map_err(anyhow::Error::msg)?;
    std::fs::write(&key, &other.private_key_pem)?;
    let (output, report) = ingest(&config, &["--source", "github"])?;
    assert!(!output.status.success());
    assert!(
        report
            .to_string()
            .contains("JSON web token could not be decoded"),
        "{report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_metrics_and_monitors_equal_the_world() -> Result<()> {
    let world = sized(2, 6, 20);
    let sim = Sim::start(world, SimOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    ingest_ok(&config, &["--source", "backstage"])?;
    ingest_ok(&config, &["--source", "datadog"])?;
    let generated = sim.state.world();
    let warehouse = local_warehouse(&dir.path().join("data"))?;

    // One row per service and day, each metric the world's value.
    let days: Vec<chrono::NaiveDate> = fathom_sim::world::cost::days(&generated.config).collect();
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM service_metrics_daily").await?,
        (generated.loads.len() * days.len()) as i64
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM service_metrics_daily WHERE entity_ref IS NULL OR request_count IS NULL \
             OR error_count IS NULL OR latency_p95_seconds IS NULL"
        )
        .await?,
        0
    );
    let landed = rows(
        &warehouse,
        "SELECT service_name, CAST(date AS VARCHAR), request_count, cpu_usage_cores, memory_usage_bytes FROM service_metrics_daily",
    )
    .await?;
    let by_key: BTreeMap<(String, String), &Vec<String>> = landed
        .iter()
        .map(|r| ((r[0].clone(), r[1].clone()), r))
        .collect();
    for profile in &generated.loads {
        let service = &generated.org.components[profile.component].datadog_service;
        for date in &days {
            let day = profile.day(&generated.config, *date);
            let row = by_key
                .get(&(service.clone(), date.to_string()))
                .with_context(|| format!("{service} {date} missing"))?;
            assert_eq!(row[2].parse::<i64>()?, day.requests.round() as i64);
            let cpu: f64 = row[3].parse()?;
            assert!((cpu - day.cpu_usage_cores).abs() < 1e-9 * day.cpu_usage_cores.max(1.0));
            let memory: f64 = row[4].parse()?;
            assert!((memory - day.ram_usage_bytes).abs() < 1e-6 * day.ram_usage_bytes.max(1.0));
        }
    }

    // Hourly: every hour of the last days (as the configuration asks),
    // errors adding up over each hour.
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM service_metrics_hourly").await?,
        generated.loads.len() as i64 * HOURLY_DAYS * 24
    );
    let hourly = rows(
        &warehouse,
        "SELECT service_name, CAST(hour AS VARCHAR), error_count FROM service_metrics_hourly",
    )
    .await?;
    let hours: BTreeMap<(String, String), i64> = hourly
        .iter()
        .map(|r| Ok(((r[0].clone(), r[1].clone()), r[2].parse::<i64>()?)))
        .collect::<Result<_>>()?;
    let mut compared = 0;
    for profile in &generated.loads {
        let service = &generated.org.components[profile.component].datadog_service;
        for date in days.iter().rev().take(HOURLY_DAYS as usize) {
            for hour in 0..24 {
                let at = fathom_sim::world::cost::day_start(*date) + chrono::Duration::hours(hour);
                let expected = generated
                    .ops_reading(profile, at, 1.0 / 24.0)
                    .errors
                    .round() as i64;
                let key = (
                    service.clone(),
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
                assert_eq!(hours.get(&key), Some(&expected), "{key:?}");
                compared += 1;
            }
        }
    }
    assert!(compared > 0);

    // Monitors: one state per service now; moving into an incident adds
    // the alert to the history.
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM monitor_states").await?,
        generated.loads.len() as i64
    );
    let incident = generated
        .histories
        .iter()
        .flat_map(|h| &h.incidents)
        .filter(|i| i.resolved_at < generated.config.end())
        .max_by_key(|i| i.created_at)
        .context("the world has no incident")?;
    sim.state
        .set_now(incident.created_at + chrono::Duration::minutes(1));
    let report = ingest_ok(&config, &["--source", "datadog"])?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert!(
        count(
            &warehouse,
            "SELECT count(*) FROM monitor_states WHERE state = 'Alert'"
        )
        .await?
            >= 1
    );
    assert!(
        count(&warehouse, "SELECT count(*) FROM monitor_states").await?
            > generated.loads.len() as i64
    );
    // The metrics of the days already read do not change.
    assert_eq!(
        stream(&report, "datadog", "metrics")["rows_changed"]["service_metrics_daily"]
            .as_u64()
            .unwrap_or(0),
        0,
        "{report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_errors_and_release_deploys_equal_the_world() -> Result<()> {
    let world = sized(2, 6, 30);
    let sim = Sim::start(world, SimOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sim.config(dir.path())?;
    ingest_ok(&config, &["--source", "backstage"])?;
    let report = ingest_ok(&config, &["--source", "sentry"])?;
    let generated = sim.state.world();
    let now = generated.config.end();
    let warehouse = local_warehouse(&dir.path().join("data"))?;

    // Every issue's events per day, over the 14 days Sentry's stats cover.
    let first_day = (now - chrono::Duration::days(13)).date_naive();
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for project in &generated.errors {
        for issue in project.issues.iter().filter(|i| i.first_seen <= now) {
            for (date, events, _) in &issue.daily {
                if *date >= first_day && *events > 0 && *date <= now.date_naive() {
                    expected.insert((issue.id.to_string(), date.to_string()), *events as i64);
                }
            }
        }
    }
    let landed: BTreeMap<(String, String), i64> = rows(
        &warehouse,
        "SELECT issue_id, CAST(date AS VARCHAR), event_count FROM error_issues_daily",
    )
    .await?
    .into_iter()
    .map(|r| Ok(((r[0].clone(), r[1].clone()), r[2].parse::<i64>()?)))
    .collect::<Result<_>>()?;
    assert!(!expected.is_empty());
    assert_eq!(landed, expected);
    // Projects map to components (annotation `org/project` or the name).
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM error_issues_daily WHERE entity_ref IS NULL"
        )
        .await?,
        0
    );

    // Every project's events per day, since the world began.
    let mut per_project: BTreeMap<(String, String), i64> = BTreeMap::new();
    for project in &generated.errors {
        for issue in &project.issues {
            for (date, events, _) in &issue.daily {
                if *events > 0 && *date < now.date_naive() {
                    *per_project
                        .entry((project.slug.clone(), date.to_string()))
                        .or_default() += *events as i64;
                }
            }
        }
    }
    let landed: BTreeMap<(String, String), i64> = rows(
        &warehouse,
        "SELECT project_slug, CAST(date AS VARCHAR), event_count FROM error_counts_daily",
    )
    .await?
    .into_iter()
    .map(|r| Ok(((r[0].clone(), r[1].clone()), r[2].parse::<i64>()?)))
    .collect::<Result<_>>()?;
    assert_eq!(landed, per_project);

    // Every deploy of every release, with the release's commit.
    let deploys: usize = generated
        .errors
        .iter()
        .flat_map(|p| &p.releases)
        .filter(|r| r.created_at <= now)
        .map(|r| r.deploys.iter().filter(|d| d.3 <= now).count())
        .sum();
    assert!(deploys > 0);
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM release_deploys").await?,
        deploys as i64
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM release_deploys WHERE revision IS NULL OR entity_ref IS NULL"
        )
        .await?,
        0
    );
    assert_eq!(stream(&report, "sentry", "issues")["quarantined"], 0);

    // A second run fetches no deploys again and changes nothing.
    let again = ingest_ok(&config, &["--source", "sentry"])?;
    assert_eq!(
        stream(&again, "sentry", "releases")["rows_changed"]["release_deploys"]
            .as_u64()
            .unwrap_or(0),
        0,
        "{again}"
    );
    Ok(())
}
