//! Deployment risk: what was known about each production deployment when it
//! started (the model's features), and the scores the model gave
//! (docs/ml.md).

use super::{UPDATED_AT, opt, req};
use crate::schema::ColumnType::{Boolean, EntityRef, Float64, Int64, StringList, Timestamp, Utf8};
use crate::schema::{ColumnDef, MonthPartition, TableDef};

/// The deployment a row is about.
const DEPLOYMENT_ID: ColumnDef = req(
    "deployment_id",
    Utf8,
    "Deployment id (as in `deployments`).",
);

/// Its component.
const ENTITY: ColumnDef = opt(
    "entity_ref",
    EntityRef(Some("component")),
    "Component deployed.",
);

/// Its environment.
const ENVIRONMENT: ColumnDef = req("environment", Utf8, "Production environment name.");

/// Features of every completed production deployment after its series'
/// baseline.
pub const DEPLOYMENT_FEATURES: TableDef = TableDef {
    name: "deployment_features",
    description: "Mart: one row per completed production deployment (after its series' baseline) with what was known when it started — size, spread, review, history, timing and kind of what it shipped: the deployment risk model's inputs. Nothing in a row depends on anything after `started_at`.",
    columns: &[
        DEPLOYMENT_ID,
        ENTITY,
        ENVIRONMENT,
        req(
            "started_at",
            Timestamp,
            "When the deployment started: every feature is as of this instant.",
        ),
        req("started_month", Utf8, "Partition: `YYYY-MM` of started_at."),
        req(
            "is_rollback",
            Boolean,
            "The deployment went back to an earlier revision.",
        ),
        req(
            "changes",
            Int64,
            "Changes (pull requests and direct pushes) it shipped first, as `dora_changes` attributes them.",
        ),
        req("pull_requests", Int64, "Of those, pull requests."),
        req(
            "direct_pushes",
            Int64,
            "Of those, commits pushed to the default branch without a pull request.",
        ),
        req(
            "commits",
            Int64,
            "Commits of those changes (a pull request's `commit_count`, 1 per direct push).",
        ),
        req(
            "lines_added",
            Int64,
            "Lines added by those changes (pull request totals; a direct push's own when known, else 0).",
        ),
        req("lines_deleted", Int64, "Lines deleted by those changes."),
        opt(
            "files_changed",
            Int64,
            "Files changed, summed over its pull requests; null when none reports it.",
        ),
        req(
            "largest_change_lines",
            Int64,
            "Lines added and deleted by its largest change.",
        ),
        opt(
            "size_vs_recent",
            Float64,
            "Its lines added and deleted (+ 1) over the geometric mean of the same for its series' deployments in the 90 days before: how big it is for this service; null without earlier deployments.",
        ),
        opt(
            "directories",
            Int64,
            "Top-level directories its commits touched (files at the root count as one); null when the source lists no files.",
        ),
        opt(
            "file_entropy",
            Float64,
            "Shannon entropy (bits) of its changed lines over files: 0 when one file holds them all; null without file lists.",
        ),
        req(
            "reviewers",
            Int64,
            "Distinct reviewers other than the authors of its pull requests, reviews submitted before it started.",
        ),
        req(
            "reviews",
            Int64,
            "Reviews of its pull requests by others (approvals, change requests and comments) before it started.",
        ),
        req(
            "unreviewed_changes",
            Int64,
            "Changes never reviewed by someone else: pull requests merged without such a review (self-merged) and direct pushes.",
        ),
        opt(
            "review_hours_mean",
            Float64,
            "Mean hours from opened to merged over its pull requests.",
        ),
        opt(
            "days_since_previous",
            Float64,
            "Days from the previous completed deployment of its series to its start.",
        ),
        req(
            "recent_deployments",
            Int64,
            "Completed deployments of its series in the 90 days before it started.",
        ),
        req(
            "recent_failures",
            Int64,
            "Of those, the ones whose failure was known before it started (linked incident started, rollback finished, revert merged).",
        ),
        opt(
            "author_min_prior_changes",
            Int64,
            "Experience: the fewest pull requests any of its authors had merged in the repository before the one shipped here.",
        ),
        req(
            "author_recent_failures",
            Int64,
            "Failed deployments of the 90 days before, known before it started, that shipped a change of one of its authors in the repository.",
        ),
        req("hour_utc", Int64, "Hour of the day it started (UTC)."),
        req(
            "weekday",
            Int64,
            "Day of the week it started: 1 = Monday … 7 = Sunday (UTC).",
        ),
        req(
            "during_incident",
            Boolean,
            "An incident on the component was open when it started.",
        ),
        req(
            "hotfix",
            Boolean,
            "It ships a pull request labelled `hotfix`.",
        ),
        req(
            "after_long_pause",
            Boolean,
            "Its series had not deployed for more than 14 days.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["deployment_id"],
    partition: Some(MonthPartition {
        column: "started_month",
        source: "started_at",
    }),
};

/// The risk model's score of every deployment with features.
pub const DEPLOYMENT_RISK: TableDef = TableDef {
    name: "deployment_risk",
    description: "Scores: the deployment risk model's probability that each production deployment fails, from `deployment_features` (as known when it started), with the three factors that raised it most. Written by `fathom ml risk` with the model recorded by `fathom ml train-risk`.",
    columns: &[
        DEPLOYMENT_ID,
        ENTITY,
        ENVIRONMENT,
        req("started_at", Timestamp, "When the deployment started."),
        req("started_month", Utf8, "Partition: `YYYY-MM` of started_at."),
        req(
            "model_version",
            Utf8,
            "The model that scored it (`fathom ml train-risk` prints it; the state database lists them).",
        ),
        req(
            "probability",
            Float64,
            "Probability that the deployment fails (incident, rollback or revert), calibrated to the failure rate the model was trained on.",
        ),
        req(
            "flagged",
            Boolean,
            "probability is at or above the model's operating threshold.",
        ),
        opt(
            "reasons",
            StringList,
            "The three factors that raised the score most, in words (\"2,500 lines changed (p95 of this service)\"); empty when nothing raised it.",
        ),
        opt(
            "factors",
            Utf8,
            "Those factors as JSON `[{\"feature\": …, \"value\": …, \"contribution\": …}]`: contribution = coefficient × standardized value, on the log-odds.",
        ),
        opt(
            "failed",
            Boolean,
            "What happened, once known (`dora_deployments.failed`); null while the incident gap has not passed.",
        ),
        req("scored_at", Timestamp, "When it was scored."),
        UPDATED_AT,
    ],
    primary_key: &["deployment_id"],
    partition: Some(MonthPartition {
        column: "started_month",
        source: "started_at",
    }),
};

/// Each production deployment against what its service's errors did after
/// it.
pub const DEPLOYMENT_SIGNALS: TableDef = TableDef {
    name: "deployment_signals",
    description: "Mart: one row per completed production deployment and signal — new error-tracker issues first seen after it, the project's error events, the service's error rate and p95 latency — with the value before and after it, a robust score and a verdict; `suspect` marks the deployments a signal timed to them degraded (docs/ml.md, Suspect deployments).",
    columns: &[
        DEPLOYMENT_ID,
        ENTITY,
        ENVIRONMENT,
        req("finished_at", Timestamp, "When the deployment finished."),
        req(
            "finished_month",
            Utf8,
            "Partition: `YYYY-MM` of finished_at.",
        ),
        req(
            "signal",
            Utf8,
            "new_issue (issues first seen in the 24 hours after it, before the next deployment), error_rate_hourly / latency_p95_hourly (failed / all requests and p95 latency an hour, the 6 hours after it), error_events (the error tracker's events a day), error_rate (failed / all requests a day) or latency_p95 (seconds).",
        ),
        opt(
            "before",
            Float64,
            "The usual value: the median of the 14 days before the deployment's day (hourly signals: of the 24 hours before its hour; new_issue: the project's usual daily events).",
        ),
        opt(
            "after",
            Float64,
            "The worse of the deployment's day and the next (hourly signals: of the 6 hours after its hour; new_issue: the project's events on the day a new issue was first seen or the next).",
        ),
        opt(
            "week_before",
            Float64,
            "The value on the same weekday a week before (hourly signals: the largest of the same 6 hours a week before).",
        ),
        opt(
            "score",
            Float64,
            "(after − before) over the median absolute deviation of the days (hours) before, scaled to a standard deviation (at least 5 % of the median): a robust z-score.",
        ),
        req(
            "verdict",
            Utf8,
            "degraded, normal, or unknown (fewer than 7 days, or 12 hours, to compare).",
        ),
        opt(
            "changed_at",
            Timestamp,
            "When the change started: the first new issue's first event, or the first degraded hour.",
        ),
        opt(
            "issue_ids",
            StringList,
            "The new issues blamed on the deployment.",
        ),
        req(
            "suspect",
            Boolean,
            "A signal timed to the deployment (a new issue, an hourly signal) degraded: the deployment probably caused what followed.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["deployment_id", "signal"],
    partition: Some(MonthPartition {
        column: "finished_month",
        source: "finished_at",
    }),
};
