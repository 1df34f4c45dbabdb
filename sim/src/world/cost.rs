//! Load and cost: per-service traffic with weekly seasonality and growth,
//! Kubernetes requests against usage (some services heavily
//! over-provisioned, some idle), daily allocation costs as OpenCost prices
//! them, and injected anomalies with their labels.
//!
//! Series are computed per service and day on demand, from the service's
//! own random stream, so a day can be served without generating the rest.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::Rng;
use serde::Serialize;

use super::WorldConfig;
use super::org::{ComponentKind, Org};

/// On-demand price of one CPU core for an hour, USD (OpenCost's default).
pub const CPU_CORE_HOUR_USD: f64 = 0.031_611;
/// Price of one GiB of memory for an hour, USD.
pub const RAM_GIB_HOUR_USD: f64 = 0.004_237;
/// Bytes in a GiB.
pub const GIB: f64 = 1_073_741_824.0;

/// What kind of anomaly was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// One day far above normal.
    Spike,
    /// A lasting step up from its start.
    LevelShift,
    /// A slow, steady climb.
    SlowLeak,
}

/// A family of injected anomalies: the standard one, and one with other
/// magnitudes and durations that a detector tuned on the first has never
/// seen (smaller spikes that may last two days, gentler shifts in either
/// direction, slower and longer leaks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyFamily {
    /// Spikes 4–8× for a day, shifts up 1.8–3×, leaks to 1.8–2.5× over
    /// 20 days.
    #[default]
    Standard,
    /// Spikes 2–3.5× for one or two days, shifts to 1.3–1.7× or down to
    /// 0.5–0.7×, leaks to 1.3–1.8× over 30–60 days.
    Unseen,
}

/// A labelled anomaly in a service's cost series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// Component index.
    pub component: usize,
    /// Component ref.
    pub entity_ref: String,
    /// Kind.
    pub kind: AnomalyKind,
    /// First affected day.
    pub start: NaiveDate,
    /// Last affected day (inclusive); for a level shift, the world's last day.
    pub end: NaiveDate,
    /// Multiplier of usage and cost at the anomaly's peak.
    pub magnitude: f64,
}

/// The load and resource profile of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadProfile {
    /// Component index.
    pub component: usize,
    /// Requests per weekday at the start of the history.
    pub base_requests_per_day: f64,
    /// Daily growth rate of traffic.
    pub daily_growth: f64,
    /// CPU cores requested (constant: nobody rightsizes).
    pub cpu_request_cores: f64,
    /// Memory requested, bytes.
    pub ram_request_bytes: f64,
    /// Share of requested CPU used at base traffic (low: over-provisioned).
    pub cpu_utilisation: f64,
    /// Share of requested memory used.
    pub ram_utilisation: f64,
    /// Whether the service is idle (no real traffic).
    pub idle: bool,
    /// Injected anomaly, if any.
    pub anomaly: Option<Anomaly>,
}

/// One service-day of load and allocation cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyLoad {
    /// Day.
    pub date: NaiveDate,
    /// Requests served.
    pub requests: f64,
    /// Average CPU cores requested (replicas × request per replica).
    pub cpu_request_cores: f64,
    /// Average memory requested, bytes.
    pub ram_request_bytes: f64,
    /// Average CPU cores used.
    pub cpu_usage_cores: f64,
    /// Average memory used, bytes.
    pub ram_usage_bytes: f64,
    /// CPU cost of the requests, USD.
    pub cpu_cost_usd: f64,
    /// Memory cost of the requests, USD.
    pub ram_cost_usd: f64,
    /// Persistent volume cost, USD.
    pub pv_cost_usd: f64,
    /// Network egress cost, USD.
    pub network_cost_usd: f64,
}

impl DailyLoad {
    /// Total allocation cost, USD.
    pub fn total_cost_usd(&self) -> f64 {
        self.cpu_cost_usd + self.ram_cost_usd + self.pv_cost_usd + self.network_cost_usd
    }
}

