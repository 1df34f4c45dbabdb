//! An incremental run leaves exactly the rows a full recompute writes
//! (proptest, 100 cases each): DORA history, cost and portal events
//! arriving in two parts. The cases themselves live with their subjects'
//! tests ([`crate::properties`], [`crate::cost_tests`],
//! [`crate::usage_tests`]).
//!
//! Gathered here because they are the slowest tests of the crate (three
//! runs of every mart a case) and the test harness starts tests in name
//! order: this module sorts before the others, so on a two-core runner
//! they start first and the short tests fill the other thread, instead of
//! one of them running alone at the end.

use proptest::prelude::*;

use crate::cost_tests::{allocations, line};
use crate::properties::service;
use crate::usage_tests::event;

/// Runs one case on a runtime of its own (proptest calls the test body
/// synchronously).
fn block_on(case: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(case)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// See [`crate::cost_tests::incremental_equals_full`].
    #[test]
    fn an_incremental_cost_run_equals_a_full_recompute(
        first_allocations in allocations(),
        later_allocations in allocations(),
        first_lines in prop::collection::vec(line(), 0..12),
        rewritten_lines in prop::collection::vec(line(), 0..12),
        policy in prop::sample::select(crate::SHARED_POLICIES.to_vec()),
    ) {
        let outcome = block_on(crate::cost_tests::incremental_equals_full(
            first_allocations, later_allocations, first_lines, rewritten_lines, policy,
        ));
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }

    /// See [`crate::properties::incremental_equals_full`].
    #[test]
    fn an_incremental_dora_run_equals_a_full_recompute(
        team_a in prop::collection::vec(service(), 1..3),
        team_b in prop::collection::vec(service(), 1..3),
        seed in 0usize..3,
    ) {
        let outcome = block_on(crate::properties::incremental_equals_full(team_a, team_b, seed));
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }

    /// See [`crate::usage_tests::incremental_equals_full`].
    #[test]
    fn an_incremental_usage_run_equals_a_full_recompute(
        team_sizes in prop::collection::vec(1usize..7, 4),
        events in prop::collection::vec(event(), 1..150),
        split in 0i64..70,
    ) {
        let outcome = block_on(crate::usage_tests::incremental_equals_full(team_sizes, events, split));
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}
