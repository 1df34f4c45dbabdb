//! What keeps one caller from taking the server from the others: one
//! memory pool for every query session, a cap on callers' SQL queries
//! running at once, a cached readiness answer, and a budget of failed
//! authentications per client address.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionContext;
use fathom_warehouse::query::{QueryLimits, query_runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Api, ApiError, ApiResult, RateLimiter};

/// Callers' SQL queries (HTTP and PostgreSQL together) running at once by
/// default (`[query] concurrent_queries`); more wait up to [`QUEUE_WAIT`].
pub const CONCURRENT_QUERIES: usize = 4;

/// How long a query waits for a free slot before it is answered "busy".
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// How long a readiness answer is reused: probes cannot make the server do
/// more than one check per period, however often they ask.
pub(crate) const READINESS_TTL: Duration = Duration::from_secs(2);

/// Failed authentications one client address may make per minute before
/// it is answered 429 without a check.
pub const FAILED_AUTH_PER_MINUTE: u32 = 30;

/// The server's shared protections (`Default`: nothing used yet).
#[derive(Debug, Default)]
pub struct Guards {
    runtime: OnceLock<Arc<RuntimeEnv>>,
    queries: OnceLock<Arc<Semaphore>>,
    readiness: Mutex<Option<(Instant, bool, serde_json::Value)>>,
    /// Failed authentications per client address.
    failures: RateLimiter,
}

impl Guards {
    /// The engine runtime all sessions share (one memory pool of
    /// `[query] memory_limit_mib` for every query together).
    fn runtime(&self, limits: QueryLimits) -> ApiResult<Arc<RuntimeEnv>> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime.clone());
        }
        let runtime = query_runtime(limits)?;
        Ok(self.runtime.get_or_init(|| runtime).clone())
    }

    /// A slot for one caller's query, or 503 when none frees up in time.
    async fn query_slot(&self, slots: usize) -> ApiResult<OwnedSemaphorePermit> {
        let slots = self
            .queries
            .get_or_init(|| Arc::new(Semaphore::new(slots.max(1))))
            .clone();
        match tokio::time::timeout(QUEUE_WAIT, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server's query slots are all taken; try again shortly",
            )),
        }
    }

    /// The cached readiness answer, if fresh.
    pub(crate) fn cached_readiness(&self) -> Option<(bool, serde_json::Value)> {
        let cached = self.readiness.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|(at, _, _)| at.elapsed() < READINESS_TTL)
            .map(|(_, ok, body)| (*ok, body.clone()))
    }

    /// Remembers a readiness answer.
    pub(crate) fn remember_readiness(&self, ok: bool, body: serde_json::Value) {
        *self.readiness.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), ok, body));
    }

    /// Whether `address` may try to authenticate (it has failed fewer than
    /// [`FAILED_AUTH_PER_MINUTE`] times in the last minute, continuously
    /// refilled); the wait otherwise.
    pub(crate) fn may_try(&self, address: IpAddr) -> Result<(), Duration> {
        self.failures
            .check(&address.to_string(), FAILED_AUTH_PER_MINUTE)
    }

    /// Counts a failed authentication from `address`.
    pub(crate) fn failed(&self, address: IpAddr) {
        let _ = self
            .failures
            .admit(&address.to_string(), FAILED_AUTH_PER_MINUTE);
    }
}

impl Api {
    /// A read-only session at the tables' latest versions, on the server's
    /// shared memory pool.
    pub(crate) async fn session(&self) -> ApiResult<SessionContext> {
        let runtime = self.guards.runtime(self.config.query)?;
        Ok(fathom_transforms::functions::analyst_session_on(&self.warehouse, runtime).await?)
    }

    /// A slot among the server's `[query] concurrent_queries` for one
    /// caller's query (HTTP and PostgreSQL share them), or 503 `busy` when
    /// none frees up in time.
    pub(crate) async fn query_slot(&self) -> ApiResult<OwnedSemaphorePermit> {
        self.guards.query_slot(self.config.concurrent_queries).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_authentications_run_out_per_address() {
        let guards = Guards::default();
        let address: IpAddr = [127, 0, 0, 7].into();
        let other: IpAddr = [127, 0, 0, 8].into();
        for _ in 0..FAILED_AUTH_PER_MINUTE {
            assert!(guards.may_try(address).is_ok());
            guards.failed(address);
        }
        let wait = guards.may_try(address).expect_err("budget spent");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(3));
        assert!(guards.may_try(other).is_ok());
    }
}
