//! The simulators: one axum server on loopback, one path prefix per
//! upstream, serving the generated world through the upstreams' own wire
//! formats (paths, auth, envelopes, pagination, errors).
//!
//! The simulated "now" starts at the world's end and can be moved with
//! `PUT /_sim/clock`, so a test can watch history appear — and, where the
//! upstream caps it (Argo CD), disappear.

mod argocd;
mod backstage;
mod datadog;
pub mod faults;
pub mod github;
pub mod opencost;
mod sentry;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::World;
use faults::{Fault, FaultPlan, FaultState};

/// The upstream systems the simulator speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Upstream {
    /// Backstage software catalog.
    Backstage,
    /// GitHub REST API.
    Github,
    /// Argo CD API server.
    ArgoCd,
    /// Datadog API.
    Datadog,
    /// Sentry API.
    Sentry,
    /// OpenCost API.
    OpenCost,
}

impl Upstream {
    /// Every upstream the simulator serves today.
    pub const SERVED: [Upstream; 6] = [
        Upstream::Backstage,
        Upstream::Github,
        Upstream::ArgoCd,
        Upstream::Datadog,
        Upstream::Sentry,
        Upstream::OpenCost,
    ];

    /// Path prefix of its simulator.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Backstage => "/backstage",
            Self::Github => "/github",
            Self::ArgoCd => "/argocd",
            Self::Datadog => "/datadog",
            Self::Sentry => "/sentry",
            Self::OpenCost => "/opencost",
        }
    }

    /// An error body the way this upstream writes them.
    pub fn error_body(self, status: StatusCode, message: &str) -> serde_json::Value {
        match self {
            Self::Backstage => {
                let name = match status.as_u16() {
                    400 => "InputError",
                    401 => "AuthenticationError",
                    403 => "NotAllowedError",
                    404 => "NotFoundError",
                    _ => "Error",
                };
                serde_json::json!({
                    "error": {"name": name, "message": message},
                    "response": {"statusCode": status.as_u16()},
                })
            }
            // gRPC-gateway errors: `code` is the gRPC status code.
            Self::ArgoCd => {
                let code = match status.as_u16() {
                    400 => 3,
                    401 => 16,
                    403 => 7,
                    404 => 5,
                    429 => 8,
                    503 => 14,
                    _ => 13,
                };
                serde_json::json!({"error": message, "code": code, "message": message})
            }
            Self::Github => serde_json::json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest",
            }),
            Self::Datadog => serde_json::json!({"errors": [message]}),
            Self::Sentry => serde_json::json!({"detail": message}),
            Self::OpenCost => serde_json::json!({"code": status.as_u16(), "message": message}),
        }
    }

    /// Where a list response keeps its records (JSON pointer).
    fn list_pointer(self) -> &'static str {
        match self {
            Self::Backstage | Self::ArgoCd => "/items",
            Self::Datadog => "/data",
            Self::OpenCost => "/data",
            Self::Github | Self::Sentry => "",
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix()[1..])
    }
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "backstage" => Ok(Self::Backstage),
            "github" => Ok(Self::Github),
            "argocd" => Ok(Self::ArgoCd),
            "datadog" => Ok(Self::Datadog),
            "sentry" => Ok(Self::Sentry),
            "opencost" => Ok(Self::OpenCost),
            other => Err(format!("unknown upstream `{other}`")),
        }
    }
}

/// The credentials each simulator accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// Backstage bearer token.
    pub backstage_token: String,
    /// Argo CD bearer token.
    pub argocd_token: String,
    /// GitHub token (`Bearer` or `token` scheme).
    pub github_token: String,
    /// Datadog `DD-API-KEY`.
    pub datadog_api_key: String,
    /// Datadog `DD-APPLICATION-KEY`.
    pub datadog_application_key: String,
    /// Sentry auth token (bearer).
    pub sentry_token: String,
    /// A GitHub App whose installation tokens are accepted too.
    pub github_app: Option<GithubApp>,
}

