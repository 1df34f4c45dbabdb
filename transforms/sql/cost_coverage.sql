-- cost_coverage: how much of the taggable cost maps to a component, per
-- billing month, cost source, provider and currency — the tag coverage a
-- FinOps lead works down.
--
-- Taggable cost is usage: cloud lines with charge category `usage`
-- (purchases, tax and credits belong to no resource), and Kubernetes
-- allocations other than the cluster's idle capacity (which no workload
-- requested). A cloud line maps when its tag names a component; an
-- allocation when its namespace or labels do. Resources: the cloud's
-- resource ids, Kubernetes' allocations (namespace/controller).
WITH taggable AS (
    SELECT billing_period, 'cloud' AS cost_source, provider,
           coalesce(billing_currency, 'USD') AS billing_currency,
           entity_ref IS NOT NULL AS mapped, effective_cost_usd AS cost,
           coalesce(resource_id, line_item_id) AS resource
    FROM cloud_costs_daily
    WHERE charge_category = 'usage'
    UNION ALL
    SELECT month, 'kubernetes', 'kubernetes', 'USD', entity_ref IS NOT NULL, total_cost_usd,
           allocation_name
    FROM cost_allocations_daily
    WHERE strpos(allocation_name, '__idle__') = 0
)
SELECT billing_period, cost_source, provider, billing_currency,
       CAST(billing_period || '-01' AS DATE) AS period_start,
       sum(cost) AS taggable_cost,
       sum(CASE WHEN mapped THEN cost ELSE 0 END) AS mapped_cost,
       sum(CASE WHEN mapped THEN 0 ELSE cost END) AS unmapped_cost,
       CASE WHEN sum(cost) <> 0 THEN sum(CASE WHEN mapped THEN cost ELSE 0 END) / sum(cost) END
           AS coverage,
       count(DISTINCT CASE WHEN NOT mapped THEN resource END) AS unmapped_resources
FROM taggable
GROUP BY billing_period, cost_source, provider, billing_currency
