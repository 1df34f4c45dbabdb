//! `import_files`: good input in every format, bad input of every kind, and
//! the idempotency property.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use fathom_ingest::{ImportReport, NoProgress, import_files};
use fathom_models::TableDef;
use fathom_models::tables::{CATALOG_ENTITIES, DEPLOYMENTS, INCIDENTS, SERVICE_METRICS_DAILY};
use fathom_warehouse::Warehouse;
use proptest::prelude::*;

use crate::support::{count, day_timestamp, rows, write_file};

async fn load(
    warehouse: &Warehouse,
    table: &'static TableDef,
    paths: &[PathBuf],
) -> Result<ImportReport> {
    Ok(import_files(
        warehouse,
        table,
        paths,
        None,
        "test-run",
        Arc::new(NoProgress),
    )
    .await?)
}

const DEPLOYMENT_HEADER: &str =
    "deployment_id,source,entity_ref,environment,status,started_at,is_rollback\n";

#[tokio::test]
async fn csv_with_both_timestamp_forms_loads_and_canonicalises_refs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let csv = format!(
        "{DEPLOYMENT_HEADER}d1,argocd,payments-api,production,success,2026-03-01T10:00:00Z,false\n\
         d2,argocd,Component:Default/Ledger,production,failure,2026-03-02 11:30:00,true\n\
         d3,argocd,,staging,success,2026-04-01T00:00:00+02:00,\n"
    );
    let path = write_file(dir.path(), "deployments.csv", csv.as_bytes())?;
    let warehouse = Warehouse::in_memory()?;
    let report = load(&warehouse, &DEPLOYMENTS, &[path]).await?;
    assert_eq!((report.rows_loaded(), report.rows_rejected()), (3, 0));
    let got = rows(
        &warehouse,
        "SELECT deployment_id, entity_ref, CAST(started_at AS VARCHAR), started_month, is_rollback FROM deployments ORDER BY deployment_id",
    )
    .await?;
    assert_eq!(
        got,
        vec![
            vec![
                "d1",
                "component:default/payments-api",
                "2026-03-01T10:00:00Z",
                "2026-03",
                "false"
            ],
            vec![
                "d2",
                "component:default/ledger",
                "2026-03-02T11:30:00Z",
                "2026-03",
                "true"
            ],
            // +02:00 is converted to UTC, which moves the row into March.
            vec!["d3", "", "2026-03-31T22:00:00Z", "2026-03", ""],
        ]
    );
    Ok(())
}

#[tokio::test]
async fn ndjson_maps_lists_and_json_arrays_load() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ndjson = br#"{"entity_ref": "component:default/a", "kind": "component", "namespace": "default", "name": "a", "owner_ref": "team-a", "tags": ["x", "y"], "annotations": {"github.com/project-slug": "acme/a", "n": 3}, "extra": 1}

{"entity_ref": "group:default/team-a", "kind": "group", "namespace": "default", "name": "team-a", "tags": "p, q"}
"#;
    let array = br#"[{"entity_ref": "system:default/s", "kind": "system", "namespace": "default", "name": "s"}]"#;
    let paths = vec![
        write_file(dir.path(), "entities.ndjson", ndjson)?,
        write_file(dir.path(), "more.json", array)?,
    ];
    let warehouse = Warehouse::in_memory()?;
    let report = load(&warehouse, &CATALOG_ENTITIES, &paths).await?;
    assert_eq!((report.rows_loaded(), report.rows_rejected()), (3, 0));
    assert_eq!(report.files[0].ignored_columns, vec!["extra".to_owned()]);
    let got = rows(
        &warehouse,
        "SELECT entity_ref, owner_ref, array_to_string(tags, '|'), annotations['github.com/project-slug'], annotations['n'] FROM catalog_entities ORDER BY entity_ref",
    )
    .await?;
    assert_eq!(
        got,
        vec![
            vec![
                "component:default/a",
                "group:default/team-a",
                "x|y",
                "acme/a",
                "3"
            ],
            vec!["group:default/team-a", "", "p|q", "", ""],
            vec!["system:default/s", "", "", "", ""],
        ]
    );
    Ok(())
}

#[tokio::test]
async fn parquet_with_foreign_types_is_cast() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("metrics.parquet");
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "date",
            Arc::new(StringArray::from(vec![
                "2026-05-01",
                "2026-05-02",
                "not a date",
            ])),
        ),
        ("source", Arc::new(StringArray::from(vec!["datadog"; 3]))),
        ("service_name", Arc::new(StringArray::from(vec!["api"; 3]))),
        (
            "request_count",
            Arc::new(Int32Array::from(vec![100, 200, 300])),
        ),
        (
            "updated_at",
            Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_000; 3])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns)?;
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path)?, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    let warehouse = Warehouse::in_memory()?;
    let report = load(&warehouse, &SERVICE_METRICS_DAILY, &[path]).await?;
    assert_eq!((report.rows_loaded(), report.rows_rejected()), (2, 1));
    assert_eq!(
        count(
            &warehouse,
            "SELECT sum(request_count) FROM service_metrics_daily"
        )
        .await?,
        300
    );
    let quarantined = rows(
        &warehouse,
        "SELECT line_number, column_name FROM quarantine",
    )
    .await?;
    assert_eq!(quarantined, vec![vec!["3", "date"]]);
    Ok(())
}

