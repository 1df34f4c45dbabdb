//! OpenCost: `GET /allocation/compute` — `window` (RFC 3339 or Unix pairs,
//! `Nd`, `today`, `yesterday`), `aggregate` (namespace, controller,
//! controllerKind, cluster, `label:<name>`, or a comma list), `step`
//! (`1d` or the whole window) and `accumulate`. Numbers are rounded to six
//! decimals as OpenCost prints them, `__idle__` and `__unallocated__` are
//! allocations of their own, and bad parameters are reported the way some
//! OpenCost versions do: HTTP 200 with an error `code` in the body.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::SimState;
use crate::world::cost::{DailyLoad, GIB, day_start};
use crate::world::rfc3339;

pub(super) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/allocation/compute", get(compute))
        .route("/allocation", get(compute))
}

/// The cluster every simulated workload runs in.
pub const CLUSTER: &str = "cluster-one";

/// Share of the cluster's cost that is idle capacity.
const IDLE_SHARE: f64 = 0.25;

fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// One workload-day before aggregation.
struct Workload {
    properties: BTreeMap<&'static str, String>,
    labels: BTreeMap<String, String>,
    load: DailyLoad,
}

fn workloads(state: &SimState, date: NaiveDate) -> Vec<Workload> {
    let world = state.world();
    let config = &world.config;
    let mut out: Vec<Workload> = world
        .loads
        .iter()
        .map(|profile| {
            let component = &world.org.components[profile.component];
            let load = profile.day(config, date);
            Workload {
                properties: BTreeMap::from([
                    ("cluster", CLUSTER.to_owned()),
                    ("namespace", component.k8s_namespace.clone()),
                    ("controller", component.name.clone()),
                    ("controllerKind", "deployment".to_owned()),
                ]),
                labels: BTreeMap::from([
                    ("app".to_owned(), component.name.clone()),
                    (
                        "team".to_owned(),
                        world.org.teams[component.team].name.clone(),
                    ),
                ]),
                load,
            }
        })
        .collect();
    // A batch namespace nobody claims in the catalog.
    for namespace in &world.org.unowned_namespaces {
        out.push(Workload {
            properties: BTreeMap::from([
                ("cluster", CLUSTER.to_owned()),
                ("namespace", namespace.clone()),
                ("controller", "nightly-export".to_owned()),
                ("controllerKind", "cronjob".to_owned()),
            ]),
            labels: BTreeMap::new(),
            load: DailyLoad {
                date,
                requests: 0.0,
                cpu_request_cores: 2.0,
                ram_request_bytes: 4.0 * GIB,
                cpu_usage_cores: 1.5,
                ram_usage_bytes: 3.0 * GIB,
                cpu_cost_usd: 2.0 * 24.0 * crate::world::cost::CPU_CORE_HOUR_USD,
                ram_cost_usd: 4.0 * 24.0 * crate::world::cost::RAM_GIB_HOUR_USD,
                pv_cost_usd: 1.2,
                network_cost_usd: 0.05,
            },
        });
    }
    out
}

/// The aggregate key of a workload, or `__unallocated__` when it lacks the
/// property (a pod without the label, say).
fn aggregate_key(workload: &Workload, aggregate: &[String]) -> String {
    let parts: Vec<String> = aggregate
        .iter()
        .map(|a| {
            let value = match a.as_str() {
                "controller" => workload.properties.get("controller").map(|c| {
                    format!(
                        "{}:{c}",
                        workload
                            .properties
                            .get("controllerKind")
                            .map_or("", String::as_str)
                    )
                }),
                other => match other.strip_prefix("label:") {
                    Some(label) => workload.labels.get(label).cloned(),
                    None => workload.properties.get(other).cloned(),
                },
            };
            value.unwrap_or_else(|| "__unallocated__".to_owned())
        })
        .collect();
    if parts.iter().all(|p| p == "__unallocated__") {
        "__unallocated__".to_owned()
    } else {
        parts.join("/")
    }
}

