//! OIDC bearer tokens: JWTs from the organisation's identity provider
//! (Keycloak, Okta, Entra ID, Dex, …), checked against its published keys.
//!
//! The JWKS is fetched on first use and cached; a token signed with a key
//! id the cache lacks triggers one refetch (at most every
//! [`MIN_REFETCH`]), so a provider's key rotation is picked up without a
//! restart while a flood of bad tokens cannot turn into a flood of fetches.
//! The role comes from a configurable claim (dotted paths reach nested
//! claims such as Keycloak's `realm_access.roles`), mapped to Fathom's
//! roles; a contractor's teams come from the groups claim.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use tokio::sync::RwLock;

/// Shortest time between two JWKS fetches caused by unknown key ids.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// How long fetched keys are trusted before they are fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(600);

/// `[api.oidc]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` tokens must carry, e.g.
    /// `https://sso.example.com/realms/engineering`.
    pub issuer: String,
    /// The `aud` tokens must carry (the client id Fathom is registered as).
    pub audience: String,
    /// Where the keys are published. Default: the issuer's
    /// `/.well-known/openid-configuration` names it (`jwks_uri`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Claim holding role names (a string or a list; dotted paths reach
    /// nested claims). Default `roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim holding the caller's groups (teams). Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claim values mapped to Fathom roles, e.g. `{ "fathom-admins" =
    /// "admin" }`. A value equal to a role name (`viewer`, `analyst`, …)
    /// needs no entry. The most trusted role present wins.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// Role of a valid token whose claims name none; empty refuses such
    /// tokens. Default empty.
    #[serde(default)]
    pub default_role: String,
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

/// Why a bearer JWT was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Signature, expiry, issuer, audience or shape.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// The keys could not be fetched.
    #[error("the identity provider's keys cannot be fetched: {0}")]
    Keys(String),
    /// Valid, but no role.
    #[error("the token names no Fathom role (claim `{0}`)")]
    NoRole(String),
}

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`.
    pub subject: String,
    /// Role names (after `role_map`).
    pub roles: Vec<String>,
    /// Group names or refs.
    pub groups: Vec<String>,
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, DecodingKey>,
    /// Keys without a `kid` (some providers publish a single one).
    anonymous: Vec<DecodingKey>,
    fetched: Option<Instant>,
}

/// The verifier: config plus the cached keys.
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a bearer credential looks like a JWT (three base64url parts)
/// rather than an API token.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.split('.').count() == 3
}

/// The value at a dotted path of the claims.
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |value, part| value.get(part))
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl Oidc {
    /// A verifier for `config`.
    pub fn new(config: OidcConfig) -> Self {
        Self {
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            keys: RwLock::new(Keys::default()),
        }
    }

    async fn jwks_url(&self) -> Result<String, OidcError> {
        if let Some(url) = &self.config.jwks_url {
            return Ok(url.clone());
        }
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let document: Value = self
            .http
            .get(&discovery)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| OidcError::Keys(format!("{discovery}: {e}")))?
            .json()
            .await
            .map_err(|e| OidcError::Keys(format!("{discovery}: {e}")))?;
        document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| OidcError::Keys(format!("{discovery} names no `jwks_uri`")))
    }

    async fn fetch_keys(&self) -> Result<(), OidcError> {
        let url = self.jwks_url().await?;
        let set: JwkSet = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| OidcError::Keys(format!("{url}: {e}")))?
            .json()
            .await
            .map_err(|e| OidcError::Keys(format!("{url}: {e}")))?;
        let mut keys = Keys {
            fetched: Some(Instant::now()),
            ..Keys::default()
        };
        for jwk in &set.keys {
            // Keys of kinds this build cannot use (encryption keys, …) are
            // skipped; the provider's signing keys remain.
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match &jwk.common.key_id {
                Some(id) => {
                    keys.by_id.insert(id.clone(), key);
                }
                None => keys.anonymous.push(key),
            }
        }
        *self.keys.write().await = keys;
        Ok(())
    }

    /// Verifies `token` and reads its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, OidcError> {
        let header = decode_header(token).map_err(|e| OidcError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;

        let stale = {
            let keys = self.keys.read().await;
            let unknown = match &header.kid {
                Some(kid) => !keys.by_id.contains_key(kid),
                None => keys.anonymous.is_empty() && keys.by_id.is_empty(),
            };
            match keys.fetched {
                None => true,
                Some(at) => at.elapsed() > KEYS_TTL || (unknown && at.elapsed() > MIN_REFETCH),
            }
        };
        if stale {
            self.fetch_keys().await?;
        }
        let keys = self.keys.read().await;
        let candidates: Vec<&DecodingKey> = match &header.kid {
            Some(kid) => keys.by_id.get(kid).into_iter().collect(),
            None => keys.anonymous.iter().chain(keys.by_id.values()).collect(),
        };
        if candidates.is_empty() {
            return Err(OidcError::Invalid(format!(
                "no published key has id {:?}",
                header.kid.as_deref().unwrap_or("(none)")
            )));
        }
        let mut last = None;
        for key in candidates {
            match decode::<Value>(token, key, &validation) {
                Ok(data) => return self.claims(&data.claims),
                Err(e) => last = Some(e),
            }
        }
        Err(OidcError::Invalid(last.map_or_else(
            || "unverifiable".to_owned(),
            |e| e.to_string(),
        )))
    }

    fn claims(&self, claims: &Value) -> Result<Claims, OidcError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut roles: Vec<String> = strings(claim(claims, &self.config.roles_claim))
            .into_iter()
            .map(|value| self.config.role_map.get(&value).cloned().unwrap_or(value))
            .collect();
        if roles.is_empty() && !self.config.default_role.is_empty() {
            roles.push(self.config.default_role.clone());
        }
        if roles.is_empty() {
            return Err(OidcError::NoRole(self.config.roles_claim.clone()));
        }
        Ok(Claims {
            subject,
            roles,
            groups: strings(claim(claims, &self.config.groups_claim)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc() -> Oidc {
        Oidc::new(OidcConfig {
            issuer: "https://sso.example.com/realms/eng".to_owned(),
            audience: "fathom".to_owned(),
            jwks_url: None,
            roles_claim: "realm_access.roles".to_owned(),
            groups_claim: "groups".to_owned(),
            role_map: BTreeMap::from([("fathom-admins".to_owned(), "admin".to_owned())]),
            default_role: String::new(),
        })
    }

    #[test]
    fn roles_and_groups_come_from_configured_claims() {
        let claims = serde_json::json!({
            "sub": "u-1",
            "realm_access": {"roles": ["offline_access", "fathom-admins"]},
            "groups": ["payments", "platform"],
        });
        let read = oidc().claims(&claims).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.subject, "u-1");
        assert!(read.roles.contains(&"admin".to_owned()));
        assert_eq!(read.groups, ["payments", "platform"]);
        let none = serde_json::json!({"sub": "u-2"});
        assert!(matches!(oidc().claims(&none), Err(OidcError::NoRole(_))));
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIi.sig"));
        assert!(!looks_like_jwt("fathom_abc123"));
    }
}
