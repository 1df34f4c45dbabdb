//! Rows of `anomaly_scores` and `anomalies`, built column by column.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{Field, Schema};
use chrono::{Duration, NaiveDate};
use sha2::{Digest, Sha256};

use super::drivers::Contribution;
use super::series::Series;
use crate::anomaly::{Anomaly, Direction};
use crate::detector::Scored;

fn date32(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((date - epoch).num_days()).unwrap_or(i32::MAX)
}

fn day(series: &Series, at: usize) -> NaiveDate {
    series.first + Duration::days(i64::try_from(at).unwrap_or(i64::MAX))
}

/// Columns shared by both tables' keys.
#[derive(Debug, Default)]
struct KeyColumns {
    metric: Vec<String>,
    scope: Vec<String>,
    scope_kind: Vec<String>,
    unit: Vec<String>,
    dimension: Vec<Option<String>>,
}

impl KeyColumns {
    fn push(&mut self, series: &Series) {
        self.metric.push(series.key.metric.clone());
        self.scope.push(series.key.scope.clone());
        self.scope_kind.push(series.key.scope_kind.clone());
        self.unit.push(series.key.unit.clone());
        self.dimension
            .push((!series.key.dimension.is_empty()).then(|| series.key.dimension.clone()));
    }

    fn fields(self) -> Vec<(&'static str, ArrayRef)> {
        vec![
            (
                "metric",
                Arc::new(StringArray::from(self.metric)) as ArrayRef,
            ),
            ("scope", Arc::new(StringArray::from(self.scope))),
            ("scope_kind", Arc::new(StringArray::from(self.scope_kind))),
            ("unit", Arc::new(StringArray::from(self.unit))),
            ("dimension", Arc::new(StringArray::from(self.dimension))),
        ]
    }
}

fn batch(columns: Vec<(&'static str, ArrayRef)>) -> Result<RecordBatch, arrow::error::ArrowError> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// `anomaly_scores` rows.
#[derive(Debug, Default)]
pub struct ScoreRows {
    key: KeyColumns,
    date: Vec<i32>,
    value: Vec<Option<f64>>,
    expected: Vec<Option<f64>>,
    lower: Vec<Option<f64>>,
    upper: Vec<Option<f64>>,
    score: Vec<f64>,
    anomalous: Vec<bool>,
}

impl ScoreRows {
    /// One row per day of `series` with a value or a baseline.
    pub fn push(&mut self, series: &Series, points: &[Scored]) {
        for (at, point) in points.iter().enumerate() {
            if point.value.is_none() && point.expected.is_none() {
                continue;
            }
            self.key.push(series);
            self.date.push(date32(day(series, at)));
            self.value.push(point.value);
            self.expected.push(point.expected);
            self.lower.push(point.lower);
            self.upper.push(point.upper);
            self.score.push(point.score);
            self.anomalous.push(point.anomalous);
        }
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.date.len()
    }

    /// The rows as one batch.
    pub fn finish(self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns = self.key.fields();
        columns.extend([
            ("date", Arc::new(Date32Array::from(self.date)) as ArrayRef),
            ("value", Arc::new(Float64Array::from(self.value))),
            ("expected", Arc::new(Float64Array::from(self.expected))),
            ("lower", Arc::new(Float64Array::from(self.lower))),
            ("upper", Arc::new(Float64Array::from(self.upper))),
            ("score", Arc::new(Float64Array::from(self.score))),
            ("anomalous", Arc::new(BooleanArray::from(self.anomalous))),
        ]);
        batch(columns)
    }
}

/// `anomalies` rows.
#[derive(Debug, Default)]
pub struct AnomalyRows {
    key: KeyColumns,
    id: Vec<String>,
    kind: Vec<String>,
    direction: Vec<String>,
    first_day: Vec<i32>,
    last_day: Vec<i32>,
    status: Vec<String>,
    peak_day: Vec<i32>,
    peak_score: Vec<f64>,
    days: Vec<i64>,
    actual: Vec<f64>,
    expected: Vec<f64>,
    impact: Vec<f64>,
    driver: Vec<Option<String>>,
    driver_share: Vec<Option<f64>>,
    drivers: Vec<Option<String>>,
}

/// A stable id: the same anomaly found again keeps it.
pub fn anomaly_id(series: &Series, first_day: NaiveDate) -> String {
    let mut hash = Sha256::new();
    for part in [&series.key.metric, &series.key.scope, &series.key.unit] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    // The whole keeps the ids it had before parts were scored.
    if !series.key.dimension.is_empty() {
        hash.update(series.key.dimension.as_bytes());
        hash.update([0]);
    }
    hash.update(first_day.to_string().as_bytes());
    hex::encode(&hash.finalize()[..10])
}

impl AnomalyRows {
    /// One row for `anomaly` of `series`.
    pub fn push(&mut self, series: &Series, anomaly: &Anomaly, drivers: &[Contribution]) {
        let first = day(series, anomaly.first);
        self.key.push(series);
        self.id.push(anomaly_id(series, first));
        self.kind.push(anomaly.kind.as_str().to_owned());
        self.direction.push(
            match anomaly.direction {
                Direction::Up => "up",
                Direction::Down => "down",
            }
            .to_owned(),
        );
        self.first_day.push(date32(first));
        self.last_day.push(date32(day(series, anomaly.last)));
        self.status
            .push(if anomaly.open { "open" } else { "closed" }.to_owned());
        self.peak_day.push(date32(day(series, anomaly.peak)));
        self.peak_score.push(anomaly.peak_score);
        self.days
            .push(i64::try_from(anomaly.last - anomaly.first + 1).unwrap_or(i64::MAX));
        self.actual.push(anomaly.actual);
        self.expected.push(anomaly.expected);
        self.impact.push(anomaly.impact);
        let top = drivers.first();
        self.driver.push(top.map(|c| c.dimension.clone()));
        self.driver_share.push(
            top.filter(|_| anomaly.impact != 0.0)
                .map(|c| c.contribution / anomaly.impact),
        );
        self.drivers.push(
            (!drivers.is_empty()).then(|| serde_json::to_string(drivers).unwrap_or_default()),
        );
    }

    /// The rows as one batch.
    pub fn finish(self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns = self.key.fields();
        columns.extend([
            (
                "anomaly_id",
                Arc::new(StringArray::from(self.id)) as ArrayRef,
            ),
            ("kind", Arc::new(StringArray::from(self.kind))),
            ("direction", Arc::new(StringArray::from(self.direction))),
            ("first_day", Arc::new(Date32Array::from(self.first_day))),
            ("last_day", Arc::new(Date32Array::from(self.last_day))),
            ("status", Arc::new(StringArray::from(self.status))),
            ("peak_day", Arc::new(Date32Array::from(self.peak_day))),
            ("peak_score", Arc::new(Float64Array::from(self.peak_score))),
            ("days", Arc::new(Int64Array::from(self.days))),
            ("actual", Arc::new(Float64Array::from(self.actual))),
            ("expected", Arc::new(Float64Array::from(self.expected))),
            ("impact", Arc::new(Float64Array::from(self.impact))),
            ("driver", Arc::new(StringArray::from(self.driver))),
            (
                "driver_share",
                Arc::new(Float64Array::from(self.driver_share)),
            ),
            ("drivers", Arc::new(StringArray::from(self.drivers))),
        ]);
        batch(columns)
    }
}
