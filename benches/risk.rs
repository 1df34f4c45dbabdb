//! Deployment risk and suspect deployments over several worlds: for each
//! seed, `fathom demo --no-serve --seed <seed>` builds the default demo
//! world (8 teams, 40 services, 180 days) through the simulators and
//! ingest, trains the risk model (chronological backtest against both
//! baselines, and the generator's own failure probabilities on the same
//! folds as the ceiling) and scores suspects against the world's truth; the figures
//! are read from its `--summary` file and printed per seed and averaged. The seeds
//! default to 101–105, never used while the model and the thresholds were
//! built (those were 1–3). Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench risk` (`FATHOM_BENCH_SEEDS=7,8,9` for
//! other worlds).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

/// One world's figures, read from the demo's `--summary` file.
#[derive(Debug, Default)]
struct Figures {
    /// AUC of the model, lines added alone, the recent failure rate alone,
    /// and of the generator's own failure probabilities (the ceiling).
    auc: [Option<f64>; 4],
    precision: Option<f64>,
    recall: Option<f64>,
    /// Recall on the services reporting to an error tracker.
    tracked_recall: Option<f64>,
    caused: Option<f64>,
    flagged: Option<f64>,
    median_minutes: Option<f64>,
}

fn figures(summary: &serde_json::Value) -> Figures {
    let number = |v: &serde_json::Value| v.as_f64();
    let auc = |method: &str| {
        summary["risk"]["auc"]
            .as_array()?
            .iter()
            .find(|m| m["method"] == method)
            .and_then(|m| m["auc"].as_f64())
    };
    let suspects = &summary["suspects"];
    Figures {
        auc: [
            auc("model"),
            auc("lines_added alone"),
            auc("recent_failure_rate alone"),
            number(&summary["risk"]["generator_auc"]),
        ],
        precision: number(&suspects["precision"]),
        recall: number(&suspects["recall"]),
        tracked_recall: number(&suspects["tracked_recall"]),
        caused: number(&suspects["caused"]),
        flagged: number(&suspects["flagged"]),
        median_minutes: number(&suspects["median_minutes"]),
    }
}

fn demo(dir: &Path, seed: u64) -> Result<serde_json::Value> {
    let summary = dir.join("summary.json");
    let output = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .args(["demo", "--no-serve", "--seed", &seed.to_string(), "--dir"])
        .arg(dir)
        .arg("--summary")
        .arg(&summary)
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env_remove("FATHOM_CONFIG")
        .output()?;
    if !output.status.success() {
        bail!(
            "demo (seed {seed}): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&std::fs::read(&summary)?)?)
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let known: Vec<f64> = values.flatten().collect();
    (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
}

fn main() -> Result<()> {
    let seeds: Vec<u64> = std::env::var("FATHOM_BENCH_SEEDS")
        .unwrap_or_else(|_| "101,102,103,104,105".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir()?;
    println!(
        "{:>6} {:>7} {:>7} {:>7} {:>7} | {:>9} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6}",
        "seed",
        "model",
        "lines",
        "rate",
        "ceiling",
        "precision",
        "recall",
        "tracked",
        "caused",
        "flagged",
        "median",
        "s"
    );
    let mut all = Vec::new();
    for seed in seeds {
        let started = Instant::now();
        let summary = demo(&dir.path().join(format!("seed-{seed}")), seed)?;
        let f = figures(&summary);
        println!(
            "{seed:>6} {:>7} {:>7} {:>7} {:>7} | {:>9} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6.0}",
            show(f.auc[0]),
            show(f.auc[1]),
            show(f.auc[2]),
            show(f.auc[3]),
            show(f.precision),
            show(f.recall),
            show(f.tracked_recall),
            f.caused.map_or("-".to_owned(), |v| format!("{v:.0}")),
            f.flagged.map_or("-".to_owned(), |v| format!("{v:.0}")),
            f.median_minutes
                .map_or("-".to_owned(), |v| format!("{v:.0} min")),
            started.elapsed().as_secs_f64()
        );
        all.push(f);
    }
    println!(
        "{:>6} {:>7} {:>7} {:>7} {:>7} | {:>9} {:>7} {:>7}",
        "mean",
        show(mean(all.iter().map(|f| f.auc[0]))),
        show(mean(all.iter().map(|f| f.auc[1]))),
        show(mean(all.iter().map(|f| f.auc[2]))),
        show(mean(all.iter().map(|f| f.auc[3]))),
        show(mean(all.iter().map(|f| f.precision))),
        show(mean(all.iter().map(|f| f.recall))),
        show(mean(all.iter().map(|f| f.tracked_recall))),
    );
    println!(
        "AUC: chronological backtest (rolling origin, 7-day embargo), mean of the folds; ceiling: the generator's own failure probabilities on the same folds; suspects: against the deployments the truth says caused an incident"
    );
    Ok(())
}
