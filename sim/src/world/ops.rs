//! What a service's operational metrics read at an instant: requests,
//! errors, p95 latency, CPU and memory, as the Datadog simulator serves
//! them and the anomaly evaluation scores them. Incidents are the truth:
//! while one is open the service fails more requests and answers slower.

use chrono::{DateTime, NaiveDate, Utc};

use super::World;
use super::cost::{LoadProfile, day_start};

/// Error rate while no incident is open.
const NORMAL_ERROR_RATE: f64 = 0.002;
/// Error rate while an incident is open.
const INCIDENT_ERROR_RATE: f64 = 0.08;
/// Seconds an open incident adds to the p95 latency.
const INCIDENT_LATENCY_SECONDS: f64 = 0.9;

/// One reading of a service's metrics over an interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpsReading {
    /// Requests served in the interval.
    pub requests: f64,
    /// Requests that failed.
    pub errors: f64,
    /// p95 latency, seconds.
    pub latency_p95_seconds: f64,
    /// CPU used, cores.
    pub cpu_usage_cores: f64,
    /// Memory used, bytes.
    pub memory_usage_bytes: f64,
}

impl World {
    /// Whether an incident of component `idx` is open at `at`.
    pub fn incident_open(&self, idx: usize, at: DateTime<Utc>) -> bool {
        self.histories.get(idx).is_some_and(|history| {
            history
                .incidents
                .iter()
                .any(|i| i.created_at <= at && at < i.resolved_at)
        })
    }

    /// The share of `[from, to)` during which an incident of component
    /// `idx` was open.
    pub fn incident_share(&self, idx: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        let span = (to - from).num_seconds();
        if span <= 0 {
            return 0.0;
        }
        let open: i64 = self.histories.get(idx).map_or(0, |history| {
            history
                .incidents
                .iter()
                .map(|i| {
                    (i.resolved_at.min(to) - i.created_at.max(from))
                        .num_seconds()
                        .max(0)
                })
                .sum()
        });
        (open as f64 / span as f64).min(1.0)
    }

    /// The metrics of `profile`'s service for the interval starting at
    /// `at` and lasting `share` of a day. A day's reading is the state at
    /// its start (the anomaly evaluation's truth is defined on it); a
    /// shorter interval's counts add up over it, as Datadog's hourly
    /// rollups do: a 20-minute incident shows in its hour.
    pub fn ops_reading(&self, profile: &LoadProfile, at: DateTime<Utc>, share: f64) -> OpsReading {
        let day = profile.day(&self.config, at.date_naive());
        let incident = if share < 1.0 {
            let end = at + chrono::Duration::seconds((share * 86_400.0) as i64);
            self.incident_share(profile.component, at, end)
        } else {
            f64::from(u8::from(self.incident_open(profile.component, at)))
        };
        let requests = day.requests * share;
        let error_rate = NORMAL_ERROR_RATE * (1.0 - incident) + INCIDENT_ERROR_RATE * incident;
        OpsReading {
            requests,
            errors: requests * error_rate,
            // The p95 of the interval is an incident's once more than 5 %
            // of it was one.
            latency_p95_seconds: 0.08
                + 0.1 * (day.cpu_usage_cores / day.cpu_request_cores.max(0.01))
                + if incident > 0.05 {
                    INCIDENT_LATENCY_SECONDS
                } else {
                    0.0
                },
            cpu_usage_cores: day.cpu_usage_cores,
            memory_usage_bytes: day.ram_usage_bytes,
        }
    }

    /// The daily reading of `profile`'s service on `date`.
    pub fn ops_day(&self, profile: &LoadProfile, date: NaiveDate) -> OpsReading {
        self.ops_reading(profile, day_start(date), 1.0)
    }
}
