//! The organisation: departments → teams (with a delivery profile), users,
//! domains, systems and components with the catalog annotations that map
//! upstream identifiers to them — plus the gaps real catalogs have.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::WorldConfig;

/// How well a team delivers; drives cadence, size, latency and failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// On demand, tiny changes, quick reviews, rare failures.
    Elite,
    /// Daily to weekly.
    High,
    /// Weekly to monthly.
    Medium,
    /// Monthly or slower, big batches, frequent failures.
    Low,
}

impl Profile {
    /// All profiles, best first.
    pub const ALL: [Profile; 4] = [Profile::Elite, Profile::High, Profile::Medium, Profile::Low];

    /// Expected production deployment attempts per working day.
    pub fn deploys_per_workday(self) -> f64 {
        match self {
            Self::Elite => 2.0,
            Self::High => 0.5,
            Self::Medium => 0.15,
            Self::Low => 0.04,
        }
    }

    /// Expected merged pull requests per working day.
    pub fn prs_per_workday(self) -> f64 {
        match self {
            Self::Elite => 2.5,
            Self::High => 1.2,
            Self::Medium => 0.6,
            Self::Low => 0.3,
        }
    }

    /// Probability that a completed production deployment fails (incident or
    /// rollback).
    pub fn failure_rate(self) -> f64 {
        match self {
            Self::Elite => 0.04,
            Self::High => 0.10,
            Self::Medium => 0.18,
            Self::Low => 0.32,
        }
    }

    /// Typical hours to resolve an incident.
    pub fn restore_hours(self) -> f64 {
        match self {
            Self::Elite => 0.6,
            Self::High => 5.0,
            Self::Medium => 40.0,
            Self::Low => 200.0,
        }
    }

    /// Typical hours from first commit to opening the pull request.
    pub fn coding_hours(self) -> f64 {
        match self {
            Self::Elite => 3.0,
            Self::High => 10.0,
            Self::Medium => 30.0,
            Self::Low => 80.0,
        }
    }

    /// Typical hours until the first review.
    pub fn pickup_hours(self) -> f64 {
        match self {
            Self::Elite => 0.7,
            Self::High => 3.0,
            Self::Medium => 12.0,
            Self::Low => 40.0,
        }
    }

    /// Typical hours from first review to merge.
    pub fn review_hours(self) -> f64 {
        match self {
            Self::Elite => 1.0,
            Self::High => 5.0,
            Self::Medium => 16.0,
            Self::Low => 48.0,
        }
    }

    /// Mean commits per pull request.
    pub fn commits_per_pr(self) -> f64 {
        match self {
            Self::Elite => 1.5,
            Self::High => 2.5,
            Self::Medium => 4.0,
            Self::Low => 7.0,
        }
    }

    /// Probability per working day of a commit pushed straight to main.
    pub fn direct_push_rate(self) -> f64 {
        match self {
            Self::Elite => 0.02,
            Self::High => 0.05,
            Self::Medium => 0.10,
            Self::Low => 0.15,
        }
    }
}

/// A department: a Backstage Group of type `department` with teams as children.
#[derive(Debug, Clone, Serialize)]
pub struct Department {
    /// Group name.
    pub name: String,
    /// Indices of its teams.
    pub teams: Vec<usize>,
}

/// A team: a Backstage Group of type `team`.
#[derive(Debug, Clone, Serialize)]
pub struct Team {
    /// Group name, e.g. `team-payments`.
    pub name: String,
    /// Index of its department.
    pub department: usize,
    /// Delivery profile.
    pub profile: Profile,
    /// Indices of its members.
    pub members: Vec<usize>,
}

/// A user: a Backstage User, member of one team.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// User name (unique within its namespace only).
    pub name: String,
    /// Catalog namespace.
    pub namespace: String,
    /// GitHub login (globally unique).
    pub login: String,
    /// Index of the team.
    pub team: usize,
}

/// What a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A backend service.
    Service,
    /// A website.
    Website,
    /// A library (built, not deployed).
    Library,
}

