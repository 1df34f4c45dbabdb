//! Invariants of the DORA marts on random histories (proptest, 100 cases):
//! rates stay in [0, 1] and are null without deployments; lead times are
//! never negative (a negative one is an anomaly); every deployment's
//! change count is the changes naming it; a group's deployments are the sum of its services';
//! permuting input rows, adding another team's services or re-running
//! changes no service's numbers; no mart repeats a key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use fathom_models::TableDef;
use fathom_models::tables::{
    CATALOG_ENTITIES, COMMIT_FILES, COMMITS, DEPLOYMENT_CHANGES, DEPLOYMENTS, INCIDENTS,
    PULL_REQUEST_COMMITS, PULL_REQUESTS,
};
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{MARTS, Parameters, compute, mart_session};
use crate::marts::reads_rows;
use crate::runner::filled;

/// One service's history: deployments (minutes after the start, completed,
/// rollback, commits shipped) and incidents (start minute, duration
/// minutes).
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) deployments: Vec<(u32, bool, bool, Vec<Commit>)>,
    pub(crate) incidents: Vec<(u32, u32)>,
}

/// A commit a deployment shipped, in the shapes real history has.
#[derive(Debug, Clone)]
pub(crate) struct Commit {
    /// Minutes authored before the deployment finished; negative for a
    /// commit dated after it (rebased history, clock skew).
    pub(crate) age: i32,
    /// How it is described: 0 a `commits` row (a push); 1 nothing at all
    /// (a bare push); 2 one of pull request `pr`'s commits; 3 the change
    /// set names pull request `pr` (which has no row when `pr` is 2 and no
    /// commit of kind 2 names it).
    pub(crate) link: u8,
    /// Pull request number, of links 2 and 3.
    pub(crate) pr: u8,
    /// The same commit as every other shared one of this pull request
    /// number: carried by several deployments (baselines included).
    pub(crate) shared: bool,
    /// Its files: 0 unknown, 1 under its service's source path, 2
    /// elsewhere in the repository (then a path-scoped service does not
    /// ship it).
    pub(crate) files: u8,
}

fn commit() -> impl Strategy<Value = Commit> {
    (
        -600i32..(5 * 24 * 60),
        0u8..4,
        0u8..3,
        prop::bool::weighted(0.3),
        0u8..3,
    )
        .prop_map(|(age, link, pr, shared, files)| Commit {
            age,
            link,
            pr,
            shared,
            files,
        })
}

pub(crate) fn service() -> impl Strategy<Value = Service> {
    let minutes = 0u32..(40 * 24 * 60);
    let deployment = (
        minutes.clone(),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.1),
        prop::collection::vec(commit(), 0..4),
    );
    (
        prop::collection::vec(deployment, 0..10),
        prop::collection::vec((minutes, 10u32..(3 * 24 * 60)), 0..4),
    )
        .prop_map(|(deployments, incidents)| Service {
            deployments,
            incidents,
        })
}

pub(crate) fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn at(minutes: u32) -> String {
    (start() + Duration::minutes(i64::from(minutes))).to_rfc3339()
}

