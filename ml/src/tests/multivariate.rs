//! The multivariate model on residuals with a known joint structure.

use crate::multivariate::{MultivariateConfig, score_service};

/// A deterministic pseudo-normal stream (sum of uniforms), so the tests
/// need no random crate and fail the same way every time.
fn noise(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        let mut sum = 0.0;
        for _ in 0..12 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            sum += (state >> 11) as f64 / (1u64 << 53) as f64;
        }
        sum - 6.0
    }
}

/// Errors and latency residuals that move together (ρ ≈ 0.95) and CPU
/// that moves on its own.
fn correlated(days: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut draw = noise(seed);
    (0..days)
        .map(|_| {
            let shared = draw();
            let errors = shared + 0.3 * draw();
            let latency = shared + 0.3 * draw();
            vec![errors, latency, draw()]
        })
        .collect()
}

#[test]
fn a_day_breaking_the_joint_pattern_is_found_though_no_series_is_extreme() {
    let mut residuals = correlated(200, 7);
    // Errors up and latency down by 3 robust σ each: unremarkable for
    // either series alone (the univariate alarm is at 5), impossible for
    // the pair.
    residuals[180] = vec![3.0, -3.0, 0.0];
    let normal = vec![true; residuals.len()];
    let scored = score_service(&MultivariateConfig::default(), &residuals, &normal);
    assert!(scored[180].anomalous, "{:?}", scored[180]);
    // Normal days rarely alarm: the limit is twice the 1-in-100 day.
    let false_alarms = scored
        .iter()
        .enumerate()
        .filter(|(t, s)| *t != 180 && s.anomalous)
        .count();
    assert!(false_alarms <= 2, "{false_alarms} false alarms in 199 days");
    // Before enough normal days there is no model, and no score.
    assert!(
        scored[..42]
            .iter()
            .all(|s| s.nll.is_none() && s.score == 0.0)
    );
    assert!(scored[42].nll.is_some());
}

#[test]
fn scoring_is_causal_and_skips_abnormal_days_in_training() {
    let residuals = correlated(160, 11);
    let normal: Vec<bool> = (0..residuals.len()).map(|t| t % 13 != 0).collect();
    let config = MultivariateConfig::default();
    let whole = score_service(&config, &residuals, &normal);
    for cut in [50, 97, 130] {
        let prefix = score_service(&config, &residuals[..cut], &normal[..cut]);
        assert_eq!(prefix, whole[..cut], "days before {cut} changed");
    }
}

#[test]
fn degenerate_series_never_crash() {
    // A constant series (zero variance) and non-finite residuals.
    let residuals: Vec<Vec<f64>> = (0..100)
        .map(|t| vec![0.0, if t == 60 { f64::NAN } else { 0.0 }])
        .collect();
    let scored = score_service(&MultivariateConfig::default(), &residuals, &[true; 100]);
    assert_eq!(scored.len(), 100);
    assert!(scored.iter().all(|s| (0.0..=1.0).contains(&s.score)));
    assert!(score_service(&MultivariateConfig::default(), &[], &[]).is_empty());
}
