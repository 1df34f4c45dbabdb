//! Imported rows that name no component get one from the catalog, as
//! ingested rows do: a pull request, commit or review by its repository
//! (`github.com/project-slug`), a deployment by its repository, its
//! application (`argocd/app-name`) or its service's name. History exported
//! from another tool rarely carries Backstage refs, and without this every
//! such row would stay unattributed without a word.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use fathom_models::TableDef;

use crate::identity::IdentityMap;
use crate::source::Identity;

/// Rows of an import without an entity ref: how many the catalog
/// attributed, how many still name no component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Rows given an entity ref from the catalog.
    pub derived: u64,
    /// Rows that still name no component.
    pub unattributed: u64,
}

/// Whether rows of `table` can be attributed this way.
pub fn attributable(table: &TableDef) -> bool {
    table.column("entity_ref").is_some()
        && (table.column("repository_id").is_some() || table.column("service_name").is_some())
}

/// The identities of one row, most specific first.
fn identities(repository: Option<&str>, service: Option<&str>) -> Vec<Identity> {
    let mut out = Vec::new();
    if let Some(repository) = repository {
        // Ingested ids carry their provider (`github:owner/name`); imported
        // ones usually do not.
        let slug = repository.strip_prefix("github:").unwrap_or(repository);
        out.push(Identity::Repository(slug.to_owned()));
    }
    if let Some(service) = service {
        out.push(Identity::ArgoApp(service.to_owned()));
        out.push(Identity::DatadogService(service.to_owned()));
    }
    out
}

fn text_column(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    let column = batch.column_by_name(name)?;
    let text = cast(column, &DataType::Utf8).ok()?;
    text.as_any().downcast_ref::<StringArray>().cloned()
}

/// `batch` with null entity refs filled from `map` where a row's
/// identifiers map, and the counts.
pub fn attribute(
    table: &TableDef,
    batch: &RecordBatch,
    map: &IdentityMap,
) -> Result<(RecordBatch, Attribution), String> {
    let mut counts = Attribution::default();
    let Some(index) = batch.schema().index_of("entity_ref").ok() else {
        return Ok((batch.clone(), counts));
    };
    let Some(current) = text_column(batch, "entity_ref") else {
        return Ok((batch.clone(), counts));
    };
    if current.null_count() == 0 {
        return Ok((batch.clone(), counts));
    }
    let repositories = table
        .column("repository_id")
        .and_then(|_| text_column(batch, "repository_id"));
    let services = table
        .column("service_name")
        .and_then(|_| text_column(batch, "service_name"));
    fn value(array: &Option<StringArray>, row: usize) -> Option<&str> {
        array
            .as_ref()
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row))
    }
    let filled: StringArray = (0..batch.num_rows())
        .map(|row| {
            if current.is_valid(row) {
                return Some(current.value(row).to_owned());
            }
            let found = map
                .resolve(&identities(
                    value(&repositories, row),
                    value(&services, row),
                ))
                .map(str::to_owned);
            if found.is_some() {
                counts.derived += 1;
            } else {
                counts.unattributed += 1;
            }
            found
        })
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[index] = cast(
        &(Arc::new(filled) as ArrayRef),
        batch.column(index).data_type(),
    )
    .map_err(|e| e.to_string())?;
    let batch = RecordBatch::try_new(batch.schema(), columns).map_err(|e| e.to_string())?;
    Ok((batch, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_models::tables::{DEPLOYMENTS, PULL_REQUESTS};

    fn batch(columns: Vec<(&str, Vec<Option<&str>>)>) -> RecordBatch {
        RecordBatch::try_from_iter(
            columns
                .into_iter()
                .map(|(name, values)| (name, Arc::new(StringArray::from(values)) as ArrayRef)),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rows_without_a_ref_get_one_from_the_catalog() -> Result<(), String> {
        let mut map = IdentityMap::default();
        map.insert(
            Identity::Repository("acme/payments".to_owned()),
            "component:default/payments-api",
        );
        map.insert(
            Identity::ArgoApp("ledger-prod".to_owned()),
            "component:default/ledger",
        );
        let pulls = batch(vec![
            (
                "repository_id",
                vec![
                    Some("acme/payments"),
                    Some("github:acme/payments"),
                    Some("acme/other"),
                    Some("acme/payments"),
                ],
            ),
            (
                "entity_ref",
                vec![None, None, None, Some("component:default/kept")],
            ),
        ]);
        let (out, counts) = attribute(&PULL_REQUESTS, &pulls, &map)?;
        assert_eq!(
            counts,
            Attribution {
                derived: 2,
                unattributed: 1
            }
        );
        let refs = text_column(&out, "entity_ref").ok_or("no refs")?;
        assert_eq!(
            refs.iter().collect::<Vec<_>>(),
            [
                Some("component:default/payments-api"),
                Some("component:default/payments-api"),
                None,
                Some("component:default/kept")
            ]
        );
        let deployments = batch(vec![
            ("repository_id", vec![None]),
            ("service_name", vec![Some("Ledger-Prod")]),
            ("entity_ref", vec![None]),
        ]);
        let (out, counts) = attribute(&DEPLOYMENTS, &deployments, &map)?;
        assert_eq!(counts.derived, 1);
        assert_eq!(
            text_column(&out, "entity_ref").map(|r| r.value(0).to_owned()),
            Some("component:default/ledger".to_owned())
        );
        Ok(())
    }
}
