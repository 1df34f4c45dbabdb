//! The plug-in point: a source is configured in `fathom.toml`
//! (`[[sources]]` with a `type`), fetches payloads from its upstream, and
//! decodes them — with no I/O — into rows of core tables.
//!
//! Every source implements [`Source`] (and an upstream API also
//! [`ApiSource`], with the [`api_source!`] line in its module); the registry
//! (`registry!` below) lists each type once — the `[[sources]]` enum and
//! the dispatch come from it. What one source alone offers (GitHub's
//! webhooks, the portal events' intake key) is asked of its variant.

use chrono::{DateTime, Utc};
use fathom_models::TableDef;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::files::{cost_report, events};
use crate::http::{HttpClient, HttpError, HttpPolicy};
use crate::sources::{argocd, backstage, datadog, github, opencost, sentry};

/// Every source: what the registry and the runner ask of each.
pub trait Source: Send + Sync {
    /// The name set in its configuration, if any.
    fn configured_name(&self) -> Option<&str>;
    /// Its streams, in the order they run.
    fn streams(&self) -> &'static [&'static str];
    /// Its upstream API; `None` for a source reading delivered files (no
    /// raw layer: the files are kept by whoever delivers them).
    fn api(&self) -> Option<&dyn ApiSource> {
        None
    }
}

/// The future of [`ApiSource::fetch`].
pub type FetchFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, SourceError>> + Send + 'a>>;

/// What the runner drives on an upstream API source. A source module
/// implements it (and [`Source`]) with one line, [`api_source!`], over its
/// `STREAMS`, `client`, `fetch` and `decode`.
pub trait ApiSource: Send + Sync {
    /// Settings every API source has.
    fn common(&self) -> &CommonConfig;
    /// Where its raw payloads are kept.
    fn raw_table(&self) -> &'static TableDef;
    /// The HTTP client, with its credentials; `name` is the source's name.
    fn client(&self, name: &str) -> Result<HttpClient, SourceError>;
    /// Decodes the payloads of one unit of `stream`. Pure: the same
    /// payloads always give the same rows, which is what makes
    /// `fathom reprocess` possible.
    fn decode(&self, stream: &str, payloads: &[Payload]) -> Decoded;
    /// Fetches `stream` from `cursor` on, sending payloads and checkpoints
    /// to `out`; returns the cursor to store once everything sent is
    /// committed.
    fn fetch<'a>(
        &'a self,
        client: &'a HttpClient,
        stream: &'a str,
        cursor: Option<&'a str>,
        ctx: &'a FetchContext,
        out: &'a Collector,
    ) -> FetchFuture<'a>;
}

/// Implements [`Source`] and [`ApiSource`] for an API source's config type
/// from the functions of its module (`STREAMS`, `client`, `fetch`,
/// `decode`) and its raw table. Invoked once in each source module.
macro_rules! api_source {
    ($config:ty, $raw:expr) => {
        impl $crate::source::Source for $config {
            fn configured_name(&self) -> Option<&str> {
                self.common.name.as_deref()
            }

            fn streams(&self) -> &'static [&'static str] {
                STREAMS
            }

            fn api(&self) -> Option<&dyn $crate::source::ApiSource> {
                Some(self)
            }
        }

        impl $crate::source::ApiSource for $config {
            fn common(&self) -> &$crate::source::CommonConfig {
                &self.common
            }

            fn raw_table(&self) -> &'static fathom_models::TableDef {
                &$raw
            }

            fn client(
                &self,
                name: &str,
            ) -> Result<$crate::http::HttpClient, $crate::source::SourceError> {
                client(self, name)
            }

            fn decode(
                &self,
                stream: &str,
                payloads: &[$crate::source::Payload],
            ) -> $crate::source::Decoded {
                decode(self, stream, payloads)
            }

            fn fetch<'a>(
                &'a self,
                client: &'a $crate::http::HttpClient,
                stream: &'a str,
                cursor: Option<&'a str>,
                ctx: &'a $crate::source::FetchContext,
                out: &'a $crate::source::Collector,
            ) -> $crate::source::FetchFuture<'a> {
                Box::pin(fetch(self, client, stream, cursor, ctx, out))
            }
        }
    };
}
pub(crate) use api_source;

/// Declares the registry: the `[[sources]]` enum (one variant per `type`),
/// the list of types, and the one dispatch to each source's [`Source`].
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident($config:ty) = $kind:literal, )*) => {
        /// One configured source (`[[sources]]` in `fathom.toml`), by its
        /// `type`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum SourceConfig {
            $( $(#[$doc])* #[serde(rename = $kind)] $variant($config), )*
        }

        /// Every source type, as written in `type = "…"`.
        pub const SOURCE_TYPES: &[&str] = &[$($kind),*];

        impl SourceConfig {
            /// The source's type, as written in config.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $kind, )*
                }
            }

            /// The source behind the configuration.
            pub fn source(&self) -> &dyn Source {
                match self {
                    $( Self::$variant(config) => config, )*
                }
            }
        }
    };
}

