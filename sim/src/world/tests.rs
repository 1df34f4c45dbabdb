//! Properties of generated worlds: determinism and sane distributions.

use std::collections::BTreeMap;

use super::*;
use crate::truth::Truth;

fn truth_bytes(config: WorldConfig) -> Vec<u8> {
    let truth = Truth::compute(&World::generate(config));
    serde_json::to_vec(&truth).unwrap_or_default()
}

#[test]
fn same_seed_same_truth_other_seed_other_truth() {
    let config = WorldConfig::default();
    let first = truth_bytes(config);
    assert!(!first.is_empty());
    assert_eq!(
        first,
        truth_bytes(config),
        "same seed must give byte-identical truth"
    );
    let other = truth_bytes(WorldConfig { seed: 7, ..config });
    assert_ne!(first, other);
}

#[test]
fn adding_a_service_leaves_the_others_unchanged() {
    let config = WorldConfig {
        teams: 4,
        services: 10,
        days: 60,
        ..WorldConfig::default()
    };
    let small = World::generate(config);
    let big = World::generate(WorldConfig {
        services: 11,
        ..config
    });
    for (a, b) in small.histories.iter().zip(&big.histories) {
        assert_eq!(serde_json::to_string(a).ok(), serde_json::to_string(b).ok());
    }
}

/// Production deployments per service per 30 days and change failure rate,
/// by profile, over a large world.
fn by_profile(world: &World) -> BTreeMap<&'static str, (f64, f64, f64)> {
    let truth = Truth::compute(world);
    let mut acc: BTreeMap<&'static str, (u64, u64, u64, Vec<f64>)> = BTreeMap::new();
    for (idx, component) in world.org.components.iter().enumerate() {
        if component.kind == ComponentKind::Library {
            continue;
        }
        let profile = match world.org.teams[component.team].profile {
            Profile::Elite => "elite",
            Profile::High => "high",
            Profile::Medium => "medium",
            Profile::Low => "low",
        };
        let scope = world.org.component_ref(idx);
        if let Some(row) = truth
            .dora
            .iter()
            .find(|d| d.scope == scope && d.window_days == 365)
        {
            let entry = acc.entry(profile).or_default();
            entry.0 += 1;
            entry.1 += row.deployments;
            entry.2 += row.failed_deployments;
            if let Some(p50) = row.lead_time_p50_seconds {
                entry.3.push(p50);
            }
        }
    }
    acc.into_iter()
        .map(|(profile, (services, deployments, failed, leads))| {
            let per_service_month =
                deployments as f64 / services as f64 / f64::from(world.config.days) * 30.0;
            let cfr = failed as f64 / deployments.max(1) as f64;
            let lead = crate::truth::percentile(&leads, 0.5).unwrap_or(f64::NAN);
            (profile, (per_service_month, cfr, lead))
        })
        .collect()
}

#[test]
fn profiles_drive_cadence_failures_and_lead_time() {
    let world = World::generate(WorldConfig {
        teams: 8,
        services: 80,
        days: 180,
        ..WorldConfig::default()
    });
    let stats = by_profile(&world);
    println!("per profile (deploys/service/month, CFR, median lead seconds): {stats:?}");
    let (elite, high, medium, low) = (stats["elite"], stats["high"], stats["medium"], stats["low"]);
    // Deployments per service per month fall with the profile.
    assert!(elite.0 > 2.0 * high.0, "{stats:?}");
    assert!(high.0 > 1.5 * medium.0, "{stats:?}");
    assert!(medium.0 > low.0, "{stats:?}");
    // Failure rates rise.
    assert!(elite.1 < high.1 && high.1 < low.1, "{stats:?}");
    // Lead times lengthen.
    assert!(
        elite.2 < high.2 && high.2 < medium.2 && medium.2 < low.2,
        "{stats:?}"
    );
}

#[test]
fn the_catalog_has_the_gaps_real_catalogs_have() {
    let world = World::generate(WorldConfig::default());
    let org = &world.org;
    let jdoes: Vec<&str> = org
        .users
        .iter()
        .filter(|u| u.name == "jdoe")
        .map(|u| u.namespace.as_str())
        .collect();
    assert_eq!(jdoes, vec!["default", "contractors"]);
    assert!(
        org.components
            .iter()
            .any(|c| !c.owner_written.contains(':')),
        "a short owner ref"
    );
    assert!(
        org.components
            .iter()
            .any(|c| c.owner_written.starts_with("group:"))
    );
    assert!(!org.unclaimed_repos.is_empty() && !org.unowned_namespaces.is_empty());
    assert!(
        org.components
            .iter()
            .all(|c| !org.unclaimed_repos.contains(&c.repo))
    );
    let profiles: std::collections::BTreeSet<_> = org
        .teams
        .iter()
        .map(|t| format!("{:?}", t.profile))
        .collect();
    assert_eq!(profiles.len(), 4, "every profile present");
}

