//! `deployment_features` on a hand-computed case, and its no-leakage
//! invariant on random histories (proptest, 100 cases): cutting away
//! everything that happened after an instant — later deployments,
//! incidents that started later, resolutions and reviews that came later —
//! changes no feature of a deployment that started before it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use fathom_models::tables::{
    CATALOG_ENTITIES, COMMIT_FILES, COMMITS, DEPLOYMENT_CHANGES, DEPLOYMENTS, INCIDENTS,
    PULL_REQUEST_REVIEWS, PULL_REQUESTS,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::properties::{register, replace_in_memory, service, start};
use super::{Parameters, compute, marts};

type Tables = BTreeMap<&'static str, Vec<Map<String, Value>>>;

fn push(tables: &mut Tables, table: &'static str, value: Value) {
    if let Value::Object(map) = value {
        tables.entry(table).or_default().push(map);
    }
}

/// The deployment and change marts, then the features, in memory; the
/// features' rows as `column=value` text, by deployment id.
async fn features(tables: &Tables) -> Result<BTreeMap<String, Vec<String>>, String> {
    let ctx = register(tables)?;
    let as_of = start() + Duration::days(60);
    for name in ["dora_deployments", "dora_changes", "deployment_features"] {
        let mart = marts::named(name).ok_or(name)?;
        let batches = compute(&ctx, mart, &Parameters::default(), as_of)
            .await
            .map_err(|e| e.to_string())?;
        replace_in_memory(&ctx, mart.def, batches)?;
    }
    let batches = ctx
        .sql("SELECT * FROM deployment_features")
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let Some(first) = batches.first() else {
        return Ok(BTreeMap::new());
    };
    let names: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut out = BTreeMap::new();
    for row in fathom_warehouse::query::text_rows(&batches).map_err(|e| e.to_string())? {
        let id = row.first().cloned().unwrap_or_default();
        let cells = names
            .iter()
            .zip(&row)
            .filter(|(n, _)| n.as_str() != "updated_at")
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        out.insert(id, cells);
    }
    Ok(out)
}

fn cell<'a>(row: &'a [String], column: &str) -> &'a str {
    row.iter()
        .find_map(|c| c.strip_prefix(&format!("{column}=")))
        .unwrap_or("<missing>")
}

