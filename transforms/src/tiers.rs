//! DORA performance tiers: the benchmark tables of the State of DevOps
//! reports (`dora-2021`, `dora-2023`, `dora-2024`) and the lookup the marts
//! and the API share.
//!
//! The reports describe each tier (cluster) by a range per metric, and the
//! ranges overlap or leave gaps. One rule turns them into thresholds: a
//! value belongs to the best tier whose range it does not pass on the worse
//! side (lead time not longer than the tier's longest, frequency not rarer
//! than its rarest). Gaps between two ranges therefore fall to the worse
//! tier, and a tier whose range equals or lies inside a better one is never
//! reached by that metric (`None` below). A value on a boundary gets the
//! better tier. `docs/metrics.md` shows the resulting table.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

const HOUR: f64 = 3_600.0;
const DAY: f64 = 86_400.0;
const WEEK: f64 = 7.0 * DAY;
const MONTH: f64 = 30.0 * DAY;
const SIX_MONTHS: f64 = 182.5 * DAY;

/// A DORA performance tier, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Elite performers.
    Elite,
    /// High performers.
    High,
    /// Medium performers.
    Medium,
    /// Low performers.
    Low,
}

impl Tier {
    /// The lowercase name stored in the marts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elite => "elite",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }

    /// The tier named `name` (as stored).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Elite, Self::High, Self::Medium, Self::Low]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// A metric with tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieredMetric {
    /// Production deployments per day (higher is better).
    DeploymentFrequency,
    /// Median lead time for changes, seconds.
    LeadTime,
    /// Change failure rate, 0–1.
    ChangeFailureRate,
    /// The benchmark's recovery metric, seconds (see
    /// [`Benchmark::recovery_metric`]).
    Recovery,
}

impl TieredMetric {
    /// Every tiered metric, in the order of the marts' columns.
    pub const ALL: [Self; 4] = [
        Self::DeploymentFrequency,
        Self::LeadTime,
        Self::ChangeFailureRate,
        Self::Recovery,
    ];

    /// The name used in SQL (`dora_tier(benchmark, name, value)`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeploymentFrequency => "deployment_frequency",
            Self::LeadTime => "lead_time",
            Self::ChangeFailureRate => "change_failure_rate",
            Self::Recovery => "recovery",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// Thresholds of one metric: the worst value each of elite, high and
/// medium accepts; `None` where the report leaves that tier unreachable.
/// Anything past them is low.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Elite's limit.
    pub elite: Option<f64>,
    /// High's limit.
    pub high: Option<f64>,
    /// Medium's limit.
    pub medium: Option<f64>,
}

const fn limits(elite: f64, high: f64, medium: Option<f64>) -> Thresholds {
    Thresholds {
        elite: Some(elite),
        high: Some(high),
        medium,
    }
}

/// Which measured value a benchmark's recovery tier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMetric {
    /// Incident start → resolved (the 2021 report's "time to restore").
    TimeToRestore,
    /// Failed deployment → recovered (2023 onwards).
    FailedDeploymentRecovery,
}

/// One named benchmark table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Benchmark {
    /// `dora-2021`, `dora-2023` or `dora-2024`.
    pub name: &'static str,
    /// Deployments per day; a value at or above a limit reaches the tier.
    pub deployment_frequency: Thresholds,
    /// Lead time p50, seconds; at or below a limit reaches the tier.
    pub lead_time: Thresholds,
    /// Change failure rate; at or below a limit reaches the tier.
    pub change_failure_rate: Thresholds,
    /// Recovery, seconds; at or below a limit reaches the tier.
    pub recovery: Thresholds,
    /// Which recovery measure the report tiers.
    pub recovery_metric: RecoveryMetric,
}

