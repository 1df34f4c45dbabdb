//! In-process tests of the router (`oneshot`, no socket): every documented
//! operation is routed, and malformed requests get the one error shape
//! with the right status.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::*;

struct Fixture {
    api: Arc<Api>,
    _dir: tempfile::TempDir,
}

async fn fixture(auth: AuthMode) -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let state = StateDb::connect(&format!("sqlite://{}/state.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("state: {e}"));
    let api = Api {
        warehouse: Warehouse::in_memory().unwrap_or_else(|e| panic!("warehouse: {e}")),
        state,
        config: ApiConfig {
            auth,
            sources: vec!["github".to_owned()],
            ..ApiConfig::default()
        },
        requests: RequestMetrics::default(),
        limiter: RateLimiter::default(),
        caches: Caches::default(),
        oidc: None,
        triggers: None,
        guards: Guards::default(),
    };
    Fixture {
        api: Arc::new(api),
        _dir: dir,
    }
}

async fn send(api: &Arc<Api>, request: Request<Body>) -> (StatusCode, Value) {
    let response = router(api.clone())
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(body)
        .unwrap_or_else(|e| panic!("request: {e}"))
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let f = fixture(AuthMode::Tokens).await;
    for op in openapi::operations() {
        let uri = op
            .path
            .replace("{scope}", "org")
            .replace("{entity}", "component%3Adefault%2Fx")
            .replace("{rows}", "deployments")
            .replace("{kind}", "deployments")
            .replace("{id}", "dora-tiles")
            .replace("{page}", "overview");
        let (status, body) = send(
            &f.api,
            request(&op.method.to_ascii_uppercase(), &uri, None, Body::empty()),
        )
        .await;
        let fallback = body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no such endpoint"));
        assert!(
            !fallback,
            "{} {uri} is documented but not routed",
            op.method
        );
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {uri}",
            op.method
        );
        // Everything that needs a credential refuses a request without one.
        if op.authenticated {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {uri}", op.method);
            assert_eq!(body["error"]["code"], "unauthenticated");
        }
    }
    let (status, body) = send(&f.api, request("GET", "/api/v1/nope", None, Body::empty())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn malformed_requests_get_the_error_shape() {
    let f = fixture(AuthMode::Tokens).await;
    let (_, admin) = f
        .api
        .state
        .create_token("admin", "admin", &[], None)
        .await
        .unwrap_or_else(|e| panic!("token: {e}"));
    let admin = admin.expose().to_owned();
    let call = |method: &str, uri: &str, token: Option<&str>, body: Body| {
        send(&f.api, request(method, uri, token, body))
    };

    // Bad or missing credentials.
    let (status, body) = call(
        "GET",
        "/api/v1/freshness",
        Some("fathom_not-a-token"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown"))
    );

    // Bad entity ref, unknown window, unknown benchmark: 400.
    for uri in [
        "/api/v1/dora/not%20a%20ref%3A%3A",
        "/api/v1/dora/org?window=45d",
        "/api/v1/dora/org?benchmark=dora-1999",
        "/api/v1/dora/org/trend?interval=fortnight",
    ] {
        let (status, body) = call("GET", uri, Some(&admin), Body::empty()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}");
    }

    // Bad JSON: 400 with the parser's reason, never a plain-text rejection.
    let (status, body) = call(
        "POST",
        "/api/v1/sql",
        Some(&admin),
        Body::from("{\"sql\": "),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("JSON"))
    );
    let (status, _) = call(
        "POST",
        "/api/v1/intake/deployments",
        Some(&admin),
        Body::from("[1,"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Over the body limit: 413.
    let big = vec![b' '; BODY_LIMIT + 1];
    let (status, body) = call(
        "POST",
        "/api/v1/intake/deployments",
        Some(&admin),
        Body::from(big),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");

    // Runs: unknown source 404; the scheduler off 503.
    let (status, _) = call(
        "POST",
        "/api/v1/runs",
        Some(&admin),
        Body::from(r#"{"source": "nope"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call("POST", "/api/v1/runs", Some(&admin), Body::empty()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "scheduler_off");

    // Webhooks without a configured secret: 404, nothing read.
    let (status, _) = call("POST", "/api/v1/intake/github", None, Body::from("{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The OpenAPI document and its page.
    let (status, doc) = call("GET", "/api/v1/openapi.json", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/sql"]["post"]["requestBody"].is_object());
}

#[tokio::test]
async fn rate_limiter_allows_bursts_then_paces() {
    let limiter = RateLimiter::default();
    for _ in 0..3 {
        assert!(limiter.admit("a", 3).is_ok());
    }
    let wait = limiter.admit("a", 3).err().unwrap_or_default();
    // 3 a minute: one every 20 s.
    assert!(
        wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    assert!(limiter.admit("b", 3).is_ok());
    assert!(limiter.admit("a", 0).is_ok());
}

#[tokio::test]
async fn internal_errors_answer_an_id_not_the_internal_text() {
    let error = ApiError::internal("cannot open /var/lib/fathom/state.db: disk I/O error");
    assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!error.message.contains("/var/lib"), "{}", error.message);
    assert!(error.message.contains("error id"), "{}", error.message);
    let other = ApiError::internal("x");
    assert_ne!(
        error.message, other.message,
        "every failure gets its own id"
    );
}