/// The worked example of docs/ml.md: four deployments of one service.
fn worked_example() -> Tables {
    let mut t = Tables::new();
    let pay = "component:default/pay";
    push(
        &mut t,
        CATALOG_ENTITIES.name,
        json!({"entity_ref": pay, "kind": "component", "namespace": "default", "name": "pay"}),
    );
    let deployment = |t: &mut Tables, id: &str, started: &str, finished: &str| {
        push(
            t,
            DEPLOYMENTS.name,
            json!({"deployment_id": id, "source": "import", "entity_ref": pay, "environment": "production",
                   "status": "success", "revision": id, "repository_id": "acme/pay",
                   "started_at": started, "finished_at": finished}),
        );
    };
    deployment(&mut t, "d0", "2026-05-01T09:55:00Z", "2026-05-01T10:00:00Z");
    deployment(&mut t, "d1", "2026-05-04T16:30:00Z", "2026-05-04T16:40:00Z");
    deployment(&mut t, "d2", "2026-05-08T10:00:00Z", "2026-05-08T10:10:00Z");
    deployment(&mut t, "d3", "2026-05-25T11:00:00Z", "2026-05-25T11:05:00Z");
    let change = |t: &mut Tables, deployment: &str, sha: &str, pr: Option<u32>| {
        push(
            t,
            DEPLOYMENT_CHANGES.name,
            json!({"deployment_id": deployment, "sha": sha, "repository_id": "acme/pay", "pull_request_number": pr}),
        );
    };
    change(&mut t, "d1", "m1", Some(1));
    change(&mut t, "d1", "push1", None);
    change(&mut t, "d2", "m2", Some(2));
    change(&mut t, "d3", "m3", Some(3));
    push(
        &mut t,
        COMMITS.name,
        json!({"repository_id": "acme/pay", "sha": "push1", "entity_ref": pay, "author_login": "bob",
               "authored_at": "2026-05-04T14:00:00Z", "committed_at": "2026-05-04T14:00:00Z",
               "pushed_directly": true, "additions": 5, "deletions": 1}),
    );
    let pr = |t: &mut Tables, n: u32, author: &str, sizes: [u32; 4], at: [&str; 3]| {
        push(
            t,
            PULL_REQUESTS.name,
            json!({"repository_id": "acme/pay", "number": n, "state": "merged", "author_login": author,
                   "entity_ref": pay, "created_at": at[0], "first_commit_at": at[0], "merged_at": at[1],
                   "first_review_at": (!at[2].is_empty()).then_some(at[2]),
                   "additions": sizes[0], "deletions": sizes[1], "changed_files": sizes[2],
                   "commit_count": sizes[3], "merge_commit_sha": format!("m{n}")}),
        );
    };
    pr(
        &mut t,
        1,
        "alice",
        [100, 20, 3, 2],
        [
            "2026-05-02T09:00:00Z",
            "2026-05-04T12:00:00Z",
            "2026-05-03T10:00:00Z",
        ],
    );
    pr(
        &mut t,
        2,
        "alice",
        [10, 0, 1, 1],
        ["2026-05-07T09:00:00Z", "2026-05-08T09:00:00Z", ""],
    );
    pr(
        &mut t,
        3,
        "carol",
        [2000, 500, 40, 8],
        [
            "2026-05-20T09:00:00Z",
            "2026-05-24T18:00:00Z",
            "2026-05-21T09:00:00Z",
        ],
    );
    let review = |t: &mut Tables, n: u32, id: &str, who: &str, at: &str| {
        push(
            t,
            PULL_REQUEST_REVIEWS.name,
            json!({"repository_id": "acme/pay", "pull_request_number": n, "review_id": id,
                   "reviewer_login": who, "state": "COMMENTED", "submitted_at": at}),
        );
    };
    review(&mut t, 1, "r1", "bob", "2026-05-03T10:00:00Z");
    review(&mut t, 1, "r2", "carol", "2026-05-04T11:00:00Z");
    // The author's own comment is not a review.
    review(&mut t, 1, "r3", "alice", "2026-05-04T11:30:00Z");
    review(&mut t, 3, "r4", "alice", "2026-05-21T09:00:00Z");
    // After d3 started: not known to it.
    review(&mut t, 3, "r5", "bob", "2026-05-26T09:00:00Z");
    for (path, added, deleted) in [
        ("src/a.rs", 50, 10),
        ("src/b.rs", 50, 10),
        ("README.md", 20, 0),
    ] {
        push(
            &mut t,
            COMMIT_FILES.name,
            json!({"repository_id": "acme/pay", "sha": "m1", "path": path, "additions": added, "deletions": deleted}),
        );
    }
    // i1 follows d1 (linked as the nearest earlier deployment: d1 failed,
    // known from 05-05 09:00); i2 is open when d3 starts, linked to none.
    for (id, created, resolved) in [
        ("i1", "2026-05-05T09:00:00Z", "2026-05-05T12:00:00Z"),
        ("i2", "2026-05-25T10:00:00Z", "2026-05-25T15:00:00Z"),
    ] {
        push(
            &mut t,
            INCIDENTS.name,
            json!({"incident_id": id, "source": "import", "entity_ref": pay,
                   "created_at": created, "resolved_at": resolved}),
        );
    }
    t
}

