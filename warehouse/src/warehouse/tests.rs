//! Delta behaviour of the warehouse on `memory://` and local files.

use std::sync::Arc;

use arrow::array::{ArrayRef, MapBuilder, StringArray, StringBuilder, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use fathom_models::tables::{CATALOG_ENTITIES, DEPLOYMENTS};
use fathom_models::{MAP_ENTRIES_FIELD, MAP_KEY_FIELD, MAP_VALUE_FIELD};

use super::*;
use crate::query::{QueryLimits, query, read_only_session};

fn deployments(rows: &[(&str, &str, i64)]) -> Result<RecordBatch> {
    let ids: StringArray = rows.iter().map(|r| Some(r.0)).collect();
    let status: StringArray = rows.iter().map(|r| Some(r.1)).collect();
    let started: TimestampMicrosecondArray = rows.iter().map(|r| Some(r.2)).collect();
    let n = rows.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("deployment_id", Arc::new(ids)),
        ("source", Arc::new(StringArray::from(vec!["import"; n]))),
        (
            "environment",
            Arc::new(StringArray::from(vec!["production"; n])),
        ),
        ("status", Arc::new(status)),
        ("started_at", Arc::new(started.with_timezone("UTC"))),
    ];
    Ok(RecordBatch::try_from_iter(columns)?)
}

async fn scalar(warehouse: &Warehouse, sql: &str) -> Result<String> {
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    let (_, batches) = query(&ctx, sql).await?;
    let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    Ok(text
        .lines()
        .nth(3)
        .unwrap_or_default()
        .trim_matches(|c| c == '|' || c == ' ')
        .to_owned())
}

const JAN_2026: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;

#[tokio::test]
async fn merge_inserts_updates_and_ignores_identical_rows() -> Result<()> {
    let warehouse = Warehouse::in_memory()?;
    let first = warehouse
        .merge(
            &DEPLOYMENTS,
            &[deployments(&[
                ("a", "success", JAN_2026),
                ("b", "failure", JAN_2026 + 40 * DAY),
            ])?],
        )
        .await?;
    assert_eq!((first.rows_inserted, first.rows_updated), (2, 0));
    let again = warehouse
        .merge(
            &DEPLOYMENTS,
            &[deployments(&[
                ("a", "success", JAN_2026),
                ("b", "failure", JAN_2026 + 40 * DAY),
            ])?],
        )
        .await?;
    assert_eq!(
        (
            again.rows_inserted,
            again.rows_updated,
            again.rows_unchanged
        ),
        (0, 0, 2)
    );
    let changed = warehouse
        .merge(
            &DEPLOYMENTS,
            &[deployments(&[
                ("b", "success", JAN_2026 + 40 * DAY),
                ("c", "success", JAN_2026),
            ])?],
        )
        .await?;
    assert_eq!(
        (
            changed.rows_inserted,
            changed.rows_updated,
            changed.rows_unchanged
        ),
        (1, 1, 0)
    );
    assert_eq!(
        scalar(&warehouse, "SELECT count(*) FROM deployments").await?,
        "3"
    );
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT status FROM deployments WHERE deployment_id = 'b'"
        )
        .await?,
        "success"
    );
    // The partition column is derived from started_at.
    assert_eq!(
        scalar(&warehouse, "SELECT min(started_month) || ',' || max(started_month) || ',' || count(DISTINCT started_month) FROM deployments").await?,
        "2026-01,2026-02,2"
    );
    Ok(())
}

#[tokio::test]
async fn duplicate_keys_in_one_write_keep_the_last() -> Result<()> {
    let warehouse = Warehouse::in_memory()?;
    let stats = warehouse
        .merge(
            &DEPLOYMENTS,
            &[deployments(&[
                ("a", "failure", JAN_2026),
                ("a", "success", JAN_2026),
            ])?],
        )
        .await?;
    assert_eq!((stats.rows_in, stats.rows_superseded), (1, 1));
    assert_eq!(
        scalar(&warehouse, "SELECT status FROM deployments").await?,
        "success"
    );
    Ok(())
}

