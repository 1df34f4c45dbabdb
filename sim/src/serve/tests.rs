//! The simulators over real HTTP: pagination, auth, errors, the shapes of
//! the recorded upstream payloads, and injected faults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::WorldConfig;
use faults::FaultPlan;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn start(options: SimOptions) -> Result<(SocketAddr, Arc<SimState>), std::io::Error> {
    let world = World::generate(WorldConfig {
        teams: 4,
        services: 12,
        days: 120,
        ..WorldConfig::default()
    });
    let state = SimState::new(world, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = state.clone();
    tokio::spawn(async move { serve(listener, served, std::future::pending()).await });
    Ok((addr, state))
}

pub(crate) fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FATHOM_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipped: fixtures not found at {} (set FATHOM_FIXTURES_DIR)",
            dir.display()
        );
        None
    }
}

fn fixture(dir: &std::path::Path, name: &str) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(serde_json::from_slice(&std::fs::read(dir.join(name))?)?)
}

/// Every key of `expected` (recursively) is in `actual` with the same JSON
/// type; nulls on either side match any type. `ignore` lists keys that the
/// recording added and the real API does not send.
fn shape_errors(
    expected: &Value,
    actual: &Value,
    path: &str,
    ignore: &[&str],
    errors: &mut Vec<String>,
) {
    match (expected, actual) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                if ignore.contains(&key.as_str()) {
                    continue;
                }
                match a.get(key) {
                    Some(actual) => {
                        shape_errors(value, actual, &format!("{path}.{key}"), ignore, errors)
                    }
                    None => errors.push(format!("{path}.{key} missing")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e), Some(a)) = (e.first(), a.first()) {
                shape_errors(e, a, &format!("{path}[0]"), ignore, errors);
            }
        }
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => {}
        (e, a) => errors.push(format!(
            "{path}: expected {}, got {}",
            type_name(e),
            type_name(a)
        )),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn assert_shape(expected: &Value, actual: &Value, ignore: &[&str]) {
    let mut errors = Vec::new();
    shape_errors(expected, actual, "$", ignore, &mut errors);
    assert!(
        errors.is_empty(),
        "shape differs from the recording: {errors:#?}"
    );
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

const BACKSTAGE: &str = "sim-backstage-token";
const ARGOCD: &str = "sim-argocd-token";

#[tokio::test]
async fn backstage_pages_through_every_entity_once() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let base = format!("http://{addr}/backstage/api/catalog/entities/by-query");
    let mut seen = Vec::new();
    let mut url = format!("{base}?limit=7");
    let mut pages = 0;
    loop {
        let page: Value = client()
            .get(&url)
            .bearer_auth(BACKSTAGE)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        pages += 1;
        assert_eq!(
            page["totalItems"].as_u64(),
            Some(state.catalog.len() as u64)
        );
        for item in page["items"].as_array().ok_or("no items")? {
            seen.push(
                item["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        match page["pageInfo"]["nextCursor"].as_str() {
            Some(cursor) => url = format!("{base}?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, state.catalog.len().div_ceil(7));
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(
        (seen.len(), unique.len()),
        (state.catalog.len(), state.catalog.len())
    );
    Ok(())
}

#[tokio::test]
async fn backstage_filters_projects_and_refuses_bad_requests() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let base = format!("http://{addr}/backstage/api/catalog/entities/by-query");
    let components: Value = client()
        .get(format!(
            "{base}?filter=kind=component&limit=1000&fields=kind,metadata.name,metadata.annotations"
        ))
        .bearer_auth(BACKSTAGE)
        .send()
        .await?
        .json()
        .await?;
    let items = components["items"].as_array().ok_or("no items")?;
    assert_eq!(items.len(), state.world().org.components.len());
    assert!(
        items
            .iter()
            .all(|i| i["kind"] == "Component" && i.get("spec").is_none())
    );
    assert!(items[0]["metadata"]["annotations"]["github.com/project-slug"].is_string());
    // Two filters are OR-ed; conditions inside one filter are AND-ed.
    let either: Value = client()
        .get(format!(
            "{base}?filter=kind=group,spec.type=team&filter=kind=domain&limit=1000"
        ))
        .bearer_auth(BACKSTAGE)
        .send()
        .await?
        .json()
        .await?;
    let expected = state.world().org.teams.len() + state.world().org.domains.len();
    assert_eq!(either["items"].as_array().map(Vec::len), Some(expected));

    let first: Value = client()
        .get(format!("{base}?limit=2"))
        .bearer_auth(BACKSTAGE)
        .send()
        .await?
        .json()
        .await?;
    let cursor = first["pageInfo"]["nextCursor"]
        .as_str()
        .ok_or("no cursor")?;
    let both = client()
        .get(format!("{base}?cursor={cursor}&filter=kind=component"))
        .bearer_auth(BACKSTAGE)
        .send()
        .await?;
    assert_eq!(both.status(), 400);
    let body: Value = both.json().await?;
    assert_eq!(body["error"]["name"], "InputError");

    let anonymous = client().get(&base).send().await?;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await?;
    assert_eq!(body["error"]["name"], "AuthenticationError");
    let wrong = client().get(&base).bearer_auth("nope").send().await?;
    assert_eq!(wrong.status(), 401);

    let refs: Value = client()
        .post(format!(
            "http://{addr}/backstage/api/catalog/entities/by-refs"
        ))
        .bearer_auth(BACKSTAGE)
        .json(
            &serde_json::json!({"entityRefs": ["user:contractors/jdoe", "component:default/nope"]}),
        )
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        refs["items"][0]["spec"]["memberOf"][0]
            .as_str()
            .map(|s| s.starts_with("group:default/")),
        Some(true)
    );
    assert!(refs["items"][1].is_null());
    Ok(())
}

#[tokio::test]
async fn backstage_entities_have_the_recorded_shape() -> TestResult {
    let Some(dir) = fixtures_dir() else {
        return Ok(());
    };
    let (addr, _) = start(SimOptions::default()).await?;
    let page: Value = client()
        .get(format!(
            "http://{addr}/backstage/api/catalog/entities/by-query?filter=kind=component,metadata.annotations.argocd/app-name"
        ))
        .bearer_auth(BACKSTAGE)
        .send()
        .await?
        .json()
        .await?;
    // The recording is of a component deployed by Argo CD.
    let component = &page["items"][0];
    let recorded = fixture(&dir, "backstage/roadie_argo_mocks__getEntityStub.json")?;
    assert_shape(&recorded, component, &[]);
    Ok(())
}

#[tokio::test]
async fn argocd_applications_have_the_recorded_shape() -> TestResult {
    let Some(dir) = fixtures_dir() else {
        return Ok(());
    };
    let (addr, _) = start(SimOptions::default()).await?;
    let list: Value = client()
        .get(format!("http://{addr}/argocd/api/v1/applications"))
        .bearer_auth(ARGOCD)
        .send()
        .await?
        .json()
        .await?;
    let recorded_list = fixture(
        &dir,
        "argocd/roadie_mocks__getResponseStubAppListWithMultipleApps.json",
    )?;
    // `instance` is added by the portal plugin; managedFields and selfLink
    // are Kubernetes bookkeeping Argo CD passes through and clients ignore.
    let ignore = ["instance", "managedFields", "selfLink"];
    assert_shape(&recorded_list, &list, &ignore);
    let name = list["items"][0]["metadata"]["name"]
        .as_str()
        .ok_or("no app")?;
    let app: Value = client()
        .get(format!("http://{addr}/argocd/api/v1/applications/{name}"))
        .bearer_auth(ARGOCD)
        .send()
        .await?
        .json()
        .await?;
    assert_shape(
        &fixture(&dir, "argocd/roadie_e2e__applications-test-app.json")?,
        &app,
        &ignore,
    );
    let empty: Value = client()
        .get(format!(
            "http://{addr}/argocd/api/v1/applications?selector=team=nobody"
        ))
        .bearer_auth(ARGOCD)
        .send()
        .await?
        .json()
        .await?;
    assert_shape(
        &fixture(&dir, "argocd/roadie_mocks__getEmptyResponseStub.json")?,
        &empty,
        &ignore,
    );
    assert!(
        empty["items"].is_null(),
        "Argo CD sends items: null for an empty list"
    );
    Ok(())
}

#[tokio::test]
async fn argocd_history_is_capped_and_follows_the_clock() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    // The production app with the most syncs.
    let world = state.world();
    let (app, syncs) = world
        .histories
        .iter()
        .flat_map(|h| h.deployments.iter())
        .filter(|d| {
            d.source == crate::world::DeploySource::ArgoCd && d.production && d.job_succeeded
        })
        .fold(
            std::collections::BTreeMap::<String, Vec<&crate::world::Deployment>>::new(),
            |mut acc, d| {
                acc.entry(d.app.clone()).or_default().push(d);
                acc
            },
        )
        .into_iter()
        .max_by_key(|(_, v)| v.len())
        .ok_or("no argo app")?;
    assert!(syncs.len() > argocd::HISTORY_LIMIT, "need a busy app");
    let get = || async {
        let app: Value = client()
            .get(format!("http://{addr}/argocd/api/v1/applications/{app}"))
            .bearer_auth(ARGOCD)
            .send()
            .await?
            .json()
            .await?;
        Ok::<Value, reqwest::Error>(app)
    };
    let now = get().await?;
    let history = now["status"]["history"].as_array().ok_or("no history")?;
    assert_eq!(history.len(), argocd::HISTORY_LIMIT);
    let newest = syncs.last().ok_or("no sync")?;
    assert_eq!(
        history.last().map(|h| h["id"].clone()),
        Some(serde_json::json!(newest.upstream_id))
    );
    // Back in time, right after the third sync: only three entries, ids 0..2.
    state.set_now(syncs[2].finished_at);
    let earlier = get().await?;
    let ids: Vec<u64> = earlier["status"]["history"]
        .as_array()
        .ok_or("no history")?
        .iter()
        .filter_map(|h| h["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
    let missing = client()
        .get(format!("http://{addr}/argocd/api/v1/applications/nope"))
        .bearer_auth(ARGOCD)
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await?["code"], 5);
    let anonymous = client()
        .get(format!("http://{addr}/argocd/api/v1/applications"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.json::<Value>().await?["code"], 16);
    Ok(())
}

#[tokio::test]
async fn injected_faults_reach_a_plain_http_client() -> TestResult {
    let faults: FaultPlan =
        "seed=3; argocd:error_rate=0.25,reset_rate=0.1,truncate_rate=0.1; backstage:burst_every=4,burst_length=1,malformed_rate=0.5"
            .parse()?;
    let (addr, _) = start(SimOptions {
        faults,
        ..SimOptions::default()
    })
    .await?;
    let (mut ok, mut server_errors, mut transport_errors) = (0, 0, 0);
    for _ in 0..80 {
        let sent = client()
            .get(format!("http://{addr}/argocd/api/v1/applications"))
            .bearer_auth(ARGOCD)
            .send()
            .await;
        match sent {
            Err(_) => transport_errors += 1,
            Ok(response) if response.status().is_server_error() => {
                let body: Value = response.json().await?;
                assert!(body["code"].is_number(), "Argo CD error body: {body}");
                server_errors += 1;
            }
            Ok(response) => match response.bytes().await {
                Ok(body) if serde_json::from_slice::<Value>(&body).is_ok() => ok += 1,
                _ => transport_errors += 1,
            },
        }
    }
    assert!(
        ok > 30 && server_errors > 8 && transport_errors > 6,
        "ok {ok}, 5xx {server_errors}, transport {transport_errors}"
    );

    let (mut limited, mut malformed) = (0, 0);
    for _ in 0..40 {
        let response = client()
            .get(format!(
                "http://{addr}/backstage/api/catalog/entities/by-query?filter=kind=component"
            ))
            .bearer_auth(BACKSTAGE)
            .send()
            .await?;
        if response.status() == 429 {
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                Some("1")
            );
            limited += 1;
            continue;
        }
        let page: Value = response.json().await?;
        let items = page["items"].as_array().ok_or("no items")?;
        let bad = items.iter().any(|i| {
            !i["kind"].is_string()
                || !i["metadata"].is_object()
                || !i["spec"].is_object()
                || !i["apiVersion"].is_string()
                || !i["relations"].is_array()
        });
        malformed += usize::from(bad);
    }
    assert_eq!(limited, 10, "one request in four is rate limited");
    assert!(malformed > 5, "{malformed}");
    Ok(())
}

const GITHUB: &str = "sim-github-token";

/// A busy repository of the test world and its component index.
fn busy_repo(state: &SimState) -> Result<(String, usize), &'static str> {
    let world = state.world();
    world
        .histories
        .iter()
        .max_by_key(|h| h.pull_requests.len())
        .map(|h| (world.org.components[h.component].repo.clone(), h.component))
        .ok_or("no repo")
}

/// Follows `rel="next"` exactly as given until it stops; returns all items.
async fn follow(url: String) -> Result<(Vec<Value>, usize), Box<dyn std::error::Error>> {
    let mut items = Vec::new();
    let mut next = Some(url);
    let mut pages = 0;
    while let Some(url) = next.take() {
        let response = client()
            .get(&url)
            .bearer_auth(GITHUB)
            .send()
            .await?
            .error_for_status()?;
        next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|links| links.split(", ").find(|l| l.ends_with("rel=\"next\"")))
            .and_then(|l| l.split(['<', '>']).nth(1))
            .map(str::to_owned);
        items.extend(response.json::<Vec<Value>>().await?);
        pages += 1;
    }
    Ok((items, pages))
}

#[tokio::test]
async fn github_pages_in_both_styles_and_lists_newest_first() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let (repo, component) = busy_repo(&state)?;
    let history = &state.world().histories[component];
    let base = format!("http://{addr}/github");
    // Commits: cursor style (`last_sha`), next pages under /repositories/{id}.
    let (commits, pages) = follow(format!("{base}/repos/{repo}/commits?per_page=50")).await?;
    assert_eq!(commits.len(), history.commits.len());
    assert!(pages > 1);
    let shas: Vec<&str> = commits.iter().filter_map(|c| c["sha"].as_str()).collect();
    let expected: Vec<&str> = history
        .commits
        .iter()
        .rev()
        .map(|c| c.sha.as_str())
        .collect();
    assert_eq!(shas, expected, "newest first, each once");
    // Pulls: page-number style.
    let (pulls, pages) = follow(format!("{base}/repos/{repo}/pulls?state=all&per_page=20")).await?;
    assert_eq!(pulls.len(), history.pull_requests.len());
    assert_eq!(pages, history.pull_requests.len().div_ceil(20));
    assert!(
        pulls
            .iter()
            .all(|p| p.get("commits").is_none() && p.get("additions").is_none()),
        "list has no sizes"
    );
    // The default state is open: nothing is open at the world's end.
    let (open, _) = follow(format!("{base}/repos/{repo}/pulls")).await?;
    assert!(open.is_empty());
    // since/until filter on the commit date.
    let middle = &history.commits[history.commits.len() / 2];
    let until = crate::world::rfc3339(middle.committed_at);
    let (older, _) = follow(format!(
        "{base}/repos/{repo}/commits?per_page=100&until={until}"
    ))
    .await?;
    assert_eq!(
        older.len(),
        history
            .commits
            .iter()
            .filter(|c| c.committed_at <= middle.committed_at)
            .count()
    );
    Ok(())
}

