//! Incremental runs: recompute only what new data touched.
//!
//! After each complete run the runner returns a [`Watermark`]: the inputs'
//! Delta versions and newest `updated_at`, the windows' end and the
//! parameters. The next run compares: an input whose version did not move
//! changed nothing; one that moved by merges or appends changed at most the
//! rows whose `updated_at` is at least the oldest in the files committed
//! since (from the Delta log's file statistics: exact for appends, and
//! independent of when the previous run happened to read — a bulk
//! import's rows, which all share one `updated_at`, are not new again the
//! next day; only a table without statistics falls back to the mark minus
//! `change_margin_minutes`). Those rows name the affected components, which
//! are closed over shared repositories (a change set or a pull request
//! links every component of a repository). Then:
//!
//! - `dora_deployments` and `dora_changes` are recomputed for those
//!   components only (or whole, when they are more than a quarter of all:
//!   then that is cheaper), from their inputs alone (a component's deployments,
//!   changes and incidents never depend on another component's, except
//!   through a shared repository or an explicit incident link, both
//!   followed), and their rows replaced in one commit each;
//! - `dora_scope_members` is kept (the catalog did not change);
//! - `dora_metrics` and `dora_trends` are recomputed for the scopes that
//!   contain an affected component when the windows end where they ended;
//!   when `as_of` moved, every window moved, and they are recomputed whole.
//!
//! Anything else starts over with a full recompute: no watermark, other
//! parameters, a catalog change, an input with rows deleted or overwritten,
//! `--full`. The property test in `properties.rs` checks that an
//! incremental run leaves exactly the rows a full recompute writes.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Utc};
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::SessionContext;
use fathom_warehouse::{AddedRows, Warehouse};
use serde::{Deserialize, Serialize};

use crate::marts::{self, Mart, Refresh};
use crate::{Error, Parameters, Result};

/// Where one input stood when a run read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputMark {
    /// Delta version; `None` for a table never written.
    pub version: Option<u64>,
    /// Newest `updated_at`, microseconds since the epoch.
    pub max_updated_at: Option<i64>,
}

/// What the marts were last computed from (kept by the caller, e.g. in the
/// state database, and handed to the next run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// End of the windows.
    pub as_of: DateTime<Utc>,
    /// The definitions' parameters.
    pub parameters: Parameters,
    /// Each input by table name.
    pub inputs: BTreeMap<String, InputMark>,
}

/// The components a run recomputes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Affected {
    /// Component refs.
    pub components: BTreeSet<String>,
    /// Whether rows without a component (unattributed) changed.
    pub unattributed: bool,
    /// Repositories of those components.
    pub repositories: BTreeSet<String>,
    /// So many components that the marts refreshed by component are
    /// recomputed whole: more than [`BROAD_SHARE`] of the components
    /// with deployments, when there are at least [`BROAD_MIN_COMPONENTS`].
    pub broad: bool,
}

/// The share of components above which recomputing the touched ones
/// costs more than recomputing all: the restricted inputs are views the
/// engine plans without statistics. Measured at 1,000 services × a year
/// (`cargo bench --bench dora`): `dora_deployments` whole in 3.7 s, for
/// 68 % of the components 98 s and 11 GB.
pub(crate) const BROAD_SHARE: f64 = 0.25;

/// Below this many components with deployments, the touched ones are
/// always recomputed alone: small warehouses recompute fast either way.
pub(crate) const BROAD_MIN_COMPONENTS: f64 = 100.0;

/// The tables the component analysis follows: rows of these name the
/// components they touch. A change to any other input (the catalog, say)
/// recomputes the marts reading it whole.
const FOLLOWED: [&str; 9] = [
    "commit_files",
    "release_deploys",
    "deployments",
    "deployment_changes",
    "incidents",
    "pull_requests",
    "pull_request_commits",
    "pull_request_reviews",
    "commits",
];

