//! What one service ships and breaks: pull requests and direct pushes on a
//! linear main branch, deployments to dev/staging/production (failed jobs,
//! rollbacks, hotfixes), and incidents — caused by deployments or not.
//!
//! Events are drawn in time order from the team's profile. Merges do not
//! depend on deployments, so they are drawn first; deployments are then
//! processed in time order, and a failure may schedule later events (a
//! rollback, a hotfix pull request and its deployment).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use chrono::{DateTime, Datelike, Duration, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::WorldConfig;
use super::org::{ComponentKind, Org, Profile};
use super::risk::{Memory, Release};

/// A commit on the service's main branch.
#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    /// 40-hex SHA.
    pub sha: String,
    /// Position in the main branch (0 = oldest); `a` is reachable from `b`
    /// exactly when `a.seq <= b.seq`, since history is linear.
    pub seq: u32,
    /// Git author date.
    pub authored_at: DateTime<Utc>,
    /// When it reached main.
    pub committed_at: DateTime<Utc>,
    /// GitHub login of the author.
    pub author_login: String,
    /// Commit message (first line).
    pub message: String,
    /// Pull request that merged it; `None` for direct pushes.
    pub pull_request: Option<u64>,
    /// Whether this is the merge commit of its pull request.
    pub is_merge: bool,
}

/// A merged pull request.
#[derive(Debug, Clone, Serialize)]
pub struct PullRequest {
    /// Number within the repository.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Author login.
    pub author_login: String,
    /// Reviewer login.
    pub reviewer_login: String,
    /// Author date of its first commit.
    pub first_commit_at: DateTime<Utc>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// First review by someone else.
    pub first_review_at: DateTime<Utc>,
    /// When it was merged.
    pub merged_at: DateTime<Utc>,
    /// SHA of its merge commit.
    pub merge_commit_sha: String,
    /// SHAs of its commits (without the merge commit), oldest first.
    pub commit_shas: Vec<String>,
    /// Lines added.
    pub additions: u32,
    /// Lines deleted.
    pub deletions: u32,
    /// Files changed.
    pub changed_files: u32,
    /// Labels (`hotfix` marks rework).
    pub labels: Vec<String>,
}

/// Which system ran a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploySource {
    /// An Argo CD application sync.
    ArgoCd,
    /// A GitHub deployment with statuses.
    GithubDeployments,
}

/// One deployment attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// Source-qualified id (the one Fathom stores).
    pub id: String,
    /// Id within its source (Argo CD history id, GitHub deployment id; 0
    /// for a failed Argo CD sync, which has no history entry).
    pub upstream_id: u64,
    /// Argo CD application or GitHub environment it ran in.
    pub app: String,
    /// Environment name as the source reports it.
    pub environment: String,
    /// Whether the environment is production.
    pub production: bool,
    /// Which system ran it.
    pub source: DeploySource,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// False when the deploy job itself failed (nothing changed).
    pub job_succeeded: bool,
    /// Deployed commit SHA.
    pub revision: String,
    /// Position of the revision in main.
    pub revision_seq: u32,
    /// Whether this deployment rolled back to an earlier revision.
    pub is_rollback: bool,
    /// Whether it ships a hotfix pull request.
    pub hotfix: bool,
    /// Truth: the incident this deployment caused, if any.
    pub caused_incident: Option<String>,
    /// Truth: rolled back by a later deployment.
    pub rolled_back: bool,
    /// Truth: the probability of failing that the change-risk model gave
    /// this production release before its outcome was drawn; `None` where
    /// nothing was drawn (other environments, failed jobs, rollbacks and
    /// hotfixes, which never fail by the draw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_probability: Option<f64>,
}

/// An incident on the service.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// Datadog-style public id.
    pub id: String,
    /// Title.
    pub title: String,
    /// SEV-1 … SEV-4.
    pub severity: String,
    /// Impact start.
    pub created_at: DateTime<Utc>,
    /// Detection.
    pub detected_at: DateTime<Utc>,
    /// Resolution.
    pub resolved_at: DateTime<Utc>,
    /// Truth: the deployment that caused it.
    pub caused_by_deployment: Option<String>,
    /// Whether the incident record carries the link explicitly (a field the
    /// upstream exposes); otherwise it must be inferred.
    pub explicit_link: bool,
    /// Whether customers were affected.
    pub customer_impacted: bool,
}

/// Everything that happened to one component.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceHistory {
    /// Index of the component.
    pub component: usize,
    /// Main branch, oldest first.
    pub commits: Vec<Commit>,
    /// Merged pull requests, by merge time.
    pub pull_requests: Vec<PullRequest>,
    /// Deployments in all environments, by start time.
    pub deployments: Vec<Deployment>,
    /// Incidents, by creation time.
    pub incidents: Vec<Incident>,
}

