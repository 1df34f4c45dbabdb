//! Who may read which scope: the one rule every read endpoint asks.
//!
//! A caller not limited to teams reads every scope. A caller limited to
//! teams (a contractor) reads its teams, the groups below them (by the
//! catalog's `spec.parent`, any depth) and the components those own —
//! never a scope that contains anything else: not the department above
//! its team, not a sibling team, not a system or domain, not `org`. (An
//! ancestor group's metrics and drill-downs are made of other teams'
//! deployments, which is exactly what a team limit is for.)

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{Api, ApiError, ApiResult, Caller, json_rows, quoted};

/// The scopes a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Visible {
    /// Every scope, `org` included.
    All,
    /// Only these scopes (entity refs, lower case).
    Only(BTreeSet<String>),
}

impl Visible {
    /// Whether `scope` (as stored: `org` or a lower-case entity ref) may be
    /// read.
    pub(crate) fn allows(&self, scope: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(scopes) => scopes.contains(scope),
        }
    }

    /// A SQL predicate keeping rows whose `column` is a visible scope.
    pub(crate) fn sql_filter(&self, column: &str) -> String {
        match self {
            Self::All => "true".to_owned(),
            Self::Only(scopes) if scopes.is_empty() => "false".to_owned(),
            Self::Only(scopes) => format!(
                "{column} IN ({})",
                scopes
                    .iter()
                    .map(|s| quoted(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The scopes `caller` may read, from the catalog (group hierarchy) and
/// `dora_scope_members` (components of a group and its sub-groups).
pub(crate) async fn visible(api: &Api, caller: &Caller) -> ApiResult<Visible> {
    if caller.teams.is_empty() {
        return Ok(Visible::All);
    }
    let teams = caller
        .teams
        .iter()
        .map(|t| quoted(t))
        .collect::<Vec<_>>()
        .join(", ");
    // The depth bound keeps a cycle in `spec.parent` from looping.
    let sql = format!(
        "WITH RECURSIVE below (group_ref, depth) AS ( \
             SELECT lower(entity_ref) AS group_ref, 0 AS depth FROM catalog_entities \
             WHERE kind = 'group' AND lower(entity_ref) IN ({teams}) \
             UNION ALL \
             SELECT lower(g.entity_ref), b.depth + 1 FROM catalog_entities g \
             JOIN below b ON lower(g.parent_ref) = b.group_ref \
             WHERE g.kind = 'group' AND b.depth < 32 \
         ) \
         SELECT DISTINCT group_ref AS scope FROM below \
         UNION \
         SELECT DISTINCT lower(entity_ref) AS scope FROM dora_scope_members \
         WHERE scope IN ({teams})"
    );
    let rows = json_rows(api, &sql).await?;
    let mut scopes: BTreeSet<String> = caller.teams.iter().cloned().collect();
    scopes.extend(
        rows.iter()
            .filter_map(|row| row.get("scope").and_then(Value::as_str))
            .map(str::to_owned),
    );
    Ok(Visible::Only(scopes))
}

/// Refuses a scope `caller` may not read (403).
pub(crate) async fn authorize_scope(api: &Api, caller: &Caller, scope: &str) -> ApiResult<()> {
    if visible(api, caller).await?.allows(scope) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "`{scope}` is outside the teams this caller may see (their teams, sub-teams and \
             components only)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_scopes_are_visible_and_filters_quote_them() {
        let visible = Visible::Only(
            ["group:default/team-a".to_owned(), "it's".to_owned()]
                .into_iter()
                .collect(),
        );
        assert!(visible.allows("group:default/team-a"));
        assert!(!visible.allows("org"));
        assert!(!visible.allows("group:default/engineering"));
        assert_eq!(
            visible.sql_filter("scope"),
            "scope IN ('group:default/team-a', 'it''s')"
        );
        assert_eq!(Visible::Only(BTreeSet::new()).sql_filter("x"), "false");
        assert!(Visible::All.allows("org"));
    }
}
