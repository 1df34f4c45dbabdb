//! The driver of an anomaly: how much each sub-series contributed to its
//! impact.
//!
//! Each sub-series is expected to keep its share of the series from the
//! 28 days before the anomaly; its contribution is what it did minus that
//! share of what the whole was expected to do, summed over the anomaly.
//! Because the shares sum to one and the parts to the whole, the
//! contributions sum to the impact exactly (up to rounding): nothing is
//! left unexplained and nothing is counted twice.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::anomaly::Anomaly;
use crate::detector::Scored;

/// Days before an anomaly whose mix gives each part's expected share.
pub const SHARE_DAYS: usize = 28;

/// One part's contribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// The sub-series (`cloud/Compute`, …).
    pub dimension: String,
    /// Its part of the impact.
    pub contribution: f64,
}

/// Every part's contribution to `anomaly`, largest in the impact's
/// direction first; empty without parts.
pub fn contributions(
    anomaly: &Anomaly,
    points: &[Scored],
    parts: &BTreeMap<String, Vec<f64>>,
) -> Vec<Contribution> {
    if parts.is_empty() {
        return Vec::new();
    }
    let from = anomaly.first.saturating_sub(SHARE_DAYS);
    let mut before: BTreeMap<&str, f64> = BTreeMap::new();
    let mut total = 0.0;
    for (dimension, values) in parts {
        let sum: f64 = (from..anomaly.first)
            .filter(|at| points.get(*at).is_some_and(|p| p.value.is_some()))
            .filter_map(|at| values.get(at))
            .sum();
        before.insert(dimension, sum);
        total += sum;
    }
    let count = parts.len() as f64;
    let share = |dimension: &str| {
        if total > 0.0 {
            before.get(dimension).copied().unwrap_or(0.0) / total
        } else {
            // No usable history: every part is expected to carry an equal
            // share, so the contributions still add up.
            1.0 / count
        }
    };
    let mut out: Vec<Contribution> = parts
        .iter()
        .map(|(dimension, values)| {
            let share = share(dimension);
            let contribution = (anomaly.first..=anomaly.last)
                .filter_map(|at| {
                    let point = points.get(at)?;
                    point.value?;
                    let expected = point.expected?;
                    Some(values.get(at).copied().unwrap_or(0.0) - share * expected)
                })
                .sum();
            Contribution {
                dimension: dimension.clone(),
                contribution,
            }
        })
        .collect();
    let sign = if anomaly.impact < 0.0 { -1.0 } else { 1.0 };
    out.sort_by(|a, b| (sign * b.contribution).total_cmp(&(sign * a.contribution)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Detector, DetectorConfig};

    #[test]
    fn contributions_add_up_to_the_impact_and_name_the_part_that_moved() {
        // Compute steady at 70, storage at 30, then compute quadruples.
        let days = 120;
        let mut compute: Vec<f64> = (0..days).map(|d| 70.0 + (d % 5) as f64).collect();
        let storage: Vec<f64> = (0..days).map(|d| 30.0 + (d % 3) as f64).collect();
        compute[100] *= 4.0;
        let total: Vec<Option<f64>> = compute
            .iter()
            .zip(&storage)
            .map(|(a, b)| Some(a + b))
            .collect();
        let points = Detector::score_all(DetectorConfig::default(), &[7], &total);
        let anomalies = crate::assemble(&points, 7);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        let parts = BTreeMap::from([
            ("kubernetes/Compute".to_owned(), compute),
            ("kubernetes/Storage".to_owned(), storage),
        ]);
        let found = contributions(&anomalies[0], &points, &parts);
        let sum: f64 = found.iter().map(|c| c.contribution).sum();
        assert!(
            (sum - anomalies[0].impact).abs() < 1e-9,
            "{found:?} vs {}",
            anomalies[0].impact
        );
        assert_eq!(found[0].dimension, "kubernetes/Compute");
        assert!(
            found[0].contribution / anomalies[0].impact > 0.95,
            "{found:?}"
        );
    }
}
