-- cost_benchmarks: each component's unit costs per billing month, and how
-- they compare with its peers'.
--
-- Unit costs, in effective cost: per 1,000 requests (the month's requests
-- in `service_metrics_daily`), per completed production deployment
-- (`dora_deployments`), per pull request merged in the month, in engineers
-- (the cost of how many engineers for the month, at `[cost] engineer_cost`
-- a year), and CPU and memory efficiency (used ÷ requested, summed over
-- the month's OpenCost allocations). Peers: the components of
-- the same type and lifecycle (catalog) whose month's requests fall in the
-- same traffic band — a power of ten (`1e4`: 10,000–99,999 requests;
-- `none` without traffic). The comparison is on cost per 1,000 requests,
-- or on cost in the `none` band: `percentile` 0 is the cheapest of the
-- group and 1 the dearest; `gap_to_peer_median` is what the component
-- would save at the peer median (negative: it costs less than its peers).
WITH cost AS (
    SELECT entity_ref, billing_period, billing_currency, sum(effective_cost) AS cost
    FROM cost_daily
    WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, billing_period, billing_currency
),
traffic AS (
    SELECT entity_ref, month AS billing_period, sum(request_count) AS requests
    FROM service_metrics_daily
    WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, month
),
deploys AS (
    SELECT entity_ref, to_char(finished_at, '%Y-%m') AS billing_period, count(*) AS deployments
    FROM dora_deployments
    WHERE completed
    GROUP BY entity_ref, to_char(finished_at, '%Y-%m')
),
merged AS (
    SELECT entity_ref, to_char(merged_at, '%Y-%m') AS billing_period,
           count(*) AS merged_pull_requests
    FROM pull_requests
    WHERE merged_at IS NOT NULL AND entity_ref IS NOT NULL
    GROUP BY entity_ref, to_char(merged_at, '%Y-%m')
),
efficiency AS (
    SELECT entity_ref, month AS billing_period,
           sum(cpu_usage_cores) / nullif(sum(cpu_request_cores), 0) AS cpu_efficiency,
           sum(ram_usage_bytes) / nullif(sum(ram_request_bytes), 0) AS ram_efficiency
    FROM cost_allocations_daily
    WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, month
),
units AS (
    SELECT c.entity_ref, c.billing_period, c.billing_currency, c.cost,
           coalesce(t.requests, 0) AS requests,
           coalesce(d.deployments, 0) AS deployments,
           coalesce(p.merged_pull_requests, 0) AS merged_pull_requests,
           CASE WHEN t.requests > 0 THEN c.cost / (t.requests / 1000.0) END
               AS cost_per_1k_requests,
           CASE WHEN d.deployments > 0 THEN c.cost / d.deployments END AS cost_per_deployment,
           CASE WHEN p.merged_pull_requests > 0 THEN c.cost / p.merged_pull_requests END
               AS cost_per_merged_pull_request,
           c.cost / ({{cost_engineer_cost}} / 12.0) AS cost_in_engineers,
           f.cpu_efficiency, f.ram_efficiency,
           coalesce(e.entity_type, 'unknown') || '/' || coalesce(e.lifecycle, 'unknown') || '/'
               || CASE WHEN coalesce(t.requests, 0) <= 0 THEN 'none'
                       ELSE '1e' || CAST(CAST(floor(log10(CAST(t.requests AS DOUBLE))) AS BIGINT)
                                         AS VARCHAR)
                  END AS peer_group,
           CASE WHEN t.requests > 0 THEN c.cost / (t.requests / 1000.0) ELSE c.cost END
               AS measure
    FROM cost c
    LEFT JOIN traffic t
        ON t.entity_ref = c.entity_ref AND t.billing_period = c.billing_period
    LEFT JOIN deploys d
        ON d.entity_ref = c.entity_ref AND d.billing_period = c.billing_period
    LEFT JOIN merged p
        ON p.entity_ref = c.entity_ref AND p.billing_period = c.billing_period
    LEFT JOIN efficiency f
        ON f.entity_ref = c.entity_ref AND f.billing_period = c.billing_period
    LEFT JOIN catalog_entities e ON e.entity_ref = c.entity_ref
)
SELECT entity_ref, billing_period, billing_currency, cost AS effective_cost, requests,
       deployments, merged_pull_requests, cost_per_1k_requests, cost_per_deployment,
       cost_per_merged_pull_request, cost_in_engineers, cpu_efficiency, ram_efficiency,
       peer_group,
       count(*) OVER peers AS peers,
       percent_rank() OVER (
           PARTITION BY billing_period, billing_currency, peer_group ORDER BY measure
       ) AS percentile,
       median(measure) OVER peers AS peer_median,
       CASE WHEN requests > 0
            THEN (measure - median(measure) OVER peers) * requests / 1000.0
            ELSE measure - median(measure) OVER peers
       END AS gap_to_peer_median
FROM units
WINDOW peers AS (PARTITION BY billing_period, billing_currency, peer_group)
