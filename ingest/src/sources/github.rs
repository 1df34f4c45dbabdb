//! GitHub REST (token or GitHub App auth; GitHub Enterprise through
//! `base_url`): the
//! organisations' repositories, default-branch commits, pull requests with
//! their commits and reviews, deployments with their statuses, and — once
//! every source has run — the change set of each production deployment
//! from the compare API.
//!
//! Request budget, per repository and run: commits and pull requests use
//! conditional requests (`If-None-Match` with the ETag kept in the cursor),
//! so a quiet repository costs one 304 per stream, and GitHub does not
//! count 304s against the rate limit. A changed pull request costs 3
//! requests (the pull, its commits, its reviews); a deployment 1 (its
//! statuses) until it reaches a final state; a production deployment 1
//! compare per 100 commits shipped. An organisation of 1,000 repositories
//! polled hourly therefore spends about 4,000 requests on an idle hour —
//! within the 5,000/hour budget — and what changed on top.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use fathom_models::tables::{
    COMMITS, DEPLOYMENT_CHANGES, DEPLOYMENTS, PULL_REQUEST_COMMITS, PULL_REQUEST_REVIEWS,
    PULL_REQUESTS, REPOSITORIES,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::{HttpClient, HttpError, MintFuture, MintedToken, ResetStyle, TokenSource};
use crate::runner::DEFAULT_PRODUCTION_PATTERN;
use crate::source::{
    Collector, CommonConfig, Decoded, FetchContext, Identity, Payload, SourceError, json_kind,
    next_link, opt_str, req_i64, req_str, require_keys, send,
};

/// Streams, in order (`changes` runs after every other source).
pub const STREAMS: &[&str] = &[
    "repos",
    "catalog",
    "commits",
    "pulls",
    "deployments",
    "workflow_runs",
    "changes",
];

/// `[[sources]] type = "github"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GithubConfig {
    /// Name, base URL (default `https://api.github.com`; GitHub Enterprise:
    /// `https://ghe.example.com/api/v3`), token and HTTP policy.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Organisations to read.
    pub orgs: Vec<String>,
    /// Regex of production environment names (for change sets). Default
    /// `(?i)^prod(uction)?([-_].*)?$`.
    #[serde(default)]
    pub production_environments: Option<String>,
    /// Regex on a GitHub Actions workflow's name or path
    /// (`.github/workflows/deploy.yml`) marking it a deployment; for
    /// repositories that deploy from Actions rather than through the
    /// deployments API. Default: none (workflow runs are not read).
    #[serde(default)]
    pub deploy_workflows: Option<String>,
    /// Environment recorded for deployments from matching workflows.
    /// Default `production`.
    #[serde(default)]
    pub deploy_workflow_environment: Option<String>,
    /// Read `catalog-info.yaml` from each repository's default branch into
    /// the catalog — for organisations without a Backstage instance.
    /// Default false.
    #[serde(default)]
    pub discovery: bool,
    /// Authenticate as a GitHub App installation instead of with a token.
    #[serde(default)]
    pub app: Option<GithubAppConfig>,
    /// Environment variable holding the webhook secret: with it, `fathom
    /// serve` accepts this organisation's webhooks at
    /// `/api/v1/intake/github` (signed with `X-Hub-Signature-256`).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// The webhook secret itself (for local use).
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

/// `[sources.app]`: GitHub App authentication. The source signs a JWT with
/// the App's private key and exchanges it for an installation token (valid
/// an hour, renewed during long runs). An installation belongs to one
/// organisation, so an App source reads one organisation; configure one
/// source per organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAppConfig {
    /// The App ID (or its client ID) from the App's settings page.
    #[serde(deserialize_with = "string_or_number")]
    pub app_id: String,
    /// File holding the App's private key (the `.pem` GitHub lets you
    /// download).
    #[serde(default)]
    pub private_key_path: Option<std::path::PathBuf>,
    /// Environment variable holding the PEM text instead.
    #[serde(default)]
    pub private_key_env: Option<String>,
    /// Installation ID. Default: looked up from the organisation.
    #[serde(default)]
    pub installation_id: Option<u64>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, found {}",
            json_kind(&other)
        ))),
    }
}

