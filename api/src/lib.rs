//! The HTTP surface of `fathom serve`: JSON for portal pages keyed by entity
//! ref, SQL for analysts, health, with API-token auth and roles.
//!
//! The only crate that knows HTTP, with one error-to-status mapping
//! ([`ApiError`]): every failure is `{"error": {"code", "message"}}`. Every
//! request reads the warehouse through a read-only session at the tables'
//! latest committed versions, so a response never mixes two versions of a
//! mart; the hot DORA endpoint answers from an index of the mart that trails
//! it by at most a second ([`Caches`]). The same guards (read-only, row
//! limit, timeout, audit) stand in front of SQL over HTTP and over the
//! PostgreSQL protocol ([`pg`]).

mod access;
mod cache;
use access::authorize_scope;
pub use cache::Caches;
mod guards;
pub use guards::Guards;
mod intake;
mod metrics;
pub use metrics::RequestMetrics;
pub mod oidc;
pub mod openapi;
mod pages;
pub mod pg;
mod serve;
pub use serve::serve;
mod sql;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use fathom_models::EntityRef;
use fathom_transforms::tiers::{Benchmark, Tier, TieredMetric};
use fathom_transforms::{ExplainedMetric, WINDOWS};
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{OutputFormat, QueryLimits, encode, query};
use fathom_warehouse::state::StateDb;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// How callers prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `Authorization: Bearer <token>` with a token from `fathom tokens
    /// create`.
    Tokens,
    /// No authentication: every caller is an administrator. Only for a
    /// laptop; refused on anything but a loopback address.
    None,
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Authentication.
    pub auth: AuthMode,
    /// Memory limit of SQL sessions.
    pub query: QueryLimits,
    /// Most rows a SQL response carries.
    pub row_limit: usize,
    /// Longest a SQL query may run.
    pub query_timeout: Duration,
    /// Names of the configured sources (for `/freshness`).
    pub sources: Vec<String>,
    /// The portal's origin, allowed to call the API from a browser.
    pub cors_origin: Option<String>,
    /// GitHub sources that accept webhooks, with their secrets.
    pub github_webhooks: Vec<GithubWebhook>,
    /// Requests a minute one credential may make; 0: unlimited.
    pub rate_limit_per_minute: u32,
    /// Where posted portal events go: the portal-events source's name and
    /// its pseudonymization key. `None`: no such source, intake refused.
    pub events: Option<EventsIntake>,
    /// How long a client has to send a request's head (and how long an
    /// idle keep-alive connection is kept).
    pub header_timeout: Duration,
    /// Callers' SQL queries running at once (HTTP and PostgreSQL).
    pub concurrent_queries: usize,
}

/// The portal-events source posted events land under.
#[derive(Debug, Clone)]
pub struct EventsIntake {
    /// The source's name (runs, quarantine).
    pub source: String,
    /// Its keyed hash of user identities.
    pub pseudonymizer: fathom_ingest::files::events::Pseudonymizer,
}

/// A GitHub source whose webhooks `/api/v1/intake/github` accepts.
#[derive(Debug, Clone)]
pub struct GithubWebhook {
    /// The source the deliveries belong to (decoding, raw layer, name).
    pub source: fathom_ingest::source::SourceConfig,
    /// The secret GitHub signs deliveries with.
    pub secret: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            auth: AuthMode::Tokens,
            query: QueryLimits::default(),
            row_limit: 100_000,
            query_timeout: Duration::from_secs(60),
            sources: Vec::new(),
            cors_origin: None,
            github_webhooks: Vec::new(),
            rate_limit_per_minute: 6000,
            events: None,
            header_timeout: serve::HEADER_TIMEOUT,
            concurrent_queries: guards::CONCURRENT_QUERIES,
        }
    }
}

/// What the server needs.
#[derive(Debug)]
pub struct Api {
    /// The warehouse it serves.
    pub warehouse: Warehouse,
    /// Tokens, runs, audit log.
    pub state: StateDb,
    /// Settings.
    pub config: ApiConfig,
    /// Request counts and latencies since start, for `/metrics`.
    pub requests: RequestMetrics,
    /// Per-caller request budgets.
    pub limiter: RateLimiter,
    /// The DORA index and recently verified credentials.
    pub caches: Caches,
    /// OIDC bearer tokens, when `[api.oidc]` is configured.
    pub oidc: Option<oidc::Oidc>,
    /// The scheduler's inbox (`POST /api/v1/runs`); `None` when it is off.
    pub triggers: Option<tokio::sync::mpsc::Sender<RunTrigger>>,
    /// The shared memory pool, query slots, readiness cache and
    /// failed-authentication budgets.
    pub guards: Guards,
}

