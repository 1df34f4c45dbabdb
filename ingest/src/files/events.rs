//! Portal usage events: Backstage analytics events (`action`, `subject`,
//! `value`, `attributes`, `context.pluginId`/`routeRef`/`entityRef`, user
//! and timestamp) from NDJSON files in an object store, into
//! `portal_events`.
//!
//! Users are pseudonymized while decoding, with a keyed hash (HMAC-SHA256
//! under a secret from the config): the same user always gets the same
//! hash, so adoption can be counted, but the identity cannot be recovered
//! without the key. The identity is never stored — not in the table, not
//! in a raw layer (file sources have none), not in quarantine (a rejected
//! record's user fields are replaced by their hash; an unparseable line is
//! described, not copied). The user's team is looked up in the catalog
//! before hashing, for adoption by team.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use fathom_models::tables::PORTAL_EVENTS;

use super::{FileLocation, instant};
use crate::identity::IdentityMap;
use crate::source::{Decoded, Reject, SourceError};

/// The stream name in runs and cursors.
pub const STREAM: &str = "events";

/// `[[sources]] type = "portal_events"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsConfig {
    /// Name, location and object-store settings.
    #[serde(flatten)]
    pub files: FileLocation,
    /// Environment variable holding the pseudonymization key (preferred).
    #[serde(default)]
    pub pseudonymize_key_env: Option<String>,
    /// The key itself (local use).
    #[serde(default)]
    pub pseudonymize_key: Option<String>,
}

impl EventsConfig {
    /// The pseudonymization key; refusing to run without one, since
    /// hashing without a secret can be reversed by hashing every user.
    pub fn key(&self, source: &str) -> Result<Pseudonymizer, SourceError> {
        let config_error = |message: String| SourceError::Config {
            source_name: source.to_owned(),
            message,
        };
        let key = match (&self.pseudonymize_key, &self.pseudonymize_key_env) {
            (Some(key), _) => key.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                config_error(format!(
                    "environment variable `{var}` (pseudonymize_key_env) is not set"
                ))
            })?,
            (None, None) => {
                return Err(config_error(
                    "set `pseudonymize_key_env` (or `pseudonymize_key`): user ids are stored only as keyed hashes".to_owned(),
                ));
            }
        };
        if key.len() < 16 {
            return Err(config_error(
                "the pseudonymization key must be at least 16 characters".to_owned(),
            ));
        }
        Ok(Pseudonymizer {
            key: key.into_bytes(),
        })
    }
}

/// Keyed hashing of identities.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