/// The rows of the core tables for `services` owned by `team`.
pub(crate) fn rows(
    team: &str,
    services: &[Service],
    tables: &mut BTreeMap<&'static str, Vec<Map<String, Value>>>,
) {
    let mut push = |def: &TableDef, value: Value| {
        if let Value::Object(map) = value {
            tables.entry(def.name).or_default().push(map);
        }
    };
    push(
        &CATALOG_ENTITIES,
        json!({"entity_ref": format!("group:default/{team}"), "kind": "group", "namespace": "default", "name": team}),
    );
    for (s, service) in services.iter().enumerate() {
        let name = format!("{team}-svc{s}");
        let entity = format!("component:default/{name}");
        // Odd services are path-scoped (a monorepo's layout).
        let annotations = if s % 2 == 1 {
            json!({"github.com/project-slug": name, "fathom.dev/source-paths": format!("svc/{name}")})
        } else {
            json!({})
        };
        push(
            &CATALOG_ENTITIES,
            json!({"entity_ref": entity, "kind": "component", "namespace": "default", "name": name,
                   "owner_ref": format!("group:default/{team}"), "annotations": annotations}),
        );
        // Commits and pull-request commits already described (each is one
        // row however many deployments carry it), and each pull request's
        // earliest commit.
        let mut described = BTreeSet::new();
        let mut pulls: BTreeMap<u8, String> = BTreeMap::new();
        for (d, (minute, completed, rollback, commits)) in service.deployments.iter().enumerate() {
            let id = format!("{name}:{d}");
            push(
                &DEPLOYMENTS,
                json!({
                    "deployment_id": id, "source": "import", "entity_ref": entity, "environment": environment(*minute),
                    "status": if *completed { "success" } else { "failure" }, "revision": format!("r{d}"),
                    "repository_id": name, "started_at": at(minute.saturating_sub(5)), "finished_at": at(*minute),
                    "is_rollback": rollback,
                }),
            );
            let mut in_this = BTreeSet::new();
            for (c, commit) in commits.iter().enumerate() {
                let sha = if commit.shared {
                    format!("{name}-shared-{}", commit.pr)
                } else {
                    format!("{name}-{d}-{c}")
                };
                if !in_this.insert(sha.clone()) {
                    continue;
                }
                let authored = at(minute.saturating_add_signed(-commit.age));
                if commit.files > 0 && described.insert(format!("files:{sha}")) {
                    let path = if commit.files == 1 {
                        format!("svc/{name}/main.rs")
                    } else {
                        "docs/readme.md".to_owned()
                    };
                    push(
                        &COMMIT_FILES,
                        json!({"repository_id": name, "sha": sha, "path": path}),
                    );
                }
                let named_pr = (commit.link == 3).then_some(commit.pr);
                push(
                    &DEPLOYMENT_CHANGES,
                    json!({"deployment_id": id, "sha": sha, "repository_id": name, "pull_request_number": named_pr}),
                );
                match commit.link {
                    0 if described.insert(sha.clone()) => push(
                        &COMMITS,
                        json!({"repository_id": name, "sha": sha, "entity_ref": entity,
                               "authored_at": authored, "committed_at": authored}),
                    ),
                    2 => {
                        if described.insert(format!("{}:{sha}", commit.pr)) {
                            push(
                                &PULL_REQUEST_COMMITS,
                                json!({"repository_id": name, "pull_request_number": commit.pr, "sha": sha}),
                            );
                        }
                        let first = pulls.entry(commit.pr).or_insert_with(|| authored.clone());
                        if authored < *first {
                            *first = authored;
                        }
                    }
                    _ => {}
                }
            }
        }
        for (number, first_commit_at) in &pulls {
            push(
                &PULL_REQUESTS,
                json!({"repository_id": name, "number": number, "state": "merged", "entity_ref": entity,
                       "created_at": first_commit_at, "first_commit_at": first_commit_at,
                       "merged_at": first_commit_at}),
            );
        }
        for (i, (minute, duration)) in service.incidents.iter().enumerate() {
            push(
                &INCIDENTS,
                json!({"incident_id": format!("{name}-inc{i}"), "source": "import", "entity_ref": entity,
                       "created_at": at(*minute), "resolved_at": at(minute + duration)}),
            );
        }
    }
}

/// The marts over `tables`, computed in memory by the marts' own SQL (the
/// warehouse's Delta writes are tested elsewhere; here they would only
/// slow the hundred cases down).
async fn load(
    tables: &BTreeMap<&'static str, Vec<Map<String, Value>>>,
) -> Result<SessionContext, String> {
    let ctx = register(tables)?;
    compute_all(&ctx).await?;
    Ok(ctx)
}

