//! Ground truth: what the generator knows, written so tests can compare
//! Fathom's numbers against it.
//!
//! DORA is computed here by its own implementation of the definitions in the
//! design brief (§6), independent of `transforms/`. Where the brief leaves a
//! choice, this module fixes it, and `docs/metrics.md` must say the same:
//!
//! - A *production deployment* is a completed deploy job (status success) to
//!   an environment matching `^prod(uction)?([-_].*)?$` (case-insensitive),
//!   counted in the window containing its `finished_at`. Rollbacks and
//!   hotfixes are deployments too. Failed jobs are counted separately.
//! - *Changes* of a deployment are the commits reachable from its revision
//!   and not from the previous completed production deployment of the same
//!   service (linear history: sequence numbers in between). A change is a
//!   merged pull request (all its commits) or a commit pushed straight to
//!   main. Its *lead time* is measured at the first production deployment
//!   that shipped it: `finished_at − first commit authored_at`.
//! - A deployment *failed* when an incident is linked to it or a rollback
//!   deployment undid it (the rollback's previous completed production
//!   deployment). An incident links to the deployment it names explicitly,
//!   else to the latest production deployment of the same service that
//!   finished before the incident started, within 7 days.
//! - *Failed deployment recovery time*: from the failed deployment's
//!   `finished_at` to the latest resolution of its linked incidents, or to
//!   the rollback's `finished_at`. *Time to restore*: incident
//!   `resolved_at − created_at`, for incidents created in the window.
//!   Everything is known as of the world's end: an incident resolved later
//!   is still open then (no resolution, no recovery through it).
//! - *Rework*: production deployments started while an incident on the same
//!   service was open, or shipping a hotfix-labelled pull request.
//! - Percentiles interpolate linearly between ranks (`percentile_cont`).
//! - Windows are the N days before the world's end (exclusive): 7, 30, 90,
//!   365. Deploy days per week: the median, over calendar weeks (Monday
//!   start, UTC) that intersect the window, of distinct days with a
//!   production deployment inside the window.
//! - Scopes: component, team, department (its teams' union), system,
//!   domain, org; a scope's numbers come from the union of its components'
//!   events, never from averaging. Empty inputs give null, not zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::world::{Deployment, Org, ServiceHistory, World, WorldConfig};

pub mod cost;
pub mod usage;

/// The rolling windows, in days.
pub const WINDOWS: [u32; 4] = [7, 30, 90, 365];

/// Incidents link to deployments that finished at most this long before.
pub const INCIDENT_GAP: Duration = Duration::days(7);

/// What the generator knows about one production deployment.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentTruth {
    /// Component ref.
    pub entity_ref: String,
    /// Deployment id as stored by Fathom.
    pub deployment_id: String,
    /// Completion time.
    pub finished_at: DateTime<Utc>,
    /// Whether the deploy job completed.
    pub completed: bool,
    /// Failed by the metric definition (linked incident or rollback).
    pub failed: bool,
    /// Truly caused an incident (the generator's label, for models).
    pub caused_incident: bool,
    /// Incidents linked by the definition.
    pub linked_incidents: Vec<String>,
    /// Whether it is a rollback.
    pub is_rollback: bool,
    /// Whether it counts as rework.
    pub rework: bool,
    /// Changes (pull request numbers or direct-push SHAs) it shipped first.
    pub changes: Vec<String>,
    /// Recovery time when failed.
    pub recovery_seconds: Option<f64>,
}

