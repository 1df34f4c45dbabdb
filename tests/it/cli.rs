//! The `fathom` command line as a user runs it.

use anyhow::Result;

use crate::support::fathom;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn examples_load_and_answer_sql_in_every_format() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    for (table, file) in [
        ("catalog_entities", "examples/catalog_entities.ndjson"),
        ("deployments", "examples/deployments.csv"),
        ("incidents", "examples/incidents.csv"),
    ] {
        let output = fathom(data, &["import", table, file])?;
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("0 rejected"),
            "{}",
            stdout(&output)
        );
    }
    let reload = fathom(
        data,
        &[
            "import",
            "deployments",
            "examples/deployments.csv",
            "--json",
        ],
    )?;
    let report: serde_json::Value = serde_json::from_slice(&reload.stdout)?;
    assert_eq!(report["rows_inserted"], 0);
    assert_eq!(report["rows_unchanged"], 76);

    let query = "SELECT entity_ref, count(*) AS n FROM deployments WHERE environment = 'production' GROUP BY entity_ref ORDER BY entity_ref";
    let csv = fathom(data, &["sql", query, "--format", "csv"])?;
    assert!(csv.status.success(), "{}", stderr(&csv));
    assert_eq!(
        stdout(&csv),
        "entity_ref,n\ncomponent:default/ledger,12\ncomponent:default/payments-api,28\ncomponent:default/search-web,18\n"
    );
    let json = fathom(data, &["sql", query, "--format", "json"])?;
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(parsed[1]["n"], 28);
    let table = fathom(data, &["sql", query])?;
    assert!(
        stdout(&table).contains("| component:default/payments-api | 28 |"),
        "{}",
        stdout(&table)
    );
    let arrow_out = fathom(data, &["sql", query, "--format", "arrow"])?;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow_out.stdout), None)?;
    let n_rows: usize = reader
        .map(|b| b.map(|b| b.num_rows()))
        .sum::<Result<usize, _>>()?;
    assert_eq!(n_rows, 3);

    let runs = fathom(data, &["runs", "--json"])?;
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout)?;
    assert_eq!(runs.as_array().map(Vec::len), Some(4));
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["row_counts"]["deployments.unchanged"], 76);
    Ok(())
}

#[test]
fn writes_are_refused_with_a_clear_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for sql in [
        "DROP TABLE deployments",
        "INSERT INTO deployments (deployment_id) VALUES ('x')",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
    ] {
        let output = fathom(dir.path(), &["sql", sql])?;
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains("read-only"),
            "{sql}: {}",
            stderr(&output)
        );
    }
    // Files outside the warehouse cannot be read as tables either.
    let output = fathom(dir.path(), &["sql", "SELECT * FROM '/etc/passwd'"])?;
    assert!(!output.status.success());
    Ok(())
}

#[test]
fn nothing_loaded_exits_non_zero_with_the_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let output = fathom(dir.path(), &["import", "deployments", "/no/such/file.csv"])?;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot open `/no/such/file.csv`"),
        "{}",
        stderr(&output)
    );
    let output = fathom(
        dir.path(),
        &["import", "deployment", "examples/deployments.csv"],
    )?;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown table `deployment`; tables are: "),
        "{}",
        stderr(&output)
    );
    Ok(())
}

#[test]
fn schema_doc_is_current() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let output = fathom(dir.path(), &["schema", "--format", "markdown"])?;
    assert!(output.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema.md"))?;
    assert!(
        committed == stdout(&output),
        "docs/schema.md is stale; regenerate it with `cargo run -- schema --format markdown > docs/schema.md`"
    );
    let text = fathom(dir.path(), &["schema", "deployments"])?;
    assert!(
        stdout(&text)
            .contains("key: deployment_id; partitioned by: started_month (month of started_at)")
    );
    Ok(())
}

#[test]
fn init_writes_the_example_and_refuses_to_overwrite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fathom.toml");
    let path_text = path.display().to_string();
    assert!(fathom(dir.path(), &["init", &path_text])?.status.success());
    let written = std::fs::read_to_string(&path)?;
    assert_eq!(written, include_str!("../../fathom.example.toml"));
    let again = fathom(dir.path(), &["init", &path_text])?;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"));
    let with_config = fathom(
        dir.path(),
        &["--config", &path_text, "schema", "quarantine"],
    )?;
    assert!(with_config.status.success(), "{}", stderr(&with_config));
    Ok(())
}

