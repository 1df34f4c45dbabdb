//! Commands and their wiring: the command line, and one module per
//! command (or family of commands) that parses, calls the libraries and
//! prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fathom_models::{ALL_TABLES, TableDef};
use fathom_warehouse::state::StateDb;
use fathom_warehouse::{Warehouse, WarehouseLocation};

use crate::config::{Config, LogFormat};

mod alerts;
mod demo;
mod detect;
mod import;
mod ingest;
mod ledger;
mod maintain;
mod ml;
mod ml_ops;
mod ml_risk;
mod query;
mod serve;
mod sim;
mod tokens;
mod transform;

use self::demo::demo;
use self::import::import;
use self::ingest::ingest;
use self::ingest::reprocess;
use self::ledger::audit;
use self::ledger::runs;
use self::maintain::optimize;
use self::maintain::retain;
use self::maintain::vacuum;
use self::query::schema;
use self::query::sql;
use self::serve::serve;
use self::sim::sim;
use self::tokens::tokens;
use self::transform::transform;

/// Fathom: the analytics warehouse of the internal developer platform.
#[derive(Debug, Parser)]
#[command(name = "fathom", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file. Default: ./fathom.toml when it exists.
    #[arg(long, global = true, env = "FATHOM_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr (overrides log.format).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// More logging (-v info, -vv debug); overrides log.level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented example configuration.
    Init {
        /// Where to write it.
        #[arg(default_value = "fathom.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        /// The warehouse location to write into it: a directory,
        /// file:///abs/path or s3://bucket/prefix (default ./fathom-data).
        #[arg(long, value_name = "URL")]
        warehouse: Option<String>,
        /// The state database to write into it: sqlite://PATH or
        /// postgres://… (default: state.db inside a local warehouse).
        #[arg(long, value_name = "URL")]
        state_url: Option<String>,
    },
    /// Bulk-load CSV, NDJSON or Parquet files into a table.
    ///
    /// Columns are matched by name and coerced to the table's schema
    /// (timestamps as RFC 3339 or `YYYY-MM-DD HH:MM:SS` UTC). Rows are merged
    /// on the primary key, so re-importing a file changes nothing. Rows that
    /// fail validation go to the `quarantine` table with file, line, column
    /// and reason; the good rows load. Exits non-zero only when nothing could
    /// be loaded.
    Import {
        /// Target table (`fathom schema` lists them).
        table: String,
        /// Files to load, in order (later rows win on equal keys).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Format of all files; default: from each file's extension.
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a read-only SQL query over all warehouse tables.
    Sql {
        /// The query (SELECT, WITH, VALUES, EXPLAIN, SHOW TABLES).
        query: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
    },
    /// Print the data dictionary: tables, columns, types, keys, descriptions.
    Schema {
        /// Only this table.
        table: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = SchemaFormat::Text)]
        format: SchemaFormat,
    },
    /// Compact small files of tables (all by default).
    Optimize {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
    },
    /// Delete files no longer referenced by recent table versions, including
    /// those left by interrupted writes.
    Vacuum {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Keep files needed by versions younger than this (hours). Below
        /// 168 readers of older versions may break; pass --force to allow.
        #[arg(long, default_value_t = 168)]
        retention_hours: i64,
        /// Allow a retention below 168 hours.
        #[arg(long)]
        force: bool,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Warehouse maintenance.
    Warehouse {
        #[command(subcommand)]
        command: WarehouseCommand,
    },
    /// The synthetic organisation: simulators of the upstream APIs serving
    /// it, and the ground truth it knows.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Fetch the configured sources (`[[sources]]` in fathom.toml) into the
    /// warehouse: incremental from each stream's cursor, raw payloads kept,
    /// bad records quarantined, a summary table at the end.
    Ingest {
        /// Only this source (by name).
        #[arg(long)]
        source: Option<String>,
        /// Only records changed since this day (UTC), where the upstream can
        /// filter; for a first run over a long history.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Ignore cursors and fetch everything again (merges keep it
        /// harmless).
        #[arg(long)]
        full: bool,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-decode the raw layer into the core tables (after a decoder or
    /// catalog-mapping change), with no upstream calls.
    Reprocess {
        /// Only this source (by name).
        #[arg(long)]
        source: Option<String>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Generate the default synthetic organisation, start its simulated
    /// upstreams, ingest every source implemented so far into `--dir`, and
    /// show what landed.
    Demo {
        #[command(flatten)]
        world: WorldArgs,
        /// Directory for the demo's warehouse, state and fathom.toml.
        #[arg(long, default_value = "fathom-demo")]
        dir: PathBuf,
        /// Stop after computing instead of serving the API, the docs and
        /// the PostgreSQL endpoint.
        #[arg(long)]
        no_serve: bool,
        /// Also write the figures checked against the world's truth (DORA
        /// agreement, risk AUCs, suspect precision and recall) to this
        /// JSON file.
        #[arg(long)]
        summary: Option<PathBuf>,
    },
    /// Compute the marts (DORA first) from the core tables, in dependency
    /// order; each mart is replaced in one commit.
    Transform {
        /// Only this mart.
        #[arg(long)]
        mart: Option<String>,
        /// End of the metric windows (exclusive), RFC 3339 or a date.
        /// Default: the end of today (UTC).
        #[arg(long)]
        as_of: Option<String>,
        /// Recompute every mart whole, even when only some components
        /// changed since the last run.
        #[arg(long)]
        full: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score every series (cost per component, team and org; requests,
    /// error rate, latency, CPU, memory and error events per component)
    /// for anomalies against a seasonal, robust baseline; writes
    /// `anomaly_scores` and `anomalies`. `fathom transform` runs it too.
    Detect {
        /// Rescore every series from its first day and replace both
        /// tables, instead of continuing the saved state.
        #[arg(long)]
        full: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ingest every configured source, then compute the marts and detect
    /// anomalies.
    Run {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the rows behind a metric: `fathom explain dora --scope
    /// group:default/payments --metric lead_time --window 30d`.
    Explain {
        #[command(subcommand)]
        what: ExplainCommand,
    },
    /// Serve the API (`/api/v1`, `/healthz`, `/readyz`) until interrupted.
    Serve {
        /// Address to listen on (default `[api] listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Address of the PostgreSQL protocol endpoint (default `[api]
        /// postgres_listen`; empty turns it off).
        #[arg(long)]
        postgres_listen: Option<String>,
    },
    /// Models: the anomaly detector on any CSV series, its evaluation on
    /// synthetic worlds, and its precision from users' feedback.
    Ml {
        #[command(subcommand)]
        command: ml::MlCommand,
    },
    /// Alerts: send what the rules match to Slack, Feishu, n8n or
    /// webhooks (`run`), try a channel (`test`), see deliveries (`status`).
    Alerts {
        #[command(subcommand)]
        command: alerts::AlertsCommand,
    },
    /// Preview the weekly digest of a team (with its sub-teams), or of the
    /// organisation for leaders, as `[alerts.digest]` sends it.
    Digest {
        /// The team's group ref or name; default: the organisation.
        #[arg(long)]
        team: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = alerts::DigestFormat::Markdown)]
        format: alerts::DigestFormat,
    },
    /// Manage API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Show the audit log: SQL queries (HTTP and PostgreSQL), token changes,
    /// intake deliveries, newest first.
    Audit {
        /// How many records.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// List recent runs from the run ledger.
    Runs {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token; its secret is printed once and stored only hashed.
    Create {
        /// A label for listings.
        #[arg(long)]
        name: String,
        /// viewer, cost-viewer, analyst, admin or contractor.
        #[arg(long)]
        role: String,
        /// Limit the token to these teams (group refs or names,
        /// comma-separated); contractors must have some.
        #[arg(long, value_delimiter = ',')]
        teams: Vec<String>,
        /// Expire after this many days.
        #[arg(long)]
        expires_days: Option<i64>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id.
        token_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ExplainCommand {
    /// A DORA metric of `dora_metrics`.
    Dora {
        /// The scope: an entity ref (`group:default/payments`,
        /// `component:default/payments-api`, …) or `org`.
        #[arg(long)]
        scope: String,
        /// deployments, lead_time, change_failure_rate, recovery,
        /// time_to_restore or rework.
        #[arg(long)]
        metric: String,
        /// The window: 7d, 30d, 90d or 365d.
        #[arg(long, default_value = "30d")]
        window: String,
        /// A production environment, or `all` for every one together.
        #[arg(long, default_value = "all")]
        env: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
    },
}

#[derive(Debug, Subcommand)]
enum WarehouseCommand {
    /// Delete what the retention settings say must go: portal events
    /// older than `[usage] retention_days`. Old table
    /// versions keep the rows until `fathom vacuum` removes their files.
    Retain {
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Serve the simulated upstreams on loopback until interrupted.
    Serve {
        #[command(flatten)]
        world: WorldArgs,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: std::net::SocketAddr,
        /// Faults to inject, e.g. `argocd:error_rate=0.1,latency_ms=50;backstage:burst_every=20,burst_length=3`.
        #[arg(long)]
        faults: Option<String>,
        /// Also deliver the AWS cost report and portal event files to this
        /// location (path, file:// or s3://), at start and whenever the
        /// clock moves. S3 settings come from `[warehouse]` and `AWS_*`.
        #[arg(long)]
        export_to: Option<String>,
        /// Also accept GitHub App authentication: generate an App key, write
        /// its private key (PEM) to this file, and print the App and
        /// installation ids to configure.
        #[arg(long)]
        github_app_key: Option<PathBuf>,
    },
    /// Deliver the file-based upstreams once: the AWS Cost and Usage Report
    /// 2.0 (`<to>/cur/fathom-cur/data/BILLING_PERIOD=YYYY-MM/…parquet` and
    /// its manifest) and the portal events (`<to>/portal-events/YYYY/MM/DD/
    /// events.ndjson`), as of `--at`.
    Export {
        #[command(flatten)]
        world: WorldArgs,
        /// Location to write into (path, file:// or s3://). S3 settings come
        /// from `[warehouse]` (`s3_endpoint`, `s3_region`, `s3_allow_http`)
        /// and the `AWS_*` environment variables.
        #[arg(long)]
        to: String,
        /// Simulated now (RFC 3339); the default is the end of the world.
        /// Earlier times deliver an open, partial month.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Write the world's core tables instead (catalog, deployments,
        /// change sets, commits, pull requests and their commits,
        /// incidents) as Parquet files for `fathom import`, one service at a
        /// time: a large organisation's warehouse in minutes, without the
        /// simulators. `--to` is then a local directory.
        #[arg(long, conflicts_with = "at")]
        core_tables: bool,
    },
    /// Write the world's ground truth (DORA per scope and window, every
    /// production deployment, the injected cost anomalies) as JSON lines.
    Truth {
        #[command(flatten)]
        world: WorldArgs,
        /// Directory to write `dora.jsonl` and `deployments.jsonl` into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Which world to generate.
#[derive(Debug, Clone, Copy, clap::Args)]
struct WorldArgs {
    /// Seed of every random choice.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of teams.
    #[arg(long, default_value_t = 8)]
    teams: usize,
    /// Number of components.
    #[arg(long, default_value_t = 40)]
    services: usize,
    /// Days of history.
    #[arg(long, default_value_t = 180)]
    days: u32,
}

impl WorldArgs {
    fn config(self) -> fathom_sim::WorldConfig {
        fathom_sim::WorldConfig {
            seed: self.seed,
            teams: self.teams,
            services: self.services,
            days: self.days,
            ..fathom_sim::WorldConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ImportFormat {
    Csv,
    Ndjson,
    Parquet,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SqlFormat {
    Table,
    Csv,
    Json,
    Ndjson,
    Arrow,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaFormat {
    Text,
    Markdown,
}

fn init_logging(config: &Config, cli: &Cli) {
    let level = match cli.verbose {
        0 => config.log.level.clone(),
        1 => "info".to_owned(),
        _ => "debug".to_owned(),
    };
    // The Delta merge warns about a metric it derives itself on every
    // merge; that is noise for users.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},deltalake_core::operations::merge=error"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless; ignore it.
    let _ = match cli.log_format.unwrap_or(config.log.format) {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn lookup_table(name: &str) -> Result<&'static TableDef> {
    fathom_models::table(name).with_context(|| {
        let names: Vec<&str> = ALL_TABLES.iter().map(|t| t.name).collect();
        format!("unknown table `{name}`; tables are: {}", names.join(", "))
    })
}

pub(crate) fn open_warehouse(config: &Config) -> Result<Warehouse> {
    let location = WarehouseLocation::parse(&config.warehouse.url)?;
    Ok(Warehouse::open(location, config.storage_options())?)
}

pub(crate) async fn open_state(config: &Config) -> Result<StateDb> {
    let url = config.state_database_url()?;
    StateDb::connect(&url).await.with_context(|| {
        format!(
            "cannot open the state database `{}`",
            fathom_warehouse::state::redact_url(&url)
        )
    })
}

/// The pipeline over an opened warehouse and state database.
pub(crate) fn pipeline<'a>(
    config: &'a Config,
    warehouse: &'a Warehouse,
    state: &'a StateDb,
) -> fathom_pipeline::Pipeline<'a> {
    fathom_pipeline::Pipeline {
        warehouse,
        state,
        sources: &config.sources,
        parameters: &config.transforms,
        alerts: &config.alerts,
    }
}

/// Runs one command; the exit code says whether it did its job.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    init_logging(&config, &cli);
    match cli.command {
        Command::Init {
            path,
            force,
            warehouse,
            state_url,
        } => init(&path, force, warehouse.as_deref(), state_url.as_deref()),
        Command::Import {
            table,
            files,
            format,
            json,
        } => import(&config, &table, &files, format, json).await,
        Command::Sql { query, format } => sql(&config, &query, format).await,
        Command::Schema { table, format } => schema(table.as_deref(), format),
        Command::Optimize { table } => optimize(&config, table.as_deref()).await,
        Command::Warehouse {
            command: WarehouseCommand::Retain { dry_run },
        } => retain(&config, dry_run).await,
        Command::Vacuum {
            table,
            retention_hours,
            force,
            dry_run,
        } => vacuum(&config, table.as_deref(), retention_hours, force, dry_run).await,
        Command::Runs { limit, json } => runs(&config, limit, json).await,
        Command::Audit { limit, json } => audit(&config, limit, json).await,
        Command::Serve {
            listen,
            postgres_listen,
        } => serve(&config, listen.as_deref(), postgres_listen.as_deref()).await,
        Command::Tokens { command } => tokens(&config, command).await,
        Command::Alerts { command } => alerts::alerts(&config, command).await,
        Command::Digest { team, format } => alerts::digest(&config, team.as_deref(), format).await,
        Command::Ml { command } => ml::ml(&config, command).await,
        Command::Detect { full, json } => detect::detect(&config, full, json).await,
        Command::Run { json } => {
            let code = ingest(&config, None, None, false, json).await?;
            let transformed = transform(&config, None, None, false, json).await?;
            Ok(if code == ExitCode::SUCCESS {
                transformed
            } else {
                code
            })
        }
        Command::Explain {
            what:
                ExplainCommand::Dora {
                    scope,
                    metric,
                    window,
                    env,
                    format,
                },
        } => {
            let metric: fathom_transforms::ExplainedMetric = metric.parse()?;
            let days: u32 = window
                .trim_end_matches('d')
                .parse()
                .ok()
                .filter(|d| fathom_transforms::WINDOWS.contains(d))
                .with_context(|| format!("--window `{window}`: use 7d, 30d, 90d or 365d"))?;
            let scope = scope.to_ascii_lowercase();
            sql(
                &config,
                &fathom_transforms::explain_sql(&scope, metric, days, &env),
                format,
            )
            .await
        }
        Command::Transform {
            mart,
            as_of,
            full,
            json,
        } => transform(&config, mart.as_deref(), as_of.as_deref(), full, json).await,
        Command::Ingest {
            source,
            since,
            full,
            json,
        } => ingest(&config, source, since, full, json).await,
        Command::Reprocess { source, json } => reprocess(&config, source, json).await,
        Command::Demo {
            world,
            dir,
            no_serve,
            summary,
        } => demo(world, &dir, no_serve, summary.as_deref()).await,
        Command::Sim { command } => sim(&config, command).await,
    }
}

fn init(
    path: &std::path::Path,
    force: bool,
    warehouse: Option<&str>,
    state_url: Option<&str>,
) -> Result<ExitCode> {
    if path.exists() && !force {
        bail!(
            "`{}` already exists; pass --force to overwrite it",
            path.display()
        );
    }
    let mut text = include_str!("../../fathom.example.toml").to_owned();
    if let Some(url) = warehouse {
        WarehouseLocation::parse(url).with_context(|| format!("--warehouse `{url}`"))?;
        text = set_setting(&text, "url = \"./fathom-data\"", "url", url)?;
    }
    if let Some(url) = state_url {
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            bail!("--state-url `{url}`: expected sqlite:PATH, postgres://… or postgresql://…");
        }
        // A password written into fathom.toml ends up in backups and
        // repositories: it belongs in the environment or a secret file.
        if let Some((_, rest)) = url.split_once("://")
            && rest
                .split_once('@')
                .is_some_and(|(user, _)| user.contains(':'))
        {
            bail!(
                "--state-url carries a password; leave it out and set FATHOM_STATE__DATABASE_URL or `database_url_file` instead"
            );
        }
        text = set_setting(&text, "database_url = \"\"", "database_url", url)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    println!("wrote {}", path.display());
    println!(
        "next: `fathom import <table> <files>` to load history (README, \"Import your history\"), or add [[sources]] and run `fathom ingest`"
    );
    Ok(ExitCode::SUCCESS)
}

/// `text` with the example's `line` replaced by `key = "value"` (quoted as
/// TOML wants).
fn set_setting(text: &str, line: &str, key: &str, value: &str) -> Result<String> {
    if !text.contains(line) {
        bail!("the example configuration has no `{line}` line to set");
    }
    let quoted = toml::Value::String(value.to_owned()).to_string();
    Ok(text.replacen(line, &format!("{key} = {quoted}"), 1))
}

/// Who runs a command on this machine, for the audit log.
fn local_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
    )
}
