//! The cost endpoint on the worked example with its cost beside it: the
//! numbers of the golden files, by day and by month, billed and
//! effective; only the roles that may see cost, only in their scopes.

use anyhow::Result;
use serde_json::{Value, json};

use crate::api::{serve, token};
use crate::dora::{WORKED_EXAMPLE, load_and_transform};
use crate::golden::COST_EXAMPLE;

const PAYMENTS: &str = "component%3Adefault%2Fpayments-api";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_endpoint_serves_the_worked_example_to_cost_roles() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files: Vec<(&str, &str, &str)> = WORKED_EXAMPLE.into_iter().chain(COST_EXAMPLE).collect();
    load_and_transform(dir.path(), &files)?;
    let viewer = token(dir.path(), "viewer", "")?;
    let contractor = token(dir.path(), "contractor", "team-payments")?;
    let cost_viewer = token(dir.path(), "cost-viewer", "")?;
    let analyst = token(dir.path(), "analyst", "")?;
    let server = serve(dir.path(), &[], "127.0.0.1:0")?;
    let http = reqwest::Client::new();
    let get = |path: String, secret: &str| {
        http.get(format!("{}{path}", server.base))
            .bearer_auth(secret)
            .send()
    };

    // Cost is not for viewers and contractors, even in their own team.
    for (secret, path) in [
        (&viewer, "/api/v1/cost/org".to_owned()),
        (&contractor, format!("/api/v1/cost/{PAYMENTS}")),
        (&viewer, format!("/api/v1/cost/{PAYMENTS}/benchmark")),
        (&contractor, format!("/api/v1/cost/{PAYMENTS}/benchmark")),
    ] {
        let response = get(path.clone(), secret).await?;
        assert_eq!(response.status(), 403, "{path}");
    }

    // By month, effective: May's 24.4 (6 + 4 in Kubernetes, 14.4 of the
    // cloud line's 20 billed), June in two currencies, never summed.
    let body: Value = get(format!("/api/v1/cost/{PAYMENTS}"), &cost_viewer)
        .await?
        .json()
        .await?;
    assert_eq!(body["from"], "2025-07-01");
    assert_eq!(body["to"], "2026-06-30");
    assert_eq!(
        body["series"],
        json!([
            {"period": "2026-05", "currency": "USD", "cost": 24.4},
            {"period": "2026-06", "currency": "EUR", "cost": 25.0},
            {"period": "2026-06", "currency": "USD", "cost": 200.0},
        ])
    );
    let june = june_in_dollars(&body["months"]);
    assert_eq!(june["previous_effective_cost"], 24.4);
    assert_eq!(june["significant"], true);
    assert_eq!(june["driver"], "Compute");

    // The organisation, billed: shared cost included (the idle cluster, a
    // namespace nobody claims, untagged usage, the credit and tax in May;
    // the commitment fee in June's bill).
    let org: Value = get("/api/v1/cost/org?basis=billed".to_owned(), &analyst)
        .await?
        .json()
        .await?;
    assert_eq!(
        org["series"],
        json!([
            {"period": "2026-05", "currency": "USD", "cost": 38.5},
            {"period": "2026-06", "currency": "EUR", "cost": 25.0},
            {"period": "2026-06", "currency": "USD", "cost": 230.0},
        ])
    );
    let idle = org["breakdown"]
        .as_array()
        .and_then(|b| b.iter().find(|r| r["attribution"] == "idle"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(idle["cost"], 8.0);

    // By day over the last 30 days: June only; the fee charged on 31 May
    // for June's bill is May 31's.
    let days: Value = get(
        "/api/v1/cost/org?granularity=day&period=31d&basis=billed".to_owned(),
        &analyst,
    )
    .await?
    .json()
    .await?;
    assert_eq!(days["from"], "2026-05-31");
    assert_eq!(
        days["series"],
        json!([
            {"period": "2026-05-31", "currency": "USD", "cost": 78.5},
            {"period": "2026-06-30", "currency": "EUR", "cost": 25.0},
            {"period": "2026-06-30", "currency": "USD", "cost": 200.0},
        ])
    );

    // Its unit costs: June's 200 (USD) over 50,000 requests and the four
    // completed production deployments of the DORA example (its baseline
    // included).
    let benchmark: Value = get(format!("/api/v1/cost/{PAYMENTS}/benchmark"), &cost_viewer)
        .await?
        .json()
        .await?;
    let june = june_in_dollars(&benchmark["months"]);
    assert_eq!(june["cost_per_1k_requests"], 4.0);
    assert_eq!(june["cost_per_deployment"], 50.0);
    assert_eq!(june["peer_group"], "unknown/unknown/1e4");
    assert_eq!(june["peers"], 1);
    assert_eq!(
        benchmark["peers"][0]["entity_ref"],
        "component:default/payments-api"
    );

    // Tag coverage: May's cloud usage 14.4 of 19.4 mapped, Kubernetes 10
    // of 12.5 (idle capacity is not taggable); the work list of May.
    let coverage: Value = get(
        "/api/v1/cost/coverage?month=2026-05".to_owned(),
        &cost_viewer,
    )
    .await?
    .json()
    .await?;
    let may: Vec<(String, f64, f64)> = coverage["months"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["month"] == "2026-05")
        .map(|m| {
            (
                m["cost_source"].as_str().unwrap_or_default().to_owned(),
                m["taggable_cost"].as_f64().unwrap_or_default(),
                m["mapped_cost"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        may,
        [
            ("cloud".to_owned(), 19.4, 14.4),
            ("kubernetes".to_owned(), 12.5, 10.0)
        ]
    );
    assert_eq!(
        coverage["unmapped"],
        json!([
            {"cost_source": "cloud", "provider": "aws", "resource": "l2", "currency": "USD", "unmapped_cost": 5.0},
            {"cost_source": "kubernetes", "provider": "kubernetes", "resource": "legacy/deployment:batch", "currency": "USD", "unmapped_cost": 2.5},
        ])
    );
    let viewer_coverage = get("/api/v1/cost/coverage".to_owned(), &viewer).await?;
    assert_eq!(viewer_coverage.status(), 403);

    for (path, status) in [
        ("/api/v1/cost/coverage?month=1999-01".to_owned(), 404),
        ("/api/v1/cost/org/benchmark".to_owned(), 400),
        (format!("/api/v1/cost/{PAYMENTS}?granularity=week"), 400),
        (format!("/api/v1/cost/{PAYMENTS}?basis=list"), 400),
        (format!("/api/v1/cost/{PAYMENTS}?period=40m"), 400),
        ("/api/v1/cost/component%3Adefault%2Fnobody".to_owned(), 404),
    ] {
        let response = get(path.clone(), &analyst).await?;
        assert_eq!(response.status(), status, "{path}");
    }
    Ok(())
}

/// The row of June 2026 in US dollars among `months`.
fn june_in_dollars(months: &Value) -> Value {
    months
        .as_array()
        .and_then(|m| {
            m.iter()
                .find(|r| r["month"] == "2026-06" && r["currency"] == "USD")
        })
        .cloned()
        .unwrap_or_default()
}

/// Whether `ours` has the keys and value types of `theirs` (a recorded
/// Cost Insights payload): objects key by key, arrays by their first item.
fn same_shape(ours: &Value, theirs: &Value, at: &str) -> Result<()> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            anyhow::ensure!(ka == kb, "{at}: keys {ka:?}, the plugin's {kb:?}");
            for (key, value) in a {
                same_shape(value, &b[key], &format!("{at}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => match (a.first(), b.first()) {
            (Some(x), Some(y)) => same_shape(x, y, &format!("{at}[0]")),
            _ => Ok(()),
        },
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => Ok(()),
        _ => anyhow::bail!("{at}: {ours} where the plugin has {theirs}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_insights_endpoints_answer_the_plugins_shapes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A member of the payments team, as the catalog relates them.
    let members = [
        (
            "catalog_entities",
            "users.ndjson",
            r#"{"entity_ref": "user:default/jdoe", "kind": "user", "namespace": "default", "name": "jdoe"}"#,
        ),
        (
            "entity_relations",
            "relations.csv",
            "source_ref,relation_type,target_ref\nuser:default/jdoe,memberOf,group:default/team-payments\n",
        ),
    ];
    let files: Vec<(&str, &str, &str)> = WORKED_EXAMPLE
        .into_iter()
        .chain(COST_EXAMPLE)
        .chain(members)
        .collect();
    load_and_transform(dir.path(), &files)?;
    let viewer = token(dir.path(), "viewer", "")?;
    let cost_viewer = token(dir.path(), "cost-viewer", "")?;
    let server = serve(dir.path(), &[], "127.0.0.1:0")?;
    let http = reqwest::Client::new();
    let get = |path: &str, secret: &str| {
        http.get(format!("{}/api/v1/cost-insights{path}", server.base))
            .bearer_auth(secret)
            .send()
    };
    let refused = get("/last-complete-billing-date", &viewer).await?;
    assert_eq!(refused.status(), 403);

    let date: Value = get("/last-complete-billing-date", &cost_viewer)
        .await?
        .json()
        .await?;
    assert_eq!(date, "2026-06-29");
    let groups: Value = get("/users/jdoe/groups", &cost_viewer)
        .await?
        .json()
        .await?;
    assert_eq!(
        groups,
        json!([{"id": "group:default/team-payments", "name": "team-payments"}])
    );
    let projects: Value = get(
        "/groups/group%3Adefault%2Fteam-payments/projects",
        &cost_viewer,
    )
    .await?
    .json()
    .await?;
    assert_eq!(projects, json!([{"id": "component:default/payments-api"}]));

    // What the plugin asks after a last complete day of 30 June: two
    // thirty-day periods, 1 May to 30 June. June's 200 against May 2–31's
    // 24.4 (USD).
    let cost: Value = get(
        &format!("/daily-cost/{PAYMENTS}?intervals=R2/P30D/2026-07-01"),
        &cost_viewer,
    )
    .await?
    .json()
    .await?;
    let days = cost["aggregation"].as_array().cloned().unwrap_or_default();
    assert_eq!(days.len(), 61);
    assert_eq!(days[0], json!({"date": "2026-05-01", "amount": 0.0}));
    assert_eq!(days[30], json!({"date": "2026-05-31", "amount": 24.4}));
    assert_eq!(days[60], json!({"date": "2026-06-30", "amount": 200.0}));
    let amount = cost["change"]["amount"].as_f64().unwrap_or_default();
    assert!((amount - 175.6).abs() < 1e-9, "{cost}");
    let metric: Value = get(
        "/metrics/requests?intervals=R2/P30D/2026-07-01",
        &cost_viewer,
    )
    .await?
    .json()
    .await?;
    assert_eq!(
        metric["aggregation"][60],
        json!({"date": "2026-06-30", "amount": 50000.0})
    );
    assert_eq!(metric["change"], json!({"amount": 40000.0, "ratio": 4.0}));
    let bad = get(
        &format!("/daily-cost/{PAYMENTS}?intervals=R2/P1Y/2026-07-01"),
        &cost_viewer,
    )
    .await?;
    assert_eq!(bad.status(), 400);

    // Key by key and type by type, the plugin's own example data.
    if let Some(fixtures) = crate::webhooks::fixtures() {
        let recorded = |name: &str| -> Result<Value> {
            Ok(serde_json::from_slice(&std::fs::read(
                fixtures.join("cost_insights").join(name),
            )?)?)
        };
        same_shape(
            &cost["aggregation"],
            &recorded("community-plugins__mockData__MockAggregatedDailyCosts.json")?,
            "aggregation",
        )?;
        same_shape(
            &groups,
            &recorded("community-plugins__example_client__getUserGroups.json")?,
            "groups",
        )?;
        same_shape(
            &projects,
            &recorded("community-plugins__example_client__getGroupProjects.json")?,
            "projects",
        )?;
        same_shape(
            &cost["change"],
            &recorded("community-plugins__mockData__MockComputeEngineInsights.json")?["change"],
            "change",
        )?;
    }
    Ok(())
}
