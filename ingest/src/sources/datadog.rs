//! Datadog (`DD-API-KEY` + `DD-APPLICATION-KEY`, any site such as
//! `datadoghq.eu`): incidents v2 (`GET /api/v2/incidents`, offset pages
//! until `meta.pagination.next_offset` is absent) into `incidents`, with the
//! services field mapped to components (`datadoghq.com/service-name`, else
//! the component's name), the teams field to groups, and the `deployment`
//! field kept as the explicit link to the deployment that caused it.
//!
//! Incidents change after creation (state, resolution), and the list has
//! no "modified since" filter, so each run reads the list whole; unchanged
//! incidents merge as no-ops.
//!
//! Monitors (`GET /api/v1/monitor`, pages) give the alert history: each
//! poll records every monitor's state keyed by when it entered it
//! (`overall_state_modified`) into `monitor_states`, so state changes
//! accumulate and an unchanged monitor is a no-op.
//!
//! Metrics (`GET /api/v1/query`) fill `service_metrics_daily` with daily
//! points of five configurable queries (requests, errors, p95 latency, CPU,
//! memory). A query grouped `by {service}` costs one request per metric
//! per run for every service; a template with `{service}` costs one per
//! metric and service. Each run reads the complete days since the cursor
//! (the last day again, for late points); all metrics of a run decode
//! together, so a row always carries every metric of its day. The same
//! run reads requests, errors and latency of the last `hourly_days` of
//! those days hourly (`.rollup(…, 3600)`, 30 days a request: Datadog
//! caps the points of an answer) into `service_metrics_hourly`, which tells
//! which deployment of a day a change followed.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use fathom_models::tables::{
    INCIDENTS, MONITOR_STATES, SERVICE_METRICS_DAILY, SERVICE_METRICS_HOURLY,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::{HttpClient, ResetStyle};
use crate::source::{
    Collector, CommonConfig, Decoded, FetchContext, Identity, Payload, SourceError, json_kind,
    opt_str, req_i64, req_str, require_keys, send,
};

/// Streams, in order.
pub const STREAMS: &[&str] = &["incidents", "monitors", "metrics"];

/// `[[sources]] type = "datadog"`. `token_env`/`token` hold the API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatadogConfig {
    /// Name, base URL (default `https://api.<site>`), API key and HTTP
    /// policy.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Datadog site. Default `datadoghq.com`.
    #[serde(default = "default_site")]
    pub site: String,
    /// Environment variable holding the application key.
    #[serde(default)]
    pub application_key_env: Option<String>,
    /// The application key itself (for local use).
    #[serde(default)]
    pub application_key: Option<String>,
    /// Incidents per page (at most 100). Default 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The metric queries (`[sources.metrics]`).
    #[serde(default)]
    pub metrics: MetricQueries,
}

/// `[sources.metrics]`: what fills `service_metrics_daily`. Each query is
/// either grouped `by {service}` (one request for every service) or a
/// template with `{service}` (one request per service of the catalog);
/// an empty query leaves its column null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricQueries {
    /// Read metrics at all. Default true.
    pub enabled: bool,
    /// Requests per day (summed).
    pub requests: String,
    /// Failed requests per day (summed).
    pub errors: String,
    /// 95th percentile latency, seconds (daily average of the p95).
    pub latency_p95: String,
    /// CPU used (daily average), in the metric's unit.
    pub cpu: String,
    /// Factor from the CPU metric's unit to cores. Default 1e-9
    /// (`kubernetes.cpu.usage.total` is in nanocores).
    pub cpu_to_cores: f64,
    /// Memory used, bytes (daily average).
    pub memory: String,
    /// Days read on the first run. Default 30.
    pub lookback_days: u32,
    /// Of the days a run reads, the last this many are also read hourly
    /// (requests, errors, latency). Default 35; 0 reads no hourly points.
    pub hourly_days: u32,
}

impl Default for MetricQueries {
    fn default() -> Self {
        Self {
            enabled: true,
            requests: "sum:trace.http.request.hits{*} by {service}.as_count()".to_owned(),
            errors: "sum:trace.http.request.errors{*} by {service}.as_count()".to_owned(),
            latency_p95: "avg:trace.http.request.duration.by.service.95p{*} by {service}"
                .to_owned(),
            cpu: "avg:kubernetes.cpu.usage.total{*} by {service}".to_owned(),
            cpu_to_cores: 1e-9,
            memory: "avg:kubernetes.memory.usage{*} by {service}".to_owned(),
            lookback_days: 30,
            hourly_days: 35,
        }
    }
}