#[tokio::test]
async fn github_payloads_have_the_recorded_shapes() -> TestResult {
    let Some(dir) = fixtures_dir() else {
        return Ok(());
    };
    let (addr, state) = start(SimOptions::default()).await?;
    let world = state.world();
    let (repo, component) = busy_repo(&state)?;
    let history = &world.histories[component];
    let base = format!("http://{addr}/github");
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            client()
                .get(url)
                .bearer_auth(GITHUB)
                .send()
                .await?
                .error_for_status()?
                .json::<Value>()
                .await
        }
    };
    let pr = history.pull_requests.last().ok_or("no pr")?;
    let checks: Vec<(&str, Value)> = vec![
        (
            "github/octocrab__pull_requests_list.json",
            get(format!("/repos/{repo}/pulls?state=all&per_page=2")).await?,
        ),
        (
            "github/octocrab__repos_list_commits.json",
            get(format!("/repos/{repo}/commits?per_page=2")).await?,
        ),
        (
            "github/octocrab__pull_request_commits.json",
            get(format!("/repos/{repo}/pulls/{}/commits", pr.number)).await?,
        ),
        (
            "github/octocrab__repo_compare_commits.json",
            get(format!(
                "/repos/{repo}/compare/{}...{}",
                history.commits[1].sha,
                history
                    .commits
                    .last()
                    .map(|c| c.sha.as_str())
                    .unwrap_or_default()
            ))
            .await?,
        ),
    ];
    for (name, actual) in &checks {
        // The commit-list recording gives its users a `patch_url`, which
        // GitHub's user schema does not have; everything else must match.
        assert_shape(&fixture(&dir, name)?, actual, &["patch_url"]);
    }
    // The single pull request adds sizes and merge details to the list item.
    let single = get(format!("/repos/{repo}/pulls/{}", pr.number)).await?;
    let recorded_list = fixture(&dir, "github/octocrab__pull_requests_list.json")?;
    assert_shape(&recorded_list[0], &single, &[]);
    for key in [
        "commits",
        "additions",
        "deletions",
        "changed_files",
        "merged",
        "merged_by",
    ] {
        assert!(single.get(key).is_some(), "single pull lacks {key}");
    }
    // Deployments and statuses live on a repository deployed through GitHub.
    let deployed = world
        .histories
        .iter()
        .find(|h| {
            h.deployments
                .iter()
                .any(|d| d.source == crate::world::DeploySource::GithubDeployments)
        })
        .ok_or("no GitHub-deployed service")?;
    let deployed_repo = &world.org.components[deployed.component].repo;
    let deployments = get(format!("/repos/{deployed_repo}/deployments?per_page=5")).await?;
    assert_shape(
        &fixture(&dir, "github/octocrab__repo_deployments.json")?,
        &deployments,
        &[],
    );
    let id = deployments[0]["id"].as_u64().ok_or("no id")?;
    let statuses = get(format!("/repos/{deployed_repo}/deployments/{id}/statuses")).await?;
    assert_shape(
        &fixture(&dir, "github/octocrab__repo_deployment_statuses.json")?,
        &statuses,
        &[],
    );
    assert_eq!(
        statuses[1]["state"], "in_progress",
        "statuses come newest first"
    );
    let limits = get("/rate_limit".to_owned()).await?;
    let recorded_limits = fixture(
        &dir,
        "github/pygithub_replay/RateLimiting.testGetRateLimit.json",
    )?;
    assert_shape(
        &recorded_limits["exchanges"][0]["response"]["body"],
        &limits,
        &[],
    );
    let repos = get(format!("/orgs/{}/repos", world.org.company)).await?;
    let recorded_repo = &recorded_list[0]["head"]["repo"];
    assert_shape(recorded_repo, &repos[0], &[]);
    Ok(())
}