impl Pseudonymizer {
    /// A pseudonymizer with this key (tests and the API's intake).
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// The keyed hash of `text`, 32 hex digits.
    pub fn hash(&self, text: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            // HMAC takes keys of any length; this cannot happen.
            return String::new();
        };
        mac.update(text.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// How far ahead of the intake's clock an event's time may be (clock
/// skew between browsers and the server) before it is quarantined.
pub const FUTURE_TOLERANCE_HOURS: i64 = 24;

/// Where an event may carry its user, in order.
const USER_POINTERS: &[&str] = &[
    "/user/userEntityRef",
    "/user/userId",
    "/userEntityRef",
    "/userId",
    "/context/userEntityRef",
];

/// Replaces every user field of `event` by its hash (for quarantine).
fn redact(event: &mut Value, pseudonymizer: &Pseudonymizer) {
    for pointer in USER_POINTERS {
        if let Some(slot) = event.pointer_mut(pointer)
            && let Some(user) = slot.as_str()
        {
            *slot = Value::from(format!("hash:{}", pseudonymizer.hash(user)));
        }
    }
    if let Some(user) = event.get_mut("user")
        && let Some(text) = user.as_str()
    {
        *user = Value::from(format!("hash:{}", pseudonymizer.hash(text)));
    }
}

fn attribute_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Decodes one NDJSON file of events.
pub fn decode_file(
    location: &str,
    body: &[u8],
    pseudonymizer: &Pseudonymizer,
    identities: &IdentityMap,
    out: &mut Decoded,
) {
    let mut occurrences: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let position = Some(n as i64 + 1);
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let mut reject = |reason: String, raw: String| {
            out.rejects.push(Reject {
                location: location.to_owned(),
                position,
                reason,
                raw,
            })
        };
        let mut event: Value = match serde_json::from_slice(trimmed) {
            Ok(event @ Value::Object(_)) => event,
            Ok(other) => {
                reject(
                    format!(
                        "an event must be a JSON object, found {}",
                        crate::source::json_kind(&other)
                    ),
                    json!({"unparsed_bytes": trimmed.len()}).to_string(),
                );
                continue;
            }
            Err(e) => {
                // The line may hold a user id: describe it, never copy it.
                reject(
                    format!("not JSON: {e}"),
                    json!({"unparsed_bytes": trimmed.len()}).to_string(),
                );
                continue;
            }
        };
        let event_key = pseudonymizer.hash(&String::from_utf8_lossy(trimmed));
        match event_row(&event, pseudonymizer, identities) {
            Ok(mut values) => {
                let occurrence = occurrences.entry(event_key.clone()).or_default();
                *occurrence += 1;
                let id = match event
                    .get("id")
                    .or_else(|| event.get("eventId"))
                    .and_then(Value::as_str)
                {
                    Some(id) => id.to_owned(),
                    None if *occurrence == 1 => event_key,
                    None => format!("{event_key}-{occurrence}"),
                };
                values.insert("event_id".into(), Value::from(id));
                out.row(&PORTAL_EVENTS, values, Vec::new());
            }
            Err(reason) => {
                redact(&mut event, pseudonymizer);
                reject(reason, event.to_string());
            }
        }
    }
}

fn event_row(
    event: &Value,
    pseudonymizer: &Pseudonymizer,
    identities: &IdentityMap,
) -> Result<Map<String, Value>, String> {
    let action = event
        .get("action")
        .and_then(Value::as_str)
        .filter(|a| !a.trim().is_empty())
        .ok_or("required field `action` is missing")?;
    let raw_time = event
        .get("timestamp")
        .or_else(|| event.get("occurredAt"))
        .and_then(Value::as_str)
        .ok_or("required field `timestamp` is missing")?;
    let occurred_at =
        instant(raw_time).ok_or_else(|| format!("`timestamp` is not a timestamp: `{raw_time}`"))?;
    // A clock far ahead would put the event in a day no mart has reached
    // and count it when that day comes: kept apart instead, by a reason
    // starting with `future`.
    let latest = chrono::Utc::now() + chrono::Duration::hours(FUTURE_TOLERANCE_HOURS);
    if occurred_at > latest {
        return Err(format!(
            "future: `timestamp` {raw_time} is more than {FUTURE_TOLERANCE_HOURS} hours after intake"
        ));
    }
    let user = USER_POINTERS
        .iter()
        .find_map(|p| event.pointer(p).and_then(Value::as_str))
        .or_else(|| event.get("user").and_then(Value::as_str))
        .filter(|u| !u.trim().is_empty());
    let context = event.get("context").cloned().unwrap_or(Value::Null);
    let text_at = |pointer: &str| {
        event
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut attributes: Map<String, Value> = match event.get("attributes") {
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| attribute_text(v).map(|v| (k.clone(), Value::from(v))))
            .collect(),
        _ => Map::new(),
    };
    if let Some(value) = event.get("value").and_then(attribute_text) {
        attributes.insert("value".into(), Value::from(value));
    }
    if let Some(extension) = context.get("extension").and_then(Value::as_str) {
        attributes.insert("extension".into(), Value::from(extension));
    }
    let mut values = Map::new();
    values.insert("occurred_at".into(), Value::from(occurred_at.to_rfc3339()));
    values.insert(
        "user_hash".into(),
        json!(user.map(|u| pseudonymizer.hash(u))),
    );
    values.insert(
        "user_team_ref".into(),
        json!(user.and_then(|u| identities.team_of(u))),
    );
    values.insert("action".into(), Value::from(action));
    values.insert("subject".into(), json!(text_at("/subject")));
    values.insert("plugin_id".into(), json!(text_at("/context/pluginId")));
    values.insert("route".into(), json!(text_at("/context/routeRef")));
    values.insert("entity_ref".into(), json!(text_at("/context/entityRef")));
    values.insert("attributes".into(), Value::Object(attributes));
    Ok(values)
}

/// What a posted batch of events came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PostedEvents {
    /// Events landed (new or already present: event ids make reposting
    /// harmless).
    pub accepted: usize,
    /// Events quarantined, with reasons.
    pub quarantined: usize,
}

