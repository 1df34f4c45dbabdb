//! Argo CD API server: `GET /api/v1/applications` (with `name` and label
//! `selector`) and `GET /api/v1/applications/{name}`.
//!
//! History is what the controller keeps: successful syncs only, capped at
//! the application's `revisionHistoryLimit` (10 by default), as of the
//! simulated now — so a poller that comes back too late has lost entries.
//! A failed or running sync shows only as the last `operationState`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{SimState, Upstream, check_bearer, faults::status_response};
use crate::world::{DeploySource, Deployment, rfc3339};

pub(super) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v1/applications", get(list))
        .route("/api/v1/applications/{name}", get(one))
}

/// Argo CD's default `revisionHistoryLimit`.
pub const HISTORY_LIMIT: usize = 10;

/// One application and the syncs it ran.
struct App<'a> {
    name: String,
    component: usize,
    environment: String,
    syncs: Vec<&'a Deployment>,
}

fn apps(state: &SimState) -> Vec<App<'_>> {
    let world = state.world();
    let mut apps: BTreeMap<String, App<'_>> = BTreeMap::new();
    for history in &world.histories {
        for deployment in history
            .deployments
            .iter()
            .filter(|d| d.source == DeploySource::ArgoCd)
        {
            apps.entry(deployment.app.clone())
                .or_insert_with(|| App {
                    name: deployment.app.clone(),
                    component: history.component,
                    environment: deployment.environment.clone(),
                    syncs: Vec::new(),
                })
                .syncs
                .push(deployment);
        }
    }
    apps.into_values().collect()
}

fn labels(state: &SimState, app: &App<'_>) -> BTreeMap<String, String> {
    let org = &state.world().org;
    let component = &org.components[app.component];
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), component.name.clone()),
        ("environment".to_owned(), app.environment.clone()),
        ("team".to_owned(), org.teams[component.team].name.clone()),
    ])
}

fn application(state: &SimState, app: &App<'_>, now: DateTime<Utc>) -> Value {
    let org = &state.world().org;
    let component = &org.components[app.component];
    let source = json!({
        "repoURL": format!("https://github.com/{}.git", component.repo),
        "path": format!("deploy/{}", app.environment),
        "targetRevision": "HEAD",
    });
    let destination =
        json!({"server": "https://kubernetes.default.svc", "namespace": component.k8s_namespace});
    let started: Vec<&&Deployment> = app.syncs.iter().filter(|d| d.started_at <= now).collect();
    let succeeded: Vec<&&&Deployment> = started
        .iter()
        .filter(|d| d.job_succeeded && d.finished_at <= now)
        .collect();
    let history: Vec<Value> = succeeded
        .iter()
        .skip(
            succeeded
                .len()
                .saturating_sub(state.options.argocd_history_limit),
        )
        .map(|d| {
            json!({
                "revision": d.revision,
                "deployedAt": rfc3339(d.finished_at),
                "id": d.upstream_id,
                "source": source,
                "deployStartedAt": rfc3339(d.started_at),
                "initiatedBy": json!({"username": if d.is_rollback { "oncall" } else { "ci-bot" }}),
            })
        })
        .collect();
    let current = succeeded.last();
    let last = started.last();
    let running = last.is_some_and(|d| d.finished_at > now);
    let operation_state = last.map(|d| {
        let (phase, message) = if running {
            ("Running", "one or more tasks are running")
        } else if d.job_succeeded {
            ("Succeeded", "successfully synced (all tasks run)")
        } else {
            (
                "Failed",
                "one or more objects failed to apply, reason: admission webhook denied the request",
            )
        };
        let mut operation_state = json!({
            "operation": {
                "sync": {"revision": d.revision, "syncStrategy": {"hook": {}}},
                "initiatedBy": json!({"username": if d.is_rollback { "oncall" } else { "ci-bot" }}),
                "retry": {},
            },
            "phase": phase,
            "message": message,
            "syncResult": {
                "resources": [{
                    "group": "apps", "version": "v1", "kind": "Deployment",
                    "namespace": component.k8s_namespace, "name": component.name,
                    "status": if phase == "Failed" { "SyncFailed" } else { "Synced" },
                    "message": format!("deployment.apps/{} configured", component.name),
                    "hookPhase": phase, "syncPhase": "Sync",
                }],
                "revision": d.revision,
                "source": source,
            },
            "startedAt": rfc3339(d.started_at),
        });
        if !running {
            operation_state["finishedAt"] = json!(rfc3339(d.finished_at));
        }
        operation_state
    });
    let in_sync = !running && last.is_some_and(|d| d.job_succeeded);
    let first_seen = app.syncs.first().map_or(now, |d| d.started_at);
    let mut status = json!({
        "resources": [{
            "group": "apps", "version": "v1", "kind": "Deployment",
            "namespace": component.k8s_namespace, "name": component.name,
            "status": if in_sync { "Synced" } else { "OutOfSync" },
            "health": {"status": if running { "Progressing" } else { "Healthy" }},
        }],
        "sync": {
            "status": if in_sync { "Synced" } else { "OutOfSync" },
            "comparedTo": {"source": source, "destination": destination},
            "revision": current.map(|d| d.revision.clone()).unwrap_or_default(),
        },
        "health": {"status": if running { "Progressing" } else { "Healthy" }},
        "history": history,
        "reconciledAt": rfc3339(now),
        // Deprecated upstream but still sent; old clients read it.
        "observedAt": rfc3339(now),
        "sourceType": "Kustomize",
        "summary": {"images": [format!("registry.acme.example/{}:{}", component.name,
            current.map(|d| d.revision.get(..7).unwrap_or_default().to_owned()).unwrap_or_default())]},
    });
    if let Some(operation_state) = operation_state {
        status["operationState"] = operation_state;
    }
    let generation = started.len() as u64 + 1;
    json!({
        "metadata": {
            "name": app.name,
            "namespace": "argocd",
            "uid": format!("{:08x}-0000-4000-a000-{:012x}", app.component, app.name.len() as u64 * 7919 + app.component as u64),
            "resourceVersion": (generation * 37).to_string(),
            "generation": generation,
            "creationTimestamp": rfc3339(first_seen),
            "labels": labels(state, app),
        },
        "spec": {
            "source": source,
            "destination": destination,
            "project": "default",
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
            "revisionHistoryLimit": state.options.argocd_history_limit,
        },
        "status": status,
    })
}