/// A component with the identifiers other systems know it by.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Entity name.
    pub name: String,
    /// Service, website or library.
    pub kind: ComponentKind,
    /// Index of the owning team.
    pub team: usize,
    /// How `spec.owner` is written: the short `team-x` form for some
    /// components, the full ref for the rest, as in real catalogs.
    pub owner_written: String,
    /// System it belongs to.
    pub system: String,
    /// `github.com/project-slug`.
    pub repo: String,
    /// `argocd/app-name`, when deployed by Argo CD.
    pub argocd_app: Option<String>,
    /// `datadoghq.com/service-name` (sometimes differs from the name).
    pub datadog_service: String,
    /// `sentry.io/project-slug`, when it reports errors.
    pub sentry_project: Option<String>,
    /// `backstage.io/kubernetes-namespace`.
    pub k8s_namespace: String,
}

/// The whole organisation.
#[derive(Debug, Clone, Serialize)]
pub struct Org {
    /// GitHub organisation / company slug.
    pub company: String,
    /// Departments.
    pub departments: Vec<Department>,
    /// Teams.
    pub teams: Vec<Team>,
    /// Users.
    pub users: Vec<User>,
    /// Domains (one per department) with their systems.
    pub domains: Vec<(String, Vec<String>)>,
    /// Components.
    pub components: Vec<Component>,
    /// Repositories no component claims.
    pub unclaimed_repos: Vec<String>,
    /// Kubernetes namespaces no component claims.
    pub unowned_namespaces: Vec<String>,
    /// Truth: who really owns each unclaimed repository and unowned
    /// namespace — (upstream, identifier, true entity ref).
    pub unmapped_truth: Vec<(String, String, String)>,
}

const TEAM_WORDS: &[&str] = &[
    "payments",
    "search",
    "identity",
    "checkout",
    "catalog",
    "growth",
    "insights",
    "platform",
    "mobile",
    "billing",
    "logistics",
    "messaging",
    "media",
    "pricing",
    "trust",
    "reliability",
];
const DEPARTMENT_WORDS: &[&str] = &[
    "commerce",
    "core",
    "experience",
    "data",
    "infrastructure",
    "operations",
];
const SERVICE_PREFIXES: &[&str] = &[
    "orders",
    "ledger",
    "cart",
    "inventory",
    "auth",
    "profile",
    "notify",
    "pricing",
    "shipping",
    "reviews",
    "media",
    "reports",
    "invoices",
    "fraud",
    "recommend",
    "gateway",
    "session",
    "wallet",
    "tax",
    "export",
];
const SERVICE_SUFFIXES: &[&str] = &[
    "api",
    "worker",
    "web",
    "sync",
    "scheduler",
    "ui",
    "lib",
    "proxy",
];
const FIRST_NAMES: &[&str] = &[
    "ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances", "edsger",
    "radia", "tim", "hedy", "donald", "sophie", "john",
];

fn numbered(words: &[&str], idx: usize) -> String {
    let base = words[idx % words.len()];
    match idx / words.len() {
        0 => base.to_owned(),
        round => format!("{base}{}", round + 1),
    }
}

