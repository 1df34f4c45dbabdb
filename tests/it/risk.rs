//! Deployment risk end to end: history imported, marts computed, `fathom
//! ml train-risk` (backtest and model), `fathom ml risk` (scores in
//! `deployment_risk`), the API by team, and `fathom ml evaluate-risk` on a
//! labelled CSV.

use anyhow::{Context, Result, ensure};
use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;

use crate::api::{serve, token};
use crate::dora::{fathom_in, load_and_transform};
use crate::support::{count, local_warehouse, rows};

const A: &str = "component:default/checkout";
const B: &str = "component:default/search";

/// Lines added by deployment `i`'s pull request: 20 to 1,000, spread.
fn additions(i: u32) -> u32 {
    20 * (1 + (i * 37) % 50)
}

/// Whether deployment `i` fails: most big ones, a few small ones.
fn fails(i: u32) -> bool {
    let noise = (i * 13) % 10;
    if additions(i) > 600 {
        noise < 7
    } else {
        noise == 0
    }
}

/// 240 daily deployments of each service, each shipping one pull request;
/// the failing ones followed by an incident naming them.
fn history() -> Vec<(&'static str, &'static str, String)> {
    let mut catalog = String::new();
    for team in ["team-a", "team-b"] {
        catalog.push_str(&format!(
            "{{\"entity_ref\": \"group:default/{team}\", \"kind\": \"group\", \"namespace\": \"default\", \"name\": \"{team}\"}}\n"
        ));
    }
    for (entity, team) in [(A, "team-a"), (B, "team-b")] {
        let name = entity.rsplit('/').next().unwrap_or_default();
        catalog.push_str(&format!(
            "{{\"entity_ref\": \"{entity}\", \"kind\": \"component\", \"namespace\": \"default\", \"name\": \"{name}\", \"owner_ref\": \"group:default/{team}\"}}\n"
        ));
    }
    // Both report to an error tracker: 90 or 110 events a day; checkout 900
    // on day 27, when an issue is first seen 20 minutes after deployment 27.
    let mut errors = String::new();
    let mut issues = String::new();
    let mut deployments = String::new();
    let mut changes = String::new();
    let mut pulls = String::new();
    let mut incidents = String::new();
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    for (s, entity) in [A, B].iter().enumerate() {
        let repo = format!("acme/{}", entity.rsplit('/').next().unwrap_or_default());
        for i in 0..240u32 {
            let id = format!("{repo}:{i}");
            let began =
                start + Duration::days(i64::from(i)) + Duration::hours(9 + i64::from((i * 7) % 9));
            let ended = began + Duration::minutes(10);
            {
                let date = (start + Duration::days(i64::from(i))).date_naive();
                let events = match i {
                    27 if *entity == A => 900,
                    _ if i % 2 == 0 => 90,
                    _ => 110,
                };
                errors.push_str(&format!(
                    "{{\"date\": \"{date}\", \"source\": \"sentry\", \"project_slug\": \"{repo}\", \"entity_ref\": \"{entity}\", \"event_count\": {events}}}\n"
                ));
                if i == 27 && *entity == A {
                    issues.push_str(&format!(
                        "{{\"date\": \"{date}\", \"source\": \"sentry\", \"issue_id\": \"i27\", \"project_slug\": \"checkout\", \"entity_ref\": \"{entity}\", \"event_count\": 800, \"first_seen_at\": \"{}\"}}\n",
                        (ended + Duration::minutes(20)).to_rfc3339()
                    ));
                }
            }
            deployments.push_str(&format!(
                "{{\"deployment_id\": \"{id}\", \"source\": \"import\", \"entity_ref\": \"{entity}\", \"environment\": \"production\", \
                  \"status\": \"success\", \"revision\": \"m{s}-{i}\", \"repository_id\": \"{repo}\", \
                  \"started_at\": \"{}\", \"finished_at\": \"{}\"}}\n",
                began.to_rfc3339(),
                ended.to_rfc3339()
            ));
            if i == 0 {
                continue;
            }
            changes.push_str(&format!(
                "{{\"deployment_id\": \"{id}\", \"sha\": \"m{s}-{i}\", \"repository_id\": \"{repo}\", \"pull_request_number\": {i}}}\n"
            ));
            let merged = began - Duration::hours(2);
            pulls.push_str(&format!(
                "{{\"repository_id\": \"{repo}\", \"number\": {i}, \"state\": \"merged\", \"author_login\": \"dev{}\", \
                  \"entity_ref\": \"{entity}\", \"created_at\": \"{}\", \"first_commit_at\": \"{}\", \"merged_at\": \"{}\", \
                  \"additions\": {}, \"deletions\": {}, \"changed_files\": {}, \"commit_count\": 2, \"merge_commit_sha\": \"m{s}-{i}\"}}\n",
                i % 4,
                (merged - Duration::hours(20)).to_rfc3339(),
                (merged - Duration::hours(30)).to_rfc3339(),
                merged.to_rfc3339(),
                additions(i),
                additions(i) / 4,
                1 + additions(i) / 100
            ));
            if fails(i) {
                incidents.push_str(&format!(
                    "{{\"incident_id\": \"inc-{s}-{i}\", \"source\": \"import\", \"entity_ref\": \"{entity}\", \
                      \"created_at\": \"{}\", \"resolved_at\": \"{}\", \"caused_by_deployment_id\": \"{id}\"}}\n",
                    (ended + Duration::hours(1)).to_rfc3339(),
                    (ended + Duration::hours(3)).to_rfc3339()
                ));
            }
        }
    }
    vec![
        ("catalog_entities", "catalog.ndjson", catalog),
        ("deployments", "deployments.ndjson", deployments),
        ("deployment_changes", "changes.ndjson", changes),
        ("pull_requests", "pulls.ndjson", pulls),
        ("incidents", "incidents.ndjson", incidents),
        ("error_counts_daily", "errors.ndjson", errors),
        ("error_issues_daily", "issues.ndjson", issues),
    ]
}

