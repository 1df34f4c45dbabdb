//! Deterministic fault injection, per upstream: latency, 5xx errors, 429
//! bursts, connection resets, truncated bodies and malformed records.
//!
//! Each request to an upstream takes the next number of that upstream's
//! counter; every decision about it is drawn from a random stream seeded by
//! (plan seed, upstream, request number). The same sequence of requests
//! therefore meets the same faults on every run.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Upstream;

/// Faults for one upstream. All rates are probabilities per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    /// Added to every response.
    pub latency_ms: u64,
    /// Share of requests answered 500, 502 or 503.
    pub error_rate: f64,
    /// Every `burst_every` requests, a burst of 429s begins…
    pub burst_every: u64,
    /// …lasting this many requests.
    pub burst_length: u64,
    /// Share of connections dropped before any response byte.
    pub reset_rate: f64,
    /// Share of bodies cut off halfway.
    pub truncate_rate: f64,
    /// Share of list responses with one record made malformed (a field of
    /// the wrong type, or a missing field).
    pub malformed_rate: f64,
}

/// Faults for every upstream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Seed of the fault decisions.
    pub seed: u64,
    /// Per upstream; absent means no faults.
    pub upstreams: BTreeMap<Upstream, FaultSpec>,
}

/// Why a fault specification could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "fault spec `{spec}`: {reason} (expected e.g. `github:error_rate=0.1,latency_ms=50;argocd:burst_every=20,burst_length=3`)"
)]
pub struct FaultSpecError {
    spec: String,
    reason: String,
}

impl FromStr for FaultPlan {
    type Err = FaultSpecError;

    /// `upstream:key=value,…;upstream:…`, plus an optional `seed=N` part.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| FaultSpecError {
            spec: spec.to_owned(),
            reason,
        };
        let mut plan = FaultPlan::default();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(seed) = part.strip_prefix("seed=") {
                plan.seed = seed
                    .parse()
                    .map_err(|_| error(format!("bad seed `{seed}`")))?;
                continue;
            }
            let (name, settings) = part
                .split_once(':')
                .ok_or_else(|| error(format!("`{part}` has no `upstream:`")))?;
            let upstream: Upstream = name.trim().parse().map_err(error)?;
            let mut fault = FaultSpec::default();
            for setting in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (key, value) = setting
                    .split_once('=')
                    .ok_or_else(|| error(format!("`{setting}` is not key=value")))?;
                let rate = || {
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                };
                let count = || value.parse::<u64>().ok();
                let bad = || error(format!("bad value for `{key}`: `{value}`"));
                match key {
                    "latency_ms" => fault.latency_ms = count().ok_or_else(bad)?,
                    "error_rate" => fault.error_rate = rate().ok_or_else(bad)?,
                    "burst_every" => fault.burst_every = count().ok_or_else(bad)?,
                    "burst_length" => fault.burst_length = count().ok_or_else(bad)?,
                    "reset_rate" => fault.reset_rate = rate().ok_or_else(bad)?,
                    "truncate_rate" => fault.truncate_rate = rate().ok_or_else(bad)?,
                    "malformed_rate" => fault.malformed_rate = rate().ok_or_else(bad)?,
                    other => return Err(error(format!("unknown setting `{other}`"))),
                }
            }
            plan.upstreams.insert(upstream, fault);
        }
        Ok(plan)
    }
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer 429 (rate limited) with `Retry-After`.
    TooManyRequests,
    /// Answer with this 5xx status.
    ServerError(u16),
    /// Drop the connection.
    Reset,
    /// Cut the body off.
    Truncate,
    /// Corrupt one record of a list.
    Malformed,
}

/// The per-upstream request counters of a running simulator.
#[derive(Debug, Default)]
pub struct FaultState {
    plan: FaultPlan,
    counters: Mutex<BTreeMap<Upstream, u64>>,
}

impl FaultState {
    /// Starts counting requests under `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        Self {
            plan,
            counters: Mutex::default(),
        }
    }

    /// Decides the fate of the next request to `upstream`, and the random
    /// stream for any detail (which record to corrupt).
    pub fn next(&self, upstream: Upstream) -> (Fault, Duration, ChaCha8Rng) {
        let n = match self.counters.lock() {
            Ok(mut counters) => {
                let counter = counters.entry(upstream).or_insert(0);
                *counter += 1;
                *counter - 1
            }
            Err(_) => 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.plan.seed ^ ((upstream as u64) << 56) ^ n);
        let Some(spec) = self.plan.upstreams.get(&upstream) else {
            return (Fault::None, Duration::ZERO, rng);
        };
        let latency = Duration::from_millis(spec.latency_ms);
        if spec.burst_every > 0
            && n % spec.burst_every >= spec.burst_every.saturating_sub(spec.burst_length)
        {
            return (Fault::TooManyRequests, latency, rng);
        }
        let draw: f64 = rng.random();
        let mut threshold = spec.error_rate;
        let fault = if draw < threshold {
            Fault::ServerError([500, 502, 503][rng.random_range(0..3)])
        } else if draw < {
            threshold += spec.reset_rate;
            threshold
        } {
            Fault::Reset
        } else if draw < {
            threshold += spec.truncate_rate;
            threshold
        } {
            Fault::Truncate
        } else if draw < threshold + spec.malformed_rate {
            Fault::Malformed
        } else {
            Fault::None
        };
        (fault, latency, rng)
    }
}

