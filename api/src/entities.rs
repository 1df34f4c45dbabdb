//! `GET /api/v1/entities` and `/entities/{ref}`: components and groups with
//! their 30-day DORA summary, only those the caller may see.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use fathom_models::EntityRef;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Api, ApiError, ApiResult, access, cached_json, caller, json_rows, quoted, visible_scope,
};

/// `?kind=&owner=` of the entity listing.
#[derive(Debug, Deserialize)]
pub(crate) struct EntitiesQuery {
    kind: Option<String>,
    owner: Option<String>,
}

pub(crate) const ENTITY_SQL: &str = "SELECT e.entity_ref, e.kind, e.name, e.owner_ref, e.system_ref, \
     m.deployments, m.deployments_per_week, m.lead_time_p50_seconds, m.change_failure_rate, \
     m.failed_deployment_recovery_p50_seconds, m.overall_tier \
     FROM catalog_entities e LEFT JOIN dora_metrics m \
     ON m.scope = e.entity_ref AND m.window_days = 30 AND m.environment = 'all' \
     WHERE e.kind IN ('component', 'group')";

/// `GET /api/v1/entities`: services and teams with their 30-day DORA
/// summary.
pub(crate) async fn entities(
    State(api): State<Arc<Api>>,
    Query(params): Query<EntitiesQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let mut sql = ENTITY_SQL.to_owned();
    if let Some(kind) = &params.kind {
        sql.push_str(&format!(
            " AND e.kind = {}",
            quoted(&kind.to_ascii_lowercase())
        ));
    }
    if let Some(owner) = &params.owner {
        let owner = EntityRef::parse_with_defaults(owner, Some("group"), "default")
            .map(|r| r.to_string().to_ascii_lowercase())
            .map_err(|e| ApiError::bad_request(format!("owner `{owner}`: {e}")))?;
        sql.push_str(&format!(" AND e.owner_ref = {}", quoted(&owner)));
    }
    let visible = access::visible(&api, &caller).await?;
    sql.push_str(&format!(" AND {}", visible.sql_filter("e.entity_ref")));
    sql.push_str(" ORDER BY e.kind, e.entity_ref");
    let rows = json_rows(&api, &sql).await?;
    Ok(cached_json(&headers, &json!({"entities": rows})))
}

/// `GET /api/v1/entities/{ref}`.
pub(crate) async fn entity(
    State(api): State<Arc<Api>>,
    Path(entity): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let entity = visible_scope(&api, &headers, &entity).await?;
    let rows = json_rows(
        &api,
        &format!("{ENTITY_SQL} AND e.entity_ref = {}", quoted(&entity)),
    )
    .await?;
    match rows.into_iter().next() {
        Some(row) => Ok(cached_json(&headers, &Value::Object(row))),
        None => Err(ApiError::not_found(format!(
            "no component or group `{entity}`"
        ))),
    }
}
