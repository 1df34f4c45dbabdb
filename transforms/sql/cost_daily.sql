-- cost_daily: what each component cost per day, and the shared cost.
--
-- Kubernetes: every OpenCost allocation, split into Compute (CPU, memory,
-- GPU), Storage (volumes), Networking and Other (the rest of its total),
-- attributed to the component its namespace or labels map to. Cloud: every
-- cost line, attributed to the component its tag names. What maps to no
-- component is shared cost and says why (`attribution`): idle, unallocated,
-- unmapped (Kubernetes); tax, credit, commitment, shared, untagged (cloud).
--
-- Shared cost is kept as rows of its own (`[cost] shared = "none"`), or
-- spread onto the components with cost of the same billing period, cost
-- source and currency: in proportion to their own effective cost
-- (`proportional`; components whose own cost is not positive receive
-- none) or in equal parts (`even`). A spread row keeps the shared row's
-- day, categories and reason, with `allocated` true; shared cost with no
-- component to go to stays as it was. Either way every day's rows add up
-- to the sources' totals.
WITH allocations AS (
    SELECT a.date, a.month AS billing_period, a.entity_ref,
           'kubernetes' AS cost_source, 'kubernetes' AS provider,
           k.service_category, 'usage' AS charge_category,
           CASE
               WHEN a.entity_ref IS NOT NULL THEN 'direct'
               WHEN strpos(a.allocation_name, '__idle__') > 0 THEN 'idle'
               WHEN strpos(a.allocation_name, '__unallocated__') > 0 THEN 'unallocated'
               ELSE 'unmapped'
           END AS attribution,
           'USD' AS billing_currency,
           CASE k.service_category
               WHEN 'Compute' THEN coalesce(a.cpu_cost_usd, 0) + coalesce(a.ram_cost_usd, 0)
                   + coalesce(a.gpu_cost_usd, 0)
               WHEN 'Storage' THEN coalesce(a.pv_cost_usd, 0)
               WHEN 'Networking' THEN coalesce(a.network_cost_usd, 0)
               ELSE a.total_cost_usd - coalesce(a.cpu_cost_usd, 0) - coalesce(a.ram_cost_usd, 0)
                   - coalesce(a.gpu_cost_usd, 0) - coalesce(a.pv_cost_usd, 0)
                   - coalesce(a.network_cost_usd, 0)
           END AS cost
    FROM cost_allocations_daily a
    CROSS JOIN (VALUES ('Compute'), ('Storage'), ('Networking'), ('Other')) AS k(service_category)
),
lines AS (
    SELECT date, billing_period, entity_ref, cost_source, provider, service_category,
           charge_category, attribution, billing_currency,
           cost AS billed, cost AS effective, cost AS list
    FROM allocations
    -- (Rounding leaves the remainder a few 1e-12 from zero.)
    WHERE abs(cost) > 1e-9
    UNION ALL
    SELECT c.date, c.billing_period, c.entity_ref, 'cloud', c.provider,
           coalesce(c.service_category, 'Other'), c.charge_category,
           CASE
               WHEN c.entity_ref IS NOT NULL THEN 'direct'
               WHEN c.charge_category = 'tax' THEN 'tax'
               WHEN c.charge_category IN ('credit', 'refund') THEN 'credit'
               WHEN c.charge_category = 'purchase' THEN 'commitment'
               WHEN array_has(map_keys(c.tags), 'shared') THEN 'shared'
               ELSE 'untagged'
           END,
           coalesce(c.billing_currency, 'USD'),
           c.billed_cost_usd, c.effective_cost_usd, c.list_cost_usd
    FROM cloud_costs_daily c
),
own AS (
    SELECT date, billing_period, entity_ref, cost_source, provider, service_category,
           charge_category, attribution, billing_currency,
           sum(billed) AS billed, sum(effective) AS effective, sum(list) AS list,
           count(*) AS lines
    FROM lines
    GROUP BY date, billing_period, entity_ref, cost_source, provider, service_category,
             charge_category, attribution, billing_currency
),
-- Who receives shared cost under the policy, and which share.
receivers AS (
    SELECT billing_period, cost_source, billing_currency, entity_ref,
           CASE '{{cost_shared}}'
               WHEN 'even' THEN 1.0 / count(*) OVER pool
               ELSE cost / sum(cost) OVER pool
           END AS weight
    FROM (
        SELECT billing_period, cost_source, billing_currency, entity_ref,
               sum(effective) AS cost
        FROM own
        WHERE attribution = 'direct'
        GROUP BY billing_period, cost_source, billing_currency, entity_ref
    ) d
    WHERE cost > 0 AND '{{cost_shared}}' <> 'none'
    WINDOW pool AS (PARTITION BY billing_period, cost_source, billing_currency)
),
pools AS (
    SELECT DISTINCT billing_period, cost_source, billing_currency FROM receivers
)
SELECT o.date, o.billing_period, o.entity_ref, o.cost_source, o.provider,
       o.service_category, o.charge_category, o.attribution, false AS allocated,
       o.billing_currency, o.billed AS billed_cost, o.effective AS effective_cost,
       o.list AS list_cost, o.lines
FROM own o
LEFT JOIN pools p
    ON p.billing_period = o.billing_period AND p.cost_source = o.cost_source
    AND p.billing_currency = o.billing_currency
WHERE o.attribution = 'direct' OR p.billing_period IS NULL
UNION ALL
SELECT o.date, o.billing_period, r.entity_ref, o.cost_source, o.provider,
       o.service_category, o.charge_category, o.attribution, true,
       o.billing_currency, o.billed * r.weight, o.effective * r.weight,
       o.list * r.weight, o.lines
FROM own o
JOIN receivers r
    ON r.billing_period = o.billing_period AND r.cost_source = o.cost_source
    AND r.billing_currency = o.billing_currency
WHERE o.attribution <> 'direct'
