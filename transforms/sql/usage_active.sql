-- usage_active: active users per scope (each group with its sub-groups,
-- and `org`) and period: every day someone was active (with the 7- and
-- 30-day rolling counts ending that day) and every calendar month of the
-- events.
--
-- A user counts, for each period, in the team of their latest active day
-- in it (for a rolling window, their latest active day in the window; for
-- a day, the first team by ref of that day's events) and in its ancestor
-- groups: teams then partition the period's users, a scope's count is its
-- direct members' plus its sub-scopes', and a later team change does not
-- rewrite history. Members come from the catalog (a user's first
-- `memberOf` group by ref). New users: first event in the warehouse
-- within the period (retention moves that start).
--
-- Recomputed from {{from_day}} on: the events of the 31 days before it
-- feed the rolling windows; of earlier months only who was seen is read.
--
-- Privacy (docs/metrics.md § Usage), for each count separately: below
-- {{k_anonymity}} users it is withheld (`below_k`). Between a scope and
-- its direct sub-scopes, what the scope's number minus its published
-- sub-scopes' numbers would reveal (its direct members, the withheld
-- sub-scopes) must be 0 or at least k users; when it is not, the smallest
-- published sub-scope is withheld too (`complement`). New and returning
-- users add up to the active users, so both are withheld when either is.
-- Each group with the groups above it (transforms/sql/shared/group_ancestors.sql).
WITH RECURSIVE {{group_ancestors}},
groups AS (
    SELECT g.entity_ref, g.entity_type, coalesce(p.entity_ref, 'org') AS parent
    FROM catalog_entities g
    LEFT JOIN catalog_entities p ON p.entity_ref = g.parent_ref AND p.kind = 'group'
    WHERE g.kind = 'group'
),
scopes AS (
    SELECT entity_ref AS scope, 'group' AS scope_kind, entity_type AS group_type, parent
    FROM groups
    UNION ALL
    SELECT 'org' AS scope, 'org' AS scope_kind, CAST(NULL AS VARCHAR) AS group_type,
           CAST(NULL AS VARCHAR) AS parent
),
catalog_users AS (
    SELECT u.entity_ref AS user_ref, min(r.target_ref) AS team
    FROM catalog_entities u
    LEFT JOIN entity_relations r
      ON r.source_ref = u.entity_ref AND r.relation_type = 'memberOf'
    WHERE u.kind = 'user'
    GROUP BY u.entity_ref
),
members AS (
    SELECT a.ancestor_ref AS scope, count(*) AS members
    FROM catalog_users u JOIN ancestors a ON a.group_ref = u.team
    GROUP BY a.ancestor_ref
    UNION ALL
    SELECT 'org' AS scope, count(*) AS members FROM catalog_users
),
activity AS (
    SELECT user_hash, CAST(occurred_at AS DATE) AS day,
           coalesce(min(user_team_ref), '') AS team
    FROM portal_events
    WHERE user_hash IS NOT NULL
      AND occurred_month >= '{{window_month}}'
      AND CAST(occurred_at AS DATE) >= CAST('{{window_day}}' AS DATE)
    GROUP BY user_hash, CAST(occurred_at AS DATE)
),
seen AS (
    SELECT DISTINCT user_hash FROM portal_events
    WHERE user_hash IS NOT NULL AND occurred_month < '{{from_month}}'
),
-- Each user's first active day, when it is in the months recomputed.
firsts AS (
    SELECT a.user_hash, min(a.day) AS first_day
    FROM activity a
    WHERE a.day >= CAST('{{from_day}}' AS DATE)
      AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.user_hash = a.user_hash)
    GROUP BY a.user_hash
),
teams AS (
    SELECT DISTINCT team FROM activity
),
team_scopes AS MATERIALIZED (
    SELECT t.team, a.ancestor_ref AS scope
    FROM teams t JOIN ancestors a ON a.group_ref = t.team
    UNION ALL
    SELECT team, 'org' AS scope FROM teams
),
-- Every day from the first event read to the last, for the rolling sums;
-- rows are written for the days someone was active (a day's row must not
-- depend on whether anyone is active later).
calendar AS (
    SELECT unnest(range(min(day), max(day) + INTERVAL '1 day', INTERVAL '1 day')) AS day
    FROM activity
),
active_days AS (
    SELECT DISTINCT day FROM activity WHERE day >= CAST('{{from_day}}' AS DATE)
),
-- A user counts in the rolling window of day d, in the team of their
-- latest active day at or before d, while that day is within the window:
-- +1 on each active day (in that day's team), -1 when the window passes
-- it before the next active day (which adds them again, perhaps
-- elsewhere).
runs AS (
    SELECT user_hash, day, team,
           lead(day) OVER (PARTITION BY user_hash ORDER BY day) AS next_day
    FROM activity
),
steps AS (
    SELECT team, day, 1 AS week, 1 AS month_window FROM runs
    UNION ALL
    SELECT team, least(coalesce(next_day, day + INTERVAL '7 days'), day + INTERVAL '7 days'),
           -1, 0
    FROM runs
    UNION ALL
    SELECT team, least(coalesce(next_day, day + INTERVAL '30 days'), day + INTERVAL '30 days'),
           0, -1
    FROM runs
),
scope_steps AS (
    SELECT s.scope, st.day, sum(st.week) AS week, sum(st.month_window) AS month_window
    FROM steps st JOIN team_scopes s ON s.team = st.team
    GROUP BY s.scope, st.day
),
scope_days AS (
    SELECT s.scope, a.day, count(*) AS active,
           sum(CASE WHEN a.day = f.first_day THEN 1 ELSE 0 END) AS new_users
    FROM activity a
    JOIN team_scopes s ON s.team = a.team
    LEFT JOIN firsts f ON f.user_hash = a.user_hash
    WHERE a.day >= CAST('{{from_day}}' AS DATE)
    GROUP BY s.scope, a.day
),
daily AS (
    SELECT sc.scope, c.day,
           coalesce(d.active, 0) AS active, coalesce(d.new_users, 0) AS new_users,
           sum(coalesce(st.week, 0)) OVER w AS weekly,
           sum(coalesce(st.month_window, 0)) OVER w AS monthly
    FROM scopes sc CROSS JOIN calendar c
    LEFT JOIN scope_days d ON d.scope = sc.scope AND d.day = c.day
    LEFT JOIN scope_steps st ON st.scope = sc.scope AND st.day = c.day
    WINDOW w AS (PARTITION BY sc.scope ORDER BY c.day ROWS UNBOUNDED PRECEDING)
),
-- A month's users, each in the team of their latest active day in it.
month_users AS (
    SELECT user_hash, month_start, team FROM (
        SELECT user_hash, team, CAST(date_trunc('month', day) AS DATE) AS month_start,
               row_number() OVER (PARTITION BY user_hash, CAST(date_trunc('month', day) AS DATE)
                                  ORDER BY day DESC) AS latest
        FROM activity
        WHERE day >= CAST('{{from_day}}' AS DATE)
    ) WHERE latest = 1
),
monthly AS (
    SELECT sc.scope, m.month_start,
           coalesce(a.active, 0) AS active, coalesce(a.new_users, 0) AS new_users
    FROM scopes sc
    CROSS JOIN (
        SELECT DISTINCT CAST(date_trunc('month', day) AS DATE) AS month_start
        FROM active_days
    ) m
    LEFT JOIN (
        SELECT s.scope, mu.month_start,
               count(*) AS active,
               sum(CASE WHEN date_trunc('month', f.first_day) = mu.month_start
                        THEN 1 ELSE 0 END) AS new_users
        FROM month_users mu
        JOIN team_scopes s ON s.team = mu.team
        LEFT JOIN firsts f ON f.user_hash = mu.user_hash
        GROUP BY s.scope, mu.month_start
    ) a ON a.scope = sc.scope AND a.month_start = m.month_start
),
counts AS (
    SELECT d.scope, 'day' AS grain, d.day AS period_start, m.measure,
           CASE m.measure WHEN 'active' THEN d.active WHEN 'weekly' THEN d.weekly
                          WHEN 'monthly' THEN d.monthly WHEN 'new' THEN d.new_users
                          ELSE d.active - d.new_users END AS users
    FROM daily d
    JOIN active_days ad ON ad.day = d.day
    CROSS JOIN (VALUES ('active'), ('weekly'), ('monthly'), ('new'), ('returning')) m (measure)
    UNION ALL
    SELECT mo.scope, 'month', mo.month_start, m.measure,
           CASE m.measure WHEN 'active' THEN mo.active WHEN 'new' THEN mo.new_users
                          ELSE mo.active - mo.new_users END
    FROM monthly mo
    CROSS JOIN (VALUES ('active'), ('new'), ('returning')) m (measure)
),
-- New and returning are withheld together.
paired AS MATERIALIZED (
    SELECT c.*,
           c.users < {{k_anonymity}}
           OR (c.measure IN ('new', 'returning')
               AND min(CASE WHEN c.measure IN ('new', 'returning') THEN c.users END)
                   OVER (PARTITION BY c.scope, c.grain, c.period_start) < {{k_anonymity}})
           AS below
    FROM counts c
),
-- Each scope against its parent: the cells are the parent's direct
-- sub-scopes plus what the parent has beyond them (its direct members,
-- users of no known group), which is never published apart.
cells AS MATERIALIZED (
    SELECT s.parent, p.scope, p.grain, p.period_start, p.measure, p.users, p.below
    FROM paired p JOIN scopes s ON s.scope = p.scope
    WHERE s.parent IS NOT NULL
),
rest AS (
    SELECT parent.scope AS parent, parent.grain, parent.period_start, parent.measure,
           parent.users - coalesce(sum(c.users), 0) AS users
    FROM paired parent
    LEFT JOIN cells c
      ON c.parent = parent.scope AND c.grain = parent.grain
     AND c.period_start = parent.period_start AND c.measure = parent.measure
    GROUP BY parent.scope, parent.grain, parent.period_start, parent.measure, parent.users
),
pools AS (
    SELECT r.parent, r.grain, r.period_start, r.measure,
           r.users + coalesce(sum(CASE WHEN c.below THEN c.users ELSE 0 END), 0) AS pool
    FROM rest r
    LEFT JOIN cells c
      ON c.parent = r.parent AND c.grain = r.grain
     AND c.period_start = r.period_start AND c.measure = r.measure
    GROUP BY r.parent, r.grain, r.period_start, r.measure, r.users
),
ranked AS (
    SELECT c.scope, c.grain, c.period_start, c.measure, c.below, p.pool,
           row_number() OVER (PARTITION BY c.parent, c.grain, c.period_start, c.measure, c.below
                              ORDER BY c.users, c.scope) AS smallest
    FROM cells c
    JOIN pools p
      ON p.parent = c.parent AND p.grain = c.grain
     AND p.period_start = c.period_start AND p.measure = c.measure
),
decided AS (
    SELECT p.scope, p.grain, p.period_start, p.measure, p.users,
           CASE WHEN p.below THEN 'below_k'
                WHEN r.smallest = 1 AND r.pool > 0 AND r.pool < {{k_anonymity}} THEN 'complement'
           END AS suppression
    FROM paired p
    LEFT JOIN ranked r
      ON r.scope = p.scope AND r.grain = p.grain
     AND r.period_start = p.period_start AND r.measure = p.measure
),
wide AS MATERIALIZED (
    SELECT scope, grain, period_start,
           max(CASE WHEN measure = 'active' THEN users END) AS active,
           max(CASE WHEN measure = 'weekly' THEN users END) AS weekly,
           max(CASE WHEN measure = 'monthly' THEN users END) AS monthly,
           max(CASE WHEN measure = 'new' THEN users END) AS new_users,
           max(CASE WHEN measure = 'returning' THEN users END) AS returning_users,
           bool_or(measure = 'active' AND suppression IS NULL) AS active_ok,
           bool_or(measure = 'weekly' AND suppression IS NULL) AS weekly_ok,
           bool_or(measure = 'monthly' AND suppression IS NULL) AS monthly_ok,
           bool_and(measure NOT IN ('new', 'returning') OR suppression IS NULL) AS split_ok,
           max(CASE WHEN measure = 'active' THEN suppression END) AS active_suppression,
           bool_or(suppression = 'complement') AS any_complement,
           bool_or(suppression IS NOT NULL) AS any_suppressed
    FROM decided
    GROUP BY scope, grain, period_start
),
-- A month's stickiness is the mean of its days' published DAU/MAU: an
-- average of the month's daily active users would also count the days
-- withheld, and so reveal their sum.
month_stickiness AS (
    SELECT scope, CAST(date_trunc('month', period_start) AS DATE) AS month_start,
           -- Rounded: the sum's order (and so its last bits) depends on
           -- how the rows were partitioned.
           round(avg(CAST(active AS DOUBLE) / monthly), 12) AS stickiness
    FROM wide
    WHERE grain = 'day' AND active_ok AND monthly_ok AND monthly > 0
    GROUP BY scope, CAST(date_trunc('month', period_start) AS DATE)
)
SELECT w.scope, s.scope_kind, s.group_type, w.grain, w.period_start,
       to_char(w.period_start, '%Y-%m') AS month,
       coalesce(m.members, 0) AS members,
       CASE WHEN w.active_ok THEN w.active END AS active_users,
       CASE WHEN w.weekly_ok THEN w.weekly END AS weekly_active_users,
       CASE WHEN w.monthly_ok THEN w.monthly END AS monthly_active_users,
       CASE WHEN w.split_ok THEN w.new_users END AS new_users,
       CASE WHEN w.split_ok THEN w.returning_users END AS returning_users,
       CASE WHEN coalesce(m.members, 0) = 0 THEN NULL
            WHEN w.grain = 'month' AND w.active_ok THEN CAST(w.active AS DOUBLE) / m.members
            WHEN w.grain = 'day' AND w.monthly_ok THEN CAST(w.monthly AS DOUBLE) / m.members
       END AS adoption,
       CASE WHEN w.grain = 'day' AND w.active_ok AND w.monthly_ok AND w.monthly > 0
                THEN CAST(w.active AS DOUBLE) / w.monthly
            WHEN w.grain = 'month' THEN ms.stickiness
       END AS stickiness,
       w.any_suppressed AS suppressed,
       CASE WHEN NOT w.any_suppressed THEN NULL
            WHEN w.active_suppression IS NOT NULL THEN w.active_suppression
            WHEN w.any_complement THEN 'complement'
            ELSE 'below_k'
       END AS suppression
FROM wide w
JOIN scopes s ON s.scope = w.scope
LEFT JOIN members m ON m.scope = w.scope
LEFT JOIN month_stickiness ms
  ON w.grain = 'month' AND ms.scope = w.scope AND ms.month_start = w.period_start
