-- dora_metrics: the five keys per scope, rolling window and production
-- environment, with their tiers, from dora_deployments, dora_changes and
-- incidents.
--
-- Parameters (replaced before planning):
--   {{as_of}}     end of every window (exclusive), an RFC 3339 instant
--   {{windows}}   VALUES rows (window_id, period, window_days, window_start,
--                 window_end); period is `7d` … `365d`, or `week`/`month`
--   {{weeks}}     VALUES rows (window_id, week_start, week_end): the
--                 calendar weeks (Monday start, UTC) intersecting each
--                 window, clipped to it
--   {{benchmark}} the benchmark table of the tiers (`dora-2023` …)
--   {{recovery}}  the measure the benchmark tiers recovery by
--                 (`failed_deployment_recovery_p50_seconds` or
--                 `time_to_restore_p50_seconds`)
--
-- Environment `all` is every production environment together; each
-- production environment a scope deployed to also has rows of its own. A
-- change counts in the environment that shipped it first, so environments
-- add up to `all`; an environment's incidents are those linked to its
-- deployments, while `all` has every incident of the scope's components.
--
-- Scopes come from dora_scope_members; a scope's numbers come from the
-- union of its components' events, never from averaging. Counts of nothing
-- are 0; rates, percentiles, medians and tiers of nothing are null.
WITH members AS (
    SELECT scope, scope_kind, entity_ref FROM dora_scope_members
),
scopes AS (SELECT DISTINCT scope, scope_kind FROM members),
windows AS (
    SELECT * FROM (VALUES {{windows}}) AS w(window_id, period, window_days, window_start, window_end)
),
weeks AS (
    SELECT * FROM (VALUES {{weeks}}) AS w(window_id, week_start, week_end)
),
-- Every deployment twice: in its own environment and in `all`.
deployments_by_env AS (
    SELECT entity_ref, environment, completed, failed, failed_by_revert, rework,
           recovery_seconds, finished_at
    FROM dora_deployments
    UNION ALL
    SELECT entity_ref, 'all', completed, failed, failed_by_revert, rework,
           recovery_seconds, finished_at
    FROM dora_deployments
),
scope_envs AS (
    SELECT DISTINCT m.scope, m.scope_kind, d.environment
    FROM deployments_by_env d
    JOIN members m ON m.entity_ref = d.entity_ref
    WHERE d.environment <> 'all'
    UNION ALL
    SELECT scope, scope_kind, 'all' FROM scopes
),
deployment_facts AS (
    SELECT m.scope, d.environment, w.window_id, d.completed, d.failed, d.failed_by_revert, d.rework,
           d.recovery_seconds, CAST(d.finished_at AS DATE) AS day
    FROM deployments_by_env d
    JOIN members m ON m.entity_ref = d.entity_ref
    JOIN windows w ON d.finished_at >= w.window_start AND d.finished_at < w.window_end
),
deployment_stats AS (
    SELECT scope, environment, window_id,
           sum(CASE WHEN completed THEN 1 ELSE 0 END) AS deployments,
           sum(CASE WHEN completed THEN 0 ELSE 1 END) AS failed_jobs,
           count(DISTINCT CASE WHEN completed THEN day END) AS deploy_days,
           sum(CASE WHEN completed AND failed THEN 1 ELSE 0 END) AS failed_deployments,
           sum(CASE WHEN completed AND failed_by_revert THEN 1 ELSE 0 END) AS failed_by_revert,
           sum(CASE WHEN completed AND rework THEN 1 ELSE 0 END) AS rework_deployments,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY CASE WHEN completed AND failed THEN recovery_seconds END
           ) AS failed_deployment_recovery_p50_seconds
    FROM deployment_facts
    GROUP BY scope, environment, window_id
),
deploy_dates AS (
    SELECT DISTINCT m.scope, d.environment, CAST(d.finished_at AS DATE) AS day
    FROM deployments_by_env d
    JOIN members m ON m.entity_ref = d.entity_ref
    WHERE d.completed
),
week_days AS (
    SELECT s.scope, s.environment, wk.window_id, wk.week_start, count(dd.day) AS days
    FROM scope_envs s
    CROSS JOIN weeks wk
    LEFT JOIN deploy_dates dd
        ON dd.scope = s.scope AND dd.environment = s.environment
       AND dd.day >= wk.week_start AND dd.day < wk.week_end
    GROUP BY s.scope, s.environment, wk.window_id, wk.week_start
),
median_days AS (
    SELECT scope, environment, window_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(days AS DOUBLE)) AS median_deploy_days_per_week
    FROM week_days
    GROUP BY scope, environment, window_id
),
changes_by_env AS (
    SELECT entity_ref || '' AS entity_ref, environment || '' AS environment,
           deployed_at + INTERVAL '0 seconds' AS deployed_at, lead_time_seconds + 0.0 AS lead_time_seconds,
           lead_time_anomaly
    FROM dora_changes
    WHERE deployed_at IS NOT NULL
    UNION ALL
    SELECT entity_ref || '', 'all', deployed_at + INTERVAL '0 seconds', lead_time_seconds + 0.0,
           lead_time_anomaly
    FROM dora_changes
    WHERE deployed_at IS NOT NULL
),
change_stats AS (
    SELECT m.scope, c.environment, w.window_id, count(*) AS changes,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY c.lead_time_seconds) AS lead_time_p50_seconds,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY c.lead_time_seconds) AS lead_time_p90_seconds,
           sum(CASE WHEN c.lead_time_anomaly THEN 1 ELSE 0 END) AS lead_time_anomalies
    FROM changes_by_env c
    JOIN members m ON m.entity_ref = c.entity_ref
    JOIN windows w ON c.deployed_at >= w.window_start AND c.deployed_at < w.window_end
    GROUP BY m.scope, c.environment, w.window_id
),
incident_links AS (
    SELECT DISTINCT env AS environment, incident_id
    FROM (
        SELECT environment || '' AS env, unnest(incident_ids) AS incident_id
        FROM dora_deployments
        WHERE completed AND incident_ids IS NOT NULL
    ) linked
),
incidents_by_env AS (
    SELECT i.entity_ref || '' AS entity_ref, l.environment, i.created_at + INTERVAL '0 seconds' AS created_at,
           seconds_between(i.created_at, i.resolved_at) AS restore_seconds
    FROM incidents i
    JOIN incident_links l ON l.incident_id = i.incident_id
    WHERE i.resolved_at IS NOT NULL
    UNION ALL
    SELECT entity_ref || '', 'all', created_at + INTERVAL '0 seconds',
           seconds_between(created_at, resolved_at)
    FROM incidents
    WHERE resolved_at IS NOT NULL
),
incident_stats AS (
    SELECT m.scope, i.environment, w.window_id, count(*) AS incidents,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY i.restore_seconds) AS time_to_restore_p50_seconds
    FROM incidents_by_env i
    JOIN members m ON m.entity_ref = i.entity_ref
    JOIN windows w ON i.created_at >= w.window_start AND i.created_at < w.window_end
    GROUP BY m.scope, i.environment, w.window_id
),
dora_keys AS (
    SELECT s.scope,
           s.scope_kind,
           CAST(w.window_days AS BIGINT) AS window_days,
           w.period AS period,
           s.environment AS environment,
           w.window_start AS window_start,
           w.window_end AS as_of,
           CAST(coalesce(d.deployments, 0) AS BIGINT) AS deployments,
           CAST(coalesce(d.failed_jobs, 0) AS BIGINT) AS failed_jobs,
           CAST(coalesce(d.deploy_days, 0) AS BIGINT) AS deploy_days,
           CASE WHEN d.deployments > 0 THEN CAST(d.deployments AS DOUBLE) / w.window_days END AS deployments_per_day,
           CASE WHEN d.deployments > 0 THEN CAST(d.deployments AS DOUBLE) * 7.0 / w.window_days END AS deployments_per_week,
           CASE WHEN d.deployments > 0 THEN md.median_deploy_days_per_week END AS median_deploy_days_per_week,
           CAST(coalesce(c.changes, 0) AS BIGINT) AS changes,
           c.lead_time_p50_seconds,
           c.lead_time_p90_seconds,
           CAST(coalesce(c.lead_time_anomalies, 0) AS BIGINT) AS lead_time_anomalies,
           CAST(coalesce(d.failed_deployments, 0) AS BIGINT) AS failed_deployments,
           CAST(coalesce(d.failed_by_revert, 0) AS BIGINT) AS failed_by_revert,
           CASE WHEN d.deployments > 0 THEN CAST(d.failed_deployments AS DOUBLE) / d.deployments END AS change_failure_rate,
           d.failed_deployment_recovery_p50_seconds,
           CAST(coalesce(i.incidents, 0) AS BIGINT) AS incidents,
           i.time_to_restore_p50_seconds,
           CAST(coalesce(d.rework_deployments, 0) AS BIGINT) AS rework_deployments,
           CASE WHEN d.deployments > 0 THEN CAST(d.rework_deployments AS DOUBLE) / d.deployments END AS rework_rate
    FROM scope_envs s
    CROSS JOIN windows w
    LEFT JOIN deployment_stats d
        ON d.scope = s.scope AND d.environment = s.environment AND d.window_id = w.window_id
    LEFT JOIN median_days md
        ON md.scope = s.scope AND md.environment = s.environment AND md.window_id = w.window_id
    LEFT JOIN change_stats c
        ON c.scope = s.scope AND c.environment = s.environment AND c.window_id = w.window_id
    LEFT JOIN incident_stats i
        ON i.scope = s.scope AND i.environment = s.environment AND i.window_id = w.window_id
),
tiered AS (
    SELECT *,
           '{{benchmark}}' AS benchmark,
           dora_tier('{{benchmark}}', 'deployment_frequency', deployments_per_day) AS deployment_frequency_tier,
           dora_tier('{{benchmark}}', 'lead_time', lead_time_p50_seconds) AS lead_time_tier,
           dora_tier('{{benchmark}}', 'change_failure_rate', change_failure_rate) AS change_failure_rate_tier,
           dora_tier('{{benchmark}}', 'recovery', {{recovery}}) AS recovery_tier
    FROM dora_keys
)
SELECT *,
       dora_overall_tier(deployment_frequency_tier, lead_time_tier, change_failure_rate_tier,
                         recovery_tier) AS overall_tier
FROM tiered
