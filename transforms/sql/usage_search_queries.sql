-- usage_search_queries: the queries most often searched without a click
-- on a result, per month. Query text is what people typed: a query is
-- kept only when at least {{k_anonymity}} distinct users searched it in
-- the month; the others are never stored. The click rule is
-- usage_search's (within the month); recomputed from {{from_month}} on.
WITH events AS (
    SELECT user_hash, occurred_at, occurred_month AS month, action,
           lower(btrim(subject)) AS query,
           try_cast(attributes['value'] AS BIGINT) AS value
    FROM portal_events
    WHERE user_hash IS NOT NULL AND action IN ('search', 'discover')
      AND occurred_month >= '{{from_month}}'
),
flow AS (
    SELECT *,
           lead(action) OVER w AS next_action,
           lead(occurred_at) OVER w AS next_at
    FROM events
    WINDOW w AS (PARTITION BY user_hash, month
                 ORDER BY occurred_at, CASE WHEN action = 'search' THEN 0 ELSE 1 END)
),
queries AS (
    SELECT month, query,
           count(*) AS searches,
           count(DISTINCT user_hash) AS users,
           sum(CASE WHEN next_action = 'discover'
                         AND seconds_between(occurred_at, next_at) <= {{click_window_seconds}}
                    THEN 0 ELSE 1 END) AS unclicked_searches,
           sum(CASE WHEN value = 0 THEN 1 ELSE 0 END) AS zero_result_searches
    FROM flow
    WHERE action = 'search' AND query IS NOT NULL AND query <> ''
    GROUP BY month, query
    HAVING count(DISTINCT user_hash) >= {{k_anonymity}}
),
ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY month ORDER BY unclicked_searches DESC, query) AS rank
    FROM queries
    WHERE unclicked_searches > 0
)
SELECT month, query, searches, users, unclicked_searches, zero_result_searches, rank
FROM ranked
WHERE rank <= 50