/// The benchmark tables, oldest first. Frequencies are per day: "on demand
/// (multiple deploys per day)" is at least daily, a week is 1/7, a month
/// 1/30, six months 1/182.5.
pub const BENCHMARKS: [Benchmark; 3] = [
    Benchmark {
        name: "dora-2021",
        // Elite on demand; high weekly–monthly; medium monthly–every six
        // months; low rarer.
        deployment_frequency: limits(1.0, 1.0 / 30.0, Some(1.0 / 182.5)),
        // Elite < 1 hour; high 1 day–1 week; medium 1–6 months.
        lead_time: limits(HOUR, WEEK, Some(SIX_MONTHS)),
        // Elite 0–15 %; high, medium and low all 16–30 %.
        change_failure_rate: limits(0.15, 0.30, None),
        // Time to restore: elite < 1 hour; high < 1 day; medium 1 day–1
        // week; low > 6 months.
        recovery: limits(HOUR, DAY, Some(WEEK)),
        recovery_metric: RecoveryMetric::TimeToRestore,
    },
    Benchmark {
        name: "dora-2023",
        // Elite on demand; high daily–weekly; medium and low weekly–monthly.
        deployment_frequency: limits(1.0, 1.0 / 7.0, Some(1.0 / 30.0)),
        // Elite < 1 day; high 1 day–1 week; medium and low 1 week–1 month.
        lead_time: limits(DAY, WEEK, Some(MONTH)),
        // Cluster values 5 %, 10 %, 15 %, 64 %.
        change_failure_rate: limits(0.05, 0.10, Some(0.15)),
        // Elite < 1 hour; high < 1 day; medium 1 day–1 week; low 1–6 months.
        recovery: limits(HOUR, DAY, Some(WEEK)),
        recovery_metric: RecoveryMetric::FailedDeploymentRecovery,
    },
    Benchmark {
        name: "dora-2024",
        // Elite on demand; high daily–weekly; medium weekly–monthly; low
        // monthly–every six months.
        deployment_frequency: limits(1.0, 1.0 / 7.0, Some(1.0 / 30.0)),
        // Elite < 1 day; high 1 day–1 week; medium 1 week–1 month; low 1–6
        // months.
        lead_time: limits(DAY, WEEK, Some(MONTH)),
        // Cluster values 5 %, 20 %, 10 %, 40 %: medium's 10 % lies inside
        // high's range, so the rate alone never reaches medium.
        change_failure_rate: limits(0.05, 0.20, None),
        // Elite < 1 hour; high and medium < 1 day; low 1 week–1 month.
        recovery: limits(HOUR, DAY, None),
        recovery_metric: RecoveryMetric::FailedDeploymentRecovery,
    },
];

/// The benchmark used when none is configured.
pub const DEFAULT_BENCHMARK: &str = "dora-2023";

impl Benchmark {
    /// The benchmark named `name`.
    pub fn named(name: &str) -> Option<&'static Self> {
        BENCHMARKS.iter().find(|b| b.name == name)
    }

    /// The names of every benchmark, for error messages.
    pub fn names() -> String {
        BENCHMARKS
            .iter()
            .map(|b| b.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The tier of `value` of `metric`; `None` for a value that is not a
    /// number (no data gives no tier, never "low").
    pub fn tier(&self, metric: TieredMetric, value: f64) -> Option<Tier> {
        if !value.is_finite() {
            return None;
        }
        let (thresholds, higher_is_better) = match metric {
            TieredMetric::DeploymentFrequency => (self.deployment_frequency, true),
            TieredMetric::LeadTime => (self.lead_time, false),
            TieredMetric::ChangeFailureRate => (self.change_failure_rate, false),
            TieredMetric::Recovery => (self.recovery, false),
        };
        let reaches = |limit: Option<f64>| {
            limit.is_some_and(|limit| {
                if higher_is_better {
                    value >= limit
                } else {
                    value <= limit
                }
            })
        };
        Some(if reaches(thresholds.elite) {
            Tier::Elite
        } else if reaches(thresholds.high) {
            Tier::High
        } else if reaches(thresholds.medium) {
            Tier::Medium
        } else {
            Tier::Low
        })
    }
}

/// The overall tier: the worst of the metrics' tiers that exist, so a team
/// is elite only when every key it has data for is elite. Without a
/// deployment-frequency tier (no deployments) there is no overall tier.
pub fn overall(frequency: Option<Tier>, others: &[Option<Tier>]) -> Option<Tier> {
    let frequency = frequency?;
    Some(
        others
            .iter()
            .flatten()
            .fold(frequency, |worst, t| worst.max(*t)),
    )
}

fn udf_error(message: String) -> DataFusionError {
    DataFusionError::Execution(message)
}

fn strings(array: &ArrayRef) -> Result<Vec<Option<String>>, DataFusionError> {
    let cast = arrow::compute::cast(array, &DataType::Utf8)?;
    let strings = cast
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| udf_error("expected text".to_owned()))?;
    Ok(strings.iter().map(|s| s.map(str::to_owned)).collect())
}