/// A mart session over `tables` (every other table empty), in memory.
pub(crate) fn register(
    tables: &BTreeMap<&'static str, Vec<Map<String, Value>>>,
) -> Result<SessionContext, String> {
    let ctx = mart_session();
    for def in fathom_models::ALL_TABLES {
        let rows: Vec<&Map<String, Value>> = tables
            .get(def.name)
            .map(|r| r.iter().collect())
            .unwrap_or_default();
        let (batch, rejected) = fathom_ingest::import::json_rows_to_batch(def, &rows, "test")?;
        if !rejected.is_empty() {
            return Err(format!("{}: {rejected:?}", def.name));
        }
        // Conformed as the warehouse writes them: partition columns too.
        let batches: Vec<RecordBatch> = batch
            .iter()
            .map(|b| fathom_warehouse::prepare_batch(def, b, 0).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let schema = batches
            .first()
            .map_or_else(|| def.arrow_schema(), RecordBatch::schema);
        let table = MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())?;
        ctx.register_table(def.name, Arc::new(table))
            .map_err(|e| e.to_string())?;
    }
    Ok(ctx)
}

/// Every mart in order, each registered for the next.
async fn compute_all(ctx: &SessionContext) -> Result<(), String> {
    let as_of = start() + Duration::days(41);
    // Trends run the metrics query over other periods: the invariants
    // are checked on the rolling windows, and the cases stay fast.
    let order = crate::marts::ordered().map_err(|e| e.to_string())?;
    let mut filled = filled(ctx).await.map_err(|e| e.to_string())?;
    for mart in order.iter().filter(|m| m.def.name != "dora_trends") {
        if !reads_rows(mart, &filled) {
            continue;
        }
        let batches = compute(ctx, mart, &Parameters::default(), as_of)
            .await
            .map_err(|e| e.to_string())?;
        unique_keys(mart.def, &batches)?;
        if batches.iter().any(|b| b.num_rows() > 0) {
            filled.insert(mart.def.name);
        }
        replace_in_memory(ctx, mart.def, batches)?;
    }
    Ok(())
}

/// What lets a run write a mart empty without planning it
/// ([`reads_rows`]): over empty tables, every mart's query returns no row.
#[tokio::test]
async fn marts_over_empty_tables_write_nothing() -> Result<(), String> {
    let ctx = register(&BTreeMap::new())?;
    for (mart, rows) in rows_of_every_mart(&ctx, start()).await? {
        assert_eq!(rows, 0, "{mart} over empty tables");
    }
    Ok(())
}

/// Each mart's row count, computed in order over the tables of `ctx`
/// (each registered for the marts after it), every mart planned: what
/// [`reads_rows`]' tests compare with the rule.
async fn rows_of_every_mart(
    ctx: &SessionContext,
    as_of: DateTime<Utc>,
) -> Result<Vec<(&'static str, usize)>, String> {
    let mut out = Vec::new();
    for mart in crate::marts::ordered().map_err(|e| e.to_string())? {
        let batches = compute(ctx, mart, &Parameters::default(), as_of)
            .await
            .map_err(|e| e.to_string())?;
        out.push((
            mart.def.name,
            batches.iter().map(RecordBatch::num_rows).sum(),
        ));
        replace_in_memory(ctx, mart.def, batches)?;
    }
    Ok(out)
}

/// Registers `batches` as table `def` in `ctx`, in place of what was
/// there.
pub(crate) fn replace_in_memory(
    ctx: &SessionContext,
    def: &TableDef,
    batches: Vec<RecordBatch>,
) -> Result<(), String> {
    let schema = batches
        .first()
        .map_or_else(|| def.arrow_schema(), RecordBatch::schema);
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())?;
    ctx.deregister_table(def.name).map_err(|e| e.to_string())?;
    ctx.register_table(def.name, Arc::new(table))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Refuses rows of `def` sharing a primary key: the warehouse writes a
/// mart as its query streams it, without collapsing duplicates, so the
/// query itself must never produce any.
pub(crate) fn unique_keys(def: &TableDef, batches: &[RecordBatch]) -> Result<(), String> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let all =
        arrow::compute::concat_batches(&first.schema(), batches).map_err(|e| e.to_string())?;
    let superseded = fathom_warehouse::superseded_rows(def, &all).map_err(|e| e.to_string())?;
    match superseded.first() {
        None => Ok(()),
        Some((loser, winner)) => Err(format!(
            "`{}` has {} row(s) repeating a key, e.g. rows {loser} and {winner}: {:?}",
            def.name,
            superseded.len(),
            fathom_warehouse::query::text_rows(&[all.slice(*winner, 1)])
                .map_err(|e| e.to_string())?
        )),
    }
}

