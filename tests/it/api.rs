//! `fathom serve` over the worked example of `docs/metrics.md`: the DORA
//! endpoints answer the numbers the document derives, tokens and roles
//! gate them, SQL answers analysts in CSV, and errors have one shape.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::dora::{WORKED_EXAMPLE, fathom_in, load_and_transform};
use crate::support::fathom_bin;

/// A `fathom serve` process, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// Port of the PostgreSQL endpoint, when it was started.
    pub(crate) postgres_port: Option<u16>,
}

impl Server {
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to stop (SIGTERM) and waits until it has.
    pub(crate) fn terminate(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        self.child.wait()?;
        Ok(())
    }

    /// Kills the server at once (SIGKILL: no shutdown work runs).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fathom serve` on `listen`, with the PostgreSQL endpoint on a free
/// loopback port.
pub(crate) fn serve(dir: &std::path::Path, envs: &[(&str, &str)], listen: &str) -> Result<Server> {
    let mut child = Command::new(fathom_bin())
        .args([
            "serve",
            "--listen",
            listen,
            "--postgres-listen",
            "127.0.0.1:0",
        ])
        .env("FATHOM_WAREHOUSE__URL", dir.join("data"))
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    // The second line names the PostgreSQL endpoint (`… on 127.0.0.1:PORT: …`).
    let mut pg_line = String::new();
    stdout.read_line(&mut pg_line)?;
    let postgres_port = pg_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.trim_end_matches(':').parse().ok());
    drain(stdout);
    let Some(base) = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .and_then(|u| u.strip_suffix("/api/v1"))
    else {
        let _ = child.kill();
        let output = child.wait_with_output()?;
        bail!(
            "serve did not start: {line} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    Ok(Server {
        base: base.to_owned(),
        child,
        postgres_port,
    })
}

/// Keeps reading a server's output so its later lines never meet a closed
/// pipe.
fn drain(mut stdout: impl std::io::Read + Send + 'static) {
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
}

/// Creates a token and returns its secret.
pub(crate) fn token(dir: &std::path::Path, role: &str, teams: &str) -> Result<String> {
    let mut args = vec!["tokens", "create", "--name", role, "--role", role];
    if !teams.is_empty() {
        args.extend(["--teams", teams]);
    }
    let output = fathom_in(dir, &args)?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .map(str::to_owned)
        .context("no secret printed")
}