/// `dora_tier(benchmark, metric, value)`: the tier name of `value`, or null
/// for a null value. An unknown benchmark or metric is an error.
pub fn dora_tier_udf() -> ScalarUDF {
    create_udf(
        "dora_tier",
        vec![DataType::Utf8, DataType::Utf8, DataType::Float64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let [benchmarks, metrics, values] = arrays.as_slice() else {
                return Err(udf_error(
                    "dora_tier takes a benchmark, a metric and a value".to_owned(),
                ));
            };
            let benchmarks = strings(benchmarks)?;
            let metrics = strings(metrics)?;
            let values = values
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| udf_error("dora_tier's value must be a double".to_owned()))?;
            let mut out = Vec::with_capacity(values.len());
            for ((benchmark, metric), value) in benchmarks.iter().zip(&metrics).zip(values.iter()) {
                let (Some(benchmark), Some(metric), Some(value)) = (benchmark, metric, value)
                else {
                    out.push(None);
                    continue;
                };
                let table = Benchmark::named(benchmark).ok_or_else(|| {
                    udf_error(format!(
                        "no benchmark `{benchmark}`; benchmarks: {}",
                        Benchmark::names()
                    ))
                })?;
                let metric = TieredMetric::parse(metric).ok_or_else(|| {
                    udf_error(format!(
                        "no tiered metric `{metric}`; metrics: deployment_frequency, lead_time, change_failure_rate, recovery"
                    ))
                })?;
                out.push(table.tier(metric, value).map(Tier::as_str));
            }
            Ok(ColumnarValue::Array(
                Arc::new(StringArray::from(out)) as ArrayRef
            ))
        }),
    )
}

