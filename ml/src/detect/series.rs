//! The series the detector scores, read from the warehouse: cost per
//! component, team (with sub-teams) and org with its sub-series (cost
//! source / service category) for the driver; per component requests,
//! error rate, p95 latency, CPU and memory; error-tracker events.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{Date32Type, Float64Type};
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::DetectError;

/// Identifies a series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Measure (`cost`, `requests`, …).
    pub metric: String,
    /// Entity ref or `org`.
    pub scope: String,
    /// component, group or org.
    pub scope_kind: String,
    /// Unit (a currency, `count`, …).
    pub unit: String,
    /// The part of the measure (a component's cost source and category);
    /// empty for the whole.
    pub dimension: String,
}

impl SeriesKey {
    /// The key in row `row` of text columns metric, scope, scope kind,
    /// unit and dimension (null: the whole).
    pub(super) fn at(columns: [&StringArray; 5], row: usize) -> Self {
        let [metric, scope, kind, unit, dimension] = columns;
        Self {
            metric: metric.value(row).to_owned(),
            scope: scope.value(row).to_owned(),
            scope_kind: kind.value(row).to_owned(),
            unit: unit.value(row).to_owned(),
            dimension: if dimension.is_null(row) {
                String::new()
            } else {
                dimension.value(row).to_owned()
            },
        }
    }
}

/// One series on the days `first..first + values.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Which.
    pub key: SeriesKey,
    /// Day of `values[0]`.
    pub first: NaiveDate,
    /// Value per day; `None`: no data that day.
    pub values: Vec<Option<f64>>,
    /// Sub-series by dimension, aligned with `values` (missing: 0), whose
    /// sum is the series.
    pub parts: BTreeMap<String, Vec<f64>>,
}

/// Every series query yields `metric, scope, scope_kind, unit, series,
/// dimension, date, value`; rows of one series (`series`: the part it
/// follows, empty for the whole) with several dimensions are summed per
/// day into the series and kept per dimension as its parts.
///
/// Cost series are consumption: usage and the amortized share of
/// commitments (`usage`, `purchase`). Tax, credits, refunds and
/// adjustments are billing events booked once a month, not consumption;
/// in a daily series they are a spike on every first of the month.
const QUERIES: &[&str] = &[
    // Cost of components and of groups (with every group below them).
    "SELECT 'cost' AS metric, m.scope, m.scope_kind, c.billing_currency AS unit, '' AS series, \
        c.cost_source || '/' || c.service_category AS dimension, c.date, \
        SUM(c.effective_cost) AS value \
     FROM cost_daily c JOIN dora_scope_members m ON c.entity_ref = m.entity_ref \
     WHERE m.scope_kind IN ('component', 'group') AND c.charge_category IN ('usage', 'purchase') \
     GROUP BY m.scope, m.scope_kind, c.billing_currency, c.cost_source, c.service_category, c.date",
    // Each component's cost per source and category on its own: a part
    // that doubles can hide in a total it is a small share of.
    "SELECT 'cost' AS metric, m.scope, m.scope_kind, c.billing_currency AS unit, \
        c.cost_source || '/' || c.service_category AS series, '' AS dimension, c.date, \
        SUM(c.effective_cost) AS value \
     FROM cost_daily c JOIN dora_scope_members m ON c.entity_ref = m.entity_ref \
     WHERE m.scope_kind = 'component' AND c.charge_category IN ('usage', 'purchase') \
     GROUP BY m.scope, m.scope_kind, c.billing_currency, c.cost_source, c.service_category, c.date",
    // The org's cost: all consumption, shared cost included.
    "SELECT 'cost' AS metric, 'org' AS scope, 'org' AS scope_kind, billing_currency AS unit, \
        '' AS series, cost_source || '/' || service_category AS dimension, date, \
        SUM(effective_cost) AS value \
     FROM cost_daily WHERE charge_category IN ('usage', 'purchase') \
     GROUP BY billing_currency, cost_source, service_category, date",
    // Operational series per component.
    "SELECT metric, entity_ref AS scope, 'component' AS scope_kind, unit, '' AS series, \
        '' AS dimension, date, value \
     FROM ( \
        SELECT entity_ref, date, 'requests' AS metric, 'count' AS unit, \
            CAST(SUM(request_count) AS DOUBLE) AS value \
        FROM service_metrics_daily WHERE entity_ref IS NOT NULL AND request_count IS NOT NULL \
        GROUP BY entity_ref, date \
        UNION ALL \
        SELECT entity_ref, date, 'error_rate', 'ratio', \
            CAST(SUM(error_count) AS DOUBLE) / CAST(SUM(request_count) AS DOUBLE) \
        FROM service_metrics_daily \
        WHERE entity_ref IS NOT NULL AND error_count IS NOT NULL AND request_count > 0 \
        GROUP BY entity_ref, date \
        UNION ALL \
        SELECT entity_ref, date, 'latency_p95_seconds', 'seconds', MAX(latency_p95_seconds) \
        FROM service_metrics_daily WHERE entity_ref IS NOT NULL AND latency_p95_seconds IS NOT NULL \
        GROUP BY entity_ref, date \
        UNION ALL \
        SELECT entity_ref, date, 'cpu_usage_cores', 'cores', SUM(cpu_usage_cores) \
        FROM service_metrics_daily WHERE entity_ref IS NOT NULL AND cpu_usage_cores IS NOT NULL \
        GROUP BY entity_ref, date \
        UNION ALL \
        SELECT entity_ref, date, 'memory_usage_bytes', 'bytes', SUM(memory_usage_bytes) \
        FROM service_metrics_daily WHERE entity_ref IS NOT NULL AND memory_usage_bytes IS NOT NULL \
        GROUP BY entity_ref, date \
        UNION ALL \
        SELECT entity_ref, date, 'error_events', 'count', CAST(SUM(event_count) AS DOUBLE) \
        FROM error_counts_daily WHERE entity_ref IS NOT NULL \
        GROUP BY entity_ref, date \
     )",
];

