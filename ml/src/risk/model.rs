//! The risk model: logistic regression (linfa) on standardized features,
//! failures weighted up, and the intercept corrected back so scores are
//! probabilities at the real failure rate.
//!
//! Class weighting: failures are rare (a few to thirty per cent), and an
//! unweighted fit spends its effort on the many successes. Failures are
//! repeated `w ≈ successes / failures` times in the fit (linfa's logistic
//! regression takes no sample weights; repeating rows is the same loss for
//! integer weights). Weighting moves the intercept by `ln w` and leaves the
//! slopes' meaning; subtracting `ln w` again (prior correction, King & Zeng
//! 2001) brings the score back to the training base rate, and a rescaling
//! of the log-odds fitted on the training rows (Platt scaling) undoes what
//! the penalty and a misspecified model leave, so scores are probabilities —
//! which the calibration table of each evaluation checks.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::RiskError;
use super::frame::Frame;

/// How a feature's raw value enters the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// As is.
    Identity,
    /// `ln(1 + x)`: for counts and sizes, whose effect grows with the order
    /// of magnitude (chosen when a feature is never negative and its 99th
    /// percentile is above 10).
    Log1p,
}

impl Transform {
    fn apply(self, x: f64) -> f64 {
        match self {
            Self::Identity => x,
            Self::Log1p => x.max(0.0).ln_1p(),
        }
    }
}

/// The L2 penalties tried when none is given: the one whose models rank
/// later training rows best, trained on earlier ones, is used.
pub const ALPHAS: [f64; 6] = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0];

/// Fewest training rows for choosing the penalty on a later slice of them;
/// below, a penalty of 1 is used.
const MIN_ROWS_TO_CHOOSE: usize = 200;

/// What training needs besides the data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// L2 penalty of the logistic regression (on standardized features);
    /// `None`: chosen from [`ALPHAS`] on the training rows alone (older
    /// rows fit, later ones judge).
    pub alpha: Option<f64>,
    /// Iterations of the optimiser at most.
    pub max_iterations: u64,
    /// Largest weight given to a failure.
    pub max_weight: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            alpha: None,
            max_iterations: 200,
            max_weight: 20.0,
        }
    }
}

/// A trained model: everything needed to score a row again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Feature names, in order.
    pub features: Vec<String>,
    /// How each enters.
    pub transforms: Vec<Transform>,
    /// Value used for a missing raw value (the training median).
    pub fill: Vec<f64>,
    /// Mean of each transformed feature in training.
    pub means: Vec<f64>,
    /// Standard deviation of each (1 when constant).
    pub scales: Vec<f64>,
    /// Coefficient of each standardized feature: its effect on the log-odds
    /// of failure per standard deviation.
    pub coefficients: Vec<f64>,
    /// Intercept after prior correction and rescaling.
    pub intercept: f64,
    /// Weight the failures had in the fit.
    pub failure_weight: f64,
    /// Rows trained on.
    pub rows: usize,
    /// Share of them that failed.
    pub base_rate: f64,
    /// Scores at or above this are flagged: the threshold that maximised F1
    /// on the training rows.
    pub threshold: f64,
    /// The L2 penalty it was fitted with.
    pub alpha: f64,
}

/// One feature's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Factor {
    /// Feature name.
    pub feature: String,
    /// Its raw value (before transform and standardization); `None` when it
    /// was missing.
    pub value: Option<f64>,
    /// Coefficient × standardized value: what it adds to the log-odds.
    pub contribution: f64,
}

impl Model {
    /// Trains on the rows of `frame` listed in `rows`, choosing the penalty
    /// on those rows when `config` gives none.
    pub fn train(frame: &Frame, rows: &[usize], config: &TrainConfig) -> Result<Self, RiskError> {
        let alpha = match config.alpha {
            Some(alpha) => alpha,
            None => choose_alpha(frame, rows, config),
        };
        Self::fit(frame, rows, config, alpha)
    }

