//! What a run did: per stream, per source and in total (counts and errors for
//! the run ledger).

use std::collections::BTreeMap;

use serde::Serialize;

/// What one stream did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamReport {
    /// Source name.
    pub source: String,
    /// Stream.
    pub stream: String,
    /// Payloads received.
    pub payloads: usize,
    /// Rows decoded, per table.
    pub rows: BTreeMap<String, usize>,
    /// Rows inserted or changed in the warehouse, per table.
    pub rows_changed: BTreeMap<String, usize>,
    /// Rows whose entity could not be found, per table.
    pub unmapped: BTreeMap<String, usize>,
    /// Records sent to quarantine.
    pub quarantined: usize,
    /// Things the user should know (e.g. history lost upstream).
    pub warnings: Vec<String>,
    /// Why the stream stopped early, if it did.
    pub error: Option<String>,
    /// Whether it stopped because the upstream is unusable (circuit open,
    /// credentials refused, rate limit exhausted, retries exhausted).
    pub upstream_down: bool,
}

/// What one source did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceReport {
    /// Source name.
    pub name: String,
    /// Source type.
    pub kind: String,
    /// Its streams.
    pub streams: Vec<StreamReport>,
    /// HTTP requests sent (including retries).
    pub api_calls: u64,
    /// Retries among them.
    pub retries: u64,
    /// Conditional requests answered "not modified".
    pub not_modified: u64,
    /// Time spent waiting for rate limits, seconds.
    pub rate_limit_wait_seconds: f64,
    /// Whether the upstream was unusable and streams were skipped.
    pub degraded: bool,
    /// Why, when it was.
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// One per source run.
    pub sources: Vec<SourceReport>,
}

impl IngestReport {
    /// Counts for the run ledger.
    pub fn counts(&self) -> BTreeMap<String, i64> {
        let mut counts = BTreeMap::new();
        for source in &self.sources {
            let prefix = &source.name;
            counts.insert(format!("{prefix}.api_calls"), source.api_calls as i64);
            counts.insert(format!("{prefix}.retries"), source.retries as i64);
            counts.insert(format!("{prefix}.not_modified"), source.not_modified as i64);
            for stream in &source.streams {
                let p = format!("{prefix}.{}", stream.stream);
                counts.insert(format!("{p}.payloads"), stream.payloads as i64);
                for (table, n) in &stream.rows {
                    *counts.entry(format!("{p}.{table}.rows")).or_default() += *n as i64;
                }
                for (table, n) in &stream.rows_changed {
                    *counts.entry(format!("{p}.{table}.changed")).or_default() += *n as i64;
                }
                for (table, n) in &stream.unmapped {
                    *counts.entry(format!("{p}.{table}.unmapped")).or_default() += *n as i64;
                }
                counts.insert(format!("{p}.quarantined"), stream.quarantined as i64);
            }
        }
        counts
    }

    /// Every error and warning, for the run ledger.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for source in &self.sources {
            if let Some(error) = &source.error {
                errors.push(format!("{}: {error}", source.name));
            }
            for stream in &source.streams {
                if let Some(error) = &stream.error {
                    errors.push(format!("{}.{}: {error}", source.name, stream.stream));
                }
                for warning in &stream.warnings {
                    errors.push(format!(
                        "{}.{}: warning: {warning}",
                        source.name, stream.stream
                    ));
                }
            }
        }
        errors
    }

    /// Records quarantined in the run.
    pub fn quarantined(&self) -> usize {
        self.sources
            .iter()
            .flat_map(|s| &s.streams)
            .map(|s| s.quarantined)
            .sum()
    }

    /// Whether anything failed or a source was degraded.
    pub fn has_failures(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.degraded || s.error.is_some() || s.streams.iter().any(|t| t.error.is_some()))
    }
}
