//! Deployment risk: a logistic regression (linfa) over what was known about
//! a deployment when it started (`deployment_features`), trained on which
//! deployments failed (`dora_deployments.failed`), judged by a
//! chronological backtest next to two simple baselines.
//!
//! - [`frame`]: the labelled rows any source gives (warehouse or CSV).
//! - [`model`]: standardization, class weighting, the fit, scores and each
//!   feature's contribution.
//! - [`backtest`]: rolling-origin evaluation of the model and baselines.
//! - [`metrics`]: AUC, Brier score, precision/recall, calibration.
//! - [`csv`]: any labelled CSV of change metrics, for `fathom ml
//!   evaluate-risk`.
//! - [`store`]: the warehouse side — the labelled frame, training with its
//!   backtest, the stored artifact, scores into `deployment_risk`.
//! - [`words`]: a factor in words.

pub mod backtest;
pub mod csv;
pub mod frame;
pub mod metrics;
pub mod model;
pub mod store;
pub mod words;

pub use backtest::{Backtest, BacktestConfig, Method, backtest};
pub use frame::Frame;
pub use model::{Factor, Model, TrainConfig};

/// Why a risk model could not be trained or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// Training needs failures and successes.
    #[error(
        "cannot train on {rows} rows with {failures} failures: both failed and successful deployments are needed"
    )]
    OneClass {
        /// Rows offered.
        rows: usize,
        /// Failures among them.
        failures: usize,
    },
    /// Not enough rows for the folds.
    #[error("{rows} rows are too few for a backtest: each test slice needs at least one")]
    TooFew {
        /// Rows offered.
        rows: usize,
    },
    /// The optimiser failed.
    #[error("fitting the logistic regression: {0}")]
    Fit(String),
    /// A CSV that cannot be used.
    #[error("{0}")]
    Input(String),
}

/// Deterministic uniform draws in [0, 1) for the tests' datasets (a
/// 64-bit linear congruential generator).
#[cfg(test)]
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}
