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
mod anomalies;
mod auth;
use auth::{Caller, Role, caller, caller_for_secret};
pub use auth::{ROLES, RateLimiter};
mod cache;
mod cost;
mod cost_insights;
mod dora;
use dora::{benchmark, benchmark_tiers, window_days};
mod entities;
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
mod panels;
pub mod pg;
mod risk;
mod runs;
use runs::{alert_rows, freshness_rows, run_rows};
mod serve;
pub use serve::serve;
mod sql;
mod usage;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fathom_models::EntityRef;
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
    /// Whether the dashboards' page views land as portal events (plugin
    /// `fathom`) when `events` is set.
    pub report_page_views: bool,
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
            report_page_views: true,
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
    // Only an address over its budget pays for looking up the credential.
    let throttled = peer
        .and_then(|peer| api.guards.may_try(peer).err())
        .filter(|_| {
            let secret = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            secret.is_none_or(|secret| api.caches.caller(secret.trim()).is_none())
        });
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
    let shells = fathom_dashboards::shell_paths().fold(Router::new(), |router, path| {
        router.route(path, get(pages::shell))
    });
    shells
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/entities", get(entities::entities))
        .route("/api/v1/entities/{entity}", get(entities::entity))
        .route("/api/v1/anomalies", get(anomalies::anomalies))
        .route("/api/v1/anomalies/{id}", get(anomalies::anomaly))
        .route("/api/v1/anomalies/{id}/feedback", post(anomalies::feedback))
        .route("/api/v1/risk/score", post(risk::score))
        .route("/api/v1/deployments/{id}/signals", get(risk::signals))
        .route("/api/v1/risk/deployments", get(risk::riskiest))
        .route("/api/v1/risk/deployments/{id}", get(risk::deployment))
        .route("/api/v1/cost/coverage", get(cost::coverage))
        .route(
            "/api/v1/cost-insights/last-complete-billing-date",
            get(cost_insights::last_complete_billing_date),
        )
        .route(
            "/api/v1/cost-insights/users/{user}/groups",
            get(cost_insights::user_groups),
        )
        .route(
            "/api/v1/cost-insights/groups/{group}/projects",
            get(cost_insights::group_projects),
        )
        .route(
            "/api/v1/cost-insights/daily-cost/{entity}",
            get(cost_insights::entity_daily_cost),
        )
        .route(
            "/api/v1/cost-insights/metrics/{metric}",
            get(cost_insights::daily_metric),
        )
        .route("/api/v1/cost/{scope}", get(cost::cost))
        .route("/api/v1/cost/{scope}/benchmark", get(cost::benchmark))
        .route("/api/v1/usage/features", get(usage::features))
        .route("/api/v1/usage/page-views", post(usage::page_view))
        .route("/api/v1/usage/search", get(usage::search))
        .route("/api/v1/usage/templates", get(usage::templates))
        .route("/api/v1/usage/{scope}", get(usage::usage))
        .route("/api/v1/dora/{scope}", get(dora::dora))
        .route("/api/v1/dora/{scope}/trend", get(dora::trend))
        .route("/api/v1/dora/{scope}/{rows}", get(dora::drill_down))
        .route("/api/v1/runs", get(runs::runs).post(runs::trigger_run))
        .route("/api/v1/freshness", get(runs::freshness))
        .route("/api/v1/intake/github", post(intake::github_webhook))
        .route("/api/v1/intake/events", post(intake::intake_events))
        .route("/api/v1/intake/{kind}", post(intake::intake))
        .route("/api/v1/sql", post(sql::sql))
        .route("/api/v1/panels", get(panels::panel_list))
        .route("/api/v1/panels/{id}", get(panels::panel_rows))
        .route("/api/v1/dashboards/grafana.json", get(panels::grafana))
        .route("/api/v1/pages/{page}", get(pages::page_data))
        .route("/api/v1/health/{rows}", get(pages::health_rows))
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
