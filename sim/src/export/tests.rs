use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use object_store::memory::InMemory;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::WorldConfig;
use crate::world::aws::cloud_cost_truth;

fn small_world() -> World {
    World::generate(WorldConfig {
        teams: 4,
        services: 16,
        days: 75,
        ..WorldConfig::default()
    })
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

async fn read_batches(store: &InMemory, files: &[String]) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for file in files {
        let bytes = store
            .get(&Path::from(file.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            batches.push(batch.unwrap());
        }
    }
    batches
}

fn column_sum(batches: &[RecordBatch], name: &str) -> f64 {
    batches
        .iter()
        .map(|b| {
            let col = b
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>();
            col.iter().flatten().sum::<f64>()
        })
        .sum()
}

#[tokio::test]
async fn cur_files_carry_the_real_column_names_and_types() {
    let Some(dir) = crate::serve::tests::fixtures_dir() else {
        return;
    };
    let glue: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("aws_cur/cid__data-exports-aggregation__glue_columns_cur2_focus12.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let defaults: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("aws_cur/cid__data-exports__default_select_columns.json")).unwrap(),
    )
    .unwrap();
    let world = small_world();
    let store = InMemory::new();
    let deliveries = deliver_cur(&world, &store, &CurExport::default(), world.config.end())
        .await
        .unwrap();
    let batches = read_batches(&store, &deliveries[0].files).await;
    let schema = batches[0].schema();
    let mut errors = Vec::new();
    for column in glue["cur2"].as_array().unwrap() {
        let name = column["name"].as_str().unwrap();
        let expected = column["type"].as_str().unwrap();
        let Ok(field) = schema.field_with_name(name) else {
            errors.push(format!("{name}: missing"));
            continue;
        };
        let actual = match field.data_type() {
            DataType::Utf8 => "string".to_owned(),
            DataType::Float64 => "double".to_owned(),
            DataType::Timestamp(_, None) => "timestamp".to_owned(),
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(fields) => format!(
                    "map<string,{}>",
                    match fields[1].data_type() {
                        DataType::Utf8 => "string",
                        DataType::Float64 => "double",
                        other => panic!("{other}"),
                    }
                ),
                other => panic!("{other}"),
            },
            other => format!("{other}"),
        };
        if actual != expected {
            errors.push(format!("{name}: {actual} instead of {expected}"));
        }
    }
    for name in defaults["CUR2_DefaultQuery_columns"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        if schema.field_with_name(name).is_err() {
            errors.push(format!("{name}: missing (default query column)"));
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn delivered_lines_add_up_to_the_truth() {
    let world = small_world();
    let store = InMemory::new();
    let deliveries = deliver_cur(&world, &store, &CurExport::default(), world.config.end())
        .await
        .unwrap();
    let (truth, unmapped) = cloud_cost_truth(&world);
    assert_eq!(
        deliveries
            .iter()
            .map(|d| d.billing_period.as_str())
            .collect::<Vec<_>>(),
        ["2026-04", "2026-05", "2026-06"]
    );
    let mut categories = BTreeMap::new();
    for delivery in &deliveries {
        let batches = read_batches(&store, &delivery.files).await;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let period: Vec<_> = truth
            .iter()
            .filter(|t| t.billing_period == delivery.billing_period)
            .collect();
        assert_eq!(rows, delivery.rows);
        assert_eq!(rows, period.iter().map(|t| t.lines).sum::<usize>());
        let billed = column_sum(&batches, "line_item_unblended_cost");
        let expected: f64 = period.iter().map(|t| t.billed_cost_usd).sum();
        assert!((billed - expected).abs() < 0.005, "{billed} vs {expected}");
        for t in &period {
            *categories.entry(t.charge_category.clone()).or_insert(0.0) += t.billed_cost_usd;
        }
    }
    // Every kind of charge is present, with the sign it should have.
    assert!(categories["usage"] > 0.0);
    assert!(categories["purchase"] > 0.0);
    assert!(categories["tax"] > 0.0);
    assert!(categories["credit"] < 0.0);
    // Usage covered by commitments is billed through their fees: its
    // effective cost is below its list cost, and the covered lines net to
    // zero billed.
    let covered: Vec<_> = truth
        .iter()
        .filter(|t| t.charge_category == "usage")
        .collect();
    let list: f64 = covered.iter().map(|t| t.list_cost_usd).sum();
    let effective: f64 = covered.iter().map(|t| t.effective_cost_usd).sum();
    assert!(effective < list, "{effective} < {list}");
    // Untagged resources are unattributed by tag, and the truth names
    // their owner.
    assert!(!unmapped.is_empty());
    assert!(
        truth
            .iter()
            .any(|t| t.entity_ref.is_none() && t.true_entity_ref.is_some())
    );
}

#[tokio::test]
async fn an_open_month_is_rewritten_and_a_final_one_left_alone() {
    let world = small_world();
    let store = InMemory::new();
    let small_files = CurExport {
        max_rows_per_file: 200,
        ..CurExport::default()
    };
    let mid_june = deliver_cur(&world, &store, &small_files, at("2026-06-15T06:00:00Z"))
        .await
        .unwrap();
    let june = |d: &[PeriodDelivery]| {
        d.iter()
            .find(|p| p.billing_period == "2026-06")
            .cloned()
            .unwrap()
    };
    let may = |d: &[PeriodDelivery]| {
        d.iter()
            .find(|p| p.billing_period == "2026-05")
            .cloned()
            .unwrap()
    };
    assert!(!june(&mid_june).finalized);
    assert!(may(&mid_june).finalized && may(&mid_june).written);
    let may_file = Path::from(may(&mid_june).files[0].as_str());
    let may_etag = store.head(&may_file).await.unwrap().e_tag;

    // The month grows: more rows, in fewer (larger) files this time; the
    // folder must hold exactly the new delivery.
    let larger_files = CurExport {
        max_rows_per_file: 100_000,
        ..CurExport::default()
    };
    let july = deliver_cur(&world, &store, &larger_files, at("2026-07-05T00:00:00Z"))
        .await
        .unwrap();
    assert!(june(&july).finalized && june(&july).written);
    assert!(june(&july).rows > june(&mid_june).rows);
    assert!(june(&mid_june).files.len() > 1);
    assert_eq!(june(&july).files.len(), 1);
    let listed: Vec<String> = store
        .list(Some(&Path::from(
            "cur/fathom-cur/data/BILLING_PERIOD=2026-06",
        )))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed, june(&july).files);
    // May was final before: not rewritten.
    assert!(!may(&july).written);
    assert_eq!(store.head(&may_file).await.unwrap().e_tag, may_etag);

    // Tax follows the month's charges, so a rewrite changes existing rows'
    // values, not only adds rows.
    let batches = read_batches(&store, &june(&july).files).await;
    let tax: f64 = batches
        .iter()
        .map(|b| {
            let kinds = b
                .column_by_name("line_item_line_item_type")
                .unwrap()
                .as_string::<i32>();
            let cost = b
                .column_by_name("line_item_unblended_cost")
                .unwrap()
                .as_primitive::<Float64Type>();
            (0..b.num_rows())
                .filter(|&i| kinds.value(i) == "Tax")
                .map(|i| cost.value(i))
                .sum::<f64>()
        })
        .sum();
    let (truth, _) = cloud_cost_truth(&world);
    let expected: f64 = truth
        .iter()
        .filter(|t| t.billing_period == "2026-06" && t.charge_category == "tax")
        .map(|t| t.billed_cost_usd)
        .sum();
    assert!((tax - expected).abs() < 0.005, "{tax} vs {expected}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &store
            .get(&Path::from(
                "cur/fathom-cur/metadata/BILLING_PERIOD=2026-06/fathom-cur-Manifest.json",
            ))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["dataFiles"], serde_json::json!(june(&july).files));
    assert_eq!(manifest["finalized"], true);
}

#[tokio::test]
async fn events_are_delivered_once_per_day() {
    let world = small_world();
    let store = InMemory::new();
    let prefix = Path::from("portal-events");
    let first = deliver_portal_events(&world, &store, &prefix, world.config.end())
        .await
        .unwrap();
    assert_eq!(first.files_written, 75);
    let adoption = team_adoption(&world.config, &world.org);
    let expected: usize = crate::world::cost::days(&world.config)
        .map(|d| events_on(&world.config, &world.org, &adoption, d).len())
        .sum();
    assert_eq!(first.events_written, expected);
    let again = deliver_portal_events(&world, &store, &prefix, world.config.end())
        .await
        .unwrap();
    assert_eq!((again.files_written, again.files_present), (0, 75));
    let day = world.config.start().date_naive();
    let body = store
        .get(&events_path(&prefix, day))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let first_event: serde_json::Value =
        serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    for key in [
        "timestamp",
        "action",
        "subject",
        "context",
        "user",
        "attributes",
    ] {
        assert!(first_event.get(key).is_some(), "{key} in {first_event}");
    }
    assert!(first_event["context"]["pluginId"].is_string());
}