/// A GitHub App installed on the simulated organisation.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct GithubApp {
    /// The App ID (the JWT issuer).
    pub app_id: u64,
    /// Its installation on the organisation.
    pub installation_id: u64,
    /// Public key the App's JWTs must verify with (PEM).
    pub public_key_pem: String,
    /// The matching private key (PKCS#1 PEM, as GitHub hands it out), for
    /// clients of the simulator.
    #[serde(skip)]
    pub private_key_pem: String,
    /// Requests an installation token serves before the simulator revokes
    /// it (`None`: until it expires), so clients' renewal is exercised.
    pub token_uses: Option<u32>,
}

impl fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("token_uses", &self.token_uses)
            .finish_non_exhaustive()
    }
}

impl GithubApp {
    /// An App with a freshly generated 2048-bit RSA key.
    pub fn generate(app_id: u64, installation_id: u64) -> Result<Self, String> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let mut rng = rsa::rand_core::OsRng;
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
        let private_key_pem = private
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?
            .to_string();
        let public_key_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            app_id,
            installation_id,
            public_key_pem,
            private_key_pem,
            token_uses: None,
        })
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            backstage_token: "sim-backstage-token".to_owned(),
            argocd_token: "sim-argocd-token".to_owned(),
            github_token: "sim-github-token".to_owned(),
            datadog_api_key: "sim-dd-api-key".to_owned(),
            datadog_application_key: "sim-dd-application-key".to_owned(),
            sentry_token: "sim-sentry-token".to_owned(),
            github_app: None,
        }
    }
}

/// How the simulators behave.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Argo CD's `revisionHistoryLimit` (default 10, Argo CD's own): a
    /// poller slower than this many syncs loses history.
    pub argocd_history_limit: usize,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// Injected faults.
    pub faults: FaultPlan,
    /// GitHub's rate budget per token.
    pub github_rate: github::RateBudget,
    /// Where the file-delivered upstreams (AWS cost report, portal events)
    /// are written; `None` leaves them out.
    pub export: Option<ExportTarget>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            argocd_history_limit: argocd::HISTORY_LIMIT,
            credentials: Credentials::default(),
            faults: FaultPlan::default(),
            github_rate: github::RateBudget::default(),
            export: None,
        }
    }
}

/// The pseudonymization key in the simulators' config snippet (a real
/// deployment keeps its key in a secret).
pub const SIM_PSEUDONYMIZE_KEY: &str = "sim-only-pseudonymization-key";

/// An object store the simulator delivers files into, as AWS Data Exports
/// and an event pipeline would.
#[derive(Debug, Clone)]
pub struct ExportTarget {
    /// The store.
    pub store: Arc<dyn object_store::ObjectStore>,
    /// Root inside it: the report goes under `cur/`, events under
    /// `portal-events/`.
    pub root: object_store::path::Path,
    /// The root as a user writes it (path or URL), for config snippets.
    pub url: String,
}

impl ExportTarget {
    /// Where the cost report is delivered.
    pub fn cur(&self) -> crate::export::CurExport {
        crate::export::CurExport {
            prefix: self.root.clone().join("cur"),
            ..crate::export::CurExport::default()
        }
    }

    /// Where the portal events are delivered.
    pub fn events_prefix(&self) -> object_store::path::Path {
        self.root.clone().join("portal-events")
    }
}

/// What one delivery of the file-based upstreams wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Billing periods of the cost report.
    pub cur: Vec<crate::export::PeriodDelivery>,
    /// Portal event files.
    pub events: crate::export::EventsDelivery,
}

/// Shared state of a running simulator.
pub struct SimState {
    world: World,
    options: SimOptions,
    clock: RwLock<DateTime<Utc>>,
    faults: FaultState,
    catalog: Vec<serde_json::Value>,
    github_rate: github::RateState,
}

