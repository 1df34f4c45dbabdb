//! `fathom sim`: the simulated organisation, served or exported.

use std::process::ExitCode;

use anyhow::{Context, Result};
use fathom_warehouse::WarehouseLocation;

use super::{Config, SimCommand};

pub(super) async fn sim(settings: &Config, command: SimCommand) -> Result<ExitCode> {
    match command {
        SimCommand::Truth { world, out } => {
            let config = world.config();
            let generated = fathom_sim::World::generate(config);
            let truth = fathom_sim::truth::Truth::compute(&generated);
            truth
                .write(&out)
                .with_context(|| format!("cannot write the truth into `{}`", out.display()))?;
            println!(
                "wrote {} DORA rows and {} production deployments for seed {} into {}",
                truth.dora.len(),
                truth.deployments.len(),
                config.seed,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Export {
            world,
            to,
            core_tables: true,
            ..
        } => export_core_tables(world.config(), std::path::Path::new(&to)),
        SimCommand::Export { world, to, at, .. } => {
            let target = export_target(settings, &to)?;
            let generated = fathom_sim::World::generate(world.config());
            let now = at.unwrap_or_else(|| generated.config.end());
            let options = fathom_sim::serve::SimOptions {
                export: Some(target),
                ..fathom_sim::serve::SimOptions::default()
            };
            let state = fathom_sim::serve::SimState::new(generated, options);
            state.set_now(now);
            if let Some(delivery) = state.deliver().await? {
                print_delivery(&to, &delivery);
            }
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Serve {
            world,
            listen,
            faults,
            export_to,
            github_app_key,
        } => {
            let config = world.config();
            let faults = match faults {
                Some(spec) => spec.parse()?,
                None => fathom_sim::serve::faults::FaultPlan::default(),
            };
            let mut options = fathom_sim::serve::SimOptions {
                faults,
                export: export_to
                    .as_deref()
                    .map(|to| export_target(settings, to))
                    .transpose()?,
                ..fathom_sim::serve::SimOptions::default()
            };
            if let Some(path) = &github_app_key {
                let app = fathom_sim::serve::GithubApp::generate(1001, 2002)
                    .map_err(|e| anyhow::anyhow!("cannot generate the App key: {e}"))?;
                std::fs::write(path, &app.private_key_pem)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!(
                    "GitHub App: app_id = {}, installation {}, private key in {}",
                    app.app_id,
                    app.installation_id,
                    path.display()
                );
                options.credentials.github_app = Some(app);
            }
            let credentials = options.credentials.clone();
            let state =
                fathom_sim::serve::SimState::new(fathom_sim::World::generate(config), options);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {listen}; pick another address with --listen")
                })?;
            let addr = listener.local_addr()?;
            println!(
                "simulating seed {} ({} teams, {} components, {} days to {}) at http://{addr}",
                config.seed, config.teams, config.services, config.days, config.end_date
            );
            for (upstream, url) in fathom_sim::serve::base_urls(addr) {
                use fathom_sim::serve::Upstream;
                let auth = match upstream {
                    Upstream::Backstage => {
                        format!("Authorization: Bearer {}", credentials.backstage_token)
                    }
                    Upstream::ArgoCd => {
                        format!("Authorization: Bearer {}", credentials.argocd_token)
                    }
                    Upstream::Github => {
                        format!("Authorization: Bearer {}", credentials.github_token)
                    }
                    Upstream::Sentry => {
                        format!("Authorization: Bearer {}", credentials.sentry_token)
                    }
                    Upstream::Datadog => format!(
                        "DD-API-KEY: {}, DD-APPLICATION-KEY: {}",
                        credentials.datadog_api_key, credentials.datadog_application_key
                    ),
                    Upstream::OpenCost => "(no auth)".to_owned(),
                };
                println!("  {:10} {url:45} {auth}", upstream.to_string());
            }
            if let (Some(to), Some(delivery)) = (&export_to, state.deliver().await?) {
                print_delivery(to, &delivery);
            }
            println!(
                "  {:10} http://{addr}/_sim/clock  (GET, or PUT {{\"now\": \"2026-06-30T12:00:00Z\"}})",
                "clock"
            );
            println!(
                "\n# Ingest from these simulators: put this in fathom.toml, then `fathom ingest`.\n{}",
                state.sources_snippet(addr)
            );
            println!("press Ctrl-C to stop");
            fathom_sim::serve::serve(listener, state, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens the object store the simulator delivers files into.
pub(super) fn export_target(
    settings: &Config,
    to: &str,
) -> Result<fathom_sim::serve::ExportTarget> {
    let location = WarehouseLocation::parse(to)?;
    let (store, root) = location.object_store(&settings.storage_options())?;
    Ok(fathom_sim::serve::ExportTarget {
        store,
        root,
        url: to.to_owned(),
    })
}

/// `fathom sim export --core-tables`: the core tables as import files,
/// with progress on stderr and the commands that load them.
fn export_core_tables(config: fathom_sim::WorldConfig, dir: &std::path::Path) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut shown = 0;
    let export =
        fathom_sim::export::core_tables::write_core_tables(&config, dir, &[], |done, total| {
            // A line per tenth: a large world takes minutes.
            let tenth = done * 10 / total.max(1);
            if tenth > shown {
                shown = tenth;
                eprintln!("{done} of {total} services written");
            }
        })
        .with_context(|| format!("cannot write the core tables into `{}`", dir.display()))?;
    let mut total = 0;
    for (table, path, rows) in export.parts.iter().flatten() {
        total += rows;
        println!("  {table:<22} {rows:>12} rows  {}", path.display());
    }
    println!(
        "wrote {total} rows of {} services x {} days (seed {}) in {:.1} s; load them, catalog first:",
        config.services,
        config.days,
        config.seed,
        started.elapsed().as_secs_f64()
    );
    for (table, path, rows) in export.parts.iter().flatten() {
        if *rows > 0 {
            println!("  fathom import {table} {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_delivery(to: &str, delivery: &fathom_sim::serve::Delivery) {
    let to = to.trim_end_matches('/');
    for period in &delivery.cur {
        println!(
            "  cur        {to}/cur/fathom-cur/data/BILLING_PERIOD={}  {}",
            period.billing_period,
            if !period.written {
                "final, unchanged".to_owned()
            } else {
                format!(
                    "{} rows in {} file(s){}",
                    period.rows,
                    period.files.len(),
                    if period.finalized {
                        ", final"
                    } else {
                        ", open"
                    }
                )
            }
        );
    }
    println!(
        "  events     {to}/portal-events/YYYY/MM/DD/events.ndjson  {} day file(s) written ({} events), {} already there",
        delivery.events.files_written,
        delivery.events.events_written,
        delivery.events.files_present
    );
}
