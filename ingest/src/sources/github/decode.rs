//! Decoding GitHub payloads into rows: the dispatch by stream, repositories,
//! commits and catalog descriptors.

use fathom_models::tables::{COMMITS, REPOSITORIES};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::GithubConfig;
use super::deploys::{decode_changes, decode_deployments, decode_workflow_runs};
use super::pulls::decode_pulls;
use crate::source::{Decoded, Identity, Payload, json_kind, opt_str, req_str, require_keys};

/// The path of a request after the API base, e.g. `/repos/a/b/pulls/3`.
pub(super) fn request_path(payload: &Payload) -> &str {
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
pub(super) fn each<'a>(
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

pub(super) fn decode_repos(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
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
pub(super) fn repo_of(payload: &Payload) -> Option<String> {
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

pub(super) fn first_line(message: Option<&str>) -> Option<String> {
    message.map(|m| m.lines().next().unwrap_or_default().to_owned())
}

pub(super) fn commit_values(repo: &str, commit: &Value) -> Result<Map<String, Value>, String> {
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

pub(super) fn decode_commits(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
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

/// `catalog-info.yaml` answers: base64 YAML, possibly several documents,
/// decoded like catalog entities. A component without a
/// `github.com/project-slug` annotation is claimed by the repository it
/// lives in.
pub(super) fn decode_descriptors(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
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
            if let Err(reason) =
                crate::sources::backstage::entity(&item, decoded, "github-discovery")
            {
                decoded.reject(payload, position, reason, &item);
            }
        }
    }
}
