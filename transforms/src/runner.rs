//! Running the marts: a session over the warehouse, each mart computed in
//! dependency order and written in one commit, whole or — given the
//! previous run's watermark — only what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionContext, col, lit};
use fathom_warehouse::{RowStreams, Warehouse};
use serde::Serialize;

use crate::incremental::{self, Step, Watermark};
use crate::marts::{self, Mart};
use crate::{Error, Parameters, Result};

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
    /// Bytes its sorts, joins and aggregates spilled to local disk to stay
    /// in `[transforms] memory_limit_mib` (0: it fit in memory).
    pub spilled_bytes: u64,
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

/// A session over the warehouse as it is now, with the marts' UDFs, in
/// the marts' memory budget (spilling to local disk before failing).
async fn session(warehouse: &Warehouse, parameters: &Parameters) -> Result<SessionContext> {
    let runtime = fathom_warehouse::query::query_runtime(fathom_warehouse::query::QueryLimits {
        memory_limit_bytes: parameters.memory_limit_bytes(),
        bounds: fathom_warehouse::query::QueryBounds::default(),
    })?;
    let ctx = mart_session_on(fathom_warehouse::query::engine_config(), runtime);
    warehouse.register_tables(&ctx).await?;
    Ok(ctx)
}

/// A session configured as the marts need it, their functions registered
/// (memory unbounded: for tests over small inputs).
pub fn mart_session() -> SessionContext {
    mart_session_on(
        fathom_warehouse::query::engine_config(),
        Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default()),
    )
}

