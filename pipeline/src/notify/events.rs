//! The events alerts are about, read from the warehouse and the run ledger
//! as they stand after a refresh: open anomalies, suspect deployments,
//! significant monthly cost changes, DORA tiers that dropped week over
//! week, and degraded or stale sources.
//!
//! Each event has a stable key (the same event read again has the same
//! key), which the outbox makes unique per rule and channel: detecting is
//! repeatable, notifying happens once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query, read_only_session, text_rows};
use fathom_warehouse::state::SourceFreshness;
use serde::{Deserialize, Serialize};

use super::NotifyError;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An open anomaly of a cost or operational series.
    Anomaly,
    /// A deployment a signal timed to it degraded after.
    SuspectDeployment,
    /// A significant change of a scope's cost, month over month.
    CostChange,
    /// A team's overall DORA tier dropped from one week to the next.
    DoraTierDrop,
    /// A source whose last run failed, or with no success for too long.
    SourceDegraded,
    /// The weekly digest (`[alerts.digest]`, not matched by rules).
    Digest,
}

/// Every kind rules match, in the order of the docs.
pub const EVENT_KINDS: [EventKind; 5] = [
    EventKind::Anomaly,
    EventKind::SuspectDeployment,
    EventKind::CostChange,
    EventKind::DoraTierDrop,
    EventKind::SourceDegraded,
];

impl EventKind {
    /// Its name in configuration and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anomaly => "anomaly",
            Self::SuspectDeployment => "suspect_deployment",
            Self::CostChange => "cost_change",
            Self::DoraTierDrop => "dora_tier_drop",
            Self::SourceDegraded => "source_degraded",
            Self::Digest => "digest",
        }
    }
}

/// How much an event matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    #[default]
    Info,
    /// Worth looking at.
    Warning,
    /// Worth acting on now.
    Critical,
}

impl Severity {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One labelled value of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// The label.
    pub name: String,
    /// The value, as shown.
    pub value: String,
}

fn field(name: &str, value: impl Into<String>) -> Field {
    Field {
        name: name.to_owned(),
        value: value.into(),
    }
}

/// An event, as every channel renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What it is about.
    pub kind: EventKind,
    /// Stable key: the same event read again has the same key.
    pub key: String,
    /// How much it matters.
    pub severity: Severity,
    /// The entity ref it concerns, `org`, or a source's name.
    pub scope: String,
    /// The teams (group refs) it concerns: the component's or group's own
    /// group and every group above it. Empty for the organisation.
    pub teams: Vec<String>,
    /// One line.
    pub title: String,
    /// A few sentences.
    pub text: String,
    /// Labelled values.
    pub fields: Vec<Field>,
    /// Where to see more, when a dashboard URL is configured.
    pub link: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its size in its unit (cost in the currency), for thresholds.
    pub impact: Option<f64>,
    /// Its score in [0, 1], for thresholds (anomalies).
    pub score: Option<f64>,
}

/// What the detection reads besides the warehouse.
#[derive(Debug, Clone, Default)]
pub struct Detection<'a> {
    /// The dashboards' base URL, for links (none: no links).
    pub dashboard_url: Option<&'a str>,
    /// Events older than this many days are not alerted on (a first run
    /// does not notify a year of history).
    pub lookback_days: u32,
    /// A source with no successful run for this long is stale (none: never).
    pub stale_after_hours: Option<u32>,
    /// The sources' freshness from the run ledger.
    pub sources: &'a [SourceFreshness],
}