/// One row of a series as read: day (days since the epoch), dimension
/// (an index into the interned names) and value. Sixteen bytes a row, so
/// two years of thirty thousand series fit in a few hundred megabytes.
type Row = (i32, u32, f64);

/// Reads every series from the tables registered in `ctx`. Each query's
/// result is streamed batch by batch into compact rows per series, then
/// each series is laid out on its days; nothing holds a row as text.
///
/// With `since`, only the days from `since` on (a daily run continuing
/// saved state): the filter reaches the tables' scans.
pub async fn load(
    ctx: &SessionContext,
    since: Option<NaiveDate>,
) -> Result<Vec<Series>, DetectError> {
    let mut raw: BTreeMap<SeriesKey, Vec<Row>> = BTreeMap::new();
    let mut dimensions: Vec<String> = Vec::new();
    let mut interned: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for query in QUERIES {
        let sql = match since {
            Some(day) => format!("SELECT * FROM ({query}) WHERE date >= DATE '{day}'"),
            None => (*query).to_owned(),
        };
        let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            // Literals and concatenations come back as string views,
            // columns as plain strings: read both as plain strings.
            let text = |i: usize| {
                arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8)
                    .ok()
                    .and_then(|a| a.as_string_opt::<i32>().cloned())
            };
            let (Some(metric), Some(scope), Some(kind), Some(unit), Some(part), Some(dimension)) =
                (text(0), text(1), text(2), text(3), text(4), text(5))
            else {
                return Err(DetectError::Shape("series columns are not text".to_owned()));
            };
            let dates = batch
                .column(6)
                .as_primitive_opt::<Date32Type>()
                .ok_or_else(|| DetectError::Shape("series dates are not dates".to_owned()))?;
            let values =
                arrow::compute::cast(batch.column(7), &arrow::datatypes::DataType::Float64)?;
            let values = values
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| DetectError::Shape("series values are not doubles".to_owned()))?;
            for row in 0..batch.num_rows() {
                if values.is_null(row)
                    || dates.is_null(row)
                    || scope.is_null(row)
                    || unit.is_null(row)
                {
                    continue;
                }
                let key = SeriesKey::at([&metric, &scope, &kind, &unit, &part], row);
                let name = if dimension.is_null(row) {
                    ""
                } else {
                    dimension.value(row)
                };
                let id = match interned.get(name) {
                    Some(id) => *id,
                    None => {
                        let id = u32::try_from(dimensions.len()).unwrap_or(u32::MAX);
                        dimensions.push(name.to_owned());
                        interned.insert(name.to_owned(), id);
                        id
                    }
                };
                raw.entry(key)
                    .or_default()
                    .push((dates.value(row), id, values.value(row)));
            }
        }
    }
    Ok(raw
        .into_iter()
        .filter_map(|(key, rows)| series(key, rows, &dimensions))
        .collect())
}

/// One series from its rows, gaps as `None`; rows of one day and
/// dimension add up.
fn series(key: SeriesKey, mut rows: Vec<Row>, dimensions: &[String]) -> Option<Series> {
    rows.sort_unstable_by_key(|r| (r.0, r.1));
    let first_day = rows.first()?.0;
    let last_day = rows.last()?.0;
    let len = usize::try_from(last_day - first_day).ok()? + 1;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let first = epoch.checked_add_signed(chrono::Duration::days(i64::from(first_day)))?;
    let mut values: Vec<Option<f64>> = vec![None; len];
    let mut used: Vec<u32> = rows.iter().map(|r| r.1).collect();
    used.sort_unstable();
    used.dedup();
    let named = used.len() > 1
        || used
            .first()
            .is_some_and(|id| dimensions.get(*id as usize).is_some_and(|d| !d.is_empty()));
    let mut parts: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    if named {
        for id in &used {
            let name = dimensions.get(*id as usize).cloned().unwrap_or_default();
            parts.insert(name, vec![0.0; len]);
        }
    }
    for (day, id, value) in rows {
        let at = usize::try_from(day - first_day).ok()?;
        *values[at].get_or_insert(0.0) += value;
        if named
            && let Some(part) = dimensions
                .get(id as usize)
                .and_then(|name| parts.get_mut(name))
        {
            part[at] += value;
        }
    }
    Some(Series {
        key,
        first,
        values,
        parts,
    })
}