/// A response whose body fails before its first byte: the client sees the
/// connection drop.
pub fn reset() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected reset"))
    });
    Response::new(Body::from_stream(stream))
}

/// Sends half of `body` under the full `Content-Length`, then fails.
pub fn truncate(mut response: Response, body: Bytes) -> Response {
    let half = body.slice(..body.len() / 2);
    let stream = futures::stream::iter(vec![
        Ok(half),
        Err(std::io::Error::other("injected truncation")),
    ]);
    let length = HeaderValue::from(body.len());
    *response.body_mut() = Body::from_stream(stream);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, length);
    response
}

/// Makes one record of the list at `pointer` (a JSON pointer; "" for a
/// top-level array) malformed: a string field becomes a number, or a field
/// disappears. Returns the body unchanged when there is no such list.
pub fn corrupt(body: &[u8], pointer: &str, rng: &mut ChaCha8Rng) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let items = value.pointer_mut(pointer)?.as_array_mut()?;
    if items.is_empty() {
        return None;
    }
    let index = rng.random_range(0..items.len());
    let record = items[index].as_object_mut()?;
    let keys: Vec<String> = record.keys().cloned().collect();
    if keys.is_empty() {
        return None;
    }
    let key = &keys[rng.random_range(0..keys.len())];
    match record.get(key) {
        Some(serde_json::Value::String(_)) => {
            record.insert(key.clone(), serde_json::Value::from(12345));
        }
        _ => {
            record.remove(key);
        }
    }
    serde_json::to_vec(&value).ok()
}

/// A plain error response in the upstream's own error format.
pub fn status_response(upstream: Upstream, status: StatusCode, message: &str) -> Response {
    // GitHub signals its secondary rate limits with 403 and `Retry-After`.
    if upstream == Upstream::Github && status == StatusCode::TOO_MANY_REQUESTS {
        let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
        let mut response = (
            StatusCode::FORBIDDEN,
            axum::Json(upstream.error_body(StatusCode::FORBIDDEN, message)),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let mut response = (status, axum::Json(upstream.error_body(status, message))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() -> Result<(), FaultSpecError> {
        let plan: FaultPlan =
            "seed=9; github:error_rate=0.1,latency_ms=50; argocd:burst_every=10,burst_length=2"
                .parse()?;
        assert_eq!(plan.seed, 9);
        assert_eq!(plan.upstreams[&Upstream::Github].error_rate, 0.1);
        assert_eq!(plan.upstreams[&Upstream::ArgoCd].burst_length, 2);
        for bad in [
            "github",
            "nowhere:error_rate=0.1",
            "github:error_rate=2",
            "github:colour=red",
        ] {
            assert!(bad.parse::<FaultPlan>().is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn decisions_are_deterministic_and_match_rates() -> Result<(), FaultSpecError> {
        let plan: FaultPlan = "seed=1; argocd:error_rate=0.2,reset_rate=0.1".parse()?;
        let run = || {
            let state = FaultState::new(plan.clone());
            (0..2000)
                .map(|_| state.next(Upstream::ArgoCd).0)
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let errors = first
            .iter()
            .filter(|f| matches!(f, Fault::ServerError(_)))
            .count();
        let resets = first.iter().filter(|f| **f == Fault::Reset).count();
        assert!((300..500).contains(&errors), "{errors}");
        assert!((120..280).contains(&resets), "{resets}");
        Ok(())
    }

    #[test]
    fn bursts_come_in_runs() -> Result<(), FaultSpecError> {
        let state = FaultState::new("backstage:burst_every=5,burst_length=2".parse()?);
        let faults: Vec<bool> = (0..10)
            .map(|_| state.next(Upstream::Backstage).0 == Fault::TooManyRequests)
            .collect();
        assert_eq!(
            faults,
            vec![
                false, false, false, true, true, false, false, false, true, true
            ]
        );
        Ok(())
    }
}
