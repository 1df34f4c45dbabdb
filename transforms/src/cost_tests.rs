//! The cost marts on a hand-computed case (each shared-cost policy, month
//! over month) and their invariants on random cost data (proptest, 100
//! cases): every policy keeps each day's totals; an incremental run —
//! new days of allocations, a billing period rewritten — leaves exactly
//! the rows a full recompute writes.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use fathom_models::tables::{
    CATALOG_ENTITIES, CLOUD_COSTS_DAILY, COST_ALLOCATIONS_DAILY, SERVICE_METRICS_DAILY,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::properties::{land, register, run_marts};
use super::{CostParameters, MARTS, Parameters, compute};

type Tables = BTreeMap<&'static str, Vec<Map<String, Value>>>;

fn push(tables: &mut Tables, table: &'static str, value: Value) {
    if let Value::Object(map) = value {
        tables.entry(table).or_default().push(map);
    }
}

/// A team owning components `a` and `b`.
fn catalog(tables: &mut Tables) {
    push(
        tables,
        CATALOG_ENTITIES.name,
        json!({"entity_ref": "group:default/team", "kind": "group", "namespace": "default", "name": "team"}),
    );
    for name in ["a", "b"] {
        push(
            tables,
            CATALOG_ENTITIES.name,
            json!({"entity_ref": format!("component:default/{name}"), "kind": "component",
                   "namespace": "default", "name": name, "owner_ref": "group:default/team"}),
        );
    }
}

/// An OpenCost allocation of `cpu` (Compute) and `pv` (Storage).
fn allocation(
    tables: &mut Tables,
    date: NaiveDate,
    name: &str,
    entity: Option<&str>,
    cpu: f64,
    pv: f64,
) {
    push(
        tables,
        COST_ALLOCATIONS_DAILY.name,
        json!({"date": date.to_string(), "month": date.format("%Y-%m").to_string(), "cluster": "c1",
               "allocation_name": name, "entity_ref": entity.map(|e| format!("component:default/{e}")),
               "cpu_cost_usd": cpu, "pv_cost_usd": pv, "total_cost_usd": cpu + pv}),
    );
}

/// One cloud line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    day: i64,
    entity: Option<&'static str>,
    category: &'static str,
    shared_tag: bool,
    billed: f64,
    effective: f64,
    currency: &'static str,
}

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 5, 1).unwrap_or_default()
}

fn cloud(tables: &mut Tables, id: usize, line: &Line) {
    let date = first_day() + Duration::days(line.day);
    let tags = if line.shared_tag {
        json!({"shared": "network"})
    } else {
        json!({})
    };
    push(
        tables,
        CLOUD_COSTS_DAILY.name,
        json!({"billing_period": date.format("%Y-%m").to_string(), "line_item_id": format!("l{id}"),
               "date": date.to_string(), "provider": "aws", "charge_category": line.category,
               "service_category": "Compute",
               "entity_ref": line.entity.map(|e| format!("component:default/{e}")),
               "billed_cost_usd": line.billed, "effective_cost_usd": line.effective,
               "list_cost_usd": line.billed, "billing_currency": line.currency, "tags": tags}),
    );
}

fn parameters(shared: &str) -> Parameters {
    Parameters {
        change_margin_minutes: 0,
        cost: CostParameters {
            shared: shared.to_owned(),
            ..CostParameters::default()
        },
        ..Parameters::default()
    }
}

