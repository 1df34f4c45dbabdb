//! Decoders on recorded real payloads (`../shared/fixtures`): every
//! relevant answer decodes, into the rows it should, with nothing rejected.

use chrono::Utc;
use serde_json::{Value, json};

use crate::source::{Decoded, Payload, SourceConfig};
use crate::test_support::fixtures_dir;

fn read(dir: &std::path::Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn payload(stream: &str, unit: &str, path: &str, body: &Value) -> Payload {
    Payload {
        stream: stream.to_owned(),
        unit: unit.to_owned(),
        request: format!("GET https://api.github.com{path}"),
        status: 200,
        fetched_at: Utc::now(),
        body: body.to_string(),
    }
}

/// The recorded answers of a PyGithub replay file: (path, body).
fn replay(dir: &std::path::Path, name: &str) -> Vec<(String, Value)> {
    read(dir, &format!("github/pygithub_replay/{name}"))["exchanges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["response"]["status"] == 200)
        .map(|e| {
            (
                e["request"]["path"].as_str().unwrap_or_default().to_owned(),
                e["response"]["body"].clone(),
            )
        })
        .collect()
}

fn github() -> SourceConfig {
    serde_json::from_value(json!({"type": "github", "orgs": ["acme"], "token": "x"})).unwrap()
}

fn rows_in(decoded: &Decoded, table: &str) -> Vec<serde_json::Map<String, Value>> {
    decoded
        .rows
        .iter()
        .filter(|r| r.table.name == table)
        .map(|r| r.values.clone())
        .collect()
}

/// Every row a test decoded — table, all values, identity hints — and
/// every reject, compared with `src/sources/snapshots/<test>.txt`: a
/// decoder change shows as a reviewed diff. The files keep each row's
/// columns and a digest of its values (the recorded payloads are not
/// copied into the project); a mismatch prints the decoded row in full.
/// `FATHOM_UPDATE_GOLDEN=1` rewrites them.
struct Snapshot {
    name: &'static str,
    /// (line kept in the file, the row in full).
    lines: Vec<(String, String)>,
}

impl Snapshot {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            lines: Vec::new(),
        }
    }

    fn add(&mut self, decoded: &Decoded) {
        use sha2::Digest as _;
        for row in &decoded.rows {
            let full = format!(
                "{}\t{}\t{:?}",
                row.table.name,
                Value::Object(row.values.clone()),
                row.identity
            );
            let digest = hex::encode(&sha2::Sha256::digest(full.as_bytes())[..12]);
            let columns: Vec<&str> = row.values.keys().map(String::as_str).collect();
            self.lines.push((
                format!("{}\t{digest}\t{}", row.table.name, columns.join(",")),
                full,
            ));
        }
        for reject in &decoded.rejects {
            let line = format!("reject\t{}\t{}", reject.location, reject.reason);
            self.lines.push((line.clone(), line));
        }
    }

    fn check(&self) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/sources/snapshots")
            .join(format!("{}.txt", self.name));
        let text: String = self.lines.iter().map(|(l, _)| format!("{l}\n")).collect();
        if std::env::var_os("FATHOM_UPDATE_GOLDEN").is_some() {
            let written = path
                .parent()
                .map(std::fs::create_dir_all)
                .and_then(Result::ok)
                .map(|()| std::fs::write(&path, &text));
            assert!(
                matches!(written, Some(Ok(()))),
                "cannot write {}",
                path.display()
            );
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        let first = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(text.lines().count()));
        assert!(
            expected == text,
            "{}: decoded rows differ from {} at line {} ({} lines expected, {} decoded); the row now decodes as\n{}\nreview, then FATHOM_UPDATE_GOLDEN=1",
            self.name,
            path.display(),
            first + 1,
            expected.lines().count(),
            self.lines.len(),
            self.lines
                .get(first)
                .map_or("(none)", |(_, full)| full.as_str())
        );
    }
}

fn assert_clean(decoded: &Decoded) {
    assert!(
        decoded.rejects.is_empty(),
        "rejected: {:#?}",
        decoded.rejects
    );
}