/// A request to run a source's job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTrigger {
    /// The source; `None` for every source.
    pub source: Option<String>,
    /// Who asked (for the log).
    pub requested_by: String,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `auth.mode = "none"` on a reachable address.
    #[error(
        "auth mode `none` serves only loopback addresses (127.0.0.1, ::1); {0} is not one — use API tokens"
    )]
    OpenWithoutAuth(SocketAddr),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The warehouse could not be opened for queries.
    #[error(transparent)]
    Warehouse(#[from] fathom_warehouse::Error),
    /// The PostgreSQL endpoint could not be set up.
    #[error("PostgreSQL endpoint: {0}")]
    Postgres(String),
}

/// Largest request body accepted (intake batches, SQL text).
const BODY_LIMIT: usize = 10 << 20;

/// Every route, with the access log, the body limit and CORS.
pub fn router(api: Arc<Api>) -> Router {
    let cors = api.config.cors_origin.as_deref().and_then(|origin| {
        HeaderValue::from_str(origin).ok().map(|origin| {
            tower_http::cors::CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::IF_NONE_MATCH,
                ])
                .expose_headers([header::ETAG])
        })
    });
    let routes = routes(api.clone())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            serve::BODY_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(api, access_log));
    match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    }
}

/// One structured line per request (method, path, status, duration), and
/// the request counted in `/metrics` under its route template (never the
/// raw path: entity refs would make unbounded series). A client address
/// that keeps failing authentication is answered 429 without a check,
/// unless the request carries a credential already verified.
async fn access_log(
    State(api): State<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = metrics::method_label(request.method());
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let started = Instant::now();
    let known_credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|secret| api.caches.caller(secret.trim()).is_some());
    let throttled = match peer {
        Some(peer) if !known_credential => api.guards.may_try(peer).err(),
        _ => None,
    };
    let response = match throttled {
        Some(wait) => {
            let seconds = wait.as_secs().max(1);
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed authentications from this address; retry in {seconds} s"),
            );
            error.retry_after = Some(seconds);
            error.into_response()
        }
        None => next.run(request).await,
    };
    if let Some(peer) = peer
        && throttled.is_none()
        && response.status() == StatusCode::UNAUTHORIZED
    {
        api.guards.failed(peer);
    }
    api.requests.observe(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    tracing::info!(
        target: "fathom::access",
        method,
        path,
        status = response.status().as_u16(),
        milliseconds = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/entities", get(entities))
        .route("/api/v1/entities/{entity}", get(entity))
        .route("/api/v1/dora/{scope}", get(dora))
        .route("/api/v1/dora/{scope}/trend", get(trend))
        .route("/api/v1/dora/{scope}/{rows}", get(drill_down))
        .route("/api/v1/runs", get(runs).post(trigger_run))
        .route("/api/v1/freshness", get(freshness))
        .route("/api/v1/intake/github", post(intake::github_webhook))
        .route("/api/v1/intake/events", post(intake::intake_events))
        .route("/api/v1/intake/{kind}", post(intake::intake))
        .route("/api/v1/sql", post(sql::sql))
        .route("/api/v1/panels", get(panel_list))
        .route("/api/v1/panels/{id}", get(panel_rows))
        .route("/api/v1/dashboards/grafana.json", get(grafana))
        .route("/api/v1/pages/{page}", get(pages::page_data))
        .route("/api/v1/health/{rows}", get(pages::health_rows))
        .route("/", get(pages::shell))
        .route("/teams", get(pages::shell))
        .route("/team", get(pages::shell))
        .route("/service", get(pages::shell))
        .route("/health", get(pages::shell))
        .route("/rows", get(pages::shell))
        .route("/assets/{file}", get(pages::asset))
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .route(
            "/api/v1/docs",
            get(|| async { axum::response::Html(openapi::DOCS_PAGE) }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint (the endpoints: /api/v1/docs)",
            )
        })
        .with_state(api)
}

/// An error response: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds to wait, for 429 answers (`Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure of the server, not the caller: the details go to the log
    /// under an id, the caller gets the id (never internal text: paths,
    /// engine messages).
    fn internal(error: impl std::fmt::Display) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!(
            "{:x}-{:x}",
            chrono::Utc::now().timestamp_millis(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        tracing::error!(%error, error_id = %id, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the server failed to answer; the log has the details under error id {id}"),
        )
    }
}

