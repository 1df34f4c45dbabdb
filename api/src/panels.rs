//! The dashboard panels over HTTP: the list, one panel's rows as JSON or
//! CSV (spreadsheet-safe unless `raw=true`), and the Grafana export.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fathom_warehouse::query::{OutputFormat, encode, query};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Api, ApiError, ApiResult, authorize_scope, cached_json, caller, pages, rows_as_json, scope_ref,
    window_days,
};

/// `GET /api/v1/panels`: the dashboard panels (id, page, title, chart).
pub(crate) async fn panel_list(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller(&api, &headers).await?;
    let panels = fathom_dashboards::panels().map_err(ApiError::internal)?;
    let list: Vec<Value> = panels
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "pages": p.pages, "title": p.title, "description": p.description,
                "source": if p.api.is_some() { "api" } else { "sql" },
                "chart": {"kind": p.chart.kind, "x": p.chart.x, "y": p.chart.y, "spark": p.chart.spark, "marks": p.chart.marks},
                "drill": p.drill, "drills": p.drills,
            })
        })
        .collect();
    Ok(axum::Json(json!({"panels": list})).into_response())
}

/// `GET /api/v1/dashboards/grafana.json`: the panels as a Grafana
/// dashboard over the PostgreSQL endpoint (import it in Grafana).
pub(crate) async fn grafana(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller(&api, &headers).await?;
    let panels = fathom_dashboards::panels().map_err(ApiError::internal)?;
    Ok(axum::Json(fathom_dashboards::grafana_dashboard(panels)).into_response())
}

/// The filters of a panel request.
#[derive(Debug, Deserialize)]
pub(crate) struct PanelQuery {
    window: Option<String>,
    env: Option<String>,
    scope: Option<String>,
    /// CSV cells exactly as stored (`true`), not spreadsheet-safe.
    raw: Option<bool>,
}

/// `GET /api/v1/panels/{id}?window=30d&env=all&scope=…`: a panel's rows for
/// the filters, as JSON (`columns`, `rows`) or CSV (`Accept: text/csv`, the
/// panel's export; text that a spreadsheet would run as a formula gets a
/// leading `'` unless `raw=true`). Team-limited callers get only panels of
/// one scope they may see.
pub(crate) async fn panel_rows(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(params): Query<PanelQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let panels = fathom_dashboards::panels().map_err(ApiError::internal)?;
    let Some(panel) = panels.iter().find(|p| p.id == id) else {
        return Err(ApiError::not_found(format!(
            "no panel `{id}`; GET /api/v1/panels lists them"
        )));
    };
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if let Some(read) = panel.api.as_deref() {
        let (columns, rows) = pages::api_panel_rows(&api, &caller, read).await?;
        if wants_csv {
            let safe = !params.raw.unwrap_or(false);
            return Ok(csv_download(
                &panel.id,
                pages::csv_of(&columns, &rows, safe),
            ));
        }
        return Ok(cached_json(
            &headers,
            &json!({"panel": panel.id, "columns": columns, "rows": rows}),
        ));
    }
    let scope = scope_ref(params.scope.as_deref().unwrap_or("org"))?;
    pages::may_read_sql_panel(&caller, panel)?;
    authorize_scope(&api, &caller, &scope).await?;
    let filters = fathom_dashboards::Filters {
        window_days: window_days(params.window.as_deref())?,
        environment: params.env.unwrap_or_else(|| "all".to_owned()),
        scope,
    };
    let sql = panel
        .sql(&filters)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ctx = api.session().await?;
    let (schema, batches) = query(&ctx, &sql).await?;
    if wants_csv {
        let batches = if params.raw.unwrap_or(false) {
            batches
        } else {
            fathom_warehouse::query::neutralise_formulas(&batches)?
        };
        let body = encode(&schema, &batches, OutputFormat::Csv)?;
        return Ok(csv_download(&panel.id, body));
    }
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let rows = rows_as_json(&schema, &batches)?;
    Ok(cached_json(
        &headers,
        &json!({"panel": panel.id, "columns": columns, "rows": rows,
                "filters": {"window_days": filters.window_days, "environment": filters.environment, "scope": filters.scope}}),
    ))
}

/// A CSV attachment named after a panel.
pub(crate) fn csv_download(panel: &str, body: impl Into<axum::body::Body>) -> Response {
    let disposition = format!("attachment; filename=\"{panel}.csv\"");
    let mut response = ([(header::CONTENT_TYPE, "text/csv")], body.into()).into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
