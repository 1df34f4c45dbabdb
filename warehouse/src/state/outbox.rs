//! The alert outbox: every alert to deliver is a row, written by the step
//! that detects its event and taken by the delivery loop, so an alert is
//! neither lost when a process dies nor sent twice when an event is
//! detected again.
//!
//! A row is keyed by (rule, channel, event): inserting it again does
//! nothing. The delivery loop claims due rows (`sending`, with this
//! process as owner and a lease); a row whose lease ran out, or whose
//! owner on this host is gone (killed mid-delivery), is claimed again.
//! Every attempt is counted; a refused alert (`failed`) is not retried,
//! and one whose every attempt failed is `dead` — the dead-letter list
//! that `fathom alerts status` and Data health show.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{
    StateDb, host_name, parse_json, parse_optional_timestamp, parse_timestamp, process_alive,
    this_process, timestamp_text, to_json,
};
use crate::{Error, Result};

/// Where an alert is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting until `next_attempt_at`.
    Pending,
    /// Held by a process sending it.
    Sending,
    /// The channel accepted it.
    Delivered,
    /// The channel refused it (not retried: retrying cannot fix it).
    Failed,
    /// Every attempt failed: the dead-letter list.
    Dead,
}

impl DeliveryState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

impl FromStr for DeliveryState {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "sending" => Ok(Self::Sending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            "dead" => Ok(Self::Dead),
            other => Err(Error::CorruptState {
                what: "alert delivery state",
                detail: other.to_owned(),
            }),
        }
    }
}

/// An alert to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The rule that matched (`[[alerts.rules]] name`).
    pub rule: String,
    /// The channel it goes to (`[[alerts.channels]] name`).
    pub channel: String,
    /// The event's stable key (an anomaly id, a deployment id, …).
    pub event_key: String,
    /// The event's kind (`anomaly`, `suspect_deployment`, …).
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The event as the channels render it.
    pub payload: serde_json::Value,
    /// Not sent before this time.
    pub not_before: DateTime<Utc>,
}

/// One alert in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    /// Time-ordered id; also the idempotency key receivers see
    /// (`X-Fathom-Delivery`).
    pub delivery_id: String,
    /// The rule.
    pub rule: String,
    /// The channel.
    pub channel: String,
    /// The event's key.
    pub event_key: String,
    /// The event's kind.
    pub kind: String,
    /// Its severity.
    pub severity: String,
    /// The event.
    pub payload: serde_json::Value,
    /// When it was detected.
    pub created_at: DateTime<Utc>,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: i64,
    /// When it is due (pending) or was last tried.
    pub next_attempt_at: DateTime<Utc>,
    /// What went wrong last, if anything.
    pub last_error: Option<String>,
    /// When the channel accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "delivery_id, rule, channel, event_key, kind, severity, payload, created_at, \
     state, attempts, next_attempt_at, claimed_by, lease_until, last_error, delivered_at";

/// The key that makes (rule, channel, event) unique. The unit separator
/// cannot occur in configured names.
fn dedupe_key(rule: &str, channel: &str, event_key: &str) -> String {
    format!("{rule}\u{1f}{channel}\u{1f}{event_key}")
}