/// The rows of `sql` as text.
pub(crate) async fn texts(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Result<Vec<Vec<String>>, String> {
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    fathom_warehouse::query::text_rows(&batches).map_err(|e| e.to_string())
}

/// `dora_scope_members`, `cost_daily` and `cost_monthly` over `tables` in
/// memory, with `parameters`.
async fn cost_marts(
    tables: &Tables,
    parameters: &Parameters,
) -> Result<datafusion::prelude::SessionContext, String> {
    let ctx = register(tables)?;
    compute_in_memory(
        &ctx,
        &["dora_scope_members", "cost_daily", "cost_monthly"],
        parameters,
    )
    .await?;
    Ok(ctx)
}

/// Computes the marts `names`, in order, each registered in memory for
/// the next.
pub(crate) async fn compute_in_memory(
    ctx: &datafusion::prelude::SessionContext,
    names: &[&str],
    parameters: &Parameters,
) -> Result<(), String> {
    for name in names {
        let mart = MARTS
            .iter()
            .find(|m| m.def.name == *name)
            .ok_or("no such mart")?;
        let batches = compute(ctx, mart, parameters, crate::default_as_of())
            .await
            .map_err(|e| e.to_string())?;
        crate::properties::unique_keys(mart.def, &batches)?;
        let schema = batches.first().map_or_else(
            || mart.def.arrow_schema(),
            arrow::array::RecordBatch::schema,
        );
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])
            .map_err(|e| e.to_string())?;
        ctx.deregister_table(*name).map_err(|e| e.to_string())?;
        ctx.register_table(*name, std::sync::Arc::new(table))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// May 31: `a` 10 of CPU, `b` 30, 8 idle in the cluster; in the cloud `a`
/// 20 of usage, 5 untagged, a credit of −10 and tax of 3. June 30: `a`
/// 200 of CPU, `b` 33.
fn worked_example() -> Tables {
    let mut tables = Tables::new();
    catalog(&mut tables);
    let may = first_day() + Duration::days(30);
    let june = first_day() + Duration::days(60);
    allocation(&mut tables, may, "team/deployment:a", Some("a"), 6.0, 4.0);
    allocation(&mut tables, may, "team/deployment:b", Some("b"), 30.0, 0.0);
    allocation(&mut tables, may, "__idle__", None, 8.0, 0.0);
    allocation(
        &mut tables,
        june,
        "team/deployment:a",
        Some("a"),
        200.0,
        0.0,
    );
    allocation(&mut tables, june, "team/deployment:b", Some("b"), 33.0, 0.0);
    let line = |entity, category, billed: f64| Line {
        day: 30,
        entity,
        category,
        shared_tag: false,
        billed,
        effective: billed,
        currency: "USD",
    };
    for (id, l) in [
        line(Some("a"), "usage", 20.0),
        line(None, "usage", 5.0),
        line(None, "credit", -10.0),
        line(None, "tax", 3.0),
    ]
    .iter()
    .enumerate()
    {
        cloud(&mut tables, id, l);
    }
    tables
}

#[tokio::test]
async fn each_policy_attributes_the_worked_example_as_computed_by_hand() -> Result<(), String> {
    let tables = worked_example();
    // Per component (and shared, as ""), May's effective cost.
    let expected: [(&str, &[(&str, &str)]); 3] = [
        (
            "none",
            &[
                ("", "6.0"),
                ("component:default/a", "30.0"),
                ("component:default/b", "30.0"),
            ],
        ),
        // Idle 8 in proportion 10:30; the cloud's shared 5 − 10 + 3 all
        // to `a`, the only component with cloud cost.
        (
            "proportional",
            &[
                ("component:default/a", "30.0"),
                ("component:default/b", "36.0"),
            ],
        ),
        (
            "even",
            &[
                ("component:default/a", "32.0"),
                ("component:default/b", "34.0"),
            ],
        ),
    ];
    for (policy, want) in expected {
        let ctx = cost_marts(&tables, &parameters(policy)).await?;
        let got = texts(
            &ctx,
            "SELECT coalesce(entity_ref, ''), CAST(round(sum(effective_cost), 6) AS DOUBLE) FROM cost_daily \
             WHERE billing_period = '2026-05' GROUP BY 1 ORDER BY 1",
        )
        .await?;
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|(e, v)| vec![(*e).to_owned(), (*v).to_owned()])
            .collect();
        assert_eq!(got, want, "{policy}");
    }

    // The reasons, kept as rows of their own without a policy.
    let ctx = cost_marts(&tables, &parameters("none")).await?;
    let shared = texts(
        &ctx,
        "SELECT cost_source, attribution, charge_category, CAST(sum(billed_cost) AS DOUBLE) FROM cost_daily \
         WHERE entity_ref IS NULL GROUP BY 1, 2, 3 ORDER BY 1, 2",
    )
    .await?;
    assert_eq!(
        shared,
        [
            ["cloud", "credit", "credit", "-10.0"],
            ["cloud", "tax", "tax", "3.0"],
            ["cloud", "untagged", "usage", "5.0"],
            ["kubernetes", "idle", "usage", "8.0"],
        ]
    );
    // `a`'s allocation splits into Compute and Storage.
    let split = texts(
        &ctx,
        "SELECT service_category, CAST(billed_cost AS DOUBLE) FROM cost_daily \
         WHERE entity_ref = 'component:default/a' AND cost_source = 'kubernetes' \
         AND billing_period = '2026-05' ORDER BY 1",
    )
    .await?;
    assert_eq!(split, [["Compute", "6.0"], ["Storage", "4.0"]]);

    // June against May: `a` +170 (10 → 200 in Kubernetes, its 20 of cloud
    // gone) is significant; `b` +3 (10 %) is not; the team's driver is `a`.
    let monthly = texts(
        &ctx,
        "SELECT scope, CAST(effective_cost AS DOUBLE), CAST(previous_effective_cost AS DOUBLE), \
         CAST(change AS DOUBLE), significant, complete, driver FROM cost_monthly \
         WHERE billing_period = '2026-06' ORDER BY scope",
    )
    .await?;
    assert_eq!(
        monthly,
        [
            [
                "component:default/a",
                "200.0",
                "30.0",
                "170.0",
                "true",
                "true",
                "Compute"
            ],
            [
                "component:default/b",
                "33.0",
                "30.0",
                "3.0",
                "false",
                "true",
                "Compute"
            ],
            [
                "group:default/team",
                "233.0",
                "60.0",
                "173.0",
                "true",
                "true",
                "component:default/a"
            ],
            [
                "org",
                "233.0",
                "66.0",
                "167.0",
                "true",
                "true",
                "component:default/a"
            ],
        ]
    );
    // May is the first month of the data: nothing to compare with.
    let may = texts(
        &ctx,
        "SELECT count(*) FROM cost_monthly WHERE billing_period = '2026-05' \
         AND previous_effective_cost IS NULL AND NOT significant",
    )
    .await?;
    assert_eq!(may, [["4"]]);
    Ok(())
}

