-- dora_trends: the keys of dora_metrics per calendar week (Monday start,
-- UTC) and calendar month, the last 52 weeks and 12 months up to `as_of`
-- (the current week and month end at `as_of`). The same definitions as
-- dora_metrics: the subquery below is that mart's query (inserted by the
-- runner), run over these periods instead of the rolling windows.
SELECT scope, scope_kind, period AS granularity, window_start AS period_start, as_of AS period_end,
       window_days AS period_days, environment, deployments, failed_jobs, deploy_days,
       deployments_per_day, deployments_per_week, median_deploy_days_per_week, changes,
       lead_time_p50_seconds, lead_time_p90_seconds, lead_time_anomalies, failed_deployments, failed_by_revert, change_failure_rate,
       failed_deployment_recovery_p50_seconds, incidents, time_to_restore_p50_seconds,
       rework_deployments, rework_rate, benchmark, deployment_frequency_tier, lead_time_tier,
       change_failure_rate_tier, recovery_tier, overall_tier
FROM (
{{dora_metrics}}
) metrics
