//! Who may read which scope, as a matrix: every read endpoint × every role
//! × every relation a scope can have to a contractor limited to `team-a`
//! (its team, its sub-team, their components, the department above, the
//! sibling team and its component, the system, the domain, the
//! organisation). A team-limited caller reads exactly its teams, their
//! sub-teams and their components; everyone else reads everything.

use anyhow::{Context, Result};
use serde_json::Value;

use super::World;

/// Scopes and whether the `team-a` contractor may read them.
const SCOPES: [(&str, bool); 10] = [
    ("group:default/team-a", true),
    ("group:default/team-a-sub", true),
    ("component:default/svc-a", true),
    ("component:default/svc-a-sub", true),
    ("group:default/engineering", false),
    ("group:default/team-b", false),
    ("component:default/svc-b", false),
    ("system:default/shop", false),
    ("domain:default/retail", false),
    ("org", false),
];

fn encoded(scope: &str) -> String {
    scope.replace(':', "%3A").replace('/', "%2F")
}

/// Every read endpoint that takes a scope, for `scope`.
fn endpoints(scope: &str) -> Vec<(String, Option<&'static str>)> {
    let s = encoded(scope);
    let page = if scope.starts_with("component:") {
        "service"
    } else {
        "team"
    };
    vec![
        (format!("/api/v1/dora/{s}?window=30d"), None),
        (format!("/api/v1/dora/{s}/trend"), None),
        (format!("/api/v1/dora/{s}/deployments?window=30d"), None),
        (format!("/api/v1/dora/{s}/changes?window=30d"), None),
        (format!("/api/v1/dora/{s}/incidents?window=30d"), None),
        (
            format!("/api/v1/dora/{s}/failed_deployments?window=30d"),
            None,
        ),
        (format!("/api/v1/entities/{s}"), None),
        (format!("/api/v1/pages/{page}?scope={s}"), None),
        (format!("/api/v1/pages/overview?scope={s}"), None),
        (
            format!("/api/v1/panels/service-deployments?scope={s}"),
            Some("text/csv"),
        ),
        (format!("/api/v1/panels/dora-tiles?scope={s}"), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_limited_callers_read_their_teams_and_nothing_that_contains_more() -> Result<()> {
    let world = World::start(&[])?;
    let http = reqwest::Client::new();
    let base = &world.server.base;
    let roles = [
        ("admin", world.admin.as_str(), false),
        ("analyst", world.analyst.as_str(), false),
        ("viewer", world.viewer.as_str(), false),
        ("cost-viewer", world.cost_viewer.as_str(), false),
        ("contractor", world.contractor.as_str(), true),
    ];
    let mut checked = 0;
    for (role, secret, limited) in roles {
        for (scope, contractor_may) in SCOPES {
            for (path, accept) in endpoints(scope) {
                let mut request = http.get(format!("{base}{path}")).bearer_auth(secret);
                if let Some(accept) = accept {
                    request = request.header("accept", accept);
                }
                let response = request.send().await?;
                let status = response.status().as_u16();
                let allowed = !limited || contractor_may;
                if allowed {
                    assert_ne!(status, 403, "{role} was refused {path}");
                    assert!(status < 500, "{role} {path}: {status}");
                } else {
                    assert_eq!(status, 403, "{role} read {path} ({status})");
                    let body: Value = response.json().await?;
                    assert_eq!(body["error"]["code"], "forbidden", "{path}: {body}");
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} role × scope × endpoint cells checked");

    // What the contractor reads of its team is made of its team's
    // services only: never another team's deployment.
    let get =
        |path: String, secret: &str| http.get(format!("{base}{path}")).bearer_auth(secret).send();
    let rows: Value = get(
        format!(
            "/api/v1/dora/{}/deployments?window=30d&limit=1000",
            encoded("group:default/team-a")
        ),
        &world.contractor,
    )
    .await?
    .json()
    .await?;
    let mut ids: Vec<&str> = rows["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|r| r["deployment_id"].as_str())
        .collect();
    ids.sort_unstable();
    // (a2 is a failed job, not a completed deployment.)
    assert_eq!(ids, ["a1", "s1"], "{rows}");
    // The admin sees the department's, which include team-b's.
    let rows: Value = get(
        format!(
            "/api/v1/dora/{}/deployments?window=30d&limit=1000",
            encoded("group:default/engineering")
        ),
        &world.admin,
    )
    .await?
    .json()
    .await?;
    assert_eq!(rows["items"].as_array().map(Vec::len), Some(5), "{rows}");

    // The entity listing and the team filter offer only what may be read.
    let listed: Value = get("/api/v1/entities".to_owned(), &world.contractor)
        .await?
        .json()
        .await?;
    let mut refs: Vec<&str> = listed["entities"]
        .as_array()
        .context("entities")?
        .iter()
        .filter_map(|e| e["entity_ref"].as_str())
        .collect();
    refs.sort_unstable();
    assert_eq!(
        refs,
        [
            "component:default/svc-a",
            "component:default/svc-a-sub",
            "group:default/team-a",
            "group:default/team-a-sub",
        ]
    );
    let page: Value = get(
        "/api/v1/pages/team?scope=group%3Adefault%2Fteam-a".to_owned(),
        &world.contractor,
    )
    .await?
    .json()
    .await?;
    assert_eq!(
        page["options"]["teams"],
        serde_json::json!(["group:default/team-a", "group:default/team-a-sub"]),
        "{}",
        page["options"]
    );
    assert_eq!(page["options"]["organisation"], false);

    // Team-limited callers never reach SQL or the records behind data
    // health, which span every team.
    let sql = http
        .post(format!("{base}/api/v1/sql"))
        .bearer_auth(&world.contractor)
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await?;
    assert_eq!(sql.status(), 403);
    let health = get("/api/v1/health/quarantine".to_owned(), &world.contractor).await?;
    assert_eq!(health.status(), 403);
    Ok(())
}
