//! The marts, declared: each is one SQL file in `transforms/sql/` named
//! after its table, the tables it reads and how it is brought up to date.
//! The runner's order, the incremental planner's inputs, `fathom transform
//! --mart` and the lineage lines of `docs/schema.md` all come from
//! [`MARTS`]; its key, partitioning and columns come from its
//! [`TableDef`]. A mart that reads a table its declaration does not list is
//! refused when it runs (see [`check_reads`]), so an incremental run can
//! never miss a change it was not told about.

use std::collections::BTreeSet;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::cte_worktable::CteWorkTable;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use fathom_models::TableDef;
use fathom_models::tables::{
    CATALOG_ENTITIES, COMMIT_FILES, COMMITS, DEPLOYMENT_CHANGES, DEPLOYMENTS, DORA_CHANGES,
    DORA_DEPLOYMENTS, DORA_METRICS, DORA_SCOPE_MEMBERS, DORA_TRENDS, INCIDENTS,
    PULL_REQUEST_COMMITS, PULL_REQUEST_REVIEWS, PULL_REQUESTS,
};
use fathom_models::tables::{
    CLOUD_COSTS_DAILY, COST_ALLOCATIONS_DAILY, COST_BENCHMARKS, COST_COMMITMENTS, COST_COVERAGE,
    COST_DAILY, COST_MONTHLY, DEPLOYMENT_FEATURES, DEPLOYMENT_SIGNALS, ERROR_COUNTS_DAILY,
    ERROR_ISSUES_DAILY, RELEASE_DEPLOYS, SERVICE_METRICS_DAILY, SERVICE_METRICS_HOURLY,
};
use fathom_models::tables::{
    ENTITY_RELATIONS, PORTAL_EVENTS, USAGE_ACTIVE, USAGE_DAILY, USAGE_ENTITIES, USAGE_FEATURES,
    USAGE_SEARCH, USAGE_SEARCH_QUERIES, USAGE_TEMPLATES,
};

use crate::{Error, Periods, Result};

/// How a mart is brought up to date when tables it reads changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Recomputed whole.
    Whole,
    /// Recomputed for the components new rows touched, closed over shared
    /// repositories (the DORA deployment and change marts: see
    /// [`crate::incremental`]); whole when a table it reads was rewritten
    /// or is not one the component analysis follows.
    ByComponent,
    /// Recomputed for the scopes containing a touched component; whole when
    /// the windows' end moved or a mart it reads was recomputed whole.
    ByScope,
    /// Recomputed for the months (values of its partition column) whose
    /// rows changed in the tables it reads, each partitioned by the same
    /// month (daily marts such as cost): the partitions Delta's log says
    /// were added to, rewritten or removed since the last run. Whole when
    /// that cannot be told, or a table it reads is not partitioned by month.
    ByMonth,
    /// Recomputed from the earliest month whose rows changed in the tables
    /// it reads (less `back` months) to the last: for marts whose month
    /// depends on earlier months (a user's first use, rolling windows) or
    /// on `back` later ones (a cohort's retention). The query reads the
    /// months before through the `{{from_month}}` placeholders (see
    /// [`crate::since`]); its table has a `YYYY-MM` `month` column. Whole
    /// when that cannot be told.
    FromMonth {
        /// Months before the earliest changed one that change with it.
        back: u32,
    },
}

impl Refresh {
    /// How `docs/schema.md` says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Whole => "whole, when a table it reads changed",
            Self::ByComponent => "by affected component, when a table it reads changed",
            Self::ByScope => "by affected scope (whole when the windows' end moved)",
            Self::ByMonth => "by affected month (partition), when a table it reads changed",
            Self::FromMonth { back: 0 } => {
                "from the earliest affected month on, when a table it reads changed"
            }
            Self::FromMonth { .. } => {
                "from the earliest affected month on (less the months before it that change with it), \
                 when a table it reads changed"
            }
        }
    }
}

/// One mart: its table, its SQL, what it reads and how it is refreshed.
#[derive(Debug, Clone, Copy)]
pub struct Mart {
    /// The table it writes: name, columns, key and partitioning.
    pub def: &'static TableDef,
    /// Its query, with `{{parameter}}` placeholders
    /// (`transforms/sql/<name>.sql`).
    pub sql: &'static str,
    /// Every table its query reads, marts included. Checked against the
    /// query's plan on every run and in the tests.
    pub reads: &'static [&'static TableDef],
    /// How it is brought up to date.
    pub refresh: Refresh,
    /// The periods its metrics cover.
    pub periods: Periods,
}