impl GithubConfig {
    /// Whether `owner/name` belongs to a configured organisation.
    pub fn covers(&self, full_name: &str) -> bool {
        let lower = full_name.to_ascii_lowercase();
        self.orgs
            .iter()
            .any(|org| lower.starts_with(&format!("{}/", org.to_ascii_lowercase())))
    }

    /// The webhook secret, from `webhook_secret` or the
    /// `webhook_secret_env` variable; `None` when webhooks are not set up.
    pub fn webhook_secret(&self) -> Option<String> {
        self.webhook_secret
            .clone()
            .or_else(|| {
                self.webhook_secret_env
                    .as_deref()
                    .and_then(|name| std::env::var(name).ok())
            })
            .filter(|s| !s.is_empty())
    }

    /// The production pattern in effect.
    pub fn production_pattern(&self) -> String {
        self.production_environments
            .clone()
            .unwrap_or_else(|| DEFAULT_PRODUCTION_PATTERN.to_owned())
    }
}

const DEFAULT_BASE: &str = "https://api.github.com";

pub(crate) fn client(config: &GithubConfig, name: &str) -> Result<HttpClient, SourceError> {
    if config.orgs.is_empty() {
        return Err(SourceError::Config {
            source_name: name.to_owned(),
            message: "`orgs` is empty; list the organisations to read".to_owned(),
        });
    }
    let version = ("x-github-api-version", API_VERSION.to_owned());
    let Some(app) = &config.app else {
        let token = config.common.secret(name)?;
        return Ok(HttpClient::new(
            name,
            config.common.http.clone(),
            &[("authorization", format!("Bearer {token}")), version],
            ResetStyle::EpochSeconds,
        )?);
    };
    let config_error = |message: String| SourceError::Config {
        source_name: name.to_owned(),
        message,
    };
    let [org] = config.orgs.as_slice() else {
        return Err(config_error(
            "with `app`, list exactly one organisation: an installation token reads one organisation (configure one source per organisation)".to_owned(),
        ));
    };
    let pem = match (&app.private_key_path, &app.private_key_env) {
        (Some(path), None) => std::fs::read(path)
            .map_err(|e| config_error(format!("app.private_key_path {}: {e}", path.display())))?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| {
                config_error(format!(
                    "environment variable `{var}` (app.private_key_env) is not set"
                ))
            })?
            .into_bytes(),
        _ => {
            return Err(config_error(
                "app: set exactly one of `private_key_path` and `private_key_env`".to_owned(),
            ));
        }
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
        config_error(format!(
            "app private key is not an RSA key in PEM format: {e}"
        ))
    })?;
    let minter = AppTokens {
        upstream: name.to_owned(),
        base: config.common.base(Some(DEFAULT_BASE), name)?,
        org: org.clone(),
        app_id: app.app_id.clone(),
        installation_id: app.installation_id,
        key,
        policy: config.common.http.clone(),
    };
    Ok(HttpClient::new(
        name,
        config.common.http.clone(),
        &[version],
        ResetStyle::EpochSeconds,
    )?
    .with_token_source(std::sync::Arc::new(minter)))
}

const API_VERSION: &str = "2022-11-28";

