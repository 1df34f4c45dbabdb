//! Cloud cost reports: AWS Cost and Usage Report 2.0 (Data Exports) and
//! FOCUS 1.0–1.2 exports (any provider), detected by their columns, into
//! `cloud_costs_daily` with FOCUS semantics.
//!
//! Providers rewrite the open billing month several times a day, as a new
//! set of files. A billing period is therefore the unit: when anything in
//! its folder (or its manifest) changed, every file of the period is read
//! and the period's rows are **replaced** in one commit, so a rewritten
//! month never double counts and readers never see half a month. When a
//! manifest lists the period's data files (CUR 2.0 writes it last), exactly
//! those are read; a manifest naming a file not yet present means the
//! delivery is still under way, and the period waits for the next run.
//!
//! Effective (amortized) cost of CUR lines follows AWS's definition: usage
//! covered by a Savings Plan or reservation at the commitment's effective
//! cost, the negation of covered usage at zero, commitment fees at their
//! unused part (the used part is already in the covered usage), upfront
//! fees at zero (amortized into the usage), everything else as billed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use fathom_models::tables::CLOUD_COSTS_DAILY;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{FileLocation, Listed, csv_rows, instant, number, parquet_rows, text};
use crate::source::{Decoded, Reject};

/// The stream name in runs and cursors.
pub const STREAM: &str = "cost_report";

/// `[[sources]] type = "cost_report"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReportConfig {
    /// Name, location and object-store settings.
    #[serde(flatten)]
    pub files: FileLocation,
    /// Only this export (the folder under `location`, e.g. the CUR 2.0
    /// export name). Default: every export found.
    #[serde(default)]
    pub export_name: Option<String>,
    /// Resource tag keys naming the component, tried in order; the
    /// provider's prefixes (`user_`, `aws:`…) are compared without them.
    /// Default `["service", "component", "app"]`.
    #[serde(default = "default_tag_keys")]
    pub entity_tag_keys: Vec<String>,
}

fn default_tag_keys() -> Vec<String> {
    ["service", "component", "app"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// What a set of files is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// AWS CUR 2.0 (snake-case `line_item_*` columns).
    Cur2,
    /// FOCUS 1.x (`BilledCost`, `ChargeCategory`, …).
    Focus,
}

/// The FOCUS columns the decoder reads. Exports write them in PascalCase;
/// catalogs such as Glue lower-case them, so they are matched without case.
pub const FOCUS_COLUMNS: &[&str] = &[
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "EffectiveCost",
    "ListCost",
    "PricingUnit",
    "ProviderName",
    "RegionId",
    "ResourceId",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SubAccountId",
    "Tags",
    // FOCUS 0.5 names, still found in older exports.
    "ChargeType",
    "Provider",
    "Region",
    "UsageQuantity",
];

/// Which format rows with these columns are.
pub fn detect(columns: &BTreeSet<&str>) -> Option<ReportFormat> {
    let lower: BTreeSet<String> = columns.iter().map(|c| c.to_ascii_lowercase()).collect();
    let has = |c: &str| lower.contains(c);
    if has("line_item_line_item_type") && has("line_item_unblended_cost") {
        Some(ReportFormat::Cur2)
    } else if has("billedcost")
        && has("chargeperiodstart")
        && (has("chargecategory") || has("chargetype"))
    {
        Some(ReportFormat::Focus)
    } else {
        None
    }
}

/// A FOCUS row with its known columns under their canonical names.
fn canonical_focus(row: &Map<String, Value>) -> Map<String, Value> {
    row.iter()
        .map(|(k, v)| {
            let name = FOCUS_COLUMNS
                .iter()
                .find(|c| c.eq_ignore_ascii_case(k))
                .map_or_else(|| k.clone(), |c| (*c).to_owned());
            (name, v.clone())
        })
        .collect()
}

/// The files of one billing period (or one loose file), as delivered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    /// Cursor key: the period folder, or the file.
    pub key: String,
    /// `YYYY-MM` from a `BILLING_PERIOD=` folder.
    pub period: Option<String>,
    /// Data files to read.
    pub files: Vec<Listed>,
    /// Fingerprint of the delivery: changes when any file does.
    pub fingerprint: String,
    /// Set when the delivery is incomplete (manifest names a missing file).
    pub pending: Option<String>,
}