/// The production environment of a deployment finishing at `minute`: two
/// of them, so each has its own series and baseline.
fn environment(minute: u32) -> &'static str {
    if minute.is_multiple_of(3) {
        "prod-eu"
    } else {
        "production"
    }
}

/// (scope, window, environment) of `dora_metrics`.
type MetricKey = (String, i64, String);

/// `dora_metrics` as (scope, window, environment) → the row's values as
/// text.
async fn metrics(ctx: &SessionContext) -> Result<BTreeMap<MetricKey, Vec<String>>, String> {
    let batches = ctx
        .sql(
            "SELECT scope, window_days, deployments, failed_deployments, change_failure_rate, rework_rate, \
             lead_time_p50_seconds, lead_time_p90_seconds, failed_deployment_recovery_p50_seconds, \
             time_to_restore_p50_seconds, median_deploy_days_per_week, changes, incidents, environment, \
             deployment_frequency_tier, lead_time_tier, change_failure_rate_tier, recovery_tier, overall_tier \
             FROM dora_metrics",
        )
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for values in fathom_warehouse::query::text_rows(&batches).map_err(|e| e.to_string())? {
        let window: i64 = values[1].parse().map_err(|_| "window".to_owned())?;
        out.insert((values[0].clone(), window, values[13].clone()), values);
    }
    Ok(out)
}

/// The first column of `sql`'s rows, as text.
async fn texts(ctx: &SessionContext, sql: &str) -> Result<Vec<String>, String> {
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(fathom_warehouse::query::text_rows(&batches)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .collect())
}

