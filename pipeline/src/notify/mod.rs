//! The notify stage: after a refresh, the events worth telling someone
//! about ([`events`]) are matched against `[[alerts.rules]]` ([`rules`])
//! and put in the outbox of the state database, one row per rule, channel
//! and event; the delivery loop then sends what is due to its channel
//! ([`channels`]).
//!
//! Guarantees: an alert is delivered at least once and queued once per
//! (rule, channel, event) — detecting again finds the row already there.
//! A failed attempt is retried with exponential backoff and jitter (the
//! platform's own `Retry-After` honoured); a refusal (a 4xx other than
//! 429, a Feishu error code) is recorded and not retried; after
//! `max_attempts` the alert is dead, listed by `fathom alerts status` and
//! on Data health. A process killed mid-delivery leaves its alert
//! claimed; the next process on the host sees the owner gone and sends it
//! (elsewhere, the lease runs out first).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use fathom_ingest::http::HttpPolicy;
use fathom_warehouse::Warehouse;
use fathom_warehouse::state::{DeliveryState, NewAlert, OutboxEntry, StateDb};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub mod channels;
pub mod digest;
pub mod events;
pub mod rules;

use channels::{Channel, ChannelConfig, Message, Outcome};
use events::{Detection, Event, EventKind, Field, Severity};
use rules::{QuietHours, RuleConfig};

/// What went wrong in the notify stage.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `[alerts]` cannot be used as written.
    #[error("[alerts]: {0}")]
    Config(String),
    /// The warehouse or the state database failed. Boxed: storage errors
    /// are large and rare.
    #[error(transparent)]
    Warehouse(Box<fathom_warehouse::Error>),
    /// An outbox row holds something unreadable.
    #[error("alert outbox: {0}")]
    Corrupt(String),
}

impl From<fathom_warehouse::Error> for NotifyError {
    fn from(error: fathom_warehouse::Error) -> Self {
        Self::Warehouse(Box::new(error))
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Base URL of Fathom's dashboards, for links in messages (none: no
    /// links).
    pub dashboard_url: Option<String>,
    /// Events older than this are not alerted on, so a first run does
    /// not send a year of history. Default 7.
    pub lookback_days: u32,
    /// A source without a successful run for this many hours is alerted
    /// as stale. Default 24; 0 turns it off.
    pub stale_after_hours: u32,
    /// Attempts before an alert is dead. Default 8.
    pub max_attempts: u32,
    /// First wait before a retry, seconds; it doubles per attempt, with
    /// jitter. Default 30.
    pub retry_initial_seconds: u64,
    /// Longest wait between attempts, seconds. Default 3600.
    pub retry_max_seconds: u64,
    /// How long a process holds an alert it is sending, seconds (longer
    /// than a delivery takes). Default 300.
    pub lease_seconds: u64,
    /// Timeouts and quick retries within one attempt.
    pub http: HttpPolicy,
    /// Where alerts go.
    pub channels: Vec<ChannelConfig>,
    /// What goes where.
    pub rules: Vec<RuleConfig>,
    /// The weekly digest.
    pub digest: digest::DigestConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            dashboard_url: None,
            lookback_days: 7,
            stale_after_hours: 24,
            max_attempts: 8,
            retry_initial_seconds: 30,
            retry_max_seconds: 3600,
            lease_seconds: 300,
            http: HttpPolicy {
                timeout_seconds: 10.0,
                max_retries: 2,
                max_rate_limit_wait_seconds: 10.0,
                ..HttpPolicy::default()
            },
            channels: Vec::new(),
            rules: Vec::new(),
            digest: digest::DigestConfig::default(),
        }
    }
}