#[tokio::test]
async fn the_worked_example_of_the_features_is_computed_as_by_hand() -> Result<(), String> {
    let rows = features(&worked_example()).await?;
    // The baseline has no features: it shipped nothing of its own.
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["d1", "d2", "d3"]);
    let expected: [(&str, [&str; 3]); 26] = [
        ("is_rollback", ["false", "false", "false"]),
        ("changes", ["2", "1", "1"]),
        ("pull_requests", ["1", "1", "1"]),
        ("direct_pushes", ["1", "0", "0"]),
        ("commits", ["3", "1", "8"]),
        ("lines_added", ["105", "10", "2000"]),
        ("lines_deleted", ["21", "0", "500"]),
        ("files_changed", ["3", "1", "40"]),
        ("largest_change_lines", ["120", "10", "2500"]),
        // src and the root; no file lists for d2 and d3.
        ("directories", ["2", "", ""]),
        ("reviewers", ["2", "0", "1"]),
        ("reviews", ["2", "0", "1"]),
        ("unreviewed_changes", ["1", "1", "0"]),
        ("review_hours_mean", ["51.0", "24.0", "105.0"]),
        // 3 d 6 h 30 min; 3 d 17 h 20 min; 17 d 0 h 50 min.
        (
            "days_since_previous",
            [
                "3.2708333333333335",
                "3.7222222222222223",
                "17.03472222222222",
            ],
        ),
        ("recent_deployments", ["1", "2", "3"]),
        // d1's failure (i1, from 05-05) is known to d2 and d3.
        ("recent_failures", ["0", "1", "1"]),
        ("author_min_prior_changes", ["0", "1", "0"]),
        ("author_recent_failures", ["0", "1", "0"]),
        ("hour_utc", ["16", "10", "11"]),
        ("weekday", ["1", "5", "1"]),
        ("during_incident", ["false", "false", "true"]),
        ("hotfix", ["false", "false", "false"]),
        ("after_long_pause", ["false", "false", "true"]),
        ("environment", ["production", "production", "production"]),
        ("entity_ref", ["component:default/pay"; 3]),
    ];
    for (column, values) in expected {
        for (id, value) in ["d1", "d2", "d3"].iter().zip(values) {
            let row = rows.get(*id).ok_or(*id)?;
            assert_eq!(cell(row, column), value, "{id}.{column}");
        }
    }
    // Size against the usual: (lines + 1) over the geometric mean of the
    // earlier deployments' lines + 1 — d2's 11 against d1's 127, d3's 2,501
    // against √(127 × 11); d1 has no earlier one.
    assert_eq!(cell(&rows["d1"], "size_vs_recent"), "");
    for (id, by_hand) in [
        ("d2", 11.0 / 127.0),
        ("d3", 2501.0 / (127.0f64 * 11.0).sqrt()),
    ] {
        let got: f64 = cell(&rows[id], "size_vs_recent")
            .parse()
            .map_err(|e| format!("{id}: {e}"))?;
        assert!(
            (got - by_hand).abs() < 1e-9 * by_hand,
            "{id}: {got} vs {by_hand}"
        );
    }
    // Entropy of 60, 60 and 20 lines over three files, in bits.
    let entropy: f64 = cell(&rows["d1"], "file_entropy")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let p = [60.0 / 140.0, 60.0 / 140.0, 20.0 / 140.0];
    let by_hand: f64 = -p.iter().map(|p: &f64| p * p.log2()).sum::<f64>();
    assert!((entropy - by_hand).abs() < 1e-12, "{entropy} vs {by_hand}");
    Ok(())
}

/// A deployment not made yet gets the features the mart gives a real one:
/// d3's pull request shipped at d3's start is d3, feature for feature.
#[tokio::test]
async fn a_candidate_deployment_gets_the_features_of_the_same_real_one() -> Result<(), String> {
    let tables = worked_example();
    let real = features(&tables).await?;
    let ctx = register(&tables)?;
    let as_of = start() + Duration::days(60);
    for name in ["dora_deployments", "dora_changes"] {
        let mart = marts::named(name).ok_or(name)?;
        let batches = compute(&ctx, mart, &Parameters::default(), as_of)
            .await
            .map_err(|e| e.to_string())?;
        replace_in_memory(&ctx, mart.def, batches)?;
    }
    let at = DateTime::parse_from_rfc3339("2026-05-25T11:00:00Z")
        .map_err(|e| e.to_string())?
        .to_utc();
    let missing = crate::candidate::candidate(
        &ctx,
        "acme/pay",
        &crate::candidate::Selection::PullRequests(vec![3, 99]),
        at,
    )
    .await;
    assert!(
        matches!(&missing, Err(crate::Error::NotFound(m)) if m.contains("#99")),
        "{missing:?}"
    );
    let candidate = crate::candidate::candidate(
        &ctx,
        "acme/pay",
        &crate::candidate::Selection::PullRequests(vec![3]),
        at,
    )
    .await
    .map_err(|e| e.to_string())?;
    assert_eq!(
        candidate.entity_ref.as_deref(),
        Some("component:default/pay")
    );
    assert_eq!(candidate.changes, ["pr:acme/pay#3"]);
    let d3 = real.get("d3").ok_or("d3")?;
    for cell in d3 {
        let (column, value) = cell.split_once('=').ok_or("cell")?;
        if column == "deployment_id" {
            continue;
        }
        let theirs = candidate
            .columns
            .get(column)
            .map_or("<missing>", String::as_str);
        assert_eq!(theirs, value, "{column}");
    }
    Ok(())
}

