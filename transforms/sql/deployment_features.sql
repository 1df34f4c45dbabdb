-- deployment_features: what was known about each production deployment
-- when it started — the inputs of the deployment risk model (docs/ml.md).
--
-- The history features look back 90 days; a deployment more than 14 days
-- after the previous one of its series is "after a long pause".
--
-- CTEs read several times are computed once (AS MATERIALIZED: the engine
-- would otherwise recompute each where it is read and hold their joins at
-- once). Every feature reads only what existed before the deployment
-- started:
-- the changes it shipped first (merged before it), their reviews submitted
-- before it, earlier deployments of its series, and failures of those that
-- were known by then (a linked incident had started, the rollback had
-- finished, the revert had merged). Whether the deployment itself failed
-- is not here: it is the label (`dora_deployments.failed`), joined when
-- the model trains.
WITH series AS MATERIALIZED (
    SELECT deployment_id, entity_ref, environment, started_at, finished_at,
           coalesce(is_baseline, false) AS is_baseline,
           coalesce(is_rollback, false) AS is_rollback,
           coalesce(failed, false) AS failed,
           coalesce(rolled_back, false) AS rolled_back,
           reverted_by, incident_ids,
           lag(finished_at) OVER (PARTITION BY entity_ref, environment
                                  ORDER BY finished_at, deployment_id) AS previous_finished_at,
           lead(finished_at) OVER (PARTITION BY entity_ref, environment
                                   ORDER BY finished_at, deployment_id) AS next_finished_at
    FROM dora_deployments
    WHERE completed
),
target AS MATERIALIZED (
    SELECT * FROM series WHERE NOT is_baseline AND started_at IS NOT NULL
),
-- When each failed deployment's failure became known: its first linked
-- incident started, the rollback after it finished, or the change that
-- reverted one of its changes merged (or was pushed).
incident_known AS (
    SELECT f.deployment_id, min(i.created_at) AS known_at
    FROM (SELECT deployment_id, unnest(incident_ids) AS incident_id
          FROM series WHERE failed) f
    JOIN incidents i ON i.incident_id = f.incident_id
    GROUP BY f.deployment_id
),
revert_known AS (
    SELECT s.deployment_id, min(coalesce(c.merged_at, c.first_commit_at)) AS known_at
    FROM series s
    JOIN dora_changes c ON c.change_id = s.reverted_by
    WHERE s.failed
    GROUP BY s.deployment_id
),
failures AS MATERIALIZED (
    SELECT s.deployment_id, s.entity_ref, s.environment, s.finished_at,
           least(k.known_at,
                 CASE WHEN s.rolled_back THEN s.next_finished_at END,
                 r.known_at) AS known_at
    FROM series s
    LEFT JOIN incident_known k ON k.deployment_id = s.deployment_id
    LEFT JOIN revert_known r ON r.deployment_id = s.deployment_id
    WHERE s.failed
),
-- Each deployment of a series with when its failure became known: what a
-- later deployment may count (joined before the range join below, so the
-- pairs stream into the aggregate instead of being held for another join).
prior AS (
    SELECT s.deployment_id, s.entity_ref, s.environment, s.finished_at, f.known_at
    FROM series s
    LEFT JOIN failures f ON f.deployment_id = s.deployment_id
),
history AS (
    SELECT t.deployment_id,
           max(p.finished_at) AS last_finished_at,
           count(p.deployment_id) AS recent_deployments,
           count(p.known_at) FILTER (WHERE p.known_at < t.started_at) AS recent_failures
    FROM target t
    LEFT JOIN prior p
      ON p.entity_ref = t.entity_ref AND p.environment = t.environment
     AND p.finished_at < t.started_at
     AND p.finished_at >= t.started_at - INTERVAL '90 days'
    GROUP BY t.deployment_id
),
-- Each pull request with how many its author had merged in the repository
-- before it (experience, known at its merge, so before any deployment
-- that shipped it).
authored AS MATERIALIZED (
    SELECT repository_id, number, author_login, additions, deletions, changed_files,
           commit_count, labels, created_at, merged_at,
           row_number() OVER (PARTITION BY repository_id, author_login
                              ORDER BY merged_at, number) - 1 AS prior_changes
    FROM pull_requests
    WHERE merged_at IS NOT NULL
),
shipped AS MATERIALIZED (
    SELECT t.deployment_id, t.started_at, c.kind, c.repository_id, c.pull_request_number,
           -- A review submitted after the deployment started was not known.
           CASE WHEN c.first_review_at < t.started_at THEN c.first_review_at END AS first_review_at,
           c.opened_at, c.merged_at,
           a.author_login, a.prior_changes, a.changed_files, a.labels,
           coalesce(a.commit_count, CAST(1 AS BIGINT)) AS commits,
           coalesce(a.additions, m.additions, CAST(0 AS BIGINT)) AS added,
           coalesce(a.deletions, m.deletions, CAST(0 AS BIGINT)) AS deleted
    FROM target t
    JOIN dora_changes c ON c.deployment_id = t.deployment_id
    LEFT JOIN authored a ON a.repository_id = c.repository_id AND a.number = c.pull_request_number
    LEFT JOIN commits m ON c.kind = 'push' AND m.repository_id = c.repository_id AND m.sha = c.sha
),
size AS MATERIALIZED (
    SELECT deployment_id,
           count(*) AS changes,
           count(*) FILTER (WHERE kind = 'pull_request') AS pull_requests,
           count(*) FILTER (WHERE kind = 'push') AS direct_pushes,
           sum(commits) AS commits,
           sum(added) AS lines_added,
           sum(deleted) AS lines_deleted,
           sum(changed_files) AS files_changed,
           max(added + deleted) AS largest_change_lines,
           count(*) FILTER (WHERE kind = 'push' OR first_review_at IS NULL) AS unreviewed_changes,
           avg(seconds_between(opened_at, merged_at)) / 3600.0 AS review_hours_mean,
           min(prior_changes) AS author_min_prior_changes,
           bool_or(coalesce(array_has(labels, 'hotfix'), false)) AS hotfix
    FROM shipped
    GROUP BY deployment_id
),
-- The size of the deployments of the series in the 90 days before: what
-- is usual for this service (a big change for one is routine for another),
-- as the geometric mean of lines + 1 (sizes spread over orders of
-- magnitude; a mean also keeps the aggregate small, where a median holds
-- every value).
sized AS (
    SELECT t.deployment_id, t.entity_ref, t.environment, t.finished_at,
           CAST(coalesce(z.lines_added, 0) + coalesce(z.lines_deleted, 0) AS DOUBLE) AS lines
    FROM target t
    LEFT JOIN size z ON z.deployment_id = t.deployment_id
),
relative AS (
    SELECT t.deployment_id, exp(avg(ln(p.lines + 1.0))) AS usual_lines
    FROM target t
    JOIN sized p
      ON p.entity_ref = t.entity_ref AND p.environment = t.environment
     AND p.finished_at < t.started_at
     AND p.finished_at >= t.started_at - INTERVAL '90 days'
    GROUP BY t.deployment_id
),
reviews AS (
    SELECT s.deployment_id,
           count(*) AS reviews,
           count(DISTINCT r.reviewer_login) AS reviewers
    FROM shipped s
    JOIN pull_request_reviews r
      ON r.repository_id = s.repository_id AND r.pull_request_number = s.pull_request_number
    WHERE r.submitted_at < s.started_at
      AND (s.author_login IS NULL OR r.reviewer_login IS NULL OR r.reviewer_login <> s.author_login)
    GROUP BY s.deployment_id
),
-- Deployments that shipped a change of each author, with when their
-- failure became known: the authors' recent failures.
author_failures AS (
    SELECT DISTINCT a.repository_id, a.author_login, f.deployment_id, f.known_at
    FROM failures f
    JOIN dora_changes c ON c.deployment_id = f.deployment_id
    JOIN authored a ON a.repository_id = c.repository_id AND a.number = c.pull_request_number
    WHERE f.known_at IS NOT NULL
),
authors AS (
    SELECT s.deployment_id, count(DISTINCT af.deployment_id) AS author_recent_failures
    FROM shipped s
    JOIN author_failures af
      ON af.repository_id = s.repository_id AND af.author_login = s.author_login
    WHERE af.known_at < s.started_at
      AND af.known_at >= s.started_at - INTERVAL '90 days'
    GROUP BY s.deployment_id
),
-- Spread over files, from the commits the deployment delivered and the
-- files each changed (where the source lists them).
file_lines AS MATERIALIZED (
    SELECT dc.deployment_id, f.path,
           CASE WHEN strpos(f.path, '/') > 0 THEN split_part(f.path, '/', 1) ELSE '' END AS directory,
           CAST(sum(coalesce(f.additions, 0) + coalesce(f.deletions, 0)) AS DOUBLE) AS lines
    FROM target t
    JOIN deployment_changes dc ON dc.deployment_id = t.deployment_id
    JOIN commit_files f ON f.repository_id = dc.repository_id AND f.sha = dc.sha
    GROUP BY dc.deployment_id, f.path
),
spread AS (
    SELECT l.deployment_id,
           count(DISTINCT l.directory) AS directories,
           CASE WHEN max(t.total) > 0
                THEN -sum(CASE WHEN l.lines > 0 THEN (l.lines / t.total) * log2(l.lines / t.total) ELSE 0 END)
           END AS file_entropy
    FROM file_lines l
    JOIN (SELECT deployment_id, sum(lines) AS total FROM file_lines GROUP BY deployment_id) t
      ON t.deployment_id = l.deployment_id
    GROUP BY l.deployment_id
),
-- The same rule as dora_deployments' rework, computed here because a
-- deployment not made yet (POST /api/v1/risk/score) has no row there.
open_incident AS (
    SELECT DISTINCT t.deployment_id
    FROM target t
    JOIN incidents i ON i.entity_ref = t.entity_ref
    WHERE i.created_at <= t.started_at
      AND (i.resolved_at IS NULL OR t.started_at < i.resolved_at)
)
SELECT t.deployment_id,
       t.entity_ref,
       t.environment,
       t.started_at,
       t.is_rollback,
       coalesce(z.changes, CAST(0 AS BIGINT)) AS changes,
       coalesce(z.pull_requests, CAST(0 AS BIGINT)) AS pull_requests,
       coalesce(z.direct_pushes, CAST(0 AS BIGINT)) AS direct_pushes,
       coalesce(z.commits, CAST(0 AS BIGINT)) AS commits,
       coalesce(z.lines_added, CAST(0 AS BIGINT)) AS lines_added,
       coalesce(z.lines_deleted, CAST(0 AS BIGINT)) AS lines_deleted,
       z.files_changed,
       coalesce(z.largest_change_lines, CAST(0 AS BIGINT)) AS largest_change_lines,
       CAST(coalesce(z.lines_added, 0) + coalesce(z.lines_deleted, 0) + 1 AS DOUBLE)
           / rl.usual_lines AS size_vs_recent,
       sp.directories,
       sp.file_entropy,
       coalesce(rv.reviewers, CAST(0 AS BIGINT)) AS reviewers,
       coalesce(rv.reviews, CAST(0 AS BIGINT)) AS reviews,
       coalesce(z.unreviewed_changes, CAST(0 AS BIGINT)) AS unreviewed_changes,
       z.review_hours_mean,
       -- The previous deployment that had finished when it started (one
       -- still running then is not "previous").
       seconds_between(coalesce(h.last_finished_at,
                                CASE WHEN t.previous_finished_at < t.started_at
                                     THEN t.previous_finished_at END),
                       t.started_at) / 86400.0 AS days_since_previous,
       h.recent_deployments,
       h.recent_failures,
       z.author_min_prior_changes,
       coalesce(au.author_recent_failures, CAST(0 AS BIGINT)) AS author_recent_failures,
       CAST(date_part('hour', t.started_at) AS BIGINT) AS hour_utc,
       CAST((CAST(date_part('dow', t.started_at) AS BIGINT) + 6) % 7 + 1 AS BIGINT) AS weekday,
       o.deployment_id IS NOT NULL AS during_incident,
       coalesce(z.hotfix, false) AS hotfix,
       coalesce(h.last_finished_at IS NULL
                AND t.previous_finished_at < t.started_at - INTERVAL '14 days', false)
       OR coalesce(h.last_finished_at < t.started_at - INTERVAL '14 days', false)
           AS after_long_pause
FROM target t
JOIN history h ON h.deployment_id = t.deployment_id
LEFT JOIN size z ON z.deployment_id = t.deployment_id
LEFT JOIN relative rl ON rl.deployment_id = t.deployment_id
LEFT JOIN reviews rv ON rv.deployment_id = t.deployment_id
LEFT JOIN authors au ON au.deployment_id = t.deployment_id
LEFT JOIN spread sp ON sp.deployment_id = t.deployment_id
LEFT JOIN open_incident o ON o.deployment_id = t.deployment_id
