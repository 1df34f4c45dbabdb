//! What the world delivers as files rather than over HTTP: the AWS Cost and
//! Usage Report 2.0 (Parquet per billing period plus a manifest, rewritten
//! while the period is open, as AWS Data Exports does) and the portal's
//! analytics events (one NDJSON file per day), written to any object store.

pub mod core_tables;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, MapBuilder, MapFieldNames, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::World;
use crate::world::aws::{AwsWorld, CostLine, LineType, PAYER_ACCOUNT, month_bounds};
use crate::world::cost::day_start;
use crate::world::usage::{PortalEvent, events_on, team_adoption};

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The object store refused a read or write.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Building the Parquet file failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building the Arrow batch failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Encoding JSON failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Column types of the report, as its Glue/Athena table declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurType {
    /// `string`.
    Str,
    /// `double`.
    F64,
    /// `timestamp`.
    Ts,
    /// `map<string,string>`.
    StrMap,
    /// `map<string,double>`.
    F64Map,
}

use CurType::{F64, F64Map, Str, StrMap, Ts};

/// The columns of a CUR 2.0 export (the fixed set AWS writes when every
/// column is selected), in the order they are written.
pub const CUR2_COLUMNS: &[(&str, CurType)] = &[
    ("bill_bill_type", Str),
    ("bill_billing_entity", Str),
    ("bill_billing_period_end_date", Ts),
    ("bill_billing_period_start_date", Ts),
    ("bill_invoice_id", Str),
    ("bill_invoicing_entity", Str),
    ("bill_payer_account_id", Str),
    ("bill_payer_account_name", Str),
    ("cost_category", StrMap),
    ("discount", F64Map),
    ("discount_bundled_discount", F64),
    ("discount_total_discount", F64),
    ("identity_line_item_id", Str),
    ("identity_time_interval", Str),
    ("line_item_availability_zone", Str),
    ("line_item_blended_cost", F64),
    ("line_item_blended_rate", Str),
    ("line_item_currency_code", Str),
    ("line_item_iam_principal", Str),
    ("line_item_legal_entity", Str),
    ("line_item_line_item_description", Str),
    ("line_item_line_item_type", Str),
    ("line_item_net_unblended_cost", F64),
    ("line_item_net_unblended_rate", Str),
    ("line_item_normalization_factor", F64),
    ("line_item_normalized_usage_amount", F64),
    ("line_item_operation", Str),
    ("line_item_product_code", Str),
    ("line_item_resource_id", Str),
    ("line_item_tax_type", Str),
    ("line_item_unblended_cost", F64),
    ("line_item_unblended_rate", Str),
    ("line_item_usage_account_id", Str),
    ("line_item_usage_account_name", Str),
    ("line_item_usage_amount", F64),
    ("line_item_usage_end_date", Ts),
    ("line_item_usage_start_date", Ts),
    ("line_item_usage_type", Str),
    ("pricing_currency", Str),
    ("pricing_lease_contract_length", Str),
    ("pricing_offering_class", Str),
    ("pricing_public_on_demand_cost", F64),
    ("pricing_public_on_demand_rate", Str),
    ("pricing_purchase_option", Str),
    ("pricing_rate_code", Str),
    ("pricing_rate_id", Str),
    ("pricing_term", Str),
    ("pricing_unit", Str),
    ("product", StrMap),
    ("product_comment", Str),
    ("product_fee_code", Str),
    ("product_fee_description", Str),
    ("product_from_location", Str),
    ("product_from_location_type", Str),
    ("product_from_region_code", Str),
    ("product_instance_family", Str),
    ("product_instance_type", Str),
    ("product_instancesku", Str),
    ("product_location", Str),
    ("product_location_type", Str),
    ("product_operation", Str),
    ("product_pricing_unit", Str),
    ("product_product_family", Str),
    ("product_region_code", Str),
    ("product_servicecode", Str),
    ("product_sku", Str),
    ("product_to_location", Str),
    ("product_to_location_type", Str),
    ("product_to_region_code", Str),
    ("product_usagetype", Str),
    ("reservation_amortized_upfront_cost_for_usage", F64),
    ("reservation_amortized_upfront_fee_for_billing_period", F64),
    ("reservation_availability_zone", Str),
    ("reservation_effective_cost", F64),
    ("reservation_end_time", Str),
    ("reservation_modification_status", Str),
    ("reservation_net_amortized_upfront_cost_for_usage", F64),
    (
        "reservation_net_amortized_upfront_fee_for_billing_period",
        F64,
    ),
    ("reservation_net_effective_cost", F64),
    ("reservation_net_recurring_fee_for_usage", F64),
    (
        "reservation_net_unused_amortized_upfront_fee_for_billing_period",
        F64,
    ),
    ("reservation_net_unused_recurring_fee", F64),
    ("reservation_net_upfront_value", F64),
    ("reservation_normalized_units_per_reservation", Str),
    ("reservation_number_of_reservations", Str),
    ("reservation_recurring_fee_for_usage", F64),
    ("reservation_reservation_a_r_n", Str),
    ("reservation_start_time", Str),
    ("reservation_subscription_id", Str),
    ("reservation_total_reserved_normalized_units", Str),
    ("reservation_total_reserved_units", Str),
    ("reservation_units_per_reservation", Str),
    (
        "reservation_unused_amortized_upfront_fee_for_billing_period",
        F64,
    ),
    ("reservation_unused_normalized_unit_quantity", F64),
    ("reservation_unused_quantity", F64),
    ("reservation_unused_recurring_fee", F64),
    ("reservation_upfront_value", F64),
    ("resource_tags", StrMap),
    (
        "savings_plan_amortized_upfront_commitment_for_billing_period",
        F64,
    ),
    ("savings_plan_end_time", Str),
    ("savings_plan_instance_type_family", Str),
    (
        "savings_plan_net_amortized_upfront_commitment_for_billing_period",
        F64,
    ),
    (
        "savings_plan_net_recurring_commitment_for_billing_period",
        F64,
    ),
    ("savings_plan_net_savings_plan_effective_cost", F64),
    ("savings_plan_offering_type", Str),
    ("savings_plan_payment_option", Str),
    ("savings_plan_purchase_term", Str),
    ("savings_plan_recurring_commitment_for_billing_period", F64),
    ("savings_plan_region", Str),
    ("savings_plan_savings_plan_a_r_n", Str),
    ("savings_plan_savings_plan_effective_cost", F64),
    ("savings_plan_savings_plan_rate", F64),
    ("savings_plan_start_time", Str),
    ("savings_plan_total_commitment_to_date", F64),
    ("savings_plan_used_commitment", F64),
    ("split_line_item_actual_usage", F64),
    ("split_line_item_net_split_cost", F64),
    ("split_line_item_net_unused_cost", F64),
    ("split_line_item_parent_resource_id", Str),
    ("split_line_item_public_on_demand_split_cost", F64),
    ("split_line_item_public_on_demand_unused_cost", F64),
    ("split_line_item_reserved_usage", F64),
    ("split_line_item_split_cost", F64),
    ("split_line_item_split_usage", F64),
    ("split_line_item_split_usage_ratio", F64),
    ("split_line_item_unused_cost", F64),
    ("tags", StrMap),
];

