-- dora_changes: one row per change — a merged pull request, or a commit
-- pushed straight to the default branch — with the first completed
-- production deployment that shipped it (from `dora_deployments` and the
-- deployments' change sets) and that deployment's environment, its lead
-- time and its pull-request stages.
--
-- Lead time = deployed_at − first commit authored (a pull request's first
-- commit; a push's own commit). Stages: coding (first commit → opened),
-- pickup (opened → first review), review (first review → merged), deploy
-- (merged → deployed); a negative stage is null. Merged pull requests not
-- deployed yet are present with null deploy fields.
WITH completed AS (
    SELECT deployment_id, environment, finished_at
    FROM dora_deployments
    WHERE completed AND NOT coalesce(is_baseline, false)
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
change_commits AS (
    SELECT dc.repository_id, dc.sha, c.deployment_id, c.environment, c.finished_at,
           p.pull_request_number,
           CASE WHEN p.pull_request_number IS NOT NULL
                THEN 'pr:' || dc.repository_id || '#' || CAST(p.pull_request_number AS VARCHAR)
                ELSE 'push:' || dc.repository_id || '@' || dc.sha END AS change_id
    FROM deployment_changes dc
    JOIN completed c ON c.deployment_id = dc.deployment_id
    LEFT JOIN commit_pr p ON p.repository_id = dc.repository_id AND p.sha = dc.sha
),
first_deployed AS (
    SELECT change_id, repository_id, sha, pull_request_number, deployment_id, environment, finished_at
    FROM (
        SELECT *, row_number() OVER (PARTITION BY change_id
                                     ORDER BY finished_at, deployment_id, sha) AS rank
        FROM change_commits
    ) ranked
    WHERE rank = 1
),
merged_prs AS (
    SELECT 'pr:' || repository_id || '#' || CAST(number AS VARCHAR) AS change_id,
           repository_id, number, entity_ref, first_commit_at, created_at, first_review_at, merged_at
    FROM pull_requests
    WHERE merged_at IS NOT NULL
),
pr_changes AS (
    SELECT m.change_id, m.entity_ref, 'pull_request' AS kind, m.repository_id,
           m.number AS pull_request_number, CAST(NULL AS VARCHAR) AS sha,
           m.first_commit_at, m.created_at AS opened_at, m.first_review_at, m.merged_at,
           f.deployment_id, f.environment, f.finished_at AS deployed_at
    FROM merged_prs m
    LEFT JOIN first_deployed f ON f.change_id = m.change_id
),
push_changes AS (
    SELECT f.change_id, c.entity_ref, 'push', f.repository_id, CAST(NULL AS BIGINT), f.sha,
           c.authored_at,
           CASE WHEN false THEN c.authored_at END AS opened_at,
           CASE WHEN false THEN c.authored_at END AS first_review_at,
           c.committed_at, f.deployment_id, f.environment, f.finished_at
    FROM first_deployed f
    JOIN commits c ON c.repository_id = f.repository_id AND c.sha = f.sha
    WHERE f.pull_request_number IS NULL
),
changes AS (
    SELECT * FROM pr_changes
    UNION ALL
    SELECT * FROM push_changes
)
SELECT change_id, entity_ref, kind, repository_id, pull_request_number, sha,
       first_commit_at, opened_at, first_review_at, merged_at, deployment_id, environment, deployed_at,
       seconds_between(first_commit_at, deployed_at) AS lead_time_seconds,
       nonnegative(seconds_between(first_commit_at, opened_at)) AS coding_seconds,
       nonnegative(seconds_between(opened_at, first_review_at)) AS pickup_seconds,
       nonnegative(seconds_between(first_review_at, merged_at)) AS review_seconds,
       nonnegative(seconds_between(merged_at, deployed_at)) AS deploy_seconds
FROM changes