const PAYMENTS: &str = "component%3Adefault%2Fpayments-api";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_the_worked_example() -> Result<()> {
    let dir = tempfile::tempdir()?;
    load_and_transform(dir.path(), &WORKED_EXAMPLE)?;
    let viewer = token(dir.path(), "viewer", "")?;
    let analyst = token(dir.path(), "analyst", "")?;
    let contractor = token(dir.path(), "contractor", "team-elsewhere")?;
    let admin = token(dir.path(), "admin", "")?;
    let server = serve(
        dir.path(),
        &[("FATHOM_API__CORS_ORIGIN", "https://portal.example")],
        "127.0.0.1:0",
    )?;
    let http = reqwest::Client::new();
    let get = |path: &str, secret: &str| {
        http.get(format!("{}{path}", server.base))
            .bearer_auth(secret)
            .send()
    };

    let health = http.get(format!("{}/healthz", server.base)).send().await?;
    assert_eq!(health.status(), 200);
    // The portal's origin may call from a browser; another origin is
    // never granted (the header names only the portal, so browsers refuse).
    let from = |origin: &'static str| {
        http.get(format!("{}/healthz", server.base))
            .header("origin", origin)
            .send()
    };
    let allowed = from("https://portal.example").await?;
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://portal.example")
    );
    let other = from("https://elsewhere.example").await?;
    assert_ne!(
        other
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://elsewhere.example")
    );
    let ready: Value = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["warehouse"], "ok");
    assert_eq!(ready["state"], "ok");

    // The 30-day numbers of the document, with dora-2023 tiers.
    let response = get(&format!("/api/v1/dora/{PAYMENTS}?window=30d"), &viewer).await?;
    assert_eq!(response.status(), 200);
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no etag")?;
    let body: Value = response.json().await?;
    assert_eq!(body["scope"], "component:default/payments-api");
    assert_eq!(body["counts"]["deployments"], 4);
    assert_eq!(body["counts"]["failed_jobs"], 1);
    assert_eq!(body["counts"]["changes"], 3);
    assert_eq!(body["metrics"]["change_failure_rate"], 0.25);
    assert_eq!(body["metrics"]["lead_time_p50_seconds"], 86_400.0);
    assert_eq!(
        body["metrics"]["failed_deployment_recovery_p50_seconds"],
        32_400.0
    );
    assert_eq!(body["benchmark"], "dora-2023");
    assert_eq!(body["tiers"]["deployment_frequency"], "medium");
    assert_eq!(body["tiers"]["lead_time"], "elite");
    assert_eq!(body["tiers"]["change_failure_rate"], "low");
    assert_eq!(body["tiers"]["recovery"], "high");
    assert_eq!(body["tiers"]["overall"], "low");
    assert_eq!(body["as_of"], "2026-07-01T00:00:00Z");
    // Unchanged: 304 for the same ETag.
    let again = http
        .get(format!("{}/api/v1/dora/{PAYMENTS}?window=30d", server.base))
        .bearer_auth(&viewer)
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(again.status(), 304);

    // Another benchmark tiers the same numbers again: by 2021, 4 deploys a
    // month is high, a day's lead time high, 25 % high, 6 h to restore
    // high.
    let body: Value = get(
        &format!("/api/v1/dora/{PAYMENTS}?window=30d&benchmark=dora-2021"),
        &viewer,
    )
    .await?
    .json()
    .await?;
    assert_eq!(body["benchmark"], "dora-2021");
    for key in [
        "deployment_frequency",
        "lead_time",
        "change_failure_rate",
        "recovery",
        "overall",
    ] {
        assert_eq!(body["tiers"][key], "high", "{key}: {body}");
    }

    // Drill-down, two rows a page: the four deployments, in order.
    let mut ids = Vec::new();
    let mut path = format!("/api/v1/dora/{PAYMENTS}/deployments?window=30d&limit=2");
    loop {
        let page: Value = get(&path, &viewer).await?.json().await?;
        let items = page["items"].as_array().context("items")?;
        assert!(items.len() <= 2);
        ids.extend(items.iter().map(|i| i["deployment_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!(
                    "/api/v1/dora/{PAYMENTS}/deployments?window=30d&limit=2&cursor={cursor}"
                )
            }
            None => break,
        }
    }
    assert_eq!(ids, ["d1", "d2", "d3", "d4"]);
    let changes: Value = get(&format!("/api/v1/dora/{PAYMENTS}/changes"), &viewer)
        .await?
        .json()
        .await?;
    assert_eq!(changes["items"].as_array().map(Vec::len), Some(3));

    // The week of Monday 06-22 holds d2, d3 and d4.
    let trend: Value = get(
        &format!("/api/v1/dora/{PAYMENTS}/trend?interval=week"),
        &viewer,
    )
    .await?
    .json()
    .await?;
    let week = trend["points"]
        .as_array()
        .and_then(|p| {
            p.iter()
                .find(|p| p["period_start"] == "2026-06-22T00:00:00Z")
        })
        .context("week of 06-22")?;
    assert_eq!(week["counts"]["deployments"], 3);
    // And that week's drill-down lists exactly those three.
    let in_week: Value = get(
        &format!("/api/v1/dora/{PAYMENTS}/deployments?from=2026-06-22&to=2026-06-29"),
        &viewer,
    )
    .await?
    .json()
    .await?;
    let ids: Vec<&str> = in_week["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["deployment_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "{in_week}");
    for (from, to) in [("2026-06-29", "2026-06-22"), ("06/22/2026", "2026-06-29")] {
        let bad = get(
            &format!("/api/v1/dora/{PAYMENTS}/deployments?from={from}&to={to}"),
            &viewer,
        )
        .await?;
        assert_eq!(bad.status(), 400, "{from} {to}");
    }

    // Entities: the component with its summary; the team, the system.
    let listed: Value = get("/api/v1/entities?kind=component", &viewer)
        .await?
        .json()
        .await?;
    assert_eq!(listed["entities"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["entities"][0]["overall_tier"], "low");

    // Errors: one shape, the right status.
    let anonymous = http
        .get(format!("{}/api/v1/dora/org", server.base))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    let error: Value = anonymous.json().await?;
    assert_eq!(error["error"]["code"], "unauthenticated");
    let bad = get(&format!("/api/v1/dora/{PAYMENTS}?window=12d"), &viewer).await?;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await?["error"]["code"], "bad_request");
    let missing = get("/api/v1/dora/component%3Adefault%2Fnothing", &viewer).await?;
    assert_eq!(missing.status(), 404);
    let revoked = get("/api/v1/dora/org", "not-a-token").await?;
    assert_eq!(revoked.status(), 401);

    // A contractor sees only its teams.
    let outside = get(&format!("/api/v1/dora/{PAYMENTS}"), &contractor).await?;
    assert_eq!(outside.status(), 403);
    let theirs: Value = get("/api/v1/entities", &contractor).await?.json().await?;
    assert_eq!(theirs["entities"].as_array().map(Vec::len), Some(0));

    // Dashboard panels: the same numbers as the API, CSV for export, and
    // cross-team panels closed to team-limited callers.
    let panel: Value = get("/api/v1/panels/dora-tiles?window=30d", &viewer)
        .await?
        .json()
        .await?;
    assert_eq!(panel["rows"][0]["deployments"], 4, "{panel}");
    let csv = http
        .get(format!(
            "{}/api/v1/panels/teams-table?window=30d",
            server.base
        ))
        .bearer_auth(&viewer)
        .header("accept", "text/csv")
        .send()
        .await?;
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await?;
    assert!(csv.starts_with("team,deployments_per_week,"), "{csv}");
    assert_eq!(
        get("/api/v1/panels/teams-table", &contractor)
            .await?
            .status(),
        403
    );
    assert_eq!(get("/api/v1/panels/nope", &viewer).await?.status(), 404);

    // A dashboard page in one call: its panels in order with the numbers
    // of the API, the filter choices, and per-panel refusals for callers
    // limited to teams.
    let overview: Value = get("/api/v1/pages/overview?window=30", &viewer)
        .await?
        .json()
        .await?;
    let ids: Vec<&str> = overview["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "dora-tiles",
            "dora-trend",
            "overview-teams-ranked",
            "riskiest-deployments"
        ]
    );
    // No risk model was trained: the panel is empty, not broken.
    assert_eq!(
        overview["panels"][3]["rows"],
        serde_json::json!([]),
        "{overview}"
    );
    assert_eq!(
        overview["panels"][0]["rows"][0]["deployments"], 4,
        "{overview}"
    );
    assert_eq!(
        overview["panels"][0]["drill"],
        "/rows?rows=deployments&scope=org&window=30&env=all"
    );
    assert_eq!(
        overview["options"]["windows"],
        serde_json::json!([7, 30, 90, 365])
    );
    assert_eq!(overview["filters"]["scope"], "org");
    let team: Value = get("/api/v1/pages/team", &viewer).await?.json().await?;
    assert_eq!(team["needs"], "team");
    assert_eq!(team["panels"], serde_json::json!([]));
    let limited: Value = get("/api/v1/pages/overview", &contractor)
        .await?
        .json()
        .await?;
    assert_eq!(limited["filters"]["scope"], "group:default/team-elsewhere");
    assert_eq!(limited["options"]["organisation"], false);
    assert_eq!(overview["options"]["organisation"], true);
    assert_eq!(
        limited["panels"][2]["error"]["code"], "forbidden",
        "the ranking spans every team: {limited}"
    );
    assert_eq!(get("/api/v1/pages/nope", &viewer).await?.status(), 404);
    let health: Value = get("/api/v1/pages/health", &viewer).await?.json().await?;
    let panel = |page: &Value, id: &str| -> Value {
        page["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let runs = panel(&health, "health-runs");
    assert_eq!(
        runs["error"]["code"], "forbidden",
        "the ledger is for admins"
    );
    let ledger: Value = get("/api/v1/pages/health", &admin).await?.json().await?;
    let admin_runs = panel(&ledger, "health-runs");
    assert!(
        admin_runs["rows"].as_array().is_some_and(|r| !r.is_empty()),
        "{admin_runs}"
    );
    assert_eq!(
        panel(&health, "health-alerts")["error"]["code"],
        "forbidden",
        "alert deliveries are for admins"
    );
    let alerts = panel(&ledger, "health-alerts");
    assert!(alerts["rows"].is_array(), "{alerts}");
    // Every page path answers the shell; the assets are embedded.
    for path in ["/", "/teams", "/team", "/service", "/health", "/rows"] {
        let shell = http.get(format!("{}{path}", server.base)).send().await?;
        assert_eq!(shell.status(), 200, "{path}");
        let policy = shell.headers()["content-security-policy"]
            .to_str()?
            .to_owned();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        assert!(shell.text().await?.contains("/assets/app.js"), "{path}");
    }
    let script = http
        .get(format!("{}/assets/app.js", server.base))
        .send()
        .await?;
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    // SQL: analysts only, read-only, CSV by Accept.
    let sql = |secret: &str, query: &str| {
        http.post(format!("{}/api/v1/sql", server.base))
            .bearer_auth(secret)
            .header("accept", "text/csv")
            .json(&serde_json::json!({"sql": query}))
            .send()
    };
    let csv = sql(
        &analyst,
        "SELECT scope, deployments FROM dora_metrics WHERE window_days = 30 AND environment = 'all' AND scope = 'org'",
    )
    .await?;
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.text().await?, "scope,deployments\norg,4\n");
    // Fathom's functions are there, as in the marts (docs/metrics.md).
    let tier = sql(
        &analyst,
        "SELECT dora_tier('dora-2023', 'lead_time', lead_time_p50_seconds) AS tier FROM dora_metrics \
         WHERE window_days = 30 AND environment = 'all' AND scope = 'org'",
    )
    .await?;
    assert_eq!(tier.text().await?, "tier\nelite\n");
    assert_eq!(sql(&viewer, "SELECT 1").await?.status(), 403);
    let write = sql(&analyst, "DROP TABLE deployments").await?;
    assert_eq!(write.status(), 400);
    assert!(
        write.json::<Value>().await?["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("read-only")),
    );

    // Intake: durable before the answer, bad records quarantined, a
    // delivery applied once.
    let deliver = |secret: &str, body: Value| {
        http.post(format!("{}/api/v1/intake/deployments", server.base))
            .bearer_auth(secret)
            .header("x-delivery-id", "delivery-1")
            .json(&body)
            .send()
    };
    let records = serde_json::json!({"records": [
        {"deployment_id": "ci-7", "source": "jenkins", "entity_ref": "payments-api",
         "environment": "production", "status": "success",
         "started_at": "2026-06-29T10:00:00Z", "finished_at": "2026-06-29T10:05:00Z"},
        {"deployment_id": "ci-8", "source": "jenkins", "entity_ref": "payments-api",
         "environment": "production", "status": "success", "started_at": "yesterday-ish"},
    ]});
    assert_eq!(deliver(&viewer, records.clone()).await?.status(), 403);
    let applied: Value = deliver(&admin, records.clone()).await?.json().await?;
    assert_eq!(applied["accepted"], 1, "{applied}");
    assert_eq!(applied["quarantined"], 1, "{applied}");
    assert_eq!(
        applied["rejections"][0]["column"], "started_at",
        "{applied}"
    );
    let again: Value = deliver(&admin, records).await?.json().await?;
    assert_eq!(again["duplicate"], true);
    let landed = sql(
        &analyst,
        "SELECT (SELECT count(*) FROM deployments WHERE deployment_id = 'ci-7') AS landed, \
         (SELECT count(*) FROM quarantine WHERE source = 'intake') AS quarantined",
    )
    .await?
    .text()
    .await?;
    assert_eq!(landed, "landed,quarantined\n1,1\n");

    // Prometheus: the requests above by route template and status, and
    // the newest run of each command.
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await?
        .text()
        .await?;
    let count = |series: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert_eq!(
        count(
            "fathom_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/dora/{scope}/{rows}\",status=\"200\"}"
        ),
        // Two pages of deployments, one of changes, one week's deployments.
        Some(4),
        "{metrics}"
    );
    assert_eq!(
        count(
            "fathom_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/sql\",status=\"403\"}"
        ),
        Some(1),
        "{metrics}"
    );
    assert!(
        metrics.contains("fathom_run_succeeded{command=\"transform\"} 1"),
        "{metrics}"
    );
    Ok(())
}

/// Without authentication the server binds loopback only.
#[test]
fn no_auth_refuses_a_reachable_address() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let output = Command::new(fathom_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--postgres-listen="])
        .env("FATHOM_WAREHOUSE__URL", dir.path().join("data"))
        .env("FATHOM_API__AUTH", "none")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    Ok(())
}

/// `/freshness` names a source whose last run failed, with its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_reports_a_degraded_source() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("fathom.toml");
    // Port 9 (discard) refuses connections: the source cannot be read.
    std::fs::write(
        &config,
        format!(
            "[warehouse]\nurl = \"{}\"\n\n[[sources]]\ntype = \"backstage\"\nname = \"catalog\"\n\
             base_url = \"http://127.0.0.1:9\"\ntoken = \"x\"\n[sources.http]\nmax_retries = 0\n",
            dir.path().join("data").display()
        ),
    )?;
    let ingest = Command::new(fathom_bin())
        .args(["--config", &config.display().to_string(), "ingest"])
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .output()?;
    assert!(!ingest.status.success());
    let mut child = Command::new(fathom_bin())
        .args([
            "--config",
            &config.display().to_string(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--postgres-listen=",
        ])
        .env("FATHOM_API__AUTH", "none")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    stdout.read_line(&mut line)?;
    drain(stdout);
    let server = Server {
        postgres_port: None,
        base: line
            .split_whitespace()
            .find_map(|w| w.strip_suffix("/api/v1"))
            .context("no address")?
            .to_owned(),
        child,
    };
    let body: Value = reqwest::get(format!("{}/api/v1/freshness", server.base))
        .await?
        .json()
        .await?;
    let source = &body["sources"][0];
    assert_eq!(source["source"], "catalog");
    assert_eq!(source["degraded"], true);
    assert!(source["last_run_at"].is_string(), "{body}");
    assert!(source["last_success_at"].is_null(), "{body}");
    assert!(source["last_error"].is_string(), "{body}");
    Ok(())
}

/// Each credential has its own budget; over it, 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_per_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = token(dir.path(), "viewer", "")?;
    let second = token(dir.path(), "viewer", "")?;
    let server = serve(
        dir.path(),
        &[("FATHOM_API__RATE_LIMIT_PER_MINUTE", "5")],
        "127.0.0.1:0",
    )?;
    let http = reqwest::Client::new();
    let get = |secret: &str| {
        http.get(format!("{}/api/v1/freshness", server.base))
            .bearer_auth(secret)
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get(&first).await?.status(), 200);
    }
    let limited = get(&first).await?;
    assert_eq!(limited.status(), 429);
    // 5 a minute: the next request is 12 s away.
    let wait: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("no Retry-After")?;
    assert!((11..=12).contains(&wait), "{wait}");
    assert_eq!(
        limited.json::<Value>().await?["error"]["code"],
        "rate_limited"
    );
    // Another token is not affected.
    assert_eq!(get(&second).await?.status(), 200);
    Ok(())
}