#[test]
fn github_replays_decode() {
    let mut snap = Snapshot::new("github_replays_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source = github();

    let repos: Vec<Payload> = replay(&dir, "Organization.testGetRepos.json")
        .iter()
        .map(|(path, body)| payload("repos", "BeaverSoftware", path, body))
        .collect();
    let decoded = source.decode("repos", &repos);
    snap.add(&decoded);
    assert_clean(&decoded);
    assert_eq!(rows_in(&decoded, "repositories").len(), 2);

    // Three pages, the later ones addressed by `last_sha` cursors.
    let commits: Vec<Payload> = replay(&dir, "Repository.testGetCommits.json")
        .iter()
        .map(|(path, body)| payload("commits", "PyGithub/PyGithub", path, body))
        .collect();
    let decoded = source.decode("commits", &commits);
    snap.add(&decoded);
    assert_clean(&decoded);
    let rows = rows_in(&decoded, "commits");
    assert_eq!(rows.len(), 90);
    assert!(
        rows.iter()
            .all(|r| r["repository_id"] == "github:pygithub/pygithub")
    );
    // The second page of this one moved to /repositories/{id}.
    let commits: Vec<Payload> = replay(&dir, "Repository.testGetCommitsWithSinceUntil.json")
        .iter()
        .map(|(path, body)| payload("commits", "PyGithub/PyGithub", path, body))
        .collect();
    let decoded = source.decode("commits", &commits);
    snap.add(&decoded);
    assert_clean(&decoded);
    assert_eq!(rows_in(&decoded, "commits").len(), 47);

    // A pull request read in full, with its commits.
    let mut pulls: Vec<Payload> = replay(&dir, "PullRequest.setUp.json")
        .iter()
        .filter(|(path, _)| path == "/repos/PyGithub/PyGithub/pulls/31")
        .map(|(path, body)| payload("pulls", "PyGithub/PyGithub", path, body))
        .collect();
    pulls.extend(
        replay(&dir, "PullRequest.testGetCommits.json")
            .iter()
            .map(|(path, body)| payload("pulls", "PyGithub/PyGithub", path, body)),
    );
    pulls.extend(
        replay(&dir, "Repository.testGetPullsWithArguments.json")
            .iter()
            .map(|(path, body)| payload("pulls", "PyGithub/PyGithub", path, body)),
    );
    let decoded = source.decode("pulls", &pulls);
    snap.add(&decoded);
    assert_clean(&decoded);
    let prs = rows_in(&decoded, "pull_requests");
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0]["number"], 31);
    assert!(prs[0]["first_commit_at"].is_string(), "{:?}", prs[0]);
    assert!(prs[0]["commit_count"].is_number());
    assert_eq!(rows_in(&decoded, "pull_request_commits").len(), 3);

    // Deployments: only those whose statuses were read become rows.
    let mut deployments: Vec<Payload> = replay(&dir, "Repository.testGetDeployments.json")
        .iter()
        .map(|(path, body)| payload("deployments", "PyGithub/PyGithub", path, body))
        .collect();
    deployments.extend(
        replay(&dir, "DeploymentStatus.testGetStatuses.json")
            .iter()
            .map(|(path, body)| payload("deployments", "PyGithub/PyGithub", path, body)),
    );
    let decoded = source.decode("deployments", &deployments);
    snap.add(&decoded);
    assert_clean(&decoded);
    let rows = rows_in(&decoded, "deployments");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["deployment_id"],
        "github:pygithub/pygithub:263877258"
    );
    snap.check();
}

