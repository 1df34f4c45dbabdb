//! Datadog: incidents v2 (`GET /api/v2/incidents`, offset pagination whose
//! last page has no `next_offset`) and metrics query v1 (`GET /api/v1/query`,
//! per-service traffic, errors, p95 latency, CPU and memory from the load
//! world; errors and latency rise while an incident is open), with `DD-API-KEY`/`DD-APPLICATION-KEY`
//! checks and Datadog's rate-limit headers (`X-RateLimit-Reset` is seconds
//! *until* the reset, not an instant).
//!
//! Incidents carry the Datadog service of the affected component in their
//! `services` field and, when the generator decided the link is explicit,
//! the causing deployment in a `deployment` text field.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{SimState, Upstream, faults::status_response};
use crate::world::Incident;

pub(super) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v2/incidents", get(incidents))
        .route("/api/v1/query", get(query))
        .route("/api/v1/monitor", get(monitors))
}

/// `GET /api/v1/monitor` (`page`, `page_size`): one error-rate monitor per
/// service, alerting while one of its incidents is open at the simulated now.
async fn monitors(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if !keys_ok(&state, &headers) {
        return status_response(Upstream::Datadog, StatusCode::FORBIDDEN, "Forbidden");
    }
    let number = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let now = state.now();
    let world = state.world();
    let all: Vec<Value> = world
        .loads
        .iter()
        .map(|profile| {
            let component = &world.org.components[profile.component];
            let team = &world.org.teams[component.team].name;
            let history = &world.histories[profile.component];
            let open = history.incidents.iter().find(|i| i.created_at <= now && now < i.resolved_at);
            let last_change = history
                .incidents
                .iter()
                .flat_map(|i| [i.created_at, i.resolved_at])
                .filter(|t| *t <= now)
                .max()
                .unwrap_or(world.config.start());
            let service = &component.datadog_service;
            let created = world.config.start();
            json!({
                "id": 40_000_000 + profile.component as u64, "org_id": 321_813, "type": "query alert",
                "name": format!("High error rate on {service}"),
                "message": format!("Errors above 5% on {service} @slack-{team}"),
                "tags": [format!("service:{service}"), format!("team:{team}"), "env:production"],
                "query": format!("sum(last_5m):sum:trace.http.request.errors{{service:{service}}}.as_count() / sum:trace.http.request.hits{{service:{service}}}.as_count() > 0.05"),
                "options": {"notify_audit": false, "locked": false, "include_tags": true, "thresholds": {"critical": 0.05},
                    "new_host_delay": 300, "require_full_window": false, "notify_no_data": false, "silenced": {}},
                "multi": false, "created_at": created.timestamp_millis(), "created": timestamp(created), "modified": timestamp(created),
                "deleted": null, "restricted_roles": null, "priority": if open.is_some() { json!(2) } else { Value::Null },
                "overall_state_modified": timestamp(last_change),
                "overall_state": if open.is_some() { "Alert" } else { "OK" },
                "creator": {"name": "Platform Bot", "handle": "platform-bot@acme.example", "email": "platform-bot@acme.example", "id": 1_445_416},
                "matching_downtimes": [],
            })
        })
        .collect();
    let items: Vec<Value> = match number("page_size") {
        Some(size) if size > 0 => all
            .into_iter()
            .skip(number("page").unwrap_or(0) * size)
            .take(size)
            .collect(),
        _ => all,
    };
    axum::Json(items).into_response()
}

/// Metrics the simulator answers for, per service (`{service:<name>}`).
const METRICS: [&str; 5] = [
    "trace.http.request.hits",
    "trace.http.request.errors",
    "trace.http.request.duration.by.service.95p",
    "kubernetes.cpu.usage.total",
    "kubernetes.memory.usage",
];

/// `aggr:metric{scope}` with an optional `.as_count()`/`.rollup(…)` tail.
fn parse_query(query: &str) -> Option<(String, String, String)> {
    let (aggr, rest) = query.split_once(':')?;
    let (metric, rest) = rest.split_once('{')?;
    let (scope, _) = rest.split_once('}')?;
    Some((
        aggr.trim().to_owned(),
        metric.trim().to_owned(),
        scope.trim().to_owned(),
    ))
}

fn keys_ok(state: &SimState, headers: &HeaderMap) -> bool {
    let credentials = &state.options.credentials;
    let key = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    key("dd-api-key") == Some(credentials.datadog_api_key.as_str())
        && key("dd-application-key") == Some(credentials.datadog_application_key.as_str())
}

