-- shipped_first: which deployment shipped each change first — the one
-- definition both dora_deployments (its change_count) and dora_changes
-- (its deployment) use, inserted into both by the runner. It reads a CTE
-- `counted` of the deployments that can ship changes: completed production
-- deployments that are not their series' baseline (deployment_id,
-- entity_ref, environment, finished_at).
--
-- A change is a merged pull request, or a commit pushed straight to the
-- default branch. A commit belongs to a pull request when it is one of the
-- pull request's commits, its merge commit, or when the commit list or the
-- deployment's change set says so. A change is shipped first, for each
-- component, by the earliest counted deployment of that component that
-- carried any of its commits; commits a baseline carried are history
-- before the measurement and ship nothing.
--
-- Monorepos: a component whose catalog entry names its source paths
-- (`fathom.dev/source-paths`: comma-separated paths from the repository
-- root; else the path of `backstage.io/source-location`) ships only the
-- commits touching one of them (`commit_files`); a commit whose files are
-- not known is kept. A change touching several components counts for each.
commit_pr AS MATERIALIZED (
    SELECT repository_id, sha, min(pull_request_number) AS pull_request_number
    FROM (
        SELECT repository_id, sha, pull_request_number FROM pull_request_commits
        UNION ALL
        SELECT repository_id, merge_commit_sha, number
        FROM pull_requests WHERE merge_commit_sha IS NOT NULL
        UNION ALL
        SELECT repository_id, sha, pull_request_number
        FROM commits WHERE pull_request_number IS NOT NULL
        UNION ALL
        SELECT repository_id, sha, pull_request_number
        FROM deployment_changes WHERE pull_request_number IS NOT NULL
    ) candidates
    GROUP BY repository_id, sha
),
component_sources AS (
    SELECT entity_ref,
           array_element(map_extract(annotations, 'fathom.dev/source-paths'), 1) AS paths,
           array_element(map_extract(annotations, 'backstage.io/source-location'), 1) AS location,
           array_element(map_extract(annotations, 'github.com/project-slug'), 1) AS slug
    FROM catalog_entities
    WHERE kind = 'component'
),
-- (component, repository, path prefix without its slashes); a prefix of
-- the whole repository scopes nothing.
component_paths AS (
    SELECT entity_ref, repository, prefix
    FROM (
        SELECT entity_ref,
               lower(coalesce(slug, array_element(regexp_match(location, 'github\.com/([^/]+/[^/]+)'), 1))) AS repository,
               btrim(btrim(path), '/') AS prefix
        FROM (
            SELECT entity_ref, slug, location,
                   unnest(string_to_array(
                       coalesce(paths, array_element(regexp_match(location, '/(?:tree|blob)/[^/]+/(.+)$'), 1)),
                       ',')) AS path
            FROM component_sources
            WHERE paths IS NOT NULL OR location LIKE '%/tree/%' OR location LIKE '%/blob/%'
        ) listed
    ) normalised
    WHERE prefix <> '' AND repository IS NOT NULL
),
scoped_components AS (SELECT DISTINCT entity_ref FROM component_paths),
-- Commits whose files are known, and the components each one touches.
files AS (
    SELECT repository_id, sha, path,
           lower(regexp_replace(repository_id, '^github:', '')) AS repository
    FROM commit_files
),
commit_known AS (SELECT DISTINCT repository_id, sha FROM files),
commit_touches AS (
    SELECT DISTINCT f.repository_id, f.sha, p.entity_ref
    FROM files f
    JOIN component_paths p ON p.repository = f.repository
    WHERE f.path = p.prefix OR starts_with(f.path, p.prefix || '/')
),
change_commits AS (
    SELECT coalesce(dc.repository_id, '') AS repository_id, dc.sha, c.deployment_id,
           c.entity_ref, c.environment, c.finished_at, p.pull_request_number,
           CASE WHEN p.pull_request_number IS NOT NULL
                THEN 'pr:' || coalesce(dc.repository_id, '') || '#' || CAST(p.pull_request_number AS VARCHAR)
                ELSE 'push:' || coalesce(dc.repository_id, '') || '@' || dc.sha END AS change_id
    FROM deployment_changes dc
    JOIN counted c ON c.deployment_id = dc.deployment_id
    LEFT JOIN commit_pr p ON p.repository_id = dc.repository_id AND p.sha = dc.sha
    LEFT JOIN scoped_components s ON s.entity_ref = c.entity_ref
    LEFT JOIN commit_known k ON k.repository_id = dc.repository_id AND k.sha = dc.sha
    LEFT JOIN commit_touches t
        ON t.repository_id = dc.repository_id AND t.sha = dc.sha AND t.entity_ref = c.entity_ref
    WHERE s.entity_ref IS NULL OR k.sha IS NULL OR t.sha IS NOT NULL
),
first_shipped AS MATERIALIZED (
    SELECT change_id, repository_id, sha, pull_request_number, deployment_id, entity_ref,
           environment, finished_at
    FROM (
        SELECT *, row_number() OVER (PARTITION BY change_id, entity_ref
                                     ORDER BY finished_at, deployment_id, sha) AS rank
        FROM change_commits
    ) ranked
    WHERE rank = 1
)