impl Mart {
    /// Its SQL file, relative to the repository root.
    pub fn file(&self) -> String {
        format!("transforms/sql/{}.sql", self.def.name)
    }

    /// Whether its rows depend on where the windows end (and so must be
    /// recomputed when a run's `as_of` moves): read from the placeholders
    /// its query uses.
    pub fn depends_on_as_of(&self) -> bool {
        ["{{as_of}}", "{{windows}}", "{{weeks}}", "{{dora_metrics}}"]
            .iter()
            .any(|p| self.sql.contains(p))
    }

    /// The marts among the tables it reads.
    fn upstream(&self) -> impl Iterator<Item = &'static Mart> + '_ {
        self.reads.iter().filter_map(|def| named(def.name))
    }
}

/// What the metrics query reads; `dora_trends` runs the same query over
/// other periods, so it reads the same.
const METRICS_READS: &[&TableDef] = &[
    &DORA_DEPLOYMENTS,
    &DORA_CHANGES,
    &DORA_SCOPE_MEMBERS,
    &INCIDENTS,
];

/// Every mart. The order here does not matter: [`ordered`] sorts them by
/// what they read.
pub const MARTS: &[Mart] = &[
    Mart {
        def: &DORA_DEPLOYMENTS,
        sql: include_str!("../sql/dora_deployments.sql"),
        reads: &[
            &CATALOG_ENTITIES,
            &COMMIT_FILES,
            &DEPLOYMENTS,
            &DEPLOYMENT_CHANGES,
            &INCIDENTS,
            &PULL_REQUESTS,
            &PULL_REQUEST_COMMITS,
            &COMMITS,
            &RELEASE_DEPLOYS,
        ],
        refresh: Refresh::ByComponent,
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_CHANGES,
        sql: include_str!("../sql/dora_changes.sql"),
        reads: &[
            &CATALOG_ENTITIES,
            &COMMIT_FILES,
            &DORA_DEPLOYMENTS,
            &DEPLOYMENT_CHANGES,
            &PULL_REQUESTS,
            &PULL_REQUEST_COMMITS,
            &PULL_REQUEST_REVIEWS,
            &COMMITS,
        ],
        refresh: Refresh::ByComponent,
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_SCOPE_MEMBERS,
        sql: include_str!("../sql/dora_scope_members.sql"),
        reads: &[&CATALOG_ENTITIES],
        refresh: Refresh::Whole,
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_METRICS,
        sql: include_str!("../sql/dora_metrics.sql"),
        reads: METRICS_READS,
        refresh: Refresh::ByScope,
        periods: Periods::Rolling,
    },
    Mart {
        def: &DORA_TRENDS,
        sql: include_str!("../sql/dora_trends.sql"),
        reads: METRICS_READS,
        refresh: Refresh::ByScope,
        periods: Periods::Calendar,
    },
    Mart {
        def: &DEPLOYMENT_FEATURES,
        sql: include_str!("../sql/deployment_features.sql"),
        reads: &[
            &DORA_DEPLOYMENTS,
            &DORA_CHANGES,
            &INCIDENTS,
            &PULL_REQUESTS,
            &PULL_REQUEST_REVIEWS,
            &COMMITS,
            &DEPLOYMENT_CHANGES,
            &COMMIT_FILES,
        ],
        refresh: Refresh::ByComponent,
        periods: Periods::Rolling,
    },
    Mart {
        def: &DEPLOYMENT_SIGNALS,
        sql: include_str!("../sql/deployment_signals.sql"),
        reads: &[
            &DORA_DEPLOYMENTS,
            &ERROR_ISSUES_DAILY,
            &ERROR_COUNTS_DAILY,
            &SERVICE_METRICS_DAILY,
            &SERVICE_METRICS_HOURLY,
        ],
        refresh: Refresh::Whole,
        periods: Periods::Rolling,
    },
    Mart {
        def: &COST_DAILY,
        sql: include_str!("../sql/cost_daily.sql"),
        reads: &[&COST_ALLOCATIONS_DAILY, &CLOUD_COSTS_DAILY],
        refresh: Refresh::ByMonth,
        periods: Periods::Rolling,
    },
    Mart {
        def: &COST_MONTHLY,
        sql: include_str!("../sql/cost_monthly.sql"),
        reads: &[&COST_DAILY, &DORA_SCOPE_MEMBERS],
        refresh: Refresh::Whole,
        periods: Periods::Rolling,
    },
    Mart {
        def: &COST_BENCHMARKS,
        sql: include_str!("../sql/cost_benchmarks.sql"),
        reads: &[
            &COST_DAILY,
            &SERVICE_METRICS_DAILY,
            &DORA_DEPLOYMENTS,
            &COST_ALLOCATIONS_DAILY,
            &CATALOG_ENTITIES,
            &PULL_REQUESTS,
        ],
        refresh: Refresh::Whole,
        periods: Periods::Rolling,
    },
    Mart {
        def: &COST_COMMITMENTS,
        sql: include_str!("../sql/cost_commitments.sql"),
        reads: &[&CLOUD_COSTS_DAILY],
        refresh: Refresh::ByMonth,
        periods: Periods::Rolling,
    },
    Mart {
        def: &COST_COVERAGE,
        sql: include_str!("../sql/cost_coverage.sql"),
        reads: &[&COST_ALLOCATIONS_DAILY, &CLOUD_COSTS_DAILY],
        refresh: Refresh::ByMonth,
        periods: Periods::Rolling,
    },
    Mart {
        def: &USAGE_DAILY,
        sql: include_str!("../sql/usage_daily.sql"),
        reads: &[&PORTAL_EVENTS],
        refresh: Refresh::ByMonth,
        periods: Periods::Rolling,
    },
    Mart {
        def: &USAGE_ACTIVE,
        sql: include_str!("../sql/usage_active.sql"),
        reads: &[&PORTAL_EVENTS, &CATALOG_ENTITIES, &ENTITY_RELATIONS],
        refresh: Refresh::FromMonth { back: 0 },
        periods: Periods::Rolling,
    },
    Mart {
        def: &USAGE_FEATURES,
        sql: include_str!("../sql/usage_features.sql"),
        reads: &[&PORTAL_EVENTS],
        refresh: Refresh::FromMonth { back: 1 },
        periods: Periods::Rolling,
    },
    Mart {
        def: &USAGE_SEARCH,
        sql: include_str!("../sql/usage_search.sql"),
        reads: &[&PORTAL_EVENTS],
        refresh: Refresh::FromMonth { back: 0 },
        periods: Periods::Rolling,
    },
    Mart {
        def: &USAGE_SEARCH_QUERIES,
        sql: include_str!("../sql/usage_search_queries.sql"),
        reads: &[&PORTAL_EVENTS],
        refresh: Refresh::FromMonth { back: 0 },
        periods: Periods::Rolling,
    },
    Mart {
        def: &USAGE_TEMPLATES,
        sql: include_str!("../sql/usage_templates.sql"),
        reads: &[&PORTAL_EVENTS],
        refresh: Refresh::ByMonth,
        periods: Periods::Rolling,
    },
    Mart {
        def: &USAGE_ENTITIES,
        sql: include_str!("../sql/usage_entities.sql"),
        reads: &[&PORTAL_EVENTS],
        refresh: Refresh::ByMonth,
        periods: Periods::Rolling,
    },
];