#[tokio::test]
async fn bad_csv_rows_are_quarantined_with_line_column_and_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let csv = format!(
        "{DEPLOYMENT_HEADER}d1,argocd,a,production,success,2026-03-01T10:00:00Z,false\n\
         d2,argocd,a,production,success,yesterday,false\n\
         ,argocd,a,production,success,2026-03-01T10:00:00Z,false\n\
         d4,argocd,a,production,success\n\
         d5,argocd,a,production,success,2026-03-01T10:00:00Z,maybe\n\
         d6,argocd,not a ref!,production,success,2026-03-01T10:00:00Z,false\n\
         d1,argocd,a,production,failure,2026-03-01T10:00:00Z,false\n\
         \"d7,argocd,a,production,success,2026-03-01T10:00:00Z,false\n"
    );
    let path = write_file(dir.path(), "bad.csv", csv.as_bytes())?;
    let warehouse = Warehouse::in_memory()?;
    let report = load(&warehouse, &DEPLOYMENTS, std::slice::from_ref(&path)).await?;
    assert_eq!(
        report.rows_loaded(),
        1,
        "only d1 (its last version) is good"
    );
    assert_eq!(report.rows_rejected(), 7);
    assert_eq!(
        rows(&warehouse, "SELECT deployment_id, status FROM deployments").await?,
        vec![vec!["d1", "failure"]]
    );
    let quarantined = rows(
        &warehouse,
        "SELECT line_number, coalesce(column_name, '-'), reason FROM quarantine ORDER BY line_number",
    )
    .await?;
    let summary: Vec<(String, String)> = quarantined
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("2", "deployment_id"),
        ("3", "started_at"),
        ("4", "deployment_id"),
        ("5", "-"),
        ("6", "is_rollback"),
        ("7", "entity_ref"),
        ("9", "-"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(summary, expected);
    let reasons: BTreeMap<String, String> = quarantined
        .iter()
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    assert!(
        reasons["2"].contains("line 8 supersedes it"),
        "{}",
        reasons["2"]
    );
    assert!(
        reasons["3"].contains("`yesterday` is not a valid timestamp"),
        "{}",
        reasons["3"]
    );
    assert!(
        reasons["4"].contains("primary key column `deployment_id` is missing"),
        "{}",
        reasons["4"]
    );
    assert!(
        reasons["5"].contains("has 5 fields but the header has 7"),
        "{}",
        reasons["5"]
    );
    assert!(
        reasons["6"].contains("`maybe` is not a valid boolean"),
        "{}",
        reasons["6"]
    );
    assert!(reasons["7"].contains("entity ref"), "{}", reasons["7"]);
    // An unterminated quote swallows the rest of the file into one field.
    assert!(
        reasons["9"].contains("fields but the header has 7"),
        "{}",
        reasons["9"]
    );

    // The same bad file again: no second copy in quarantine, no change.
    let again = load(&warehouse, &DEPLOYMENTS, &[path]).await?;
    assert_eq!(again.merge.rows_unchanged, 1);
    assert_eq!(
        count(&warehouse, "SELECT count(*) FROM quarantine").await?,
        7
    );
    Ok(())
}

#[tokio::test]
async fn bad_ndjson_lines_are_quarantined() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ndjson = b"{\"incident_id\": \"i1\", \"source\": \"pd\", \"created_at\": \"2026-01-01T00:00:00Z\"}\n\
{\"incident_id\": \"i2\", \"source\": \"pd\"\n\
[1, 2]\n\
{\"incident_id\": \"i3\", \"source\": \"pd\", \"created_at\": 17}\n\
{\"incident_id\": \"i4\", \"created_at\": \"2026-01-01T00:00:00Z\"}\n\
\xff\xfe\n";
    let path = write_file(dir.path(), "incidents.ndjson", ndjson)?;
    let warehouse = Warehouse::in_memory()?;
    let report = load(&warehouse, &INCIDENTS, &[path]).await?;
    assert_eq!((report.rows_loaded(), report.rows_rejected()), (1, 5));
    let reasons = rows(
        &warehouse,
        "SELECT line_number, reason FROM quarantine ORDER BY line_number",
    )
    .await?;
    assert!(
        reasons[0][1].starts_with("not valid JSON"),
        "{:?}",
        reasons[0]
    );
    assert_eq!(reasons[1][1], "expected a JSON object, found an array");
    assert!(
        reasons[2][1].contains("`17` is not a valid timestamp"),
        "{:?}",
        reasons[2]
    );
    assert!(
        reasons[3][1].contains("required column `source` is missing"),
        "{:?}",
        reasons[3]
    );
    assert_eq!(reasons[4][1], "line is not valid UTF-8");
    Ok(())
}

