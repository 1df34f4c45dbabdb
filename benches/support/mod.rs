//! What the benchmarks that drive the `fathom` binary share.

use std::path::Path;
use std::process::Command;

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
