//! The synthetic organisation and simulators of every upstream API
//! (Backstage, GitHub, Argo CD, Datadog, Sentry, OpenCost, AWS cost reports),
//! speaking the real wire formats, deterministic from a seed, and knowing the
//! ground truth it generated — the oracle for metrics and models.
//!
//! So far: the world generator (organisation, delivery, incidents), the
//! ground truth of DORA computed by its own implementation of the metric
//! definitions (independent of the transforms it checks), and simulators of
//! the Backstage catalog, GitHub, Argo CD, Datadog incidents, Sentry and
//! OpenCost allocations, with deterministic fault injection.

// The GitHub simulator builds large JSON literals.
#![recursion_limit = "256"]

pub mod serve;
pub mod truth;
pub mod world;

pub use world::{World, WorldConfig};