#[test]
fn init_writes_the_warehouse_and_state_given() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fathom.toml");
    let path_text = path.display().to_string();
    let output = fathom(
        dir.path(),
        &[
            "init",
            &path_text,
            "--warehouse",
            "s3://acme-analytics/fathom",
            "--state-url",
            "postgres://fathom@db.internal:5432/fathom",
        ],
    )?;
    assert!(output.status.success(), "{}", stderr(&output));
    let written: toml::Value = toml::from_str(&std::fs::read_to_string(&path)?)?;
    assert_eq!(
        written["warehouse"]["url"].as_str(),
        Some("s3://acme-analytics/fathom")
    );
    assert_eq!(
        written["state"]["database_url"].as_str(),
        Some("postgres://fathom@db.internal:5432/fathom")
    );
    // A password does not belong in the file; a bad location is named.
    let secret = fathom(
        dir.path(),
        &[
            "init",
            &path_text,
            "--force",
            "--state-url",
            "postgres://fathom:hunter2@db/fathom",
        ],
    )?;
    assert!(!secret.status.success());
    assert!(stderr(&secret).contains("FATHOM_STATE__DATABASE_URL"));
    let bad = fathom(
        dir.path(),
        &[
            "init",
            &path_text,
            "--force",
            "--warehouse",
            "ftp://nowhere",
        ],
    )?;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--warehouse"), "{}", stderr(&bad));
    Ok(())
}

#[test]
fn every_command_has_help() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for command in [
        "init", "import", "sql", "schema", "optimize", "vacuum", "runs", "alerts",
    ] {
        let output = fathom(dir.path(), &[command, "--help"])?;
        assert!(output.status.success(), "{command}");
        assert!(stdout(&output).contains("Usage: fathom"), "{command}");
    }
    Ok(())
}

#[test]
fn sim_truth_is_byte_identical_for_a_seed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let write = |name: &str, seed: &str| -> Result<(Vec<u8>, Vec<u8>)> {
        let out = dir.path().join(name);
        let out_text = out.display().to_string();
        let args = [
            "sim",
            "truth",
            "--seed",
            seed,
            "--teams",
            "4",
            "--services",
            "10",
            "--days",
            "90",
            "--out",
            &out_text,
        ];
        let output = fathom(dir.path(), &args)?;
        assert!(output.status.success(), "{}", stderr(&output));
        Ok((
            std::fs::read(out.join("dora.jsonl"))?,
            std::fs::read(out.join("deployments.jsonl"))?,
        ))
    };
    let first = write("a", "7")?;
    assert_eq!(first, write("b", "7")?);
    assert_ne!(first, write("c", "8")?);
    let rows = String::from_utf8(first.0)?;
    // 10 components, 4 teams, 1 department, 4 systems, 1 domain, org; 4 windows each.
    assert_eq!(rows.lines().count(), (10 + 4 + 1 + 4 + 1 + 1) * 4);
    let org_year: serde_json::Value = rows
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["scope"] == "org" && v["window_days"] == 365)
        .ok_or_else(|| anyhow::anyhow!("no org row"))?;
    let deployments = String::from_utf8(first.1)?.lines().count() as u64;
    assert_eq!(org_year["deployments"].as_u64(), Some(deployments));
    Ok(())
}

