//! Anomaly detection end to end: cost rows in the warehouse, `fathom
//! detect`, the rows of `anomaly_scores` and `anomalies`; and `fathom ml
//! detect` on CSV files.

use anyhow::{Result, ensure};
use chrono::{Datelike, Duration, NaiveDate};

use crate::support::{count, fathom, local_warehouse, rows, write_file};

const A: &str = "component:default/checkout-api";
const B: &str = "component:default/search-api";
const TEAM: &str = "group:default/team-checkout";

/// 120 days of cost for two components, compute and storage, weekends
/// lower; checkout-api's compute is five times its normal on day 100.
fn cost_rows(first: NaiveDate) -> String {
    let mut out = String::new();
    for d in 0..120 {
        let date = first + Duration::days(d);
        let weekend = date.weekday().number_from_monday() > 5;
        let season = if weekend { 0.6 } else { 1.0 };
        let wobble = 1.0 + 0.03 * (((d * 37) % 11) as f64 / 10.0 - 0.5);
        for (entity, base) in [(A, 40.0), (B, 25.0)] {
            for (category, share) in [("Compute", 0.8), ("Storage", 0.2)] {
                let mut cost = base * share * season * wobble;
                if entity == A && category == "Compute" && d == 100 {
                    cost *= 5.0;
                }
                out.push_str(&format!(
                    "{{\"date\":\"{date}\",\"billing_period\":\"{}\",\"entity_ref\":\"{entity}\",\
                     \"cost_source\":\"kubernetes\",\"provider\":\"kubernetes\",\"service_category\":\"{category}\",\
                     \"charge_category\":\"usage\",\"attribution\":\"direct\",\"allocated\":false,\
                     \"billing_currency\":\"USD\",\"billed_cost\":{cost},\"effective_cost\":{cost},\"lines\":1}}\n",
                    date.format("%Y-%m")
                ));
            }
        }
        // A monthly tax line: a billing event, not consumption.
        if date.day() == 1 {
            out.push_str(&format!(
                "{{\"date\":\"{date}\",\"billing_period\":\"{}\",\"entity_ref\":\"{A}\",\
                 \"cost_source\":\"cloud\",\"provider\":\"aws\",\"service_category\":\"Compute\",\
                 \"charge_category\":\"tax\",\"attribution\":\"tax\",\"allocated\":false,\
                 \"billing_currency\":\"USD\",\"billed_cost\":500,\"effective_cost\":500,\"lines\":1}}\n",
                date.format("%Y-%m")
            ));
        }
    }
    out
}

/// 120 days of search-api's operational metrics, weekends quieter; on
/// day 90 an incident: a third of requests fail and p95 latency is ten
/// times its normal.
fn ops_rows(first: NaiveDate) -> String {
    let mut out = String::new();
    for d in 0..120 {
        let date = first + Duration::days(d);
        let weekend = date.weekday().number_from_monday() > 5;
        let wobble = 1.0 + 0.02 * (((d * 29) % 13) as f64 / 12.0 - 0.5);
        let requests = (if weekend { 6_000.0 } else { 10_000.0 } * wobble).round();
        let (failing, latency) = if d == 90 {
            (0.33, 2.0)
        } else {
            (0.01, 0.2 * wobble)
        };
        out.push_str(&format!(
            "{{\"date\":\"{date}\",\"source\":\"datadog\",\"service_name\":\"search-api\",\
             \"entity_ref\":\"{B}\",\"request_count\":{requests},\"error_count\":{},\
             \"latency_p95_seconds\":{latency},\"month\":\"{}\"}}\n",
            (requests * failing).round(),
            date.format("%Y-%m")
        ));
    }
    out
}