#[tokio::test]
async fn github_rate_budget_etags_and_secondary_limits() -> TestResult {
    let options = SimOptions {
        github_rate: github::RateBudget {
            limit: 5,
            window_seconds: 3600,
        },
        ..SimOptions::default()
    };
    let (addr, state) = start(options).await?;
    let (repo, _) = busy_repo(&state)?;
    let url = format!("http://{addr}/github/repos/{repo}/pulls?state=all");
    let first = client().get(&url).bearer_auth(GITHUB).send().await?;
    assert_eq!(first.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header(&first, "x-ratelimit-remaining").as_deref(),
        Some("4")
    );
    let reset: u64 = header(&first, "x-ratelimit-reset")
        .ok_or("no reset")?
        .parse()?;
    assert!(reset > 1_700_000_000, "reset is epoch seconds: {reset}");
    let etag = header(&first, "etag").ok_or("no etag")?;
    // A conditional request that finds nothing new is free.
    let cached = client()
        .get(&url)
        .bearer_auth(GITHUB)
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(cached.status(), 304);
    assert_eq!(
        header(&cached, "x-ratelimit-remaining").as_deref(),
        Some("4")
    );
    for expected in ["3", "2", "1", "0"] {
        let r = client().get(&url).bearer_auth(GITHUB).send().await?;
        assert_eq!(
            header(&r, "x-ratelimit-remaining").as_deref(),
            Some(expected)
        );
    }
    let exhausted = client().get(&url).bearer_auth(GITHUB).send().await?;
    assert_eq!(exhausted.status(), 403);
    assert_eq!(
        header(&exhausted, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    let body: Value = exhausted.json().await?;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limit exceeded"))
    );
    let limits: Value = client()
        .get(format!("http://{addr}/github/rate_limit"))
        .bearer_auth(GITHUB)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(limits["resources"]["core"]["remaining"], 0);
    let anonymous = client().get(&url).send().await?;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.json::<Value>().await?["message"],
        "Requires authentication"
    );

    let faults: FaultPlan = "github:burst_every=3,burst_length=1".parse()?;
    let (addr, _) = start(SimOptions {
        faults,
        ..SimOptions::default()
    })
    .await?;
    let statuses: Vec<u16> = futures::future::join_all((0..3).map(|_| async {
        client()
            .get(format!("http://{addr}/github/rate_limit"))
            .bearer_auth(GITHUB)
            .send()
            .await
            .map(|r| {
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").is_some(),
                )
            })
    }))
    .await
    .into_iter()
    .filter_map(Result::ok)
    .map(|(status, retry_after)| {
        if status == 403 {
            assert!(retry_after);
            status
        } else {
            status
        }
    })
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        1,
        "{statuses:?}"
    );
    Ok(())
}