/// An exponential draw with the given mean, capped to keep tails sane.
fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (-u.ln() * mean).min(mean * 6.0)
}

/// A Poisson draw (Knuth's method; rates here are small).
fn poisson(rng: &mut ChaCha8Rng, rate: f64) -> u32 {
    let limit = (-rate).exp();
    let mut k = 0;
    let mut p: f64 = rng.random();
    while p > limit && k < 50 {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

fn hours(h: f64) -> Duration {
    Duration::seconds((h * 3600.0).round() as i64)
}

fn sha(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        rng.random::<u64>(),
        rng.random::<u64>(),
        rng.random::<u32>()
    )
}

/// A commit waiting for its place in main.
struct Draft {
    sha: String,
    authored_at: DateTime<Utc>,
    author_login: String,
    message: String,
    pull_request: Option<u64>,
    is_merge: bool,
}

/// Main history under construction: commits keyed by the time they reached
/// main (ties broken by insertion order).
#[derive(Default)]
struct Main {
    commits: BTreeMap<(DateTime<Utc>, u32), Draft>,
    n: u32,
}

impl Main {
    fn push(&mut self, at: DateTime<Utc>, draft: Draft) {
        self.commits.insert((at, self.n), draft);
        self.n += 1;
    }

    /// Key of the newest commit on main at `at`.
    fn head_at(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, u32)> {
        self.commits
            .range(..=(at, u32::MAX))
            .next_back()
            .map(|(k, _)| *k)
    }
}

/// A deployment to run at a given time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Planned {
    /// A regular production deploy of whatever main holds.
    Release,
    /// A deploy during an open incident, shipping a hotfix.
    Hotfix,
    /// Back to the revision before the failed deployment.
    Rollback { to_key: (DateTime<Utc>, u32) },
}

struct Builder {
    profile: Profile,
    rng: ChaCha8Rng,
    logins: Vec<String>,
    name: String,
    main: Main,
    pull_requests: Vec<PullRequest>,
    next_pr: u64,
    /// The service's releases so far, for the failure draw.
    risk: Memory,
}

impl Builder {
    fn login(&mut self) -> String {
        let i = self.rng.random_range(0..self.logins.len());
        self.logins[i].clone()
    }

    fn other_login(&mut self, not: &str) -> String {
        for _ in 0..8 {
            let candidate = self.login();
            if candidate != not {
                return candidate;
            }
        }
        format!("{}-reviewer", self.name)
    }

    /// Adds a pull request merged at `merged_at`, its commits and merge
    /// commit to main.
    fn pull_request(&mut self, merged_at: DateTime<Utc>, hotfix: bool) {
        let profile = self.profile;
        let scale = if hotfix { 0.1 } else { 1.0 };
        let review = hours(exponential(&mut self.rng, profile.review_hours() * scale).max(0.05));
        let pickup = hours(exponential(&mut self.rng, profile.pickup_hours() * scale).max(0.05));
        let coding = hours(exponential(&mut self.rng, profile.coding_hours() * scale).max(0.1));
        let first_review_at = merged_at - review;
        let created_at = first_review_at - pickup;
        let first_commit_at = created_at - coding;
        let n_commits = 1 + poisson(&mut self.rng, profile.commits_per_pr() - 1.0);
        let author = self.login();
        let reviewer = self.other_login(&author);
        let number = self.next_pr;
        self.next_pr += 1;
        let span = (created_at - first_commit_at).num_seconds().max(1);
        let mut offsets: Vec<i64> = (1..n_commits)
            .map(|_| self.rng.random_range(0..span))
            .collect();
        offsets.sort_unstable();
        offsets.insert(0, 0);
        let mut commit_shas = Vec::with_capacity(offsets.len());
        for (i, offset) in offsets.iter().enumerate() {
            let sha = sha(&mut self.rng);
            commit_shas.push(sha.clone());
            self.main.push(
                merged_at,
                Draft {
                    sha,
                    authored_at: first_commit_at + Duration::seconds(*offset),
                    author_login: author.clone(),
                    message: format!("{} part {}", if hotfix { "Fix" } else { "Change" }, i + 1),
                    pull_request: Some(number),
                    is_merge: false,
                },
            );
        }
        let merge_commit_sha = sha(&mut self.rng);
        self.main.push(
            merged_at,
            Draft {
                sha: merge_commit_sha.clone(),
                authored_at: merged_at,
                author_login: author.clone(),
                message: format!("Merge pull request #{number}"),
                pull_request: Some(number),
                is_merge: true,
            },
        );
        let size = profile.commits_per_pr() * 40.0 * scale.max(0.2);
        let additions = exponential(&mut self.rng, size) as u32 + 1;
        let deletions = exponential(&mut self.rng, size / 3.0) as u32;
        self.pull_requests.push(PullRequest {
            number,
            title: if hotfix {
                format!("Hotfix for {}", self.name)
            } else {
                format!("Improve {} ({number})", self.name)
            },
            author_login: author,
            reviewer_login: reviewer,
            first_commit_at,
            created_at,
            first_review_at,
            merged_at,
            merge_commit_sha,
            commit_shas,
            additions,
            deletions,
            changed_files: 1 + additions / 50,
            labels: if hotfix {
                vec!["hotfix".to_owned()]
            } else {
                Vec::new()
            },
        });
    }

