-- dora_changes: one row per change — a merged pull request, or a commit
-- pushed straight to the default branch — with the first completed
-- production deployment that shipped it (from `dora_deployments` and the
-- deployments' change sets) and that deployment's environment, its lead
-- time and its pull-request stages.
--
-- Lead time = deployed_at − first commit authored (a pull request's first
-- commit; a push's own commit); a first commit dated after the deployment
-- (rebased or cherry-picked history, clock skew) gives no lead time but a
-- `lead_time_anomaly`, counted by dora_metrics. Stages: coding (first commit → opened),
-- pickup (opened → first review), review (first review → merged), deploy
-- (merged → deployed); a negative stage is null. Merged pull requests not
-- deployed yet are present with null deploy fields.
WITH counted AS (
    SELECT deployment_id, entity_ref, environment, finished_at
    FROM dora_deployments
    WHERE completed AND NOT coalesce(is_baseline, false)
),
{{shipped_first}},
-- What a pull request's own row leaves out (files imported from another
-- tool often do), derived: its first commit from its commits' author
-- dates, its first review from reviews by someone other than its author.
-- A value the row carries wins.
pr_first_commit AS (
    SELECT pc.repository_id, pc.pull_request_number, min(c.authored_at) AS first_commit_at
    FROM pull_request_commits pc
    JOIN commits c ON c.repository_id = pc.repository_id AND c.sha = pc.sha
    GROUP BY pc.repository_id, pc.pull_request_number
),
pr_first_review AS (
    SELECT r.repository_id, r.pull_request_number, min(r.submitted_at) AS first_review_at
    FROM pull_request_reviews r
    JOIN pull_requests p ON p.repository_id = r.repository_id AND p.number = r.pull_request_number
    WHERE r.reviewer_login IS NULL OR p.author_login IS NULL OR r.reviewer_login <> p.author_login
    GROUP BY r.repository_id, r.pull_request_number
),
pulls AS (
    SELECT p.repository_id, p.number, p.entity_ref, p.created_at, p.merged_at,
           coalesce(p.first_commit_at, fc.first_commit_at) AS first_commit_at,
           coalesce(p.first_review_at, fr.first_review_at) AS first_review_at
    FROM pull_requests p
    LEFT JOIN pr_first_commit fc
        ON fc.repository_id = p.repository_id AND fc.pull_request_number = p.number
    LEFT JOIN pr_first_review fr
        ON fr.repository_id = p.repository_id AND fr.pull_request_number = p.number
),
-- Shipped changes with what the pull request or commit tables say of them
-- (either may be missing: the change set alone makes a change); a change
-- belongs to the component whose deployment shipped it.
shipped_prs AS (
    SELECT f.change_id, coalesce(f.entity_ref, p.entity_ref) AS entity_ref,
           'pull_request' AS kind, f.repository_id, f.pull_request_number,
           CAST(NULL AS VARCHAR) AS sha, p.first_commit_at, p.created_at AS opened_at,
           p.first_review_at, p.merged_at, f.deployment_id, f.environment,
           f.finished_at AS deployed_at
    FROM first_shipped f
    LEFT JOIN pulls p
        ON p.repository_id = f.repository_id AND p.number = f.pull_request_number
    WHERE f.pull_request_number IS NOT NULL
),
waiting_prs AS (
    SELECT 'pr:' || p.repository_id || '#' || CAST(p.number AS VARCHAR) AS change_id,
           p.entity_ref, 'pull_request' AS kind, p.repository_id,
           p.number AS pull_request_number, CAST(NULL AS VARCHAR) AS sha, p.first_commit_at,
           p.created_at AS opened_at, p.first_review_at, p.merged_at,
           CAST(NULL AS VARCHAR) AS deployment_id, CAST(NULL AS VARCHAR) AS environment,
           CASE WHEN false THEN p.merged_at END AS deployed_at
    FROM pulls p
    LEFT JOIN first_shipped f
        ON f.change_id = 'pr:' || p.repository_id || '#' || CAST(p.number AS VARCHAR)
    WHERE p.merged_at IS NOT NULL AND f.change_id IS NULL
),
pushes AS (
    SELECT f.change_id, coalesce(f.entity_ref, c.entity_ref) AS entity_ref, 'push' AS kind,
           f.repository_id, CAST(NULL AS BIGINT) AS pull_request_number, f.sha,
           c.authored_at AS first_commit_at,
           CASE WHEN false THEN c.authored_at END AS opened_at,
           CASE WHEN false THEN c.authored_at END AS first_review_at,
           c.committed_at AS merged_at, f.deployment_id, f.environment,
           f.finished_at AS deployed_at
    FROM first_shipped f
    LEFT JOIN commits c ON c.repository_id = f.repository_id AND c.sha = f.sha
    WHERE f.pull_request_number IS NULL
),
changes AS (
    SELECT * FROM shipped_prs
    UNION ALL
    SELECT * FROM waiting_prs
    UNION ALL
    SELECT * FROM pushes
),
timed AS (
    SELECT *, seconds_between(first_commit_at, deployed_at) AS lead_time
    FROM changes
)
SELECT change_id, entity_ref, kind, repository_id, pull_request_number, sha,
       first_commit_at, opened_at, first_review_at, merged_at, deployment_id, environment, deployed_at,
       nonnegative(lead_time) AS lead_time_seconds,
       coalesce(lead_time < 0, false) AS lead_time_anomaly,
       nonnegative(seconds_between(first_commit_at, opened_at)) AS coding_seconds,
       nonnegative(seconds_between(opened_at, first_review_at)) AS pickup_seconds,
       nonnegative(seconds_between(first_review_at, merged_at)) AS review_seconds,
       nonnegative(seconds_between(merged_at, deployed_at)) AS deploy_seconds
FROM timed
