-- dora_scope_members: which components make up each scope.
--
-- Scopes: every component; every group, with the components owned by it or
-- by any group below it (`spec.parent`, any depth); every system; every
-- domain (through its systems); `org`. Metrics of a scope are computed from
-- the union of its members' events.
-- Each group with the groups above it (transforms/sql/shared/group_ancestors.sql).
WITH RECURSIVE {{group_ancestors}},
components AS (
    SELECT entity_ref, owner_ref, system_ref FROM catalog_entities WHERE kind = 'component'
),
members AS (
    SELECT entity_ref AS scope, 'component' AS scope_kind,
           entity_ref
    FROM components
    UNION ALL
    SELECT DISTINCT a.ancestor_ref AS scope, 'group' AS scope_kind,
           c.entity_ref
    FROM components c JOIN ancestors a ON a.group_ref = c.owner_ref
    UNION ALL
    SELECT c.system_ref AS scope, 'system' AS scope_kind,
           c.entity_ref
    FROM components c WHERE c.system_ref IS NOT NULL
    UNION ALL
    SELECT s.domain_ref AS scope, 'domain' AS scope_kind,
           c.entity_ref
    FROM components c JOIN catalog_entities s ON s.entity_ref = c.system_ref
    WHERE s.domain_ref IS NOT NULL
    UNION ALL
    SELECT 'org' AS scope, 'org' AS scope_kind, entity_ref
    FROM components
)
SELECT DISTINCT scope, scope_kind, entity_ref FROM members
