//! The core tables of the warehouse (brief §2–§6), each declared once.
//!
//! Conventions: entity columns hold canonical refs (`kind:namespace/name`) and
//! are null when a record maps to no catalog entity (kept and counted as
//! unattributed, never dropped). Instants end in `_at`, durations in
//! `_seconds`, money in `_usd`, memory in `_bytes`, CPU in `_cores`.
//! `updated_at` is when Fathom last wrote the row.

use crate::schema::{ColumnDef, ColumnType, MonthPartition, TableDef, Vocabulary};

mod anomalies;
mod risk;
mod usage;
pub use anomalies::{ANOMALIES, ANOMALY_SCORES};
pub use risk::{DEPLOYMENT_FEATURES, DEPLOYMENT_RISK, DEPLOYMENT_SIGNALS};
pub use usage::{
    USAGE_ACTIVE, USAGE_DAILY, USAGE_ENTITIES, USAGE_FEATURES, USAGE_SEARCH, USAGE_SEARCH_QUERIES,
    USAGE_TEMPLATES,
};

use ColumnType::{
    Boolean, Date, EntityRef, Float64, Int64, StringList, StringMap, Timestamp, Utf8,
};

/// A required (non-null) column.
const fn req(name: &'static str, column_type: ColumnType, description: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        column_type,
        nullable: false,
        description,
        vocabulary: None,
    }
}

/// An optional (nullable) column.
const fn opt(name: &'static str, column_type: ColumnType, description: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        column_type,
        nullable: true,
        description,
        vocabulary: None,
    }
}

const UPDATED_AT: ColumnDef = opt(
    "updated_at",
    Timestamp,
    "When Fathom last wrote this row (set on write when absent).",
);

