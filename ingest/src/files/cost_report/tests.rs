//! The cost-report decoder on the FOCUS specification's sample data, on
//! rows built from the real CUR 2.0 and FOCUS column lists in
//! `../shared/fixtures`, and on hand-computed amortization cases.

use serde_json::{Map, Value, json};

use super::*;
use crate::test_support::fixtures_dir;

fn config() -> CostReportConfig {
    CostReportConfig {
        files: FileLocation::default(),
        export_name: None,
        entity_tag_keys: default_tag_keys(),
    }
}

fn decode(rows: &[Map<String, Value>]) -> Decoded {
    let mut out = Decoded::default();
    decode_rows(&config(), "test", None, rows, &mut out);
    out
}

fn sum(decoded: &Decoded, column: &str) -> f64 {
    decoded
        .rows
        .iter()
        .filter_map(|r| r.values.get(column).and_then(Value::as_f64))
        .sum()
}

#[test]
fn every_focus_sample_decodes_with_its_totals() -> Result<(), String> {
    let Some(dir) = fixtures_dir() else {
        return Ok(());
    };
    let samples = dir.join("focus/sample_data");
    let mut files = 0;
    for entry in std::fs::read_dir(&samples).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        let rows = csv_rows(&bytes)?;
        let decoded = decode(&rows);
        let name = path.display().to_string();
        assert!(decoded.rejects.is_empty(), "{name}: {:?}", decoded.rejects);
        assert_eq!(decoded.rows.len(), rows.len(), "{name}");
        // Totals equal the file's, computed independently of the decoder.
        let billed: f64 = rows
            .iter()
            .filter_map(|r| r.get("BilledCost").and_then(Value::as_str))
            .filter_map(|v| v.trim().replace(['$', ','], "").parse::<f64>().ok())
            .sum();
        assert!(
            (sum(&decoded, "billed_cost_usd") - billed).abs() < 1e-9,
            "{name}"
        );
        for row in &decoded.rows {
            let category = row.values["charge_category"].as_str().unwrap_or_default();
            assert!(
                ["usage", "purchase", "tax", "credit", "adjustment"].contains(&category),
                "{name}: {category}"
            );
        }
        files += 1;
    }
    assert!(files >= 20, "only {files} samples");
    Ok(())
}