impl LoadProfile {
    /// The profile of component `idx`; `None` for libraries (not deployed).
    pub fn generate(config: &WorldConfig, org: &Org, idx: usize) -> Option<Self> {
        let component = org.components.get(idx)?;
        if component.kind == ComponentKind::Library {
            return None;
        }
        let mut rng = config.rng(50_000 + idx as u64);
        let idle = idx % 11 == 7;
        let over_provisioned = idx % 7 == 3;
        let base_requests_per_day = if idle {
            50.0
        } else {
            10f64.powf(rng.random_range(4.0..7.0))
        };
        let cpu_request_cores = (rng.random_range(0.5..8.0_f64) * 4.0).round() / 4.0;
        let cpu_utilisation = if idle {
            0.01
        } else if over_provisioned {
            rng.random_range(0.03..0.08)
        } else {
            rng.random_range(0.25..0.7)
        };
        let anomaly = (idx % 4 == 2 && config.days >= 30).then(|| {
            let kind = match (idx / 4) % 3 {
                0 => AnomalyKind::Spike,
                1 => AnomalyKind::LevelShift,
                _ => AnomalyKind::SlowLeak,
            };
            let first = config.start().date_naive();
            let last = first + Duration::days(i64::from(config.days) - 1);
            let offset = rng.random_range(i64::from(config.days) / 3..i64::from(config.days) - 10);
            let start = first + Duration::days(offset);
            let (end, magnitude) = match (config.anomalies, kind) {
                (AnomalyFamily::Standard, AnomalyKind::Spike) => {
                    (start, rng.random_range(4.0..8.0))
                }
                (AnomalyFamily::Standard, AnomalyKind::LevelShift) => {
                    (last, rng.random_range(1.8..3.0))
                }
                (AnomalyFamily::Standard, AnomalyKind::SlowLeak) => (
                    (start + Duration::days(20)).min(last),
                    rng.random_range(1.8..2.5),
                ),
                (AnomalyFamily::Unseen, AnomalyKind::Spike) => (
                    (start + Duration::days(rng.random_range(0..2))).min(last),
                    rng.random_range(2.0..3.5),
                ),
                (AnomalyFamily::Unseen, AnomalyKind::LevelShift) => {
                    let up = rng.random_bool(0.5);
                    let magnitude = if up {
                        rng.random_range(1.3..1.7)
                    } else {
                        rng.random_range(0.5..0.7)
                    };
                    (last, magnitude)
                }
                (AnomalyFamily::Unseen, AnomalyKind::SlowLeak) => (
                    (start + Duration::days(rng.random_range(30..60))).min(last),
                    rng.random_range(1.3..1.8),
                ),
            };
            Anomaly {
                component: idx,
                entity_ref: org.component_ref(idx),
                kind,
                start,
                end,
                magnitude,
            }
        });
        Some(Self {
            component: idx,
            base_requests_per_day,
            daily_growth: if idle {
                0.0
            } else {
                rng.random_range(0.0005..0.003)
            },
            cpu_request_cores,
            ram_request_bytes: cpu_request_cores * 2.0 * GIB,
            cpu_utilisation,
            ram_utilisation: (cpu_utilisation * 1.5).min(0.9),
            idle,
            anomaly,
        })
    }

    /// Whether replicas follow load (everything but idle and heavily
    /// over-provisioned services).
    pub fn autoscaled(&self) -> bool {
        !self.idle && self.cpu_utilisation >= 0.1
    }

    /// The anomaly's multiplier on `date` (1.0 outside it).
    pub fn anomaly_factor(&self, date: NaiveDate) -> f64 {
        let Some(anomaly) = &self.anomaly else {
            return 1.0;
        };
        if date < anomaly.start || date > anomaly.end {
            return 1.0;
        }
        match anomaly.kind {
            AnomalyKind::Spike | AnomalyKind::LevelShift => anomaly.magnitude,
            AnomalyKind::SlowLeak => {
                let span = (anomaly.end - anomaly.start).num_days().max(1) as f64;
                let progress = (date - anomaly.start).num_days() as f64 / span;
                1.0 + (anomaly.magnitude - 1.0) * progress
            }
        }
    }

    /// Load and cost on `date`. Deterministic: the day's noise is drawn
    /// from a stream keyed by the service and the day.
    pub fn day(&self, config: &WorldConfig, date: NaiveDate) -> DailyLoad {
        let days_in = (date - config.start().date_naive()).num_days().max(0) as f64;
        let mut rng = config.rng(1_000_000 + self.component as u64 * 10_000 + days_in as u64);
        let weekend = date.weekday().number_from_monday() > 5;
        let season = if weekend { 0.55 } else { 1.0 };
        let growth = (1.0 + self.daily_growth).powf(days_in);
        let noise = rng.random_range(0.95..1.05);
        let anomaly = self.anomaly_factor(date);
        let load = season * growth * noise;
        let requests = self.base_requests_per_day * load * anomaly;
        // Autoscaled services add replicas with load, so what is requested
        // (and paid for) follows traffic; over-provisioned and idle ones keep
        // a fixed size and pay for it whatever the load.
        let replicas = if self.autoscaled() {
            load.powf(0.8)
        } else {
            1.0
        };
        let paid_cores = self.cpu_request_cores * replicas * anomaly;
        let paid_ram_gib = self.ram_request_bytes / GIB * replicas * anomaly;
        let cpu_usage_cores =
            (self.cpu_request_cores * self.cpu_utilisation * load * anomaly).min(paid_cores);
        let ram_usage_bytes =
            self.ram_request_bytes * self.ram_utilisation * (0.8 + 0.2 * load) * replicas;
        DailyLoad {
            date,
            requests,
            cpu_request_cores: paid_cores,
            ram_request_bytes: paid_ram_gib * GIB,
            cpu_usage_cores,
            ram_usage_bytes,
            cpu_cost_usd: paid_cores * 24.0 * CPU_CORE_HOUR_USD,
            ram_cost_usd: paid_ram_gib * 24.0 * RAM_GIB_HOUR_USD,
            pv_cost_usd: if self.component.is_multiple_of(3) {
                0.4
            } else {
                0.0
            },
            network_cost_usd: requests * 2e-8,
        }
    }
}

/// The days of the world's history.
pub fn days(config: &WorldConfig) -> impl Iterator<Item = NaiveDate> {
    let first = config.start().date_naive();
    (0..i64::from(config.days)).map(move |d| first + Duration::days(d))
}

/// Start of a day as an instant.
pub fn day_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}