    /// What a production release from `from` (exclusive; the revision
    /// production ran) to `to` ships, for the failure draw.
    fn release(
        &self,
        from: Option<(DateTime<Utc>, u32)>,
        to: (DateTime<Utc>, u32),
        at: DateTime<Utc>,
        previous: Option<&Deployment>,
    ) -> Release {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lower = from.map_or(Unbounded, Excluded);
        let mut lines = 0u64;
        let mut direct_pushes = 0u32;
        for draft in self
            .main
            .commits
            .range((lower, Included(to)))
            .map(|(_, d)| d)
        {
            match draft.pull_request {
                // Pull requests are numbered from 1 in the order they are
                // drawn, which is the order of `pull_requests`.
                Some(number) if draft.is_merge => {
                    if let Some(pr) = usize::try_from(number - 1)
                        .ok()
                        .and_then(|i| self.pull_requests.get(i))
                    {
                        lines += u64::from(pr.additions) + u64::from(pr.deletions);
                    }
                }
                Some(_) => {}
                None => direct_pushes += 1,
            }
        }
        let gap_days = previous.map_or(30.0, |p| {
            (at - p.finished_at).num_seconds() as f64 / 86_400.0
        });
        Release {
            lines,
            direct_pushes,
            at,
            gap_days,
        }
    }

    /// A time within working hours of `day`.
    fn work_time(&mut self, day: DateTime<Utc>) -> DateTime<Utc> {
        day + Duration::minutes(self.rng.random_range(8 * 60..18 * 60))
    }
}