#[derive(Default)]
struct Sums {
    cpu_cost: f64,
    ram_cost: f64,
    pv_cost: f64,
    network_cost: f64,
    cpu_request: f64,
    cpu_usage: f64,
    ram_request: f64,
    ram_usage: f64,
    properties: BTreeMap<&'static str, String>,
    labels: BTreeMap<String, String>,
}

fn allocation(name: &str, sums: &Sums, start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
    let minutes = (end - start).num_minutes() as f64;
    let hours = minutes / 60.0;
    let total = sums.cpu_cost + sums.ram_cost + sums.pv_cost + sums.network_cost;
    let efficiency = |used: f64, requested: f64| {
        if requested > 0.0 {
            round6(used / requested)
        } else {
            0.0
        }
    };
    let cpu_efficiency = efficiency(sums.cpu_usage, sums.cpu_request);
    let ram_efficiency = efficiency(sums.ram_usage, sums.ram_request);
    let compute_cost = sums.cpu_cost + sums.ram_cost;
    let total_efficiency = if compute_cost > 0.0 {
        round6((cpu_efficiency * sums.cpu_cost + ram_efficiency * sums.ram_cost) / compute_cost)
    } else {
        0.0
    };
    let mut properties: Map<String, Value> = sums
        .properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    if !sums.labels.is_empty() {
        properties.insert("labels".into(), json!(sums.labels));
    }
    json!({
        "name": name,
        "properties": properties,
        "window": {"start": rfc3339(start), "end": rfc3339(end)},
        "start": rfc3339(start), "end": rfc3339(end), "minutes": round6(minutes),
        "cpuCores": round6(sums.cpu_request), "cpuCoreRequestAverage": round6(sums.cpu_request),
        "cpuCoreUsageAverage": round6(sums.cpu_usage), "cpuCoreHours": round6(sums.cpu_request * hours),
        "cpuCost": round6(sums.cpu_cost), "cpuCostAdjustment": 0.0, "cpuEfficiency": cpu_efficiency,
        "gpuCount": 0.0, "gpuHours": 0.0, "gpuCost": 0.0, "gpuCostAdjustment": 0.0,
        "networkTransferBytes": round6(sums.network_cost / 1e-10), "networkReceiveBytes": 0.0,
        "networkCost": round6(sums.network_cost), "networkCostAdjustment": 0.0,
        "loadBalancerCost": 0.0, "loadBalancerCostAdjustment": 0.0,
        "pvBytes": if sums.pv_cost > 0.0 { 10.0 * GIB } else { 0.0 }, "pvByteHours": if sums.pv_cost > 0.0 { 10.0 * GIB * hours } else { 0.0 },
        "pvCost": round6(sums.pv_cost), "pvs": null, "pvCostAdjustment": 0.0,
        "ramBytes": round6(sums.ram_request), "ramByteRequestAverage": round6(sums.ram_request),
        "ramByteUsageAverage": round6(sums.ram_usage), "ramByteHours": round6(sums.ram_request * hours),
        "ramCost": round6(sums.ram_cost), "ramCostAdjustment": 0.0, "ramEfficiency": ram_efficiency,
        "sharedCost": 0.0, "externalCost": 0.0, "totalCost": round6(total), "totalEfficiency": total_efficiency,
        "rawAllocationOnly": null,
    })
}

