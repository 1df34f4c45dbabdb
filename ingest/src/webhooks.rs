//! GitHub webhooks: the push side of the GitHub source.
//!
//! A delivery is verified (`X-Hub-Signature-256`, HMAC-SHA256 of the body
//! with the source's webhook secret), turned into the payloads the polling
//! source would have fetched for the same facts (a deployment and its
//! status, a pull request, a workflow run, the commits of a push to the
//! default branch), kept in the raw layer like fetched payloads, and
//! decoded by the same decoder. So a webhook row and a polled row of the
//! same fact are identical, `fathom reprocess` re-decodes deliveries too,
//! and the next poll completes what a webhook cannot carry (a pull
//! request's commits and reviews, a deployment's change set).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::prelude::SessionContext;
use fathom_models::tables::PULL_REQUESTS;
use fathom_warehouse::Warehouse;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::identity::IdentityMap;
use crate::runner::{decode_units, raw_batch, write_decoded};
use crate::source::{Decoded, Payload, SourceConfig};
use crate::{Error, Result};

/// Events a delivery may carry and what is made of them.
pub const EVENTS: [&str; 5] = [
    "deployment_status",
    "pull_request",
    "push",
    "workflow_run",
    "ping",
];

/// Why a delivery was refused before anything was stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("the delivery has no X-Hub-Signature-256 header; set the webhook's secret on GitHub")]
    Missing,
    /// The header is not `sha256=<hex>`.
    #[error("X-Hub-Signature-256 is not `sha256=<hex digest>`")]
    Malformed,
    /// The digest does not match the body and the secret.
    #[error("X-Hub-Signature-256 does not match the body: wrong secret or altered delivery")]
    Mismatch,
}

/// Checks `header` (the `X-Hub-Signature-256` value) against `body`, in
/// constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> std::result::Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Malformed)?;
    mac.update(body);
    mac.verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value for `body` under `secret` (what GitHub
/// sends; used by the simulator and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // Any key length is valid for HMAC, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookReport {
    /// `X-GitHub-Event`.
    pub event: String,
    /// The payload's `action`, if any.
    pub action: Option<String>,
    /// The stream its facts belong to (`deployments`, `pulls`, …).
    pub stream: Option<String>,
    /// Rows written per table.
    pub rows: BTreeMap<String, usize>,
    /// Records quarantined, with reasons in the quarantine table.
    pub quarantined: usize,
    /// Why nothing was stored, for events that carry nothing to store
    /// (`ping`, a push to another branch, other event types).
    pub ignored: Option<String>,
}

/// The payloads a delivery stands for, or why it carries nothing to store.
enum Translated {
    Payloads(&'static str, Vec<Payload>),
    Ignored(String),
}

fn text<'a>(value: &'a Value, pointer: &str) -> std::result::Result<&'a str, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            format!(
                "`{}` is missing or not a string",
                pointer.trim_start_matches('/')
            )
        })
}