/// Every event in the warehouse and the ledger at `now`, in a stable order.
pub async fn detect(
    warehouse: &Warehouse,
    detection: &Detection<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, NotifyError> {
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let rows = |sql: String| {
        let ctx = &ctx;
        async move {
            let (_, batches) = query(ctx, &sql).await?;
            Ok::<_, NotifyError>(text_rows(&batches)?)
        }
    };
    let teams = Teams::from_rows(
        rows("SELECT scope, entity_ref FROM dora_scope_members WHERE scope_kind = 'group'".into())
            .await?,
    );
    let cutoff = now - Duration::days(i64::from(detection.lookback_days));
    let link = |page: &str, scope: Option<&str>| {
        detection.dashboard_url.map(|base| {
            let base = base.trim_end_matches('/');
            match scope {
                Some(scope) => format!("{base}{page}?scope={}", url_escape(scope)),
                None => format!("{base}{page}"),
            }
        })
    };
    let mut events = Vec::new();

    for r in rows(format!(
        "SELECT anomaly_id, metric, scope, scope_kind, unit, kind, direction, \
         CAST(first_day AS VARCHAR), CAST(last_day AS VARCHAR), peak_score, impact, actual, expected, driver \
         FROM anomalies WHERE status = 'open' AND last_day >= DATE '{}' ORDER BY anomaly_id",
        cutoff.format("%Y-%m-%d")
    ))
    .await?
    {
        let [id, metric, scope, scope_kind, unit, kind, direction, first, last, score, impact, actual, expected, driver] =
            &r[..]
        else {
            continue;
        };
        let (score, impact) = (number(score), number(impact));
        let money = metric == "cost";
        let amount = |v: Option<f64>| match v {
            Some(v) if money => format_money(v, unit),
            Some(v) => format!("{} {unit}", format_number(v)),
            None => "—".to_owned(),
        };
        let mut fields = vec![
            field("Impact", amount(impact)),
            field("Actual", amount(number(actual))),
            field("Expected", amount(number(expected))),
            field("Since", first.clone()),
        ];
        if !driver.is_empty() {
            fields.push(field("Driver", driver.clone()));
        }
        events.push(Event {
            kind: EventKind::Anomaly,
            key: id.clone(),
            severity: if score.unwrap_or(0.0) >= 0.9 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            scope: scope.clone(),
            teams: teams.of(scope, scope_kind),
            title: format!("{} {} {direction}: {scope}", kind.replace('_', " "), metric),
            text: format!(
                "The {metric} of {scope} has been anomalous since {first} (last anomalous day {last}); it is still open."
            ),
            fields,
            link: link(
                "/anomalies",
                Some(scope.as_str()).filter(|_| scope_kind != "org"),
            ),
            at: day_start(last).unwrap_or(now),
            impact,
            score,
        });
    }

    for r in rows(format!(
        "SELECT deployment_id, entity_ref, environment, CAST(max(finished_at) AS VARCHAR), \
         string_agg(CASE WHEN verdict = 'degraded' THEN signal || ' (score ' || COALESCE(CAST(round(score, 1) AS VARCHAR), '—') || ')' END, ', ') \
         FROM deployment_signals WHERE suspect AND finished_at >= TIMESTAMP '{}Z' \
         GROUP BY deployment_id, entity_ref, environment ORDER BY deployment_id",
        cutoff.format("%Y-%m-%dT%H:%M:%S")
    ))
    .await?
    {
        let [id, entity, environment, finished, signals] = &r[..] else {
            continue;
        };
        events.push(Event {
            kind: EventKind::SuspectDeployment,
            key: id.clone(),
            severity: Severity::Critical,
            scope: entity.clone(),
            teams: teams.of(entity, "component"),
            title: format!("Suspect deployment of {entity} to {environment}"),
            text: format!(
                "Deployment {id} of {entity} finished at {finished}; what followed it degraded."
            ),
            fields: vec![
                field("Deployment", id.clone()),
                field("Environment", environment.clone()),
                field("Signals", signals.clone()),
            ],
            link: link("/service", Some(entity.as_str())),
            at: parse_time(finished).unwrap_or(now),
            impact: None,
            score: None,
        });
    }

    for r in rows(
        "SELECT c.scope, c.scope_kind, c.billing_period, c.billing_currency, c.effective_cost, \
         c.previous_effective_cost, c.change, c.change_ratio, c.driver, c.driver_change \
         FROM cost_monthly c \
         JOIN (SELECT max(billing_period) AS period FROM cost_monthly WHERE complete) l \
           ON c.billing_period = l.period \
         WHERE c.significant AND c.complete ORDER BY c.scope, c.billing_currency"
            .to_owned(),
    )
    .await?
    {
        let [
            scope,
            scope_kind,
            period,
            currency,
            cost,
            previous,
            change,
            ratio,
            driver,
            driver_change,
        ] = &r[..]
        else {
            continue;
        };
        let change_value = number(change);
        let mut fields = vec![
            field(
                "Cost",
                number(cost).map_or("—".into(), |v| format_money(v, currency)),
            ),
            field(
                "Month before",
                number(previous).map_or("—".into(), |v| format_money(v, currency)),
            ),
            field(
                "Change",
                change_value.map_or("—".into(), |v| signed_money(v, currency)),
            ),
        ];
        if let Some(ratio) = number(ratio) {
            fields.push(field("Change %", format!("{:+.1} %", ratio * 100.0)));
        }
        if !driver.is_empty() {
            let by = number(driver_change).map_or(String::new(), |v| {
                format!(" ({})", signed_money(v, currency))
            });
            fields.push(field("Driver", format!("{driver}{by}")));
        }
        let at = month_end(period).unwrap_or(now);
        events.push(Event {
            kind: EventKind::CostChange,
            key: format!("{scope}|{period}|{currency}"),
            severity: Severity::Warning,
            scope: scope.clone(),
            teams: teams.of(scope, scope_kind),
            title: format!("Cost of {scope} changed significantly in {period}"),
            text: format!(
                "{scope} cost {} in {period}, {} the month before.",
                number(cost).map_or("—".into(), |v| format_money(v, currency)),
                number(previous).map_or("—".into(), |v| format_money(v, currency)),
            ),
            fields,
            link: link(
                "/cost",
                Some(scope.as_str()).filter(|_| scope_kind != "org"),
            ),
            at,
            impact: change_value.map(f64::abs),
            score: None,
        });
    }

    for r in rows(
        "WITH weeks AS (SELECT scope, scope_kind, period_start, overall_tier, \
           row_number() OVER (PARTITION BY scope ORDER BY period_start DESC) AS n \
           FROM dora_trends WHERE granularity = 'week' AND environment = 'all' AND period_days = 7 \
           AND scope_kind IN ('group', 'system', 'domain', 'org')) \
         SELECT a.scope, a.scope_kind, CAST(a.period_start AS VARCHAR), a.overall_tier, b.overall_tier \
         FROM weeks a JOIN weeks b ON a.scope = b.scope AND a.n = 1 AND b.n = 2 \
         WHERE a.overall_tier IS NOT NULL AND b.overall_tier IS NOT NULL ORDER BY a.scope"
            .to_owned(),
    )
    .await?
    {
        let [scope, scope_kind, week, tier, before] = &r[..] else {
            continue;
        };
        let (Some(now_rank), Some(before_rank)) = (tier_rank(tier), tier_rank(before)) else {
            continue;
        };
        let at = parse_time(week).map(|t| t + Duration::days(7)).unwrap_or(now);
        if now_rank <= before_rank || at < cutoff {
            continue;
        }
        let week_day = week.get(..10).unwrap_or(week);
        events.push(Event {
            kind: EventKind::DoraTierDrop,
            key: format!("{scope}|{week_day}"),
            severity: if now_rank - before_rank >= 2 {
                Severity::Warning
            } else {
                Severity::Info
            },
            scope: scope.clone(),
            teams: teams.of(scope, scope_kind),
            title: format!("DORA tier of {scope} dropped from {before} to {tier}"),
            text: format!(
                "In the week from {week_day}, the overall DORA tier of {scope} was {tier}; the week before it was {before}."
            ),
            fields: vec![
                field("Week", week_day.to_owned()),
                field("Tier", tier.clone()),
                field("Week before", before.clone()),
            ],
            link: link(
                if scope_kind == "org" { "/" } else { "/team" },
                Some(scope.as_str()).filter(|_| scope_kind != "org"),
            ),
            at,
            impact: None,
            score: None,
        });
    }

    for source in detection.sources {
        let stale = match (detection.stale_after_hours, source.lag_seconds) {
            (Some(hours), Some(lag)) => lag > i64::from(hours) * 3600,
            _ => false,
        };
        if !source.degraded && !stale {
            continue;
        }
        let (why, since) = if source.degraded {
            (
                source
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "its last run failed".to_owned()),
                source.last_run_at,
            )
        } else {
            (
                format!(
                    "no successful run for {} hours",
                    source.lag_seconds.unwrap_or(0) / 3600
                ),
                source.last_success_at,
            )
        };
        let since_text = since.map_or("never".to_owned(), |t| t.to_rfc3339());
        events.push(Event {
            kind: EventKind::SourceDegraded,
            key: format!(
                "{}|{}|{since_text}",
                source.source,
                if source.degraded { "failed" } else { "stale" }
            ),
            severity: Severity::Warning,
            scope: source.source.clone(),
            teams: Vec::new(),
            title: format!("Source {} is degraded", source.source),
            text: format!("{}: {why}", source.source),
            fields: vec![
                field(
                    "Last success",
                    source
                        .last_success_at
                        .map_or("never".to_owned(), |t| t.to_rfc3339()),
                ),
                field("Since", since_text),
            ],
            link: link("/health", None),
            at: since.unwrap_or(now),
            impact: None,
            score: None,
        });
    }
    Ok(events)
}

