//! Models over the marts: anomaly detection on cost and operational series
//! (a causal, robust, seasonal baseline with change detection), and later
//! deployment risk and rightsizing with linfa.
//!
//! - [`detector`]: the univariate detector, one forward pass per series.
//! - [`seasonal`]: seasonality detected by a rank test, not assumed.
//! - [`anomaly`]: scored points grouped into anomalies with kind and impact.
//! - [`csv_series`]: any `timestamp,value` CSV scored by the same detector.
//! - [`evaluate`]: event-level precision, recall and delay against labels.
//! - [`robust`]: medians, MAD, quantiles, the Mann–Kendall statistic.
//!
//! Pure computation: no I/O beyond the readers and writers it is given, so
//! the same code scores the warehouse, a CSV and an evaluation world.

pub mod anomaly;
pub mod csv_series;
pub mod detector;
pub mod evaluate;
pub mod robust;
pub mod seasonal;

pub use anomaly::{Anomaly, Direction, Kind, assemble};
pub use detector::{Detector, DetectorConfig, Scored};

#[cfg(test)]
mod tests;