// The registry: adding a source is its module and one line here.
registry! {
    /// A Backstage software catalog.
    Backstage(backstage::BackstageConfig) = "backstage",
    /// GitHub (or GitHub Enterprise) organisations.
    Github(github::GithubConfig) = "github",
    /// An Argo CD instance.
    Argocd(argocd::ArgoCdConfig) = "argocd",
    /// A Datadog organisation.
    Datadog(datadog::DatadogConfig) = "datadog",
    /// An OpenCost instance (one cluster).
    Opencost(opencost::OpenCostConfig) = "opencost",
    /// A Sentry organisation.
    Sentry(sentry::SentryConfig) = "sentry",
    /// A cloud cost export (AWS CUR 2.0 or FOCUS) in an object store.
    CostReport(cost_report::CostReportConfig) = "cost_report",
    /// Portal analytics events as NDJSON files in an object store.
    PortalEvents(events::EventsConfig) = "portal_events",
}

impl SourceConfig {
    /// The source's name: as configured, else its type.
    pub fn name(&self) -> &str {
        self.source().configured_name().unwrap_or(self.kind())
    }

    /// Whether it reads delivered files (no API, no raw layer).
    pub fn reads_files(&self) -> bool {
        self.source().api().is_none()
    }

    /// Where its raw payloads are kept (`None`: file sources).
    pub fn raw_table(&self) -> Option<&'static TableDef> {
        self.source().api().map(|api| api.raw_table())
    }

    /// Its streams, in the order they run.
    pub fn streams(&self) -> &'static [&'static str] {
        self.source().streams()
    }

    /// Decodes the payloads of one unit of `stream` (see
    /// [`ApiSource::decode`]). File sources decode whole files in their own
    /// run (`files::cost_report`, `files::events`) and send no payloads.
    pub fn decode(&self, stream: &str, payloads: &[Payload]) -> Decoded {
        self.source()
            .api()
            .map(|api| api.decode(stream, payloads))
            .unwrap_or_default()
    }

    /// Fetches `stream` (see [`ApiSource::fetch`]).
    pub async fn fetch(
        &self,
        client: &HttpClient,
        stream: &str,
        cursor: Option<&str>,
        ctx: &FetchContext,
        out: &Collector,
    ) -> Result<Option<String>, SourceError> {
        match self.source().api() {
            Some(api) => api.fetch(client, stream, cursor, ctx, out).await,
            None => Err(self.not_an_api()),
        }
    }

    /// The HTTP client for the source, with its credentials.
    pub fn client(&self) -> Result<HttpClient, SourceError> {
        match self.source().api() {
            Some(api) => api.client(self.name()),
            None => Err(self.not_an_api()),
        }
    }

    fn not_an_api(&self) -> SourceError {
        SourceError::Config {
            source_name: self.name().to_owned(),
            message: "reads delivered files, not an API".to_owned(),
        }
    }

    /// Settings every API source has (`None` for file sources).
    pub fn common(&self) -> Option<&CommonConfig> {
        self.source().api().map(|api| api.common())
    }
}

/// Settings every source has. (Flattened into each source's table.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommonConfig {
    /// Name of the source in runs, cursors and `--source`. Default: its type.
    #[serde(default)]
    pub name: Option<String>,
    /// Base URL of the upstream API.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the credential (preferred: keeps the
    /// secret out of the file).
    #[serde(default)]
    pub token_env: Option<String>,
    /// The credential itself (for local use).
    #[serde(default)]
    pub token: Option<String>,
    /// Retry, timeout and concurrency policy.
    #[serde(default)]
    pub http: HttpPolicy,
}