impl From<fathom_warehouse::Error> for ApiError {
    fn from(error: fathom_warehouse::Error) -> Self {
        use fathom_warehouse::Error as E;
        match &error {
            E::ReadOnly(_) => Self::new(StatusCode::BAD_REQUEST, "read_only", error.to_string()),
            E::TooComplex(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_complex",
                error.to_string(),
            ),
            E::ResourcesExhausted(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "memory_limit",
                error.to_string(),
            ),
            _ if error.is_user_error() => Self::bad_request(error.to_string()),
            _ => Self::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A role, from least to most trusted (contractor is limited further to
/// its teams and never sees cost or SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Contractor,
    Viewer,
    CostViewer,
    Analyst,
    Admin,
}

impl Role {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "contractor" => Self::Contractor,
            "viewer" => Self::Viewer,
            "cost-viewer" => Self::CostViewer,
            "analyst" => Self::Analyst,
            "admin" => Self::Admin,
            _ => return None,
        })
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
struct Caller {
    actor: String,
    role: Role,
    /// Group refs the caller is limited to; empty: not limited.
    teams: Vec<String>,
}

async fn caller(api: &Api, headers: &HeaderMap) -> ApiResult<Caller> {
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

impl RateLimiter {
    /// Takes one request from `actor`'s bucket, or says how long until one
    /// is available. `per_minute = 0` admits everything.
    fn admit(&self, actor: &str, per_minute: u32) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(actor.to_owned()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

/// Who holds `secret` (an API token), or 401.
async fn caller_for_secret(api: &Api, secret: &str) -> ApiResult<Caller> {
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
fn group_ref(team: &str) -> String {
    EntityRef::parse_with_defaults(team, Some("group"), "default")
        .map(|r| r.to_string().to_ascii_lowercase())
        .unwrap_or_else(|_| team.to_ascii_lowercase())
}

/// A request body, or the error answer (413 over the size limit).
fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<axum::body::Bytes> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(
            status,
            code,
            format!(
                "{} (the limit is {} MiB)",
                rejection.body_text(),
                BODY_LIMIT >> 20
            ),
        )
    })
}

/// A JSON request body, or a 400 saying what is wrong with it.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<T> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
}

/// A SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A scope as stored: `org`, or a full entity ref in lower case.
fn scope_ref(text: &str) -> ApiResult<String> {
    if text.eq_ignore_ascii_case("org") {
        return Ok("org".to_owned());
    }
    EntityRef::parse(text)
        .map(|r| r.to_string().to_ascii_lowercase())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "`{text}` is not an entity ref (kind:namespace/name, URL-encoded) or `org`: {e}"
            ))
        })
}

/// Rows of `sql` as JSON objects.
async fn json_rows(api: &Api, sql: &str) -> ApiResult<Vec<Map<String, Value>>> {
    let ctx = api.session().await?;
    let (schema, batches) = query(&ctx, sql).await?;
    rows_as_json(&schema, &batches)
}

