//! The multivariate model of a service: its operational series judged
//! together, so a day on which errors, latency and CPU each move a little
//! — or move against each other, CPU up with traffic flat — stands out
//! even when no series does by itself.
//!
//! The inputs are the univariate detector's residuals (robust z-scores of
//! each series against its own seasonal baseline), so seasonality, trend
//! and scale are already taken out and the model learns only how the
//! residuals vary together. The model is a Gaussian mixture (linfa's
//! `GaussianMixtureModel`, full covariances) fitted on the service's
//! recent normal days; a day's anomaly measure is its negative
//! log-likelihood under the mixture, calibrated against the training days'
//! own: a day is anomalous when `2 × (nll − median)` exceeds
//! [`MultivariateConfig::margin`] times the training days' 99th percentile
//! of the same. For one Gaussian, `2 × nll` is the squared Mahalanobis
//! distance plus a constant, so the rule reads "twice as far out as the
//! 1-in-100 normal day" — about a 1-in-10,000 day for five Gaussian
//! residuals.
//!
//! Causal like the univariate detector: the model that judges day `t` was
//! fitted on days before `t` only (refitted every
//! [`MultivariateConfig::refit_every`] days on the last
//! [`MultivariateConfig::window`]), so a backfill says what live scoring
//! would have said.

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::GaussianMixtureModel;
use ndarray::Array2;

use crate::robust::quantile;

/// Added to every variance (in squared robust z units): residuals within
/// half a standard deviation of each other are noise, so a series that
/// was nearly constant in training (an error rate of exactly 0.2 %) cannot
/// make a sub-σ wobble look like a thousand-σ event.
const COVARIANCE_FLOOR: f64 = 0.25;

/// How the multivariate model is trained and calibrated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultivariateConfig {
    /// Days of history a fit looks back over.
    pub window: usize,
    /// Normal days needed before the model judges anything.
    pub min_train: usize,
    /// Days between refits.
    pub refit_every: usize,
    /// Mixture components (fewer are tried when a fit fails).
    pub components: usize,
    /// A day with a univariate |z| above this is not trained on: the
    /// model learns normal days only.
    pub clean_z: f64,
    /// Residuals are clipped to ± this, so one wild series cannot make
    /// the likelihood overflow.
    pub clip_z: f64,
    /// How far beyond the training days' 99th percentile a day must be.
    pub margin: f64,
}

impl Default for MultivariateConfig {
    fn default() -> Self {
        Self {
            window: 120,
            min_train: 42,
            refit_every: 7,
            components: 2,
            clean_z: 3.5,
            clip_z: 20.0,
            margin: 2.0,
        }
    }
}

/// One day judged by the multivariate model.
#[derive(Debug, Clone, PartialEq)]
pub struct JointScored {
    /// Negative log-likelihood of the day's residuals (`None` while there
    /// is no model yet).
    pub nll: Option<f64>,
    /// Anomaly score in [0, 1]; 0.5 is the alarm threshold.
    pub score: f64,
    /// `score ≥ 0.5`.
    pub anomalous: bool,
}

/// A fitted mixture, with what calibrates its scores.
#[derive(Debug, Clone)]
struct Fitted {
    means: Vec<Vec<f64>>,
    precisions: Vec<Vec<Vec<f64>>>,
    /// Per component: log weight + ½ log det(precision) − d/2 · log 2π.
    log_norms: Vec<f64>,
    /// Median training nll.
    median: f64,
    /// The alarm distance: margin × 2 × (99th percentile − median).
    limit: f64,
}

impl Fitted {
    fn fit(config: &MultivariateConfig, rows: &[Vec<f64>]) -> Option<Self> {
        let dims = rows.first()?.len();
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let records = Array2::from_shape_vec((rows.len(), dims), flat).ok()?;
        let dataset = DatasetBase::from(records);
        // A mixture may fail to converge on degenerate data (a series
        // constant over the window): fewer components, then none.
        let model = (1..=config.components.max(1)).rev().find_map(|k| {
            GaussianMixtureModel::params(k)
                .reg_covariance(COVARIANCE_FLOOR)
                .max_n_iterations(200)
                .fit(&dataset)
                .ok()
        })?;
        let weights = model.weights();
        let means = model.means();
        let precisions = model.precisions();
        let mut fitted = Self {
            means: Vec::new(),
            precisions: Vec::new(),
            log_norms: Vec::new(),
            median: 0.0,
            limit: 0.0,
        };
        for k in 0..weights.len() {
            let precision: Vec<Vec<f64>> = (0..dims)
                .map(|i| (0..dims).map(|j| precisions[[k, i, j]]).collect())
                .collect();
            let log_det = log_det_spd(&precision)?;
            fitted.log_norms.push(
                weights[k].max(1e-300).ln() + 0.5 * log_det
                    - 0.5 * dims as f64 * (2.0 * std::f64::consts::PI).ln(),
            );
            fitted.means.push(means.row(k).to_vec());
            fitted.precisions.push(precision);
        }
        let nlls: Vec<f64> = rows.iter().map(|r| fitted.nll(r)).collect();
        if nlls.iter().any(|n| !n.is_finite()) {
            return None;
        }
        fitted.median = quantile(&nlls, 0.5)?;
        let q99 = quantile(&nlls, 0.99)?;
        // At least one unit of squared distance, so a model of almost
        // identical days does not alarm on rounding.
        fitted.limit = (config.margin * 2.0 * (q99 - fitted.median)).max(1.0);
        Some(fitted)
    }