/// `tables` as they stood at `cut`: deployments that had not finished,
/// incidents that had not started and reviews not yet submitted are gone,
/// and resolutions still to come are unknown. Code history stays: the
/// change lists of later deployments too, since the pull request a commit
/// came through is a fact of the code that a later list may be the first to
/// report (then a deployment without it counts the commit as a push).
fn as_known_at(tables: &Tables, cut: DateTime<Utc>) -> Tables {
    let before = |row: &Map<String, Value>, column: &str| {
        row.get(column)
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|t| t < cut)
    };
    let mut out = tables.clone();
    if let Some(rows) = out.get_mut(DEPLOYMENTS.name) {
        rows.retain(|r| before(r, "finished_at"));
    }
    if let Some(rows) = out.get_mut(INCIDENTS.name) {
        rows.retain(|r| before(r, "created_at"));
        for row in rows.iter_mut() {
            if !before(row, "resolved_at") {
                row.insert("resolved_at".to_owned(), Value::Null);
            }
        }
    }
    if let Some(rows) = out.get_mut(PULL_REQUEST_REVIEWS.name) {
        rows.retain(|r| before(r, "submitted_at"));
    }
    out
}

/// Reviews of every pull request of `tables`: `(pull request number,
/// minutes after the start)`, by another person or its author.
fn add_reviews(tables: &mut Tables, reviews: &[(u8, u32, bool)]) {
    let pulls: Vec<(Value, Value)> = tables
        .get(PULL_REQUESTS.name)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| Some((r.get("repository_id")?.clone(), r.get("number")?.clone())))
                .collect()
        })
        .unwrap_or_default();
    for (i, (number, minute, own)) in reviews.iter().enumerate() {
        let Some((repository, pr)) = pulls
            .iter()
            .find(|(_, n)| n.as_u64() == Some(u64::from(*number)))
        else {
            continue;
        };
        let at = (start() + Duration::minutes(i64::from(*minute))).to_rfc3339();
        push(
            tables,
            PULL_REQUEST_REVIEWS.name,
            json!({"repository_id": repository, "pull_request_number": pr, "review_id": format!("r{i}"),
                   "reviewer_login": if *own { Value::Null } else { json!("reviewer") }, "submitted_at": at}),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// No feature of a deployment depends on anything after it started.
    #[test]
    fn features_never_depend_on_what_came_later(
        services in prop::collection::vec(service(), 1..3),
        reviews in prop::collection::vec((0u8..3, 0u32..(40 * 24 * 60), any::<bool>()), 0..6),
        cut in 0u32..(40 * 24 * 60),
    ) {
        let mut tables = Tables::new();
        super::properties::rows("team", &services, &mut tables);
        add_reviews(&mut tables, &reviews);
        let cut = start() + Duration::minutes(i64::from(cut));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let outcome = runtime.map_err(|e| e.to_string()).and_then(|rt| rt.block_on(async {
            let all = features(&tables).await?;
            let known = features(&as_known_at(&tables, cut)).await?;
            for (id, row) in &known {
                let started = cell(row, "started_at");
                let started = DateTime::parse_from_rfc3339(&started.replace(' ', "T"))
                    .map(|t| t.to_utc())
                    .or_else(|_| chrono::NaiveDateTime::parse_from_str(started, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc()))
                    .map_err(|e| format!("{started}: {e}"))?;
                if started < cut && all.get(id) != Some(row) {
                    return Err(format!("{id} changed:\n  known at the cut: {row:?}\n  with later data: {:?}", all.get(id)));
                }
            }
            Ok(())
        }));
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}
