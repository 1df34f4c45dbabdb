//! Sentry (bearer token; sentry.io or a self-hosted base URL): the
//! organisation's projects, each project's issues with their daily event
//! counts (`statsPeriod=14d`) into `error_issues_daily`, and releases with
//! their deploys into `release_deploys` (a release's commit ties an error
//! spike to the deployment that shipped it).
//!
//! Sentry paginates with `Link` headers that always carry a `next` link;
//! `results="false"` on it marks the end. Issue stats cover the last 14
//! days, so every run rewrites those days (today's count grows until the
//! day ends) and history older than the first run's 14 days is not
//! available from Sentry. Releases come newest first: a run reads them
//! until one older than `release_window_days` before the newest seen, and
//! fetches a release's deploys only when its deploy count changed.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use fathom_models::tables::{ERROR_COUNTS_DAILY, ERROR_ISSUES_DAILY, RELEASE_DEPLOYS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::{Fetched, HttpClient, ResetStyle};
use crate::source::{
    Collector, CommonConfig, Decoded, FetchContext, Identity, Payload, SourceError, json_kind,
    opt_str, req_str, require_keys, send,
};

/// Streams, in order.
pub const STREAMS: &[&str] = &["issues", "project_stats", "releases"];

/// `[[sources]] type = "sentry"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentryConfig {
    /// Name, base URL (default `https://sentry.io`), auth token and HTTP
    /// policy.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Organisation slug.
    pub organization: String,
    /// Only these project slugs. Default: every project.
    #[serde(default)]
    pub projects: Vec<String>,
    /// Days before the newest release seen within which releases are read
    /// again for new deploys. Default 30.
    #[serde(default = "default_release_window")]
    pub release_window_days: u32,
    /// Days of project event counts read on the first run. Default 90
    /// (Sentry's usual retention).
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
}

fn default_lookback() -> u32 {
    90
}

fn default_release_window() -> u32 {
    30
}

const DEFAULT_BASE: &str = "https://sentry.io";

pub(crate) fn client(config: &SentryConfig, name: &str) -> Result<HttpClient, SourceError> {
    let token = config.common.secret(name)?;
    Ok(HttpClient::new(
        name,
        config.common.http.clone(),
        &[("authorization", format!("Bearer {token}"))],
        // Sentry's X-Sentry-Rate-Limit-Reset is an epoch second.
        ResetStyle::EpochSeconds,
    )?)
}

