//! Retention: portal events older than `[usage] retention_days` are
//! deleted (their files go with the next vacuum once older versions
//! expire). The one predicate is shared by the dry run and the deletion, so
//! what a dry run counts is what the deletion removes.

use chrono::{DateTime, Duration, Utc};
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::scalar::ScalarValue;
use fathom_models::tables::PORTAL_EVENTS;
use fathom_warehouse::Warehouse;

use crate::Result;

/// What retention did, or would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Events older than this go.
    pub cutoff: DateTime<Utc>,
    /// How many (counted on a dry run, deleted otherwise).
    pub events: u64,
}

/// The events older than `cutoff`.
fn older_than(cutoff: DateTime<Utc>) -> Expr {
    col("occurred_at").lt(lit(ScalarValue::TimestampMicrosecond(
        Some(cutoff.timestamp_micros()),
        Some("UTC".into()),
    )))
}

/// Applies a retention of `days` days (0: keep forever, `None` returned)
/// as of `now`; on a dry run only counts.
pub async fn portal_events(
    warehouse: &Warehouse,
    days: u32,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Option<Retained>> {
    if days == 0 {
        return Ok(None);
    }
    let cutoff = now - Duration::days(i64::from(days));
    let predicate = older_than(cutoff);
    let events = if dry_run {
        warehouse.count_matching(&PORTAL_EVENTS, &predicate).await?
    } else {
        warehouse.delete_where(&PORTAL_EVENTS, predicate).await?
    };
    Ok(Some(Retained { cutoff, events }))
}
