//! Marts computed from the core tables: a DataFusion session over the
//! warehouse, one `.sql` file per mart in `transforms/sql/` (readable by
//! analysts and runnable elsewhere once the parameters are filled in), Rust
//! UDFs where SQL is not enough, run in dependency order.
//!
//! Each mart is declared once in [`marts::MARTS`]: its table, its SQL, the
//! tables it reads and how it is refreshed; the runner, the incremental
//! planner, `fathom transform --mart` and the data dictionary's lineage
//! lines read the declarations.
//!
//! A mart is a deterministic function of its input tables: running it again
//! on the same inputs writes the same rows. Each write is one commit
//! (readers see the previous version or the new one). Runs are
//! incremental: given the previous run's [`Watermark`], only the marts
//! whose inputs changed are recomputed, and of those only the components
//! new rows touched and the scopes containing them where the mart's
//! refresh allows; an incremental run leaves exactly the rows a full
//! recompute would ([`incremental`]).

pub mod candidate;
mod explain;
pub mod functions;
pub mod incremental;
pub mod marts;
mod materialize;
mod parameters;
mod runner;
mod since;
pub mod tiers;
mod usage;

pub use explain::{ExplainedMetric, explain_period_sql, explain_sql};
pub use incremental::Watermark;
pub use marts::{MARTS, Mart, Refresh};
pub use parameters::{
    CostParameters, Parameters, Periods, SHARED_POLICIES, WINDOWS, default_as_of,
};
pub use runner::{
    MartReport, NoProgress, RunOptions, RunOutcome, TransformProgress, compute, mart_session, run,
};
pub use usage::UsageParameters;

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
        source: datafusion::error::DataFusionError,
    },
    /// A mart needs more memory than `[transforms] memory_limit_mib`
    /// allows, even spilling to disk.
    #[error(
        "mart `{mart}` needs more memory than `[transforms] memory_limit_mib` = {limit_mib} allows, \
         even spilling to disk ({message}); raise the setting (or give the node more memory)"
    )]
    MemoryBudget {
        /// The mart.
        mart: &'static str,
        /// The budget, MiB.
        limit_mib: usize,
        /// What the engine said.
        message: String,
    },
    /// A temporary file of a mart's intermediate results could not be
    /// made (the system's temporary directory, `TMPDIR`).
    #[error("cannot make a temporary directory for a mart's intermediate results: {0}")]
    Scratch(String),
    /// A parameter is unusable.
    #[error("transform parameter `{name}`: {message}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// A mart's declaration does not match its query, or the marts read
    /// each other in a cycle.
    #[error("{0}")]
    Declaration(String),
    /// `--mart` names no mart.
    #[error("no mart named `{0}`; marts: {marts}", marts = MARTS.iter().map(|m| m.def.name).collect::<Vec<_>>().join(", "))]
    UnknownMart(String),
    /// A hypothetical deployment names changes the warehouse does not
    /// hold ([`candidate`]).
    #[error("{0}")]
    NotFound(String),
}

impl From<fathom_warehouse::Error> for Error {
    fn from(error: fathom_warehouse::Error) -> Self {
        Self::Warehouse(Box::new(error))
    }
}

impl Error {
    /// `self`, with an exhausted memory pool told apart from other
    /// failures of `mart` under a budget of `limit_mib`.
    pub(crate) fn over_budget(self, mart: &'static str, limit_mib: usize) -> Self {
        let message = match &self {
            Self::Sql { source, .. } => match source.find_root() {
                datafusion::error::DataFusionError::ResourcesExhausted(message) => {
                    Some(message.clone())
                }
                _ => None,
            },
            Self::Warehouse(error) => match error.as_ref() {
                fathom_warehouse::Error::ResourcesExhausted(message) => Some(message.clone()),
                _ => None,
            },
            _ => None,
        };
        match message {
            Some(message) => Self::MemoryBudget {
                mart,
                limit_mib,
                message,
            },
            None => self,
        }
    }
}

/// Result with the transforms' error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod equivalence;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod refresh_tests;

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod commitment_tests;
#[cfg(test)]
mod cost_tests;
#[cfg(test)]
mod risk_tests;
#[cfg(test)]
mod signal_tests;
#[cfg(test)]
mod usage_tests;