/// The next page, when Sentry says it has results.
fn next_page(fetched: &Fetched) -> Option<String> {
    let link = fetched.header("link")?;
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let params: Vec<&str> = pieces.map(str::trim).collect();
        (params.contains(&"rel=\"next\"") && params.contains(&"results=\"true\"")).then(|| {
            target
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// What the releases stream remembers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ReleaseCursor {
    /// Newest release creation seen.
    newest: Option<DateTime<Utc>>,
    /// Deploy count per release version within the window.
    deploys: BTreeMap<String, u64>,
}

pub(crate) async fn fetch(
    config: &SentryConfig,
    client: &HttpClient,
    stream: &str,
    cursor: Option<&str>,
    ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let base = config.common.base(Some(DEFAULT_BASE), client.upstream())?;
    let org = &config.organization;
    match stream {
        "issues" => {
            for slug in projects(config, client, &base, stream, out).await? {
                let mut url = Some(format!(
                    "{base}/api/0/projects/{org}/{slug}/issues/?statsPeriod=14d&query=&limit=100"
                ));
                while let Some(page) = url {
                    let fetched = client.get(&page, None).await?;
                    send(out, stream, &slug, &page, &fetched).await?;
                    url = next_page(&fetched);
                }
            }
            Ok(None)
        }
        "project_stats" => {
            // Complete days from the cursor (the last one again: events
            // arrive late) or the lookback, one request per project.
            let today = Utc::now().date_naive();
            let read_until =
                cursor.and_then(|c| chrono::NaiveDate::parse_from_str(c, "%Y-%m-%d").ok());
            if read_until.is_some_and(|until| until >= today) {
                return Ok(cursor.map(str::to_owned));
            }
            let first = read_until
                .map(|until| until - Duration::days(1))
                .or_else(|| ctx.since.map(|s| s.date_naive()))
                .unwrap_or(today - Duration::days(i64::from(config.lookback_days.max(1))));
            let (Some(since), Some(until)) =
                (first.and_hms_opt(0, 0, 0), today.and_hms_opt(0, 0, 0))
            else {
                return Ok(cursor.map(str::to_owned));
            };
            let (since, until) = (since.and_utc().timestamp(), until.and_utc().timestamp());
            for slug in projects(config, client, &base, stream, out).await? {
                let url = format!(
                    "{base}/api/0/projects/{org}/{slug}/stats/?stat=received&resolution=1d&since={since}&until={until}"
                );
                let fetched = client.get(&url, None).await?;
                send(out, stream, &slug, &url, &fetched).await?;
            }
            Ok(Some(today.format("%Y-%m-%d").to_string()))
        }
        _ => fetch_releases(config, client, &base, stream, cursor, out).await,
    }
}

async fn projects(
    config: &SentryConfig,
    client: &HttpClient,
    base: &str,
    stream: &str,
    out: &Collector,
) -> Result<Vec<String>, SourceError> {
    let mut slugs = Vec::new();
    let mut url = Some(format!(
        "{base}/api/0/organizations/{}/projects/",
        config.organization
    ));
    while let Some(page) = url {
        let fetched = client.get(&page, None).await?;
        // Kept and decoded too: a malformed project is quarantined, not
        // silently skipped.
        send(out, stream, "projects", &page, &fetched).await?;
        let body: Value = serde_json::from_slice(&fetched.body).unwrap_or(Value::Null);
        slugs.extend(
            body.as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["slug"].as_str())
                .filter(|s| config.projects.is_empty() || config.projects.iter().any(|p| p == s))
                .map(str::to_owned),
        );
        url = next_page(&fetched);
    }
    Ok(slugs)
}

async fn fetch_releases(
    config: &SentryConfig,
    client: &HttpClient,
    base: &str,
    stream: &str,
    cursor: Option<&str>,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let org = &config.organization;
    let previous: ReleaseCursor = cursor
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let window = Duration::days(i64::from(config.release_window_days.max(1)));
    let oldest = previous.newest.map(|n| n - window);
    let mut next = ReleaseCursor {
        newest: previous.newest,
        deploys: BTreeMap::new(),
    };
    let mut url = Some(format!(
        "{base}/api/0/organizations/{org}/releases/?per_page=100"
    ));
    'pages: while let Some(page) = url {
        let fetched = client.get(&page, None).await?;
        // The page and the deploys of its releases decode together.
        send(out, stream, &page, &page, &fetched).await?;
        let body: Value = serde_json::from_slice(&fetched.body).unwrap_or(Value::Null);
        let mut past_window = false;
        for release in body.as_array().into_iter().flatten() {
            let (Some(version), Some(created)) = (
                release["version"].as_str(),
                release["dateCreated"]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok()),
            ) else {
                continue;
            };
            if oldest.is_some_and(|oldest| created < oldest) {
                past_window = true;
                continue;
            }
            next.newest = next.newest.max(Some(created));
            let count = release["deployCount"].as_u64().unwrap_or(0);
            next.deploys.insert(version.to_owned(), count);
            if count == 0 || previous.deploys.get(version) == Some(&count) {
                continue;
            }
            let mut deploys = url::Url::parse(&format!(
                "{base}/api/0/organizations/{org}/releases/"
            ))
            .map_err(|e| SourceError::Config {
                source_name: client.upstream().to_owned(),
                message: format!("base_url: {e}"),
            })?;
            // The version is one path segment, whatever it contains.
            if let Ok(mut segments) = deploys.path_segments_mut() {
                segments
                    .pop_if_empty()
                    .push(version)
                    .push("deploys")
                    .push("");
            }
            let fetched = client.get(deploys.as_str(), None).await?;
            send(out, stream, &page, deploys.as_str(), &fetched).await?;
        }
        if past_window {
            break 'pages;
        }
        url = next_page(&fetched);
    }
    let text = serde_json::to_string(&next).map_err(|e| SourceError::Refused {
        source_name: client.upstream().to_owned(),
        message: e.to_string(),
    })?;
    Ok(Some(text))
}

pub(crate) fn decode(_config: &SentryConfig, stream: &str, payloads: &[Payload]) -> Decoded {
    match stream {
        "issues" => decode_issues(payloads),
        "project_stats" => decode_project_stats(payloads),
        _ => decode_releases(payloads),
    }
}

fn decode_issues(payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    for payload in payloads {
        let Some(records) = list_records(payload, &mut decoded) else {
            continue;
        };
        // Asked for with `statsPeriod`, an issue always has its stats.
        let stats_expected = payload.request.contains("statsPeriod=");
        for (i, issue) in records.iter().enumerate() {
            match issue_rows(issue, stats_expected) {
                Ok(rows) => {
                    for (values, identity) in rows {
                        decoded.row(&ERROR_ISSUES_DAILY, values, identity);
                    }
                }
                Err(reason) => decoded.reject(payload, Some(i as i64 + 1), reason, issue),
            }
        }
    }
    decoded
}

