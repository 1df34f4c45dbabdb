//! What the benchmarks that drive the `fathom` binary share.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Result, bail};

/// Runs `fathom --config <config> <args>` and returns its stdout; the
/// environment's warehouse and state settings are left out, so the config
/// file decides.
pub fn fathom(config: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .output()?;
    if !output.status.success() {
        bail!(
            "fathom {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The default demo world (8 teams, 40 services, 180 days), built with
/// `fathom demo --no-serve` under `dir`; returns its directory (warehouse
/// in `data/`, config in `fathom.toml`).
pub fn demo_world(dir: &Path) -> Result<PathBuf> {
    let demo = dir.join("demo");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .args(["demo", "--no-serve", "--dir"])
        .arg(&demo)
        .env_remove("FATHOM_WAREHOUSE__URL")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .env_remove("FATHOM_CONFIG")
        .stdout(Stdio::null())
        .output()?;
    if !output.status.success() {
        bail!("demo: {}", String::from_utf8_lossy(&output.stderr));
    }
    println!(
        "demo world (8 teams, 40 services, 180 days) built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(demo)
}