    /// Trains with penalty `alpha`.
    fn fit(
        frame: &Frame,
        rows: &[usize],
        config: &TrainConfig,
        alpha: f64,
    ) -> Result<Self, RiskError> {
        let failures = rows.iter().filter(|&&r| frame.labels[r]).count();
        let successes = rows.len() - failures;
        if failures == 0 || successes == 0 {
            return Err(RiskError::OneClass {
                rows: rows.len(),
                failures,
            });
        }
        let n_features = frame.features.len();
        let mut transforms = Vec::with_capacity(n_features);
        let mut fill = Vec::with_capacity(n_features);
        for f in 0..n_features {
            let mut values: Vec<f64> = rows
                .iter()
                .map(|&r| frame.values[r][f])
                .filter(|v| v.is_finite())
                .collect();
            values.sort_by(f64::total_cmp);
            let quantile = |q: f64| {
                values
                    .get(((values.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
            };
            let skewed = values.first().is_some_and(|v| *v >= 0.0)
                && quantile(0.99).is_some_and(|v| v > 10.0);
            transforms.push(if skewed {
                Transform::Log1p
            } else {
                Transform::Identity
            });
            fill.push(quantile(0.5).unwrap_or(0.0));
        }
        let mut model = Self {
            features: frame.features.clone(),
            transforms,
            fill,
            means: vec![0.0; n_features],
            scales: vec![1.0; n_features],
            coefficients: vec![0.0; n_features],
            intercept: 0.0,
            failure_weight: 1.0,
            rows: rows.len(),
            base_rate: failures as f64 / rows.len() as f64,
            threshold: 0.5,
            alpha,
        };
        let transformed: Vec<Vec<f64>> = rows
            .iter()
            .map(|&r| model.transformed(&frame.values[r]))
            .collect();
        for f in 0..n_features {
            let n = transformed.len() as f64;
            let mean = transformed.iter().map(|t| t[f]).sum::<f64>() / n;
            let var = transformed
                .iter()
                .map(|t| (t[f] - mean).powi(2))
                .sum::<f64>()
                / n;
            model.means[f] = mean;
            model.scales[f] = if var > 1e-12 { var.sqrt() } else { 1.0 };
        }
        let weight = (successes as f64 / failures as f64)
            .round()
            .clamp(1.0, config.max_weight);
        let copies = weight as usize;
        let total = successes + failures * copies;
        let mut x = Array2::<f64>::zeros((total, n_features));
        let mut y = Array1::from_elem(total, false);
        let mut i = 0;
        for (t, &r) in transformed.iter().zip(rows) {
            let label = frame.labels[r];
            for _ in 0..if label { copies } else { 1 } {
                for f in 0..n_features {
                    x[[i, f]] = (t[f] - model.means[f]) / model.scales[f];
                }
                y[i] = label;
                i += 1;
            }
        }
        let fitted = LogisticRegression::default()
            .alpha(alpha)
            .max_iterations(config.max_iterations)
            .with_intercept(true)
            .fit(&Dataset::new(x, y))
            .map_err(|e| RiskError::Fit(e.to_string()))?;
        // linfa 0.8 takes the *more frequent* label as its positive class
        // (later versions the larger value), so after weighting either class
        // may be "positive": read which, and turn the fit into log-odds of
        // failure. The label-order test checks a higher score means more
        // failures whichever class outnumbers the other.
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        model.coefficients = fitted.params().iter().map(|c| sign * c).collect();
        model.intercept = sign * fitted.intercept() - weight.ln();
        model.failure_weight = weight;
        let labels: Vec<bool> = rows.iter().map(|&r| frame.labels[r]).collect();
        // The prior correction is exact only for a correctly specified
        // model, and the penalty shrinks the slopes: rescale the log-odds
        // on the training rows (Platt scaling) so scores are probabilities.
        // A rescaled linear model is still linear, so each feature's
        // contribution stays coefficient × standardized value.
        let logits: Vec<f64> = transformed.iter().map(|t| model.logit(t)).collect();
        let (a, b) = platt(&logits, &labels);
        model.coefficients.iter_mut().for_each(|c| *c *= b);
        model.intercept = a + b * model.intercept;
        let scores: Vec<f64> = transformed
            .iter()
            .map(|t| model.score_transformed(t))
            .collect();
        model.threshold = best_f1_threshold(&scores, &labels);
        Ok(model)
    }

    /// The raw values transformed, missing ones filled.
    fn transformed(&self, raw: &[f64]) -> Vec<f64> {
        raw.iter()
            .enumerate()
            .map(|(f, v)| {
                let v = if v.is_finite() { *v } else { self.fill[f] };
                self.transforms[f].apply(v)
            })
            .collect()
    }

    fn standardized(&self, transformed: &[f64]) -> Vec<f64> {
        transformed
            .iter()
            .enumerate()
            .map(|(f, t)| (t - self.means[f]) / self.scales[f])
            .collect()
    }

    fn logit(&self, transformed: &[f64]) -> f64 {
        let z = self.standardized(transformed);
        self.intercept
            + z.iter()
                .zip(&self.coefficients)
                .map(|(z, c)| z * c)
                .sum::<f64>()
    }

    fn score_transformed(&self, transformed: &[f64]) -> f64 {
        1.0 / (1.0 + (-self.logit(transformed)).exp())
    }

    /// The probability that a deployment with these raw feature values
    /// (in [`Model::features`] order; NaN for missing) fails.
    pub fn score(&self, raw: &[f64]) -> f64 {
        self.score_transformed(&self.transformed(raw))
    }

    /// Every feature's contribution to the score of `raw`, largest increase
    /// of risk first.
    pub fn factors(&self, raw: &[f64]) -> Vec<Factor> {
        let z = self.standardized(&self.transformed(raw));
        let mut out: Vec<Factor> = self
            .features
            .iter()
            .enumerate()
            .map(|(f, name)| Factor {
                feature: name.clone(),
                value: raw.get(f).copied().filter(|v| v.is_finite()),
                contribution: self.coefficients[f] * z[f],
            })
            .collect();
        out.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        out
    }
}

/// `(a, b)` such that `sigmoid(a + b·logit)` fits `labels` best (log
/// loss, Newton's method); `b` is kept positive so the ranking stays.
fn platt(logits: &[f64], labels: &[bool]) -> (f64, f64) {
    let (mut a, mut b) = (0.0, 1.0);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (l, y) in logits.iter().zip(labels) {
            let p = 1.0 / (1.0 + (-(a + b * l)).exp());
            let r = p - f64::from(u8::from(*y));
            let w = (p * (1.0 - p)).max(1e-12);
            ga += r;
            gb += r * l;
            haa += w;
            hab += w * l;
            hbb += w * l * l;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-10 {
            break;
        }
    }
    if b.is_finite() && a.is_finite() && b > 0.0 {
        (a, b)
    } else {
        (0.0, 1.0)
    }
}

/// The penalty of [`ALPHAS`] whose model, fitted on the oldest three
/// quarters of `rows`, ranks the newest quarter best (AUC; ties go to the
/// weaker penalty, which keeps scores apart). Only training rows are
/// looked at. (Judging on several later slices instead of one was tried on
/// development worlds and ranked no better.)
fn choose_alpha(frame: &Frame, rows: &[usize], config: &TrainConfig) -> f64 {
    let fallback = 1.0;
    // One feature ranks the same under any penalty; the penalty would only
    // squeeze its scores together.
    if rows.len() < MIN_ROWS_TO_CHOOSE || frame.features.len() < 2 {
        return fallback;
    }
    let mut ordered = rows.to_vec();
    ordered.sort_by(|&a, &b| {
        frame.times[a]
            .cmp(&frame.times[b])
            .then_with(|| frame.ids[a].cmp(&frame.ids[b]))
    });
    let (fit, judge) = ordered.split_at(ordered.len() * 3 / 4);
    let labels: Vec<bool> = judge.iter().map(|&r| frame.labels[r]).collect();
    let mut best = (fallback, f64::NEG_INFINITY);
    for alpha in &ALPHAS {
        let Ok(model) = Model::fit(frame, fit, config, *alpha) else {
            return fallback;
        };
        let scores: Vec<f64> = judge
            .iter()
            .map(|&r| model.score(&frame.values[r]))
            .collect();
        if let Some(auc) = super::metrics::auc(&scores, &labels)
            && auc > best.1 + 1e-9
        {
            best = (*alpha, auc);
        }
    }
    best.0
}

/// The threshold with the best F1 among the scores (flagging every score at
/// or above it).
fn best_f1_threshold(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let (mut tp, mut best, mut best_f1) = (0.0, 0.5, -1.0);
    for (k, &i) in order.iter().enumerate() {
        tp += f64::from(u8::from(labels[i]));
        // Only where the next score differs: a threshold flags all ties.
        if order.get(k + 1).is_some_and(|&j| scores[j] == scores[i]) {
            continue;
        }
        let flagged = (k + 1) as f64;
        let f1 = 2.0 * tp / (flagged + positives);
        if f1 > best_f1 {
            best_f1 = f1;
            best = scores[i];
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where failures rise with `x` (logit = −2 + 1.5 x) and `noise` is
    /// unrelated, drawn deterministically.
    fn frame(n: usize) -> Frame {
        let mut next = super::super::uniform(7);
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let x = next() * 4.0 - 2.0;
            let noise = next();
            let p = 1.0 / (1.0 + (-(-2.0 + 1.5 * x)).exp());
            labels.push(next() < p);
            values.push(vec![x, noise]);
        }
        Frame::new(vec!["x".into(), "noise".into()], values, labels)
    }

    #[test]
    fn a_higher_score_means_more_failures_whatever_the_label_order() {
        let frame = frame(4_000);
        let rows: Vec<usize> = (0..frame.len()).collect();
        let model = Model::train(&frame, &rows, &TrainConfig::default()).unwrap();
        assert!(model.coefficients[0] > 0.5, "{:?}", model.coefficients);
        assert!(
            model.coefficients[1].abs() < 0.2,
            "{:?}",
            model.coefficients
        );
        assert!(model.score(&[1.5, 0.5]) > model.score(&[-1.5, 0.5]));
        // Flipping which class is "failure" flips the sign: the model does
        // not depend on linfa's label order.
        // Failures the majority (linfa 0.8 then takes `true` as positive,
        // where with rare failures it took `false`): the same direction.
        let mut flipped = frame.clone();
        flipped.labels.iter_mut().for_each(|l| *l = !*l);
        let other = Model::train(&flipped, &rows, &TrainConfig::default()).unwrap();
        assert!(other.base_rate > 0.5);
        assert!(other.coefficients[0] < -0.5, "{:?}", other.coefficients);
        assert!(other.score(&[-1.5, 0.5]) > other.score(&[1.5, 0.5]));
    }

    #[test]
    fn weighting_is_undone_so_scores_are_probabilities() {
        let frame = frame(6_000);
        let rows: Vec<usize> = (0..frame.len()).collect();
        let model = Model::train(&frame, &rows, &TrainConfig::default()).unwrap();
        assert!(model.failure_weight > 1.0);
        let mean: f64 = rows
            .iter()
            .map(|&r| model.score(&frame.values[r]))
            .sum::<f64>()
            / rows.len() as f64;
        // The mean score sits near the base rate (prior correction), not
        // near one half (what the weighted fit alone would give).
        assert!(
            (mean - model.base_rate).abs() < 0.05,
            "{mean} vs {}",
            model.base_rate
        );
        // At x = 0 the true probability is sigmoid(−2) ≈ 0.12.
        let p0 = model.score(&[0.0, 0.5]);
        assert!((p0 - 0.12).abs() < 0.05, "{p0}");
    }

    #[test]
    fn one_class_is_refused_and_missing_values_are_filled() {
        let frame = Frame::new(
            vec!["x".into()],
            vec![vec![1.0], vec![2.0]],
            vec![false, false],
        );
        assert!(matches!(
            Model::train(&frame, &[0, 1], &TrainConfig::default()),
            Err(RiskError::OneClass { failures: 0, .. })
        ));
        let frame = frame_with_gap();
        let rows: Vec<usize> = (0..frame.len()).collect();
        let model = Model::train(&frame, &rows, &TrainConfig::default()).unwrap();
        let p = model.score(&[f64::NAN]);
        assert!(p.is_finite() && (0.0..=1.0).contains(&p));
        assert_eq!(model.factors(&[f64::NAN])[0].value, None);
    }

    fn frame_with_gap() -> Frame {
        let values = (0..40)
            .map(|i| vec![if i == 3 { f64::NAN } else { f64::from(i) }])
            .collect();
        let labels = (0..40).map(|i| i % 5 == 0).collect();
        Frame::new(vec!["x".into()], values, labels)
    }
}
