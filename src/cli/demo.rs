//! `fathom demo`: a simulated organisation end to end, then the dashboards.

use std::process::ExitCode;

use anyhow::{Context, Result};
use fathom_models::ALL_TABLES;
use fathom_warehouse::WarehouseLocation;
use fathom_warehouse::query::QueryLimits;

use super::ingest::{ingest_progress, print_ingest_report};
use super::serve::serve;
use super::{Config, WorldArgs, open_state, open_warehouse};

pub(super) async fn demo(
    world: WorldArgs,
    dir: &std::path::Path,
    no_serve: bool,
    summary: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the demo directory `{}`", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", dir.display()))?;
    let generated = fathom_sim::World::generate(world.config());
    let world_end = generated.config.end();
    println!(
        "generated {} teams, {} components, {} days of history (seed {})",
        generated.org.teams.len(),
        generated.org.components.len(),
        generated.config.days,
        generated.config.seed
    );
    // The demo's Argo CD keeps its whole history, as if Fathom had been
    // polling all along; `fathom sim serve` keeps Argo CD's default of 10.
    // A first backfill of the default world takes about 15,000 GitHub
    // requests (three per pull request: the pull, its commits, its
    // reviews). With a personal token's 5,000/hour a real first run stops
    // when the budget is spent, reports GitHub degraded, and the next run
    // resumes from the cursors; the demo's token gets enough budget to
    // finish in one go. (Once caught up, an idle hour costs nothing: the
    // conditional requests answer 304, which GitHub does not count.)
    // The AWS cost report and the portal events are delivered as files,
    // into the demo directory.
    let exports = dir.join("exports");
    let exports_url = exports.display().to_string();
    let (store, root) = WarehouseLocation::parse(&exports_url)?
        .object_store(&fathom_warehouse::StorageOptions::default())?;
    let options = fathom_sim::serve::SimOptions {
        argocd_history_limit: usize::MAX,
        github_rate: fathom_sim::serve::github::RateBudget {
            limit: 30_000,
            window_seconds: 3_600,
        },
        export: Some(fathom_sim::serve::ExportTarget {
            store,
            root,
            url: exports_url,
        }),
        ..fathom_sim::serve::SimOptions::default()
    };
    let state = fathom_sim::serve::SimState::new(generated, options);
    if let Some(delivery) = state.deliver().await? {
        println!(
            "delivered {} billing period(s) of AWS cost report and {} day(s) of portal events to {}",
            delivery.cur.len(),
            delivery.events.files_written + delivery.events.files_present,
            exports.display()
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fathom_sim::serve::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let config_text = format!(
        "# Written by `fathom demo`. The sources point at simulators that stop\n# with the demo; the warehouse stays.\n[warehouse]\nurl = \"{}\"\n\n{}",
        dir.join("data").display(),
        state.sources_snippet(addr)
    );
    let config_path = dir.join("fathom.toml");
    std::fs::write(&config_path, &config_text)
        .with_context(|| format!("cannot write `{}`", config_path.display()))?;
    let config = Config::load(Some(&config_path), std::iter::empty())?;
    println!(
        "simulated upstreams at http://{addr}; ingesting into {}",
        dir.join("data").display()
    );

    let warehouse = open_warehouse(&config)?;
    let state_db = open_state(&config).await?;
    let run_id = state_db.start_run("demo ingest").await?;
    let progress = ingest_progress(false);
    let pipeline = super::pipeline(&config, &warehouse, &state_db);
    let report = pipeline
        .ingest(
            &run_id,
            &fathom_ingest::runner::IngestOptions::default(),
            progress,
        )
        .await;
    let _ = stop.send(());
    let _ = server.await;
    let report = report.context("the demo ingest failed")?;
    print_ingest_report(&report);
    let ingest_seconds = started.elapsed().as_secs_f64();

    // The metrics, as of the world's last day (its history ends there).
    println!(
        "\ncomputing the marts (DORA as of the world's end, {}):",
        world_end.date_naive()
    );
    let run_id = state_db.start_run("demo transform").await?;
    let request = fathom_pipeline::TransformRequest {
        only: None,
        as_of: world_end,
        full: true,
    };
    pipeline
        .transform(
            &run_id,
            &request,
            &super::transform::TransformLines { quiet: false },
        )
        .await
        .context("the demo transform failed")?;
    let run_id = state_db.start_run("demo detect").await?;
    let detected = pipeline
        .detect(&run_id, false)
        .await
        .context("the demo anomaly detection failed")?;
    super::detect::print_report(&detected);

    println!("\nwhat landed:");
    let session =
        fathom_warehouse::query::read_only_session(&warehouse, QueryLimits::default()).await?;
    println!("{:<24} {:>9} {:>13}", "table", "rows", "unattributed");
    for table in ALL_TABLES {
        if table.name.starts_with("raw_") {
            continue;
        }
        // A portal event's entity is the page's context, not an
        // attribution that could fail.
        let has_entity = table.column("entity_ref").is_some() && table.name != "portal_events";
        let sql = if has_entity {
            format!(
                "SELECT count(*), count(*) - count(entity_ref) FROM {}",
                table.name
            )
        } else {
            format!("SELECT count(*), 0 FROM {}", table.name)
        };
        let (_, batches) = fathom_warehouse::query::query(&session, &sql).await?;
        let cell = |column: usize| -> String {
            batches
                .first()
                .filter(|b| b.num_rows() > 0)
                .and_then(|b| {
                    arrow::util::display::ArrayFormatter::try_new(
                        b.column(column).as_ref(),
                        &Default::default(),
                    )
                    .ok()
                    .map(|f| f.value(0).to_string())
                })
                .unwrap_or_else(|| "0".to_owned())
        };
        let rows = cell(0);
        if rows == "0" {
            continue;
        }
        println!(
            "{:<24} {:>9} {:>13}",
            table.name,
            rows,
            if has_entity { cell(1) } else { "-".to_owned() }
        );
    }
    let sample = "SELECT e.owner_ref AS team, count(*) AS production_deployments, \
                  count(DISTINCT d.entity_ref) AS services \
                  FROM deployments d JOIN catalog_entities e ON e.entity_ref = d.entity_ref \
                  WHERE d.status = 'success' AND regexp_like(d.environment, '^prod(uction)?([-_].*)?$', 'i') \
                  GROUP BY 1 ORDER BY 2 DESC";
    println!("\na sample query — production deployments per team:\n  {sample}\n");
    let (_, batches) = fathom_warehouse::query::query(&session, sample).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    let dora = "SELECT scope, deployments, round(deployments_per_week, 1) AS per_week, \
                round(lead_time_p50_seconds / 3600, 1) AS lead_time_p50_hours, \
                round(change_failure_rate * 100, 1) AS cfr_percent, \
                round(failed_deployment_recovery_p50_seconds / 3600, 1) AS recovery_p50_hours, \
                overall_tier \
                FROM dora_metrics WHERE window_days = 30 AND environment = 'all' \
                AND scope_kind IN ('org', 'group') \
                ORDER BY scope_kind DESC, scope";
    println!("DORA over the world's last 30 days (dora_metrics):");
    let (_, batches) = fathom_warehouse::query::query(&session, dora).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);

    // The generator computes DORA with its own implementation of the
    // definitions: every scope and window must agree.
    let truth = fathom_sim::truth::Truth::compute(state.world());
    let (_, batches) = fathom_warehouse::query::query(
        &session,
        &format!(
            "SELECT {} FROM dora_metrics WHERE environment = 'all'",
            fathom_sim::truth::DoraTruth::COLUMNS
        ),
    )
    .await?;
    let ours: Vec<fathom_sim::truth::DoraTruth> = fathom_warehouse::query::text_rows(&batches)?
        .iter()
        .filter_map(|row| fathom_sim::truth::DoraTruth::from_texts(row))
        .collect();
    let (agreed, differences) = fathom_sim::truth::compare_dora(&truth.dora, &ours);
    println!(
        "checked against the world's own DORA computation: {agreed} of {} scope × window rows agree",
        truth.dora.len()
    );
    for difference in differences.iter().take(5) {
        println!("  differs: {difference}");
    }
    cost_summary(&session, &truth, state.world()).await?;
    usage_summary(&session, &truth, state.world(), config.usage.k_anonymity).await?;
    anomaly_summary(&session, &truth, state.world()).await?;
    let risk = super::ml_risk::demo_risk(&warehouse, &state_db, state.world()).await?;
    let suspects = super::ml_risk::demo_suspects(&session, &truth).await?;
    if let Some(path) = summary {
        // The figures as printed, for scripts and benchmarks (the printed
        // wording may change; these names do not without a note).
        let figures = serde_json::json!({
            "seed": state.world().config.seed,
            "dora_rows": truth.dora.len(),
            "dora_rows_agreeing": agreed,
            "risk": risk,
            "suspects": suspects,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)
            .with_context(|| format!("cannot write the summary `{}`", path.display()))?;
    }
    println!(
        "\ningested and computed in {:.1}s (ingest {ingest_seconds:.1}s). Query it further with:\n  fathom --config {} sql \"SELECT * FROM dora_metrics LIMIT 10\"\n  fathom --config {} explain dora --scope org --metric lead_time --window 30d",
        started.elapsed().as_secs_f64(),
        config_path.display(),
        config_path.display()
    );
    if no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    // Serve what was computed. The simulators are gone, so nothing is
    // scheduled; an analyst token opens SQL over HTTP and psql.
    let http = free_or_any("127.0.0.1:8080").await?;
    let postgres = free_or_any("127.0.0.1:5433").await?;
    let (_, secret) = state_db.create_token("demo", "analyst", &[], None).await?;
    let port = postgres.rsplit(':').next().unwrap_or("5433");
    println!(
        "
serving the results. API docs: http://{http}/api/v1/docs
Dashboards (signed in with an analyst token made for the demo): http://{http}/#token={secret}
SQL from psql (the password is an analyst token made for the demo):
  PGPASSWORD={} psql \"host=127.0.0.1 port={port} dbname=fathom user=demo sslmode=disable\" -c \"SELECT scope, deployments, overall_tier FROM dora_metrics WHERE window_days = 30 AND environment = 'all' AND scope_kind = 'group'\"\nCtrl-C stops.",
        secret.expose(),
        secret = secret.expose()
    );
    let mut config = config;
    config.schedule.enabled = false;
    serve(&config, Some(&http), Some(&postgres)).await
}

/// `preferred` when it is free, else a free port on loopback.
pub(super) async fn free_or_any(preferred: &str) -> Result<String> {
    let listener = match tokio::net::TcpListener::bind(preferred).await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    Ok(listener.local_addr()?.to_string())
}

/// The organisation's cost of its last complete month, and how the cost
/// marts agree with what the generator billed and allocated.
async fn cost_summary(
    session: &datafusion::prelude::SessionContext,
    truth: &fathom_sim::truth::Truth,
    world: &fathom_sim::world::World,
) -> Result<()> {
    use fathom_sim::truth::cost::{
        CostKey, cloud_cost_totals, compare_cost_totals, kubernetes_cost_totals,
    };
    let (_, batches) = fathom_warehouse::query::query(
        session,
        "SELECT billing_period, billing_currency, round(effective_cost, 2), round(billed_cost, 2), \
         round(change_ratio * 100, 1), driver \
         FROM cost_monthly WHERE scope = 'org' AND complete \
         ORDER BY billing_period DESC, billing_currency LIMIT 1",
    )
    .await?;
    let rows = fathom_warehouse::query::text_rows(&batches)?;
    if let Some(row) = rows.first() {
        let text = |i: usize| row.get(i).map(String::as_str).unwrap_or_default();
        let change = if text(4).is_empty() {
            String::new()
        } else {
            format!(
                ", {}% on the month before (most of it: {})",
                text(4),
                text(5)
            )
        };
        println!(
            "\ncost of the organisation in {} (cost_monthly): {} {} effective, {} billed{change}",
            text(0),
            text(2),
            text(1),
            text(3)
        );
    }
    let landed = |sql: &str| {
        let sql = sql.to_owned();
        async move {
            let (_, batches) = fathom_warehouse::query::query(session, &sql).await?;
            let mut out: std::collections::BTreeMap<CostKey, [f64; 3]> = Default::default();
            for row in fathom_warehouse::query::text_rows(&batches)? {
                let amount = |i: usize| {
                    row.get(i)
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                let text = |i: usize| row.get(i).cloned().unwrap_or_default();
                out.insert(
                    (text(0), text(1), text(2)),
                    [amount(3), amount(4), amount(5)],
                );
            }
            anyhow::Ok(out)
        }
    };
    let cloud = landed(
        "SELECT billing_period, coalesce(entity_ref, ''), charge_category, sum(billed_cost), \
         sum(effective_cost), sum(coalesce(list_cost, 0)) FROM cost_daily \
         WHERE cost_source = 'cloud' AND NOT allocated GROUP BY 1, 2, 3",
    )
    .await?;
    let kubernetes = landed(
        "SELECT billing_period, entity_ref, charge_category, sum(billed_cost), \
         sum(effective_cost), sum(list_cost) FROM cost_daily \
         WHERE cost_source = 'kubernetes' AND attribution = 'direct' AND NOT allocated \
         GROUP BY 1, 2, 3",
    )
    .await?;
    let cloud_truth = cloud_cost_totals(&truth.cloud_costs);
    let kubernetes_truth = kubernetes_cost_totals(world);
    let (cloud_agreed, cloud_differences) = compare_cost_totals(&cloud_truth, &cloud);
    let (kubernetes_agreed, kubernetes_differences) =
        compare_cost_totals(&kubernetes_truth, &kubernetes);
    println!(
        "checked against what the world billed: {cloud_agreed} of {} billing period × owner × category rows agree (cloud), {kubernetes_agreed} of {} month × component rows (Kubernetes)",
        cloud_truth.len(),
        kubernetes_truth.len()
    );
    for difference in cloud_differences
        .iter()
        .chain(&kubernetes_differences)
        .take(5)
    {
        println!("  differs: {difference}");
    }
    Ok(())
}

/// The organisation's portal adoption in the world's last full month, and
/// how `usage_active` agrees with the generator's events: every published
/// scope × month equal to the truth, every withheld one truly below k.
async fn usage_summary(
    session: &datafusion::prelude::SessionContext,
    truth: &fathom_sim::truth::Truth,
    world: &fathom_sim::world::World,
    k: u32,
) -> Result<()> {
    use chrono::Datelike;
    let last_day = world.config.end().date_naive() - chrono::Duration::days(1);
    let full = if (last_day + chrono::Duration::days(1)).day() == 1 {
        last_day
    } else {
        last_day.with_day(1).unwrap_or(last_day) - chrono::Duration::days(1)
    };
    let month = full.format("%Y-%m").to_string();
    let (_, batches) = fathom_warehouse::query::query(
        session,
        "SELECT scope, to_char(period_start, '%Y-%m'), members, active_users, suppression, \
         round(adoption * 100, 1) FROM usage_active WHERE grain = 'month'",
    )
    .await?;
    let rows = fathom_warehouse::query::text_rows(&batches)?;
    if let Some(org) = rows.iter().find(|r| r[0] == "org" && r[1] == month) {
        println!(
            "\nportal use in {month} (usage_active): {} monthly active users of {} members, adoption {}%",
            if org[3].is_empty() {
                "withheld"
            } else {
                &org[3]
            },
            org[2],
            if org[5].is_empty() {
                "withheld"
            } else {
                &org[5]
            }
        );
    }
    let expected: std::collections::BTreeMap<(&str, &str), usize> = truth
        .usage_months
        .active
        .iter()
        .map(|t| ((t.scope.as_str(), t.month.as_str()), t.active_users))
        .collect();
    let (mut agreed, mut withheld, mut differences) = (0, 0, Vec::new());
    for row in &rows {
        let active = expected
            .get(&(row[0].as_str(), row[1].as_str()))
            .copied()
            .unwrap_or(0);
        let agrees = match row[3].parse::<usize>() {
            Ok(n) => n == active,
            Err(_) if row[4] == "below_k" => {
                withheld += 1;
                active < k as usize
            }
            Err(_) => {
                withheld += 1;
                row[4] == "complement"
            }
        };
        if agrees {
            agreed += 1;
        } else {
            differences.push(format!(
                "{} {}: {:?} vs truth {active}",
                row[0], row[1], row[3]
            ));
        }
    }
    println!(
        "checked against the world's portal events: {agreed} of {} scope × month rows agree ({withheld} withheld, fewer than k = {k} users or a complement)",
        rows.len()
    );
    for difference in differences.iter().take(5) {
        println!("  differs: {difference}");
    }
    Ok(())
}

/// How the cost anomalies found per component compare with those the
/// generator injected: event-level precision and recall (an injected
/// anomaly is found when an anomaly of the component's total cost overlaps
/// it; the anomalies of its parts are the same events seen closer).
async fn anomaly_summary(
    session: &datafusion::prelude::SessionContext,
    truth: &fathom_sim::truth::Truth,
    world: &fathom_sim::World,
) -> Result<()> {
    use fathom_ml::evaluate::{Alert, DAYS_PER_MONTH, Label, RECOVERY_POINTS, evaluate};
    let (_, batches) = fathom_warehouse::query::query(
        session,
        "SELECT scope, kind, CAST(first_day AS VARCHAR) AS first_day, \
            CAST(last_day AS VARCHAR) AS last_day, CAST(round(impact, 2) AS VARCHAR) AS impact \
         FROM anomalies \
         WHERE metric = 'cost' AND scope_kind = 'component' AND dimension IS NULL \
         ORDER BY scope, first_day",
    )
    .await?;
    let rows = fathom_warehouse::query::text_rows(&batches)?;
    let first = world.config.start().date_naive();
    let position = |text: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|d| (d - first).num_days().max(0) as usize)
    };
    let mut series: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for load in &world.loads {
        let next = series.len();
        series
            .entry(world.org.component_ref(load.component))
            .or_insert(next);
    }
    let alerts: Vec<Alert> = rows
        .iter()
        .filter_map(|row| {
            let [scope, kind, first_day, last_day, _] = row.as_slice() else {
                return None;
            };
            Some(Alert {
                series: *series.get(scope.as_str())?,
                first: position(first_day)?,
                last: position(last_day)?,
                kind: kind.clone(),
            })
        })
        .collect();
    let labels: Vec<Label> = truth
        .anomalies
        .iter()
        .filter_map(|a| {
            Some(Label {
                series: *series.get(&a.entity_ref)?,
                first: (a.start - first).num_days().max(0) as usize,
                last: (a.end - first).num_days().max(0) as usize,
                kind: super::ml::label_kind(a.kind).to_owned(),
            })
        })
        .collect();
    if labels.is_empty() {
        println!(
            "\ncost anomalies: {} found; the world injected none to compare with (worlds shorter than 30 days have none)",
            alerts.len()
        );
        return Ok(());
    }
    let points = series.len() * world.config.days as usize;
    let report = evaluate(&labels, &alerts, points, DAYS_PER_MONTH, RECOVERY_POINTS);
    println!(
        "\ncost anomalies against the {} the world injected: precision {:.2}, recall {:.2} ({} found, {} false, {} on the return to normal)",
        labels.len(),
        report.precision,
        report.recall,
        report.true_alerts,
        report.false_alerts,
        report.recovery_alerts
    );
    for (kind, k) in &report.kinds {
        println!(
            "  {kind:<12} {} of {} found, median delay {:.0} d",
            k.found, k.labelled, k.median_delay
        );
    }
    Ok(())
}
