//! `fathom.toml`: typed, documented, with `FATHOM_<SECTION>__<KEY>`
//! environment overrides. The committed `fathom.example.toml` is the
//! reference; a test loads it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where tables live.
    pub warehouse: WarehouseConfig,
    /// The state database.
    pub state: StateConfig,
    /// SQL limits.
    pub query: QueryConfig,
    /// Logging.
    pub log: LogConfig,
    /// Metric definitions' parameters.
    pub transforms: fathom_transforms::Parameters,
    /// The cost marts' parameters (carried into `transforms.cost` on load,
    /// so the watermark sees a change of them).
    pub cost: fathom_transforms::CostParameters,
    /// The usage marts' parameters and the events' retention (carried
    /// into `transforms.usage` on load, like `[cost]`).
    pub usage: fathom_transforms::UsageParameters,
    /// `fathom serve`.
    pub api: ApiSection,
    /// The scheduler of `fathom serve`.
    pub schedule: crate::schedule::ScheduleConfig,
    /// Alerts: channels and rules (`[[alerts.channels]]`,
    /// `[[alerts.rules]]`).
    pub alerts: fathom_pipeline::notify::AlertsConfig,
    /// Upstream sources (`[[sources]]`, each with a `type`).
    pub sources: Vec<fathom_ingest::source::SourceConfig>,
}

/// `[warehouse]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    /// Path or URL of the warehouse root. Default `./fathom-data`.
    pub url: String,
    /// S3-compatible endpoint; empty for AWS. Default empty.
    pub s3_endpoint: String,
    /// Bucket region. Default `us-east-1`.
    pub s3_region: String,
    /// Allow http:// endpoints. Default false.
    pub s3_allow_http: bool,
    /// Moved to `[usage] retention_days`; kept only to say so.
    portal_events_retention_days: Option<u32>,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        Self {
            url: "./fathom-data".to_owned(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".to_owned(),
            s3_allow_http: false,
            portal_events_retention_days: None,
        }
    }
}

/// `[state]`. Its `Debug` never shows a password.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `sqlite://…` or `postgres://…`; empty for SQLite in the data dir.
    pub database_url: String,
    /// File holding the URL; wins over `database_url`. Default empty.
    pub database_url_file: String,
}

impl std::fmt::Debug for StateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateConfig")
            .field(
                "database_url",
                &fathom_warehouse::state::redact_url(&self.database_url),
            )
            .field("database_url_file", &self.database_url_file)
            .finish()
    }
}

/// `[query]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Memory in MiB that callers' queries may use together for sorts,
    /// joins and aggregates before they spill or fail (one pool per
    /// server). Default 2048.
    pub memory_limit_mib: usize,
    /// Most rows one API query answers with. Default 100000.
    pub row_limit: usize,
    /// Longest an API query may run, seconds. Default 60.
    pub timeout_seconds: u64,
    /// Callers' SQL queries (HTTP and PostgreSQL together) run at once;
    /// more wait up to 10 s, then are answered "busy". Default 4.
    pub concurrent_queries: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit_mib: 2048,
            row_limit: 100_000,
            timeout_seconds: 60,
            concurrent_queries: 4,
        }
    }
}

/// `[api]`: the server of `fathom serve`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// `tokens` (API tokens from `fathom tokens create`) or `none` (every
    /// caller is an admin; loopback addresses only). Default `tokens`.
    pub auth: fathom_api::AuthMode,
    /// The portal's origin (e.g. `https://backstage.example.com`), allowed
    /// to call the API from browsers; empty allows none. Default empty.
    pub cors_origin: String,
    /// Address of the PostgreSQL wire protocol endpoint (SQL for `psql` and
    /// BI tools; the password is an API token); empty turns it off.
    /// Default `127.0.0.1:5433`.
    pub postgres_listen: String,
    /// OIDC bearer tokens from the organisation's identity provider
    /// (`[api.oidc]`); API tokens keep working alongside.
    pub oidc: Option<fathom_api::oidc::OidcConfig>,
    /// Requests a minute one token (or OIDC subject) may make, in bursts of
    /// up to that many; 0 turns the limit off. Default 6000.
    pub rate_limit_per_minute: u32,
    /// Seconds a client has to send a request's head; also how long an
    /// idle keep-alive connection is kept. Default 30.
    pub header_timeout_seconds: u64,
    /// Whether the dashboards report their page views to the portal-events
    /// intake (as plugin `fathom`, users pseudonymized like every event),
    /// so Fathom measures its own adoption; needs a `portal_events`
    /// source. Default true.
    pub report_page_views: bool,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            auth: fathom_api::AuthMode::Tokens,
            cors_origin: String::new(),
            postgres_listen: "127.0.0.1:5433".to_owned(),
            oidc: None,
            rate_limit_per_minute: 6000,
            header_timeout_seconds: 30,
            report_page_views: true,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`. Default `human`.
    pub format: LogFormat,
    /// Level filter. Default `warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "warn".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Prefix of environment overrides.