/// DORA for one scope and window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoraTruth {
    /// `component:default/x`, `group:default/team-x`, `system:…`, `domain:…` or `org`.
    pub scope: String,
    /// Window in days.
    pub window_days: u32,
    /// Completed production deployments.
    pub deployments: u64,
    /// Deploy jobs that failed to complete (not in CFR).
    pub failed_jobs: u64,
    /// Distinct days with a production deployment.
    pub deploy_days: u64,
    /// Deployments per day.
    pub deployments_per_day: Option<f64>,
    /// Deployments per week.
    pub deployments_per_week: Option<f64>,
    /// Median deploy days per calendar week.
    pub median_deploy_days_per_week: Option<f64>,
    /// Changes first deployed in the window.
    pub changes: u64,
    /// Median lead time.
    pub lead_time_p50_seconds: Option<f64>,
    /// 90th percentile lead time.
    pub lead_time_p90_seconds: Option<f64>,
    /// Failed deployments.
    pub failed_deployments: u64,
    /// Failed over all deployments.
    pub change_failure_rate: Option<f64>,
    /// Median failed deployment recovery time.
    pub failed_deployment_recovery_p50_seconds: Option<f64>,
    /// Incidents created in the window and resolved.
    pub incidents: u64,
    /// Median time to restore.
    pub time_to_restore_p50_seconds: Option<f64>,
    /// Rework deployments.
    pub rework_deployments: u64,
    /// Rework over all deployments.
    pub rework_rate: Option<f64>,
}

impl DoraTruth {
    /// The `dora_metrics` columns, as text, that [`DoraTruth::from_texts`]
    /// reads back, in its order (select them `WHERE environment = 'all'`).
    pub const COLUMNS: &'static str = "scope, CAST(window_days AS VARCHAR) AS window_days, \
        CAST(deployments AS VARCHAR) AS deployments, CAST(failed_jobs AS VARCHAR) AS failed_jobs, \
        CAST(deploy_days AS VARCHAR) AS deploy_days, CAST(changes AS VARCHAR) AS changes, \
        CAST(failed_deployments AS VARCHAR) AS failed_deployments, CAST(incidents AS VARCHAR) AS incidents, \
        CAST(rework_deployments AS VARCHAR) AS rework_deployments, \
        CAST(deployments_per_day AS VARCHAR) AS deployments_per_day, \
        CAST(deployments_per_week AS VARCHAR) AS deployments_per_week, \
        CAST(median_deploy_days_per_week AS VARCHAR) AS median_deploy_days_per_week, \
        CAST(lead_time_p50_seconds AS VARCHAR) AS lead_time_p50_seconds, \
        CAST(lead_time_p90_seconds AS VARCHAR) AS lead_time_p90_seconds, \
        CAST(change_failure_rate AS VARCHAR) AS change_failure_rate, \
        CAST(failed_deployment_recovery_p50_seconds AS VARCHAR) AS failed_deployment_recovery_p50_seconds, \
        CAST(time_to_restore_p50_seconds AS VARCHAR) AS time_to_restore_p50_seconds, \
        CAST(rework_rate AS VARCHAR) AS rework_rate";

    /// A row of [`DoraTruth::COLUMNS`] (nulls as empty text); `None` when
    /// a count or the window is not a number.
    pub fn from_texts(row: &[String]) -> Option<Self> {
        let text = |i: usize| row.get(i).map_or("", String::as_str);
        let count = |i: usize| text(i).parse::<u64>().ok();
        let value = |i: usize| text(i).parse::<f64>().ok();
        Some(Self {
            scope: text(0).to_owned(),
            window_days: text(1).parse().ok()?,
            deployments: count(2)?,
            failed_jobs: count(3)?,
            deploy_days: count(4)?,
            changes: count(5)?,
            failed_deployments: count(6)?,
            incidents: count(7)?,
            rework_deployments: count(8)?,
            deployments_per_day: value(9),
            deployments_per_week: value(10),
            median_deploy_days_per_week: value(11),
            lead_time_p50_seconds: value(12),
            lead_time_p90_seconds: value(13),
            change_failure_rate: value(14),
            failed_deployment_recovery_p50_seconds: value(15),
            time_to_restore_p50_seconds: value(16),
            rework_rate: value(17),
        })
    }