/// The mart writing table `name`, if any.
pub fn named(name: &str) -> Option<&'static Mart> {
    MARTS.iter().find(|m| m.def.name == name)
}

/// The marts in dependency order: every mart after the marts it reads
/// (ties in declaration order, so the order is stable).
pub fn ordered() -> Result<Vec<&'static Mart>> {
    let mut done: Vec<&'static Mart> = Vec::with_capacity(MARTS.len());
    while done.len() < MARTS.len() {
        let ready = MARTS.iter().find(|m| {
            !done.iter().any(|d| d.def.name == m.def.name)
                && m.upstream()
                    .all(|u| done.iter().any(|d| d.def.name == u.def.name))
        });
        match ready {
            Some(mart) => done.push(mart),
            None => {
                let left: Vec<&str> = MARTS
                    .iter()
                    .filter(|m| !done.iter().any(|d| d.def.name == m.def.name))
                    .map(|m| m.def.name)
                    .collect();
                return Err(Error::Declaration(format!(
                    "the marts {} read each other in a cycle",
                    left.join(", ")
                )));
            }
        }
    }
    Ok(done)
}

/// Tables that say what other rows belong to — the catalog, and the scope
/// membership computed from it. Alone they make no row of a mart, except
/// of the marts in [`CATALOG_ROWS`].
pub const LOOKUPS: [&str; 3] = ["catalog_entities", "entity_relations", "dora_scope_members"];