fn is_data_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".parquet") || lower.ends_with(".csv") || lower.ends_with(".csv.gz")
}

/// The most a compressed CSV file may inflate to: a real month of one
/// account is far below it; a file past it is refused with its reason
/// rather than exhausting memory.
const MAX_INFLATED_BYTES: u64 = 2 << 30;

/// The bytes of a gzip file, inflated (bounded by [`MAX_INFLATED_BYTES`]).
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a readable gzip file: {e}"))?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(format!(
            "inflates to more than {} GiB; split the export into smaller files",
            MAX_INFLATED_BYTES >> 30
        ));
    }
    Ok(out)
}

/// `(folder up to the BILLING_PERIOD segment, period)`.
fn period_folder(path: &str) -> Option<(String, String)> {
    let mut folder = Vec::new();
    for segment in path.split('/') {
        folder.push(segment);
        let lower = segment.to_ascii_lowercase();
        if let Some(period) = lower.strip_prefix("billing_period=") {
            let period = period.get(..7)?.to_owned();
            return Some((folder.join("/"), period));
        }
    }
    None
}

/// Groups listed files into billing-period deliveries.
pub(crate) fn group(
    listed: &[Listed],
    export_name: Option<&str>,
    manifests: &BTreeMap<String, Vec<String>>,
) -> Vec<Group> {
    let by_path: BTreeMap<String, &Listed> =
        listed.iter().map(|f| (f.path.to_string(), f)).collect();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for file in listed {
        let path = file.path.to_string();
        if !is_data_file(&path)
            || export_name.is_some_and(|name| !path.split('/').any(|s| s == name))
        {
            continue;
        }
        let (key, period) = match period_folder(&path) {
            Some((folder, period)) => (folder, Some(period)),
            None => (path.clone(), None),
        };
        let group = groups.entry(key.clone()).or_insert_with(|| Group {
            key,
            period,
            files: Vec::new(),
            fingerprint: String::new(),
            pending: None,
        });
        group.files.push(file.clone());
    }
    for group in groups.values_mut() {
        // A manifest for this folder decides which files make the delivery.
        let manifest_key = group.key.replacen("/data/", "/metadata/", 1);
        let mut parts = Vec::new();
        if let Some(listed_files) = manifests.get(&manifest_key) {
            let mut files = Vec::new();
            for wanted in listed_files {
                match by_path.get(wanted) {
                    Some(file) => files.push((*file).clone()),
                    None => {
                        group.pending = Some(format!(
                            "the manifest of {} names `{wanted}`, which is not there yet; the period is read once the delivery is complete",
                            group.key
                        ));
                    }
                }
            }
            group.files = files;
            parts.push(format!("manifest:{}", listed_files.join(",")));
        }
        parts.extend(
            group
                .files
                .iter()
                .map(|f| format!("{}={}", f.path, f.version)),
        );
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        group.fingerprint = hex::encode(&hasher.finalize()[..16]);
    }
    groups.into_values().collect()
}

/// The data files a CUR 2.0 manifest lists, as paths inside the store
/// (`s3://bucket/` removed; AWS writes full URIs).
pub(crate) fn manifest_files(body: &[u8]) -> Option<Vec<String>> {
    let manifest: Value = serde_json::from_slice(body).ok()?;
    let files = manifest.get("dataFiles")?.as_array()?;
    Some(
        files
            .iter()
            .filter_map(Value::as_str)
            .map(|f| match f.strip_prefix("s3://") {
                Some(rest) => rest.split_once('/').map_or("", |(_, p)| p).to_owned(),
                None => f.trim_start_matches('/').to_owned(),
            })
            .collect(),
    )
}

/// The rows of one data file, by extension.
pub(crate) fn file_rows(
    path: &str,
    bytes: bytes::Bytes,
) -> Result<Vec<Map<String, Value>>, String> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".csv.gz") {
        csv_rows(&gunzip(&bytes)?)
    } else if lower.ends_with(".csv") {
        csv_rows(&bytes)
    } else {
        parquet_rows(bytes)
    }
}