    /// How `ours` (this scope and window as computed elsewhere) differs
    /// from the truth, one line per metric; empty when they agree. Values
    /// agree to a relative 1e-6. Failed deploy jobs may be fewer: Argo CD
    /// keeps no failed syncs in its history, so an ingest sees only the
    /// ones still on display.
    pub fn differences(&self, ours: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let name = format!("{} {}d", self.scope, self.window_days);
        let counts = [
            ("deployments", self.deployments, ours.deployments),
            ("deploy_days", self.deploy_days, ours.deploy_days),
            ("changes", self.changes, ours.changes),
            (
                "failed_deployments",
                self.failed_deployments,
                ours.failed_deployments,
            ),
            ("incidents", self.incidents, ours.incidents),
            (
                "rework_deployments",
                self.rework_deployments,
                ours.rework_deployments,
            ),
        ];
        for (metric, want, got) in counts {
            if want != got {
                out.push(format!("{name} {metric}: {got} vs {want}"));
            }
        }
        if ours.failed_jobs > self.failed_jobs {
            out.push(format!(
                "{name} failed_jobs: {} > {}",
                ours.failed_jobs, self.failed_jobs
            ));
        }
        let values = [
            (
                "deployments_per_day",
                self.deployments_per_day,
                ours.deployments_per_day,
            ),
            (
                "deployments_per_week",
                self.deployments_per_week,
                ours.deployments_per_week,
            ),
            (
                "median_deploy_days_per_week",
                self.median_deploy_days_per_week,
                ours.median_deploy_days_per_week,
            ),
            (
                "lead_time_p50",
                self.lead_time_p50_seconds,
                ours.lead_time_p50_seconds,
            ),
            (
                "lead_time_p90",
                self.lead_time_p90_seconds,
                ours.lead_time_p90_seconds,
            ),
            (
                "change_failure_rate",
                self.change_failure_rate,
                ours.change_failure_rate,
            ),
            (
                "recovery_p50",
                self.failed_deployment_recovery_p50_seconds,
                ours.failed_deployment_recovery_p50_seconds,
            ),
            (
                "time_to_restore_p50",
                self.time_to_restore_p50_seconds,
                ours.time_to_restore_p50_seconds,
            ),
            ("rework_rate", self.rework_rate, ours.rework_rate),
        ];
        for (metric, want, got) in values {
            let same = match (want, got) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            if !same {
                out.push(format!("{name} {metric}: {got:?} vs {want:?}"));
            }
        }
        out
    }
}

/// Every difference between the truth and `ours` (any order), and how
/// many scope × window rows agree: a missing or extra row is a difference.
pub fn compare_dora(truth: &[DoraTruth], ours: &[DoraTruth]) -> (usize, Vec<String>) {
    let by_key: BTreeMap<(&str, u32), &DoraTruth> = ours
        .iter()
        .map(|d| ((d.scope.as_str(), d.window_days), d))
        .collect();
    let mut agreed = 0;
    let mut differences = Vec::new();
    for t in truth {
        match by_key.get(&(t.scope.as_str(), t.window_days)) {
            None => differences.push(format!("{} {}d missing", t.scope, t.window_days)),
            Some(o) => {
                let found = t.differences(o);
                if found.is_empty() {
                    agreed += 1;
                }
                differences.extend(found);
            }
        }
    }
    let known: BTreeSet<(&str, u32)> = truth
        .iter()
        .map(|t| (t.scope.as_str(), t.window_days))
        .collect();
    for key in by_key.keys().filter(|k| !known.contains(*k)) {
        differences.push(format!("{} {}d is not in the truth", key.0, key.1));
    }
    (agreed, differences)
}

/// Linear-interpolation percentile (`percentile_cont`) of unsorted values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = p * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    Some(sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64))
}