async fn query(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if !keys_ok(&state, &headers) {
        return status_response(Upstream::Datadog, StatusCode::FORBIDDEN, "Forbidden");
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bad = |message: &str| status_response(Upstream::Datadog, StatusCode::BAD_REQUEST, message);
    let (Some(from), Some(to), Some(query)) = (
        get("from").and_then(|v| v.parse::<i64>().ok()),
        get("to").and_then(|v| v.parse::<i64>().ok()),
        get("query"),
    ) else {
        return bad("Missing required parameters: from, to and query");
    };
    let Some((aggr, metric, scope)) = parse_query(query) else {
        return bad(&format!("Error parsing query: {query}"));
    };
    let now = state.now();
    let world = state.world();
    // `{service:x}` asks for one service; `{*} by {service}` for every
    // service, one series each.
    let grouped = query.contains("by {service}");
    let service = scope.strip_prefix("service:");
    let targets: Vec<(usize, &crate::world::cost::LoadProfile)> = world
        .loads
        .iter()
        .filter(|l| {
            let name = &world.org.components[l.component].datadog_service;
            if grouped {
                scope == "*" || service == Some(name.as_str())
            } else {
                service == Some(name.as_str())
            }
        })
        .map(|l| (l.component, l))
        .collect();
    // `.rollup(method, seconds)` fixes the interval; without one, hourly
    // points for short ranges and daily otherwise, as Datadog rolls up.
    let rollup = query
        .split_once(".rollup(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(args, _)| args.split(',').nth(1))
        .and_then(|seconds| seconds.trim().parse::<i64>().ok())
        .filter(|seconds| *seconds == 3_600 || *seconds == 86_400);
    let interval: i64 = match rollup {
        Some(seconds) => seconds,
        None if to - from <= 2 * 86_400 => 3_600,
        None => 86_400,
    };
    let mut series = Vec::new();
    let known = METRICS.contains(&metric.as_str());
    for (idx, profile) in targets.into_iter().filter(|_| known) {
        let service_scope = format!("service:{}", world.org.components[idx].datadog_service);
        let mut pointlist = Vec::new();
        let mut t = from - from.rem_euclid(interval);
        while t < to.min(now.timestamp()) {
            let Some(at) = DateTime::from_timestamp(t, 0) else {
                break;
            };
            if at >= world.config.start() {
                let share = interval as f64 / 86_400.0;
                let reading = world.ops_reading(profile, at, share);
                let value = match metric.as_str() {
                    "trace.http.request.hits" => reading.requests,
                    "trace.http.request.errors" => reading.errors,
                    "trace.http.request.duration.by.service.95p" => reading.latency_p95_seconds,
                    "kubernetes.cpu.usage.total" => reading.cpu_usage_cores * 1e9,
                    _ => reading.memory_usage_bytes,
                };
                pointlist.push(json!([t as f64 * 1000.0, value]));
            }
            t += interval;
        }
        let start_ms = pointlist
            .first()
            .and_then(|p| p[0].as_f64())
            .unwrap_or(from as f64 * 1000.0);
        let end_ms = pointlist
            .last()
            .and_then(|p| p[0].as_f64())
            .unwrap_or(to as f64 * 1000.0);
        series.push(json!({
            "metric": metric, "display_name": metric, "expression": query, "scope": service_scope, "aggr": aggr,
            "pointlist": pointlist.clone(), "start": start_ms as i64, "end": end_ms as i64 + interval * 1000 - 1,
            "interval": interval, "length": pointlist.len(), "query_index": 0,
            "tag_set": if grouped { json!([service_scope]) } else { json!([]) }, "attributes": {},
            "unit": null,
        }));
    }
    axum::Json(json!({
        "status": "ok", "res_type": "time_series", "resp_version": 1, "query": query,
        "from_date": from * 1000, "to_date": to * 1000, "series": series,
        "values": [], "times": [], "message": "", "group_by": [],
    }))
    .into_response()
}

/// Requests allowed per rate-limit period (Datadog's incidents default).
const RATE_LIMIT: u64 = 1_000;
/// Length of a rate-limit period, seconds.
const RATE_PERIOD: u64 = 60;

fn uuid_like(seed: u64) -> String {
    let a = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = a.rotate_left(17) ^ 0x5851_f42d_4c95_7f2d;
    format!(
        "{:08x}-{:04x}-5{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn incident_json(
    public_id: u64,
    incident: &Incident,
    service: &str,
    team: &str,
    now: DateTime<Utc>,
) -> Value {
    let resolved = incident.resolved_at <= now;
    let state = if resolved {
        "resolved"
    } else if now >= incident.detected_at {
        "active"
    } else {
        "stable"
    };
    let user = uuid_like(7);
    let seconds = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_seconds().max(0);
    let modified = if resolved {
        incident.resolved_at
    } else {
        incident.detected_at.min(now)
    };
    let deployment = if incident.explicit_link {
        json!(incident.caused_by_deployment)
    } else {
        Value::Null
    };
    json!({
        "type": "incidents",
        "id": uuid_like(public_id),
        "attributes": {
            "public_id": public_id,
            "title": incident.title,
            "resolved": if resolved { json!(timestamp(incident.resolved_at)) } else { Value::Null },
            "customer_impact_scope": if incident.customer_impacted { json!("Some customers saw errors") } else { Value::Null },
            "customer_impact_start": if incident.customer_impacted { json!(timestamp(incident.created_at)) } else { Value::Null },
            "customer_impact_end": if incident.customer_impacted && resolved { json!(timestamp(incident.resolved_at)) } else { Value::Null },
            "customer_impacted": incident.customer_impacted,
            "notification_handles": null,
            "last_modified_by_uuid": user,
            "created": timestamp(incident.created_at),
            "modified": timestamp(modified),
            "detected": timestamp(incident.detected_at),
            "created_by_uuid": user,
            "creation_idempotency_key": null,
            "customer_impact_duration": if incident.customer_impacted && resolved { seconds(incident.created_at, incident.resolved_at) } else { 0 },
            "time_to_detect": seconds(incident.created_at, incident.detected_at),
            "time_to_repair": if resolved { seconds(incident.detected_at, incident.resolved_at) } else { 0 },
            "time_to_internal_response": seconds(incident.created_at, incident.detected_at),
            "time_to_resolve": if resolved { seconds(incident.created_at, incident.resolved_at) } else { 0 },
            "fields": {
                "severity": {"type": "dropdown", "value": incident.severity},
                "detection_method": {"type": "dropdown", "value": "monitor"},
                "root_cause": {"type": "textbox", "value": null},
                "teams": {"type": "autocomplete", "value": [team]},
                "state": {"type": "dropdown", "value": state},
                "services": {"type": "autocomplete", "value": [service]},
                "summary": {"type": "textbox", "value": incident.title},
                "deployment": {"type": "textbox", "value": deployment},
            },
            "field_analytics": null,
            "severity": incident.severity,
            "state": state,
            "non_datadog_creator": null,
            "visibility": "organization",
        },
        "relationships": {
            "created_by_user": {"data": {"type": "users", "id": user}},
            "last_modified_by_user": {"data": {"type": "users", "id": user}},
            "commander_user": {"data": {"type": "users", "id": user}},
            "user_defined_fields": {"data": [{"type": "user_defined_field", "id": uuid_like(public_id + 1_000_000)}]},
            "integrations": {"data": []},
            "attachments": {"data": []},
            "responders": {"data": []},
            "impacts": {"data": []},
        },
    })
}

fn parse_page(params: &[(String, String)], name: &str) -> Option<Result<u64, ()>> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.parse::<u64>().map_err(|_| ()))
}

async fn incidents(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if !keys_ok(&state, &headers) {
        return status_response(Upstream::Datadog, StatusCode::FORBIDDEN, "Forbidden");
    }
    let size = match parse_page(&params, "page[size]") {
        None => 10,
        Some(Ok(size)) if (1..=100).contains(&size) => size,
        Some(_) => {
            return status_response(
                Upstream::Datadog,
                StatusCode::BAD_REQUEST,
                "page[size] must be between 1 and 100",
            );
        }
    };
    let offset = match parse_page(&params, "page[offset]") {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(())) => {
            return status_response(
                Upstream::Datadog,
                StatusCode::BAD_REQUEST,
                "page[offset] is not a number",
            );
        }
    };
    let now = state.now();
    let world = state.world();
    let mut all: Vec<(DateTime<Utc>, &Incident, usize)> = world
        .histories
        .iter()
        .flat_map(|h| {
            h.incidents
                .iter()
                .map(move |i| (i.created_at, i, h.component))
        })
        .filter(|(created, _, _)| *created <= now)
        .collect();
    // Public ids follow creation order, so they are stable as time moves on.
    all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    let total = all.len() as u64;
    let data: Vec<Value> = all
        .iter()
        .enumerate()
        .skip(offset as usize)
        .take(size as usize)
        .map(|(n, (_, incident, component))| {
            let component = &world.org.components[*component];
            let team = &world.org.teams[component.team].name;
            incident_json(
                n as u64 + 1,
                incident,
                &component.datadog_service,
                team,
                now,
            )
        })
        .collect();
    let mut pagination = json!({"offset": offset, "size": size});
    if offset + size < total {
        pagination["next_offset"] = json!(offset + size);
    }
    let mut response =
        axum::Json(json!({"data": data, "meta": {"pagination": pagination}})).into_response();
    let headers = response.headers_mut();
    let seconds_into_period = now.timestamp().rem_euclid(RATE_PERIOD as i64) as u64;
    headers.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    headers.insert("x-ratelimit-period", HeaderValue::from(RATE_PERIOD));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(RATE_LIMIT - 1));
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(RATE_PERIOD - seconds_into_period),
    );
    headers.insert("x-ratelimit-name", HeaderValue::from_static("incidents"));
    response
}
