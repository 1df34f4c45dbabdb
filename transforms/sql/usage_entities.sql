-- usage_entities: the most viewed catalog entity pages and TechDocs sites
-- per month, up to 100 of each. An entity is not a person: its views are
-- published whatever their number; its distinct viewers only from
-- {{k_anonymity}} up.
WITH views AS (
    SELECT occurred_month AS month,
           CASE WHEN plugin_id = 'techdocs' THEN 'docs' ELSE 'catalog' END AS surface,
           lower(entity_ref) AS entity_ref, user_hash
    FROM portal_events
    WHERE action = 'navigate' AND entity_ref IS NOT NULL
      AND plugin_id IN ('catalog', 'techdocs')
),
-- Views per viewer first, then per entity: viewers counted without a set
-- per entity (see usage_daily).
per_viewer AS (
    SELECT month, surface, entity_ref, user_hash, count(*) AS views
    FROM views
    GROUP BY month, surface, entity_ref, user_hash
),
counted AS (
    SELECT month, surface, entity_ref,
           sum(views) AS views, count(user_hash) AS viewers
    FROM per_viewer
    GROUP BY month, surface, entity_ref
),
ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY month, surface ORDER BY views DESC, entity_ref) AS rank
    FROM counted
)
SELECT month, CAST(month || '-01' AS DATE) AS period_start, surface, entity_ref,
       CASE WHEN strpos(entity_ref, ':') > 0 THEN split_part(entity_ref, ':', 1)
            ELSE 'component' END AS entity_kind,
       views,
       CASE WHEN viewers >= {{k_anonymity}} THEN viewers END AS viewers,
       rank,
       viewers < {{k_anonymity}} AS suppressed
FROM ranked
WHERE rank <= 100
