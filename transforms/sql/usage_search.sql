-- usage_search: how well portal search works, per month.
--
-- Backstage sends a `search` event per query (value = the result count)
-- and a `discover` event per click on a result (value = its rank). A
-- session is a user's run of events with no gap over
-- {{session_gap_seconds}} seconds. A search succeeded when its user's next
-- search-or-click is a click, within {{click_window_seconds}} seconds (at
-- most the session gap, so in the same session). Sessions and clicks end
-- with the calendar month (UTC), so a month's numbers never change with
-- the next month's events: the mart is recomputed from {{from_month}} on.
-- Months with fewer than {{k_anonymity}} searching users are withheld.
WITH events AS (
    SELECT user_hash, occurred_at, occurred_month AS month, action,
           try_cast(attributes['value'] AS BIGINT) AS value
    FROM portal_events
    WHERE user_hash IS NOT NULL AND occurred_month >= '{{from_month}}'
),
gaps AS (
    SELECT *,
           CASE WHEN seconds_between(
                         lag(occurred_at) OVER (PARTITION BY user_hash, month ORDER BY occurred_at, action),
                         occurred_at) <= {{session_gap_seconds}}
                THEN 0 ELSE 1 END AS starts_session
    FROM events
),
sessions AS (
    SELECT *,
           sum(starts_session) OVER (PARTITION BY user_hash, month ORDER BY occurred_at, action
                                     ROWS UNBOUNDED PRECEDING) AS session
    FROM gaps
),
flow AS (
    SELECT *,
           lead(action) OVER w AS next_action,
           lead(occurred_at) OVER w AS next_at,
           lead(value) OVER w AS next_value
    FROM sessions
    WHERE action IN ('search', 'discover')
    WINDOW w AS (PARTITION BY user_hash, month
                 ORDER BY occurred_at, CASE WHEN action = 'search' THEN 0 ELSE 1 END)
),
searches AS (
    SELECT month, user_hash, session, value,
           next_action = 'discover'
           AND seconds_between(occurred_at, next_at) <= {{click_window_seconds}} AS clicked,
           next_value AS clicked_rank
    FROM flow
    WHERE action = 'search'
),
monthly AS (
    SELECT month,
           count(*) AS searches,
           count(DISTINCT user_hash) AS users,
           count(DISTINCT user_hash || '/' || CAST(session AS VARCHAR)) AS sessions,
           sum(CASE WHEN value = 0 THEN 1 ELSE 0 END) AS zero_result_searches,
           count(value) AS counted_searches,
           sum(CASE WHEN clicked THEN 1 ELSE 0 END) AS clicked_searches,
           avg(CASE WHEN clicked THEN CAST(clicked_rank AS DOUBLE) END) AS mean_clicked_rank
    FROM searches
    GROUP BY month
)
SELECT month,
       CASE WHEN users >= {{k_anonymity}} THEN searches END AS searches,
       CASE WHEN users >= {{k_anonymity}} THEN users END AS users,
       CASE WHEN users >= {{k_anonymity}} THEN sessions END AS sessions,
       CASE WHEN users >= {{k_anonymity}} THEN zero_result_searches END AS zero_result_searches,
       CASE WHEN users >= {{k_anonymity}} AND counted_searches > 0
            THEN CAST(zero_result_searches AS DOUBLE) / counted_searches END AS zero_result_rate,
       CASE WHEN users >= {{k_anonymity}} THEN clicked_searches END AS clicked_searches,
       CASE WHEN users >= {{k_anonymity}} THEN CAST(clicked_searches AS DOUBLE) / searches END
           AS success_rate,
       CASE WHEN users >= {{k_anonymity}} THEN mean_clicked_rank END AS mean_clicked_rank,
       users < {{k_anonymity}} AS suppressed,
       CASE WHEN users < {{k_anonymity}} THEN 'below_k' END AS suppression
FROM monthly