fn rows_as_json(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> ApiResult<Vec<Map<String, Value>>> {
    let bytes = encode(schema, batches, OutputFormat::Json)?;
    let values: Vec<Value> = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    Ok(values
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .collect())
}

/// The scope named in a path, as stored, once the caller is known and may
/// see it.
async fn visible_scope(api: &Api, headers: &HeaderMap, raw: &str) -> ApiResult<String> {
    let caller = caller(api, headers).await?;
    let scope = scope_ref(raw)?;
    authorize_scope(api, &caller, &scope).await?;
    Ok(scope)
}

/// A JSON response with an `ETag` (a hash of the body) and a short cache
/// lifetime; `304 Not Modified` when the caller already has it.
fn cached_json(headers: &HeaderMap, body: &Value) -> Response {
    let bytes = body.to_string();
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(bytes.as_bytes()))[..32]
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the warehouse and the state database answer. The answer is
/// reused for [`guards::READINESS_TTL`], so a flood of probes costs one
/// check per period.
async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let (ok, body) = match api.guards.cached_readiness() {
        Some(cached) => cached,
        None => {
            let warehouse = api.session().await.map(|_| ()).map_err(|e| e.message);
            let state = api
                .state
                .runs(1)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            let show = |r: &Result<(), String>| match r {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            };
            let ok = warehouse.is_ok() && state.is_ok();
            let body = json!({"warehouse": show(&warehouse), "state": show(&state)});
            api.guards.remember_readiness(ok, body.clone());
            (ok, body)
        }
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The window in days from `7d`/`30d`/`90d`/`365d` (or a bare number).
fn window_days(text: Option<&str>) -> ApiResult<u32> {
    let text = text.unwrap_or("30d");
    text.trim_end_matches('d')
        .parse::<u32>()
        .ok()
        .filter(|d| WINDOWS.contains(d))
        .ok_or_else(|| ApiError::bad_request(format!("window `{text}`: use 7d, 30d, 90d or 365d")))
}

/// `?window=&env=&benchmark=` of the DORA endpoints.
#[derive(Debug, Deserialize)]
struct DoraQuery {
    window: Option<String>,
    env: Option<String>,
    benchmark: Option<String>,
}

const COUNTS: [&str; 9] = [
    "deployments",
    "failed_jobs",
    "deploy_days",
    "changes",
    "failed_deployments",
    "incidents",
    "rework_deployments",
    "window_days",
    "period_days",
];

const METRICS: [&str; 10] = [
    "deployments_per_day",
    "deployments_per_week",
    "median_deploy_days_per_week",
    "lead_time_p50_seconds",
    "lead_time_p90_seconds",
    "change_failure_rate",
    "failed_deployment_recovery_p50_seconds",
    "time_to_restore_p50_seconds",
    "rework_rate",
    "overall_tier",
];

/// A `dora_metrics`/`dora_trends` row reshaped: counts, metrics and tiers,
/// the tiers by `benchmark` (the stored ones when it is the configured
/// benchmark, else looked up again).
fn dora_body(row: &Map<String, Value>, benchmark: Option<&Benchmark>) -> Value {
    let pick = |names: &[&str]| -> Map<String, Value> {
        names
            .iter()
            .filter_map(|n| row.get(*n).map(|v| ((*n).to_owned(), v.clone())))
            .collect()
    };
    let mut metrics = pick(&METRICS[..9]);
    for key in METRICS[..9].iter() {
        metrics.entry((*key).to_owned()).or_insert(Value::Null);
    }
    let stored = row
        .get("benchmark")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let number = |name: &str| row.get(name).and_then(Value::as_f64);
    let mut tiers = Map::new();
    let mut benchmark_name = stored.to_owned();
    match benchmark.filter(|b| b.name != stored) {
        None => {
            for (key, column) in [
                ("deployment_frequency", "deployment_frequency_tier"),
                ("lead_time", "lead_time_tier"),
                ("change_failure_rate", "change_failure_rate_tier"),
                ("recovery", "recovery_tier"),
                ("overall", "overall_tier"),
            ] {
                tiers.insert(
                    key.to_owned(),
                    row.get(column).cloned().unwrap_or(Value::Null),
                );
            }
        }
        Some(b) => {
            benchmark_name = b.name.to_owned();
            for (key, _, tier) in benchmark_tiers(&number, b) {
                tiers.insert(
                    key.to_owned(),
                    tier.map_or(Value::Null, |t| Value::from(t.as_str())),
                );
            }
        }
    }
    json!({
        "counts": pick(&COUNTS),
        "metrics": metrics,
        "benchmark": benchmark_name,
        "tiers": tiers,
    })
}

/// The tiers of a row's keys under benchmark `b`, as (response key, mart
/// column, tier), overall last; `number` reads the row's metric columns.
pub(crate) fn benchmark_tiers(
    number: &dyn Fn(&str) -> Option<f64>,
    b: &Benchmark,
) -> [(&'static str, &'static str, Option<Tier>); 5] {
    let recovery = match b.recovery_metric {
        fathom_transforms::tiers::RecoveryMetric::TimeToRestore => "time_to_restore_p50_seconds",
        fathom_transforms::tiers::RecoveryMetric::FailedDeploymentRecovery => {
            "failed_deployment_recovery_p50_seconds"
        }
    };
    let tier = |metric: TieredMetric, column: &str| number(column).and_then(|v| b.tier(metric, v));
    let frequency = tier(TieredMetric::DeploymentFrequency, "deployments_per_day");
    let others = [
        tier(TieredMetric::LeadTime, "lead_time_p50_seconds"),
        tier(TieredMetric::ChangeFailureRate, "change_failure_rate"),
        tier(TieredMetric::Recovery, recovery),
    ];
    [
        (
            "deployment_frequency",
            "deployment_frequency_tier",
            frequency,
        ),
        ("lead_time", "lead_time_tier", others[0]),
        ("change_failure_rate", "change_failure_rate_tier", others[1]),
        ("recovery", "recovery_tier", others[2]),
        (
            "overall",
            "overall_tier",
            fathom_transforms::tiers::overall(frequency, &others),
        ),
    ]
}

fn benchmark(name: Option<&str>) -> ApiResult<Option<&'static Benchmark>> {
    name.map(|n| {
        Benchmark::named(n).ok_or_else(|| {
            ApiError::bad_request(format!(
                "benchmark `{n}`: use one of {}",
                Benchmark::names()
            ))
        })
    })
    .transpose()
}

/// `GET /api/v1/dora/{scope}`: the five keys, their tiers and counts.
async fn dora(
    State(api): State<Arc<Api>>,
    Path(scope): Path<String>,
    Query(params): Query<DoraQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scope = visible_scope(&api, &headers, &scope).await?;
    let days = window_days(params.window.as_deref())?;
    let env = params.env.as_deref().unwrap_or("all");
    let benchmark = benchmark(params.benchmark.as_deref())?;
    let row = api.caches.dora_row(&api, &scope, days, env).await?;
    let Some(row) = row.as_ref() else {
        return Err(ApiError::not_found(format!(
            "no DORA metrics for `{scope}` over {days}d in environment `{env}` \
             (scopes come from the catalog; environments are `all` or a production environment)"
        )));
    };
    let mut body = dora_body(row, benchmark);
    if let Value::Object(map) = &mut body {
        map.insert("scope".to_owned(), Value::from(scope.clone()));
        map.insert(
            "scope_kind".to_owned(),
            row.get("scope_kind").cloned().unwrap_or(Value::Null),
        );
        map.insert("environment".to_owned(), Value::from(env));
        map.insert("window_days".to_owned(), Value::from(days));
        map.insert(
            "window_start".to_owned(),
            row.get("window_start_text").cloned().unwrap_or(Value::Null),
        );
        map.insert(
            "as_of".to_owned(),
            row.get("as_of_text").cloned().unwrap_or(Value::Null),
        );
    }
    Ok(cached_json(&headers, &body))
}

/// `?interval=week|month&env=&benchmark=` of the trend endpoint.
#[derive(Debug, Deserialize)]
struct TrendQuery {
    interval: Option<String>,
    env: Option<String>,
    benchmark: Option<String>,
}

/// `GET /api/v1/dora/{scope}/trend`: the keys per calendar week or month,
/// oldest first.
async fn trend(
    State(api): State<Arc<Api>>,
    Path(scope): Path<String>,
    Query(params): Query<TrendQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scope = visible_scope(&api, &headers, &scope).await?;
    let interval = params.interval.as_deref().unwrap_or("week");
    if interval != "week" && interval != "month" {
        return Err(ApiError::bad_request(format!(
            "interval `{interval}`: use week or month"
        )));
    }
    let env = params.env.as_deref().unwrap_or("all");
    let benchmark = benchmark(params.benchmark.as_deref())?;
    let rows = json_rows(
        &api,
        &format!(
            "SELECT *, CAST(period_start AS VARCHAR) AS start_text, CAST(period_end AS VARCHAR) AS end_text \
             FROM dora_trends WHERE scope = {} AND environment = {} AND granularity = {} \
             ORDER BY period_start",
            quoted(&scope),
            quoted(env),
            quoted(interval)
        ),
    )
    .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no DORA trend for `{scope}` in environment `{env}`"
        )));
    }
    let points: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut point = dora_body(row, benchmark);
            if let Value::Object(map) = &mut point {
                map.insert(
                    "period_start".to_owned(),
                    row.get("start_text").cloned().unwrap_or(Value::Null),
                );
                map.insert(
                    "period_end".to_owned(),
                    row.get("end_text").cloned().unwrap_or(Value::Null),
                );
            }
            point
        })
        .collect();
    let body = json!({"scope": scope, "environment": env, "interval": interval, "points": points});
    Ok(cached_json(&headers, &body))
}

