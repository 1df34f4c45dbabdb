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
use axum::middleware::{self};
use axum::routing::get;

use super::SimState;

mod auth;
mod deploys;
mod pulls;
mod repos;

use self::auth::{github_layer, installation_token, org_installation, rate_limit};
use self::deploys::{compare, deployment_statuses, deployments, workflow_runs};
use self::pulls::{pull, pull_commits, pull_reviews, pulls};
use self::repos::{commits, commits_by_id, contents, org_repos, workflow_runs_by_id};

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