impl StateDb {
    /// Puts an alert in the outbox unless the same rule already sent (or
    /// is sending) the same event to the same channel. Returns whether it
    /// is new.
    pub async fn enqueue_alert(&self, alert: &NewAlert) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO alert_outbox (delivery_id, dedupe_key, rule, channel, event_key, kind, severity, \
             payload, created_at, state, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11) \
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(dedupe_key(&alert.rule, &alert.channel, &alert.event_key))
        .bind(&alert.rule)
        .bind(&alert.channel)
        .bind(&alert.event_key)
        .bind(&alert.kind)
        .bind(&alert.severity)
        .bind(to_json("alert payload", &alert.payload)?)
        .bind(timestamp_text(Utc::now()))
        .bind(DeliveryState::Pending.as_str())
        .bind(timestamp_text(alert.not_before))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether the rule already queued the event for the channel.
    pub async fn alert_queued(&self, rule: &str, channel: &str, event_key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM alert_outbox WHERE dedupe_key = $1")
            .bind(dedupe_key(rule, channel, event_key))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Takes up to `limit` alerts due at `now` for this process, oldest
    /// first, holding each for `lease` (longer than one delivery can
    /// take). Due: pending and past `next_attempt_at`, or sending with the
    /// lease run out or its owner on this host gone.
    pub async fn claim_alerts(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let now_text = timestamp_text(now);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM alert_outbox \
             WHERE (state = $1 AND next_attempt_at <= $2) OR state = $3 \
             ORDER BY next_attempt_at, delivery_id"
        )))
        .bind(DeliveryState::Pending.as_str())
        .bind(&now_text)
        .bind(DeliveryState::Sending.as_str())
        .fetch_all(&self.pool)
        .await?;
        let me = this_process();
        let host = format!("{}:", host_name());
        let mut claimed = Vec::new();
        for row in &rows {
            if claimed.len() >= limit {
                break;
            }
            let entry = entry_row(row)?;
            let owner: Option<String> = row.try_get("claimed_by")?;
            let lease_until: Option<String> = row.try_get("lease_until")?;
            if entry.state == DeliveryState::Sending {
                let expired = lease_until
                    .as_deref()
                    .is_none_or(|l| l <= now_text.as_str());
                let owner_gone = owner
                    .as_deref()
                    .and_then(|o| o.strip_prefix(&host))
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| pid != std::process::id() && !process_alive(pid));
                if !expired && !owner_gone {
                    continue;
                }
            }
            // Taken only if nobody took it since it was read: another
            // replica reading the same row finds it changed.
            let taken = sqlx::query(
                "UPDATE alert_outbox SET state = $1, claimed_by = $2, lease_until = $3 \
                 WHERE delivery_id = $4 AND state = $5 AND attempts = $6 \
                 AND COALESCE(claimed_by, '') = $7",
            )
            .bind(DeliveryState::Sending.as_str())
            .bind(&me)
            .bind(timestamp_text(now + lease))
            .bind(&entry.delivery_id)
            .bind(entry.state.as_str())
            .bind(entry.attempts)
            .bind(owner.unwrap_or_default())
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                claimed.push(OutboxEntry {
                    state: DeliveryState::Sending,
                    ..entry
                });
            }
        }
        Ok(claimed)
    }

    /// The channel accepted the alert.
    pub async fn alert_delivered(&self, delivery_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.settle(delivery_id, DeliveryState::Delivered, at, None, Some(at))
            .await
    }

    /// The attempt failed; try again at `next_at`.
    pub async fn alert_retry(
        &self,
        delivery_id: &str,
        next_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        self.settle(
            delivery_id,
            DeliveryState::Pending,
            next_at,
            Some(error),
            None,
        )
        .await
    }

    /// The alert will not be delivered: refused (`Failed`) or out of
    /// attempts (`Dead`).
    pub async fn alert_given_up(
        &self,
        delivery_id: &str,
        state: DeliveryState,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        self.settle(delivery_id, state, at, Some(error), None).await
    }

    /// Not sent now (quiet hours, the rule's rate limit): due again at
    /// `until`, without counting an attempt.
    pub async fn alert_postponed(
        &self,
        delivery_id: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE alert_outbox SET state = $1, next_attempt_at = $2, last_error = $3, \
             claimed_by = NULL, lease_until = NULL WHERE delivery_id = $4 AND state = $5",
        )
        .bind(DeliveryState::Pending.as_str())
        .bind(timestamp_text(until))
        .bind(reason)
        .bind(delivery_id)
        .bind(DeliveryState::Sending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records an attempt's end: one more attempt, the new state, no owner.
    async fn settle(
        &self,
        delivery_id: &str,
        state: DeliveryState,
        at: DateTime<Utc>,
        error: Option<&str>,
        delivered_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE alert_outbox SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
             last_error = $3, delivered_at = $4, claimed_by = NULL, lease_until = NULL \
             WHERE delivery_id = $5 AND state = $6",
        )
        .bind(state.as_str())
        .bind(timestamp_text(at))
        .bind(error)
        .bind(delivered_at.map(timestamp_text))
        .bind(delivery_id)
        .bind(DeliveryState::Sending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Alerts a rule delivered to a channel since `since` (its rate
    /// limit).
    pub async fn alerts_delivered_since(
        &self,
        rule: &str,
        channel: &str,
        since: DateTime<Utc>,
    ) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM alert_outbox \
             WHERE rule = $1 AND channel = $2 AND delivered_at >= $3",
        )
        .bind(rule)
        .bind(channel)
        .bind(timestamp_text(since))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// The newest alerts, newest first, optionally in one state only.
    pub async fn alert_deliveries(
        &self,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match state {
            Some(state) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM alert_outbox WHERE state = $1 \
                     ORDER BY delivery_id DESC LIMIT $2"
                )))
                .bind(state.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM alert_outbox ORDER BY delivery_id DESC LIMIT $1"
                )))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(entry_row).collect()
    }

    /// How many alerts are in each state.
    pub async fn alert_counts(&self) -> Result<Vec<(DeliveryState, i64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM alert_outbox GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("state")?.parse()?,
                    row.try_get::<i64, _>("n")?,
                ))
            })
            .collect()
    }
}

fn entry_row(row: &sqlx::any::AnyRow) -> Result<OutboxEntry> {
    Ok(OutboxEntry {
        delivery_id: row.try_get("delivery_id")?,
        rule: row.try_get("rule")?,
        channel: row.try_get("channel")?,
        event_key: row.try_get("event_key")?,
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
        payload: parse_json("alert payload", &row.try_get::<String, _>("payload")?)?,
        created_at: parse_timestamp("alert time", &row.try_get::<String, _>("created_at")?)?,
        state: row.try_get::<String, _>("state")?.parse()?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: parse_timestamp(
            "alert due time",
            &row.try_get::<String, _>("next_attempt_at")?,
        )?,
        last_error: row.try_get("last_error")?,
        delivered_at: parse_optional_timestamp(
            "alert delivery time",
            row.try_get("delivered_at")?,
        )?,
    })
}
