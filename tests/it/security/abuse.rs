//! Query abuse from an analyst, over HTTP and the PostgreSQL protocol:
//! deep expressions, huge unions, range and repeat bombs, CTE fan-out,
//! engine `SET`s in every spelling, multi-statements. Each is answered
//! with a clear error (or a bounded answer), audited, and afterwards the
//! server still answers `/healthz` within 100 ms with its memory back
//! under a bound; no `SET` changes another connection's session.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fathom_warehouse::query::guard::{cte_fan_out, sum_of_ones, union_of_ones};
use serde_json::{Value, json};

use super::pgclient::PgClient;
use super::{World, audit_log, resident_bytes};

/// Resident memory the server may hold once the abuse is over.
const MEMORY_BOUND: u64 = 1536 << 20;

/// Queries that must be refused or cut short, and the error code of the
/// HTTP answer (`None`: answered, bounded by the row limit).
fn abusive() -> Vec<(String, Option<&'static str>)> {
    vec![
        (sum_of_ones(2_000), Some("too_complex")),
        (sum_of_ones(20_000), Some("too_complex")),
        (union_of_ones(8_000), Some("too_complex")),
        (
            format!("SELECT count(*) FROM ({}) u", union_of_ones(8_000)),
            Some("too_complex"),
        ),
        (cte_fan_out(24), Some("too_complex")),
        (
            format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
            Some("bad_request"),
        ),
        (
            "SELECT repeat('x', 1000000000) FROM range(3)".to_owned(),
            Some("memory_limit"),
        ),
        (
            "SELECT lpad('x', 2000000000)".to_owned(),
            Some("memory_limit"),
        ),
        (
            "SELECT array_repeat(1, 1000000000)".to_owned(),
            Some("memory_limit"),
        ),
        ("SELECT * FROM range(600000000)".to_owned(), None),
        ("SELECT * FROM range(200000000)".to_owned(), None),
        (
            "SELECT a.value FROM range(100000) a, range(100000) b".to_owned(),
            None,
        ),
        (
            "SET datafusion.execution.batch_size = 1".to_owned(),
            Some("read_only"),
        ),
        ("SELECT 1; SELECT 2".to_owned(), Some("read_only")),
    ]
}