/// Allocations of one window (whole days), aggregated.
fn allocation_set(
    state: &SimState,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    aggregate: &[String],
) -> Map<String, Value> {
    let world = state.world();
    let first = world.config.start();
    let last = state.now().min(world.config.end());
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    let mut day = start.date_naive();
    let mut n_days = 0.0;
    let mut cluster_total = 0.0;
    while day_start(day) < end {
        if day_start(day) >= first && day_start(day) + Duration::days(1) <= last {
            n_days += 1.0;
            for workload in workloads(state, day) {
                let key = aggregate_key(&workload, aggregate);
                let sums = groups.entry(key).or_default();
                sums.cpu_cost += workload.load.cpu_cost_usd;
                sums.ram_cost += workload.load.ram_cost_usd;
                sums.pv_cost += workload.load.pv_cost_usd;
                sums.network_cost += workload.load.network_cost_usd;
                sums.cpu_request += workload.load.cpu_request_cores;
                sums.cpu_usage += workload.load.cpu_usage_cores;
                sums.ram_request += workload.load.ram_request_bytes;
                sums.ram_usage += workload.load.ram_usage_bytes;
                cluster_total += workload.load.total_cost_usd();
                // Keep the properties all members share.
                if sums.properties.is_empty() && sums.labels.is_empty() {
                    sums.properties = workload.properties.clone();
                    sums.labels = workload.labels.clone();
                } else {
                    sums.properties
                        .retain(|k, v| workload.properties.get(k) == Some(v));
                    sums.labels.retain(|k, v| workload.labels.get(k) == Some(v));
                }
            }
        }
        day += Duration::days(1);
    }
    if n_days == 0.0 {
        return Map::new();
    }
    // Averages of requests and usage over the days, sums of cost.
    for sums in groups.values_mut() {
        sums.cpu_request /= n_days;
        sums.cpu_usage /= n_days;
        sums.ram_request /= n_days;
        sums.ram_usage /= n_days;
    }
    let idle_cost = cluster_total * IDLE_SHARE / (1.0 - IDLE_SHARE);
    groups.insert(
        "__idle__".to_owned(),
        Sums {
            cpu_cost: idle_cost * 0.8,
            ram_cost: idle_cost * 0.2,
            properties: BTreeMap::from([("cluster", CLUSTER.to_owned())]),
            ..Sums::default()
        },
    );
    groups
        .iter()
        .map(|(name, sums)| (name.clone(), allocation(name, sums, start, end)))
        .collect()
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            text.trim()
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
        })
}

fn parse_window(window: &str, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let today = day_start(now.date_naive());
    match window {
        "today" => return Some((today, now)),
        "yesterday" => return Some((today - Duration::days(1), today)),
        _ => {}
    }
    if let Some(days) = window.strip_suffix('d').and_then(|d| d.parse::<i64>().ok()) {
        return Some((now - Duration::days(days), now));
    }
    let (start, end) = window.split_once(',')?;
    let (start, end) = (parse_instant(start)?, parse_instant(end)?);
    (start < end).then_some((start, end))
}

fn error_in_body(message: &str) -> Response {
    axum::Json(json!({"code": 400, "status": "error", "message": message})).into_response()
}

async fn compute(
    State(state): State<Arc<SimState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(window) = get("window") else {
        return error_in_body("Missing window argument");
    };
    let Some((start, end)) = parse_window(window, state.now()) else {
        return error_in_body(&format!("Invalid window parameter: {window}"));
    };
    let aggregate: Vec<String> = get("aggregate")
        .unwrap_or("namespace")
        .split(',')
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    for a in &aggregate {
        let known = matches!(
            a.as_str(),
            "cluster" | "namespace" | "controller" | "controllerKind"
        ) || a.starts_with("label:");
        if !known {
            return error_in_body(&format!("Invalid aggregation parameter: {a}"));
        }
    }
    let accumulate = get("accumulate").is_some_and(|a| a == "true");
    let step = match get("step") {
        None => end - start,
        Some("1d") | Some("24h") => Duration::days(1),
        Some(other) => return error_in_body(&format!("Unsupported step: {other} (use 1d)")),
    };
    let mut sets = Vec::new();
    if accumulate {
        sets.push(Value::Object(allocation_set(
            &state, start, end, &aggregate,
        )));
    } else {
        let mut from = start;
        while from < end {
            let to = (from + step).min(end);
            sets.push(Value::Object(allocation_set(&state, from, to, &aggregate)));
            from = to;
        }
    }
    axum::Json(json!({"code": 200, "status": "success", "data": sets})).into_response()
}
