//! Backstage software catalog: `GET /api/catalog/entities/by-query` (filters,
//! field projection, cursor pagination) and `POST /api/catalog/entities/by-refs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{SimState, Upstream, check_bearer, faults::status_response};
use crate::World;
use crate::world::ComponentKind;

pub(super) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/catalog/entities/by-query", get(by_query))
        .route("/api/catalog/entities/by-refs", post(by_refs))
}

/// A stable uid-shaped id for an entity (the real catalog assigns UUIDs).
fn uid(entity_ref: &str) -> String {
    // FNV-1a over the ref, twice with different offsets, formatted as a UUID.
    let hash = |offset: u64| {
        entity_ref.bytes().fold(offset, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn relation(kind: &str, target: &str) -> Value {
    let (target_kind, rest) = target.split_once(':').unwrap_or(("", target));
    let (namespace, name) = rest.split_once('/').unwrap_or(("default", rest));
    json!({
        "type": kind,
        "targetRef": target,
        "target": {"kind": target_kind, "namespace": namespace, "name": name},
    })
}

fn entity(
    kind: &str,
    namespace: &str,
    name: &str,
    mut metadata: Value,
    spec: Value,
    relations: Vec<Value>,
) -> Value {
    let entity_ref = format!("{}:{namespace}/{name}", kind.to_ascii_lowercase());
    if let Some(object) = metadata.as_object_mut() {
        object.insert("name".into(), json!(name));
        object.insert("namespace".into(), json!(namespace));
        object.insert("uid".into(), json!(uid(&entity_ref)));
        object.insert(
            "etag".into(),
            json!(uid(&format!("etag:{entity_ref}")).replace('-', "")),
        );
        object.insert("generation".into(), json!(1));
        object.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = object.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.insert(
                "backstage.io/managed-by-location".into(),
                json!(format!(
                    "url:https://github.com/acme/catalog/blob/main/{name}.yaml"
                )),
            );
            annotations.insert(
                "backstage.io/managed-by-origin-location".into(),
                json!("url:https://github.com/acme/catalog/blob/main/all.yaml"),
            );
        }
    }
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
        "relations": relations,
    })
}