    /// −log p(x) under the mixture (log-sum-exp over components).
    fn nll(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = self
            .means
            .iter()
            .zip(&self.precisions)
            .zip(&self.log_norms)
            .map(|((mean, precision), norm)| norm - 0.5 * mahalanobis(x, mean, precision))
            .collect();
        let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        -(top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln())
    }

    fn judge(&self, x: &[f64]) -> JointScored {
        let nll = self.nll(x);
        let distance = 2.0 * (nll - self.median);
        // 0.5 exactly at the limit, approaching 1 far beyond it.
        let score = if distance > 0.0 && nll.is_finite() {
            distance / (distance + self.limit)
        } else {
            0.0
        };
        JointScored {
            nll: Some(nll),
            score,
            anomalous: score >= 0.5,
        }
    }
}

/// (x − μ)ᵀ P (x − μ).
fn mahalanobis(x: &[f64], mean: &[f64], precision: &[Vec<f64>]) -> f64 {
    let d: Vec<f64> = x.iter().zip(mean).map(|(a, b)| a - b).collect();
    precision
        .iter()
        .zip(&d)
        .map(|(row, di)| di * row.iter().zip(&d).map(|(p, dj)| p * dj).sum::<f64>())
        .sum()
}

/// log det of a symmetric positive definite matrix, by Cholesky; `None`
/// when it is not positive definite.
fn log_det_spd(matrix: &[Vec<f64>]) -> Option<f64> {
    let n = matrix.len();
    let mut l = vec![vec![0.0; n]; n];
    let mut log_det = 0.0;
    for i in 0..n {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let pivot = matrix[i][i] - sum;
                if pivot <= 0.0 || !pivot.is_finite() {
                    return None;
                }
                l[i][j] = pivot.sqrt();
                log_det += 2.0 * l[i][j].ln();
            } else {
                l[i][j] = (matrix[i][j] - sum) / l[j][j];
            }
        }
    }
    Some(log_det)
}

/// Scores one service's days. `residuals[t]` holds each series' robust
/// z-score on day `t` (0 where a series is missing or not yet judged);
/// `normal[t]` says whether day `t` may be trained on (every series
/// judged, none anomalous by itself).
pub fn score_service(
    config: &MultivariateConfig,
    residuals: &[Vec<f64>],
    normal: &[bool],
) -> Vec<JointScored> {
    let clip = |row: &Vec<f64>| -> Vec<f64> {
        row.iter()
            .map(|z| {
                if z.is_finite() {
                    z.clamp(-config.clip_z, config.clip_z)
                } else {
                    0.0
                }
            })
            .collect()
    };
    let rows: Vec<Vec<f64>> = residuals.iter().map(clip).collect();
    let mut model: Option<Fitted> = None;
    let mut fitted_at: Option<usize> = None;
    let mut out = Vec::with_capacity(rows.len());
    for (t, row) in rows.iter().enumerate() {
        let due = fitted_at.is_none_or(|at| t >= at + config.refit_every.max(1));
        if due {
            let start = t.saturating_sub(config.window);
            let training: Vec<Vec<f64>> = (start..t)
                .filter(|&i| normal.get(i).copied().unwrap_or(false))
                .filter(|&i| rows[i].iter().all(|z| z.abs() <= config.clean_z))
                .map(|i| rows[i].clone())
                .collect();
            if training.len() >= config.min_train {
                if let Some(fitted) = Fitted::fit(config, &training) {
                    model = Some(fitted);
                }
                fitted_at = Some(t);
            }
        }
        out.push(match &model {
            Some(model) => model.judge(row),
            None => JointScored {
                nll: None,
                score: 0.0,
                anomalous: false,
            },
        });
    }
    out
}
