//! OpenCost: `GET /allocation/compute`, one request per UTC day (`window`
//! of that day, `step=1d`, `accumulate=false`), aggregated by namespace
//! and controller (configurable, labels too) into `cost_allocations_daily`.
//! Namespaces map to components through `backstage.io/kubernetes-namespace`;
//! `__idle__` and `__unallocated__` stay rows of their own, unattributed.
//!
//! Some OpenCost versions report bad requests as HTTP 200 with an error
//! `code` in the body: that is a failed request here, never an empty day.
//! The cursor is the last day that had allocations, so days the cluster
//! has not finished yet are read again next time; empty days before the
//! first one with data are skipped.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use fathom_models::tables::COST_ALLOCATIONS_DAILY;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::{HttpClient, ResetStyle};
use crate::source::{
    Collector, CommonConfig, Decoded, FetchContext, Identity, Payload, SourceError, json_kind,
    opt_str, req_str, send,
};

/// Streams, in order.
pub const STREAMS: &[&str] = &["allocations"];

/// `[[sources]] type = "opencost"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenCostConfig {
    /// Name, base URL (e.g. `http://opencost.opencost:9003`), optional
    /// bearer token (behind an authenticating proxy) and HTTP policy.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// `aggregate` parameter. Default `namespace,controller`.
    #[serde(default = "default_aggregate")]
    pub aggregate: String,
    /// Days read on a first run without `--since`. Default 90.
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
}

fn default_aggregate() -> String {
    "namespace,controller".to_owned()
}

fn default_lookback() -> u32 {
    90
}

pub(crate) fn client(config: &OpenCostConfig, name: &str) -> Result<HttpClient, SourceError> {
    let headers: Vec<(&str, String)> =
        if config.common.token.is_some() || config.common.token_env.is_some() {
            vec![(
                "authorization",
                format!("Bearer {}", config.common.secret(name)?),
            )]
        } else {
            Vec::new()
        };
    Ok(HttpClient::new(
        name,
        config.common.http.clone(),
        &headers,
        ResetStyle::SecondsFromNow,
    )?)
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

pub(crate) async fn fetch(
    config: &OpenCostConfig,
    client: &HttpClient,
    stream: &str,
    cursor: Option<&str>,
    ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let base = config.common.base(None, client.upstream())?;
    let today = Utc::now().date_naive();
    let last_done = cursor.and_then(|c| c.parse::<NaiveDate>().ok());
    let mut day = match (last_done, ctx.since) {
        (Some(done), _) => done + Duration::days(1),
        (None, Some(since)) => since.date_naive(),
        (None, None) => today - Duration::days(i64::from(config.lookback_days)),
    };
    let mut newest = last_done;
    let aggregate: String =
        url::form_urlencoded::byte_serialize(config.aggregate.as_bytes()).collect();
    while day < today {
        let (start, end) = (day_start(day), day_start(day + Duration::days(1)));
        let url = format!(
            "{base}/allocation/compute?window={},{}&aggregate={aggregate}&step=1d&accumulate=false",
            start.format("%Y-%m-%dT%H:%M:%SZ"),
            end.format("%Y-%m-%dT%H:%M:%SZ"),
        );
        let fetched = client.get(&url, None).await?;
        let body: Value = serde_json::from_slice(&fetched.body).unwrap_or(Value::Null);
        if let Some(code) = body.get("code").and_then(Value::as_i64)
            && code != 200
        {
            return Err(SourceError::Refused {
                source_name: client.upstream().to_owned(),
                message: format!(
                    "OpenCost answered code {code} for {url}: {}",
                    body.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("no message")
                ),
            });
        }
        let has_allocations = body
            .get("data")
            .and_then(Value::as_array)
            .is_some_and(|steps| {
                steps
                    .iter()
                    .any(|s| s.as_object().is_some_and(|m| !m.is_empty()))
            });
        if !has_allocations {
            if newest.is_some() {
                // The cluster has nothing for this day yet: stop here and
                // read it again next time.
                break;
            }
            // Before the cluster's first day: keep looking.
            day += Duration::days(1);
            continue;
        }
        send(out, stream, &day.to_string(), &url, &fetched).await?;
        newest = Some(day);
        out.checkpoint(newest.map(|d| d.to_string())).await?;
        day += Duration::days(1);
    }
    Ok(newest.map(|d| d.to_string()))
}

fn number(allocation: &Value, key: &str) -> Result<Option<f64>, String> {
    match allocation.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(format!(
            "field `{key}` should be a number, found {}",
            json_kind(other)
        )),
    }
}