fn datadog(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("DD-API-KEY", "sim-dd-api-key")
        .header("DD-APPLICATION-KEY", "sim-dd-application-key")
}

#[tokio::test]
async fn datadog_incidents_page_by_offset_and_carry_the_service() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let world = state.world();
    let total: usize = world.histories.iter().map(|h| h.incidents.len()).sum();
    assert!(total > 5);
    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let response = datadog(client().get(format!(
            "http://{addr}/datadog/api/v2/incidents?page[size]=4&page[offset]={offset}"
        )))
        .send()
        .await?;
        let reset: u64 = response
            .headers()
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .ok_or("no reset")?
            .parse()?;
        assert!(reset <= 60, "relative seconds until reset: {reset}");
        let page: Value = response.json().await?;
        seen.extend(page["data"].as_array().ok_or("no data")?.iter().cloned());
        match page["meta"]["pagination"]["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), total);
    let services: std::collections::BTreeSet<&str> = world
        .org
        .components
        .iter()
        .map(|c| c.datadog_service.as_str())
        .collect();
    for incident in &seen {
        let service = incident["attributes"]["fields"]["services"]["value"][0]
            .as_str()
            .ok_or("no service")?;
        assert!(services.contains(service), "{service}");
    }
    let explicit = seen
        .iter()
        .filter(|i| i["attributes"]["fields"]["deployment"]["value"].is_string())
        .count();
    assert!(explicit > 0 && explicit < seen.len());
    let forbidden = client()
        .get(format!("http://{addr}/datadog/api/v2/incidents"))
        .send()
        .await?;
    assert_eq!(forbidden.status(), 403);
    assert!(forbidden.json::<Value>().await?["errors"].is_array());
    Ok(())
}