/// `key=value` label selectors joined by commas; all must hold.
fn selected(labels: &BTreeMap<String, String>, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .all(|term| match term.split_once("!=") {
            Some((key, value)) => labels.get(key.trim()).is_none_or(|v| v != value.trim()),
            None => match term.split_once('=') {
                Some((key, value)) => labels
                    .get(key.trim())
                    .is_some_and(|v| v == value.trim_start_matches('=').trim()),
                None => labels.contains_key(term.trim()),
            },
        })
}

async fn list(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = check_bearer(
        Upstream::ArgoCd,
        &headers,
        &state.options.credentials.argocd_token,
    ) {
        return response;
    }
    let now = state.now();
    let name = params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str());
    let selector = params
        .iter()
        .find(|(k, _)| k == "selector")
        .map(|(_, v)| v.as_str());
    let items: Vec<Value> = apps(&state)
        .iter()
        .filter(|app| app.syncs.first().is_some_and(|d| d.started_at <= now))
        .filter(|app| name.is_none_or(|n| n == app.name))
        .filter(|app| selector.is_none_or(|s| selected(&labels(&state, app), s)))
        .map(|app| application(&state, app, now))
        .collect();
    // Argo CD sends `null`, not `[]`, when nothing matches.
    let items = if items.is_empty() {
        Value::Null
    } else {
        Value::Array(items)
    };
    let resource_version = (now.timestamp() / 60).to_string();
    axum::Json(json!({"metadata": {"resourceVersion": resource_version}, "items": items}))
        .into_response()
}

async fn one(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(response) = check_bearer(
        Upstream::ArgoCd,
        &headers,
        &state.options.credentials.argocd_token,
    ) {
        return response;
    }
    let now = state.now();
    match apps(&state)
        .iter()
        .find(|app| app.name == name && app.syncs.first().is_some_and(|d| d.started_at <= now))
    {
        Some(app) => axum::Json(application(&state, app, now)).into_response(),
        None => status_response(
            Upstream::ArgoCd,
            StatusCode::NOT_FOUND,
            &format!("applications.argoproj.io \"{name}\" not found"),
        ),
    }
}
