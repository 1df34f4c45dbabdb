//! Golden series with known anomalies per kind, causality, CSV handling.

mod csv;
mod golden;
mod multivariate;
mod properties;

use crate::detector::{Detector, DetectorConfig, Scored};
use crate::{Anomaly, assemble};

/// A fixed pseudo-random draw in [-1, 1) for `(seed, i)`.
pub(crate) fn noise(seed: u64, i: usize) -> f64 {
    let mut z = (i as u64)
        .wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// A daily cost-like series: weekends at 55 %, ±5 % noise, slow growth.
pub(crate) fn daily(seed: u64, days: usize) -> Vec<f64> {
    (0..days)
        .map(|d| {
            let weekend = d % 7 >= 5;
            let season = if weekend { 0.55 } else { 1.0 };
            100.0 * season * 1.001f64.powi(d as i32) * (1.0 + 0.05 * noise(seed, d))
        })
        .collect()
}

pub(crate) fn scored(values: &[f64]) -> Vec<Scored> {
    let values: Vec<Option<f64>> = values.iter().map(|v| Some(*v)).collect();
    Detector::score_all(DetectorConfig::default(), &[7], &values)
}

pub(crate) fn anomalies(values: &[f64]) -> Vec<Anomaly> {
    assemble(&scored(values), DetectorConfig::default().level_points)
}