#[tokio::test]
async fn map_columns_round_trip_and_take_part_in_change_detection() -> Result<()> {
    let warehouse = Warehouse::in_memory()?;
    let entity = |slug: &str| -> Result<RecordBatch> {
        let mut annotations = MapBuilder::new(
            Some(arrow::array::MapFieldNames {
                entry: MAP_ENTRIES_FIELD.into(),
                key: MAP_KEY_FIELD.into(),
                value: MAP_VALUE_FIELD.into(),
            }),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        annotations.keys().append_value("github.com/project-slug");
        annotations.values().append_value(slug);
        annotations.append(true)?;
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "entity_ref",
                Arc::new(StringArray::from(vec!["component:default/payments"])),
            ),
            ("kind", Arc::new(StringArray::from(vec!["component"]))),
            ("namespace", Arc::new(StringArray::from(vec!["default"]))),
            ("name", Arc::new(StringArray::from(vec!["payments"]))),
            ("annotations", Arc::new(annotations.finish())),
        ];
        Ok(RecordBatch::try_from_iter(columns)?)
    };
    warehouse
        .merge(&CATALOG_ENTITIES, &[entity("acme/payments")?])
        .await?;
    let same = warehouse
        .merge(&CATALOG_ENTITIES, &[entity("acme/payments")?])
        .await?;
    assert_eq!(same.rows_unchanged, 1);
    let moved = warehouse
        .merge(&CATALOG_ENTITIES, &[entity("acme/payments-v2")?])
        .await?;
    assert_eq!(moved.rows_updated, 1);
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT annotations['github.com/project-slug'] FROM catalog_entities"
        )
        .await?,
        "acme/payments-v2"
    );
    Ok(())
}

#[tokio::test]
async fn unwritten_tables_read_as_empty_and_are_not_created() -> Result<()> {
    let warehouse = Warehouse::in_memory()?;
    assert_eq!(
        scalar(&warehouse, "SELECT count(*) FROM incidents").await?,
        "0"
    );
    assert_eq!(warehouse.status(&DEPLOYMENTS).await?.version, None);
    Ok(())
}

#[tokio::test]
async fn optimize_compacts_and_vacuum_removes_replaced_files() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::CorruptState {
        what: "tempdir",
        detail: e.to_string(),
    })?;
    let location = WarehouseLocation::parse(&dir.path().display().to_string())?;
    let warehouse = Warehouse::open(location, StorageOptions::default())?;
    for i in 0..4 {
        warehouse
            .append(
                &DEPLOYMENTS,
                &[deployments(&[(&format!("d{i}"), "success", JAN_2026)])?],
            )
            .await?;
    }
    assert_eq!(warehouse.status(&DEPLOYMENTS).await?.n_files, 4);
    let optimized = warehouse.optimize(&DEPLOYMENTS).await?;
    assert_eq!((optimized.files_added, optimized.files_removed), (1, 4));
    assert_eq!(warehouse.status(&DEPLOYMENTS).await?.n_files, 1);
    let vacuumed = warehouse
        .vacuum(&DEPLOYMENTS, chrono::Duration::zero(), false, false)
        .await?;
    assert_eq!(vacuumed.files_deleted, 4);
    assert_eq!(
        scalar(&warehouse, "SELECT count(*) FROM deployments").await?,
        "4"
    );
    Ok(())
}

