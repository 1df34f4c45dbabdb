//! Error tracking as Sentry sees it: a release per version deployed to
//! production (with its deploys), a few background issues per project, and
//! a new issue after each deployment that caused an incident, loud while the
//! incident is open and quiet once it is resolved.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::Rng;
use serde::Serialize;

use super::cost::days;
use super::{Org, ServiceHistory, WorldConfig};

/// A release: one version of a project, created when first deployed.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// `<project>@<short sha>`.
    pub version: String,
    /// Full revision.
    pub revision: String,
    /// When the release was created (first deploy started).
    pub created_at: DateTime<Utc>,
    /// Deploys of this version: (deploy id, environment, started, finished).
    pub deploys: Vec<(u64, String, DateTime<Utc>, DateTime<Utc>)>,
}

/// An error issue and its daily event counts.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorIssue {
    /// Numeric id (Sentry returns it as a string).
    pub id: u64,
    /// Per-project sequence number (for the short id).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Where it happens.
    pub culprit: String,
    /// `error`, `warning`, `fatal`.
    pub level: String,
    /// First event.
    pub first_seen: DateTime<Utc>,
    /// Release of the first event.
    pub first_release: Option<String>,
    /// Truth: the deployment whose change introduced it.
    pub caused_by_deployment: Option<String>,
    /// Events and affected users per day, from the first day seen.
    pub daily: Vec<(NaiveDate, u64, u64)>,
}

/// Everything Sentry knows about one project.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectErrors {
    /// Component index.
    pub component: usize,
    /// Project slug.
    pub slug: String,
    /// Numeric project id.
    pub project_id: u64,
    /// Releases, oldest first.
    pub releases: Vec<Release>,
    /// Issues, by first event.
    pub issues: Vec<ErrorIssue>,
}

impl ProjectErrors {
    /// The Sentry project of component `idx`, if it reports errors.
    pub fn generate(config: &WorldConfig, org: &Org, history: &ServiceHistory) -> Option<Self> {
        let idx = history.component;
        let component = org.components.get(idx)?;
        let slug_annotation = component.sentry_project.as_ref()?;
        let slug = slug_annotation
            .rsplit('/')
            .next()
            .unwrap_or(slug_annotation)
            .to_owned();
        let mut rng = config.rng(2_000_000 + idx as u64);
        let mut releases: Vec<Release> = Vec::new();
        for deployment in history.deployments.iter().filter(|d| d.job_succeeded) {
            let version = format!(
                "{}@{}",
                slug,
                deployment.revision.get(..7).unwrap_or_default()
            );
            let deploy_id = 10_000_000
                + idx as u64 * 100_000
                + releases.iter().map(|r| r.deploys.len()).sum::<usize>() as u64;
            let deploy = (
                deploy_id,
                deployment.environment.clone(),
                deployment.started_at,
                deployment.finished_at,
            );
            match releases.iter_mut().find(|r| r.version == version) {
                Some(release) => release.deploys.push(deploy),
                None => releases.push(Release {
                    version,
                    revision: deployment.revision.clone(),
                    created_at: deployment.started_at,
                    deploys: vec![deploy],
                }),
            }
        }
        releases.sort_by_key(|r| r.created_at);
        let release_at = |at: DateTime<Utc>| {
            releases
                .iter()
                .rev()
                .find(|r| {
                    r.deploys
                        .iter()
                        .any(|d| d.3 <= at && (d.1 == "production" || d.1 == "prod"))
                })
                .map(|r| r.version.clone())
        };
        let mut issues = Vec::new();
        let all_days: Vec<NaiveDate> = days(config).collect();
        let n_background = rng.random_range(2..=4);
        for n in 0..n_background {
            let rate = 10f64.powf(rng.random_range(0.5..2.5));
            let first_seen = config.start() + Duration::hours(rng.random_range(1..48));
            let daily = all_days
                .iter()
                .map(|d| {
                    let events = (rate * rng.random_range(0.7..1.3)).round() as u64;
                    (*d, events, (events / 3).max(u64::from(events > 0)))
                })
                .collect();
            issues.push(ErrorIssue {
                id: 0,
                number: 0,
                title: [
                    "TimeoutError: upstream request timed out",
                    "KeyError: 'currency'",
                    "ConnectionResetError",
                    "ValueError: invalid literal",
                ][n % 4]
                    .to_owned(),
                culprit: format!(
                    "{}.handlers in handle_{n}",
                    component.name.replace('-', "_")
                ),
                level: if n == 0 {
                    "warning".to_owned()
                } else {
                    "error".to_owned()
                },
                first_seen,
                first_release: release_at(first_seen),
                caused_by_deployment: None,
                daily,
            });
        }
        for incident in &history.incidents {
            let Some(deployment_id) = &incident.caused_by_deployment else {
                continue;
            };
            let Some(deployment) = history.deployments.iter().find(|d| &d.id == deployment_id)
            else {
                continue;
            };
            let first_seen = deployment.finished_at + Duration::minutes(rng.random_range(2..30));
            let loud = 10f64.powf(rng.random_range(2.5..3.7));
            let daily = all_days
                .iter()
                .filter(|d| **d >= first_seen.date_naive())
                .map(|d| {
                    let day_start = super::cost::day_start(*d);
                    let open = day_start < incident.resolved_at;
                    let events = if open {
                        (loud * rng.random_range(0.6..1.4)).round() as u64
                    } else {
                        rng.random_range(0..3)
                    };
                    (*d, events, (events / 4).max(u64::from(events > 0)))
                })
                .filter(|(_, events, _)| *events > 0)
                .collect();
            issues.push(ErrorIssue {
                id: 0,
                number: 0,
                title: format!(
                    "TypeError: cannot read property of undefined ({})",
                    &deployment.revision[..7]
                ),
                culprit: format!("{}.release in apply", component.name.replace('-', "_")),
                level: "error".to_owned(),
                first_seen,
                first_release: release_at(first_seen),
                caused_by_deployment: Some(deployment.id.clone()),
                daily,
            });
        }
        issues.sort_by_key(|i| i.first_seen);
        for (n, issue) in issues.iter_mut().enumerate() {
            issue.number = n as u64 + 1;
            issue.id = 4_000_000_000 + idx as u64 * 10_000 + n as u64;
        }
        Some(Self {
            component: idx,
            slug,
            project_id: 5_000_000 + idx as u64,
            releases,
            issues,
        })
    }
}