/// Decodes the rows of one file of a delivery.
pub fn decode_rows(
    config: &CostReportConfig,
    location: &str,
    period: Option<&str>,
    rows: &[Map<String, Value>],
    out: &mut Decoded,
) {
    let columns: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.keys().map(String::as_str))
        .collect();
    let Some(format) = detect(&columns) else {
        if !rows.is_empty() {
            out.rejects.push(Reject {
                location: location.to_owned(),
                position: None,
                reason: "neither a CUR 2.0 nor a FOCUS file: no `line_item_line_item_type`/`line_item_unblended_cost` nor `BilledCost`/`ChargePeriodStart`/`ChargeCategory` columns".to_owned(),
                raw: json!({"columns": columns}).to_string(),
            });
        }
        return;
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (n, row) in rows.iter().enumerate() {
        let decoded = match format {
            ReportFormat::Cur2 => cur_row(config, row),
            ReportFormat::Focus => focus_row(config, &canonical_focus(row), &mut seen),
        };
        let checked = decoded.and_then(|values| match (period, values.get("billing_period")) {
            (Some(period), Some(Value::String(own))) if own != period => Err(format!(
                "line of billing period {own} delivered in the folder of {period}"
            )),
            _ => Ok(values),
        });
        match checked {
            Ok(values) => out.row(&CLOUD_COSTS_DAILY, values, Vec::new()),
            Err(reason) => out.rejects.push(Reject {
                location: location.to_owned(),
                position: Some(n as i64 + 1),
                reason,
                raw: Value::Object(row.clone()).to_string(),
            }),
        }
    }
}

fn month(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

fn required_instant(row: &Map<String, Value>, key: &str) -> Result<DateTime<Utc>, String> {
    let raw = text(row, key).ok_or_else(|| format!("required field `{key}` is missing"))?;
    instant(raw).ok_or_else(|| format!("`{key}` is not a timestamp: `{raw}`"))
}

/// Tags as text, provider prefixes kept (the table strips `user_`).
fn tag_map(value: Option<&Value>) -> Map<String, Value> {
    let object = match value {
        Some(Value::Object(map)) => map.clone(),
        // CSV exports carry tags as JSON text.
        Some(Value::String(s)) => serde_json::from_str::<Map<String, Value>>(s).unwrap_or_default(),
        _ => Map::new(),
    };
    object
        .into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                Value::Null => return None,
                other => other.to_string(),
            };
            let k = k
                .strip_prefix("user_")
                .or_else(|| k.strip_prefix("user:"))
                .unwrap_or(&k)
                .to_owned();
            Some((k, Value::String(v)))
        })
        .collect()
}

fn entity_from_tags(config: &CostReportConfig, tags: &Map<String, Value>) -> Value {
    config
        .entity_tag_keys
        .iter()
        .find_map(|key| {
            tags.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.as_str())
                .filter(|v| !v.trim().is_empty())
        })
        .map_or(Value::Null, |v| Value::from(v.trim()))
}

/// FOCUS `ChargeCategory` of a CUR line type.
pub fn cur_charge_category(line_type: &str) -> &'static str {
    match line_type {
        "Usage" | "DiscountedUsage" | "SavingsPlanCoveredUsage" | "SavingsPlanNegation" => "usage",
        "Fee" | "RIFee" | "SavingsPlanRecurringFee" | "SavingsPlanUpfrontFee" => "purchase",
        "Tax" => "tax",
        "Credit"
        | "BundledDiscount"
        | "Discount"
        | "EdpDiscount"
        | "PrivateRateDiscount"
        | "DistributorDiscount" => "credit",
        "Refund" => "refund",
        _ => "adjustment",
    }
}

/// A CUR line's FOCUS commitment columns.
#[derive(Debug, Default, PartialEq)]
struct Commitment<'r> {
    pricing_category: Option<&'static str>,
    id: Option<&'r str>,
    kind: Option<&'static str>,
    category: Option<&'static str>,
    status: Option<&'static str>,
}