fn number(text: &str) -> Option<f64> {
    text.parse().ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn dora_invariants_hold(
        services in prop::collection::vec(service(), 1..4),
        others in prop::collection::vec(service(), 1..3),
        seed in any::<u64>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let outcome: Result<(), String> = runtime.block_on(async {
            let mut tables = BTreeMap::new();
            rows("team-a", &services, &mut tables);
            let ctx = load(&tables).await?;
            let first = metrics(&ctx).await?;

            for ((scope, window, _), row) in &first {
                let deployments: u64 = row[2].parse().map_err(|_| "deployments")?;
                for rate in [&row[4], &row[5]] {
                    match number(rate) {
                        Some(r) if !(0.0..=1.0).contains(&r) => return Err(format!("{scope} {window}: rate {r}")),
                        None if deployments > 0 => return Err(format!("{scope} {window}: rate missing")),
                        Some(_) if deployments == 0 => return Err(format!("{scope} {window}: rate of nothing")),
                        _ => {}
                    }
                }
                for lead in [&row[6], &row[7]] {
                    if number(lead).is_some_and(|l| l < 0.0) {
                        return Err(format!("{scope} {window}: negative lead time {lead}"));
                    }
                }
                // The overall tier is the worst tier present, and exists
                // exactly when there are deployments.
                let rank = |t: &str| ["elite", "high", "medium", "low"].iter().position(|n| *n == t);
                let overall = rank(&row[18]);
                if overall.is_some() != (deployments > 0) {
                    return Err(format!("{scope} {window}: overall tier {:?} with {deployments} deployments", row[18]));
                }
                let worst = row[14..18].iter().filter_map(|t| rank(t)).max();
                if overall.is_some() && overall != worst {
                    return Err(format!("{scope} {window}: overall {:?} but tiers {:?}", row[18], &row[14..18]));
                }
            }
            // Environments add up to `all`: deployments and changes.
            for ((scope, window, env), row) in &first {
                if env != "all" {
                    continue;
                }
                for column in [2, 11] {
                    let total: u64 = row[column].parse().map_err(|_| "count")?;
                    let parts: u64 = first
                        .iter()
                        .filter(|((s, w, e), _)| s == scope && w == window && e != "all")
                        .map(|(_, r)| r[column].parse::<u64>().unwrap_or(0))
                        .sum();
                    if total != parts {
                        return Err(format!("{scope} {window}: column {column} all {total} vs environments {parts}"));
                    }
                }
            }
            // A team's deployments are its services' together.
            for window in super::WINDOWS {
                let window = i64::from(window);
                let team: u64 = first.get(&("group:default/team-a".to_owned(), window, "all".to_owned())).map_or(0, |r| r[2].parse().unwrap_or(0));
                let sum: u64 = first.iter()
                    .filter(|((scope, w, env), _)| *w == window && env == "all" && scope.starts_with("component:"))
                    .map(|(_, r)| r[2].parse::<u64>().unwrap_or(0))
                    .sum();
                if team != sum {
                    return Err(format!("team {team} vs services {sum} over {window}d"));
                }
            }

            // One definition of "shipped first": every deployment counts
            // exactly the changes naming it, and a change names only a
            // completed deployment that is not a baseline.
            let miscounted = texts(&ctx,
                "SELECT d.deployment_id || ' counts ' || CAST(d.change_count AS VARCHAR) || ', rows ' || CAST(count(c.change_id) AS VARCHAR) \
                 FROM dora_deployments d LEFT JOIN dora_changes c ON c.deployment_id = d.deployment_id \
                 WHERE d.completed GROUP BY d.deployment_id, d.change_count \
                 HAVING d.change_count <> count(c.change_id) \
                 UNION ALL \
                 SELECT c.change_id || ' names ' || c.deployment_id FROM dora_changes c \
                 LEFT JOIN dora_deployments d ON d.deployment_id = c.deployment_id \
                 WHERE c.deployment_id IS NOT NULL AND (d.deployment_id IS NULL OR NOT d.completed OR d.is_baseline)").await?;
            if !miscounted.is_empty() {
                return Err(format!("change counts and rows disagree: {miscounted:?}"));
            }
            // A lead time is never negative; a negative one is an anomaly.
            let bad_leads = texts(&ctx,
                "SELECT change_id FROM dora_changes WHERE lead_time_seconds < 0 \
                 OR lead_time_anomaly <> coalesce(first_commit_at > deployed_at, false)").await?;
            if !bad_leads.is_empty() {
                return Err(format!("lead times: {bad_leads:?}"));
            }

            // Re-running (the marts now exist) changes nothing.
            compute_all(&ctx).await?;
            if metrics(&ctx).await? != first {
                return Err("a re-run changed dora_metrics".to_owned());
            }

            // Rows in another order, with another team's services beside
            // them: team-a's numbers do not move.
            let mut shuffled = tables.clone();
            rows("team-b", &others, &mut shuffled);
            for rows in shuffled.values_mut() {
                let n = rows.len();
                if n > 1 {
                    rows.rotate_left((seed as usize) % n);
                    if seed % 2 == 0 {
                        rows.reverse();
                    }
                }
            }
            let other = metrics(&load(&shuffled).await?).await?;
            for (key, row) in &first {
                if key.0 == "org" {
                    continue;
                }
                if other.get(key) != Some(row) {
                    return Err(format!("{key:?}: {row:?} became {:?}", other.get(key)));
                }
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}

/// Writes `tables`' rows into the warehouse, as an ingest would.
pub(crate) async fn land(
    warehouse: &fathom_warehouse::Warehouse,
    tables: &BTreeMap<&'static str, Vec<Map<String, Value>>>,
) -> Result<(), String> {
    for def in fathom_models::ALL_TABLES {
        let Some(rows) = tables.get(def.name) else {
            continue;
        };
        let rows: Vec<&Map<String, Value>> = rows.iter().collect();
        let (batch, rejected) = fathom_ingest::import::json_rows_to_batch(def, &rows, "test")?;
        if !rejected.is_empty() {
            return Err(format!("{}: {rejected:?}", def.name));
        }
        let batches: Vec<RecordBatch> = batch.into_iter().collect();
        // Appends: the two parts hold different rows, and a merge only
        // adds time here.
        warehouse
            .append(def, &batches)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Every mart's rows in the warehouse, sorted, as text (columns in the
/// table's order, without `updated_at` and the partition column).
pub(crate) async fn mart_rows(
    warehouse: &fathom_warehouse::Warehouse,
) -> Result<BTreeMap<&'static str, Vec<String>>, String> {
    let ctx = mart_session();
    warehouse
        .register_tables(&ctx)
        .await
        .map_err(|e| e.to_string())?;
    rows_in(&ctx).await
}

/// What a full recompute over `tables` writes, computed in memory by the
/// same SQL in dependency order, in [`mart_rows`]' form: the reference an
/// incremental run is held to, at a fraction of a second warehouse's
/// cost.
pub(crate) async fn full_rows_in_memory(
    tables: &BTreeMap<&'static str, Vec<Map<String, Value>>>,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
) -> Result<BTreeMap<&'static str, Vec<String>>, String> {
    let ctx = register(tables)?;
    let mut filled = filled(&ctx).await.map_err(|e| e.to_string())?;
    for mart in crate::marts::ordered().map_err(|e| e.to_string())? {
        if !reads_rows(mart, &filled) {
            continue;
        }
        let batches = compute(&ctx, mart, parameters, as_of)
            .await
            .map_err(|e| e.to_string())?;
        unique_keys(mart.def, &batches)?;
        if batches.iter().any(|b| b.num_rows() > 0) {
            filled.insert(mart.def.name);
        }
        // Conformed as the warehouse writes them (types, time zones).
        let batches: Vec<RecordBatch> = batches
            .iter()
            .map(|b| fathom_warehouse::prepare_batch(mart.def, b, 0).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        replace_in_memory(&ctx, mart.def, batches)?;
    }
    rows_in(&ctx).await
}

async fn rows_in(ctx: &SessionContext) -> Result<BTreeMap<&'static str, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for mart in MARTS {
        let columns: Vec<&str> = mart
            .def
            .columns
            .iter()
            .map(|c| c.name)
            // The partition column is derived from another as the
            // warehouse writes, so the SQL need not compute it.
            .filter(|c| *c != "updated_at" && mart.def.partition.is_none_or(|p| p.column != *c))
            .collect();
        let batches = ctx
            .sql(&format!(
                "SELECT {} FROM {}",
                columns.join(", "),
                mart.def.name
            ))
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let mut rows: Vec<String> = fathom_warehouse::query::text_rows(&batches)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|row| row.join("|"))
            .collect();
        rows.sort();
        out.insert(mart.def.name, rows);
    }
    Ok(out)
}

/// The marts over what `warehouse` holds as of `as_of`: incrementally
/// from `previous`, or whole without one (a case's first run).
pub(crate) async fn run_marts(
    warehouse: &fathom_warehouse::Warehouse,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
    previous: Option<&super::Watermark>,
) -> Result<super::RunOutcome, String> {
    let options = super::RunOptions {
        only: None,
        as_of,
        full: false,
        previous,
    };
    super::run(warehouse, parameters, options, &super::NoProgress)
        .await
        .map_err(|e| e.to_string())
}

/// History arrives in two parts (a third of every table's rows later,
/// change sets possibly after their deployments); the second run,
/// incremental from the first one's watermark, leaves exactly the rows
/// a full recompute over everything writes.
pub(crate) async fn incremental_equals_full(
    team_a: Vec<Service>,
    team_b: Vec<Service>,
    seed: usize,
) -> Result<(), String> {
    let mut everything = BTreeMap::new();
    rows("team-a", &team_a, &mut everything);
    rows("team-b", &team_b, &mut everything);
    // Every table, the catalog included, may arrive in either part:
    // a catalog change recomputes what reads it, nothing else.
    let (mut first, mut later) = (BTreeMap::new(), BTreeMap::new());
    for (table, table_rows) in &everything {
        for (i, row) in table_rows.iter().enumerate() {
            let part = if (i + seed).is_multiple_of(3) {
                &mut later
            } else {
                &mut first
            };
            part.entry(*table)
                .or_insert_with(Vec::new)
                .push(row.clone());
        }
    }
    let parameters = Parameters {
        change_margin_minutes: 0,
        ..Parameters::default()
    };
    let as_of = start() + Duration::days(41);

    let warehouse = fathom_warehouse::Warehouse::in_memory().map_err(|e| e.to_string())?;
    land(&warehouse, &first).await?;
    let run = run_marts(&warehouse, &parameters, as_of, None).await?;
    land(&warehouse, &later).await?;
    let incremental = run_marts(&warehouse, &parameters, as_of, run.watermark.as_ref()).await?;
    if !incremental.plan.starts_with("incremental") {
        return Err(format!("not incremental: {}", incremental.plan));
    }
    let ours = mart_rows(&warehouse).await?;

    let full = full_rows_in_memory(&everything, &parameters, as_of).await?;
    for (mart, rows) in &full {
        let mine = ours.get(mart).cloned().unwrap_or_default();
        if &mine != rows {
            let only_ours: Vec<&String> =
                mine.iter().filter(|r| !rows.contains(r)).take(2).collect();
            let only_full: Vec<&String> =
                rows.iter().filter(|r| !mine.contains(r)).take(2).collect();
            return Err(format!(
                "{mart} differs after {}: ours only {only_ours:?}, full only {only_full:?}",
                incremental.plan
            ));
        }
    }
    Ok(())
}

/// A mart's own lookups ([`crate::marts::MART_LOOKUPS`]) make no row of
/// it: a whole DORA history with traffic but without errors or costs
/// gives no signals and no cost benchmarks.
#[tokio::test]
async fn a_marts_own_lookups_alone_make_no_row() -> Result<(), String> {
    let mut tables = BTreeMap::new();
    let merged = || Commit {
        age: 60,
        link: 2,
        pr: 1,
        shared: false,
        files: 1,
    };
    let services = vec![
        Service {
            deployments: vec![
                (100, false, false, vec![]),
                (2_000, true, false, vec![merged()])
            ],
            incidents: vec![(2_100, 60)],
        };
        2
    ];
    rows("team-a", &services, &mut tables);
    for s in 0..2 {
        let traffic = json!({"date": "2026-05-02", "source": "datadog",
            "service_name": format!("team-a-svc{s}"),
            "entity_ref": format!("component:default/team-a-svc{s}"), "request_count": 1_000});
        if let Value::Object(map) = traffic {
            tables.entry("service_metrics_daily").or_default().push(map);
        }
    }
    let lookups: BTreeSet<&str> = crate::marts::MART_LOOKUPS.iter().map(|(_, t)| *t).collect();
    for table in lookups.iter().filter(|t| crate::marts::named(t).is_none()) {
        assert!(
            tables.get(table).is_some_and(|r| !r.is_empty()),
            "the case has {table} rows"
        );
    }
    let ctx = register(&tables)?;
    for (mart, rows) in rows_of_every_mart(&ctx, start() + Duration::days(41)).await? {
        if crate::marts::MART_LOOKUPS.iter().any(|(m, _)| *m == mart) {
            assert_eq!(rows, 0, "{mart}");
        }
        if mart == "dora_deployments" {
            assert!(rows > 0, "the case has deployments");
        }
    }
    Ok(())
}

/// The other half of [`reads_rows`]: over the catalog alone, exactly the
/// marts declared to write rows from it do.
#[tokio::test]
async fn only_the_declared_marts_write_rows_from_the_catalog_alone() -> Result<(), String> {
    let mut tables = BTreeMap::new();
    let services = vec![
        Service {
            deployments: vec![(100, false, false, vec![])],
            incidents: vec![(120, 60)],
        };
        2
    ];
    rows("team-a", &services, &mut tables);
    tables.retain(|name, _| crate::marts::LOOKUPS.contains(name));
    let ctx = register(&tables)?;
    for (mart, rows) in rows_of_every_mart(&ctx, start() + Duration::days(41)).await? {
        let declared = crate::marts::CATALOG_ROWS.contains(&mart);
        assert_eq!(rows > 0, declared, "{mart}: {rows} rows");
    }
    Ok(())
}