/// What a run recomputes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Every mart, whole.
    Full(String),
    /// The marts whose inputs changed, each as its refresh allows.
    Partial {
        /// Inputs whose version moved by appends and merges only.
        appended: BTreeSet<String>,
        /// Inputs with rows deleted or overwritten since.
        rewritten: BTreeSet<String>,
        /// The components the appended rows touch.
        affected: Affected,
        /// The months (partitions) whose rows changed, per moved input
        /// that marts refreshed by month read, where the log tells.
        months: BTreeMap<String, BTreeSet<String>>,
        /// `None`: the windows' end moved.
        scopes: Option<BTreeSet<String>>,
    },
}

/// What one mart recomputes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step<'a> {
    /// Every row.
    Whole,
    /// Every row, and nothing it reads holds any: written empty without
    /// running its query.
    Empty,
    /// Nothing it reads changed.
    Unchanged,
    /// The rows of these components.
    Components(&'a Affected),
    /// The rows of these scopes.
    Scopes(&'a BTreeSet<String>),
    /// The rows of these months (partitions).
    Months(BTreeSet<String>),
    /// The rows of this month (its first day) and later.
    Since(chrono::NaiveDate),
}

impl Plan {
    /// The step of each mart of `order` (dependency order), decided from
    /// what its inputs did and the steps of the marts it reads.
    pub fn steps<'p>(&'p self, order: &[&'static Mart]) -> Vec<Step<'p>> {
        let Self::Partial {
            appended,
            rewritten,
            affected,
            scopes,
            months,
        } = self
        else {
            return vec![Step::Whole; order.len()];
        };
        let mut steps: Vec<Step<'p>> = Vec::with_capacity(order.len());
        for mart in order {
            let upstream = |wanted: fn(&Step<'_>) -> bool| {
                mart.reads.iter().any(|def| {
                    order
                        .iter()
                        .position(|m| m.def.name == def.name)
                        .and_then(|i| steps.get(i))
                        .is_some_and(wanted)
                })
            };
            let reads = |set: &BTreeSet<String>| mart.reads.iter().any(|d| set.contains(d.name));
            let rewrote = reads(rewritten) || upstream(|s| matches!(s, Step::Whole));
            let touched = rewrote
                || reads(appended)
                || upstream(|s| !matches!(s, Step::Unchanged))
                || (scopes.is_none() && mart.depends_on_as_of());
            let unfollowed = mart
                .reads
                .iter()
                .any(|d| appended.contains(d.name) && !FOLLOWED.contains(&d.name));
            let step = if !touched {
                Step::Unchanged
            } else {
                match mart.refresh {
                    Refresh::Whole => Step::Whole,
                    Refresh::ByMonth if upstream(|s| !matches!(s, Step::Unchanged)) => Step::Whole,
                    Refresh::ByMonth => changed_months(mart, appended, rewritten, months),
                    Refresh::FromMonth { .. } if upstream(|s| !matches!(s, Step::Unchanged)) => {
                        Step::Whole
                    }
                    Refresh::FromMonth { back } => {
                        match changed_months(mart, appended, rewritten, months) {
                            Step::Months(changed) => changed
                                .first()
                                .and_then(|m| crate::since::month_start(m, back))
                                .map_or(Step::Whole, Step::Since),
                            other => other,
                        }
                    }
                    _ if rewrote || unfollowed => Step::Whole,
                    Refresh::ByComponent if affected.broad => Step::Whole,
                    Refresh::ByComponent if affected.is_empty() => Step::Unchanged,
                    Refresh::ByComponent => Step::Components(affected),
                    Refresh::ByScope => match scopes {
                        None => Step::Whole,
                        Some(scopes) if scopes.is_empty() => Step::Unchanged,
                        Some(scopes) => Step::Scopes(scopes),
                    },
                }
            };
            steps.push(step);
        }
        steps
    }
}

/// The months a mart refreshed by month recomputes: those whose rows
/// changed in the inputs it reads that moved; every month when one of
/// them cannot tell.
fn changed_months(
    mart: &Mart,
    appended: &BTreeSet<String>,
    rewritten: &BTreeSet<String>,
    months: &BTreeMap<String, BTreeSet<String>>,
) -> Step<'static> {
    let mut out = BTreeSet::new();
    for def in mart.reads {
        if !appended.contains(def.name) && !rewritten.contains(def.name) {
            continue;
        }
        match months.get(def.name) {
            Some(changed) => out.extend(changed.iter().cloned()),
            None => return Step::Whole,
        }
    }
    if out.is_empty() {
        Step::Unchanged
    } else {
        Step::Months(out)
    }
}

impl Plan {
    /// One line for the run's report.
    pub fn describe(&self) -> String {
        match self {
            Self::Full(reason) => format!("full recompute ({reason})"),
            Self::Partial {
                affected,
                scopes,
                appended,
                rewritten,
                months,
            } => {
                if appended.is_empty() && rewritten.is_empty() && scopes.is_some() {
                    return "incremental: nothing changed".to_owned();
                }
                let mut text = format!(
                    "incremental: {} component(s){}",
                    affected.components.len(),
                    if affected.unattributed {
                        " and unattributed rows"
                    } else {
                        ""
                    }
                );
                if affected.broad {
                    text.push_str(" (over a quarter of them: the component marts whole)");
                }
                match scopes {
                    Some(scopes) => text.push_str(&format!(", {} scope(s)", scopes.len())),
                    None => text.push_str(", every scope (the windows moved)"),
                }
                let months: BTreeSet<&String> = months.values().flatten().collect();
                if !months.is_empty() {
                    text.push_str(&format!(", {} month(s) of daily marts", months.len()));
                }
                if !rewritten.is_empty() {
                    text.push_str(&format!(
                        "; rewritten: {}",
                        rewritten.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                text
            }
        }
    }
}

fn sql_error(source: datafusion::error::DataFusionError) -> Error {
    Error::Sql {
        mart: "incremental",
        source,
    }
}

/// The first column of `sql`'s rows, as text.
async fn texts(ctx: &SessionContext, sql: &str) -> Result<Vec<Option<String>>> {
    let batches = ctx
        .sql(sql)
        .await
        .map_err(sql_error)?
        .collect()
        .await
        .map_err(sql_error)?;
    let mut out = Vec::new();
    for batch in &batches {
        let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| sql_error(e.into()))?;
        if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
            out.extend(strings.iter().map(|s| s.map(str::to_owned)));
        }
    }
    Ok(out)
}

/// Each input's version (read first, so a commit landing meanwhile is seen
/// as new next time) and newest `updated_at` in `ctx`.
pub(crate) async fn marks(
    versions: &BTreeMap<String, Option<u64>>,
    ctx: &SessionContext,
) -> Result<BTreeMap<String, InputMark>> {
    let mut out = BTreeMap::new();
    for def in marts::inputs() {
        let batches = ctx
            .sql(&format!(
                "SELECT CAST(max(updated_at) AS TIMESTAMP(6)) FROM {}",
                def.name
            ))
            .await
            .map_err(sql_error)?
            .collect()
            .await
            .map_err(sql_error)?;
        let max_updated_at = batches.first().and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .filter(|a| !a.is_empty() && a.is_valid(0))
                .map(|a| a.value(0))
        });
        out.insert(
            def.name.to_owned(),
            InputMark {
                version: versions.get(def.name).copied().flatten(),
                max_updated_at,
            },
        );
    }
    Ok(out)
}