fn seconds(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// What the window aggregation needs of one production deployment.
struct DeploymentFacts {
    finished_at: DateTime<Utc>,
    failed: bool,
    rework: bool,
    recovery_seconds: Option<f64>,
}

/// Per-service facts the window aggregation needs (compact, so huge worlds
/// can stream their deployments out and keep only these).
struct ServiceFacts {
    deployments: Vec<DeploymentFacts>,
    /// (first deployment finished_at, lead time seconds) per change.
    changes: Vec<(DateTime<Utc>, f64)>,
    /// (created_at, restore seconds) per incident.
    incidents: Vec<(DateTime<Utc>, f64)>,
    /// Finish times of deploy jobs that failed.
    failed_jobs: Vec<DateTime<Utc>>,
}

/// The facts of one service as known at `end` (the world's last instant):
/// an incident resolved later is still open then.
fn service_facts(
    org: &Org,
    history: &ServiceHistory,
    end: DateTime<Utc>,
) -> (ServiceFacts, Vec<DeploymentTruth>) {
    let entity_ref = org.component_ref(history.component);
    let mut completed: Vec<&Deployment> = history
        .deployments
        .iter()
        .filter(|d| d.production && d.job_succeeded)
        .collect();
    completed.sort_by(|a, b| a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id)));
    let failed_jobs = history
        .deployments
        .iter()
        .filter(|d| d.production && !d.job_succeeded)
        .map(|d| d.finished_at)
        .collect();

    // Incident links by the definition.
    let mut linked: HashMap<&str, Vec<&crate::world::Incident>> = HashMap::new();
    for incident in &history.incidents {
        let target = if incident.explicit_link {
            incident.caused_by_deployment.as_deref()
        } else {
            completed
                .iter()
                .rev()
                .find(|d| {
                    d.finished_at < incident.created_at
                        && incident.created_at - d.finished_at <= INCIDENT_GAP
                })
                .map(|d| d.id.as_str())
        };
        if let Some(target) = target {
            linked.entry(target).or_default().push(incident);
        }
    }

    // Changes: pull requests and direct pushes, by the commits each deploy ships.
    let first_authored: HashMap<u64, DateTime<Utc>> = history
        .pull_requests
        .iter()
        .map(|pr| (pr.number, pr.first_commit_at))
        .collect();
    let hotfix_prs: BTreeSet<u64> = history
        .pull_requests
        .iter()
        .filter(|pr| pr.labels.iter().any(|l| l == "hotfix"))
        .map(|pr| pr.number)
        .collect();
    let mut shipped: BTreeSet<String> = BTreeSet::new();
    let mut changes = Vec::new();
    let mut deployments = Vec::new();
    let mut previous_seq: Option<u32> = None;
    for (i, d) in completed.iter().enumerate() {
        let mut first_changes = Vec::new();
        let mut ships_hotfix = false;
        if let Some(prev) = previous_seq {
            for commit in history
                .commits
                .iter()
                .filter(|c| c.seq > prev && c.seq <= d.revision_seq)
            {
                let (key, authored) = match commit.pull_request {
                    Some(number) => {
                        ships_hotfix |= hotfix_prs.contains(&number);
                        (
                            format!("pr#{number}"),
                            first_authored
                                .get(&number)
                                .copied()
                                .unwrap_or(commit.authored_at),
                        )
                    }
                    None => (format!("push:{}", commit.sha), commit.authored_at),
                };
                if shipped.insert(key.clone()) {
                    changes.push((d.finished_at, seconds(d.finished_at - authored)));
                    first_changes.push(key);
                }
            }
        }
        // The first deployment ever seen is the baseline: it ships nothing.
        previous_seq = Some(d.revision_seq);
        let rolled_back_by = completed[i + 1..]
            .first()
            .filter(|next| next.is_rollback)
            .map(|next| next.finished_at);
        let incidents = linked.get(d.id.as_str()).cloned().unwrap_or_default();
        let failed = !incidents.is_empty() || rolled_back_by.is_some();
        let recovery_seconds = if let Some(resolved) = incidents
            .iter()
            .map(|i| i.resolved_at)
            .filter(|at| *at <= end)
            .max()
        {
            Some(seconds(resolved - d.finished_at))
        } else {
            rolled_back_by.map(|at| seconds(at - d.finished_at))
        };
        let open_incident = history
            .incidents
            .iter()
            .any(|i| i.created_at <= d.started_at && d.started_at < i.resolved_at);
        deployments.push(DeploymentTruth {
            entity_ref: entity_ref.clone(),
            deployment_id: d.id.clone(),
            finished_at: d.finished_at,
            completed: true,
            failed,
            caused_incident: d.caused_incident.is_some(),
            linked_incidents: incidents.iter().map(|i| i.id.clone()).collect(),
            is_rollback: d.is_rollback,
            rework: open_incident || ships_hotfix,
            changes: first_changes,
            recovery_seconds: if failed { recovery_seconds } else { None },
        });
    }
    let compact = deployments
        .iter()
        .map(|d| DeploymentFacts {
            finished_at: d.finished_at,
            failed: d.failed,
            rework: d.rework,
            recovery_seconds: d.recovery_seconds,
        })
        .collect();
    let facts = ServiceFacts {
        deployments: compact,
        changes,
        incidents: history
            .incidents
            .iter()
            .filter(|i| i.resolved_at <= end)
            .map(|i| (i.created_at, seconds(i.resolved_at - i.created_at)))
            .collect(),
        failed_jobs,
    };
    (facts, deployments)
}

