//! Chronological backtest with a rolling origin: train on everything
//! before a cutoff (less an embargo, so no training label is one that was
//! still unknown at the cutoff), test on the next slice, move the cutoff,
//! repeat. Never shuffled: a model is judged only on changes later than
//! everything it learnt from. The model and the baselines run the same
//! folds, so their figures compare.

use serde::Serialize;

use super::RiskError;
use super::frame::Frame;
use super::metrics::{
    AtThreshold, CALIBRATION_EDGES, CalibrationBin, at_threshold, auc, brier, calibration,
};
use super::model::{Model, TrainConfig};

/// How the backtest cuts time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BacktestConfig {
    /// Test slices (cutoffs).
    pub folds: usize,
    /// Share of the rows (oldest first) before the first cutoff.
    pub first_train_share: f64,
    /// Rows within this many seconds before a cutoff are left out of its
    /// training: their labels may not have been known yet (an incident is
    /// linked to a deployment up to the incident gap later).
    pub embargo_seconds: i64,
    /// The model's training settings.
    pub train: TrainConfig,
}

impl Default for BacktestConfig {
    fn default() -> Self {
        Self {
            folds: 4,
            first_train_share: 0.5,
            embargo_seconds: 7 * 86_400,
            train: TrainConfig::default(),
        }
    }
}

/// One method (the model, or a baseline) over every fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodReport {
    /// `model`, or the baseline's name.
    pub method: String,
    /// Its features.
    pub features: Vec<String>,
    /// ROC AUC: the mean over the folds of each test slice's AUC (how well
    /// the method ranks the deployments of one period).
    pub auc: Option<f64>,
    /// ROC AUC of every test row pooled: lower than `auc` when the folds'
    /// models put their scores on different scales.
    pub pooled_auc: Option<f64>,
    /// Brier score over every test row.
    pub brier: Option<f64>,
    /// Precision and recall at each fold's operating threshold (chosen on
    /// that fold's training rows), pooled.
    pub operating: AtThreshold,
    /// Predicted against observed failure rates.
    pub calibration: Vec<CalibrationBin>,
    /// AUC per fold.
    pub fold_auc: Vec<Option<f64>>,
}

/// One fold's cut.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fold {
    /// First test instant (seconds since the epoch).
    pub cutoff: i64,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows tested.
    pub test_rows: usize,
    /// Failures among them.
    pub test_failures: usize,
}

/// The whole backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backtest {
    /// Rows in the frame.
    pub rows: usize,
    /// Failures among them.
    pub failures: usize,
    /// The folds.
    pub folds: Vec<Fold>,
    /// The model first, then each baseline.
    pub methods: Vec<MethodReport>,
}

/// A method to backtest: a name and the frame columns it may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    /// Its name in the report.
    pub name: String,
    /// Indices of its features in the frame.
    pub columns: Vec<usize>,
}