fn json_of(output: &std::process::Output) -> Result<Value> {
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_is_trained_scored_and_served_by_team() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = history();
    let borrowed: Vec<(&str, &str, &str)> =
        files.iter().map(|(t, n, c)| (*t, *n, c.as_str())).collect();
    load_and_transform(dir.path(), &borrowed)?;
    // Before a model exists, scoring says what to do.
    let output = fathom_in(dir.path(), &["ml", "risk"])?;
    ensure!(!output.status.success());
    ensure!(String::from_utf8_lossy(&output.stderr).contains("fathom ml train-risk"));

    let trained = json_of(&fathom_in(dir.path(), &["ml", "train-risk", "--json"])?)?;
    let methods = trained["backtest"]["methods"]
        .as_array()
        .context("no methods")?;
    let auc = |name: &str| {
        methods
            .iter()
            .find(|m| m["method"] == name)
            .and_then(|m| m["auc"].as_f64())
    };
    let model = auc("model").context("no model AUC")?;
    let rate = auc("recent_failure_rate alone").context("no baseline")?;
    // Failures follow size here: the model ranks them well, and better
    // than the services' failure rates (the same for every deployment of a
    // service, nearly).
    ensure!(model > 0.85 && model > rate + 0.1, "{model} vs {rate}");
    ensure!(auc("lines_added alone").is_some());
    let scored = json_of(&fathom_in(dir.path(), &["ml", "risk", "--json"])?)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let with_features = count(&warehouse, "SELECT count(*) FROM deployment_features").await?;
    // Both services' deployments but their baselines.
    assert_eq!(with_features, 2 * 239);
    assert_eq!(scored["deployments"].as_i64(), Some(with_features));
    let by_outcome = rows(
        &warehouse,
        "SELECT CAST(failed AS VARCHAR) AS outcome, CAST(avg(probability) AS VARCHAR), CAST(min(probability) AS VARCHAR), \
         CAST(max(probability) AS VARCHAR) FROM deployment_risk WHERE failed IS NOT NULL GROUP BY failed ORDER BY outcome",
    )
    .await?;
    ensure!(by_outcome.len() == 2, "{by_outcome:?}");
    let mean = |r: &Vec<String>| r[1].parse::<f64>().unwrap_or(f64::NAN);
    ensure!(
        mean(&by_outcome[1]) > 2.0 * mean(&by_outcome[0]),
        "{by_outcome:?}"
    );
    for row in &by_outcome {
        let (low, high): (f64, f64) = (row[2].parse()?, row[3].parse()?);
        ensure!(
            (0.0..=1.0).contains(&low) && (0.0..=1.0).contains(&high),
            "{row:?}"
        );
    }
    // Every flagged deployment says why, and the biggest change of all is
    // flagged for its size.
    let unexplained = count(
        &warehouse,
        "SELECT count(*) FROM deployment_risk WHERE flagged AND cardinality(reasons) = 0",
    )
    .await?;
    assert_eq!(unexplained, 0);

    // Later transforms score the newest deployments with the same model.
    let transformed = json_of(&fathom_in(
        dir.path(),
        &["transform", "--as-of", "2026-07-01", "--json"],
    )?)?;
    assert_eq!(
        transformed["risk"]["deployments"].as_i64(),
        Some(with_features)
    );

    let server = serve(dir.path(), &[], "127.0.0.1:0")?;
    let viewer = token(dir.path(), "viewer", "group:default/team-a")?;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let request = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(&viewer);
        async move { request.send().await }
    };
    // The biggest change of checkout (1,000 lines: deployment 27).
    let own = get("/api/v1/risk/deployments/acme%2Fcheckout%3A27".to_owned()).await?;
    assert_eq!(own.status(), 200);
    let body: Value = own.json().await?;
    assert_eq!(body["risk"]["entity_ref"], A);
    assert_eq!(body["features"]["lines_added"], 1000);
    // Its strongest factor is its size (which of the correlated size
    // measures the model leans on is its own affair), said in words.
    let size = [
        "lines_added",
        "lines_deleted",
        "files_changed",
        "largest_change_lines",
        "size_vs_recent",
    ];
    let first = &body["risk"]["factors"][0];
    ensure!(
        first["feature"].as_str().is_some_and(|f| size.contains(&f))
            && first["contribution"].as_f64().is_some_and(|c| c > 0.0),
        "{body}"
    );
    let reasons = body["risk"]["reasons"].as_array().context("reasons")?;
    ensure!(
        reasons.len() == 3
            && reasons[0]
                .as_str()
                .is_some_and(|r| r.contains("(p100 of this service)")),
        "{body}"
    );
    let other = get("/api/v1/risk/deployments/acme%2Fsearch%3A27".to_owned()).await?;
    assert_eq!(other.status(), 403);
    let missing = get("/api/v1/risk/deployments/nothing".to_owned()).await?;
    assert_eq!(missing.status(), 404);
    // The team's riskiest: only its own, riskiest first.
    let list: Value =
        get("/api/v1/risk/deployments?scope=group%3Adefault%2Fteam-a&days=60".to_owned())
            .await?
            .json()
            .await?;
    let listed = list["deployments"].as_array().context("deployments")?;
    ensure!(!listed.is_empty(), "{list}");
    ensure!(listed.iter().all(|d| d["entity_ref"] == A), "{list}");
    let probabilities: Vec<f64> = listed
        .iter()
        .filter_map(|d| d["probability"].as_f64())
        .collect();
    ensure!(
        probabilities.windows(2).all(|w| w[0] >= w[1]),
        "{probabilities:?}"
    );
    ensure!(
        list["model"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("risk-"))
    );
    let outside = get("/api/v1/risk/deployments?scope=group%3Adefault%2Fteam-b".to_owned()).await?;
    assert_eq!(outside.status(), 403);

    // The Service page lists the window's deployments riskiest first, as
    // the table holds them; the Team page its riskiest.
    let page: Value = get(format!(
        "/api/v1/pages/service?scope={}&window=30",
        A.replace(':', "%3A").replace('/', "%2F")
    ))
    .await?
    .json()
    .await?;
    let panel = |page: &Value, id: &str| -> Value {
        page["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let shown = panel(&page, "service-risk");
    let shown_rows = shown["rows"].as_array().context("service-risk rows")?;
    let in_window = rows(
        &warehouse,
        &format!(
            "SELECT deployment_id, CAST(probability AS VARCHAR) AS p FROM deployment_risk WHERE entity_ref = '{A}' \
             AND started_at >= TIMESTAMP '2026-06-01T00:00:00Z' AND started_at < TIMESTAMP '2026-07-01T00:00:00Z' \
             ORDER BY probability DESC, started_at DESC, deployment_id"
        ),
    )
    .await?;
    ensure!(!in_window.is_empty());
    assert_eq!(shown_rows.len(), in_window.len(), "{shown}");
    for (row, expected) in shown_rows.iter().zip(&in_window) {
        assert_eq!(row["deployment_id"], expected[0].as_str());
        let p = row["probability"].as_f64().context("probability")?;
        ensure!((p - expected[1].parse::<f64>()?).abs() < 1e-12, "{row}");
    }
    let team: Value = get("/api/v1/pages/team?scope=group%3Adefault%2Fteam-a&window=30".to_owned())
        .await?
        .json()
        .await?;
    let riskiest = panel(&team, "riskiest-deployments");
    let riskiest_rows = riskiest["rows"].as_array().context("riskiest rows")?;
    assert_eq!(riskiest_rows.len(), in_window.len().min(20), "{riskiest}");
    assert_eq!(riskiest_rows[0]["deployment_id"], in_window[0][0].as_str());

    // What followed deployment 27: a new issue 20 minutes later and nine
    // times the usual errors — suspect. Another team's: refused.
    let followed: Value = get("/api/v1/deployments/acme%2Fcheckout%3A27/signals".to_owned())
        .await?
        .json()
        .await?;
    assert_eq!(followed["suspect"], true, "{followed}");
    let new_issue = followed["signals"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["signal"] == "new_issue"))
        .context("no new_issue signal")?;
    assert_eq!(new_issue["verdict"], "degraded", "{followed}");
    assert_eq!(new_issue["issue_ids"], serde_json::json!(["i27"]));
    assert_eq!(new_issue["before"], 100.0);
    assert_eq!(new_issue["after"], 900.0);
    let calm: Value = get("/api/v1/deployments/acme%2Fcheckout%3A29/signals".to_owned())
        .await?
        .json()
        .await?;
    assert_eq!(calm["suspect"], false, "{calm}");
    let theirs = get("/api/v1/deployments/acme%2Fsearch%3A27/signals".to_owned()).await?;
    assert_eq!(theirs.status(), 403);
    let nothing = get("/api/v1/deployments/nothing/signals".to_owned()).await?;
    assert_eq!(nothing.status(), 404);

    // Before deploying: pull request 27 shipped at deployment 27's start is
    // deployment 27 — the same features, so the same probability.
    let post = |body: Value| {
        let request = client
            .post(format!("{}/api/v1/risk/score", server.base))
            .bearer_auth(&viewer)
            .json(&body);
        async move { request.send().await }
    };
    let ahead = post(serde_json::json!({
        "repository": "acme/checkout", "pull_requests": [27], "at": "2026-01-28T09:00:00Z"
    }))
    .await?;
    let status = ahead.status();
    let ahead: Value = ahead.json().await?;
    assert_eq!(status, 200, "{ahead}");
    assert_eq!(ahead["entity_ref"], A);
    assert_eq!(ahead["changes"], serde_json::json!(["pr:acme/checkout#27"]));
    assert_eq!(ahead["features"]["lines_added"], 1000);
    let stored = body["risk"]["probability"].as_f64().context("stored")?;
    let fresh = ahead["probability"].as_f64().context("fresh")?;
    ensure!(
        (stored - fresh).abs() < 1e-9,
        "{stored} vs {fresh}: {ahead}"
    );
    assert_eq!(ahead["reasons"], body["risk"]["reasons"]);
    // Another team's repository, an unknown pull request, no selection.
    let theirs =
        post(serde_json::json!({"repository": "acme/search", "pull_requests": [27]})).await?;
    assert_eq!(theirs.status(), 403);
    let unknown =
        post(serde_json::json!({"repository": "acme/checkout", "pull_requests": [9999]})).await?;
    assert_eq!(unknown.status(), 404);
    ensure!(unknown.text().await?.contains("#9999"));
    let empty = post(serde_json::json!({"repository": "acme/checkout"})).await?;
    assert_eq!(empty.status(), 400);
    Ok(())
}

