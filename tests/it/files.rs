//! File-delivered sources against the simulator's deliveries: the AWS cost
//! report (billing periods replaced when rewritten, totals equal to the
//! world's to the cent) and portal usage events (pseudonymized, counted by
//! team, retained).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use fathom_sim::serve::{ExportTarget, SimOptions, SimState};
use fathom_sim::{World, WorldConfig};

use crate::ingest::{ingest, ingest_ok};
use crate::support::{count, fathom_bin, local_warehouse, rows};

pub(crate) fn sim_with_exports(world: WorldConfig, dir: &Path) -> Result<std::sync::Arc<SimState>> {
    let url = dir.join("exports").display().to_string();
    let (store, root) = fathom_warehouse::WarehouseLocation::parse(&url)?
        .object_store(&fathom_warehouse::StorageOptions::default())?;
    Ok(SimState::new(
        World::generate(world),
        SimOptions {
            export: Some(ExportTarget { store, root, url }),
            ..SimOptions::default()
        },
    ))
}

/// FOCUS lines of June 2026 for `provider`'s billing account: one per
/// amount, charged on the 30th.
fn focus_csv(provider: &str, amounts: &[f64]) -> String {
    let mut out = "BillingPeriodStart,ChargePeriodStart,BilledCost,EffectiveCost,ChargeCategory,ProviderName,BillingAccountId,BillingCurrency,ResourceId\n".to_owned();
    for (i, amount) in amounts.iter().enumerate() {
        out.push_str(&format!(
            "2026-06-01T00:00:00Z,2026-06-30T00:00:00Z,{amount},{amount},Usage,{provider},{provider}-001,USD,{provider}-r{i}\n"
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_providers_of_one_month_do_not_replace_each_other_and_gzip_is_read() -> Result<()> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let exports = dir.path().join("exports");
    let folder = |provider: &str| exports.join(format!("{provider}/data/BILLING_PERIOD=2026-06"));
    for provider in ["azure", "gcp"] {
        std::fs::create_dir_all(folder(provider))?;
    }
    std::fs::write(
        folder("azure").join("part-0.csv"),
        focus_csv("Microsoft", &[1.0, 2.0, 3.0]),
    )?;
    // GCP's export arrives compressed, as export services write CSV.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(focus_csv("Google Cloud", &[10.0, 20.0]).as_bytes())?;
    std::fs::write(folder("gcp").join("part-0.csv.gz"), gz.finish()?)?;
    std::fs::write(folder("gcp").join("part-1.csv.zip"), b"zip")?;
    let config = write_config(
        dir.path(),
        &format!(
            "[[sources]]\ntype = \"cost_report\"\nlocation = \"{}\"\n",
            exports.display()
        ),
    )?;
    let report = ingest_ok(&config, &[])?;
    // The file nobody reads is said.
    assert!(report.to_string().contains("part-1.csv.zip"), "{report}");
    let warehouse_dir = dir.path().join("data");
    let by_provider = |warehouse: fathom_warehouse::Warehouse| async move {
        rows(
            &warehouse,
            "SELECT provider, CAST(count(*) AS VARCHAR), CAST(sum(billed_cost_usd) AS VARCHAR) \
             FROM cloud_costs_daily WHERE billing_period = '2026-06' GROUP BY 1 ORDER BY 1",
        )
        .await
    };
    assert_eq!(
        by_provider(local_warehouse(&warehouse_dir)?).await?,
        [["google cloud", "2", "30.0"], ["microsoft", "3", "6.0"]]
    );

    // Azure rewrites June: its lines are replaced, Google's stay.
    std::fs::write(
        folder("azure").join("part-0.csv"),
        focus_csv("Microsoft", &[4.0]),
    )?;
    ingest_ok(&config, &[])?;
    assert_eq!(
        by_provider(local_warehouse(&warehouse_dir)?).await?,
        [["google cloud", "2", "30.0"], ["microsoft", "1", "4.0"]]
    );
    Ok(())
}

pub(crate) fn write_config(dir: &Path, sources: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("fathom.toml");
    std::fs::write(
        &path,
        format!(
            "[warehouse]\nurl = \"{}\"\n\n{sources}",
            dir.join("data").display()
        ),
    )?;
    Ok(path)
}

fn stream_payloads(report: &serde_json::Value, source: &str) -> u64 {
    report["report"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == source)
        .flat_map(|s| s["streams"].as_array().into_iter().flatten())
        .map(|s| s["payloads"].as_u64().unwrap_or(0))
        .sum()
}

/// Lines, billed, effective and list cost.
type Totals = (i64, f64, f64, f64);

fn at(text: &str) -> Result<DateTime<Utc>> {
    Ok(text.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_report_equals_the_world_and_a_rewritten_month_replaces_its_rows() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let world = WorldConfig {
        teams: 3,
        services: 9,
        days: 75,
        ..WorldConfig::default()
    };
    let sim = sim_with_exports(world, dir.path())?;
    let config = write_config(
        dir.path(),
        &format!(
            "[[sources]]\ntype = \"cost_report\"\nlocation = \"{}\"\nexport_name = \"fathom-cur\"\n",
            dir.path().join("exports/cur").display()
        ),
    )?;
    let warehouse_dir = dir.path().join("data");

    // June is open on the 10th: its files hold nine days.
    sim.set_now(at("2026-06-10T00:00:00Z")?);
    let first = sim.deliver().await?.context("no export")?;
    ingest_ok(&config, &[])?;
    let warehouse = local_warehouse(&warehouse_dir)?;
    for period in &first.cur {
        assert_eq!(
            count(
                &warehouse,
                &format!(
                    "SELECT count(*) FROM cloud_costs_daily WHERE billing_period = '{}'",
                    period.billing_period
                )
            )
            .await?,
            period.rows as i64,
            "{}",
            period.billing_period
        );
    }
    let june_then = count(
        &warehouse,
        "SELECT count(*) FROM cloud_costs_daily WHERE billing_period = '2026-06'",
    )
    .await?;

    // AWS rewrites June with the rest of the month: its rows are replaced,
    // not added to; the final months are not read again.
    sim.set_now(sim.world().config.end());
    sim.deliver().await?;
    let report = ingest_ok(&config, &[])?;
    assert_eq!(stream_payloads(&report, "cost_report"), 1, "{report}");
    let truth = fathom_sim::truth::Truth::compute(sim.world());
    let mut expected: BTreeMap<(String, String, String), Totals> = BTreeMap::new();
    for t in &truth.cloud_costs {
        let e = expected
            .entry((
                t.billing_period.clone(),
                t.entity_ref.clone().unwrap_or_default(),
                t.charge_category.clone(),
            ))
            .or_default();
        e.0 += t.lines as i64;
        e.1 += t.billed_cost_usd;
        e.2 += t.effective_cost_usd;
        e.3 += t.list_cost_usd;
    }
    let warehouse = local_warehouse(&warehouse_dir)?;
    let landed = rows(
        &warehouse,
        "SELECT billing_period, coalesce(entity_ref, ''), charge_category, count(*), \
         sum(billed_cost_usd), sum(effective_cost_usd), sum(coalesce(list_cost_usd, 0)) \
         FROM cloud_costs_daily GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .await?;
    assert_eq!(landed.len(), expected.len());
    for row in &landed {
        let key = (row[0].clone(), row[1].clone(), row[2].clone());
        let want = expected
            .get(&key)
            .with_context(|| format!("{key:?} not in the truth"))?;
        assert_eq!(row[3].parse::<i64>()?, want.0, "{key:?}");
        for (got, want) in [(&row[4], want.1), (&row[5], want.2), (&row[6], want.3)] {
            let got: f64 = got.parse()?;
            assert!((got - want).abs() < 0.005, "{key:?}: {got} vs {want}");
        }
    }
    let june_now = count(
        &warehouse,
        "SELECT count(*) FROM cloud_costs_daily WHERE billing_period = '2026-06'",
    )
    .await?;
    assert!(june_now > june_then);
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) - count(DISTINCT line_item_id) FROM cloud_costs_daily"
        )
        .await?,
        0
    );
    // Untagged resources stay unattributed, as many lines as the world has.
    let untagged: usize = truth
        .cloud_costs
        .iter()
        .filter(|t| t.entity_ref.is_none())
        .map(|t| t.lines)
        .sum();
    assert!(untagged > 0);
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM cloud_costs_daily WHERE entity_ref IS NULL"
        )
        .await?,
        untagged as i64
    );

    // Nothing changed: nothing is read.
    let quiet = ingest_ok(&config, &[])?;
    assert_eq!(stream_payloads(&quiet, "cost_report"), 0, "{quiet}");

    // A file that cannot be read keeps the period as it was and is
    // quarantined with its reason; the run reports it.
    let june_dir = dir
        .path()
        .join("exports/cur/fathom-cur/data/BILLING_PERIOD=2026-06");
    let first_file = std::fs::read_dir(&june_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .context("no June file")?;
    std::fs::write(&first_file, b"not parquet")?;
    let (_, broken) = ingest(&config, &[])?;
    assert!(broken.to_string().contains("cannot be read"), "{broken}");
    let warehouse = local_warehouse(&warehouse_dir)?;
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM cloud_costs_daily WHERE billing_period = '2026-06'"
        )
        .await?,
        june_now
    );
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM quarantine WHERE source = 'cost_report' AND reason LIKE 'not a readable Parquet file%'"
        )
        .await?,
        1
    );
    Ok(())
}