/// Arrow type of a report column. Maps use Parquet's conventional
/// `key_value`/`key`/`value` names, as Athena-readable files do.
fn arrow_type(ty: CurType) -> DataType {
    let map = |value: DataType| {
        DataType::Map(
            Arc::new(Field::new(
                "key_value",
                DataType::Struct(
                    vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", value, true),
                    ]
                    .into(),
                ),
                false,
            )),
            false,
        )
    };
    match ty {
        Str => DataType::Utf8,
        F64 => DataType::Float64,
        Ts => DataType::Timestamp(TimeUnit::Millisecond, None),
        StrMap => map(DataType::Utf8),
        F64Map => map(DataType::Float64),
    }
}

/// The Arrow schema of the report files.
pub fn cur_schema() -> SchemaRef {
    Arc::new(Schema::new(
        CUR2_COLUMNS
            .iter()
            .map(|(name, ty)| Field::new(*name, arrow_type(*ty), true))
            .collect::<Vec<_>>(),
    ))
}

/// One value of a report cell.
enum Cell {
    Null,
    Str(String),
    F64(f64),
    Ts(DateTime<Utc>),
    Map(Vec<(String, String)>),
}

/// What the whole period shares.
struct PeriodContext {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    finalized: bool,
    billing_period: String,
    payer_name: String,
    savings_plan_arn: String,
    reservation_arn: String,
}

