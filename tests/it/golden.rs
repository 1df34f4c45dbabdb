//! Golden files: every mart's full rows on the worked example of
//! `docs/metrics.md` (with cost and portal-use examples beside it), as CSV under `tests/golden/worked_example/`. A change
//! to any mart's output shows as a diff of those files, to be reviewed and
//! committed: `FATHOM_UPDATE_GOLDEN=1 cargo test --test it golden` rewrites
//! them.

use anyhow::{Context, Result};
use fathom_warehouse::query::{QueryLimits, query, read_only_session};

use crate::dora::{WORKED_EXAMPLE, load_and_transform};
use crate::support::local_warehouse;

/// Cost beside the DORA example: the worked example's component with
/// Kubernetes and cloud cost, idle capacity, a namespace nobody claims,
/// untagged usage, a credit, tax, usage a Savings Plan covered, the
/// plan's fee charged on 31 May for June's bill (its
/// unused part), a line billed in euros, and its traffic.
pub(crate) const COST_EXAMPLE: [(&str, &str, &str); 3] = [
    (
        "cost_allocations_daily",
        "allocations.csv",
        "date,cluster,allocation_name,namespace,entity_ref,cpu_cost_usd,ram_cost_usd,pv_cost_usd,network_cost_usd,total_cost_usd\n\
         2026-05-31,c1,payments/deployment:api,payments,payments-api,4.5,1.5,4,0,10\n\
         2026-05-31,c1,__idle__,,,8,0,0,0,8\n\
         2026-05-31,c1,legacy/deployment:batch,legacy,,2,0,0,0,2.5\n\
         2026-06-30,c1,payments/deployment:api,payments,payments-api,150,50,0,0,200\n",
    ),
    (
        "cloud_costs_daily",
        "cloud.csv",
        "billing_period,line_item_id,date,provider,charge_category,service_category,entity_ref,billed_cost_usd,effective_cost_usd,list_cost_usd,billing_currency,pricing_category,commitment_discount_id,commitment_discount_type,commitment_discount_category,commitment_discount_status\n\
         2026-05,l1,2026-05-31,aws,usage,Compute,payments-api,20,14.4,20,USD,committed,sp-1,Savings Plan,spend,used\n\
         2026-05,l2,2026-05-31,aws,usage,Storage,,5,5,5,USD,standard,,,,\n\
         2026-05,l3,2026-05-01,aws,credit,,,-10,-10,,USD,,,,,\n\
         2026-05,l4,2026-05-31,aws,tax,,,3,3,,USD,,,,,\n\
         2026-06,l5,2026-05-31,aws,purchase,Compute,,30,2,,USD,standard,sp-1,Savings Plan,spend,unused\n\
         2026-06,l6,2026-06-30,aws,usage,Compute,payments-api,25,25,25,EUR,standard,,,,\n",
    ),
    (
        "service_metrics_daily",
        "traffic.csv",
        "date,source,service_name,entity_ref,request_count\n\
         2026-05-31,datadog,payments-api,payments-api,10000\n\
         2026-06-30,datadog,payments-api,payments-api,50000\n",
    ),
];

