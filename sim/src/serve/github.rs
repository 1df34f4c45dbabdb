//! GitHub REST API: organisation repositories, commits, pull requests (list,
//! single, commits, reviews), compare, deployments and their statuses,
//! Actions workflow runs (CI on every push to main; a deploy workflow for
//! services deployed through GitHub) and `/rate_limit` — with `Link` pagination, a real per-token rate budget
//! (`X-RateLimit-*`, reset in epoch seconds), `ETag`/`If-None-Match` → 304
//! (not counted against the budget, as on GitHub), and secondary limits (403
//! with `Retry-After`) when faults ask for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{SimState, Upstream, faults::status_response};
use crate::world::{Commit, DeploySource, Deployment, PullRequest, ServiceHistory, rfc3339};

/// Rate budget of one token: requests per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateBudget {
    /// Requests allowed per window (GitHub: 5,000 per hour).
    pub limit: u64,
    /// Window length in seconds.
    pub window_seconds: u64,
}

impl Default for RateBudget {
    fn default() -> Self {
        Self {
            limit: 5_000,
            window_seconds: 3_600,
        }
    }
}

/// Budget use per token: (window start, used), in wall-clock epoch seconds,
/// because clients sleep in real time until the reset.
#[derive(Debug, Default)]
pub(super) struct RateState {
    used: Mutex<HashMap<String, (u64, u64)>>,
    /// Installation tokens handed out: token → (expiry epoch, uses left).
    app_tokens: Mutex<HashMap<String, (u64, Option<u32>)>>,
}

/// Installation tokens live an hour, as on GitHub.
const APP_TOKEN_SECONDS: u64 = 3_600;

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn router(state: Arc<SimState>) -> Router<Arc<SimState>> {
    Router::new()
        .route("/orgs/{org}/repos", get(org_repos))
        .route("/repos/{owner}/{repo}/commits", get(commits))
        .route("/repositories/{id}/commits", get(commits_by_id))
        .route("/repositories/{id}/actions/runs", get(workflow_runs_by_id))
        .route("/repos/{owner}/{repo}/pulls", get(pulls))
        .route("/repos/{owner}/{repo}/pulls/{number}", get(pull))
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/commits",
            get(pull_commits),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/reviews",
            get(pull_reviews),
        )
        .route("/repos/{owner}/{repo}/compare/{range}", get(compare))
        .route("/repos/{owner}/{repo}/contents/{*path}", get(contents))
        .route("/repos/{owner}/{repo}/deployments", get(deployments))
        .route(
            "/repos/{owner}/{repo}/deployments/{id}/statuses",
            get(deployment_statuses),
        )
        .route("/repos/{owner}/{repo}/actions/runs", get(workflow_runs))
        .route("/rate_limit", get(rate_limit))
        .route("/orgs/{org}/installation", get(org_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            axum::routing::post(installation_token),
        )
        .layer(middleware::from_fn_with_state(state, github_layer))
}

fn github_error(status: StatusCode, message: &str) -> Response {
    status_response(Upstream::Github, status, message)
}

/// Auth, rate budget and conditional requests, around every handler.
async fn github_layer(
    State(state): State<Arc<SimState>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .map(str::to_owned);
    let Some(token) = token else {
        return github_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let path = request.uri().path();
    if path.ends_with("/installation") || path.contains("/app/installations/") {
        // App endpoints take the App's JWT, not a token.
        if let Err(message) = verify_app_jwt(&state, &token) {
            return github_error(StatusCode::UNAUTHORIZED, &message);
        }
        return next.run(request).await;
    }
    if token != state.options.credentials.github_token && !spend_app_token(&state, &token) {
        return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let is_rate_limit_call = request.uri().path().ends_with("/rate_limit");
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let budget = state.options.github_rate;
    let now = epoch_now();
    // Read the budget without spending it yet: a 304 is free.
    let (window_start, used) = {
        let Ok(mut table) = state.github_rate.used.lock() else {
            return github_error(StatusCode::INTERNAL_SERVER_ERROR, "rate state poisoned");
        };
        let entry = table.entry(token.clone()).or_insert((now, 0));
        if now >= entry.0 + budget.window_seconds {
            *entry = (now, 0);
        }
        *entry
    };
    let reset = window_start + budget.window_seconds;
    let rate_headers = |response: &mut Response, used: u64| {
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from(budget.limit));
        headers.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(budget.limit.saturating_sub(used)),
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        headers.insert("x-ratelimit-used", HeaderValue::from(used));
        headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    };
    if used >= budget.limit && !is_rate_limit_call {
        let mut response = github_error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
        );
        rate_headers(&mut response, used);
        return response;
    }
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return github_error(StatusCode::INTERNAL_SERVER_ERROR, "body");
    };
    let etag = format!("W/\"{:016x}\"", fnv(&bytes));
    let not_modified = parts.status == StatusCode::OK
        && if_none_match.as_ref().and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    let spent = if not_modified || is_rate_limit_call {
        used
    } else {
        used + 1
    };
    if let Ok(mut table) = state.github_rate.used.lock()
        && let Some(entry) = table.get_mut(&token)
        && entry.0 == window_start
    {
        entry.1 = spent;
    }
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(bytes))
    };
    if (response.status() == StatusCode::OK || response.status() == StatusCode::NOT_MODIFIED)
        && let Ok(value) = HeaderValue::from_str(&etag)
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    rate_headers(&mut response, spent);
    response
}

