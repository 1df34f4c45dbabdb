//! Input holes: spreadsheet formulas in CSV exports, intake items that are
//! not objects, a refused delivery's corrected retry, replayed webhooks,
//! huge bad values in quarantine, and a million-column header.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{World, audit_log};
use crate::support::{count, local_warehouse};

const HYPERLINK: &str = "=HYPERLINK(\"http://evil.example\",\"click\")";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_neutralise_formulas_and_intake_loses_nothing() -> Result<()> {
    let world = World::start(&[])?;
    let base = world.server.base.clone();
    let http = reqwest::Client::new();
    let intake = |body: Value, delivery: &str| {
        http.post(format!("{base}/api/v1/intake/incidents"))
            .bearer_auth(&world.admin)
            .header("x-delivery-id", delivery.to_owned())
            .json(&body)
            .send()
    };

    // An incident whose title is a formula, and items that are not
    // objects: those are quarantined with a reason, never dropped.
    let answer = intake(
        json!({"records": [
            {"incident_id": "INC-F", "source": "intake", "entity_ref": "component:default/svc-a",
             "title": HYPERLINK, "created_at": "2026-06-23T08:00:00Z"},
            42,
            "not a record"
        ]}),
        "delivery-1",
    )
    .await?;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await?;
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["quarantined"], 2, "{body}");
    let warehouse = local_warehouse(&world.path().join("data"))?;
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM quarantine WHERE stream = 'incidents' AND reason LIKE '%not a JSON object%'"
        )
        .await?,
        2
    );

    // A refused delivery is not marked done: its corrected retry (same id)
    // is applied, not answered "duplicate".
    let refused = intake(
        json!([{"incident_id": "INC-R", "source": "intake", "created_at": "not a time"}]),
        "delivery-2",
    )
    .await?;
    assert_eq!(refused.status(), 422);
    let retried = intake(
        json!([{"incident_id": "INC-R", "source": "intake", "created_at": "2026-06-23T09:00:00Z"}]),
        "delivery-2",
    )
    .await?;
    let body: Value = retried.json().await?;
    assert_eq!(body["accepted"], 1, "{body}");
    assert!(body.get("duplicate").is_none(), "{body}");
    let deliveries: Vec<Value> = audit_log(world.path())?
        .into_iter()
        .filter(|r| r["action"] == "intake:incidents")
        .collect();
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");

    // The SQL export and the panel export neutralise the formula; raw=true
    // gives it back as stored.
    let sql_csv = |raw: bool| {
        http.post(format!(
            "{base}/api/v1/sql{}",
            if raw { "?raw=true" } else { "" }
        ))
        .bearer_auth(&world.analyst)
        .header("accept", "text/csv")
        .json(
            &json!({"sql": "SELECT incident_id, title FROM incidents WHERE incident_id = 'INC-F'"}),
        )
        .send()
    };
    let safe = sql_csv(false).await?.text().await?;
    assert!(safe.contains("\"'=HYPERLINK("), "{safe}");
    let raw = sql_csv(true).await?.text().await?;
    assert!(raw.contains("\"=HYPERLINK("), "{raw}");
    let panel = http
        .get(format!(
            "{base}/api/v1/panels/service-incidents?scope=component%3Adefault%2Fsvc-a&window=30d"
        ))
        .bearer_auth(&world.viewer)
        .header("accept", "text/csv")
        .send()
        .await?
        .text()
        .await?;
    assert!(panel.contains("'=HYPERLINK("), "{panel}");
    assert!(!panel.contains(",\"=HYPERLINK("), "{panel}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bad_values_and_headers_stay_small_in_messages() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fathom = |args: &[&str]| crate::dora::fathom_in(dir.path(), args);
    // A 9 MiB value in a timestamp column: the reason is cut, the record
    // kept whole once.
    let huge = "9".repeat(9 << 20);
    let csv = dir.path().join("huge.csv");
    std::fs::write(
        &csv,
        format!(
            "deployment_id,source,entity_ref,environment,status,revision,started_at\n\
             d1,import,svc,production,success,r1,{huge}\n"
        ),
    )?;
    let output = fathom(&["import", "deployments", &csv.display().to_string()])?;
    assert!(
        output.stderr.len() < 10_000,
        "{} bytes of stderr",
        output.stderr.len()
    );
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let lengths = crate::support::rows(
        &warehouse,
        "SELECT CAST(length(reason) AS VARCHAR), CAST(length(raw_record) AS VARCHAR) FROM quarantine",
    )
    .await?;
    let reason: usize = lengths[0][0].parse()?;
    let raw: usize = lengths[0][1].parse()?;
    assert!(reason < 700, "reason of {reason} characters");
    assert!(raw > 9 << 20, "the record was not kept whole ({raw})");

    // A million-column header with binary bytes: the error is short and
    // printable.
    let mut header: Vec<u8> = (0..1_000_000)
        .flat_map(|i| format!("c{i},").into_bytes())
        .collect();
    header.extend_from_slice(b"\x01\x02\xff\x1b[31mred\n1\n");
    let wide = dir.path().join("wide.csv");
    std::fs::write(&wide, &header)?;
    let output = fathom(&["import", "deployments", &wide.display().to_string()])?;
    assert!(!output.status.success());
    assert!(
        output.stderr.len() < 10_000,
        "{} bytes of error",
        output.stderr.len()
    );
    assert!(
        !output.stderr.contains(&0x1b),
        "raw escape bytes reached the terminal"
    );
    Ok(())
}