/// Which groups each component and group belongs to, from
/// `dora_scope_members` (a group's members include its sub-groups').
#[derive(Debug, Default)]
struct Teams {
    of_component: BTreeMap<String, BTreeSet<String>>,
    members: BTreeMap<String, BTreeSet<String>>,
}

impl Teams {
    fn from_rows(rows: Vec<Vec<String>>) -> Self {
        let mut teams = Self::default();
        for row in rows {
            let [group, component] = &row[..] else {
                continue;
            };
            teams
                .of_component
                .entry(component.clone())
                .or_default()
                .insert(group.clone());
            teams
                .members
                .entry(group.clone())
                .or_default()
                .insert(component.clone());
        }
        teams
    }

    /// A component's groups; a group with every group holding all its
    /// components (itself and the groups above it); nothing for wider
    /// scopes.
    fn of(&self, scope: &str, kind: &str) -> Vec<String> {
        match kind {
            "component" => self
                .of_component
                .get(scope)
                .map(|g| g.iter().cloned().collect())
                .unwrap_or_default(),
            "group" => {
                let Some(members) = self.members.get(scope) else {
                    return vec![scope.to_owned()];
                };
                let mut common: Option<BTreeSet<String>> = None;
                for member in members {
                    let groups = self.of_component.get(member).cloned().unwrap_or_default();
                    common = Some(match common {
                        None => groups,
                        Some(c) => c.intersection(&groups).cloned().collect(),
                    });
                }
                let mut teams: BTreeSet<String> = common.unwrap_or_default();
                teams.insert(scope.to_owned());
                teams.into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// elite 0 … low 3.
fn tier_rank(tier: &str) -> Option<u8> {
    match tier {
        "elite" => Some(0),
        "high" => Some(1),
        "medium" => Some(2),
        "low" => Some(3),
        _ => None,
    }
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A timestamp as the engine prints it (`2026-05-01T10:00:00Z`, with or
/// without zone or fraction).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(
                text.trim_end_matches('Z'),
                "%Y-%m-%dT%H:%M:%S%.f",
            )
            .ok()
            .map(|t| t.and_utc())
        })
}

fn day_start(day: &str) -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The first instant after billing month `YYYY-MM`.
fn month_end(period: &str) -> Option<DateTime<Utc>> {
    let first = NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    next.and_hms_opt(0, 0, 0).map(|t| t.and_utc())
}

/// `1,240.50 USD`.
pub(crate) fn format_money(value: f64, currency: &str) -> String {
    let sign = if value < 0.0 { "-" } else { "" };
    let cents = (value.abs() * 100.0).round() as u64;
    format!(
        "{sign}{}.{:02} {currency}",
        group_thousands(cents / 100),
        cents % 100
    )
}

/// `+1,240.50 USD` / `-3.00 USD`.
fn signed_money(value: f64, currency: &str) -> String {
    if value >= 0.0 {
        format!("+{}", format_money(value, currency))
    } else {
        format_money(value, currency)
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let sign = if value < 0.0 { "-" } else { "" };
        format!("{sign}{}", group_thousands(value.abs() as u64))
    } else {
        format!("{value:.3}")
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An entity ref in a query string (`:` and `/` are kept: the pages read
/// refs as they are).
fn url_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_and_rounded_to_the_cent() {
        assert_eq!(format_money(1240.5, "USD"), "1,240.50 USD");
        assert_eq!(format_money(-3.0, "EUR"), "-3.00 EUR");
        assert_eq!(format_money(1_000_000.004, "USD"), "1,000,000.00 USD");
        assert_eq!(signed_money(12.0, "USD"), "+12.00 USD");
        assert_eq!(format_number(12_345.0), "12,345");
    }

    #[test]
    fn a_groups_teams_are_itself_and_the_groups_above_it() {
        let rows = [
            ("group:default/eng", "component:default/a"),
            ("group:default/eng", "component:default/b"),
            ("group:default/eng", "component:default/c"),
            ("group:default/payments", "component:default/a"),
            ("group:default/payments", "component:default/b"),
            ("group:default/search", "component:default/c"),
        ];
        let teams = Teams::from_rows(
            rows.iter()
                .map(|(g, c)| vec![(*g).to_owned(), (*c).to_owned()])
                .collect(),
        );
        assert_eq!(
            teams.of("component:default/a", "component"),
            ["group:default/eng", "group:default/payments"]
        );
        assert_eq!(
            teams.of("group:default/payments", "group"),
            ["group:default/eng", "group:default/payments"]
        );
        assert_eq!(
            teams.of("group:default/eng", "group"),
            ["group:default/eng"]
        );
        assert!(teams.of("org", "org").is_empty());
    }

    #[test]
    fn times_as_the_engine_prints_them_parse() {
        let t = parse_time("2026-05-01T10:00:00Z");
        assert_eq!(t, parse_time("2026-05-01T10:00:00"));
        assert_eq!(t, parse_time("2026-05-01T10:00:00.000000"));
        assert_eq!(
            month_end("2026-12").map(|t| t.to_rfc3339()),
            Some("2027-01-01T00:00:00+00:00".to_owned())
        );
    }
}
