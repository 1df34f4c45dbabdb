//! Any `timestamp,value` CSV as a regular series, and the scores back as
//! CSV: the same detector analysts can run on their own series and that
//! external labelled benchmarks can be scored with.
//!
//! The step is detected (median gap between consecutive timestamps);
//! each row lands on the grid slot nearest its timestamp, so irregular or
//! jittery sampling still scores, and slots with no row are gaps, not
//! zeros. Seasonal candidates follow from the step: a day and a week of
//! slots for timestamps, common periods for a plain numeric axis.

use std::io::{Read, Write};

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::detector::{Detector, DetectorConfig, Scored};

/// Why a CSV could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// A row that cannot be used, with its line number (1-based).
    #[error("line {line}: {message}")]
    Row {
        /// Line number in the file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No data rows.
    #[error(
        "the input has no data rows (expected a header `timestamp,value` and one row per point)"
    )]
    Empty,
    /// The timestamps span far more slots than there are rows.
    #[error(
        "timestamps are too irregular to score on one grid: {rows} rows would span {slots} slots of {step} each"
    )]
    Irregular {
        /// Rows read.
        rows: usize,
        /// Slots the grid would need.
        slots: usize,
        /// The detected step.
        step: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the timestamps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Instants (seconds since the epoch).
    Time,
    /// Plain numbers (an index).
    Number,
}

/// One input row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Line in the file (1-based).
    pub line: usize,
    /// The timestamp as written.
    pub timestamp: String,
    /// Seconds since the epoch, or the number itself.
    pub at: f64,
    /// The value.
    pub value: f64,
    /// Grid slot.
    pub slot: usize,
}

/// A CSV read onto a regular grid.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvSeries {
    /// Rows in time order (duplicates removed).
    pub rows: Vec<Row>,
    /// Value per slot (the mean of rows sharing a slot); `None`: gap.
    pub values: Vec<Option<f64>>,
    /// The detected step (seconds, or index units).
    pub step: f64,
    /// What the timestamps are.
    pub axis: Axis,
    /// Seasonal periods to test, in slots.
    pub candidates: Vec<usize>,
    /// What was repaired on the way (unsorted, duplicates, shared slots).
    pub warnings: Vec<String>,
}

/// Slots allowed per row before the grid is refused.
const MAX_SLOTS_PER_ROW: usize = 100;
/// Candidate periods for a numeric axis: a week of days, a day and a week
/// of hours, a year of months.
const NUMERIC_CANDIDATES: [usize; 4] = [7, 12, 24, 168];

/// Reads `timestamp,value` rows (a header is required; columns are found
/// by name when it has `timestamp` and `value`, else the first two are
/// used).
pub fn read(input: impl Read) -> Result<CsvSeries, SeriesError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader.headers()?.clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (ts_col, value_col) = match (column("timestamp"), column("value")) {
        (Some(t), Some(v)) => (t, v),
        _ => (0, 1),
    };
    let mut rows = Vec::new();
    let mut axis = None;
    for (index, record) in reader.records().enumerate() {
        let record = record?;
        let line = record.position().map_or(index + 2, |p| p.line() as usize);
        let field = |col: usize, what: &str| {
            record
                .get(col)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| SeriesError::Row {
                    line,
                    message: format!("no {what}"),
                })
        };
        let timestamp = field(ts_col, "timestamp")?;
        let (at, kind) = parse_timestamp(timestamp).ok_or_else(|| SeriesError::Row {
            line,
            message: format!("cannot read timestamp {timestamp:?} (RFC 3339, `YYYY-MM-DD[ HH:MM:SS]`, epoch seconds or a number)"),
        })?;
        match axis {
            None => axis = Some(kind),
            Some(seen) if seen != kind => {
                return Err(SeriesError::Row {
                    line,
                    message: format!("timestamp {timestamp:?} mixes dates with plain numbers"),
                });
            }
            Some(_) => {}
        }
        let text = field(value_col, "value")?;
        let value: f64 = text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| SeriesError::Row {
                line,
                message: format!("value {text:?} is not a finite number"),
            })?;
        rows.push(Row {
            line,
            timestamp: timestamp.to_owned(),
            at,
            value,
            slot: 0,
        });
    }
    let axis = axis.ok_or(SeriesError::Empty)?;
    grid(rows, axis)
}

