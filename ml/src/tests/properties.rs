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