/// `?window=&env=&limit=&cursor=` of the drill-downs.
#[derive(Debug, Deserialize)]
struct PageQuery {
    window: Option<String>,
    env: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// A calendar period instead of the window: `from` (inclusive) and
    /// `to` (exclusive), dates.
    from: Option<String>,
    to: Option<String>,
}

/// The `from`/`to` of a drill-down, when given: both dates, `from` first.
fn period(params: &PageQuery) -> ApiResult<Option<(chrono::NaiveDate, chrono::NaiveDate)>> {
    let date = |name: &str, text: &str| {
        // Trend rows carry timestamps; their date part is the boundary.
        chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d")
            .map_err(|_| ApiError::bad_request(format!("{name} `{text}`: use a date, YYYY-MM-DD")))
    };
    match (params.from.as_deref(), params.to.as_deref()) {
        (None, None) => Ok(None),
        (Some(from), Some(to)) => {
            let (from, to) = (date("from", from)?, date("to", to)?);
            if from >= to {
                return Err(ApiError::bad_request("`from` must be before `to`"));
            }
            Ok(Some((from, to)))
        }
        _ => Err(ApiError::bad_request(
            "give both `from` and `to`, or neither",
        )),
    }
}

/// One page of the rows behind a metric, ordered by `(time, id)`; the
/// cursor is the last row's key, so pages stay stable while rows are added.
async fn page(
    api: &Api,
    headers: &HeaderMap,
    scope: &str,
    params: &PageQuery,
    metric: ExplainedMetric,
    (time, id): (&str, &str),
) -> ApiResult<Response> {
    let scope = visible_scope(api, headers, scope).await?;
    let days = window_days(params.window.as_deref())?;
    let env = params.env.as_deref().unwrap_or("all");
    let limit = params.limit.unwrap_or(50).clamp(1, 1_000);
    let after = match &params.cursor {
        None => String::new(),
        Some(cursor) => {
            let bad = || ApiError::bad_request("the cursor is not one this API returned");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cursor)
                .map_err(|_| bad())?;
            let key: (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
            format!(
                "WHERE (CAST({time} AS VARCHAR) > {t} OR (CAST({time} AS VARCHAR) = {t} AND {id} > {i}))",
                t = quoted(&key.0),
                i = quoted(&key.1)
            )
        }
    };
    let explain = match period(params)? {
        Some((from, to)) => fathom_transforms::explain_period_sql(&scope, metric, from, to, env),
        None => fathom_transforms::explain_sql(&scope, metric, days, env),
    };
    let ctx = api.session().await?;
    let (schema, batches) = query(
        &ctx,
        &format!(
            "SELECT *, CAST({time} AS VARCHAR) AS cursor_time FROM ({explain}) rows {after} \
             ORDER BY CAST({time} AS VARCHAR), {id} LIMIT {}",
            limit + 1
        ),
    )
    .await?;
    let mut items = rows_as_json(&schema, &batches)?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|row| {
            let key = (
                row.get("cursor_time")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                row.get(id).and_then(Value::as_str).unwrap_or_default(),
            );
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&key).unwrap_or_default())
        })
    } else {
        None
    };
    for item in &mut items {
        item.remove("cursor_time");
    }
    let body = json!({
        "scope": scope, "window_days": days, "environment": env,
        "items": items, "next_cursor": next,
    });
    Ok(cached_json(headers, &body))
}