fn grid(mut rows: Vec<Row>, axis: Axis) -> Result<CsvSeries, SeriesError> {
    let mut warnings = Vec::new();
    if rows.windows(2).any(|w| w[1].at < w[0].at) {
        warnings.push("rows were not in time order; sorted".to_owned());
        rows.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.line.cmp(&b.line)));
    }
    let before = rows.len();
    // Equal timestamps: the later line wins, as a correction would.
    let mut deduplicated: Vec<Row> = Vec::with_capacity(rows.len());
    for row in rows {
        match deduplicated.last_mut() {
            Some(last) if last.at == row.at => *last = row,
            _ => deduplicated.push(row),
        }
    }
    let mut rows = deduplicated;
    if rows.len() < before {
        warnings.push(format!(
            "{} rows repeated an earlier timestamp; the later row was kept",
            before - rows.len()
        ));
    }
    let mut gaps: Vec<f64> = rows.windows(2).map(|w| w[1].at - w[0].at).collect();
    gaps.sort_by(f64::total_cmp);
    let step = gaps
        .get(gaps.len() / 2)
        .copied()
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let origin = rows.first().map_or(0.0, |r| r.at);
    let last = rows.last().map_or(0.0, |r| r.at);
    let slots = ((last - origin) / step).round() as usize + 1;
    if slots > rows.len().max(1) * MAX_SLOTS_PER_ROW {
        return Err(SeriesError::Irregular {
            rows: rows.len(),
            slots,
            step: describe_step(step, axis),
        });
    }
    let mut sums = vec![(0.0, 0usize); slots];
    for row in &mut rows {
        row.slot = (((row.at - origin) / step).round() as usize).min(slots - 1);
        let cell = &mut sums[row.slot];
        cell.0 += row.value;
        cell.1 += 1;
    }
    let shared = sums.iter().filter(|c| c.1 > 1).count();
    if shared > 0 {
        warnings.push(format!(
            "{shared} grid slots of {} held more than one row; their mean was scored",
            describe_step(step, axis)
        ));
    }
    let values = sums
        .iter()
        .map(|&(sum, n)| (n > 0).then(|| sum / n as f64))
        .collect();
    Ok(CsvSeries {
        candidates: candidates(step, axis),
        rows,
        values,
        step,
        axis,
        warnings,
    })
}

/// Seasonal periods to test for a step.
pub fn candidates(step: f64, axis: Axis) -> Vec<usize> {
    match axis {
        Axis::Number => NUMERIC_CANDIDATES.to_vec(),
        Axis::Time => [86_400.0, 604_800.0]
            .iter()
            .filter_map(|span| {
                let slots = span / step;
                let whole = slots.round();
                ((slots - whole).abs() <= 0.01 * whole && whole >= 2.0).then_some(whole as usize)
            })
            .collect(),
    }
}

fn describe_step(step: f64, axis: Axis) -> String {
    match axis {
        Axis::Number => format!("{step}"),
        Axis::Time => format!("{step} s"),
    }
}

/// Seconds since the epoch (or the number itself) and the axis kind.
fn parse_timestamp(text: &str) -> Option<(f64, Axis)> {
    if let Ok(number) = text.parse::<f64>() {
        if !number.is_finite() {
            return None;
        }
        // Epoch milliseconds and seconds are told apart by size; smaller
        // numbers are an index.
        return Some(if number >= 1e11 {
            (number / 1000.0, Axis::Time)
        } else if number >= 1e8 {
            (number, Axis::Time)
        } else {
            (number, Axis::Number)
        });
    }
    let seconds = |t: NaiveDateTime| {
        let utc = t.and_utc();
        utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_nanos()) / 1e9
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some((seconds(t.naive_utc()), Axis::Time));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some((seconds(t), Axis::Time));
        }
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some((seconds(date.and_hms_opt(0, 0, 0)?), Axis::Time))
}

/// Scores a read series: one verdict per grid slot.
pub fn score(series: &CsvSeries, config: DetectorConfig) -> Vec<Scored> {
    Detector::score_all(config, &series.candidates, &series.values)
}

/// Writes `timestamp,value,anomaly_score,is_anomaly`, one line per input
/// row (rows sharing a slot share its score); with `details`, also the
/// baseline's `expected,lower,upper` (empty before there is one).
pub fn write(
    series: &CsvSeries,
    scores: &[Scored],
    details: bool,
    output: impl Write,
) -> Result<(), SeriesError> {
    let mut writer = csv::Writer::from_writer(output);
    let mut header = vec!["timestamp", "value", "anomaly_score", "is_anomaly"];
    if details {
        header.extend(["expected", "lower", "upper"]);
    }
    writer.write_record(&header)?;
    let number = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for row in &series.rows {
        let verdict = scores.get(row.slot);
        let score = verdict.map_or(0.0, |v| v.score);
        let anomalous = verdict.is_some_and(|v| v.anomalous);
        let mut record = vec![
            row.timestamp.clone(),
            row.value.to_string(),
            format!("{score:.4}"),
            if anomalous { "1" } else { "0" }.to_owned(),
        ];
        if details {
            record.push(number(verdict.and_then(|v| v.expected)));
            record.push(number(verdict.and_then(|v| v.lower)));
            record.push(number(verdict.and_then(|v| v.upper)));
        }
        writer.write_record(&record)?;
    }
    writer.flush()?;
    Ok(())
}
