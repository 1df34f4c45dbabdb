//! The anomaly detector's outputs: every scored point of every series
//! against its baseline, and the anomalies found in them (docs/ml.md).

use super::{UPDATED_AT, opt, req};
use crate::schema::ColumnType::{Boolean, Date, Float64, Int64, Utf8};
use crate::schema::{ColumnDef, MonthPartition, TableDef};

/// The series a row belongs to.
const METRIC: ColumnDef = req(
    "metric",
    Utf8,
    "The series' measure: `cost` (effective cost per day), `requests`, `error_rate` (failed / all requests), `latency_p95_seconds`, `cpu_usage_cores`, `memory_usage_bytes`, `error_events` (events the error tracker received).",
);

/// Whose series it is.
const SCOPE: ColumnDef = req(
    "scope",
    Utf8,
    "Entity ref of the component or group the series belongs to, or `org`.",
);

/// What the values are measured in.
const UNIT: ColumnDef = req(
    "unit",
    Utf8,
    "Unit of the values: the billing currency for cost (a scope billed in two currencies has two series), `count`, `ratio`, `seconds`, `cores` or `bytes`.",
);

/// Kind of the scope.
const SCOPE_KIND: ColumnDef = req("scope_kind", Utf8, "component, group or org.");

/// Which part of the scope's measure.
const DIMENSION: ColumnDef = opt(
    "dimension",
    Utf8,
    "The part of the measure the series follows: for a component's cost, its cost source and service category (`kubernetes/Compute`, `cloud/Databases`, …); null for the whole (every cost series of groups and the org, and every operational series).",
);

/// Every series × day, scored.
pub const ANOMALY_SCORES: TableDef = TableDef {
    name: "anomaly_scores",
    description: "Scores: every series (metric × scope) per day with its value, what the baseline expected from the days before it, the band outside which one day is anomalous by itself, and the anomaly score (0–1, anomalous from 0.5). A day's score depends only on days up to it, so a backfill equals live scoring.",
    columns: &[
        METRIC,
        SCOPE,
        SCOPE_KIND,
        UNIT,
        DIMENSION,
        req("date", Date, "UTC day."),
        req("month", Utf8, "`YYYY-MM` of date (partition)."),
        opt(
            "value",
            Float64,
            "Observed value; null on a day with no data.",
        ),
        opt(
            "expected",
            Float64,
            "Baseline for the day, from earlier days only; null while the series is too short to have one.",
        ),
        opt("lower", Float64, "Lower edge of the normal band."),
        opt("upper", Float64, "Upper edge of the normal band."),
        req("score", Float64, "Anomaly score in [0, 1]."),
        req("anomalous", Boolean, "score ≥ 0.5."),
        UPDATED_AT,
    ],
    primary_key: &["metric", "scope", "unit", "dimension", "date"],
    partition: Some(MonthPartition {
        column: "month",
        source: "date",
    }),
};

/// One row per anomaly.
pub const ANOMALIES: TableDef = TableDef {
    name: "anomalies",
    description: "Anomalies: runs of anomalous days of one series, with kind, span, status, the actual and expected totals over the span and their difference (impact, in the series' unit: dollars for cost), and the driver — the sub-series (cost source and service category for cost) that explains most of the impact. The drivers' contributions add up to the impact.",
    columns: &[
        req(
            "anomaly_id",
            Utf8,
            "Stable id: metric, scope, unit, dimension and first day hashed, so re-scoring keeps ids (and the feedback given on them).",
        ),
        METRIC,
        SCOPE,
        SCOPE_KIND,
        UNIT,
        DIMENSION,
        req(
            "kind",
            Utf8,
            "spike (a short rise), drop (a short fall), level_shift (a lasting step, either way) or trend (a lasting steady climb or decline: a slow leak).",
        ),
        req("direction", Utf8, "up or down."),
        req("first_day", Date, "First anomalous day."),
        req("last_day", Date, "Last anomalous day."),
        req(
            "status",
            Utf8,
            "open (the series has not been normal since) or closed.",
        ),
        req("peak_day", Date, "Day of the highest score."),
        req("peak_score", Float64, "Highest score."),
        req("days", Int64, "Days from first to last."),
        req("actual", Float64, "Observed total over the span."),
        req("expected", Float64, "Baseline total over the span."),
        req("impact", Float64, "actual − expected."),
        opt(
            "driver",
            Utf8,
            "The sub-series with the largest contribution in the impact's direction (`cloud/Compute`, …); null for series without sub-series.",
        ),
        opt(
            "driver_share",
            Float64,
            "The driver's contribution as a share of the impact.",
        ),
        opt(
            "drivers",
            Utf8,
            "Every sub-series' contribution, largest first, as JSON `[{\"dimension\": …, \"contribution\": …}]`; they sum to the impact.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["anomaly_id"],
    partition: None,
};