/// Turns a delivery into the payloads polling would have fetched.
fn translate(
    event: &str,
    delivery: &str,
    body: &Value,
    received_at: DateTime<Utc>,
) -> std::result::Result<Translated, String> {
    if event == "ping" {
        return Ok(Translated::Ignored(
            "ping: the webhook is set up".to_owned(),
        ));
    }
    if !EVENTS.contains(&event) {
        return Ok(Translated::Ignored(format!(
            "event `{event}` is not used (used: deployment_status, pull_request, push, workflow_run)"
        )));
    }
    let repo = text(body, "/repository/full_name")?.to_ascii_lowercase();
    let payload = |stream: &str, path: String, body: Value| Payload {
        stream: stream.to_owned(),
        unit: repo.clone(),
        // The REST path the same facts come from, after the delivery id: the
        // decoder reads the repository and the resource from it.
        request: format!("WEBHOOK {event} {delivery} /repos/{repo}{path}"),
        status: 200,
        fetched_at: received_at,
        body: body.to_string(),
    };
    Ok(match event {
        "deployment_status" => {
            let deployment = body.get("deployment").ok_or("`deployment` is missing")?;
            let status = body
                .get("deployment_status")
                .ok_or("`deployment_status` is missing")?;
            let id = deployment
                .get("id")
                .and_then(Value::as_i64)
                .ok_or("`deployment.id` is missing or not a number")?;
            Translated::Payloads(
                "deployments",
                vec![
                    payload(
                        "deployments",
                        format!("/deployments/{id}/statuses"),
                        json!([status]),
                    ),
                    payload(
                        "deployments",
                        "/deployments".to_owned(),
                        json!([deployment]),
                    ),
                ],
            )
        }
        "pull_request" => {
            let pull = body
                .get("pull_request")
                .ok_or("`pull_request` is missing")?;
            let number = pull
                .get("number")
                .and_then(Value::as_i64)
                .ok_or("`pull_request.number` is missing or not a number")?;
            Translated::Payloads(
                "pulls",
                vec![payload("pulls", format!("/pulls/{number}"), pull.clone())],
            )
        }
        "workflow_run" => {
            let run = body
                .get("workflow_run")
                .ok_or("`workflow_run` is missing")?;
            Translated::Payloads(
                "workflow_runs",
                vec![payload(
                    "workflow_runs",
                    "/actions/runs".to_owned(),
                    json!({"total_count": 1, "workflow_runs": [run]}),
                )],
            )
        }
        "push" => {
            let reference = text(body, "/ref")?;
            let default_branch = text(body, "/repository/default_branch")?;
            if reference != format!("refs/heads/{default_branch}") {
                return Ok(Translated::Ignored(format!(
                    "push to `{reference}`: only the default branch (`{default_branch}`) is read"
                )));
            }
            let commits = body
                .get("commits")
                .and_then(Value::as_array)
                .ok_or("`commits` is missing or not a list")?;
            // A push lists commits in its own shape; written in the REST
            // shape so one decoder reads both.
            let listed: Vec<Value> = commits.iter().map(rest_commit).collect();
            Translated::Payloads(
                "commits",
                vec![payload(
                    "commits",
                    "/commits".to_owned(),
                    Value::Array(listed),
                )],
            )
        }
        _ => Translated::Ignored(format!("event `{event}` is not used")),
    })
}

/// A push event's commit in the shape of `GET /repos/{o}/{r}/commits`.
/// Fields it lacks stay absent, so the decoder quarantines what it cannot
/// read rather than storing guesses.
fn rest_commit(commit: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(id) = commit.get("id") {
        out.insert("sha".into(), id.clone());
    }
    let timestamp = commit.get("timestamp").cloned().unwrap_or(Value::Null);
    out.insert(
        "commit".into(),
        json!({
            "message": commit.get("message").cloned().unwrap_or(Value::Null),
            "author": {
                "name": commit.pointer("/author/name").cloned().unwrap_or(Value::Null),
                "date": timestamp,
            },
            "committer": {
                "name": commit.pointer("/committer/name").cloned().unwrap_or(Value::Null),
                "date": timestamp,
            },
        }),
    );
    out.insert(
        "author".into(),
        match commit.pointer("/author/username") {
            Some(login @ Value::String(_)) => json!({"login": login}),
            _ => Value::Null,
        },
    );
    Value::Object(out)
}

/// Lands one verified delivery for the GitHub `source`: raw layer, decode,
/// identities, merge, quarantine. A body that is not JSON or lacks what its
/// event needs is quarantined with the reason.
pub async fn ingest_delivery(
    warehouse: &Warehouse,
    source: &SourceConfig,
    event: &str,
    delivery: &str,
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<WebhookReport> {
    let run_id = format!("webhook:{delivery}");
    let mut report = WebhookReport {
        event: event.to_owned(),
        ..WebhookReport::default()
    };
    let translated = serde_json::from_slice::<Value>(body)
        .map_err(|e| format!("the body is not JSON: {e}"))
        .and_then(|value| {
            report.action = value
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_owned);
            translate(event, delivery, &value, received_at)
        });
    let (stream, payloads) = match translated {
        Ok(Translated::Ignored(reason)) => {
            report.ignored = Some(reason);
            return Ok(report);
        }
        Ok(Translated::Payloads(stream, payloads)) => (stream, payloads),
        Err(reason) => {
            let mut decoded = Decoded::default();
            let raw = Payload {
                stream: "webhooks".to_owned(),
                unit: event.to_owned(),
                request: format!("WEBHOOK {event} {delivery}"),
                status: 200,
                fetched_at: received_at,
                body: String::from_utf8_lossy(body).into_owned(),
            };
            decoded.reject(
                &raw,
                None,
                format!("webhook `{event}`: {reason}"),
                &Value::String(raw.body.clone()),
            );
            let written = write_decoded(
                warehouse,
                source.name(),
                "webhooks",
                decoded,
                &IdentityMap::default(),
                &run_id,
                None,
            )
            .await?;
            report.quarantined = written.quarantined;
            return Ok(report);
        }
    };
    report.stream = Some(stream.to_owned());
    if let Some(raw) = source.raw_table() {
        warehouse
            .insert_missing(raw, &[raw_batch(source.name(), &payloads, &run_id)?])
            .await?;
    }
    let mut decoded = decode_units(source, stream, &payloads);
    if stream == "pulls" {
        let stale = reconcile_with_stored(warehouse, &payloads, &mut decoded).await?;
        if stale > 0 {
            report.ignored = Some(
                "the pull request in this delivery is older than the stored one \
                 (a replayed or out-of-order delivery): not applied"
                    .to_owned(),
            );
        }
    }
    let identities = IdentityMap::load(warehouse)
        .await
        .map_err(Error::Identity)?;
    let written = write_decoded(
        warehouse,
        source.name(),
        stream,
        decoded,
        &identities,
        &run_id,
        None,
    )
    .await?;
    report.rows = written.rows;
    report.quarantined = written.quarantined;
    Ok(report)
}

