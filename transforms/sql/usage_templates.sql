-- usage_templates: scaffolder template runs per month, template and team,
-- by outcome, and the minutes they saved.
--
-- A run is a `create` event; its template is the event's entity
-- (Backstage puts the template's ref in the context). The outcome is the
-- `status` attribute when the app sends one (completed; failed or
-- cancelled), else unknown. Minutes saved per run: `[usage.templates]`
-- for the template, else the event's value (the template's
-- `backstage.io/time-saved`), else {{default_template_minutes}}; failed
-- runs save nothing. Teams are withheld and pooled as in usage_daily:
-- each user counts in one team per month, teams below
-- {{k_anonymity}} users go to `other`, with the smallest published team
-- when the pool alone has fewer than k.
WITH configured (template_ref, minutes) AS (
    VALUES {{template_minutes}}
),
runs AS (
    SELECT occurred_month AS month, user_hash,
           coalesce(lower(entity_ref), 'unknown') AS template_ref,
           coalesce(user_team_ref, 'unattributed') AS team,
           CASE WHEN lower(attributes['status']) IN ('completed', 'succeeded', 'success') THEN 'succeeded'
                WHEN lower(attributes['status']) IN ('failed', 'failure', 'error', 'cancelled', 'canceled')
                    THEN 'failed'
                ELSE 'unknown' END AS outcome,
           try_cast(attributes['value'] AS DOUBLE) AS event_minutes
    FROM portal_events
    WHERE action = 'create'
),
user_team AS (
    SELECT month, user_hash, min(team) AS team
    FROM runs WHERE user_hash IS NOT NULL
    GROUP BY month, user_hash
),
-- Per user first, then per cell: users counted without a set per cell
-- (see usage_daily).
per_user AS (
    SELECT r.month, r.template_ref, coalesce(u.team, 'unattributed') AS team, r.user_hash,
           count(*) AS runs,
           sum(CASE WHEN r.outcome = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
           sum(CASE WHEN r.outcome = 'failed' THEN 1 ELSE 0 END) AS failed,
           sum(CASE WHEN r.outcome = 'unknown' THEN 1 ELSE 0 END) AS unknown_outcome,
           sum(CASE WHEN r.outcome = 'failed' THEN 0.0
                    ELSE coalesce(c.minutes, r.event_minutes, {{default_template_minutes}}) END)
               AS minutes_saved
    FROM runs r
    LEFT JOIN user_team u ON u.month = r.month AND u.user_hash = r.user_hash
    LEFT JOIN configured c ON c.template_ref = r.template_ref
    GROUP BY r.month, r.template_ref, coalesce(u.team, 'unattributed'), r.user_hash
),
cells AS (
    SELECT month, template_ref, team,
           sum(runs) AS runs, sum(succeeded) AS succeeded, sum(failed) AS failed,
           sum(unknown_outcome) AS unknown_outcome, count(user_hash) AS users,
           sum(minutes_saved) AS minutes_saved
    FROM per_user
    GROUP BY month, template_ref, team
),
flagged AS (
    SELECT *,
           users < {{k_anonymity}} AS below,
           sum(CASE WHEN users < {{k_anonymity}} THEN users ELSE 0 END)
               OVER (PARTITION BY month, template_ref) AS pool,
           row_number() OVER (PARTITION BY month, template_ref, users < {{k_anonymity}}
                              ORDER BY users, team) AS smallest
    FROM cells
),
decided AS (
    SELECT *,
           CASE WHEN below THEN 'below_k'
                WHEN smallest = 1 AND pool > 0 AND pool < {{k_anonymity}} THEN 'complement'
           END AS suppression
    FROM flagged
),
pooled AS (
    SELECT month, template_ref, 'other' AS team,
           sum(runs) AS runs, sum(succeeded) AS succeeded, sum(failed) AS failed,
           sum(unknown_outcome) AS unknown_outcome, sum(users) AS users,
           sum(minutes_saved) AS minutes_saved,
           CASE WHEN sum(users) < {{k_anonymity}} THEN 'below_k' END AS suppression
    FROM decided WHERE suppression IS NOT NULL
    GROUP BY month, template_ref
),
rows AS (
    SELECT month, template_ref, team, runs, succeeded, failed, unknown_outcome, users,
           minutes_saved, suppression
    FROM decided
    UNION ALL
    SELECT month, template_ref, team, runs, succeeded, failed, unknown_outcome, users,
           minutes_saved, suppression
    FROM pooled
)
SELECT month, CAST(month || '-01' AS DATE) AS period_start, template_ref, team,
       CASE WHEN suppression IS NULL THEN runs END AS runs,
       CASE WHEN suppression IS NULL THEN succeeded END AS succeeded,
       CASE WHEN suppression IS NULL THEN failed END AS failed,
       CASE WHEN suppression IS NULL THEN unknown_outcome END AS unknown_outcome,
       CASE WHEN suppression IS NULL THEN users END AS users,
       CASE WHEN suppression IS NULL THEN minutes_saved END AS minutes_saved,
       suppression IS NOT NULL AS suppressed, suppression
FROM rows