/// The commitment columns FOCUS has and CUR spreads over its Savings Plan
/// and reservation columns (the mapping AWS's own FOCUS export applies):
/// covered usage is `committed` and `used`; the recurring fees are
/// `unused`, because the effective cost Fathom keeps on them is the unused
/// part of the commitment (the used part is in the covered usage); the
/// negation of covered usage and upfront fees carry the commitment but no
/// status (their effective cost is 0).
fn cur_commitment<'r>(row: &'r Map<String, Value>, line_type: &str) -> Commitment<'r> {
    const SAVINGS_PLAN: &str = "Savings Plan";
    const RESERVATION: &str = "Reserved Instance";
    let plan = text(row, "savings_plan_savings_plan_a_r_n");
    let reservation = text(row, "reservation_reservation_a_r_n");
    let of_plan = |status| Commitment {
        pricing_category: Some(
            if line_type == "SavingsPlanCoveredUsage" || line_type == "SavingsPlanNegation" {
                "committed"
            } else {
                "standard"
            },
        ),
        id: plan,
        kind: Some(SAVINGS_PLAN),
        category: Some("spend"),
        status,
    };
    let of_reservation = |status, pricing| Commitment {
        pricing_category: Some(pricing),
        id: reservation,
        kind: Some(RESERVATION),
        category: Some("usage"),
        status,
    };
    match line_type {
        "SavingsPlanCoveredUsage" => of_plan(Some("used")),
        "SavingsPlanNegation" | "SavingsPlanUpfrontFee" => of_plan(None),
        "SavingsPlanRecurringFee" => of_plan(Some("unused")),
        "DiscountedUsage" => of_reservation(Some("used"), "committed"),
        "RIFee" => of_reservation(Some("unused"), "standard"),
        "Fee" if reservation.is_some() => of_reservation(None, "standard"),
        "Usage" => Commitment {
            pricing_category: match text(row, "pricing_term") {
                Some("Spot") => Some("dynamic"),
                _ => Some("standard"),
            },
            ..Commitment::default()
        },
        _ => Commitment::default(),
    }
}

fn service_category(product_code: Option<&str>) -> Option<&'static str> {
    Some(match product_code? {
        "AmazonEC2" | "AWSLambda" | "AmazonECS" | "AmazonEKS" => "Compute",
        "AmazonRDS" | "AmazonDynamoDB" | "AmazonElastiCache" | "AmazonRedshift" => "Databases",
        "AmazonS3" | "AmazonEFS" | "AmazonGlacier" => "Storage",
        "AmazonVPC" | "AmazonCloudFront" | "AWSDataTransfer" | "AmazonRoute53" => "Networking",
        "AmazonCloudWatch" => "Management and Governance",
        _ => "Other",
    })
}

