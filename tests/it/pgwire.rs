//! The PostgreSQL endpoint of `fathom serve`, driven by the real `psql`
//! client: an analyst's token is the password, queries answer the worked
//! example's numbers, and writes, engine settings, other roles and bad
//! tokens get clean errors.

use std::process::{Command, Output};

use anyhow::{Context, Result};

use crate::api::{serve, token};
use crate::dora::{WORKED_EXAMPLE, load_and_transform};

/// `psql` on this machine, or `None` (with a notice) when it is absent and
/// not required.
fn psql() -> Result<Option<String>> {
    for candidate in ["psql", "/usr/bin/psql"] {
        if Command::new(candidate).arg("--version").output().is_ok() {
            return Ok(Some(candidate.to_owned()));
        }
    }
    if std::env::var_os("FATHOM_REQUIRE_INTEROP").is_some() {
        anyhow::bail!("psql is required (FATHOM_REQUIRE_INTEROP is set) but not installed");
    }
    eprintln!("skipping: psql is not installed (apt-get install postgresql-client)");
    Ok(None)
}

fn run_psql(psql: &str, port: u16, password: &str, sql: &str) -> Result<Output> {
    Ok(Command::new(psql)
        .args([
            &format!("host=127.0.0.1 port={port} dbname=fathom user=analyst sslmode=disable"),
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--field-separator=,",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()?)
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[test]
fn psql_reads_the_warehouse_with_a_token_as_password() -> Result<()> {
    let Some(psql) = psql()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    load_and_transform(dir.path(), &WORKED_EXAMPLE)?;
    let analyst = token(dir.path(), "analyst", "")?;
    let viewer = token(dir.path(), "viewer", "")?;
    let server = serve(
        dir.path(),
        &[("FATHOM_QUERY__ROW_LIMIT", "3")],
        "127.0.0.1:0",
    )?;
    let port = server.postgres_port.context("no PostgreSQL port printed")?;

    // The worked example's org deploys 4 times in 30 days (docs/metrics.md).
    let answer = run_psql(
        &psql,
        port,
        &analyst,
        "SELECT scope, deployments FROM dora_metrics \
         WHERE window_days = 30 AND environment = 'all' AND scope = 'org'",
    )?;
    let (out, err) = text(&answer);
    assert!(answer.status.success(), "{err}");
    assert_eq!(out, "org,4");

    // An aggregate over a whole table, and the catalog psql clients read.
    let count = run_psql(&psql, port, &analyst, "SELECT count(*) FROM deployments")?;
    let (out, err) = text(&count);
    assert!(count.status.success(), "{err}");
    assert!(out.parse::<u64>().is_ok_and(|n| n > 0), "{out}");
    let database = run_psql(&psql, port, &analyst, "SELECT current_database()")?;
    assert_eq!(text(&database).0, "fathom");
    let tier = run_psql(
        &psql,
        port,
        &analyst,
        "SELECT dora_tier('dora-2023', 'lead_time', 172800.0)",
    )?;
    assert_eq!(text(&tier).0, "high", "{}", text(&tier).1);

    // Writes, files and engine settings are refused with a clean error.
    for statement in [
        "DELETE FROM deployments",
        "DROP TABLE deployments",
        "COPY deployments TO '/tmp/out.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * INTO copied FROM deployments",
    ] {
        let refused = run_psql(&psql, port, &analyst, statement)?;
        let (_, err) = text(&refused);
        assert!(!refused.status.success(), "{statement} was accepted");
        assert!(err.contains("ERROR"), "{statement}: {err}");
        assert!(
            err.contains("read-only") || err.contains("refused"),
            "{statement}: {err}"
        );
    }
    // More rows than the row limit (3 here) is an error, never a silent cut.
    let many = run_psql(&psql, port, &analyst, "SELECT * FROM deployments")?;
    let (_, err) = text(&many);
    assert!(!many.status.success());
    assert!(err.contains("row limit"), "{err}");
    // Client settings stay allowed, and the connection survives them.
    let set = run_psql(&psql, port, &analyst, "SET application_name = 'notebook'")?;
    assert!(set.status.success(), "{}", text(&set).1);

    // Only analysts and admins connect; unknown tokens never.
    let viewer_login = run_psql(&psql, port, &viewer, "SELECT 1")?;
    let (_, err) = text(&viewer_login);
    assert!(!viewer_login.status.success());
    assert!(err.contains("analysts and admins"), "{err}");
    let bad = run_psql(&psql, port, "not-a-token", "SELECT 1")?;
    let (_, err) = text(&bad);
    assert!(!bad.status.success());
    assert!(err.contains("password authentication failed"), "{err}");
    psycopg_uses_the_extended_protocol(port, &analyst)?;
    drop(server);

    // Every query was audited: who, the text, rows, outcome.
    let audit = crate::dora::fathom_in(dir.path(), &["audit", "--json", "--limit", "50"])?;
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("\"protocol\":\"postgres\"") && audit.contains("\"outcome\":\"refused\""),
        "{audit}"
    );
    assert!(audit.contains("\"rows\":1"), "{audit}");
    Ok(())
}

/// A Python driver (psycopg 3) speaks the extended protocol: prepared,
/// parameterised statements, binary results; the guard and the row limit
/// hold there too.
fn psycopg_uses_the_extended_protocol(port: u16, token: &str) -> Result<()> {
    let probe = Command::new("python3")
        .args(["-c", "import psycopg"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        if std::env::var_os("FATHOM_REQUIRE_INTEROP").is_some() {
            anyhow::bail!("python3 with `psycopg` is required (pip install 'psycopg[binary]')");
        }
        eprintln!("skipping the psycopg step: python3 package `psycopg` not installed");
        return Ok(());
    }
    let script = r#"
import os, sys, psycopg
conn = psycopg.connect(host="127.0.0.1", port=int(sys.argv[1]), dbname="fathom",
                       user="notebook", password=os.environ["PGPASSWORD"], sslmode="disable")
with conn.cursor() as cur:
    cur.execute("SELECT scope, deployments FROM dora_metrics WHERE window_days = %s AND environment = %s AND scope = %s",
                (30, "all", "org"), prepare=True)
    print("rows", cur.fetchall())
    cur.execute("SELECT count(*) FROM deployments WHERE environment = %s", ("production",), binary=True)
    print("count", cur.fetchone()[0] > 0)
for statement in ["DELETE FROM deployments WHERE environment = %s", "SELECT * FROM deployments WHERE environment <> %s"]:
    try:
        with conn.cursor() as cur:
            cur.execute(statement, ("x",))
            cur.fetchall()
        print("accepted", statement)
    except psycopg.Error as e:
        print("refused", e.sqlstate)
    conn.rollback()
"#;
    let output = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .env("PGPASSWORD", token)
        .output()?;
    let (out, err) = text(&output);
    assert!(output.status.success(), "{out}\n{err}");
    assert!(out.contains("rows [('org', 4)]"), "{out}\n{err}");
    assert!(out.contains("count True"), "{out}");
    // The write: read-only (25006); every deployment: over the row limit (54000).
    assert!(out.contains("refused 25006"), "{out}");
    assert!(out.contains("refused 54000"), "{out}");
    assert!(!out.contains("accepted"), "{out}");
    Ok(())
}
