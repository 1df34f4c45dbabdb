//! Marts computed from the core tables: a DataFusion session over the
//! warehouse, one `.sql` file per mart in `transforms/sql/` (readable by
//! analysts and runnable elsewhere once the parameters are filled in), Rust
//! UDFs where SQL is not enough, run in dependency order.
//!
//! A mart is a deterministic function of its input tables: running it again
//! on the same inputs writes the same rows. Each write is one commit
//! (readers see the previous version or the new one). Runs are
//! incremental: given the previous run's [`Watermark`], only the components
//! new rows touched and the scopes containing them are recomputed, and an
//! incremental run leaves exactly the rows a full recompute would
//! ([`incremental`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array};
use arrow::datatypes::DataType;
use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use fathom_models::TableDef;
use fathom_models::tables::{
    DORA_CHANGES, DORA_DEPLOYMENTS, DORA_METRICS, DORA_SCOPE_MEMBERS, DORA_TRENDS,
};
use fathom_warehouse::Warehouse;
use serde::{Deserialize, Serialize};

pub mod incremental;
pub mod tiers;

pub use incremental::Watermark;

/// What went wrong in a transform.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The warehouse could not be read or written. Boxed: storage errors
    /// are large and rare.
    #[error(transparent)]
    Warehouse(Box<fathom_warehouse::Error>),
    /// A mart's SQL failed to plan or run.
    #[error("mart `{mart}`: {source}")]
    Sql {
        /// The mart.
        mart: &'static str,
        /// What the engine said.
        #[source]
        source: DataFusionError,
    },
    /// A parameter is unusable.
    #[error("transform parameter `{name}`: {message}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// `--mart` names no mart.
    #[error("no mart named `{0}`; marts: {marts}", marts = MARTS.iter().map(|m| m.def.name).collect::<Vec<_>>().join(", "))]
    UnknownMart(String),
}

impl From<fathom_warehouse::Error> for Error {
    fn from(error: fathom_warehouse::Error) -> Self {
        Self::Warehouse(Box::new(error))
    }
}

/// Result with the transforms' error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The definitions' parameters (`[transforms]` in `fathom.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Parameters {
    /// Regular expression (case-insensitive) of production environments.
    /// Default `^prod(uction)?([-_].*)?$`.
    pub production_pattern: String,
    /// How long after a deployment an incident without an explicit link is
    /// blamed on it, days. Default 7.
    pub incident_gap_days: u32,
    /// The benchmark table of the tiers: `dora-2021`, `dora-2023` (default)
    /// or `dora-2024`.
    pub benchmark: String,
    /// Incremental runs re-read rows written up to this many minutes
    /// before the previous run's newest, for writers whose commit lands
    /// after a run read the tables. Default 10.
    pub change_margin_minutes: u32,
}

impl Default for Parameters {
    fn default() -> Self {
        Self {
            production_pattern: "^prod(uction)?([-_].*)?$".to_owned(),
            incident_gap_days: 7,
            benchmark: tiers::DEFAULT_BENCHMARK.to_owned(),
            change_margin_minutes: 10,
        }
    }
}

/// The rolling windows, days.
pub const WINDOWS: [u32; 4] = [7, 30, 90, 365];

