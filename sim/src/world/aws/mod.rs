//! AWS: the resources each deployed service runs on (instances, databases,
//! buckets), shared network infrastructure, and the daily cost lines AWS
//! bills for them — on-demand usage, usage covered by a Savings Plan or a
//! reserved instance, the commitments' fees, monthly tax and credits.
//!
//! Lines follow the semantics of the Cost and Usage Report 2.0: covered
//! usage carries its on-demand cost and is cancelled by a negation line, so
//! what is *billed* for it is the commitment fee while what it *costs*
//! (effective, amortized) is the commitment's effective rate. The truth this
//! module computes is what a FOCUS mapping of those lines must add up to.
//!
//! Some services' resources carry no `service` tag: the deliberate
//! unattributed cost, whose true owner the truth records.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;

use super::World;

mod lines;
mod truth;

pub use self::truth::{CloudCostTruth, cloud_cost_truth};

/// The payer (management) account, with the leading zero real account ids
/// often have — readers must keep ids as text.
pub const PAYER_ACCOUNT: &str = "012345678901";
/// Savings Plan rate as a share of on-demand.
pub const SAVINGS_PLAN_RATE: f64 = 0.72;
/// Reserved instance effective rate as a share of on-demand.
pub const RESERVED_RATE: f64 = 0.62;
/// Tax on each account's monthly charges.
pub const TAX_RATE: f64 = 0.08;
/// Promotional credit applied to the payer every month, USD (negative).
pub const MONTHLY_CREDIT_USD: f64 = -100.0;
/// The cost-allocation tag carrying the component name, as CUR 2.0 names
/// user-defined tags in `resource_tags`.
pub const SERVICE_TAG: &str = "user_service";

/// What kind of line AWS writes (`line_item_line_item_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum LineType {
    /// On-demand usage.
    Usage,
    /// Usage covered by a Savings Plan (carries its on-demand cost).
    SavingsPlanCoveredUsage,
    /// Cancels the on-demand cost of covered usage.
    SavingsPlanNegation,
    /// The Savings Plan's hourly commitment, billed.
    SavingsPlanRecurringFee,
    /// Usage covered by a reserved instance.
    DiscountedUsage,
    /// The reserved instances' monthly fee.
    #[serde(rename = "RIFee")]
    RiFee,
    /// Tax.
    Tax,
    /// Credit.
    Credit,
}

impl LineType {
    /// The name AWS writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usage => "Usage",
            Self::SavingsPlanCoveredUsage => "SavingsPlanCoveredUsage",
            Self::SavingsPlanNegation => "SavingsPlanNegation",
            Self::SavingsPlanRecurringFee => "SavingsPlanRecurringFee",
            Self::DiscountedUsage => "DiscountedUsage",
            Self::RiFee => "RIFee",
            Self::Tax => "Tax",
            Self::Credit => "Credit",
        }
    }

    /// FOCUS `ChargeCategory` (lower case, as `cloud_costs_daily` stores it).
    pub fn charge_category(self) -> &'static str {
        match self {
            Self::Usage
            | Self::SavingsPlanCoveredUsage
            | Self::SavingsPlanNegation
            | Self::DiscountedUsage => "usage",
            Self::SavingsPlanRecurringFee | Self::RiFee => "purchase",
            Self::Tax => "tax",
            Self::Credit => "credit",
        }
    }
}

/// Which AWS product a resource is billed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Product {
    /// EC2 instances (and NAT gateways, which EC2 bills).
    Ec2,
    /// RDS database instances.
    Rds,
    /// S3 buckets.
    S3,
}

impl Product {
    /// `line_item_product_code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Ec2 => "AmazonEC2",
            Self::Rds => "AmazonRDS",
            Self::S3 => "AmazonS3",
        }
    }

    /// The product's name (`product['product_name']`, FOCUS ServiceName).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ec2 => "Amazon Elastic Compute Cloud",
            Self::Rds => "Amazon Relational Database Service",
            Self::S3 => "Amazon Simple Storage Service",
        }
    }
}

/// How a resource's usage is paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Coverage {
    /// On-demand prices.
    OnDemand,
    /// The compute Savings Plan.
    SavingsPlan,
    /// A reserved instance.
    Reserved,
}

