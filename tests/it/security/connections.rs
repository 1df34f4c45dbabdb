//! Unauthenticated amplification: made-up methods do not make `/metrics`
//! series, half-sent requests are closed after the header timeout and do
//! not keep others out, `/readyz` floods are answered from a cache, and
//! failed authentication from one address is throttled.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::World;

fn address(base: &str) -> Result<String> {
    Ok(base
        .strip_prefix("http://")
        .context("base is http")?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_cannot_grow_or_starve_the_server() -> Result<()> {
    let world = World::start(&[("FATHOM_API__HEADER_TIMEOUT_SECONDS", "2")])?;
    let base = world.server.base.clone();
    let http = reqwest::Client::new();

    // 300 requests with made-up methods: one `other` series, not 300.
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("FAKE{i}").as_bytes())?;
        let _ = http
            .request(method, format!("{base}/healthz"))
            .send()
            .await?;
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(!metrics.contains("FAKE"), "made-up methods became labels");
    assert!(metrics.contains("method=\"other\""));
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("fathom_http_request_duration_seconds_count"))
        .count();
    assert!(series < 20, "{series} series");

    // Half-sent requests: they hold a connection until the header timeout
    // (2 s here), then are closed; meanwhile others are served.
    let addr = address(&base)?;
    let mut half_open = Vec::new();
    for _ in 0..50 {
        let mut socket = TcpStream::connect(&addr)?;
        socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")?;
        half_open.push(socket);
    }
    let started = Instant::now();
    let answer = http.get(format!("{base}/healthz")).send().await?;
    assert_eq!(answer.status(), 200);
    // Served while they wait (not after their 2-second timeout).
    assert!(started.elapsed() < Duration::from_millis(1_500));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for socket in &mut half_open {
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buffer = Vec::new();
        // The server answers 408 or just closes: either way the read ends.
        let read = socket.read_to_end(&mut buffer);
        assert!(read.is_ok(), "a half-sent request was kept open: {read:?}");
    }
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(&addr)?;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
    idle.set_read_timeout(Some(Duration::from_secs(6)))?;
    let mut buffer = Vec::new();
    assert!(
        idle.read_to_end(&mut buffer).is_ok(),
        "the idle connection stays open"
    );
    assert!(String::from_utf8_lossy(&buffer).starts_with("HTTP/1.1 200"));

    // A flood of readiness probes is answered from the cache.
    let started = Instant::now();
    for _ in 0..500 {
        let ready = http.get(format!("{base}/readyz")).send().await?;
        assert_eq!(ready.status(), 200);
    }
    eprintln!("500 /readyz in {:?}", started.elapsed());

    // Failed authentication runs out per address; a verified credential
    // already in the cache keeps working.
    let ok = http
        .get(format!("{base}/api/v1/entities"))
        .bearer_auth(&world.viewer)
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    let mut throttled = None;
    for i in 0..100 {
        let answer = http
            .get(format!("{base}/api/v1/entities"))
            .bearer_auth(format!("fth_bad_{i}"))
            .send()
            .await?;
        if answer.status() == 429 {
            throttled = Some((i, answer.headers().get("retry-after").cloned()));
            break;
        }
        assert_eq!(answer.status(), 401);
    }
    let (after, retry_after) = throttled.context("bad tokens were never throttled")?;
    assert!(after <= 31, "throttled only after {after} failures");
    assert!(retry_after.is_some());
    let still = http
        .get(format!("{base}/api/v1/entities"))
        .bearer_auth(&world.viewer)
        .send()
        .await?;
    assert_eq!(still.status(), 200, "a verified credential was throttled");
    Ok(())
}