/// `GET /api/v1/dora/{scope}/deployments` (the production deployments of
/// the window, oldest first) and `/changes` (the changes deployed in it,
/// with lead times and stages, in deployment order).
async fn drill_down(
    State(api): State<Arc<Api>>,
    Path((scope, rows)): Path<(String, String)>,
    Query(params): Query<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (metric, key) = match rows.as_str() {
        "deployments" => (
            ExplainedMetric::Deployments,
            ("finished_at", "deployment_id"),
        ),
        "changes" => (ExplainedMetric::LeadTime, ("deployed_at", "change_id")),
        "failed_deployments" => (ExplainedMetric::Recovery, ("finished_at", "deployment_id")),
        "incidents" => (
            ExplainedMetric::TimeToRestore,
            ("created_at", "incident_id"),
        ),
        other => {
            return Err(ApiError::not_found(format!(
                "no `{other}` under a DORA scope: use trend, deployments, changes, \
                 failed_deployments or incidents"
            )));
        }
    };
    page(&api, &headers, &scope, &params, metric, key).await
}

/// `?kind=&owner=` of the entity listing.
#[derive(Debug, Deserialize)]
struct EntitiesQuery {
    kind: Option<String>,
    owner: Option<String>,
}

const ENTITY_SQL: &str = "SELECT e.entity_ref, e.kind, e.name, e.owner_ref, e.system_ref, \
     m.deployments, m.deployments_per_week, m.lead_time_p50_seconds, m.change_failure_rate, \
     m.failed_deployment_recovery_p50_seconds, m.overall_tier \
     FROM catalog_entities e LEFT JOIN dora_metrics m \
     ON m.scope = e.entity_ref AND m.window_days = 30 AND m.environment = 'all' \
     WHERE e.kind IN ('component', 'group')";

/// `GET /api/v1/entities`: services and teams with their 30-day DORA
/// summary.
async fn entities(
    State(api): State<Arc<Api>>,
    Query(params): Query<EntitiesQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let mut sql = ENTITY_SQL.to_owned();
    if let Some(kind) = &params.kind {
        sql.push_str(&format!(
            " AND e.kind = {}",
            quoted(&kind.to_ascii_lowercase())
        ));
    }
    if let Some(owner) = &params.owner {
        let owner = EntityRef::parse_with_defaults(owner, Some("group"), "default")
            .map(|r| r.to_string().to_ascii_lowercase())
            .map_err(|e| ApiError::bad_request(format!("owner `{owner}`: {e}")))?;
        sql.push_str(&format!(" AND e.owner_ref = {}", quoted(&owner)));
    }
    let visible = access::visible(&api, &caller).await?;
    sql.push_str(&format!(" AND {}", visible.sql_filter("e.entity_ref")));
    sql.push_str(" ORDER BY e.kind, e.entity_ref");
    let rows = json_rows(&api, &sql).await?;
    Ok(cached_json(&headers, &json!({"entities": rows})))
}

