//! The dashboards in a real browser: headless Chromium (the system's
//! `chromium`, nothing downloaded) driven over the Chrome DevTools Protocol
//! against `fathom serve` on a demo world. Every page loads without console
//! errors or failed requests, charts hold the series and points the API
//! implies, the numbers equal the API's for the same filters (also after a
//! filter changes), drill-down links reach the rows behind a number, and a
//! screenshot of every page is written (`FATHOM_SCREENSHOTS_DIR`, default
//! `target/screenshots`).
//!
//! Skips with a notice when Chromium is absent, unless
//! `FATHOM_REQUIRE_BROWSER` is set (CI sets it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::api::{serve, token};
use crate::cdp::{Browser, chromium};
use crate::support::fathom_bin;

fn screenshots_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("FATHOM_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A float from JSON (numbers, or a page's `data-value` text).
fn number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn assert_close(page: &Value, api: &Value, what: &str) {
    match (number(page), number(api)) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: the page shows {a}, the API says {b}"
        ),
        (None, None) => {}
        _ => panic!("{what}: the page shows {page}, the API says {api}"),
    }
}

/// The tiles of the page: metric → (value, tier text).
const TILES: &str = "Array.from(document.querySelectorAll('[data-panel=\"dora-tiles\"] .tile')).map(t => ({metric: t.dataset.metric, value: t.dataset.value, tier: t.querySelector('.tile-tier').dataset.tier}))";

/// The API as the test reads it: GETs with the admin's token.
struct Api<'a> {
    http: reqwest::Client,
    base: &'a str,
    token: &'a str,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// A ref as a path segment.
fn segment(entity: &str) -> String {
    entity.replace(':', "%3A").replace('/', "%2F")
}

/// Picks `value` in the filter bar's `filter` select and waits for the
/// page to draw again.
async fn choose(browser: &mut Browser, filter: &str, value: &str) -> Result<()> {
    browser
        .act(&format!(
            "const s = document.getElementById('filter-{filter}'); s.value = '{value}'; s.dispatchEvent(new Event('change'))"
        ))
        .await
}

