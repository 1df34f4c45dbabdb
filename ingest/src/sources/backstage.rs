//! Backstage software catalog: every entity through
//! `GET /api/catalog/entities/by-query` (cursor pagination, bearer token)
//! into `catalog_entities`, and their relations (ownership, membership,
//! group hierarchy, system parts) into `entity_relations`.
//!
//! The catalog is small and has no "changed since" filter, so each run
//! reads it whole; identical rows merge as no-ops, so a quiet catalog
//! changes nothing in the warehouse.

use fathom_models::tables::{CATALOG_ENTITIES, ENTITY_RELATIONS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::{HttpClient, ResetStyle};
use crate::source::{
    Collector, CommonConfig, Decoded, FetchContext, Payload, SourceError, opt_str, req_str, send,
};

/// Streams, in order.
pub const STREAMS: &[&str] = &["entities"];

/// `[[sources]] type = "backstage"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackstageConfig {
    /// Name, base URL (the backend, e.g. `https://backstage.example.com`),
    /// credential and HTTP policy.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Entities per page. Default 500.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Catalog filters (`kind=component`, …); default: every entity.
    #[serde(default)]
    pub filters: Vec<String>,
}

fn default_page_size() -> u32 {
    500
}

pub(crate) fn client(config: &BackstageConfig, name: &str) -> Result<HttpClient, SourceError> {
    let token = config.common.secret(name)?;
    Ok(HttpClient::new(
        name,
        config.common.http.clone(),
        &[("authorization", format!("Bearer {token}"))],
        ResetStyle::SecondsFromNow,
    )?)
}

