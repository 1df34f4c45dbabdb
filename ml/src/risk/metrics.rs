//! How well scores rank and estimate failures: ROC AUC, precision and
//! recall at a threshold, Brier score and a calibration table.

use serde::Serialize;

/// The area under the ROC curve: the probability that a random failure
/// scores above a random success (ties count half), computed from ranks
/// (Mann–Whitney). `None` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels[..n].iter().filter(|l| **l).count();
    let negatives = n - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Sum of the positives' ranks, ties given their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Mean squared difference between the probabilities and the outcomes.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> Option<f64> {
    if probabilities.is_empty() {
        return None;
    }
    let sum: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(p, l)| (p - f64::from(u8::from(*l))).powi(2))
        .sum();
    Some(sum / probabilities.len() as f64)
}

/// Precision and recall of "score ≥ threshold".
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AtThreshold {
    /// The threshold.
    pub threshold: f64,
    /// Flagged deployments.
    pub flagged: usize,
    /// Of those, failures: precision's numerator.
    pub true_positives: usize,
    /// Share of flagged that failed; `None` when none is flagged.
    pub precision: Option<f64>,
    /// Share of failures flagged; `None` without failures.
    pub recall: Option<f64>,
}

/// Precision and recall when every score at or above `threshold` is flagged.
pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> AtThreshold {
    let mut flagged = 0;
    let mut true_positives = 0;
    let mut positives = 0;
    for (s, l) in scores.iter().zip(labels) {
        positives += usize::from(*l);
        if *s >= threshold {
            flagged += 1;
            true_positives += usize::from(*l);
        }
    }
    AtThreshold {
        threshold,
        flagged,
        true_positives,
        precision: (flagged > 0).then(|| true_positives as f64 / flagged as f64),
        recall: (positives > 0).then(|| true_positives as f64 / positives as f64),
    }
}

/// One bin of a calibration table: deployments whose predicted probability
/// fell in `[low, high)`, what was predicted and what happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// Lower edge.
    pub low: f64,
    /// Upper edge.
    pub high: f64,
    /// Deployments in the bin.
    pub count: usize,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Share that failed.
    pub observed: f64,
}

/// Predicted against observed failure rates in fixed probability bins
/// (edges in `edges`, ascending, starting at 0 and ending at 1); empty bins
/// are left out.
pub fn calibration(probabilities: &[f64], labels: &[bool], edges: &[f64]) -> Vec<CalibrationBin> {
    let mut out = Vec::new();
    for pair in edges.windows(2) {
        let (low, high) = (pair[0], pair[1]);
        let last = high >= 1.0;
        let mut count = 0;
        let mut predicted = 0.0;
        let mut failed = 0;
        for (p, l) in probabilities.iter().zip(labels) {
            if *p >= low && (*p < high || (last && *p <= high)) {
                count += 1;
                predicted += p;
                failed += usize::from(*l);
            }
        }
        if count > 0 {
            out.push(CalibrationBin {
                low,
                high,
                count,
                predicted: predicted / count as f64,
                observed: failed as f64 / count as f64,
            });
        }
    }
    out
}

/// The calibration table's bin edges.
pub const CALIBRATION_EDGES: [f64; 8] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ordered_pairs_and_half_ties() {
        // Pairs (failure, success): (0.9, 0.1) ✓, (0.9, 0.5) ✓, (0.4, 0.1) ✓,
        // (0.4, 0.5) ✗ → 3 of 4.
        let auc = auc(&[0.9, 0.1, 0.4, 0.5], &[true, false, true, false]);
        assert_eq!(auc, Some(0.75));
        // A tie between a failure and a success counts half.
        assert_eq!(super::auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(super::auc(&[0.5, 0.2], &[true, true]), None);
        // Perfect and reversed rankings.
        assert_eq!(super::auc(&[0.2, 0.8], &[false, true]), Some(1.0));
        assert_eq!(super::auc(&[0.8, 0.2], &[false, true]), Some(0.0));
    }

    #[test]
    fn brier_threshold_and_calibration_from_known_inputs() {
        let p = [0.1, 0.1, 0.6, 0.9];
        let y = [false, true, true, false];
        // (0.01 + 0.81 + 0.16 + 0.81) / 4
        let b = brier(&p, &y).unwrap_or(f64::NAN);
        assert!((b - 0.4475).abs() < 1e-12, "{b}");
        let t = at_threshold(&p, &y, 0.5);
        assert_eq!((t.flagged, t.true_positives), (2, 1));
        assert_eq!((t.precision, t.recall), (Some(0.5), Some(0.5)));
        let bins = calibration(&p, &y, &[0.0, 0.5, 1.0]);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].count, 2);
        assert!((bins[0].predicted - 0.1).abs() < 1e-12);
        assert!((bins[0].observed - 0.5).abs() < 1e-12);
        assert!((bins[1].predicted - 0.75).abs() < 1e-12);
    }
}
