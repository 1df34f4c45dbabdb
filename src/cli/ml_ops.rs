//! `fathom ml evaluate`'s operational part: every service's requests,
//! error rate, p95 latency, CPU and memory, as the Datadog simulator
//! serves them, scored by the univariate detector (any series alarming),
//! the linfa multivariate model, their union and the trailing-mean
//! baseline — against the incidents open at the day's reading and the
//! injected load anomalies.

use chrono::NaiveDate;
use fathom_ml::evaluate::{Alert, DAYS_PER_MONTH, Label, RECOVERY_POINTS, Report, evaluate};
use fathom_ml::multivariate::{MultivariateConfig, score_service};
use fathom_ml::{DetectorConfig, Scored, assemble, baseline};
use fathom_sim::WorldConfig;
use fathom_sim::world::World;
use fathom_sim::world::cost::{day_start, days};

use super::ml::label_kind;

/// The operational methods compared.
pub(super) const OPS_METHODS: [&str; 4] = [
    "univariate (any series)",
    "multivariate (linfa GMM)",
    "univariate ∪ multivariate",
    "trailing mean ± 3σ",
];

/// One service's daily operational series, in a fixed order.
fn series_of(
    world: &World,
    profile: &fathom_sim::world::cost::LoadProfile,
) -> Vec<Vec<Option<f64>>> {
    let readings: Vec<_> = days(&world.config)
        .map(|date| world.ops_day(profile, date))
        .collect();
    vec![
        readings.iter().map(|r| Some(r.requests)).collect(),
        readings
            .iter()
            .map(|r| (r.requests > 0.0).then(|| r.errors / r.requests))
            .collect(),
        readings
            .iter()
            .map(|r| Some(r.latency_p95_seconds))
            .collect(),
        readings.iter().map(|r| Some(r.cpu_usage_cores)).collect(),
        readings
            .iter()
            .map(|r| Some(r.memory_usage_bytes))
            .collect(),
    ]
}

/// Runs of consecutive flagged positions, as alerts of `series`.
fn runs(flags: impl Iterator<Item = bool>, series: usize, kind: &str) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    let mut open: Option<usize> = None;
    let mut last = 0;
    for (t, flagged) in flags.enumerate() {
        last = t;
        match (flagged, open) {
            (true, None) => open = Some(t),
            (false, Some(first)) => {
                out.push(Alert {
                    series,
                    first,
                    last: t - 1,
                    kind: kind.to_owned(),
                });
                open = None;
            }
            _ => {}
        }
    }
    if let Some(first) = open {
        out.push(Alert {
            series,
            first,
            last,
            kind: kind.to_owned(),
        });
    }
    out
}

/// Overlapping or touching alerts of one service merged into one: a
/// service-level alarm, however many of its series raised it.
fn merged(mut alerts: Vec<Alert>) -> Vec<Alert> {
    alerts.sort_by_key(|a| (a.series, a.first, a.last));
    let mut out: Vec<Alert> = Vec::new();
    for alert in alerts {
        match out.last_mut() {
            Some(prev) if prev.series == alert.series && alert.first <= prev.last + 1 => {
                prev.last = prev.last.max(alert.last);
            }
            _ => out.push(alert),
        }
    }
    out
}

