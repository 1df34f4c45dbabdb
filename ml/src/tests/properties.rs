use proptest::prelude::*;

use crate::detector::{Detector, DetectorConfig};

fn series() -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(
        prop_oneof![
            8 => (0.0f64..200.0).prop_map(Some),
            1 => Just(None),
            1 => Just(Some(0.0)),
            1 => (1_000.0f64..5_000.0).prop_map(Some),
        ],
        0..160,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Scoring to day t and then extending the series never changes days
    /// up to t: a backfill says what live scoring would have said.
    #[test]
    fn scores_are_causal(values in series(), cut in 0usize..160) {
        let cut = cut.min(values.len());
        let full = Detector::score_all(DetectorConfig::default(), &[7], &values);
        let prefix = Detector::score_all(DetectorConfig::default(), &[7], &values[..cut]);
        prop_assert_eq!(&full[..cut], &prefix[..]);
    }

    /// Scores stay in [0, 1], bounds bracket the expectation, and nothing
    /// is scored where nothing was observed.
    #[test]
    fn scores_are_bounded(values in series()) {
        for point in Detector::score_all(DetectorConfig::default(), &[7], &values) {
            prop_assert!((0.0..=1.0).contains(&point.score));
            prop_assert_eq!(point.anomalous, point.score >= 0.5);
            if point.value.is_none() {
                prop_assert!(!point.anomalous);
            }
            if let (Some(l), Some(e), Some(u)) = (point.lower, point.expected, point.upper) {
                prop_assert!(l <= e && e <= u);
            }
        }
    }

    /// An anomaly's impact is the sum of its points' deviations.
    #[test]
    fn impact_is_the_sum_of_deviations(values in series()) {
        let points = Detector::score_all(DetectorConfig::default(), &[7], &values);
        for anomaly in crate::assemble(&points, 7) {
            let sum: f64 = points[anomaly.first..=anomaly.last]
                .iter()
                .filter_map(|p| Some(p.value? - p.expected?))
                .sum();
            prop_assert!((anomaly.impact - sum).abs() <= 1e-6 * sum.abs().max(1.0));
        }
    }
}

/// Longer series with a weekly rhythm, noise, gaps, spikes and level
/// changes: long enough for a saved state to leave history behind.
fn long_series() -> impl Strategy<Value = Vec<Option<f64>>> {
    (
        150usize..420,
        prop::collection::vec((0usize..420, 0.2f64..6.0), 0..6),
        prop::collection::vec(0usize..420, 0..20),
        any::<u64>(),
    )
        .prop_map(|(len, changes, gaps, seed)| {
            (0..len)
                .map(|d| {
                    if gaps.contains(&d) {
                        return None;
                    }
                    let weekend = if d % 7 >= 5 { 0.6 } else { 1.0 };
                    let level: f64 = changes
                        .iter()
                        .filter(|(at, _)| *at <= d)
                        .map(|(_, f)| *f)
                        .product();
                    let noise = crate::tests::noise(seed, d);
                    Some(100.0 * weekend * level * (1.0 + 0.05 * noise))
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// A detector saved after day t and restored scores the days after t
    /// exactly as one that saw the whole series: the daily run equals the
    /// backfill.
    #[test]
    fn a_restored_detector_continues_exactly(
        values in prop_oneof![series(), long_series()],
        cut in 0usize..420,
    ) {
        let cut = cut.min(values.len());
        let full = Detector::score_all(DetectorConfig::default(), &[7], &values);
        let mut first = Detector::new(DetectorConfig::default(), &[7]);
        for v in &values[..cut] {
            first.push(*v);
        }
        let saved = first.snapshot();
        let restored = Detector::restore(DetectorConfig::default(), &[7], &saved);
        prop_assert!(restored.is_ok(), "{:?}", restored.err());
        let Ok(mut restored) = restored else { return Ok(()) };
        let rest: Vec<_> = values[cut..].iter().map(|v| restored.push(*v)).collect();
        prop_assert_eq!(&full[cut..], &rest[..]);
    }
}

#[test]
fn a_corrupt_state_is_an_error_not_a_panic() {
    let values: Vec<Option<f64>> = (0..200).map(|d| Some(100.0 + (d % 7) as f64)).collect();
    let mut detector = Detector::new(DetectorConfig::default(), &[7]);
    for v in &values {
        detector.push(*v);
    }
    let saved = detector.snapshot();
    for cut in [0, 1, 9, saved.len() / 2, saved.len() - 1] {
        assert!(Detector::restore(DetectorConfig::default(), &[7], &saved[..cut]).is_err());
    }
    let mut wrong = saved.clone();
    wrong[0] = 99;
    assert!(Detector::restore(DetectorConfig::default(), &[7], &wrong).is_err());
    let mut longer = saved;
    longer.push(0);
    assert!(Detector::restore(DetectorConfig::default(), &[7], &longer).is_err());
}