/// Every catalog entity of the world, in ref order.
pub(super) fn entities(world: &World) -> Vec<Value> {
    let org = &world.org;
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    let mut add = |value: Value| {
        let kind = value["kind"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let key = format!(
            "{kind}:{}/{}",
            value["metadata"]["namespace"].as_str().unwrap_or_default(),
            value["metadata"]["name"].as_str().unwrap_or_default()
        );
        out.insert(key, value);
    };
    for (d, department) in org.departments.iter().enumerate() {
        let children: Vec<String> = department
            .teams
            .iter()
            .map(|t| org.teams[*t].name.clone())
            .collect();
        let mut relations: Vec<Value> = children
            .iter()
            .map(|c| relation("parentOf", &format!("group:default/{c}")))
            .collect();
        relations.push(relation(
            "ownerOf",
            &format!("domain:default/{}", org.domains[d].0),
        ));
        add(entity(
            "Group",
            "default",
            &department.name,
            json!({"title": format!("{} department", department.name)}),
            json!({"type": "department", "profile": {"displayName": department.name}, "children": children}),
            relations,
        ));
    }
    for (t, team) in org.teams.iter().enumerate() {
        let department = &org.departments[team.department].name;
        let members: Vec<&crate::world::User> =
            team.members.iter().map(|m| &org.users[*m]).collect();
        let mut relations = vec![relation("childOf", &format!("group:default/{department}"))];
        relations.extend(
            members
                .iter()
                .map(|u| relation("hasMember", &format!("user:{}/{}", u.namespace, u.name))),
        );
        relations.extend(
            org.components
                .iter()
                .filter(|c| c.team == t)
                .map(|c| relation("ownerOf", &format!("component:default/{}", c.name))),
        );
        add(entity(
            "Group",
            "default",
            &team.name,
            json!({"description": format!("The {} team", team.name)}),
            json!({
                "type": "team",
                "profile": {"displayName": team.name, "email": format!("{}@acme.example", team.name)},
                "parent": department,
                "children": [],
            }),
            relations,
        ));
    }
    for user in &org.users {
        let team_ref = format!("group:default/{}", org.teams[user.team].name);
        // Users outside the default namespace must name their team in full.
        let member_of = if user.namespace == "default" {
            org.teams[user.team].name.clone()
        } else {
            team_ref.clone()
        };
        add(entity(
            "User",
            &user.namespace,
            &user.name,
            json!({"annotations": {"github.com/user-login": user.login}}),
            json!({
                "profile": {"displayName": user.name, "email": format!("{}@acme.example", user.login)},
                "memberOf": [member_of],
            }),
            vec![relation("memberOf", &team_ref)],
        ));
    }
    for (d, (domain, systems)) in org.domains.iter().enumerate() {
        let owner = format!("group:default/{}", org.departments[d].name);
        add(entity(
            "Domain",
            "default",
            domain,
            json!({"description": format!("Everything {}", org.departments[d].name)}),
            json!({"owner": owner}),
            vec![relation("ownedBy", &owner)],
        ));
        for (s, system) in systems.iter().enumerate() {
            let team = org.departments[d].teams[s];
            let owner = format!("group:default/{}", org.teams[team].name);
            add(entity(
                "System",
                "default",
                system,
                json!({}),
                json!({"owner": org.teams[team].name, "domain": domain}),
                vec![
                    relation("ownedBy", &owner),
                    relation("partOf", &format!("domain:default/{domain}")),
                ],
            ));
        }
    }
    for component in &org.components {
        let mut annotations = serde_json::Map::new();
        annotations.insert("github.com/project-slug".into(), json!(component.repo));
        if let Some(app) = &component.argocd_app {
            annotations.insert("argocd/app-name".into(), json!(app));
        }
        annotations.insert(
            "datadoghq.com/service-name".into(),
            json!(component.datadog_service),
        );
        if let Some(project) = &component.sentry_project {
            annotations.insert("sentry.io/project-slug".into(), json!(project));
        }
        annotations.insert(
            "backstage.io/kubernetes-namespace".into(),
            json!(component.k8s_namespace),
        );
        annotations.insert(
            "backstage.io/source-location".into(),
            json!(format!(
                "url:https://github.com/{}/tree/main/",
                component.repo
            )),
        );
        let kind = match component.kind {
            ComponentKind::Service => "service",
            ComponentKind::Website => "website",
            ComponentKind::Library => "library",
        };
        let owner_ref = format!("group:default/{}", org.teams[component.team].name);
        add(entity(
            "Component",
            "default",
            &component.name,
            json!({
                "description": format!("The {} {kind}", component.name),
                "annotations": annotations,
                "tags": [kind, org.teams[component.team].profile_tag()],
                "labels": {"tier": if component.name.len() % 2 == 0 { "1" } else { "2" }},
            }),
            json!({"type": kind, "lifecycle": "production", "owner": component.owner_written, "system": component.system}),
            vec![
                relation("ownedBy", &owner_ref),
                relation("partOf", &format!("system:default/{}", component.system)),
            ],
        ));
    }
    out.into_values().collect()
}

impl crate::world::Team {
    fn profile_tag(&self) -> &'static str {
        match self.profile {
            crate::world::Profile::Elite => "fast-flow",
            crate::world::Profile::High => "steady",
            crate::world::Profile::Medium => "monthly",
            crate::world::Profile::Low => "legacy",
        }
    }
}

/// One `filter` parameter: conditions that must all hold.
type Filter = Vec<(String, Option<String>)>;

fn parse_filter(raw: &str) -> Filter {
    raw.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|condition| match condition.split_once('=') {
            Some((key, value)) => (
                key.trim().to_ascii_lowercase(),
                Some(value.trim().to_ascii_lowercase()),
            ),
            None => (condition.trim().to_ascii_lowercase(), None),
        })
        .collect()
}

/// Values at a dotted path; keys may themselves contain dots
/// (`metadata.annotations.backstage.io/source-location`), so the longest
/// matching key wins at each level. Arrays match any element.
fn values_at<'a>(value: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    if path.is_empty() {
        match value {
            Value::Array(items) => out.extend(items.iter()),
            other => out.push(other),
        }
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key_lower = key.to_ascii_lowercase();
                if path == key_lower {
                    values_at(child, "", out);
                } else if let Some(rest) = path.strip_prefix(&format!("{key_lower}.")) {
                    values_at(child, rest, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| values_at(item, path, out)),
        _ => {}
    }
}

