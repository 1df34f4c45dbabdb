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

use fathom_models::tables::INCIDENTS;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::{HttpClient, ResetStyle};
use crate::source::{
    Collector, CommonConfig, Decoded, FetchContext, Identity, Payload, SourceError, json_kind,
    opt_str, req_i64, req_str, require_keys, send,
};

/// Streams, in order.
pub const STREAMS: &[&str] = &["incidents"];

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
    _cursor: Option<&str>,
    _ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let default_base = format!("https://api.{}", config.site);
    let base = config.common.base(Some(&default_base), client.upstream())?;
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

pub(crate) fn decode(config: &DatadogConfig, _stream: &str, payloads: &[Payload]) -> Decoded {
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