/// Every text value in the table's files (Parquet decoded, the Delta log
/// as text).
fn table_text(dir: &Path) -> Result<String> {
    let mut text = String::new();
    if !dir.exists() {
        return Ok(text);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)?
                    .filter_map(|e| e.ok())
                    .map(|e| e.path()),
            );
            continue;
        }
        let bytes = std::fs::read(&path)?;
        text.push_str(&String::from_utf8_lossy(&bytes));
        if path.extension().is_some_and(|x| x == "parquet") {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(bytes),
            )?
            .build()?;
            for batch in reader {
                let batch = batch?;
                let mut out = Vec::new();
                let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
                writer.write(&batch)?;
                writer.finish()?;
                text.push_str(&String::from_utf8_lossy(&out));
            }
        }
    }
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_events_are_pseudonymized_counted_by_team_and_retained() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let world = WorldConfig {
        teams: 3,
        services: 6,
        days: 30,
        ..WorldConfig::default()
    };
    let sim = sim_with_exports(world, dir.path())?;
    sim.deliver().await?;
    let generated = sim.world();
    let org = &generated.org;
    let user_ref = |u: usize| {
        org.users
            .get(u)
            .map(|u| format!("user:{}/{}", u.namespace, u.name))
            .unwrap_or_default()
    };
    // Two bad lines, both naming a user: neither may leave the user's id
    // anywhere.
    let extra = dir.path().join("exports/portal-events/extra.ndjson");
    let victim = user_ref(0);
    std::fs::write(
        &extra,
        format!(
            "{{\"timestamp\": \"2026-06-20T10:00:00Z\", \"user\": {{\"userEntityRef\": \"{victim}\"}}}}\nnot json {victim}\n"
        ),
    )?;

    // The catalog (for teams) is served by the Backstage simulator.
    let served = crate::ingest::Sim::start(
        WorldConfig {
            teams: 3,
            services: 6,
            days: 30,
            ..WorldConfig::default()
        },
        SimOptions::default(),
    )?;
    let config = write_config(
        dir.path(),
        &format!(
            "[[sources]]\ntype = \"backstage\"\nbase_url = \"http://{}/backstage\"\ntoken = \"{}\"\n\n\
             [[sources]]\ntype = \"portal_events\"\nlocation = \"{}\"\npseudonymize_key_env = \"FATHOM_TEST_EVENTS_KEY\"\n",
            served.addr,
            fathom_sim::serve::Credentials::default().backstage_token,
            dir.path().join("exports/portal-events").display()
        ),
    )?;
    let key_env = [("FATHOM_TEST_EVENTS_KEY", "a-test-key-of-enough-length")];
    let run = |args: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(fathom_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(key_env)
            .env_remove("FATHOM_WAREHOUSE__URL")
            .env_remove("FATHOM_STATE__DATABASE_URL")
            .output()?)
    };
    let output = run(&["ingest", "--json"])?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert!(
        output.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&output.stderr)
    );

    let adoption = fathom_sim::world::usage::team_adoption(&generated.config, org);
    let mut events = Vec::new();
    for date in fathom_sim::world::cost::days(&generated.config) {
        events.extend(fathom_sim::world::usage::events_on(
            &generated.config,
            org,
            &adoption,
            date,
        ));
    }
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM portal_events").await?,
        events.len() as i64
    );
    let users: BTreeSet<usize> = events.iter().map(|e| e.user).collect();
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(DISTINCT user_hash) FROM portal_events"
        )
        .await?,
        users.len() as i64
    );
    let mut by_team: BTreeMap<String, i64> = BTreeMap::new();
    for event in &events {
        if let Some(user) = org.users.get(event.user) {
            *by_team.entry(org.team_ref(user.team)).or_default() += 1;
        }
    }
    let landed: BTreeMap<String, i64> = rows(
        &warehouse,
        "SELECT user_team_ref, count(*) FROM portal_events GROUP BY 1",
    )
    .await?
    .into_iter()
    .map(|r| Ok((r[0].clone(), r[1].parse::<i64>()?)))
    .collect::<Result<_>>()?;
    assert_eq!(landed, by_team);
    assert_eq!(
        count(
            &warehouse,
            "SELECT count(*) FROM quarantine WHERE source = 'portal_events'"
        )
        .await?,
        2
    );
    // No user id from the events anywhere in the event and quarantine
    // files.
    let text = table_text(&dir.path().join("data/portal_events"))?
        + &table_text(&dir.path().join("data/quarantine"))?;
    assert!(text.contains("user_hash"));
    for u in &users {
        let id = user_ref(*u);
        assert!(!text.contains(&format!("{id}\"")), "{id} stored");
    }
    assert!(!text.contains(&victim));

    // Retention: keep the last N days of events.
    let cutoff_days = (Utc::now() - at("2026-06-15T00:00:00Z")?).num_days();
    let cutoff = Utc::now() - chrono::Duration::days(cutoff_days);
    let kept = events.iter().filter(|e| e.occurred_at >= cutoff).count();
    assert!(kept > 0 && kept < events.len());
    let output = Command::new(fathom_bin())
        .arg("--config")
        .arg(&config)
        .args(["warehouse", "retain"])
        .env("FATHOM_USAGE__RETENTION_DAYS", cutoff_days.to_string())
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM portal_events").await?,
        kept as i64
    );
    Ok(())
}