const ENV_PREFIX: &str = "FATHOM_";

impl Config {
    /// Loads `path` (if given or if `./fathom.toml` exists), then applies
    /// `FATHOM_<SECTION>__<KEY>` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let default_path = PathBuf::from("fathom.toml");
        let path = match path {
            Some(path) => Some(path.to_path_buf()),
            None => default_path.exists().then_some(default_path),
        };
        let mut document = match &path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file `{}`", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("`{}` is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only SECTION__KEY names are settings; other FATHOM_ variables
            // (FATHOM_CONFIG, FATHOM_FIXTURES_DIR, …) are not.
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let section = section.to_ascii_lowercase();
            let key = key.to_ascii_lowercase();
            let table = document
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(table) = table.as_table_mut() else {
                bail!("{name}: `{section}` is not a section of the configuration");
            };
            table.insert(key, env_value(&value));
        }
        let source = path.as_ref().map_or_else(
            || "the environment".to_owned(),
            |p| format!("`{}` and the environment", p.display()),
        );
        let mut config: Config = toml::Value::Table(document)
            .try_into()
            .with_context(|| format!("invalid configuration in {source}"))?;
        if config.transforms.cost != fathom_transforms::CostParameters::default() {
            bail!("the cost parameters go in `[cost]`, not `[transforms.cost]` ({source})");
        }
        config.transforms.cost = config.cost.clone();
        if config.transforms.usage != fathom_transforms::UsageParameters::default() {
            bail!("the usage parameters go in `[usage]`, not `[transforms.usage]` ({source})");
        }
        if config.warehouse.portal_events_retention_days.is_some() {
            bail!(
                "`[warehouse] portal_events_retention_days` is now `[usage] retention_days` ({source})"
            );
        }
        config.transforms.usage = config.usage.clone();
        let mut names = std::collections::BTreeSet::new();
        for configured in &config.sources {
            if !names.insert(configured.name()) {
                bail!(
                    "two sources are named `{}` in {source}; give each `[[sources]]` a distinct `name`",
                    configured.name()
                );
            }
        }
        Ok(config)
    }

    /// The database URL to use, resolving the file and the default.
    pub fn state_database_url(&self) -> Result<String> {
        if !self.state.database_url_file.is_empty() {
            let url =
                std::fs::read_to_string(&self.state.database_url_file).with_context(|| {
                    format!(
                        "cannot read state.database_url_file `{}`",
                        self.state.database_url_file
                    )
                })?;
            return Ok(url.trim().to_owned());
        }
        if !self.state.database_url.is_empty() {
            return Ok(self.state.database_url.clone());
        }
        let location = fathom_warehouse::WarehouseLocation::parse(&self.warehouse.url)?;
        let dir = if location.is_local() {
            location
                .root()
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("warehouse path is not local"))?
        } else {
            PathBuf::from("fathom-data")
        };
        Ok(format!("sqlite://{}", dir.join("state.db").display()))
    }

    /// Object-store options for the warehouse.
    pub fn storage_options(&self) -> fathom_warehouse::StorageOptions {
        let mut options = fathom_warehouse::StorageOptions::default();
        let w = &self.warehouse;
        if !w.s3_endpoint.is_empty() {
            options
                .0
                .insert("AWS_ENDPOINT_URL".into(), w.s3_endpoint.clone());
        }
        if !w.s3_region.is_empty() {
            options.0.insert("AWS_REGION".into(), w.s3_region.clone());
        }
        if w.s3_allow_http {
            options.0.insert("AWS_ALLOW_HTTP".into(), "true".into());
        }
        options
    }
}