fn matches(entity: &Value, filter: &Filter) -> bool {
    filter.iter().all(|(key, expected)| {
        let mut found = Vec::new();
        values_at(entity, key, &mut found);
        match expected {
            None => !found.is_empty(),
            Some(expected) => found.iter().any(|v| match v {
                Value::String(s) => s.to_ascii_lowercase() == *expected,
                other => other.to_string().to_ascii_lowercase() == *expected,
            }),
        }
    })
}

/// Keeps only the given dotted fields.
fn project(entity: &Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return entity.clone();
    }
    let mut out = json!({});
    for field in fields {
        let parts: Vec<&str> = field.split('.').collect();
        let mut source = entity;
        let mut found = true;
        for part in &parts {
            match source.get(part) {
                Some(next) => source = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut target = &mut out;
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                target[*part] = source.clone();
            } else {
                if target.get(*part).is_none() {
                    target[*part] = json!({});
                }
                target = &mut target[*part];
            }
        }
    }
    out
}

/// What a cursor remembers: the query and where the next page starts.
#[derive(Debug, Serialize, Deserialize)]
struct CursorState {
    filters: Vec<String>,
    offset: usize,
}

fn encode_cursor(state: &CursorState) -> String {
    serde_json::to_vec(state)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

fn decode_cursor(cursor: &str) -> Option<CursorState> {
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    serde_json::from_slice(&bytes?).ok()
}

/// Default and largest page size.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

async fn by_query(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = check_bearer(
        Upstream::Backstage,
        &headers,
        &state.options.credentials.backstage_token,
    ) {
        return response;
    }
    let get_all = |name: &str| -> Vec<String> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let bad =
        |message: &str| status_response(Upstream::Backstage, StatusCode::BAD_REQUEST, message);
    let filters = get_all("filter");
    let fields: Vec<String> = get_all("fields")
        .iter()
        .flat_map(|f| f.split(',').map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .collect();
    let limit = match get_all("limit").first().map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(_) => return bad("limit must be a number between 1 and 1000"),
    };
    let (filters, offset) = match get_all("cursor").first() {
        Some(cursor) => {
            if !filters.is_empty() {
                return bad("Cannot specify both cursor and filter");
            }
            match decode_cursor(cursor) {
                Some(state) => (state.filters, state.offset),
                None => return bad("Malformed cursor, could not be parsed"),
            }
        }
        None => (filters, 0),
    };
    let parsed: Vec<Filter> = filters.iter().map(|f| parse_filter(f)).collect();
    let selected: Vec<&Value> = state
        .catalog
        .iter()
        .filter(|e| parsed.is_empty() || parsed.iter().any(|f| matches(e, f)))
        .collect();
    let total = selected.len();
    let items: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| project(e, &fields))
        .collect();
    let mut page_info = serde_json::Map::new();
    if offset + limit < total {
        page_info.insert(
            "nextCursor".into(),
            json!(encode_cursor(&CursorState {
                filters: filters.clone(),
                offset: offset + limit
            })),
        );
    }
    if offset > 0 {
        page_info.insert(
            "prevCursor".into(),
            json!(encode_cursor(&CursorState {
                filters,
                offset: offset.saturating_sub(limit)
            })),
        );
    }
    axum::Json(json!({"items": items, "totalItems": total, "pageInfo": page_info})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ByRefs {
    entity_refs: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
}

async fn by_refs(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = check_bearer(
        Upstream::Backstage,
        &headers,
        &state.options.credentials.backstage_token,
    ) {
        return response;
    }
    let request: ByRefs = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return status_response(
                Upstream::Backstage,
                StatusCode::BAD_REQUEST,
                &format!("Invalid request body: {e}"),
            );
        }
    };
    let items: Vec<Value> = request
        .entity_refs
        .iter()
        .map(|wanted| {
            let wanted = wanted.to_ascii_lowercase();
            state
                .catalog
                .iter()
                .find(|e| {
                    format!(
                        "{}:{}/{}",
                        e["kind"].as_str().unwrap_or_default().to_ascii_lowercase(),
                        e["metadata"]["namespace"].as_str().unwrap_or_default(),
                        e["metadata"]["name"].as_str().unwrap_or_default()
                    ) == wanted
                })
                .map_or(Value::Null, |e| project(e, &request.fields))
        })
        .collect();
    axum::Json(json!({"items": items})).into_response()
}
