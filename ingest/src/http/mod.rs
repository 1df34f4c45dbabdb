//! The HTTP policy every upstream client shares: timeouts, retries with
//! exponential backoff and jitter, the upstream's rate-limit headers, a
//! concurrency limit, a circuit breaker and conditional requests.
//!
//! Retried: connection failures, timeouts, resets, bodies cut short, 5xx,
//! 429 and rate-limit 403s. Not retried: other 4xx (credentials, missing
//! resources) — retrying cannot fix them, and the message says what to.
//! Rate-limit waits longer than the policy allows fail the request instead
//! of stalling the run; the source is then reported degraded.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// How an upstream announces when its rate limit resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetStyle {
    /// `X-RateLimit-Reset` is an epoch second (GitHub, Sentry).
    EpochSeconds,
    /// `X-RateLimit-Reset` is seconds from now (Datadog).
    SecondsFromNow,
}

/// Retry, timeout and concurrency settings of one upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPolicy {
    /// Whole-request timeout, seconds. Default 30.
    pub timeout_seconds: f64,
    /// Retries after the first attempt. Default 5.
    pub max_retries: u32,
    /// First backoff, milliseconds; doubles per retry, with jitter. Default 200.
    pub backoff_initial_ms: u64,
    /// Longest backoff, milliseconds. Default 10000.
    pub backoff_max_ms: u64,
    /// Longest wait for a rate limit to reset before giving up on the
    /// request, seconds. Default 120.
    pub max_rate_limit_wait_seconds: f64,
    /// Requests in flight at once. Default 4.
    pub max_concurrency: usize,
    /// Consecutive failed requests (after their retries) that open the
    /// circuit. Default 5.
    pub breaker_threshold: u32,
    /// How long an open circuit refuses requests before one probe, seconds.
    /// Default 30.
    pub breaker_cooldown_seconds: f64,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            timeout_seconds: 30.0,
            max_retries: 5,
            backoff_initial_ms: 200,
            backoff_max_ms: 10_000,
            max_rate_limit_wait_seconds: 120.0,
            max_concurrency: 4,
            breaker_threshold: 5,
            breaker_cooldown_seconds: 30.0,
        }
    }
}

/// Why a request failed for good.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// The upstream answered with an error that retrying cannot fix.
    #[error("{upstream} answered HTTP {status} for {url}: {message}")]
    Status {
        /// Upstream name.
        upstream: String,
        /// Status code.
        status: u16,
        /// The request URL.
        url: String,
        /// The upstream's own message, shortened.
        message: String,
    },
    /// Every attempt failed.
    #[error("{upstream}: {url} failed after {attempts} attempts: {last_error}")]
    Exhausted {
        /// Upstream name.
        upstream: String,
        /// The request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
    /// The rate limit resets later than the policy is willing to wait.
    #[error(
        "{upstream} rate limit exhausted until {wait_seconds:.0}s from now (longer than max_rate_limit_wait_seconds)"
    )]
    RateLimited {
        /// Upstream name.
        upstream: String,
        /// How long it would have taken.
        wait_seconds: f64,
    },
    /// The circuit is open after repeated failures.
    #[error("{upstream} is failing repeatedly; requests paused (circuit open)")]
    CircuitOpen {
        /// Upstream name.
        upstream: String,
    },
    /// The request could not be built (a bad URL or header in config).
    #[error("{upstream}: invalid request: {message}")]
    Invalid {
        /// Upstream name.
        upstream: String,
        /// What is wrong.
        message: String,
    },
}