/// An environment value as TOML when it parses as a scalar or array,
/// otherwise as text (so `s3://x` needs no quoting).
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_example_loads_and_equals_the_defaults() -> Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fathom.example.toml");
        let config = Config::load(Some(&path), Vec::new())?;
        assert_eq!(config, Config::default());
        Ok(())
    }

    /// The configuration the commented example from `from` (to `to`)
    /// makes once uncommented.
    fn uncommented_example(from: &str, to: Option<&str>) -> Result<Config> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fathom.example.toml");
        let text = std::fs::read_to_string(path)?;
        let start = text.find(from).context("no such example")?;
        let end = match to {
            Some(to) => text.find(to).context("no end of the example")?,
            None => text.len(),
        };
        let uncommented: String = text[start..end]
            .lines()
            .map(|line| line.strip_prefix("# ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("fathom.toml");
        std::fs::write(&file, uncommented)?;
        Config::load(Some(&file), Vec::new())
    }

    /// The commented `[[sources]]` of the example, uncommented, is a valid
    /// configuration of five sources.
    #[test]
    fn the_example_sources_parse() -> Result<()> {
        let config = uncommented_example("# [[sources]]", None)?;
        let names: Vec<(&str, &str)> = config
            .sources
            .iter()
            .map(|s| (s.name(), s.kind()))
            .collect();
        assert_eq!(
            names,
            [
                ("backstage", "backstage"),
                ("github", "github"),
                ("argocd-eu", "argocd"),
                ("datadog", "datadog"),
                ("opencost", "opencost"),
                ("sentry", "sentry"),
                ("cost_report", "cost_report"),
                ("portal_events", "portal_events")
            ]
        );
        assert_eq!(
            config.sources[0].common().map(|c| c.http.max_retries),
            Some(5)
        );
        Ok(())
    }

    /// The commented `[[alerts.channels]]` and `[[alerts.rules]]` of the
    /// example, uncommented, are a valid `[alerts]`.
    #[test]
    fn the_example_alerts_parse() -> Result<()> {
        let config = uncommented_example("# [[alerts.channels]]", Some("# Upstream sources"))?;
        config.alerts.check()?;
        let channels: Vec<&str> = config
            .alerts
            .channels
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            channels,
            ["platform-slack", "platform-feishu", "automation"]
        );
        assert_eq!(config.alerts.rules.len(), 2);
        assert_eq!(config.alerts.digest.channels, ["platform-slack"]);
        assert_eq!(config.alerts.rules[0].max_per_hour, Some(10));
        Ok(())
    }

    #[test]
    fn duplicate_source_names_are_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("fathom.toml");
        std::fs::write(
            &file,
            "[[sources]]\ntype = \"argocd\"\n[[sources]]\ntype = \"argocd\"\n",
        )?;
        let error = Config::load(Some(&file), Vec::new())
            .err()
            .context("accepted")?;
        assert!(
            format!("{error:#}").contains("two sources are named `argocd`"),
            "{error:#}"
        );
        Ok(())
    }

    #[test]
    fn environment_overrides_the_file() -> Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fathom.example.toml");
        let env = vec![
            (
                "FATHOM_WAREHOUSE__URL".to_owned(),
                "s3://bucket/prefix".to_owned(),
            ),
            (
                "FATHOM_QUERY__MEMORY_LIMIT_MIB".to_owned(),
                "512".to_owned(),
            ),
            (
                "FATHOM_WAREHOUSE__S3_ALLOW_HTTP".to_owned(),
                "true".to_owned(),
            ),
            ("FATHOM_FIXTURES_DIR".to_owned(), "/elsewhere".to_owned()),
        ];
        let config = Config::load(Some(&path), env)?;
        assert_eq!(config.warehouse.url, "s3://bucket/prefix");
        assert_eq!(config.query.memory_limit_mib, 512);
        assert!(config.warehouse.s3_allow_http);
        Ok(())
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let env = vec![("FATHOM_WAREHOUSE__URLL".to_owned(), "x".to_owned())];
        let error = Config::load(None, env)
            .map(|_| ())
            .err()
            .map(|e| format!("{e:#}"));
        assert!(error.is_some_and(|e| e.contains("urll")));
    }

    #[test]
    fn debug_hides_the_database_password() {
        let config = Config {
            state: StateConfig {
                database_url: "postgres://fathom:hunter2@db/fathom".to_owned(),
                database_url_file: String::new(),
            },
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
