//! `POST /api/v1/sql`: one read-only query from an analyst, answered as
//! JSON, CSV or Arrow IPC. The query is bounded before it is planned
//! (size, depth, plan nodes), waits for one of the server's query slots,
//! runs on the shared memory pool, streams until the row limit (the rest
//! is never computed) and is audited whatever its outcome.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fathom_warehouse::query::{
    OutputFormat, collect_bounded, encode, neutralise_formulas, query_stream,
};
use serde::Deserialize;
use serde_json::json;

use crate::{Api, ApiError, ApiResult, Caller, Role, caller, json_body};

/// Most bytes of rows one SQL answer holds before it is cut (and marked
/// truncated like the row limit).
pub const MAX_RESULT_BYTES: usize = 256 << 20;

/// The body of `POST /api/v1/sql`.
#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
}

/// `?raw=true`: CSV cells exactly as stored, for machine consumers.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CsvQuery {
    raw: Option<bool>,
}

impl CsvQuery {
    /// Whether CSV cells that a spreadsheet would run as formulas are
    /// neutralised (the default).
    pub(crate) fn neutralise(&self) -> bool {
        !self.raw.unwrap_or(false)
    }
}

/// What became of one query, for the audit log.
struct Outcome {
    outcome: &'static str,
    rows: usize,
    error: Option<String>,
}

pub(crate) async fn sql(
    State(api): State<Arc<Api>>,
    axum::extract::Query(csv): axum::extract::Query<CsvQuery>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let caller = caller(&api, &headers).await?;
    let request: Result<SqlRequest, ApiError> = json_body(body);
    let text = request.as_ref().map_or("", |r| r.sql.as_str()).to_owned();
    let started = Instant::now();
    let answer = answer(&api, &caller, &headers, request, csv).await;
    let outcome = match &answer {
        Ok((_, outcome)) => Outcome {
            outcome: outcome.outcome,
            rows: outcome.rows,
            error: None,
        },
        Err(e) => Outcome {
            outcome: match e.code {
                "query_timeout" => "timeout",
                "forbidden" | "read_only" | "too_complex" | "bad_request" => "refused",
                "busy" => "busy",
                _ => "error",
            },
            rows: 0,
            error: Some(e.message.clone()),
        },
    };
    audit(&api, &caller.actor, &text, &outcome, started).await;
    answer.map(|(response, _)| response)
}

/// The SQL text as the audit log keeps it: whole up to 8 KiB (the log is
/// not a place for a megabyte of someone's SQL).
pub(crate) fn audit_text(sql: &str) -> &str {
    sql.get(..sql.floor_char_boundary(8_192)).unwrap_or(sql)
}

async fn audit(api: &Api, actor: &str, sql: &str, outcome: &Outcome, started: Instant) {
    let detail = json!({
        "sql": audit_text(sql),
        "protocol": "http",
        "rows": outcome.rows,
        "milliseconds": started.elapsed().as_millis() as u64,
        "outcome": outcome.outcome,
        "truncated": outcome.outcome == "row_limit",
        "error": outcome.error,
    });
    if let Err(e) = api.state.audit(actor, "sql", None, &detail).await {
        tracing::warn!(error = %e, "cannot write the audit log");
    }
}

async fn answer(
    api: &Api,
    caller: &Caller,
    headers: &HeaderMap,
    request: ApiResult<SqlRequest>,
    csv: CsvQuery,
) -> ApiResult<(Response, Outcome)> {
    if !matches!(caller.role, Role::Analyst | Role::Admin) || !caller.teams.is_empty() {
        return Err(ApiError::forbidden(
            "SQL is for analysts and admins not limited to teams",
        ));
    }
    let request = request?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let (format, content_type) = if accept.contains("text/csv") {
        (OutputFormat::Csv, "text/csv")
    } else if accept.contains("application/vnd.apache.arrow.stream") {
        (
            OutputFormat::ArrowIpc,
            "application/vnd.apache.arrow.stream",
        )
    } else {
        (OutputFormat::Json, "application/json")
    };
    let _slot = api.query_slot().await?;
    let ctx = api.session().await?;
    let limit = api.config.row_limit;
    let timeout = api.config.query_timeout;
    let run = async {
        let (schema, stream) = query_stream(&ctx, &request.sql, api.config.query.bounds).await?;
        let kept = collect_bounded(stream, limit, MAX_RESULT_BYTES).await?;
        Ok::<_, fathom_warehouse::Error>((schema, kept))
    };
    let (schema, kept) = tokio::time::timeout(timeout, run).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "query_timeout",
            format!("the query ran longer than {} s", timeout.as_secs()),
        )
    })??;
    let batches = if format == OutputFormat::Csv && csv.neutralise() {
        neutralise_formulas(&kept.batches)?
    } else {
        kept.batches
    };
    let body = encode(&schema, &batches, format)?;
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if kept.truncated
        && let Ok(v) = HeaderValue::from_str(&limit.to_string())
    {
        response.headers_mut().insert("x-fathom-row-limit", v);
    }
    let outcome = Outcome {
        outcome: if kept.truncated { "row_limit" } else { "ok" },
        rows: kept.rows,
        error: None,
    };
    Ok((response, outcome))
}
