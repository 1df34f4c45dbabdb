//! Robust statistics: medians, the median absolute deviation, quantiles
//! and the Mann–Kendall trend statistic. A single wild value moves none of
//! them far, which is why the baselines are built from them rather than
//! from means and standard deviations.

/// Consistency constant: `1.4826 × MAD` estimates the standard deviation
/// of normally distributed data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// The median of `values` (NaN-free); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// The `q` quantile (0 ≤ q ≤ 1) of `values` by linear interpolation
/// between order statistics; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(quantile_sorted(&sorted, q))
}

/// [`quantile`] of values already sorted ascending (not empty).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let (Some(low), Some(high)) = (sorted.get(below), sorted.get(above)) else {
        return f64::NAN;
    };
    low + (high - low) * (position - below as f64)
}

/// The median absolute deviation from the median; `None` when empty.
pub fn mad(values: &[f64]) -> Option<f64> {
    let centre = median(values)?;
    let deviations: Vec<f64> = values.iter().map(|v| (v - centre).abs()).collect();
    median(&deviations)
}

/// A robust standard deviation: `1.4826 × MAD`; `None` when empty.
pub fn robust_sigma(values: &[f64]) -> Option<f64> {
    mad(values).map(|m| m * MAD_TO_SIGMA)
}

/// The Mann–Kendall trend statistic of `values` in order, as a standard
/// normal score (positive: rising). Needs no distributional assumption and
/// ignores the size of steps, so one outlier cannot fake a trend; ties are
/// corrected for. `0.0` for fewer than three values.
pub fn mann_kendall_z(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 3 {
        return 0.0;
    }
    let mut s = 0i64;
    for (i, a) in values.iter().enumerate() {
        for b in &values[i + 1..] {
            s += match b.total_cmp(a) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1usize;
    for pair in sorted.windows(2) {
        if pair[0] == pair[1] {
            run += 1;
        } else {
            ties += tie_term(run);
            run = 1;
        }
    }
    ties += tie_term(run);
    let n = n as f64;
    let variance = (n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0;
    if variance <= 0.0 {
        return 0.0;
    }
    // Continuity correction: S moves in steps of two.
    let s = s as f64;
    let corrected = if s > 0.0 {
        s - 1.0
    } else if s < 0.0 {
        s + 1.0
    } else {
        0.0
    };
    corrected / variance.sqrt()
}

fn tie_term(run: usize) -> f64 {
    let t = run as f64;
    t * (t - 1.0) * (2.0 * t + 5.0)
}

/// Whether every value is a whole number (counts: errors, requests).
pub fn all_integers(values: &[f64]) -> bool {
    !values.is_empty() && values.iter().all(|v| v.fract() == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles_interpolate() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(quantile(&[0.0, 10.0], 0.9), Some(9.0));
    }

    #[test]
    fn one_wild_value_barely_moves_the_mad() {
        let calm = [10.0, 11.0, 9.0, 10.0, 10.5, 9.5, 10.0];
        let mut wild = calm;
        wild[3] = 1_000.0;
        let (a, b) = (mad(&calm).unwrap(), mad(&wild).unwrap());
        assert!((a - b).abs() <= 0.5, "{a} vs {b}");
    }

    #[test]
    fn mann_kendall_sees_monotone_runs_not_single_jumps() {
        let rising: Vec<f64> = (0..20).map(f64::from).collect();
        assert!(mann_kendall_z(&rising) > 5.0);
        let falling: Vec<f64> = rising.iter().rev().copied().collect();
        assert!(mann_kendall_z(&falling) < -5.0);
        // Alternating values with one huge value at the end: no trend.
        let mut flat: Vec<f64> = (0..20).map(|i| f64::from(i % 2)).collect();
        flat[19] = 1e9;
        assert!(mann_kendall_z(&flat).abs() < 2.0);
        assert_eq!(mann_kendall_z(&[5.0; 10]), 0.0);
    }
}
