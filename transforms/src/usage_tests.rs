//! The usage marts' privacy rule and refresh on random organisations and
//! events (proptest, 100 cases each): no published number about people
//! counts fewer than k users; a day's published teams plus `other` are
//! everyone; a scope minus its published sub-scopes never reveals fewer
//! than k users; an incremental run equals a full recompute.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate};
use fathom_models::tables::{CATALOG_ENTITIES, ENTITY_RELATIONS, PORTAL_EVENTS};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::cost_tests::{compute_in_memory, texts};
use super::properties::{land, mart_rows, register, run_marts};
use super::{Parameters, UsageParameters};

type Tables = BTreeMap<&'static str, Vec<Map<String, Value>>>;

const USAGE_MARTS: [&str; 7] = [
    "usage_daily",
    "usage_active",
    "usage_features",
    "usage_search",
    "usage_search_queries",
    "usage_templates",
    "usage_entities",
];

fn push(tables: &mut Tables, table: &'static str, value: Value) {
    if let Value::Object(map) = value {
        tables.entry(table).or_default().push(map);
    }
}

/// One event: (user or anonymous, day, minute of the day, action index,
/// plugin index).
pub(crate) type Event = (Option<usize>, i64, u32, usize, usize);

const ACTIONS: [&str; 5] = ["navigate", "search", "discover", "create", "frobnicate"];
const PLUGINS: [&str; 4] = ["catalog", "techdocs", "search", "scaffolder"];

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 4, 1).unwrap_or_default()
}

/// Two departments, four teams (two per department), `team_sizes` users
/// in each team, then users of no team; `events` by them — when `moving`,
/// every ninth from the next user's team (people move).
fn tables(team_sizes: &[usize], teamless: usize, events: &[Event], moving: bool) -> Tables {
    let mut out = Tables::new();
    let group = |out: &mut Tables, name: &str, kind: &str, parent: Option<&str>| {
        push(
            out,
            CATALOG_ENTITIES.name,
            json!({"entity_ref": format!("group:default/{name}"), "kind": "group", "namespace": "default",
                   "name": name, "entity_type": kind, "parent_ref": parent.map(|p| format!("group:default/{p}"))}),
        );
    };
    group(&mut out, "dept-a", "department", None);
    group(&mut out, "dept-b", "department", None);
    let mut users: Vec<Option<String>> = Vec::new();
    for (t, size) in team_sizes.iter().enumerate() {
        let team = format!("team-{t}");
        group(
            &mut out,
            &team,
            "team",
            Some(if t % 2 == 0 { "dept-a" } else { "dept-b" }),
        );
        for _ in 0..*size {
            users.push(Some(format!("group:default/{team}")));
        }
    }
    users.extend(std::iter::repeat_n(None, teamless));
    for (u, team) in users.iter().enumerate() {
        push(
            &mut out,
            CATALOG_ENTITIES.name,
            json!({"entity_ref": format!("user:default/u{u}"), "kind": "user", "namespace": "default", "name": format!("u{u}")}),
        );
        if let Some(team) = team {
            push(
                &mut out,
                ENTITY_RELATIONS.name,
                json!({"source_ref": format!("user:default/u{u}"), "relation_type": "memberOf", "target_ref": team}),
            );
        }
    }
    for (i, (user, day, minute, action, plugin)) in events.iter().enumerate() {
        let user = user.map(|u| u % users.len().max(1));
        let at = first_day()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            + Duration::days(*day)
            + Duration::minutes(i64::from(*minute));
        let action = ACTIONS[action % ACTIONS.len()];
        let attributes = match action {
            "search" => json!({"value": (i % 3).to_string()}),
            "discover" => json!({"value": (1 + i % 4).to_string()}),
            "create" => {
                json!({"status": if i % 4 == 0 { "failed" } else { "completed" }, "value": "30"})
            }
            _ => json!({}),
        };
        push(
            &mut out,
            PORTAL_EVENTS.name,
            json!({"event_id": format!("e{i}"), "occurred_at": at.to_rfc3339(),
                   "occurred_month": at.format("%Y-%m").to_string(),
                   "user_hash": user.map(|u| format!("h{u}")),
                   "user_team_ref": user.and_then(|u| users.get(if moving && i % 9 == 4 { (u + 1) % users.len() } else { u }).cloned().flatten()),
                   "action": action, "subject": format!("q{}", i % 3),
                   "plugin_id": PLUGINS[plugin % PLUGINS.len()],
                   "entity_ref": (action == "create").then_some("template:default/t")
                       .or((action == "navigate").then_some("component:default/c")),
                   "attributes": attributes}),
        );
    }
    out
}