/// Column values and how to find their entity.
type IdentifiedRow = (Map<String, Value>, Vec<Identity>);

/// One row per day the issue had events, from its `stats` (daily points
/// for `14d`; hourly `24h` points are summed per day).
fn issue_rows(issue: &Value, stats_expected: bool) -> Result<Vec<IdentifiedRow>, String> {
    require_keys(issue, &["id", "title", "lastSeen", "level"])?;
    if stats_expected {
        require_keys(issue, &["stats", "project", "firstSeen"])?;
    }
    let id = req_str(issue, "/id")?;
    let title = req_str(issue, "/title")?;
    let level = opt_str(issue, "/level")?;
    let first_seen = opt_str(issue, "/firstSeen")?;
    let last_seen = req_str(issue, "/lastSeen")?;
    let project = opt_str(issue, "/project/slug")?;
    let mut days: BTreeMap<String, i64> = BTreeMap::new();
    if let Some(stats) = issue.get("stats").filter(|s| !s.is_null()) {
        let Some(stats) = stats.as_object() else {
            return Err(format!(
                "field `stats` should be an object, found {}",
                json_kind(stats)
            ));
        };
        // The daily series when there is one.
        let series = stats
            .get("14d")
            .or_else(|| stats.get("24h"))
            .or_else(|| stats.values().next());
        for point in series.and_then(Value::as_array).into_iter().flatten() {
            let (Some(at), Some(count)) = (
                point.get(0).and_then(Value::as_i64),
                point.get(1).and_then(Value::as_i64),
            ) else {
                return Err(format!("malformed stats point {point}"));
            };
            let day = DateTime::from_timestamp(at, 0)
                .ok_or_else(|| format!("stats time {at} out of range"))?
                .format("%Y-%m-%d")
                .to_string();
            *days.entry(day).or_default() += count;
        }
    }
    Ok(days
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(day, count)| {
            let mut values = Map::new();
            values.insert("date".into(), json!(day));
            values.insert("source".into(), json!("sentry"));
            values.insert("issue_id".into(), json!(id));
            values.insert("project_slug".into(), json!(project));
            values.insert("title".into(), json!(title));
            values.insert("level".into(), json!(level));
            values.insert("event_count".into(), json!(count));
            values.insert("first_seen_at".into(), json!(first_seen));
            values.insert("last_seen_at".into(), json!(last_seen));
            let identity = project
                .map(|p| vec![Identity::SentryProject(p.to_owned())])
                .unwrap_or_default();
            (values, identity)
        })
        .collect())
}

/// A project's listing or stats payload: malformed projects are
/// quarantined; stats become one row per day with events.
fn decode_project_stats(payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    for payload in payloads {
        let Some(records) = list_records(payload, &mut decoded) else {
            continue;
        };
        let mut days: BTreeMap<String, i64> = BTreeMap::new();
        for (i, point) in records.iter().enumerate() {
            let day = point
                .get(0)
                .and_then(Value::as_i64)
                .and_then(|at| DateTime::from_timestamp(at, 0));
            match (day, point.get(1).and_then(Value::as_i64)) {
                (Some(day), Some(count)) => {
                    *days.entry(day.format("%Y-%m-%d").to_string()).or_default() += count;
                }
                _ => decoded.reject(
                    payload,
                    Some(i as i64 + 1),
                    format!("malformed stats point {point}"),
                    point,
                ),
            }
        }
        for (day, count) in days.into_iter().filter(|(_, n)| *n > 0) {
            let mut values = Map::new();
            values.insert("date".into(), json!(day));
            values.insert("source".into(), json!("sentry"));
            values.insert("project_slug".into(), json!(payload.unit));
            values.insert("event_count".into(), json!(count));
            decoded.row(
                &ERROR_COUNTS_DAILY,
                values,
                vec![Identity::SentryProject(payload.unit.clone())],
            );
        }
    }
    decoded
}

/// The records of a list answer. A project listing (fetched again by every
/// stream that needs the projects) is checked here and yields none.
fn list_records(payload: &Payload, decoded: &mut Decoded) -> Option<Vec<Value>> {
    let body = decoded.parse(payload)?;
    let Value::Array(records) = body else {
        decoded.reject(payload, None, "the answer is not a list".to_owned(), &body);
        return None;
    };
    if payload.unit == "projects" {
        check_projects(payload, &records, decoded);
        return None;
    }
    Some(records)
}

fn check_projects(payload: &Payload, records: &[Value], decoded: &mut Decoded) {
    for (i, project) in records.iter().enumerate() {
        if let Err(reason) = req_str(project, "/slug") {
            decoded.reject(payload, Some(i as i64 + 1), reason, project);
        }
    }
}