/// The metric columns, with how a day's points roll up.
const METRIC_COLUMNS: [(&str, &str); 5] = [
    ("request_count", "sum"),
    ("error_count", "sum"),
    ("latency_p95_seconds", "avg"),
    ("cpu_usage_cores", "avg"),
    ("memory_usage_bytes", "avg"),
];

impl MetricQueries {
    fn templates(&self) -> [&str; 5] {
        [
            &self.requests,
            &self.errors,
            &self.latency_p95,
            &self.cpu,
            &self.memory,
        ]
    }
}

/// The metrics read hourly too: the first three of [`METRIC_COLUMNS`].
const HOURLY_COLUMNS: usize = 3;

/// Seconds a day; a point of a daily rollup is one UTC day.
const DAY: i64 = 86_400;
/// Seconds an hour.
const HOUR: i64 = 3_600;
/// Days of hourly points a request asks for (720 points a series).
const HOURLY_WINDOW_DAYS: i64 = 30;

/// The query sent for `template` (and `service`, for templates) with the
/// rollup appended, so every point is one UTC day (`interval` 86400) or
/// hour (3600).
fn render(template: &str, rollup: &str, service: Option<&str>, interval: i64) -> String {
    let query = match service {
        Some(service) => template.replace("{service}", service),
        None => template.to_owned(),
    };
    format!("{query}.rollup({rollup}, {interval})")
}

fn is_template(query: &str) -> bool {
    query.contains("{service}") && !query.contains("by {service}")
}

fn default_site() -> String {
    "datadoghq.com".to_owned()
}

fn default_page_size() -> u32 {
    100
}

pub(crate) fn client(config: &DatadogConfig, name: &str) -> Result<HttpClient, SourceError> {
    let api_key = config.common.secret(name)?;
    let application_key = match (&config.application_key, &config.application_key_env) {
        (Some(key), _) => key.clone(),
        (None, Some(var)) => std::env::var(var).map_err(|_| SourceError::Config {
            source_name: name.to_owned(),
            message: format!("environment variable `{var}` (application_key_env) is not set"),
        })?,
        (None, None) => {
            return Err(SourceError::Config {
                source_name: name.to_owned(),
                message: "no application key: set `application_key_env` (or `application_key`)"
                    .to_owned(),
            });
        }
    };
    Ok(HttpClient::new(
        name,
        config.common.http.clone(),
        &[
            ("dd-api-key", api_key),
            ("dd-application-key", application_key),
        ],
        // Datadog's X-RateLimit-Reset counts seconds from now.
        ResetStyle::SecondsFromNow,
    )?)
}

pub(crate) async fn fetch(
    config: &DatadogConfig,
    client: &HttpClient,
    stream: &str,
    cursor: Option<&str>,
    ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let default_base = format!("https://api.{}", config.site);
    let base = config.common.base(Some(&default_base), client.upstream())?;
    match stream {
        "monitors" => return fetch_monitors(client, &base, stream, out).await,
        "metrics" => return fetch_metrics(config, client, &base, stream, cursor, ctx, out).await,
        _ => {}
    }
    let size = config.page_size.clamp(1, 100);
    let mut offset: u64 = 0;
    loop {
        let url = format!("{base}/api/v2/incidents?page[size]={size}&page[offset]={offset}");
        let fetched = client.get(&url, None).await?;
        send(out, stream, "incidents", &url, &fetched).await?;
        let next = serde_json::from_slice::<Value>(&fetched.body)
            .ok()
            .and_then(|b| {
                b.pointer("/meta/pagination/next_offset")
                    .and_then(Value::as_u64)
            });
        match next {
            // Guard against an upstream that repeats an offset.
            Some(next) if next > offset => offset = next,
            _ => break,
        }
    }
    Ok(None)
}

/// Monitors, a page of 100 at a time until a short page.
async fn fetch_monitors(
    client: &HttpClient,
    base: &str,
    stream: &str,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    const PAGE: usize = 100;
    for page in 0.. {
        let url = format!("{base}/api/v1/monitor?page={page}&page_size={PAGE}");
        let fetched = client.get(&url, None).await?;
        send(out, stream, "monitors", &url, &fetched).await?;
        let n = serde_json::from_slice::<Value>(&fetched.body)
            .ok()
            .and_then(|b| b.as_array().map(Vec::len))
            .unwrap_or(0);
        if n < PAGE {
            break;
        }
    }
    Ok(None)
}