/// How quickly `/healthz` answers: the best of three tries, so a test
/// machine busy with other tests does not decide it (a server still stuck
/// in the last query fails all three).
async fn healthz_is_quick(http: &reqwest::Client, base: &str) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let answer = http.get(format!("{base}/healthz")).send().await?;
        best = best.min(started.elapsed());
        anyhow::ensure!(answer.status() == 200, "healthz: {}", answer.status());
    }
    Ok(best)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_queries_are_refused_or_bounded_and_the_server_stays_up() -> Result<()> {
    let world = World::start(&[("FATHOM_QUERY__ROW_LIMIT", "100000")])?;
    let http = reqwest::Client::new();
    let base = world.server.base.clone();
    let post = |sql: &str| {
        http.post(format!("{base}/api/v1/sql"))
            .bearer_auth(&world.analyst)
            .json(&json!({ "sql": sql }))
            .send()
    };
    let mut refused = 0;
    for (sql, code) in abusive() {
        let response = post(&sql).await?;
        let status = response.status();
        let short = sql.chars().take(60).collect::<String>();
        match code {
            Some(code) => {
                let body: Value = response.json().await?;
                assert!(status.is_client_error(), "{short}…: {status} {body}");
                assert_eq!(body["error"]["code"], code, "{short}…: {body}");
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(!message.is_empty() && message.len() < 2_000, "{message}");
                refused += 1;
            }
            None => {
                assert_eq!(status, 200, "{short}…");
                assert_eq!(
                    response
                        .headers()
                        .get("x-fathom-row-limit")
                        .and_then(|v| v.to_str().ok()),
                    Some("100000"),
                    "{short}… was not cut at the row limit"
                );
                let rows: Vec<Value> = response.json().await?;
                assert_eq!(rows.len(), 100_000);
            }
        }
        let took = healthz_is_quick(&http, &base).await?;
        assert!(
            took < Duration::from_millis(100),
            "/healthz took {took:?} after {short}…"
        );
    }
    // Just under the bounds still runs (nothing refused that should not be).
    for sql in [sum_of_ones(200), union_of_ones(300), cte_fan_out(5)] {
        let response = post(&sql).await?;
        assert_eq!(response.status(), 200, "{}", response.text().await?);
    }
    let memory = resident_bytes(world.server.pid())?;
    eprintln!(
        "{refused} abusive HTTP queries refused; server resident memory afterwards {} MiB",
        memory >> 20
    );
    assert!(memory < MEMORY_BOUND, "resident {} MiB", memory >> 20);

    // Every outcome is in the audit log, refusals included.
    let audit = audit_log(world.path())?;
    let outcomes: Vec<&str> = audit
        .iter()
        .filter(|r| r["action"] == "sql")
        .filter_map(|r| r["detail"]["outcome"].as_str())
        .collect();
    assert!(
        outcomes.iter().filter(|o| **o == "refused").count() >= 6,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&"row_limit"), "{outcomes:?}");
    assert!(outcomes.contains(&"error"), "{outcomes:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_endpoint_refuses_the_same_abuse_and_shares_no_setting() -> Result<()> {
    let world = World::start(&[])?;
    let port = world.pg_port()?;
    let http = reqwest::Client::new();
    let (mut pg, signed_in) = PgClient::connect(port, &world.analyst)?;
    assert!(signed_in.error.is_none(), "{:?}", signed_in.error);

    for sql in [
        sum_of_ones(2_000),
        union_of_ones(8_000),
        cte_fan_out(24),
        "SELECT repeat('x', 1000000000) FROM range(3)".to_owned(),
    ] {
        let answer = pg.query(&sql)?;
        let (severity, _, message) = answer.error.context("not refused")?;
        assert_eq!(severity, "ERROR", "{message}");
        assert!(!answer.closed);
        let took = healthz_is_quick(&http, &world.server.base).await?;
        assert!(took < Duration::from_millis(100), "{took:?}");
    }
    // Past the row limit is an error on this protocol, not a silent cut.
    let answer = pg.query("SELECT * FROM range(600000000)")?;
    let (_, code, _) = answer.error.context("no row-limit error")?;
    assert_eq!(code, "54000");

    // Engine settings: refused in every spelling; another connection's
    // session is unchanged.
    for sql in [
        "SET datafusion.execution.batch_size = 1",
        "SET \"datafusion\".execution.batch_size = 1",
        "SET \"DATAFUSION\".\"EXECUTION\".\"BATCH_SIZE\" = 1",
        "SeT DataFusion.Execution.Batch_Size TO 1",
        "SET timezone = 'Asia/Tokyo'",
        "SET \"datafusion\".sql_parser.dialect = 'MySQL'",
        "SELECT 1; SET datafusion.execution.batch_size = 1",
    ] {
        let answer = pg.query(sql)?;
        assert!(answer.error.is_some(), "{sql} was accepted");
    }
    assert!(
        pg.query("SET application_name = 'notebook'")?
            .error
            .is_none()
    );
    let (mut other, _) = PgClient::connect(port, &world.analyst)?;
    let settings = other.query(
        "SELECT name, value FROM information_schema.df_settings WHERE name IN \
         ('datafusion.execution.batch_size', 'datafusion.execution.time_zone', \
          'datafusion.sql_parser.dialect') ORDER BY name",
    )?;
    let value = |name: &str| {
        settings
            .rows
            .iter()
            .find(|r| r.first().cloned().flatten().as_deref() == Some(name))
            .and_then(|r| r.get(1).cloned().flatten())
    };
    assert_eq!(
        value("datafusion.execution.batch_size").as_deref(),
        Some("8192"),
        "{settings:?}"
    );
    assert_ne!(
        value("datafusion.execution.time_zone").as_deref(),
        Some("Asia/Tokyo")
    );
    assert_ne!(
        value("datafusion.sql_parser.dialect")
            .map(|d| d.to_ascii_lowercase())
            .as_deref(),
        Some("mysql")
    );

    // A revoked token's open session ends at its next statement (the
    // credential cache holds verified credentials for 10 s).
    assert!(pg.query("SELECT 1")?.error.is_none());
    let tokens = crate::dora::fathom_in(world.path(), &["tokens", "list"])?;
    let listing = String::from_utf8_lossy(&tokens.stdout).into_owned();
    let analyst_id = listing
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("analyst"))
        .and_then(|l| l.split_whitespace().next())
        .context("the analyst token is listed")?
        .to_owned();
    let revoked = crate::dora::fathom_in(world.path(), &["tokens", "revoke", &analyst_id])?;
    assert!(revoked.status.success());
    tokio::time::sleep(Duration::from_secs(11)).await;
    let answer = pg.query("SELECT 1")?;
    let (severity, _, message) = answer.error.context("the revoked session still answers")?;
    assert_eq!(severity, "FATAL", "{message}");
    assert!(pg.query("SELECT 1")?.closed, "the connection stays open");

    let audit = audit_log(world.path())?;
    let actions: Vec<&str> = audit.iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"token.create"), "{actions:?}");
    assert!(actions.contains(&"token.revoke"), "{actions:?}");
    let pg_outcomes: Vec<&str> = audit
        .iter()
        .filter(|r| r["detail"]["protocol"] == "postgres")
        .filter_map(|r| r["detail"]["outcome"].as_str())
        .collect();
    assert!(pg_outcomes.contains(&"refused"), "{pg_outcomes:?}");
    assert!(pg_outcomes.contains(&"revoked"), "{pg_outcomes:?}");
    Ok(())
}