/// `GET /api/v1/entities/{ref}`.
async fn entity(
    State(api): State<Arc<Api>>,
    Path(entity): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let entity = visible_scope(&api, &headers, &entity).await?;
    let rows = json_rows(
        &api,
        &format!("{ENTITY_SQL} AND e.entity_ref = {}", quoted(&entity)),
    )
    .await?;
    match rows.into_iter().next() {
        Some(row) => Ok(cached_json(&headers, &Value::Object(row))),
        None => Err(ApiError::not_found(format!(
            "no component or group `{entity}`"
        ))),
    }
}

/// `GET /api/v1/runs`: the run ledger, newest first (admins).
/// The body of `POST /api/v1/runs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerRequest {
    /// A source name; absent: every source.
    source: Option<String>,
}

/// `POST /api/v1/runs` (admin): ingest a source (or all) now, then
/// transform. Answers 202 once the scheduler has the request; the run shows
/// in `GET /runs` and `/freshness`.
async fn trigger_run(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let body = body_bytes(body)?;
    let caller = caller(&api, &headers).await?;
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("triggering runs is for admins"));
    }
    let request: TriggerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("send {{\"source\": \"<name>\"}} or nothing: {e}"))
        })?
    };
    if let Some(source) = &request.source
        && !api.config.sources.contains(source)
    {
        return Err(ApiError::not_found(format!(
            "no source `{source}`; configured: {}",
            api.config.sources.join(", ")
        )));
    }
    let Some(triggers) = &api.triggers else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler_off",
            "the scheduler is off ([schedule] enabled = false); run `fathom ingest` instead",
        ));
    };
    triggers
        .try_send(RunTrigger {
            source: request.source.clone(),
            requested_by: caller.actor.clone(),
        })
        .map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "the scheduler already has runs waiting; try again shortly",
            )
        })?;
    api.state
        .audit(
            &caller.actor,
            "run.trigger",
            request.source.as_deref(),
            &json!({}),
        )
        .await
        .map_err(ApiError::internal)?;
    let queued: Vec<&String> = match &request.source {
        Some(source) => vec![source],
        None => api.config.sources.iter().collect(),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": queued}))).into_response())
}

async fn runs(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("the run ledger is for admins"));
    }
    let runs = api.state.runs(100).await.map_err(ApiError::internal)?;
    Ok(axum::Json(json!({"runs": runs})).into_response())
}

/// The run ledger as dashboard rows (newest first): what each run wrote,
/// quarantined and failed with.
pub(crate) async fn run_rows(api: &Api, limit: i64) -> ApiResult<Vec<Value>> {
    let runs = api.state.runs(limit).await.map_err(ApiError::internal)?;
    Ok(runs
        .iter()
        .map(|r| {
            let sum = |wanted: &dyn Fn(&str) -> bool| -> i64 {
                r.row_counts
                    .iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(_, v)| *v)
                    .sum()
            };
            json!({
                "run_id": r.run_id,
                "command": r.command,
                "status": r.status,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "rows": sum(&|k| k.ends_with(".loaded") || k.ends_with(".rows") || k.ends_with(".written")),
                "quarantined": sum(&|k| k.ends_with(".quarantined") || k.starts_with("quarantine.")),
                "unattributed": sum(&|k| k.ends_with(".unmapped")),
                "errors": r.errors.join("; "),
            })
        })
        .collect())
}

/// `GET /api/v1/freshness`: per configured source, its last run, last
/// successful run, how long ago that was, and whether it is degraded (its
/// last run failed), with the error.
async fn freshness(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    caller(&api, &headers).await?;
    let sources = freshness_rows(&api).await?;
    Ok(axum::Json(json!({"sources": sources})).into_response())
}

/// Per configured source, from the run ledger: its freshness.
pub(crate) async fn freshness_rows(api: &Api) -> ApiResult<Vec<Value>> {
    let runs = api.state.runs(500).await.map_err(ApiError::internal)?;
    let now = chrono::Utc::now();
    let sources: Vec<Value> = api
        .config
        .sources
        .iter()
        .map(|name| {
            // Newest first: the runs that read this source.
            let mut read = runs
                .iter()
                .filter(|r| r.row_counts.contains_key(&format!("{name}.api_calls")));
            let prefix = format!("{name}: ");
            let failed = |r: &&fathom_warehouse::state::RunRecord| {
                r.errors.iter().any(|e| e.starts_with(&prefix))
                    || r.status == fathom_warehouse::state::RunStatus::Failed
            };
            let last = read.clone().next();
            let success = read.find(|r| !failed(r));
            let at = |r: Option<&fathom_warehouse::state::RunRecord>| {
                r.map(|r| r.finished_at.unwrap_or(r.started_at))
            };
            let last_error = last
                .filter(|r| failed(r))
                .and_then(|r| r.errors.iter().find(|e| e.starts_with(&prefix)).cloned());
            json!({
                "source": name,
                "last_run_at": at(last),
                "last_success_at": at(success),
                "lag_seconds": at(success).map(|t| (now - t).num_seconds()),
                "degraded": last.is_some_and(|r| failed(&r)),
                "last_error": last_error,
            })
        })
        .collect();
    Ok(sources)
}