/// Complete UTC days from the cursor (or the lookback) to today.
async fn fetch_metrics(
    config: &DatadogConfig,
    client: &HttpClient,
    base: &str,
    stream: &str,
    cursor: Option<&str>,
    ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let metrics = &config.metrics;
    if !metrics.enabled {
        return Ok(cursor.map(str::to_owned));
    }
    let today = Utc::now().date_naive();
    let read_until = cursor.and_then(|c| NaiveDate::parse_from_str(c, "%Y-%m-%d").ok());
    if read_until.is_some_and(|until| until >= today) {
        // Every complete day is read already.
        return Ok(cursor.map(str::to_owned));
    }
    let first = read_until
        // The last day read again: late points arrive.
        .map(|until| until - Duration::days(1))
        .or_else(|| ctx.since.map(|s| s.date_naive()))
        .unwrap_or(today - Duration::days(i64::from(metrics.lookback_days.max(1))));
    if first >= today {
        return Ok(cursor.map(str::to_owned));
    }
    let (Some(from), Some(to)) = (first.and_hms_opt(0, 0, 0), today.and_hms_opt(0, 0, 0)) else {
        return Ok(cursor.map(str::to_owned));
    };
    let (from, to) = (from.and_utc().timestamp(), to.and_utc().timestamp() - 1);
    // One unit for the whole run: the metrics of a day decode together.
    let unit = format!("metrics:{first}");
    let mut ranges = vec![(DAY, from, to)];
    if metrics.hourly_days > 0 {
        let mut start = from.max(to + 1 - i64::from(metrics.hourly_days) * DAY);
        while start <= to {
            let end = (start + HOURLY_WINDOW_DAYS * DAY - 1).min(to);
            ranges.push((HOUR, start, end));
            start = end + 1;
        }
    }
    for (interval, from, to) in ranges {
        let columns = if interval == DAY {
            METRIC_COLUMNS.len()
        } else {
            HOURLY_COLUMNS
        };
        for (template, (_, rollup)) in metrics
            .templates()
            .into_iter()
            .zip(METRIC_COLUMNS)
            .take(columns)
        {
            if template.trim().is_empty() {
                continue;
            }
            let queries: Vec<String> = if is_template(template) {
                ctx.datadog_services
                    .iter()
                    .map(|service| render(template, rollup, Some(service), interval))
                    .collect()
            } else {
                vec![render(template, rollup, None, interval)]
            };
            for query in queries {
                let mut url = url::Url::parse(&format!("{base}/api/v1/query")).map_err(|e| {
                    SourceError::Config {
                        source_name: client.upstream().to_owned(),
                        message: format!("base_url: {e}"),
                    }
                })?;
                url.query_pairs_mut()
                    .append_pair("from", &from.to_string())
                    .append_pair("to", &to.to_string())
                    .append_pair("query", &query);
                let fetched = client.get(url.as_str(), None).await?;
                send(out, stream, &unit, url.as_str(), &fetched).await?;
            }
        }
    }
    Ok(Some(today.format("%Y-%m-%d").to_string()))
}

pub(crate) fn decode(config: &DatadogConfig, stream: &str, payloads: &[Payload]) -> Decoded {
    match stream {
        "monitors" => return decode_monitors(payloads),
        "metrics" => return decode_metrics(config, payloads),
        _ => {}
    }
    let mut decoded = Decoded::default();
    for payload in payloads {
        let Some(body) = decoded.parse(payload) else {
            continue;
        };
        let Some(data) = body.get("data").and_then(Value::as_array) else {
            decoded.reject(
                payload,
                None,
                "the answer has no `data` list".to_owned(),
                &body,
            );
            continue;
        };
        for (i, incident) in data.iter().enumerate() {
            match incident_row(config, incident) {
                Ok((values, identity)) => decoded.row(&INCIDENTS, values, identity),
                Err(reason) => decoded.reject(payload, Some(i as i64 + 1), reason, incident),
            }
        }
    }
    decoded
}

/// The first value of an incident field (`fields.<name>.value`), which is
/// a string for dropdowns and a list for autocomplete fields.
fn field<'a>(attributes: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match attributes.pointer(&format!("/fields/{name}/value")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Array(values)) => Ok(values.iter().find_map(Value::as_str)),
        Some(other) => Err(format!(
            "field `fields.{name}.value` should be text or a list, found {}",
            json_kind(other)
        )),
    }
}