fn rate(x: f64) -> String {
    format!("{x:.10}")
}

/// The value AWS writes in column `name` for `line`.
fn cell(line: &CostLine, ctx: &PeriodContext, name: &str) -> Cell {
    use Cell::{F64 as F, Map, Null, Str as S, Ts as T};
    let s = |v: &str| S(v.to_owned());
    let reserved = matches!(line.line_type, LineType::DiscountedUsage | LineType::RiFee);
    let savings_plan = matches!(
        line.line_type,
        LineType::SavingsPlanCoveredUsage
            | LineType::SavingsPlanNegation
            | LineType::SavingsPlanRecurringFee
    );
    let when = |yes: bool, v: Cell| if yes { v } else { Null };
    match name {
        "bill_bill_type" => s("Anniversary"),
        "bill_billing_entity" => s("AWS"),
        "bill_billing_period_start_date" => T(ctx.start),
        "bill_billing_period_end_date" => T(ctx.end),
        // The invoice id appears once the month is invoiced.
        "bill_invoice_id" => S(if ctx.finalized {
            format!("E{}{:08}", ctx.billing_period.replace('-', ""), 4_217)
        } else {
            String::new()
        }),
        "bill_invoicing_entity" | "line_item_legal_entity" => s("Amazon Web Services EMEA SARL"),
        "bill_payer_account_id" => s(PAYER_ACCOUNT),
        "bill_payer_account_name" => S(ctx.payer_name.clone()),
        "cost_category" | "discount" => Map(Vec::new()),
        "identity_line_item_id" => S(line.line_item_id.clone()),
        "identity_time_interval" => S(format!(
            "{}/{}",
            crate::world::rfc3339(line.start),
            crate::world::rfc3339(line.end)
        )),
        "line_item_availability_zone" => s(line.availability_zone),
        "line_item_blended_cost" | "line_item_unblended_cost" => F(line.unblended_cost),
        "line_item_blended_rate" | "line_item_unblended_rate" => S(rate(line.unblended_rate)),
        "line_item_currency_code" | "pricing_currency" => s("USD"),
        "line_item_line_item_description" => S(line.description.clone()),
        "line_item_line_item_type" => s(line.line_type.as_str()),
        "line_item_operation" | "product_operation" => s(line.operation),
        "line_item_product_code" | "product_servicecode" => s(line.product.code()),
        "line_item_resource_id" => S(line.resource_id.clone()),
        "line_item_tax_type" => s(if line.line_type == LineType::Tax {
            "VAT"
        } else {
            ""
        }),
        "line_item_usage_account_id" => S(line.account_id.clone()),
        "line_item_usage_account_name" => S(line.account_name.clone()),
        "line_item_usage_amount" => F(line.usage_amount),
        "line_item_usage_start_date" => T(line.start),
        "line_item_usage_end_date" => T(line.end),
        "line_item_usage_type" | "product_usagetype" => S(line.usage_type.clone()),
        "pricing_public_on_demand_cost" => F(line.public_on_demand_cost),
        "pricing_public_on_demand_rate" => S(rate(if line.usage_amount > 0.0 {
            line.public_on_demand_cost / line.usage_amount
        } else {
            0.0
        })),
        "pricing_term" => s(match line.line_type {
            LineType::Usage | LineType::SavingsPlanCoveredUsage | LineType::SavingsPlanNegation => {
                "OnDemand"
            }
            LineType::DiscountedUsage | LineType::RiFee => "Reserved",
            _ => "",
        }),
        "pricing_unit" | "product_pricing_unit" => s(line.pricing_unit),
        "pricing_purchase_option" => s(if reserved { "No Upfront" } else { "" }),
        "pricing_lease_contract_length" => s(if reserved { "1yr" } else { "" }),
        "pricing_offering_class" => s(if reserved { "standard" } else { "" }),
        "product" => {
            let mut product = vec![("product_name".to_owned(), line.product.name().to_owned())];
            if !line.region.is_empty() {
                product.push(("region".to_owned(), line.region.to_owned()));
            }
            Map(product)
        }
        "product_instance_type" => s(line.instance_type),
        "product_product_family" => s(line.product_family),
        "product_region_code" => s(line.region),
        "product_location" => s(if line.region.is_empty() {
            ""
        } else {
            "EU (Ireland)"
        }),
        "reservation_reservation_a_r_n" => when(reserved, S(ctx.reservation_arn.clone())),
        "reservation_effective_cost" => line.reservation_effective_cost.map_or(Null, F),
        "reservation_recurring_fee_for_usage" => line.reservation_effective_cost.map_or(Null, F),
        "reservation_unused_recurring_fee" => line.reservation_unused_recurring_fee.map_or(Null, F),
        "reservation_start_time" => when(reserved, s("2026-01-01T00:00:00.000Z")),
        "reservation_end_time" => when(reserved, s("2027-01-01T00:00:00.000Z")),
        "resource_tags" => Map(line.tags.clone()),
        "savings_plan_savings_plan_a_r_n" => when(savings_plan, S(ctx.savings_plan_arn.clone())),
        "savings_plan_savings_plan_effective_cost" => {
            line.savings_plan_effective_cost.map_or(Null, F)
        }
        "savings_plan_total_commitment_to_date" => line.savings_plan_commitment.map_or(Null, F),
        "savings_plan_used_commitment" => line.savings_plan_used_commitment.map_or(Null, F),
        "savings_plan_savings_plan_rate" => when(
            line.line_type == LineType::SavingsPlanCoveredUsage,
            F(line.unblended_rate * crate::world::aws::SAVINGS_PLAN_RATE),
        ),
        "savings_plan_offering_type" => when(savings_plan, s("ComputeSavingsPlans")),
        "savings_plan_payment_option" => when(savings_plan, s("No Upfront")),
        "savings_plan_purchase_term" => when(savings_plan, s("1yr")),
        "savings_plan_start_time" => when(savings_plan, s("2026-01-01T00:00:00.000Z")),
        "savings_plan_end_time" => when(savings_plan, s("2027-01-01T00:00:00.000Z")),
        _ => Null,
    }
}

