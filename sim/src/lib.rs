//! The synthetic organisation and simulators of every upstream API
//! (Backstage, GitHub, Argo CD, Datadog, Sentry, OpenCost, AWS cost reports),
//! speaking the real wire formats, deterministic from a seed, and knowing the
//! ground truth it generated — the oracle for metrics and models.
//!
//! No code yet; today's tests build their inputs directly.
