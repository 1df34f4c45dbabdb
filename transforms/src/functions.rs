//! Fathom's SQL functions: the ones the marts are written with, registered
//! in every session that runs SQL — the marts', `fathom sql`, `POST
//! /api/v1/sql` and the PostgreSQL endpoint — so an analyst can write what
//! the marts write (`docs/metrics.md`, "SQL functions", shows each with the
//! examples [`EXAMPLES`] lists; a test runs them).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query_runtime, read_only_session_on};

use crate::tiers;

/// The read-only session analysts' SQL runs in (`fathom sql`, `POST
/// /api/v1/sql`, the PostgreSQL endpoint, the API's pages): the
/// warehouse's tables at their latest versions, and Fathom's functions.
pub async fn analyst_session(
    warehouse: &Warehouse,
    limits: QueryLimits,
) -> fathom_warehouse::Result<SessionContext> {
    analyst_session_on(warehouse, query_runtime(limits)?).await
}

/// [`analyst_session`] on a shared runtime (its memory pool).
pub async fn analyst_session_on(
    warehouse: &Warehouse,
    runtime: Arc<RuntimeEnv>,
) -> fathom_warehouse::Result<SessionContext> {
    let ctx = read_only_session_on(warehouse, runtime).await?;
    register(&ctx);
    Ok(ctx)
}

/// Registers every Fathom function in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(nonnegative_udf());
    ctx.register_udf(seconds_between_udf());
    ctx.register_udf(tiers::dora_tier_udf());
    ctx.register_udf(tiers::dora_overall_tier_udf());
}

/// One documented call and the answer it gives (as `fathom sql --format
/// csv` prints it).
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// The call, an expression.
    pub sql: &'static str,
    /// Its answer.
    pub answer: &'static str,
}

/// The examples of `docs/metrics.md`, "SQL functions".
pub const EXAMPLES: &[Example] = &[
    Example {
        sql: "dora_tier('dora-2023', 'lead_time', 172800.0)",
        answer: "high",
    },
    Example {
        sql: "dora_tier('dora-2023', 'deployment_frequency', 0.5)",
        answer: "high",
    },
    Example {
        sql: "dora_overall_tier('elite', 'high', 'medium', NULL)",
        answer: "medium",
    },
    Example {
        sql: "seconds_between(TIMESTAMP '2026-06-01T00:00:00Z', TIMESTAMP '2026-06-01T01:30:00Z')",
        answer: "5400.0",
    },
    Example {
        sql: "nonnegative(-3.0) IS NULL",
        answer: "true",
    },
];

/// `seconds_between(start, end)`: the time from `start` to `end` in
/// seconds (negative when `end` comes first; null when either is null) —
/// the one duration the marts compute, exact to the microsecond.
pub fn seconds_between_udf() -> datafusion::logical_expr::ScalarUDF {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    create_udf(
        "seconds_between",
        vec![utc.clone(), utc],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let timestamps = |i: usize| {
                arrays
                    .get(i)
                    .and_then(|a| a.as_any().downcast_ref::<TimestampMicrosecondArray>())
            };
            let (Some(start), Some(end)) = (timestamps(0), timestamps(1)) else {
                return Err(DataFusionError::Internal(
                    "seconds_between takes two timestamps".to_owned(),
                ));
            };
            let out: Float64Array = start
                .iter()
                .zip(end.iter())
                .map(|(s, e)| Some((e? - s?) as f64 / 1e6))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

/// `nonnegative(x)`: `x`, or null when it is negative (a stage that ends
/// before it starts is a data artefact, not a duration).
pub fn nonnegative_udf() -> datafusion::logical_expr::ScalarUDF {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionContext {
        let ctx = SessionContext::new();
        register(&ctx);
        ctx
    }

    /// The first column of `sql`'s rows, as doubles.
    async fn doubles(
        ctx: &SessionContext,
        sql: &str,
    ) -> datafusion::error::Result<Vec<Option<f64>>> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .map(|a| a.iter().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect())
    }

    #[tokio::test]
    async fn seconds_between_measures_to_the_microsecond() -> datafusion::error::Result<()> {
        let values = doubles(
            &session(),
            "SELECT seconds_between(a, b) AS s FROM (VALUES \
             (TIMESTAMP '2026-07-01T00:00:00Z', TIMESTAMP '2026-07-01T01:00:00.5Z'), \
             (TIMESTAMP '2026-07-02T00:00:00Z', TIMESTAMP '2026-07-01T00:00:00Z'), \
             (TIMESTAMP '2026-07-01T00:00:00Z', NULL)) AS t(a, b)",
        )
        .await?;
        assert_eq!(values, [Some(3600.5), Some(-86_400.0), None]);
        Ok(())
    }

    #[tokio::test]
    async fn nonnegative_nulls_negative_durations() -> datafusion::error::Result<()> {
        let values = doubles(
            &session(),
            "SELECT nonnegative(x) AS y FROM (VALUES (1.5), (-2.0), (0.0), (NULL)) AS t(x)",
        )
        .await?;
        assert_eq!(values, [Some(1.5), None, Some(0.0), None]);
        Ok(())
    }
}