#[test]
fn the_columns_read_exist_in_every_focus_version() -> Result<(), String> {
    let Some(dir) = fixtures_dir() else {
        return Ok(());
    };
    let text = std::fs::read_to_string(dir.join("focus/focus_columns_by_version.json"))
        .map_err(|e| e.to_string())?;
    let spec: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    for version in ["v1.0", "v1.1", "v1.2"] {
        let columns: Vec<&str> = spec[version]["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["column_id"].as_str())
            .collect();
        assert!(columns.len() > 40, "{version}");
        // Every current column the decoder reads is a real column.
        for read in FOCUS_COLUMNS
            .iter()
            .filter(|c| !["ChargeType", "Provider", "Region", "UsageQuantity"].contains(c))
        {
            assert!(
                columns.contains(read),
                "{read} is not a FOCUS {version} column"
            );
        }
    }
    Ok(())
}

/// A value of a declared type, for rows built from schemas.
fn typed(data_type: &str, name: &str) -> Value {
    match data_type.to_ascii_lowercase().as_str() {
        "decimal" | "double" => json!(1.25),
        "datetimeoffset" | "datetime" | "timestamp" => json!("2024-03-05T00:00:00Z"),
        "json" | "map<string,string>" => json!({"user_service": "checkout"}),
        "map<string,double>" => json!({}),
        _ if name.to_ascii_lowercase().contains("category") => json!("Usage"),
        _ => json!("x"),
    }
}

#[test]
fn rows_with_the_published_focus_schemas_decode() -> Result<(), String> {
    let Some(dir) = fixtures_dir() else {
        return Ok(());
    };
    let toolkit = dir.join("focus/microsoft_finops_toolkit");
    let mut schemas: Vec<Vec<(String, String)>> = Vec::new();
    for file in [
        "FocusCost_1.0.json",
        "focuscost_1.0.json",
        "focuscost_1.2.json",
    ] {
        let text = std::fs::read_to_string(toolkit.join(file)).map_err(|e| e.to_string())?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let columns: Vec<(String, String)> = match schema.get("Columns") {
            Some(columns) => columns
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["ColumnName"].as_str().unwrap_or_default().to_owned(),
                        c["DataType"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            None => schema["translator"]["mappings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    (
                        m["sink"]["name"].as_str().unwrap_or_default().to_owned(),
                        m["source"]["type"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        };
        assert!(columns.len() > 40, "{file}");
        schemas.push(columns);
    }
    // AWS's FOCUS export as its Glue table declares it (lower-case names).
    let text = std::fs::read_to_string(
        dir.join("aws_cur/cid__data-exports-aggregation__glue_columns_cur2_focus12.json"),
    )
    .map_err(|e| e.to_string())?;
    let glue: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let column_list = |key: &str| -> Vec<(String, String)> {
        glue[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_owned(),
                    c["type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    schemas.push(column_list("focus"));
    for columns in &schemas {
        let row: Map<String, Value> = columns
            .iter()
            .map(|(name, ty)| (name.clone(), typed(ty, name)))
            .collect();
        let decoded = decode(&[row]);
        assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
        let values = &decoded.rows[0].values;
        assert_eq!(values["billed_cost_usd"], json!(1.25));
        assert_eq!(values["billing_period"], json!("2024-03"));
        assert_eq!(values["charge_category"], json!("usage"));
        // The commitment columns are read under every schema's spelling
        // (Glue's are lower case).
        assert_eq!(values["commitment_discount_id"], json!("x"), "{columns:?}");
        assert_eq!(values["commitment_discount_category"], json!("Usage"));
    }

    // CUR 2.0 as its Glue table declares it.
    let cur = column_list("cur2");
    assert!(cur.len() > 80);
    let mut row: Map<String, Value> = cur
        .iter()
        .map(|(name, ty)| (name.clone(), typed(ty, name)))
        .collect();
    row.insert("line_item_line_item_type".into(), json!("Usage"));
    row.insert("resource_tags".into(), json!({"user_service": "checkout"}));
    let decoded = decode(&[row]);
    assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
    let values = &decoded.rows[0].values;
    assert_eq!(values["effective_cost_usd"], json!(1.25));
    assert_eq!(values["entity_ref"], json!("checkout"));
    assert_eq!(values["tags"], json!({"service": "checkout"}));
    Ok(())
}

fn cur_line(line_type: &str, extra: Value) -> Map<String, Value> {
    let mut row = json!({
        "identity_line_item_id": format!("id-{line_type}"),
        "identity_time_interval": "2026-05-01T00:00:00Z/2026-05-02T00:00:00Z",
        "bill_billing_period_start_date": "2026-05-01T00:00:00",
        "line_item_usage_start_date": "2026-05-01T00:00:00",
        "line_item_line_item_type": line_type,
        "line_item_unblended_cost": 10.0,
        "pricing_public_on_demand_cost": 10.0,
    });
    if let (Some(row), Some(extra)) = (row.as_object_mut(), extra.as_object()) {
        row.extend(extra.clone());
    }
    row.as_object().cloned().unwrap_or_default()
}

#[test]
fn cur_amortization_follows_the_line_type() {
    let cases = [
        (
            cur_line(
                "SavingsPlanCoveredUsage",
                json!({"savings_plan_savings_plan_effective_cost": 7.2}),
            ),
            10.0,
            7.2,
            "usage",
        ),
        (
            cur_line(
                "SavingsPlanNegation",
                json!({"line_item_unblended_cost": -10.0}),
            ),
            -10.0,
            0.0,
            "usage",
        ),
        (
            cur_line(
                "SavingsPlanRecurringFee",
                json!({"savings_plan_total_commitment_to_date": 10.0, "savings_plan_used_commitment": 7.2}),
            ),
            10.0,
            2.8,
            "purchase",
        ),
        (
            cur_line(
                "DiscountedUsage",
                json!({"line_item_unblended_cost": 0.0, "reservation_effective_cost": 6.2}),
            ),
            0.0,
            6.2,
            "usage",
        ),
        (
            cur_line(
                "RIFee",
                json!({"reservation_unused_recurring_fee": 1.5, "reservation_unused_amortized_upfront_fee_for_billing_period": 0.5}),
            ),
            10.0,
            2.0,
            "purchase",
        ),
        (
            cur_line(
                "Fee",
                json!({"reservation_reservation_a_r_n": "arn:aws:ec2:ri"}),
            ),
            10.0,
            0.0,
            "purchase",
        ),
        (cur_line("Tax", json!({})), 10.0, 10.0, "tax"),
        (
            cur_line("Credit", json!({"line_item_unblended_cost": -5.0})),
            -5.0,
            -5.0,
            "credit",
        ),
        (
            cur_line("Refund", json!({"line_item_unblended_cost": -3.0})),
            -3.0,
            -3.0,
            "refund",
        ),
    ];
    for (row, billed, effective, category) in cases {
        let decoded = decode(std::slice::from_ref(&row));
        assert!(decoded.rejects.is_empty(), "{row:?}: {:?}", decoded.rejects);
        let values = &decoded.rows[0].values;
        let got = |c: &str| values[c].as_f64().unwrap_or(f64::NAN);
        assert!((got("billed_cost_usd") - billed).abs() < 1e-9, "{row:?}");
        assert!(
            (got("effective_cost_usd") - effective).abs() < 1e-9,
            "{row:?}"
        );
        assert_eq!(values["charge_category"], json!(category));
        assert_eq!(values["billing_period"], json!("2026-05"));
    }
}

#[test]
fn amounts_as_spreadsheets_write_them() {
    for (text, want) in [
        ("$1,000.00 ", Some(1000.0)),
        ("-$12.50", Some(-12.5)),
        ("1,234,567", Some(1_234_567.0)),
        ("0.25", Some(0.25)),
        ("1,5", None),
        ("12,34.0", None),
        ("ten", None),
    ] {
        assert_eq!(super::super::spreadsheet_number(text), want, "{text}");
    }
}

#[test]
fn bad_lines_are_rejected_with_their_reason() {
    let mut no_cost = cur_line("Usage", json!({}));
    no_cost.remove("line_item_unblended_cost");
    let bad_cost = cur_line("Usage", json!({"line_item_unblended_cost": "ten"}));
    let mut out = Decoded::default();
    decode_rows(
        &config(),
        "test",
        Some("2026-06"),
        &[no_cost, bad_cost, cur_line("Usage", json!({}))],
        &mut out,
    );
    let reasons: Vec<&str> = out.rejects.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "required field `line_item_unblended_cost` is missing",
            "`line_item_unblended_cost` is not a number: `ten`",
            "line of billing period 2026-05 delivered in the folder of 2026-06",
        ]
    );
    assert!(out.rows.is_empty());
}

#[test]
fn periods_group_files_and_manifests_choose_them() {
    let listed = |path: &str, version: &str| Listed {
        path: object_store::path::Path::from(path),
        size: 1,
        version: version.to_owned(),
    };
    let files = vec![
        listed(
            "r/cur/x/data/BILLING_PERIOD=2026-05/x-00001.snappy.parquet",
            "a",
        ),
        listed(
            "r/cur/x/data/BILLING_PERIOD=2026-06/x-00001.snappy.parquet",
            "b",
        ),
        listed(
            "r/cur/x/data/BILLING_PERIOD=2026-06/x-00002.snappy.parquet",
            "c",
        ),
        listed(
            "r/cur/x/metadata/BILLING_PERIOD=2026-06/x-Manifest.json",
            "m",
        ),
        listed(
            "r/cur/y/data/BILLING_PERIOD=2026-06/y-00001.snappy.parquet",
            "d",
        ),
    ];
    let mut manifests = BTreeMap::new();
    manifests.insert(
        "r/cur/x/metadata/BILLING_PERIOD=2026-06".to_owned(),
        vec!["r/cur/x/data/BILLING_PERIOD=2026-06/x-00002.snappy.parquet".to_owned()],
    );
    let groups = group(&files, Some("x"), &manifests);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].period.as_deref(), Some("2026-05"));
    // The manifest names one of the two files in the folder: a stale file
    // from a larger earlier delivery is not read.
    assert_eq!(groups[1].files.len(), 1);
    assert!(groups[1].pending.is_none());
    manifests.insert(
        "r/cur/x/metadata/BILLING_PERIOD=2026-06".to_owned(),
        vec!["r/cur/x/data/BILLING_PERIOD=2026-06/x-00003.snappy.parquet".to_owned()],
    );
    let groups = group(&files, Some("x"), &manifests);
    assert!(groups[1].pending.is_some());
    // AWS writes manifest paths as full URIs.
    assert_eq!(
        manifest_files(br#"{"dataFiles": ["s3://bucket/r/cur/x/data/BILLING_PERIOD=2026-06/x-00001.snappy.parquet"]}"#),
        Some(vec!["r/cur/x/data/BILLING_PERIOD=2026-06/x-00001.snappy.parquet".to_owned()])
    );
}

#[test]
fn gzip_csv_deliveries_read_like_plain_ones() -> Result<(), String> {
    use std::io::Write;
    let csv = "ChargePeriodStart,BilledCost,ChargeCategory,ProviderName\n\
               2026-06-01T00:00:00Z,1.5,Usage,Microsoft\n\
               2026-06-02T00:00:00Z,2.5,Tax,Microsoft\n";
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(csv.as_bytes())
        .map_err(|e| e.to_string())?;
    let gz = encoder.finish().map_err(|e| e.to_string())?;
    assert!(is_data_file("data/BILLING_PERIOD=2026-06/part-0.csv.gz"));
    let plain = file_rows("part-0.csv", bytes::Bytes::from(csv))?;
    let inflated = file_rows("part-0.CSV.GZ", bytes::Bytes::from(gz))?;
    assert_eq!(inflated, plain);
    assert_eq!(decode(&inflated).rows.len(), 2);
    let broken = file_rows("part-1.csv.gz", bytes::Bytes::from_static(b"not gzip"));
    assert!(
        broken
            .err()
            .is_some_and(|e| e.starts_with("not a readable gzip file")),
        "a broken file is refused with its reason"
    );
    Ok(())
}

/// CUR's Savings Plan and reservation columns as FOCUS's commitment
/// columns: covered usage is committed and used, the recurring fees
/// unused (their effective cost is the unused part), the negation and
/// upfront fees carry the commitment without a status, on-demand and spot
/// usage are standard and dynamic.
#[test]
fn cur_lines_carry_focus_commitment_columns() {
    let plan = json!({"savings_plan_savings_plan_a_r_n": "arn:aws:savingsplans::1:savingsplan/sp"});
    let reservation =
        json!({"reservation_reservation_a_r_n": "arn:aws:ec2:r:1:reserved-instances/ri"});
    let cases = [
        (
            "SavingsPlanCoveredUsage",
            plan.clone(),
            [
                "committed",
                "arn:aws:savingsplans::1:savingsplan/sp",
                "Savings Plan",
                "spend",
                "used",
            ],
        ),
        (
            "SavingsPlanNegation",
            plan.clone(),
            [
                "committed",
                "arn:aws:savingsplans::1:savingsplan/sp",
                "Savings Plan",
                "spend",
                "",
            ],
        ),
        (
            "SavingsPlanRecurringFee",
            plan,
            [
                "standard",
                "arn:aws:savingsplans::1:savingsplan/sp",
                "Savings Plan",
                "spend",
                "unused",
            ],
        ),
        (
            "DiscountedUsage",
            reservation.clone(),
            [
                "committed",
                "arn:aws:ec2:r:1:reserved-instances/ri",
                "Reserved Instance",
                "usage",
                "used",
            ],
        ),
        (
            "RIFee",
            reservation.clone(),
            [
                "standard",
                "arn:aws:ec2:r:1:reserved-instances/ri",
                "Reserved Instance",
                "usage",
                "unused",
            ],
        ),
        (
            "Fee",
            reservation,
            [
                "standard",
                "arn:aws:ec2:r:1:reserved-instances/ri",
                "Reserved Instance",
                "usage",
                "",
            ],
        ),
        (
            "Usage",
            json!({"pricing_term": "OnDemand"}),
            ["standard", "", "", "", ""],
        ),
        (
            "Usage",
            json!({"pricing_term": "Spot"}),
            ["dynamic", "", "", "", ""],
        ),
        ("Tax", json!({}), ["", "", "", "", ""]),
    ];
    for (line_type, extra, expected) in cases {
        let decoded = decode(&[cur_line(line_type, extra)]);
        assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
        let values = &decoded.rows[0].values;
        let got: Vec<&str> = [
            "pricing_category",
            "commitment_discount_id",
            "commitment_discount_type",
            "commitment_discount_category",
            "commitment_discount_status",
        ]
        .iter()
        .map(|c| values[*c].as_str().unwrap_or_default())
        .collect();
        assert_eq!(got, expected, "{line_type}");
    }
}
