//! Fetching: repositories, commits, pull requests, deployments, workflow runs
//! and change sets, with conditional requests and per-repository cursors.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DEFAULT_BASE, GithubConfig};
use crate::http::{HttpClient, HttpError};
use crate::source::{Collector, FetchContext, SourceError, next_link, send};

/// Per-repository progress of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct RepoCursor {
    /// Newest time seen (commit date, pull request update, deployment
    /// creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<DateTime<Utc>>,
    /// ETag of the first page, and the URL it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<(String, String)>,
    /// Newest commit seen on the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_sha: Option<String>,
    /// Deployments not yet in a final state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    open: Vec<i64>,
}

pub(super) type Cursor = BTreeMap<String, RepoCursor>;

/// Last production deployment handled per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SeriesCursor {
    deployment_id: String,
    revision: String,
    finished_at: DateTime<Utc>,
}

pub(crate) async fn fetch(
    config: &GithubConfig,
    client: &HttpClient,
    stream: &str,
    cursor: Option<&str>,
    ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let base = config.common.base(Some(DEFAULT_BASE), client.upstream())?;
    match stream {
        "repos" => {
            for org in &config.orgs {
                let url = format!("{base}/orgs/{org}/repos?per_page=100&type=all");
                pages(client, out, stream, org, url, None).await?;
                out.checkpoint(None).await?;
            }
            Ok(None)
        }
        "workflow_runs" if config.deploy_workflows.is_none() => Ok(None),
        "catalog" if !config.discovery => Ok(None),
        "catalog" | "commits" | "pulls" | "deployments" | "workflow_runs" => {
            let mut cursor: Cursor = cursor
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default();
            for (repo, branch) in &ctx.repositories {
                let previous = if ctx.full {
                    RepoCursor::default()
                } else {
                    cursor.get(repo).cloned().unwrap_or_default()
                };
                let result = match stream {
                    "commits" => {
                        commits(&base, client, out, repo, branch.as_deref(), &previous, ctx).await
                    }
                    "pulls" => pulls(&base, client, out, repo, &previous, ctx).await,
                    "deployments" => deployments(&base, client, out, repo, &previous, ctx).await,
                    "catalog" => {
                        descriptor(&base, client, out, repo, branch.as_deref(), &previous).await
                    }
                    _ => workflow_runs(&base, client, out, repo, &previous, ctx).await,
                };
                match result {
                    Ok(next) => {
                        cursor.insert(repo.clone(), next);
                    }
                    // A repository that vanished or is empty is not a
                    // failure of the source.
                    Err(SourceError::Http(HttpError::Status {
                        status: 404 | 409, ..
                    })) => {}
                    Err(e) => return Err(e),
                }
                out.checkpoint(Some(serde_json::to_string(&cursor).unwrap_or_default()))
                    .await?;
            }
            Ok(Some(serde_json::to_string(&cursor).unwrap_or_default()))
        }
        "changes" => changes(&base, client, out, cursor, ctx).await,
        other => Err(SourceError::Config {
            source_name: client.upstream().to_owned(),
            message: format!("unknown stream `{other}`"),
        }),
    }
}

/// Follows `Link: rel="next"` from `url`, sending each page; the first
/// page is conditional on `etag` (matching URL only). Returns the first
/// page's ETag and whether it was unchanged, and the page bodies.
pub(super) async fn pages(
    client: &HttpClient,
    out: &Collector,
    stream: &str,
    unit: &str,
    url: String,
    etag: Option<&(String, String)>,
) -> Result<(Option<(String, String)>, bool, Vec<Value>), SourceError> {
    pages_until(client, out, stream, unit, url, etag, |_| false).await
}