impl AlertsConfig {
    /// Checks names and references without reading any secret.
    pub fn check(&self) -> Result<(), NotifyError> {
        let mut names = std::collections::BTreeSet::new();
        for channel in &self.channels {
            if channel.name.is_empty() || channel.name.contains('\u{1f}') {
                return Err(NotifyError::Config("a channel needs a `name`".to_owned()));
            }
            if !names.insert(channel.name.as_str()) {
                return Err(NotifyError::Config(format!(
                    "two channels are named `{}`",
                    channel.name
                )));
            }
        }
        let mut rule_names = std::collections::BTreeSet::new();
        for rule in &self.rules {
            if rule.name.is_empty()
                || rule.name.contains('\u{1f}')
                || rule.name == TEST_RULE
                || rule.name == DIGEST_RULE
            {
                return Err(NotifyError::Config(format!(
                    "rule name `{}` cannot be used",
                    rule.name
                )));
            }
            if !rule_names.insert(rule.name.as_str()) {
                return Err(NotifyError::Config(format!(
                    "two rules are named `{}`",
                    rule.name
                )));
            }
            rule.check()?;
            if let Some(missing) = rule.channels.iter().find(|c| !names.contains(c.as_str())) {
                return Err(NotifyError::Config(format!(
                    "rule `{}` sends to channel `{missing}`, which is not in [[alerts.channels]]",
                    rule.name
                )));
            }
        }
        if let Some(missing) = self
            .digest
            .channels
            .iter()
            .find(|c| !names.contains(c.as_str()))
        {
            return Err(NotifyError::Config(format!(
                "[alerts.digest] sends to channel `{missing}`, which is not in [[alerts.channels]]"
            )));
        }
        self.digest.due_slot(Utc::now())?;
        if self.max_attempts == 0 {
            return Err(NotifyError::Config(
                "max_attempts must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The rule name of `fathom alerts test` messages.
pub const TEST_RULE: &str = "test";

/// The rule name digests are queued under.
pub const DIGEST_RULE: &str = "digest";

/// What one notify run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NotifyReport {
    /// Events found.
    pub events: usize,
    /// Alerts newly queued (rule × channel × event not seen before).
    pub queued: usize,
    /// Delivered now.
    pub delivered: usize,
    /// To be tried again.
    pub retrying: usize,
    /// Held by quiet hours or a rate limit.
    pub held: usize,
    /// Refused by the channel (not retried).
    pub failed: usize,
    /// Out of attempts.
    pub dead: usize,
    /// What went wrong, per alert.
    pub errors: Vec<String>,
}

/// The notify stage over one warehouse and state database.
#[derive(Debug)]
pub struct Notifier<'a> {
    config: &'a AlertsConfig,
    state: &'a StateDb,
    channels: BTreeMap<String, Channel>,
    quiet: BTreeMap<String, QuietHours>,
}

impl<'a> Notifier<'a> {
    /// Checks the configuration and opens every channel (reading their
    /// URLs and secrets).
    pub fn new(config: &'a AlertsConfig, state: &'a StateDb) -> Result<Self, NotifyError> {
        config.check()?;
        let mut channels = BTreeMap::new();
        for channel in &config.channels {
            channels.insert(channel.name.clone(), Channel::open(channel, &config.http)?);
        }
        let mut quiet = BTreeMap::new();
        for rule in &config.rules {
            if let Some(hours) = &rule.quiet_hours {
                quiet.insert(rule.name.clone(), QuietHours::parse(hours)?);
            }
        }
        Ok(Self {
            config,
            state,
            channels,
            quiet,
        })
    }

    /// Reads the events at `now` and queues each for every rule and
    /// channel that takes it. Returns (events, newly queued).
    pub async fn queue(
        &self,
        warehouse: &Warehouse,
        sources: &[String],
        now: DateTime<Utc>,
    ) -> Result<(usize, usize), NotifyError> {
        let runs = self.state.runs(500).await?;
        let freshness = fathom_warehouse::state::source_freshness(&runs, sources, now);
        let detection = Detection {
            dashboard_url: self.config.dashboard_url.as_deref(),
            lookback_days: self.config.lookback_days,
            stale_after_hours: (self.config.stale_after_hours > 0)
                .then_some(self.config.stale_after_hours),
            sources: &freshness,
        };
        let found = events::detect(warehouse, &detection, now).await?;
        let mut queued = 0;
        for event in &found {
            queued += self.queue_event(event, now).await?;
        }
        queued += self.queue_digests(warehouse, now).await?;
        Ok((found.len(), queued))
    }

    /// Queues this week's digests once the configured day and time have
    /// come (each once: keyed by scope and week). Returns how many were
    /// new.
    pub async fn queue_digests(
        &self,
        warehouse: &Warehouse,
        now: DateTime<Utc>,
    ) -> Result<usize, NotifyError> {
        let config = &self.config.digest;
        if config.channels.is_empty() {
            return Ok(0);
        }
        let slot = config.due_slot(now)?;
        let mut queued = 0;
        for scope in config.scopes() {
            let key = format!(
                "{}|{scope}|{}",
                EventKind::Digest.as_str(),
                slot.format("%Y-%m-%d")
            );
            let mut pending = Vec::new();
            for channel in &config.channels {
                if !self.state.alert_queued(DIGEST_RULE, channel, &key).await? {
                    pending.push(channel);
                }
            }
            if pending.is_empty() {
                continue;
            }
            let digest = digest::digest(
                warehouse,
                &scope,
                slot,
                self.config.dashboard_url.as_deref(),
            )
            .await?;
            let payload = serde_json::to_value(digest.event())
                .map_err(|e| NotifyError::Corrupt(e.to_string()))?;
            for channel in pending {
                let alert = NewAlert {
                    rule: DIGEST_RULE.to_owned(),
                    channel: channel.clone(),
                    event_key: key.clone(),
                    kind: EventKind::Digest.as_str().to_owned(),
                    severity: Severity::Info.as_str().to_owned(),
                    payload: payload.clone(),
                    not_before: now,
                };
                if self.state.enqueue_alert(&alert).await? {
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// Queues one event for every rule and channel that takes it; returns
    /// how many alerts were new.
    pub async fn queue_event(
        &self,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<usize, NotifyError> {
        let payload =
            serde_json::to_value(event).map_err(|e| NotifyError::Corrupt(e.to_string()))?;
        let mut queued = 0;
        for rule in self.config.rules.iter().filter(|r| r.takes(event)) {
            for channel in &rule.channels {
                let alert = NewAlert {
                    rule: rule.name.clone(),
                    channel: channel.clone(),
                    event_key: format!("{}|{}", event.kind.as_str(), event.key),
                    kind: event.kind.as_str().to_owned(),
                    severity: event.severity.as_str().to_owned(),
                    payload: payload.clone(),
                    not_before: now,
                };
                if self.state.enqueue_alert(&alert).await? {
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// Sends every alert due at `now`, and records how each attempt ended.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> Result<NotifyReport, NotifyError> {
        let mut report = NotifyReport::default();
        let lease = Duration::seconds(i64::try_from(self.config.lease_seconds).unwrap_or(300));
        loop {
            let claimed = self.state.claim_alerts(now, lease, 50).await?;
            if claimed.is_empty() {
                break;
            }
            for entry in &claimed {
                self.deliver(entry, now, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn deliver(
        &self,
        entry: &OutboxEntry,
        now: DateTime<Utc>,
        report: &mut NotifyReport,
    ) -> Result<(), NotifyError> {
        let state = self.state;
        let Some(channel) = self.channels.get(&entry.channel) else {
            let error = format!(
                "channel `{}` is no longer configured; the alert is kept as dead",
                entry.channel
            );
            state
                .alert_given_up(&entry.delivery_id, DeliveryState::Dead, now, &error)
                .await?;
            report.dead += 1;
            report.errors.push(error);
            return Ok(());
        };
        if let Some(until) = self.held_until(entry, now).await? {
            state
                .alert_postponed(&entry.delivery_id, until.0, &until.1)
                .await?;
            report.held += 1;
            return Ok(());
        }
        let event: Event = serde_json::from_value(entry.payload.clone()).map_err(|e| {
            NotifyError::Corrupt(format!("alert {} payload: {e}", entry.delivery_id))
        })?;
        let message = Message {
            delivery_id: &entry.delivery_id,
            rule: &entry.rule,
            event: &event,
        };
        let outcome = channel.send(&message, Utc::now()).await;
        let finished = Utc::now().max(now);
        match outcome {
            Outcome::Delivered => {
                state.alert_delivered(&entry.delivery_id, finished).await?;
                report.delivered += 1;
            }
            Outcome::Refused(error) => {
                let error = format!("{}: refused: {error}", entry.channel);
                state
                    .alert_given_up(&entry.delivery_id, DeliveryState::Failed, finished, &error)
                    .await?;
                report.failed += 1;
                report.errors.push(error);
            }
            Outcome::Retry { error, after } => {
                let error = format!("{}: {error}", entry.channel);
                let attempts = entry.attempts + 1;
                if attempts >= i64::from(self.config.max_attempts) {
                    state
                        .alert_given_up(&entry.delivery_id, DeliveryState::Dead, finished, &error)
                        .await?;
                    report.dead += 1;
                } else {
                    let wait = after
                        .and_then(|a| Duration::from_std(a).ok())
                        .unwrap_or_else(|| self.backoff(attempts));
                    state
                        .alert_retry(&entry.delivery_id, finished + wait, &error)
                        .await?;
                    report.retrying += 1;
                }
                report.errors.push(error);
            }
        }
        Ok(())
    }

    /// Whether quiet hours or the rate limit hold the alert, until when
    /// and why.
    async fn held_until(
        &self,
        entry: &OutboxEntry,
        now: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, String)>, NotifyError> {
        if let Some(end) = self.quiet.get(&entry.rule).and_then(|q| q.ends_after(now)) {
            return Ok(Some((end, "held: quiet hours".to_owned())));
        }
        let limit = self
            .config
            .rules
            .iter()
            .find(|r| r.name == entry.rule)
            .and_then(|r| r.max_per_hour);
        if let Some(limit) = limit {
            let sent = self
                .state
                .alerts_delivered_since(&entry.rule, &entry.channel, now - Duration::hours(1))
                .await?;
            if sent >= i64::from(limit) {
                return Ok(Some((
                    now + Duration::minutes(10),
                    format!("held: rate limit of {limit} an hour"),
                )));
            }
        }
        Ok(None)
    }

    /// Exponential backoff with full jitter: half to all of
    /// `initial × 2^(attempts−1)`, at most `retry_max_seconds`.
    fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let base = self
            .config
            .retry_initial_seconds
            .max(1)
            .saturating_mul(1 << exponent)
            .min(self.config.retry_max_seconds.max(1));
        let millis = base.saturating_mul(1000);
        let jittered = rand::rng().random_range(millis / 2..=millis);
        Duration::milliseconds(i64::try_from(jittered).unwrap_or(i64::MAX))
    }

    /// Sends a test message to `channel` now (not through the outbox) and
    /// says how it went.
    pub async fn send_test(
        &self,
        channel: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome, NotifyError> {
        let Some(target) = self.channels.get(channel) else {
            return Err(NotifyError::Config(format!(
                "no channel `{channel}`; configured: {}",
                self.channels.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let event = Event {
            kind: EventKind::SourceDegraded,
            key: format!("test-{}", now.timestamp()),
            severity: Severity::Info,
            scope: "fathom".to_owned(),
            teams: Vec::new(),
            title: format!("Test message from Fathom to {channel}"),
            text: "If you can read this, alerts reach this channel.".to_owned(),
            fields: vec![Field {
                name: "Channel".to_owned(),
                value: format!("{channel} ({})", target.kind.as_str()),
            }],
            link: self.config.dashboard_url.clone(),
            at: now,
            impact: None,
            score: None,
        };
        let delivery_id = format!("test-{}", uuid::Uuid::now_v7());
        let message = Message {
            delivery_id: &delivery_id,
            rule: TEST_RULE,
            event: &event,
        };
        Ok(target.send(&message, now).await)
    }
}

/// A time from RFC 3339 text, for tests.
#[cfg(test)]
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