impl HttpError {
    /// Whether this error means the upstream (not one request) is unusable
    /// right now, so the source should stop and report itself degraded.
    pub fn is_upstream_down(&self) -> bool {
        matches!(
            self,
            Self::CircuitOpen { .. } | Self::RateLimited { .. } | Self::Exhausted { .. }
        ) || matches!(
            self,
            Self::Status {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// A request body with its content type and the headers that belong to
/// it (a signature over these very bytes, a delivery id).
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body, sent as is.
    pub bytes: bytes::Bytes,
    /// Headers of this request only.
    pub headers: Vec<(String, String)>,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Status (2xx, or 304 for a conditional request that matched).
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body (empty for 304).
    pub body: bytes::Bytes,
}

impl Fetched {
    /// Whether the upstream said nothing changed since the given ETag.
    pub fn not_modified(&self) -> bool {
        self.status == 304
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Counters of one client, for the run report.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests sent (attempts, including retries).
    pub requests: AtomicU64,
    /// Retries.
    pub retries: AtomicU64,
    /// 304 answers to conditional requests.
    pub not_modified: AtomicU64,
    /// Seconds spent waiting for rate limits, in milliseconds.
    pub rate_limit_wait_ms: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// A short-lived bearer token and when it stops working.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The token.
    pub token: String,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
    /// Requests spent minting it (counted in the client's statistics).
    pub requests: u64,
}

/// What [`TokenSource::mint`] returns.
pub type MintFuture<'a> = Pin<Box<dyn Future<Output = Result<MintedToken, HttpError>> + Send + 'a>>;

/// Mints bearer tokens that expire during a run (GitHub App installation
/// tokens live an hour); the client renews them before they expire and
/// after a 401.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A fresh token.
    fn mint(&self) -> MintFuture<'_>;
}

/// A token is renewed when it has less than this left, so a request never
/// starts with a token about to expire.
const TOKEN_RENEW_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Debug)]
struct Minted {
    source: Arc<dyn TokenSource>,
    current: tokio::sync::Mutex<Option<(HeaderValue, DateTime<Utc>)>>,
}

/// An HTTP client for one upstream, with its policy and credentials.
#[derive(Debug)]
pub struct HttpClient {
    upstream: String,
    client: reqwest::Client,
    policy: HttpPolicy,
    headers: HeaderMap,
    minted: Option<Minted>,
    reset_style: ResetStyle,
    permits: Semaphore,
    breaker: Mutex<Breaker>,
    /// Earliest instant the next request may go out (rate limit exhausted).
    paused_until: Mutex<Option<Instant>>,
    /// Request counters.
    pub stats: HttpStats,
}

enum Attempt {
    Done(Fetched),
    Retry {
        error: String,
        wait: Option<Duration>,
    },
    Fail(HttpError),
}

impl HttpClient {
    /// A client for `upstream` sending `headers` (credentials) on every
    /// request.
    pub fn new(
        upstream: &str,
        policy: HttpPolicy,
        headers: &[(&str, String)],
        reset_style: ResetStyle,
    ) -> Result<Self, HttpError> {
        let invalid = |message: String| HttpError::Invalid {
            upstream: upstream.to_owned(),
            message,
        };
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
            value.set_sensitive(true);
            header_map.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(policy.timeout_seconds.max(0.1)))
            .connect_timeout(Duration::from_secs_f64(
                policy.timeout_seconds.clamp(0.1, 10.0),
            ))
            .user_agent(concat!("fathom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            upstream: upstream.to_owned(),
            client,
            permits: Semaphore::new(policy.max_concurrency.max(1)),
            policy,
            headers: header_map,
            minted: None,
            reset_style,
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            paused_until: Mutex::new(None),
            stats: HttpStats::default(),
        })
    }

