//! Argo CD: applications (`GET /api/v1/applications`, bearer token) and
//! their `status.history` → `deployments`, one row per history entry
//! (`argocd:<app>:<history id>`), plus the failed last operation
//! (`argocd:<app>:failed:<started epoch>`), which Argo CD keeps nowhere
//! else.
//!
//! Argo CD keeps only `revisionHistoryLimit` entries: a poller that falls
//! behind loses deployments for good. The cursor remembers the newest
//! history id seen per application, so a gap is reported, never silent.
//! A rollback is a sync to a revision deployed before the previous one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fathom_models::tables::DEPLOYMENTS;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::{HttpClient, ResetStyle};
use crate::source::{
    Collector, CommonConfig, Decoded, FetchContext, Identity, Payload, SourceError, opt_str,
    req_i64, req_str, send,
};

/// Streams, in order.
pub const STREAMS: &[&str] = &["applications"];

/// `[[sources]] type = "argocd"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgoCdConfig {
    /// Name, base URL (the API server, e.g. `https://argocd.example.com`),
    /// credential and HTTP policy.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Label selector limiting the applications read. Default: all.
    #[serde(default)]
    pub selector: Option<String>,
    /// Application label holding the environment. Default `environment`.
    #[serde(default = "default_environment_label")]
    pub environment_label: String,
    /// Environment of applications without that label: the first rule
    /// whose `pattern` (a regex) matches the application name wins; else
    /// `production`.
    #[serde(default)]
    pub environment_rules: Vec<EnvironmentRule>,
    /// Name of this Argo CD instance, for organisations with several:
    /// deployment ids become `argocd:<instance>/<app>:<id>` so equally named
    /// applications on two instances stay apart. Default: none
    /// (`argocd:<app>:<id>`).
    #[serde(default)]
    pub instance: Option<String>,
}

/// Maps application names to an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRule {
    /// Regular expression on the application name.
    pub pattern: String,
    /// Environment it means.
    pub environment: String,
}

fn default_environment_label() -> String {
    "environment".to_owned()
}

pub(crate) fn client(config: &ArgoCdConfig, name: &str) -> Result<HttpClient, SourceError> {
    let token = config.common.secret(name)?;
    Ok(HttpClient::new(
        name,
        config.common.http.clone(),
        &[("authorization", format!("Bearer {token}"))],
        ResetStyle::SecondsFromNow,
    )?)
}

/// Newest history id seen per application.
type Seen = BTreeMap<String, i64>;

pub(crate) async fn fetch(
    config: &ArgoCdConfig,
    client: &HttpClient,
    stream: &str,
    cursor: Option<&str>,
    _ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let base = config.common.base(None, client.upstream())?;
    let mut url = format!("{base}/api/v1/applications");
    if let Some(selector) = &config.selector {
        url.push_str("?selector=");
        url.extend(url::form_urlencoded::byte_serialize(selector.as_bytes()));
    }
    let fetched = client.get(&url, None).await?;
    send(out, stream, "applications", &url, &fetched).await?;
    let mut seen: Seen = cursor
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    if let Ok(body) = serde_json::from_slice::<Value>(&fetched.body) {
        for app in body
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = app.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let ids: Vec<i64> = app
                .pointer("/status/history")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|h| h.get("id").and_then(Value::as_i64))
                .collect();
            let (Some(&oldest), Some(&newest)) = (ids.iter().min(), ids.iter().max()) else {
                continue;
            };
            if let Some(&last) = seen.get(name)
                && oldest > last + 1
            {
                out.warn(format!(
                    "application `{name}`: history entries {}..={} were dropped by Argo CD (revisionHistoryLimit) before they were read; those deployments are missing — poll more often or raise the limit",
                    last + 1,
                    oldest - 1
                ))
                .await?;
            }
            let entry = seen.entry(name.to_owned()).or_insert(newest);
            *entry = (*entry).max(newest);
        }
    }
    Ok(Some(serde_json::to_string(&seen).unwrap_or_default()))
}

