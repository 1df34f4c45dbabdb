//! Pull requests: list, single, commits and reviews.

use super::super::SimState;

use super::repos::{
    RepoRef, api_base, commit_json, find_repo, fnv, not_found, paginate, param, repo_json, user,
};
use crate::world::Commit;
use crate::world::PullRequest;
use crate::world::ServiceHistory;
use crate::world::rfc3339;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::Response;
use chrono::DateTime;
use chrono::Utc;
use serde_json::Value;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) fn visible_pulls(history: &ServiceHistory, now: DateTime<Utc>) -> Vec<&PullRequest> {
    history
        .pull_requests
        .iter()
        .filter(|p| p.created_at <= now)
        .collect()
}

pub(super) fn pull_json(
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

pub(super) async fn pulls(
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

pub(super) fn find_pull(
    history: &ServiceHistory,
    number: u64,
    now: DateTime<Utc>,
) -> Option<&PullRequest> {
    history
        .pull_requests
        .iter()
        .find(|p| p.number == number && p.created_at <= now)
}

pub(super) async fn pull(
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

pub(super) async fn pull_commits(
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

pub(super) async fn pull_reviews(
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