/// The Backstage catalog: components, groups, users, systems, domains, APIs, resources.
pub const CATALOG_ENTITIES: TableDef = TableDef {
    name: "catalog_entities",
    description: "One row per catalog entity (Backstage or catalog-info.yaml discovery): components, groups, users, systems, domains, APIs and resources.",
    columns: &[
        req(
            "entity_ref",
            EntityRef(Some("component")),
            "Canonical entity ref, `kind:namespace/name`, lower-case.",
        ),
        req(
            "kind",
            Utf8,
            "Entity kind, lower-case (component, group, user, system, domain, api, resource).",
        ),
        req("namespace", Utf8, "Entity namespace, lower-case."),
        req("name", Utf8, "Entity name, lower-case."),
        opt("title", Utf8, "Display title (metadata.title)."),
        opt("description", Utf8, "metadata.description."),
        opt(
            "entity_type",
            Utf8,
            "spec.type: service, website, library, team, …",
        ),
        opt(
            "lifecycle",
            Utf8,
            "spec.lifecycle: production, experimental, deprecated.",
        ),
        opt(
            "owner_ref",
            EntityRef(Some("group")),
            "spec.owner as a canonical ref (kind defaults to group).",
        ),
        opt(
            "system_ref",
            EntityRef(Some("system")),
            "spec.system as a canonical ref.",
        ),
        opt(
            "domain_ref",
            EntityRef(Some("domain")),
            "spec.domain as a canonical ref (for systems).",
        ),
        opt(
            "parent_ref",
            EntityRef(Some("group")),
            "spec.parent of a group, as a canonical ref.",
        ),
        opt("tags", StringList, "metadata.tags."),
        opt("labels", StringMap, "metadata.labels."),
        opt(
            "annotations",
            StringMap,
            "metadata.annotations; these map upstream identifiers to the entity.",
        ),
        opt(
            "source",
            Utf8,
            "Where the entity was read: backstage, github-discovery, import.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["entity_ref"],
    partition: None,
};

/// Edges of the catalog graph.
pub const ENTITY_RELATIONS: TableDef = TableDef {
    name: "entity_relations",
    description: "One row per catalog relation (ownedBy, memberOf, parentOf, childOf, partOf, dependsOn, …) between two entities.",
    columns: &[
        req(
            "source_ref",
            EntityRef(None),
            "Entity the relation starts from.",
        ),
        req(
            "relation_type",
            Utf8,
            "Backstage relation type, e.g. ownedBy, memberOf, childOf.",
        ),
        req(
            "target_ref",
            EntityRef(None),
            "Entity the relation points to.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["source_ref", "relation_type", "target_ref"],
    partition: None,
};

/// Source repositories.
pub const REPOSITORIES: TableDef = TableDef {
    name: "repositories",
    description: "One row per source repository.",
    columns: &[
        req(
            "repository_id",
            Utf8,
            "Provider-qualified id, e.g. `github:acme/payments-api`.",
        ),
        req("provider", Utf8, "Hosting provider, e.g. github."),
        req("full_name", Utf8, "owner/name as the provider spells it."),
        opt("default_branch", Utf8, "The default branch, e.g. main."),
        opt("url", Utf8, "Web URL of the repository."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component that claims the repo (github.com/project-slug); null when none does.",
        ),
        opt("archived", Boolean, "Whether the repository is archived."),
        opt("created_at", Timestamp, "When the repository was created."),
        UPDATED_AT,
    ],
    primary_key: &["repository_id"],
    partition: None,
};

/// Commits on default branches and in pull requests.
pub const COMMITS: TableDef = TableDef {
    name: "commits",
    description: "One row per commit seen in a repository (default-branch history and pull request commits).",
    columns: &[
        req("repository_id", Utf8, "Repository the commit belongs to."),
        req("sha", Utf8, "Full commit SHA."),
        opt("author_name", Utf8, "Git author name."),
        opt(
            "author_login",
            Utf8,
            "Provider login of the author; null when the provider links no account.",
        ),
        opt("authored_at", Timestamp, "Git author date."),
        req("committed_at", Timestamp, "Git committer date."),
        opt("message", Utf8, "First line of the commit message."),
        opt(
            "pull_request_number",
            Int64,
            "Pull request that merged the commit; null for direct pushes.",
        ),
        opt(
            "pushed_directly",
            Boolean,
            "True when the commit reached the default branch without a pull request.",
        ),
        opt("additions", Int64, "Lines added."),
        opt("deletions", Int64, "Lines deleted."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the repository.",
        ),
        req(
            "committed_month",
            Utf8,
            "Partition: `YYYY-MM` of committed_at.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["repository_id", "sha"],
    partition: Some(MonthPartition {
        column: "committed_month",
        source: "committed_at",
    }),
};

/// Pull requests.
pub const PULL_REQUESTS: TableDef = TableDef {
    name: "pull_requests",
    description: "One row per pull request, with the instants its lead-time stages are measured from.",
    columns: &[
        req("repository_id", Utf8, "Repository of the pull request."),
        req(
            "number",
            Int64,
            "Pull request number within the repository.",
        ),
        opt("title", Utf8, "Title."),
        opt("author_login", Utf8, "Login of the author."),
        req("state", Utf8, "Where the pull request stands.").with_vocabulary(&PULL_REQUEST_STATE),
        opt("base_branch", Utf8, "Branch merged into."),
        opt("head_branch", Utf8, "Branch merged from."),
        req("created_at", Timestamp, "When the pull request was opened."),
        opt(
            "first_commit_at",
            Timestamp,
            "Author date of its earliest commit (start of coding).",
        ),
        opt(
            "first_review_at",
            Timestamp,
            "First review by someone other than the author (end of pickup).",
        ),
        opt(
            "merged_at",
            Timestamp,
            "When it was merged; null if not merged.",
        ),
        opt("closed_at", Timestamp, "When it was closed."),
        opt(
            "merge_commit_sha",
            Utf8,
            "SHA of the merge commit on the base branch.",
        ),
        opt("commit_count", Int64, "Number of commits."),
        opt("additions", Int64, "Lines added."),
        opt("deletions", Int64, "Lines deleted."),
        opt("changed_files", Int64, "Files changed."),
        opt(
            "labels",
            StringList,
            "Label names (hotfix labels mark rework).",
        ),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the repository.",
        ),
        req("created_month", Utf8, "Partition: `YYYY-MM` of created_at."),
        UPDATED_AT,
    ],
    primary_key: &["repository_id", "number"],
    partition: Some(MonthPartition {
        column: "created_month",
        source: "created_at",
    }),
};

/// Reviews of pull requests.
pub const PULL_REQUEST_REVIEWS: TableDef = TableDef {
    name: "pull_request_reviews",
    description: "One row per submitted pull request review.",
    columns: &[
        req("repository_id", Utf8, "Repository of the pull request."),
        req("pull_request_number", Int64, "Pull request reviewed."),
        req("review_id", Utf8, "Provider id of the review."),
        opt("reviewer_login", Utf8, "Login of the reviewer."),
        opt(
            "state",
            Utf8,
            "APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED.",
        ),
        req("submitted_at", Timestamp, "When the review was submitted."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the repository.",
        ),
        req(
            "submitted_month",
            Utf8,
            "Partition: `YYYY-MM` of submitted_at.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["repository_id", "pull_request_number", "review_id"],
    partition: Some(MonthPartition {
        column: "submitted_month",
        source: "submitted_at",
    }),
};

/// Deployment statuses, with the spellings of Argo CD, GitHub, GitLab,
/// Jenkins, Spinnaker and Azure DevOps.
pub const DEPLOYMENT_STATUS: Vocabulary = Vocabulary {
    name: "deployment status",
    values: &["success", "failure", "error", "in_progress", "cancelled"],
    synonyms: &[
        ("succeeded", "success"),
        ("successful", "success"),
        ("completed", "success"),
        ("complete", "success"),
        ("done", "success"),
        ("passed", "success"),
        ("failed", "failure"),
        ("fail", "failure"),
        ("unstable", "failure"),
        ("terminal", "failure"),
        ("errored", "error"),
        ("running", "in_progress"),
        ("inprogress", "in_progress"),
        ("pending", "in_progress"),
        ("queued", "in_progress"),
        ("started", "in_progress"),
        ("canceled", "cancelled"),
        ("aborted", "cancelled"),
        ("skipped", "cancelled"),
        ("terminated", "cancelled"),
    ],
};

/// FOCUS `PricingCategory` (1.1 names; 1.0's are accepted).
pub const PRICING_CATEGORY: Vocabulary = Vocabulary {
    name: "pricing category",
    values: &["standard", "committed", "dynamic", "other"],
    synonyms: &[
        ("on_demand", "standard"),
        ("ondemand", "standard"),
        ("commitment_based", "committed"),
        ("spot", "dynamic"),
    ],
};

/// FOCUS `CommitmentDiscountCategory`.
pub const COMMITMENT_DISCOUNT_CATEGORY: Vocabulary = Vocabulary {
    name: "commitment discount category",
    values: &["spend", "usage"],
    synonyms: &[],
};

/// FOCUS `CommitmentDiscountStatus`.
pub const COMMITMENT_DISCOUNT_STATUS: Vocabulary = Vocabulary {
    name: "commitment discount status",
    values: &["used", "unused"],
    synonyms: &[],
};

/// Pull request states (GitHub's GraphQL spells them in capitals).
pub const PULL_REQUEST_STATE: Vocabulary = Vocabulary {
    name: "pull request state",
    values: &["open", "closed", "merged"],
    synonyms: &[("opened", "open")],
};

/// Deployments from every CD system.
pub const DEPLOYMENTS: TableDef = TableDef {
    name: "deployments",
    description: "One row per deployment attempt of a service to an environment, from any CD system (Argo CD, GitHub, intake, import).",
    columns: &[
        req(
            "deployment_id",
            Utf8,
            "Source-qualified id, e.g. `argocd:payments-api:42`.",
        ),
        req(
            "source",
            Utf8,
            "System that reported it: argocd, github, intake, import.",
        ),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component deployed; null when unmapped.",
        ),
        opt(
            "service_name",
            Utf8,
            "Name of the deployed thing as the source knows it (app, repo).",
        ),
        req(
            "environment",
            Utf8,
            "Target environment as reported (production is classified by configurable patterns).",
        ),
        req(
            "status",
            Utf8,
            "How the deployment went; only `success` completes it.",
        )
        .with_vocabulary(&DEPLOYMENT_STATUS),
        opt("revision", Utf8, "Deployed commit SHA or revision."),
        opt("repository_id", Utf8, "Repository the revision belongs to."),
        req("started_at", Timestamp, "When the deployment started."),
        opt(
            "finished_at",
            Timestamp,
            "When it finished; null while running.",
        ),
        opt(
            "duration_seconds",
            Float64,
            "finished_at − started_at, when the source reports it.",
        ),
        opt(
            "is_rollback",
            Boolean,
            "True when this deployment rolled back to an earlier revision.",
        ),
        opt("triggered_by", Utf8, "Login or system that triggered it."),
        opt("url", Utf8, "Link to the deployment in its source."),
        req("started_month", Utf8, "Partition: `YYYY-MM` of started_at."),
        UPDATED_AT,
    ],
    primary_key: &["deployment_id"],
    partition: Some(MonthPartition {
        column: "started_month",
        source: "started_at",
    }),
};

/// Files each commit changed.
pub const COMMIT_FILES: TableDef = TableDef {
    name: "commit_files",
    description: "One row per file a commit changed (`git log --name-only`, or the provider's commit API): in a monorepo, which components a change touches (their `fathom.dev/source-paths`).",
    columns: &[
        req("repository_id", Utf8, "Repository of the commit."),
        req("sha", Utf8, "Commit SHA."),
        req("path", Utf8, "Path of the file from the repository root."),
        opt("additions", Int64, "Lines added to the file."),
        opt("deletions", Int64, "Lines deleted from the file."),
        UPDATED_AT,
    ],
    primary_key: &["repository_id", "sha", "path"],
    partition: None,
};

/// Which commits each deployment shipped.
pub const DEPLOYMENT_CHANGES: TableDef = TableDef {
    name: "deployment_changes",
    description: "One row per commit shipped by a deployment (reachable from its revision, not from the previous successful deployment of the same service and environment).",
    columns: &[
        req("deployment_id", Utf8, "Deployment that shipped the commit."),
        req("sha", Utf8, "Commit SHA."),
        opt("repository_id", Utf8, "Repository of the commit."),
        opt(
            "pull_request_number",
            Int64,
            "Pull request the commit was merged through, if any.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["deployment_id", "sha"],
    partition: None,
};

/// Incidents from incident tools.
pub const INCIDENTS: TableDef = TableDef {
    name: "incidents",
    description: "One row per incident (Datadog, intake, import), with the instants recovery times are measured from.",
    columns: &[
        req(
            "incident_id",
            Utf8,
            "Source-qualified id, e.g. `datadog:123`.",
        ),
        req("source", Utf8, "System that reported it."),
        opt("title", Utf8, "Title."),
        opt("severity", Utf8, "Severity as reported (SEV-1 …)."),
        opt("state", Utf8, "active, stable, resolved."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component affected; null when unmapped.",
        ),
        opt(
            "team_ref",
            EntityRef(Some("group")),
            "Team responsible, if the source says.",
        ),
        req(
            "created_at",
            Timestamp,
            "When the incident started (impact start when known).",
        ),
        opt("detected_at", Timestamp, "When it was detected."),
        opt(
            "resolved_at",
            Timestamp,
            "When it was resolved; null while open.",
        ),
        opt(
            "customer_impacted",
            Boolean,
            "Whether customers were affected.",
        ),
        opt(
            "caused_by_deployment_id",
            Utf8,
            "Explicit link to the deployment that caused it, when the source gives one.",
        ),
        opt(
            "version",
            Utf8,
            "Version of the service the incident was seen on, when the source says (a Datadog incident's `version` field, a Sentry release): a deployed revision, or a release whose deploys name one.",
        ),
        opt("url", Utf8, "Link to the incident."),
        req("created_month", Utf8, "Partition: `YYYY-MM` of created_at."),
        UPDATED_AT,
    ],
    primary_key: &["incident_id"],
    partition: Some(MonthPartition {
        column: "created_month",
        source: "created_at",
    }),
};

/// Error-tracking issues per day.
pub const ERROR_ISSUES_DAILY: TableDef = TableDef {
    name: "error_issues_daily",
    description: "One row per error-tracking issue (Sentry) per day it had events.",
    columns: &[
        req("date", Date, "UTC day."),
        req("source", Utf8, "Error tracker, e.g. sentry."),
        req("issue_id", Utf8, "Issue id in the tracker."),
        opt("project_slug", Utf8, "Project of the issue."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the project; null when unmapped.",
        ),
        opt("title", Utf8, "Issue title."),
        opt("level", Utf8, "error, warning, fatal, …"),
        opt("release", Utf8, "Release most seen that day."),
        req("event_count", Int64, "Events that day."),
        opt("user_count", Int64, "Distinct users affected that day."),
        opt("first_seen_at", Timestamp, "When the issue was first seen."),
        opt("last_seen_at", Timestamp, "When it was last seen."),
        req("month", Utf8, "Partition: `YYYY-MM` of date."),
        UPDATED_AT,
    ],
    primary_key: &["source", "issue_id", "date"],
    partition: Some(MonthPartition {
        column: "month",
        source: "date",
    }),
};

// The columns the daily and hourly operational metrics share.
const METRICS_SOURCE: ColumnDef = req("source", Utf8, "Where the metrics came from.");
const SERVICE_NAME: ColumnDef = req("service_name", Utf8, "Service name as the source knows it.");
const SERVICE_ENTITY: ColumnDef = opt(
    "entity_ref",
    EntityRef(Some("component")),
    "Component of the service; null when unmapped.",
);
const ERROR_COUNT: ColumnDef = opt("error_count", Int64, "Requests that failed.");
const LATENCY_P95: ColumnDef = opt("latency_p95_seconds", Float64, "95th percentile latency.");

/// Operational metrics per service per day.
pub const SERVICE_METRICS_DAILY: TableDef = TableDef {
    name: "service_metrics_daily",
    description: "One row per service per day of operational metrics (Datadog queries, import).",
    columns: &[
        req("date", Date, "UTC day."),
        METRICS_SOURCE,
        SERVICE_NAME,
        SERVICE_ENTITY,
        opt("request_count", Int64, "Requests served that day."),
        ERROR_COUNT,
        LATENCY_P95,
        opt("cpu_usage_cores", Float64, "Average CPU used."),
        opt("memory_usage_bytes", Float64, "Average memory used."),
        req("month", Utf8, "Partition: `YYYY-MM` of date."),
        UPDATED_AT,
    ],
    primary_key: &["source", "service_name", "date"],
    partition: Some(MonthPartition {
        column: "month",
        source: "date",
    }),
};

/// Operational metrics per service per hour.
pub const SERVICE_METRICS_HOURLY: TableDef = TableDef {
    name: "service_metrics_hourly",
    description: "One row per service per hour of requests, errors and p95 latency (Datadog queries, import): fine enough to tell which deployment of a day a change followed.",
    columns: &[
        req("hour", Timestamp, "Start of the UTC hour."),
        METRICS_SOURCE,
        SERVICE_NAME,
        SERVICE_ENTITY,
        opt("request_count", Int64, "Requests served in the hour."),
        ERROR_COUNT,
        LATENCY_P95,
        req("month", Utf8, "Partition: `YYYY-MM` of hour."),
        UPDATED_AT,
    ],
    primary_key: &["source", "service_name", "hour"],
    partition: Some(MonthPartition {
        column: "month",
        source: "hour",
    }),
};

/// Error events per project per day.
pub const ERROR_COUNTS_DAILY: TableDef = TableDef {
    name: "error_counts_daily",
    description: "One row per error-tracking project (Sentry) per day: the events it received, whatever their issue.",
    columns: &[
        req("date", Date, "UTC day."),
        req("source", Utf8, "Error tracker, e.g. sentry."),
        req("project_slug", Utf8, "Project."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the project; null when unmapped.",
        ),
        req("event_count", Int64, "Events received that day."),
        req("month", Utf8, "Partition: `YYYY-MM` of date."),
        UPDATED_AT,
    ],
    primary_key: &["source", "project_slug", "date"],
    partition: Some(MonthPartition {
        column: "month",
        source: "date",
    }),
};

/// Release deploys reported by error trackers (Sentry).
pub const RELEASE_DEPLOYS: TableDef = TableDef {
    name: "release_deploys",
    description: "One row per deploy of a release to an environment as an error tracker (Sentry) records it; the release's commit ties an error spike to the deployment that shipped it.",
    columns: &[
        req("source", Utf8, "Error tracker, e.g. sentry."),
        req(
            "deploy_id",
            Utf8,
            "Source-qualified deploy id, e.g. `sentry:acme:123`.",
        ),
        req(
            "release_version",
            Utf8,
            "Release version as the tracker names it.",
        ),
        opt(
            "revision",
            Utf8,
            "Commit SHA of the release (`ref` or last commit), when known.",
        ),
        opt(
            "project_slug",
            Utf8,
            "Project of the release (the first, when several).",
        ),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the project; null when unmapped.",
        ),
        opt("environment", Utf8, "Environment deployed to."),
        opt(
            "started_at",
            Timestamp,
            "When the deploy started, if reported.",
        ),
        req("finished_at", Timestamp, "When the deploy finished."),
        opt(
            "release_created_at",
            Timestamp,
            "When the release was created.",
        ),
        req(
            "finished_month",
            Utf8,
            "Partition: `YYYY-MM` of finished_at.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["deploy_id"],
    partition: Some(MonthPartition {
        column: "finished_month",
        source: "finished_at",
    }),
};

/// Alert history: monitor states as polled.
pub const MONITOR_STATES: TableDef = TableDef {
    name: "monitor_states",
    description: "One row per monitor state seen (Datadog monitors), keyed by when the monitor entered it: each poll records the current state of every monitor, so the table accumulates the alert history.",
    columns: &[
        req("source", Utf8, "Where the monitor lives, e.g. datadog."),
        req("monitor_id", Utf8, "Monitor id in the source."),
        req(
            "state_changed_at",
            Timestamp,
            "When the monitor entered this state.",
        ),
        req("state", Utf8, "OK, Alert, Warn, No Data, …"),
        opt("name", Utf8, "Monitor name."),
        opt("service_name", Utf8, "The monitor's `service:` tag."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the service; null when unmapped.",
        ),
        opt(
            "priority",
            Int64,
            "Priority, 1 (highest) to 5; null when unset.",
        ),
        opt("tags", StringList, "Monitor tags."),
        req(
            "changed_month",
            Utf8,
            "Partition: `YYYY-MM` of state_changed_at.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["source", "monitor_id", "state_changed_at"],
    partition: Some(MonthPartition {
        column: "changed_month",
        source: "state_changed_at",
    }),
};

/// Kubernetes cost allocations per day (OpenCost).
pub const COST_ALLOCATIONS_DAILY: TableDef = TableDef {
    name: "cost_allocations_daily",
    description: "One row per Kubernetes allocation (namespace/controller/labels aggregate) per day, from OpenCost. `__idle__` and `__unallocated__` are rows of their own.",
    columns: &[
        req("date", Date, "UTC day."),
        req("cluster", Utf8, "Cluster id."),
        req(
            "allocation_name",
            Utf8,
            "Aggregate name as OpenCost returns it, e.g. `payments/deployment:api`.",
        ),
        opt("namespace", Utf8, "Kubernetes namespace."),
        opt("controller_kind", Utf8, "deployment, statefulset, …"),
        opt("controller_name", Utf8, "Controller name."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component the allocation maps to; null when unmapped.",
        ),
        opt("cpu_cost_usd", Float64, "CPU cost."),
        opt("ram_cost_usd", Float64, "Memory cost."),
        opt("gpu_cost_usd", Float64, "GPU cost."),
        opt("pv_cost_usd", Float64, "Persistent volume cost."),
        opt("network_cost_usd", Float64, "Network cost."),
        opt("shared_cost_usd", Float64, "Shared cost assigned."),
        req("total_cost_usd", Float64, "Total cost."),
        opt("cpu_request_cores", Float64, "Average CPU requested."),
        opt("cpu_usage_cores", Float64, "Average CPU used."),
        opt("ram_request_bytes", Float64, "Average memory requested."),
        opt("ram_usage_bytes", Float64, "Average memory used."),
        opt("cpu_efficiency", Float64, "CPU used / requested (0–1+)."),
        opt("ram_efficiency", Float64, "Memory used / requested."),
        opt("total_efficiency", Float64, "Cost-weighted efficiency."),
        opt("labels", StringMap, "Aggregation labels."),
        req("month", Utf8, "Partition: `YYYY-MM` of date."),
        UPDATED_AT,
    ],
    primary_key: &["date", "cluster", "allocation_name"],
    partition: Some(MonthPartition {
        column: "month",
        source: "date",
    }),
};

/// Cloud cost lines in FOCUS semantics.
pub const CLOUD_COSTS_DAILY: TableDef = TableDef {
    name: "cloud_costs_daily",
    description: "One row per cloud cost line per day, with FinOps FOCUS column semantics (from AWS CUR 2.0, FOCUS exports, import). A billing period is replaced as a whole when its source files change.",
    columns: &[
        req(
            "billing_period",
            Utf8,
            "Billing month `YYYY-MM` (partition; replaced atomically when the provider rewrites it).",
        ),
        req(
            "line_item_id",
            Utf8,
            "Id of the cost line, unique within the billing period.",
        ),
        req("date", Date, "UTC day of ChargePeriodStart."),
        req("provider", Utf8, "ProviderName, e.g. aws."),
        opt(
            "billing_account_id",
            Utf8,
            "BillingAccountId (payer); text, leading zeros kept.",
        ),
        opt(
            "sub_account_id",
            Utf8,
            "SubAccountId (usage account); text, leading zeros kept.",
        ),
        opt("charge_period_start_at", Timestamp, "ChargePeriodStart."),
        opt("charge_period_end_at", Timestamp, "ChargePeriodEnd."),
        req(
            "charge_category",
            Utf8,
            "ChargeCategory: usage, purchase, tax, credit, adjustment, refund.",
        ),
        opt("charge_description", Utf8, "ChargeDescription."),
        opt(
            "service_name",
            Utf8,
            "ServiceName, e.g. Amazon Elastic Compute Cloud.",
        ),
        opt("service_category", Utf8, "ServiceCategory, e.g. Compute."),
        opt("region", Utf8, "RegionId."),
        opt("resource_id", Utf8, "ResourceId."),
        opt("sku_id", Utf8, "SkuId / usage type."),
        opt(
            "usage_quantity",
            Float64,
            "ConsumedQuantity in pricing units.",
        ),
        opt("pricing_unit", Utf8, "PricingUnit."),
        req(
            "billed_cost_usd",
            Float64,
            "BilledCost: what the invoice charges for this line.",
        ),
        req(
            "effective_cost_usd",
            Float64,
            "EffectiveCost: amortized cost after commitment discounts (RI/Savings Plan effective cost for covered usage).",
        ),
        opt(
            "list_cost_usd",
            Float64,
            "ListCost: at public on-demand prices.",
        ),
        opt(
            "pricing_category",
            Utf8,
            "PricingCategory: how the line was priced.",
        )
        .with_vocabulary(&PRICING_CATEGORY),
        opt(
            "commitment_discount_id",
            Utf8,
            "CommitmentDiscountId: the Savings Plan or reservation (ARN) the line belongs to.",
        ),
        opt(
            "commitment_discount_type",
            Utf8,
            "CommitmentDiscountType as the provider names it (Savings Plan, Reserved Instance, …).",
        ),
        opt(
            "commitment_discount_category",
            Utf8,
            "CommitmentDiscountCategory: a commitment of spend or of usage.",
        )
        .with_vocabulary(&COMMITMENT_DISCOUNT_CATEGORY),
        opt(
            "commitment_discount_status",
            Utf8,
            "CommitmentDiscountStatus: `used` (usage the commitment covered, at its effective cost) or `unused` (the commitment nothing used: its effective cost is waste). For AWS CUR lines the recurring Savings Plan and reservation fees are `unused`: their effective cost is the unused part.",
        )
        .with_vocabulary(&COMMITMENT_DISCOUNT_STATUS),
        opt(
            "billing_currency",
            Utf8,
            "BillingCurrency as reported (amounts are stored as reported in the `_usd` columns only when USD).",
        ),
        opt(
            "tags",
            StringMap,
            "Resource tags (provider prefixes such as `user_` removed).",
        ),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component from the configured tag keys; null when untagged.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["billing_period", "line_item_id"],
    partition: Some(MonthPartition {
        column: "billing_period",
        source: "date",
    }),
};

/// Portal usage.
pub const PORTAL_EVENTS: TableDef = TableDef {
    name: "portal_events",
    description: "One row per Backstage analytics event (page views, searches, template runs). Users are pseudonymized at intake.",
    columns: &[
        req(
            "event_id",
            Utf8,
            "Id of the event (delivery id or content hash).",
        ),
        req("occurred_at", Timestamp, "When the event happened."),
        opt(
            "user_hash",
            Utf8,
            "Keyed hash of the user identity; never the identity itself.",
        ),
        opt(
            "user_team_ref",
            EntityRef(Some("group")),
            "Team of the user, for adoption by team.",
        ),
        req(
            "action",
            Utf8,
            "Analytics action, e.g. navigate, click, search, create.",
        ),
        opt(
            "subject",
            Utf8,
            "What the action was about (path, query, template).",
        ),
        opt(
            "plugin_id",
            Utf8,
            "Backstage plugin that emitted the event.",
        ),
        opt("route", Utf8, "Route ref / path pattern."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Catalog entity in context, if any.",
        ),
        opt("attributes", StringMap, "Other event attributes."),
        req(
            "occurred_month",
            Utf8,
            "Partition: `YYYY-MM` of occurred_at.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["event_id"],
    partition: Some(MonthPartition {
        column: "occurred_month",
        source: "occurred_at",
    }),
};

/// Records rejected on the way in.
pub const QUARANTINE: TableDef = TableDef {
    name: "quarantine",
    description: "One row per rejected input record, with the reason; nothing is silently dropped. Re-reading the same bad record does not add a second row.",
    columns: &[
        req(
            "quarantine_id",
            Utf8,
            "Hash of source, stream, location, reason and raw record.",
        ),
        req(
            "source",
            Utf8,
            "Source of the record: a configured source name, or `import`.",
        ),
        req("stream", Utf8, "Stream or target table."),
        opt(
            "location",
            Utf8,
            "File path or request the record came from.",
        ),
        opt(
            "line_number",
            Int64,
            "1-based line (CSV/NDJSON) or row (Parquet) in the file.",
        ),
        opt("column_name", Utf8, "Column at fault, when one is."),
        req("reason", Utf8, "Why the record was rejected."),
        opt("raw_record", Utf8, "The record as received."),
        opt("run_id", Utf8, "Run that rejected it (see the run ledger)."),
        req("quarantined_at", Timestamp, "When it was rejected."),
    ],
    primary_key: &["quarantine_id"],
    partition: None,
};

/// Which commits a pull request contains.
pub const PULL_REQUEST_COMMITS: TableDef = TableDef {
    name: "pull_request_commits",
    description: "One row per commit of a pull request, as the provider lists them. Joins commits (and the commits a deployment shipped) to the pull request they came through; with squash or rebase merges, the merge commit is `pull_requests.merge_commit_sha`.",
    columns: &[
        req("repository_id", Utf8, "Repository of the pull request."),
        req("pull_request_number", Int64, "Pull request."),
        req("sha", Utf8, "Commit SHA on the pull request's branch."),
        opt(
            "author_login",
            Utf8,
            "Provider login of the commit's author.",
        ),
        opt("authored_at", Timestamp, "Git author date."),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component of the repository.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["repository_id", "pull_request_number", "sha"],
    partition: None,
};

/// Columns of every raw table: one row per upstream payload as received.
const RAW_COLUMNS: &[ColumnDef] = &[
    req(
        "payload_id",
        Utf8,
        "Hash of source, stream, request and body: fetching the same answer twice stores it once.",
    ),
    req("source", Utf8, "Configured source name."),
    req(
        "stream",
        Utf8,
        "Stream of the source, e.g. pulls, deployments.",
    ),
    req(
        "unit",
        Utf8,
        "Unit of work the payload belongs to (e.g. a repository); a unit's payloads decode together.",
    ),
    req(
        "request",
        Utf8,
        "The request that returned the payload (method and URL; never credentials).",
    ),
    req("fetched_at", Timestamp, "When the payload was received."),
    opt("run_id", Utf8, "Run that fetched it (see the run ledger)."),
    opt("status", Int64, "HTTP status of the response."),
    req("body", Utf8, "The response body, unchanged."),
    req("fetched_month", Utf8, "Partition: `YYYY-MM` of fetched_at."),
];

const fn raw_table(name: &'static str, description: &'static str) -> TableDef {
    TableDef {
        name,
        description,
        columns: RAW_COLUMNS,
        primary_key: &["payload_id"],
        partition: Some(MonthPartition {
            column: "fetched_month",
            source: "fetched_at",
        }),
    }
}

/// Raw payloads of Backstage catalog sources.
pub const RAW_BACKSTAGE: TableDef = raw_table(
    "raw_backstage",
    "Every payload fetched from a Backstage catalog (or discovered catalog-info.yaml), as received; `fathom reprocess` re-decodes from here.",
);
/// Raw payloads of GitHub sources.
pub const RAW_GITHUB: TableDef = raw_table(
    "raw_github",
    "Every payload fetched from GitHub, as received; `fathom reprocess` re-decodes from here.",
);
/// Raw payloads of Argo CD sources.
pub const RAW_ARGOCD: TableDef = raw_table(
    "raw_argocd",
    "Every payload fetched from Argo CD, as received; `fathom reprocess` re-decodes from here.",
);

/// Raw payloads of Datadog sources.
pub const RAW_DATADOG: TableDef = raw_table(
    "raw_datadog",
    "Every payload fetched from Datadog, as received; `fathom reprocess` re-decodes from here.",
);

/// Raw payloads of OpenCost sources.
pub const RAW_OPENCOST: TableDef = raw_table(
    "raw_opencost",
    "Every payload fetched from OpenCost, as received; `fathom reprocess` re-decodes from here.",
);

/// DORA mart: production deployments with what they shipped and whether
/// they failed.
pub const DORA_DEPLOYMENTS: TableDef = TableDef {
    name: "dora_deployments",
    description: "Mart: one row per production deployment job — completed or not — with its place in its service's series, the changes it shipped first, whether it failed (linked incident or rolled back), its recovery time and whether it was rework.",
    columns: &[
        req(
            "deployment_id",
            Utf8,
            "Deployment id (as in `deployments`).",
        ),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component deployed.",
        ),
        req("environment", Utf8, "Production environment name."),
        opt("source", Utf8, "Where the deployment was read."),
        opt("revision", Utf8, "Deployed commit SHA."),
        opt("started_at", Timestamp, "When the job started."),
        req("finished_at", Timestamp, "When the job ended; its window."),
        req(
            "completed",
            Boolean,
            "The job completed (status success). Only completed deployments count in DORA; the others are failed jobs, reported apart.",
        ),
        opt(
            "is_baseline",
            Boolean,
            "First completed deployment seen of its service and environment: ships no attributed changes.",
        ),
        opt(
            "is_rollback",
            Boolean,
            "The deployment undid an earlier one.",
        ),
        opt(
            "change_count",
            Int64,
            "Changes (pull requests or direct pushes) this deployment shipped first.",
        ),
        opt(
            "failed",
            Boolean,
            "Caused an incident (linked), was rolled back, or (by default) shipped a change that was reverted.",
        ),
        opt(
            "rolled_back",
            Boolean,
            "The next completed deployment of the series was a rollback.",
        ),
        opt(
            "failed_by_revert",
            Boolean,
            "Failed only because a change it shipped first was reverted (no linked incident, no rollback); `[transforms] reverts_are_failures`.",
        ),
        opt(
            "reverted_by",
            Utf8,
            "The change (`pr:…` or `push:…`) that reverted a change this deployment shipped first, if any.",
        ),
        opt(
            "incident_ids",
            StringList,
            "Incidents linked to it (explicitly, or as the nearest earlier deployment within the gap).",
        ),
        opt(
            "recovery_seconds",
            Float64,
            "Failed deployment recovery: finished → last linked incident resolved, else → the rollback finished.",
        ),
        opt(
            "rework",
            Boolean,
            "Started while an incident on the service was open, or ships a hotfix-labelled pull request.",
        ),
        req(
            "finished_month",
            Utf8,
            "Partition: `YYYY-MM` of finished_at.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["deployment_id"],
    partition: Some(MonthPartition {
        column: "finished_month",
        source: "finished_at",
    }),
};

/// DORA mart: changes with their lead time and pull-request stages.
pub const DORA_CHANGES: TableDef = TableDef {
    name: "dora_changes",
    description: "Mart: one row per change — a merged pull request or a commit pushed straight to the default branch — and component that shipped it (a monorepo change touching several components is a row for each), with the production deployment of that component that shipped it first, its lead time and its pull-request stages. Changes not yet deployed have null deploy fields.",
    columns: &[
        req(
            "change_id",
            Utf8,
            "`pr:<repository>#<number>` or `push:<repository>@<sha>`.",
        ),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component whose deployment shipped it first; before it is deployed, the component of its repository.",
        ),
        req("kind", Utf8, "pull_request or push."),
        opt("repository_id", Utf8, "Repository."),
        opt("pull_request_number", Int64, "Pull request number."),
        opt("sha", Utf8, "Commit SHA of a direct push."),
        opt(
            "first_commit_at",
            Timestamp,
            "First commit authored: where lead time starts.",
        ),
        opt("opened_at", Timestamp, "Pull request opened."),
        opt(
            "first_review_at",
            Timestamp,
            "First review by someone other than the author.",
        ),
        opt("merged_at", Timestamp, "Pull request merged."),
        opt(
            "deployment_id",
            Utf8,
            "First completed production deployment that shipped it.",
        ),
        opt(
            "environment",
            Utf8,
            "Production environment of that deployment.",
        ),
        opt("deployed_at", Timestamp, "When that deployment finished."),
        opt(
            "lead_time_seconds",
            Float64,
            "deployed_at − first_commit_at; null when unknown or negative.",
        ),
        req(
            "lead_time_anomaly",
            Boolean,
            "The first commit is dated after the deployment that shipped it (rebased or cherry-picked history, clock skew): no lead time is measured, and the change is counted in `lead_time_anomalies`.",
        ),
        opt(
            "coding_seconds",
            Float64,
            "First commit → opened; null when negative.",
        ),
        opt(
            "pickup_seconds",
            Float64,
            "Opened → first review; null when negative or unreviewed.",
        ),
        opt(
            "review_seconds",
            Float64,
            "First review → merged; null when negative or unreviewed.",
        ),
        opt(
            "deploy_seconds",
            Float64,
            "Merged (or pushed) → deployed; null when negative.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["change_id", "entity_ref"],
    partition: None,
};

/// DORA mart: the components of each scope.
pub const DORA_SCOPE_MEMBERS: TableDef = TableDef {
    name: "dora_scope_members",
    description: "Mart: the components that make up each scope — a component itself, a group with every group below it, a system, a domain through its systems, and `org`.",
    columns: &[
        req("scope", Utf8, "Entity ref of the scope, or `org`."),
        req(
            "scope_kind",
            Utf8,
            "component, group, system, domain or org.",
        ),
        req(
            "entity_ref",
            EntityRef(Some("component")),
            "A component of the scope.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["scope", "entity_ref"],
    partition: None,
};

/// The columns `dora_metrics` and `dora_trends` share, after their own
/// leading columns: one list, so the two marts cannot drift apart.
macro_rules! dora_key_columns {
    ($($lead:expr),* $(,)?) => {
        &[
            $($lead,)*
            req("deployments", Int64, "Completed production deployments."),
            req(
                "failed_jobs",
                Int64,
                "Production deploy jobs that did not complete (not in the change failure rate).",
            ),
            req(
                "deploy_days",
                Int64,
                "Distinct UTC days with a production deployment.",
            ),
            opt("deployments_per_day", Float64, "Deployments per day."),
            opt("deployments_per_week", Float64, "Deployments per week."),
            opt(
                "median_deploy_days_per_week",
                Float64,
                "Median over the calendar weeks (Monday start) intersecting the window of the days with a deployment.",
            ),
            req("changes", Int64, "Changes first deployed in the window."),
            opt(
                "lead_time_p50_seconds",
                Float64,
                "Median lead time for changes.",
            ),
            opt(
                "lead_time_p90_seconds",
                Float64,
                "90th percentile lead time.",
            ),
            req(
                "lead_time_anomalies",
                Int64,
                "Changes first deployed in the window whose first commit is dated after that deployment (rebased history, clock skew): counted in `changes`, left out of the lead-time percentiles.",
            ),
            req(
                "failed_deployments",
                Int64,
                "Deployments that caused an incident, were rolled back, or shipped a change that was reverted.",
            ),
            req(
                "failed_by_revert",
                Int64,
                "Of the failed deployments, those failed only by a revert (no incident, no rollback).",
            ),
            opt(
                "change_failure_rate",
                Float64,
                "Failed over completed deployments.",
            ),
            opt(
                "failed_deployment_recovery_p50_seconds",
                Float64,
                "Median failed deployment recovery time.",
            ),
            req(
                "incidents",
                Int64,
                "Incidents started in the window and resolved.",
            ),
            opt(
                "time_to_restore_p50_seconds",
                Float64,
                "Median incident start → resolved.",
            ),
            req(
                "rework_deployments",
                Int64,
                "Deployments made during an incident or shipping a hotfix.",
            ),
            opt("rework_rate", Float64, "Rework over completed deployments."),
            req(
                "benchmark",
                Utf8,
                "Benchmark table of the tiers (`[transforms] benchmark`): dora-2021, dora-2023 or dora-2024.",
            ),
            opt(
                "deployment_frequency_tier",
                Utf8,
                "elite, high, medium or low by deployments per day; null without deployments.",
            ),
            opt(
                "lead_time_tier",
                Utf8,
                "Tier of the median lead time.",
            ),
            opt(
                "change_failure_rate_tier",
                Utf8,
                "Tier of the change failure rate.",
            ),
            opt(
                "recovery_tier",
                Utf8,
                "Tier of recovery: failed deployment recovery (2023, 2024) or time to restore (2021).",
            ),
            opt(
                "overall_tier",
                Utf8,
                "The worst of the metric tiers that exist; null without deployments.",
            ),
            UPDATED_AT,
        ]
    };
}

/// DORA mart: the five keys per scope and window.
pub const DORA_METRICS: TableDef = TableDef {
    name: "dora_metrics",
    description: "Mart: the five keys per scope (component, group with its sub-groups, system, domain, org), rolling window (7/30/90/365 days ending at `as_of`) and production environment (`all` for every one together), with the counts each metric was computed from and the tiers of the configured benchmark. Empty inputs give null rates and tiers, never 0.",
    columns: dora_key_columns!(
        req("scope", Utf8, "Entity ref of the scope, or `org`."),
        req(
            "scope_kind",
            Utf8,
            "component, group, system, domain or org."
        ),
        req("window_days", Int64, "Window length, days."),
        req("period", Utf8, "The window: `7d`, `30d`, `90d` or `365d`."),
        req(
            "environment",
            Utf8,
            "`all`: every production environment together; otherwise one production environment.",
        ),
        req("window_start", Timestamp, "Start of the window."),
        req("as_of", Timestamp, "End of the window (exclusive)."),
    ),
    primary_key: &["scope", "window_days", "environment"],
    partition: None,
};

/// DORA mart: the five keys per calendar week and month.
pub const DORA_TRENDS: TableDef = TableDef {
    name: "dora_trends",
    description: "Mart: the keys of `dora_metrics` per scope, production environment and calendar week (Monday start, UTC) or month, the last 52 weeks and 12 months up to `as_of`.",
    columns: dora_key_columns!(
        req("scope", Utf8, "Entity ref of the scope, or `org`."),
        req(
            "scope_kind",
            Utf8,
            "component, group, system, domain or org."
        ),
        req(
            "granularity",
            Utf8,
            "`week` (Monday start, UTC) or `month`."
        ),
        req("period_start", Timestamp, "Start of the week or month."),
        req(
            "period_end",
            Timestamp,
            "End of the period (exclusive); `as_of` for the current one.",
        ),
        req("period_days", Int64, "Days in the period (up to `as_of`)."),
        req(
            "environment",
            Utf8,
            "`all`: every production environment together; otherwise one production environment.",
        ),
    ),
    primary_key: &["scope", "granularity", "period_start", "environment"],
    partition: None,
};

/// Raw payloads of Sentry sources.
pub const RAW_SENTRY: TableDef = raw_table(
    "raw_sentry",
    "Every payload fetched from Sentry, as received; `fathom reprocess` re-decodes from here.",
);

/// Cost mart: what each component cost per day, and the shared cost.
pub const COST_DAILY: TableDef = TableDef {
    name: "cost_daily",
    description: "Mart: cost per component, day, cost source, provider, service category, charge category and currency — Kubernetes allocations (OpenCost) mapped to components plus cloud lines tagged to them. Shared cost is never dropped: rows with `entity_ref` null say why in `attribution`, or, under a spreading policy (`[cost] shared`), it is spread onto components as rows with `allocated` true. Per day and currency the rows add up to the sources' totals.",
    columns: &[
        req("date", Date, "UTC day of the charge."),
        req(
            "billing_period",
            Utf8,
            "Billing month `YYYY-MM` the cost belongs to (partition): the bill's for cloud lines, the day's month for Kubernetes.",
        ),
        opt(
            "entity_ref",
            EntityRef(Some("component")),
            "Component the cost is attributed or spread to; null for shared cost kept as its own rows.",
        ),
        req(
            "cost_source",
            Utf8,
            "`kubernetes` (OpenCost allocations) or `cloud` (cost report lines).",
        ),
        req(
            "provider",
            Utf8,
            "`kubernetes` for allocations, otherwise the cloud provider (`aws`, …).",
        ),
        req(
            "service_category",
            Utf8,
            "FOCUS ServiceCategory (`Compute`, `Storage`, `Networking`, `Databases`, …; `Other` when unknown). Allocations split into Compute (CPU, memory, GPU), Storage (volumes), Networking and Other (the rest of their total).",
        ),
        req(
            "charge_category",
            Utf8,
            "FOCUS ChargeCategory: usage, purchase, tax, credit, adjustment, refund (allocations are usage).",
        ),
        req(
            "attribution",
            Utf8,
            "`direct` for a component's own cost; otherwise why the cost is shared: `idle` (cluster capacity nobody requested), `unallocated` (workloads OpenCost cannot aggregate), `unmapped` (a namespace no component claims), `untagged` (a cloud line without the component tag), `shared` (a line tagged as shared, e.g. network), `commitment` (a commitment fee not amortized into usage), `tax`, `credit` (credits and refunds).",
        ),
        req(
            "allocated",
            Boolean,
            "True when a shared-cost policy spread this shared cost onto the component.",
        ),
        req(
            "billing_currency",
            Utf8,
            "Currency of the amounts, as reported (`USD` when the source says none). Never summed across currencies.",
        ),
        req(
            "billed_cost",
            Float64,
            "FOCUS BilledCost: what the invoice charges.",
        ),
        req(
            "effective_cost",
            Float64,
            "FOCUS EffectiveCost: amortized, after commitment discounts.",
        ),
        opt(
            "list_cost",
            Float64,
            "FOCUS ListCost: at public prices (allocations: their cost, priced at list by OpenCost).",
        ),
        req("lines", Int64, "Source rows behind this row."),
        UPDATED_AT,
    ],
    primary_key: &[
        "date",
        "billing_period",
        "entity_ref",
        "cost_source",
        "provider",
        "service_category",
        "charge_category",
        "attribution",
        "allocated",
        "billing_currency",
    ],
    partition: Some(MonthPartition {
        column: "billing_period",
        source: "date",
    }),
};

/// Cost mart: month over month per scope.
pub const COST_MONTHLY: TableDef = TableDef {
    name: "cost_monthly",
    description: "Mart: cost per scope (component, group with its sub-groups, system, domain, org — the members of `dora_scope_members`; `org` includes shared cost) and billing month, with the previous month, the change, whether it is significant (both thresholds of `[cost]` met) and the driver that explains most of it. Amounts are effective (amortized) cost unless named billed.",
    columns: &[
        req("scope", Utf8, "Entity ref of the scope, or `org`."),
        req(
            "scope_kind",
            Utf8,
            "component, group, system, domain or org.",
        ),
        req("billing_period", Utf8, "Billing month `YYYY-MM`."),
        req("billing_currency", Utf8, "Currency of the amounts."),
        req("billed_cost", Float64, "BilledCost of the month."),
        req("effective_cost", Float64, "EffectiveCost of the month."),
        opt(
            "previous_effective_cost",
            Float64,
            "EffectiveCost of the month before (0 when it had none); null for the first month of the data.",
        ),
        opt(
            "change",
            Float64,
            "effective_cost − previous_effective_cost.",
        ),
        opt(
            "change_ratio",
            Float64,
            "change / previous_effective_cost; null when the month before cost nothing.",
        ),
        req(
            "significant",
            Boolean,
            "|change| ≥ `[cost] significant_change` and (the month before cost nothing or |change_ratio| ≥ `[cost] significant_ratio`), on complete months only.",
        ),
        req(
            "complete",
            Boolean,
            "Whether the cost data reaches the month's last day.",
        ),
        opt(
            "driver",
            Utf8,
            "What explains most of the change: for a component its service category, for a wider scope the component (or `unattributed:<reason>` for shared cost).",
        ),
        opt("driver_change", Float64, "The driver's own change."),
        UPDATED_AT,
    ],
    primary_key: &["scope", "billing_period", "billing_currency"],
    partition: None,
};

/// Cost mart: unit costs per component and month, against peers.
pub const COST_BENCHMARKS: TableDef = TableDef {
    name: "cost_benchmarks",
    description: "Mart: per component, billing month and currency, effective cost per 1,000 requests, per completed production deployment, CPU and memory efficiency, and the component's place among its peers (same type, lifecycle and traffic band): percentile, peer median and the gap to it.",
    columns: &[
        req("entity_ref", EntityRef(Some("component")), "The component."),
        req("billing_period", Utf8, "Billing month `YYYY-MM`."),
        req("billing_currency", Utf8, "Currency of the amounts."),
        req("effective_cost", Float64, "EffectiveCost of the month."),
        req(
            "requests",
            Int64,
            "Requests served in the month (`service_metrics_daily`).",
        ),
        req(
            "deployments",
            Int64,
            "Completed production deployments finished in the month.",
        ),
        req(
            "merged_pull_requests",
            Int64,
            "Pull requests of the component merged in the month.",
        ),
        opt(
            "cost_per_1k_requests",
            Float64,
            "effective_cost ÷ (requests ÷ 1,000); null without requests.",
        ),
        opt(
            "cost_per_deployment",
            Float64,
            "effective_cost ÷ deployments; null without deployments.",
        ),
        opt(
            "cost_per_merged_pull_request",
            Float64,
            "effective_cost ÷ merged_pull_requests; null without any.",
        ),
        req(
            "cost_in_engineers",
            Float64,
            "effective_cost ÷ (`[cost] engineer_cost` ÷ 12): how many engineers' monthly cost it is.",
        ),
        opt(
            "cpu_efficiency",
            Float64,
            "CPU used ÷ requested over the month's allocations.",
        ),
        opt(
            "ram_efficiency",
            Float64,
            "Memory used ÷ requested over the month's allocations.",
        ),
        req(
            "peer_group",
            Utf8,
            "`type/lifecycle/band`: the catalog's type and lifecycle (`unknown` when absent) and the power of ten of the month's requests (`1e4` = 10,000–99,999; `none` without traffic).",
        ),
        req(
            "peers",
            Int64,
            "Components in the group, this one included.",
        ),
        req(
            "percentile",
            Float64,
            "Rank in the group on cost per 1,000 requests (on cost in a `none` band): 0 the cheapest, 1 the dearest.",
        ),
        opt(
            "peer_median",
            Float64,
            "The group's median of that measure.",
        ),
        opt(
            "gap_to_peer_median",
            Float64,
            "What the component would save at the peer median, in the billing currency (negative: it costs less).",
        ),
        UPDATED_AT,
    ],
    primary_key: &["entity_ref", "billing_period", "billing_currency"],
    partition: None,
};

/// Cost mart: tag coverage per month.
pub const COST_COVERAGE: TableDef = TableDef {
    name: "cost_coverage",
    description: "Mart: per billing month, cost source, provider and currency, the taggable cost (cloud usage lines; Kubernetes allocations but idle capacity) and how much of it maps to a component — the tag coverage — with the unmapped cost and how many resources carry it.",
    columns: &[
        req(
            "billing_period",
            Utf8,
            "Billing month `YYYY-MM` (partition).",
        ),
        req("cost_source", Utf8, "`kubernetes` or `cloud`."),
        req("provider", Utf8, "`kubernetes`, or the cloud provider."),
        req("billing_currency", Utf8, "Currency of the amounts."),
        req("period_start", Date, "First day of the billing month."),
        req(
            "taggable_cost",
            Float64,
            "Effective cost that a tag or namespace could attribute.",
        ),
        req("mapped_cost", Float64, "Of it, what maps to a component."),
        req("unmapped_cost", Float64, "Of it, what maps to none."),
        opt(
            "coverage",
            Float64,
            "mapped_cost ÷ taggable_cost; null when it is 0.",
        ),
        req(
            "unmapped_resources",
            Int64,
            "Distinct resources (cloud resource ids, Kubernetes allocations) with unmapped cost.",
        ),
        UPDATED_AT,
    ],
    primary_key: &[
        "billing_period",
        "cost_source",
        "provider",
        "billing_currency",
    ],
    partition: Some(MonthPartition {
        column: "billing_period",
        source: "period_start",
    }),
};

/// Cost mart: commitment discounts' utilization, waste and coverage.
pub const COST_COMMITMENTS: TableDef = TableDef {
    name: "cost_commitments",
    description: "Mart: Savings Plans, reservations and other commitment discounts per billing month, provider, billing account, commitment type (`all` for every type together) and currency: used and unused commitment, utilization, coverage of eligible usage, savings and purchases (FinOps Foundation KPIs; docs/metrics.md).",
    columns: &[
        req(
            "billing_period",
            Utf8,
            "Billing month `YYYY-MM` (partition).",
        ),
        req("period_start", Date, "First day of the billing month."),
        req("provider", Utf8, "ProviderName, e.g. aws."),
        opt("billing_account_id", Utf8, "BillingAccountId (payer)."),
        req(
            "commitment_discount_type",
            Utf8,
            "Savings Plan, Reserved Instance, … as the provider names them; `all` for every type together.",
        ),
        req("billing_currency", Utf8, "Currency of the amounts."),
        req("commitments", Int64, "Distinct commitment discounts seen."),
        req(
            "used_commitment",
            Float64,
            "Effective cost of the usage the commitments covered.",
        ),
        req(
            "unused_commitment",
            Float64,
            "Effective cost of the commitments nothing used: the waste.",
        ),
        opt(
            "utilization",
            Float64,
            "used / (used + unused); null without commitment cost.",
        ),
        req(
            "covered_list_cost",
            Float64,
            "List (on-demand) cost of the usage the commitments covered.",
        ),
        req(
            "eligible_list_cost",
            Float64,
            "List cost of all eligible usage: usage lines of the service categories of the bill and account that carry a commitment.",
        ),
        opt(
            "coverage",
            Float64,
            "covered_list_cost / eligible_list_cost (for `all`; a type's share of it otherwise); null without eligible usage.",
        ),
        req(
            "savings",
            Float64,
            "covered_list_cost − used − unused: what the commitments saved against on-demand prices, net of waste.",
        ),
        req(
            "purchases_billed",
            Float64,
            "Billed cost of the commitments' purchase lines (fees) in the month.",
        ),
        UPDATED_AT,
    ],
    primary_key: &[
        "billing_period",
        "provider",
        "billing_account_id",
        "commitment_discount_type",
        "billing_currency",
    ],
    partition: Some(MonthPartition {
        column: "billing_period",
        source: "period_start",
    }),
};

/// Every table, in dependency order for documentation.
pub const ALL_TABLES: &[TableDef] = &[
    CATALOG_ENTITIES,
    ENTITY_RELATIONS,
    REPOSITORIES,
    COMMITS,
    PULL_REQUESTS,
    PULL_REQUEST_REVIEWS,
    PULL_REQUEST_COMMITS,
    DEPLOYMENTS,
    DEPLOYMENT_CHANGES,
    COMMIT_FILES,
    INCIDENTS,
    ERROR_ISSUES_DAILY,
    ERROR_COUNTS_DAILY,
    SERVICE_METRICS_DAILY,
    SERVICE_METRICS_HOURLY,
    MONITOR_STATES,
    RELEASE_DEPLOYS,
    COST_ALLOCATIONS_DAILY,
    CLOUD_COSTS_DAILY,
    PORTAL_EVENTS,
    DORA_DEPLOYMENTS,
    DORA_CHANGES,
    DORA_SCOPE_MEMBERS,
    DORA_METRICS,
    DORA_TRENDS,
    DEPLOYMENT_FEATURES,
    DEPLOYMENT_SIGNALS,
    COST_DAILY,
    COST_MONTHLY,
    COST_BENCHMARKS,
    COST_COVERAGE,
    COST_COMMITMENTS,
    USAGE_DAILY,
    USAGE_ACTIVE,
    USAGE_FEATURES,
    USAGE_SEARCH,
    USAGE_SEARCH_QUERIES,
    USAGE_TEMPLATES,
    USAGE_ENTITIES,
    ANOMALY_SCORES,
    ANOMALIES,
    DEPLOYMENT_RISK,
    QUARANTINE,
    RAW_BACKSTAGE,
    RAW_GITHUB,
    RAW_ARGOCD,
    RAW_DATADOG,
    RAW_OPENCOST,
    RAW_SENTRY,
];

/// The table with this name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    ALL_TABLES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique() {
        let names: HashSet<_> = ALL_TABLES.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), ALL_TABLES.len());
    }

    /// Key columns that may be null: a mart replaced whole or by
    /// partition (never merged on its key), where null is a value of the
    /// key — shared cost belongs to no component, nor does a merged pull
    /// request of an unclaimed repository that no deployment shipped yet.
    const NULLABLE_KEYS: &[(&str, &str)] = &[
        ("cost_daily", "entity_ref"),
        ("dora_changes", "entity_ref"),
        ("cost_commitments", "billing_account_id"),
        // Null: the series follows the whole measure, not a part of it.
        ("anomaly_scores", "dimension"),
    ];

    #[test]
    fn every_table_is_well_formed() {
        for t in ALL_TABLES {
            let columns: HashSet<_> = t.columns.iter().map(|c| c.name).collect();
            assert_eq!(
                columns.len(),
                t.columns.len(),
                "{}: duplicate column",
                t.name
            );
            assert!(!t.primary_key.is_empty(), "{}: no primary key", t.name);
            for key in t.primary_key {
                let column = t.column(key);
                assert!(
                    column.is_some_and(|c| !c.nullable || NULLABLE_KEYS.contains(&(t.name, *key))),
                    "{}: key {key} must be a required column",
                    t.name
                );
            }
            if let Some(p) = t.partition {
                let partition = t.column(p.column);
                assert!(
                    partition.is_some_and(|c| c.column_type == Utf8 && !c.nullable),
                    "{}: bad partition column",
                    t.name
                );
                let source = t.column(p.source);
                assert!(
                    source
                        .is_some_and(|c| !c.nullable && matches!(c.column_type, Timestamp | Date)),
                    "{}: partition source must be a required timestamp or date",
                    t.name
                );
            }
            for c in t.columns {
                assert!(
                    !c.description.is_empty(),
                    "{}.{} undocumented",
                    t.name,
                    c.name
                );
                if c.name.ends_with("_at") {
                    assert_eq!(c.column_type, Timestamp, "{}.{}", t.name, c.name);
                }
                if c.name.ends_with("_usd") || c.name.ends_with("_seconds") {
                    assert_eq!(c.column_type, Float64, "{}.{}", t.name, c.name);
                }
            }
            assert_eq!(t.arrow_schema().fields().len(), t.columns.len());
        }
    }
}
