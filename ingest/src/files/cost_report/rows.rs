//! One line of a cost report into a `cloud_costs_daily` row: CUR 2.0 lines
//! (their amortization and commitment columns mapped to FOCUS's) and FOCUS
//! lines (any version, any provider), with the helpers both share (billing
//! month, tags, the component a tag names).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{CostReportConfig, FOCUS_COLUMNS};
use crate::files::{instant, number, text};

/// A FOCUS row with its known columns under their canonical names.
pub(super) fn canonical_focus(row: &Map<String, Value>) -> Map<String, Value> {
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

pub(super) fn cur_row(
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
pub(super) fn focus_row(
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