#[tokio::test]
async fn insert_missing_adds_new_keys_and_never_rewrites_old_ones() -> Result<()> {
    let warehouse = Warehouse::in_memory()?;
    let first = warehouse
        .insert_missing(
            &DEPLOYMENTS,
            &[deployments(&[
                ("a", "success", JAN_2026),
                ("b", "success", JAN_2026 + 1),
            ])?],
        )
        .await?;
    assert_eq!(first.rows_inserted, 2);
    // `a` again with other content, and a new `c`: only `c` lands.
    let second = warehouse
        .insert_missing(
            &DEPLOYMENTS,
            &[deployments(&[
                ("a", "failure", JAN_2026),
                ("c", "success", JAN_2026 + 2),
            ])?],
        )
        .await?;
    assert_eq!((second.rows_inserted, second.rows_updated), (1, 0));
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT status FROM deployments WHERE deployment_id = 'a'"
        )
        .await?,
        "success"
    );
    assert_eq!(
        scalar(&warehouse, "SELECT count(*) FROM deployments").await?,
        "3"
    );
    Ok(())
}

#[tokio::test]
async fn replacing_a_partition_swaps_its_rows_and_leaves_the_others() -> Result<()> {
    let warehouse = Warehouse::in_memory()?;
    // January: a, b, c; February: d.
    warehouse
        .merge(
            &DEPLOYMENTS,
            &[deployments(&[
                ("a", "success", JAN_2026),
                ("b", "success", JAN_2026 + DAY),
                ("c", "success", JAN_2026 + 2 * DAY),
                ("d", "success", JAN_2026 + 40 * DAY),
            ])?],
        )
        .await?;
    // The provider rewrote January: b changed, c is gone, e is new.
    let stats = warehouse
        .replace_partitions(
            &DEPLOYMENTS,
            &["2026-01".to_owned()],
            &[deployments(&[
                ("a", "success", JAN_2026),
                ("b", "failure", JAN_2026 + DAY),
                ("e", "success", JAN_2026 + 3 * DAY),
            ])?],
        )
        .await?;
    assert_eq!((stats.rows_removed, stats.rows_written), (3, 3));
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT string_agg(deployment_id || ':' || status, ',' ORDER BY deployment_id) FROM deployments"
        )
        .await?,
        "a:success,b:failure,d:success,e:success"
    );
    // Replacing with the same rows again leaves the same month.
    warehouse
        .replace_partitions(
            &DEPLOYMENTS,
            &["2026-01".to_owned()],
            &[deployments(&[
                ("a", "success", JAN_2026),
                ("b", "failure", JAN_2026 + DAY),
                ("e", "success", JAN_2026 + 3 * DAY),
            ])?],
        )
        .await?;
    assert_eq!(
        scalar(&warehouse, "SELECT count(*) FROM deployments").await?,
        "4"
    );
    // A row of another month is refused, and nothing changes.
    let refused = warehouse
        .replace_partitions(
            &DEPLOYMENTS,
            &["2026-01".to_owned()],
            &[deployments(&[("f", "success", JAN_2026 + 40 * DAY)])?],
        )
        .await;
    assert!(refused.is_err());
    assert_eq!(
        scalar(&warehouse, "SELECT count(*) FROM deployments").await?,
        "4"
    );
    // A month listed without rows is emptied; retention deletes by predicate.
    warehouse
        .replace_partitions(&DEPLOYMENTS, &["2026-02".to_owned()], &[])
        .await?;
    let deleted = warehouse
        .delete_where(
            &DEPLOYMENTS,
            col("deployment_id").eq(datafusion::logical_expr::lit("a")),
        )
        .await?;
    assert_eq!(deleted, 1);
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT string_agg(deployment_id, ',' ORDER BY deployment_id) FROM deployments"
        )
        .await?,
        "b,e"
    );
    Ok(())
}

/// A text column of a test table.
const fn column(name: &'static str, nullable: bool) -> fathom_models::ColumnDef {
    fathom_models::ColumnDef {
        name,
        column_type: fathom_models::ColumnType::Utf8,
        nullable,
        description: "",
        vocabulary: None,
    }
}