/// What a resource is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ResourceKind {
    /// EC2 instances of one type; `count` of them run all day.
    Instances {
        /// e.g. `m5.large`.
        instance_type: &'static str,
        /// On-demand USD per instance-hour.
        hourly_usd: f64,
        /// How many.
        count: u32,
    },
    /// An RDS database instance.
    Database {
        /// e.g. `db.r6g.large`.
        instance_class: &'static str,
        /// On-demand USD per hour.
        hourly_usd: f64,
    },
    /// An S3 bucket: storage plus requests following the service's traffic.
    Bucket {
        /// Stored GiB at the start of the history.
        stored_gib: f64,
    },
    /// A NAT gateway shared by every service of an account.
    NatGateway,
}

/// One billed resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    /// Component that uses it; `None` for shared infrastructure.
    pub component: Option<usize>,
    /// `line_item_resource_id`.
    pub resource_id: String,
    /// Billing product.
    pub product: Product,
    /// What it is.
    pub kind: ResourceKind,
    /// How its usage is paid for.
    pub coverage: Coverage,
    /// Index into [`AwsWorld::accounts`].
    pub account: usize,
    /// `resource_tags`, with CUR 2.0 key names (`user_…`).
    pub tags: Vec<(String, String)>,
}

/// One cost line as the report carries it, plus the truth behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLine {
    /// `identity_line_item_id`: stable for a resource and usage type across
    /// the days of a period, so (id, time interval) identifies a line.
    pub line_item_id: String,
    /// Start of `identity_time_interval` and the usage period.
    pub start: DateTime<Utc>,
    /// End of it (exclusive).
    pub end: DateTime<Utc>,
    /// Line type.
    pub line_type: LineType,
    /// Usage account id.
    pub account_id: String,
    /// Usage account name.
    pub account_name: String,
    /// Product.
    pub product: Product,
    /// `line_item_usage_type`.
    pub usage_type: String,
    /// `line_item_operation`.
    pub operation: &'static str,
    /// `line_item_line_item_description`.
    pub description: String,
    /// `line_item_resource_id` (empty for account-level lines).
    pub resource_id: String,
    /// `product_region_code` (empty for global lines).
    pub region: &'static str,
    /// `line_item_availability_zone`.
    pub availability_zone: &'static str,
    /// `line_item_usage_amount`.
    pub usage_amount: f64,
    /// `pricing_unit`.
    pub pricing_unit: &'static str,
    /// `product_instance_type`.
    pub instance_type: &'static str,
    /// `product_product_family`.
    pub product_family: &'static str,
    /// `line_item_unblended_cost` — what is billed.
    pub unblended_cost: f64,
    /// `line_item_unblended_rate`.
    pub unblended_rate: f64,
    /// `pricing_public_on_demand_cost` — the list cost.
    pub public_on_demand_cost: f64,
    /// `savings_plan_savings_plan_effective_cost` of covered usage.
    pub savings_plan_effective_cost: Option<f64>,
    /// `savings_plan_total_commitment_to_date` of the fee line.
    pub savings_plan_commitment: Option<f64>,
    /// `savings_plan_used_commitment` of the fee line.
    pub savings_plan_used_commitment: Option<f64>,
    /// `reservation_effective_cost` of covered usage.
    pub reservation_effective_cost: Option<f64>,
    /// `reservation_unused_recurring_fee` of the RI fee line.
    pub reservation_unused_recurring_fee: Option<f64>,
    /// `resource_tags`.
    pub tags: Vec<(String, String)>,
    /// Truth: the component that really caused the cost (`None` for shared
    /// infrastructure, account-level fees, tax and credits).
    pub true_component: Option<usize>,
}

impl CostLine {
    /// FOCUS `BilledCost`.
    pub fn billed_cost(&self) -> f64 {
        self.unblended_cost
    }