#[tokio::test]
async fn datadog_incidents_have_the_recorded_shape() -> TestResult {
    let Some(dir) = fixtures_dir() else {
        return Ok(());
    };
    let (addr, _) = start(SimOptions::default()).await?;
    let first: Value = datadog(client().get(format!(
        "http://{addr}/datadog/api/v2/incidents?page[size]=2"
    )))
    .send()
    .await?
    .json()
    .await?;
    let recorded = fixture(
        &dir,
        "datadog/v2__incidents__Get-a-list-of-incidents-returns-OK-response-with-pagination.0.json",
    )?;
    assert_shape(&recorded["response"]["body"], &first, &[]);
    // The last page has no next_offset, like the recording's.
    let last_recorded = fixture(
        &dir,
        "datadog/v2__incidents__Get-a-list-of-incidents-returns-OK-response-with-pagination.1.json",
    )?;
    assert!(
        last_recorded["response"]["body"]["meta"]["pagination"]
            .get("next_offset")
            .is_none()
    );
    let last: Value = datadog(client().get(format!(
        "http://{addr}/datadog/api/v2/incidents?page[size]=100"
    )))
    .send()
    .await?
    .json()
    .await?;
    assert!(last["meta"]["pagination"].get("next_offset").is_none());
    Ok(())
}