pub(crate) fn event() -> impl Strategy<Value = Event> {
    (
        prop::option::weighted(0.95, 0usize..40),
        0i64..70,
        0u32..1440,
        0usize..5,
        0usize..4,
    )
}

fn parameters(k: u32) -> Parameters {
    Parameters {
        change_margin_minutes: 0,
        usage: UsageParameters {
            k_anonymity: k,
            ..UsageParameters::default()
        },
        ..Parameters::default()
    }
}

fn count(text: &str) -> Option<i64> {
    text.parse().ok()
}

/// The privacy invariants over the usage marts in `ctx`.
async fn check_privacy(
    ctx: &datafusion::prelude::SessionContext,
    k: i64,
    events: &Tables,
) -> Result<(), String> {
    // 1. No published number about people below k.
    let small = texts(
        ctx,
        &format!(
            "SELECT 'daily', count(*) FROM usage_daily WHERE users < {k} \
             UNION ALL SELECT 'active', count(*) FROM usage_active \
               WHERE active_users < {k} OR new_users < {k} OR returning_users < {k} \
                  OR weekly_active_users < {k} OR monthly_active_users < {k} \
             UNION ALL SELECT 'features', count(*) FROM usage_features WHERE users < {k} OR new_users < {k} \
             UNION ALL SELECT 'search', count(*) FROM usage_search WHERE users < {k} \
             UNION ALL SELECT 'queries', count(*) FROM usage_search_queries WHERE users < {k} \
             UNION ALL SELECT 'templates', count(*) FROM usage_templates WHERE users < {k} \
             UNION ALL SELECT 'entities', count(*) FROM usage_entities WHERE viewers < {k}"
        ),
    )
    .await?;
    for row in &small {
        if row[1] != "0" {
            return Err(format!("{} publishes {} numbers below k", row[0], row[1]));
        }
    }
    // 2. usage_daily: published teams plus `other` are every user and
    // event of the day, plugin and action, whenever `other` is published.
    let mut truth: BTreeMap<(String, String, String), (BTreeSet<String>, i64)> = BTreeMap::new();
    for row in events.get(PORTAL_EVENTS.name).into_iter().flatten() {
        let text = |k: &str| {
            row.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let entry = truth
            .entry((
                text("occurred_at")[..10].to_owned(),
                text("plugin_id"),
                text("action"),
            ))
            .or_default();
        if let Some(Value::String(user)) = row.get("user_hash") {
            entry.0.insert(user.clone());
        }
        entry.1 += 1;
    }
    let daily = texts(
        ctx,
        "SELECT CAST(day AS VARCHAR), plugin_id, action, sum(users), sum(events), \
                bool_or(team = 'other' AND suppressed) \
         FROM usage_daily WHERE NOT suppressed OR team = 'other' GROUP BY 1, 2, 3",
    )
    .await?;
    for row in &daily {
        let Some((users, events)) = truth.get(&(row[0].clone(), row[1].clone(), row[2].clone()))
        else {
            return Err(format!("usage_daily row of no events: {row:?}"));
        };
        if row[5] == "false"
            && (count(&row[3]) != Some(users.len() as i64) || count(&row[4]) != Some(*events))
        {
            return Err(format!(
                "usage_daily {row:?}: want {} users, {events} events",
                users.len()
            ));
        }
        // `other` withheld: what it holds is fewer than k users (nothing
        // was published that a complement could have joined it with).
        let withheld = users.len() as i64 - count(&row[3]).unwrap_or(0);
        if row[5] == "true" && withheld >= k {
            return Err(format!(
                "usage_daily {row:?}: {withheld} users withheld in a suppressed `other`"
            ));
        }
    }
    // 3. usage_active: a scope minus its published direct sub-scopes is
    // 0 or at least k, for every count.
    for column in [
        "active_users",
        "weekly_active_users",
        "monthly_active_users",
        "new_users",
        "returning_users",
    ] {
        let rest = texts(
            ctx,
            &format!(
                "WITH parents AS (
                     SELECT g.entity_ref AS scope, coalesce(p.entity_ref, 'org') AS parent
                     FROM catalog_entities g
                     LEFT JOIN catalog_entities p ON p.entity_ref = g.parent_ref AND p.kind = 'group'
                     WHERE g.kind = 'group')
                 SELECT a.scope, a.grain, CAST(a.period_start AS VARCHAR),
                        a.{column} - coalesce(sum(c.{column}), 0) AS rest
                 FROM usage_active a
                 LEFT JOIN parents p ON p.parent = a.scope
                 LEFT JOIN usage_active c
                   ON c.scope = p.scope AND c.grain = a.grain AND c.period_start = a.period_start
                 WHERE a.{column} IS NOT NULL
                 GROUP BY a.scope, a.grain, a.period_start, a.{column}"
            ),
        )
        .await?;
        for row in &rest {
            let rest = count(&row[3]).unwrap_or(-1);
            if rest != 0 && rest < k {
                return Err(format!(
                    "{column} of {row:?} minus its published sub-scopes is {rest}"
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn usage_marts_never_publish_fewer_than_k_users(
        team_sizes in prop::collection::vec(0usize..9, 4),
        teamless in 0usize..4,
        events in prop::collection::vec(event(), 0..250),
        k in prop::sample::select(vec![2u32, 3, 5]),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let outcome: Result<(), String> = runtime.block_on(async {
            let tables = tables(&team_sizes, teamless, &events, true);
            let ctx = register(&tables)?;
            compute_in_memory(&ctx, &USAGE_MARTS, &parameters(k)).await?;
            check_privacy(&ctx, i64::from(k), &tables).await
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}

/// Events arrive in two parts (the later one adds days of the last
/// months and some late events of earlier ones); the incremental run
/// recomputes the usage marts by month where it can and leaves exactly
/// the rows a full recompute writes.
pub(crate) async fn incremental_equals_full(
    team_sizes: Vec<usize>,
    events: Vec<Event>,
    split: i64,
) -> Result<(), String> {
    let parameters = parameters(2);
    let as_of = crate::default_as_of();
    let everything = tables(&team_sizes, 1, &events, true);
    let (mut first, mut later) = (Tables::new(), Tables::new());
    for (table, rows) in &everything {
        for (i, row) in rows.iter().enumerate() {
            let day = events.get(i).map_or(0, |e| e.1);
            let late = *table == PORTAL_EVENTS.name && (day >= split || i % 7 == 0);
            let part = if late { &mut later } else { &mut first };
            part.entry(*table).or_default().push(row.clone());
        }
    }
    let warehouse = fathom_warehouse::Warehouse::in_memory().map_err(|e| e.to_string())?;
    land(&warehouse, &first).await?;
    let run = run_marts(&warehouse, &parameters, as_of, None).await?;
    land(&warehouse, &later).await?;
    let incremental = run_marts(&warehouse, &parameters, as_of, run.watermark.as_ref()).await?;
    // Never whole: the months from the earliest changed one.
    for mart in &incremental.marts {
        if mart.mart.starts_with("usage_") && mart.recomputed == "all" {
            return Err(format!(
                "{} recomputed whole after {}",
                mart.mart, incremental.plan
            ));
        }
    }
    let ours = mart_rows(&warehouse).await?;
    // The full recompute over everything, by the same SQL in
    // memory (a second warehouse would triple the case's time).
    let ctx = register(&everything)?;
    compute_in_memory(&ctx, &USAGE_MARTS, &parameters).await?;
    for name in USAGE_MARTS {
        let def = fathom_models::table(name).ok_or("no such table")?;
        // As `mart_rows` reads them: without the derived partition column.
        let columns: Vec<&str> = def
            .columns
            .iter()
            .map(|c| c.name)
            .filter(|c| *c != "updated_at" && def.partition.is_none_or(|p| p.column != *c))
            .collect();
        let mut full: Vec<String> =
            texts(&ctx, &format!("SELECT {} FROM {name}", columns.join(", ")))
                .await?
                .into_iter()
                .map(|row| row.join("|"))
                .collect();
        full.sort();
        let ours = ours.get(name).cloned().unwrap_or_default();
        if ours != full {
            let only_ours: Vec<&String> =
                ours.iter().filter(|r| !full.contains(r)).take(3).collect();
            let only_full: Vec<&String> =
                full.iter().filter(|r| !ours.contains(r)).take(3).collect();
            return Err(format!(
                "{name} differs after {}: ours only {only_ours:?}, full only {only_full:?}",
                incremental.plan
            ));
        }
    }
    Ok(())
}

/// The worked example of docs/metrics.md § Usage, k = 3: ten users on one
/// day, four in team-0, two in team-1, one in team-2, three in team-3.
#[tokio::test]
async fn the_worked_example_of_the_usage_doc_holds() -> Result<(), String> {
    let mut events: Vec<Event> = vec![(Some(0), 0, 600, 0, 0), (Some(0), 0, 601, 0, 0)];
    events.extend((0..10).map(|u| (Some(u), 0, 610 + u as u32, 0, 0)));
    let tables = tables(&[4, 2, 1, 3], 0, &events, false);
    let ctx = register(&tables)?;
    compute_in_memory(&ctx, &USAGE_MARTS, &parameters(3)).await?;
    let daily = texts(
        &ctx,
        "SELECT team, coalesce(CAST(users AS VARCHAR), '-'), coalesce(CAST(events AS VARCHAR), '-'), \
                coalesce(suppression, '') FROM usage_daily ORDER BY team",
    )
    .await?;
    let want = [
        ["group:default/team-0", "4", "6", ""],
        ["group:default/team-1", "-", "-", "below_k"],
        ["group:default/team-2", "-", "-", "below_k"],
        ["group:default/team-3", "3", "3", ""],
        ["other", "3", "3", ""],
    ];
    assert_eq!(daily, want.map(|r| r.map(str::to_owned).to_vec()).to_vec());
    let active = texts(
        &ctx,
        "SELECT scope, members, coalesce(CAST(active_users AS VARCHAR), '-'), \
                coalesce(CAST(new_users AS VARCHAR), '-'), coalesce(suppression, '') \
         FROM usage_active WHERE grain = 'month' ORDER BY scope",
    )
    .await?;
    let want = [
        ["group:default/dept-a", "5", "5", "-", "below_k"],
        ["group:default/dept-b", "5", "5", "-", "below_k"],
        ["group:default/team-0", "4", "-", "-", "complement"],
        ["group:default/team-1", "2", "-", "-", "below_k"],
        ["group:default/team-2", "1", "-", "-", "below_k"],
        ["group:default/team-3", "3", "-", "-", "complement"],
        ["org", "10", "10", "-", "below_k"],
    ];
    assert_eq!(active, want.map(|r| r.map(str::to_owned).to_vec()).to_vec());
    Ok(())
}

/// Two people of team-0 are active on April 1st and, from team-1, on April
/// 20th; a third, of team-1, on April 10th (k = 2): the month counts the
/// two in team-1, April 1st and the rolling windows until the 20th in
/// team-0, those from the 20th in team-1.
#[tokio::test]
async fn a_user_counts_in_the_team_of_their_latest_day_in_each_period() -> Result<(), String> {
    let events: Vec<Event> = vec![
        (Some(0), 0, 600, 0, 0),
        (Some(1), 0, 601, 0, 0),
        (Some(2), 9, 600, 0, 0),
        (Some(0), 19, 600, 0, 0),
        (Some(1), 19, 601, 0, 0),
    ];
    let mut tables = tables(&[2, 2, 0, 0], 0, &events, false);
    for (i, row) in tables
        .get_mut(PORTAL_EVENTS.name)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if i >= 2 {
            row.insert("user_team_ref".into(), json!("group:default/team-1"));
        }
    }
    let ctx = register(&tables)?;
    compute_in_memory(&ctx, &["usage_active"], &parameters(2)).await?;
    let rows = texts(
        &ctx,
        "SELECT scope, grain, CAST(period_start AS VARCHAR), coalesce(CAST(active_users AS VARCHAR), '-'), \
                coalesce(CAST(monthly_active_users AS VARCHAR), '-') \
         FROM usage_active WHERE scope IN ('group:default/team-0', 'group:default/team-1') \
         ORDER BY 2 DESC, 3, 1",
    )
    .await?;
    let want = [
        ["group:default/team-0", "month", "2026-04-01", "-", "-"],
        ["group:default/team-1", "month", "2026-04-01", "3", "-"],
        ["group:default/team-0", "day", "2026-04-01", "2", "2"],
        ["group:default/team-1", "day", "2026-04-01", "-", "-"],
        ["group:default/team-0", "day", "2026-04-10", "-", "2"],
        ["group:default/team-1", "day", "2026-04-10", "-", "-"],
        ["group:default/team-0", "day", "2026-04-20", "-", "-"],
        ["group:default/team-1", "day", "2026-04-20", "2", "3"],
    ];
    assert_eq!(rows, want.map(|r| r.map(str::to_owned).to_vec()).to_vec());
    Ok(())
}
