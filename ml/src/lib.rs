//! Models over the marts: cost and operational anomaly detection (seasonal,
//! robust baselines), deployment risk (a logistic model with measured AUC and
//! named factors) and rightsizing recommendations, with linfa.
//!
//! Reads marts and core tables and writes only its own output tables. No
//! code yet: it follows the marts it reads.