impl CommonConfig {
    /// The credential, from `token` or the `token_env` variable.
    pub fn secret(&self, source: &str) -> Result<String, SourceError> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let Some(var) = &self.token_env else {
            return Err(SourceError::Config {
                source_name: source.to_owned(),
                message: "no credential: set `token_env` (or `token`)".to_owned(),
            });
        };
        std::env::var(var).map_err(|_| SourceError::Config {
            source_name: source.to_owned(),
            message: format!("environment variable `{var}` (token_env) is not set"),
        })
    }

    /// The base URL without a trailing slash, or `default`.
    pub fn base(&self, default: Option<&str>, source: &str) -> Result<String, SourceError> {
        let base = self
            .base_url
            .as_deref()
            .or(default)
            .ok_or_else(|| SourceError::Config {
                source_name: source.to_owned(),
                message: "`base_url` is required".to_owned(),
            })?;
        url::Url::parse(base).map_err(|e| SourceError::Config {
            source_name: source.to_owned(),
            message: format!("`base_url` {base:?} is not a URL: {e}"),
        })?;
        Ok(base.trim_end_matches('/').to_owned())
    }
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source's configuration is incomplete or wrong.
    #[error("source `{source_name}`: {message}")]
    Config {
        /// Source name.
        source_name: String,
        /// What to fix.
        message: String,
    },
    /// The upstream could not be reached or refused.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The upstream answered, but with an error in the body.
    #[error("source `{source_name}`: {message}")]
    Refused {
        /// Source name.
        source_name: String,
        /// The upstream's message.
        message: String,
    },
    /// The runner stopped listening (the run is being cancelled).
    #[error("the run was cancelled")]
    Cancelled,
    /// Reading the warehouse failed.
    #[error("reading the warehouse: {0}")]
    Warehouse(String),
}

/// One payload as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// Stream it belongs to.
    pub stream: String,
    /// Unit of work (e.g. a repository); payloads of a unit decode together.
    pub unit: String,
    /// `GET <url>` (never credentials).
    pub request: String,
    /// HTTP status.
    pub status: u16,
    /// When it arrived.
    pub fetched_at: DateTime<Utc>,
    /// The body.
    pub body: String,
}

impl Payload {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("body is not JSON: {e}"))
    }
}

/// What a fetch sends the runner.
#[derive(Debug)]
pub enum Message {
    /// A payload to keep and decode.
    Payload(Payload),
    /// Everything sent so far may be committed; the cursor (when given)
    /// records that progress.
    Checkpoint(Option<String>),
    /// A note for the run report (e.g. history lost upstream).
    Warning(String),
}

/// The channel a fetch sends into.
#[derive(Debug, Clone)]
pub struct Collector {
    sender: mpsc::Sender<Message>,
}

impl Collector {
    /// A collector and the runner's receiving end.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Message>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self { sender }, receiver)
    }

    /// Sends a payload.
    pub async fn payload(&self, payload: Payload) -> Result<(), SourceError> {
        self.sender
            .send(Message::Payload(payload))
            .await
            .map_err(|_| SourceError::Cancelled)
    }

    /// Marks a commit point.
    pub async fn checkpoint(&self, cursor: Option<String>) -> Result<(), SourceError> {
        self.sender
            .send(Message::Checkpoint(cursor))
            .await
            .map_err(|_| SourceError::Cancelled)
    }

    /// Reports something the user should know.
    pub async fn warn(&self, message: String) -> Result<(), SourceError> {
        self.sender
            .send(Message::Warning(message))
            .await
            .map_err(|_| SourceError::Cancelled)
    }
}

/// What a fetch may know besides its cursor.
#[derive(Debug, Clone, Default)]
pub struct FetchContext {
    /// Only fetch records changed after this instant (`--since`).
    pub since: Option<DateTime<Utc>>,
    /// Ignore cursors and fetch everything (`--full`).
    pub full: bool,
    /// Repositories known to the warehouse: `owner/name` and default branch.
    pub repositories: Vec<(String, Option<String>)>,
    /// Production deployments that may need their change sets, oldest
    /// first: (deployment id, service key, repository `owner/name`,
    /// revision, finished at).
    pub production_deployments: Vec<ProductionDeployment>,
    /// Datadog service names of the catalog's components (for per-service
    /// metric queries).
    pub datadog_services: Vec<String>,
}

/// A completed production deployment, for change-set computation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductionDeployment {
    /// Stored deployment id.
    pub deployment_id: String,
    /// What identifies "the same service and environment".
    pub series: String,
    /// `owner/name` of the repository.
    pub repository: String,
    /// Deployed SHA.
    pub revision: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// How a row's entity is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A repository `owner/name` (`github.com/project-slug`).
    Repository(String),
    /// An Argo CD application (`argocd/app-name`).
    ArgoApp(String),
    /// A Datadog service tag (`datadoghq.com/service-name`, else the
    /// component's name).
    DatadogService(String),
    /// A Kubernetes namespace (`backstage.io/kubernetes-namespace`).
    Namespace(String),
    /// A Sentry project slug (`sentry.io/project-slug`, else the
    /// component's name).
    SentryProject(String),
}