/// Checks the page's tiles against `GET /api/v1/dora/{scope}` for the same
/// filters.
async fn tiles_match_the_api(
    browser: &mut Browser,
    api: &Api<'_>,
    scope: &str,
    query: &str,
) -> Result<Value> {
    let dora = api
        .get(&format!("/api/v1/dora/{}?{query}", segment(scope)))
        .await?;
    let tiles = browser.eval(TILES).await?;
    let tiles = tiles.as_array().context("no tiles")?;
    assert_eq!(tiles.len(), 5, "five keys: {tiles:?}");
    let tier_of = [
        ("deployments_per_week", "deployment_frequency"),
        ("lead_time_p50_seconds", "lead_time"),
        ("change_failure_rate", "change_failure_rate"),
        ("failed_deployment_recovery_p50_seconds", "recovery"),
    ];
    for tile in tiles {
        let metric = tile["metric"].as_str().unwrap_or_default();
        assert_close(
            &tile["value"],
            &dora["metrics"][metric],
            &format!("{scope} {query} {metric}"),
        );
        if let Some((_, key)) = tier_of.iter().find(|(m, _)| *m == metric) {
            let expected = dora["tiers"][*key].as_str().unwrap_or("none");
            assert_eq!(tile["tier"], expected, "{scope} {query} tier of {metric}");
        }
    }
    Ok(dora)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_in_a_real_browser() -> Result<()> {
    let Some(binary) = chromium() else {
        if std::env::var_os("FATHOM_REQUIRE_BROWSER").is_some() {
            bail!("Chromium is required (FATHOM_REQUIRE_BROWSER is set) but not installed");
        }
        eprintln!("skipping: Chromium is not installed (apt-get install chromium)");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let demo = dir.path().join("demo");
    let demo_text = demo.display().to_string();
    let output = Command::new(fathom_bin())
        .args([
            "demo",
            "--teams",
            "4",
            "--services",
            "12",
            "--days",
            "100",
            "--no-serve",
            "--dir",
        ])
        .arg(&demo_text)
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env_remove("FATHOM_CONFIG")
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The demo's warehouse is `demo/data`; its sources come from its config.
    let admin = token(&demo, "admin", "")?;
    let config = demo.join("fathom.toml").display().to_string();
    let server = serve(
        &demo,
        &[
            ("FATHOM_CONFIG", config.as_str()),
            ("FATHOM_SCHEDULE__ENABLED", "false"),
        ],
        "127.0.0.1:0",
    )?;
    let base = server.base.clone();
    let api = Api {
        http: reqwest::Client::new(),
        base: &base,
        token: &admin,
    };
    let shots = screenshots_dir()?;
    let mut browser = Browser::launch(&binary).await?;

    // Overview: the organisation's tiles equal the API's, the trend has a
    // series per key with a point per week the API has a value for.
    let started = Instant::now();
    browser.open(&format!("{base}/#token={admin}")).await?;
    let wall = started.elapsed();
    let render_ms = browser.eval("document.body.dataset.renderMs").await?;
    let since_navigation = browser.eval("Math.round(performance.now())").await?;
    eprintln!(
        "overview drawn: {render_ms} ms from script start to drawn, {since_navigation} ms since navigation, {} ms wall (debug server)",
        wall.as_millis()
    );
    assert_eq!(
        browser.eval("location.hash").await?,
        "",
        "the token leaves the address bar"
    );
    let org = tiles_match_the_api(&mut browser, &api, "org", "window=30d&env=all").await?;
    let trend: Value = api.get("/api/v1/dora/org/trend?interval=week").await?;
    let weeks = trend["points"].as_array().context("trend points")?;
    let last12 = &weeks[weeks.len().saturating_sub(12)..];
    let series = browser
        .eval("Array.from(document.querySelectorAll('[data-panel=\"dora-trend\"] g.series')).map(g => [g.dataset.series, g.querySelectorAll('.point').length])")
        .await?;
    let series = series.as_array().context("series")?;
    assert_eq!(series.len(), 5, "{series:?}");
    for s in series {
        let name = s[0].as_str().unwrap_or_default();
        let expected = last12
            .iter()
            .filter(|p| p["metrics"][name].is_number())
            .count();
        assert_eq!(s[1], expected, "points of {name}");
    }
    let sparks = browser
        .eval("document.querySelectorAll('[data-panel=\"dora-tiles\"] svg.spark g.series').length")
        .await?;
    assert_eq!(sparks, 5);
    let ranked = browser
        .eval("Array.from(document.querySelectorAll('[data-panel=\"overview-teams-ranked\"] .series')).map(s => s.querySelectorAll('.point').length)")
        .await?;
    let teams: Value = api.get("/api/v1/panels/teams-table?window=30d").await?;
    let all_teams = teams["rows"].as_array().context("teams")?.len();
    let deployed = teams["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["deployments"].as_u64().is_some_and(|n| n > 0))
        .count();
    let best = deployed.div_ceil(2).min(3);
    assert!(deployed >= 2, "the demo world has teams that deploy");
    assert_eq!(
        ranked,
        json!([best, best.min(deployed - best)]),
        "{deployed} teams deployed: the top and the bottom of them"
    );
    browser.screenshot(&shots.join("overview.png")).await?;

    // A filter changes the numbers to the API's for the new filters; the
    // URL carries it.
    choose(&mut browser, "window", "90").await?;
    assert_eq!(browser.eval("location.search").await?, "?window=90");
    tiles_match_the_api(&mut browser, &api, "org", "window=90d&env=all").await?;
    choose(&mut browser, "benchmark", "dora-2021").await?;
    tiles_match_the_api(
        &mut browser,
        &api,
        "org",
        "window=90d&env=all&benchmark=dora-2021",
    )
    .await?;
    // An environment: the numbers of that environment alone.
    let env = browser
        .eval("Array.from(document.getElementById('filter-env').options).map(o => o.value).find(v => v !== 'all')")
        .await?;
    let env = env
        .as_str()
        .context("the demo world has production environments")?
        .to_owned();
    choose(&mut browser, "env", &env).await?;
    tiles_match_the_api(
        &mut browser,
        &api,
        "org",
        &format!("window=90d&env={env}&benchmark=dora-2021"),
    )
    .await?;
    choose(&mut browser, "env", "all").await?;
    // The link reproduces the view.
    browser
        .open(&format!("{base}/?window=90&benchmark=dora-2021"))
        .await?;
    tiles_match_the_api(
        &mut browser,
        &api,
        "org",
        "window=90d&env=all&benchmark=dora-2021",
    )
    .await?;

    // Drill-down: the deployments count leads to exactly those deployments.
    browser.open(&format!("{base}/")).await?;
    browser
        .act("document.querySelector('[data-panel=\"dora-tiles\"] a.num[data-column=\"deployments\"]').click()")
        .await?;
    assert_eq!(browser.eval("location.pathname").await?, "/rows");
    let shown = browser
        .eval("[document.getElementById('row-count').dataset.count, document.querySelectorAll('main tbody tr').length]")
        .await?;
    let deployments = org["counts"]["deployments"]
        .as_u64()
        .context("deployments")?;
    assert_eq!(shown, json!([deployments.to_string(), deployments]));
    browser.screenshot(&shots.join("rows.png")).await?;
    // And the lead-time tile leads to the changes behind it.
    browser.open(&format!("{base}/")).await?;
    browser
        .act("document.querySelector('[data-metric=\"lead_time_p50_seconds\"]').click()")
        .await?;
    let changes = browser
        .eval("Number(document.getElementById('row-count').dataset.count)")
        .await?;
    assert_eq!(
        changes, org["counts"]["changes"],
        "changes behind the lead time"
    );

    // Teams: every team's numbers equal the API's; sorting works from the
    // keyboard.
    browser.open(&format!("{base}/teams")).await?;
    let rows = browser
        .eval("Array.from(document.querySelectorAll('[data-panel=\"teams-table\"] tbody tr')).map(tr => ({team: tr.dataset.key, values: Object.fromEntries(Array.from(tr.querySelectorAll('[data-column]')).map(n => [n.dataset.column, n.dataset.value]))}))")
        .await?;
    let rows = rows.as_array().context("team rows")?;
    assert_eq!(rows.len(), all_teams, "every group of the catalog");
    for row in rows {
        let team = row["team"].as_str().unwrap_or_default();
        let dora = api
            .get(&format!("/api/v1/dora/{}?window=30d", segment(team)))
            .await?;
        for metric in [
            "deployments_per_week",
            "lead_time_p50_seconds",
            "change_failure_rate",
        ] {
            assert_close(
                &row["values"][metric],
                &dora["metrics"][metric],
                &format!("{team} {metric}"),
            );
        }
    }
    browser
        .call("Runtime.evaluate", json!({"expression": "document.querySelector('[data-panel=\"teams-table\"] th:nth-child(2) button').focus()"}))
        .await?;
    for kind in ["keyDown", "keyUp"] {
        browser
            .call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": if kind == "keyDown" { "\r" } else { "" }}),
            )
            .await?;
    }
    let sorted = browser
        .eval("Array.from(document.querySelectorAll('[data-panel=\"teams-table\"] tbody tr td:nth-child(2) [data-value]')).map(n => n.dataset.value).filter(v => v !== '').map(Number)")
        .await?;
    let sorted: Vec<f64> = serde_json::from_value(sorted)?;
    assert!(
        sorted.len() >= 4 && sorted.windows(2).all(|w| w[0] <= w[1]),
        "sorted ascending by Enter: {sorted:?}"
    );
    browser.screenshot(&shots.join("teams.png")).await?;
    // The CSV button downloads the panel's export.
    let downloads = tempfile::tempdir()?;
    browser
        .call(
            "Page.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads.path().display().to_string()}),
        )
        .await?;
    browser
        .eval("document.querySelector('[data-panel=\"teams-table\"] button.csv').click()")
        .await?;
    let csv_file = downloads.path().join("teams-table.csv");
    let waited = Instant::now();
    while !csv_file.exists() && waited.elapsed().as_secs() < 20 {
        // Keep reading the browser's events while the download lands.
        browser.eval("1").await?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let csv = std::fs::read_to_string(&csv_file)?;
    assert!(csv.starts_with("team,deployments_per_week,"), "{csv}");
    assert_eq!(csv.lines().count(), all_teams + 1, "{csv}");

    // Team: the busiest team's tiles, its services, stages and weeks.
    let busiest = rows
        .iter()
        .filter_map(|r| Some((r["team"].as_str()?, number(&r["values"]["deployments"])?)))
        .filter(|(t, _)| !t.ends_with("/commerce"))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, _)| t.to_owned())
        .context("no team deployed")?;
    browser.open(&format!("{base}/team?team={busiest}")).await?;
    tiles_match_the_api(&mut browser, &api, &busiest, "window=30d").await?;
    let team_charts = browser
        .eval("({stages: document.querySelectorAll('[data-panel=\"team-lead-time-stages\"] g.series').length, weeks: Array.from(document.querySelectorAll('[data-panel=\"team-deployments-per-week\"] g.series')).map(g => g.querySelectorAll('.point').length), services: Array.from(document.querySelectorAll('[data-panel=\"team-services\"] tbody tr')).map(tr => tr.dataset.key)})")
        .await?;
    assert_eq!(team_charts["stages"], 4, "coding, pickup, review, deploy");
    assert_eq!(
        team_charts["weeks"],
        json!([12, 12]),
        "12 weeks of deployments and failures"
    );
    // A week's bar leads to that week's deployments.
    let bar = browser
        .eval("(() => { const bars = Array.from(document.querySelectorAll('[data-panel=\"team-deployments-per-week\"] g.series[data-series=\"deployments\"] rect.point')); const busiest = bars.reduce((a, b) => Number(b.dataset.value) > Number(a.dataset.value) ? b : a); busiest.id = 'busiest-week'; return Number(busiest.dataset.value); })()")
        .await?;
    assert!(bar.as_u64().is_some_and(|n| n > 0), "{bar}");
    browser
        .act("document.getElementById('busiest-week').closest('a').dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, button: 0}))")
        .await?;
    let week = browser
        .eval("[location.pathname, Number(document.getElementById('row-count').dataset.count)]")
        .await?;
    assert_eq!(
        week,
        json!(["/rows", bar]),
        "the busiest week's deployments"
    );
    browser.open(&format!("{base}/team?team={busiest}")).await?;
    let services = team_charts["services"].as_array().context("services")?;
    assert!(!services.is_empty());
    browser.screenshot(&shots.join("team.png")).await?;

    // Service: the tiles, and a timeline with a mark per deployment the
    // drill-down API lists, failed ones marked.
    // The service with the most failures shows every kind of mark.
    let service = browser
        .eval("Array.from(document.querySelectorAll('[data-panel=\"team-services\"] tbody tr')).map(tr => [tr.dataset.key, Number((tr.querySelector('[data-column=\"change_failure_rate\"]') || {dataset: {value: 0}}).dataset.value || 0)]).sort((a, b) => b[1] - a[1])[0][0]")
        .await?
        .as_str()
        .context("no service")?
        .to_owned();
    browser
        .act(&format!(
            "document.querySelector('[data-panel=\"team-services\"] tr[data-key=\"{service}\"] a[data-column=\"service\"]').click()"
        ))
        .await?;
    assert_eq!(browser.eval("location.pathname").await?, "/service");
    tiles_match_the_api(&mut browser, &api, &service, "window=30d").await?;
    let listed = api
        .get(&format!(
            "/api/v1/dora/{}/deployments?window=30d&limit=1000",
            segment(&service)
        ))
        .await?;
    let items = listed["items"].as_array().context("items")?;
    let failed = items.iter().filter(|i| i["failed"] == true).count();
    let marks = browser
        .eval("Object.fromEntries(Array.from(document.querySelectorAll('[data-panel=\"service-deployments\"] g.series')).map(g => [g.dataset.series, g.querySelectorAll('.point').length]))")
        .await?;
    assert_eq!(marks["deployments"], items.len(), "{marks}");
    assert_eq!(marks["failed"], failed, "{marks}");
    // Suspect deployments: a mark each, the deployments the suspects table
    // lists with the signals that moved.
    let service_page = api
        .get(&format!(
            "/api/v1/pages/service?scope={}&window=30",
            segment(&service)
        ))
        .await?;
    let suspects: std::collections::BTreeSet<&str> = service_page["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["id"] == "service-suspects")
        .and_then(|p| p["rows"].as_array())
        .context("no suspects panel")?
        .iter()
        .filter_map(|r| r["deployment_id"].as_str())
        .collect();
    assert_eq!(marks["suspect"], suspects.len(), "{marks}");
    let incidents = api
        .get(&format!(
            "/api/v1/dora/{}/incidents?window=30d&limit=1000",
            segment(&service)
        ))
        .await?;
    let listed_incidents = incidents["items"].as_array().context("incidents")?.len();
    let incident_rows = browser
        .eval("document.querySelectorAll('[data-panel=\"service-incidents\"] tbody tr').length")
        .await?;
    assert_eq!(marks["incidents"], incident_rows, "{marks}");
    assert!(
        incident_rows
            .as_u64()
            .is_some_and(|n| n as usize >= listed_incidents),
        "the page lists every resolved incident the API does ({listed_incidents}), open ones too"
    );
    // Its cost: the daily cost against the baseline (a figure with its
    // anomalous days marked) and its months against its peers, as the
    // API's cost benchmark gives them.
    let benchmark = api
        .get(&format!("/api/v1/cost/{}/benchmark", segment(&service)))
        .await?;
    let service_cost = browser
        .eval("({figures: document.querySelectorAll('[data-panel=\"service-cost\"] figure').length, months: document.querySelectorAll('[data-panel=\"service-cost-benchmark\"] tbody tr').length, errors: document.querySelectorAll('[data-panel] p.error').length})")
        .await?;
    assert_eq!(service_cost["figures"], 1, "{service_cost}");
    assert_eq!(service_cost["errors"], 0, "{service_cost}");
    let benchmark_months = benchmark["months"]
        .as_array()
        .context("benchmark months")?
        .len();
    assert!(benchmark_months >= 1, "{benchmark}");
    assert_eq!(
        service_cost["months"],
        benchmark_months.min(15),
        "{service_cost} {benchmark}"
    );
    browser.screenshot(&shots.join("service.png")).await?;

    // Adoption: the organisation's active users per month as the API
    // gives them (withheld months drawn without a point), teams ranked,
    // features and templates listed.
    browser.open(&format!("{base}/adoption")).await?;
    let usage: Value = api.get("/api/v1/usage/org?period=12m").await?;
    let published = usage["series"]
        .as_array()
        .context("usage series")?
        .iter()
        .filter(|p| p["active_users"].is_number())
        .count();
    let adoption = browser
        .eval("({points: Array.from(document.querySelectorAll('[data-panel=\"adoption-trend\"] g.series')).filter(g => g.dataset.series === 'active_users').map(g => g.querySelectorAll('.point').length), teams: document.querySelectorAll('[data-panel=\"adoption-teams\"] .series').length, templates: document.querySelectorAll('[data-panel=\"adoption-templates\"] tbody tr').length, features: document.querySelectorAll('[data-panel=\"adoption-features\"] [data-value]').length, errors: document.querySelectorAll('[data-panel] p.error').length})")
        .await?;
    assert_eq!(adoption["points"], json!([published]), "{adoption}");
    assert!(published > 0, "{usage}");
    assert!(
        adoption["templates"].as_u64().is_some_and(|n| n >= 1),
        "{adoption}"
    );
    assert!(
        adoption["features"].as_u64().is_some_and(|n| n >= 1),
        "{adoption}"
    );
    assert_eq!(adoption["errors"], 0, "{adoption}");
    browser.screenshot(&shots.join("adoption.png")).await?;

    // Anomalies: the page lists what the API lists for the same window
    // (30 days of scored data), cost and operational apart, and draws the
    // largest against their baselines with the anomalous days marked.
    browser.open(&format!("{base}/anomalies")).await?;
    let newest = api.get("/api/v1/anomalies?limit=1").await?["to"]
        .as_str()
        .context("anomalies: to")?
        .to_owned();
    let from = chrono::NaiveDate::parse_from_str(&newest, "%Y-%m-%d")? - chrono::Duration::days(29);
    let all = api
        .get(&format!("/api/v1/anomalies?from={from}&limit=1"))
        .await?["total"]
        .as_u64()
        .context("total")?;
    let cost = api
        .get(&format!(
            "/api/v1/anomalies?from={from}&metric=cost&limit=1"
        ))
        .await?["total"]
        .as_u64()
        .context("total")?;
    let drawn = browser
        .eval("({cost: document.querySelectorAll('[data-panel=\"anomalies-cost\"] tbody tr').length, operations: document.querySelectorAll('[data-panel=\"anomalies-operations\"] tbody tr').length, more: Array.from(document.querySelectorAll('[data-panel^=\"anomalies-\"] button.more')).filter(b => !b.hidden).map(b => b.textContent), costBands: Array.from(document.querySelectorAll('[data-panel=\"anomalies-cost-bands\"] figure')).map(f => f.querySelectorAll('circle.anomalous').length), operationBands: Array.from(document.querySelectorAll('[data-panel=\"anomalies-operations-bands\"] figure')).map(f => f.querySelectorAll('circle.anomalous').length), errors: document.querySelectorAll('[data-panel] p.error').length})")
        .await?;
    // Tables show 15 rows and offer the rest (the panels hold 50).
    assert_eq!(drawn["cost"], cost.min(15), "{drawn}");
    assert_eq!(drawn["operations"], (all - cost).min(15), "{drawn}");
    let offered: Vec<String> = [cost, all - cost]
        .into_iter()
        .filter(|n| *n > 15)
        .map(|n| format!("Show all {} rows", n.min(50)))
        .collect();
    assert_eq!(drawn["more"], json!(offered), "{drawn}");
    for (panel, total) in [("costBands", cost), ("operationBands", all - cost)] {
        let figures = drawn[panel].as_array().context("figures")?;
        assert_eq!(figures.len() as u64, total.min(6), "{drawn}");
        assert!(
            figures.iter().all(|marked| marked.as_u64() >= Some(1)),
            "every anomaly drawn has its days marked: {drawn}"
        );
    }
    assert!(
        all > 0,
        "the demo's world has anomalies in its last 30 days"
    );
    assert_eq!(drawn["errors"], 0, "{drawn}");
    browser.screenshot(&shots.join("anomalies.png")).await?;

    // Cost: the organisation's daily cost against its baseline with the
    // anomalous days marked — as many as the page's data has — its months
    // by source, the last complete month's changes and the unit costs.
    browser.open(&format!("{base}/cost")).await?;
    let data = api.get("/api/v1/pages/cost").await?;
    let panel_rows = |id: &str| -> Vec<Value> {
        data["panels"]
            .as_array()
            .and_then(|panels| panels.iter().find(|p| p["id"] == id))
            .and_then(|p| p["rows"].as_array())
            .cloned()
            .unwrap_or_default()
    };
    let daily = panel_rows("cost-daily");
    let anomalous_days = daily.iter().filter(|r| r["anomalous"] == true).count();
    let cost_page = browser
        .eval("({figures: document.querySelectorAll('[data-panel=\"cost-daily\"] figure').length, marked: document.querySelectorAll('[data-panel=\"cost-daily\"] circle.anomalous').length, months: document.querySelectorAll('[data-panel=\"cost-monthly\"] [data-series=\"kubernetes\"] .point').length, changes: document.querySelectorAll('[data-panel=\"cost-changes\"] tbody tr').length, benchmarks: document.querySelectorAll('[data-panel=\"cost-benchmarks\"] tbody tr').length, first: document.querySelector('[data-panel=\"cost-changes\"] tbody tr th, [data-panel=\"cost-changes\"] tbody tr td')?.textContent, errors: document.querySelectorAll('[data-panel] p.error').length})")
        .await?;
    assert!(daily.len() > 28, "the window's days: {}", daily.len());
    assert_eq!(cost_page["figures"], 1, "{cost_page}");
    assert_eq!(cost_page["marked"], anomalous_days, "{cost_page}");
    assert_eq!(
        cost_page["months"],
        panel_rows("cost-monthly").len(),
        "{cost_page}"
    );
    let changes = panel_rows("cost-changes");
    assert!(!changes.is_empty(), "{data}");
    assert_eq!(cost_page["changes"], changes.len().min(15), "{cost_page}");
    assert_eq!(changes[0]["scope"], "org", "the scope itself comes first");
    assert_eq!(
        cost_page["benchmarks"],
        panel_rows("cost-benchmarks").len().min(15),
        "{cost_page}"
    );
    // Services placed by traffic and cost per request: those with both.
    let placed = panel_rows("cost-benchmark-scatter")
        .iter()
        .filter(|r| {
            r["requests"].as_f64().is_some_and(|v| v > 0.0)
                && r["cost_per_1k_requests"].as_f64().is_some_and(|v| v > 0.0)
        })
        .count();
    assert!(placed >= 1, "{data}");
    let points = browser
        .eval("document.querySelectorAll('[data-panel=\"cost-benchmark-scatter\"] circle.point').length")
        .await?;
    assert_eq!(points, placed, "{data}");
    assert_eq!(cost_page["errors"], 0, "{cost_page}");
    browser.screenshot(&shots.join("cost.png")).await?;

    // Data health: every source's freshness, the demo's run, and the
    // unattributed rows with their reasons.
    browser.open(&format!("{base}/health")).await?;
    let health = browser
        .eval("({sources: document.querySelectorAll('[data-panel=\"health-freshness\"] tbody tr').length, runs: document.querySelectorAll('[data-panel=\"health-runs\"] tbody tr').length, unattributed: document.querySelectorAll('[data-panel=\"health-unattributed\"] tbody tr').length, filters: document.getElementById('filters').hidden})")
        .await?;
    assert_eq!(health["sources"], 8, "{health}");
    assert!(health["runs"].as_u64().is_some_and(|n| n >= 1), "{health}");
    assert!(
        health["unattributed"].as_u64().is_some_and(|n| n >= 1),
        "the world leaves untagged costs: {health}"
    );
    // Cost coverage and commitments, as many rows as the page data has.
    let health_data = api.get("/api/v1/pages/health").await?;
    let health_rows = |id: &str| {
        health_data["panels"]
            .as_array()
            .and_then(|panels| panels.iter().find(|p| p["id"] == id))
            .and_then(|p| p["rows"].as_array())
            .map_or(0, Vec::len)
    };
    let cost_health = browser
        .eval("({coverage: document.querySelectorAll('[data-panel=\"health-cost-coverage\"] tbody tr').length, commitments: document.querySelectorAll('[data-panel=\"health-commitments\"] tbody tr').length, errors: document.querySelectorAll('[data-panel] p.error').length})")
        .await?;
    let coverage_rows = health_rows("health-cost-coverage");
    assert!(coverage_rows >= 1, "the demo has cost: {health_data}");
    assert_eq!(
        cost_health["coverage"],
        coverage_rows.min(15),
        "{cost_health}"
    );
    assert_eq!(
        cost_health["commitments"],
        health_rows("health-commitments").min(15),
        "{cost_health}"
    );
    assert_eq!(cost_health["errors"], 0, "{cost_health}");
    browser.screenshot(&shots.join("health.png")).await?;
    // The unattributed count leads to those rows.
    let records = browser
        .eval("document.querySelector('[data-panel=\"health-unattributed\"] tbody tr a.num[data-column=\"records\"]').dataset.value")
        .await?;
    browser
        .act("document.querySelector('[data-panel=\"health-unattributed\"] tbody tr a.num[data-column=\"records\"]').click()")
        .await?;
    let listed = browser
        .eval("[document.getElementById('row-count').dataset.count, document.querySelectorAll('main tbody tr').length]")
        .await?;
    let records: usize = records.as_str().context("records")?.parse()?;
    let expected = records.min(1_000);
    assert_eq!(
        listed,
        json!([expected.to_string(), expected]),
        "{records} unattributed rows"
    );

    // A page's data is one API call.
    for path in [
        "/",
        "/teams",
        &format!("/team?team={busiest}"),
        &format!("/service?service={service}"),
        "/adoption",
        "/cost",
        "/anomalies",
        "/health",
    ] {
        let from = browser.events.len();
        browser.open(&format!("{base}{path}")).await?;
        // Besides the page's own report of its view.
        let calls: Vec<String> = browser
            .requests_since(from, "/api/v1/")
            .into_iter()
            .filter(|url| !url.contains("/api/v1/usage/page-views"))
            .collect();
        assert_eq!(calls.len(), 1, "{path}: {calls:?}");
    }

    // A laptop screen: no page scrolls sideways.
    browser.viewport(1280, 800).await?;
    for path in [
        "/",
        "/teams",
        &format!("/team?team={busiest}"),
        "/adoption",
        "/cost",
        "/anomalies",
        "/health",
    ] {
        browser.open(&format!("{base}{path}")).await?;
        let fits = browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await?;
        assert_eq!(fits, true, "{path} scrolls sideways at 1280 px");
    }

    let problems = browser.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    drop(browser);
    server.terminate()?;
    // The pages reported their views: Fathom counts its own adoption.
    let warehouse = crate::support::local_warehouse(&demo.join("data"))?;
    let views = crate::support::rows(
        &warehouse,
        "SELECT route, count(*), count(DISTINCT user_hash) FROM portal_events \
         WHERE plugin_id = 'fathom' GROUP BY route ORDER BY route",
    )
    .await?;
    let routes: Vec<&str> = views.iter().map(|r| r[0].as_str()).collect();
    for route in ["/adoption", "/health", "/overview", "/team", "/teams"] {
        assert!(routes.contains(&route), "{views:?}");
    }
    assert!(views.iter().all(|r| r[2] == "1"), "one viewer: {views:?}");
    Ok(())
}
