//! The synthetic organisation: who exists (org), what they ship (delivery)
//! and what breaks (incidents), generated deterministically from a seed.
//!
//! Every service draws from its own random stream (seeded from the world
//! seed and the service's index), so services can be generated one at a time
//! — the way the 5,000-service benchmark world streams — and adding a
//! service never changes the others.

pub mod aws;
pub mod cost;
mod delivery;
pub mod errors;
pub mod ops;
mod org;
mod risk;
pub mod usage;

use chrono::{DateTime, NaiveDate, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use delivery::{Commit, DeploySource, Deployment, Incident, PullRequest, ServiceHistory};
pub use org::{Component, ComponentKind, Department, Org, Profile, Team, User};

/// How big a world to make, and from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WorldConfig {
    /// Seed of every random choice; the same seed gives the same world.
    pub seed: u64,
    /// Number of teams.
    pub teams: usize,
    /// Number of components (services, websites, libraries).
    pub services: usize,
    /// Days of history, ending the day before `end_date`.
    pub days: u32,
    /// First day after the history (exclusive end), UTC. Fixed rather than
    /// "today" so a seed means the same world tomorrow.
    pub end_date: NaiveDate,
    /// Which family of cost anomalies to inject.
    pub anomalies: cost::AnomalyFamily,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            teams: 8,
            services: 40,
            days: 180,
            end_date: NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default(),
            anomalies: cost::AnomalyFamily::Standard,
        }
    }
}

impl WorldConfig {
    /// First instant of the history.
    pub fn start(&self) -> DateTime<Utc> {
        self.end() - chrono::Duration::days(i64::from(self.days))
    }

    /// End of the history (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.end_date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
    }

    /// The random stream of one part of the world.
    pub(crate) fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        rng
    }
}

/// A generated world: the organisation and each service's history.
#[derive(Debug, Clone)]
pub struct World {
    /// The parameters it was made from.
    pub config: WorldConfig,
    /// Teams, users, systems, components.
    pub org: Org,
    /// One history per component, in component order.
    pub histories: Vec<ServiceHistory>,
    /// Load and cost profiles of deployed components.
    pub loads: Vec<cost::LoadProfile>,
    /// Sentry projects of components that report errors.
    pub errors: Vec<errors::ProjectErrors>,
}

impl World {
    /// Generates the whole world in memory.
    pub fn generate(config: WorldConfig) -> Self {
        let org = Org::generate(&config);
        let histories: Vec<ServiceHistory> = (0..org.components.len())
            .map(|idx| ServiceHistory::generate(&config, &org, idx))
            .collect();
        let loads = (0..org.components.len())
            .filter_map(|idx| cost::LoadProfile::generate(&config, &org, idx))
            .collect();
        let errors = histories
            .iter()
            .filter_map(|h| errors::ProjectErrors::generate(&config, &org, h))
            .collect();
        Self {
            config,
            org,
            histories,
            loads,
            errors,
        }
    }
}

/// RFC 3339 with second precision and `Z`, as the upstream APIs print it.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests;