/// Portal use beside it: six people of team-payments and one of
/// engineering itself open the service's page on 1 June (and one event
/// without a user); on 2 June one of them searches and clicks the first
/// result, another finds nothing; on 3 June one runs a template. With
/// k = 5, team-payments' six are withheld as a complement (engineering's
/// seven minus them would be its one direct member).
const USAGE_EXAMPLE: [(&str, &str, &str); 3] = [
    (
        "catalog_entities",
        "people.ndjson",
        concat!(
            r#"{"entity_ref": "user:default/u1", "kind": "user", "namespace": "default", "name": "u1"}"#,
            "\n",
            r#"{"entity_ref": "user:default/u2", "kind": "user", "namespace": "default", "name": "u2"}"#,
            "\n",
            r#"{"entity_ref": "user:default/u3", "kind": "user", "namespace": "default", "name": "u3"}"#,
            "\n",
            r#"{"entity_ref": "user:default/u4", "kind": "user", "namespace": "default", "name": "u4"}"#,
            "\n",
            r#"{"entity_ref": "user:default/u5", "kind": "user", "namespace": "default", "name": "u5"}"#,
            "\n",
            r#"{"entity_ref": "user:default/u6", "kind": "user", "namespace": "default", "name": "u6"}"#,
            "\n",
            r#"{"entity_ref": "user:default/u7", "kind": "user", "namespace": "default", "name": "u7"}"#,
            "\n",
        ),
    ),
    (
        "entity_relations",
        "memberships.csv",
        "source_ref,relation_type,target_ref\n\
         user:default/u1,memberOf,group:default/team-payments\n\
         user:default/u2,memberOf,group:default/team-payments\n\
         user:default/u3,memberOf,group:default/team-payments\n\
         user:default/u4,memberOf,group:default/team-payments\n\
         user:default/u5,memberOf,group:default/team-payments\n\
         user:default/u6,memberOf,group:default/team-payments\n\
         user:default/u7,memberOf,group:default/engineering\n",
    ),
    (
        "portal_events",
        "events.ndjson",
        concat!(
            r#"{"event_id": "e1", "occurred_at": "2026-06-01T09:00:00Z", "user_hash": "h1", "user_team_ref": "group:default/team-payments", "action": "navigate", "plugin_id": "catalog", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e2", "occurred_at": "2026-06-01T09:05:00Z", "user_hash": "h2", "user_team_ref": "group:default/team-payments", "action": "navigate", "plugin_id": "catalog", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e3", "occurred_at": "2026-06-01T09:10:00Z", "user_hash": "h3", "user_team_ref": "group:default/team-payments", "action": "navigate", "plugin_id": "catalog", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e4", "occurred_at": "2026-06-01T09:15:00Z", "user_hash": "h4", "user_team_ref": "group:default/team-payments", "action": "navigate", "plugin_id": "catalog", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e5", "occurred_at": "2026-06-01T09:20:00Z", "user_hash": "h5", "user_team_ref": "group:default/team-payments", "action": "navigate", "plugin_id": "catalog", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e6", "occurred_at": "2026-06-01T09:25:00Z", "user_hash": "h6", "user_team_ref": "group:default/team-payments", "action": "navigate", "plugin_id": "catalog", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e7", "occurred_at": "2026-06-01T09:30:00Z", "user_hash": "h7", "user_team_ref": "group:default/engineering", "action": "navigate", "plugin_id": "catalog", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e8", "occurred_at": "2026-06-01T09:35:00Z", "action": "navigate", "plugin_id": "techdocs", "entity_ref": "component:default/payments-api"}"#,
            "\n",
            r#"{"event_id": "e9", "occurred_at": "2026-06-02T10:00:00Z", "user_hash": "h1", "user_team_ref": "group:default/team-payments", "action": "search", "subject": "payments", "plugin_id": "search", "attributes": {"value": "3"}}"#,
            "\n",
            r#"{"event_id": "e10", "occurred_at": "2026-06-02T10:02:00Z", "user_hash": "h1", "user_team_ref": "group:default/team-payments", "action": "discover", "subject": "payments-api", "plugin_id": "search", "attributes": {"value": "1"}}"#,
            "\n",
            r#"{"event_id": "e11", "occurred_at": "2026-06-02T11:00:00Z", "user_hash": "h2", "user_team_ref": "group:default/team-payments", "action": "search", "subject": "paymnts", "plugin_id": "search", "attributes": {"value": "0"}}"#,
            "\n",
            r#"{"event_id": "e12", "occurred_at": "2026-06-03T15:00:00Z", "user_hash": "h1", "user_team_ref": "group:default/team-payments", "action": "create", "subject": "Task has been created", "plugin_id": "scaffolder", "entity_ref": "template:default/new-service", "attributes": {"value": "240", "status": "completed"}}"#,
            "\n",
        ),
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mart_matches_its_golden_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files: Vec<(&str, &str, &str)> = WORKED_EXAMPLE
        .into_iter()
        .chain(COST_EXAMPLE)
        .chain(USAGE_EXAMPLE)
        .collect();
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let session = read_only_session(&warehouse, QueryLimits::default()).await?;
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/worked_example");
    let update = std::env::var_os("FATHOM_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for mart in fathom_transforms::MARTS {
        // Every column but the write time, in a total order.
        let columns: Vec<&str> = mart
            .def
            .columns
            .iter()
            .map(|c| c.name)
            .filter(|c| *c != "updated_at")
            .collect();
        let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            mart.def.name,
            order.join(", ")
        );
        let (_, batches) = query(&session, &sql).await?;
        let csv = csv_text(&columns, &fathom_warehouse::query::text_rows(&batches)?);
        let path = golden.join(format!("{}.csv", mart.def.name));
        if update {
            std::fs::create_dir_all(&golden)?;
            std::fs::write(&path, &csv)?;
            continue;
        }
        let expected = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is missing; run with FATHOM_UPDATE_GOLDEN=1",
                path.display()
            )
        })?;
        if expected != csv {
            let first = expected
                .lines()
                .zip(csv.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(csv.lines().count()));
            stale.push(format!(
                "{}: first difference at line {} (expected {:?}, got {:?})",
                mart.def.name,
                first + 1,
                expected.lines().nth(first),
                csv.lines().nth(first)
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "marts differ from their golden files (review, then FATHOM_UPDATE_GOLDEN=1):\n{}",
        stale.join("\n")
    );
    Ok(())
}

/// Rows as CSV text (lists as the engine prints them), quoted where
/// needed, one row per line.
fn csv_text(columns: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |text: &str| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    };
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}
