//! The fuzz properties of the security suite at benchmark size: 10,000
//! generated cases each (set `FATHOM_FUZZ_CASES`) against the SQL guard,
//! every source's decoders and the importer's coercion, counting panics
//! (the property is zero). Figures are printed, never asserted.
//!
//! Run with `cargo bench --bench fuzz`.

#[path = "../tests/it/security/fuzz.rs"]
#[allow(dead_code)]
mod fuzz;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use anyhow::Result;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};

/// Runs `check` on `cases` values of `strategy`; returns the panics.
fn campaign<S: Strategy>(
    name: &str,
    strategy: S,
    cases: usize,
    check: impl Fn(&S::Value),
) -> Result<usize> {
    let mut runner = TestRunner::new(Config::default());
    let started = Instant::now();
    let mut panics = 0;
    for _ in 0..cases {
        let value = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .current();
        if catch_unwind(AssertUnwindSafe(|| check(&value))).is_err() {
            panics += 1;
        }
    }
    println!(
        "{name}: {cases} cases, {panics} panics, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(panics)
}

fn main() -> Result<()> {
    let cases: usize = std::env::var("FATHOM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sources = fuzz::sources();
    // The guard measures on a large stack, as the server does.
    let guard = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || campaign("sql guard", fuzz::sql(), cases, |sql| fuzz::guard(sql)))?
        .join()
        .map_err(|_| anyhow::anyhow!("the guard campaign panicked"))??;
    let decoders = campaign(
        "decoders (every source × stream)",
        fuzz::body(),
        cases,
        |body| fuzz::decode_everywhere(&sources, body),
    )?;
    let coercion = campaign("intake coercion", fuzz::body(), cases, |body| {
        fuzz::coerce(&format!("[{body}]"))
    })?;
    println!(
        "total: {} cases, {} panics",
        cases * 3,
        guard + decoders + coercion
    );
    Ok(())
}
