//! Seasonality, detected rather than assumed: a candidate period (a week of
//! days, a day of hours, …) is used only when the series, with its local
//! level removed, differs across the period's phases by a Kruskal–Wallis
//! test *and* the pattern explains a material share of the variation: at
//! 1 % significance and 30 % of the variation, or — for a pattern so clear
//! that a few periods show it — at 5 % and half the variation. The rank test needs no distribution and ignores how
//! far an outlier lies; the strength floor keeps a statistically
//! significant but negligible pattern (long windows make everything
//! significant) from being imposed on a series.

use crate::robust::{median, quantile_sorted};

/// How the seasonal pattern combines with the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `value = level × factor`: non-negative series (cost, traffic,
    /// latency), where a doubling of traffic doubles the weekend dip too.
    Multiplicative,
    /// `value = level + offset`: series that can be negative.
    Additive,
}

impl Mode {
    /// The neutral factor or offset.
    pub fn neutral(self) -> f64 {
        match self {
            Mode::Multiplicative => 1.0,
            Mode::Additive => 0.0,
        }
    }

    /// Removes the seasonal `factor` from `value`.
    pub fn remove(self, value: f64, factor: f64) -> f64 {
        match self {
            Mode::Multiplicative => value / factor,
            Mode::Additive => value - factor,
        }
    }

    /// Applies the seasonal `factor` to a `level`.
    pub fn apply(self, level: f64, factor: f64) -> f64 {
        match self {
            Mode::Multiplicative => level * factor,
            Mode::Additive => level + factor,
        }
    }
}

/// A fitted seasonal pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The period in steps; `None`: no seasonality.
    pub period: Option<usize>,
    /// One factor (or offset) per phase; empty without a period.
    pub factors: Vec<f64>,
    /// Share of the de-levelled variation the pattern explains (0–1).
    pub strength: f64,
}

impl Shape {
    /// No seasonality.
    pub fn none() -> Self {
        Self {
            period: None,
            factors: Vec::new(),
            strength: 0.0,
        }
    }

    /// The factor at absolute position `pos`.
    pub fn factor(&self, pos: usize, mode: Mode) -> f64 {
        match self.period {
            Some(p) if p > 0 => self.factors.get(pos % p).copied().unwrap_or(mode.neutral()),
            _ => mode.neutral(),
        }
    }
}

/// Periods needed in the data before a period is tested.
pub const MIN_PERIODS: usize = 3;
/// Periods of history before the detector's full model replaces its
/// short-series fallback (see [`kruskal_wallis_significant`]).
pub const LEARNING_PERIODS: usize = 6;
/// Upper 1 % and 5 % points of the standard normal.
const Z_99: f64 = 2.326_348;
const Z_95: f64 = 1.644_854;
/// Least share of variation a pattern must explain to be used. Noise
/// alone, with five points per phase, explains about a quarter (the
/// phases' medians scatter), so the floor sits above that.
const MIN_STRENGTH: f64 = 0.3;
/// Share a pattern must explain to be used at the weaker significance.
const CLEAR_STRENGTH: f64 = 0.5;
/// A multiplicative factor below this (a phase with almost nothing, e.g.
/// no traffic on Sundays) makes dividing by it unstable: such a series is
/// modelled additively.
pub const MIN_FACTOR: f64 = 0.1;

/// Fits the strongest significant pattern among `candidates` to `points`
/// (absolute position, baseline value, observed value; ascending
/// positions, gaps allowed). The local level comes from the baseline
/// values (outliers already replaced), the pattern from the observed ones:
/// a pattern the baseline does not know yet makes its points look
/// anomalous, and they must still be able to teach it.
pub fn fit(points: &[(usize, f64, f64)], candidates: &[usize], mode: Mode) -> Shape {
    let mut best = Shape::none();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return best;
    };
    let span = last.0 - first.0 + 1;
    for &period in candidates {
        if period < 2 || span < MIN_PERIODS * period {
            continue;
        }
        if let Some(shape) = fit_period(points, period, mode)
            && shape.strength > best.strength
        {
            best = shape;
        }
    }
    best
}