/// A SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn in_list(column: &str, values: &BTreeSet<String>) -> String {
    if values.is_empty() {
        "false".to_owned()
    } else {
        format!(
            "{column} IN ({})",
            values
                .iter()
                .map(|v| quoted(v))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Affected {
    /// SQL: the row belongs to an affected component (or is unattributed
    /// when those changed).
    pub fn entity_filter(&self) -> String {
        let listed = in_list("entity_ref", &self.components);
        if self.unattributed {
            format!("({listed} OR entity_ref IS NULL)")
        } else {
            format!("({listed})")
        }
    }

    /// The same as a DataFusion expression, for replacing the marts' rows.
    pub fn entity_predicate(&self) -> Expr {
        let listed = if self.components.is_empty() {
            lit(false)
        } else {
            col("entity_ref").in_list(
                self.components.iter().map(|c| lit(c.clone())).collect(),
                false,
            )
        };
        if self.unattributed {
            listed.or(col("entity_ref").is_null())
        } else {
            listed
        }
    }

    /// Whether nothing is to be recomputed.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty() && !self.unattributed
    }

    fn add(&mut self, refs: Vec<Option<String>>) -> bool {
        let mut grew = false;
        for r in refs {
            match r {
                Some(r) => grew |= self.components.insert(r),
                None if !self.unattributed => {
                    self.unattributed = true;
                    grew = true;
                }
                None => {}
            }
        }
        grew
    }
}

/// (component, repository) of every row that ties a component to a
/// repository.
const REPOSITORY_ROWS: &str = "SELECT entity_ref, repository_id FROM deployments \
     UNION ALL SELECT d.entity_ref, dc.repository_id FROM deployment_changes dc \
     JOIN deployments d ON d.deployment_id = dc.deployment_id \
     UNION ALL SELECT entity_ref, repository_id FROM pull_requests \
     UNION ALL SELECT entity_ref, repository_id FROM commits";

/// Decides what this run recomputes.
pub(crate) async fn plan(
    warehouse: &Warehouse,
    ctx: &SessionContext,
    previous: Option<&Watermark>,
    current: &BTreeMap<String, InputMark>,
    parameters: &Parameters,
    as_of: DateTime<Utc>,
) -> Result<Plan> {
    let Some(previous) = previous else {
        return Ok(Plan::Full("no earlier run to continue from".to_owned()));
    };
    if !previous.parameters.same_definitions(parameters) {
        return Ok(Plan::Full("the parameters changed".to_owned()));
    }
    for mart in marts::MARTS {
        if warehouse.columns_changed(mart.def).await? {
            return Ok(Plan::Full(format!(
                "`{}` has new columns (written by an earlier release)",
                mart.def.name
            )));
        }
    }
    let margin = i64::from(parameters.change_margin_minutes) * 60_000_000;
    let mut changed = BTreeMap::new();
    let mut rewritten = BTreeSet::new();
    let mut months = BTreeMap::new();
    let by_month: BTreeSet<&str> = marts::MARTS
        .iter()
        .filter(|m| matches!(m.refresh, Refresh::ByMonth | Refresh::FromMonth { .. }))
        .flat_map(|m| m.reads.iter().map(|d| d.name))
        .collect();
    for def in marts::inputs() {
        let now = current.get(def.name).copied().unwrap_or(InputMark {
            version: None,
            max_updated_at: None,
        });
        let Some(before) = previous.inputs.get(def.name) else {
            return Ok(Plan::Full(format!(
                "`{}` was not followed before",
                def.name
            )));
        };
        if now.version == before.version {
            continue;
        }
        if by_month.contains(def.name)
            && let Some(partitions) = warehouse
                .changed_partitions_since(def, before.version)
                .await?
        {
            months.insert(def.name.to_owned(), partitions);
        }
        if let Some(version) = before.version
            && warehouse.removed_rows_since(def, version).await?
        {
            rewritten.insert(def.name.to_owned());
            continue;
        }
        // The rows the commits since added are at least as new as the
        // oldest of their files' statistics: exact for appends, however
        // the rows' `updated_at` compare with what the last run saw (a bulk
        // import's rows all share one, and are not new again the day
        // after). Without statistics, the margin guesses.
        let since = match before.version {
            None => i64::MIN,
            Some(version) => match warehouse.added_since(def, version, "updated_at").await? {
                Some(added) if added.files == 0 => continue,
                Some(AddedRows {
                    oldest: Some(oldest),
                    ..
                }) => oldest,
                _ => before
                    .max_updated_at
                    .map_or(i64::MIN, |m| m.saturating_sub(margin)),
            },
        };
        changed.insert(def.name, since);
    }

    let mut affected = Affected::default();
    let newer = |table: &str, alias: &str| {
        changed.get(table).map(|since: &i64| {
            format!(
                "{alias}.updated_at >= CAST(to_timestamp_micros({since}) AS TIMESTAMP(6))",
                since = (*since).max(0)
            )
        })
    };
    let mut queries = Vec::new();
    if let Some(when) = newer("deployments", "n") {
        queries.push(format!(
            "SELECT n.entity_ref FROM deployments n WHERE {when}"
        ));
        // A deployment moved to another component: the old one changes too.
        queries.push(format!(
            "SELECT d.entity_ref FROM dora_deployments d JOIN deployments n \
             ON n.deployment_id = d.deployment_id WHERE {when}"
        ));
    }
    if let Some(when) = newer("deployment_changes", "n") {
        queries.push(format!(
            "SELECT d.entity_ref FROM deployment_changes n JOIN deployments d \
             ON d.deployment_id = n.deployment_id WHERE {when}"
        ));
    }
    if let Some(when) = newer("incidents", "n") {
        queries.push(format!("SELECT n.entity_ref FROM incidents n WHERE {when}"));
        // Its explicit link, and the deployment it was linked to before.
        queries.push(format!(
            "SELECT d.entity_ref FROM incidents n JOIN deployments d \
             ON d.deployment_id = n.caused_by_deployment_id WHERE {when}"
        ));
        queries.push(format!(
            "SELECT d.entity_ref FROM dora_deployments d CROSS JOIN incidents n \
             WHERE {when} AND array_has(d.incident_ids, n.incident_id)"
        ));
    }
    for table in [
        "pull_requests",
        "commits",
        "pull_request_commits",
        "pull_request_reviews",
    ] {
        if let Some(when) = newer(table, "n") {
            queries.push(format!("SELECT n.entity_ref FROM {table} n WHERE {when}"));
            let repositories = texts(
                ctx,
                &format!("SELECT DISTINCT n.repository_id FROM {table} n WHERE {when}"),
            )
            .await?;
            affected
                .repositories
                .extend(repositories.into_iter().flatten());
        }
    }
    if let Some(when) = newer("release_deploys", "n") {
        queries.push(format!(
            "SELECT n.entity_ref FROM release_deploys n WHERE {when}"
        ));
        // An incident of another component may name the release.
        queries.push(format!(
            "SELECT i.entity_ref FROM release_deploys n JOIN incidents i \
             ON i.version = n.release_version WHERE {when}"
        ));
    }
    // A commit's files name no component: its repository's are touched.
    if let Some(when) = newer("commit_files", "n") {
        let repositories = texts(
            ctx,
            &format!("SELECT DISTINCT n.repository_id FROM commit_files n WHERE {when}"),
        )
        .await?;
        affected
            .repositories
            .extend(repositories.into_iter().flatten());
    }
    for query in &queries {
        let refs = texts(ctx, query).await?;
        affected.add(refs);
    }

    // Close over shared repositories: a component's change sets and pull
    // requests are matched by repository, so every component of a touched
    // repository is recomputed with it.
    for _ in 0..16 {
        let repositories = texts(
            ctx,
            &format!(
                "SELECT DISTINCT repository_id FROM ({REPOSITORY_ROWS}) r \
                 WHERE repository_id IS NOT NULL AND {}",
                affected.entity_filter()
            ),
        )
        .await?;
        let mut grew = false;
        for repository in repositories.into_iter().flatten() {
            grew |= affected.repositories.insert(repository);
        }
        let refs = texts(
            ctx,
            &format!(
                "SELECT DISTINCT entity_ref FROM ({REPOSITORY_ROWS} \
                 UNION ALL SELECT entity_ref, repository_id FROM dora_changes) r \
                 WHERE {}",
                in_list("repository_id", &affected.repositories)
            ),
        )
        .await?;
        grew |= affected.add(refs);
        if !grew {
            break;
        }
    }

    let with_deployments = texts(ctx, "SELECT count(DISTINCT entity_ref) FROM deployments")
        .await?
        .into_iter()
        .flatten()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    affected.broad = with_deployments >= BROAD_MIN_COMPONENTS
        && affected.components.len() as f64 > BROAD_SHARE * with_deployments;

    let scopes = if previous.as_of != as_of {
        None
    } else if affected.components.is_empty() {
        Some(BTreeSet::new())
    } else {
        Some(
            texts(
                ctx,
                &format!(
                    "SELECT DISTINCT scope FROM dora_scope_members WHERE {}",
                    in_list("entity_ref", &affected.components)
                ),
            )
            .await?
            .into_iter()
            .flatten()
            .collect(),
        )
    };
    Ok(Plan::Partial {
        appended: changed.keys().map(|t| (*t).to_owned()).collect(),
        rewritten,
        affected,
        scopes,
        months,
    })
}

/// Replaces `name` in `ctx` by its rows matching `filter` (SQL over the
/// table's columns), so a mart's query reads only those.
async fn restrict(ctx: &SessionContext, name: &str, filter: &str) -> Result<()> {
    let provider = ctx.table_provider(name).await.map_err(sql_error)?;
    ctx.deregister_table(name).map_err(sql_error)?;
    let all = format!("{name}__all");
    ctx.register_table(all.as_str(), provider)
        .map_err(sql_error)?;
    let view = ctx
        .sql(&format!("SELECT * FROM {all} WHERE {filter}"))
        .await
        .map_err(sql_error)?
        .into_view();
    ctx.register_table(name, view).map_err(sql_error)?;
    Ok(())
}

/// Restricts the inputs of `mart` (refreshed by component) to `affected`.
pub(crate) async fn restrict_to_components(
    ctx: &SessionContext,
    mart: &Mart,
    affected: &Affected,
) -> Result<()> {
    let entities = affected.entity_filter();
    // The deployment and change marts read each other whole (a change's
    // deployment is found among every deployment); a mart built on them
    // per deployment reads only the affected components' rows, or it would
    // write every component's.
    if mart.def.name == "deployment_features" {
        for upstream in ["dora_deployments", "dora_changes"] {
            restrict(ctx, upstream, &entities).await?;
        }
    }
    let repositories = in_list("repository_id", &affected.repositories);
    restrict(ctx, "deployments", &entities).await?;
    restrict(
        ctx,
        "incidents",
        &format!(
            "{entities} OR caused_by_deployment_id IN (SELECT deployment_id FROM deployments)"
        ),
    )
    .await?;
    restrict(
        ctx,
        "deployment_changes",
        "deployment_id IN (SELECT deployment_id FROM deployments)",
    )
    .await?;
    for table in ["pull_requests", "commits"] {
        restrict(ctx, table, &format!("{entities} OR {repositories}")).await?;
    }
    restrict(ctx, "pull_request_commits", &repositories).await?;
    restrict(ctx, "pull_request_reviews", &repositories).await?;
    restrict(ctx, "commit_files", &repositories).await?;
    restrict(
        ctx,
        "release_deploys",
        &format!("{entities} OR entity_ref IS NULL"),
    )
    .await?;
    Ok(())
}

/// Restricts the month-partitioned tables `mart` reads to `months`.
pub(crate) async fn restrict_to_months(
    ctx: &SessionContext,
    mart: &Mart,
    months: &BTreeSet<String>,
) -> Result<()> {
    for def in mart.reads {
        if let Some(partition) = def.partition {
            restrict(ctx, def.name, &in_list(partition.column, months)).await?;
        }
    }
    Ok(())
}

/// Restricts the metrics marts to `scopes`.
pub(crate) async fn restrict_to_scopes(
    ctx: &SessionContext,
    scopes: &BTreeSet<String>,
) -> Result<()> {
    restrict(ctx, "dora_scope_members", &in_list("scope", scopes)).await
}

/// `scope IN (…)` as an expression.
pub(crate) fn scope_predicate(scopes: &BTreeSet<String>) -> Expr {
    col("scope").in_list(scopes.iter().map(|s| lit(s.clone())).collect(), false)
}