/// Lands events posted to the API (`/api/v1/intake/events`) with the same
/// decoding, pseudonymization and team lookup as event files. `ndjson` is
/// one event per line.
pub async fn ingest_posted(
    warehouse: &fathom_warehouse::Warehouse,
    source_name: &str,
    pseudonymizer: &Pseudonymizer,
    ndjson: &[u8],
    delivery: &str,
) -> crate::Result<PostedEvents> {
    let identities = IdentityMap::load(warehouse)
        .await
        .map_err(crate::Error::Identity)?;
    let mut decoded = Decoded::default();
    decode_file(
        &format!("intake {delivery}"),
        ndjson,
        pseudonymizer,
        &identities,
        &mut decoded,
    );
    let written = crate::runner::write_decoded(
        warehouse,
        source_name,
        STREAM,
        decoded,
        &identities,
        &format!("intake:{delivery}"),
        None,
    )
    .await?;
    Ok(PostedEvents {
        accepted: written.rows.get(PORTAL_EVENTS.name).copied().unwrap_or(0),
        quarantined: written.quarantined,
    })
}

/// Reads the event files that are new or changed since the cursor.
pub(crate) async fn run(
    ctx: &super::FileRun<'_>,
    config: &EventsConfig,
) -> crate::Result<crate::runner::StreamReport> {
    let name = ctx.name;
    let mut report = ctx.report(STREAM);
    let pseudonymizer = match config.key(name) {
        Ok(p) => p,
        Err(e) => return Ok(ctx.failed(report, e)),
    };
    let (store, listed) = match super::open_and_list(&config.files, name).await {
        Ok(opened) => opened,
        Err(e) => return Ok(ctx.failed(report, e)),
    };
    let mut cursor: BTreeMap<String, String> = ctx.cursor().await?;
    let mut pending = Decoded::default();
    let mut pending_files = Vec::new();
    let mut pending_bytes = 0usize;
    for file in listed {
        let path = file.path.to_string();
        let lower = path.to_ascii_lowercase();
        if !(lower.ends_with(".ndjson") || lower.ends_with(".jsonl") || lower.ends_with(".json")) {
            continue;
        }
        if cursor.get(&path) == Some(&file.version) {
            continue;
        }
        ctx.progress.payload(name, STREAM);
        report.payloads += 1;
        let bytes = match super::read(&*store, &file.path, name).await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(ctx.failed(report, e)),
        };
        pending_bytes += bytes.len();
        decode_file(&path, &bytes, &pseudonymizer, ctx.identities, &mut pending);
        pending_files.push((path, file.version));
        // Commit in batches: bounded memory, few table versions.
        if pending_bytes > 64 << 20 || pending_files.len() >= 500 {
            flush(
                ctx,
                &mut report,
                &mut pending,
                &mut pending_files,
                &mut cursor,
            )
            .await?;
            pending_bytes = 0;
        }
    }
    flush(
        ctx,
        &mut report,
        &mut pending,
        &mut pending_files,
        &mut cursor,
    )
    .await?;
    Ok(report)
}

async fn flush(
    ctx: &super::FileRun<'_>,
    report: &mut crate::runner::StreamReport,
    pending: &mut Decoded,
    files: &mut Vec<(String, String)>,
    cursor: &mut BTreeMap<String, String>,
) -> crate::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let mut written = ctx.write(STREAM, std::mem::take(pending), None).await?;
    // An event's entity is the page's context, often none: not a mapping
    // failure.
    written.unmapped.clear();
    super::add_written(report, written);
    cursor.extend(files.drain(..));
    ctx.save_cursor(cursor).await
}

impl crate::source::Source for EventsConfig {
    fn configured_name(&self) -> Option<&str> {
        self.files.name.as_deref()
    }

    fn streams(&self) -> &'static [&'static str] {
        &[STREAM]
    }
}

#[cfg(test)]
mod tests;
