//! The GitHub client: token or GitHub App authentication (installation tokens
//! minted and renewed).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{DEFAULT_BASE, GithubConfig};
use crate::http::{HttpClient, HttpError, MintFuture, MintedToken, ResetStyle, TokenSource};
use crate::source::SourceError;

pub(crate) fn client(config: &GithubConfig, name: &str) -> Result<HttpClient, SourceError> {
    if config.orgs.is_empty() {
        return Err(SourceError::Config {
            source_name: name.to_owned(),
            message: "`orgs` is empty; list the organisations to read".to_owned(),
        });
    }
    let version = ("x-github-api-version", API_VERSION.to_owned());
    let Some(app) = &config.app else {
        let token = config.common.secret(name)?;
        return Ok(HttpClient::new(
            name,
            config.common.http.clone(),
            &[("authorization", format!("Bearer {token}")), version],
            ResetStyle::EpochSeconds,
        )?);
    };
    let config_error = |message: String| SourceError::Config {
        source_name: name.to_owned(),
        message,
    };
    let [org] = config.orgs.as_slice() else {
        return Err(config_error(
            "with `app`, list exactly one organisation: an installation token reads one organisation (configure one source per organisation)".to_owned(),
        ));
    };
    let pem = match (&app.private_key_path, &app.private_key_env) {
        (Some(path), None) => std::fs::read(path)
            .map_err(|e| config_error(format!("app.private_key_path {}: {e}", path.display())))?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| {
                config_error(format!(
                    "environment variable `{var}` (app.private_key_env) is not set"
                ))
            })?
            .into_bytes(),
        _ => {
            return Err(config_error(
                "app: set exactly one of `private_key_path` and `private_key_env`".to_owned(),
            ));
        }
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
        config_error(format!(
            "app private key is not an RSA key in PEM format: {e}"
        ))
    })?;
    let minter = AppTokens {
        upstream: name.to_owned(),
        base: config.common.base(Some(DEFAULT_BASE), name)?,
        org: org.clone(),
        app_id: app.app_id.clone(),
        installation_id: app.installation_id,
        key,
        policy: config.common.http.clone(),
    };
    Ok(HttpClient::new(
        name,
        config.common.http.clone(),
        &[version],
        ResetStyle::EpochSeconds,
    )?
    .with_token_source(std::sync::Arc::new(minter)))
}

pub(super) const API_VERSION: &str = "2022-11-28";

/// Mints installation tokens of a GitHub App.
pub(super) struct AppTokens {
    upstream: String,
    base: String,
    org: String,
    app_id: String,
    installation_id: Option<u64>,
    key: jsonwebtoken::EncodingKey,
    policy: crate::http::HttpPolicy,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("org", &self.org)
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

impl AppTokens {
    async fn mint_token(&self) -> Result<MintedToken, HttpError> {
        let invalid = |message: String| HttpError::Invalid {
            upstream: self.upstream.clone(),
            message,
        };
        let now = Utc::now().timestamp();
        // Backdated a minute against clock drift; GitHub refuses an expiry
        // more than ten minutes ahead.
        let claims = json!({"iat": now - 60, "exp": now + 540, "iss": self.app_id});
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| invalid(format!("signing the App JWT: {e}")))?;
        let app = HttpClient::new(
            &self.upstream,
            self.policy.clone(),
            &[
                ("authorization", format!("Bearer {jwt}")),
                ("x-github-api-version", API_VERSION.to_owned()),
            ],
            ResetStyle::EpochSeconds,
        )?;
        let installation = match self.installation_id {
            Some(id) => id,
            None => {
                let url = format!("{}/orgs/{}/installation", self.base, self.org);
                let body = app.get(&url, None).await?.body;
                serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_u64))
                    .ok_or_else(|| invalid(format!("{url}: no installation `id` in the answer")))?
            }
        };
        let url = format!(
            "{}/app/installations/{installation}/access_tokens",
            self.base
        );
        let body = app.post_json(&url, &json!({})).await?.body;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("{url}: the answer is not JSON: {e}")))?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{url}: no `token` in the answer")))?;
        let expires_at = answer
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| invalid(format!("{url}: no valid `expires_at` in the answer")))?;
        Ok(MintedToken {
            token: token.to_owned(),
            expires_at,
            requests: app
                .stats
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

impl TokenSource for AppTokens {
    fn mint(&self) -> MintFuture<'_> {
        Box::pin(self.mint_token())
    }
}
