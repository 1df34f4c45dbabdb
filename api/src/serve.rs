//! The HTTP listener: connections are capped, a request's head must arrive
//! within [`HEADER_TIMEOUT`] (which also closes idle keep-alive
//! connections), a body within [`BODY_TIMEOUT`], and each request knows the
//! address it came from (for the failed-authentication budget).
//!
//! Why not `axum::serve`: it has no header-read timeout and no connection
//! cap, so half-sent requests held descriptors until the process ran out
//! and stopped answering everyone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::{Api, AuthMode, Error, router};

/// How long a client has to send a request's head, and how long an idle
/// keep-alive connection is kept (default of `[api] header_timeout_seconds`).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client has to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Most connections served at once, whatever the descriptor limit allows.
const MAX_CONNECTIONS: usize = 1_024;

/// Connections served at once: at most half the process's descriptors
/// (the rest are for tables, the state database and the PostgreSQL
/// endpoint), at most [`MAX_CONNECTIONS`].
pub fn connection_cap() -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        });
    soft_limit.map_or(MAX_CONNECTIONS, |n| (n / 2).clamp(16, MAX_CONNECTIONS))
}

/// Serves `api` on `listener` until `shutdown` completes; requests in
/// flight finish first.
pub async fn serve(
    api: Arc<Api>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr()?;
    if api.config.auth == AuthMode::None && !addr.ip().is_loopback() {
        return Err(Error::OpenWithoutAuth(addr));
    }
    let header_timeout = api.config.header_timeout;
    let app = router(api);
    let cap = connection_cap();
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, cap, "connection refused: the server is at its connection cap");
            drop(socket);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(socket), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
