//! The simple baseline the detector is compared with: a trailing mean
//! ± 3 standard deviations over the last 28 points, no seasonality, no
//! robustness — the static rule many cost alerts use. It exists to be
//! beaten in the evaluation, not to be run in production.

use crate::detector::Scored;
use crate::seasonal::Mode;

/// Points in the trailing window.
pub const WINDOW: usize = 28;
/// Standard deviations from the mean that alarm.
pub const THRESHOLD: f64 = 3.0;

/// Scores `values` with the trailing mean ± 3σ rule (causal).
pub fn trailing_mean(values: &[Option<f64>]) -> Vec<Scored> {
    let mut out = Vec::with_capacity(values.len());
    for (at, value) in values.iter().enumerate() {
        let window: Vec<f64> = values[at.saturating_sub(WINDOW)..at]
            .iter()
            .flatten()
            .copied()
            .collect();
        let mut point = Scored::unjudged(*value, Mode::Additive);
        if window.len() >= 7 {
            let n = window.len() as f64;
            let mean = window.iter().sum::<f64>() / n;
            let sd =
                (window.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt();
            point.expected = Some(mean);
            point.lower = Some(mean - THRESHOLD * sd);
            point.upper = Some(mean + THRESHOLD * sd);
            if let Some(v) = value {
                let z = if sd > 0.0 { (v - mean) / sd } else { 0.0 };
                point.z = z;
                point.deviation = z;
                point.anomalous = z.abs() > THRESHOLD;
                point.score = if point.anomalous { 1.0 } else { 0.0 };
            }
        }
        out.push(point);
    }
    out
}