#[test]
fn demo_ingests_a_small_world_and_shows_what_landed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let demo_dir = dir.path().join("demo");
    let demo_text = demo_dir.display().to_string();
    let summary_path = dir.path().join("summary.json");
    let summary_text = summary_path.display().to_string();
    // The demo ends by serving: read its output up to the psql line it
    // prints, run that line, then stop it.
    let mut child = std::process::Command::new(crate::support::fathom_bin())
        .args([
            "demo",
            "--teams",
            "2",
            "--services",
            "4",
            "--days",
            "20",
            "--dir",
            &demo_text,
            "--summary",
            &summary_text,
        ])
        .env("FATHOM_WAREHOUSE__URL", dir.path())
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env_remove("FATHOM_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    ));
    let mut text = String::new();
    let mut serving = 0;
    for line in lines.by_ref() {
        let line = line?;
        text.push_str(&line);
        text.push('\n');
        // Its own announcement and the two of the server.
        if line.contains("PGPASSWORD=") || line.starts_with("serving ") {
            serving += 1;
        }
        if serving == 3 {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let psql_line = text
        .lines()
        .find(|l| l.contains("PGPASSWORD="))
        .map(str::trim)
        .map(str::to_owned);
    let docs = text
        .lines()
        .find_map(|l| l.strip_prefix("serving the results. API docs: "))
        .map(str::to_owned);
    let served = async {
        let docs = docs.ok_or_else(|| anyhow::anyhow!("no docs URL: {text}"))?;
        let page = reqwest::get(&docs).await?;
        assert_eq!(page.status(), 200);
        assert!(page.text().await?.contains("openapi.json"));
        // The dashboards link signs the browser in with the demo's token.
        let dashboards = text
            .lines()
            .find_map(|l| {
                l.split_once("made for the demo): ")
                    .map(|(_, url)| url.trim())
            })
            .ok_or_else(|| anyhow::anyhow!("no dashboards URL: {text}"))?;
        let (url, token) = dashboards
            .split_once("#token=")
            .ok_or_else(|| anyhow::anyhow!("{dashboards}"))?;
        let shell = reqwest::get(url).await?;
        assert_eq!(shell.status(), 200);
        assert!(shell.text().await?.contains("/assets/app.js"));
        let overview = reqwest::Client::new()
            .get(format!("{url}api/v1/pages/overview"))
            .bearer_auth(token)
            .send()
            .await?;
        assert_eq!(overview.status(), 200);
        let line = psql_line.ok_or_else(|| anyhow::anyhow!("no psql line: {text}"))?;
        let (password, rest) = line
            .strip_prefix("PGPASSWORD=")
            .and_then(|l| l.split_once(" psql "))
            .ok_or_else(|| anyhow::anyhow!("{line}"))?;
        let (connection, query) = rest
            .trim_start_matches('"')
            .split_once("\" -c \"")
            .ok_or_else(|| anyhow::anyhow!("{line}"))?;
        let query = query.trim_end_matches('"');
        if std::process::Command::new("psql")
            .arg("--version")
            .output()
            .is_ok()
        {
            let output = std::process::Command::new("psql")
                .args([connection, "--no-psqlrc", "-tA", "-c", query])
                .env("PGPASSWORD", password)
                .output()?;
            assert!(output.status.success(), "{}", stderr(&output));
            // One row per group of the world: its 2 teams and their parent.
            let rows = stdout(&output);
            assert_eq!(rows.lines().count(), 3, "{rows}");
            assert!(
                rows.lines()
                    .all(|l| l.starts_with("group:default/") && l.split('|').count() == 3),
                "{rows}"
            );
        } else {
            eprintln!("skipping the psql step: psql is not installed");
        }
        anyhow::Ok(())
    };
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(served);
    let _ = child.kill();
    let _ = child.wait();
    served?;
    assert!(text.contains("what landed"), "{text}");
    // The risk step says what it did, or why it could not train (a world
    // this small may hold no failure yet).
    assert!(text.contains("\ndeployment risk"), "{text}");
    assert!(text.contains("production_deployments"), "{text}");
    let deployments = text
        .lines()
        .find(|l| l.starts_with("deployments "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(deployments > 0, "{text}");
    // The demo checks its marts against the generator's own DORA: all agree.
    let agreement: Vec<u64> = text
        .lines()
        .find(|l| l.starts_with("checked against the world's own DORA computation:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse::<u64>().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        agreement.len() == 2 && agreement[0] == agreement[1] && agreement[1] > 0,
        "{text}"
    );
    // The summary file holds the same figures as numbers.
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path)?)?;
    assert_eq!(summary["dora_rows"], agreement[1], "{summary}");
    assert_eq!(summary["dora_rows_agreeing"], agreement[0], "{summary}");
    let suspects = &summary["suspects"];
    let caused = text
        .lines()
        .find_map(|l| l.strip_prefix("suspect deployments against the "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(suspects["caused"].as_u64(), caused, "{summary}");
    let flagged = suspects["flagged"].as_u64().unwrap_or(u64::MAX);
    let false_positives = suspects["false_positives"].as_u64().unwrap_or(u64::MAX);
    assert!(false_positives <= flagged, "{summary}");
    for rate in ["precision", "recall", "tracked_recall"] {
        assert!(
            suspects[rate].is_null()
                || suspects[rate]
                    .as_f64()
                    .is_some_and(|r| (0.0..=1.0).contains(&r)),
            "{rate}: {summary}"
        );
    }
    // Without a flag the precision is unknown, not zero.
    assert_eq!(suspects["precision"].is_null(), flagged == 0, "{summary}");
    // A trained model reports the model and both baselines; a world this
    // small may train none, which the output says.
    if text.contains("no model trained") {
        assert!(summary["risk"].is_null(), "{summary}");
    } else {
        let methods: Vec<&str> = summary["risk"]["auc"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["method"].as_str())
            .collect();
        assert_eq!(
            methods,
            ["model", "lines_added alone", "recent_failure_rate alone"],
            "{summary}"
        );
        // The ceiling: the generator's own probabilities on the same folds.
        let ceiling = summary["risk"]["generator_auc"].as_f64();
        assert!(
            ceiling.is_some_and(|a| (0.0..=1.0).contains(&a)),
            "{summary}"
        );
    }
    // Portal adoption of the last full month, and every scope × month of
    // usage_active agrees with the generator's events.
    assert!(text.contains("monthly active users of"), "{text}");
    let usage: Vec<u64> = text
        .lines()
        .find(|l| l.starts_with("checked against the world's portal events:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse::<u64>().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        usage.len() >= 2 && usage[0] == usage[1] && usage[1] > 0,
        "{text}"
    );
    // Every kind of source landed: APIs and delivered files.
    for table in [
        "incidents",
        "service_metrics_daily",
        "error_issues_daily",
        "release_deploys",
        "cost_allocations_daily",
        "cloud_costs_daily",
        "portal_events",
    ] {
        let rows = text
            .lines()
            .skip_while(|l| !l.starts_with("what landed"))
            .find(|l| l.split_whitespace().next() == Some(table))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(rows > 0, "{table}: {text}");
    }
    // The demo leaves a configuration that reaches its warehouse.
    let config = demo_dir.join("fathom.toml");
    let output = std::process::Command::new(crate::support::fathom_bin())
        .arg("--config")
        .arg(&config)
        .args([
            "sql",
            "SELECT count(*) AS n FROM deployments",
            "--format",
            "csv",
        ])
        .env_remove("FATHOM_WAREHOUSE__URL")
        .output()?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("n\n{deployments}\n"));
    Ok(())
}