fn sum(allocation: &Value, keys: &[&str]) -> Result<Option<f64>, String> {
    let mut total = None;
    for key in keys {
        if let Some(value) = number(allocation, key)? {
            total = Some(total.unwrap_or(0.0) + value);
        }
    }
    Ok(total)
}

pub(crate) fn decode(_config: &OpenCostConfig, _stream: &str, payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    for payload in payloads {
        let Some(body) = decoded.parse(payload) else {
            continue;
        };
        // A list with one map per step; accumulated answers send the map
        // alone.
        let steps: Vec<&Value> = match body.get("data") {
            Some(Value::Array(steps)) => steps.iter().collect(),
            Some(map @ Value::Object(_)) => vec![map],
            _ => {
                decoded.reject(
                    payload,
                    None,
                    "the answer has no `data` list".to_owned(),
                    &body,
                );
                continue;
            }
        };
        let mut position = 0;
        for step in steps {
            let Some(allocations) = step.as_object() else {
                continue;
            };
            for (name, allocation) in allocations {
                position += 1;
                match allocation_row(name, allocation) {
                    Ok((values, identity)) => {
                        decoded.row(&COST_ALLOCATIONS_DAILY, values, identity)
                    }
                    Err(reason) => decoded.reject(payload, Some(position), reason, allocation),
                }
            }
        }
    }
    decoded
}

fn allocation_row(
    name: &str,
    allocation: &Value,
) -> Result<(Map<String, Value>, Vec<Identity>), String> {
    let start = req_str(allocation, "/start")?;
    let date = DateTime::parse_from_rfc3339(start)
        .map_err(|e| format!("`start` {start:?} is not a time: {e}"))?
        .with_timezone(&Utc)
        .date_naive();
    let properties = allocation.get("properties").cloned().unwrap_or(Value::Null);
    let namespace = opt_str(&properties, "/namespace")?;
    let controller_kind = opt_str(&properties, "/controllerKind")?;
    let controller = opt_str(&properties, "/controller")?;
    let total = number(allocation, "totalCost")?.ok_or("required field `totalCost` is missing")?;
    let mut values = Map::new();
    values.insert("date".into(), json!(date.to_string()));
    values.insert(
        "cluster".into(),
        json!(opt_str(&properties, "/cluster")?.unwrap_or("default")),
    );
    values.insert("allocation_name".into(), json!(name));
    values.insert("namespace".into(), json!(namespace));
    values.insert("controller_kind".into(), json!(controller_kind));
    values.insert("controller_name".into(), json!(controller));
    values.insert(
        "cpu_cost_usd".into(),
        json!(sum(allocation, &["cpuCost", "cpuCostAdjustment"])?),
    );
    values.insert(
        "ram_cost_usd".into(),
        json!(sum(allocation, &["ramCost", "ramCostAdjustment"])?),
    );
    values.insert(
        "gpu_cost_usd".into(),
        json!(sum(allocation, &["gpuCost", "gpuCostAdjustment"])?),
    );
    values.insert(
        "pv_cost_usd".into(),
        json!(sum(allocation, &["pvCost", "pvCostAdjustment"])?),
    );
    values.insert(
        "network_cost_usd".into(),
        json!(sum(allocation, &["networkCost", "networkCostAdjustment"])?),
    );
    values.insert(
        "shared_cost_usd".into(),
        json!(number(allocation, "sharedCost")?),
    );
    values.insert("total_cost_usd".into(), json!(total));
    values.insert(
        "cpu_request_cores".into(),
        json!(number(allocation, "cpuCoreRequestAverage")?),
    );
    values.insert(
        "cpu_usage_cores".into(),
        json!(number(allocation, "cpuCoreUsageAverage")?),
    );
    values.insert(
        "ram_request_bytes".into(),
        json!(number(allocation, "ramByteRequestAverage")?),
    );
    values.insert(
        "ram_usage_bytes".into(),
        json!(number(allocation, "ramByteUsageAverage")?),
    );
    values.insert(
        "cpu_efficiency".into(),
        json!(number(allocation, "cpuEfficiency")?),
    );
    values.insert(
        "ram_efficiency".into(),
        json!(number(allocation, "ramEfficiency")?),
    );
    values.insert(
        "total_efficiency".into(),
        json!(number(allocation, "totalEfficiency")?),
    );
    values.insert(
        "labels".into(),
        properties.get("labels").cloned().unwrap_or(Value::Null),
    );
    // `__idle__` and `__unallocated__` belong to no component.
    let identity = match namespace {
        Some(ns) if !name.starts_with("__") => vec![Identity::Namespace(ns.to_owned())],
        _ => Vec::new(),
    };
    Ok((values, identity))
}

crate::source::api_source!(OpenCostConfig, fathom_models::tables::RAW_OPENCOST);