pub(crate) fn decode(config: &ArgoCdConfig, _stream: &str, payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    for payload in payloads {
        let Some(body) = decoded.parse(payload) else {
            continue;
        };
        // Argo CD sends `"items": null` when nothing matches.
        let items = match body.get("items") {
            Some(Value::Array(items)) => items.as_slice(),
            Some(Value::Null) => &[],
            _ => {
                decoded.reject(
                    payload,
                    None,
                    "the answer has no `items` list".to_owned(),
                    &body,
                );
                continue;
            }
        };
        for (i, app) in items.iter().enumerate() {
            if let Err(reason) = application(config, app, &mut decoded) {
                decoded.reject(payload, Some(i as i64 + 1), reason, app);
            }
        }
    }
    decoded
}

/// `owner/name` of a GitHub repository URL (https or ssh, with or without
/// `.git`).
pub fn github_slug(repo_url: &str) -> Option<String> {
    let rest = repo_url
        .strip_prefix("https://github.com/")
        .or_else(|| repo_url.strip_prefix("http://github.com/"))
        .or_else(|| repo_url.strip_prefix("git@github.com:"))
        .or_else(|| repo_url.strip_prefix("ssh://git@github.com/"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let (owner, name) = rest.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| format!("{owner}/{name}").to_ascii_lowercase())
}

fn environment(config: &ArgoCdConfig, app: &Value, name: &str) -> Result<String, String> {
    let label = app
        .pointer("/metadata/labels")
        .and_then(|l| l.get(&config.environment_label))
        .and_then(Value::as_str);
    if let Some(label) = label {
        return Ok(label.to_owned());
    }
    for rule in &config.environment_rules {
        let regex = regex::Regex::new(&rule.pattern).map_err(|e| {
            format!(
                "environment rule {:?} is not a valid regex: {e}",
                rule.pattern
            )
        })?;
        if regex.is_match(name) {
            return Ok(rule.environment.clone());
        }
    }
    Ok("production".to_owned())
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn application(config: &ArgoCdConfig, app: &Value, decoded: &mut Decoded) -> Result<(), String> {
    crate::source::require_keys(app, &["metadata", "status"])?;
    // An application that has deployed always has a spec (its source and
    // destination); without one its deployments would lose their repository.
    if app
        .pointer("/status/history")
        .and_then(Value::as_array)
        .is_some_and(|h| !h.is_empty())
    {
        crate::source::require_keys(app, &["spec"])?;
    }
    let name = req_str(app, "/metadata/name")?;
    let qualified = match &config.instance {
        Some(instance) => format!("{instance}/{name}"),
        None => name.to_owned(),
    };
    let environment = environment(config, app, name)?;
    // Multi-source applications list `spec.sources`; the first with a
    // GitHub URL is the application's code.
    let repo_url = match opt_str(app, "/spec/source/repoURL")? {
        Some(url) => Some(url.to_owned()),
        None => app
            .pointer("/spec/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("repoURL").and_then(Value::as_str))
            .find(|u| github_slug(u).is_some())
            .map(str::to_owned),
    };
    let slug = repo_url.as_deref().and_then(github_slug);
    let mut identity = vec![Identity::ArgoApp(name.to_owned())];
    if let Some(slug) = &slug {
        identity.push(Identity::Repository(slug.clone()));
    }
    let history = match app.pointer("/status/history") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(history)) => history.clone(),
        Some(other) => {
            return Err(format!(
                "`status.history` should be a list, found {}",
                crate::source::json_kind(other)
            ));
        }
    };
    let mut entries: Vec<(i64, &Value)> = Vec::new();
    for entry in &history {
        entries.push((req_i64(entry, "/id")?, entry));
    }
    entries.sort_by_key(|(id, _)| *id);
    let mut revisions: Vec<String> = Vec::new();
    for (id, entry) in &entries {
        let revision = req_str(entry, "/revision")?.to_owned();
        let finished = req_str(entry, "/deployedAt")?;
        let finished_at = parse_time(Some(finished))
            .ok_or_else(|| format!("`deployedAt` {finished:?} is not a time"))?;
        let started_at = parse_time(opt_str(entry, "/deployStartedAt")?).unwrap_or(finished_at);
        // A sync back to an older state: a revision first deployed before
        // the one running. Re-deploying a revision that was rolled back
        // (it first ran after the one running now) moves forward again.
        let first_deployed = |r: &String| revisions.iter().position(|x| x == r);
        let is_rollback = match (revisions.last(), first_deployed(&revision)) {
            (Some(current), Some(earlier)) if *current != revision => {
                first_deployed(current).is_some_and(|running| earlier < running)
            }
            _ => false,
        };
        revisions.push(revision.clone());
        let mut values = Map::new();
        values.insert(
            "deployment_id".into(),
            json!(format!("argocd:{qualified}:{id}")),
        );
        values.insert("source".into(), json!("argocd"));
        values.insert("service_name".into(), json!(name));
        values.insert("environment".into(), json!(environment));
        values.insert("status".into(), json!("success"));
        values.insert("revision".into(), json!(revision));
        values.insert(
            "repository_id".into(),
            json!(slug.as_ref().map(|s| format!("github:{s}"))),
        );
        values.insert("started_at".into(), json!(started_at.to_rfc3339()));
        values.insert("finished_at".into(), json!(finished_at.to_rfc3339()));
        values.insert(
            "duration_seconds".into(),
            json!((finished_at - started_at).num_milliseconds() as f64 / 1000.0),
        );
        values.insert("is_rollback".into(), json!(is_rollback));
        values.insert(
            "triggered_by".into(),
            json!(opt_str(entry, "/initiatedBy/username")?),
        );
        decoded.row(&DEPLOYMENTS, values, identity.clone());
    }
    // The last operation, when it failed: the only trace of a failed sync.
    if let Some(phase) = opt_str(app, "/status/operationState/phase")?
        && matches!(phase, "Failed" | "Error")
    {
        let started = req_str(app, "/status/operationState/startedAt")?;
        let started_at = parse_time(Some(started))
            .ok_or_else(|| format!("`startedAt` {started:?} is not a time"))?;
        let finished_at = parse_time(opt_str(app, "/status/operationState/finishedAt")?);
        let mut values = Map::new();
        values.insert(
            "deployment_id".into(),
            json!(format!(
                "argocd:{qualified}:failed:{}",
                started_at.timestamp()
            )),
        );
        values.insert("source".into(), json!("argocd"));
        values.insert("service_name".into(), json!(name));
        values.insert("environment".into(), json!(environment));
        values.insert("status".into(), json!("failure"));
        values.insert(
            "revision".into(),
            json!(opt_str(
                app,
                "/status/operationState/operation/sync/revision"
            )?),
        );
        values.insert(
            "repository_id".into(),
            json!(slug.as_ref().map(|s| format!("github:{s}"))),
        );
        values.insert("started_at".into(), json!(started_at.to_rfc3339()));
        values.insert(
            "finished_at".into(),
            json!(finished_at.map(|t| t.to_rfc3339())),
        );
        values.insert(
            "duration_seconds".into(),
            json!(finished_at.map(|f| (f - started_at).num_milliseconds() as f64 / 1000.0)),
        );
        values.insert("is_rollback".into(), json!(false));
        values.insert(
            "triggered_by".into(),
            json!(opt_str(
                app,
                "/status/operationState/operation/initiatedBy/username"
            )?),
        );
        decoded.row(&DEPLOYMENTS, values, identity);
    }
    Ok(())
}

crate::source::api_source!(ArgoCdConfig, fathom_models::tables::RAW_ARGOCD);
