//! The one rule deciding how a stage's run ended.

use fathom_warehouse::state::RunStatus;

/// What a stage did, in the terms the run-status rule reads: the parts it
/// worked through (sources, files, marts), how many failed outright, other
/// errors, and the records it quarantined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Parts attempted.
    pub parts: usize,
    /// Parts that produced nothing (a source down, a file unreadable or
    /// wholly rejected).
    pub failed_parts: usize,
    /// Errors within parts that still produced something.
    pub errors: usize,
    /// Records set aside with a reason.
    pub quarantined: u64,
}

impl Tally {
    /// The run's status: failed when every part failed, partial when some
    /// part failed, something errored or records were quarantined, else
    /// succeeded. A stage with no parts did nothing wrong.
    pub fn status(&self) -> RunStatus {
        if self.parts > 0 && self.failed_parts >= self.parts {
            RunStatus::Failed
        } else if self.failed_parts > 0 || self.errors > 0 || self.quarantined > 0 {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_rule_on_its_edges() {
        let t = |parts, failed_parts, errors, quarantined| Tally {
            parts,
            failed_parts,
            errors,
            quarantined,
        };
        assert_eq!(t(0, 0, 0, 0).status(), RunStatus::Succeeded);
        assert_eq!(t(3, 0, 0, 0).status(), RunStatus::Succeeded);
        assert_eq!(t(3, 0, 0, 1).status(), RunStatus::Partial);
        assert_eq!(t(3, 0, 1, 0).status(), RunStatus::Partial);
        assert_eq!(t(3, 2, 0, 0).status(), RunStatus::Partial);
        assert_eq!(t(3, 3, 0, 0).status(), RunStatus::Failed);
        assert_eq!(t(1, 1, 0, 5).status(), RunStatus::Failed);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A clean tally succeeds; any blemish makes it at best partial;
        /// only a tally whose every part failed is failed.
        #[test]
        fn status_orders_with_the_blemishes(
            parts in 0usize..20,
            failed in 0usize..20,
            errors in 0usize..5,
            quarantined in 0u64..5,
        ) {
            let failed_parts = failed.min(parts);
            let tally = Tally { parts, failed_parts, errors, quarantined };
            let status = tally.status();
            let clean = failed_parts == 0 && errors == 0 && quarantined == 0;
            prop_assert_eq!(status == RunStatus::Succeeded, clean);
            prop_assert_eq!(status == RunStatus::Failed, parts > 0 && failed_parts == parts);
        }
    }
}