/// Three services of one peer group (10,000–99,999 requests in May) at
/// 1.0, 1.5 and 3.0 per 1,000 requests, and a website alone in its group.
#[tokio::test]
async fn benchmarks_rank_components_among_their_peers() -> Result<(), String> {
    let mut tables = Tables::new();
    let day = first_day() + Duration::days(10);
    for (name, kind, cost, requests) in [
        ("a", "service", 10.0, 10_000),
        ("b", "service", 30.0, 20_000),
        ("c", "service", 90.0, 30_000),
        ("w", "website", 5.0, 500),
    ] {
        push(
            &mut tables,
            CATALOG_ENTITIES.name,
            json!({"entity_ref": format!("component:default/{name}"), "kind": "component",
                   "namespace": "default", "name": name, "entity_type": kind, "lifecycle": "production"}),
        );
        allocation(
            &mut tables,
            day,
            &format!("ns/deployment:{name}"),
            Some(name),
            cost,
            0.0,
        );
        push(
            &mut tables,
            SERVICE_METRICS_DAILY.name,
            json!({"date": day.to_string(), "month": "2026-05", "source": "datadog", "service_name": name,
                   "entity_ref": format!("component:default/{name}"), "request_count": requests}),
        );
    }
    let ctx = register(&tables)?;
    compute_in_memory(
        &ctx,
        &["dora_deployments", "cost_daily", "cost_benchmarks"],
        &parameters("none"),
    )
    .await?;
    let rows = texts(
        &ctx,
        "SELECT entity_ref, peer_group, peers, CAST(cost_per_1k_requests AS DOUBLE), \
         CAST(percentile AS DOUBLE), CAST(peer_median AS DOUBLE), CAST(round(gap_to_peer_median, 6) AS DOUBLE), \
         CAST(round(cost_in_engineers * 1000, 6) AS DOUBLE) \
         FROM cost_benchmarks ORDER BY entity_ref",
    )
    .await?;
    assert_eq!(
        rows,
        [
            [
                "component:default/a",
                "service/production/1e4",
                "3",
                "1.0",
                "0.0",
                "1.5",
                "-5.0",
                "0.6"
            ],
            [
                "component:default/b",
                "service/production/1e4",
                "3",
                "1.5",
                "0.5",
                "1.5",
                "0.0",
                "1.8"
            ],
            [
                "component:default/c",
                "service/production/1e4",
                "3",
                "3.0",
                "1.0",
                "1.5",
                "45.0",
                "5.4"
            ],
            [
                "component:default/w",
                "website/production/1e2",
                "1",
                "10.0",
                "0.0",
                "10.0",
                "0.0",
                "0.3"
            ],
        ]
    );
    Ok(())
}

