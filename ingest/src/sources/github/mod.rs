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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runner::DEFAULT_PRODUCTION_PATTERN;
use crate::source::{CommonConfig, json_kind};

mod auth;
mod decode;
mod deploys;
mod fetch;
mod pulls;

pub(crate) use self::auth::client;
pub(crate) use self::decode::decode;
pub(crate) use self::fetch::fetch;

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

crate::source::api_source!(GithubConfig, fathom_models::tables::RAW_GITHUB);