/// One decoded row, keyed by column name.
#[derive(Debug, Clone)]
pub struct Row {
    /// Target table.
    pub table: &'static TableDef,
    /// Column values (missing columns are null).
    pub values: Map<String, Value>,
    /// How to fill its `entity_ref` (tried in order), when the table has
    /// one and the source does not know it.
    pub identity: Vec<Identity>,
}

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// The request it came from.
    pub location: String,
    /// Position in the payload (1-based), when it is one of a list.
    pub position: Option<i64>,
    /// Why.
    pub reason: String,
    /// The record as received.
    pub raw: String,
}

/// What decoding one unit produced.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Good rows.
    pub rows: Vec<Row>,
    /// Bad records.
    pub rejects: Vec<Reject>,
}

impl Decoded {
    /// Adds a row. Its keys are the decoder's own (never copied from a
    /// payload), so a key that is no column of `table` is a misspelling
    /// that would silently become null: debug builds (the tests) stop on
    /// it.
    pub fn row(
        &mut self,
        table: &'static TableDef,
        values: Map<String, Value>,
        identity: Vec<Identity>,
    ) {
        debug_assert!(
            values.keys().all(|k| table.column(k).is_some()),
            "a decoder emitted {:?} for `{}`, which has no such column",
            values
                .keys()
                .filter(|k| table.column(k).is_none())
                .collect::<Vec<_>>(),
            table.name
        );
        self.rows.push(Row {
            table,
            values,
            identity,
        });
    }

    /// The payload's body as JSON; an undecodable body is rejected whole
    /// and `None` returned.
    pub fn parse(&mut self, payload: &Payload) -> Option<Value> {
        match payload.json() {
            Ok(body) => Some(body),
            Err(reason) => {
                self.reject(payload, None, reason, &Value::String(payload.body.clone()));
                None
            }
        }
    }

    /// Adds a rejected record.
    pub fn reject(
        &mut self,
        payload: &Payload,
        position: Option<i64>,
        reason: String,
        raw: &Value,
    ) {
        self.rejects.push(Reject {
            location: payload.request.clone(),
            position,
            reason,
            raw: raw.to_string(),
        });
    }
}

/// Reads a required string field, or says which is missing.
pub fn req_str<'a>(value: &'a Value, pointer: &str) -> Result<&'a str, String> {
    match value.pointer(pointer) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(format!(
            "required field `{}` is missing",
            pointer.trim_start_matches('/').replace('/', ".")
        )),
        Some(other) => Err(format!(
            "field `{}` should be text, found {}",
            pointer.trim_start_matches('/').replace('/', "."),
            json_kind(other)
        )),
    }
}

/// Reads an optional string field; a present value of another type is an
/// error (a malformed record, not a missing one).
pub fn opt_str<'a>(value: &'a Value, pointer: &str) -> Result<Option<&'a str>, String> {
    match value.pointer(pointer) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Null) | None => Ok(None),
        Some(other) => Err(format!(
            "field `{}` should be text, found {}",
            pointer.trim_start_matches('/').replace('/', "."),
            json_kind(other)
        )),
    }
}

/// Reads a required integer field.
pub fn req_i64(value: &Value, pointer: &str) -> Result<i64, String> {
    match value.pointer(pointer) {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("field `{pointer}` is not an integer")),
        Some(Value::Null) | None => Err(format!(
            "required field `{}` is missing",
            pointer.trim_start_matches('/').replace('/', ".")
        )),
        Some(other) => Err(format!(
            "field `{}` should be a number, found {}",
            pointer.trim_start_matches('/').replace('/', "."),
            json_kind(other)
        )),
    }
}

/// Checks that a record has every top-level key the upstream always sends
/// (possibly null). A missing one means the record is malformed — reading
/// it as null would store a silently different row.
pub fn require_keys(value: &Value, keys: &[&str]) -> Result<(), String> {
    let Some(object) = value.as_object() else {
        return Err(format!("expected an object, found {}", json_kind(value)));
    };
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !object.contains_key(*k))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "field{} {} missing",
            if missing.len() == 1 { " is" } else { "s are" },
            missing
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Name of a JSON value's type, for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Sends one successful answer as a payload.
pub async fn send(
    out: &Collector,
    stream: &str,
    unit: &str,
    url: &str,
    fetched: &crate::http::Fetched,
) -> Result<(), SourceError> {
    out.payload(Payload {
        stream: stream.to_owned(),
        unit: unit.to_owned(),
        request: format!("GET {url}"),
        status: fetched.status,
        fetched_at: Utc::now(),
        body: String::from_utf8_lossy(&fetched.body).into_owned(),
    })
    .await
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(fetched: &crate::http::Fetched) -> Option<String> {
    let link = fetched.header("link")?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}