/// Mints installation tokens of a GitHub App.
struct AppTokens {
    upstream: String,
    base: String,
    org: String,
    app_id: String,
    installation_id: Option<u64>,
    key: jsonwebtoken::EncodingKey,
    policy: crate::http::HttpPolicy,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("org", &self.org)
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

impl AppTokens {
    async fn mint_token(&self) -> Result<MintedToken, HttpError> {
        let invalid = |message: String| HttpError::Invalid {
            upstream: self.upstream.clone(),
            message,
        };
        let now = Utc::now().timestamp();
        // Backdated a minute against clock drift; GitHub refuses an expiry
        // more than ten minutes ahead.
        let claims = json!({"iat": now - 60, "exp": now + 540, "iss": self.app_id});
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| invalid(format!("signing the App JWT: {e}")))?;
        let app = HttpClient::new(
            &self.upstream,
            self.policy.clone(),
            &[
                ("authorization", format!("Bearer {jwt}")),
                ("x-github-api-version", API_VERSION.to_owned()),
            ],
            ResetStyle::EpochSeconds,
        )?;
        let installation = match self.installation_id {
            Some(id) => id,
            None => {
                let url = format!("{}/orgs/{}/installation", self.base, self.org);
                let body = app.get(&url, None).await?.body;
                serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_u64))
                    .ok_or_else(|| invalid(format!("{url}: no installation `id` in the answer")))?
            }
        };
        let url = format!(
            "{}/app/installations/{installation}/access_tokens",
            self.base
        );
        let body = app.post_json(&url, &json!({})).await?.body;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("{url}: the answer is not JSON: {e}")))?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{url}: no `token` in the answer")))?;
        let expires_at = answer
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| invalid(format!("{url}: no valid `expires_at` in the answer")))?;
        Ok(MintedToken {
            token: token.to_owned(),
            expires_at,
            requests: app
                .stats
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

impl TokenSource for AppTokens {
    fn mint(&self) -> MintFuture<'_> {
        Box::pin(self.mint_token())
    }
}

/// Per-repository progress of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct RepoCursor {
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

type Cursor = BTreeMap<String, RepoCursor>;

/// Last production deployment handled per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeriesCursor {
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
async fn pages(
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
async fn pages_until(
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

fn time_at(value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn items(bodies: &[Value]) -> impl Iterator<Item = &Value> {
    bodies.iter().filter_map(Value::as_array).flatten()
}

async fn commits(
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

async fn pulls(
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
fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "error" | "inactive")
}

async fn deployments(
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
async fn descriptor(
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

async fn workflow_runs(
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

async fn changes(
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

/// The path of a request after the API base, e.g. `/repos/a/b/pulls/3`.
fn request_path(payload: &Payload) -> &str {
    let url = payload.request.trim_start_matches("GET ");
    let path = url.split('?').next().unwrap_or(url);
    path.find("/repos/")
        .or_else(|| path.find("/orgs/"))
        .map_or(path, |i| &path[i..])
}

pub(crate) fn decode(config: &GithubConfig, stream: &str, payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    let bodies: Vec<(&Payload, Value)> = payloads
        .iter()
        .filter_map(|payload| decoded.parse(payload).map(|body| (payload, body)))
        .collect();
    match stream {
        "repos" => decode_repos(&bodies, &mut decoded),
        "commits" => decode_commits(&bodies, &mut decoded),
        "pulls" => decode_pulls(&bodies, &mut decoded),
        "deployments" => decode_deployments(&bodies, &mut decoded),
        "workflow_runs" => decode_workflow_runs(config, &bodies, &mut decoded),
        "catalog" => decode_descriptors(&bodies, &mut decoded),
        "changes" => decode_changes(&bodies, &mut decoded),
        _ => {}
    }
    decoded
}

/// Each element of a list payload, with its position; a non-list payload
/// is rejected whole.
fn each<'a>(
    payload: &'a Payload,
    body: &'a Value,
    decoded: &mut Decoded,
) -> impl Iterator<Item = (i64, &'a Value)> + use<'a> {
    if !body.is_array() {
        decoded.reject(
            payload,
            None,
            format!("expected a list, found {}", json_kind(body)),
            body,
        );
    }
    body.as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| (i as i64 + 1, v))
}

fn decode_repos(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
    for (payload, body) in bodies {
        for (position, repo) in each(payload, body, decoded) {
            let result = (|| -> Result<(Map<String, Value>, String), String> {
                // Old repositories come without `default_branch` or `archived`.
                require_keys(repo, &["full_name", "html_url", "created_at"])?;
                let full_name = req_str(repo, "/full_name")?.to_owned();
                let mut values = Map::new();
                values.insert(
                    "repository_id".into(),
                    json!(format!("github:{}", full_name.to_ascii_lowercase())),
                );
                values.insert("provider".into(), json!("github"));
                values.insert("full_name".into(), json!(full_name));
                values.insert(
                    "default_branch".into(),
                    json!(opt_str(repo, "/default_branch")?),
                );
                values.insert("url".into(), json!(opt_str(repo, "/html_url")?));
                values.insert(
                    "archived".into(),
                    repo.get("archived").cloned().unwrap_or(Value::Null),
                );
                values.insert("created_at".into(), json!(opt_str(repo, "/created_at")?));
                Ok((values, full_name))
            })();
            match result {
                Ok((values, full_name)) => {
                    decoded.row(&REPOSITORIES, values, vec![Identity::Repository(full_name)])
                }
                Err(reason) => decoded.reject(payload, Some(position), reason, repo),
            }
        }
    }
}

/// The repository a payload belongs to: its unit (streams fetched per
/// repository), else the `/repos/{owner}/{name}/…` of its request. (Next
/// links may address repositories by id, so the unit is the reliable one.)
fn repo_of(payload: &Payload) -> Option<String> {
    if payload.stream != "changes" && payload.unit.contains('/') {
        return Some(payload.unit.to_ascii_lowercase());
    }
    let path = request_path(payload);
    if !path.starts_with("/repos/") {
        return None;
    }
    let mut parts = path.trim_start_matches("/repos/").split('/');
    let owner = parts.next()?;
    let name = parts.next()?;
    Some(format!("{owner}/{name}").to_ascii_lowercase())
}

fn first_line(message: Option<&str>) -> Option<String> {
    message.map(|m| m.lines().next().unwrap_or_default().to_owned())
}

fn commit_values(repo: &str, commit: &Value) -> Result<Map<String, Value>, String> {
    require_keys(commit, &["sha", "commit", "author"])?;
    let sha = req_str(commit, "/sha")?;
    let committed_at = req_str(commit, "/commit/committer/date")?;
    let mut values = Map::new();
    values.insert("repository_id".into(), json!(format!("github:{repo}")));
    values.insert("sha".into(), json!(sha));
    values.insert(
        "author_name".into(),
        json!(opt_str(commit, "/commit/author/name")?),
    );
    values.insert(
        "author_login".into(),
        json!(opt_str(commit, "/author/login")?),
    );
    values.insert(
        "authored_at".into(),
        json!(opt_str(commit, "/commit/author/date")?),
    );
    values.insert("committed_at".into(), json!(committed_at));
    values.insert(
        "message".into(),
        json!(first_line(opt_str(commit, "/commit/message")?)),
    );
    values.insert(
        "additions".into(),
        commit
            .pointer("/stats/additions")
            .cloned()
            .unwrap_or(Value::Null),
    );
    values.insert(
        "deletions".into(),
        commit
            .pointer("/stats/deletions")
            .cloned()
            .unwrap_or(Value::Null),
    );
    Ok(values)
}

fn decode_commits(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        for (position, commit) in each(payload, body, decoded) {
            match commit_values(&repo, commit) {
                Ok(values) => {
                    decoded.row(&COMMITS, values, vec![Identity::Repository(repo.clone())])
                }
                Err(reason) => decoded.reject(payload, Some(position), reason, commit),
            }
        }
    }
}

/// What a `/pulls…` request was for.
enum PullPart {
    List,
    One,
    Commits(i64),
    Reviews(i64),
}

fn pull_part(payload: &Payload) -> Option<PullPart> {
    let path = request_path(payload);
    let after = path.split("/pulls").nth(1)?;
    let parts: Vec<&str> = after
        .trim_start_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        [] => Some(PullPart::List),
        [n] if n.parse::<i64>().is_ok() => Some(PullPart::One),
        [n, "commits"] => n.parse().ok().map(PullPart::Commits),
        [n, "reviews"] => n.parse().ok().map(PullPart::Reviews),
        _ => None,
    }
}

/// Who reviewed, and when.
type Reviewed = (String, DateTime<Utc>);

fn decode_pulls(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
    // Commits and reviews first: a pull request's coding and pickup stages
    // need its first commit and its first review by someone else.
    let mut first_commit: HashMap<(String, i64), DateTime<Utc>> = HashMap::new();
    let mut reviews: HashMap<(String, i64), Vec<Reviewed>> = HashMap::new();
    // A pull request with a malformed commit or review would get wrong
    // stages: it is left out (its bad parts are quarantined) rather than
    // stored wrong.
    let mut incomplete: BTreeSet<(String, i64)> = BTreeSet::new();
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        match pull_part(payload) {
            Some(PullPart::Commits(number)) => {
                for (position, commit) in each(payload, body, decoded) {
                    let result = (|| -> Result<Map<String, Value>, String> {
                        require_keys(commit, &["sha", "commit", "author"])?;
                        let mut values = Map::new();
                        values.insert("repository_id".into(), json!(format!("github:{repo}")));
                        values.insert("pull_request_number".into(), json!(number));
                        values.insert("sha".into(), json!(req_str(commit, "/sha")?));
                        values.insert(
                            "author_login".into(),
                            json!(opt_str(commit, "/author/login")?),
                        );
                        values.insert(
                            "authored_at".into(),
                            json!(opt_str(commit, "/commit/author/date")?),
                        );
                        Ok(values)
                    })();
                    match result {
                        Ok(values) => {
                            if let Some(at) = time_at(commit, "/commit/author/date") {
                                let entry =
                                    first_commit.entry((repo.clone(), number)).or_insert(at);
                                *entry = (*entry).min(at);
                            }
                            decoded.row(
                                &PULL_REQUEST_COMMITS,
                                values,
                                vec![Identity::Repository(repo.clone())],
                            );
                        }
                        Err(reason) => {
                            incomplete.insert((repo.clone(), number));
                            decoded.reject(payload, Some(position), reason, commit);
                        }
                    }
                }
            }
            Some(PullPart::Reviews(number)) => {
                for (position, review) in each(payload, body, decoded) {
                    let result = (|| -> Result<(Map<String, Value>, Option<Reviewed>), String> {
                        require_keys(review, &["id", "user", "state"])?;
                        let id = req_i64(review, "/id")?;
                        let state = opt_str(review, "/state")?;
                        // A pending review is a draft nobody has seen.
                        let submitted = opt_str(review, "/submitted_at")?;
                        let login = opt_str(review, "/user/login")?;
                        let mut values = Map::new();
                        values.insert("repository_id".into(), json!(format!("github:{repo}")));
                        values.insert("pull_request_number".into(), json!(number));
                        values.insert("review_id".into(), json!(id.to_string()));
                        values.insert("reviewer_login".into(), json!(login));
                        values.insert("state".into(), json!(state));
                        values.insert("submitted_at".into(), json!(submitted));
                        let seen = match (
                            login,
                            submitted.and_then(|_| time_at(review, "/submitted_at")),
                        ) {
                            (Some(login), Some(at)) if state != Some("PENDING") => {
                                Some((login.to_owned(), at))
                            }
                            _ => None,
                        };
                        Ok((values, seen))
                    })();
                    match result {
                        Ok((values, seen)) => {
                            if let Some(seen) = seen {
                                reviews
                                    .entry((repo.clone(), number))
                                    .or_default()
                                    .push(seen);
                            }
                            if values.get("submitted_at").is_some_and(|v| !v.is_null()) {
                                decoded.row(
                                    &PULL_REQUEST_REVIEWS,
                                    values,
                                    vec![Identity::Repository(repo.clone())],
                                );
                            }
                        }
                        Err(reason) => {
                            incomplete.insert((repo.clone(), number));
                            decoded.reject(payload, Some(position), reason, review);
                        }
                    }
                }
            }
            // The list decides which pull requests are read in full: a
            // record it cannot use is quarantined, not skipped.
            Some(PullPart::List) => {
                for (position, pull) in each(payload, body, decoded) {
                    let check = require_keys(pull, &["number", "updated_at"])
                        .and_then(|()| req_i64(pull, "/number").map(|_| ()))
                        .and_then(|()| req_str(pull, "/updated_at").map(|_| ()));
                    if let Err(reason) = check {
                        decoded.reject(payload, Some(position), reason, pull);
                    }
                }
            }
            _ => {}
        }
    }
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        let Some(PullPart::One) = pull_part(payload) else {
            continue;
        };
        if body
            .get("number")
            .and_then(Value::as_i64)
            .is_some_and(|n| incomplete.contains(&(repo.clone(), n)))
        {
            continue;
        }
        let result = (|| -> Result<Map<String, Value>, String> {
            let number = req_i64(body, "/number")?;
            let author = opt_str(body, "/user/login")?;
            let merged_at = opt_str(body, "/merged_at")?;
            let state = match (merged_at, req_str(body, "/state")?) {
                (Some(_), _) => "merged",
                (None, state) => state,
            };
            let labels: Vec<String> = match body.get("labels") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(labels)) => labels
                    .iter()
                    .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect(),
                Some(other) => {
                    return Err(format!(
                        "`labels` should be a list, found {}",
                        json_kind(other)
                    ));
                }
            };
            let key = (repo.clone(), number);
            let first_review = reviews
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|(login, _)| Some(login.as_str()) != author)
                .map(|(_, at)| *at)
                .min();
            let mut values = Map::new();
            values.insert("repository_id".into(), json!(format!("github:{repo}")));
            values.insert("number".into(), json!(number));
            values.insert("title".into(), json!(opt_str(body, "/title")?));
            values.insert("author_login".into(), json!(author));
            values.insert("state".into(), json!(state));
            values.insert("base_branch".into(), json!(opt_str(body, "/base/ref")?));
            values.insert("head_branch".into(), json!(opt_str(body, "/head/ref")?));
            values.insert("created_at".into(), json!(req_str(body, "/created_at")?));
            values.insert(
                "first_commit_at".into(),
                json!(first_commit.get(&key).map(DateTime::to_rfc3339)),
            );
            values.insert(
                "first_review_at".into(),
                json!(first_review.map(|t| t.to_rfc3339())),
            );
            values.insert("merged_at".into(), json!(merged_at));
            values.insert("closed_at".into(), json!(opt_str(body, "/closed_at")?));
            values.insert(
                "merge_commit_sha".into(),
                json!(opt_str(body, "/merge_commit_sha")?),
            );
            for (column, field) in [
                ("commit_count", "commits"),
                ("additions", "additions"),
                ("deletions", "deletions"),
                ("changed_files", "changed_files"),
            ] {
                values.insert(
                    column.into(),
                    body.get(field).cloned().unwrap_or(Value::Null),
                );
            }
            values.insert("labels".into(), json!(labels));
            Ok(values)
        })();
        match result {
            Ok(values) => decoded.row(
                &PULL_REQUESTS,
                values,
                vec![Identity::Repository(repo.clone())],
            ),
            Err(reason) => decoded.reject(payload, None, reason, body),
        }
    }
}

