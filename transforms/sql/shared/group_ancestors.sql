-- group_ancestors: every group with itself and each group above it
-- (`spec.parent`, any depth; at most 32 levels, so a parent cycle ends) —
-- the one definition of "a group with its sub-groups" that the DORA and
-- the usage scopes share, inserted into both by the runner after
-- `WITH RECURSIVE`.
ancestors (group_ref, ancestor_ref, depth) AS (
    SELECT entity_ref AS group_ref, entity_ref AS ancestor_ref, 0 AS depth
    FROM catalog_entities WHERE kind = 'group'
    UNION ALL
    SELECT a.group_ref, g.parent_ref, a.depth + 1
    FROM ancestors a
    JOIN catalog_entities g ON g.entity_ref = a.ancestor_ref
    WHERE g.parent_ref IS NOT NULL AND a.depth < 32
)
