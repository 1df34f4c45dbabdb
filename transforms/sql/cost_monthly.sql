-- cost_monthly: cost per scope and billing month, month over month.
--
-- A scope's cost is its members' rows of `cost_daily` (the members of
-- `dora_scope_members`: a group with its sub-groups, a system, a domain);
-- `org` is every row, shared cost included. Every month from a scope's
-- first has a row, so a month it cost nothing shows the drop. The change
-- is in effective (amortized) cost; it is significant on a complete month
-- when it is at least `[cost] significant_change` and, unless the month
-- before cost nothing, at least `[cost] significant_ratio` of that month.
-- The driver is what changed most in absolute terms: a component's service
-- category, a wider scope's component (for `org` also shared cost, as
-- `unattributed:<reason>`).
WITH by_driver AS (
    SELECT m.scope, m.scope_kind, d.billing_period, d.billing_currency,
           CASE WHEN m.scope_kind = 'component' THEN d.service_category
                ELSE d.entity_ref END AS driver,
           sum(d.billed_cost) AS billed, sum(d.effective_cost) AS effective
    FROM cost_daily d
    JOIN dora_scope_members m ON m.entity_ref = d.entity_ref
    WHERE m.scope_kind <> 'org'
    GROUP BY m.scope, m.scope_kind, d.billing_period, d.billing_currency,
             CASE WHEN m.scope_kind = 'component' THEN d.service_category
                  ELSE d.entity_ref END
    UNION ALL
    SELECT 'org', 'org', billing_period, billing_currency,
           coalesce(entity_ref, 'unattributed:' || attribution),
           sum(billed_cost), sum(effective_cost)
    FROM cost_daily
    GROUP BY billing_period, billing_currency,
             coalesce(entity_ref, 'unattributed:' || attribution)
),
months AS (
    SELECT billing_period,
           to_char(CAST(billing_period || '-01' AS DATE) + INTERVAL '1 month', '%Y-%m')
               AS next_period
    FROM (SELECT DISTINCT billing_period FROM cost_daily) p
),
totals AS (
    SELECT b.scope, b.scope_kind, b.billing_period, b.billing_currency, mo.next_period,
           sum(b.billed) AS billed, sum(b.effective) AS effective
    FROM by_driver b JOIN months mo ON mo.billing_period = b.billing_period
    GROUP BY b.scope, b.scope_kind, b.billing_period, b.billing_currency, mo.next_period
),
grid AS (
    SELECT s.scope, s.scope_kind, s.billing_currency, mo.billing_period, mo.next_period
    FROM (
        SELECT scope, scope_kind, billing_currency, min(billing_period) AS since
        FROM totals GROUP BY scope, scope_kind, billing_currency
    ) s
    JOIN months mo ON mo.billing_period >= s.since
),
-- Each driver's change into each month: this month's cost less last's.
changes AS (
    SELECT scope, billing_period, billing_currency, driver, sum(effective) AS change
    FROM (
        SELECT scope, billing_period, billing_currency, driver, effective FROM by_driver
        UNION ALL
        SELECT b.scope, mo.next_period, b.billing_currency, b.driver, -b.effective
        FROM by_driver b JOIN months mo ON mo.billing_period = b.billing_period
    ) x
    GROUP BY scope, billing_period, billing_currency, driver
),
top_driver AS (
    SELECT scope, billing_period, billing_currency, driver, change
    FROM (
        SELECT scope, billing_period, billing_currency, driver, change,
               row_number() OVER (
                   PARTITION BY scope, billing_period, billing_currency
                   ORDER BY abs(change) DESC, driver
               ) AS rank
        FROM changes
    ) r
    WHERE rank = 1
),
bounds AS (
    SELECT min(billing_period) AS first_period, max(date) AS last_day FROM cost_daily
),
monthly AS (
    SELECT g.scope, g.scope_kind, g.billing_period, g.billing_currency,
           coalesce(t.billed, 0) AS billed_cost,
           coalesce(t.effective, 0) AS effective_cost,
           CASE WHEN g.billing_period > b.first_period THEN coalesce(p.effective, 0) END
               AS previous_effective_cost,
           b.last_day >= CAST(g.next_period || '-01' AS DATE) - INTERVAL '1 day' AS complete,
           d.driver, d.change AS driver_change
    FROM grid g
    CROSS JOIN bounds b
    LEFT JOIN totals t
        ON t.scope = g.scope AND t.billing_period = g.billing_period
        AND t.billing_currency = g.billing_currency
    LEFT JOIN totals p
        ON p.scope = g.scope AND p.next_period = g.billing_period
        AND p.billing_currency = g.billing_currency
    LEFT JOIN top_driver d
        ON d.scope = g.scope AND d.billing_period = g.billing_period
        AND d.billing_currency = g.billing_currency
)
SELECT scope, scope_kind, billing_period, billing_currency, billed_cost, effective_cost,
       previous_effective_cost,
       effective_cost - previous_effective_cost AS change,
       CASE WHEN previous_effective_cost <> 0
            THEN (effective_cost - previous_effective_cost) / abs(previous_effective_cost)
       END AS change_ratio,
       coalesce(
           complete
           AND abs(effective_cost - previous_effective_cost) >= {{cost_significant_change}}
           AND (previous_effective_cost = 0
                OR abs(effective_cost - previous_effective_cost)
                   >= {{cost_significant_ratio}} * abs(previous_effective_cost)),
           false
       ) AS significant,
       complete,
       CASE WHEN driver_change <> 0 AND previous_effective_cost IS NOT NULL THEN driver END
           AS driver,
       CASE WHEN driver_change <> 0 AND previous_effective_cost IS NOT NULL THEN driver_change END
           AS driver_change
FROM monthly