fn incident_row(
    config: &DatadogConfig,
    incident: &Value,
) -> Result<(Map<String, Value>, Vec<Identity>), String> {
    require_keys(incident, &["id", "type", "attributes"])?;
    let attributes = &incident["attributes"];
    require_keys(
        attributes,
        &[
            "public_id",
            "title",
            "created",
            "resolved",
            "customer_impacted",
        ],
    )?;
    let public_id = req_i64(attributes, "/public_id")?;
    let created = req_str(attributes, "/created")?;
    // Impact start when known, else when the incident was declared.
    let started = opt_str(attributes, "/customer_impact_start")?.unwrap_or(created);
    let service = field(attributes, "services")?;
    let team = field(attributes, "teams")?;
    let state = field(attributes, "state")?.or(opt_str(attributes, "/state")?);
    let severity = field(attributes, "severity")?.or(opt_str(attributes, "/severity")?);
    // Not a default field: organisations that track the running version of
    // the affected service add one named `version`.
    let version = field(attributes, "version")?;
    let impacted = match attributes.get("customer_impacted") {
        Some(Value::Bool(b)) => Some(*b),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(format!(
                "field `attributes.customer_impacted` should be a boolean, found {}",
                json_kind(other)
            ));
        }
    };
    let mut values = Map::new();
    values.insert("incident_id".into(), json!(format!("datadog:{public_id}")));
    values.insert("source".into(), json!("datadog"));
    values.insert("title".into(), json!(req_str(attributes, "/title")?));
    values.insert("version".into(), json!(version));
    values.insert("severity".into(), json!(severity));
    values.insert("state".into(), json!(state));
    values.insert("team_ref".into(), json!(team));
    values.insert("created_at".into(), json!(started));
    values.insert(
        "detected_at".into(),
        json!(opt_str(attributes, "/detected")?),
    );
    values.insert(
        "resolved_at".into(),
        json!(opt_str(attributes, "/resolved")?),
    );
    values.insert("customer_impacted".into(), json!(impacted));
    values.insert(
        "caused_by_deployment_id".into(),
        json!(field(attributes, "deployment")?),
    );
    values.insert(
        "url".into(),
        json!(format!("https://app.{}/incidents/{public_id}", config.site)),
    );
    let identity = service
        .map(|s| vec![Identity::DatadogService(s.to_owned())])
        .unwrap_or_default();
    Ok((values, identity))
}

fn decode_monitors(payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    for payload in payloads {
        let Some(body) = decoded.parse(payload) else {
            continue;
        };
        let Some(monitors) = body.as_array() else {
            decoded.reject(
                payload,
                None,
                "the answer is not a list of monitors".to_owned(),
                &body,
            );
            continue;
        };
        for (i, monitor) in monitors.iter().enumerate() {
            match monitor_row(monitor) {
                Ok((values, identity)) => decoded.row(&MONITOR_STATES, values, identity),
                Err(reason) => decoded.reject(payload, Some(i as i64 + 1), reason, monitor),
            }
        }
    }
    decoded
}

fn monitor_row(monitor: &Value) -> Result<(Map<String, Value>, Vec<Identity>), String> {
    require_keys(monitor, &["id", "name", "overall_state", "tags"])?;
    let id = req_i64(monitor, "/id")?;
    let state = req_str(monitor, "/overall_state")?;
    // Datadog omits the change time of a monitor that never changed.
    let changed = opt_str(monitor, "/overall_state_modified")?
        .or(opt_str(monitor, "/created")?)
        .ok_or("required field `overall_state_modified` is missing")?;
    let tags: Vec<&str> = match &monitor["tags"] {
        Value::Array(tags) => tags.iter().filter_map(Value::as_str).collect(),
        Value::Null => Vec::new(),
        other => {
            return Err(format!(
                "field `tags` should be a list, found {}",
                json_kind(other)
            ));
        }
    };
    let service = tags.iter().find_map(|t| t.strip_prefix("service:"));
    let priority = match monitor.get("priority") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(other) => {
            return Err(format!(
                "field `priority` should be a number, found {}",
                json_kind(other)
            ));
        }
    };
    let mut values = Map::new();
    values.insert("source".into(), json!("datadog"));
    values.insert("monitor_id".into(), json!(id.to_string()));
    values.insert("state_changed_at".into(), json!(changed));
    values.insert("state".into(), json!(state));
    values.insert("name".into(), json!(req_str(monitor, "/name")?));
    values.insert("service_name".into(), json!(service));
    values.insert("priority".into(), json!(priority));
    values.insert("tags".into(), json!(tags));
    let identity = service
        .map(|s| vec![Identity::DatadogService(s.to_owned())])
        .unwrap_or_default();
    Ok((values, identity))
}

/// The `query` parameter of a payload's request.
fn request_query(payload: &Payload) -> Option<String> {
    let url = url::Url::parse(payload.request.strip_prefix("GET ")?).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
}