/// Checks a GitHub App JWT as GitHub does: RS256 signed by the App's key,
/// issued by its ID, expiring at most ten minutes ahead.
fn verify_app_jwt(state: &SimState, jwt: &str) -> Result<(), String> {
    let Some(app) = &state.options.credentials.github_app else {
        return Err("A JSON web token could not be decoded".to_owned());
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map_err(|_| "A JSON web token could not be decoded".to_owned())?
        .claims;
    let issuer = match claims.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if issuer != app.app_id.to_string() {
        return Err("'Issuer' claim ('iss') must be an Integer".to_owned());
    }
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp > epoch_now() + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_owned());
    }
    Ok(())
}

/// Whether `token` is a live installation token; spends one of its uses.
fn spend_app_token(state: &SimState, token: &str) -> bool {
    let Ok(mut tokens) = state.github_rate.app_tokens.lock() else {
        return false;
    };
    let Some((expires, uses)) = tokens.get_mut(token) else {
        return false;
    };
    if *expires <= epoch_now() || *uses == Some(0) {
        return false;
    }
    if let Some(uses) = uses {
        *uses -= 1;
    }
    true
}

async fn org_installation(State(state): State<Arc<SimState>>, Path(org): Path<String>) -> Response {
    let Some(app) = &state.options.credentials.github_app else {
        return not_found();
    };
    if !org.eq_ignore_ascii_case(&state.world().org.company) {
        return not_found();
    }
    axum::Json(json!({
        "id": app.installation_id,
        "app_id": app.app_id,
        "target_type": "Organization",
        "account": {"login": state.world().org.company, "type": "Organization"},
        "repository_selection": "all",
        "permissions": {"contents": "read", "deployments": "read", "pull_requests": "read", "actions": "read", "metadata": "read"},
    }))
    .into_response()
}

async fn installation_token(State(state): State<Arc<SimState>>, Path(id): Path<u64>) -> Response {
    let Some(app) = &state.options.credentials.github_app else {
        return not_found();
    };
    if id != app.installation_id {
        return not_found();
    }
    let Ok(mut tokens) = state.github_rate.app_tokens.lock() else {
        return github_error(StatusCode::INTERNAL_SERVER_ERROR, "token state poisoned");
    };
    let token = format!("ghs_sim{:034}", tokens.len() + 1);
    let expires = epoch_now() + APP_TOKEN_SECONDS;
    tokens.insert(token.clone(), (expires, app.token_uses));
    let expires_at = DateTime::<Utc>::from_timestamp(expires as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "token": token,
            "expires_at": expires_at,
            "permissions": {"contents": "read", "deployments": "read", "pull_requests": "read", "actions": "read", "metadata": "read"},
            "repository_selection": "all",
        })),
    )
        .into_response()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The API base URL as the client reached it (links must lead back here).
fn api_base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}{}", Upstream::Github.prefix())
}

fn user_id(login: &str) -> u64 {
    fnv(login.as_bytes()) % 90_000_000 + 1_000_000
}

fn user(base: &str, login: &str) -> Value {
    let id = user_id(login);
    json!({
        "login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "gravatar_id": "",
        "url": format!("{base}/users/{login}"), "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{base}/users/{login}/followers"),
        "following_url": format!("{base}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{base}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{base}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{base}/users/{login}/subscriptions"),
        "organizations_url": format!("{base}/users/{login}/orgs"),
        "repos_url": format!("{base}/users/{login}/repos"),
        "events_url": format!("{base}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{base}/users/{login}/received_events"),
        "type": "User", "user_view_type": "public", "site_admin": false,
    })
}

struct RepoRef<'a> {
    id: u64,
    full_name: String,
    history: Option<&'a ServiceHistory>,
    created_at: DateTime<Utc>,
}

fn repos(state: &SimState) -> Vec<RepoRef<'_>> {
    let world = state.world();
    let start = world.config.start();
    let mut out: Vec<RepoRef<'_>> = world
        .histories
        .iter()
        .map(|h| RepoRef {
            id: 100_000 + h.component as u64,
            full_name: world.org.components[h.component].repo.clone(),
            history: Some(h),
            created_at: h.commits.first().map_or(start, |c| c.committed_at),
        })
        .collect();
    for (i, name) in world.org.unclaimed_repos.iter().enumerate() {
        out.push(RepoRef {
            id: 900_000 + i as u64,
            full_name: name.clone(),
            history: None,
            created_at: start,
        });
    }
    out
}