fn timestamp_literal(at: DateTime<Utc>) -> String {
    format!(
        "CAST('{}' AS TIMESTAMP)",
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Which periods a metrics query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periods {
    /// The rolling windows of [`WINDOWS`] days ending at `as_of`.
    Rolling,
    /// The last 52 calendar weeks (Monday start) and 12 calendar months,
    /// the current ones ending at `as_of`.
    Calendar,
}

/// One period of a metrics query.
#[derive(Debug, Clone, PartialEq)]
struct Period {
    label: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

fn periods(kind: Periods, as_of: DateTime<Utc>) -> Vec<Period> {
    match kind {
        Periods::Rolling => WINDOWS
            .iter()
            .map(|days| Period {
                label: format!("{days}d"),
                start: as_of - Duration::days(i64::from(*days)),
                end: as_of,
            })
            .collect(),
        Periods::Calendar => {
            let mut out = Vec::new();
            let last = (as_of - Duration::seconds(1)).date_naive();
            let monday = last - Duration::days(i64::from(last.weekday().num_days_from_monday()));
            for k in 0..52 {
                let start = midnight(monday - Duration::weeks(k));
                out.push(Period {
                    label: "week".to_owned(),
                    start,
                    end: (start + Duration::weeks(1)).min(as_of),
                });
            }
            let mut first = last.with_day(1).unwrap_or(last);
            for _ in 0..12 {
                let next = first
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(first);
                out.push(Period {
                    label: "month".to_owned(),
                    start: midnight(first),
                    end: midnight(next).min(as_of),
                });
                first = first
                    .checked_sub_months(chrono::Months::new(1))
                    .unwrap_or(first);
            }
            out
        }
    }
}

/// `(window_id, period, window_days, window_start, window_end)` rows for
/// SQL `VALUES`.
fn windows_values(periods: &[Period]) -> String {
    periods
        .iter()
        .enumerate()
        .map(|(id, p)| {
            let seconds = (p.end - p.start).num_seconds().max(1);
            let days = (seconds + 86_399) / 86_400;
            format!(
                "({id}, '{}', {days}, {}, {})",
                p.label,
                timestamp_literal(p.start),
                timestamp_literal(p.end)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(window_id, week_start, week_end)` rows: the calendar weeks (Monday
/// start, UTC) intersecting each period, clipped to it.
fn weeks_values(periods: &[Period]) -> String {
    let date = |d: NaiveDate| format!("CAST('{d}' AS DATE)");
    let mut rows = Vec::new();
    for (id, period) in periods.iter().enumerate() {
        let start = period.start.date_naive();
        let end = period.end.date_naive();
        let mut monday = start - Duration::days(i64::from(start.weekday().num_days_from_monday()));
        while monday < end {
            let next = monday + Duration::days(7);
            rows.push(format!(
                "({id}, {}, {})",
                date(monday.max(start)),
                date(next.min(end))
            ));
            monday = next;
        }
    }
    rows.join(", ")
}

impl Parameters {
    /// `sql` with its `{{name}}` placeholders filled in, windows ending at
    /// `as_of`.
    pub fn fill(&self, sql: &str, as_of: DateTime<Utc>) -> Result<String> {
        self.fill_periods(sql, as_of, Periods::Rolling)
    }

    /// `sql` with its placeholders filled in for `kind` of periods ending at
    /// `as_of`.
    pub fn fill_periods(&self, sql: &str, as_of: DateTime<Utc>, kind: Periods) -> Result<String> {
        let periods = periods(kind, as_of);
        let sql = sql.replace("{{dora_metrics}}", include_str!("../sql/dora_metrics.sql"));
        // DataFusion's regexp_like uses the same engine: a pattern that does
        // not compile here would fail inside the mart's SQL with an error
        // that does not name the setting.
        if let Err(e) = regex::Regex::new(&self.production_pattern) {
            return Err(Error::Parameter {
                name: "production_pattern",
                message: format!("not a valid regular expression: {e}"),
            });
        }
        let Some(benchmark) = tiers::Benchmark::named(&self.benchmark) else {
            return Err(Error::Parameter {
                name: "benchmark",
                message: format!(
                    "`{}` is not one of {}",
                    self.benchmark,
                    tiers::Benchmark::names()
                ),
            });
        };
        let recovery = match benchmark.recovery_metric {
            tiers::RecoveryMetric::TimeToRestore => "time_to_restore_p50_seconds",
            tiers::RecoveryMetric::FailedDeploymentRecovery => {
                "failed_deployment_recovery_p50_seconds"
            }
        };
        Ok(sql
            .replace("{{benchmark}}", benchmark.name)
            .replace("{{recovery}}", recovery)
            .replace(
                "{{production_pattern}}",
                &self.production_pattern.replace('\'', "''"),
            )
            .replace("{{incident_gap_days}}", &self.incident_gap_days.to_string())
            .replace("{{windows}}", &windows_values(&periods))
            .replace("{{weeks}}", &weeks_values(&periods))
            .replace(
                "{{as_of}}",
                &as_of.to_rfc3339_opts(SecondsFormat::Secs, true),
            ))
    }
}

/// One mart: its table and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Mart {
    /// The table it writes.
    pub def: &'static TableDef,
    /// Its query, with `{{parameter}}` placeholders.
    pub sql: &'static str,
    /// The periods its metrics cover.
    pub periods: Periods,
}

/// Every mart, in dependency order.
pub const MARTS: &[Mart] = &[
    Mart {
        def: &DORA_DEPLOYMENTS,
        sql: include_str!("../sql/dora_deployments.sql"),
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_CHANGES,
        sql: include_str!("../sql/dora_changes.sql"),
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_SCOPE_MEMBERS,
        sql: include_str!("../sql/dora_scope_members.sql"),
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_METRICS,
        sql: include_str!("../sql/dora_metrics.sql"),
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_TRENDS,
        sql: include_str!("../sql/dora_trends.sql"),
        periods: Periods::Calendar,
    },
];

/// The end of the windows by default: the end of the current UTC day, so
/// today's deployments count.
pub fn default_as_of() -> DateTime<Utc> {
    let tomorrow = Utc::now().date_naive() + Duration::days(1);
    tomorrow
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |t| t.and_utc())
}

/// A metric `fathom explain dora` can trace to its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainedMetric {
    /// Deployments, deploy days, frequency: the completed deployments.
    Deployments,
    /// Lead time: the changes deployed in the window.
    LeadTime,
    /// Change failure rate: the completed deployments, failed first.
    ChangeFailureRate,
    /// Failed deployment recovery: the failed deployments.
    Recovery,
    /// Time to restore: the incidents started in the window.
    TimeToRestore,
    /// Rework rate: the completed deployments, rework first.
    Rework,
}

impl std::str::FromStr for ExplainedMetric {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "deployments" | "deployment_frequency" | "deploy_days" => Self::Deployments,
            "lead_time" => Self::LeadTime,
            "change_failure_rate" | "cfr" => Self::ChangeFailureRate,
            "recovery" | "failed_deployment_recovery" => Self::Recovery,
            "time_to_restore" => Self::TimeToRestore,
            "rework" | "rework_rate" => Self::Rework,
            other => {
                return Err(Error::Parameter {
                    name: "metric",
                    message: format!(
                        "`{other}` is not one of deployments, lead_time, change_failure_rate, recovery, time_to_restore, rework"
                    ),
                });
            }
        })
    }
}

/// The query listing the rows behind `metric` of `scope` over the window of
/// `window_days` in `environment` (`all` or one production environment)
/// that `dora_metrics` holds (same members, same window end, same
/// environment rule), so the rows add up to the stored number.
pub fn explain_sql(
    scope: &str,
    metric: ExplainedMetric,
    window_days: u32,
    environment: &str,
) -> String {
    let quoted_scope = scope.replace('\'', "''");
    let window = format!(
        "(SELECT as_of - INTERVAL '{window_days} days' AS window_start, as_of AS window_end \
         FROM dora_metrics WHERE scope = '{quoted_scope}' AND window_days = {window_days} \
         AND environment = 'all')"
    );
    explain_in(scope, metric, &window, environment)
}

/// The rows behind one calendar period of `dora_trends` (a week or a
/// month): the same rows as [`explain_sql`], in `[start, end)` instead of
/// a rolling window. The bounds are dates (`YYYY-MM-DD`, UTC midnight).
pub fn explain_period_sql(
    scope: &str,
    metric: ExplainedMetric,
    start: NaiveDate,
    end: NaiveDate,
    environment: &str,
) -> String {
    // Dates are formatted here, never passed through: nothing else reaches
    // the SQL text.
    let window = format!(
        "(SELECT CAST('{start}' AS TIMESTAMP) AS window_start, CAST('{end}' AS TIMESTAMP) AS window_end)"
    );
    explain_in(scope, metric, &window, environment)
}

fn explain_in(scope: &str, metric: ExplainedMetric, window: &str, environment: &str) -> String {
    let scope = scope.replace('\'', "''");
    let env = environment.replace('\'', "''");
    let members = format!("(SELECT entity_ref FROM dora_scope_members WHERE scope = '{scope}')");
    let in_env = |alias: &str| {
        if environment == "all" {
            String::new()
        } else {
            format!(" AND {alias}.environment = '{env}'")
        }
    };
    let deployments = |filter: &str, order: &str| {
        format!(
            "SELECT d.deployment_id, d.entity_ref, d.environment, d.finished_at, d.failed, \
             d.rolled_back, array_to_string(d.incident_ids, ' ') AS incident_ids, d.recovery_seconds, d.rework, d.change_count \
             FROM dora_deployments d CROSS JOIN {window} w \
             WHERE d.completed AND d.entity_ref IN {members}{} \
             AND d.finished_at >= w.window_start AND d.finished_at < w.window_end{filter} \
             ORDER BY {order}d.finished_at, d.deployment_id",
            in_env("d")
        )
    };
    // An environment's incidents are those linked to its deployments.
    let linked = if environment == "all" {
        String::new()
    } else {
        format!(
            " AND i.incident_id IN (SELECT incident_id FROM (SELECT unnest(incident_ids) AS incident_id \
             FROM dora_deployments WHERE completed AND environment = '{env}') linked)"
        )
    };
    match metric {
        ExplainedMetric::Deployments => deployments("", ""),
        ExplainedMetric::ChangeFailureRate => deployments("", "d.failed DESC, "),
        ExplainedMetric::Recovery => deployments(" AND d.failed", "d.recovery_seconds, "),
        ExplainedMetric::Rework => deployments("", "d.rework DESC, "),
        ExplainedMetric::LeadTime => format!(
            "SELECT c.change_id, c.entity_ref, c.kind, c.deployment_id, c.environment, c.first_commit_at, c.deployed_at, \
             c.lead_time_seconds, c.coding_seconds, c.pickup_seconds, c.review_seconds, c.deploy_seconds \
             FROM dora_changes c CROSS JOIN {window} w \
             WHERE c.entity_ref IN {members}{} \
             AND c.deployed_at >= w.window_start AND c.deployed_at < w.window_end \
             ORDER BY c.lead_time_seconds, c.change_id",
            in_env("c")
        ),
        ExplainedMetric::TimeToRestore => format!(
            "SELECT i.incident_id, i.entity_ref, i.title, i.created_at, i.resolved_at, \
             CAST(date_part('epoch', i.resolved_at) - date_part('epoch', i.created_at) AS DOUBLE) AS restore_seconds \
             FROM incidents i CROSS JOIN {window} w \
             WHERE i.entity_ref IN {members} AND i.resolved_at IS NOT NULL{linked} \
             AND i.created_at >= w.window_start AND i.created_at < w.window_end \
             ORDER BY restore_seconds, i.incident_id"
        ),
    }
}

/// What one mart's run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MartReport {
    /// Mart name.
    pub mart: &'static str,
    /// What was recomputed: `all`, `unchanged`, or how many components or
    /// scopes.
    pub recomputed: String,
    /// Rows written.
    pub rows: usize,
    /// Rows those replaced.
    pub previous_rows: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Progress of a transform run.
pub trait TransformProgress: Send + Sync {
    /// The run decided what to recompute.
    fn planned(&self, _plan: &str) {}
    /// A mart starts.
    fn mart_started(&self, mart: &str);
    /// A mart is written.
    fn mart_finished(&self, report: &MartReport);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl TransformProgress for NoProgress {
    fn mart_started(&self, _: &str) {}
    fn mart_finished(&self, _: &MartReport) {}
}

/// `nonnegative(x)`: `x`, or null when it is negative (a stage that ends
/// before it starts is a data artefact, not a duration).
fn nonnegative_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "nonnegative",
        vec![DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let Some(values) = arrays
                .first()
                .and_then(|a| a.as_any().downcast_ref::<Float64Array>())
            else {
                return Err(DataFusionError::Internal(
                    "nonnegative takes one double".to_owned(),
                ));
            };
            let out: Float64Array = values.iter().map(|v| v.filter(|v| *v >= 0.0)).collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

/// A session over the warehouse as it is now, with the marts' UDFs.
async fn session(warehouse: &Warehouse) -> Result<SessionContext> {
    let ctx = mart_session();
    warehouse.register_tables(&ctx).await?;
    Ok(ctx)
}

/// A session configured as the marts need it, their functions registered.
pub fn mart_session() -> SessionContext {
    mart_session_on(Arc::new(
        datafusion::execution::runtime_env::RuntimeEnv::default(),
    ))
}

/// A mart session sharing `runtime` (and so the object stores registered
/// in it) with another session.
fn mart_session_on(runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>) -> SessionContext {
    // Column comments travel as field metadata; a union of two tables'
    // columns then differs only in comments, which the aggregate planner's
    // schema check would refuse.
    let config = datafusion::prelude::SessionConfig::new().set_bool(
        "datafusion.execution.skip_physical_aggregate_schema_check",
        true,
    );
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_udf(nonnegative_udf());
    ctx.register_udf(tiers::dora_tier_udf());
    ctx.register_udf(tiers::dora_overall_tier_udf());
    ctx
}

/// The rows of `mart` over the tables registered in `ctx` (a
/// [`mart_session`]).
pub async fn compute(
    ctx: &SessionContext,
    mart: &Mart,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
) -> Result<Vec<arrow::array::RecordBatch>> {
    let sql = parameters.fill_periods(mart.sql, as_of, mart.periods)?;
    let sql_error = |source| Error::Sql {
        mart: mart.def.name,
        source,
    };
    let frame = ctx.sql(&sql).await.map_err(sql_error)?;
    frame.collect().await.map_err(sql_error)
}

/// How to run the marts.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Only this mart, recomputed whole (the watermark is not advanced).
    pub only: Option<&'a str>,
    /// End of the windows.
    pub as_of: DateTime<Utc>,
    /// Recompute everything even when a watermark allows less.
    pub full: bool,
    /// Where the previous complete run left off.
    pub previous: Option<&'a Watermark>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    /// Full or incremental, and why.
    pub plan: String,
    /// Each mart.
    pub marts: Vec<MartReport>,
    /// Where the next run continues from; `None` after `only`.
    #[serde(skip)]
    pub watermark: Option<Watermark>,
}

/// Runs the marts in dependency order, each on the tables as the previous
/// marts left them: all of them whole, or — given the previous run's
/// watermark — only what changed since (see [`incremental`]).
pub async fn run(
    warehouse: &Warehouse,
    parameters: &Parameters,
    options: RunOptions<'_>,
    progress: &dyn TransformProgress,
) -> Result<RunOutcome> {
    if let Some(name) = options.only {
        let Some(mart) = MARTS.iter().find(|m| m.def.name == name) else {
            return Err(Error::UnknownMart(name.to_owned()));
        };
        let plan = format!("`{name}` recomputed whole");
        progress.planned(&plan);
        let ctx = session(warehouse).await?;
        let report = run_mart(
            warehouse,
            &ctx,
            mart,
            parameters,
            options.as_of,
            &Step::Whole,
            progress,
        )
        .await?;
        return Ok(RunOutcome {
            plan,
            marts: vec![report],
            watermark: None,
        });
    }
    // Versions before the session: a commit landing in between is seen
    // again next time rather than missed.
    let mut versions = BTreeMap::new();
    for def in incremental::INPUTS {
        versions.insert(def.name.to_owned(), warehouse.version(def).await?);
    }
    let ctx = session(warehouse).await?;
    let marks = incremental::marks(&versions, &ctx).await?;
    let plan = if options.full {
        incremental::Plan::Full("--full".to_owned())
    } else {
        incremental::plan(
            warehouse,
            &ctx,
            options.previous,
            &marks,
            parameters,
            options.as_of,
        )
        .await?
    };
    progress.planned(&plan.describe());
    let mut reports = Vec::new();
    for mart in MARTS {
        let step = match &plan {
            incremental::Plan::Full(_) => Step::Whole,
            incremental::Plan::Partial { affected, scopes } => match mart.def.name {
                "dora_deployments" | "dora_changes" if affected.is_empty() => Step::Unchanged,
                "dora_deployments" | "dora_changes" => Step::Components(affected),
                "dora_scope_members" => Step::Unchanged,
                _ => match scopes {
                    None => Step::Whole,
                    Some(scopes) if scopes.is_empty() => Step::Unchanged,
                    Some(scopes) => Step::Scopes(scopes),
                },
            },
        };
        reports.push(
            run_mart(
                warehouse,
                &ctx,
                mart,
                parameters,
                options.as_of,
                &step,
                progress,
            )
            .await?,
        );
    }
    Ok(RunOutcome {
        plan: plan.describe(),
        marts: reports,
        watermark: Some(Watermark {
            as_of: options.as_of,
            parameters: parameters.clone(),
            inputs: marks,
        }),
    })
}

/// What one mart recomputes.
enum Step<'a> {
    Whole,
    Unchanged,
    Components(&'a incremental::Affected),
    Scopes(&'a std::collections::BTreeSet<String>),
}

/// A session over the same tables as `base` (same providers, same object
/// stores), whose registrations can be changed without touching `base`.
async fn fork(base: &SessionContext) -> Result<SessionContext> {
    let ctx = mart_session_on(base.runtime_env());
    for def in fathom_models::ALL_TABLES {
        let provider = base
            .table_provider(def.name)
            .await
            .map_err(|source| Error::Sql {
                mart: "session",
                source,
            })?;
        ctx.register_table(def.name, provider)
            .map_err(|source| Error::Sql {
                mart: "session",
                source,
            })?;
    }
    Ok(ctx)
}

/// Computes and writes one mart with the tables of `base`, then
/// re-registers the mart in `base` for the marts after it (one Delta load
/// per mart instead of every table per mart).
async fn run_mart(
    warehouse: &Warehouse,
    base: &SessionContext,
    mart: &Mart,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
    step: &Step<'_>,
    progress: &dyn TransformProgress,
) -> Result<MartReport> {
    progress.mart_started(mart.def.name);
    let started = std::time::Instant::now();
    if matches!(step, Step::Unchanged) {
        let report = MartReport {
            mart: mart.def.name,
            recomputed: "unchanged".to_owned(),
            rows: 0,
            previous_rows: 0,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress.mart_finished(&report);
        return Ok(report);
    }
    let ctx = fork(base).await?;
    let (recomputed, stats) = match step {
        Step::Unchanged => ("unchanged".to_owned(), Default::default()),
        Step::Whole => {
            let batches = compute(&ctx, mart, parameters, as_of).await?;
            (
                "all".to_owned(),
                warehouse.replace_all(mart.def, &batches).await?,
            )
        }
        Step::Components(affected) => {
            incremental::restrict_to_components(&ctx, affected).await?;
            let batches = compute(&ctx, mart, parameters, as_of).await?;
            let stats = warehouse
                .replace_where(mart.def, affected.entity_predicate(), &batches)
                .await?;
            (format!("{} component(s)", affected.components.len()), stats)
        }
        Step::Scopes(scopes) => {
            incremental::restrict_to_scopes(&ctx, scopes).await?;
            let batches = compute(&ctx, mart, parameters, as_of).await?;
            let stats = warehouse
                .replace_where(mart.def, incremental::scope_predicate(scopes), &batches)
                .await?;
            (format!("{} scope(s)", scopes.len()), stats)
        }
    };
    warehouse.register_table(base, mart.def).await?;
    let report = MartReport {
        mart: mart.def.name,
        recomputed,
        rows: stats.rows_written,
        previous_rows: stats.rows_removed,
        seconds: started.elapsed().as_secs_f64(),
    };
    progress.mart_finished(&report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_fill_and_quote() -> Result<()> {
        let parameters = Parameters {
            production_pattern: "^prod'x$".to_owned(),
            incident_gap_days: 3,
            benchmark: "dora-2021".to_owned(),
            ..Parameters::default()
        };
        let as_of = DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Error::Parameter {
                name: "as_of",
                message: e.to_string(),
            })?;
        assert_eq!(
            parameters.fill(
                "regexp_like(e, '{{production_pattern}}') {{incident_gap_days}} {{as_of}} {{benchmark}} {{recovery}}",
                as_of
            )?,
            "regexp_like(e, '^prod''x$') 3 2026-07-01T00:00:00Z dora-2021 time_to_restore_p50_seconds"
        );
        // 2026-06-24 is a Wednesday: the 7-day window meets two weeks.
        let rolling = periods(Periods::Rolling, as_of);
        assert_eq!(
            weeks_values(&rolling)
                .split("), (")
                .take(2)
                .collect::<Vec<_>>(),
            [
                "(0, CAST('2026-06-24' AS DATE), CAST('2026-06-29' AS DATE)",
                "0, CAST('2026-06-29' AS DATE), CAST('2026-07-01' AS DATE)"
            ]
        );
        // Calendar periods: the current week (Monday 06-29, cut at 07-01)
        // first; June, which as_of ends, is the first month.
        let calendar = periods(Periods::Calendar, as_of);
        assert_eq!(calendar.len(), 64);
        assert_eq!(calendar[0].start.to_rfc3339(), "2026-06-29T00:00:00+00:00");
        assert_eq!(calendar[0].end, as_of);
        assert_eq!(calendar[52].label, "month");
        assert_eq!(calendar[52].start.to_rfc3339(), "2026-06-01T00:00:00+00:00");
        assert_eq!(calendar[63].start.to_rfc3339(), "2025-07-01T00:00:00+00:00");
        Ok(())
    }

    #[test]
    fn a_bad_production_pattern_is_named() {
        let parameters = Parameters {
            production_pattern: "^prod(".to_owned(),
            ..Parameters::default()
        };
        let error = parameters
            .fill("{{production_pattern}}", default_as_of())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("production_pattern"), "{error}");
    }

    #[tokio::test]
    async fn nonnegative_nulls_negative_durations() -> Result<()> {
        let ctx = SessionContext::new();
        ctx.register_udf(nonnegative_udf());
        let batches = ctx
            .sql("SELECT nonnegative(x) AS y FROM (VALUES (1.5), (-2.0), (0.0), (NULL)) AS t(x)")
            .await
            .map_err(|source| Error::Sql {
                mart: "test",
                source,
            })?
            .collect()
            .await
            .map_err(|source| Error::Sql {
                mart: "test",
                source,
            })?;
        let values: Vec<Option<f64>> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .map(|a| a.iter().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(values, [Some(1.5), None, Some(0.0), None]);
        Ok(())
    }
}

#[cfg(test)]
mod properties;
