//! Decoding deployments with their statuses, change sets and workflow runs.

use std::collections::{BTreeSet, HashMap};

use chrono::DateTime;
use fathom_models::tables::{DEPLOYMENT_CHANGES, DEPLOYMENTS};
use serde_json::{Map, Value, json};

use super::GithubConfig;
use super::decode::{each, repo_of, request_path};
use super::fetch::{is_final, time_at};
use crate::source::{Decoded, Identity, Payload, opt_str, req_i64, req_str, require_keys};

pub(super) fn decode_deployments(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
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

pub(super) fn decode_changes(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
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

pub(super) fn decode_workflow_runs(
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