impl SimState {
    /// Prepares the simulators for `world`.
    pub fn new(world: World, options: SimOptions) -> Arc<Self> {
        let catalog = backstage::entities(&world);
        Arc::new(Self {
            clock: RwLock::new(world.config.end()),
            faults: FaultState::new(options.faults.clone()),
            world,
            options,
            catalog,
            github_rate: github::RateState::default(),
        })
    }

    /// The simulated current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock
            .read()
            .map(|t| *t)
            .unwrap_or_else(|e| *e.into_inner())
    }

    /// Moves the simulated current time.
    pub fn set_now(&self, now: DateTime<Utc>) {
        match self.clock.write() {
            Ok(mut clock) => *clock = now,
            Err(e) => *e.into_inner() = now,
        }
    }

    /// The world being served.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// `[[sources]]` for `fathom.toml` that ingest from the simulators at
    /// `addr`, with their credentials.
    pub fn sources_snippet(&self, addr: SocketAddr) -> String {
        let c = &self.options.credentials;
        // Far enough back to reach the world's first day from today.
        let lookback = (Utc::now() - self.world.config.start()).num_days().max(0) + 1;
        format!(
            "[[sources]]\ntype = \"backstage\"\nbase_url = \"http://{addr}{}\"\ntoken = \"{}\"\n\n\
             [[sources]]\ntype = \"github\"\nbase_url = \"http://{addr}{}\"\ntoken = \"{}\"\norgs = [\"{}\"]\n\n\
             [[sources]]\ntype = \"argocd\"\nbase_url = \"http://{addr}{}\"\ntoken = \"{}\"\n\n\
             [[sources]]\ntype = \"datadog\"\nbase_url = \"http://{addr}{}\"\ntoken = \"{}\"\napplication_key = \"{}\"\n\
             [sources.metrics]\nlookback_days = {lookback}\nhourly_days = {lookback}\n\n\
             [[sources]]\ntype = \"opencost\"\nbase_url = \"http://{addr}{}\"\nlookback_days = {lookback}\n\n\
             [[sources]]\ntype = \"sentry\"\nbase_url = \"http://{addr}{}\"\ntoken = \"{}\"\norganization = \"{}\"\nlookback_days = {lookback}\n",
            Upstream::Backstage.prefix(),
            c.backstage_token,
            Upstream::Github.prefix(),
            c.github_token,
            self.world.org.company,
            Upstream::ArgoCd.prefix(),
            c.argocd_token,
            Upstream::Datadog.prefix(),
            c.datadog_api_key,
            c.datadog_application_key,
            Upstream::OpenCost.prefix(),
            Upstream::Sentry.prefix(),
            c.sentry_token,
            self.world.org.company,
        ) + &self.files_snippet()
    }

    /// `[[sources]]` for the delivered files, when there is an export.
    fn files_snippet(&self) -> String {
        let Some(target) = &self.options.export else {
            return String::new();
        };
        let url = target.url.trim_end_matches('/');
        format!(
            "\n[[sources]]\ntype = \"cost_report\"\nlocation = \"{url}/cur\"\nexport_name = \"{}\"\n\n\
             [[sources]]\ntype = \"portal_events\"\nlocation = \"{url}/portal-events\"\npseudonymize_key = \"{}\"\n",
            target.cur().name,
            SIM_PSEUDONYMIZE_KEY,
        )
    }

    /// Delivers the file-based upstreams as of the simulated now (nothing
    /// when no export target is configured). Runs at start and whenever the
    /// clock moves, so an open billing month is rewritten as time passes.
    pub async fn deliver(&self) -> Result<Option<Delivery>, crate::export::ExportError> {
        let Some(target) = &self.options.export else {
            return Ok(None);
        };
        let now = self.now();
        let cur =
            crate::export::deliver_cur(&self.world, target.store.as_ref(), &target.cur(), now)
                .await?;
        let events = crate::export::deliver_portal_events(
            &self.world,
            target.store.as_ref(),
            &target.events_prefix(),
            now,
        )
        .await?;
        Ok(Some(Delivery { cur, events }))
    }
}

