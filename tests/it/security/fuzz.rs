//! Fuzzing on the stable toolchain: property tests feed arbitrary bytes and
//! generated SQL to the SQL guard, and arbitrary bodies to every source's
//! decoder and to the importer's coercion. The property is "no panic": a
//! bad input is an error or a quarantined record, never a crash.
//! (`cargo bench --bench fuzz` runs the same properties for 10,000 cases
//! each.)

use fathom_ingest::source::{Payload, SourceConfig};
use fathom_warehouse::query::QueryBounds;
use fathom_warehouse::query::guard::parse_bounded;
use proptest::prelude::*;
use serde_json::json;

/// Every source, configured as a minimal `fathom.toml` would.
pub(crate) fn sources() -> Vec<SourceConfig> {
    [
        json!({"type": "github", "orgs": ["acme"], "token": "x", "deploy_workflows": ".*"}),
        json!({"type": "argocd", "base_url": "http://argo", "token": "x"}),
        json!({"type": "backstage", "base_url": "http://backstage", "token": "x"}),
        json!({"type": "datadog", "token": "k", "application_key": "a"}),
        json!({"type": "opencost", "base_url": "http://opencost:9003"}),
        json!({"type": "sentry", "token": "t", "organization": "acme"}),
    ]
    .into_iter()
    .filter_map(|value| serde_json::from_value(value).ok())
    .collect()
}

/// A body: arbitrary text, or JSON of the shapes upstreams send with
/// arbitrary values in them.
pub(crate) fn body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,24}".prop_map(serde_json::Value::from),
        Just(json!("2026-06-01T00:00:00Z")),
        Just(json!("component:default/x")),
    ];
    let value = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("number".to_owned()),
                    Just("state".to_owned()),
                    Just("created_at".to_owned()),
                    Just("data".to_owned()),
                    Just("items".to_owned()),
                    Just("metadata".to_owned()),
                    Just("status".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        value.prop_map(|v| v.to_string()),
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// SQL built from a small grammar with deep and wide shapes, plus
/// arbitrary text.
pub(crate) fn sql() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("1".to_owned()),
        Just("value".to_owned()),
        Just("'x'".to_owned()),
        Just("NULL".to_owned()),
        Just("now()".to_owned()),
    ];
    let expr = atom.prop_recursive(8, 400, 4, |inner| {
        prop_oneof![
            (
                inner.clone(),
                inner.clone(),
                prop_oneof![
                    Just("+"),
                    Just("*"),
                    Just(" AND "),
                    Just(" || "),
                    Just(" = ")
                ]
            )
                .prop_map(|(a, b, op)| format!("{a}{op}{b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("CASE WHEN {a} THEN {b} END")),
            inner
                .clone()
                .prop_map(|a| format!("repeat(CAST({a} AS VARCHAR), 3)")),
            (inner.clone(), 1_usize..3_000).prop_map(|(a, n)| vec![a; n.min(50)].join("+")),
        ]
    });
    let query = (expr.clone(), 1_usize..50, 0_usize..3).prop_map(|(e, unions, kind)| {
        let select = match kind {
            0 => format!("SELECT {e} FROM range(3)"),
            1 => format!("SELECT {e} AS c FROM range(3) GROUP BY 1"),
            _ => format!("WITH t AS (SELECT {e} AS c FROM range(2)) SELECT * FROM t a, t b"),
        };
        vec![select; unions].join(" UNION ALL ")
    });
    prop_oneof![
        query,
        expr.prop_map(|e| format!("SELECT {e}")),
        ".{0,200}",
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn payload(stream: &str, body: String) -> Payload {
    Payload {
        stream: stream.to_owned(),
        unit: "acme/repo".to_owned(),
        request: format!("GET /{stream}"),
        status: 200,
        fetched_at: chrono::Utc::now(),
        body,
    }
}

/// Decodes `body` as every stream of every source (must not panic).
pub(crate) fn decode_everywhere(sources: &[SourceConfig], body: &str) {
    for source in sources {
        for stream in source.streams() {
            let _ = source.decode(stream, &[payload(stream, body.to_owned())]);
        }
    }
}

/// Guards `sql` (must not panic; refusals are errors).
pub(crate) fn guard(sql: &str) {
    let _ = parse_bounded(sql, &QueryBounds::default());
}

/// Coerces `body` as intake records of the generic tables (must not panic).
pub(crate) fn coerce(body: &str) {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(body)
    else {
        return;
    };
    let rows: Vec<&serde_json::Map<String, serde_json::Value>> =
        items.iter().filter_map(|v| v.as_object()).collect();
    for table in [
        &fathom_models::tables::DEPLOYMENTS,
        &fathom_models::tables::INCIDENTS,
    ] {
        let _ = fathom_ingest::import::json_rows_to_batch(table, &rows, "fuzz");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_arbitrary_bodies(body in body()) {
        decode_everywhere(&sources(), &body);
        coerce(&format!("[{body}]"));
    }

    #[test]
    fn the_sql_guard_never_panics(sql in sql()) {
        // Generated SQL can be deep: measure it where the server does.
        let handle = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || guard(&sql))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(handle.join().is_ok(), "the guard panicked");
    }
}