pub(crate) fn line() -> impl Strategy<Value = Line> {
    (
        0i64..61,
        prop::sample::select(vec![Some("a"), Some("b"), None]),
        prop::sample::select(vec!["usage", "usage", "purchase", "tax", "credit"]),
        prop::bool::weighted(0.2),
        -500i64..5_000,
        prop::sample::select(vec!["USD", "USD", "USD", "EUR"]),
    )
        .prop_map(
            |(day, entity, category, shared_tag, cents, currency)| Line {
                day,
                entity,
                category,
                shared_tag,
                billed: cents as f64 / 100.0,
                effective: (cents as f64 * 0.8).round() / 100.0,
                currency,
            },
        )
}

/// Allocations: (day, owner: 0 = a, 1 = b, 2 = idle, 3 = unmapped, CPU
/// cents, volume cents).
pub(crate) fn allocations() -> impl Strategy<Value = Vec<(i64, usize, i64, i64)>> {
    prop::collection::vec((0i64..61, 0usize..4, 0i64..10_000, 0i64..2_000), 0..25)
}

fn cost_tables(allocated: &[(i64, usize, i64, i64)], lines: &[Line]) -> Tables {
    let mut tables = Tables::new();
    catalog(&mut tables);
    for (i, (day, owner, cpu, pv)) in allocated.iter().enumerate() {
        let (name, entity) = match owner {
            0 => (format!("team/deployment:a-{i}"), Some("a")),
            1 => (format!("team/deployment:b-{i}"), Some("b")),
            2 => (format!("__idle__-{i}"), None),
            _ => (format!("nobody/deployment:x-{i}"), None),
        };
        allocation(
            &mut tables,
            first_day() + Duration::days(*day),
            &name,
            entity,
            *cpu as f64 / 100.0,
            *pv as f64 / 100.0,
        );
    }
    for (i, l) in lines.iter().enumerate() {
        cloud(&mut tables, i, l);
    }
    tables
}