impl ServiceHistory {
    /// Generates the history of component `idx`.
    pub fn generate(config: &WorldConfig, org: &Org, idx: usize) -> Self {
        let component = &org.components[idx];
        let team = &org.teams[component.team];
        let mut builder = Builder {
            profile: team.profile,
            rng: config.rng(1_000 + idx as u64),
            logins: team
                .members
                .iter()
                .map(|m| org.users[*m].login.clone())
                .collect(),
            name: component.name.clone(),
            main: Main::default(),
            pull_requests: Vec::new(),
            next_pr: 1,
            risk: Memory::default(),
        };
        let start = config.start();
        let end = config.end();
        // History before the window: the revision the baseline deployment runs.
        let initial_sha = sha(&mut builder.rng);
        builder.main.push(
            start - Duration::days(30),
            Draft {
                sha: initial_sha,
                authored_at: start - Duration::days(30),
                author_login: builder.logins[0].clone(),
                message: "Initial commit".to_owned(),
                pull_request: None,
                is_merge: false,
            },
        );
        let mut release_times = Vec::new();
        for day in 0..config.days {
            let day_start = start + Duration::days(i64::from(day));
            let weekend = day_start.weekday().number_from_monday() > 5;
            let activity = if weekend { 0.08 } else { 1.0 };
            for _ in 0..poisson(
                &mut builder.rng,
                builder.profile.prs_per_workday() * activity,
            ) {
                let merged_at = builder.work_time(day_start);
                builder.pull_request(merged_at, false);
            }
            if builder.rng.random::<f64>() < builder.profile.direct_push_rate() * activity {
                let at = builder.work_time(day_start);
                let sha = sha(&mut builder.rng);
                let author = builder.login();
                builder.main.push(
                    at,
                    Draft {
                        sha,
                        authored_at: at - Duration::minutes(builder.rng.random_range(5..240)),
                        author_login: author,
                        message: "Update configuration".to_owned(),
                        pull_request: None,
                        is_merge: false,
                    },
                );
            }
            if component.kind != ComponentKind::Library {
                for _ in 0..poisson(
                    &mut builder.rng,
                    builder.profile.deploys_per_workday() * activity,
                ) {
                    let at = builder.work_time(day_start);
                    release_times.push(at);
                }
            }
        }
        let mut history = Self {
            component: idx,
            commits: Vec::new(),
            pull_requests: Vec::new(),
            deployments: Vec::new(),
            incidents: Vec::new(),
        };
        if component.kind != ComponentKind::Library {
            history.deploy(&mut builder, org, idx, release_times, start, end);
        }
        // Unrelated incidents: capacity, dependencies, bad luck.
        let n_unrelated = poisson(&mut builder.rng, f64::from(config.days) / 60.0);
        for _ in 0..n_unrelated {
            let at = start
                + Duration::minutes(
                    builder
                        .rng
                        .random_range(0..i64::from(config.days) * 24 * 60),
                );
            let restore =
                hours(exponential(&mut builder.rng, builder.profile.restore_hours()).max(0.1));
            history.incidents.push(Incident {
                id: String::new(),
                title: format!("{} degraded", component.name),
                severity: "SEV-3".to_owned(),
                created_at: at,
                detected_at: at + Duration::minutes(builder.rng.random_range(1..45)),
                resolved_at: at + restore,
                caused_by_deployment: None,
                explicit_link: false,
                customer_impacted: builder.rng.random::<f64>() < 0.3,
            });
        }
        history.incidents.sort_by_key(|i| i.created_at);
        for (n, incident) in history.incidents.iter_mut().enumerate() {
            let id = format!("{}-{}", idx + 1, n + 1);
            for deployment in &mut history.deployments {
                if deployment.caused_incident.as_deref() == Some(incident.id.as_str())
                    && !incident.id.is_empty()
                {
                    deployment.caused_incident = Some(id.clone());
                }
            }
            incident.id = id;
        }
        // Final commit order: by time on main, then insertion order.
        let Main { commits, .. } = std::mem::take(&mut builder.main);
        history.commits = commits
            .into_iter()
            .enumerate()
            .map(|(seq, ((committed_at, _), d))| Commit {
                sha: d.sha,
                seq: seq as u32,
                authored_at: d.authored_at,
                committed_at,
                author_login: d.author_login,
                message: d.message,
                pull_request: d.pull_request,
                is_merge: d.is_merge,
            })
            .collect();
        let seq_of: std::collections::HashMap<&str, u32> = history
            .commits
            .iter()
            .map(|c| (c.sha.as_str(), c.seq))
            .collect();
        for deployment in &mut history.deployments {
            deployment.revision_seq = seq_of
                .get(deployment.revision.as_str())
                .copied()
                .unwrap_or(0);
        }
        builder.pull_requests.sort_by_key(|p| p.merged_at);
        history.pull_requests = builder.pull_requests;
        history
    }