/// The `updated_at` of each pull request in `payloads`, by number.
fn updated_at_by_number(payloads: &[Payload]) -> BTreeMap<i64, DateTime<Utc>> {
    payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(&p.body).ok())
        .filter_map(|pull| {
            let number = pull.get("number")?.as_i64()?;
            let updated = pull.get("updated_at")?.as_str()?;
            let updated = DateTime::parse_from_rfc3339(updated).ok()?;
            Some((number, updated.with_timezone(&Utc)))
        })
        .collect()
}

/// A pull request from a webhook has no commits or reviews, so its first
/// commit and first review are unknown; keep what a poll already stored
/// rather than merging nulls over it. And older upstream state never
/// overwrites newer: a pull request whose `updated_at` is before the
/// stored one's closing or merge is dropped (a replayed "opened" delivery
/// under a new delivery id must not reopen it). Returns how many were
/// dropped.
async fn reconcile_with_stored(
    warehouse: &Warehouse,
    payloads: &[Payload],
    decoded: &mut Decoded,
) -> Result<usize> {
    let updated = updated_at_by_number(payloads);
    let keys: Vec<(String, i64)> = decoded
        .rows
        .iter()
        .filter(|row| row.table.name == PULL_REQUESTS.name)
        .filter_map(|row| {
            Some((
                row.values.get("repository_id")?.as_str()?.to_owned(),
                row.values.get("number")?.as_i64()?,
            ))
        })
        .collect();
    if keys.is_empty() {
        return Ok(0);
    }
    let ctx = SessionContext::new();
    warehouse.register_table(&ctx, &PULL_REQUESTS).await?;
    let filter = keys
        .iter()
        .map(|(repo, number)| {
            format!(
                "(repository_id = '{}' AND number = {number})",
                repo.replace('\'', "''")
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let batches = ctx
        .sql(&format!(
            "SELECT repository_id, number, \
             CAST(first_commit_at AS VARCHAR) AS first_commit_at, \
             CAST(first_review_at AS VARCHAR) AS first_review_at, \
             CAST(greatest(closed_at, merged_at) AS VARCHAR) AS settled_at \
             FROM pull_requests WHERE {filter}"
        ))
        .await
        .map_err(fathom_warehouse::Error::from)?
        .collect()
        .await
        .map_err(fathom_warehouse::Error::from)?;
    let mut stored: BTreeMap<(String, i64), [Option<String>; 2]> = BTreeMap::new();
    let mut settled: BTreeMap<(String, i64), DateTime<Utc>> = BTreeMap::new();
    for batch in &batches {
        // Text columns come back as Utf8 or Utf8View depending on the
        // engine's settings: read them as Utf8 either way.
        let column = |name: &str| -> Option<StringArray> {
            let column = batch.column_by_name(name)?;
            let text = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).ok()?;
            text.as_any().downcast_ref::<StringArray>().cloned()
        };
        let (Some(repos), Some(commits), Some(reviews), Some(settles)) = (
            column("repository_id"),
            column("first_commit_at"),
            column("first_review_at"),
            column("settled_at"),
        ) else {
            continue;
        };
        let Some(numbers) = batch
            .column_by_name("number")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        else {
            continue;
        };
        for i in 0..batch.num_rows() {
            let value = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_owned());
            let key = (repos.value(i).to_owned(), numbers.value(i));
            if let Some(at) = value(&settles).and_then(|t| stored_instant(&t)) {
                settled.insert(key.clone(), at);
            }
            stored.insert(key, [value(&commits), value(&reviews)]);
        }
    }
    let before = decoded.rows.len();
    decoded.rows.retain(|row| {
        if row.table.name != PULL_REQUESTS.name {
            return true;
        }
        let key = pull_key(row);
        match (updated.get(&key.1), settled.get(&key)) {
            (Some(incoming), Some(stored)) => incoming >= stored,
            _ => true,
        }
    });
    let stale = before - decoded.rows.len();
    for row in &mut decoded.rows {
        if row.table.name != PULL_REQUESTS.name {
            continue;
        }
        let key = pull_key(row);
        let Some(known) = stored.get(&key) else {
            continue;
        };
        for (column, value) in ["first_commit_at", "first_review_at"].iter().zip(known) {
            if row.values.get(*column).is_none_or(Value::is_null)
                && let Some(value) = value
            {
                row.values.insert((*column).into(), json!(value));
            }
        }
    }
    Ok(stale)
}

/// The key of a decoded pull request row: repository and number.
fn pull_key(row: &crate::source::Row) -> (String, i64) {
    (
        row.values
            .get("repository_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        row.values
            .get("number")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
    )
}

/// An instant as the engine prints a UTC timestamp (`2026-07-01T10:00:00`
/// or with a zone).
fn stored_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::decode_units;

    fn github() -> SourceConfig {
        // Deserialised like `fathom.toml` would be.
        serde_json::from_value(json!({"type": "github", "orgs": ["acme"], "token": "t"}))
            .unwrap_or_else(|e| panic!("config: {e}"))
    }

    #[test]
    fn signatures_are_checked_against_the_body_and_secret() {
        let body = br#"{"zen":"hi"}"#;
        let good = sign(b"s3cret", body);
        assert!(good.starts_with("sha256=") && good.len() == 7 + 64);
        assert_eq!(verify_signature(b"s3cret", body, Some(&good)), Ok(()));
        assert_eq!(
            verify_signature(b"other", body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s3cret", br#"{"zen":"ho"}"#, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s3cret", body, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(b"s3cret", body, Some("sha1=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(b"s3cret", body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
    }

    /// A push in the documented webhook shape (no recorded push delivery is
    /// among the fixtures): commits to the default branch become commit
    /// rows; a push to another branch stores nothing.
    #[test]
    fn pushes_to_the_default_branch_become_commits() {
        let push = json!({
            "ref": "refs/heads/main",
            "before": "0000000000000000000000000000000000000000",
            "after": "b2c3",
            "repository": {"full_name": "Acme/Payments", "default_branch": "main"},
            "commits": [
                {"id": "a1b2", "message": "Fix rounding\n\nlong text", "timestamp": "2026-07-01T10:00:00+02:00",
                 "author": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
                 "committer": {"name": "Ada", "email": "ada@example.com"}},
                {"message": "no id"}
            ]
        });
        let at = Utc::now();
        let Ok(Translated::Payloads(stream, payloads)) = translate("push", "d1", &push, at) else {
            panic!("a push to main is stored");
        };
        assert_eq!(stream, "commits");
        let decoded = decode_units(&github(), stream, &payloads);
        assert_eq!(decoded.rows.len(), 1);
        let row = &decoded.rows[0].values;
        assert_eq!(row["repository_id"], "github:acme/payments");
        assert_eq!(row["sha"], "a1b2");
        assert_eq!(row["message"], "Fix rounding");
        assert_eq!(row["author_login"], "ada");
        assert_eq!(row["committed_at"], "2026-07-01T10:00:00+02:00");
        // The commit without an id is rejected with a reason, not dropped.
        assert_eq!(decoded.rejects.len(), 1);

        let mut other = push.clone();
        other["ref"] = json!("refs/heads/feature");
        assert!(matches!(
            translate("push", "d2", &other, at),
            Ok(Translated::Ignored(reason)) if reason.contains("default branch")
        ));
        assert!(matches!(
            translate("issues", "d3", &push, at),
            Ok(Translated::Ignored(_))
        ));
        assert!(
            translate(
                "pull_request",
                "d4",
                &json!({"repository": {"full_name": "a/b"}}),
                at
            )
            .is_err()
        );
    }
}
