//! The definitions' parameters (`[transforms]` in `fathom.toml`) and the
//! periods the metrics marts cover, filled into the marts' SQL.

use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, tiers};

/// The definitions' parameters (`[transforms]` in `fathom.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Parameters {
    /// Regular expression (case-insensitive) of production environments.
    /// Default `^prod(uction)?([-_].*)?$`.
    pub production_pattern: String,
    /// How long after a deployment an incident without an explicit link is
    /// blamed on it, days. Default 7.
    pub incident_gap_days: u32,
    /// The benchmark table of the tiers: `dora-2021`, `dora-2023` (default)
    /// or `dora-2024`.
    pub benchmark: String,
    /// Incremental runs re-read rows written up to this many minutes
    /// before the previous run's newest, for writers whose commit lands
    /// after a run read the tables. Default 10.
    pub change_margin_minutes: u32,
    /// Whether a merged revert marks the deployment that shipped the
    /// reverted change as failed (when no incident or rollback already
    /// did; counted apart as `failed_by_revert`). Default true.
    pub reverts_are_failures: bool,
    /// Memory in MiB the marts' queries may use for sorts, joins and
    /// aggregates before they spill to local disk (the system's temporary
    /// directory, `TMPDIR`); a mart that cannot fit even so fails naming
    /// this setting. 0 is unbounded. Not a definition: changing it never
    /// recomputes anything. Default 0: the engine (55.2) counts a sorted
    /// batch's shared string buffers once per slice, so a budget refuses
    /// marts that fit in memory several times over (measured:
    /// `dora_deployments` at 1,000 services × a year peaks at 1.1 GB
    /// resident unbounded, yet asks a 4 GiB pool for 6.8 GB).
    pub memory_limit_mib: usize,
    /// The cost marts' parameters (`[cost]` in `fathom.toml`).
    pub cost: CostParameters,
    /// The usage marts' parameters (`[usage]` in `fathom.toml`).
    pub usage: crate::UsageParameters,
}

/// The cost marts' parameters (`[cost]` in `fathom.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostParameters {
    /// What happens to shared cost (idle, unallocated, untagged, tax, …):
    /// `none` keeps it as rows of its own (default), `proportional`
    /// spreads it onto the components in proportion to their own cost,
    /// `even` in equal parts.
    pub shared: String,
    /// A month-over-month change is significant when at least this much
    /// (in the billing currency) … Default 100.
    pub significant_change: f64,
    /// … and at least this share of the month before. Default 0.2.
    pub significant_ratio: f64,
    /// What an engineer costs a year, for cost expressed in engineers (as
    /// the Cost Insights plugin's `engineerCost`). Default 200,000.
    pub engineer_cost: f64,
}

impl Default for CostParameters {
    fn default() -> Self {
        Self {
            shared: "none".to_owned(),
            significant_change: 100.0,
            significant_ratio: 0.2,
            engineer_cost: 200_000.0,
        }
    }
}

/// The shared-cost policies `[cost] shared` accepts.
pub const SHARED_POLICIES: [&str; 3] = ["none", "proportional", "even"];

impl Default for Parameters {
    fn default() -> Self {
        Self {
            production_pattern: "^prod(uction)?([-_].*)?$".to_owned(),
            incident_gap_days: 7,
            benchmark: tiers::DEFAULT_BENCHMARK.to_owned(),
            change_margin_minutes: 10,
            reverts_are_failures: true,
            memory_limit_mib: 0,
            cost: CostParameters::default(),
            usage: crate::UsageParameters::default(),
        }
    }
}

/// The rolling windows, days.
pub const WINDOWS: [u32; 4] = [7, 30, 90, 365];

