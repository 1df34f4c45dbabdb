//! Deployments and their statuses, compare (change sets) and Actions workflow
//! runs.

use super::super::SimState;

use super::repos::{
    api_base, commit_json, find_repo, fnv, not_found, paginate, param, repo_json, user,
};
use crate::world::Commit;
use crate::world::DeploySource;
use crate::world::Deployment;
use crate::world::ServiceHistory;
use crate::world::rfc3339;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use chrono::DateTime;
use chrono::Utc;
use serde_json::Value;
use serde_json::json;
use std::sync::Arc;

pub(super) async fn compare(
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

pub(super) fn github_deployments(history: &ServiceHistory, now: DateTime<Utc>) -> Vec<&Deployment> {
    history
        .deployments
        .iter()
        .filter(|d| d.source == DeploySource::GithubDeployments && d.started_at <= now)
        .collect()
}

pub(super) fn deployment_json(base: &str, full: &str, d: &Deployment, now: DateTime<Utc>) -> Value {
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

pub(super) async fn deployments(
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

pub(super) async fn deployment_statuses(
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

/// Workflow ids of the two workflows every repository has.
pub(super) const CI_WORKFLOW: u64 = 1;
pub(super) const DEPLOY_WORKFLOW: u64 = 2;

pub(super) async fn workflow_runs(
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