/// The service a series is for: its `service:` tag, else its scope.
fn series_service(series: &Value) -> Option<String> {
    let from_tags = series["tag_set"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix("service:"));
    from_tags
        .or_else(|| {
            series["scope"]
                .as_str()
                .and_then(|s| s.split(',').find_map(|t| t.trim().strip_prefix("service:")))
        })
        .map(str::to_owned)
}

fn decode_metrics(config: &DatadogConfig, payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    let templates = config.metrics.templates();
    // (interval, service, day or hour) → the metrics of that day or hour.
    let mut rows_at: std::collections::BTreeMap<(i64, String, String), Map<String, Value>> =
        std::collections::BTreeMap::new();
    for payload in payloads {
        let Some(body) = decoded.parse(payload) else {
            continue;
        };
        if body["status"].as_str().is_some_and(|s| s != "ok") {
            let reason = format!(
                "the query failed: {}",
                body["error"].as_str().unwrap_or("no error message")
            );
            decoded.reject(payload, None, reason, &body);
            continue;
        }
        let Some(series) = body["series"].as_array() else {
            decoded.reject(
                payload,
                None,
                "the answer has no `series` list".to_owned(),
                &body,
            );
            continue;
        };
        let query = request_query(payload).unwrap_or_default();
        for (i, one) in series.iter().enumerate() {
            let service = series_service(one);
            // Which column and interval: the template whose rendering is
            // this query.
            let column = [DAY, HOUR]
                .into_iter()
                .flat_map(|interval| {
                    templates
                        .iter()
                        .zip(METRIC_COLUMNS)
                        .take(if interval == DAY {
                            METRIC_COLUMNS.len()
                        } else {
                            HOURLY_COLUMNS
                        })
                        .map(move |(template, column)| (interval, template, column))
                })
                .find(|(interval, template, (_, rollup))| {
                    !template.trim().is_empty()
                        && render(
                            template,
                            rollup,
                            service.as_deref().filter(|_| is_template(template)),
                            *interval,
                        ) == query
                })
                .map(|(interval, _, (column, _))| (interval, column));
            let (Some(service), Some((interval, column))) = (service, column) else {
                decoded.reject(
                    payload,
                    Some(i as i64 + 1),
                    "a series with no `service:` tag, or of a query not configured".to_owned(),
                    one,
                );
                continue;
            };
            let Some(points) = one["pointlist"].as_array() else {
                decoded.reject(
                    payload,
                    Some(i as i64 + 1),
                    "the series has no `pointlist`".to_owned(),
                    one,
                );
                continue;
            };
            for point in points {
                let (Some(ms), value) = (point.get(0).and_then(Value::as_f64), point.get(1)) else {
                    decoded.reject(
                        payload,
                        Some(i as i64 + 1),
                        format!("malformed point {point}"),
                        one,
                    );
                    continue;
                };
                let Some(day) = DateTime::from_timestamp_millis(ms as i64) else {
                    decoded.reject(
                        payload,
                        Some(i as i64 + 1),
                        format!("point time {ms} out of range"),
                        one,
                    );
                    continue;
                };
                let value = match value {
                    Some(Value::Number(n)) => n.as_f64(),
                    // Datadog writes null for a point without data.
                    _ => None,
                };
                let value = match (column, value) {
                    (_, None) => Value::Null,
                    ("request_count" | "error_count", Some(v)) => json!(v.round() as i64),
                    ("cpu_usage_cores", Some(v)) => json!(v * config.metrics.cpu_to_cores),
                    (_, Some(v)) => json!(v),
                };
                let (key, at) = if interval == DAY {
                    ("date", day.date_naive().format("%Y-%m-%d").to_string())
                } else {
                    ("hour", day.format("%Y-%m-%dT%H:00:00Z").to_string())
                };
                let row = rows_at
                    .entry((interval, service.clone(), at.clone()))
                    .or_insert_with(|| {
                        let mut row = Map::new();
                        row.insert(key.into(), json!(at));
                        row.insert("source".into(), json!("datadog"));
                        row.insert("service_name".into(), json!(service));
                        row
                    });
                row.insert(column.into(), value);
            }
        }
    }
    for ((interval, service, _), values) in rows_at {
        let table = if interval == DAY {
            &SERVICE_METRICS_DAILY
        } else {
            &SERVICE_METRICS_HOURLY
        };
        decoded.row(table, values, vec![Identity::DatadogService(service)]);
    }
    decoded
}

crate::source::api_source!(DatadogConfig, fathom_models::tables::RAW_DATADOG);
