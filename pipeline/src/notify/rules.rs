//! `[[alerts.rules]]`: which events go to which channels — filtered by
//! kind, team, severity and size — and when: quiet hours (UTC) hold an
//! alert until they end, and a rate limit per rule and channel holds the
//! ones over it for the next hour. Held alerts wait in the outbox; none is
//! dropped.

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::NotifyError;
use super::events::{Event, EventKind, Severity};

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its name (in the outbox and in messages).
    pub name: String,
    /// The channels it sends to.
    pub channels: Vec<String>,
    /// The kinds of event it takes (`anomaly`, `suspect_deployment`,
    /// `cost_change`, `dora_tier_drop`, `source_degraded`); empty: all.
    #[serde(default)]
    pub kinds: Vec<EventKind>,
    /// Only events concerning these teams (group refs; a team's sub-teams
    /// included); empty: every event.
    #[serde(default)]
    pub teams: Vec<String>,
    /// The least severity it takes. Default `info` (all).
    #[serde(default)]
    pub min_severity: Severity,
    /// Only events at least this large (anomalies' and cost changes'
    /// impact, in their unit); events without a size pass. Default 0.
    #[serde(default)]
    pub min_impact: f64,
    /// Only anomalies scoring at least this (0.5 is the detector's
    /// threshold). Default 0.
    #[serde(default)]
    pub min_score: f64,
    /// Hours (UTC) when the rule sends nothing, e.g. `22:00-07:00`; what it
    /// holds is sent when they end.
    #[serde(default)]
    pub quiet_hours: Option<String>,
    /// At most this many messages an hour to each channel; the rest wait
    /// for the next hour. Default: no limit.
    #[serde(default)]
    pub max_per_hour: Option<u32>,
}

/// Quiet hours: from `start` to `end`, wrapping past midnight when `end`
/// is earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    /// `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Self, NotifyError> {
        let bad = || {
            NotifyError::Config(format!(
                "quiet_hours `{text}`: expected `HH:MM-HH:MM` (UTC), e.g. `22:00-07:00`"
            ))
        };
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(bad());
        }
        Ok(Self { start, end })
    }

    /// When the quiet hours around `now` end, if `now` is in them.
    pub fn ends_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let time = now.time().with_nanosecond(0).unwrap_or(now.time());
        let quiet = if self.start < self.end {
            time >= self.start && time < self.end
        } else {
            time >= self.start || time < self.end
        };
        if !quiet {
            return None;
        }
        let today_end = now.date_naive().and_time(self.end).and_utc();
        Some(if today_end > now {
            today_end
        } else {
            today_end + Duration::days(1)
        })
    }
}

impl RuleConfig {
    /// A rule sending every event to `channels`, with no filter or hold.
    pub fn new(name: &str, channels: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            channels,
            kinds: Vec::new(),
            teams: Vec::new(),
            min_severity: Severity::Info,
            min_impact: 0.0,
            min_score: 0.0,
            quiet_hours: None,
            max_per_hour: None,
        }
    }

    /// Whether the rule takes `event`.
    pub fn takes(&self, event: &Event) -> bool {
        // Digests go to `[alerts.digest] channels`, never through rules.
        if event.kind == EventKind::Digest {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&event.kind) {
            return false;
        }
        if event.severity < self.min_severity {
            return false;
        }
        if event.impact.is_some_and(|i| i.abs() < self.min_impact) {
            return false;
        }
        if event.score.is_some_and(|s| s < self.min_score) {
            return false;
        }
        self.teams.is_empty() || self.teams.iter().any(|t| event.teams.contains(t))
    }

    /// Checks what can be checked without the channels.
    pub fn check(&self) -> Result<(), NotifyError> {
        if self.channels.is_empty() {
            return Err(NotifyError::Config(format!(
                "rule `{}` sends to no channel: set `channels`",
                self.name
            )));
        }
        if let Some(quiet) = &self.quiet_hours {
            QuietHours::parse(quiet)?;
        }
        if self.max_per_hour == Some(0) {
            return Err(NotifyError::Config(format!(
                "rule `{}`: max_per_hour = 0 would never send; remove the rule instead",
                self.name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::at;

    #[test]
    fn quiet_hours_wrap_past_midnight() -> Result<(), NotifyError> {
        let night = QuietHours::parse("22:00-07:00")?;
        assert_eq!(
            night.ends_after(at("2026-03-02T23:30:00Z")),
            Some(at("2026-03-03T07:00:00Z"))
        );
        assert_eq!(
            night.ends_after(at("2026-03-03T06:59:00Z")),
            Some(at("2026-03-03T07:00:00Z"))
        );
        assert_eq!(night.ends_after(at("2026-03-03T07:00:00Z")), None);
        assert_eq!(night.ends_after(at("2026-03-03T12:00:00Z")), None);
        let lunch = QuietHours::parse("12:00-13:30")?;
        assert_eq!(
            lunch.ends_after(at("2026-03-03T12:10:00Z")),
            Some(at("2026-03-03T13:30:00Z"))
        );
        assert_eq!(lunch.ends_after(at("2026-03-03T11:59:00Z")), None);
        assert!(QuietHours::parse("22-7").is_err());
        assert!(QuietHours::parse("07:00-07:00").is_err());
        Ok(())
    }

    #[test]
    fn a_rule_takes_events_by_kind_team_severity_and_size() {
        let event = Event {
            kind: EventKind::Anomaly,
            key: "a1".into(),
            severity: Severity::Warning,
            scope: "component:default/api".into(),
            teams: vec!["group:default/eng".into(), "group:default/payments".into()],
            title: String::new(),
            text: String::new(),
            fields: Vec::new(),
            link: None,
            at: at("2026-03-03T12:00:00Z"),
            impact: Some(-250.0),
            score: Some(0.7),
        };
        let rule = RuleConfig::new("r", vec!["c".into()]);
        assert!(rule.takes(&event));
        let with = |f: &dyn Fn(&mut RuleConfig)| {
            let mut r = rule.clone();
            f(&mut r);
            r.takes(&event)
        };
        assert!(!with(&|r| r.kinds = vec![EventKind::CostChange]));
        assert!(with(&|r| r.kinds = vec![EventKind::Anomaly]));
        assert!(with(&|r| r.teams = vec!["group:default/payments".into()]));
        assert!(!with(&|r| r.teams = vec!["group:default/search".into()]));
        assert!(!with(&|r| r.min_severity = Severity::Critical));
        assert!(with(&|r| r.min_impact = 250.0), "a fall counts by its size");
        assert!(!with(&|r| r.min_impact = 250.01));
        assert!(!with(&|r| r.min_score = 0.8));
    }
}