/// [`pages`], stopping after the first page for which `stop` is true.
pub(super) async fn pages_until(
    client: &HttpClient,
    out: &Collector,
    stream: &str,
    unit: &str,
    url: String,
    etag: Option<&(String, String)>,
    mut stop: impl FnMut(&Value) -> bool,
) -> Result<(Option<(String, String)>, bool, Vec<Value>), SourceError> {
    let mut next = Some(url.clone());
    let mut first_etag = None;
    let mut bodies = Vec::new();
    let mut first = true;
    while let Some(current) = next.take() {
        let conditional = etag
            .filter(|(u, _)| first && *u == current)
            .map(|(_, e)| e.as_str());
        let fetched = client.get(&current, conditional).await?;
        if first {
            first_etag = fetched
                .header("etag")
                .map(|e| (current.clone(), e.to_owned()))
                .or_else(|| etag.cloned().filter(|_| fetched.not_modified()));
            if fetched.not_modified() {
                return Ok((first_etag, true, bodies));
            }
        }
        first = false;
        send(out, stream, unit, &current, &fetched).await?;
        let mut done = false;
        if let Ok(body) = serde_json::from_slice::<Value>(&fetched.body) {
            done = stop(&body);
            bodies.push(body);
        }
        next = if done { None } else { next_link(&fetched) };
    }
    Ok((first_etag, false, bodies))
}

