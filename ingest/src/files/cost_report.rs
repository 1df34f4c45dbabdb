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

use fathom_models::tables::CLOUD_COSTS_DAILY;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{FileLocation, Listed, csv_rows, parquet_rows};
use crate::source::{Decoded, Reject};

mod rows;

pub use rows::cur_charge_category;
use rows::{canonical_focus, cur_row, focus_row};

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
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "EffectiveCost",
    "ListCost",
    "PricingCategory",
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
