//! Who is asking: the roles, a caller resolved from an API token or an
//! OIDC bearer token (verified credentials remembered for 10 s), and the
//! per-credential request budget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use fathom_models::EntityRef;

use crate::{Api, ApiError, ApiResult, AuthMode, oidc};

/// A role, from least to most trusted (contractor is limited further to
/// its teams and never sees cost or SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    Contractor,
    Viewer,
    CostViewer,
    Analyst,
    Admin,
}

/// Every role, as tokens and OIDC group mappings name them, least trusted
/// first.
pub const ROLES: [&str; 5] = ["contractor", "viewer", "cost-viewer", "analyst", "admin"];

impl Role {
    /// Whether the role may see cost (cost figures and cost anomalies):
    /// cost viewers, analysts and admins.
    pub(crate) fn sees_cost(self) -> bool {
        matches!(self, Self::CostViewer | Self::Analyst | Self::Admin)
    }

    const ALL: [Self; 5] = [
        Self::Contractor,
        Self::Viewer,
        Self::CostViewer,
        Self::Analyst,
        Self::Admin,
    ];

    pub(crate) fn parse(name: &str) -> Option<Self> {
        ROLES
            .iter()
            .position(|r| *r == name)
            .and_then(|i| Self::ALL.get(i).copied())
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) actor: String,
    pub(crate) role: Role,
    /// Group refs the caller is limited to; empty: not limited.
    pub(crate) teams: Vec<String>,
}

pub(crate) async fn caller(api: &Api, headers: &HeaderMap) -> ApiResult<Caller> {
    if api.config.auth == AuthMode::None {
        return Ok(Caller {
            actor: "local".to_owned(),
            role: Role::Admin,
            teams: Vec::new(),
        });
    }
    let unauthenticated =
        |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message);
    let Some(secret) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(unauthenticated(
            "send `Authorization: Bearer <token>` (create one with `fathom tokens create`)",
        ));
    };
    let caller = caller_for_secret(api, secret.trim()).await?;
    if let Err(wait) = api
        .limiter
        .admit(&caller.actor, api.config.rate_limit_per_minute)
    {
        let seconds = wait.as_secs().max(1);
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests a minute with this credential; retry in {seconds} s",
                api.config.rate_limit_per_minute
            ),
        );
        error.retry_after = Some(seconds);
        return Err(error);
    }
    Ok(caller)
}

/// Requests per caller: a token bucket each, refilled continuously, so a
/// burst of up to a minute's allowance passes and a steady rate above it
/// does not.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: std::sync::Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before the full ones are dropped (a full bucket carries no
/// state: it is what a new key starts with), so keys from many client
/// addresses cannot grow the map without bound.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// Takes one request from `key`'s bucket, or says how long until one
    /// is available. `per_minute = 0` admits everything.
    pub(crate) fn admit(&self, key: &str, per_minute: u32) -> Result<(), Duration> {
        self.bucket(key, per_minute, true)
    }

    /// Whether `key`'s bucket has a request left, without taking it (the
    /// failed-authentication budget: only failures take from it).
    pub(crate) fn check(&self, key: &str, per_minute: u32) -> Result<(), Duration> {
        self.bucket(key, per_minute, false)
    }

    fn bucket(&self, key: &str, per_minute: u32, take: bool) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // Refilled by now: the same as absent.
            buckets.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(60));
        }
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            if take {
                *tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

/// Who holds `secret` (an API token), or 401.
pub(crate) async fn caller_for_secret(api: &Api, secret: &str) -> ApiResult<Caller> {
    let unauthenticated =
        |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message);
    if let Some(oidc) = &api.oidc
        && oidc::looks_like_jwt(secret)
    {
        let claims = oidc.verify(secret).await.map_err(|e| match e {
            oidc::OidcError::Keys(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "identity_provider_unavailable",
                e.to_string(),
            ),
            oidc::OidcError::NoRole(_) => ApiError::forbidden(e.to_string()),
            oidc::OidcError::Invalid(_) => unauthenticated(&e.to_string()),
        })?;
        // The most trusted role the claims name.
        let role = claims
            .roles
            .iter()
            .filter_map(|r| Role::parse(r))
            .max()
            .ok_or_else(|| {
                ApiError::forbidden(format!(
                    "the token's roles ({}) include no Fathom role",
                    claims.roles.join(", ")
                ))
            })?;
        let teams: Vec<String> = if role == Role::Contractor {
            claims.groups.iter().map(|g| group_ref(g)).collect()
        } else {
            Vec::new()
        };
        if role == Role::Contractor && teams.is_empty() {
            return Err(ApiError::forbidden(
                "a contractor's token must name its teams (groups claim)",
            ));
        }
        return Ok(Caller {
            actor: format!("oidc:{}", claims.subject),
            role,
            teams,
        });
    }
    if let Some(known) = api.caches.caller(secret) {
        return Ok(known);
    }
    let token = api
        .state
        .verify_token(secret)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| unauthenticated("the token is unknown, revoked or expired"))?;
    let role = Role::parse(&token.role)
        .ok_or_else(|| ApiError::forbidden(format!("unknown role `{}`", token.role)))?;
    let teams = token.teams.iter().map(|t| group_ref(t)).collect();
    let caller = Caller {
        actor: format!("token:{}", token.token_id),
        role,
        teams,
    };
    api.caches.remember(secret, &caller);
    Ok(caller)
}

/// A team name or ref as the group ref scopes are keyed by.
pub(crate) fn group_ref(team: &str) -> String {
    EntityRef::parse_with_defaults(team, Some("group"), "default")
        .map(|r| r.to_string().to_ascii_lowercase())
        .unwrap_or_else(|_| team.to_ascii_lowercase())
}