#[tokio::test]
async fn opencost_allocations_per_day_match_the_world_and_the_recording() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let world = state.world();
    let end = world.config.end();
    let start_day = end - chrono::Duration::days(3);
    let window = format!(
        "{},{}",
        crate::world::rfc3339(start_day),
        crate::world::rfc3339(end)
    );
    let url = format!(
        "http://{addr}/opencost/allocation/compute?window={window}&aggregate=namespace&step=1d"
    );
    let body: Value = client()
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(body["code"], 200);
    let sets = body["data"].as_array().ok_or("no data")?;
    assert_eq!(sets.len(), 3, "one set per day");
    let day = &sets[0];
    assert!(day.get("__idle__").is_some());
    assert!(
        day.get("legacy-batch").is_some(),
        "the unowned namespace is reported"
    );
    let profile = world.loads.first().ok_or("no load")?;
    let component = &world.org.components[profile.component];
    let expected = profile
        .day(&world.config, start_day.date_naive())
        .total_cost_usd();
    let got = day[component.k8s_namespace.as_str()]["totalCost"]
        .as_f64()
        .ok_or("no cost")?;
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    let idle = day["__idle__"]["totalCost"].as_f64().ok_or("no idle")?;
    let allocated: f64 = day
        .as_object()
        .ok_or("not a map")?
        .iter()
        .filter(|(k, _)| *k != "__idle__")
        .filter_map(|(_, v)| v["totalCost"].as_f64())
        .sum();
    assert!(
        (idle / (idle + allocated) - 0.25).abs() < 0.01,
        "idle share"
    );

    if let Some(dir) = fixtures_dir() {
        let recorded = fixture(
            &dir,
            "opencost/opencost__docs_swagger__allocation_compute_window2d_aggregate_namespace.json",
        )?;
        let recorded_allocation = recorded["data"][0]
            .as_object()
            .and_then(|m| m.values().next())
            .ok_or("empty fixture")?;
        let ours = &day[component.k8s_namespace.as_str()];
        // `node`, `pod` and `providerID` only exist below namespace level.
        assert_shape(
            recorded_allocation,
            ours,
            &["node", "pod", "providerID", "controller", "controllerKind"],
        );
        assert_eq!(recorded["code"], body["code"]);
    }
    // Aggregating by controller and by label; accumulate gives one set.
    let by_controller: Value = client()
        .get(format!("http://{addr}/opencost/allocation/compute?window={window}&aggregate=namespace,controller&accumulate=true"))
        .send()
        .await?
        .json()
        .await?;
    let keys: Vec<String> = by_controller["data"][0]
        .as_object()
        .ok_or("no set")?
        .keys()
        .cloned()
        .collect();
    assert!(
        keys.contains(&format!(
            "{}/deployment:{}",
            component.k8s_namespace, component.name
        )),
        "{keys:?}"
    );
    let by_label: Value = client()
        .get(format!("http://{addr}/opencost/allocation/compute?window={window}&aggregate=label:app&accumulate=true"))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        by_label["data"][0].get("__unallocated__").is_some(),
        "workloads without the label"
    );
    // Errors arrive inside a 200.
    let bad = client()
        .get(format!(
            "http://{addr}/opencost/allocation/compute?window=someday"
        ))
        .send()
        .await?;
    assert_eq!(bad.status(), 200);
    let bad: Value = bad.json().await?;
    assert_eq!(bad["code"], 400);
    Ok(())
}

const SENTRY: &str = "sim-sentry-token";

