//! `fathom reprocess`: the core tables rebuilt from the raw layer with today's
//! decoders and mappings.

use std::sync::Arc;

use fathom_models::tables::CATALOG_ENTITIES;
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query, read_only_session};
use fathom_warehouse::state::StateDb;

use super::report::{IngestReport, SourceReport, StreamReport};
use super::write::{decode_units, text, write_decoded};
use super::{IngestOptions, IngestProgress, parse_instant, run_files, select};
use crate::identity::IdentityMap;
use crate::source::{Payload, SourceConfig};
use crate::{Error, Result};

/// Re-decodes what the raw layer holds for `sources` (or the one named in
/// `options`) and merges it again — after a decoder or identity-mapping
/// change — without calling any upstream. Payloads are decoded in the
/// order they were fetched, so the newest answer wins as it did live.
pub async fn reprocess(
    warehouse: &Warehouse,
    state: &StateDb,
    sources: &[SourceConfig],
    options: &IngestOptions,
    run_id: &str,
    progress: Arc<dyn IngestProgress>,
) -> Result<IngestReport> {
    let selected = select(sources, options)?;
    let session = read_only_session(warehouse, QueryLimits::default())
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
    let mut reports = Vec::new();
    for source in selected {
        let mut report = SourceReport {
            name: source.name().to_owned(),
            kind: source.kind().to_owned(),
            ..SourceReport::default()
        };
        let mut identities = IdentityMap::load(warehouse)
            .await
            .map_err(Error::Identity)?;
        let Some(raw_table) = source.raw_table() else {
            // The delivered files are the raw layer: read them all again.
            report.streams = run_files(
                warehouse,
                state,
                source,
                true,
                run_id,
                &identities,
                &progress,
            )
            .await?;
            reports.push(report);
            continue;
        };
        for stream in source.streams() {
            progress.stream_started(source.name(), stream);
            let sql = format!(
                "SELECT stream, unit, request, status, CAST(fetched_at AS VARCHAR) AS fetched, body FROM {} \
                 WHERE source = '{}' AND stream = '{}' ORDER BY fetched_at, payload_id",
                raw_table.name,
                source.name().replace('\'', "''"),
                stream.replace('\'', "''"),
            );
            let (_, batches) = query(&session, &sql)
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
            let mut payloads = Vec::new();
            for batch in &batches {
                for row in 0..batch.num_rows() {
                    let fetched_at = text(batch, 4, row)
                        .and_then(|t| parse_instant(&t))
                        .unwrap_or_default();
                    payloads.push(Payload {
                        stream: text(batch, 0, row).unwrap_or_default(),
                        unit: text(batch, 1, row).unwrap_or_default(),
                        request: text(batch, 2, row).unwrap_or_default(),
                        status: text(batch, 3, row)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(200),
                        fetched_at,
                        body: text(batch, 5, row).unwrap_or_default(),
                    });
                    progress.payload(source.name(), stream);
                }
            }
            let mut stream_report = StreamReport {
                source: source.name().to_owned(),
                stream: (*stream).to_owned(),
                payloads: payloads.len(),
                ..StreamReport::default()
            };
            if !payloads.is_empty() {
                let decoded = decode_units(source, stream, &payloads);
                let written = write_decoded(
                    warehouse,
                    source.name(),
                    stream,
                    decoded,
                    &identities,
                    run_id,
                    None,
                )
                .await?;
                if written
                    .changed
                    .get(CATALOG_ENTITIES.name)
                    .is_some_and(|n| *n > 0)
                {
                    identities = IdentityMap::load(warehouse)
                        .await
                        .map_err(Error::Identity)?;
                }
                stream_report.rows = written.rows;
                stream_report.rows_changed = written.changed;
                stream_report.unmapped = written.unmapped;
                stream_report.quarantined = written.quarantined;
            }
            progress.stream_finished(&stream_report);
            report.streams.push(stream_report);
        }
        reports.push(report);
    }
    Ok(IngestReport { sources: reports })
}
