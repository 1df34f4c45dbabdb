//! The events decoder: fields, pseudonymization and redaction of rejects.

use serde_json::{Value, json};

use super::*;

fn decode(lines: &[String]) -> Decoded {
    let body = lines.join("\n");
    let mut identities = IdentityMap::default();
    identities.insert_team("user:default/jdoe", "group:default/payments");
    let mut out = Decoded::default();
    decode_file(
        "events.ndjson",
        body.as_bytes(),
        &Pseudonymizer::new(b"a-test-key-of-enough-length"),
        &identities,
        &mut out,
    );
    out
}

#[test]
fn events_decode_with_hashed_users_and_their_team() {
    let event = json!({
        "timestamp": "2026-06-01T09:30:00.123Z",
        "action": "navigate",
        "subject": "/catalog/default/component/payments-api",
        "value": 3,
        "attributes": {"to": "/docs", "count": 2},
        "context": {"pluginId": "catalog", "routeRef": "entityPage", "entityRef": "component:default/payments-api", "extension": "App"},
        "user": {"userEntityRef": "user:default/jdoe"},
    });
    let other_namespace = json!({
        "timestamp": "2026-06-01T09:31:00Z",
        "action": "search",
        "user": {"userEntityRef": "user:contractors/jdoe"},
    });
    let out = decode(&[
        event.to_string(),
        other_namespace.to_string(),
        event.to_string(),
    ]);
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    assert_eq!(out.rows.len(), 3);
    let first = &out.rows[0].values;
    let hasher = Pseudonymizer::new(b"a-test-key-of-enough-length");
    assert_eq!(first["user_hash"], json!(hasher.hash("user:default/jdoe")));
    assert_eq!(first["user_team_ref"], json!("group:default/payments"));
    assert_eq!(first["plugin_id"], json!("catalog"));
    assert_eq!(first["route"], json!("entityPage"));
    assert_eq!(first["entity_ref"], json!("component:default/payments-api"));
    assert_eq!(
        first["attributes"],
        json!({"to": "/docs", "count": "2", "value": "3", "extension": "App"})
    );
    // Same name, other namespace: another person, another hash.
    assert_ne!(out.rows[1].values["user_hash"], first["user_hash"]);
    assert_eq!(out.rows[1].values["user_team_ref"], Value::Null);
    // The same event twice is two events, with distinct ids.
    assert_ne!(
        out.rows[0].values["event_id"],
        out.rows[2].values["event_id"]
    );
    // Another key gives other hashes.
    assert_ne!(
        Pseudonymizer::new(b"another-key-of-enough-length").hash("user:default/jdoe"),
        hasher.hash("user:default/jdoe")
    );
}

#[test]
fn rejected_events_never_keep_the_user() {
    let out = decode(&[
        json!({"timestamp": "2026-06-01T09:30:00Z", "user": {"userEntityRef": "user:default/jdoe"}})
            .to_string(),
        json!({"timestamp": "yesterday", "action": "click", "userId": "jdoe@example.com"}).to_string(),
        "not json user:default/jdoe".to_owned(),
        "[1, 2]".to_owned(),
    ]);
    let reasons: Vec<&str> = out.rejects.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(reasons[0], "required field `action` is missing");
    assert_eq!(reasons[1], "`timestamp` is not a timestamp: `yesterday`");
    assert!(reasons[2].starts_with("not JSON"));
    assert_eq!(reasons[3], "an event must be a JSON object, found an array");
    for reject in &out.rejects {
        assert!(!reject.raw.contains("jdoe"), "{}", reject.raw);
    }
    assert!(out.rejects[0].raw.contains("hash:"));
}

/// An event dated after the intake's clock (a skewed browser) is kept
/// apart with a reason starting with `future`, without its user; one
/// within the tolerance lands, and an anonymous one lands with no user.
#[test]
fn future_events_are_quarantined_and_anonymous_ones_land() {
    let ahead = chrono::Utc::now() + chrono::Duration::hours(FUTURE_TOLERANCE_HOURS + 2);
    let slightly = chrono::Utc::now() + chrono::Duration::hours(1);
    let out = decode(&[
        json!({"timestamp": ahead.to_rfc3339(), "action": "navigate", "user": {"userEntityRef": "user:default/jdoe"}})
            .to_string(),
        json!({"timestamp": slightly.to_rfc3339(), "action": "navigate", "user": {"userEntityRef": "user:default/jdoe"}})
            .to_string(),
        json!({"timestamp": "2026-06-01T09:30:00Z", "action": "navigate"}).to_string(),
    ]);
    assert_eq!(out.rejects.len(), 1, "{:?}", out.rejects);
    assert!(
        out.rejects[0].reason.starts_with("future: "),
        "{}",
        out.rejects[0].reason
    );
    assert!(!out.rejects[0].raw.contains("jdoe"));
    assert_eq!(out.rows.len(), 2);
    assert_eq!(out.rows[1].values["user_hash"], Value::Null);
    assert_eq!(out.rows[1].values["user_team_ref"], Value::Null);
}