#[tokio::test]
async fn sentry_issues_releases_deploys_and_stats() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let world = state.world();
    let project = world
        .errors
        .iter()
        .find(|p| p.issues.iter().any(|i| i.caused_by_deployment.is_some()))
        .ok_or("no project with a deployment-caused issue")?;
    let base = format!("http://{addr}/sentry/api/0");
    // Issues: follow `next` only while results="true".
    let mut url = format!(
        "{base}/projects/acme/{}/issues/?statsPeriod=14d&per_page=2",
        project.slug
    );
    let mut issues = Vec::new();
    let last_link = loop {
        let response = client()
            .get(&url)
            .bearer_auth(SENTRY)
            .send()
            .await?
            .error_for_status()?;
        let link = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            link.contains("rel=\"previous\"") && link.contains("rel=\"next\""),
            "both rels always: {link}"
        );
        issues.extend(response.json::<Vec<Value>>().await?);
        let next = link
            .split(", ")
            .find(|l| l.contains("rel=\"next\""))
            .unwrap_or_default()
            .to_owned();
        if !next.contains("results=\"true\"") {
            break link;
        }
        url = next.split(['<', '>']).nth(1).ok_or("no url")?.to_owned();
    };
    assert!(last_link.contains("results=\"false\""));
    assert_eq!(issues.len(), project.issues.len());
    assert!(
        issues
            .iter()
            .all(|i| i["count"].is_string()
                && i["stats"]["14d"].as_array().map(Vec::len) == Some(14))
    );
    // The release that caused an incident has a production deploy.
    let releases: Vec<Value> = client()
        .get(format!(
            "{base}/organizations/acme/releases/?project={}",
            project.project_id
        ))
        .bearer_auth(SENTRY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(releases.len(), project.releases.len());
    let version = releases[0]["version"].as_str().ok_or("no version")?;
    let deploys: Vec<Value> = client()
        .get(format!(
            "{base}/organizations/acme/releases/{version}/deploys/"
        ))
        .bearer_auth(SENTRY)
        .send()
        .await?
        .json()
        .await?;
    assert!(!deploys.is_empty());
    assert!(
        deploys.iter().any(|d| d["dateStarted"].is_null()),
        "some deploys have no start, as in Sentry"
    );
    // Daily error counts rise after the bad deployment.
    let caused = project
        .issues
        .iter()
        .find(|i| i.caused_by_deployment.is_some())
        .ok_or("no caused issue")?;
    let day = caused.daily.first().ok_or("no events")?.0;
    let since = crate::world::cost::day_start(day).timestamp() - 7 * 86_400;
    let until = crate::world::cost::day_start(day).timestamp() + 86_400;
    let points: Vec<(i64, u64)> = client()
        .get(format!("{base}/projects/acme/{}/stats/?stat=received&resolution=1d&since={since}&until={until}", project.slug))
        .bearer_auth(SENTRY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(points.len(), 8);
    let before = points[..7].iter().map(|p| p.1).max().unwrap_or(0);
    assert!(points[7].1 > before, "{points:?}");
    let anonymous = client()
        .get(format!("{base}/organizations/acme/projects/"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.json::<Value>().await?["detail"].is_string());

    if let Some(dir) = fixtures_dir() {
        let issue_fixture = fixture(
            &dir,
            "sentry/openapi_examples/GET_projects_organization_id_or_slug_project_id_or_slug_issues_.200.example.json",
        )?;
        let ours: Vec<Value> = client()
            .get(format!(
                "{base}/projects/acme/{}/issues/?statsPeriod=24h",
                project.slug
            ))
            .bearer_auth(SENTRY)
            .send()
            .await?
            .json()
            .await?;
        assert_shape(&issue_fixture, &Value::Array(ours), &[]);
        let release_fixture = fixture(
            &dir,
            "sentry/openapi_examples/GET_organizations_organization_id_or_slug_releases_.200.ReturnAListOfReleasesForAnOrganization.json",
        )?;
        // `major`/`minor`/… only exist for semver versions; ours are SHAs.
        assert_shape(
            &release_fixture,
            &Value::Array(releases),
            &["major", "minor", "patch", "pre", "buildCode", "components"],
        );
        assert_shape(
            &fixture(&dir, "sentry/sentry-cli__deploys_get-deploys.json")?,
            &Value::Array(deploys),
            &[],
        );
        let stats_fixture = fixture(
            &dir,
            "sentry/openapi_examples/GET_projects_organization_id_or_slug_project_id_or_slug_stats_.200.ProjectEventCounts.json",
        )?;
        let ours = serde_json::to_value(&points)?;
        assert_shape(&stats_fixture, &ours, &[]);
    }
    Ok(())
}

#[tokio::test]
async fn datadog_metrics_query_follows_the_load_world() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let world = state.world();
    let profile = world
        .loads
        .iter()
        .find(|l| !l.idle)
        .ok_or("no busy service")?;
    let service = &world.org.components[profile.component].datadog_service;
    let to = world.config.end().timestamp();
    let from = to - 14 * 86_400;
    let url = format!(
        "http://{addr}/datadog/api/v1/query?from={from}&to={to}&query=sum:trace.http.request.hits{{service:{service}}}.as_count()"
    );
    let body: Value = datadog(client().get(&url))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let points = body["series"][0]["pointlist"]
        .as_array()
        .ok_or("no points")?;
    assert_eq!(points.len(), 14, "daily points over two weeks");
    let first_day = DateTime::from_timestamp(from, 0)
        .ok_or("time")?
        .date_naive();
    let expected = profile.day(&world.config, first_day).requests;
    let got = points[0][1].as_f64().ok_or("no value")?;
    assert!(
        (got - expected).abs() < 1e-6 * expected.max(1.0),
        "{got} vs {expected}"
    );
    let unknown: Value = datadog(client().get(format!(
        "http://{addr}/datadog/api/v1/query?from={from}&to={to}&query=avg:no.such.metric{{service:{service}}}"
    )))
    .send()
    .await?
    .json()
    .await?;
    assert_eq!(unknown["series"].as_array().map(Vec::len), Some(0));
    let bad = datadog(client().get(format!("http://{addr}/datadog/api/v1/query?from={from}")))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    if let Some(dir) = fixtures_dir() {
        let recorded = fixture(
            &dir,
            "datadog/v1__metrics__Query-timeseries-points-returns-OK-response.0.json",
        )?;
        assert_shape(&recorded["response"]["body"], &body, &[]);
        assert_shape(
            &fixture(
                &dir,
                "datadog/openapi_v1_examples/GET_api_v1_query.200.default.json",
            )?,
            &body,
            &[],
        );
    }
    Ok(())
}

#[tokio::test]
async fn datadog_monitors_alert_while_an_incident_is_open() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let world = state.world();
    let (component, incident) = world
        .histories
        .iter()
        .filter(|h| world.loads.iter().any(|l| l.component == h.component))
        .find_map(|h| h.incidents.first().map(|i| (h.component, i.clone())))
        .ok_or("no incident")?;
    let during = incident.created_at + (incident.resolved_at - incident.created_at) / 2;
    state.set_now(during);
    let all: Vec<Value> = datadog(client().get(format!("http://{addr}/datadog/api/v1/monitor")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(all.len(), world.loads.len());
    let service = &world.org.components[component].datadog_service;
    let monitor = all
        .iter()
        .find(|m| m["tags"][0] == format!("service:{service}"))
        .ok_or("no monitor for the service")?;
    assert_eq!(monitor["overall_state"], "Alert");
    let paged: Vec<Value> = datadog(client().get(format!(
        "http://{addr}/datadog/api/v1/monitor?page=1&page_size=2"
    )))
    .send()
    .await?
    .json()
    .await?;
    assert_eq!(paged.len(), 2.min(all.len().saturating_sub(2)));
    if let Some(dir) = fixtures_dir() {
        let recorded = fixture(
            &dir,
            "datadog/v1__monitors__Get-all-monitors-returns-OK-response-with-pagination.0.json",
        )?;
        assert_shape(&recorded["response"]["body"], &Value::Array(all), &[]);
    }
    Ok(())
}

#[tokio::test]
async fn github_workflow_runs_page_and_mirror_deployments() -> TestResult {
    let (addr, state) = start(SimOptions::default()).await?;
    let world = state.world();
    let deployed = world
        .histories
        .iter()
        .find(|h| {
            h.deployments
                .iter()
                .any(|d| d.source == crate::world::DeploySource::GithubDeployments)
        })
        .ok_or("no GitHub-deployed service")?;
    let repo = &world.org.components[deployed.component].repo;
    let base = format!("http://{addr}/github/repos/{repo}/actions/runs?per_page=50");
    let mut url = Some(base);
    let mut runs = Vec::new();
    let mut total = 0;
    while let Some(next) = url.take() {
        let response = client()
            .get(&next)
            .bearer_auth(GITHUB)
            .send()
            .await?
            .error_for_status()?;
        url = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.split(", ").find(|p| p.ends_with("rel=\"next\"")))
            .and_then(|p| p.split(['<', '>']).nth(1))
            .map(str::to_owned);
        let page: Value = response.json().await?;
        total = page["total_count"].as_u64().ok_or("no total")?;
        runs.extend(
            page["workflow_runs"]
                .as_array()
                .ok_or("no runs")?
                .iter()
                .cloned(),
        );
    }
    assert_eq!(runs.len() as u64, total);
    let deploy_runs = runs
        .iter()
        .filter(|r| r["workflow_url"].as_str().is_some_and(|u| u.ends_with('2')))
        .count();
    let deployments = deployed
        .deployments
        .iter()
        .filter(|d| d.source == crate::world::DeploySource::GithubDeployments)
        .count();
    assert_eq!(deploy_runs, deployments);
    if let Some(dir) = fixtures_dir() {
        let recorded = fixture(
            &dir,
            "github/pygithub_replay/Repository.testGetWorkflowRuns.json",
        )?;
        let body = recorded["exchanges"]
            .as_array()
            .and_then(|e| {
                e.iter()
                    .find(|x| x["response"]["body"].get("workflow_runs").is_some())
            })
            .map(|x| x["response"]["body"].clone())
            .ok_or("no runs in the recording")?;
        let ours = serde_json::json!({"total_count": total, "workflow_runs": runs[..2].to_vec()});
        assert_shape(&body, &ours, &[]);
    }
    Ok(())
}