/// The release version a deploys request is for.
fn deploys_version(request: &str) -> Option<String> {
    let url = url::Url::parse(request.strip_prefix("GET ")?).ok()?;
    let segments: Vec<String> = url.path_segments()?.map(str::to_owned).collect();
    let at = segments.iter().position(|s| s == "deploys")?;
    let version = segments.get(at.checked_sub(1)?)?;
    Some(percent_encoding_decode(version))
}

fn percent_encoding_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| text.to_owned(), |(_, v)| v.into_owned())
}

fn decode_releases(payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut releases: BTreeMap<String, Value> = BTreeMap::new();
    for payload in payloads {
        let Some(body) = decoded.parse(payload) else {
            continue;
        };
        match deploys_version(&payload.request) {
            None => {
                let Some(list) = body.as_array() else {
                    decoded.reject(
                        payload,
                        None,
                        "the answer is not a list of releases".to_owned(),
                        &body,
                    );
                    continue;
                };
                for (i, release) in list.iter().enumerate() {
                    match check_release(release) {
                        Ok(version) => {
                            releases.insert(version, release.clone());
                        }
                        Err(reason) => decoded.reject(payload, Some(i as i64 + 1), reason, release),
                    }
                }
            }
            Some(version) => {
                let Some(deploys) = body.as_array() else {
                    decoded.reject(
                        payload,
                        None,
                        "the answer is not a list of deploys".to_owned(),
                        &body,
                    );
                    continue;
                };
                let Some(release) = releases.get(&version).cloned() else {
                    // Its release was malformed (and is quarantined): a
                    // deploy without its project and commit would be wrong.
                    for (i, deploy) in deploys.iter().enumerate() {
                        decoded.reject(
                            payload,
                            Some(i as i64 + 1),
                            format!(
                                "the release `{version}` of this deploy is missing or malformed"
                            ),
                            deploy,
                        );
                    }
                    continue;
                };
                for (i, deploy) in deploys.iter().enumerate() {
                    match deploy_row(&version, &release, deploy, &payload.request) {
                        Ok((values, identity)) => decoded.row(&RELEASE_DEPLOYS, values, identity),
                        Err(reason) => decoded.reject(payload, Some(i as i64 + 1), reason, deploy),
                    }
                }
            }
        }
    }
    decoded
}

/// A release's version, when the release has every field Sentry sends.
fn check_release(release: &Value) -> Result<String, String> {
    require_keys(
        release,
        &["version", "dateCreated", "projects", "ref", "lastCommit"],
    )?;
    opt_str(release, "/ref")?;
    opt_str(release, "/lastCommit/id")?;
    req_str(release, "/dateCreated")?;
    match &release["projects"] {
        Value::Array(projects) if !projects.is_empty() => {
            req_str(release, "/projects/0/slug")?;
        }
        Value::Array(_) => {}
        other => {
            return Err(format!(
                "field `projects` should be a list, found {}",
                json_kind(other)
            ));
        }
    }
    Ok(req_str(release, "/version")?.to_owned())
}

fn deploy_row(
    version: &str,
    release: &Value,
    deploy: &Value,
    request: &str,
) -> Result<(Map<String, Value>, Vec<Identity>), String> {
    require_keys(deploy, &["id", "environment", "dateFinished"])?;
    let id = req_str(deploy, "/id")?;
    let finished = req_str(deploy, "/dateFinished")?;
    let project = opt_str(release, "/projects/0/slug")?.map(str::to_owned);
    let revision = match opt_str(release, "/ref")? {
        Some(revision) => Some(revision),
        None => opt_str(release, "/lastCommit/id")?,
    };
    let release_created = opt_str(release, "/dateCreated")?;
    // Deploy ids are unique per Sentry installation; the host keeps two
    // installations apart.
    let host = request
        .strip_prefix("GET ")
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let mut values = Map::new();
    values.insert("source".into(), json!("sentry"));
    values.insert("deploy_id".into(), json!(format!("sentry:{host}:{id}")));
    values.insert("release_version".into(), json!(version));
    values.insert("revision".into(), json!(revision));
    values.insert("project_slug".into(), json!(project));
    values.insert(
        "environment".into(),
        json!(opt_str(deploy, "/environment")?),
    );
    values.insert("started_at".into(), json!(opt_str(deploy, "/dateStarted")?));
    values.insert("finished_at".into(), json!(finished));
    values.insert("release_created_at".into(), json!(release_created));
    let identity = project
        .map(|p| vec![Identity::SentryProject(p)])
        .unwrap_or_default();
    Ok((values, identity))
}

crate::source::api_source!(SentryConfig, fathom_models::tables::RAW_SENTRY);