/// Every method's report on the operational series of the worlds.
pub(super) fn evaluate_operations(seeds: &[u64], services: usize, days_back: u32) -> Vec<Report> {
    let mut labels = Vec::new();
    let mut alerts: [Vec<Alert>; 4] = Default::default();
    let (mut units, mut points) = (0usize, 0usize);
    let config = DetectorConfig::default();
    let joint = MultivariateConfig::default();
    for &seed in seeds {
        let world = World::generate(WorldConfig {
            seed,
            services,
            teams: (services / 8).max(1),
            days: days_back,
            ..WorldConfig::default()
        });
        let first = world.config.start().date_naive();
        let position = |date: NaiveDate| (date - first).num_days().max(0) as usize;
        for profile in &world.loads {
            let unit = units;
            units += 1;
            // Incidents as the daily readings see them: open at the day's
            // start (an incident between two readings leaves no trace in
            // daily data, so it is no label either).
            let open =
                days(&world.config).map(|d| world.incident_open(profile.component, day_start(d)));
            labels.extend(runs(open, unit, "incident").into_iter().map(|a| Label {
                series: unit,
                first: a.first,
                last: a.last,
                kind: "incident".to_owned(),
            }));
            if let Some(anomaly) = &profile.anomaly {
                labels.push(Label {
                    series: unit,
                    first: position(anomaly.start),
                    last: position(anomaly.end),
                    kind: format!("load_{}", label_kind(anomaly.kind)),
                });
            }
            let series = series_of(&world, profile);
            let length = series.first().map_or(0, Vec::len);
            points += length;
            let scored: Vec<Vec<Scored>> = series
                .iter()
                .map(|values| fathom_ml::Detector::score_all(config.clone(), &[7], values))
                .collect();
            let mut univariate = Vec::new();
            for s in &scored {
                univariate.extend(assemble(s, config.level_points).into_iter().map(|a| Alert {
                    series: unit,
                    first: a.first,
                    last: a.last,
                    kind: a.kind.as_str().to_owned(),
                }));
            }
            let residuals: Vec<Vec<f64>> = (0..length)
                .map(|t| {
                    scored
                        .iter()
                        .map(|s| if s[t].expected.is_some() { s[t].z } else { 0.0 })
                        .collect()
                })
                .collect();
            let normal: Vec<bool> = (0..length)
                .map(|t| {
                    scored
                        .iter()
                        .all(|s| s[t].expected.is_some() && !s[t].anomalous)
                })
                .collect();
            let joint_scores = score_service(&joint, &residuals, &normal);
            let multivariate = runs(joint_scores.iter().map(|s| s.anomalous), unit, "joint");
            let mut trailing = Vec::new();
            for values in &series {
                let s = baseline::trailing_mean(values);
                trailing.extend(runs(s.iter().map(|p| p.anomalous), unit, "spike"));
            }
            alerts[0].extend(merged(univariate.clone()));
            alerts[1].extend(merged(multivariate.clone()));
            alerts[2].extend(merged(univariate.into_iter().chain(multivariate).collect()));
            alerts[3].extend(merged(trailing));
        }
    }
    alerts
        .iter()
        .map(|a| evaluate(&labels, a, points, DAYS_PER_MONTH, RECOVERY_POINTS))
        .collect()
}

/// The operational reports as a table.
pub(super) fn print_operations(reports: &[Report], services: usize, days: u32) {
    println!(
        "\nOperational series (requests, error rate, p95 latency, CPU, memory) of every deployed service, judged per service; same worlds ({services} components × {days} days). Labels: incidents open at a day's reading, injected load anomalies."
    );
    println!(
        "\n{:<26} {:>6} {:>5} {:>5} {:>8} {:>9} {:>6} {:>5} {:>14}",
        "method",
        "alerts",
        "true",
        "false",
        "recovery",
        "precision",
        "recall",
        "F1",
        "false/100 s-m"
    );
    for (method, r) in OPS_METHODS.iter().zip(reports) {
        println!(
            "{:<26} {:>6} {:>5} {:>5} {:>8} {:>9.3} {:>6.3} {:>5.3} {:>14.2}",
            method,
            r.alerts,
            r.true_alerts,
            r.false_alerts,
            r.recovery_alerts,
            r.precision,
            r.recall,
            r.f1,
            r.false_per_100_series_months
        );
    }
    println!(
        "\n{:<26} {:<18} {:>8} {:>5} {:>6} {:>13}",
        "method", "kind", "labelled", "found", "recall", "median delay"
    );
    for (method, r) in OPS_METHODS.iter().zip(reports) {
        for (kind, k) in &r.kinds {
            println!(
                "{:<26} {:<18} {:>8} {:>5} {:>6.3} {:>11.1} d",
                method, kind, k.labelled, k.found, k.recall, k.median_delay
            );
        }
    }
}
