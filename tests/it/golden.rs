//! Golden files: every mart's full rows on the worked example of
//! `docs/metrics.md`, as CSV under `tests/golden/worked_example/`. A change
//! to any mart's output shows as a diff of those files, to be reviewed and
//! committed: `FATHOM_UPDATE_GOLDEN=1 cargo test --test it golden` rewrites
//! them.

use anyhow::{Context, Result};
use fathom_warehouse::query::{QueryLimits, query, read_only_session};

use crate::dora::{WORKED_EXAMPLE, load_and_transform};
use crate::support::local_warehouse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mart_matches_its_golden_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    load_and_transform(dir.path(), &WORKED_EXAMPLE)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let session = read_only_session(&warehouse, QueryLimits::default()).await?;
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/worked_example");
    let update = std::env::var_os("FATHOM_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for mart in fathom_transforms::MARTS {
        // Every column but the write time, in a total order.
        let columns: Vec<&str> = mart
            .def
            .columns
            .iter()
            .map(|c| c.name)
            .filter(|c| *c != "updated_at")
            .collect();
        let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            mart.def.name,
            order.join(", ")
        );
        let (_, batches) = query(&session, &sql).await?;
        let csv = csv_text(&columns, &fathom_warehouse::query::text_rows(&batches)?);
        let path = golden.join(format!("{}.csv", mart.def.name));
        if update {
            std::fs::create_dir_all(&golden)?;
            std::fs::write(&path, &csv)?;
            continue;
        }
        let expected = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is missing; run with FATHOM_UPDATE_GOLDEN=1",
                path.display()
            )
        })?;
        if expected != csv {
            let first = expected
                .lines()
                .zip(csv.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(csv.lines().count()));
            stale.push(format!(
                "{}: first difference at line {} (expected {:?}, got {:?})",
                mart.def.name,
                first + 1,
                expected.lines().nth(first),
                csv.lines().nth(first)
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "marts differ from their golden files (review, then FATHOM_UPDATE_GOLDEN=1):\n{}",
        stale.join("\n")
    );
    Ok(())
}

/// Rows as CSV text (lists as the engine prints them), quoted where
/// needed, one row per line.
fn csv_text(columns: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |text: &str| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    };
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}