    fn deploy(
        &mut self,
        builder: &mut Builder,
        org: &Org,
        idx: usize,
        release_times: Vec<DateTime<Utc>>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) {
        let component = &org.components[idx];
        let (source, prod_env) = match &component.argocd_app {
            Some(_) => (DeploySource::ArgoCd, "production"),
            None => (DeploySource::GithubDeployments, "prod"),
        };
        let mut queue: BinaryHeap<Reverse<(DateTime<Utc>, Planned)>> = release_times
            .into_iter()
            .map(|t| Reverse((t, Planned::Release)))
            .collect();
        // Baseline: production already runs the initial commit when the
        // window opens; it ships no attributed changes.
        let mut prod_key = builder.main.head_at(start - Duration::days(29));
        let mut upstream_ids: BTreeMap<String, u64> = BTreeMap::new();
        let mut push = |this: &mut Self,
                        builder: &mut Builder,
                        env: &str,
                        production: bool,
                        started_at: DateTime<Utc>,
                        key: (DateTime<Utc>, u32),
                        job_succeeded: bool,
                        is_rollback: bool,
                        hotfix: bool|
         -> usize {
            let app = match (source, env) {
                (DeploySource::ArgoCd, "production") => component.name.clone(),
                (DeploySource::ArgoCd, env) => format!("{}-{env}", component.name),
                (DeploySource::GithubDeployments, env) => env.to_owned(),
            };
            // Argo CD numbers the history of each application from 0 and
            // records only successful syncs; a failed sync is visible only
            // as the application's last operation.
            let (upstream_id, id) = match source {
                DeploySource::ArgoCd if job_succeeded => {
                    let counter = upstream_ids.entry(app.clone()).or_insert(0);
                    *counter += 1;
                    (*counter - 1, format!("argocd:{app}:{}", *counter - 1))
                }
                DeploySource::ArgoCd => {
                    (0, format!("argocd:{app}:failed:{}", started_at.timestamp()))
                }
                DeploySource::GithubDeployments => {
                    let id = (idx as u64 + 1) * 100_000 + this.deployments.len() as u64;
                    (id, format!("github:{}:{id}", component.repo))
                }
            };
            let duration = Duration::seconds(builder.rng.random_range(60..900));
            let revision = builder
                .main
                .commits
                .get(&key)
                .map(|d| d.sha.clone())
                .unwrap_or_default();
            this.deployments.push(Deployment {
                id,
                upstream_id,
                app,
                environment: env.to_owned(),
                production,
                source,
                started_at,
                finished_at: started_at + duration,
                job_succeeded,
                revision,
                revision_seq: 0,
                is_rollback,
                hotfix,
                caused_incident: None,
                rolled_back: false,
                failure_probability: None,
            });
            this.deployments.len() - 1
        };
        if let Some(key) = prod_key {
            push(
                self,
                builder,
                prod_env,
                true,
                start - Duration::days(29),
                key,
                true,
                false,
                false,
            );
        }
        let mut last_successful_prod: Option<usize> = self.deployments.len().checked_sub(1);
        while let Some(Reverse((at, planned))) = queue.pop() {
            if at >= end {
                continue;
            }
            let target = match &planned {
                Planned::Rollback { to_key } => Some(*to_key),
                _ => builder.main.head_at(at),
            };
            let Some(target) = target else { continue };
            if matches!(planned, Planned::Release) && Some(target) == prod_key {
                continue; // nothing new to ship
            }
            let is_rollback = matches!(planned, Planned::Rollback { .. });
            let hotfix = matches!(planned, Planned::Hotfix);
            if !is_rollback {
                // Pre-production first, as pipelines do.
                let lead = Duration::minutes(builder.rng.random_range(20..90));
                if source == DeploySource::ArgoCd {
                    push(
                        self,
                        builder,
                        "dev",
                        false,
                        at - lead - Duration::minutes(30),
                        target,
                        true,
                        false,
                        hotfix,
                    );
                }
                push(
                    self,
                    builder,
                    "staging",
                    false,
                    at - lead,
                    target,
                    true,
                    false,
                    hotfix,
                );
            }
            let job_succeeded = is_rollback || builder.rng.random::<f64>() >= 0.03;
            let d = push(
                self,
                builder,
                prod_env,
                true,
                at,
                target,
                job_succeeded,
                is_rollback,
                hotfix,
            );
            if !job_succeeded {
                continue;
            }
            let previous_key = prod_key;
            prod_key = Some(target);
            let previous_successful = last_successful_prod.replace(d);
            if is_rollback {
                if let Some(p) = previous_successful {
                    self.deployments[p].rolled_back = true;
                }
                continue;
            }
            if hotfix {
                continue;
            }
            let release = builder.release(
                previous_key,
                target,
                at,
                previous_successful.map(|p| &self.deployments[p]),
            );
            let p = builder.risk.failure_probability(builder.profile, &release);
            self.deployments[d].failure_probability = Some(p);
            if builder.rng.random::<f64>() >= p {
                continue;
            }
            let finished = self.deployments[d].finished_at;
            if builder.rng.random::<f64>() < 0.3
                && let Some(to_key) = previous_key
            {
                let when = finished + Duration::minutes(builder.rng.random_range(10..120));
                queue.push(Reverse((when, Planned::Rollback { to_key })));
                continue;
            }
            let created_at = finished + Duration::minutes(builder.rng.random_range(5..180));
            let restore =
                hours(exponential(&mut builder.rng, builder.profile.restore_hours()).max(0.2));
            let resolved_at = created_at + restore;
            let placeholder = format!("pending-{d}");
            self.deployments[d].caused_incident = Some(placeholder.clone());
            let severity = ["SEV-1", "SEV-2", "SEV-2", "SEV-3"][builder.rng.random_range(0..4)];
            self.incidents.push(Incident {
                id: placeholder,
                title: format!("Errors in {} after release", component.name),
                severity: severity.to_owned(),
                created_at,
                detected_at: created_at + Duration::minutes(builder.rng.random_range(1..30)),
                resolved_at,
                caused_by_deployment: Some(self.deployments[d].id.clone()),
                explicit_link: builder.rng.random::<f64>() < 0.5,
                customer_impacted: builder.rng.random::<f64>() < 0.6,
            });
            // Half the time the fix ships as a hotfix while the incident is open.
            if builder.rng.random::<f64>() < 0.5 {
                let merged_at = created_at + restore / 2;
                builder.pull_request(merged_at, true);
                queue.push(Reverse((merged_at + Duration::minutes(5), Planned::Hotfix)));
            }
        }
        self.deployments
            .sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    }
}