fn median_deploy_days_per_week(
    days: &BTreeSet<NaiveDate>,
    from: NaiveDate,
    to: NaiveDate,
) -> Option<f64> {
    // Calendar weeks (Monday start) intersecting [from, to).
    let mut monday = from - Duration::days(i64::from(from.weekday().num_days_from_monday()));
    let mut per_week = Vec::new();
    while monday < to {
        let next = monday + Duration::days(7);
        per_week.push(days.range(monday.max(from)..next.min(to)).count() as f64);
        monday = next;
    }
    percentile(&per_week, 0.5)
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn dora_row(
    scope: &str,
    window_days: u32,
    end: DateTime<Utc>,
    facts: &[&ServiceFacts],
) -> DoraTruth {
    let from = end - Duration::days(i64::from(window_days));
    let in_window = |t: &DateTime<Utc>| *t >= from && *t < end;
    let deployments: Vec<&DeploymentFacts> = facts
        .iter()
        .flat_map(|f| f.deployments.iter())
        .filter(|d| in_window(&d.finished_at))
        .collect();
    let n = deployments.len() as u64;
    let days: BTreeSet<NaiveDate> = deployments
        .iter()
        .map(|d| d.finished_at.date_naive())
        .collect();
    let lead_times: Vec<f64> = facts
        .iter()
        .flat_map(|f| f.changes.iter())
        .filter(|(at, _)| in_window(at))
        .map(|(_, s)| *s)
        .collect();
    let failed: Vec<&&DeploymentFacts> = deployments.iter().filter(|d| d.failed).collect();
    let recoveries: Vec<f64> = failed.iter().filter_map(|d| d.recovery_seconds).collect();
    let restores: Vec<f64> = facts
        .iter()
        .flat_map(|f| f.incidents.iter())
        .filter(|(at, _)| in_window(at))
        .map(|(_, s)| *s)
        .collect();
    let rework = deployments.iter().filter(|d| d.rework).count() as u64;
    let failed_jobs = facts
        .iter()
        .flat_map(|f| f.failed_jobs.iter())
        .filter(|t| in_window(t))
        .count() as u64;
    DoraTruth {
        scope: scope.to_owned(),
        window_days,
        deployments: n,
        failed_jobs,
        deploy_days: days.len() as u64,
        deployments_per_day: (n > 0).then(|| n as f64 / f64::from(window_days)),
        deployments_per_week: (n > 0).then(|| n as f64 * 7.0 / f64::from(window_days)),
        median_deploy_days_per_week: if n > 0 {
            median_deploy_days_per_week(&days, from.date_naive(), end.date_naive())
        } else {
            None
        },
        changes: lead_times.len() as u64,
        lead_time_p50_seconds: percentile(&lead_times, 0.5),
        lead_time_p90_seconds: percentile(&lead_times, 0.9),
        failed_deployments: failed.len() as u64,
        change_failure_rate: ratio(failed.len() as u64, n),
        failed_deployment_recovery_p50_seconds: percentile(&recoveries, 0.5),
        incidents: restores.len() as u64,
        time_to_restore_p50_seconds: percentile(&restores, 0.5),
        rework_deployments: rework,
        rework_rate: ratio(rework, n),
    }
}

/// Computes the truth one service at a time, for worlds too big to hold.
pub struct TruthBuilder<'a> {
    config: WorldConfig,
    org: &'a Org,
    facts: Vec<Option<ServiceFacts>>,
}