fn decode_deployments(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
    // Statuses by deployment id (from the request path), newest first.
    let mut statuses: HashMap<i64, Vec<&Value>> = HashMap::new();
    // Deployments with a malformed status are left out rather than stored
    // with a wrong state; the fetch polls them again.
    let mut incomplete: BTreeSet<i64> = BTreeSet::new();
    for (payload, body) in bodies {
        let path = request_path(payload);
        let Some(rest) = path.split("/deployments/").nth(1) else {
            continue;
        };
        let Some(id) = rest.split('/').next().and_then(|i| i.parse::<i64>().ok()) else {
            continue;
        };
        for (position, status) in each(payload, body, decoded) {
            let check = require_keys(status, &["id", "state", "created_at"])
                .and_then(|()| req_str(status, "/state").map(|_| ()))
                .and_then(|()| req_str(status, "/created_at").map(|_| ()));
            match check {
                Ok(()) => statuses.entry(id).or_default().push(status),
                Err(reason) => {
                    incomplete.insert(id);
                    decoded.reject(payload, Some(position), reason, status);
                }
            }
        }
    }
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        if request_path(payload).contains("/deployments/") {
            continue;
        }
        for (position, deployment) in each(payload, body, decoded) {
            let result = (|| -> Result<Option<Map<String, Value>>, String> {
                require_keys(
                    deployment,
                    &[
                        "id",
                        "sha",
                        "environment",
                        "created_at",
                        "payload",
                        "task",
                        "description",
                        "creator",
                    ],
                )?;
                let id = req_i64(deployment, "/id")?;
                // Only deployments whose statuses were read this time: the
                // rest of the page is older and already stored.
                let Some(list) = statuses.get(&id) else {
                    return Ok(None);
                };
                if incomplete.contains(&id) {
                    return Ok(None);
                }
                let created_at = req_str(deployment, "/created_at")?;
                let environment = req_str(deployment, "/environment")?;
                let mut ordered: Vec<&&Value> = list.iter().collect();
                ordered.sort_by_key(|s| {
                    (
                        time_at(s, "/created_at"),
                        s.get("id").and_then(Value::as_i64),
                    )
                });
                let latest = ordered.last();
                let state = latest
                    .and_then(|s| s.get("state").and_then(Value::as_str))
                    .unwrap_or("pending");
                let status = match state {
                    "success" | "inactive" => "success",
                    "failure" => "failure",
                    "error" => "error",
                    _ => "in_progress",
                };
                let finished_at = if is_final(state) {
                    // `inactive` follows a success later; the success is when it finished.
                    ordered
                        .iter()
                        .find(|s| {
                            matches!(
                                s.get("state").and_then(Value::as_str),
                                Some("success" | "failure" | "error")
                            )
                        })
                        .and_then(|s| opt_str(s, "/created_at").ok().flatten())
                        .map(str::to_owned)
                } else {
                    None
                };
                let started_at = ordered
                    .iter()
                    .find(|s| s.get("state").and_then(Value::as_str) == Some("in_progress"))
                    .and_then(|s| opt_str(s, "/created_at").ok().flatten())
                    .unwrap_or(created_at);
                let duration = match (
                    DateTime::parse_from_rfc3339(started_at).ok(),
                    finished_at
                        .as_deref()
                        .and_then(|f| DateTime::parse_from_rfc3339(f).ok()),
                ) {
                    (Some(s), Some(f)) => Some((f - s).num_milliseconds() as f64 / 1000.0),
                    _ => None,
                };
                let rollback = deployment
                    .pointer("/payload/rollback")
                    .and_then(Value::as_bool)
                    == Some(true)
                    || opt_str(deployment, "/task")? == Some("rollback")
                    || opt_str(deployment, "/description")?
                        .is_some_and(|d| d.to_ascii_lowercase().contains("rollback"));
                let mut values = Map::new();
                values.insert("deployment_id".into(), json!(format!("github:{repo}:{id}")));
                values.insert("source".into(), json!("github"));
                values.insert("service_name".into(), json!(repo));
                values.insert("environment".into(), json!(environment));
                values.insert("status".into(), json!(status));
                values.insert("revision".into(), json!(opt_str(deployment, "/sha")?));
                values.insert("repository_id".into(), json!(format!("github:{repo}")));
                values.insert("started_at".into(), json!(started_at));
                values.insert("finished_at".into(), json!(finished_at));
                values.insert("duration_seconds".into(), json!(duration));
                values.insert("is_rollback".into(), json!(rollback));
                values.insert(
                    "triggered_by".into(),
                    json!(opt_str(deployment, "/creator/login")?),
                );
                values.insert(
                    "url".into(),
                    json!(latest.and_then(|s| s.get("target_url").and_then(Value::as_str))),
                );
                Ok(Some(values))
            })();
            match result {
                Ok(Some(values)) => decoded.row(
                    &DEPLOYMENTS,
                    values,
                    vec![Identity::Repository(repo.clone())],
                ),
                Ok(None) => {}
                Err(reason) => decoded.reject(payload, Some(position), reason, deployment),
            }
        }
    }
}