/// The marts that write rows from the catalog alone: every scope, active
/// or not (a team that has not deployed yet has DORA figures of zero).
pub const CATALOG_ROWS: [&str; 3] = ["dora_scope_members", "dora_metrics", "dora_trends"];

/// Tables that, beyond [`LOOKUPS`], alone make no row of one mart: a
/// deployment's signals need the errors or metrics that followed it; a
/// benchmark's traffic, deployments and merged pull requests divide a cost.
pub const MART_LOOKUPS: [(&str, &str); 4] = [
    ("deployment_signals", "dora_deployments"),
    ("cost_benchmarks", "dora_deployments"),
    ("cost_benchmarks", "pull_requests"),
    ("cost_benchmarks", "service_metrics_daily"),
];

/// Whether `mart` can write a row when only the tables in `filled` hold
/// any. Every mart aggregates or joins what it reads, so with nothing but
/// empty tables and lookups it writes none (tested on empty and on
/// catalog-only warehouses): a run writes it empty without planning its
/// query, so a warehouse fed by some sources only (DORA without costs,
/// costs without portal events) spends nothing on the others' marts.
pub fn reads_rows(mart: &Mart, filled: &BTreeSet<&'static str>) -> bool {
    let from_catalog = CATALOG_ROWS.contains(&mart.def.name);
    let lookup = |table: &str| {
        (!from_catalog && LOOKUPS.contains(&table))
            || MART_LOOKUPS.contains(&(mart.def.name, table))
    };
    mart.reads.is_empty()
        || mart
            .reads
            .iter()
            .any(|d| filled.contains(d.name) && !lookup(d.name))
}

/// The tables the marts read that no mart writes: what an incremental run
/// follows, by name.
pub fn inputs() -> Vec<&'static TableDef> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for mart in MARTS {
        for def in mart.reads {
            if named(def.name).is_none() && seen.insert(def.name) {
                out.push(*def);
            }
        }
    }
    out.sort_by_key(|d| d.name);
    out
}