#[test]
fn workflow_runs_decode_as_deployments_when_asked() {
    let mut snap = Snapshot::new("workflow_runs_decode_as_deployments_when_asked");
    let Some(dir) = fixtures_dir() else { return };
    let runs: Vec<Payload> = replay(&dir, "Repository.testGetWorkflowRuns.json")
        .iter()
        .filter(|(path, _)| path.ends_with("/actions/runs"))
        .map(|(path, body)| payload("workflow_runs", "PyGithub/PyGithub", path, body))
        .collect();
    let count = runs
        .iter()
        .map(|p| {
            p.json().unwrap()["workflow_runs"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum::<usize>();
    assert!(count > 0);
    let every: SourceConfig = serde_json::from_value(
        json!({"type": "github", "orgs": ["acme"], "token": "x", "deploy_workflows": ".*"}),
    )
    .unwrap();
    let decoded = every.decode("workflow_runs", &runs);
    snap.add(&decoded);
    assert_clean(&decoded);
    let rows = rows_in(&decoded, "deployments");
    assert_eq!(rows.len(), count);
    assert!(
        rows.iter()
            .all(|r| r["environment"] == "production" && r["source"] == "github-actions")
    );
    // Not configured: nothing.
    let decoded = github().decode("workflow_runs", &runs);
    snap.add(&decoded);
    assert_clean(&decoded);
    assert!(decoded.rows.is_empty());
    snap.check();
}

#[test]
fn octocrab_bodies_decode() {
    let mut snap = Snapshot::new("octocrab_bodies_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source = github();
    // Commit authors may be `{}` (no linked account).
    for name in [
        "pull_request_commits.json",
        "pull_request_commits_empty_author_object.json",
    ] {
        let body = read(&dir, &format!("github/octocrab__{name}"));
        let decoded = source.decode(
            "pulls",
            &[payload("pulls", "o/r", "/repos/o/r/pulls/7/commits", &body)],
        );
        snap.add(&decoded);
        assert_clean(&decoded);
        assert_eq!(
            rows_in(&decoded, "pull_request_commits").len(),
            body.as_array().map_or(0, Vec::len)
        );
    }
    let list = read(&dir, "github/octocrab__pull_requests_list.json");
    let decoded = source.decode(
        "pulls",
        &[payload("pulls", "o/r", "/repos/o/r/pulls", &list)],
    );
    snap.add(&decoded);
    assert_clean(&decoded);

    let compare = read(&dir, "github/octocrab__repo_compare_commits.json");
    let mut changes = payload(
        "changes",
        "argocd:app:4",
        "/repos/o/r/compare/a...b",
        &compare,
    );
    changes.unit = "argocd:app:4".to_owned();
    let decoded = source.decode("changes", &[changes]);
    snap.add(&decoded);
    assert_clean(&decoded);
    let rows = rows_in(&decoded, "deployment_changes");
    assert_eq!(
        rows.len(),
        compare["commits"].as_array().map_or(0, Vec::len)
    );
    assert!(
        rows.iter()
            .all(|r| r["deployment_id"] == "argocd:app:4" && r["repository_id"] == "github:o/r")
    );

    // Deployment creator may be null.
    let deployments = read(&dir, "github/octocrab__repo_deployments.json");
    let statuses = read(&dir, "github/octocrab__repo_deployment_statuses.json");
    let id = deployments[0]["id"].as_i64().unwrap();
    let decoded = source.decode(
        "deployments",
        &[
            payload("deployments", "o/r", "/repos/o/r/deployments", &deployments),
            payload(
                "deployments",
                "o/r",
                &format!("/repos/o/r/deployments/{id}/statuses"),
                &statuses,
            ),
        ],
    );
    snap.add(&decoded);
    assert_clean(&decoded);
    assert_eq!(rows_in(&decoded, "deployments").len(), 1);
    snap.check();
}

#[test]
fn argocd_captures_decode() {
    let mut snap = Snapshot::new("argocd_captures_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source: SourceConfig =
        serde_json::from_value(json!({"type": "argocd", "base_url": "http://argo", "token": "x"}))
            .unwrap();
    let captured = read(&dir, "argocd/roadie_e2e__applications-test-app.json");
    let decoded = source.decode(
        "applications",
        &[payload(
            "applications",
            "applications",
            "/api/v1/applications",
            &json!({"items": [captured]}),
        )],
    );
    snap.add(&decoded);
    assert_clean(&decoded);
    let rows = rows_in(&decoded, "deployments");
    let history = captured["status"]["history"].as_array().map_or(0, Vec::len);
    assert!(history > 0);
    assert!(
        rows.len() >= history,
        "{} rows for {history} history entries",
        rows.len()
    );
    // Two instances with equally named applications stay apart.
    let eu: SourceConfig = serde_json::from_value(
        json!({"type": "argocd", "base_url": "http://argo", "token": "x", "instance": "eu"}),
    )
    .unwrap();
    let decoded = eu.decode(
        "applications",
        &[payload(
            "applications",
            "applications",
            "/api/v1/applications",
            &json!({"items": [captured]}),
        )],
    );
    snap.add(&decoded);
    let app = captured["metadata"]["name"].as_str().unwrap();
    assert!(rows_in(&decoded, "deployments").iter().all(|r| {
        r["deployment_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("argocd:eu/{app}:"))
    }));
    for name in [
        "roadie_mocks__getEmptyResponseStub.json",
        "roadie_mocks__getResponseStubAppListForInstanceOne.json",
        "roadie_mocks__getResponseStubAppListWithMultipleApps.json",
    ] {
        let body = read(&dir, &format!("argocd/{name}"));
        let decoded = source.decode(
            "applications",
            &[payload(
                "applications",
                "applications",
                "/api/v1/applications",
                &body,
            )],
        );
        snap.add(&decoded);
        assert_clean(&decoded);
    }
    for name in [
        "roadie_mocks__getResponseStub.json",
        "roadie_mocks__getResponseStubNamespaced.json",
        "roadie_mocks__getResponseStubScanning.json",
        "roadie_mocks__getResponseStubMissingData.json",
    ] {
        let app = read(&dir, &format!("argocd/{name}"));
        let decoded = source.decode(
            "applications",
            &[payload(
                "applications",
                "applications",
                "/api/v1/applications",
                &json!({"items": [app]}),
            )],
        );
        snap.add(&decoded);
        assert_clean(&decoded);
    }
    snap.check();
}

#[test]
fn backstage_entities_decode() {
    let mut snap = Snapshot::new("backstage_entities_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source: SourceConfig = serde_json::from_value(
        json!({"type": "backstage", "base_url": "http://backstage", "token": "x"}),
    )
    .unwrap();
    let items: Vec<Value> = [
        "backstage-docs__descriptor-format__artist-web.api.json",
        "roadie_argo_mocks__getEntityStub.json",
        "roadie_argo_mocks__getEntityStubWithAppNamespace.json",
        "roadie_argo_mocks__getEntityStubWithAppSelector.json",
    ]
    .iter()
    .map(|name| read(&dir, &format!("backstage/{name}")))
    .collect();
    let decoded = source.decode(
        "entities",
        &[payload(
            "entities",
            "catalog",
            "/api/catalog/entities/by-query",
            &json!({"items": items}),
        )],
    );
    snap.add(&decoded);
    assert_clean(&decoded);
    let entities = rows_in(&decoded, "catalog_entities");
    assert_eq!(entities.len(), 4);
    assert!(entities.iter().any(|e| {
        e["annotations"]
            .as_object()
            .is_some_and(|a| a.contains_key("argocd/app-name"))
    }));
    snap.check();
}

#[test]
fn catalog_descriptors_decode() {
    let mut snap = Snapshot::new("catalog_descriptors_decode");
    use base64::Engine as _;
    let Some(dir) = fixtures_dir() else { return };
    let examples = dir.join("backstage/catalog-model-examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.push(dir.join("backstage/roadie__entities_test-entity.yaml"));
    let mut documents = 0;
    let payloads: Vec<Payload> = files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            documents += text.split("\n---").filter(|d| d.contains("kind:")).count();
            let content = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            payload(
                "catalog",
                "acme/some-repo",
                "/repos/acme/some-repo/contents/catalog-info.yaml",
                &json!({"type": "file", "encoding": "base64", "content": content}),
            )
        })
        .collect();
    let mut config = github();
    if let SourceConfig::Github(c) = &mut config {
        c.discovery = true;
    }
    let decoded = config.decode("catalog", &payloads);
    snap.add(&decoded);
    assert_clean(&decoded);
    let entities = rows_in(&decoded, "catalog_entities");
    assert_eq!(entities.len(), documents);
    assert!(entities.iter().all(|e| e["source"] == "github-discovery"));
    // Components are claimed by the repository they were found in unless
    // they name one.
    assert!(
        entities
            .iter()
            .filter(|e| e["kind"] == "component")
            .all(|e| e["annotations"]["github.com/project-slug"].is_string())
    );
    snap.check();
}

#[test]
fn datadog_incident_lists_decode() {
    let mut snap = Snapshot::new("datadog_incident_lists_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source: SourceConfig =
        serde_json::from_value(json!({"type": "datadog", "token": "k", "application_key": "a"}))
            .unwrap();
    let mut total = 0;
    for name in [
        "v2__incidents__Get-a-list-of-incidents-returns-OK-response-with-pagination.0.json",
        "v2__incidents__Get-a-list-of-incidents-returns-OK-response-with-pagination.1.json",
        "v2__incidents__Get-a-list-of-incidents-returns-OK-response.1.json",
    ] {
        let body = read(&dir, &format!("datadog/{name}"))["response"]["body"].clone();
        total += body["data"].as_array().map_or(0, Vec::len);
        let decoded = source.decode(
            "incidents",
            &[payload(
                "incidents",
                "incidents",
                "/api/v2/incidents",
                &body,
            )],
        );
        snap.add(&decoded);
        assert_clean(&decoded);
        let rows = rows_in(&decoded, "incidents");
        assert_eq!(rows.len(), body["data"].as_array().map_or(0, Vec::len));
        assert!(rows.iter().all(|r| {
            r["incident_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("datadog:"))
        }));
    }
    assert!(total > 0);
    snap.check();
}

#[test]
fn opencost_examples_decode() {
    let mut snap = Snapshot::new("opencost_examples_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source: SourceConfig =
        serde_json::from_value(json!({"type": "opencost", "base_url": "http://opencost:9003"}))
            .unwrap();
    // (The other OpenCost examples are custom and cloud cost answers, not
    // allocations.)
    {
        let name = "opencost__docs_swagger__allocation_compute_window2d_aggregate_namespace.json";
        let body = read(&dir, &format!("opencost/{name}"));
        let expected: usize = body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(|step| step.len())
            .sum();
        assert!(expected > 0, "{name}");
        let decoded = source.decode(
            "allocations",
            &[payload("allocations", "day", "/allocation/compute", &body)],
        );
        snap.add(&decoded);
        assert_clean(&decoded);
        let rows = rows_in(&decoded, "cost_allocations_daily");
        assert_eq!(rows.len(), expected, "{name}");
        // Special allocations stay unattributed; named ones carry their
        // namespace for mapping.
        assert!(
            decoded
                .rows
                .iter()
                .filter(|r| r.values["allocation_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("__")))
                .all(|r| r.identity.is_empty())
        );
    }
    snap.check();
}

#[test]
fn datadog_monitor_pages_decode() {
    let mut snap = Snapshot::new("datadog_monitor_pages_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source: SourceConfig =
        serde_json::from_value(json!({"type": "datadog", "token": "k", "application_key": "a"}))
            .unwrap();
    for name in [
        "v1__monitors__Get-all-monitors-returns-OK-response-with-pagination.0.json",
        "v1__monitors__Get-all-monitors-returns-OK-response-with-pagination.1.json",
    ] {
        let body = read(&dir, &format!("datadog/{name}"))["response"]["body"].clone();
        let decoded = source.decode(
            "monitors",
            &[payload("monitors", "monitors", "/api/v1/monitor", &body)],
        );
        snap.add(&decoded);
        assert_clean(&decoded);
        let rows = rows_in(&decoded, "monitor_states");
        assert_eq!(rows.len(), body.as_array().map_or(0, Vec::len));
        assert!(
            rows.iter()
                .all(|r| r["state"].is_string() && r["state_changed_at"].is_string())
        );
    }
    snap.check();
}

#[test]
fn datadog_query_answers_decode_by_service() {
    let mut snap = Snapshot::new("datadog_query_answers_decode_by_service");
    let Some(dir) = fixtures_dir() else { return };
    let source: SourceConfig = serde_json::from_value(json!({
        "type": "datadog", "token": "k", "application_key": "a",
        "metrics": {"requests": "avg:system.cpu.idle{*} by {service}", "errors": "", "latency_p95": "", "cpu": "", "memory": ""}
    }))
    .unwrap();
    let mut body = read(
        &dir,
        "datadog/v1__metrics__Query-timeseries-points-returns-OK-response.0.json",
    )["response"]["body"]
        .clone();
    let request = |query: &str| {
        let mut url =
            url::Url::parse("https://api.datadoghq.com/api/v1/query?from=1&to=2").unwrap();
        url.query_pairs_mut().append_pair("query", query);
        Payload {
            request: format!("GET {url}"),
            ..payload("metrics", "metrics", "/", &Value::Null)
        }
    };
    // As recorded, the series is for every host, not a service: rejected
    // with the reason, never stored under a made-up service.
    let asked = "avg:system.cpu.idle{*} by {service}.rollup(sum, 86400)";
    let recorded = Payload {
        body: body.to_string(),
        ..request(asked)
    };
    let decoded = source.decode("metrics", &[recorded]);
    snap.add(&decoded);
    assert_eq!(decoded.rejects.len(), 1);
    assert!(decoded.rows.is_empty());
    // The same answer grouped by service: one row per service and day.
    body["series"][0]["tag_set"] = json!(["service:web"]);
    let points = body["series"][0]["pointlist"]
        .as_array()
        .map_or(0, Vec::len);
    let grouped = Payload {
        body: body.to_string(),
        ..request(asked)
    };
    let decoded = source.decode("metrics", &[grouped]);
    snap.add(&decoded);
    assert_clean(&decoded);
    let rows = rows_in(&decoded, "service_metrics_daily");
    assert!(points > 0 && !rows.is_empty() && rows.len() <= 2);
    assert!(rows.iter().all(|r| r["service_name"] == "web"));
    // Asked hourly: one row per service and hour, in the hourly table.
    let hourly = Payload {
        body: body.to_string(),
        ..request(&asked.replace("86400", "3600"))
    };
    let decoded = source.decode("metrics", &[hourly]);
    assert_clean(&decoded);
    let hours = rows_in(&decoded, "service_metrics_hourly");
    assert!(rows_in(&decoded, "service_metrics_daily").is_empty());
    assert!(!hours.is_empty() && hours.len() <= points, "{hours:?}");
    assert!(
        hours
            .iter()
            .all(|r| r["hour"].as_str().is_some_and(|h| h.ends_with(":00:00Z")))
    );
    snap.check();
}

#[test]
fn sentry_payloads_decode() {
    let mut snap = Snapshot::new("sentry_payloads_decode");
    let Some(dir) = fixtures_dir() else { return };
    let source: SourceConfig =
        serde_json::from_value(json!({"type": "sentry", "token": "t", "organization": "acme"}))
            .unwrap();
    let sentry = |path: &str, body: &Value| Payload {
        request: format!("GET https://sentry.io{path}"),
        ..payload("x", "u", path, body)
    };
    // Issue lists: with hourly stats (rows per day with events), and
    // without stats (nothing to count, nothing rejected).
    for (name, with_stats) in [
        (
            "openapi_examples/GET_projects_organization_id_or_slug_project_id_or_slug_issues_.200.example.json",
            true,
        ),
        (
            "openapi_examples/GET_organizations_organization_id_or_slug_issues_.200.ReturnAListOfIssuesForAnOrganization.json",
            true,
        ),
        ("sentry-cli__issues_get-issues.json", false),
        ("sentry-cli__issues_get-resolved-issues.json", false),
    ] {
        let body = read(&dir, &format!("sentry/{name}"));
        let decoded = source.decode("issues", &[sentry("/api/0/projects/acme/p/issues/", &body)]);
        snap.add(&decoded);
        assert_clean(&decoded);
        let rows = rows_in(&decoded, "error_issues_daily");
        assert_eq!(!rows.is_empty(), with_stats, "{name}");
        if with_stats {
            let total: i64 = body[0]["stats"]["24h"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p[1].as_i64())
                .sum();
            assert_eq!(
                rows.iter()
                    .filter_map(|r| r["event_count"].as_i64())
                    .sum::<i64>(),
                total
            );
        }
    }
    // A releases page and the deploys of one of its releases.
    for name in [
        "sentry-cli__releases_get-releases.json",
        "openapi_examples/GET_organizations_organization_id_or_slug_releases_.200.ReturnAListOfReleasesForAnOrganization.json",
    ] {
        let releases = read(&dir, &format!("sentry/{name}"));
        let version = releases[0]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let deploys = read(&dir, "sentry/sentry-cli__deploys_get-deploys.json");
        let mut deploys_url =
            url::Url::parse("https://sentry.io/api/0/organizations/acme/releases/").unwrap();
        deploys_url
            .path_segments_mut()
            .unwrap()
            .pop_if_empty()
            .push(&version)
            .push("deploys")
            .push("");
        let decoded = source.decode(
            "releases",
            &[
                sentry("/api/0/organizations/acme/releases/", &releases),
                Payload {
                    request: format!("GET {deploys_url}"),
                    ..payload("releases", "u", "/", &deploys)
                },
            ],
        );
        snap.add(&decoded);
        assert_clean(&decoded);
        let rows = rows_in(&decoded, "release_deploys");
        assert_eq!(rows.len(), deploys.as_array().map_or(0, Vec::len), "{name}");
        assert!(
            rows.iter()
                .all(|r| r["release_version"] == version.as_str())
        );
    }
    snap.check();
}

/// A decoder key that is no column of its table (a misspelling) stops a
/// debug build instead of becoming a silent null.
#[test]
#[should_panic(expected = "has no such column")]
fn a_key_that_is_no_column_is_refused_in_debug_builds() {
    let mut decoded = Decoded::default();
    let mut values = serde_json::Map::new();
    values.insert("deployment_id".to_owned(), json!("d1"));
    values.insert("finshed_at".to_owned(), json!("2026-07-01T00:00:00Z"));
    decoded.row(&fathom_models::tables::DEPLOYMENTS, values, Vec::new());
}
