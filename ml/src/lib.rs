//! Models over the marts: anomaly detection on cost and operational series
//! (a causal, robust, seasonal baseline with change detection, and a
//! multivariate model per service with linfa), and deployment risk.
//!
//! - [`detector`]: the univariate detector, one forward pass per series.
//! - [`seasonal`]: seasonality detected by a rank test, not assumed.
//! - [`anomaly`]: scored points grouped into anomalies with kind and impact.
//! - [`csv_series`]: any `timestamp,value` CSV scored by the same detector.
//! - [`detect`]: every warehouse series scored into `anomaly_scores` and
//!   `anomalies`, with each anomaly's driver.
//! - [`multivariate`]: a service's operational series judged together, by a
//!   linfa Gaussian mixture over the univariate residuals.
//! - [`evaluate`]: event-level precision, recall and delay against labels.
//! - [`baseline`]: the trailing mean ± 3σ rule the detector is compared with.
//! - [`robust`]: medians, MAD, quantiles, the Mann–Kendall statistic.
//! - [`risk`]: deployment risk — a linfa logistic regression over
//!   `deployment_features`, its chronological backtest and baselines.
//!
//! The models are pure computation (no I/O beyond the readers and writers
//! they are given), so the same code scores the warehouse, a CSV and an
//! evaluation world; only [`detect`] reads and writes the warehouse, and
//! only its own output tables.

pub mod anomaly;
pub mod baseline;
pub mod csv_series;
pub mod detect;
pub mod detector;
pub mod evaluate;
pub mod multivariate;
pub mod risk;
pub mod robust;
pub mod seasonal;

pub use anomaly::{Anomaly, Direction, Kind, assemble};
pub use detector::{Detector, DetectorConfig, Scored};

#[cfg(test)]
mod tests;
