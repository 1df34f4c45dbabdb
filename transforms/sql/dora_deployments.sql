-- dora_deployments: one row per production deployment job.
--
-- Parameters (replaced before planning):
--   {{production_pattern}}  regular expression of production environments
--   {{incident_gap_days}}   how long after a deployment an incident with no
--                           explicit link is still blamed on it
--   {{reverts_are_failures}} whether a merged revert fails the deployment
--                           that shipped the reverted change
--
-- Definitions (docs/metrics.md): a production deployment is a deploy job to
-- an environment matching the pattern; it *completed* when its status is
-- success. A service's series is its completed production deployments per
-- environment, ordered by finish time; the first is the baseline. A
-- deployment failed when an incident is linked to it, the next deployment
-- of its series is a rollback, or (by default) a change it shipped first
-- was reverted. An incident links to the deployment it names, else to the
-- latest deployment of its service that ran the version it names, else to
-- the latest completed production deployment of its service that finished
-- before it started, within the gap.
WITH prod AS (
    SELECT deployment_id, source, entity_ref, environment, status, revision,
           repository_id, started_at, finished_at,
           coalesce(is_rollback, false) AS is_rollback
    FROM deployments
    WHERE finished_at IS NOT NULL
      AND regexp_like(environment, '{{production_pattern}}', 'i')
),
completed AS (
    SELECT p.*,
           row_number() OVER (PARTITION BY entity_ref, environment
                              ORDER BY finished_at, deployment_id) AS position,
           lead(is_rollback) OVER (PARTITION BY entity_ref, environment
                                   ORDER BY finished_at, deployment_id) AS next_is_rollback,
           lead(finished_at) OVER (PARTITION BY entity_ref, environment
                                   ORDER BY finished_at, deployment_id) AS next_finished_at
    FROM prod p
    WHERE status = 'success'
),
explicit_links AS (
    SELECT i.incident_id, c.deployment_id
    FROM incidents i
    JOIN completed c ON c.deployment_id = i.caused_by_deployment_id
),
-- An incident that names the version it was seen on links to the latest
-- completed deployment of its service, before it started, that ran that
-- version: the version is the deployed revision, or a release whose
-- deploys (`release_deploys`, Sentry) name the revision.
incident_revisions AS (
    SELECT incident_id, entity_ref, created_at, version AS revision
    FROM incidents
    WHERE caused_by_deployment_id IS NULL AND version IS NOT NULL
    UNION
    SELECT i.incident_id, i.entity_ref, i.created_at, r.revision
    FROM incidents i
    JOIN release_deploys r ON r.release_version = i.version
    WHERE i.caused_by_deployment_id IS NULL AND r.revision IS NOT NULL
      AND (r.entity_ref = i.entity_ref OR r.entity_ref IS NULL)
),
version_links AS (
    SELECT incident_id, deployment_id
    FROM (
        SELECT v.incident_id, c.deployment_id,
               row_number() OVER (PARTITION BY v.incident_id
                                  ORDER BY c.finished_at DESC, c.deployment_id DESC) AS rank
        FROM incident_revisions v
        JOIN completed c ON c.entity_ref = v.entity_ref AND c.revision = v.revision
        WHERE c.finished_at < v.created_at
    ) ranked
    WHERE rank = 1
),
nearest_links AS (
    SELECT incident_id, deployment_id
    FROM (
        SELECT i.incident_id, c.deployment_id,
               row_number() OVER (PARTITION BY i.incident_id
                                  ORDER BY c.finished_at DESC, c.deployment_id DESC) AS rank
        FROM incidents i
        JOIN completed c ON c.entity_ref = i.entity_ref
        LEFT JOIN version_links v ON v.incident_id = i.incident_id
        WHERE i.caused_by_deployment_id IS NULL AND v.incident_id IS NULL
          AND c.finished_at < i.created_at
          AND c.finished_at >= i.created_at - INTERVAL '{{incident_gap_days}} days'
    ) ranked
    WHERE rank = 1
),
links AS (
    SELECT incident_id, deployment_id FROM explicit_links
    UNION ALL
    SELECT incident_id, deployment_id FROM version_links
    UNION ALL
    SELECT incident_id, deployment_id FROM nearest_links
),
linked AS (
    SELECT l.deployment_id,
           array_agg(l.incident_id ORDER BY l.incident_id) AS incident_ids,
           max(i.resolved_at) AS last_resolved_at
    FROM links l
    JOIN incidents i ON i.incident_id = l.incident_id
    GROUP BY l.deployment_id
),
-- The deployments that can ship changes, and which changes each shipped
-- first (transforms/sql/shared/shipped_first.sql).
counted AS (
    SELECT deployment_id, entity_ref, environment, finished_at
    FROM completed
    WHERE position > 1
),
{{shipped_first}},
shipped AS (
    SELECT deployment_id, count(*) AS change_count
    FROM first_shipped
    GROUP BY deployment_id
),
-- Reverts: a merged pull request undoing an earlier one of its repository,
-- told by GitHub's revert branch (`revert-<number>-…`), a title ending in
-- `(#<number>)"`, or the title `Revert "<title of the reverted>"`; a pushed
-- commit `Revert "<message of the reverted commit>"` (or naming a pull
-- request the same way). Each is an equi-join, so history of any size is
-- matched without comparing every pair.
revert_candidates AS (
    SELECT repository_id, number, title, merged_at,
           CAST(coalesce(
               array_element(regexp_match(head_branch, '^revert-([0-9]+)-'), 1),
               array_element(regexp_match(title, '\(#([0-9]+)\)"$'), 1)
           ) AS BIGINT) AS named
    FROM pull_requests
    WHERE merged_at IS NOT NULL
      AND (head_branch LIKE 'revert-%' OR title LIKE 'Revert "%')
),
pr_reverts AS (
    SELECT repository_id, reverting, reverted
    FROM (
        SELECT r.repository_id, r.number AS reverting, t.number AS reverted,
               row_number() OVER (PARTITION BY r.repository_id, r.number
                                  ORDER BY t.merged_at DESC, t.number DESC) AS rank
        FROM revert_candidates r
        JOIN pull_requests t
            ON t.repository_id = r.repository_id AND t.number = r.named
        WHERE t.merged_at IS NOT NULL AND t.number <> r.number
        UNION ALL
        SELECT r.repository_id, r.number, t.number,
               row_number() OVER (PARTITION BY r.repository_id, r.number
                                  ORDER BY t.merged_at DESC, t.number DESC)
        FROM revert_candidates r
        JOIN pull_requests t
            ON t.repository_id = r.repository_id AND r.title = 'Revert "' || t.title || '"'
        WHERE r.named IS NULL AND t.merged_at IS NOT NULL AND t.merged_at <= r.merged_at
          AND t.number <> r.number
    ) ranked
    WHERE rank = 1
),
revert_commits AS (
    SELECT repository_id, sha, message, committed_at,
           CAST(array_element(regexp_match(message, '\(#([0-9]+)\)"$'), 1) AS BIGINT) AS named
    FROM commits
    WHERE message LIKE 'Revert "%'
),
push_reverts AS (
    SELECT 'push:' || r.repository_id || '@' || r.sha AS reverting,
           'pr:' || r.repository_id || '#' || CAST(r.named AS VARCHAR) AS reverted
    FROM revert_commits r
    WHERE r.named IS NOT NULL
    UNION ALL
    SELECT reverting, reverted
    FROM (
        SELECT 'push:' || r.repository_id || '@' || r.sha AS reverting,
               'push:' || t.repository_id || '@' || t.sha AS reverted,
               row_number() OVER (PARTITION BY r.repository_id, r.sha
                                  ORDER BY t.committed_at DESC, t.sha DESC) AS rank
        FROM revert_commits r
        JOIN commits t
            ON t.repository_id = r.repository_id AND r.message = 'Revert "' || t.message || '"'
        WHERE r.named IS NULL AND t.committed_at <= r.committed_at AND t.sha <> r.sha
    ) ranked
    WHERE rank = 1
),
reverts AS (
    SELECT 'pr:' || repository_id || '#' || CAST(reverting AS VARCHAR) AS reverting,
           'pr:' || repository_id || '#' || CAST(reverted AS VARCHAR) AS reverted
    FROM pr_reverts
    UNION ALL
    SELECT reverting, reverted FROM push_reverts
),
-- A deployment whose first-shipped change was reverted, the revert, and
-- when the revert shipped (its recovery); a change reverted within the
-- deployment that shipped it never reached production alone.
reverted AS (
    SELECT f.deployment_id, min(rv.reverting) AS reverted_by,
           min(g.finished_at) AS revert_shipped_at
    FROM reverts rv
    JOIN first_shipped f ON f.change_id = rv.reverted
    LEFT JOIN first_shipped g ON g.change_id = rv.reverting
    WHERE g.deployment_id IS NULL OR g.deployment_id <> f.deployment_id
    GROUP BY f.deployment_id
),
hotfix AS (
    SELECT DISTINCT dc.deployment_id
    FROM deployment_changes dc
    JOIN commit_pr cp ON cp.repository_id = dc.repository_id AND cp.sha = dc.sha
    JOIN pull_requests pr ON pr.repository_id = cp.repository_id AND pr.number = cp.pull_request_number
    WHERE array_has(pr.labels, 'hotfix')
),
during_incident AS (
    SELECT DISTINCT c.deployment_id
    FROM completed c
    JOIN incidents i ON i.entity_ref = c.entity_ref
    WHERE i.created_at <= c.started_at
      AND (i.resolved_at IS NULL OR c.started_at < i.resolved_at)
)
SELECT c.deployment_id,
       c.entity_ref,
       c.environment,
       c.source,
       c.revision,
       c.started_at,
       c.finished_at,
       true AS completed,
       c.position = 1 AS is_baseline,
       c.is_rollback,
       coalesce(s.change_count, CAST(0 AS BIGINT)) AS change_count,
       (l.deployment_id IS NOT NULL OR coalesce(c.next_is_rollback, false)
        OR ({{reverts_are_failures}} AND r.deployment_id IS NOT NULL)) AS failed,
       coalesce(c.next_is_rollback, false) AS rolled_back,
       ({{reverts_are_failures}} AND r.deployment_id IS NOT NULL AND l.deployment_id IS NULL
        AND NOT coalesce(c.next_is_rollback, false)) AS failed_by_revert,
       r.reverted_by,
       l.incident_ids,
       CASE
           WHEN l.last_resolved_at IS NOT NULL
               THEN seconds_between(c.finished_at, l.last_resolved_at)
           WHEN coalesce(c.next_is_rollback, false)
               THEN seconds_between(c.finished_at, c.next_finished_at)
           WHEN {{reverts_are_failures}} AND r.deployment_id IS NOT NULL
               THEN seconds_between(c.finished_at, r.revert_shipped_at)
       END AS recovery_seconds,
       (h.deployment_id IS NOT NULL OR o.deployment_id IS NOT NULL) AS rework
FROM completed c
LEFT JOIN linked l ON l.deployment_id = c.deployment_id
LEFT JOIN shipped s ON s.deployment_id = c.deployment_id
LEFT JOIN reverted r ON r.deployment_id = c.deployment_id
LEFT JOIN hotfix h ON h.deployment_id = c.deployment_id
LEFT JOIN during_incident o ON o.deployment_id = c.deployment_id
UNION ALL
SELECT deployment_id, entity_ref, environment, source, revision, started_at, finished_at,
       false AS completed,
       CAST(NULL AS BOOLEAN) AS is_baseline,
       is_rollback,
       CAST(NULL AS BIGINT) AS change_count,
       CAST(NULL AS BOOLEAN) AS failed,
       CAST(NULL AS BOOLEAN) AS rolled_back,
       CAST(NULL AS BOOLEAN) AS failed_by_revert,
       CAST(NULL AS VARCHAR) AS reverted_by,
       CAST(NULL AS VARCHAR[]) AS incident_ids,
       CAST(NULL AS DOUBLE) AS recovery_seconds,
       CAST(NULL AS BOOLEAN) AS rework
FROM prod
WHERE status <> 'success'