/// The report rows of `lines` as one Arrow batch.
fn cur_batch(lines: &[CostLine], ctx: &PeriodContext) -> Result<RecordBatch, ExportError> {
    let names = || MapFieldNames {
        entry: "key_value".to_owned(),
        key: "key".to_owned(),
        value: "value".to_owned(),
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(CUR2_COLUMNS.len());
    for (name, ty) in CUR2_COLUMNS {
        let cells = lines.iter().map(|line| cell(line, ctx, name));
        let array: ArrayRef = match ty {
            Str => {
                let mut b = StringBuilder::new();
                for c in cells {
                    match c {
                        Cell::Str(v) => b.append_value(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            F64 => {
                let mut b = Float64Builder::new();
                for c in cells {
                    match c {
                        Cell::F64(v) => b.append_value(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Ts => {
                let mut b = TimestampMillisecondBuilder::new();
                for c in cells {
                    match c {
                        Cell::Ts(v) => b.append_value(v.timestamp_millis()),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            StrMap => {
                let mut b =
                    MapBuilder::new(Some(names()), StringBuilder::new(), StringBuilder::new());
                for c in cells {
                    match c {
                        Cell::Map(entries) => {
                            for (k, v) in entries {
                                b.keys().append_value(k);
                                b.values().append_value(v);
                            }
                            b.append(true)?;
                        }
                        _ => b.append(false)?,
                    }
                }
                Arc::new(b.finish())
            }
            F64Map => {
                let mut b =
                    MapBuilder::new(Some(names()), StringBuilder::new(), Float64Builder::new());
                for c in cells {
                    // Discounts are not modelled: an empty map on every row.
                    let _ = c;
                    b.append(true)?;
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(cur_schema(), columns)?)
}

fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>, ExportError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Where and how the report is delivered.
#[derive(Debug, Clone)]
pub struct CurExport {
    /// The export's S3 prefix inside the store.
    pub prefix: Path,
    /// The export's name.
    pub name: String,
    /// Rows per data file: larger periods are split into numbered files,
    /// as AWS does.
    pub max_rows_per_file: usize,
}

impl Default for CurExport {
    fn default() -> Self {
        Self {
            prefix: Path::from("cur"),
            name: "fathom-cur".to_owned(),
            max_rows_per_file: 10_000,
        }
    }
}

/// Days after a month's end when AWS finalizes its bill; until then the
/// period is rewritten on every refresh.
pub const FINALIZE_AFTER_DAYS: i64 = 3;

/// What one refresh did to one billing period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodDelivery {
    /// `YYYY-MM`.
    pub billing_period: String,
    /// Data files now in the period's folder.
    pub files: Vec<String>,
    /// Rows across them.
    pub rows: usize,
    /// Whether this refresh wrote the period (closed periods are left alone).
    pub written: bool,
    /// Whether the period's bill is final.
    pub finalized: bool,
}

#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    execution_id: String,
    export_name: String,
    billing_period: String,
    delivery_time: String,
    finalized: bool,
    data_files: Vec<String>,
    columns: Vec<ManifestColumn>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct ManifestColumn {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

/// Refreshes the report as of `now`: every billing period with data before
/// `now` is (re)written — data files first, then the manifest — unless its
/// bill was already final. Data files left over from a larger earlier
/// delivery are deleted, so the folder always holds exactly one delivery.
pub async fn deliver_cur(
    world: &World,
    store: &dyn ObjectStore,
    export: &CurExport,
    now: DateTime<Utc>,
) -> Result<Vec<PeriodDelivery>, ExportError> {
    let aws = AwsWorld::generate(world);
    let mut deliveries = Vec::new();
    for month in AwsWorld::periods(world) {
        if day_start(month) >= now {
            break;
        }
        let (first, next) = month_bounds(month);
        let billing_period = first.format("%Y-%m").to_string();
        let partition = format!("BILLING_PERIOD={billing_period}");
        let data_dir = export
            .prefix
            .clone()
            .join(export.name.as_str())
            .join("data")
            .join(partition.as_str());
        let manifest_path = export
            .prefix
            .clone()
            .join(export.name.as_str())
            .join("metadata")
            .join(partition.as_str())
            .join(format!("{}-Manifest.json", export.name));
        let finalized = now >= day_start(next) + Duration::days(FINALIZE_AFTER_DAYS);
        let previous: Option<Manifest> = match store.get(&manifest_path).await {
            Ok(got) => serde_json::from_slice(&got.bytes().await?).ok(),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(previous) = previous.as_ref().filter(|m| m.finalized) {
            deliveries.push(PeriodDelivery {
                billing_period,
                files: previous.data_files.clone(),
                rows: 0,
                written: false,
                finalized: true,
            });
            continue;
        }
        let lines = aws.period(world, first, now);
        let ctx = PeriodContext {
            start: day_start(first),
            end: day_start(next),
            finalized,
            billing_period: billing_period.clone(),
            payer_name: world.org.company.clone(),
            savings_plan_arn: aws.savings_plan_arn.clone(),
            reservation_arn: aws.reservation_arn.clone(),
        };
        let mut files = Vec::new();
        for (n, chunk) in lines.chunks(export.max_rows_per_file.max(1)).enumerate() {
            let path =
                data_dir
                    .clone()
                    .join(format!("{}-{:05}.snappy.parquet", export.name, n + 1));
            let bytes = parquet_bytes(&cur_batch(chunk, &ctx)?)?;
            store.put(&path, PutPayload::from(bytes)).await?;
            files.push(path.to_string());
        }
        let stale: Vec<Path> = store
            .list(Some(&data_dir))
            .map_ok(|meta| meta.location)
            .try_filter(|location| std::future::ready(!files.contains(&location.to_string())))
            .try_collect()
            .await?;
        for location in stale {
            store.delete(&location).await?;
        }
        let execution = crate::world::aws::stable_hash(&format!("{billing_period}|{now}"));
        let manifest = Manifest {
            execution_id: format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                execution >> 32,
                (execution >> 16) & 0xffff,
                execution & 0xfff,
                (execution >> 20) & 0xfff,
                execution & 0xffff_ffff_ffff
            ),
            export_name: export.name.clone(),
            billing_period: billing_period.clone(),
            delivery_time: crate::world::rfc3339(now),
            finalized,
            data_files: files.clone(),
            columns: CUR2_COLUMNS
                .iter()
                .map(|(name, ty)| ManifestColumn {
                    name: (*name).to_owned(),
                    ty: match ty {
                        Str => "string",
                        F64 => "double",
                        Ts => "timestamp",
                        StrMap => "map<string,string>",
                        F64Map => "map<string,double>",
                    }
                    .to_owned(),
                })
                .collect(),
        };
        store
            .put(
                &manifest_path,
                PutPayload::from(serde_json::to_vec_pretty(&manifest)?),
            )
            .await?;
        deliveries.push(PeriodDelivery {
            billing_period,
            files,
            rows: lines.len(),
            written: true,
            finalized,
        });
    }
    Ok(deliveries)
}

/// One portal analytics event as the export writes it: Backstage's
/// `AnalyticsEvent` (action, subject, value, attributes, context) plus who
/// and when.
fn event_json(world: &World, event: &PortalEvent) -> serde_json::Value {
    let user = world
        .org
        .users
        .get(event.user)
        .map(|u| format!("user:{}/{}", u.namespace, u.name));
    let mut context = serde_json::json!({
        "pluginId": event.plugin_id,
        "routeRef": event.route,
        "extension": "App",
    });
    if let Some(entity_ref) = &event.entity_ref {
        context["entityRef"] = serde_json::Value::from(entity_ref.as_str());
    }
    let attributes: serde_json::Map<String, serde_json::Value> = event
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    serde_json::json!({
        "timestamp": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "action": event.action,
        "subject": event.subject,
        "value": event.value,
        "attributes": attributes,
        "context": context,
        "user": {"userEntityRef": user},
    })
}

/// What an events delivery wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventsDelivery {
    /// Day files written by this call.
    pub files_written: usize,
    /// Events in them.
    pub events_written: usize,
    /// Day files already present (a day's file never changes once written).
    pub files_present: usize,
}

/// Writes one NDJSON file per completed day before `now`,
/// `<prefix>/YYYY/MM/DD/events.ndjson`, skipping days already delivered.
pub async fn deliver_portal_events(
    world: &World,
    store: &dyn ObjectStore,
    prefix: &Path,
    now: DateTime<Utc>,
) -> Result<EventsDelivery, ExportError> {
    let adoption = team_adoption(&world.config, &world.org);
    let mut report = EventsDelivery::default();
    for date in crate::world::cost::days(&world.config) {
        if day_start(date) + Duration::days(1) > now {
            break;
        }
        let path = events_path(prefix, date);
        match store.head(&path).await {
            Ok(_) => {
                report.files_present += 1;
                continue;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut body = Vec::new();
        let events = events_on(&world.config, &world.org, &adoption, date);
        for event in &events {
            serde_json::to_writer(&mut body, &event_json(world, event))?;
            body.push(b'\n');
        }
        store.put(&path, PutPayload::from(body)).await?;
        report.files_written += 1;
        report.events_written += events.len();
    }
    Ok(report)
}

/// Where the events of `date` are delivered.
pub fn events_path(prefix: &Path, date: NaiveDate) -> Path {
    prefix
        .clone()
        .join(date.format("%Y").to_string())
        .join(date.format("%m").to_string())
        .join(date.format("%d").to_string())
        .join("events.ndjson")
}

#[cfg(test)]
mod tests;
