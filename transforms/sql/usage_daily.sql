-- usage_daily: portal events and distinct users per day, plugin, action
-- and team.
--
-- Privacy (docs/metrics.md § Usage): each user counts in one team per day
-- (the first by ref among their events' teams that day), so the teams of a
-- (day, plugin, action) partition its users. A team with fewer than
-- {{k_anonymity}} users is withheld (`below_k`) and pooled into a row
-- `team` = `other`; when the pool holds some users but fewer than k, the
-- smallest published team joins it (`complement`), so the published teams
-- plus `other` add up to everyone and no subtraction reveals fewer than k.
WITH events AS (
    SELECT CAST(occurred_at AS DATE) AS day, occurred_month AS month,
           coalesce(plugin_id, 'unknown') AS plugin_id, action, user_hash,
           coalesce(user_team_ref, 'unattributed') AS team
    FROM portal_events
),
user_team AS (
    SELECT day, user_hash, min(team) AS team
    FROM events WHERE user_hash IS NOT NULL
    GROUP BY day, user_hash
),
-- Events per user first, then users per cell: the same counts as
-- count(DISTINCT user_hash), without a set of users per cell (which the
-- engine keeps per group and row by row: 28 times slower than this at a
-- few million events).
per_user AS (
    SELECT e.day, e.month, e.plugin_id, e.action,
           coalesce(u.team, 'unattributed') AS team, e.user_hash, count(*) AS events
    FROM events e
    LEFT JOIN user_team u ON u.day = e.day AND u.user_hash = e.user_hash
    GROUP BY e.day, e.month, e.plugin_id, e.action, coalesce(u.team, 'unattributed'), e.user_hash
),
cells AS (
    SELECT day, month, plugin_id, action, team,
           sum(events) AS events, count(user_hash) AS users
    FROM per_user
    GROUP BY day, month, plugin_id, action, team
),
flagged AS (
    SELECT *,
           users < {{k_anonymity}} AS below,
           sum(CASE WHEN users < {{k_anonymity}} THEN users ELSE 0 END)
               OVER (PARTITION BY day, plugin_id, action) AS pool,
           row_number() OVER (PARTITION BY day, plugin_id, action, users < {{k_anonymity}}
                              ORDER BY users, team) AS smallest
    FROM cells
),
decided AS (
    SELECT day, month, team, plugin_id, action, events, users,
           CASE WHEN below THEN 'below_k'
                WHEN smallest = 1 AND pool > 0 AND pool < {{k_anonymity}} THEN 'complement'
           END AS suppression
    FROM flagged
),
pooled AS (
    SELECT day, month, plugin_id, action, sum(events) AS events, sum(users) AS users
    FROM decided WHERE suppression IS NOT NULL
    GROUP BY day, month, plugin_id, action
)
SELECT day, month, team, plugin_id, action,
       CASE WHEN suppression IS NULL THEN events END AS events,
       CASE WHEN suppression IS NULL THEN users END AS users,
       suppression IS NOT NULL AS suppressed, suppression
FROM decided
UNION ALL
SELECT day, month, 'other' AS team, plugin_id, action,
       CASE WHEN users >= {{k_anonymity}} THEN events END AS events,
       CASE WHEN users >= {{k_anonymity}} THEN users END AS users,
       users < {{k_anonymity}} AS suppressed,
       CASE WHEN users < {{k_anonymity}} THEN 'below_k' END AS suppression
FROM pooled
