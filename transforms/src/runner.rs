//! Running the marts: a session over the warehouse, each mart computed in
//! dependency order and written in one commit, whole or — given the
//! previous run's watermark — only what changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use fathom_warehouse::Warehouse;
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
    let ctx = SessionContext::new_with_config_rt(fathom_warehouse::query::engine_config(), runtime);
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
    let frame = ctx.sql(&sql).await.map_err(sql_error)?;
    frame.collect().await.map_err(sql_error)
}

/// The logical plan of `mart` over the tables registered in `ctx`
/// (planned, not run).
pub(crate) async fn plan(
    ctx: &SessionContext,
    mart: &Mart,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
) -> Result<datafusion::logical_expr::LogicalPlan> {
    let sql = parameters.fill_periods(mart.sql, as_of, mart.periods)?;
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
    for def in marts::inputs() {
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
    let order = marts::ordered()?;
    let mut reports = Vec::new();
    for (mart, step) in order.iter().zip(plan.steps(&order)) {
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
    // Checked on the whole tables (an incremental step reads restricted
    // views of them): a read the declaration does not list is refused
    // before anything is written.
    marts::check_reads(mart, &plan(base, mart, parameters, as_of).await?)?;
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
        Step::Months(months) => {
            incremental::restrict_to_months(&ctx, mart, months).await?;
            let batches = compute(&ctx, mart, parameters, as_of).await?;
            let listed: Vec<String> = months.iter().cloned().collect();
            let stats = warehouse
                .replace_partitions(mart.def, &listed, &batches)
                .await?;
            (format!("{} month(s)", months.len()), stats)
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