pub(crate) async fn fetch(
    config: &BackstageConfig,
    client: &HttpClient,
    stream: &str,
    _cursor: Option<&str>,
    _ctx: &FetchContext,
    out: &Collector,
) -> Result<Option<String>, SourceError> {
    let base = config.common.base(None, client.upstream())?;
    let mut query = vec![format!("limit={}", config.page_size.max(1))];
    for filter in &config.filters {
        query.push(format!("filter={}", urlencode(filter)));
    }
    let first = format!("{base}/api/catalog/entities/by-query?{}", query.join("&"));
    let mut url = first;
    loop {
        let fetched = client.get(&url, None).await?;
        send(out, stream, "catalog", &url, &fetched).await?;
        let next = serde_json::from_slice::<Value>(&fetched.body)
            .ok()
            .and_then(|v| {
                v.pointer("/pageInfo/nextCursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        match next {
            Some(cursor) => {
                url = format!(
                    "{base}/api/catalog/entities/by-query?limit={}&cursor={}",
                    config.page_size.max(1),
                    urlencode(&cursor)
                );
            }
            None => break,
        }
    }
    Ok(None)
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub(crate) fn decode(_config: &BackstageConfig, _stream: &str, payloads: &[Payload]) -> Decoded {
    let mut decoded = Decoded::default();
    for payload in payloads {
        let Some(body) = decoded.parse(payload) else {
            continue;
        };
        let Some(items) = body.get("items").and_then(Value::as_array) else {
            decoded.reject(
                payload,
                None,
                "the answer has no `items` list".to_owned(),
                &body,
            );
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            if let Err(reason) = entity(item, &mut decoded, "backstage") {
                decoded.reject(payload, Some(i as i64 + 1), reason, item);
            }
        }
    }
    decoded
}

/// A ref as Backstage writes it in relations and specs, made canonical:
/// `kind:namespace/name`, lower-case, defaults filled in.
fn canonical(reference: &str, default_kind: &str, default_namespace: &str) -> Option<String> {
    fathom_models::EntityRef::parse_with_defaults(reference, Some(default_kind), default_namespace)
        .ok()
        .map(|r| r.to_string())
}

/// Decodes one catalog entity (as the catalog API or a `catalog-info.yaml`
/// gives it) into its row and its relations; `origin` says where it was
/// read.
pub(crate) fn entity(item: &Value, decoded: &mut Decoded, origin: &str) -> Result<(), String> {
    crate::source::require_keys(item, &["apiVersion", "kind", "metadata", "spec"])?;
    let kind = req_str(item, "/kind")?.to_ascii_lowercase();
    let name = req_str(item, "/metadata/name")?.to_ascii_lowercase();
    let namespace = opt_str(item, "/metadata/namespace")?
        .unwrap_or("default")
        .to_ascii_lowercase();
    let entity_ref = format!("{kind}:{namespace}/{name}");
    let spec = item.get("spec").cloned().unwrap_or(Value::Null);
    let owner = opt_str(&spec, "/owner")?.and_then(|o| canonical(o, "group", &namespace));
    let system = opt_str(&spec, "/system")?.and_then(|s| canonical(s, "system", &namespace));
    let domain = opt_str(&spec, "/domain")?.and_then(|d| canonical(d, "domain", &namespace));
    let parent = opt_str(&spec, "/parent")?.and_then(|p| canonical(p, "group", &namespace));
    let tags = match item.pointer("/metadata/tags") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(tags)) => Value::Array(tags.clone()),
        Some(other) => {
            return Err(format!(
                "`metadata.tags` should be a list, found {}",
                crate::source::json_kind(other)
            ));
        }
    };
    let object = |pointer: &str| -> Result<Value, String> {
        match item.pointer(pointer) {
            None | Some(Value::Null) => Ok(Value::Null),
            Some(Value::Object(map)) => Ok(Value::Object(map.clone())),
            Some(other) => Err(format!(
                "`{}` should be an object, found {}",
                pointer.trim_start_matches('/').replace('/', "."),
                crate::source::json_kind(other)
            )),
        }
    };
    let labels = object("/metadata/labels")?;
    let annotations = object("/metadata/annotations")?;
    let mut values = Map::new();
    values.insert("entity_ref".into(), json!(entity_ref));
    values.insert("kind".into(), json!(kind));
    values.insert("namespace".into(), json!(namespace));
    values.insert("name".into(), json!(name));
    values.insert("title".into(), json!(opt_str(item, "/metadata/title")?));
    values.insert(
        "description".into(),
        json!(opt_str(item, "/metadata/description")?),
    );
    values.insert("entity_type".into(), json!(opt_str(&spec, "/type")?));
    values.insert("lifecycle".into(), json!(opt_str(&spec, "/lifecycle")?));
    values.insert("owner_ref".into(), json!(owner));
    values.insert("system_ref".into(), json!(system));
    values.insert("domain_ref".into(), json!(domain));
    values.insert("parent_ref".into(), json!(parent));
    values.insert("tags".into(), tags);
    values.insert("labels".into(), labels);
    values.insert("annotations".into(), annotations);
    values.insert("source".into(), json!(origin));
    decoded.row(&CATALOG_ENTITIES, values, Vec::new());

    // Relations as the catalog computed them; for users, `spec.memberOf`
    // too (older catalogs return users without relations).
    let mut relations: Vec<(String, String)> = Vec::new();
    if let Some(list) = item.get("relations").and_then(Value::as_array) {
        for relation in list {
            let kind = req_str(relation, "/type")?;
            let target = match opt_str(relation, "/targetRef")? {
                Some(target) => canonical(target, "component", "default"),
                None => {
                    let t = relation.get("target").cloned().unwrap_or(Value::Null);
                    match (
                        opt_str(&t, "/kind")?,
                        opt_str(&t, "/namespace")?,
                        opt_str(&t, "/name")?,
                    ) {
                        (Some(k), ns, Some(n)) => Some(format!(
                            "{}:{}/{}",
                            k.to_ascii_lowercase(),
                            ns.unwrap_or("default").to_ascii_lowercase(),
                            n.to_ascii_lowercase()
                        )),
                        _ => None,
                    }
                }
            };
            if let Some(target) = target {
                relations.push((kind.to_owned(), target));
            }
        }
    }
    if kind == "user"
        && let Some(groups) = spec.get("memberOf").and_then(Value::as_array)
    {
        for group in groups.iter().filter_map(Value::as_str) {
            if let Some(target) = canonical(group, "group", &namespace) {
                relations.push(("memberOf".to_owned(), target));
            }
        }
    }
    relations.sort();
    relations.dedup();
    for (relation_type, target) in relations {
        let mut values = Map::new();
        values.insert("source_ref".into(), json!(entity_ref));
        values.insert("relation_type".into(), json!(relation_type));
        values.insert("target_ref".into(), json!(target));
        decoded.row(&ENTITY_RELATIONS, values, Vec::new());
    }
    Ok(())
}

crate::source::api_source!(BackstageConfig, fathom_models::tables::RAW_BACKSTAGE);