/// The tables a plan scans, subqueries included (a recursive CTE's scan
/// of its own rows is not a table).
pub fn tables_scanned(plan: &LogicalPlan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // The closure never fails; the walk's own result carries nothing.
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let work_table = source_as_provider(&scan.source).is_ok_and(|p| p.is::<CteWorkTable>());
            if !work_table {
                out.insert(scan.table_name.table().to_owned());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Refuses a plan of `mart` that reads a table its declaration does not
/// list: the incremental planner would not know to recompute it.
pub fn check_reads(mart: &Mart, plan: &LogicalPlan) -> Result<()> {
    let undeclared: Vec<String> = tables_scanned(plan)
        .into_iter()
        .filter(|t| !mart.reads.iter().any(|d| d.name == t))
        .collect();
    if undeclared.is_empty() {
        Ok(())
    } else {
        Err(Error::Declaration(format!(
            "mart `{}` reads {}, which its declaration in transforms/src/marts.rs does not list",
            mart.def.name,
            undeclared
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// One line per mart for the data dictionary: its SQL file, what it reads
/// and how it is refreshed.
pub fn lineage(name: &str) -> Option<String> {
    let mart = named(name)?;
    let reads = mart
        .reads
        .iter()
        .map(|d| format!("`{}`", d.name))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "Computed by `{}` from {reads}; refreshed {}.",
        mart.file(),
        mart.refresh.describe()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::datasource::MemTable;

    use super::*;
    use crate::Parameters;

    /// A mart session with every table registered, empty.
    fn empty_warehouse() -> Result<datafusion::prelude::SessionContext> {
        let ctx = crate::mart_session();
        for def in fathom_models::ALL_TABLES {
            let table = MemTable::try_new(def.arrow_schema(), vec![vec![]])
                .map_err(|e| Error::Declaration(e.to_string()))?;
            ctx.register_table(def.name, Arc::new(table))
                .map_err(|e| Error::Declaration(e.to_string()))?;
        }
        Ok(ctx)
    }

    /// Each declaration lists exactly the tables its query reads: one too
    /// few and incremental runs go stale, one too many and they recompute
    /// for nothing.
    #[tokio::test]
    async fn every_mart_reads_exactly_what_it_declares() -> Result<()> {
        let ctx = empty_warehouse()?;
        for mart in MARTS {
            let plan =
                crate::runner::plan(&ctx, mart, &Parameters::default(), crate::default_as_of())
                    .await?;
            let scanned = tables_scanned(&plan);
            let declared: BTreeSet<String> = mart.reads.iter().map(|d| d.name.to_owned()).collect();
            assert_eq!(scanned, declared, "{}", mart.def.name);
            check_reads(mart, &plan)?;
        }
        Ok(())
    }

    /// A declaration missing a table is refused with the mart and the
    /// table named.
    #[tokio::test]
    async fn an_undeclared_read_is_refused() -> Result<()> {
        let ctx = empty_warehouse()?;
        let plan = ctx
            .state()
            .create_logical_plan(
                "SELECT d.deployment_id FROM dora_deployments d JOIN incidents i ON true",
            )
            .await
            .map_err(|source| Error::Sql {
                mart: "test",
                source,
            })?;
        let mart = Mart {
            reads: &[&DORA_DEPLOYMENTS],
            ..MARTS[1]
        };
        let error = check_reads(&mart, &plan).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "mart `dora_changes` reads `incidents`, which its declaration in transforms/src/marts.rs does not list"
            )
        );
        Ok(())
    }

    #[test]
    fn marts_run_after_what_they_read() -> Result<()> {
        let order: Vec<&str> = ordered()?.iter().map(|m| m.def.name).collect();
        assert_eq!(
            order,
            [
                "dora_deployments",
                "dora_changes",
                "dora_scope_members",
                "dora_metrics",
                "dora_trends",
                "deployment_features",
                "deployment_signals",
                "cost_daily",
                "cost_monthly",
                "cost_benchmarks",
                "cost_commitments",
                "cost_coverage",
                "usage_daily",
                "usage_active",
                "usage_features",
                "usage_search",
                "usage_search_queries",
                "usage_templates",
                "usage_entities"
            ]
        );
        for (i, mart) in ordered()?.iter().enumerate() {
            for upstream in mart.upstream() {
                assert!(order[..i].contains(&upstream.def.name), "{}", mart.def.name);
            }
        }
        Ok(())
    }

    #[test]
    fn each_sql_file_is_named_after_its_mart() {
        for mart in MARTS {
            let path = format!("{}/sql/{}.sql", env!("CARGO_MANIFEST_DIR"), mart.def.name);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(text, mart.sql, "{path}");
        }
    }

    #[test]
    fn inputs_are_the_tables_no_mart_writes() {
        let names: Vec<&str> = inputs().iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "catalog_entities",
                "cloud_costs_daily",
                "commit_files",
                "commits",
                "cost_allocations_daily",
                "deployment_changes",
                "deployments",
                "entity_relations",
                "error_counts_daily",
                "error_issues_daily",
                "incidents",
                "portal_events",
                "pull_request_commits",
                "pull_request_reviews",
                "pull_requests",
                "release_deploys",
                "service_metrics_daily",
                "service_metrics_hourly"
            ]
        );
        assert!(MARTS[3].depends_on_as_of() && MARTS[4].depends_on_as_of());
        assert!(!MARTS[0].depends_on_as_of() && !MARTS[2].depends_on_as_of());
    }

    /// A mart refreshed by month is partitioned by month, and so is every
    /// table it reads: a changed partition of an input is then the same
    /// month of the mart.
    #[test]
    fn marts_refreshed_by_month_read_tables_partitioned_by_month() {
        for mart in MARTS.iter().filter(|m| m.refresh == Refresh::ByMonth) {
            assert!(mart.def.partition.is_some(), "{}", mart.def.name);
            for def in mart.reads {
                assert!(
                    def.partition.is_some(),
                    "{} reads {}",
                    mart.def.name,
                    def.name
                );
            }
        }
    }

    /// A mart refreshed from a month on has the `month` column its rows
    /// are replaced by, and its query reads the months before through the
    /// placeholders.
    #[test]
    fn marts_refreshed_from_a_month_have_a_month_column() {
        for mart in MARTS
            .iter()
            .filter(|m| matches!(m.refresh, Refresh::FromMonth { .. }))
        {
            let month = mart.def.columns.iter().find(|c| c.name == "month");
            assert!(month.is_some(), "{}", mart.def.name);
            assert!(mart.sql.contains("{{from_month}}"), "{}", mart.def.name);
        }
    }
}