fn fit_period(points: &[(usize, f64, f64)], period: usize, mode: Mode) -> Option<Shape> {
    let detrended = trim_within_phases(delevel(points, period, mode), period);
    let mut by_phase: Vec<Vec<f64>> = vec![Vec::new(); period];
    for &(pos, value) in &detrended {
        by_phase[pos % period].push(value);
    }
    if by_phase.iter().any(|phase| phase.len() < 2) {
        return None;
    }
    let h = kruskal_wallis(&by_phase);
    let significant_99 = h > chi_square_upper(period - 1, Z_99);
    let significant_95 = h > chi_square_upper(period - 1, Z_95);
    if !significant_95 {
        return None;
    }
    let mut factors: Vec<f64> = by_phase
        .iter()
        .map(|phase| median(phase).unwrap_or(mode.neutral()))
        .collect();
    let mean = factors.iter().sum::<f64>() / period as f64;
    for factor in &mut factors {
        *factor = match mode {
            Mode::Multiplicative if mean > 0.0 => *factor / mean,
            Mode::Multiplicative => 1.0,
            Mode::Additive => *factor - mean,
        };
    }
    if mode == Mode::Multiplicative && factors.iter().any(|f| *f < MIN_FACTOR) {
        return None;
    }
    let strength = strength(&detrended, &factors, period, mode);
    let used = (significant_99 && strength >= MIN_STRENGTH) || strength >= CLEAR_STRENGTH;
    used.then_some(Shape {
        period: Some(period),
        factors,
        strength,
    })
}

/// Drops the de-levelled values far from their own phase's median (more
/// than [`PHASE_OUTLIER`] pooled robust spreads): the days of an incident
/// or a load test sit far from their weekday's usual place whatever the
/// weekday, while a weekly rhythm sits close to it every week. So the
/// pattern is learnt from the observed values — a rhythm the baseline
/// does not know yet makes its points look anomalous, and they must still
/// be able to teach it — without one bad fortnight swamping it. Nothing
/// is dropped when the spread is zero (a constant series).
fn trim_within_phases(detrended: Vec<(usize, f64)>, period: usize) -> Vec<(usize, f64)> {
    let mut by_phase: Vec<Vec<f64>> = vec![Vec::new(); period];
    for &(pos, value) in &detrended {
        by_phase[pos % period].push(value);
    }
    let centres: Vec<Option<f64>> = by_phase.iter().map(|phase| median(phase)).collect();
    let spreads: Vec<f64> = by_phase
        .iter()
        .filter_map(|phase| crate::robust::robust_sigma(phase))
        .collect();
    let Some(spread) = median(&spreads).filter(|s| *s > 0.0) else {
        return detrended;
    };
    detrended
        .into_iter()
        .filter(|&(pos, value)| {
            centres[pos % period].is_none_or(|c| (value - c).abs() <= PHASE_OUTLIER * spread)
        })
        .collect()
}

/// Pooled robust spreads beyond which a value is no evidence of its
/// phase's place in the pattern.
const PHASE_OUTLIER: f64 = 5.0;

/// Each observed value relative to the mean baseline value of the period
/// centred on it (ratio or difference); points whose centred window is not
/// inside the data, or less than half present, are left out.
fn delevel(points: &[(usize, f64, f64)], period: usize, mode: Mode) -> Vec<(usize, f64)> {
    let half = period / 2;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let mut prefix = Vec::with_capacity(points.len() + 1);
    prefix.push(0.0);
    for (_, baseline, _) in points {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + baseline);
    }
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0usize, 0usize);
    for &(pos, _, value) in points {
        if pos < first.0 + half || pos + half > last.0 {
            continue;
        }
        // An even period's centred window spans period + 1 positions.
        let (from, to) = (pos - half, pos + half);
        while points.get(lo).is_some_and(|p| p.0 < from) {
            lo += 1;
        }
        while points.get(hi).is_some_and(|p| p.0 <= to) {
            hi += 1;
        }
        let count = hi - lo;
        if count * 2 < period {
            continue;
        }
        let mean = (prefix[hi] - prefix[lo]) / count as f64;
        let relative = match mode {
            Mode::Multiplicative if mean > 0.0 => value / mean,
            Mode::Multiplicative => continue,
            Mode::Additive => value - mean,
        };
        out.push((pos, relative));
    }
    out
}