/// (date, currency) → billed and effective in the sources.
fn source_totals(tables: &Tables) -> BTreeMap<(String, String), [f64; 2]> {
    let mut out: BTreeMap<(String, String), [f64; 2]> = BTreeMap::new();
    let number =
        |row: &Map<String, Value>, key: &str| row.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let text = |row: &Map<String, Value>, key: &str| {
        row.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    for row in tables
        .get(COST_ALLOCATIONS_DAILY.name)
        .into_iter()
        .flatten()
    {
        let entry = out
            .entry((text(row, "date"), "USD".to_owned()))
            .or_default();
        entry[0] += number(row, "total_cost_usd");
        entry[1] += number(row, "total_cost_usd");
    }
    for row in tables.get(CLOUD_COSTS_DAILY.name).into_iter().flatten() {
        let entry = out
            .entry((text(row, "date"), text(row, "billing_currency")))
            .or_default();
        entry[0] += number(row, "billed_cost_usd");
        entry[1] += number(row, "effective_cost_usd");
    }
    out
}

/// Every mart's rows, amounts rounded to the micro-unit, sorted, as text.
/// Sums over other row orders differ in the last bits, which can still
/// fall either side of a rounding boundary: compare with [`same_rows`].
async fn cost_rows(warehouse: &fathom_warehouse::Warehouse) -> Result<Vec<String>, String> {
    let ctx = crate::mart_session();
    warehouse
        .register_tables(&ctx)
        .await
        .map_err(|e| e.to_string())?;
    cost_rows_in(&ctx).await
}

async fn cost_rows_in(ctx: &datafusion::prelude::SessionContext) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT date, billing_period, entity_ref, cost_source, service_category, charge_category, \
         attribution, allocated, billing_currency, round(billed_cost, 6), round(effective_cost, 6), \
         round(list_cost, 6), lines FROM cost_daily",
        "SELECT scope, billing_period, billing_currency, round(effective_cost, 6), \
         round(previous_effective_cost, 6), significant, complete, driver FROM cost_monthly",
        "SELECT billing_period, cost_source, provider, billing_currency, round(taggable_cost, 6), \
         round(mapped_cost, 6), unmapped_resources FROM cost_coverage",
    ] {
        out.extend(texts(ctx, sql).await?.into_iter().map(|r| r.join("|")));
    }
    out.sort();
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// Whatever the policy, each day's rows add up to what the sources
    /// charged that day, per currency; without a policy nothing is spread.
    #[test]
    fn every_policy_keeps_each_days_totals(
        allocated in allocations(),
        lines in prop::collection::vec(line(), 0..25),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let outcome: Result<(), String> = runtime.block_on(async {
            let tables = cost_tables(&allocated, &lines);
            let want = source_totals(&tables);
            for policy in super::SHARED_POLICIES {
                let ctx = cost_marts(&tables, &parameters(policy)).await?;
                let rows = texts(&ctx, "SELECT CAST(date AS VARCHAR), billing_currency, sum(billed_cost), sum(effective_cost), \
                    sum(CASE WHEN allocated THEN 1 ELSE 0 END) FROM cost_daily GROUP BY 1, 2").await?;
                let mut got: BTreeMap<(String, String), [f64; 2]> = BTreeMap::new();
                for row in &rows {
                    let number = |i: usize| row[i].parse::<f64>().unwrap_or(f64::NAN);
                    got.insert((row[0].clone(), row[1].clone()), [number(2), number(3)]);
                    if policy == "none" && row[4] != "0" {
                        return Err(format!("{policy}: spread rows without a policy: {row:?}"));
                    }
                }
                let nonzero = |m: &BTreeMap<(String, String), [f64; 2]>| -> BTreeMap<(String, String), [f64; 2]> {
                    m.iter().filter(|(_, v)| v.iter().any(|x| x.abs() > 1e-9)).map(|(k, v)| (k.clone(), *v)).collect()
                };
                let (got, want) = (nonzero(&got), nonzero(&want));
                if got.keys().ne(want.keys()) {
                    return Err(format!("{policy}: days {:?} vs {:?}", got.keys(), want.keys()));
                }
                for (key, w) in &want {
                    let g = got.get(key).copied().unwrap_or([f64::NAN; 2]);
                    if g.iter().zip(w).any(|(g, w)| (g - w).abs() > 1e-6) {
                        return Err(format!("{policy} {key:?}: {g:?} vs {w:?}"));
                    }
                }
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}

/// Cost arrives in two parts: the later one brings more days of
/// allocations (appended) and rewrites a billing period of the cloud
/// (replaced whole, as a provider's open month is). The incremental
/// run recomputes only the changed months and leaves exactly the rows
/// a full recompute over the final data writes — a rewritten period
/// counted once.
pub(crate) async fn incremental_equals_full(
    first_allocations: Vec<(i64, usize, i64, i64)>,
    later_allocations: Vec<(i64, usize, i64, i64)>,
    first_lines: Vec<Line>,
    rewritten_lines: Vec<Line>,
    policy: &str,
) -> Result<(), String> {
    let parameters = parameters(policy);
    let as_of = crate::default_as_of();
    // June is the rewritten period: its lines later are others.
    let in_june = |l: &&Line| l.day >= 31;
    let first = cost_tables(&first_allocations, &first_lines);
    let june: Vec<Line> = rewritten_lines
        .iter()
        .filter(in_june)
        .map(|l| Line {
            day: l.day,
            ..l.clone()
        })
        .collect();
    let kept: Vec<Line> = first_lines
        .iter()
        .filter(|l| !in_june(l))
        .cloned()
        .collect();

    let warehouse = fathom_warehouse::Warehouse::in_memory().map_err(|e| e.to_string())?;
    land(&warehouse, &first).await?;
    let run = run_marts(&warehouse, &parameters, as_of, None).await?;
    let mut later = Tables::new();
    let appended = cost_tables(&later_allocations, &[]);
    if let Some(rows) = appended.get(COST_ALLOCATIONS_DAILY.name) {
        // Other names than the first part's: new allocations.
        for row in rows {
            let mut row = row.clone();
            if let Some(Value::String(name)) = row.get_mut("allocation_name") {
                name.push_str("-later");
            }
            later
                .entry(COST_ALLOCATIONS_DAILY.name)
                .or_default()
                .push(row);
        }
    }
    land(&warehouse, &later).await?;
    let mut june_tables = Tables::new();
    for (i, l) in june.iter().enumerate() {
        cloud(&mut june_tables, 1000 + i, l);
    }
    replace_june(&warehouse, &june_tables).await?;
    let incremental = run_marts(&warehouse, &parameters, as_of, run.watermark.as_ref()).await?;
    if !incremental.plan.starts_with("incremental") {
        return Err(format!("not incremental: {}", incremental.plan));
    }
    // The months, never the whole mart.
    for name in ["cost_daily", "cost_coverage"] {
        let mart = incremental
            .marts
            .iter()
            .find(|m| m.mart == name)
            .ok_or("no such mart")?;
        if !(mart.recomputed == "unchanged" || mart.recomputed.ends_with("month(s)")) {
            return Err(format!("{name} recomputed {}", mart.recomputed));
        }
    }
    let ours = cost_rows(&warehouse).await?;

    let mut everything = cost_tables(&first_allocations, &kept);
    for (table, rows) in later.into_iter().chain(june_tables) {
        everything.entry(table).or_default().extend(rows);
    }
    // The full recompute over the final data, by the same SQL in
    // memory.
    let ctx = register(&everything)?;
    compute_in_memory(
        &ctx,
        &[
            "dora_scope_members",
            "cost_daily",
            "cost_monthly",
            "cost_coverage",
        ],
        &parameters,
    )
    .await?;
    let full = cost_rows_in(&ctx).await?;
    if !same_rows(&ours, &full) {
        let only_ours: Vec<_> = ours.iter().filter(|r| !full.contains(r)).take(3).collect();
        let only_full: Vec<_> = full.iter().filter(|r| !ours.contains(r)).take(3).collect();
        return Err(format!(
            "differs after {}: ours only {only_ours:?}, full only {only_full:?}",
            incremental.plan
        ));
    }
    Ok(())
}

/// Whether two sorted row lists agree: text fields exactly, numbers to
/// two micro-units (one for each side's rounding).
fn same_rows(ours: &[String], full: &[String]) -> bool {
    let same_field = |a: &str, b: &str| {
        a == b
            || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 2.5e-6)
    };
    ours.len() == full.len()
        && ours.iter().zip(full).all(|(a, b)| {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.split('|').collect(), b.split('|').collect());
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| same_field(x, y))
        })
}

/// Replaces the cloud's June with `tables`' lines, as a delivery of the
/// provider's rewritten month does.
async fn replace_june(
    warehouse: &fathom_warehouse::Warehouse,
    tables: &Tables,
) -> Result<(), String> {
    let rows: Vec<&Map<String, Value>> = tables
        .get(CLOUD_COSTS_DAILY.name)
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    let (batch, rejected) =
        fathom_ingest::import::json_rows_to_batch(&CLOUD_COSTS_DAILY, &rows, "test")?;
    if !rejected.is_empty() {
        return Err(format!("{rejected:?}"));
    }
    let batches: Vec<arrow::array::RecordBatch> = batch.into_iter().collect();
    warehouse
        .replace_partitions(&CLOUD_COSTS_DAILY, &["2026-06".to_owned()], &batches)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
