//! `fathom serve`: the API, the PostgreSQL endpoint and the scheduler.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use fathom_warehouse::query::QueryLimits;

use super::{Config, open_state, open_warehouse};

/// `fathom serve`: the API until Ctrl-C (or SIGTERM); requests in flight
/// finish first.
pub(super) async fn serve(
    config: &Config,
    listen: Option<&str>,
    postgres_listen: Option<&str>,
) -> Result<ExitCode> {
    let listen = listen.unwrap_or(&config.api.listen);
    let postgres_listen = postgres_listen.unwrap_or(&config.api.postgres_listen);
    let api = fathom_api::Api {
        warehouse: open_warehouse(config)?,
        state: open_state(config).await?,
        config: fathom_api::ApiConfig {
            auth: config.api.auth,
            query: QueryLimits {
                memory_limit_bytes: Some(config.query.memory_limit_mib.saturating_mul(1 << 20)),
                ..QueryLimits::default()
            },
            row_limit: config.query.row_limit,
            query_timeout: std::time::Duration::from_secs(config.query.timeout_seconds),
            sources: config.sources.iter().map(|s| s.name().to_owned()).collect(),
            cors_origin: Some(config.api.cors_origin.clone()).filter(|o| !o.is_empty()),
            github_webhooks: config
                .sources
                .iter()
                .filter_map(|source| match source {
                    fathom_ingest::source::SourceConfig::Github(github) => github
                        .webhook_secret()
                        .map(|secret| fathom_api::GithubWebhook {
                            source: source.clone(),
                            secret,
                        }),
                    _ => None,
                })
                .collect(),
            rate_limit_per_minute: config.api.rate_limit_per_minute,
            events: events_intake(config),
            report_page_views: config.api.report_page_views,
            header_timeout: std::time::Duration::from_secs(config.api.header_timeout_seconds),
            concurrent_queries: config.query.concurrent_queries.max(1),
        },
        requests: fathom_api::RequestMetrics::default(),
        oidc: config.api.oidc.clone().map(fathom_api::oidc::Oidc::new),
        limiter: fathom_api::RateLimiter::default(),
        caches: fathom_api::Caches::default(),
        triggers: None,
        guards: fathom_api::Guards::default(),
    };
    let mut api = api;
    // The scheduler, checked before anything listens so a bad schedule
    // fails the start.
    let (triggers, trigger_inbox) = tokio::sync::mpsc::channel(64);
    let scheduler = if config.schedule.enabled && !config.sources.is_empty() {
        api.triggers = Some(triggers);
        Some((
            config.clone(),
            api.warehouse.clone(),
            api.state.clone(),
            trigger_inbox,
        ))
    } else {
        None
    };
    let api = Arc::new(api);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on `{listen}`"))?;
    let addr = listener.local_addr()?;
    println!(
        "serving http://{addr}/api/v1 (docs: http://{addr}/api/v1/docs; health: /healthz, /readyz)"
    );
    let postgres = if postgres_listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(postgres_listen)
            .await
            .with_context(|| format!("cannot listen on `{postgres_listen}` (PostgreSQL)"))?;
        let addr = listener.local_addr()?;
        println!(
            "serving PostgreSQL on {addr}: psql \"host={} port={} dbname=fathom user=analyst\" (password: an analyst's API token)",
            addr.ip(),
            addr.port()
        );
        Some(listener)
    };
    // One stop signal for every part of the server.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler_stop = stopped.clone();
    let when_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let signals = async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                () = terminated => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
        }
        let _ = stop.send(true);
    };
    let scheduler = match scheduler {
        Some((config, warehouse, state, inbox)) => {
            println!(
                "scheduler: every source on its [schedule] (default every {}); POST /api/v1/runs runs one now",
                config.schedule.every
            );
            Some(tokio::spawn(crate::schedule::run(
                config,
                warehouse,
                state,
                inbox,
                scheduler_stop,
            )))
        }
        None => None,
    };
    tokio::spawn(signals);
    let http = fathom_api::serve(api.clone(), listener, when_stopped());
    match postgres {
        Some(listener) => {
            let pg = fathom_api::pg::serve_postgres(api, listener, when_stopped());
            let (http, pg) = tokio::join!(http, pg);
            http?;
            pg?;
        }
        None => http.await?,
    }
    // The scheduler finishes (or abandons, after its grace period) the job
    // it is running.
    if let Some(scheduler) = scheduler {
        scheduler.await.context("the scheduler panicked")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// The portal-events source posted events land under, with its key; a
/// source without a usable key accepts no events (said at start).
pub(super) fn events_intake(config: &Config) -> Option<fathom_api::EventsIntake> {
    config.sources.iter().find_map(|source| match source {
        fathom_ingest::source::SourceConfig::PortalEvents(events) => {
            match events.key(source.name()) {
                Ok(pseudonymizer) => Some(fathom_api::EventsIntake {
                    source: source.name().to_owned(),
                    pseudonymizer,
                }),
                Err(e) => {
                    eprintln!("warning: /api/v1/intake/events is off: {e}");
                    None
                }
            }
        }
        _ => None,
    })
}