/// A mart session with `config`, sharing `runtime` (and so the object
/// stores registered in it) with another session.
fn mart_session_on(
    config: datafusion::prelude::SessionConfig,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> SessionContext {
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    crate::functions::register(&ctx);
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
    let (frame, _scratch) = crate::materialize::frame(ctx, &sql, mart.def.name).await?;
    frame.collect().await.map_err(sql_error)
}

/// The rows of `mart` as streams, one per partition of its plan, for the
/// warehouse to write as they come; the plan, whose metrics tell what it
/// spilled once the streams are read; and its materialized CTEs' files,
/// to keep until then.
async fn streams(
    ctx: &SessionContext,
    mart: &Mart,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
    since: Option<chrono::NaiveDate>,
) -> Result<(
    RowStreams,
    Arc<dyn ExecutionPlan>,
    crate::materialize::Scratch,
)> {
    let sql = parameters.fill_periods(&crate::since::fill(mart.sql, since), as_of, mart.periods)?;
    let sql_error = |source| Error::Sql {
        mart: mart.def.name,
        source,
    };
    let (frame, scratch) = crate::materialize::frame(ctx, &sql, mart.def.name).await?;
    let task = Arc::new(frame.task_ctx());
    let physical = frame.create_physical_plan().await.map_err(sql_error)?;
    let streams = datafusion::physical_plan::execute_stream_partitioned(physical.clone(), task)
        .map_err(sql_error)?;
    Ok((RowStreams { streams }, physical, scratch))
}

/// Bytes `plan` and its inputs spilled to disk.
fn spilled_bytes(plan: &dyn ExecutionPlan) -> u64 {
    let own = plan
        .metrics()
        .and_then(|m| m.spilled_bytes())
        .map_or(0, |b| b as u64);
    own + plan
        .children()
        .into_iter()
        .map(|child| spilled_bytes(child.as_ref()))
        .sum::<u64>()
}

/// The logical plan of `mart` over the tables registered in `ctx`
/// (planned, not run).
pub(crate) async fn plan(
    ctx: &SessionContext,
    mart: &Mart,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
) -> Result<datafusion::logical_expr::LogicalPlan> {
    let (sql, _) =
        crate::materialize::hints(&parameters.fill_periods(mart.sql, as_of, mart.periods)?);
    ctx.state()
        .create_logical_plan(&sql)
        .await
        .map_err(|source| Error::Sql {
            mart: mart.def.name,
            source,
        })
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
        let Some(mart) = marts::named(name) else {
            return Err(Error::UnknownMart(name.to_owned()));
        };
        let plan = format!("`{name}` recomputed whole");
        progress.planned(&plan);
        let ctx = session(warehouse, parameters).await?;
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
    for def in marts::inputs() {
        versions.insert(def.name.to_owned(), warehouse.version(def).await?);
    }
    let ctx = session(warehouse, parameters).await?;
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
    let order = marts::ordered()?;
    let mut filled = filled(&ctx).await?;
    let mut reports = Vec::new();
    for (mart, step) in order.iter().zip(plan.steps(&order)) {
        let step = match step {
            Step::Whole if !marts::reads_rows(mart, &filled) => Step::Empty,
            other => other,
        };
        // A mart with nothing to read that holds nothing already stays as
        // it is: no commit, so a warehouse fed by some sources spends no
        // write on the others' marts run after run.
        let step = match step {
            Step::Empty if !filled.contains(mart.def.name) => Step::Unchanged,
            other => other,
        };
        let report = run_mart(
            warehouse,
            &ctx,
            mart,
            parameters,
            options.as_of,
            &step,
            progress,
        )
        .await?;
        // What this run wrote whole is known to hold rows or not; a mart
        // it recomputed in part is taken to hold some; one it left alone
        // holds what it held.
        match step {
            Step::Whole | Step::Empty if report.rows == 0 => {
                filled.remove(mart.def.name);
            }
            Step::Unchanged => {}
            _ => {
                filled.insert(mart.def.name);
            }
        }
        reports.push(report);
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

/// The tables registered in `ctx` that hold rows: the marts' inputs and
/// the marts themselves (a mart a run leaves alone keeps what it held).
pub(crate) async fn filled(ctx: &SessionContext) -> Result<BTreeSet<&'static str>> {
    let mut out = BTreeSet::new();
    let tables = marts::inputs()
        .into_iter()
        .chain(marts::MARTS.iter().map(|m| m.def));
    for def in tables {
        let sql_error = |source| Error::Sql {
            mart: "session",
            source,
        };
        let batches = ctx
            .sql(&format!("SELECT 1 AS one FROM {} LIMIT 1", def.name))
            .await
            .map_err(sql_error)?
            .collect()
            .await
            .map_err(sql_error)?;
        if batches.iter().any(|b| b.num_rows() > 0) {
            out.insert(def.name);
        }
    }
    Ok(out)
}

/// A session over the same tables as `base` (same providers, same object
/// stores), whose registrations can be changed without touching `base`.
async fn fork(base: &SessionContext) -> Result<SessionContext> {
    let ctx = mart_session_on(base.copied_config(), base.runtime_env());
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

/// Where a recomputation from a month on starts: `from`, or earlier when
/// the mart's newest months reach forward. A month whose rows read `back`
/// later months (a cohort's retention) was computed seeing the data end
/// where it ended, so rows after the mart's newest month change the
/// `back` months before that one too, however long the gap between them
/// and the earliest changed month.
async fn since_tail(
    ctx: &SessionContext,
    mart: &Mart,
    from: chrono::NaiveDate,
) -> Result<chrono::NaiveDate> {
    let marts::Refresh::FromMonth { back } = mart.refresh else {
        return Ok(from);
    };
    if back == 0 {
        return Ok(from);
    }
    let sql_error = |source| Error::Sql {
        mart: mart.def.name,
        source,
    };
    let batches = ctx
        .sql(&format!(
            "SELECT arrow_cast(max(month), 'Utf8') AS newest FROM {}",
            mart.def.name
        ))
        .await
        .map_err(sql_error)?
        .collect()
        .await
        .map_err(sql_error)?;
    let newest = batches.iter().filter(|b| b.num_rows() > 0).find_map(|b| {
        use datafusion::arrow::array::Array;
        let months = datafusion::common::cast::as_string_array(b.column(0)).ok()?;
        months.is_valid(0).then(|| months.value(0).to_owned())
    });
    Ok(newest
        .and_then(|month| crate::since::month_start(&month, back))
        .map_or(from, |tail| tail.min(from)))
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
    write_mart(warehouse, base, mart, parameters, as_of, step, progress)
        .await
        .map_err(|e| e.over_budget(mart.def.name, parameters.memory_limit_mib))
}

async fn write_mart(
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
    // Checked on the whole tables (an incremental step reads restricted
    // views of them): a read the declaration does not list is refused
    // before anything is written.
    let checked = || async {
        marts::check_reads(mart, &plan(base, mart, parameters, as_of).await?)?;
        fork(base).await
    };
    let (recomputed, stats, spilled) = match step {
        Step::Unchanged => ("unchanged".to_owned(), Default::default(), 0),
        Step::Empty => {
            let stats = warehouse.replace_all(mart.def, &[]).await?;
            ("all (nothing to read)".to_owned(), stats, 0)
        }
        Step::Whole => {
            let ctx = checked().await?;
            let (rows, physical, _scratch) = streams(&ctx, mart, parameters, as_of, None).await?;
            let stats = warehouse.replace_all_streamed(mart.def, rows).await?;
            ("all".to_owned(), stats, spilled_bytes(physical.as_ref()))
        }
        Step::Components(affected) => {
            let ctx = checked().await?;
            incremental::restrict_to_components(&ctx, mart, affected).await?;
            let (rows, physical, _scratch) = streams(&ctx, mart, parameters, as_of, None).await?;
            let stats = warehouse
                .replace_where_streamed(mart.def, affected.entity_predicate(), rows)
                .await?;
            (
                format!("{} component(s)", affected.components.len()),
                stats,
                spilled_bytes(physical.as_ref()),
            )
        }
        Step::Months(months) => {
            let ctx = checked().await?;
            incremental::restrict_to_months(&ctx, mart, months).await?;
            let (rows, physical, _scratch) = streams(&ctx, mart, parameters, as_of, None).await?;
            let listed: Vec<String> = months.iter().cloned().collect();
            let stats = warehouse
                .replace_partitions_streamed(mart.def, &listed, rows)
                .await?;
            (
                format!("{} month(s)", months.len()),
                stats,
                spilled_bytes(physical.as_ref()),
            )
        }
        Step::Since(from) => {
            let ctx = checked().await?;
            let from = since_tail(&ctx, mart, *from).await?;
            let (rows, physical, _scratch) =
                streams(&ctx, mart, parameters, as_of, Some(from)).await?;
            let month = from.format("%Y-%m").to_string();
            let stats = warehouse
                .replace_where_streamed(mart.def, col("month").gt_eq(lit(month.clone())), rows)
                .await?;
            (
                format!("from {month}"),
                stats,
                spilled_bytes(physical.as_ref()),
            )
        }
        Step::Scopes(scopes) => {
            let ctx = checked().await?;
            incremental::restrict_to_scopes(&ctx, scopes).await?;
            let (rows, physical, _scratch) = streams(&ctx, mart, parameters, as_of, None).await?;
            let stats = warehouse
                .replace_where_streamed(mart.def, incremental::scope_predicate(scopes), rows)
                .await?;
            (
                format!("{} scope(s)", scopes.len()),
                stats,
                spilled_bytes(physical.as_ref()),
            )
        }
    };
    if !matches!(step, Step::Unchanged) {
        warehouse.register_table(base, mart.def).await?;
    }
    let report = MartReport {
        mart: mart.def.name,
        recomputed,
        rows: stats.rows_written,
        previous_rows: stats.rows_removed,
        spilled_bytes: spilled,
        seconds: started.elapsed().as_secs_f64(),
    };
    progress.mart_finished(&report);
    Ok(report)
}