fn members() -> String {
    [
        (A, A, "component"),
        (B, B, "component"),
        (TEAM, A, "group"),
        (TEAM, B, "group"),
        ("org", A, "org"),
        ("org", B, "org"),
    ]
    .iter()
    .map(|(scope, entity, kind)| {
        format!("{{\"scope\":\"{scope}\",\"scope_kind\":\"{kind}\",\"entity_ref\":\"{entity}\"}}\n")
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_finds_a_cost_spike_with_its_driver_and_scores_every_day() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default();
    let costs = write_file(dir.path(), "cost.ndjson", cost_rows(first).as_bytes())?;
    let scopes = write_file(dir.path(), "members.ndjson", members().as_bytes())?;
    for (table, file) in [("cost_daily", &costs), ("dora_scope_members", &scopes)] {
        let output = fathom(dir.path(), &["import", table, &file.display().to_string()])?;
        ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = fathom(dir.path(), &["detect", "--json"])?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    // Two components and their team, each one cost series in USD, the org
    // series (the cost_daily total), and each component's compute and
    // storage on their own.
    assert_eq!(report["series"], 8, "{report}");

    let warehouse = local_warehouse(dir.path())?;
    // Every series has a row for each of its 120 days.
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM anomaly_scores").await?,
        8 * 120
    );
    // The part that moved is an anomaly of its own; the part that did not
    // is quiet.
    let parts = rows(
        &warehouse,
        "SELECT scope, dimension, kind, CAST(first_day AS VARCHAR) FROM anomalies \
         WHERE dimension IS NOT NULL ORDER BY scope, dimension",
    )
    .await?;
    assert_eq!(
        parts,
        vec![vec![
            A.to_owned(),
            "kubernetes/Compute".to_owned(),
            "spike".to_owned(),
            (first + Duration::days(100)).to_string()
        ]]
    );
    // The tax line is not consumption: no anomaly on the firsts of months.
    let found = rows(
        &warehouse,
        "SELECT scope, kind, direction, CAST(first_day AS VARCHAR) AS first_day, \
                CAST(last_day AS VARCHAR) AS last_day, status, impact, driver, driver_share, drivers \
         FROM anomalies WHERE metric = 'cost' AND dimension IS NULL ORDER BY scope",
    )
    .await?;
    let spike_day = (first + Duration::days(100)).to_string();
    let scopes: Vec<&str> = found.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(scopes, vec![A, TEAM, "org"], "{found:?}");
    for row in &found {
        assert_eq!(
            (row[1].as_str(), row[2].as_str()),
            ("spike", "up"),
            "{row:?}"
        );
        assert_eq!(
            (row[3].as_str(), row[4].as_str()),
            (spike_day.as_str(), spike_day.as_str())
        );
        assert_eq!(row[5], "closed");
        assert_eq!(row[7], "kubernetes/Compute", "{row:?}");
        // The excess is four times the normal compute cost of that day.
        let impact: f64 = row[6].parse()?;
        let weekday = (first + Duration::days(100)).weekday().number_from_monday() <= 5;
        let normal = 40.0 * 0.8 * if weekday { 1.0 } else { 0.6 };
        ensure!((impact / (4.0 * normal) - 1.0).abs() < 0.1, "{row:?}");
        // The contributions add up to the impact.
        let drivers: Vec<serde_json::Value> = serde_json::from_str(&row[9])?;
        let sum: f64 = drivers
            .iter()
            .filter_map(|d| d["contribution"].as_f64())
            .sum();
        ensure!(
            (sum - impact).abs() < 1e-6 * impact.abs().max(1.0),
            "{sum} vs {impact}"
        );
    }
    // The band is drawn for each day once there is a baseline: from the
    // first refit, a week in.
    let banded = count(
        &warehouse,
        &format!(
            "SELECT count(*) FROM anomaly_scores WHERE scope = '{A}' AND metric = 'cost' \
             AND dimension IS NULL AND expected IS NOT NULL AND lower <= expected AND expected <= upper"
        ),
    )
    .await?;
    assert_eq!(banded, 120 - 7);
    Ok(())
}

#[test]
fn ml_detect_scores_a_csv_and_names_what_is_wrong() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut text = String::from("timestamp,value\n");
    for d in 0..90 {
        let day = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap_or_default() + Duration::days(d);
        let value = if d == 70 {
            900.0
        } else {
            100.0 + (d % 7) as f64
        };
        text.push_str(&format!("{day},{value}\n"));
    }
    let input = write_file(dir.path(), "series.csv", text.as_bytes())?;
    let scores = dir.path().join("scores.csv");
    let output = fathom(
        dir.path(),
        &[
            "ml",
            "detect",
            "--input",
            &input.display().to_string(),
            "--output",
            &scores.display().to_string(),
        ],
    )?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read_to_string(&scores)?;
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score,is_anomaly");
    assert_eq!(lines.len(), 91);
    let flagged: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.ends_with(",1"))
        .collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(flagged[0].starts_with("2025-05-10,900,"), "{flagged:?}");

    let bad = write_file(
        dir.path(),
        "bad.csv",
        b"timestamp,value\n2025-01-01,1\n2025-01-02,n/a\n",
    )?;
    let output = fathom(
        dir.path(),
        &["ml", "detect", "--input", &bad.display().to_string()],
    )?;
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("line 3") && message.contains("n/a"),
        "{message}"
    );

    let empty = write_file(dir.path(), "empty.csv", b"timestamp,value\n")?;
    let output = fathom(
        dir.path(),
        &["ml", "detect", "--input", &empty.display().to_string()],
    )?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no data rows"));
    Ok(())
}