pub(super) fn time_at(value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn items(bodies: &[Value]) -> impl Iterator<Item = &Value> {
    bodies.iter().filter_map(Value::as_array).flatten()
}

pub(super) async fn commits(
    base: &str,
    client: &HttpClient,
    out: &Collector,
    repo: &str,
    branch: Option<&str>,
    previous: &RepoCursor,
    ctx: &FetchContext,
) -> Result<RepoCursor, SourceError> {
    // The same URL every run, newest first: an unchanged branch answers
    // 304 to the conditional request, and a changed one is read back to
    // the newest commit already seen. `--since` bounds only a first read.
    let mut url = format!("{base}/repos/{repo}/commits?per_page=100");
    if let Some(branch) = branch {
        url.push_str(&format!("&sha={branch}"));
    }
    if previous.last_sha.is_none()
        && let Some(since) = ctx.since
    {
        url.push_str(&format!("&since={}", since.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    let known = previous.last_sha.clone();
    let (etag, unchanged, bodies) = pages_until(
        client,
        out,
        "commits",
        repo,
        url,
        previous.etag.as_ref(),
        |page| {
            known.as_deref().is_some_and(|sha| {
                page.as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c.get("sha").and_then(Value::as_str) == Some(sha))
            })
        },
    )
    .await?;
    if unchanged {
        return Ok(previous.clone());
    }
    let newest = items(&bodies)
        .filter_map(|c| time_at(c, "/commit/committer/date"))
        .chain(previous.newest)
        .max();
    let last_sha = bodies
        .first()
        .and_then(|b| b.get(0))
        .and_then(|c| c.get("sha"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| previous.last_sha.clone());
    Ok(RepoCursor {
        newest,
        etag,
        last_sha,
        open: Vec::new(),
    })
}

pub(super) async fn pulls(
    base: &str,
    client: &HttpClient,
    out: &Collector,
    repo: &str,
    previous: &RepoCursor,
    ctx: &FetchContext,
) -> Result<RepoCursor, SourceError> {
    // Most recently updated first, read back to the threshold.
    let threshold = previous.newest.or(ctx.since);
    let url =
        format!("{base}/repos/{repo}/pulls?state=all&sort=updated&direction=desc&per_page=100");
    let mut changed: Vec<i64> = Vec::new();
    let mut newest = previous.newest;
    let (etag, unchanged, _) = pages_until(
        client,
        out,
        "pulls",
        repo,
        url,
        previous.etag.as_ref(),
        |page| {
            let mut reached_old = false;
            for pull in page.as_array().into_iter().flatten() {
                let updated = time_at(pull, "/updated_at");
                if matches!((updated, threshold), (Some(u), Some(t)) if u < t) {
                    reached_old = true;
                    continue;
                }
                if let Some(number) = pull.get("number").and_then(Value::as_i64) {
                    changed.push(number);
                }
                newest = newest.max(updated);
            }
            reached_old
        },
    )
    .await?;
    if unchanged {
        return Ok(previous.clone());
    }
    for number in changed {
        let url = format!("{base}/repos/{repo}/pulls/{number}");
        let fetched = client.get(&url, None).await?;
        send(out, "pulls", repo, &url, &fetched).await?;
        for part in ["commits", "reviews"] {
            let url = format!("{base}/repos/{repo}/pulls/{number}/{part}?per_page=100");
            pages(client, out, "pulls", repo, url, None).await?;
        }
    }
    Ok(RepoCursor {
        newest,
        etag,
        last_sha: None,
        open: Vec::new(),
    })
}

/// Deployment states after which nothing changes.
pub(super) fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "error" | "inactive")
}

pub(super) async fn deployments(
    base: &str,
    client: &HttpClient,
    out: &Collector,
    repo: &str,
    previous: &RepoCursor,
    ctx: &FetchContext,
) -> Result<RepoCursor, SourceError> {
    // Newest first, back to the threshold and to every deployment still
    // running last time (which must be found again to be finished; with
    // any, the list is read unconditionally).
    let threshold = previous.newest.or(ctx.since);
    let open: BTreeSet<i64> = previous.open.iter().copied().collect();
    let url = format!("{base}/repos/{repo}/deployments?per_page=100");
    let etag = previous.etag.as_ref().filter(|_| open.is_empty());
    let mut wanted: Vec<i64> = Vec::new();
    let mut newest = previous.newest;
    let (etag, unchanged, _) = pages_until(client, out, "deployments", repo, url, etag, |page| {
        let mut reached_old = false;
        for deployment in page.as_array().into_iter().flatten() {
            let Some(id) = deployment.get("id").and_then(Value::as_i64) else {
                continue;
            };
            let created = time_at(deployment, "/created_at");
            if matches!((created, threshold), (Some(c), Some(t)) if c < t) && !open.contains(&id) {
                reached_old = true;
                continue;
            }
            wanted.push(id);
            newest = newest.max(created);
        }
        reached_old && open.iter().all(|id| wanted.contains(id))
    })
    .await?;
    if unchanged {
        return Ok(previous.clone());
    }
    let mut still_open = BTreeSet::new();
    for id in wanted {
        let url = format!("{base}/repos/{repo}/deployments/{id}/statuses?per_page=100");
        let (_, _, bodies) = pages(client, out, "deployments", repo, url, None).await?;
        // Statuses come newest first; order them by time to be sure.
        let latest = items(&bodies)
            .max_by_key(|s| {
                (
                    time_at(s, "/created_at"),
                    s.get("id").and_then(Value::as_i64),
                )
            })
            .and_then(|s| s.get("state").and_then(Value::as_str))
            .unwrap_or("pending");
        if !is_final(latest) {
            still_open.insert(id);
        }
    }
    Ok(RepoCursor {
        newest,
        etag,
        last_sha: None,
        open: still_open.into_iter().collect(),
    })
}

/// The repository's `catalog-info.yaml`, conditional on its last ETag; a
/// repository without one answers 404, which is not an error here.
pub(super) async fn descriptor(
    base: &str,
    client: &HttpClient,
    out: &Collector,
    repo: &str,
    branch: Option<&str>,
    previous: &RepoCursor,
) -> Result<RepoCursor, SourceError> {
    let mut url = format!("{base}/repos/{repo}/contents/catalog-info.yaml");
    if let Some(branch) = branch {
        url.push_str(&format!("?ref={branch}"));
    }
    let conditional = previous
        .etag
        .as_ref()
        .filter(|(u, _)| *u == url)
        .map(|(_, e)| e.as_str());
    let fetched = match client.get(&url, conditional).await {
        Ok(fetched) => fetched,
        Err(HttpError::Status { status: 404, .. }) => return Ok(RepoCursor::default()),
        Err(e) => return Err(e.into()),
    };
    if fetched.not_modified() {
        return Ok(previous.clone());
    }
    send(out, "catalog", repo, &url, &fetched).await?;
    Ok(RepoCursor {
        etag: fetched.header("etag").map(|e| (url.clone(), e.to_owned())),
        ..RepoCursor::default()
    })
}

pub(super) async fn workflow_runs(
    base: &str,
    client: &HttpClient,
    out: &Collector,
    repo: &str,
    previous: &RepoCursor,
    ctx: &FetchContext,
) -> Result<RepoCursor, SourceError> {
    // Newest first, back to the newest already seen and to the runs still
    // in progress last time (read again until they complete).
    let threshold = previous.newest.or(ctx.since);
    let mut open: BTreeSet<i64> = previous.open.iter().copied().collect();
    let url = format!("{base}/repos/{repo}/actions/runs?per_page=100");
    let etag = previous.etag.as_ref().filter(|_| open.is_empty());
    let mut newest = previous.newest;
    let mut still_open = BTreeSet::new();
    let (etag, unchanged, _) = pages_until(client, out, "workflow_runs", repo, url, etag, |page| {
        let mut reached_old = false;
        let runs = page.get("workflow_runs").and_then(Value::as_array);
        for run in runs.into_iter().flatten() {
            let Some(id) = run.get("id").and_then(Value::as_i64) else {
                continue;
            };
            let created = time_at(run, "/created_at");
            if matches!((created, threshold), (Some(c), Some(t)) if c < t) {
                reached_old = true;
            }
            open.remove(&id);
            if run.get("status").and_then(Value::as_str) != Some("completed") {
                still_open.insert(id);
            }
            newest = newest.max(created);
        }
        reached_old && open.is_empty()
    })
    .await?;
    if unchanged {
        return Ok(previous.clone());
    }
    Ok(RepoCursor {
        newest,
        etag,
        last_sha: None,
        open: still_open.into_iter().collect(),
    })
}

pub(super) async fn changes(
    base: &str,
    client: &HttpClient,
    out: &Collector,
    cursor: Option<&str>,
    ctx: &FetchContext,
) -> Result<Option<String>, SourceError> {
    let mut done: BTreeMap<String, SeriesCursor> = if ctx.full {
        BTreeMap::new()
    } else {
        cursor
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default()
    };
    let mut series: BTreeMap<&str, Vec<&crate::source::ProductionDeployment>> = BTreeMap::new();
    for deployment in &ctx.production_deployments {
        series
            .entry(deployment.series.as_str())
            .or_default()
            .push(deployment);
    }
    for (key, deployments) in series {
        let mut last = done.get(key).cloned();
        for deployment in deployments {
            if let Some(last) = &last
                && (deployment.finished_at, deployment.deployment_id.as_str())
                    <= (last.finished_at, last.deployment_id.as_str())
            {
                continue;
            }
            // The first deployment seen is the baseline: it ships no
            // attributed changes (its history is unknown).
            if let Some(previous) = &last
                && previous.revision != deployment.revision
            {
                let url = format!(
                    "{base}/repos/{}/compare/{}...{}?per_page=100",
                    deployment.repository, previous.revision, deployment.revision
                );
                match pages(client, out, "changes", &deployment.deployment_id, url, None).await {
                    Ok(_) => {}
                    // A revision GitHub does not know (force-pushed away):
                    // no change set, and the user is told.
                    Err(SourceError::Http(HttpError::Status {
                        status: 404 | 422,
                        message,
                        ..
                    })) => {
                        out.warn(format!(
                            "deployment `{}`: cannot compare {}...{}: {message}",
                            deployment.deployment_id, previous.revision, deployment.revision
                        ))
                        .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            last = Some(SeriesCursor {
                deployment_id: deployment.deployment_id.clone(),
                revision: deployment.revision.clone(),
                finished_at: deployment.finished_at,
            });
        }
        if let Some(last) = last {
            done.insert(key.to_owned(), last);
        }
        out.checkpoint(Some(serde_json::to_string(&done).unwrap_or_default()))
            .await?;
    }
    Ok(Some(serde_json::to_string(&done).unwrap_or_default()))
}
