-- dora_metrics: the five keys per scope and rolling window, over all
-- production environments, from dora_deployments, dora_changes and
-- incidents.
--
-- Parameters (replaced before planning):
--   {{as_of}}     end of every window (exclusive), an RFC 3339 instant
--   {{windows}}   VALUES rows (window_id, period, window_days, window_start,
--                 window_end); period is `7d` … `365d`, or `week`/`month`
--   {{weeks}}     VALUES rows (window_id, week_start, week_end): the
--                 calendar weeks (Monday start, UTC) intersecting each
--                 window, clipped to it
--
-- Scopes come from dora_scope_members; a scope's numbers come from the
-- union of its components' events, never from averaging. Counts of nothing
-- are 0; rates, percentiles and medians of nothing are null.
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
deployment_facts AS (
    SELECT m.scope, w.window_id, d.completed, d.failed, d.rework, d.recovery_seconds,
           CAST(d.finished_at AS DATE) AS day
    FROM dora_deployments d
    JOIN members m ON m.entity_ref = d.entity_ref
    JOIN windows w ON d.finished_at >= w.window_start AND d.finished_at < w.window_end
),
deployment_stats AS (
    SELECT scope, window_id,
           sum(CASE WHEN completed THEN 1 ELSE 0 END) AS deployments,
           sum(CASE WHEN completed THEN 0 ELSE 1 END) AS failed_jobs,
           count(DISTINCT CASE WHEN completed THEN day END) AS deploy_days,
           sum(CASE WHEN completed AND failed THEN 1 ELSE 0 END) AS failed_deployments,
           sum(CASE WHEN completed AND rework THEN 1 ELSE 0 END) AS rework_deployments,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY CASE WHEN completed AND failed THEN recovery_seconds END
           ) AS failed_deployment_recovery_p50_seconds
    FROM deployment_facts
    GROUP BY scope, window_id
),
deploy_dates AS (
    SELECT DISTINCT m.scope, CAST(d.finished_at AS DATE) AS day
    FROM dora_deployments d
    JOIN members m ON m.entity_ref = d.entity_ref
    WHERE d.completed
),
week_days AS (
    SELECT s.scope, wk.window_id, wk.week_start, count(dd.day) AS days
    FROM scopes s
    CROSS JOIN weeks wk
    LEFT JOIN deploy_dates dd
        ON dd.scope = s.scope AND dd.day >= wk.week_start AND dd.day < wk.week_end
    GROUP BY s.scope, wk.window_id, wk.week_start
),
median_days AS (
    SELECT scope, window_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(days AS DOUBLE)) AS median_deploy_days_per_week
    FROM week_days
    GROUP BY scope, window_id
),
change_stats AS (
    SELECT m.scope, w.window_id, count(*) AS changes,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY c.lead_time_seconds) AS lead_time_p50_seconds,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY c.lead_time_seconds) AS lead_time_p90_seconds
    FROM dora_changes c
    JOIN members m ON m.entity_ref = c.entity_ref
    JOIN windows w ON c.deployed_at >= w.window_start AND c.deployed_at < w.window_end
    GROUP BY m.scope, w.window_id
),
incident_stats AS (
    SELECT m.scope, w.window_id, count(*) AS incidents,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY CAST(date_part('epoch', i.resolved_at) - date_part('epoch', i.created_at) AS DOUBLE)
           ) AS time_to_restore_p50_seconds
    FROM incidents i
    JOIN members m ON m.entity_ref = i.entity_ref
    JOIN windows w ON i.created_at >= w.window_start AND i.created_at < w.window_end
    WHERE i.resolved_at IS NOT NULL
    GROUP BY m.scope, w.window_id
)
SELECT s.scope,
       s.scope_kind,
       CAST(w.window_days AS BIGINT) AS window_days,
       w.period AS period,
       'production' AS environment,
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
       CAST(coalesce(d.failed_deployments, 0) AS BIGINT) AS failed_deployments,
       CASE WHEN d.deployments > 0 THEN CAST(d.failed_deployments AS DOUBLE) / d.deployments END AS change_failure_rate,
       d.failed_deployment_recovery_p50_seconds,
       CAST(coalesce(i.incidents, 0) AS BIGINT) AS incidents,
       i.time_to_restore_p50_seconds,
       CAST(coalesce(d.rework_deployments, 0) AS BIGINT) AS rework_deployments,
       CASE WHEN d.deployments > 0 THEN CAST(d.rework_deployments AS DOUBLE) / d.deployments END AS rework_rate
FROM scopes s
CROSS JOIN windows w
LEFT JOIN deployment_stats d ON d.scope = s.scope AND d.window_id = w.window_id
LEFT JOIN median_days md ON md.scope = s.scope AND md.window_id = w.window_id
LEFT JOIN change_stats c ON c.scope = s.scope AND c.window_id = w.window_id
LEFT JOIN incident_stats i ON i.scope = s.scope AND i.window_id = w.window_id