impl<'a> TruthBuilder<'a> {
    /// Starts on the organisation of a world.
    pub fn new(config: WorldConfig, org: &'a Org) -> Self {
        Self {
            config,
            org,
            facts: (0..org.components.len()).map(|_| None).collect(),
        }
    }

    /// Takes in one service's history; returns the truth of its production
    /// deployments, which the caller may write out and drop.
    pub fn add(&mut self, history: &ServiceHistory) -> Vec<DeploymentTruth> {
        let (facts, deployments) = service_facts(self.org, history, self.config.end());
        if let Some(slot) = self.facts.get_mut(history.component) {
            *slot = Some(facts);
        }
        deployments
    }

    /// DORA per scope and window over every service added.
    pub fn finish(self) -> Vec<DoraTruth> {
        let org = self.org;
        let mut scopes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (idx, component) in org.components.iter().enumerate() {
            let team = &org.teams[component.team];
            let department = &org.departments[team.department];
            let domain = &org.domains[team.department].0;
            for scope in [
                org.component_ref(idx),
                format!("group:default/{}", team.name),
                format!("group:default/{}", department.name),
                format!("system:default/{}", component.system),
                format!("domain:default/{domain}"),
                "org".to_owned(),
            ] {
                scopes.entry(scope).or_default().push(idx);
            }
        }
        let end = self.config.end();
        let mut dora = Vec::with_capacity(scopes.len() * WINDOWS.len());
        for (scope, members) in &scopes {
            let scoped: Vec<&ServiceFacts> = members
                .iter()
                .filter_map(|i| self.facts[*i].as_ref())
                .collect();
            for window in WINDOWS {
                dora.push(dora_row(scope, window, end, &scoped));
            }
        }
        dora
    }
}

/// Everything the generator knows, ready to be written.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    /// DORA per scope and window, scopes sorted.
    pub dora: Vec<DoraTruth>,
    /// Every completed production deployment.
    pub deployments: Vec<DeploymentTruth>,
    /// The anomalies injected into cost series, with their labels.
    pub anomalies: Vec<crate::world::cost::Anomaly>,
    /// The true owner of every record the catalog does not map:
    /// (upstream, identifier, true entity ref).
    pub unmapped: Vec<(String, String, String)>,
    /// Portal adoption per team: (team ref, members, share of members
    /// active in the last 30 days).
    pub usage: Vec<(String, usize, f64)>,
    /// Cloud cost totals per billing period, attribution and category.
    pub cloud_costs: Vec<crate::world::aws::CloudCostTruth>,
    /// Portal events per day: (date, events, distinct users).
    pub portal_events: Vec<(NaiveDate, usize, usize)>,
    /// Portal usage per scope and month, searches, template runs.
    pub usage_months: usage::UsageTruth,
}

