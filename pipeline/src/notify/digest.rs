//! The weekly digest: per team (with its sub-teams) and for leaders (the
//! organisation), the 30-day DORA keys and the last week's tier change,
//! the newest complete month's cost with its change and driver, the open
//! anomalies largest first, and portal adoption — with links to the
//! dashboards.
//!
//! Digests go through the outbox like alerts, keyed by scope and week, so
//! each goes out once a week: at the first notify run after the configured
//! day and time (`[alerts.digest]`). `fathom digest` previews one as
//! Markdown or HTML.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query, read_only_session, text_rows};
use serde::{Deserialize, Serialize};

use super::NotifyError;
use super::events::{Event, EventKind, Field, Severity, format_money};

/// `[alerts.digest]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Channels the digests go to (none: no digest).
    pub channels: Vec<String>,
    /// A digest for each of these teams (group refs).
    pub teams: Vec<String>,
    /// Also the organisation's digest, for leaders. Default true.
    pub leaders: bool,
    /// Weekday it is due (`mon` … `sun`). Default `mon`.
    pub day: String,
    /// Time it is due, `HH:MM` UTC. Default `09:00`.
    pub time: String,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            teams: Vec::new(),
            leaders: true,
            day: "mon".to_owned(),
            time: "09:00".to_owned(),
        }
    }
}

impl DigestConfig {
    /// The scopes a digest is made for.
    pub fn scopes(&self) -> Vec<String> {
        let mut scopes = self.teams.clone();
        if self.leaders {
            scopes.push("org".to_owned());
        }
        scopes
    }

    /// The start of the digest week `now` is in: the latest due time
    /// (`day` at `time`) at or before `now`.
    pub fn due_slot(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, NotifyError> {
        let bad = |what: &str| NotifyError::Config(format!("[alerts.digest] {what}"));
        let day: Weekday = self
            .day
            .parse()
            .map_err(|_| bad(&format!("day `{}`: use mon … sun", self.day)))?;
        let time = NaiveTime::parse_from_str(&self.time, "%H:%M")
            .map_err(|_| bad(&format!("time `{}`: use HH:MM (UTC)", self.time)))?;
        let back = (7 + i64::from(now.weekday().num_days_from_monday())
            - i64::from(day.num_days_from_monday()))
            % 7;
        let slot = (now.date_naive() - Duration::days(back))
            .and_time(time)
            .and_utc();
        Ok(if slot > now {
            slot - Duration::days(7)
        } else {
            slot
        })
    }
}

/// One section of a digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Its heading.
    pub title: String,
    /// Its lines (plain text).
    pub lines: Vec<String>,
}

/// A digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// The team's group ref, or `org`.
    pub scope: String,
    /// The week it covers: the seven days before `at`.
    pub at: DateTime<Utc>,
    /// Its sections, in order.
    pub sections: Vec<Section>,
    /// The scope's page, when a dashboard URL is configured.
    pub link: Option<String>,
}