/// Runs every method over the same rolling-origin folds of `frame`.
pub fn backtest(
    frame: &Frame,
    methods: &[Method],
    config: &BacktestConfig,
) -> Result<Backtest, RiskError> {
    let order = frame.chronological();
    let n = order.len();
    let first = ((n as f64) * config.first_train_share.clamp(0.1, 0.9)).round() as usize;
    let folds = config.folds.max(1);
    let per_fold = (n - first) / folds;
    if per_fold == 0 {
        return Err(RiskError::TooFew { rows: n });
    }
    let mut cuts = Vec::new();
    for k in 0..folds {
        let start = first + k * per_fold;
        let end = if k + 1 == folds { n } else { start + per_fold };
        let cutoff = frame.times[order[start]];
        let train: Vec<usize> = order[..start]
            .iter()
            .copied()
            .filter(|&r| frame.times[r] < cutoff - config.embargo_seconds)
            .collect();
        let test: Vec<usize> = order[start..end].to_vec();
        cuts.push((cutoff, train, test));
    }
    let mut reports = Vec::new();
    for method in methods {
        let sub = frame.select(&method.columns);
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        let mut flags = Vec::new();
        let mut fold_auc = Vec::new();
        for (_, train, test) in &cuts {
            let model = Model::train(&sub, train, &config.train)?;
            let fold_scores: Vec<f64> = test.iter().map(|&r| model.score(&sub.values[r])).collect();
            let fold_labels: Vec<bool> = test.iter().map(|&r| sub.labels[r]).collect();
            fold_auc.push(auc(&fold_scores, &fold_labels));
            flags.extend(fold_scores.iter().map(|s| *s >= model.threshold));
            scores.extend(fold_scores);
            labels.extend(fold_labels);
        }
        // Each fold flags at its own threshold; pooled as flags (1 ≥ 0.5).
        let flagged: Vec<f64> = flags.iter().map(|f| f64::from(u8::from(*f))).collect();
        reports.push(MethodReport {
            method: method.name.clone(),
            features: sub.features.clone(),
            auc: mean(&fold_auc),
            pooled_auc: auc(&scores, &labels),
            brier: brier(&scores, &labels),
            operating: AtThreshold {
                threshold: f64::NAN,
                ..at_threshold(&flagged, &labels, 0.5)
            },
            calibration: calibration(&scores, &labels, &CALIBRATION_EDGES),
            fold_auc,
        });
    }
    Ok(Backtest {
        rows: n,
        failures: frame.labels.iter().filter(|l| **l).count(),
        folds: cuts
            .iter()
            .map(|(cutoff, train, test)| Fold {
                cutoff: *cutoff,
                train_rows: train.len(),
                test_rows: test.len(),
                test_failures: test.iter().filter(|&&r| frame.labels[r]).count(),
            })
            .collect(),
        methods: reports,
    })
}

/// The mean of the values present.
fn mean(values: &[Option<f64>]) -> Option<f64> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small known dataset: failures follow `size` (logit −2.5 + 2 size);
    /// `rate` is a weaker, noisier signal; time is the row number.
    fn dataset(n: usize) -> Frame {
        let mut next = super::super::uniform(11);
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let size = next() * 2.0;
            let p = 1.0 / (1.0 + (2.5 - 2.0 * size).exp());
            let failed = next() < p;
            let rate = if failed {
                next() * 0.6 + 0.1
            } else {
                next() * 0.6
            };
            values.push(vec![size, rate]);
            labels.push(failed);
        }
        Frame::new(vec!["size".into(), "rate".into()], values, labels)
    }

    #[test]
    fn the_model_is_judged_only_on_later_rows_and_beats_a_weaker_baseline() {
        let frame = dataset(3_000);
        let config = BacktestConfig {
            embargo_seconds: 10,
            ..BacktestConfig::default()
        };
        let methods = [
            Method {
                name: "model".into(),
                columns: vec![0, 1],
            },
            Method {
                name: "rate alone".into(),
                columns: vec![1],
            },
        ];
        let report = backtest(&frame, &methods, &config).unwrap();
        assert_eq!(report.folds.len(), 4);
        // The first cutoff is at half the rows; training stops the embargo
        // before it; the test slices cover the rest exactly once.
        assert_eq!(report.folds[0].cutoff, 1_500);
        assert_eq!(report.folds[0].train_rows, 1_490);
        assert_eq!(
            report.folds.iter().map(|f| f.test_rows).sum::<usize>(),
            1_500
        );
        let model = report.methods[0].auc.unwrap();
        let baseline = report.methods[1].auc.unwrap();
        assert!(
            model > 0.75 && model > baseline + 0.05,
            "{model} vs {baseline}"
        );
        // Calibrated: the mean prediction of every well-filled bin is within
        // a few points of what happened.
        for bin in report.methods[0]
            .calibration
            .iter()
            .filter(|b| b.count >= 100)
        {
            assert!((bin.predicted - bin.observed).abs() < 0.08, "{bin:?}");
        }
        let op = report.methods[0].operating;
        assert!(
            op.precision.is_some() && op.recall.is_some_and(|r| r > 0.3),
            "{op:?}"
        );
    }

    #[test]
    fn too_few_rows_for_the_folds_is_an_error() {
        let frame = dataset(5);
        let methods = [Method {
            name: "model".into(),
            columns: vec![0],
        }];
        assert!(matches!(
            backtest(&frame, &methods, &BacktestConfig::default()),
            Err(RiskError::TooFew { rows: 5 })
        ));
    }
}