/// The recorded payloads, or `None` after a notice.
fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("FATHOM_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: fixtures not found at {}", dir.display());
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_webhook_never_reopens_a_closed_pull_request() -> Result<()> {
    let Some(fixtures) = fixtures() else {
        return Ok(());
    };
    const SECRET: &str = "replay-secret";
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("fathom.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"github\"\nname = \"github\"\nbase_url = \"http://127.0.0.1:9\"\n\
             token = \"unused\"\norgs = [\"octocat\"]\nwebhook_secret = \"{SECRET}\"\n"
        ),
    )?;
    let config_path = config.display().to_string();
    let server = crate::api::serve(
        dir.path(),
        &[("FATHOM_CONFIG", &config_path)],
        "127.0.0.1:0",
    )?;
    let http = reqwest::Client::new();
    let deliver = |delivery: &str, body: &Value| {
        let body = serde_json::to_vec(body).unwrap_or_default();
        http.post(format!("{}/api/v1/intake/github", server.base))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", delivery.to_owned())
            .header(
                "x-hub-signature-256",
                fathom_ingest::webhooks::sign(SECRET.as_bytes(), &body),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let closed: Value = serde_json::from_slice(&std::fs::read(
        fixtures.join("github/octocrab__pull_request_closed_webhook_event.json"),
    )?)?;
    let state = || async {
        let warehouse = local_warehouse(&dir.path().join("data"))?;
        let rows = crate::support::rows(&warehouse, "SELECT state FROM pull_requests").await?;
        rows.first()
            .and_then(|r| r.first())
            .cloned()
            .context("no pull request stored")
    };
    assert_eq!(deliver("c-1", &closed).await?.status(), 200);
    assert_eq!(state().await?, "closed");

    // The "opened" delivery of the same pull request, from before it was
    // closed, replayed under a new delivery id.
    let mut opened = closed.clone();
    opened["action"] = json!("opened");
    let created = opened["pull_request"]["created_at"].clone();
    opened["pull_request"]["state"] = json!("open");
    opened["pull_request"]["closed_at"] = Value::Null;
    opened["pull_request"]["updated_at"] = created;
    let answer: Value = deliver("c-2", &opened).await?.json().await?;
    assert!(answer["ignored"].is_string(), "{answer}");
    assert_eq!(
        state().await?,
        "closed",
        "a replay reopened the pull request"
    );

    // A real reopening, after the close, is applied.
    opened["pull_request"]["updated_at"] = json!("2030-01-01T00:00:00Z");
    let answer: Value = deliver("c-3", &opened).await?.json().await?;
    assert!(answer["ignored"].is_null(), "{answer}");
    assert_eq!(state().await?, "open");
    Ok(())
}