impl Org {
    /// Generates the organisation of `config`.
    pub fn generate(config: &WorldConfig) -> Self {
        let mut rng = config.rng(0);
        let n_teams = config.teams.max(1);
        let n_departments = n_teams.div_ceil(4);
        let mut departments: Vec<Department> = (0..n_departments)
            .map(|i| Department {
                name: numbered(DEPARTMENT_WORDS, i),
                teams: Vec::new(),
            })
            .collect();
        // Every profile is present as soon as there are four teams.
        let mut profiles: Vec<Profile> = (0..n_teams).map(|i| Profile::ALL[i % 4]).collect();
        profiles.shuffle(&mut rng);
        let mut teams = Vec::with_capacity(n_teams);
        let mut users = Vec::new();
        for (idx, profile) in profiles.into_iter().enumerate() {
            let department = idx % n_departments;
            departments[department].teams.push(idx);
            let n_members = rng.random_range(3..=7);
            let mut members = Vec::with_capacity(n_members);
            for _ in 0..n_members {
                let user_idx = users.len();
                let name = format!("{}.{}", FIRST_NAMES[user_idx % FIRST_NAMES.len()], user_idx);
                users.push(User {
                    login: format!("{}-{}", FIRST_NAMES[user_idx % FIRST_NAMES.len()], user_idx),
                    name,
                    namespace: "default".to_owned(),
                    team: idx,
                });
                members.push(user_idx);
            }
            teams.push(Team {
                name: format!("team-{}", numbered(TEAM_WORDS, idx)),
                department,
                profile,
                members,
            });
        }
        // Two people called jdoe, in two namespaces: refs must keep them apart.
        for (namespace, team) in [("default", 0), ("contractors", n_teams - 1)] {
            let user_idx = users.len();
            users.push(User {
                name: "jdoe".to_owned(),
                namespace: namespace.to_owned(),
                login: format!("jdoe-{namespace}"),
                team,
            });
            teams[team].members.push(user_idx);
        }
        let domains: Vec<(String, Vec<String>)> = departments
            .iter()
            .map(|d| {
                let systems = d
                    .teams
                    .iter()
                    .map(|t| format!("{}-platform", numbered(TEAM_WORDS, *t)))
                    .collect();
                (format!("{}-domain", d.name), systems)
            })
            .collect();
        let company = "acme".to_owned();
        let mut components = Vec::with_capacity(config.services);
        for idx in 0..config.services {
            // Round-robin first so every team owns something, then at random.
            let team = if idx < n_teams {
                idx
            } else {
                rng.random_range(0..n_teams)
            };
            let prefix = SERVICE_PREFIXES[idx % SERVICE_PREFIXES.len()];
            let suffix = SERVICE_SUFFIXES[(idx / SERVICE_PREFIXES.len()) % SERVICE_SUFFIXES.len()];
            let round = idx / (SERVICE_PREFIXES.len() * SERVICE_SUFFIXES.len());
            let name = if round == 0 {
                format!("{prefix}-{suffix}")
            } else {
                format!("{prefix}-{suffix}-{}", round + 1)
            };
            let kind = match suffix {
                "web" | "ui" => ComponentKind::Website,
                "lib" => ComponentKind::Library,
                _ => ComponentKind::Service,
            };
            let team_name = teams[team].name.clone();
            let owner_written = if idx % 3 == 0 {
                team_name.clone()
            } else {
                format!("group:default/{team_name}")
            };
            let deployed_by_argo = kind != ComponentKind::Library && idx % 5 != 4;
            components.push(Component {
                kind,
                team,
                owner_written,
                system: format!("{}-platform", numbered(TEAM_WORDS, team)),
                repo: format!("{company}/{name}"),
                argocd_app: deployed_by_argo.then(|| name.clone()),
                datadog_service: if idx % 4 == 1 {
                    format!("{name}-svc")
                } else {
                    name.clone()
                },
                sentry_project: (idx % 3 != 2).then(|| {
                    if idx % 2 == 0 {
                        name.clone()
                    } else {
                        format!("{company}/{name}")
                    }
                }),
                k8s_namespace: format!("{}-{}", numbered(TEAM_WORDS, team), name),
                name,
            });
        }
        let unmapped_truth = vec![
            (
                "github".to_owned(),
                format!("{company}/infra-scripts"),
                format!("group:default/{}", teams[0].name),
            ),
            (
                "kubernetes".to_owned(),
                "legacy-batch".to_owned(),
                components.first().map_or_else(
                    || format!("group:default/{}", teams[0].name),
                    |c| format!("component:default/{}", c.name),
                ),
            ),
        ];
        Self {
            company: company.clone(),
            departments,
            teams,
            users,
            domains,
            components,
            unmapped_truth,
            unclaimed_repos: vec![format!("{company}/infra-scripts")],
            unowned_namespaces: vec!["legacy-batch".to_owned()],
        }
    }

    /// The canonical ref of a team.
    pub fn team_ref(&self, team: usize) -> String {
        format!("group:default/{}", self.teams[team].name)
    }

    /// The canonical ref of a component.
    pub fn component_ref(&self, component: usize) -> String {
        format!("component:default/{}", self.components[component].name)
    }
}
