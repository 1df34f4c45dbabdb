-- dora_deployments: one row per production deployment job.
--
-- Parameters (replaced before planning):
--   {{production_pattern}}  regular expression of production environments
--   {{incident_gap_days}}   how long after a deployment an incident with no
--                           explicit link is still blamed on it
--
-- Definitions (docs/metrics.md): a production deployment is a deploy job to
-- an environment matching the pattern; it *completed* when its status is
-- success. A service's series is its completed production deployments per
-- environment, ordered by finish time; the first is the baseline. A
-- deployment failed when an incident is linked to it or the next deployment
-- of its series is a rollback. An incident links to the deployment it names,
-- else to the latest completed production deployment of its service that
-- finished before it started, within the gap.
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
nearest_links AS (
    SELECT incident_id, deployment_id
    FROM (
        SELECT i.incident_id, c.deployment_id,
               row_number() OVER (PARTITION BY i.incident_id
                                  ORDER BY c.finished_at DESC, c.deployment_id DESC) AS rank
        FROM incidents i
        JOIN completed c ON c.entity_ref = i.entity_ref
        WHERE i.caused_by_deployment_id IS NULL
          AND c.finished_at < i.created_at
          AND c.finished_at >= i.created_at - INTERVAL '{{incident_gap_days}} days'
    ) ranked
    WHERE rank = 1
),
links AS (
    SELECT incident_id, deployment_id FROM explicit_links
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
-- The pull request a default-branch commit belongs to: one of its commits,
-- its merge commit, or what the commit list said.
commit_pr AS (
    SELECT repository_id, sha, min(pull_request_number) AS pull_request_number
    FROM (
        SELECT repository_id, sha, pull_request_number FROM pull_request_commits
        UNION ALL
        SELECT repository_id, merge_commit_sha, number
        FROM pull_requests WHERE merge_commit_sha IS NOT NULL
        UNION ALL
        SELECT repository_id, sha, pull_request_number
        FROM commits WHERE pull_request_number IS NOT NULL
    ) candidates
    GROUP BY repository_id, sha
),
-- Changes first shipped by each deployment (see dora_changes.sql for the
-- change identity): a change belongs to the earliest deployment that
-- carried any of its commits.
change_commits AS (
    SELECT dc.deployment_id, c.finished_at,
           CASE WHEN pr.pull_request_number IS NOT NULL
                THEN 'pr:' || dc.repository_id || '#' || CAST(pr.pull_request_number AS VARCHAR)
                ELSE 'push:' || dc.repository_id || '@' || dc.sha END AS change_id
    FROM deployment_changes dc
    JOIN completed c ON c.deployment_id = dc.deployment_id
    LEFT JOIN commit_pr pr ON pr.repository_id = dc.repository_id AND pr.sha = dc.sha
),
first_shipped AS (
    SELECT change_id, deployment_id
    FROM (
        SELECT change_id, deployment_id,
               row_number() OVER (PARTITION BY change_id
                                  ORDER BY finished_at, deployment_id) AS rank
        FROM change_commits
    ) ranked
    WHERE rank = 1
),
shipped AS (
    SELECT deployment_id, count(*) AS change_count
    FROM first_shipped
    GROUP BY deployment_id
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
       CASE WHEN c.position = 1 THEN CAST(0 AS BIGINT)
            ELSE coalesce(s.change_count, CAST(0 AS BIGINT)) END AS change_count,
       (l.deployment_id IS NOT NULL OR coalesce(c.next_is_rollback, false)) AS failed,
       coalesce(c.next_is_rollback, false) AS rolled_back,
       l.incident_ids,
       CASE
           WHEN l.last_resolved_at IS NOT NULL
               THEN seconds_between(c.finished_at, l.last_resolved_at)
           WHEN coalesce(c.next_is_rollback, false)
               THEN seconds_between(c.finished_at, c.next_finished_at)
       END AS recovery_seconds,
       (h.deployment_id IS NOT NULL OR o.deployment_id IS NOT NULL) AS rework
FROM completed c
LEFT JOIN linked l ON l.deployment_id = c.deployment_id
LEFT JOIN shipped s ON s.deployment_id = c.deployment_id
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
       CAST(NULL AS VARCHAR[]) AS incident_ids,
       CAST(NULL AS DOUBLE) AS recovery_seconds,
       CAST(NULL AS BOOLEAN) AS rework
FROM prod
WHERE status <> 'success'
