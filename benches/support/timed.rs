//! `fathom transform` run under `/usr/bin/time`, for the benchmarks that
//! measure the marts (time and peak memory of the process, as a user's
//! run would have them).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `fathom transform --json --as-of <as_of> <extra>` on the warehouse
/// at `data`: (wall seconds, peak resident MB, the run's report).
pub fn transform(
    data: &Path,
    as_of: &str,
    extra: &[&str],
) -> Result<(f64, f64, serde_json::Value)> {
    let mut args = vec!["transform", "--json", "--as-of", as_of];
    args.extend_from_slice(extra);
    fathom(data, &args)
}

/// Runs `fathom <args>` (a command printing its report as JSON) on the
/// warehouse at `data`: (wall seconds, peak resident MB, the report).
pub fn fathom(data: &Path, args: &[&str]) -> Result<(f64, f64, serde_json::Value)> {
    let timing = data.with_extension("time");
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&timing)
        .arg(env!("CARGO_BIN_EXE_fathom"))
        .args(args)
        .env("FATHOM_WAREHOUSE__URL", data)
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env_remove("FATHOM_CONFIG")
        .output()
        .context("cannot run /usr/bin/time (apt-get install time)")?;
    if !output.status.success() {
        bail!(
            "{}: {}",
            args.first().copied().unwrap_or("fathom"),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = std::fs::read_to_string(&timing)?;
    let mut parts = text.split_whitespace();
    let seconds: f64 = parts.next().context("no time")?.parse()?;
    let kb: f64 = parts.next().context("no memory")?.parse()?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok((seconds, kb / 1024.0, report))
}

/// Runs a Python `script` (with `args`) that uses the `duckdb` package,
/// under `/usr/bin/time` (timing file next to `data`): its standard output
/// and peak resident MB, or `None` (said on stdout) without the package.
pub fn duckdb_script(data: &Path, script: &str, args: &[&Path]) -> Result<Option<(String, f64)>> {
    let timing = data.with_extension("duckdb-time");
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&timing)
        .args(["python3", "-c", script])
        .args(args)
        .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named 'duckdb'") {
            println!("DuckDB: skipped (pip install duckdb to compare)");
            return Ok(None);
        }
        bail!("duckdb: {stderr}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok(Some((stdout, peak_mb(&timing)?)))
}

/// The peak resident MB `/usr/bin/time -f %M` wrote into `timing`.
fn peak_mb(timing: &Path) -> Result<f64> {
    let kb: f64 = std::fs::read_to_string(timing)?
        .lines()
        .rev()
        .find_map(|line| line.trim().parse().ok())
        .context("no peak memory from /usr/bin/time")?;
    Ok(kb / 1024.0)
}
