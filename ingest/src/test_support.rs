//! Helpers shared by the unit tests.

use std::path::PathBuf;

/// The recorded upstream payloads (`../shared/fixtures`, or
/// `FATHOM_FIXTURES_DIR`); `None`, after a notice, when they are absent.
pub(crate) fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FATHOM_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipped: fixtures not found at {} (set FATHOM_FIXTURES_DIR)",
            dir.display()
        );
        None
    }
}
