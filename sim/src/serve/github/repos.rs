//! Repositories, commits and catalog descriptors, with the helpers every
//! resource shares (pagination, users, lookups).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::super::{SimState, Upstream};
use super::auth::github_error;
use super::deploys::workflow_runs;
use crate::world::{Commit, ServiceHistory, rfc3339};

pub(super) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The API base URL as the client reached it (links must lead back here).
pub(super) fn api_base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}{}", Upstream::Github.prefix())
}

pub(super) fn user_id(login: &str) -> u64 {
    fnv(login.as_bytes()) % 90_000_000 + 1_000_000
}

pub(super) fn user(base: &str, login: &str) -> Value {
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

pub(super) struct RepoRef<'a> {
    pub(super) id: u64,
    pub(super) full_name: String,
    pub(super) history: Option<&'a ServiceHistory>,
    pub(super) created_at: DateTime<Utc>,
}

pub(super) fn repos(state: &SimState) -> Vec<RepoRef<'_>> {
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

pub(super) fn repo_json(base: &str, repo: &RepoRef<'_>, now: DateTime<Utc>) -> Value {
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
pub(super) fn paginate(
    base: &str,
    path: &str,
    params: &[(String, String)],
    items: Vec<Value>,
) -> Response {
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

pub(super) fn find_repo<'a>(state: &'a SimState, owner: &str, repo: &str) -> Option<RepoRef<'a>> {
    let full = format!("{owner}/{repo}").to_ascii_lowercase();
    repos(state)
        .into_iter()
        .find(|r| r.full_name.to_ascii_lowercase() == full)
}

pub(super) fn not_found() -> Response {
    github_error(StatusCode::NOT_FOUND, "Not Found")
}

pub(super) async fn org_repos(
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

pub(super) fn commit_json(
    base: &str,
    full: &str,
    commit: &Commit,
    parent: Option<&Commit>,
) -> Value {
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

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(super) fn parse_time(value: Option<&str>) -> Option<DateTime<Utc>> {
    value
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `owner/repo` of the repository with this id: next-page links of commit
/// lists and workflow runs address repositories by id, as GitHub's do.
pub(super) fn path_of_repository(state: &SimState, id: u64) -> Option<Path<(String, String)>> {
    let full = repos(state).into_iter().find(|r| r.id == id)?.full_name;
    let (owner, repo) = full.split_once('/')?;
    Some(Path((owner.to_owned(), repo.to_owned())))
}

pub(super) async fn commits_by_id(
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

pub(super) async fn workflow_runs_by_id(
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

pub(super) async fn commits(
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

/// `GET /repos/{owner}/{repo}/contents/{path}`: the repository's
/// `catalog-info.yaml` (its component, as a Backstage descriptor), base64
/// in lines of 60 like GitHub sends it; 404 for any other path and for
/// repositories no component claims.
pub(super) async fn contents(
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
