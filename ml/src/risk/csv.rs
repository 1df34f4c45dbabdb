//! Any labelled CSV of change metrics as a [`Frame`]: a label column
//! (failed or not), a time column and feature columns. This is how the
//! method is checked on data it was not built on, such as public
//! just-in-time defect-prediction datasets (one row per commit: lines
//! added, files, developers, experience, …, and whether it introduced a
//! bug).

use std::io::Read;

use chrono::{DateTime, NaiveDate};

use super::RiskError;
use super::frame::Frame;

/// The frame read, and the rows left out with why.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvFrame {
    /// The usable rows.
    pub frame: Frame,
    /// Rows left out: (line number, 1-based with the header as line 1; reason).
    pub skipped: Vec<(usize, String)>,
}

/// A label cell as a failure flag: `1`/`0`, `true`/`false`, `yes`/`no`
/// (any case); any other number counts as failed when positive.
fn label(cell: &str) -> Option<bool> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" => Some(true),
        "0" | "false" | "f" | "no" | "n" => Some(false),
        other => other
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| v > 0.0),
    }
}

/// A time cell as seconds since the epoch: RFC 3339, `YYYY-MM-DD`, or a
/// number (Unix seconds).
fn time(cell: &str) -> Option<i64> {
    let cell = cell.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(cell) {
        return Some(t.timestamp());
    }
    if let Ok(d) = NaiveDate::parse_from_str(cell, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    }
    cell.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v as i64)
}

/// Reads `input`: `label` and `time` name columns; `features` names the
/// feature columns, or (empty) every other column with a number in its
/// first data row. A feature cell that is empty or not a number is
/// missing (filled by the model); a row whose label or time cannot be read
/// is left out and listed.
pub fn read<R: Read>(
    input: R,
    label_column: &str,
    time_column: &str,
    features: &[String],
) -> Result<CsvFrame, RiskError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| RiskError::Input(format!("reading the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let find = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            RiskError::Input(format!(
                "no column `{name}` (columns: {})",
                headers.join(", ")
            ))
        })
    };
    let label_at = find(label_column)?;
    let time_at = find(time_column)?;
    let mut records = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| RiskError::Input(format!("line {}: {e}", i + 2)))?;
        records.push(record);
    }
    let feature_at: Vec<usize> = if features.is_empty() {
        let first = records.first();
        (0..headers.len())
            .filter(|&c| c != label_at && c != time_at)
            .filter(|&c| {
                first
                    .and_then(|r| r.get(c))
                    .is_some_and(|v| v.trim().parse::<f64>().is_ok() || label(v).is_some())
            })
            .collect()
    } else {
        features.iter().map(|f| find(f)).collect::<Result<_, _>>()?
    };
    if feature_at.is_empty() {
        return Err(RiskError::Input(
            "no feature columns: name them with --features".to_owned(),
        ));
    }
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut times = Vec::new();
    let mut skipped = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let line = i + 2;
        let Some(failed) = record.get(label_at).and_then(label) else {
            skipped.push((
                line,
                format!(
                    "label `{}` is not 0/1 or true/false",
                    record.get(label_at).unwrap_or("")
                ),
            ));
            continue;
        };
        let Some(at) = record.get(time_at).and_then(time) else {
            skipped.push((
                line,
                format!(
                    "time `{}` is not RFC 3339, a date or Unix seconds",
                    record.get(time_at).unwrap_or("")
                ),
            ));
            continue;
        };
        values.push(
            feature_at
                .iter()
                .map(|&c| {
                    let cell = record.get(c).unwrap_or("");
                    cell.trim()
                        .parse::<f64>()
                        .ok()
                        .or_else(|| label(cell).map(|b| f64::from(u8::from(b))))
                        .filter(|v| v.is_finite())
                        .unwrap_or(f64::NAN)
                })
                .collect(),
        );
        labels.push(failed);
        times.push(at);
    }
    let n = values.len();
    Ok(CsvFrame {
        frame: Frame {
            features: feature_at.iter().map(|&c| headers[c].clone()).collect(),
            values,
            labels,
            times,
            ids: (0..n).map(|i| i.to_string()).collect(),
            groups: vec![None; n],
        },
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_defect_dataset_reads_with_its_own_vocabulary() {
        let text = "commit,la,nf,fix,contains_bug,author_date\n\
                    a,10,1,False,True,1700000000\n\
                    b,,2,True,False,2023-11-15\n\
                    c,5,1,False,maybe,1700000100\n\
                    d,7,x,False,0,2023-11-16T10:00:00Z\n\
                    e,3,1,False,1,never\n";
        let read = read(text.as_bytes(), "contains_bug", "author_date", &[]).unwrap();
        // `commit` is text and left out; booleans count as features.
        assert_eq!(read.frame.features, ["la", "nf", "fix"]);
        assert_eq!(read.frame.labels, [true, false, false]);
        assert_eq!(read.frame.times[0], 1_700_000_000);
        assert!(read.frame.values[1][0].is_nan());
        assert_eq!(read.frame.values[1][2], 1.0);
        assert!(read.frame.values[2][1].is_nan());
        assert_eq!(read.skipped.iter().map(|s| s.0).collect::<Vec<_>>(), [4, 6]);
        let named = super::read(
            text.as_bytes(),
            "contains_bug",
            "author_date",
            &["la".into()],
        );
        assert_eq!(named.unwrap().frame.features, ["la"]);
        let missing = super::read(text.as_bytes(), "bug", "author_date", &[]);
        assert!(matches!(missing, Err(RiskError::Input(m)) if m.contains("no column `bug`")));
    }
}