/// Reads a digest of `scope` at `at`.
pub async fn digest(
    warehouse: &Warehouse,
    scope: &str,
    at: DateTime<Utc>,
    dashboard_url: Option<&str>,
) -> Result<Digest, NotifyError> {
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let quoted = scope.replace('\'', "''");
    let rows = |sql: String| {
        let ctx = &ctx;
        async move {
            let (_, batches) = query(ctx, &sql).await?;
            Ok::<_, NotifyError>(text_rows(&batches)?)
        }
    };
    let mut sections = Vec::new();

    let mut dora = Vec::new();
    for r in rows(format!(
        "SELECT deployments, deployments_per_week, lead_time_p50_seconds, change_failure_rate, \
         failed_deployment_recovery_p50_seconds, overall_tier \
         FROM dora_metrics WHERE scope = '{quoted}' AND window_days = 30 AND environment = 'all'"
    ))
    .await?
    {
        let [deployments, per_week, lead, cfr, recovery, tier] = &r[..] else {
            continue;
        };
        dora.push(format!(
            "{deployments} production deployments ({} a week); lead time {}; change failure rate {}; recovery {}",
            number(per_week).map_or("—".to_owned(), |v| format!("{v:.1}")),
            number(lead).map_or("—".to_owned(), duration),
            number(cfr).map_or("—".to_owned(), |v| format!("{:.1} %", v * 100.0)),
            number(recovery).map_or("—".to_owned(), duration),
        ));
        if !tier.is_empty() {
            dora.push(format!("Overall tier: {tier}"));
        }
    }
    for r in rows(format!(
        "SELECT overall_tier FROM dora_trends WHERE scope = '{quoted}' AND granularity = 'week' \
         AND environment = 'all' AND period_days = 7 AND period_start < TIMESTAMP '{}' \
         ORDER BY period_start DESC LIMIT 2",
        at.format("%Y-%m-%dT%H:%M:%SZ")
    ))
    .await?
    .windows(2)
    .take(1)
    {
        let (last, before) = (&r[0][0], &r[1][0]);
        if !last.is_empty() && !before.is_empty() && last != before {
            dora.push(format!(
                "Tier last week: {last} (the week before: {before})"
            ));
        }
    }
    sections.push(Section {
        title: "DORA, last 30 days".to_owned(),
        lines: if dora.is_empty() {
            vec!["No production deployments.".to_owned()]
        } else {
            dora
        },
    });

    let mut cost = Vec::new();
    for r in rows(format!(
        "SELECT billing_period, billing_currency, effective_cost, change, change_ratio, significant, driver \
         FROM cost_monthly WHERE scope = '{quoted}' AND complete \
         AND billing_period = (SELECT max(billing_period) FROM cost_monthly WHERE scope = '{quoted}' AND complete) \
         ORDER BY billing_currency"
    ))
    .await?
    {
        let [period, currency, amount, change, ratio, significant, driver] = &r[..] else {
            continue;
        };
        let mut line = format!(
            "{period}: {}",
            number(amount).map_or("—".to_owned(), |v| format_money(v, currency))
        );
        if let Some(change) = number(change) {
            line.push_str(&format!(
                ", {}{} on the month before",
                if change >= 0.0 { "+" } else { "" },
                format_money(change, currency)
            ));
            if let Some(ratio) = number(ratio) {
                line.push_str(&format!(" ({:+.1} %)", ratio * 100.0));
            }
        }
        if significant == "true" {
            line.push_str(" — significant");
        }
        if !driver.is_empty() {
            line.push_str(&format!("; driver: {driver}"));
        }
        cost.push(line);
    }
    sections.push(Section {
        title: "Cost".to_owned(),
        lines: if cost.is_empty() {
            vec!["No complete month of cost data.".to_owned()]
        } else {
            cost
        },
    });

    let members = if scope == "org" {
        "SELECT DISTINCT entity_ref FROM dora_scope_members WHERE scope = 'org'".to_owned()
    } else {
        format!("SELECT entity_ref FROM dora_scope_members WHERE scope = '{quoted}'")
    };
    let open = rows(format!(
        "SELECT a.metric, a.scope, a.kind, a.direction, CAST(a.first_day AS VARCHAR), a.impact, a.unit \
         FROM anomalies a WHERE a.status = 'open' \
         AND (a.scope = '{quoted}' OR a.scope IN ({members})) \
         ORDER BY abs(a.impact) DESC, a.anomaly_id LIMIT 5"
    ))
    .await?;
    sections.push(Section {
        title: "Open anomalies".to_owned(),
        lines: if open.is_empty() {
            vec!["None.".to_owned()]
        } else {
            open.iter()
                .filter_map(|r| match &r[..] {
                    [metric, on, kind, direction, first, impact, unit] => Some(format!(
                        "{on}: {metric} {} {direction} since {first}, impact {}",
                        kind.replace('_', " "),
                        number(impact).map_or("—".to_owned(), |v| if metric == "cost" {
                            format_money(v, unit)
                        } else {
                            format!("{v:.3} {unit}")
                        })
                    )),
                    _ => None,
                })
                .collect()
        },
    });

    let mut adoption = Vec::new();
    for r in rows(format!(
        "SELECT month, active_users, members, adoption, suppressed FROM usage_active \
         WHERE scope = '{quoted}' AND grain = 'month' ORDER BY period_start DESC LIMIT 1"
    ))
    .await?
    {
        let [month, active, members, share, suppressed] = &r[..] else {
            continue;
        };
        adoption.push(if suppressed == "true" {
            format!("{month}: fewer users than the privacy threshold (withheld)")
        } else {
            format!(
                "{month}: {active} active of {members} members ({})",
                number(share).map_or("—".to_owned(), |v| format!("{:.0} %", v * 100.0))
            )
        });
    }
    if !adoption.is_empty() {
        sections.push(Section {
            title: "Portal adoption".to_owned(),
            lines: adoption,
        });
    }

    let link = dashboard_url.map(|base| {
        let base = base.trim_end_matches('/');
        if scope == "org" {
            format!("{base}/")
        } else {
            format!("{base}/team?scope={scope}")
        }
    });
    Ok(Digest {
        scope: scope.to_owned(),
        at,
        sections,
        link,
    })
}