fn cur_row(
    config: &CostReportConfig,
    row: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let id = text(row, "identity_line_item_id")
        .ok_or("required field `identity_line_item_id` is missing")?;
    let interval = text(row, "identity_time_interval").unwrap_or_default();
    let line_type = text(row, "line_item_line_item_type")
        .ok_or("required field `line_item_line_item_type` is missing")?;
    let start = required_instant(row, "line_item_usage_start_date")?;
    let end = text(row, "line_item_usage_end_date").and_then(instant);
    let period = match text(row, "bill_billing_period_start_date") {
        Some(raw) => month(instant(raw).ok_or_else(|| {
            format!("`bill_billing_period_start_date` is not a timestamp: `{raw}`")
        })?),
        None => month(start),
    };
    let billed = number(row, "line_item_unblended_cost")?
        .ok_or("required field `line_item_unblended_cost` is missing")?;
    let amount = |key: &str| number(row, key).map(|v| v.unwrap_or(0.0));
    let effective = match line_type {
        "SavingsPlanCoveredUsage" => amount("savings_plan_savings_plan_effective_cost")?,
        "DiscountedUsage" => amount("reservation_effective_cost")?,
        "SavingsPlanNegation" | "SavingsPlanUpfrontFee" => 0.0,
        "SavingsPlanRecurringFee" => {
            amount("savings_plan_total_commitment_to_date")?
                - amount("savings_plan_used_commitment")?
        }
        "RIFee" => {
            amount("reservation_unused_amortized_upfront_fee_for_billing_period")?
                + amount("reservation_unused_recurring_fee")?
        }
        // An upfront reservation fee is amortized into the covered usage.
        "Fee" if text(row, "reservation_reservation_a_r_n").is_some() => 0.0,
        _ => billed,
    };
    let product_code = text(row, "line_item_product_code");
    let product = row.get("product").and_then(Value::as_object);
    let service_name = product
        .and_then(|p| p.get("product_name"))
        .and_then(Value::as_str)
        .or_else(|| text(row, "product_servicecode"))
        .or(product_code);
    let tags = tag_map(row.get("resource_tags"));
    let mut values = Map::new();
    values.insert("billing_period".into(), Value::from(period));
    values.insert(
        "line_item_id".into(),
        Value::from(if interval.is_empty() {
            id.to_owned()
        } else {
            format!("{id}|{interval}")
        }),
    );
    values.insert(
        "date".into(),
        Value::from(start.format("%Y-%m-%d").to_string()),
    );
    values.insert("provider".into(), Value::from("aws"));
    values.insert(
        "billing_account_id".into(),
        json!(text(row, "bill_payer_account_id")),
    );
    values.insert(
        "sub_account_id".into(),
        json!(text(row, "line_item_usage_account_id")),
    );
    values.insert("charge_period_start_at".into(), json!(start.to_rfc3339()));
    values.insert(
        "charge_period_end_at".into(),
        json!(end.map(|e| e.to_rfc3339())),
    );
    values.insert(
        "charge_category".into(),
        Value::from(cur_charge_category(line_type)),
    );
    values.insert(
        "charge_description".into(),
        json!(text(row, "line_item_line_item_description")),
    );
    values.insert("service_name".into(), json!(service_name));
    values.insert(
        "service_category".into(),
        json!(service_category(product_code)),
    );
    values.insert("region".into(), json!(text(row, "product_region_code")));
    values.insert(
        "resource_id".into(),
        json!(text(row, "line_item_resource_id")),
    );
    values.insert("sku_id".into(), json!(text(row, "line_item_usage_type")));
    values.insert(
        "usage_quantity".into(),
        json!(number(row, "line_item_usage_amount")?),
    );
    values.insert("pricing_unit".into(), json!(text(row, "pricing_unit")));
    values.insert("billed_cost_usd".into(), json!(billed));
    values.insert("effective_cost_usd".into(), json!(effective));
    values.insert(
        "list_cost_usd".into(),
        json!(number(row, "pricing_public_on_demand_cost")?),
    );
    let commitment = cur_commitment(row, line_type);
    values.insert(
        "pricing_category".into(),
        json!(commitment.pricing_category),
    );
    values.insert("commitment_discount_id".into(), json!(commitment.id));
    values.insert("commitment_discount_type".into(), json!(commitment.kind));
    values.insert(
        "commitment_discount_category".into(),
        json!(commitment.category),
    );
    values.insert(
        "commitment_discount_status".into(),
        json!(commitment.status),
    );
    values.insert(
        "billing_currency".into(),
        json!(text(row, "line_item_currency_code")),
    );
    values.insert("entity_ref".into(), entity_from_tags(config, &tags));
    values.insert("tags".into(), Value::Object(tags));
    Ok(values)
}

