//! The rate budget and the authentication layer: tokens, GitHub App JWTs and
//! installation tokens, `/rate_limit`.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::super::faults::status_response;
use super::super::{SimState, Upstream};
use super::repos::{fnv, not_found};
use super::{APP_TOKEN_SECONDS, epoch_now};

pub(super) fn github_error(status: StatusCode, message: &str) -> Response {
    status_response(Upstream::Github, status, message)
}

/// Auth, rate budget and conditional requests, around every handler.
pub(super) async fn github_layer(
    State(state): State<Arc<SimState>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .map(str::to_owned);
    let Some(token) = token else {
        return github_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let path = request.uri().path();
    if path.ends_with("/installation") || path.contains("/app/installations/") {
        // App endpoints take the App's JWT, not a token.
        if let Err(message) = verify_app_jwt(&state, &token) {
            return github_error(StatusCode::UNAUTHORIZED, &message);
        }
        return next.run(request).await;
    }
    if token != state.options.credentials.github_token && !spend_app_token(&state, &token) {
        return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let is_rate_limit_call = request.uri().path().ends_with("/rate_limit");
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let budget = state.options.github_rate;
    let now = epoch_now();
    // Read the budget without spending it yet: a 304 is free.
    let (window_start, used) = {
        let Ok(mut table) = state.github_rate.used.lock() else {
            return github_error(StatusCode::INTERNAL_SERVER_ERROR, "rate state poisoned");
        };
        let entry = table.entry(token.clone()).or_insert((now, 0));
        if now >= entry.0 + budget.window_seconds {
            *entry = (now, 0);
        }
        *entry
    };
    let reset = window_start + budget.window_seconds;
    let rate_headers = |response: &mut Response, used: u64| {
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from(budget.limit));
        headers.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(budget.limit.saturating_sub(used)),
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        headers.insert("x-ratelimit-used", HeaderValue::from(used));
        headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    };
    if used >= budget.limit && !is_rate_limit_call {
        let mut response = github_error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
        );
        rate_headers(&mut response, used);
        return response;
    }
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return github_error(StatusCode::INTERNAL_SERVER_ERROR, "body");
    };
    let etag = format!("W/\"{:016x}\"", fnv(&bytes));
    let not_modified = parts.status == StatusCode::OK
        && if_none_match.as_ref().and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    let spent = if not_modified || is_rate_limit_call {
        used
    } else {
        used + 1
    };
    if let Ok(mut table) = state.github_rate.used.lock()
        && let Some(entry) = table.get_mut(&token)
        && entry.0 == window_start
    {
        entry.1 = spent;
    }
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(bytes))
    };
    if (response.status() == StatusCode::OK || response.status() == StatusCode::NOT_MODIFIED)
        && let Ok(value) = HeaderValue::from_str(&etag)
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    rate_headers(&mut response, spent);
    response
}

/// Checks a GitHub App JWT as GitHub does: RS256 signed by the App's key,
/// issued by its ID, expiring at most ten minutes ahead.
pub(super) fn verify_app_jwt(state: &SimState, jwt: &str) -> Result<(), String> {
    let Some(app) = &state.options.credentials.github_app else {
        return Err("A JSON web token could not be decoded".to_owned());
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map_err(|_| "A JSON web token could not be decoded".to_owned())?
        .claims;
    let issuer = match claims.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if issuer != app.app_id.to_string() {
        return Err("'Issuer' claim ('iss') must be an Integer".to_owned());
    }
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp > epoch_now() + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_owned());
    }
    Ok(())
}

/// Whether `token` is a live installation token; spends one of its uses.
pub(super) fn spend_app_token(state: &SimState, token: &str) -> bool {
    let Ok(mut tokens) = state.github_rate.app_tokens.lock() else {
        return false;
    };
    let Some((expires, uses)) = tokens.get_mut(token) else {
        return false;
    };
    if *expires <= epoch_now() || *uses == Some(0) {
        return false;
    }
    if let Some(uses) = uses {
        *uses -= 1;
    }
    true
}

pub(super) async fn org_installation(
    State(state): State<Arc<SimState>>,
    Path(org): Path<String>,
) -> Response {
    let Some(app) = &state.options.credentials.github_app else {
        return not_found();
    };
    if !org.eq_ignore_ascii_case(&state.world().org.company) {
        return not_found();
    }
    axum::Json(json!({
        "id": app.installation_id,
        "app_id": app.app_id,
        "target_type": "Organization",
        "account": {"login": state.world().org.company, "type": "Organization"},
        "repository_selection": "all",
        "permissions": {"contents": "read", "deployments": "read", "pull_requests": "read", "actions": "read", "metadata": "read"},
    }))
    .into_response()
}

pub(super) async fn installation_token(
    State(state): State<Arc<SimState>>,
    Path(id): Path<u64>,
) -> Response {
    let Some(app) = &state.options.credentials.github_app else {
        return not_found();
    };
    if id != app.installation_id {
        return not_found();
    }
    let Ok(mut tokens) = state.github_rate.app_tokens.lock() else {
        return github_error(StatusCode::INTERNAL_SERVER_ERROR, "token state poisoned");
    };
    let token = format!("ghs_sim{:034}", tokens.len() + 1);
    let expires = epoch_now() + APP_TOKEN_SECONDS;
    tokens.insert(token.clone(), (expires, app.token_uses));
    let expires_at = DateTime::<Utc>::from_timestamp(expires as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "token": token,
            "expires_at": expires_at,
            "permissions": {"contents": "read", "deployments": "read", "pull_requests": "read", "actions": "read", "metadata": "read"},
            "repository_selection": "all",
        })),
    )
        .into_response()
}

pub(super) async fn rate_limit(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let budget = state.options.github_rate;
    let remaining = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|token| {
            state
                .github_rate
                .used
                .lock()
                .ok()
                .and_then(|t| t.get(token).copied())
        })
        .map_or((epoch_now(), 0), |entry| entry);
    let core = json!({
        "limit": budget.limit, "used": remaining.1, "remaining": budget.limit.saturating_sub(remaining.1),
        "reset": remaining.0 + budget.window_seconds, "resource": "core",
    });
    // The other budgets are GitHub's defaults; only `core` is simulated.
    let mut resources = serde_json::Map::new();
    resources.insert("core".into(), core.clone());
    for (name, limit) in [
        ("search", 30),
        ("graphql", 5_000),
        ("integration_manifest", 5_000),
        ("source_import", 100),
        ("code_scanning_upload", 1_000),
        ("code_scanning_autofix", 10),
        ("actions_runner_registration", 10_000),
        ("scim", 15_000),
        ("dependency_snapshots", 100),
        ("audit_log", 1_750),
        ("audit_log_streaming", 15),
        ("code_search", 10),
    ] {
        resources.insert(
            name.into(),
            json!({"limit": limit, "used": 0, "remaining": limit, "reset": remaining.0 + budget.window_seconds, "resource": name}),
        );
    }
    axum::Json(json!({"resources": resources, "rate": core})).into_response()
}