impl Digest {
    fn title(&self) -> String {
        let whom = if self.scope == "org" {
            "the organisation"
        } else {
            self.scope.as_str()
        };
        format!(
            "Weekly digest for {whom}, week to {}",
            self.at.format("%Y-%m-%d")
        )
    }

    /// As Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n", self.title());
        for section in &self.sections {
            out.push_str(&format!("\n## {}\n\n", section.title));
            for line in &section.lines {
                out.push_str(&format!("- {line}\n"));
            }
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n[Open in Fathom]({link})\n"));
        }
        out
    }

    /// As a standalone HTML page (escaped).
    pub fn html(&self) -> String {
        let mut out = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head><body>\n<h1>{0}</h1>\n",
            escape(&self.title())
        );
        for section in &self.sections {
            out.push_str(&format!("<h2>{}</h2>\n<ul>\n", escape(&section.title)));
            for line in &section.lines {
                out.push_str(&format!("<li>{}</li>\n", escape(line)));
            }
            out.push_str("</ul>\n");
        }
        if let Some(link) = &self.link {
            out.push_str(&format!(
                "<p><a href=\"{}\">Open in Fathom</a></p>\n",
                escape(link)
            ));
        }
        out.push_str("</body></html>\n");
        out
    }

    /// As an event, which every channel renders: one field per section.
    pub fn event(&self) -> Event {
        Event {
            kind: EventKind::Digest,
            key: format!("{}|{}", self.scope, self.at.format("%Y-%m-%d")),
            severity: Severity::Info,
            scope: self.scope.clone(),
            teams: if self.scope == "org" {
                Vec::new()
            } else {
                vec![self.scope.clone()]
            },
            title: self.title(),
            text: "What changed this week.".to_owned(),
            fields: self
                .sections
                .iter()
                .map(|s| Field {
                    name: s.title.clone(),
                    value: s.lines.join("\n"),
                })
                .collect(),
            link: self.link.clone(),
            at: self.at,
            impact: None,
            score: None,
        }
    }
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `3.2 h`, `2.5 d`, `45 min`.
fn duration(seconds: f64) -> String {
    if seconds >= 86_400.0 {
        format!("{:.1} d", seconds / 86_400.0)
    } else if seconds >= 3_600.0 {
        format!("{:.1} h", seconds / 3_600.0)
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::at;

    #[test]
    fn the_digest_is_due_from_the_configured_day_and_time() -> Result<(), NotifyError> {
        let config = DigestConfig::default();
        // 2026-12-07 is a Monday.
        assert_eq!(
            config.due_slot(at("2026-12-07T09:00:00Z"))?,
            at("2026-12-07T09:00:00Z")
        );
        assert_eq!(
            config.due_slot(at("2026-12-07T08:59:00Z"))?,
            at("2026-11-30T09:00:00Z")
        );
        assert_eq!(
            config.due_slot(at("2026-12-13T23:00:00Z"))?,
            at("2026-12-07T09:00:00Z")
        );
        let friday = DigestConfig {
            day: "fri".to_owned(),
            time: "16:30".to_owned(),
            ..DigestConfig::default()
        };
        assert_eq!(
            friday.due_slot(at("2026-12-07T09:00:00Z"))?,
            at("2026-12-04T16:30:00Z")
        );
        assert!(
            DigestConfig {
                day: "someday".to_owned(),
                ..DigestConfig::default()
            }
            .due_slot(at("2026-12-07T09:00:00Z"))
            .is_err()
        );
        Ok(())
    }

    #[test]
    fn markdown_and_html_carry_every_line_and_html_escapes() {
        let digest = Digest {
            scope: "group:default/payments".to_owned(),
            at: at("2026-12-07T09:00:00Z"),
            sections: vec![Section {
                title: "Cost".to_owned(),
                lines: vec!["2026-11: 1,500.00 USD; driver: <api>".to_owned()],
            }],
            link: Some("http://fathom.local/team?scope=group:default/payments".to_owned()),
        };
        let markdown = digest.markdown();
        assert!(
            markdown
                .starts_with("# Weekly digest for group:default/payments, week to 2026-12-07\n")
        );
        assert!(markdown.contains("\n## Cost\n\n- 2026-11: 1,500.00 USD; driver: <api>\n"));
        assert!(markdown.ends_with(
            "[Open in Fathom](http://fathom.local/team?scope=group:default/payments)\n"
        ));
        let html = digest.html();
        assert!(html.contains("<li>2026-11: 1,500.00 USD; driver: &lt;api&gt;</li>"));
        let event = digest.event();
        assert_eq!(event.key, "group:default/payments|2026-12-07");
        assert_eq!(event.fields[0].name, "Cost");
    }
}