/// The catalog around the two components: two teams, checkout-api
/// depends on search-api; and three production deployments, two of them
/// in the 48 hours before the spike.
fn catalog_and_deployments(spike: NaiveDate) -> Vec<(&'static str, &'static str, String)> {
    let at = |days: i64, time: &str| format!("{}T{time}Z", spike + Duration::days(days));
    let deployment = |id: &str, entity: &str, finished: String, failed: bool| {
        format!(
            "{{\"deployment_id\":\"{id}\",\"entity_ref\":\"{entity}\",\"environment\":\"production\",\
             \"finished_at\":\"{finished}\",\"completed\":true,\"change_count\":1,\"failed\":{failed},\
             \"finished_month\":\"{}\"}}\n",
            &finished[..7]
        )
    };
    vec![
        (
            "catalog_entities",
            "catalog.ndjson",
            [TEAM, "group:default/team-other"]
                .iter()
                .map(|g| {
                    let name = g.rsplit('/').next().unwrap_or_default();
                    format!(
                        "{{\"entity_ref\":\"{g}\",\"kind\":\"group\",\"namespace\":\"default\",\"name\":\"{name}\"}}\n"
                    )
                })
                .collect(),
        ),
        (
            "entity_relations",
            "relations.csv",
            format!("source_ref,relation_type,target_ref\n{A},dependsOn,{B}\n"),
        ),
        (
            "dora_deployments",
            "deployments.ndjson",
            [
                deployment("old", A, at(-5, "10:00:00"), false),
                deployment("own", A, at(-1, "10:00:00"), false),
                deployment("dependency", B, at(0, "03:00:00"), true),
            ]
            .concat(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anomaly_endpoints_serve_cost_roles_within_their_teams() -> Result<()> {
    use crate::api::{serve, token};
    use serde_json::{Value, json};

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let first = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default();
    let spike = first + Duration::days(100);
    let mut files = vec![
        ("cost_daily", "cost.ndjson", cost_rows(first)),
        ("dora_scope_members", "members.ndjson", members()),
        ("service_metrics_daily", "ops.ndjson", ops_rows(first)),
    ];
    files.extend(catalog_and_deployments(spike));
    for (table, name, content) in &files {
        let file = write_file(dir.path(), name, content.as_bytes())?;
        let output = fathom(&data, &["import", table, &file.display().to_string()])?;
        ensure!(
            output.status.success(),
            "{table}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = fathom(&data, &["detect"])?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let viewer = token(dir.path(), "viewer", "")?;
    let cost_viewer = token(dir.path(), "cost-viewer", "")?;
    let elsewhere = token(dir.path(), "cost-viewer", "team-other")?;
    let server = serve(dir.path(), &[], "127.0.0.1:0")?;
    let http = reqwest::Client::new();
    let get = |path: &str, secret: &str| {
        http.get(format!("{}/api/v1{path}", server.base))
            .bearer_auth(secret)
            .send()
    };
    let list: Value = get("/anomalies?metric=cost", &cost_viewer)
        .await?
        .json()
        .await?;
    // The spike in checkout-api's total, its team's and the org's, and in
    // checkout-api's compute on its own.
    assert_eq!(list["total"], 4, "{list}");
    assert_eq!(list["to"], (first + Duration::days(119)).to_string());
    let id_of = |scope: &str| -> Result<String> {
        list["anomalies"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|r| r["scope"] == scope && r.get("dimension").is_none_or(Value::is_null))
            })
            .and_then(|r| r["anomaly_id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no anomaly of {scope} in {list}"))
    };
    let id = id_of(A)?;

    // Cost anomalies are hidden from roles that may not see cost, and
    // named when asked for; operational ones are for every role.
    let operational: Value = get("/anomalies", &viewer).await?.json().await?;
    let rows = operational["anomalies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(!rows.is_empty(), "{operational}");
    ensure!(
        rows.iter()
            .all(|r| r["metric"] != "cost" && r["scope"] == B),
        "{operational}"
    );
    ensure!(
        rows.iter().any(|r| r["metric"] == "error_rate"
            && r["first_day"] == (first + Duration::days(90)).to_string()),
        "{operational}"
    );
    let ops_id = rows[0]["anomaly_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        get(&format!("/anomalies/{ops_id}"), &viewer)
            .await?
            .status(),
        200
    );
    let everything: Value = get("/anomalies", &cost_viewer).await?.json().await?;
    assert_eq!(everything["total"], 4 + rows.len(), "{everything}");
    for path in [
        "/anomalies?metric=cost".to_owned(),
        format!("/anomalies/{id}"),
    ] {
        assert_eq!(get(&path, &viewer).await?.status(), 403, "{path}");
    }
    // A team's own series and its components'; never another team's.
    let team: Value = get(
        "/anomalies?scope=group%3Adefault%2Fteam-checkout&metric=cost",
        &cost_viewer,
    )
    .await?
    .json()
    .await?;
    assert_eq!(team["total"], 3, "{team}");
    let none: Value = get("/anomalies", &elsewhere).await?.json().await?;
    assert_eq!(none["total"], 0, "{none}");
    for anomaly in [&id, &ops_id] {
        assert_eq!(
            get(&format!("/anomalies/{anomaly}"), &elsewhere)
                .await?
                .status(),
            403
        );
    }
    assert_eq!(get("/anomalies?scope=org", &elsewhere).await?.status(), 403);
    for (path, want) in [
        ("/anomalies?kind=trend", 0),
        ("/anomalies?status=open", 0),
        ("/anomalies?metric=cost&status=closed&kind=spike", 4),
        ("/anomalies?to=2026-03-01", 0),
    ] {
        let body: Value = get(path, &cost_viewer).await?.json().await?;
        assert_eq!(body["total"], want, "{path}: {body}");
    }
    for path in [
        "/anomalies?kind=bump",
        "/anomalies?status=gone",
        "/anomalies?from=yesterday",
        "/anomalies?limit=0",
    ] {
        assert_eq!(get(path, &cost_viewer).await?.status(), 400, "{path}");
    }
    assert_eq!(get("/anomalies/nope", &cost_viewer).await?.status(), 404);

    // The detail: four weeks of baseline before, two weeks after (the
    // data ends 19 days after the spike), drivers adding up to the
    // impact, and the deployments of the 48 hours before — its own first,
    // then its dependency's; the one five days before is not a candidate.
    let detail: Value = get(&format!("/anomalies/{id}"), &cost_viewer)
        .await?
        .json()
        .await?;
    let series = detail["series"].as_array().cloned().unwrap_or_default();
    assert_eq!(series.len(), 28 + 1 + 14, "{detail}");
    assert_eq!(series[28]["date"], spike.to_string());
    assert_eq!(series[28]["anomalous"], true);
    ensure!(series[28]["value"].as_f64() > series[28]["upper"].as_f64());
    let impact = detail["anomaly"]["impact"].as_f64().unwrap_or(f64::NAN);
    let sum: f64 = detail["drivers"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["contribution"].as_f64()).sum())
        .unwrap_or(f64::NAN);
    ensure!(
        (sum - impact).abs() < 1e-6 * impact.abs().max(1.0),
        "{detail}"
    );
    let candidates: Vec<(&str, &str)> = detail["candidate_deployments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["deployment_id"].as_str().unwrap_or_default(),
                        d["relation"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(candidates, [("own", "self"), ("dependency", "dependency")]);

    // Feedback: the cost roles, a known verdict, stored and audited.
    let post = |secret: &str, id: &str, body: Value| {
        http.post(format!("{}/api/v1/anomalies/{id}/feedback", server.base))
            .bearer_auth(secret)
            .json(&body)
            .send()
    };
    assert_eq!(
        post(&viewer, &id, json!({"verdict": "yes"}))
            .await?
            .status(),
        403
    );
    assert_eq!(
        post(&cost_viewer, &id, json!({"verdict": "maybe"}))
            .await?
            .status(),
        400
    );
    assert_eq!(
        post(&cost_viewer, "nope", json!({"verdict": "yes"}))
            .await?
            .status(),
        404
    );
    assert_eq!(
        post(&elsewhere, &id, json!({"verdict": "no"}))
            .await?
            .status(),
        403
    );
    let given = post(
        &cost_viewer,
        &id,
        json!({"verdict": "planned", "note": "load test"}),
    )
    .await?;
    assert_eq!(given.status(), 200);
    let list: Value = get(
        "/anomalies?scope=component%3Adefault%2Fcheckout-api",
        &cost_viewer,
    )
    .await?
    .json()
    .await?;
    let judged = list["anomalies"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["anomaly_id"] == id.as_str()))
        .map(|r| r["verdict"].clone());
    assert_eq!(judged, Some(json!("planned")), "{list}");
    let detail: Value = get(&format!("/anomalies/{id}"), &cost_viewer)
        .await?
        .json()
        .await?;
    assert_eq!(detail["feedback"][0]["note"], "load test");
    let output = fathom(&data, &["audit", "--json"])?;
    let audit = String::from_utf8_lossy(&output.stdout);
    ensure!(
        audit
            .lines()
            .any(|l| l.contains("anomaly.feedback") && l.contains(&id)),
        "{audit}"
    );
    let output = fathom(&data, &["ml", "feedback", "--json"])?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(report["months"][0]["planned"], 1, "{report}");
    assert_eq!(report["months"][0]["precision"], 1.0, "{report}");
    // The evaluation report carries the same precision over time.
    let output = fathom(
        &data,
        &[
            "ml",
            "evaluate",
            "--series",
            "cost",
            "--seeds",
            "1",
            "--services",
            "4",
            "--days",
            "45",
            "--family",
            "standard",
            "--json",
        ],
    )?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let evaluation: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(evaluation["feedback"], report["months"], "{evaluation}");
    Ok(())
}

/// The lines of an NDJSON export whose `date` is before (or from) `cut`.
fn split_by_date(ndjson: &str, cut: NaiveDate) -> (String, String) {
    let (mut before, mut after) = (String::new(), String::new());
    for line in ndjson.lines() {
        let date = line
            .split("\"date\":\"")
            .nth(1)
            .and_then(|rest| rest.get(..10))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let target = if date.is_some_and(|d| d < cut) {
            &mut before
        } else {
            &mut after
        };
        target.push_str(line);
        target.push('\n');
    }
    (before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_detect_run_continues_the_saved_state_and_equals_a_full_run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let first = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default();
    // Cut right after the cost spike (day 100): its anomaly may still grow
    // when the next days come, so the daily run must take it up again.
    let cut = first + Duration::days(101);
    let (cost_before, cost_after) = split_by_date(&cost_rows(first), cut);
    let (ops_before, ops_after) = split_by_date(&ops_rows(first), cut);
    let import = |table: &str, name: &str, content: &str| -> Result<()> {
        let file = write_file(dir.path(), name, content.as_bytes())?;
        let output = fathom(&data, &["import", table, &file.display().to_string()])?;
        ensure!(
            output.status.success(),
            "{table}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    let detect = |args: &[&str]| -> Result<serde_json::Value> {
        let output = fathom(&data, &[&["detect", "--json"], args].concat())?;
        ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    import("dora_scope_members", "members.ndjson", &members())?;
    import("cost_daily", "cost-1.ndjson", &cost_before)?;
    import("service_metrics_daily", "ops-1.ndjson", &ops_before)?;
    let first_run = detect(&[])?;
    assert_eq!(first_run["mode"], "full", "{first_run}");
    assert_eq!(
        first_run["full_reason"], "no saved state (the first run)",
        "{first_run}"
    );
    // Nothing new: nothing to do.
    let idle = detect(&[])?;
    assert_eq!(
        (idle["mode"].as_str(), idle["points"].as_u64()),
        (Some("incremental"), Some(0)),
        "{idle}"
    );

    import("cost_daily", "cost-2.ndjson", &cost_after)?;
    import("service_metrics_daily", "ops-2.ndjson", &ops_after)?;
    // A service the last run did not know: all of its days are new.
    import(
        "service_metrics_daily",
        "ops-new.ndjson",
        &ops_after.replace("search-api", "audit-api"),
    )?;
    let daily = detect(&[])?;
    assert_eq!(daily["mode"], "incremental", "{daily}");
    // Eight cost series (four wholes, four parts), search-api's requests,
    // error rate and p95 latency, and audit-api's: 19 new days each.
    assert_eq!(daily["series"], 14, "{daily}");
    assert_eq!(daily["points"], 14 * 19, "{daily}");

    let warehouse = local_warehouse(&data)?;
    let scores_sql = "SELECT metric, scope, unit, dimension, CAST(date AS VARCHAR) AS day, value, expected, lower, upper, score, anomalous \
                      FROM anomaly_scores ORDER BY metric, scope, unit, dimension, date";
    let anomalies_sql = "SELECT anomaly_id, metric, scope, kind, direction, CAST(first_day AS VARCHAR) AS first, \
                         CAST(last_day AS VARCHAR) AS last, status, peak_score, days, actual, expected, impact, driver, \
                         driver_share, drivers FROM anomalies ORDER BY anomaly_id";
    let scores = rows(&warehouse, scores_sql).await?;
    let found = rows(&warehouse, anomalies_sql).await?;
    assert_eq!(scores.len(), 11 * 120 + 3 * 19, "every day scored once");
    // The spike was taken up again and closed, with its driver.
    let spike_day = (first + Duration::days(100)).to_string();
    let spike: Vec<&Vec<String>> = found
        .iter()
        .filter(|r| r[1] == "cost" && r[5] == spike_day && !r[13].is_empty())
        .collect();
    assert_eq!(spike.len(), 3, "{found:?}");
    ensure!(
        spike
            .iter()
            .all(|r| r[7] == "closed" && r[13] == "kubernetes/Compute")
    );

    // Exactly what a full run writes.
    let full = detect(&["--full"])?;
    assert_eq!(
        (full["mode"].as_str(), full["full_reason"].as_str()),
        (Some("full"), Some("asked for"))
    );
    assert_eq!(rows(&warehouse, scores_sql).await?, scores);
    assert_eq!(rows(&warehouse, anomalies_sql).await?, found);

    // A day already scored that changes makes the next run a full one.
    let (_, late) = split_by_date(&ops_after, first + Duration::days(110));
    let corrected = late.replacen("\"request_count\":", "\"request_count\":1", 1);
    import("service_metrics_daily", "ops-3.ndjson", &corrected)?;
    let after_correction = detect(&[])?;
    assert_eq!(after_correction["mode"], "full", "{after_correction}");
    ensure!(
        after_correction["full_reason"]
            .as_str()
            .is_some_and(|r| r.contains("changed on")),
        "{after_correction}"
    );
    Ok(())
}