#[tokio::test]
async fn unreadable_files_are_reported_not_fatal() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write_file(dir.path(), "empty.csv", b"")?,
            "is empty (0 bytes)",
        ),
        (
            write_file(dir.path(), "empty.ndjson", b"")?,
            "is empty (0 bytes)",
        ),
        (
            write_file(dir.path(), "empty.parquet", b"")?,
            "is empty (0 bytes)",
        ),
        (
            write_file(dir.path(), "garbage.parquet", b"this is not parquet at all")?,
            "not a readable Parquet file",
        ),
        (dir.path().join("missing.csv"), "cannot open"),
        (
            write_file(dir.path(), "data.xlsx", b"x")?,
            "cannot tell the format",
        ),
        (
            write_file(
                dir.path(),
                "no_key.csv",
                b"source,environment,status,started_at\nargocd,prod,success,2026-01-01\n",
            )?,
            "has no column `deployment_id`",
        ),
    ];
    let warehouse = Warehouse::in_memory()?;
    for (path, expected) in &cases {
        let report = load(&warehouse, &DEPLOYMENTS, std::slice::from_ref(path)).await?;
        let error = report.files[0].error.clone().unwrap_or_default();
        assert!(error.contains(expected), "{}: {error}", path.display());
        assert_eq!(report.rows_loaded(), 0);
    }
    // A header-only file is readable but has nothing to load.
    let header_only = write_file(dir.path(), "header.csv", DEPLOYMENT_HEADER.as_bytes())?;
    let report = load(&warehouse, &DEPLOYMENTS, &[header_only]).await?;
    assert_eq!(
        (report.files[0].error.clone(), report.rows_loaded()),
        (None, 0)
    );
    // One bad file does not stop the good one next to it.
    let good = write_file(
        dir.path(),
        "good.csv",
        format!("{DEPLOYMENT_HEADER}d1,argocd,a,production,success,2026-03-01T10:00:00Z,false\n")
            .as_bytes(),
    )?;
    let report = load(&warehouse, &DEPLOYMENTS, &[cases[0].0.clone(), good]).await?;
    assert_eq!((report.failed_files(), report.rows_loaded()), (1, 1));
    Ok(())
}

/// One generated import: rows of (key, status, day).
type Import = Vec<(u8, u8, u32)>;

fn csv_of(import: &Import) -> String {
    let statuses = ["success", "failure", "error"];
    let mut csv = String::from("deployment_id,source,environment,status,started_at\n");
    for (key, status, day) in import {
        csv.push_str(&format!(
            "d{key},import,production,{},{}\n",
            statuses[usize::from(*status) % 3],
            day_timestamp(*day)
        ));
    }
    csv
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Any sequence of imports of overlapping row sets leaves the table equal
    /// to one merge of their union with the last write winning per key.
    #[test]
    fn imports_are_idempotent_and_last_write_wins(
        imports in proptest::collection::vec(
            proptest::collection::vec((0u8..12, 0u8..3, 0u32..90), 0..10),
            1..4,
        ),
        repeat_last in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let outcome: Result<()> = runtime.block_on(async {
            let dir = tempfile::tempdir()?;
            let warehouse = Warehouse::in_memory()?;
            let mut sequence = imports.clone();
            if repeat_last {
                sequence.push(imports[imports.len() - 1].clone());
            }
            let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
            for (i, import) in sequence.iter().enumerate() {
                let path = write_file(dir.path(), &format!("import-{i}.csv"), csv_of(import).as_bytes())?;
                load(&warehouse, &DEPLOYMENTS, &[path]).await?;
                let statuses = ["success", "failure", "error"];
                for (key, status, day) in import {
                    expected.insert(
                        format!("d{key}"),
                        (statuses[usize::from(*status) % 3].to_owned(), day_timestamp(*day)),
                    );
                }
            }
            let got = rows(
                &warehouse,
                "SELECT deployment_id, status, CAST(started_at AS VARCHAR) FROM deployments ORDER BY deployment_id",
            )
            .await?;
            let got: BTreeMap<String, (String, String)> = got
                .into_iter()
                .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
                .collect();
            anyhow::ensure!(got == expected, "table {got:?} != expected {expected:?}");
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome.err());
    }
}