#[test]
fn histories_are_consistent() {
    let world = World::generate(WorldConfig::default());
    for history in &world.histories {
        // Main is ordered by commit time and sequence numbers are positions.
        for (i, pair) in history.commits.windows(2).enumerate() {
            assert!(pair[0].committed_at <= pair[1].committed_at);
            assert_eq!(pair[0].seq as usize, i);
        }
        for pr in &history.pull_requests {
            assert!(pr.first_commit_at <= pr.created_at);
            assert!(pr.created_at <= pr.first_review_at);
            assert!(pr.first_review_at <= pr.merged_at);
            assert!(pr.reviewer_login != pr.author_login);
        }
        let incident_ids: std::collections::BTreeSet<&str> =
            history.incidents.iter().map(|i| i.id.as_str()).collect();
        for deployment in &history.deployments {
            assert!(deployment.started_at < deployment.finished_at);
            if let Some(incident) = &deployment.caused_incident {
                assert!(
                    incident_ids.contains(incident.as_str()),
                    "{incident} missing"
                );
                // A release fails only by the draw, which records the
                // probability it was drawn with.
                assert!(
                    deployment
                        .failure_probability
                        .is_some_and(|p| p > 0.0 && p < 1.0),
                    "{}: {:?}",
                    deployment.id,
                    deployment.failure_probability
                );
            }
            if deployment.failure_probability.is_some() {
                assert!(deployment.production && deployment.job_succeeded);
                assert!(!deployment.is_rollback && !deployment.hotfix);
            }
        }
        for incident in &history.incidents {
            assert!(incident.created_at < incident.detected_at);
            assert!(incident.created_at < incident.resolved_at);
        }
    }
}

#[test]
fn costs_are_weekly_seasonal_and_anomalies_show_in_the_series() {
    let config = WorldConfig::default();
    let world = World::generate(config);
    let (mut weekday, mut weekend) = ((0.0, 0), (0.0, 0));
    for profile in &world.loads {
        for date in cost::days(&config) {
            let day = profile.day(&config, date);
            if chrono::Datelike::weekday(&date).number_from_monday() > 5 {
                weekend.0 += day.total_cost_usd();
                weekend.1 += 1;
            } else {
                weekday.0 += day.total_cost_usd();
                weekday.1 += 1;
            }
        }
    }
    let (weekday_mean, weekend_mean) = (
        weekday.0 / f64::from(weekday.1),
        weekend.0 / f64::from(weekend.1),
    );
    assert!(
        weekday_mean > 1.2 * weekend_mean,
        "weekday {weekday_mean} vs weekend {weekend_mean}"
    );

    let anomalies: Vec<&cost::Anomaly> = world
        .loads
        .iter()
        .filter_map(|l| l.anomaly.as_ref())
        .collect();
    let kinds: std::collections::BTreeSet<String> =
        anomalies.iter().map(|a| format!("{:?}", a.kind)).collect();
    assert_eq!(
        kinds.len(),
        3,
        "spikes, level shifts and slow leaks: {kinds:?}"
    );
    for profile in world.loads.iter().filter(|l| l.anomaly.is_some()) {
        let Some(anomaly) = &profile.anomaly else {
            continue;
        };
        // Compare the same weekday a week earlier, so seasonality cancels.
        let peak = if anomaly.kind == cost::AnomalyKind::Spike {
            anomaly.start
        } else {
            anomaly.end
        };
        let before = peak
            - chrono::Duration::days(if anomaly.kind == cost::AnomalyKind::Spike {
                7
            } else {
                7 * (1 + (anomaly.end - anomaly.start).num_days() / 7)
            });
        let at_peak = profile.day(&config, peak).total_cost_usd();
        let baseline = profile.day(&config, before).total_cost_usd();
        assert!(
            at_peak > 1.5 * baseline,
            "{anomaly:?}: {at_peak} vs {baseline}"
        );
    }
    // Some services pay for far more CPU than they use, some do nothing.
    assert!(
        world
            .loads
            .iter()
            .any(|l| l.cpu_utilisation < 0.1 && !l.idle)
    );
    assert!(world.loads.iter().any(|l| l.idle));
}

#[test]
fn portal_adoption_differs_by_team() {
    let config = WorldConfig::default();
    let org = Org::generate(&config);
    let shares = usage::active_share(&config, &org, 30);
    let most = shares.iter().copied().fold(0.0, f64::max);
    let least = shares.iter().copied().fold(1.0, f64::min);
    assert!(most > 0.7 && least < 0.4, "{shares:?}");
    let adoption = usage::team_adoption(&config, &org);
    let day = config.end().date_naive() - chrono::Duration::days(3);
    let events = usage::events_on(&config, &org, &adoption, day);
    assert!(!events.is_empty());
    assert_eq!(
        events,
        usage::events_on(&config, &org, &adoption, day),
        "deterministic"
    );
    assert!(
        events
            .windows(2)
            .all(|w| w[0].occurred_at <= w[1].occurred_at)
    );
    let plugins: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.plugin_id.as_str()).collect();
    assert!(plugins.contains("catalog") && plugins.contains("techdocs"));
}