fn repo_json(base: &str, repo: &RepoRef<'_>, now: DateTime<Utc>) -> Value {
    let full = &repo.full_name;
    let (owner, name) = full.split_once('/').unwrap_or(("acme", full));
    let api = format!("{base}/repos/{full}");
    let pushed = repo
        .history
        .and_then(|h| h.commits.iter().rev().find(|c| c.committed_at <= now))
        .map_or(repo.created_at, |c| c.committed_at);
    let mut value = json!({
        "id": repo.id, "node_id": format!("MDEwOlJlcG9zaXRvcnk{}", repo.id), "name": name, "full_name": full,
        "owner": user(base, owner), "private": true, "html_url": format!("https://github.com/{full}"),
        "description": format!("Source of {name}"), "fork": false, "url": api,
    });
    let templated = [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
        ("hooks_url", "/hooks"),
    ];
    if let Some(object) = value.as_object_mut() {
        for (key, suffix) in templated {
            object.insert(key.to_owned(), json!(format!("{api}{suffix}")));
        }
        let rest = json!({
            "git_url": format!("git://github.com/{full}.git"), "ssh_url": format!("git@github.com:{full}.git"),
            "clone_url": format!("https://github.com/{full}.git"), "mirror_url": null, "svn_url": format!("https://github.com/{full}"),
            "homepage": null, "language": "Rust", "forks_count": 0, "stargazers_count": 0, "watchers_count": 0, "size": 1024,
            "default_branch": "main", "open_issues_count": 0, "is_template": false, "topics": ["service"],
            "has_issues": true, "has_projects": false, "has_wiki": false, "has_pages": false, "has_downloads": true,
            "archived": false, "disabled": false, "visibility": "private",
            "pushed_at": rfc3339(pushed), "created_at": rfc3339(repo.created_at), "updated_at": rfc3339(pushed),
            "permissions": {"admin": false, "maintain": false, "push": false, "triage": false, "pull": true},
            "allow_rebase_merge": true, "template_repository": null, "temp_clone_token": "", "allow_squash_merge": true,
            "allow_auto_merge": false, "delete_branch_on_merge": true, "allow_merge_commit": true,
            "subscribers_count": 3, "network_count": 0,
            "license": {"key": "other", "name": "Other", "spdx_id": "NOASSERTION", "url": null, "node_id": "MDc6TGljZW5zZTA=", "html_url": format!("https://github.com/{full}/blob/main/LICENSE")},
            "forks": 0, "open_issues": 0, "watchers": 0,
        });
        if let Some(rest) = rest.as_object() {
            object.extend(rest.clone());
        }
    }
    value
}