/// FOCUS rows have no line id: the content hash, numbered when the same
/// line appears twice (both are real charges).
fn focus_row(
    config: &CostReportConfig,
    row: &Map<String, Value>,
    seen: &mut BTreeMap<String, usize>,
) -> Result<Map<String, Value>, String> {
    let start = required_instant(row, "ChargePeriodStart")?;
    let end = text(row, "ChargePeriodEnd").and_then(instant);
    let period = match text(row, "BillingPeriodStart") {
        Some(raw) => month(
            instant(raw)
                .ok_or_else(|| format!("`BillingPeriodStart` is not a timestamp: `{raw}`"))?,
        ),
        None => month(start),
    };
    let billed = number(row, "BilledCost")?.ok_or("required field `BilledCost` is missing")?;
    let effective = number(row, "EffectiveCost")?.unwrap_or(billed);
    // FOCUS 0.5 called it ChargeType.
    let category = text(row, "ChargeCategory")
        .or_else(|| text(row, "ChargeType"))
        .ok_or("required field `ChargeCategory` is missing")?
        .to_ascii_lowercase();
    let hash = {
        let mut hasher = Sha256::new();
        hasher.update(Value::Object(row.clone()).to_string().as_bytes());
        hex::encode(&hasher.finalize()[..12])
    };
    let occurrence = seen.entry(hash.clone()).or_default();
    *occurrence += 1;
    let line_item_id = if *occurrence == 1 {
        hash
    } else {
        format!("{hash}-{occurrence}")
    };
    let tags = tag_map(row.get("Tags"));
    let provider = text(row, "ProviderName")
        .or_else(|| text(row, "Provider"))
        .or_else(|| text(row, "ServiceProviderName"))
        .unwrap_or("unknown")
        .to_ascii_lowercase();
    let mut values = Map::new();
    values.insert("billing_period".into(), Value::from(period));
    values.insert("line_item_id".into(), Value::from(line_item_id));
    values.insert(
        "date".into(),
        Value::from(start.format("%Y-%m-%d").to_string()),
    );
    values.insert("provider".into(), Value::from(provider));
    values.insert(
        "billing_account_id".into(),
        json!(text(row, "BillingAccountId")),
    );
    values.insert("sub_account_id".into(), json!(text(row, "SubAccountId")));
    values.insert("charge_period_start_at".into(), json!(start.to_rfc3339()));
    values.insert(
        "charge_period_end_at".into(),
        json!(end.map(|e| e.to_rfc3339())),
    );
    values.insert("charge_category".into(), Value::from(category));
    values.insert(
        "charge_description".into(),
        json!(text(row, "ChargeDescription")),
    );
    values.insert("service_name".into(), json!(text(row, "ServiceName")));
    values.insert(
        "service_category".into(),
        json!(text(row, "ServiceCategory")),
    );
    values.insert(
        "region".into(),
        json!(text(row, "RegionId").or_else(|| text(row, "Region"))),
    );
    values.insert("resource_id".into(), json!(text(row, "ResourceId")));
    values.insert("sku_id".into(), json!(text(row, "SkuId")));
    values.insert(
        "usage_quantity".into(),
        json!(number(row, "ConsumedQuantity")?.or(number(row, "UsageQuantity")?)),
    );
    values.insert(
        "pricing_unit".into(),
        json!(text(row, "PricingUnit").or_else(|| text(row, "ConsumedUnit"))),
    );
    values.insert("billed_cost_usd".into(), json!(billed));
    values.insert("effective_cost_usd".into(), json!(effective));
    values.insert("list_cost_usd".into(), json!(number(row, "ListCost")?));
    values.insert(
        "pricing_category".into(),
        json!(text(row, "PricingCategory")),
    );
    values.insert(
        "commitment_discount_id".into(),
        json!(text(row, "CommitmentDiscountId")),
    );
    values.insert(
        "commitment_discount_type".into(),
        json!(text(row, "CommitmentDiscountType")),
    );
    values.insert(
        "commitment_discount_category".into(),
        json!(text(row, "CommitmentDiscountCategory")),
    );
    values.insert(
        "commitment_discount_status".into(),
        json!(text(row, "CommitmentDiscountStatus")),
    );
    values.insert(
        "billing_currency".into(),
        json!(text(row, "BillingCurrency")),
    );
    values.insert("entity_ref".into(), entity_from_tags(config, &tags));
    values.insert("tags".into(), Value::Object(tags));
    Ok(values)
}

/// A delivery replaces its billing periods for the providers and billing
/// accounts it carries: another provider's, export's or payer's lines of
/// the same month stay.
const REPLACED_WITHIN: &[&str] = &["provider", "billing_account_id"];

