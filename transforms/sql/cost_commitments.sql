-- cost_commitments: Savings Plans, reservations and other commitment
-- discounts per billing month, provider, billing account, commitment type
-- (and `all` of them) and currency — their utilization, the waste of what
-- nobody used, and how much of the usage they could cover they covered,
-- after the FinOps Foundation's KPIs (docs/metrics.md, "Commitments").
--
-- From the FOCUS commitment columns of cloud_costs_daily (mapped from the
-- CUR's Savings Plan and reservation columns for AWS):
--   used commitment    effective cost of usage a commitment covered
--                      (`commitment_discount_status` = used);
--   unused commitment  effective cost of what no usage used (= unused):
--                      the waste;
--   utilization        used / (used + unused);
--   coverage           list (on-demand) cost of the covered usage over the
--                      list cost of all eligible usage: usage lines of the
--                      service categories of that bill and account that
--                      carry any commitment line (the commitments' own
--                      bookkeeping lines — negations, fees — left out);
--   savings            list cost of the covered usage − what the
--                      commitments cost (used + unused).
WITH lines AS (
    SELECT billing_period, provider, billing_account_id,
           coalesce(billing_currency, 'USD') AS billing_currency,
           coalesce(service_category, '') AS service_category,
           charge_category, commitment_discount_id,
           coalesce(commitment_discount_type, 'unknown') AS commitment_type,
           commitment_discount_status AS status,
           billed_cost_usd AS billed, effective_cost_usd AS effective,
           coalesce(list_cost_usd, billed_cost_usd) AS list
    FROM cloud_costs_daily
),
eligible_scopes AS (
    SELECT DISTINCT billing_period, provider, billing_account_id, billing_currency,
           service_category
    FROM lines
    WHERE commitment_discount_id IS NOT NULL
),
eligible AS (
    SELECT l.billing_period, l.provider, l.billing_account_id, l.billing_currency,
           sum(l.list) AS eligible_list_cost
    FROM lines l
    JOIN eligible_scopes e
        ON e.billing_period = l.billing_period AND e.provider = l.provider
       AND (e.billing_account_id IS NOT DISTINCT FROM l.billing_account_id)
       AND e.billing_currency = l.billing_currency
       AND e.service_category = l.service_category
    WHERE l.charge_category = 'usage'
      AND (l.status = 'used' OR (l.status IS NULL AND l.commitment_discount_id IS NULL))
    GROUP BY l.billing_period, l.provider, l.billing_account_id, l.billing_currency
),
by_type AS (
    SELECT billing_period, provider, billing_account_id, billing_currency, commitment_type,
           count(DISTINCT commitment_discount_id) AS commitments,
           sum(CASE WHEN status = 'used' THEN effective ELSE 0 END) AS used_commitment,
           sum(CASE WHEN status = 'unused' THEN effective ELSE 0 END) AS unused_commitment,
           sum(CASE WHEN status = 'used' THEN list ELSE 0 END) AS covered_list_cost,
           sum(CASE WHEN charge_category = 'purchase' THEN billed ELSE 0 END) AS purchases_billed
    FROM lines
    WHERE commitment_discount_id IS NOT NULL
    GROUP BY billing_period, provider, billing_account_id, billing_currency, commitment_type
),
typed AS (
    SELECT * FROM by_type
    UNION ALL
    SELECT billing_period, provider, billing_account_id, billing_currency, 'all',
           sum(commitments), sum(used_commitment), sum(unused_commitment),
           sum(covered_list_cost), sum(purchases_billed)
    FROM by_type
    GROUP BY billing_period, provider, billing_account_id, billing_currency
)
SELECT t.billing_period,
       CAST(t.billing_period || '-01' AS DATE) AS period_start,
       t.provider,
       t.billing_account_id,
       t.commitment_type AS commitment_discount_type,
       t.billing_currency,
       CAST(t.commitments AS BIGINT) AS commitments,
       t.used_commitment,
       t.unused_commitment,
       CASE WHEN t.used_commitment + t.unused_commitment > 0
            THEN t.used_commitment / (t.used_commitment + t.unused_commitment) END AS utilization,
       t.covered_list_cost,
       coalesce(e.eligible_list_cost, 0.0) AS eligible_list_cost,
       CASE WHEN e.eligible_list_cost > 0
            THEN t.covered_list_cost / e.eligible_list_cost END AS coverage,
       t.covered_list_cost - t.used_commitment - t.unused_commitment AS savings,
       t.purchases_billed
FROM typed t
LEFT JOIN eligible e
    ON e.billing_period = t.billing_period AND e.provider = t.provider
   AND (e.billing_account_id IS NOT DISTINCT FROM t.billing_account_id)
   AND e.billing_currency = t.billing_currency