/// `dora_overall_tier(frequency, lead_time, cfr, recovery)`: [`overall`] of
/// four tier names.
pub fn dora_overall_tier_udf() -> ScalarUDF {
    create_udf(
        "dora_overall_tier",
        vec![DataType::Utf8; 4],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let columns = arrays.iter().map(strings).collect::<Result<Vec<_>, _>>()?;
            let rows = columns.first().map_or(0, Vec::len);
            let tier = |c: &Vec<Option<String>>, row: usize| {
                c.get(row).cloned().flatten().and_then(|n| Tier::parse(&n))
            };
            let out: StringArray = (0..rows)
                .map(|row| {
                    let others: Vec<Option<Tier>> =
                        columns.iter().skip(1).map(|c| tier(c, row)).collect();
                    let frequency = columns.first().and_then(|c| tier(c, row));
                    overall(frequency, &others).map(Tier::as_str)
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(benchmark: &str, metric: TieredMetric, value: f64) -> Option<&'static str> {
        Benchmark::named(benchmark)
            .and_then(|b| b.tier(metric, value))
            .map(Tier::as_str)
    }

    #[test]
    fn boundaries_take_the_better_tier_and_gaps_the_worse() {
        use TieredMetric::*;
        // Exactly one deploy a day is elite; just under is high (2023).
        assert_eq!(tier("dora-2023", DeploymentFrequency, 1.0), Some("elite"));
        assert_eq!(tier("dora-2023", DeploymentFrequency, 0.99), Some("high"));
        assert_eq!(
            tier("dora-2023", DeploymentFrequency, 1.0 / 7.0),
            Some("high")
        );
        assert_eq!(tier("dora-2023", DeploymentFrequency, 0.1), Some("medium"));
        assert_eq!(tier("dora-2023", DeploymentFrequency, 0.01), Some("low"));
        // 2021: three deploys a week sit in the gap between elite and high,
        // and fall to high; twice a month is high, once a quarter medium.
        assert_eq!(
            tier("dora-2021", DeploymentFrequency, 3.0 / 7.0),
            Some("high")
        );
        assert_eq!(
            tier("dora-2021", DeploymentFrequency, 2.0 / 30.0),
            Some("high")
        );
        assert_eq!(
            tier("dora-2021", DeploymentFrequency, 1.0 / 91.0),
            Some("medium")
        );
        // Lead time: a day is elite in 2023, high in 2021 (elite < 1 hour).
        assert_eq!(tier("dora-2023", LeadTime, DAY), Some("elite"));
        assert_eq!(tier("dora-2021", LeadTime, DAY), Some("high"));
        assert_eq!(tier("dora-2023", LeadTime, 2.0 * WEEK), Some("medium"));
        assert_eq!(tier("dora-2023", LeadTime, 2.0 * MONTH), Some("low"));
        // Change failure rate: 12 % is medium in 2023, high in 2024; 2021
        // never says medium.
        assert_eq!(tier("dora-2023", ChangeFailureRate, 0.12), Some("medium"));
        assert_eq!(tier("dora-2024", ChangeFailureRate, 0.12), Some("high"));
        assert_eq!(tier("dora-2021", ChangeFailureRate, 0.25), Some("high"));
        assert_eq!(tier("dora-2021", ChangeFailureRate, 0.31), Some("low"));
        assert_eq!(tier("dora-2023", ChangeFailureRate, 0.0), Some("elite"));
        // Recovery: two days is medium in 2023, low in 2024.
        assert_eq!(tier("dora-2023", Recovery, 2.0 * DAY), Some("medium"));
        assert_eq!(tier("dora-2024", Recovery, 2.0 * DAY), Some("low"));
        assert_eq!(tier("dora-2024", Recovery, HOUR), Some("elite"));
        // Not a number: no tier.
        assert_eq!(tier("dora-2023", LeadTime, f64::NAN), None);
    }

    #[test]
    fn overall_is_the_worst_known_tier_and_needs_deployments() {
        use Tier::*;
        assert_eq!(
            overall(Some(Elite), &[Some(High), None, Some(Elite)]),
            Some(High)
        );
        assert_eq!(
            overall(Some(Medium), &[Some(Elite), None, None]),
            Some(Medium)
        );
        assert_eq!(overall(Some(Elite), &[None, None, None]), Some(Elite));
        assert_eq!(
            overall(None, &[Some(Elite), Some(Elite), Some(Elite)]),
            None
        );
        assert_eq!(
            overall(Some(High), &[Some(Low), Some(Elite), Some(Medium)]),
            Some(Low)
        );
    }

    #[test]
    fn every_benchmark_orders_its_limits() {
        for b in BENCHMARKS {
            for (t, higher) in [
                (b.deployment_frequency, true),
                (b.lead_time, false),
                (b.change_failure_rate, false),
                (b.recovery, false),
            ] {
                let limits: Vec<f64> = [t.elite, t.high, t.medium].into_iter().flatten().collect();
                for pair in limits.windows(2) {
                    if higher {
                        assert!(pair[0] > pair[1], "{} {t:?}", b.name);
                    } else {
                        assert!(pair[0] < pair[1], "{} {t:?}", b.name);
                    }
                }
            }
        }
        assert!(Benchmark::named(DEFAULT_BENCHMARK).is_some());
    }
}