    /// FOCUS `EffectiveCost`: covered usage at the commitment's effective
    /// rate, negations at zero (the covered line already carries the cost),
    /// commitment fees at their unused part only (the used part is in the
    /// covered usage), everything else as billed.
    pub fn effective_cost(&self) -> f64 {
        match self.line_type {
            LineType::SavingsPlanCoveredUsage => self.savings_plan_effective_cost.unwrap_or(0.0),
            LineType::DiscountedUsage => self.reservation_effective_cost.unwrap_or(0.0),
            LineType::SavingsPlanNegation => 0.0,
            LineType::SavingsPlanRecurringFee => {
                self.savings_plan_commitment.unwrap_or(0.0)
                    - self.savings_plan_used_commitment.unwrap_or(0.0)
            }
            LineType::RiFee => self.reservation_unused_recurring_fee.unwrap_or(0.0),
            LineType::Usage | LineType::Tax | LineType::Credit => self.unblended_cost,
        }
    }

    /// The component the `service` tag names, as an attribution by tag
    /// would find it.
    pub fn tagged_service(&self) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == SERVICE_TAG)
            .map(|(_, v)| v.as_str())
    }
}

/// The AWS side of the world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwsWorld {
    /// Usage accounts: (id, name), one per department.
    pub accounts: Vec<(String, String)>,
    /// Every billed resource.
    pub resources: Vec<Resource>,
    /// ARN of the compute Savings Plan.
    pub savings_plan_arn: String,
    /// ARN of the reserved instances.
    pub reservation_arn: String,
    /// The Savings Plan's commitment per day, USD (5% above what covered
    /// usage consumes, so some commitment goes unused, as in real life).
    pub savings_plan_daily_commitment: f64,
}

