//! GitHub webhooks through `fathom serve`: recorded deliveries signed with a
//! test secret land in the warehouse as the polling source would store
//! them, a delivery counts once, a bad signature stores nothing, and a
//! delivery answered 2xx survives the server being killed at once.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

use crate::api::serve;
use crate::support::{count, local_warehouse};

const SECRET: &str = "webhook-test-secret";

/// The recorded payloads, or `None` after a notice.
pub(crate) fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("FATHOM_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: fixtures not found at {} (set FATHOM_FIXTURES_DIR)",
            dir.display()
        );
        None
    }
}

fn fixture(dir: &std::path::Path, name: &str) -> Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(
        dir.join("github").join(name),
    )?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_webhooks_land_signed_deliveries_once() -> Result<()> {
    let Some(fixtures) = fixtures() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("fathom.toml");
    // The workflow of the recorded run ("Fuzz and Sanitize") counts as a
    // deployment workflow here; the API base is never polled.
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"github\"\nname = \"github\"\nbase_url = \"http://127.0.0.1:9\"\n\
             token = \"unused\"\norgs = [\"artichoke\", \"gagbo\", \"octocat\"]\n\
             deploy_workflows = \"(?i)fuzz\"\nwebhook_secret = \"{SECRET}\"\n"
        ),
    )?;
    let config_path = config.display().to_string();
    let mut server = serve(
        dir.path(),
        &[("FATHOM_CONFIG", &config_path)],
        "127.0.0.1:0",
    )?;
    let url = format!("{}/api/v1/intake/github", server.base);
    let http = reqwest::Client::new();
    let deliver = |event: &str, delivery: &str, body: Vec<u8>, secret: &str| {
        let signature = fathom_ingest::webhooks::sign(secret.as_bytes(), &body);
        http.post(&url)
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // A pull request closed without merging.
    let pull =
        std::fs::read(fixtures.join("github/octocrab__pull_request_closed_webhook_event.json"))?;
    let answer = deliver("pull_request", "d-1", pull.clone(), SECRET).await?;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await?;
    assert_eq!(body["rows"]["pull_requests"], 1, "{body}");
    assert_eq!(body["action"], "closed");
    // The same delivery again is recognised and applied once.
    let again: Value = deliver("pull_request", "d-1", pull, SECRET)
        .await?
        .json()
        .await?;
    assert_eq!(again["duplicate"], true);

    // A workflow run of a deployment workflow is a deployment.
    let run = fixture(&fixtures, "octocrab__workflow_run_event.json")?;
    let answer = deliver(
        "workflow_run",
        "d-2",
        serde_json::to_vec(&run["payload"])?,
        SECRET,
    )
    .await?;
    let body: Value = answer.json().await?;
    assert_eq!(body["rows"]["deployments"], 1, "{body}");

    // A deployment status, in the webhook's shape around the recorded
    // deployment and its recorded final status.
    let deployments = fixture(&fixtures, "octocrab__repo_deployments.json")?;
    let statuses = fixture(&fixtures, "octocrab__repo_deployment_statuses.json")?;
    let status = json!({
        "action": "created",
        "deployment_status": statuses[0],
        "deployment": deployments[0],
        "repository": {"full_name": "octocat/example", "default_branch": "main"},
    });
    let body: Value = deliver(
        "deployment_status",
        "d-3",
        serde_json::to_vec(&status)?,
        SECRET,
    )
    .await?
    .json()
    .await?;
    assert_eq!(body["rows"]["deployments"], 1, "{body}");

    // A ping is acknowledged; nothing to store.
    let body: Value = deliver(
        "ping",
        "d-4",
        br#"{"zen":"Keep it logically awesome."}"#.to_vec(),
        SECRET,
    )
    .await?
    .json()
    .await?;
    assert!(body["ignored"].is_string(), "{body}");

    // Signed but not JSON: quarantined with the reason, not dropped.
    let body: Value = deliver("push", "d-5", b"not json".to_vec(), SECRET)
        .await?
        .json()
        .await?;
    assert_eq!(body["quarantined"], 1, "{body}");

    // A bad signature is refused and stores nothing.
    let mut forged = fixture(
        &fixtures,
        "octocrab__pull_request_closed_webhook_event.json",
    )?;
    forged["pull_request"]["number"] = json!(999);
    let refused = deliver(
        "pull_request",
        "d-6",
        serde_json::to_vec(&forged)?,
        "wrong-secret",
    )
    .await?;
    assert_eq!(refused.status(), 401);
    let unsigned = http
        .post(&url)
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "d-7")
        .body(serde_json::to_vec(&forged)?)
        .send()
        .await?;
    assert_eq!(unsigned.status(), 401);

    // Everything answered 2xx is in the warehouse even when the server dies
    // the moment it answered.
    let run_2 = {
        let mut run = run["payload"].clone();
        run["workflow_run"]["id"] = json!(424242);
        run
    };
    let answer = deliver("workflow_run", "d-8", serde_json::to_vec(&run_2)?, SECRET).await?;
    assert_eq!(answer.status(), 200);
    server.kill();

    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM pull_requests WHERE number = 2 AND state = 'closed'"
        )
        .await?,
        1
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM pull_requests WHERE number = 999"
        )
        .await?,
        0
    );
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM deployments WHERE environment = 'production' AND status = 'success'").await?,
        1,
    );
    // Two workflow runs (d-2, d-8) and one deployment (d-3).
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM deployments").await?,
        3
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM quarantine WHERE reason LIKE '%not JSON%'"
        )
        .await?,
        1
    );
    // Kept in the raw layer like polled payloads: 1 + 1 + 2 + 1 (the forged
    // delivery and the duplicate added nothing).
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM raw_github").await?,
        5
    );
    Ok(())
}