/// Reads the deliveries that changed since the cursor and replaces their
/// billing periods (for their providers and billing accounts).
pub(crate) async fn run(
    ctx: &super::FileRun<'_>,
    config: &CostReportConfig,
) -> crate::Result<crate::runner::StreamReport> {
    let name = ctx.name;
    let mut report = ctx.report(STREAM);
    let (store, listed) = match super::open_and_list(&config.files, name).await {
        Ok(opened) => opened,
        Err(e) => return Ok(ctx.failed(report, e)),
    };
    let mut manifests = BTreeMap::new();
    for file in listed
        .iter()
        .filter(|f| f.path.as_ref().ends_with("Manifest.json"))
    {
        let path = file.path.to_string();
        let Some((folder, _)) = period_folder(&path) else {
            continue;
        };
        let bytes = match super::read(&*store, &file.path, name).await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(ctx.failed(report, e)),
        };
        match manifest_files(&bytes) {
            Some(files) => {
                manifests.insert(folder, files);
            }
            None => report.warnings.push(format!(
                "{path}: not a manifest with `dataFiles`; the folder is listed instead"
            )),
        }
    }
    // A file in a billing period's folder that is neither data nor a
    // manifest is said, not silently passed over (a new compression, say).
    for file in &listed {
        let path = file.path.to_string();
        if period_folder(&path).is_some()
            && !is_data_file(&path)
            && !path.ends_with("Manifest.json")
            && config
                .export_name
                .as_deref()
                .is_none_or(|name| path.split('/').any(|s| s == name))
        {
            report.warnings.push(format!(
                "{path}: not a file the cost report reader reads (.parquet, .csv, .csv.gz); skipped"
            ));
        }
    }
    let groups = group(&listed, config.export_name.as_deref(), &manifests);
    let mut cursor: BTreeMap<String, String> = ctx.cursor().await?;
    for group in groups {
        if cursor.get(&group.key) == Some(&group.fingerprint) {
            continue;
        }
        if let Some(pending) = group.pending {
            report.warnings.push(pending);
            continue;
        }
        let mut decoded = Decoded::default();
        let mut unreadable = false;
        for file in &group.files {
            let path = file.path.to_string();
            ctx.progress.payload(name, STREAM);
            report.payloads += 1;
            let bytes = match super::read(&*store, &file.path, name).await {
                Ok(bytes) => bytes,
                Err(e) => return Ok(ctx.failed(report, e)),
            };
            match file_rows(&path, bytes) {
                Ok(rows) => {
                    decode_rows(config, &path, group.period.as_deref(), &rows, &mut decoded)
                }
                Err(reason) => {
                    unreadable = true;
                    decoded.rejects.push(Reject {
                        location: path.clone(),
                        position: None,
                        reason,
                        raw: json!({"file": path, "size": file.size, "version": file.version})
                            .to_string(),
                    });
                }
            }
        }
        if unreadable {
            // Replacing the period without this file would drop its
            // lines: keep what the warehouse has and say so.
            report.warnings.push(format!(
                "{}: a file cannot be read; the period keeps its previous rows until a readable delivery arrives",
                group.key
            ));
            decoded.rows.clear();
            let written = ctx.write(STREAM, decoded, None).await?;
            report.quarantined += written.quarantined;
            continue;
        }
        let mut periods: BTreeSet<String> = group.period.iter().cloned().collect();
        periods.extend(
            decoded
                .rows
                .iter()
                .filter_map(|r| r.values.get("billing_period").and_then(Value::as_str))
                .map(str::to_owned),
        );
        let periods: Vec<String> = periods.into_iter().collect();
        let replace = crate::runner::Replace {
            partitions: &periods,
            within: REPLACED_WITHIN,
        };
        let written = ctx.write(STREAM, decoded, Some(replace)).await?;
        super::add_written(&mut report, written);
        cursor.insert(group.key.clone(), group.fingerprint.clone());
        ctx.save_cursor(&cursor).await?;
    }
    Ok(report)
}

impl crate::source::Source for CostReportConfig {
    fn configured_name(&self) -> Option<&str> {
        self.files.name.as_deref()
    }

    fn streams(&self) -> &'static [&'static str] {
        &[STREAM]
    }
}

#[cfg(test)]
mod tests;