#[test]
fn evaluate_risk_runs_the_backtest_on_a_labelled_csv() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut csv = String::from("commit,la,nf,fix,bug,author_date_unix_timestamp\n");
    for i in 0..600u32 {
        let la = additions(i);
        let nf = 1 + (i * 11) % 7;
        csv.push_str(&format!(
            "c{i},{la},{nf},{},{},{}\n",
            if i % 9 == 0 { "True" } else { "False" },
            u8::from(fails(i)),
            1_600_000_000 + i64::from(i) * 3_600
        ));
    }
    // A row whose label cannot be read is named and left out.
    csv.push_str("bad,10,1,False,maybe,1600000000\n");
    let path = dir.path().join("changes.csv");
    std::fs::write(&path, csv)?;
    let path = path.display().to_string();
    let args = [
        "ml",
        "evaluate-risk",
        "--input",
        &path,
        "--label",
        "bug",
        "--time",
        "author_date_unix_timestamp",
        "--baselines",
        "nf",
    ];
    let output = fathom_in(dir.path(), &args)?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        text.contains("600 rows (1 left out), features: la, nf, fix"),
        "{text}"
    );
    ensure!(String::from_utf8_lossy(&output.stderr).contains("line 602"));
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let report = json_of(&fathom_in(dir.path(), &with_json)?)?;
    let methods = report["backtest"]["methods"]
        .as_array()
        .context("methods")?;
    let model = methods[0]["auc"].as_f64().context("model auc")?;
    let nf = methods[1]["auc"].as_f64().context("baseline auc")?;
    assert_eq!(methods[1]["method"], "nf alone");
    ensure!(model > 0.75 && model > nf + 0.2, "{model} vs {nf}");
    Ok(())
}
