//! Event-level evaluation of alerts against labelled anomalies.
//!
//! A labelled anomaly is *found* when an alert on the same series
//! overlaps its window; the delay is from the window's start to the first
//! such alert's start. An alert is *true* when it overlaps a labelled
//! window, *false* when it overlaps none — except alerts beginning within
//! a grace period after a window ends, which see the series return to
//! normal (a slow leak fixed, a spike's echo): they are counted apart,
//! neither true nor false.

use std::collections::BTreeMap;

use serde::Serialize;

/// Points after a labelled window whose alerts see the series return to
/// normal (a week of daily points).
pub const RECOVERY_POINTS: usize = 7;
/// Daily points per month, for the false-alert rate.
pub const DAYS_PER_MONTH: f64 = 30.44;

/// A labelled anomaly on series `series`, positions `first..=last`.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Series index.
    pub series: usize,
    /// First position.
    pub first: usize,
    /// Last position (inclusive).
    pub last: usize,
    /// Labelled kind.
    pub kind: String,
}

/// An alert raised on series `series`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Series index.
    pub series: usize,
    /// First position.
    pub first: usize,
    /// Last position (inclusive).
    pub last: usize,
    /// Detected kind.
    pub kind: String,
}

/// Recall of one labelled kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindReport {
    /// Labelled anomalies of this kind.
    pub labelled: usize,
    /// Found by an overlapping alert.
    pub found: usize,
    /// found / labelled.
    pub recall: f64,
    /// Median delay in points from the start to the first alert.
    pub median_delay: f64,
    /// Found anomalies whose first overlapping alert had the expected kind.
    pub kind_agreement: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Per labelled kind.
    pub kinds: BTreeMap<String, KindReport>,
    /// Alerts raised.
    pub alerts: usize,
    /// Alerts overlapping a labelled window.
    pub true_alerts: usize,
    /// Alerts overlapping none.
    pub false_alerts: usize,
    /// Alerts in the grace period after a window (not counted).
    pub recovery_alerts: usize,
    /// true / (true + false).
    pub precision: f64,
    /// Recall over all labels.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// False alerts per 100 series-months (30.44 points of daily data).
    pub false_per_100_series_months: f64,
}

/// Which detected kind a labelled kind should be called.
fn expected_kind(label: &str) -> &str {
    match label {
        "slow_leak" => "trend",
        other => other,
    }
}

/// Evaluates `alerts` against `labels`; `series_points` is the number of
/// scored points (for the false-alert rate), `points_per_month` their
/// number per month, `grace` the recovery period in points.
pub fn evaluate(
    labels: &[Label],
    alerts: &[Alert],
    series_points: usize,
    points_per_month: f64,
    grace: usize,
) -> Report {
    let overlaps =
        |a: &Alert, l: &Label| a.series == l.series && a.first <= l.last && a.last >= l.first;
    let mut kinds: BTreeMap<String, (KindReport, Vec<f64>, usize)> = BTreeMap::new();
    for label in labels {
        let entry = kinds.entry(label.kind.clone()).or_default();
        entry.0.labelled += 1;
        let first = alerts
            .iter()
            .filter(|a| overlaps(a, label))
            .min_by_key(|a| a.first);
        if let Some(alert) = first {
            entry.0.found += 1;
            entry.1.push(alert.first.saturating_sub(label.first) as f64);
            if alert.kind == expected_kind(&label.kind) {
                entry.2 += 1;
            }
        }
    }
    let mut report = Report {
        alerts: alerts.len(),
        ..Report::default()
    };
    for alert in alerts {
        if labels.iter().any(|l| overlaps(alert, l)) {
            report.true_alerts += 1;
        } else if labels.iter().any(|l| {
            l.series == alert.series && alert.first > l.last && alert.first <= l.last + grace
        }) {
            report.recovery_alerts += 1;
        } else {
            report.false_alerts += 1;
        }
    }
    let (mut labelled, mut found) = (0, 0);
    for (kind, (mut kr, delays, agree)) in kinds {
        labelled += kr.labelled;
        found += kr.found;
        kr.recall = ratio(kr.found, kr.labelled);
        kr.median_delay = crate::robust::median(&delays).unwrap_or(f64::NAN);
        kr.kind_agreement = ratio(agree, kr.found);
        report.kinds.insert(kind, kr);
    }
    report.precision = ratio(report.true_alerts, report.true_alerts + report.false_alerts);
    report.recall = ratio(found, labelled);
    report.f1 = if report.precision + report.recall > 0.0 {
        2.0 * report.precision * report.recall / (report.precision + report.recall)
    } else {
        0.0
    };
    let months = series_points as f64 / points_per_month;
    report.false_per_100_series_months = if months > 0.0 {
        100.0 * report.false_alerts as f64 / months
    } else {
        0.0
    };
    report
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(series: usize, first: usize, last: usize, kind: &str) -> Label {
        Label {
            series,
            first,
            last,
            kind: kind.to_owned(),
        }
    }

    fn alert(series: usize, first: usize, last: usize, kind: &str) -> Alert {
        Alert {
            series,
            first,
            last,
            kind: kind.to_owned(),
        }
    }

    #[test]
    fn overlap_finds_recovery_is_set_apart_and_the_rest_is_false() {
        let labels = [
            label(0, 10, 10, "spike"),
            label(1, 20, 40, "slow_leak"),
            label(2, 5, 5, "spike"),
        ];
        let alerts = [
            alert(0, 10, 10, "spike"),
            alert(1, 25, 30, "level_shift"),
            alert(1, 41, 42, "drop"),
            alert(1, 90, 90, "spike"),
            alert(2, 6, 6, "spike"),
        ];
        let report = evaluate(&labels, &alerts, 3 * 61, 30.5, 7);
        assert_eq!(report.true_alerts, 2);
        assert_eq!(report.recovery_alerts, 2);
        assert_eq!(report.false_alerts, 1);
        let spike = &report.kinds["spike"];
        assert_eq!((spike.labelled, spike.found), (2, 1));
        let leak = &report.kinds["slow_leak"];
        assert_eq!(
            (leak.found, leak.median_delay, leak.kind_agreement),
            (1, 5.0, 0.0)
        );
        assert!((report.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((report.recall - 2.0 / 3.0).abs() < 1e-12);
        // 183 points = 6 months of 30.5: one false alert is 16.7 per 100.
        assert!((report.false_per_100_series_months - 100.0 / 6.0).abs() < 1e-9);
    }
}