/// Kruskal–Wallis H across the phases (ties corrected). A weekend-only
/// pattern moves two phases of seven, which the test sees only with
/// several periods of data: the detector waits for six.
fn kruskal_wallis(by_phase: &[Vec<f64>]) -> f64 {
    let mut all: Vec<(f64, usize)> = by_phase
        .iter()
        .enumerate()
        .flat_map(|(g, values)| values.iter().map(move |v| (*v, g)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len() as f64;
    let mut rank_sums = vec![0.0; by_phase.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while all.get(j + 1).is_some_and(|next| next.0 == all[i].0) {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for (_, g) in &all[i..=j] {
            rank_sums[*g] += rank;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let sum: f64 = rank_sums
        .iter()
        .zip(by_phase)
        .map(|(r, values)| r * r / values.len() as f64)
        .sum();
    let mut h = 12.0 / (n * (n + 1.0)) * sum - 3.0 * (n + 1.0);
    let correction = 1.0 - ties / (n * n * n - n);
    if correction > 0.0 {
        h /= correction;
    }
    h
}

/// The chi-square quantile with `df` degrees of freedom at the standard
/// normal quantile `z` (Wilson–Hilferty).
fn chi_square_upper(df: usize, z: f64) -> f64 {
    let k = df as f64;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + z * a.sqrt()).powi(3)
}

/// `1 − var(remainder) / var(seasonal + remainder)`, with the remainder
/// trimmed to its 5–95 % range so a few outliers do not hide a pattern.
fn strength(detrended: &[(usize, f64)], factors: &[f64], period: usize, mode: Mode) -> f64 {
    let mut remainder = Vec::with_capacity(detrended.len());
    let mut total = Vec::with_capacity(detrended.len());
    for &(pos, value) in detrended {
        let factor = factors.get(pos % period).copied().unwrap_or(mode.neutral());
        let seasonal = factor - mode.neutral();
        let centred = value - mode.neutral();
        remainder.push(centred - seasonal);
        total.push(centred);
    }
    let (r, t) = (trimmed_variance(&remainder), trimmed_variance(&total));
    if t <= 0.0 {
        return 0.0;
    }
    (1.0 - r / t).clamp(0.0, 1.0)
}

fn trimmed_variance(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (low, high) = (
        quantile_sorted(&sorted, 0.05),
        quantile_sorted(&sorted, 0.95),
    );
    let kept: Vec<f64> = sorted.into_iter().map(|v| v.clamp(low, high)).collect();
    let mean = kept.iter().sum::<f64>() / kept.len() as f64;
    kept.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (kept.len() - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: usize) -> f64 {
        // A fixed pseudo-random sequence in [-1, 1).
        let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        x as f64 / (1u64 << 52) as f64 - 1.0
    }

    #[test]
    fn a_weekly_pattern_is_found_and_its_factors_measured() {
        let points: Vec<(usize, f64, f64)> = (0..56)
            .map(|i| {
                let weekend = i % 7 >= 5;
                let v = 100.0 * if weekend { 0.5 } else { 1.0 } * (1.0 + 0.05 * noise(i));
                (i, v, v)
            })
            .collect();
        let shape = fit(&points, &[7], Mode::Multiplicative);
        assert_eq!(shape.period, Some(7));
        let weekday = shape.factors[0];
        let weekend = shape.factors[6];
        assert!(
            (weekend / weekday - 0.5).abs() < 0.05,
            "{:?}",
            shape.factors
        );
        assert!(shape.strength > 0.9, "{}", shape.strength);
    }

    #[test]
    fn noise_is_not_forced_into_a_pattern() {
        for seed in 0..20 {
            let points: Vec<(usize, f64, f64)> = (0..56)
                .map(|i| {
                    let v = 100.0 + 10.0 * noise(i + 1000 * seed);
                    (i, v, v)
                })
                .collect();
            let shape = fit(&points, &[7], Mode::Multiplicative);
            assert_eq!(shape.period, None, "seed {seed}: {shape:?}");
        }
    }

    #[test]
    fn too_little_data_is_not_tested() {
        let points: Vec<(usize, f64, f64)> = (0..20)
            .map(|i| {
                let v = if i % 7 >= 5 { 1.0 } else { 10.0 };
                (i, v, v)
            })
            .collect();
        assert_eq!(fit(&points, &[7], Mode::Multiplicative).period, None);
    }
}