/// `GET /api/v1/panels`: the dashboard panels (id, page, title, chart).
async fn panel_list(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    caller(&api, &headers).await?;
    let panels = fathom_dashboards::panels().map_err(ApiError::internal)?;
    let list: Vec<Value> = panels
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "pages": p.pages, "title": p.title, "description": p.description,
                "source": if p.api.is_some() { "api" } else { "sql" },
                "chart": {"kind": p.chart.kind, "x": p.chart.x, "y": p.chart.y, "spark": p.chart.spark, "marks": p.chart.marks},
                "drill": p.drill, "drills": p.drills,
            })
        })
        .collect();
    Ok(axum::Json(json!({"panels": list})).into_response())
}

/// `GET /api/v1/dashboards/grafana.json`: the panels as a Grafana
/// dashboard over the PostgreSQL endpoint (import it in Grafana).
async fn grafana(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    caller(&api, &headers).await?;
    let panels = fathom_dashboards::panels().map_err(ApiError::internal)?;
    Ok(axum::Json(fathom_dashboards::grafana_dashboard(panels)).into_response())
}

/// The filters of a panel request.
#[derive(Debug, Deserialize)]
struct PanelQuery {
    window: Option<String>,
    env: Option<String>,
    scope: Option<String>,
    /// CSV cells exactly as stored (`true`), not spreadsheet-safe.
    raw: Option<bool>,
}

/// `GET /api/v1/panels/{id}?window=30d&env=all&scope=…`: a panel's rows for
/// the filters, as JSON (`columns`, `rows`) or CSV (`Accept: text/csv`, the
/// panel's export; text that a spreadsheet would run as a formula gets a
/// leading `'` unless `raw=true`). Team-limited callers get only panels of
/// one scope they may see.
async fn panel_rows(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(params): Query<PanelQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let panels = fathom_dashboards::panels().map_err(ApiError::internal)?;
    let Some(panel) = panels.iter().find(|p| p.id == id) else {
        return Err(ApiError::not_found(format!(
            "no panel `{id}`; GET /api/v1/panels lists them"
        )));
    };
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if let Some(read) = panel.api.as_deref() {
        let (columns, rows) = pages::api_panel_rows(&api, &caller, read).await?;
        if wants_csv {
            let safe = !params.raw.unwrap_or(false);
            return Ok(csv_download(
                &panel.id,
                pages::csv_of(&columns, &rows, safe),
            ));
        }
        return Ok(cached_json(
            &headers,
            &json!({"panel": panel.id, "columns": columns, "rows": rows}),
        ));
    }
    let scope = scope_ref(params.scope.as_deref().unwrap_or("org"))?;
    pages::may_read_sql_panel(&caller, panel)?;
    authorize_scope(&api, &caller, &scope).await?;
    let filters = fathom_dashboards::Filters {
        window_days: window_days(params.window.as_deref())?,
        environment: params.env.unwrap_or_else(|| "all".to_owned()),
        scope,
    };
    let sql = panel
        .sql(&filters)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ctx = api.session().await?;
    let (schema, batches) = query(&ctx, &sql).await?;
    if wants_csv {
        let batches = if params.raw.unwrap_or(false) {
            batches
        } else {
            fathom_warehouse::query::neutralise_formulas(&batches)?
        };
        let body = encode(&schema, &batches, OutputFormat::Csv)?;
        return Ok(csv_download(&panel.id, body));
    }
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let rows = rows_as_json(&schema, &batches)?;
    Ok(cached_json(
        &headers,
        &json!({"panel": panel.id, "columns": columns, "rows": rows,
                "filters": {"window_days": filters.window_days, "environment": filters.environment, "scope": filters.scope}}),
    ))
}

/// A CSV attachment named after a panel.
fn csv_download(panel: &str, body: impl Into<axum::body::Body>) -> Response {
    let disposition = format!("attachment; filename=\"{panel}.csv\"");
    let mut response = ([(header::CONTENT_TYPE, "text/csv")], body.into()).into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
