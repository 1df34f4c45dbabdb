//! The synthetic organisation and simulators of every upstream API
//! (Backstage, GitHub, Argo CD, Datadog, Sentry, OpenCost, AWS cost reports),
//! speaking the real wire formats, deterministic from a seed, and knowing the
//! ground truth it generated — the oracle for metrics and models.
//!
//! The world generator (organisation, delivery, incidents, load and cost,
//! AWS resources and billing, errors, portal usage), the ground truth (DORA
//! computed by its own implementation of the metric definitions, independent
//! of the transforms it checks; anomalies; cost totals; unmapped owners),
//! simulators of the Backstage catalog, GitHub, Argo CD, Datadog, Sentry and
//! OpenCost with deterministic fault injection, and file deliveries (the AWS
//! Cost and Usage Report 2.0, portal events) into any object store.

// The GitHub simulator builds large JSON literals.
#![recursion_limit = "256"]

pub mod export;
pub mod serve;
pub mod truth;
pub mod world;

pub use world::{World, WorldConfig};