/// A mart written by an earlier release (fewer columns) is rewritten
/// whole with the model's columns: `columns_changed` says so first, and
/// `replace_all` writes the new schema in the same commit.
#[tokio::test]
async fn replacing_a_table_with_new_columns_rewrites_its_schema() -> Result<()> {
    const OLD: TableDef = TableDef {
        name: "evolving",
        description: "",
        columns: &[column("id", false)],
        primary_key: &["id"],
        partition: None,
    };
    const NEW: TableDef = TableDef {
        name: "evolving",
        description: "",
        columns: &[column("id", false), column("added", true)],
        primary_key: &["id"],
        partition: None,
    };
    let warehouse = Warehouse::in_memory()?;
    let old =
        RecordBatch::try_from_iter([("id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)])?;
    warehouse.replace_all(&OLD, &[old]).await?;
    assert!(!warehouse.columns_changed(&OLD).await?);
    assert!(warehouse.columns_changed(&NEW).await?);
    let new = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(vec!["b"])) as ArrayRef),
        ("added", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
    ])?;
    let stats = warehouse.replace_all(&NEW, &[new]).await?;
    assert_eq!((stats.rows_removed, stats.rows_written), (1, 1));
    assert!(!warehouse.columns_changed(&NEW).await?);
    let ctx = SessionContext::new();
    warehouse.register_table(&ctx, &NEW).await?;
    let batches = ctx
        .sql("SELECT id || added AS v FROM evolving")
        .await?
        .collect()
        .await?;
    let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    assert!(text.contains("bx"), "{text}");
    Ok(())
}

/// An input table written by an earlier release, read and written by one
/// whose model adds a nullable column (in the middle): reads see it as
/// null without writing anything; the first write adds it to the Delta
/// schema, and old and new rows read alike. A new required column is an
/// error naming the table and the column.
#[tokio::test]
async fn a_table_gains_the_models_new_nullable_columns() -> Result<()> {
    const OLD: TableDef = TableDef {
        name: "growing",
        description: "",
        columns: &[column("id", false), column("a", true)],
        primary_key: &["id"],
        partition: None,
    };
    const NEW: TableDef = TableDef {
        name: "growing",
        description: "",
        columns: &[
            column("id", false),
            column("version", true),
            column("a", true),
        ],
        primary_key: &["id"],
        partition: None,
    };
    const STRICT: TableDef = TableDef {
        name: "growing",
        description: "",
        columns: &[
            column("id", false),
            column("version", true),
            column("a", true),
            column("must", false),
        ],
        primary_key: &["id"],
        partition: None,
    };
    let warehouse = Warehouse::in_memory()?;
    let old = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(vec!["1"])) as ArrayRef),
        ("a", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
    ])?;
    warehouse.merge(&OLD, &[old]).await?;
    let read = |ctx: SessionContext| async move {
        let batches = ctx
            .sql("SELECT id, coalesce(version, '-') AS v, a FROM growing ORDER BY id")
            .await?
            .collect()
            .await?;
        Ok::<_, Error>(arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    };
    let before = warehouse.version(&NEW).await?;
    let ctx = SessionContext::new();
    warehouse.register_table(&ctx, &NEW).await?;
    assert!(read(ctx).await?.contains("| 1  | - | x |"));
    assert_eq!(warehouse.version(&NEW).await?, before, "reading wrote");

    let new = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(vec!["2"])) as ArrayRef),
        (
            "version",
            Arc::new(StringArray::from(vec!["v2"])) as ArrayRef,
        ),
        ("a", Arc::new(StringArray::from(vec!["y"])) as ArrayRef),
    ])?;
    warehouse.merge(&NEW, &[new]).await?;
    let ctx = SessionContext::new();
    warehouse.register_table(&ctx, &NEW).await?;
    let text = read(ctx).await?;
    assert!(text.contains("| 1  | -  | x |"), "{text}");
    assert!(text.contains("| 2  | v2 | y |"), "{text}");

    let refused = warehouse.ensure_table(&STRICT).await;
    assert!(
        matches!(&refused, Err(Error::SchemaMismatch { reason, .. }) if reason.contains("`must`")),
        "{refused:?}"
    );
    Ok(())
}