fn decode_changes(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        let commits = match body.get("commits") {
            Some(Value::Array(commits)) => commits,
            _ => {
                decoded.reject(
                    payload,
                    None,
                    "a compare answer has no `commits` list".to_owned(),
                    body,
                );
                continue;
            }
        };
        for (i, commit) in commits.iter().enumerate() {
            match req_str(commit, "/sha") {
                Ok(sha) => {
                    let mut values = Map::new();
                    values.insert("deployment_id".into(), json!(payload.unit));
                    values.insert("sha".into(), json!(sha));
                    values.insert("repository_id".into(), json!(format!("github:{repo}")));
                    decoded.row(&DEPLOYMENT_CHANGES, values, Vec::new());
                }
                Err(reason) => decoded.reject(payload, Some(i as i64 + 1), reason, commit),
            }
        }
    }
}

fn decode_workflow_runs(
    config: &GithubConfig,
    bodies: &[(&Payload, Value)],
    decoded: &mut Decoded,
) {
    let Some(pattern) = &config.deploy_workflows else {
        return;
    };
    let pattern = match regex::Regex::new(pattern) {
        Ok(pattern) => pattern,
        Err(e) => {
            if let Some((payload, body)) = bodies.first() {
                decoded.reject(
                    payload,
                    None,
                    format!("`deploy_workflows` is not a valid regex: {e}"),
                    body,
                );
            }
            return;
        }
    };
    let environment = config
        .deploy_workflow_environment
        .clone()
        .unwrap_or_else(|| "production".to_owned());
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        let Some(runs) = body.get("workflow_runs").and_then(Value::as_array) else {
            decoded.reject(
                payload,
                None,
                "the answer has no `workflow_runs` list".to_owned(),
                body,
            );
            continue;
        };
        for (i, run) in runs.iter().enumerate() {
            let result = (|| -> Result<Option<Map<String, Value>>, String> {
                require_keys(
                    run,
                    &[
                        "id",
                        "status",
                        "conclusion",
                        "head_sha",
                        "created_at",
                        "updated_at",
                    ],
                )?;
                let name = opt_str(run, "/name")?.unwrap_or_default();
                let path = opt_str(run, "/path")?.unwrap_or_default();
                if !pattern.is_match(name) && !pattern.is_match(path) {
                    return Ok(None);
                }
                let id = req_i64(run, "/id")?;
                let completed = req_str(run, "/status")? == "completed";
                let status = match (completed, opt_str(run, "/conclusion")?) {
                    (false, _) => "in_progress",
                    (true, Some("success")) => "success",
                    (true, Some("cancelled" | "skipped")) => "cancelled",
                    (true, _) => "failure",
                };
                let started_at =
                    opt_str(run, "/run_started_at")?.unwrap_or(req_str(run, "/created_at")?);
                let finished_at = completed.then(|| req_str(run, "/updated_at")).transpose()?;
                let duration = match (
                    DateTime::parse_from_rfc3339(started_at).ok(),
                    finished_at.and_then(|f| DateTime::parse_from_rfc3339(f).ok()),
                ) {
                    (Some(s), Some(f)) => Some((f - s).num_milliseconds() as f64 / 1000.0),
                    _ => None,
                };
                let mut values = Map::new();
                values.insert(
                    "deployment_id".into(),
                    json!(format!("github-actions:{repo}:{id}")),
                );
                values.insert("source".into(), json!("github-actions"));
                values.insert("service_name".into(), json!(repo));
                values.insert("environment".into(), json!(environment));
                values.insert("status".into(), json!(status));
                values.insert("revision".into(), json!(req_str(run, "/head_sha")?));
                values.insert("repository_id".into(), json!(format!("github:{repo}")));
                values.insert("started_at".into(), json!(started_at));
                values.insert("finished_at".into(), json!(finished_at));
                values.insert("duration_seconds".into(), json!(duration));
                values.insert("is_rollback".into(), json!(false));
                values.insert("triggered_by".into(), json!(opt_str(run, "/actor/login")?));
                values.insert("url".into(), json!(opt_str(run, "/html_url")?));
                Ok(Some(values))
            })();
            match result {
                Ok(Some(values)) => decoded.row(
                    &DEPLOYMENTS,
                    values,
                    vec![Identity::Repository(repo.clone())],
                ),
                Ok(None) => {}
                Err(reason) => decoded.reject(payload, Some(i as i64 + 1), reason, run),
            }
        }
    }
}