impl Truth {
    /// Computes the truth of `world`.
    pub fn compute(world: &World) -> Self {
        let mut builder = TruthBuilder::new(world.config, &world.org);
        let deployments = world
            .histories
            .iter()
            .flat_map(|h| builder.add(h))
            .collect();
        let (cloud_costs, aws_unmapped) = crate::world::aws::cloud_cost_truth(world);
        let adoption = crate::world::usage::team_adoption(&world.config, &world.org);
        let mut all_events = Vec::new();
        let portal_events = crate::world::cost::days(&world.config)
            .map(|date| {
                let events =
                    crate::world::usage::events_on(&world.config, &world.org, &adoption, date);
                let users: BTreeSet<usize> = events.iter().map(|e| e.user).collect();
                let counted = (date, events.len(), users.len());
                all_events.extend(events);
                counted
            })
            .collect();
        let usage_months = usage::usage_truth(&world.org, &all_events);
        Self {
            dora: builder.finish(),
            deployments,
            cloud_costs,
            portal_events,
            usage_months,
            anomalies: world
                .loads
                .iter()
                .filter_map(|l| l.anomaly.clone())
                .collect(),
            unmapped: world
                .org
                .unmapped_truth
                .iter()
                .cloned()
                .chain(aws_unmapped)
                .collect(),
            usage: crate::world::usage::active_share(&world.config, &world.org, 30)
                .into_iter()
                .enumerate()
                .map(|(t, share)| {
                    (
                        world.org.team_ref(t),
                        world.org.teams[t].members.len(),
                        share,
                    )
                })
                .collect(),
        }
    }

    /// Writes `dora.jsonl`, `deployments.jsonl`, `anomalies.jsonl`,
    /// `usage.jsonl`, `usage_active.jsonl`, `usage_search.jsonl`,
    /// `usage_templates.jsonl`, `unmapped.jsonl`, `cloud_costs.jsonl` and
    /// `portal_events.jsonl` into `dir`.
    pub fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let lines = |items: &mut dyn Iterator<Item = serde_json::Result<String>>| -> std::io::Result<String> {
            let mut out = String::new();
            for item in items {
                out.push_str(&item.map_err(std::io::Error::other)?);
                out.push('\n');
            }
            Ok(out)
        };
        std::fs::write(
            dir.join("dora.jsonl"),
            lines(&mut self.dora.iter().map(serde_json::to_string))?,
        )?;
        std::fs::write(
            dir.join("deployments.jsonl"),
            lines(&mut self.deployments.iter().map(serde_json::to_string))?,
        )?;
        std::fs::write(
            dir.join("anomalies.jsonl"),
            lines(&mut self.anomalies.iter().map(serde_json::to_string))?,
        )?;
        std::fs::write(
            dir.join("usage.jsonl"),
            lines(&mut self.usage.iter().map(|(team, members, share)| {
                serde_json::to_string(&serde_json::json!({
                    "team_ref": team, "members": members, "active_share_30d": share,
                }))
            }))?,
        )?;
        std::fs::write(
            dir.join("usage_active.jsonl"),
            lines(&mut self.usage_months.active.iter().map(serde_json::to_string))?,
        )?;
        std::fs::write(
            dir.join("usage_search.jsonl"),
            lines(&mut self.usage_months.search.iter().map(serde_json::to_string))?,
        )?;
        std::fs::write(
            dir.join("usage_templates.jsonl"),
            lines(
                &mut self
                    .usage_months
                    .templates
                    .iter()
                    .map(serde_json::to_string),
            )?,
        )?;
        std::fs::write(
            dir.join("cloud_costs.jsonl"),
            lines(&mut self.cloud_costs.iter().map(serde_json::to_string))?,
        )?;
        std::fs::write(
            dir.join("portal_events.jsonl"),
            lines(&mut self.portal_events.iter().map(|(date, events, users)| {
                serde_json::to_string(&serde_json::json!({
                    "date": date, "events": events, "users": users,
                }))
            }))?,
        )?;
        std::fs::write(
            dir.join("unmapped.jsonl"),
            lines(&mut self.unmapped.iter().map(|(upstream, identifier, entity_ref)| {
                serde_json::to_string(&serde_json::json!({
                    "upstream": upstream, "identifier": identifier, "true_entity_ref": entity_ref,
                }))
            }))?,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[4.0], 0.9), Some(4.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[10.0, 0.0, 5.0], 0.9), Some(9.0));
    }
}
