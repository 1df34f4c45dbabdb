//! Errors of the warehouse, grouped by who has to act: the user (bad
//! location, unknown table, refused SQL) or the operator/developer
//! (storage and engine failures).

/// Result with the warehouse's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The warehouse URL cannot be used.
    #[error("warehouse location `{url}` cannot be used: {reason}")]
    InvalidLocation {
        /// The URL as configured.
        url: String,
        /// What is wrong with it and how to fix it.
        reason: String,
    },
    /// A table name no model declares.
    #[error("unknown table `{0}`; `fathom schema` lists the tables")]
    UnknownTable(String),
    /// Input rows do not fit the table's schema.
    #[error("rows for `{table}` do not fit its schema: {reason}")]
    SchemaMismatch {
        /// Target table.
        table: String,
        /// Which column and why.
        reason: String,
    },
    /// A SQL statement that would change or reach outside the warehouse.
    #[error("{0}")]
    ReadOnly(String),
    /// SQL that does not parse or plan (user error).
    #[error("SQL error: {0}")]
    Sql(String),
    /// SQL past the size, depth or plan bounds (user error).
    #[error("{0}")]
    TooComplex(String),
    /// A query that needs more memory than the server lets queries use
    /// (user error: aggregate, filter or add LIMIT).
    #[error(
        "the query needs more memory than the server allows: {0}; aggregate, filter or add LIMIT \
         (queries share `[query] memory_limit_mib`)"
    )]
    ResourcesExhausted(String),
    /// The Delta log or its files could not be read or written.
    #[error("Delta table `{table}`: {source}")]
    Delta {
        /// Table concerned.
        table: String,
        /// Underlying error.
        #[source]
        source: deltalake::DeltaTableError,
    },
    /// Query execution failed.
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Arrow data could not be built or converted.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The state database failed.
    #[error("state database: {0}")]
    State(#[from] sqlx::Error),
    /// The state database could not be migrated.
    #[error("state database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value read from the state database is malformed.
    #[error("state database holds a malformed {what}: {detail}")]
    CorruptState {
        /// Which value.
        what: &'static str,
        /// Why it cannot be read.
        detail: String,
    },
}

impl Error {
    pub(crate) fn delta(table: &str, source: deltalake::DeltaTableError) -> Self {
        Self::Delta {
            table: table.to_owned(),
            source,
        }
    }

    /// An engine error, with "out of memory" told apart: the caller's
    /// query asked for too much, the server did not fail.
    pub fn from_engine(error: datafusion::error::DataFusionError) -> Self {
        match error.find_root() {
            datafusion::error::DataFusionError::ResourcesExhausted(message) => {
                Self::ResourcesExhausted(message.clone())
            }
            _ => Self::DataFusion(error),
        }
    }

    /// True when the user can fix the cause (bad input, config or SQL), as
    /// opposed to a storage or internal failure.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidLocation { .. }
                | Self::UnknownTable(_)
                | Self::SchemaMismatch { .. }
                | Self::ReadOnly(_)
                | Self::Sql(_)
                | Self::TooComplex(_)
                | Self::ResourcesExhausted(_)
        )
    }
}
