-- usage_features: use of each plugin and feature per month.
--
-- Features: search (search and result-click events), scaffolder (template
-- runs), docs (TechDocs), catalog, `fathom:<page>` (events of plugin id
-- `fathom`, the page from the route), else the plugin id. New users: first use
-- of the feature in the warehouse in that month. Week-4 retention: the
-- share of the month's new users who used the feature again 21 to 27 days
-- after their first use; null until the data covers that week for all of
-- them. A row of fewer than {{k_anonymity}} users is withheld; so are new
-- users and retention when fewer than k users are new.
--
-- Recomputed from {{from_month}} on (the month before the earliest
-- changed one: its new users' retention reaches into the next month); of
-- the months before, only who used which feature is read.
WITH all_events AS (
    SELECT CAST(occurred_at AS DATE) AS day, occurred_month AS month,
           coalesce(plugin_id, 'unknown') AS plugin_id,
           CASE WHEN action IN ('search', 'discover') OR plugin_id = 'search' THEN 'search'
                WHEN action = 'create' OR plugin_id = 'scaffolder' THEN 'scaffolder'
                WHEN plugin_id = 'techdocs' THEN 'docs'
                WHEN plugin_id = 'catalog' THEN 'catalog'
                WHEN plugin_id = 'fathom'
                    THEN 'fathom:' || coalesce(nullif(split_part(btrim(route, '/'), '/', 1), ''), 'home')
                ELSE coalesce(plugin_id, 'unknown') END AS feature,
           user_hash, user_team_ref
    FROM portal_events
),
events AS (
    SELECT * FROM all_events WHERE month >= '{{from_month}}'
),
seen AS (
    SELECT DISTINCT plugin_id, feature, user_hash
    FROM all_events
    WHERE month < '{{from_month}}' AND user_hash IS NOT NULL
),
last_day AS (
    SELECT max(day) AS last_day FROM events
),
firsts AS (
    SELECT e.plugin_id, e.feature, e.user_hash, min(e.day) AS first_day
    FROM events e
    WHERE e.user_hash IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM seen s
                      WHERE s.plugin_id = e.plugin_id AND s.feature = e.feature
                        AND s.user_hash = e.user_hash)
    GROUP BY e.plugin_id, e.feature, e.user_hash
),
returned AS (
    SELECT DISTINCT f.plugin_id, f.feature, f.user_hash
    FROM firsts f
    JOIN events e
      ON e.plugin_id = f.plugin_id AND e.feature = f.feature AND e.user_hash = f.user_hash
    WHERE e.day >= f.first_day + INTERVAL '21 days' AND e.day < f.first_day + INTERVAL '28 days'
),
cohorts AS (
    SELECT to_char(f.first_day, '%Y-%m') AS month, f.plugin_id, f.feature,
           count(*) AS new_users,
           count(r.user_hash) AS retained,
           max(f.first_day) + INTERVAL '27 days' <= max(l.last_day) AS measured
    FROM firsts f
    CROSS JOIN last_day l
    LEFT JOIN returned r
      ON r.plugin_id = f.plugin_id AND r.feature = f.feature AND r.user_hash = f.user_hash
    GROUP BY to_char(f.first_day, '%Y-%m'), f.plugin_id, f.feature
),
monthly AS (
    SELECT month, plugin_id, feature,
           count(*) AS events,
           count(DISTINCT user_hash) AS users,
           count(DISTINCT CASE WHEN user_hash IS NOT NULL THEN user_team_ref END) AS teams
    FROM events
    GROUP BY month, plugin_id, feature
)
SELECT m.month, m.plugin_id, m.feature,
       CASE WHEN m.users >= {{k_anonymity}} THEN m.events END AS events,
       CASE WHEN m.users >= {{k_anonymity}} THEN m.users END AS users,
       CASE WHEN m.users >= {{k_anonymity}} THEN m.teams END AS teams,
       CASE WHEN m.users >= {{k_anonymity}} AND coalesce(c.new_users, 0) >= {{k_anonymity}}
            THEN c.new_users END AS new_users,
       CASE WHEN m.users >= {{k_anonymity}} AND coalesce(c.new_users, 0) >= {{k_anonymity}}
                 AND c.measured
            THEN CAST(c.retained AS DOUBLE) / c.new_users END AS retained_week4,
       m.users < {{k_anonymity}}
           OR (coalesce(c.new_users, 0) > 0 AND c.new_users < {{k_anonymity}}) AS suppressed,
       CASE WHEN m.users < {{k_anonymity}}
                 OR (coalesce(c.new_users, 0) > 0 AND c.new_users < {{k_anonymity}})
            THEN 'below_k' END AS suppression
FROM monthly m
LEFT JOIN cohorts c
  ON c.month = m.month AND c.plugin_id = m.plugin_id AND c.feature = m.feature