fn timestamp_literal(at: DateTime<Utc>) -> String {
    format!(
        "CAST('{}' AS TIMESTAMP)",
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Which periods a metrics query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periods {
    /// The rolling windows of [`WINDOWS`] days ending at `as_of`.
    Rolling,
    /// The last 52 calendar weeks (Monday start) and 12 calendar months,
    /// the current ones ending at `as_of`.
    Calendar,
}

/// One period of a metrics query.
#[derive(Debug, Clone, PartialEq)]
struct Period {
    label: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

fn periods(kind: Periods, as_of: DateTime<Utc>) -> Vec<Period> {
    match kind {
        Periods::Rolling => WINDOWS
            .iter()
            .map(|days| Period {
                label: format!("{days}d"),
                start: as_of - Duration::days(i64::from(*days)),
                end: as_of,
            })
            .collect(),
        Periods::Calendar => {
            let mut out = Vec::new();
            let last = (as_of - Duration::seconds(1)).date_naive();
            let monday = last - Duration::days(i64::from(last.weekday().num_days_from_monday()));
            for k in 0..52 {
                let start = midnight(monday - Duration::weeks(k));
                out.push(Period {
                    label: "week".to_owned(),
                    start,
                    end: (start + Duration::weeks(1)).min(as_of),
                });
            }
            let mut first = last.with_day(1).unwrap_or(last);
            for _ in 0..12 {
                let next = first
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(first);
                out.push(Period {
                    label: "month".to_owned(),
                    start: midnight(first),
                    end: midnight(next).min(as_of),
                });
                first = first
                    .checked_sub_months(chrono::Months::new(1))
                    .unwrap_or(first);
            }
            out
        }
    }
}

/// `(window_id, period, window_days, window_start, window_end)` rows for
/// SQL `VALUES`.
fn windows_values(periods: &[Period]) -> String {
    periods
        .iter()
        .enumerate()
        .map(|(id, p)| {
            let seconds = (p.end - p.start).num_seconds().max(1);
            let days = (seconds + 86_399) / 86_400;
            format!(
                "({id}, '{}', {days}, {}, {})",
                p.label,
                timestamp_literal(p.start),
                timestamp_literal(p.end)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(window_id, week_start, week_end)` rows: the calendar weeks (Monday
/// start, UTC) intersecting each period, clipped to it.
fn weeks_values(periods: &[Period]) -> String {
    let date = |d: NaiveDate| format!("CAST('{d}' AS DATE)");
    let mut rows = Vec::new();
    for (id, period) in periods.iter().enumerate() {
        let start = period.start.date_naive();
        let end = period.end.date_naive();
        let mut monday = start - Duration::days(i64::from(start.weekday().num_days_from_monday()));
        while monday < end {
            let next = monday + Duration::days(7);
            rows.push(format!(
                "({id}, {}, {})",
                date(monday.max(start)),
                date(next.min(end))
            ));
            monday = next;
        }
    }
    rows.join(", ")
}

impl Parameters {
    /// Whether `self` and `other` define the marts alike: every parameter
    /// but the engine's memory budget, which changes how a mart is
    /// computed, never what it holds, and the events' retention (the
    /// marts follow what remains).
    pub fn same_definitions(&self, other: &Self) -> bool {
        let mut other = other.clone();
        other.memory_limit_mib = self.memory_limit_mib;
        other.usage.retention_days = self.usage.retention_days;
        *self == other
    }

    /// The marts' memory budget in bytes; `None` when unbounded.
    pub fn memory_limit_bytes(&self) -> Option<usize> {
        (self.memory_limit_mib > 0).then(|| self.memory_limit_mib.saturating_mul(1 << 20))
    }

    /// `sql` with its `{{name}}` placeholders filled in, windows ending at
    /// `as_of`.
    pub fn fill(&self, sql: &str, as_of: DateTime<Utc>) -> Result<String> {
        self.fill_periods(sql, as_of, Periods::Rolling)
    }

    /// `sql` with its placeholders filled in for `kind` of periods ending at
    /// `as_of`.
    pub fn fill_periods(&self, sql: &str, as_of: DateTime<Utc>, kind: Periods) -> Result<String> {
        let periods = periods(kind, as_of);
        let sql = sql
            .replace("{{dora_metrics}}", include_str!("../sql/dora_metrics.sql"))
            .replace(
                "{{shipped_first}}",
                include_str!("../sql/shared/shipped_first.sql"),
            )
            .replace(
                "{{group_ancestors}}",
                include_str!("../sql/shared/group_ancestors.sql"),
            );
        // DataFusion's regexp_like uses the same engine: a pattern that does
        // not compile here would fail inside the mart's SQL with an error
        // that does not name the setting.
        if let Err(e) = regex::Regex::new(&self.production_pattern) {
            return Err(Error::Parameter {
                name: "production_pattern",
                message: format!("not a valid regular expression: {e}"),
            });
        }
        let Some(benchmark) = tiers::Benchmark::named(&self.benchmark) else {
            return Err(Error::Parameter {
                name: "benchmark",
                message: format!(
                    "`{}` is not one of {}",
                    self.benchmark,
                    tiers::Benchmark::names()
                ),
            });
        };
        let recovery = match benchmark.recovery_metric {
            tiers::RecoveryMetric::TimeToRestore => "time_to_restore_p50_seconds",
            tiers::RecoveryMetric::FailedDeploymentRecovery => {
                "failed_deployment_recovery_p50_seconds"
            }
        };
        if !SHARED_POLICIES.contains(&self.cost.shared.as_str()) {
            return Err(Error::Parameter {
                name: "cost.shared",
                message: format!(
                    "`{}` is not one of {}",
                    self.cost.shared,
                    SHARED_POLICIES.join(", ")
                ),
            });
        }
        if !(self.cost.engineer_cost.is_finite() && self.cost.engineer_cost > 0.0) {
            return Err(Error::Parameter {
                name: "cost.engineer_cost",
                message: format!("{} is not a number > 0", self.cost.engineer_cost),
            });
        }
        for (name, value) in [
            ("cost.significant_change", self.cost.significant_change),
            ("cost.significant_ratio", self.cost.significant_ratio),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(Error::Parameter {
                    name,
                    message: format!("{value} is not a number ≥ 0"),
                });
            }
        }
        // A recomputation from a month on fills these first (see
        // `crate::since`); anything else computes from the beginning.
        let sql = crate::since::fill(&self.usage.fill(sql)?, None);
        Ok(sql
            .replace("{{cost_shared}}", &self.cost.shared)
            .replace(
                "{{cost_significant_change}}",
                &format!("{:?}", self.cost.significant_change),
            )
            .replace(
                "{{cost_significant_ratio}}",
                &format!("{:?}", self.cost.significant_ratio),
            )
            .replace(
                "{{cost_engineer_cost}}",
                &format!("{:?}", self.cost.engineer_cost),
            )
            .replace("{{benchmark}}", benchmark.name)
            .replace("{{recovery}}", recovery)
            .replace(
                "{{production_pattern}}",
                &self.production_pattern.replace('\'', "''"),
            )
            .replace("{{incident_gap_days}}", &self.incident_gap_days.to_string())
            .replace(
                "{{reverts_are_failures}}",
                if self.reverts_are_failures {
                    "true"
                } else {
                    "false"
                },
            )
            .replace("{{windows}}", &windows_values(&periods))
            .replace("{{weeks}}", &weeks_values(&periods))
            .replace(
                "{{as_of}}",
                &as_of.to_rfc3339_opts(SecondsFormat::Secs, true),
            ))
    }
}

/// The end of the windows by default: the end of the current UTC day, so
/// today's deployments count.
pub fn default_as_of() -> DateTime<Utc> {
    let tomorrow = Utc::now().date_naive() + Duration::days(1);
    tomorrow
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_fill_and_quote() -> Result<()> {
        let parameters = Parameters {
            production_pattern: "^prod'x$".to_owned(),
            incident_gap_days: 3,
            benchmark: "dora-2021".to_owned(),
            ..Parameters::default()
        };
        let as_of = DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Error::Parameter {
                name: "as_of",
                message: e.to_string(),
            })?;
        assert_eq!(
            parameters.fill(
                "regexp_like(e, '{{production_pattern}}') {{incident_gap_days}} {{as_of}} {{benchmark}} {{recovery}}",
                as_of
            )?,
            "regexp_like(e, '^prod''x$') 3 2026-07-01T00:00:00Z dora-2021 time_to_restore_p50_seconds"
        );
        // 2026-06-24 is a Wednesday: the 7-day window meets two weeks.
        let rolling = periods(Periods::Rolling, as_of);
        assert_eq!(
            weeks_values(&rolling)
                .split("), (")
                .take(2)
                .collect::<Vec<_>>(),
            [
                "(0, CAST('2026-06-24' AS DATE), CAST('2026-06-29' AS DATE)",
                "0, CAST('2026-06-29' AS DATE), CAST('2026-07-01' AS DATE)"
            ]
        );
        // Calendar periods: the current week (Monday 06-29, cut at 07-01)
        // first; June, which as_of ends, is the first month.
        let calendar = periods(Periods::Calendar, as_of);
        assert_eq!(calendar.len(), 64);
        assert_eq!(calendar[0].start.to_rfc3339(), "2026-06-29T00:00:00+00:00");
        assert_eq!(calendar[0].end, as_of);
        assert_eq!(calendar[52].label, "month");
        assert_eq!(calendar[52].start.to_rfc3339(), "2026-06-01T00:00:00+00:00");
        assert_eq!(calendar[63].start.to_rfc3339(), "2025-07-01T00:00:00+00:00");
        Ok(())
    }

    #[test]
    fn a_bad_production_pattern_is_named() {
        let parameters = Parameters {
            production_pattern: "^prod(".to_owned(),
            ..Parameters::default()
        };
        let error = parameters
            .fill("{{production_pattern}}", default_as_of())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("production_pattern"), "{error}");
    }
}