/// `catalog-info.yaml` answers: base64 YAML, possibly several documents,
/// decoded like catalog entities. A component without a
/// `github.com/project-slug` annotation is claimed by the repository it
/// lives in.
fn decode_descriptors(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
    use base64::Engine as _;
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        let text = match body.get("content").and_then(Value::as_str) {
            Some(content) => {
                let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
                match base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()))
                {
                    Ok(text) => text,
                    Err(e) => {
                        decoded.reject(
                            payload,
                            None,
                            format!("`content` is not base64 UTF-8 text: {e}"),
                            body,
                        );
                        continue;
                    }
                }
            }
            None => {
                decoded.reject(
                    payload,
                    None,
                    "the answer has no `content`".to_owned(),
                    body,
                );
                continue;
            }
        };
        for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let position = Some(i as i64 + 1);
            let mut item = match Value::deserialize(document) {
                Ok(Value::Null) => continue,
                Ok(item) => item,
                Err(e) => {
                    decoded.reject(
                        payload,
                        position,
                        format!("catalog-info.yaml is not valid YAML: {e}"),
                        &Value::String(text.clone()),
                    );
                    break;
                }
            };
            if item.get("kind").and_then(Value::as_str) == Some("Component")
                && let Some(metadata) = item.get_mut("metadata").and_then(Value::as_object_mut)
            {
                let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
                if let Some(annotations) = annotations.as_object_mut() {
                    annotations
                        .entry(crate::identity::GITHUB_SLUG)
                        .or_insert_with(|| json!(repo));
                }
            }
            if let Err(reason) = super::backstage::entity(&item, decoded, "github-discovery") {
                decoded.reject(payload, position, reason, &item);
            }
        }
    }
}
