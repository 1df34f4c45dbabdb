//! Commands and their wiring.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fathom_ingest::{FileFormat, ImportProgress, NoProgress};
use fathom_models::{ALL_TABLES, TableDef, dictionary};
use fathom_warehouse::query::{OutputFormat, QueryLimits};
use fathom_warehouse::state::{RunStatus, StateDb};
use fathom_warehouse::{Warehouse, WarehouseLocation};

use crate::config::{Config, LogFormat};
use crate::progress::ImportBars;

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
    /// Ingest every configured source, then compute the marts.
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
    /// older than `[warehouse] portal_events_retention_days`. Old table
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

/// Runs one command; the exit code says whether it did its job.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    init_logging(&config, &cli);
    match cli.command {
        Command::Init { path, force } => init(&path, force),
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
        } => demo(world, &dir, no_serve).await,
        Command::Sim { command } => sim(&config, command).await,
    }
}

fn init(path: &std::path::Path, force: bool) -> Result<ExitCode> {
    if path.exists() && !force {
        bail!(
            "`{}` already exists; pass --force to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, include_str!("../fathom.example.toml"))
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

async fn import(
    config: &Config,
    table: &str,
    files: &[PathBuf],
    format: Option<ImportFormat>,
    json: bool,
) -> Result<ExitCode> {
    let table = lookup_table(table)?;
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let command = format!("import {} ({} file(s))", table.name, files.len());
    let run_id = state.start_run(&command).await?;
    let progress: Arc<dyn ImportProgress> =
        if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Arc::new(NoProgress)
        } else {
            Arc::new(ImportBars::new())
        };
    let format = format.map(|f| match f {
        ImportFormat::Csv => FileFormat::Csv,
        ImportFormat::Ndjson => FileFormat::NdJson,
        ImportFormat::Parquet => FileFormat::Parquet,
    });
    let outcome =
        fathom_ingest::import_files(&warehouse, table, files, format, &run_id, progress).await;
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            let message = format!("{error:#}");
            state
                .finish_run(&run_id, RunStatus::Failed, &BTreeMap::new(), &[message])
                .await?;
            return Err(error).context(format!(
                "import into `{}` failed; nothing was committed",
                table.name
            ));
        }
    };
    let loaded = report.rows_loaded();
    let rejected = report.rows_rejected();
    let mut counts = BTreeMap::new();
    counts.insert(
        format!("{}.inserted", table.name),
        report.merge.rows_inserted as i64,
    );
    counts.insert(
        format!("{}.updated", table.name),
        report.merge.rows_updated as i64,
    );
    counts.insert(
        format!("{}.unchanged", table.name),
        report.merge.rows_unchanged as i64,
    );
    counts.insert("quarantine.rejected".to_owned(), rejected as i64);
    let errors: Vec<String> = report
        .files
        .iter()
        .filter_map(|f| f.error.clone())
        .collect();
    let status = if loaded == 0 {
        RunStatus::Failed
    } else if rejected > 0 || !errors.is_empty() {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    state.finish_run(&run_id, status, &counts, &errors).await?;

    if json {
        let files: Vec<serde_json::Value> = report
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path.display().to_string(),
                    "format": f.format,
                    "rows_read": f.rows_read,
                    "rows_accepted": f.rows_accepted,
                    "rows_rejected": f.rows_rejected,
                    "ignored_columns": f.ignored_columns,
                    "error": f.error,
                })
            })
            .collect();
        let value = serde_json::json!({
            "run_id": run_id,
            "table": table.name,
            "rows_loaded": loaded,
            "rows_inserted": report.merge.rows_inserted,
            "rows_updated": report.merge.rows_updated,
            "rows_unchanged": report.merge.rows_unchanged,
            "rows_rejected": rejected,
            "files": files,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for f in &report.files {
            match &f.error {
                Some(error) => eprintln!("{}: error: {error}", f.path.display()),
                None => eprintln!(
                    "{}: {} read, {} accepted, {} rejected",
                    f.path.display(),
                    f.rows_read,
                    f.rows_accepted,
                    f.rows_rejected
                ),
            }
            if !f.ignored_columns.is_empty() {
                eprintln!(
                    "  ignored columns not in `{}`: {}",
                    table.name,
                    fathom_ingest::import::shown_names(&f.ignored_columns)
                );
            }
        }
        println!(
            "{}: {loaded} loaded ({} new, {} changed, {} unchanged), {rejected} rejected{}",
            table.name,
            report.merge.rows_inserted,
            report.merge.rows_updated,
            report.merge.rows_unchanged,
            if rejected > 0 {
                format!(
                    " (see: fathom sql \"SELECT line_number, column_name, reason FROM quarantine WHERE run_id = '{run_id}'\")"
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if loaded == 0 {
        eprintln!("error: nothing could be loaded into `{}`", table.name);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn sql(config: &Config, query: &str, format: SqlFormat) -> Result<ExitCode> {
    // Refuse writes before touching storage, so the message is immediate.
    fathom_warehouse::query::ensure_read_only(query)?;
    let warehouse = open_warehouse(config)?;
    let limits = QueryLimits {
        memory_limit_bytes: Some(config.query.memory_limit_mib.saturating_mul(1 << 20)),
        ..QueryLimits::default()
    };
    let ctx = fathom_warehouse::query::read_only_session(&warehouse, limits).await?;
    let (schema, batches) = fathom_warehouse::query::query(&ctx, query).await?;
    let format = match format {
        SqlFormat::Table => OutputFormat::Table,
        SqlFormat::Csv => OutputFormat::Csv,
        SqlFormat::Json => OutputFormat::Json,
        SqlFormat::Ndjson => OutputFormat::NdJson,
        SqlFormat::Arrow => OutputFormat::ArrowIpc,
    };
    let bytes = fathom_warehouse::query::encode(&schema, &batches, format)?;
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}

fn schema(table: Option<&str>, format: SchemaFormat) -> Result<ExitCode> {
    let tables = match table {
        Some(name) => vec![lookup_table(name)?],
        None => dictionary::all(),
    };
    let text = match format {
        SchemaFormat::Text => dictionary::text(&tables),
        SchemaFormat::Markdown => dictionary::markdown(&tables),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn selected_tables(table: Option<&str>) -> Result<Vec<&'static TableDef>> {
    Ok(match table {
        Some(name) => vec![lookup_table(name)?],
        None => ALL_TABLES.iter().collect(),
    })
}

async fn optimize(config: &Config, table: Option<&str>) -> Result<ExitCode> {
    let warehouse = open_warehouse(config)?;
    for def in selected_tables(table)? {
        let stats = warehouse.optimize(def).await?;
        println!(
            "{}: {} file(s) compacted into {} ({} partition(s))",
            def.name, stats.files_removed, stats.files_added, stats.partitions_optimized
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints each mart as it is written.
struct TransformLines {
    quiet: bool,
}

impl fathom_transforms::TransformProgress for TransformLines {
    fn planned(&self, plan: &str) {
        if !self.quiet {
            println!("{plan}");
        }
    }

    fn mart_started(&self, mart: &str) {
        // On stderr, so `--json` output stays clean.
        if !self.quiet {
            eprint!("{mart}…\r");
        }
    }

    fn mart_finished(&self, report: &fathom_transforms::MartReport) {
        if !self.quiet {
            println!(
                "{:<20} {:<16} {:>9} rows (replacing {}) in {:.1}s",
                report.mart, report.recomputed, report.rows, report.previous_rows, report.seconds
            );
        }
    }
}

/// Where the state database keeps the marts' watermark.
const WATERMARK: (&str, &str) = ("transforms", "watermark");

async fn transform(
    config: &Config,
    mart: Option<&str>,
    as_of: Option<&str>,
    full: bool,
    json: bool,
) -> Result<ExitCode> {
    let as_of = match as_of {
        None => fathom_transforms::default_as_of(),
        Some(text) => text
            .parse::<chrono::DateTime<chrono::Utc>>()
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            })
            .with_context(|| format!("--as-of `{text}` is not a date or an RFC 3339 instant"))?,
    };
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let run_id = state.start_run("transform").await?;
    let progress = TransformLines { quiet: json };
    let outcome = recorded_transform(
        config, &warehouse, &state, &run_id, mart, as_of, full, &progress,
    )
    .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"run_id": run_id, "plan": outcome.plan, "marts": outcome.marts})
            )?
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the transforms (incrementally from the stored watermark unless
/// `full`) under the ledger entry `run_id`, keeps the new watermark and
/// records how it ended.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn recorded_transform(
    config: &Config,
    warehouse: &Warehouse,
    state: &StateDb,
    run_id: &str,
    mart: Option<&str>,
    as_of: chrono::DateTime<chrono::Utc>,
    full: bool,
    progress: &dyn fathom_transforms::TransformProgress,
) -> Result<fathom_transforms::RunOutcome> {
    // An unreadable watermark (an older format) only costs a full run.
    let previous: Option<fathom_transforms::Watermark> = state
        .cursor(WATERMARK.0, WATERMARK.1)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok());
    let options = fathom_transforms::RunOptions {
        only: mart,
        as_of,
        full,
        previous: previous.as_ref(),
    };
    match fathom_transforms::run(warehouse, &config.transforms, options, progress).await {
        Ok(outcome) => {
            if let Some(watermark) = &outcome.watermark {
                state
                    .set_cursor(WATERMARK.0, WATERMARK.1, &serde_json::to_string(watermark)?)
                    .await?;
            }
            let counts: BTreeMap<String, i64> = outcome
                .marts
                .iter()
                .map(|r| (format!("{}.rows", r.mart), r.rows as i64))
                .collect();
            state
                .finish_run(run_id, RunStatus::Succeeded, &counts, &[])
                .await?;
            Ok(outcome)
        }
        Err(error) => {
            fail_run(state, run_id, &error).await?;
            Err(error).context("transform failed")
        }
    }
}

/// `fathom serve`: the API until Ctrl-C (or SIGTERM); requests in flight
/// finish first.
async fn serve(
    config: &Config,
    listen: Option<&str>,
    postgres_listen: Option<&str>,
) -> Result<ExitCode> {
    let listen = listen.unwrap_or(&config.api.listen);
    let postgres_listen = postgres_listen.unwrap_or(&config.api.postgres_listen);
    let api = fathom_api::Api {
        warehouse: open_warehouse(config)?,
        state: open_state(config).await?,
        config: fathom_api::ApiConfig {
            auth: config.api.auth,
            query: QueryLimits {
                memory_limit_bytes: Some(config.query.memory_limit_mib.saturating_mul(1 << 20)),
                ..QueryLimits::default()
            },
            row_limit: config.query.row_limit,
            query_timeout: std::time::Duration::from_secs(config.query.timeout_seconds),
            sources: config.sources.iter().map(|s| s.name().to_owned()).collect(),
            cors_origin: Some(config.api.cors_origin.clone()).filter(|o| !o.is_empty()),
            github_webhooks: config
                .sources
                .iter()
                .filter_map(|source| match source {
                    fathom_ingest::source::SourceConfig::Github(github) => github
                        .webhook_secret()
                        .map(|secret| fathom_api::GithubWebhook {
                            source: source.clone(),
                            secret,
                        }),
                    _ => None,
                })
                .collect(),
            rate_limit_per_minute: config.api.rate_limit_per_minute,
            events: events_intake(config),
            header_timeout: std::time::Duration::from_secs(config.api.header_timeout_seconds),
            concurrent_queries: config.query.concurrent_queries.max(1),
        },
        requests: fathom_api::RequestMetrics::default(),
        oidc: config.api.oidc.clone().map(fathom_api::oidc::Oidc::new),
        limiter: fathom_api::RateLimiter::default(),
        caches: fathom_api::Caches::default(),
        triggers: None,
        guards: fathom_api::Guards::default(),
    };
    let mut api = api;
    // The scheduler, checked before anything listens so a bad schedule
    // fails the start.
    let (triggers, trigger_inbox) = tokio::sync::mpsc::channel(64);
    let scheduler = if config.schedule.enabled && !config.sources.is_empty() {
        api.triggers = Some(triggers);
        Some((
            config.clone(),
            api.warehouse.clone(),
            api.state.clone(),
            trigger_inbox,
        ))
    } else {
        None
    };
    let api = Arc::new(api);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on `{listen}`"))?;
    let addr = listener.local_addr()?;
    println!(
        "serving http://{addr}/api/v1 (docs: http://{addr}/api/v1/docs; health: /healthz, /readyz)"
    );
    let postgres = if postgres_listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(postgres_listen)
            .await
            .with_context(|| format!("cannot listen on `{postgres_listen}` (PostgreSQL)"))?;
        let addr = listener.local_addr()?;
        println!(
            "serving PostgreSQL on {addr}: psql \"host={} port={} dbname=fathom user=analyst\" (password: an analyst's API token)",
            addr.ip(),
            addr.port()
        );
        Some(listener)
    };
    // One stop signal for every part of the server.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler_stop = stopped.clone();
    let when_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let signals = async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                () = terminated => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
        }
        let _ = stop.send(true);
    };
    let scheduler = match scheduler {
        Some((config, warehouse, state, inbox)) => {
            println!(
                "scheduler: every source on its [schedule] (default every {}); POST /api/v1/runs runs one now",
                config.schedule.every
            );
            Some(tokio::spawn(crate::schedule::run(
                config,
                warehouse,
                state,
                inbox,
                scheduler_stop,
            )))
        }
        None => None,
    };
    tokio::spawn(signals);
    let http = fathom_api::serve(api.clone(), listener, when_stopped());
    match postgres {
        Some(listener) => {
            let pg = fathom_api::pg::serve_postgres(api, listener, when_stopped());
            let (http, pg) = tokio::join!(http, pg);
            http?;
            pg?;
        }
        None => http.await?,
    }
    // The scheduler finishes (or abandons, after its grace period) the job
    // it is running.
    if let Some(scheduler) = scheduler {
        scheduler.await.context("the scheduler panicked")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// The portal-events source posted events land under, with its key; a
/// source without a usable key accepts no events (said at start).
fn events_intake(config: &Config) -> Option<fathom_api::EventsIntake> {
    config.sources.iter().find_map(|source| match source {
        fathom_ingest::source::SourceConfig::PortalEvents(events) => {
            match events.key(source.name()) {
                Ok(pseudonymizer) => Some(fathom_api::EventsIntake {
                    source: source.name().to_owned(),
                    pseudonymizer,
                }),
                Err(e) => {
                    eprintln!("warning: /api/v1/intake/events is off: {e}");
                    None
                }
            }
        }
        _ => None,
    })
}

/// `fathom tokens …`.
async fn tokens(config: &Config, command: TokensCommand) -> Result<ExitCode> {
    const ROLES: [&str; 5] = ["viewer", "cost-viewer", "analyst", "admin", "contractor"];
    let state = open_state(config).await?;
    match command {
        TokensCommand::Create {
            name,
            role,
            teams,
            expires_days,
        } => {
            if !ROLES.contains(&role.as_str()) {
                bail!("--role `{role}`: use one of {}", ROLES.join(", "));
            }
            if role == "contractor" && teams.is_empty() {
                bail!("a contractor token needs --teams: contractors see only the teams listed");
            }
            let expires = expires_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d));
            let (token, secret) = state.create_token(&name, &role, &teams, expires).await?;
            state
                .audit(
                    &local_actor(),
                    "token.create",
                    Some(&token.token_id),
                    &serde_json::json!({"name": name, "role": role, "teams": teams, "expires_at": expires}),
                )
                .await?;
            println!(
                "token {} ({role}) created; its secret, shown only now:",
                token.token_id
            );
            println!("{}", secret.expose());
        }
        TokensCommand::List => {
            println!(
                "{:<38} {:<20} {:<12} {:<24} status",
                "id", "name", "role", "teams"
            );
            for token in state.tokens().await? {
                let status = if token.revoked_at.is_some() {
                    "revoked"
                } else if token.expires_at.is_some_and(|e| e < chrono::Utc::now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<38} {:<20} {:<12} {:<24} {status}",
                    token.token_id,
                    token.name,
                    token.role,
                    token.teams.join(",")
                );
            }
        }
        TokensCommand::Revoke { token_id } => {
            if !state.revoke_token(&token_id).await? {
                bail!("no active token `{token_id}`");
            }
            state
                .audit(
                    &local_actor(),
                    "token.revoke",
                    Some(&token_id),
                    &serde_json::json!({}),
                )
                .await?;
            println!("token {token_id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who runs a command on this machine, for the audit log.
fn local_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
    )
}

/// Records a run that failed, with the error, in the run ledger.
pub(crate) async fn fail_run(
    state: &StateDb,
    run_id: &str,
    error: &(dyn std::fmt::Display + Sync),
) -> Result<()> {
    state
        .finish_run(
            run_id,
            RunStatus::Failed,
            &BTreeMap::new(),
            &[format!("{error:#}")],
        )
        .await?;
    Ok(())
}

async fn retain(config: &Config, dry_run: bool) -> Result<ExitCode> {
    let days = config.warehouse.portal_events_retention_days;
    if days == 0 {
        println!("portal_events: kept forever (portal_events_retention_days = 0)");
        return Ok(ExitCode::SUCCESS);
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let warehouse = open_warehouse(config)?;
    let older = datafusion::logical_expr::col("occurred_at").lt(datafusion::logical_expr::lit(
        datafusion::scalar::ScalarValue::TimestampMicrosecond(
            Some(cutoff.timestamp_micros()),
            Some("UTC".into()),
        ),
    ));
    if dry_run {
        let session =
            fathom_warehouse::query::read_only_session(&warehouse, QueryLimits::default()).await?;
        let sql = format!(
            "SELECT count(*) FROM portal_events WHERE occurred_at < TIMESTAMP '{}'",
            cutoff.format("%Y-%m-%d %H:%M:%S%.6f")
        );
        let (_, batches) = fathom_warehouse::query::query(&session, &sql).await?;
        let n = batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        println!(
            "portal_events: {n} event(s) before {} would be deleted ({days}-day retention)",
            cutoff.to_rfc3339()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let deleted = warehouse
        .delete_where(&fathom_models::tables::PORTAL_EVENTS, older)
        .await?;
    println!(
        "portal_events: {deleted} event(s) before {} deleted ({days}-day retention); `fathom vacuum` removes their files once older versions expire",
        cutoff.to_rfc3339()
    );
    Ok(ExitCode::SUCCESS)
}

async fn vacuum(
    config: &Config,
    table: Option<&str>,
    retention_hours: i64,
    force: bool,
    dry_run: bool,
) -> Result<ExitCode> {
    if retention_hours < 168 && !force {
        bail!(
            "a retention of {retention_hours}h is below the 168h default and can break readers of older versions; pass --force to allow it"
        );
    }
    let warehouse = open_warehouse(config)?;
    for def in selected_tables(table)? {
        let stats = warehouse
            .vacuum(
                def,
                chrono::Duration::hours(retention_hours),
                !force,
                dry_run,
            )
            .await?;
        let verb = if stats.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!("{}: {verb} {} file(s)", def.name, stats.files_deleted);
    }
    Ok(ExitCode::SUCCESS)
}

/// `fathom audit`.
async fn audit(config: &Config, limit: i64, json: bool) -> Result<ExitCode> {
    let state = open_state(config).await?;
    for record in state.audit_log(limit).await? {
        if json {
            println!("{}", serde_json::to_string(&record)?);
        } else {
            println!(
                "{}  {:24}  {:16}  {}",
                record.occurred_at.format("%Y-%m-%d %H:%M:%S"),
                record.actor,
                record.action,
                record.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn runs(config: &Config, limit: i64, json: bool) -> Result<ExitCode> {
    let state = open_state(config).await?;
    let runs = state.runs(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:36}  {:20}  {:9}  {:>8}  command",
        "run id", "started (UTC)", "status", "seconds"
    );
    for run in runs {
        let seconds = run
            .finished_at
            .map(|f| {
                format!(
                    "{:.1}",
                    (f - run.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "-".to_owned());
        let status = serde_json::to_value(run.status)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        println!(
            "{:36}  {:20}  {:9}  {:>8}  {}",
            run.run_id,
            run.started_at.format("%Y-%m-%d %H:%M:%S"),
            status,
            seconds,
            run.command
        );
        for (name, count) in &run.row_counts {
            println!("{:38}{name}: {count}", "");
        }
        for error in &run.errors {
            println!("{:38}error: {error}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn sim(settings: &Config, command: SimCommand) -> Result<ExitCode> {
    match command {
        SimCommand::Truth { world, out } => {
            let config = world.config();
            let generated = fathom_sim::World::generate(config);
            let truth = fathom_sim::truth::Truth::compute(&generated);
            truth
                .write(&out)
                .with_context(|| format!("cannot write the truth into `{}`", out.display()))?;
            println!(
                "wrote {} DORA rows and {} production deployments for seed {} into {}",
                truth.dora.len(),
                truth.deployments.len(),
                config.seed,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Export { world, to, at } => {
            let target = export_target(settings, &to)?;
            let generated = fathom_sim::World::generate(world.config());
            let now = at.unwrap_or_else(|| generated.config.end());
            let options = fathom_sim::serve::SimOptions {
                export: Some(target),
                ..fathom_sim::serve::SimOptions::default()
            };
            let state = fathom_sim::serve::SimState::new(generated, options);
            state.set_now(now);
            if let Some(delivery) = state.deliver().await? {
                print_delivery(&to, &delivery);
            }
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Serve {
            world,
            listen,
            faults,
            export_to,
            github_app_key,
        } => {
            let config = world.config();
            let faults = match faults {
                Some(spec) => spec.parse()?,
                None => fathom_sim::serve::faults::FaultPlan::default(),
            };
            let mut options = fathom_sim::serve::SimOptions {
                faults,
                export: export_to
                    .as_deref()
                    .map(|to| export_target(settings, to))
                    .transpose()?,
                ..fathom_sim::serve::SimOptions::default()
            };
            if let Some(path) = &github_app_key {
                let app = fathom_sim::serve::GithubApp::generate(1001, 2002)
                    .map_err(|e| anyhow::anyhow!("cannot generate the App key: {e}"))?;
                std::fs::write(path, &app.private_key_pem)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!(
                    "GitHub App: app_id = {}, installation {}, private key in {}",
                    app.app_id,
                    app.installation_id,
                    path.display()
                );
                options.credentials.github_app = Some(app);
            }
            let credentials = options.credentials.clone();
            let state =
                fathom_sim::serve::SimState::new(fathom_sim::World::generate(config), options);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {listen}; pick another address with --listen")
                })?;
            let addr = listener.local_addr()?;
            println!(
                "simulating seed {} ({} teams, {} components, {} days to {}) at http://{addr}",
                config.seed, config.teams, config.services, config.days, config.end_date
            );
            for (upstream, url) in fathom_sim::serve::base_urls(addr) {
                use fathom_sim::serve::Upstream;
                let auth = match upstream {
                    Upstream::Backstage => {
                        format!("Authorization: Bearer {}", credentials.backstage_token)
                    }
                    Upstream::ArgoCd => {
                        format!("Authorization: Bearer {}", credentials.argocd_token)
                    }
                    Upstream::Github => {
                        format!("Authorization: Bearer {}", credentials.github_token)
                    }
                    Upstream::Sentry => {
                        format!("Authorization: Bearer {}", credentials.sentry_token)
                    }
                    Upstream::Datadog => format!(
                        "DD-API-KEY: {}, DD-APPLICATION-KEY: {}",
                        credentials.datadog_api_key, credentials.datadog_application_key
                    ),
                    Upstream::OpenCost => "(no auth)".to_owned(),
                };
                println!("  {:10} {url:45} {auth}", upstream.to_string());
            }
            if let (Some(to), Some(delivery)) = (&export_to, state.deliver().await?) {
                print_delivery(to, &delivery);
            }
            println!(
                "  {:10} http://{addr}/_sim/clock  (GET, or PUT {{\"now\": \"2026-06-30T12:00:00Z\"}})",
                "clock"
            );
            println!(
                "\n# Ingest from these simulators: put this in fathom.toml, then `fathom ingest`.\n{}",
                state.sources_snippet(addr)
            );
            println!("press Ctrl-C to stop");
            fathom_sim::serve::serve(listener, state, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens the object store the simulator delivers files into.
fn export_target(settings: &Config, to: &str) -> Result<fathom_sim::serve::ExportTarget> {
    let location = WarehouseLocation::parse(to)?;
    let (store, root) = location.object_store(&settings.storage_options())?;
    Ok(fathom_sim::serve::ExportTarget {
        store,
        root,
        url: to.to_owned(),
    })
}

fn print_delivery(to: &str, delivery: &fathom_sim::serve::Delivery) {
    let to = to.trim_end_matches('/');
    for period in &delivery.cur {
        println!(
            "  cur        {to}/cur/fathom-cur/data/BILLING_PERIOD={}  {}",
            period.billing_period,
            if !period.written {
                "final, unchanged".to_owned()
            } else {
                format!(
                    "{} rows in {} file(s){}",
                    period.rows,
                    period.files.len(),
                    if period.finalized {
                        ", final"
                    } else {
                        ", open"
                    }
                )
            }
        );
    }
    println!(
        "  events     {to}/portal-events/YYYY/MM/DD/events.ndjson  {} day file(s) written ({} events), {} already there",
        delivery.events.files_written,
        delivery.events.events_written,
        delivery.events.files_present
    );
}

async fn ingest(
    config: &Config,
    source: Option<String>,
    since: Option<chrono::NaiveDate>,
    full: bool,
    json: bool,
) -> Result<ExitCode> {
    if config.sources.is_empty() {
        bail!(
            "no sources configured; add `[[sources]]` to fathom.toml (see fathom.example.toml, or `fathom sim serve` for a ready-made snippet)"
        );
    }
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let command = match &source {
        Some(name) => format!("ingest --source {name}"),
        None => "ingest".to_owned(),
    };
    let run_id = state.start_run(&command).await?;
    let options = fathom_ingest::runner::IngestOptions {
        source,
        since: since
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
        full,
    };
    let progress = ingest_progress(json);
    let report = recorded_ingest(config, &warehouse, &state, &run_id, &options, progress).await?;
    show_ingest_report(&run_id, &report, json)?;
    Ok(if report.has_failures() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs ingest under the ledger entry `run_id` and records how it ended.
pub(crate) async fn recorded_ingest(
    config: &Config,
    warehouse: &Warehouse,
    state: &StateDb,
    run_id: &str,
    options: &fathom_ingest::runner::IngestOptions,
    progress: Arc<dyn fathom_ingest::runner::IngestProgress>,
) -> Result<fathom_ingest::runner::IngestReport> {
    let outcome =
        fathom_ingest::runner::ingest(warehouse, state, &config.sources, options, run_id, progress)
            .await;
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            fail_run(state, run_id, &error).await?;
            return Err(error).context("ingest failed");
        }
    };
    let all_down = report.sources.iter().all(|s| s.degraded);
    let status = if all_down {
        RunStatus::Failed
    } else if report.has_failures() || report.quarantined() > 0 {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    state
        .finish_run(run_id, status, &report.counts(), &report.errors())
        .await?;
    Ok(report)
}

/// Bars on a terminal, unless the output is JSON.
fn ingest_progress(json: bool) -> Arc<dyn fathom_ingest::runner::IngestProgress> {
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Arc::new(fathom_ingest::runner::NoIngestProgress)
    } else {
        Arc::new(crate::progress::IngestBars::new())
    }
}

/// The report of an ingest or reprocess run, as JSON or a table.
fn show_ingest_report(
    run_id: &str,
    report: &fathom_ingest::runner::IngestReport,
    json: bool,
) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run_id": run_id, "report": report}))?
        );
    } else {
        print_ingest_report(report);
        println!("run {run_id}");
    }
    Ok(())
}

fn print_ingest_report(report: &fathom_ingest::runner::IngestReport) {
    println!(
        "{:<12} {:<12} {:>8} {:>9} {:>9} {:>9} {:>11}  status",
        "source", "stream", "payloads", "rows", "changed", "unmapped", "quarantined"
    );
    for source in &report.sources {
        for stream in &source.streams {
            let status = match &stream.error {
                Some(error) => format!("error: {error}"),
                None if !stream.warnings.is_empty() => {
                    format!("{} warning(s)", stream.warnings.len())
                }
                None => "ok".to_owned(),
            };
            println!(
                "{:<12} {:<12} {:>8} {:>9} {:>9} {:>9} {:>11}  {status}",
                source.name,
                stream.stream,
                stream.payloads,
                stream.rows.values().sum::<usize>(),
                stream.rows_changed.values().sum::<usize>(),
                stream.unmapped.values().sum::<usize>(),
                stream.quarantined,
            );
            for warning in &stream.warnings {
                println!("{:<12} {:<12} warning: {warning}", "", "");
            }
        }
        let degraded = if source.degraded {
            format!(
                " — DEGRADED: {}",
                source.error.as_deref().unwrap_or("upstream unavailable")
            )
        } else {
            String::new()
        };
        if matches!(source.kind.as_str(), "cost_report" | "portal_events") {
            // File sources make no API calls.
            if !degraded.is_empty() {
                println!("{:<12}{degraded}", source.name);
            }
            continue;
        }
        println!(
            "{:<12} {} API calls ({} retries, {} not modified, {:.1}s waiting for rate limits){}",
            source.name,
            source.api_calls,
            source.retries,
            source.not_modified,
            source.rate_limit_wait_seconds,
            degraded
        );
    }
}

async fn reprocess(config: &Config, source: Option<String>, json: bool) -> Result<ExitCode> {
    if config.sources.is_empty() {
        bail!("no sources configured; add `[[sources]]` to fathom.toml");
    }
    let warehouse = open_warehouse(config)?;
    let state = open_state(config).await?;
    let run_id = state.start_run("reprocess").await?;
    // Reprocessing may move rows to other components (a new mapping):
    // the next transform starts over rather than follow changed rows.
    state.clear_cursor(WATERMARK.0, WATERMARK.1).await?;
    let options = fathom_ingest::runner::IngestOptions {
        source,
        ..fathom_ingest::runner::IngestOptions::default()
    };
    let progress = ingest_progress(json);
    let report = match fathom_ingest::runner::reprocess(
        &warehouse,
        &state,
        &config.sources,
        &options,
        &run_id,
        progress,
    )
    .await
    {
        Ok(report) => report,
        Err(error) => {
            fail_run(&state, &run_id, &error).await?;
            return Err(error).context("reprocess failed");
        }
    };
    let status = if report.quarantined() > 0 {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    state
        .finish_run(&run_id, status, &report.counts(), &report.errors())
        .await?;
    show_ingest_report(&run_id, &report, json)?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(world: WorldArgs, dir: &std::path::Path, no_serve: bool) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the demo directory `{}`", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", dir.display()))?;
    let generated = fathom_sim::World::generate(world.config());
    let world_end = generated.config.end();
    println!(
        "generated {} teams, {} components, {} days of history (seed {})",
        generated.org.teams.len(),
        generated.org.components.len(),
        generated.config.days,
        generated.config.seed
    );
    // The demo's Argo CD keeps its whole history, as if Fathom had been
    // polling all along; `fathom sim serve` keeps Argo CD's default of 10.
    // A first backfill of the default world takes about 15,000 GitHub
    // requests (three per pull request: the pull, its commits, its
    // reviews). With a personal token's 5,000/hour a real first run stops
    // when the budget is spent, reports GitHub degraded, and the next run
    // resumes from the cursors; the demo's token gets enough budget to
    // finish in one go. (Once caught up, an idle hour costs nothing: the
    // conditional requests answer 304, which GitHub does not count.)
    // The AWS cost report and the portal events are delivered as files,
    // into the demo directory.
    let exports = dir.join("exports");
    let exports_url = exports.display().to_string();
    let (store, root) = WarehouseLocation::parse(&exports_url)?
        .object_store(&fathom_warehouse::StorageOptions::default())?;
    let options = fathom_sim::serve::SimOptions {
        argocd_history_limit: usize::MAX,
        github_rate: fathom_sim::serve::github::RateBudget {
            limit: 30_000,
            window_seconds: 3_600,
        },
        export: Some(fathom_sim::serve::ExportTarget {
            store,
            root,
            url: exports_url,
        }),
        ..fathom_sim::serve::SimOptions::default()
    };
    let state = fathom_sim::serve::SimState::new(generated, options);
    if let Some(delivery) = state.deliver().await? {
        println!(
            "delivered {} billing period(s) of AWS cost report and {} day(s) of portal events to {}",
            delivery.cur.len(),
            delivery.events.files_written + delivery.events.files_present,
            exports.display()
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fathom_sim::serve::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let config_text = format!(
        "# Written by `fathom demo`. The sources point at simulators that stop\n# with the demo; the warehouse stays.\n[warehouse]\nurl = \"{}\"\n\n{}",
        dir.join("data").display(),
        state.sources_snippet(addr)
    );
    let config_path = dir.join("fathom.toml");
    std::fs::write(&config_path, &config_text)
        .with_context(|| format!("cannot write `{}`", config_path.display()))?;
    let config = Config::load(Some(&config_path), std::iter::empty())?;
    println!(
        "simulated upstreams at http://{addr}; ingesting into {}",
        dir.join("data").display()
    );

    let warehouse = open_warehouse(&config)?;
    let state_db = open_state(&config).await?;
    let run_id = state_db.start_run("demo ingest").await?;
    let progress = ingest_progress(false);
    let report = fathom_ingest::runner::ingest(
        &warehouse,
        &state_db,
        &config.sources,
        &fathom_ingest::runner::IngestOptions::default(),
        &run_id,
        progress,
    )
    .await;
    let _ = stop.send(());
    let _ = server.await;
    let report = report.context("the demo ingest failed")?;
    let status = if report.has_failures() {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    state_db
        .finish_run(&run_id, status, &report.counts(), &report.errors())
        .await?;
    print_ingest_report(&report);
    let ingest_seconds = started.elapsed().as_secs_f64();

    // The metrics, as of the world's last day (its history ends there).
    println!(
        "\ncomputing the marts (DORA as of the world's end, {}):",
        world_end.date_naive()
    );
    let options = fathom_transforms::RunOptions {
        only: None,
        as_of: world_end,
        full: true,
        previous: None,
    };
    let outcome = fathom_transforms::run(
        &warehouse,
        &config.transforms,
        options,
        &TransformLines { quiet: false },
    )
    .await
    .context("the demo transform failed")?;
    if let Some(watermark) = &outcome.watermark {
        state_db
            .set_cursor(WATERMARK.0, WATERMARK.1, &serde_json::to_string(watermark)?)
            .await?;
    }

    println!("\nwhat landed:");
    let session =
        fathom_warehouse::query::read_only_session(&warehouse, QueryLimits::default()).await?;
    println!("{:<24} {:>9} {:>13}", "table", "rows", "unattributed");
    for table in ALL_TABLES {
        if table.name.starts_with("raw_") {
            continue;
        }
        // A portal event's entity is the page's context, not an
        // attribution that could fail.
        let has_entity = table.column("entity_ref").is_some() && table.name != "portal_events";
        let sql = if has_entity {
            format!(
                "SELECT count(*), count(*) - count(entity_ref) FROM {}",
                table.name
            )
        } else {
            format!("SELECT count(*), 0 FROM {}", table.name)
        };
        let (_, batches) = fathom_warehouse::query::query(&session, &sql).await?;
        let cell = |column: usize| -> String {
            batches
                .first()
                .filter(|b| b.num_rows() > 0)
                .and_then(|b| {
                    arrow::util::display::ArrayFormatter::try_new(
                        b.column(column).as_ref(),
                        &Default::default(),
                    )
                    .ok()
                    .map(|f| f.value(0).to_string())
                })
                .unwrap_or_else(|| "0".to_owned())
        };
        let rows = cell(0);
        if rows == "0" {
            continue;
        }
        println!(
            "{:<24} {:>9} {:>13}",
            table.name,
            rows,
            if has_entity { cell(1) } else { "-".to_owned() }
        );
    }
    let sample = "SELECT e.owner_ref AS team, count(*) AS production_deployments, \
                  count(DISTINCT d.entity_ref) AS services \
                  FROM deployments d JOIN catalog_entities e ON e.entity_ref = d.entity_ref \
                  WHERE d.status = 'success' AND regexp_like(d.environment, '^prod(uction)?([-_].*)?$', 'i') \
                  GROUP BY 1 ORDER BY 2 DESC";
    println!("\na sample query — production deployments per team:\n  {sample}\n");
    let (_, batches) = fathom_warehouse::query::query(&session, sample).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    let dora = "SELECT scope, deployments, round(deployments_per_week, 1) AS per_week, \
                round(lead_time_p50_seconds / 3600, 1) AS lead_time_p50_hours, \
                round(change_failure_rate * 100, 1) AS cfr_percent, \
                round(failed_deployment_recovery_p50_seconds / 3600, 1) AS recovery_p50_hours, \
                overall_tier \
                FROM dora_metrics WHERE window_days = 30 AND environment = 'all' \
                AND scope_kind IN ('org', 'group') \
                ORDER BY scope_kind DESC, scope";
    println!("DORA over the world's last 30 days (dora_metrics):");
    let (_, batches) = fathom_warehouse::query::query(&session, dora).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);

    // The generator computes DORA with its own implementation of the
    // definitions: every scope and window must agree.
    let truth = fathom_sim::truth::Truth::compute(state.world());
    let (_, batches) = fathom_warehouse::query::query(
        &session,
        &format!(
            "SELECT {} FROM dora_metrics WHERE environment = 'all'",
            fathom_sim::truth::DoraTruth::COLUMNS
        ),
    )
    .await?;
    let ours: Vec<fathom_sim::truth::DoraTruth> = fathom_warehouse::query::text_rows(&batches)?
        .iter()
        .filter_map(|row| fathom_sim::truth::DoraTruth::from_texts(row))
        .collect();
    let (agreed, differences) = fathom_sim::truth::compare_dora(&truth.dora, &ours);
    println!(
        "checked against the world's own DORA computation: {agreed} of {} scope × window rows agree",
        truth.dora.len()
    );
    for difference in differences.iter().take(5) {
        println!("  differs: {difference}");
    }
    println!(
        "\ningested and computed in {:.1}s (ingest {ingest_seconds:.1}s). Query it further with:\n  fathom --config {} sql \"SELECT * FROM dora_metrics LIMIT 10\"\n  fathom --config {} explain dora --scope org --metric lead_time --window 30d",
        started.elapsed().as_secs_f64(),
        config_path.display(),
        config_path.display()
    );
    if no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    // Serve what was computed. The simulators are gone, so nothing is
    // scheduled; an analyst token opens SQL over HTTP and psql.
    let http = free_or_any("127.0.0.1:8080").await?;
    let postgres = free_or_any("127.0.0.1:5433").await?;
    let (_, secret) = state_db.create_token("demo", "analyst", &[], None).await?;
    let port = postgres.rsplit(':').next().unwrap_or("5433");
    println!(
        "
serving the results. API docs: http://{http}/api/v1/docs
Dashboards (signed in with an analyst token made for the demo): http://{http}/#token={secret}
SQL from psql (the password is an analyst token made for the demo):
  PGPASSWORD={} psql \"host=127.0.0.1 port={port} dbname=fathom user=demo sslmode=disable\" -c \"SELECT scope, deployments, overall_tier FROM dora_metrics WHERE window_days = 30 AND environment = 'all' AND scope_kind = 'group'\"\nCtrl-C stops.",
        secret.expose(),
        secret = secret.expose()
    );
    let mut config = config;
    config.schedule.enabled = false;
    serve(&config, Some(&http), Some(&postgres)).await
}

/// `preferred` when it is free, else a free port on loopback.
async fn free_or_any(preferred: &str) -> Result<String> {
    let listener = match tokio::net::TcpListener::bind(preferred).await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    Ok(listener.local_addr()?.to_string())
}