/// Stable hash of text (FNV-1a): ids must not change between builds, so no
/// `std` hasher.
pub fn stable_hash(text: &str) -> u64 {
    fnv(text)
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A 52-character lowercase base32 id like AWS's line item ids.
fn line_item_id(key: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(52);
    let mut state = fnv(key);
    while out.len() < 52 {
        state = state
            .wrapping_mul(0x5851_f42d_4c95_7f2d)
            .wrapping_add(fnv(key) | 1);
        let mut bits = state;
        for _ in 0..12 {
            out.push(char::from(ALPHABET[(bits & 31) as usize]));
            bits >>= 5;
        }
    }
    out.truncate(52);
    out
}

/// Rounds to AWS's ten decimal places, so sums are reproducible.
fn round10(x: f64) -> f64 {
    (x * 1e10).round() / 1e10
}

/// Rounds to cents.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

const REGION: &str = "eu-west-1";
const ZONE: &str = "eu-west-1a";

impl AwsWorld {
    /// The resources of `world`'s deployed services.
    pub fn generate(world: &World) -> Self {
        let org = &world.org;
        let accounts: Vec<(String, String)> = org
            .departments
            .iter()
            .enumerate()
            .map(|(d, dept)| {
                (
                    format!("0{:011}", 22_000_000_000 + d as u64 * 1_111),
                    dept.name.clone(),
                )
            })
            .collect();
        let mut resources = Vec::new();
        for load in &world.loads {
            let idx = load.component;
            let Some(component) = org.components.get(idx) else {
                continue;
            };
            let account = org
                .teams
                .get(component.team)
                .map_or(0, |t| t.department)
                .min(accounts.len().saturating_sub(1));
            let account_id = accounts
                .get(account)
                .map_or(PAYER_ACCOUNT, |a| a.0.as_str());
            // Every fourteenth service was deployed by hand, untagged: the
            // cost a tag-based attribution cannot place.
            let tags = if idx % 14 == 5 {
                vec![("user_environment".to_owned(), "production".to_owned())]
            } else {
                vec![
                    ("user_environment".to_owned(), "production".to_owned()),
                    (SERVICE_TAG.to_owned(), component.name.clone()),
                    (
                        "user_team".to_owned(),
                        org.teams[component.team].name.clone(),
                    ),
                ]
            };
            let steady = load.anomaly.is_none() && !load.idle;
            if idx % 3 != 1 {
                let (instance_type, hourly_usd) = if load.cpu_request_cores > 4.0 {
                    ("m5.xlarge", 0.214)
                } else {
                    ("m5.large", 0.107)
                };
                resources.push(Resource {
                    component: Some(idx),
                    resource_id: format!("i-{:017x}", fnv(&component.name) >> 4),
                    product: Product::Ec2,
                    kind: ResourceKind::Instances {
                        instance_type,
                        hourly_usd,
                        count: (load.cpu_request_cores / 2.0).ceil().max(1.0) as u32,
                    },
                    // Only steady services are covered, so the plan's use
                    // is the same every day.
                    coverage: if steady && idx % 2 == 0 {
                        Coverage::SavingsPlan
                    } else {
                        Coverage::OnDemand
                    },
                    account,
                    tags: tags.clone(),
                });
            }
            if idx % 4 == 1 {
                resources.push(Resource {
                    component: Some(idx),
                    resource_id: format!(
                        "arn:aws:rds:{REGION}:{account_id}:db:{}-db",
                        component.name
                    ),
                    product: Product::Rds,
                    kind: ResourceKind::Database {
                        instance_class: "db.r6g.large",
                        hourly_usd: 0.258,
                    },
                    coverage: if idx % 8 == 1 {
                        Coverage::Reserved
                    } else {
                        Coverage::OnDemand
                    },
                    account,
                    tags: tags.clone(),
                });
            }
            resources.push(Resource {
                component: Some(idx),
                resource_id: format!("{}-{}-assets", org.company, component.name),
                product: Product::S3,
                kind: ResourceKind::Bucket {
                    stored_gib: 20.0 + (fnv(&component.name) % 480) as f64,
                },
                coverage: Coverage::OnDemand,
                account,
                tags,
            });
        }
        for (a, (account_id, _)) in accounts.iter().enumerate() {
            resources.push(Resource {
                component: None,
                resource_id: format!(
                    "arn:aws:ec2:{REGION}:{account_id}:natgateway/nat-{:017x}",
                    fnv(account_id) >> 4
                ),
                product: Product::Ec2,
                kind: ResourceKind::NatGateway,
                coverage: Coverage::OnDemand,
                account: a,
                tags: vec![("user_shared".to_owned(), "network".to_owned())],
            });
        }
        let covered_daily: f64 = resources
            .iter()
            .filter(|r| r.coverage == Coverage::SavingsPlan)
            .map(|r| round10(daily_on_demand(r, 1.0)) * SAVINGS_PLAN_RATE)
            .sum();
        Self {
            accounts,
            resources,
            savings_plan_arn: format!(
                "arn:aws:savingsplans::{PAYER_ACCOUNT}:savingsplan/{:08x}-0000-4000-8000-{:012x}",
                world.config.seed as u32,
                fnv(&org.company) >> 16
            ),
            reservation_arn: format!(
                "arn:aws:rds:{REGION}:{PAYER_ACCOUNT}:ri:fathom-ri-{:08x}",
                world.config.seed as u32
            ),
            savings_plan_daily_commitment: round2(covered_daily * 1.05),
        }
    }

    fn account(&self, idx: usize) -> (String, String) {
        self.accounts
            .get(idx)
            .cloned()
            .unwrap_or_else(|| (PAYER_ACCOUNT.to_owned(), "management".to_owned()))
    }

    /// The billing periods (first days of months) the world touches.
    pub fn periods(world: &World) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut month = month_bounds(world.config.start().date_naive()).0;
        while month < world.config.end().date_naive() {
            out.push(month);
            month = month_bounds(month).1;
        }
        out
    }
}

/// On-demand cost of a resource for a whole day at `factor` times its usual
/// size (anomalies make services run more).
fn daily_on_demand(resource: &Resource, factor: f64) -> f64 {
    match &resource.kind {
        ResourceKind::Instances {
            hourly_usd, count, ..
        } => f64::from(*count) * 24.0 * hourly_usd * factor,
        ResourceKind::Database { hourly_usd, .. } => 24.0 * hourly_usd,
        ResourceKind::Bucket { .. } | ResourceKind::NatGateway => 0.0,
    }
}

/// First day of the month of `date` and of the next month.
pub fn month_bounds(date: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = date.with_day(1).unwrap_or(date);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .unwrap_or(first);
    (first, next)
}

fn days_in_month(date: NaiveDate) -> i64 {
    let (first, next) = month_bounds(date);
    (next - first).num_days()
}