/// Backstage analytics events posted to `/api/v1/intake/events` land
/// pseudonymized, bad ones quarantined, a delivery once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_portal_events_are_pseudonymized() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("fathom.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"portal_events\"\nlocation = \"{}\"\n\
             pseudonymize_key = \"a-test-key-of-sufficient-length\"\n",
            dir.path().join("events").display()
        ),
    )?;
    let admin = crate::api::token(dir.path(), "admin", "")?;
    let viewer = crate::api::token(dir.path(), "viewer", "")?;
    let config_path = config.display().to_string();
    let server = serve(
        dir.path(),
        &[("FATHOM_CONFIG", &config_path)],
        "127.0.0.1:0",
    )?;
    let http = reqwest::Client::new();
    let post = |secret: &str, delivery: &str, body: String| {
        http.post(format!("{}/api/v1/intake/events", server.base))
            .bearer_auth(secret)
            .header("x-delivery-id", delivery)
            .body(body)
            .send()
    };
    // The shape Backstage's analytics API emits, with the user the backend
    // attaches.
    let events = json!([
        {"action": "navigate", "subject": "/catalog/default/component/payments-api",
         "context": {"pluginId": "catalog", "routeRef": "catalog:entity", "extension": "App",
                     "entityRef": "component:default/payments-api"},
         "user": {"userEntityRef": "user:default/ada"}, "timestamp": "2026-11-20T09:00:00Z"},
        {"action": "click", "subject": "Deploy", "value": 1,
         "attributes": {"to": "/deployments"},
         "context": {"pluginId": "fathom", "routeRef": "fathom:dora", "extension": "App"},
         "user": {"userEntityRef": "user:default/ada"}, "timestamp": "2026-11-20T09:00:05Z"},
        {"subject": "no action", "user": {"userEntityRef": "user:default/bob"},
         "timestamp": "2026-11-20T09:01:00Z"}
    ]);
    assert_eq!(
        post(&viewer, "e-0", events.to_string()).await?.status(),
        403
    );
    let answer = post(&admin, "e-1", events.to_string()).await?;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await?;
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["quarantined"], 1, "{body}");
    let again: Value = post(&admin, "e-1", events.to_string())
        .await?
        .json()
        .await?;
    assert_eq!(again["duplicate"], true);
    // NDJSON works too.
    let line = json!({"action": "search", "subject": "payments", "context": {"pluginId": "search"},
                      "user": {"userEntityRef": "user:default/cy"}, "timestamp": "2026-11-20T10:00:00Z"});
    let body: Value = post(&admin, "e-2", format!("{line}\n"))
        .await?
        .json()
        .await?;
    assert_eq!(body["accepted"], 1, "{body}");
    drop(server);

    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM portal_events").await?,
        3
    );
    // Ada's two events share one hash; no identity is stored anywhere.
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(DISTINCT user_hash) FROM portal_events"
        )
        .await?,
        2
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM portal_events WHERE user_hash LIKE '%ada%' OR length(user_hash) <> 32"
        )
        .await?,
        0
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM quarantine WHERE reason LIKE '%action%' AND raw_record NOT LIKE '%user:default/bob%'"
        )
        .await?,
        1
    );
    Ok(())
}