/// `Authorization: Bearer <token>` must carry `expected`; otherwise the
/// upstream's 401 response.
fn check_bearer(upstream: Upstream, headers: &HeaderMap, expected: &str) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if token == expected => None,
        Some(_) => Some(faults::status_response(
            upstream,
            StatusCode::UNAUTHORIZED,
            match upstream {
                Upstream::ArgoCd => "invalid session: token signature is invalid",
                _ => "Invalid token",
            },
        )),
        None => Some(faults::status_response(
            upstream,
            StatusCode::UNAUTHORIZED,
            match upstream {
                Upstream::ArgoCd => "no session information",
                Upstream::Sentry => "Authentication credentials were not provided.",
                _ => "Missing credentials",
            },
        )),
    }
}

async fn inject_faults(
    State((state, upstream)): State<(Arc<SimState>, Upstream)>,
    request: Request,
    next: Next,
) -> Response {
    let (fault, latency, mut rng) = state.faults.next(upstream);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Fault::None => next.run(request).await,
        Fault::TooManyRequests => {
            faults::status_response(upstream, StatusCode::TOO_MANY_REQUESTS, "Too many requests")
        }
        Fault::ServerError(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            faults::status_response(upstream, status, "injected server error")
        }
        Fault::Reset => faults::reset(),
        Fault::Truncate | Fault::Malformed => {
            let response = next.run(request).await;
            let (parts, body) = response.into_parts();
            let Ok(bytes) = to_bytes(body, usize::MAX).await else {
                return faults::reset();
            };
            let response = Response::from_parts(parts, axum::body::Body::empty());
            if fault == Fault::Truncate {
                return faults::truncate(response, bytes);
            }
            let body = faults::corrupt(&bytes, upstream.list_pointer(), &mut rng)
                .unwrap_or_else(|| bytes.to_vec());
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(body))
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Clock {
    now: DateTime<Utc>,
}

async fn get_clock(State(state): State<Arc<SimState>>) -> impl IntoResponse {
    axum::Json(Clock { now: state.now() })
}

async fn put_clock(
    State(state): State<Arc<SimState>>,
    axum::Json(clock): axum::Json<Clock>,
) -> Response {
    state.set_now(clock.now);
    // Files are delivered before answering, so whoever moved the clock
    // finds them in place.
    if let Err(e) = state.deliver().await {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"error": format!("cannot deliver files: {e}")})),
        )
            .into_response();
    }
    axum::Json(Clock { now: state.now() }).into_response()
}

/// The router of every simulator.
pub fn router(state: Arc<SimState>) -> Router {
    let with_faults = |upstream: Upstream, routes: Router<Arc<SimState>>| {
        routes
            .layer(middleware::from_fn_with_state(
                (state.clone(), upstream),
                inject_faults,
            ))
            .with_state(state.clone())
    };
    Router::new()
        .nest(
            Upstream::Backstage.prefix(),
            with_faults(Upstream::Backstage, backstage::router()),
        )
        .nest(
            Upstream::ArgoCd.prefix(),
            with_faults(Upstream::ArgoCd, argocd::router()),
        )
        .nest(
            Upstream::Datadog.prefix(),
            with_faults(Upstream::Datadog, datadog::router()),
        )
        .nest(
            Upstream::Sentry.prefix(),
            with_faults(Upstream::Sentry, sentry::router()),
        )
        .nest(
            Upstream::OpenCost.prefix(),
            with_faults(Upstream::OpenCost, opencost::router()),
        )
        .nest(
            Upstream::Github.prefix(),
            with_faults(Upstream::Github, github::router(state.clone())),
        )
        .route("/_sim/clock", get(get_clock).put(put_clock))
        .with_state(state)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<SimState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The base URL of each served upstream on `addr`.
pub fn base_urls(addr: SocketAddr) -> Vec<(Upstream, String)> {
    Upstream::SERVED
        .iter()
        .map(|u| (*u, format!("http://{addr}{}", u.prefix())))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