    /// Authenticates every request with tokens from `source` (in the
    /// `Authorization: Bearer` header), minted on first use and renewed
    /// before they expire.
    pub fn with_token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.minted = Some(Minted {
            source,
            current: tokio::sync::Mutex::new(None),
        });
        self
    }

    /// The current minted token, renewed when close to expiry.
    async fn bearer(&self) -> Result<Option<HeaderValue>, HttpError> {
        let Some(minted) = &self.minted else {
            return Ok(None);
        };
        // Held across the mint, so concurrent requests wait for one token
        // instead of each minting their own.
        let mut current = minted.current.lock().await;
        if let Some((value, expires_at)) = current.as_ref()
            && *expires_at - Utc::now() > TOKEN_RENEW_MARGIN
        {
            return Ok(Some(value.clone()));
        }
        let token = minted.source.mint().await?;
        self.stats
            .requests
            .fetch_add(token.requests, Ordering::Relaxed);
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.token)).map_err(|_| {
                HttpError::Invalid {
                    upstream: self.upstream.clone(),
                    message: "the minted token is not a valid header value".to_owned(),
                }
            })?;
        value.set_sensitive(true);
        *current = Some((value.clone(), token.expires_at));
        Ok(Some(value))
    }

    /// Forgets the minted token after the upstream refused it.
    async fn forget_bearer(&self) {
        if let Some(minted) = &self.minted {
            *minted.current.lock().await = None;
        }
    }

    /// The upstream's name, for messages.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// `GET url`, conditional on `etag` when given.
    pub async fn get(&self, url: &str, etag: Option<&str>) -> Result<Fetched, HttpError> {
        self.send(reqwest::Method::GET, url, etag, None).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Fetched, HttpError> {
        let payload = Payload {
            content_type: "application/json",
            bytes: bytes::Bytes::from(body.to_string()),
            headers: Vec::new(),
        };
        self.send(reqwest::Method::POST, url, None, Some(&payload))
            .await
    }

    /// `POST url` with `payload`: its exact bytes (a signature over them
    /// stays valid) and its own headers beside the client's.
    pub async fn post(&self, url: &str, payload: &Payload) -> Result<Fetched, HttpError> {
        self.send(reqwest::Method::POST, url, None, Some(payload))
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        etag: Option<&str>,
        body: Option<&Payload>,
    ) -> Result<Fetched, HttpError> {
        self.admit()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HttpError::Invalid {
                upstream: self.upstream.clone(),
                message: "client closed".to_owned(),
            })?;
        let mut last_error = String::new();
        let attempts = self.policy.max_retries + 1;
        for attempt in 0..attempts {
            self.wait_for_pause().await?;
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let bearer = match self.bearer().await {
                Ok(bearer) => bearer,
                Err(error) => {
                    self.record(!error.is_upstream_down());
                    return Err(error);
                }
            };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            match self.attempt(method.clone(), url, etag, body, bearer).await {
                Attempt::Done(fetched) => {
                    self.record(true);
                    return Ok(fetched);
                }
                Attempt::Fail(error) => {
                    // A refused request proves the upstream is up; only
                    // credential failures count against it.
                    self.record(!error.is_upstream_down());
                    return Err(error);
                }
                Attempt::Retry { error, wait } => {
                    last_error = error;
                    if attempt + 1 < attempts {
                        let wait = match wait {
                            Some(wait) => self.rate_limit_wait(wait)?,
                            None => self.backoff(attempt),
                        };
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        self.record(false);
        Err(HttpError::Exhausted {
            upstream: self.upstream.clone(),
            url: url.to_owned(),
            attempts,
            last_error,
        })
    }

    async fn attempt(
        &self,
        method: reqwest::Method,
        url: &str,
        etag: Option<&str>,
        body: Option<&Payload>,
        bearer: Option<HeaderValue>,
    ) -> Attempt {
        let mut request = self
            .client
            .request(method, url)
            .headers(self.headers.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(bearer) = bearer {
            request = request.header(reqwest::header::AUTHORIZATION, bearer);
        }
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, body.content_type)
                .body(body.bytes.clone());
            for (name, value) in &body.headers {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Attempt::Fail(HttpError::Invalid {
                    upstream: self.upstream.clone(),
                    message: format!("{url}: {e}"),
                });
            }
            Err(e) => {
                return Attempt::Retry {
                    error: describe(&e),
                    wait: None,
                };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.note_rate_limit(&headers);
        if status == 304 {
            self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
            return Attempt::Done(Fetched {
                status,
                headers,
                body: bytes::Bytes::new(),
            });
        }
        // The body is read in full before the answer counts: a connection
        // cut mid-body is a failed attempt, never half a page.
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return Attempt::Retry {
                    error: format!("HTTP {status}, body cut short: {}", describe(&e)),
                    wait: None,
                };
            }
        };
        if (200..300).contains(&status) {
            return Attempt::Done(Fetched {
                status,
                headers,
                body,
            });
        }
        let message = error_message(&body);
        let rate_limited = status == 429
            || (status == 403
                && (headers.contains_key(reqwest::header::RETRY_AFTER)
                    || header_text(&headers, "x-ratelimit-remaining") == Some("0")));
        if rate_limited {
            return Attempt::Retry {
                error: format!("HTTP {status} (rate limited): {message}"),
                wait: Some(self.rate_limit_delay(&headers)),
            };
        }
        if status == 401 && self.minted.is_some() {
            // A minted token can be revoked or expire early: mint another
            // and try again (bounded by the retry count).
            self.forget_bearer().await;
            return Attempt::Retry {
                error: format!("HTTP 401: {message}"),
                wait: None,
            };
        }
        if status >= 500 || status == 408 {
            return Attempt::Retry {
                error: format!("HTTP {status}: {message}"),
                wait: None,
            };
        }
        Attempt::Fail(HttpError::Status {
            upstream: self.upstream.clone(),
            status,
            url: url.to_owned(),
            message: hint(status, &message),
        })
    }

    /// How long the upstream asks us to wait: `Retry-After` first, then its
    /// reset header, else a minute (GitHub's advice for secondary limits).
    fn rate_limit_delay(&self, headers: &HeaderMap) -> Duration {
        if let Some(seconds) =
            header_text(headers, "retry-after").and_then(|v| v.trim().parse::<f64>().ok())
        {
            return Duration::from_secs_f64(seconds.max(0.0));
        }
        if let Some(wait) = self.reset_in(headers) {
            return wait;
        }
        Duration::from_secs(60)
    }

    fn reset_in(&self, headers: &HeaderMap) -> Option<Duration> {
        let reset = header_text(headers, "x-ratelimit-reset")?
            .trim()
            .parse::<f64>()
            .ok()?;
        let seconds = match self.reset_style {
            ResetStyle::SecondsFromNow => reset,
            ResetStyle::EpochSeconds => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                reset - now
            }
        };
        Some(Duration::from_secs_f64(seconds.max(0.0)))
    }

    /// After any answer: when the budget is spent, hold further requests
    /// until it resets rather than burning them on 403s.
    fn note_rate_limit(&self, headers: &HeaderMap) {
        if header_text(headers, "x-ratelimit-remaining") != Some("0") {
            return;
        }
        if let Some(wait) = self.reset_in(headers)
            && let Ok(mut paused) = self.paused_until.lock()
        {
            *paused = Some(Instant::now() + wait);
        }
    }

    async fn wait_for_pause(&self) -> Result<(), HttpError> {
        let until = self.paused_until.lock().ok().and_then(|mut p| p.take());
        if let Some(until) = until {
            let wait = until.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                let wait = self.rate_limit_wait(wait)?;
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }

    fn rate_limit_wait(&self, wait: Duration) -> Result<Duration, HttpError> {
        if wait.as_secs_f64() > self.policy.max_rate_limit_wait_seconds {
            return Err(HttpError::RateLimited {
                upstream: self.upstream.clone(),
                wait_seconds: wait.as_secs_f64(),
            });
        }
        self.stats
            .rate_limit_wait_ms
            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
        Ok(wait)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .policy
            .backoff_initial_ms
            .saturating_mul(1 << attempt.min(16))
            .min(self.policy.backoff_max_ms);
        // Full jitter: clients that failed together do not retry together.
        let jittered = rand::rng().random_range(base / 2..=base.max(1));
        Duration::from_millis(jittered)
    }

    /// Refuses the request while the circuit is open; lets one probe
    /// through when the cooldown has passed.
    fn admit(&self) -> Result<(), HttpError> {
        let Ok(mut breaker) = self.breaker.lock() else {
            return Ok(());
        };
        match *breaker {
            Breaker::Closed { .. } => Ok(()),
            Breaker::Open { until } if Instant::now() >= until => {
                *breaker = Breaker::HalfOpen;
                Ok(())
            }
            Breaker::Open { .. } | Breaker::HalfOpen => Err(HttpError::CircuitOpen {
                upstream: self.upstream.clone(),
            }),
        }
    }

    fn record(&self, success: bool) {
        let Ok(mut breaker) = self.breaker.lock() else {
            return;
        };
        *breaker = match (*breaker, success) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false)
                if failures + 1 < self.policy.breaker_threshold =>
            {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => Breaker::Open {
                until: Instant::now()
                    + Duration::from_secs_f64(self.policy.breaker_cooldown_seconds),
            },
        };
    }

    /// Whether the circuit is open (the source is degraded).
    pub fn is_open(&self) -> bool {
        self.breaker
            .lock()
            .map(|b| matches!(*b, Breaker::Open { .. }))
            .unwrap_or(false)
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "body failed"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

/// The upstream's own error message, from the usual JSON shapes.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            [
                v.pointer("/error/message"),
                v.pointer("/message"),
                v.pointer("/detail"),
                v.pointer("/errors/0"),
                v.pointer("/error"),
            ]
            .into_iter()
            .flatten()
            .find_map(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| text.chars().take(200).collect());
    message.chars().take(300).collect()
}

/// What the user should do about a refusal.
fn hint(status: u16, message: &str) -> String {
    match status {
        401 => format!("{message} — the credentials were refused; check the source's token"),
        403 => format!("{message} — the credentials lack permission for this resource"),
        404 => format!("{message} — check the source's base_url and names"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
