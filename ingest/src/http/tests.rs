//! The client against local servers: retries, budgets, the breaker, token renewal.

use std::sync::Arc;

use fathom_sim::serve::{SimOptions, SimState, serve};
use fathom_sim::{World, WorldConfig};

use super::*;

/// A small simulated world on loopback with `faults`.
async fn sim(faults: &str) -> String {
    let world = World::generate(WorldConfig {
        teams: 1,
        services: 3,
        days: 20,
        ..WorldConfig::default()
    });
    let options = SimOptions {
        faults: faults.parse().unwrap(),
        ..SimOptions::default()
    };
    let state: Arc<SimState> = SimState::new(world, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, state, std::future::pending()));
    format!("http://{addr}")
}

fn quick(policy: HttpPolicy) -> HttpPolicy {
    HttpPolicy {
        backoff_initial_ms: 1,
        backoff_max_ms: 5,
        ..policy
    }
}

fn argocd(policy: HttpPolicy, token: &str) -> HttpClient {
    HttpClient::new(
        "argocd",
        quick(policy),
        &[("authorization", format!("Bearer {token}"))],
        ResetStyle::SecondsFromNow,
    )
    .unwrap()
}

#[tokio::test]
async fn server_errors_resets_and_truncation_are_retried() {
    let base = sim("seed=3; argocd:error_rate=0.3,reset_rate=0.2,truncate_rate=0.2").await;
    let client = argocd(HttpPolicy::default(), "sim-argocd-token");
    for _ in 0..10 {
        let fetched = client
            .get(&format!("{base}/argocd/api/v1/applications"), None)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&fetched.body).unwrap();
        assert!(body["items"].is_array());
    }
    assert!(client.stats.retries.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn refusals_are_not_retried_and_say_what_to_fix() {
    let base = sim("seed=1").await;
    let client = argocd(HttpPolicy::default(), "wrong");
    let error = client
        .get(&format!("{base}/argocd/api/v1/applications"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, HttpError::Status { status: 401, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("check the source's token"),
        "{error}"
    );
    assert!(error.is_upstream_down());
    assert_eq!(client.stats.requests.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures() {
    let base = sim("seed=1; argocd:error_rate=1.0").await;
    let client = argocd(
        HttpPolicy {
            max_retries: 1,
            breaker_threshold: 3,
            breaker_cooldown_seconds: 3600.0,
            ..HttpPolicy::default()
        },
        "sim-argocd-token",
    );
    let url = format!("{base}/argocd/api/v1/applications");
    for _ in 0..3 {
        let error = client.get(&url, None).await.unwrap_err();
        assert!(
            matches!(error, HttpError::Exhausted { attempts: 2, .. }),
            "{error}"
        );
    }
    assert!(client.is_open());
    let sent = client.stats.requests.load(Ordering::Relaxed);
    let error = client.get(&url, None).await.unwrap_err();
    assert!(matches!(error, HttpError::CircuitOpen { .. }), "{error}");
    assert_eq!(
        client.stats.requests.load(Ordering::Relaxed),
        sent,
        "no request while open"
    );
}

#[tokio::test]
async fn too_many_requests_waits_as_told() {
    let base = sim("seed=1; backstage:burst_every=2,burst_length=1").await;
    let client = HttpClient::new(
        "backstage",
        quick(HttpPolicy::default()),
        &[("authorization", "Bearer sim-backstage-token".to_owned())],
        ResetStyle::SecondsFromNow,
    )
    .unwrap();
    let url = format!("{base}/backstage/api/catalog/entities/by-query?limit=5");
    for _ in 0..3 {
        client.get(&url, None).await.unwrap();
    }
    assert!(client.stats.retries.load(Ordering::Relaxed) >= 1);
    // The simulator sends `Retry-After: 1`.
    assert!(client.stats.rate_limit_wait_ms.load(Ordering::Relaxed) >= 1000);
}

#[tokio::test]
async fn a_rate_limit_beyond_the_allowed_wait_fails_fast() {
    let base = sim("seed=1; backstage:burst_every=1,burst_length=100").await;
    let client = HttpClient::new(
        "backstage",
        quick(HttpPolicy {
            max_rate_limit_wait_seconds: 0.5,
            ..HttpPolicy::default()
        }),
        &[("authorization", "Bearer sim-backstage-token".to_owned())],
        ResetStyle::SecondsFromNow,
    )
    .unwrap();
    let error = client
        .get(
            &format!("{base}/backstage/api/catalog/entities/by-query"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::RateLimited { .. }), "{error}");
}

#[tokio::test]
async fn conditional_requests_get_not_modified() {
    let base = sim("seed=1").await;
    let client = HttpClient::new(
        "github",
        quick(HttpPolicy::default()),
        &[("authorization", "Bearer sim-github-token".to_owned())],
        ResetStyle::EpochSeconds,
    )
    .unwrap();
    let url = format!("{base}/github/orgs/acme/repos?per_page=100");
    let first = client.get(&url, None).await.unwrap();
    let etag = first.header("etag").unwrap().to_owned();
    let second = client.get(&url, Some(&etag)).await.unwrap();
    assert!(second.not_modified());
    assert!(second.body.is_empty());
    assert_eq!(client.stats.not_modified.load(Ordering::Relaxed), 1);
}
