//! The kill campaign: `kill -9` at random moments (seeded, printed) of
//! imports, file ingests, transforms and intake deliveries — at least 50
//! kills — each followed by a check that nothing committed is partial,
//! lost or duplicated, and that no run is left "running" once the next
//! command has started. The driver knows nothing of Fathom's internals: it
//! runs the binary and reads the warehouse.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::api::serve;
use crate::support::{count, fathom_bin, local_warehouse};

/// A small deterministic generator for kill delays (xorshift).
struct Delays(u64);

impl Delays {
    fn below(&mut self, bound_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(self.0 % bound_ms.max(1))
    }
}

fn fathom(dir: &Path, config: Option<&Path>, args: &[&str]) -> Command {
    let mut command = Command::new(fathom_bin());
    command
        .args(args)
        .env("FATHOM_WAREHOUSE__URL", dir.join("data"))
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env("FATHOM_TEST_EVENTS_KEY", "a-test-key-of-enough-length")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match config {
        Some(config) => command.env("FATHOM_CONFIG", config),
        None => command.env_remove("FATHOM_CONFIG"),
    };
    command
}

/// Lets `child` run for `delay`, then kills it (SIGKILL) if it is still
/// running; true when it was killed mid-run.
fn kill_after(mut child: Child, delay: Duration) -> Result<bool> {
    let started = Instant::now();
    while started.elapsed() < delay {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let running = child.try_wait()?.is_none();
    if running {
        child.kill()?;
    }
    child.wait()?;
    Ok(running)
}

/// How long `command` takes uninterrupted, milliseconds (kills are drawn
/// below it, so they land mid-run).
fn duration_ms(mut command: Command) -> Result<u64> {
    let started = Instant::now();
    ensure!(command.status()?.success(), "the timed command failed");
    Ok((started.elapsed().as_millis() as u64).max(20))
}

/// No run is left "running" once another command has started.
fn no_run_left_running(dir: &Path, config: Option<&Path>) -> Result<()> {
    let output = fathom(dir, config, &["runs", "--json", "--limit", "500"])
        .stdout(Stdio::piped())
        .output()?;
    ensure!(output.status.success(), "fathom runs failed");
    let runs: Vec<Value> = serde_json::from_slice(&output.stdout)?;
    let running: Vec<&Value> = runs.iter().filter(|r| r["status"] == "running").collect();
    ensure!(running.is_empty(), "runs left running: {running:?}");
    Ok(())
}

const IMPORT_ROWS: usize = 30_000;
const IMPORT_BAD: usize = 25;

fn write_import(path: &Path) -> Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        file,
        "deployment_id,source,entity_ref,environment,status,revision,started_at"
    )?;
    for i in 0..IMPORT_ROWS {
        writeln!(
            file,
            "k{i},import,svc-{},production,success,r{i},2026-06-{:02}T10:00:00Z",
            i % 20,
            1 + i % 28
        )?;
    }
    for i in 0..IMPORT_BAD {
        writeln!(file, "bad{i},import,svc,production,success,r,not-a-time")?;
    }
    file.flush()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kills_lose_duplicate_and_strand_nothing() -> Result<()> {
    let seed = std::env::var("FATHOM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_u64);
    eprintln!("kill campaign seed {seed} (FATHOM_CHAOS_SEED)");
    let mut delays = Delays(seed | 1);
    let mut kills = 0;
    let mut mid_run = 0;

    // Imports: the table holds all the good rows or none; the rejected
    // rows are in quarantine whenever the good rows are (they commit
    // first).
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("deployments.csv");
    write_import(&csv)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let csv_arg = csv.display().to_string();
    let timing = tempfile::tempdir()?;
    let import_ms = duration_ms(fathom(
        timing.path(),
        None,
        &["import", "deployments", &csv_arg],
    ))?;
    for _ in 0..20 {
        let child = fathom(dir.path(), None, &["import", "deployments", &csv_arg]).spawn()?;
        mid_run += usize::from(kill_after(child, delays.below(import_ms))?);
        kills += 1;
        let rows = count(&warehouse, "SELECT count(*) FROM deployments").await?;
        let quarantined = count(&warehouse, "SELECT count(*) FROM quarantine").await?;
        ensure!(
            rows == 0 || rows == IMPORT_ROWS as i64,
            "a partial load: {rows} rows"
        );
        ensure!(
            rows == 0 || quarantined == IMPORT_BAD as i64,
            "rows loaded without their {IMPORT_BAD} rejections ({quarantined})"
        );
        ensure!(quarantined == 0 || quarantined == IMPORT_BAD as i64);
        no_run_left_running(dir.path(), None)?;
    }
    let status = fathom(dir.path(), None, &["import", "deployments", &csv_arg]).status()?;
    ensure!(status.code() == Some(0), "the final import failed");
    ensure!(count(&warehouse, "SELECT count(*) FROM deployments").await? == IMPORT_ROWS as i64);
    ensure!(
        count(
            &warehouse,
            "SELECT count(DISTINCT deployment_id) FROM deployments"
        )
        .await?
            == IMPORT_ROWS as i64
    );
    ensure!(count(&warehouse, "SELECT count(*) FROM quarantine").await? == IMPORT_BAD as i64);

    // Transforms over what was imported: every mart is at its old or its
    // new version, and the final run equals an uninterrupted one.
    let transform =
        |dir: &Path| fathom(dir, None, &["transform", "--full", "--as-of", "2026-07-01"]);
    let transform_ms = duration_ms(transform(dir.path()))?;
    let marts = [
        "dora_deployments",
        "dora_scope_members",
        "dora_metrics",
        "dora_trends",
    ];
    let mut expected = Vec::new();
    for mart in marts {
        expected.push(count(&warehouse, &format!("SELECT count(*) FROM {mart}")).await?);
    }
    for _ in 0..10 {
        let child = transform(dir.path()).spawn()?;
        mid_run += usize::from(kill_after(child, delays.below(transform_ms))?);
        kills += 1;
        for (mart, rows) in marts.iter().zip(&expected) {
            let now = count(&warehouse, &format!("SELECT count(*) FROM {mart}")).await?;
            ensure!(now == *rows, "{mart} holds {now} rows, not {rows}");
        }
        no_run_left_running(dir.path(), None)?;
    }

    // File ingests: the delivered events and cost lines land once.
    let files = tempfile::tempdir()?;
    let exported = Command::new(fathom_bin())
        .args([
            "sim",
            "export",
            "--teams",
            "3",
            "--services",
            "6",
            "--days",
            "40",
            "--to",
        ])
        .arg(files.path())
        .env_remove("FATHOM_CONFIG")
        .output()?;
    ensure!(
        exported.status.success(),
        "sim export: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let config = dir.path().join("fathom.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"portal_events\"\nlocation = \"{}\"\npseudonymize_key_env = \"FATHOM_TEST_EVENTS_KEY\"\n\n\
             [[sources]]\ntype = \"cost_report\"\nlocation = \"{}\"\nexport_name = \"fathom-cur\"\n",
            files.path().join("portal-events").display(),
            files.path().join("cur").display()
        ),
    )?;
    // The reference: one uninterrupted ingest into a separate warehouse.
    let reference_dir = tempfile::tempdir()?;
    let ingest_ms = duration_ms(fathom(reference_dir.path(), Some(&config), &["ingest"]))?;
    let reference = local_warehouse(&reference_dir.path().join("data"))?;
    let totals = "SELECT count(*) FROM portal_events";
    let cost = "SELECT CAST(round(sum(billed_cost_usd) * 100) AS BIGINT) FROM cloud_costs_daily";
    let events = count(&reference, totals).await?;
    let cents = count(&reference, cost).await?;
    ensure!(
        events > 0 && cents > 0,
        "the reference ingest landed nothing"
    );
    for _ in 0..10 {
        let child = fathom(dir.path(), Some(&config), &["ingest"]).spawn()?;
        mid_run += usize::from(kill_after(child, delays.below(ingest_ms))?);
        kills += 1;
        no_run_left_running(dir.path(), Some(&config))?;
        let now = count(&warehouse, totals).await?;
        ensure!(
            now <= events,
            "{now} events, more than the {events} delivered"
        );
    }
    ensure!(
        fathom(dir.path(), Some(&config), &["ingest"])
            .status()?
            .success()
    );
    ensure!(
        count(&warehouse, totals).await? == events,
        "events lost or doubled"
    );
    ensure!(
        count(&warehouse, cost).await? == cents,
        "cost lost or doubled"
    );

    // Intake: the server killed while a delivery is posted; the client's
    // retry (same delivery id) lands every record exactly once.
    let intake_dir = tempfile::tempdir()?;
    let admin = crate::api::token(intake_dir.path(), "admin", "")?;
    let http = reqwest::Client::new();
    for round in 0..10 {
        let records: Vec<Value> = (0..200)
            .map(|i| {
                json!({"incident_id": format!("CH-{round}-{i}"), "source": "intake",
                       "created_at": "2026-06-23T08:00:00Z"})
            })
            .collect();
        let delivery = format!("chaos-{round}");
        let mut server = serve(intake_dir.path(), &[], "127.0.0.1:0")?;
        let url = format!("{}/api/v1/intake/incidents", server.base);
        let post = http
            .post(&url)
            .bearer_auth(&admin)
            .header("x-delivery-id", &delivery)
            .json(&records)
            .send();
        // The post takes a few hundred milliseconds (parse, coerce, two
        // commits, the delivery mark): the kill lands somewhere in it.
        let delay = delays.below(300);
        let (posted, ()) = tokio::join!(post, async {
            tokio::time::sleep(delay).await;
            server.kill();
        });
        kills += 1;
        mid_run += usize::from(posted.is_err());
        let server = serve(intake_dir.path(), &[], "127.0.0.1:0")?;
        let retry = http
            .post(format!("{}/api/v1/intake/incidents", server.base))
            .bearer_auth(&admin)
            .header("x-delivery-id", &delivery)
            .json(&records)
            .send()
            .await?;
        ensure!(retry.status() == 200, "retry: {}", retry.status());
        let stored = local_warehouse(&intake_dir.path().join("data"))?;
        let landed = count(
            &stored,
            &format!("SELECT count(*) FROM incidents WHERE incident_id LIKE 'CH-{round}-%'"),
        )
        .await?;
        ensure!(landed == 200, "round {round}: {landed} of 200 records");
        drop(server);
    }
    let stored = local_warehouse(&intake_dir.path().join("data"))?;
    ensure!(
        count(&stored, "SELECT count(DISTINCT incident_id) FROM incidents").await?
            == count(&stored, "SELECT count(*) FROM incidents").await?
    );
    eprintln!(
        "{kills} kills ({mid_run} of the commands mid-run), nothing lost, doubled or stranded"
    );
    ensure!(kills >= 50);
    Ok(())
}