/// Page through `items` with GitHub's `page`/`per_page`, adding the `Link`
/// header with absolute URLs back to this server.
fn paginate(base: &str, path: &str, params: &[(String, String)], items: Vec<Value>) -> Response {
    let per_page = params
        .iter()
        .find(|(k, _)| k == "per_page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = params
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let link = |n: usize| {
        let mut query: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        query.push(format!("per_page={per_page}"));
        query.push(format!("page={n}"));
        format!("<{base}{path}?{}>", query.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", link(page + 1)));
        links.push(format!("{}; rel=\"last\"", link(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link(page - 1)));
        links.push(format!("{}; rel=\"first\"", link(1)));
    }
    let mut response = axum::Json(Value::Array(body)).into_response();
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

fn find_repo<'a>(state: &'a SimState, owner: &str, repo: &str) -> Option<RepoRef<'a>> {
    let full = format!("{owner}/{repo}").to_ascii_lowercase();
    repos(state)
        .into_iter()
        .find(|r| r.full_name.to_ascii_lowercase() == full)
}

fn not_found() -> Response {
    github_error(StatusCode::NOT_FOUND, "Not Found")
}

async fn org_repos(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if !org.eq_ignore_ascii_case(&state.world().org.company) {
        return not_found();
    }
    let base = api_base(&headers);
    let now = state.now();
    let items = repos(&state)
        .iter()
        .map(|r| repo_json(&base, r, now))
        .collect();
    paginate(&base, &format!("/orgs/{org}/repos"), &params, items)
}

fn commit_json(base: &str, full: &str, commit: &Commit, parent: Option<&Commit>) -> Value {
    let api = format!("{base}/repos/{full}");
    let author = user(base, &commit.author_login);
    json!({
        "url": format!("{api}/commits/{}", commit.sha), "sha": commit.sha,
        "node_id": format!("C_{}", &commit.sha[..20]),
        "html_url": format!("https://github.com/{full}/commit/{}", commit.sha),
        "comments_url": format!("{api}/commits/{}/comments", commit.sha),
        "commit": {
            "url": format!("{api}/git/commits/{}", commit.sha),
            "author": {"name": commit.author_login, "email": format!("{}@acme.example", commit.author_login), "date": rfc3339(commit.authored_at)},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "date": rfc3339(commit.committed_at)},
            "message": commit.message, "comment_count": 0,
            "tree": {"sha": format!("{:040x}", fnv(commit.sha.as_bytes())), "url": format!("{api}/git/trees/{:040x}", fnv(commit.sha.as_bytes()))},
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
        },
        "author": author,
        "committer": user(base, "web-flow"),
        "parents": parent.map(|p| vec![json!({
            "url": format!("{api}/commits/{}", p.sha), "sha": p.sha,
            "html_url": format!("https://github.com/{full}/commit/{}", p.sha),
        })]).unwrap_or_default(),
    })
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn parse_time(value: Option<&str>) -> Option<DateTime<Utc>> {
    value
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `owner/repo` of the repository with this id: next-page links of commit
/// lists and workflow runs address repositories by id, as GitHub's do.
fn path_of_repository(state: &SimState, id: u64) -> Option<Path<(String, String)>> {
    let full = repos(state).into_iter().find(|r| r.id == id)?.full_name;
    let (owner, repo) = full.split_once('/')?;
    Some(Path((owner.to_owned(), repo.to_owned())))
}

async fn commits_by_id(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    query: Query<Vec<(String, String)>>,
) -> Response {
    match path_of_repository(&state, id) {
        Some(path) => commits(State(state.clone()), headers, path, query).await,
        None => not_found(),
    }
}

async fn workflow_runs_by_id(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    query: Query<Vec<(String, String)>>,
) -> Response {
    match path_of_repository(&state, id) {
        Some(path) => workflow_runs(State(state.clone()), headers, path, query).await,
        None => not_found(),
    }
}

async fn commits(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let base = api_base(&headers);
    let now = state.now();
    let Some(history) = found.history else {
        return github_error(StatusCode::CONFLICT, "Git Repository is empty.");
    };
    let visible: Vec<&Commit> = history
        .commits
        .iter()
        .filter(|c| c.committed_at <= now)
        .collect();
    let head_seq = match param(&params, "sha") {
        None | Some("main") | Some("HEAD") => visible.last().map(|c| c.seq),
        Some(sha) => match visible.iter().find(|c| c.sha.starts_with(sha)) {
            Some(c) => Some(c.seq),
            None => {
                return github_error(
                    StatusCode::NOT_FOUND,
                    &format!("No commit found for SHA: {sha}"),
                );
            }
        },
    };
    let since = parse_time(param(&params, "since"));
    let until = parse_time(param(&params, "until"));
    // GitHub pages commit lists by cursor: `last_sha` is the last commit of
    // the previous page, `top` the ref the listing started from.
    let after_seq = match param(&params, "last_sha") {
        Some(sha) => match visible.iter().find(|c| c.sha == sha) {
            Some(c) => Some(c.seq),
            None => return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid last_sha"),
        },
        None => None,
    };
    let per_page = param(&params, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let matching: Vec<&&Commit> = visible
        .iter()
        .rev()
        .filter(|c| head_seq.is_some_and(|h| c.seq <= h) && after_seq.is_none_or(|a| c.seq < a))
        .filter(|c| {
            since.is_none_or(|s| c.committed_at >= s) && until.is_none_or(|u| c.committed_at <= u)
        })
        .collect();
    let page: Vec<&&Commit> = matching.iter().take(per_page).copied().collect();
    let items: Vec<Value> = page
        .iter()
        .map(|c| {
            commit_json(
                &base,
                &found.full_name,
                c,
                c.seq
                    .checked_sub(1)
                    .and_then(|p| history.commits.get(p as usize)),
            )
        })
        .collect();
    let mut response = axum::Json(Value::Array(items)).into_response();
    let top = param(&params, "top")
        .or(param(&params, "sha"))
        .unwrap_or("main");
    let kept: Vec<String> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "last_sha" | "top" | "sha" | "page"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut links = Vec::new();
    if matching.len() > per_page
        && let Some(last) = page.last()
    {
        let mut query = kept.clone();
        query.push(format!("last_sha={}", last.sha));
        query.push(format!("top={top}"));
        links.push(format!(
            "<{base}/repositories/{}/commits?{}>; rel=\"next\"",
            found.id,
            query.join("&")
        ));
    }
    if after_seq.is_some() {
        let mut query = kept;
        query.push(format!("sha={top}"));
        links.push(format!(
            "<{base}/repositories/{}/commits?{}>; rel=\"first\"",
            found.id,
            query.join("&")
        ));
    }
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

fn visible_pulls(history: &ServiceHistory, now: DateTime<Utc>) -> Vec<&PullRequest> {
    history
        .pull_requests
        .iter()
        .filter(|p| p.created_at <= now)
        .collect()
}

fn pull_json(
    base: &str,
    repo: &RepoRef<'_>,
    pr: &PullRequest,
    now: DateTime<Utc>,
    detailed: bool,
) -> Value {
    let full = &repo.full_name;
    let api = format!("{base}/repos/{full}");
    let merged = pr.merged_at <= now;
    let number = pr.number;
    let id = repo.id * 100_000 + number;
    let head_sha = pr.commit_shas.last().cloned().unwrap_or_default();
    let repo_value = repo_json(base, repo, now);
    let author = user(base, &pr.author_login);
    let labels: Vec<Value> = pr
        .labels
        .iter()
        .map(|name| {
            json!({"id": fnv(name.as_bytes()) % 1_000_000_000, "node_id": format!("LA_{name}"), "url": format!("{api}/labels/{name}"),
                "name": name, "description": format!("{name} change"), "color": "d73a4a", "default": false})
        })
        .collect();
    let mut value = json!({
        "url": format!("{api}/pulls/{number}"), "id": id, "node_id": format!("PR_{id}"),
        "html_url": format!("https://github.com/{full}/pull/{number}"),
        "diff_url": format!("https://github.com/{full}/pull/{number}.diff"),
        "patch_url": format!("https://github.com/{full}/pull/{number}.patch"),
        "issue_url": format!("{api}/issues/{number}"), "commits_url": format!("{api}/pulls/{number}/commits"),
        "review_comments_url": format!("{api}/pulls/{number}/comments"), "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{api}/issues/{number}/comments"), "statuses_url": format!("{api}/statuses/{head_sha}"),
        "number": number, "state": if merged { "closed" } else { "open" }, "locked": false, "title": pr.title,
        "user": author, "body": format!("{}\n\nGenerated change.", pr.title), "labels": labels,
        "milestone": {
            "url": format!("{api}/milestones/1"), "html_url": format!("https://github.com/{full}/milestone/1"),
            "labels_url": format!("{api}/milestones/1/labels"), "id": repo.id, "node_id": format!("MI_{}", repo.id),
            "number": 1, "state": "open", "title": "Roadmap", "description": "Ongoing work", "creator": user(base, &pr.reviewer_login),
            "open_issues": 0, "closed_issues": 0, "created_at": rfc3339(repo.created_at), "updated_at": rfc3339(repo.created_at),
            "closed_at": null, "due_on": null,
        },
        "active_lock_reason": null,
        "created_at": rfc3339(pr.created_at),
        "updated_at": rfc3339(if merged { pr.merged_at } else { pr.created_at }),
        "closed_at": if merged { json!(rfc3339(pr.merged_at)) } else { Value::Null },
        "merged_at": if merged { json!(rfc3339(pr.merged_at)) } else { Value::Null },
        "merge_commit_sha": if merged { json!(pr.merge_commit_sha) } else { Value::Null },
        "assignee": user(base, &pr.author_login), "assignees": [user(base, &pr.author_login)],
        "requested_reviewers": if merged { vec![] } else { vec![user(base, &pr.reviewer_login)] },
        "requested_teams": [],
        "head": {"label": format!("acme:change-{number}"), "ref": format!("change-{number}"), "sha": head_sha,
            "user": author, "repo": repo_value},
        "base": {"label": "acme:main", "ref": "main", "sha": pr.merge_commit_sha, "user": user(base, "acme"), "repo": repo_value},
        "_links": {
            "self": {"href": format!("{api}/pulls/{number}")}, "html": {"href": format!("https://github.com/{full}/pull/{number}")},
            "issue": {"href": format!("{api}/issues/{number}")}, "comments": {"href": format!("{api}/issues/{number}/comments")},
            "review_comments": {"href": format!("{api}/pulls/{number}/comments")},
            "review_comment": {"href": format!("{api}/pulls/comments{{/number}}")},
            "commits": {"href": format!("{api}/pulls/{number}/commits")}, "statuses": {"href": format!("{api}/statuses/{head_sha}")},
        },
        "author_association": "MEMBER", "auto_merge": null, "draft": false,
    });
    // Only the single-pull call carries sizes and merge details.
    if detailed && let Some(object) = value.as_object_mut() {
        let extra = json!({
            "merged": merged, "mergeable": if merged { Value::Null } else { json!(true) }, "rebaseable": Value::Null,
            "mergeable_state": if merged { "unknown" } else { "clean" },
            "merged_by": if merged { user(base, &pr.reviewer_login) } else { Value::Null },
            "comments": 1, "review_comments": 2, "maintainer_can_modify": false,
            "commits": pr.commit_shas.len(), "additions": pr.additions, "deletions": pr.deletions, "changed_files": pr.changed_files,
        });
        if let Some(extra) = extra.as_object() {
            object.extend(extra.clone());
        }
    }
    value
}

async fn pulls(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let base = api_base(&headers);
    let now = state.now();
    let Some(history) = found.history else {
        return paginate(
            &base,
            &format!("/repos/{owner}/{repo}/pulls"),
            &params,
            Vec::new(),
        );
    };
    let wanted = param(&params, "state").unwrap_or("open");
    let mut selected: Vec<&PullRequest> = visible_pulls(history, now)
        .into_iter()
        .filter(|p| match wanted {
            "all" => true,
            "closed" => p.merged_at <= now,
            _ => p.merged_at > now,
        })
        .collect();
    let updated = |p: &PullRequest| {
        if p.merged_at <= now {
            p.merged_at
        } else {
            p.created_at
        }
    };
    match param(&params, "sort").unwrap_or("created") {
        "updated" => selected.sort_by_key(|p| (updated(p), p.number)),
        _ => selected.sort_by_key(|p| (p.created_at, p.number)),
    }
    if param(&params, "direction").unwrap_or("desc") == "desc" {
        selected.reverse();
    }
    let items = selected
        .iter()
        .map(|p| pull_json(&base, &found, p, now, false))
        .collect();
    paginate(
        &base,
        &format!("/repos/{owner}/{repo}/pulls"),
        &params,
        items,
    )
}

fn find_pull(history: &ServiceHistory, number: u64, now: DateTime<Utc>) -> Option<&PullRequest> {
    history
        .pull_requests
        .iter()
        .find(|p| p.number == number && p.created_at <= now)
}

async fn pull(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Response {
    let now = state.now();
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let Some(pr) = found.history.and_then(|h| find_pull(h, number, now)) else {
        return not_found();
    };
    axum::Json(pull_json(&api_base(&headers), &found, pr, now, true)).into_response()
}

async fn pull_commits(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let now = state.now();
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let Some(history) = found.history else {
        return not_found();
    };
    let Some(pr) = find_pull(history, number, now) else {
        return not_found();
    };
    let base = api_base(&headers);
    let by_sha: HashMap<&str, &Commit> = history
        .commits
        .iter()
        .map(|c| (c.sha.as_str(), c))
        .collect();
    let mut previous: Option<&Commit> = None;
    let mut items = Vec::new();
    for sha in &pr.commit_shas {
        if let Some(commit) = by_sha.get(sha.as_str()) {
            // On the branch, commits carry their author date as commit date.
            let mut branch_commit = (*commit).clone();
            branch_commit.committed_at = branch_commit.authored_at;
            items.push(commit_json(
                &base,
                &found.full_name,
                &branch_commit,
                previous,
            ));
            previous = Some(commit);
        }
    }
    paginate(
        &base,
        &format!("/repos/{owner}/{repo}/pulls/{number}/commits"),
        &params,
        items,
    )
}

async fn pull_reviews(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let now = state.now();
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let Some(pr) = found.history.and_then(|h| find_pull(h, number, now)) else {
        return not_found();
    };
    let base = api_base(&headers);
    let full = &found.full_name;
    let approval_at = (pr.merged_at - chrono::Duration::minutes(1)).max(pr.first_review_at);
    let pr_id = found.id * 100_000 + number;
    let items: Vec<Value> = [(1, "COMMENTED", pr.first_review_at), (2, "APPROVED", approval_at)]
        .into_iter()
        .filter(|(_, _, at)| *at <= now)
        .map(|(k, review_state, at)| {
            let id = pr_id * 10 + k;
            json!({
                "id": id, "node_id": format!("PRR_{id}"), "user": user(&base, &pr.reviewer_login),
                "body": if review_state == "APPROVED" { "LGTM" } else { "A few comments" }, "state": review_state,
                "html_url": format!("https://github.com/{full}/pull/{number}#pullrequestreview-{id}"),
                "pull_request_url": format!("{base}/repos/{full}/pulls/{number}"),
                "author_association": "MEMBER",
                "_links": {"html": {"href": format!("https://github.com/{full}/pull/{number}#pullrequestreview-{id}")},
                    "pull_request": {"href": format!("{base}/repos/{full}/pulls/{number}")}},
                "submitted_at": rfc3339(at), "commit_id": pr.commit_shas.last(),
            })
        })
        .collect();
    paginate(
        &base,
        &format!("/repos/{owner}/{repo}/pulls/{number}/reviews"),
        &params,
        items,
    )
}

async fn compare(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo, range)): Path<(String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let Some(history) = found.history else {
        return not_found();
    };
    let Some((base_ref, head_ref)) = range.split_once("...") else {
        return not_found();
    };
    let now = state.now();
    let lookup = |r: &str| {
        history.commits.iter().find(|c| {
            c.committed_at <= now && (c.sha == r || (r.len() >= 7 && c.sha.starts_with(r)))
        })
    };
    let (Some(base_commit), Some(head_commit)) = (lookup(base_ref), lookup(head_ref)) else {
        return not_found();
    };
    let api = api_base(&headers);
    let full = &found.full_name;
    let parent = |c: &Commit| {
        c.seq
            .checked_sub(1)
            .and_then(|p| history.commits.get(p as usize))
    };
    // Linear history: the merge base is the older of the two.
    let merge_base = if base_commit.seq <= head_commit.seq {
        base_commit
    } else {
        head_commit
    };
    let ahead: Vec<Value> = history
        .commits
        .iter()
        .filter(|c| c.seq > base_commit.seq && c.seq <= head_commit.seq)
        .map(|c| commit_json(&api, full, c, parent(c)))
        .collect();
    let behind_by = base_commit.seq.saturating_sub(head_commit.seq);
    let status = match (ahead.len(), behind_by) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let total = ahead.len();
    // Without paging parameters GitHub lists at most 250 commits; with
    // them, pages of `per_page` (at most 100) linked by `Link`.
    let paged = param(&params, "per_page").is_some() || param(&params, "page").is_some();
    let per_page = param(&params, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = param(&params, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let (commits, next): (Vec<Value>, Option<String>) = if paged {
        let last = total.div_ceil(per_page).max(1);
        let commits = ahead
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let next = (page < last).then(|| {
            format!(
                "<{api}/repos/{full}/compare/{range}?per_page={per_page}&page={}>; rel=\"next\", <{api}/repos/{full}/compare/{range}?per_page={per_page}&page={last}>; rel=\"last\"",
                page + 1
            )
        });
        (commits, next)
    } else {
        (ahead.into_iter().take(250).collect(), None)
    };
    let mut response = axum::Json(json!({
        "url": format!("{api}/repos/{full}/compare/{range}"),
        "html_url": format!("https://github.com/{full}/compare/{range}"),
        "permalink_url": format!("https://github.com/{full}/compare/{}...{}", base_commit.sha, head_commit.sha),
        "diff_url": format!("https://github.com/{full}/compare/{range}.diff"),
        "patch_url": format!("https://github.com/{full}/compare/{range}.patch"),
        "base_commit": commit_json(&api, full, base_commit, parent(base_commit)),
        "merge_base_commit": commit_json(&api, full, merge_base, parent(merge_base)),
        "status": status, "ahead_by": total, "behind_by": behind_by, "total_commits": total,
        "commits": commits,
        "files": [],
    }))
    .into_response();
    if let Some(next) = next
        && let Ok(value) = HeaderValue::from_str(&next)
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

fn github_deployments(history: &ServiceHistory, now: DateTime<Utc>) -> Vec<&Deployment> {
    history
        .deployments
        .iter()
        .filter(|d| d.source == DeploySource::GithubDeployments && d.started_at <= now)
        .collect()
}

fn deployment_json(base: &str, full: &str, d: &Deployment, now: DateTime<Utc>) -> Value {
    let api = format!("{base}/repos/{full}");
    json!({
        "url": format!("{api}/deployments/{}", d.upstream_id), "id": d.upstream_id, "node_id": format!("DE_{}", d.upstream_id),
        "sha": d.revision, "ref": "main", "task": "deploy", "payload": {"deploy": "app", "rollback": d.is_rollback},
        "original_environment": d.environment, "environment": d.environment,
        "description": if d.is_rollback { "Rollback" } else { "Deploy from CI" },
        "creator": user(base, "deploy-bot"),
        "created_at": rfc3339(d.started_at),
        "updated_at": rfc3339(if d.finished_at <= now { d.finished_at } else { d.started_at }),
        "statuses_url": format!("{api}/deployments/{}/statuses", d.upstream_id), "repository_url": api,
        "transient_environment": false, "production_environment": d.production,
    })
}

async fn deployments(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let base = api_base(&headers);
    let now = state.now();
    let mut items: Vec<&Deployment> = found
        .history
        .map(|h| github_deployments(h, now))
        .unwrap_or_default();
    // Newest first, as GitHub lists them.
    items.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then(b.upstream_id.cmp(&a.upstream_id))
    });
    let environment = param(&params, "environment");
    let sha = param(&params, "sha");
    let items = items
        .into_iter()
        .filter(|d| {
            environment.is_none_or(|e| e == d.environment) && sha.is_none_or(|s| s == d.revision)
        })
        .map(|d| deployment_json(&base, &found.full_name, d, now))
        .collect();
    paginate(
        &base,
        &format!("/repos/{owner}/{repo}/deployments"),
        &params,
        items,
    )
}

async fn deployment_statuses(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let now = state.now();
    let Some(d) = found.history.and_then(|h| {
        github_deployments(h, now)
            .into_iter()
            .find(|d| d.upstream_id == id)
    }) else {
        return not_found();
    };
    let base = api_base(&headers);
    let api = format!("{base}/repos/{}", found.full_name);
    let status = |k: u64, state_name: &str, at: DateTime<Utc>| {
        let status_id = d.upstream_id * 10 + k;
        json!({
            "url": format!("{api}/deployments/{id}/statuses/{status_id}"), "id": status_id, "node_id": format!("DES_{status_id}"),
            "state": state_name, "creator": user(&base, "deploy-bot"), "description": format!("Deployment {state_name}"),
            "environment": d.environment, "target_url": format!("https://ci.acme.example/deploys/{id}"),
            "created_at": rfc3339(at), "updated_at": rfc3339(at),
            "deployment_url": format!("{api}/deployments/{id}"), "repository_url": api,
            "environment_url": format!("https://{}.acme.example", d.environment),
            "log_url": format!("https://ci.acme.example/deploys/{id}/log"),
        })
    };
    let mut items = vec![status(1, "in_progress", d.started_at)];
    if d.finished_at <= now {
        items.push(status(
            2,
            if d.job_succeeded {
                "success"
            } else {
                "failure"
            },
            d.finished_at,
        ));
    }
    // Newest first.
    items.reverse();
    paginate(
        &base,
        &format!("/repos/{owner}/{repo}/deployments/{id}/statuses"),
        &params,
        items,
    )
}

async fn rate_limit(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let budget = state.options.github_rate;
    let remaining = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|token| {
            state
                .github_rate
                .used
                .lock()
                .ok()
                .and_then(|t| t.get(token).copied())
        })
        .map_or((epoch_now(), 0), |entry| entry);
    let core = json!({
        "limit": budget.limit, "used": remaining.1, "remaining": budget.limit.saturating_sub(remaining.1),
        "reset": remaining.0 + budget.window_seconds, "resource": "core",
    });
    // The other budgets are GitHub's defaults; only `core` is simulated.
    let mut resources = serde_json::Map::new();
    resources.insert("core".into(), core.clone());
    for (name, limit) in [
        ("search", 30),
        ("graphql", 5_000),
        ("integration_manifest", 5_000),
        ("source_import", 100),
        ("code_scanning_upload", 1_000),
        ("code_scanning_autofix", 10),
        ("actions_runner_registration", 10_000),
        ("scim", 15_000),
        ("dependency_snapshots", 100),
        ("audit_log", 1_750),
        ("audit_log_streaming", 15),
        ("code_search", 10),
    ] {
        resources.insert(
            name.into(),
            json!({"limit": limit, "used": 0, "remaining": limit, "reset": remaining.0 + budget.window_seconds, "resource": name}),
        );
    }
    axum::Json(json!({"resources": resources, "rate": core})).into_response()
}

/// Workflow ids of the two workflows every repository has.
const CI_WORKFLOW: u64 = 1;
const DEPLOY_WORKFLOW: u64 = 2;

async fn workflow_runs(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let base = api_base(&headers);
    let api = format!("{base}/repos/{}", found.full_name);
    let now = state.now();
    let repo_value = repo_json(&base, &found, now);
    let mut runs: Vec<(DateTime<Utc>, u64, Value)> = Vec::new();
    if let Some(history) = found.history {
        let run = |id: u64,
                   workflow: u64,
                   event: &str,
                   commit: &Commit,
                   started: DateTime<Utc>,
                   finished: DateTime<Utc>,
                   ok: bool| {
            let done = finished <= now;
            json!({
                "id": id, "node_id": format!("WFR_{id}"), "head_branch": "main", "head_sha": commit.sha,
                "run_number": id % 1_000_000, "event": event,
                "name": if workflow == DEPLOY_WORKFLOW { "Deploy" } else { "CI" },
                "path": if workflow == DEPLOY_WORKFLOW { ".github/workflows/deploy.yml" } else { ".github/workflows/ci.yml" },
                "display_title": commit.message,
                "run_started_at": rfc3339(started),
                "actor": {"login": if workflow == DEPLOY_WORKFLOW { "deploy-bot" } else { commit.author_login.as_str() }},
                "status": if done { "completed" } else { "in_progress" },
                "conclusion": if !done { Value::Null } else if ok { json!("success") } else { json!("failure") },
                "workflow_id": found.id * 10 + workflow,
                "url": format!("{api}/actions/runs/{id}"), "html_url": format!("https://github.com/{}/actions/runs/{id}", found.full_name),
                "pull_requests": [], "created_at": rfc3339(started), "updated_at": rfc3339(if done { finished } else { started }),
                "jobs_url": format!("{api}/actions/runs/{id}/jobs"), "logs_url": format!("{api}/actions/runs/{id}/logs"),
                "check_suite_url": format!("{api}/check-suites/{id}"), "artifacts_url": format!("{api}/actions/runs/{id}/artifacts"),
                "cancel_url": format!("{api}/actions/runs/{id}/cancel"), "rerun_url": format!("{api}/actions/runs/{id}/rerun"),
                "workflow_url": format!("{api}/actions/workflows/{}", found.id * 10 + workflow),
                "head_commit": {
                    "id": commit.sha, "tree_id": format!("{:040x}", fnv(commit.sha.as_bytes())), "message": commit.message,
                    "timestamp": rfc3339(commit.committed_at),
                    "author": {"name": commit.author_login, "email": format!("{}@acme.example", commit.author_login)},
                    "committer": {"name": "GitHub", "email": "noreply@github.com"},
                },
                "repository": repo_value, "head_repository": repo_value,
            })
        };
        // CI on every commit that reaches main (merge commits and pushes).
        for commit in history
            .commits
            .iter()
            .filter(|c| c.is_merge || c.pull_request.is_none())
        {
            let started = commit.committed_at + chrono::Duration::seconds(20);
            if started > now {
                continue;
            }
            let finished =
                started + chrono::Duration::seconds(240 + i64::from(commit.seq % 7) * 30);
            let id = found.id * 1_000_000 + u64::from(commit.seq) * 2;
            runs.push((
                started,
                id,
                run(
                    id,
                    CI_WORKFLOW,
                    "push",
                    commit,
                    started,
                    finished,
                    commit.seq % 17 != 3,
                ),
            ));
        }
        // The deploy workflow behind each GitHub deployment.
        for deployment in github_deployments(history, now) {
            let Some(commit) = history
                .commits
                .iter()
                .find(|c| c.sha == deployment.revision)
            else {
                continue;
            };
            let id = found.id * 1_000_000
                + u64::from(commit.seq) * 2
                + 1
                + deployment.upstream_id % 1_000 * 10_000_000;
            let event = if deployment.is_rollback {
                "workflow_dispatch"
            } else {
                "deployment"
            };
            runs.push((
                deployment.started_at,
                id,
                run(
                    id,
                    DEPLOY_WORKFLOW,
                    event,
                    commit,
                    deployment.started_at,
                    deployment.finished_at,
                    deployment.job_succeeded,
                ),
            ));
        }
    }
    // Newest first.
    runs.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let total = runs.len();
    let per_page = param(&params, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = param(&params, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let items: Vec<Value> = runs
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(_, _, v)| v)
        .collect();
    let mut response =
        axum::Json(json!({"total_count": total, "workflow_runs": items})).into_response();
    if page * per_page < total
        && let Ok(value) = HeaderValue::from_str(&format!(
            "<{base}/repositories/{}/actions/runs?per_page={per_page}&page={}>; rel=\"next\", <{base}/repositories/{}/actions/runs?per_page={per_page}&page={}>; rel=\"last\"",
            found.id,
            page + 1,
            found.id,
            total.div_ceil(per_page)
        ))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

/// `GET /repos/{owner}/{repo}/contents/{path}`: the repository's
/// `catalog-info.yaml` (its component, as a Backstage descriptor), base64
/// in lines of 60 like GitHub sends it; 404 for any other path and for
/// repositories no component claims.
async fn contents(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((owner, repo, path)): Path<(String, String, String)>,
) -> Response {
    let Some(found) = find_repo(&state, &owner, &repo) else {
        return not_found();
    };
    let world = state.world();
    let component = world
        .org
        .components
        .iter()
        .position(|c| c.repo.eq_ignore_ascii_case(&found.full_name));
    let entity = component.and_then(|idx| {
        let name = &world.org.components[idx].name;
        state
            .catalog
            .iter()
            .find(|e| e["kind"] == "Component" && e["metadata"]["name"] == name.as_str())
    });
    let (Some(entity), "catalog-info.yaml") = (entity, path.as_str()) else {
        return not_found();
    };
    // A descriptor as people write it: no server-side fields.
    let mut descriptor = entity.clone();
    descriptor.as_object_mut().map(|o| o.remove("relations"));
    if let Some(metadata) = descriptor["metadata"].as_object_mut() {
        for key in ["uid", "etag", "generation", "namespace"] {
            metadata.remove(key);
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.retain(|k, _| !k.starts_with("backstage.io/managed-by"));
        }
    }
    let Ok(yaml) = serde_norway::to_string(&descriptor) else {
        return github_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot render the descriptor",
        );
    };
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(yaml.as_bytes());
    let content: String = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let base = api_base(&headers);
    let sha = format!("{:040x}", fnv(yaml.as_bytes()));
    axum::Json(json!({
        "type": "file", "encoding": "base64", "size": yaml.len(), "name": "catalog-info.yaml",
        "path": "catalog-info.yaml", "content": content, "sha": sha,
        "url": format!("{base}/repos/{}/contents/catalog-info.yaml?ref=main", found.full_name),
        "git_url": format!("{base}/repos/{}/git/blobs/{sha}", found.full_name),
        "html_url": format!("https://github.com/{}/blob/main/catalog-info.yaml", found.full_name),
        "download_url": format!("https://raw.githubusercontent.com/{}/main/catalog-info.yaml", found.full_name),
        "_links": {"self": format!("{base}/repos/{}/contents/catalog-info.yaml?ref=main", found.full_name)},
    }))
    .into_response()
}
