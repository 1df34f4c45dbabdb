//! The daily and monthly cost lines of [`AwsWorld`]: usage of every
//! resource, covered usage with its negation, the commitments' fees, tax
//! and credits.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::{
    AwsWorld, CostLine, Coverage, LineType, MONTHLY_CREDIT_USD, Product, REGION, RESERVED_RATE,
    ResourceKind, SAVINGS_PLAN_RATE, TAX_RATE, ZONE, daily_on_demand, days_in_month, line_item_id,
    month_bounds, round2, round10,
};
use crate::world::World;
use crate::world::cost::{LoadProfile, day_start};

impl AwsWorld {
    /// The lines of one day: usage of every resource and the Savings Plan
    /// fee. Monthly lines (RI fee, tax, credit) come from [`Self::period`].
    pub fn day(
        &self,
        world: &World,
        loads: &BTreeMap<usize, &LoadProfile>,
        date: NaiveDate,
    ) -> Vec<CostLine> {
        let start = day_start(date);
        let end = start + Duration::days(1);
        let mut lines = Vec::new();
        let mut used = 0.0;
        for resource in &self.resources {
            let load = resource.component.and_then(|c| loads.get(&c).copied());
            let daily = load.map(|l| l.day(&world.config, date));
            let anomaly = load.map_or(1.0, |l| l.anomaly_factor(date));
            let (account_id, account_name) = self.account(resource.account);
            let base =
                |line_type: LineType, usage_type: String, operation: &'static str| CostLine {
                    line_item_id: line_item_id(&format!(
                        "{}|{usage_type}|{}",
                        resource.resource_id,
                        line_type.as_str()
                    )),
                    start,
                    end,
                    line_type,
                    account_id: account_id.clone(),
                    account_name: account_name.clone(),
                    product: resource.product,
                    usage_type,
                    operation,
                    description: String::new(),
                    resource_id: resource.resource_id.clone(),
                    region: REGION,
                    availability_zone: "",
                    usage_amount: 0.0,
                    pricing_unit: "Hrs",
                    instance_type: "",
                    product_family: "",
                    unblended_cost: 0.0,
                    unblended_rate: 0.0,
                    public_on_demand_cost: 0.0,
                    savings_plan_effective_cost: None,
                    savings_plan_commitment: None,
                    savings_plan_used_commitment: None,
                    reservation_effective_cost: None,
                    reservation_unused_recurring_fee: None,
                    tags: resource.tags.clone(),
                    true_component: resource.component,
                };
            match &resource.kind {
                ResourceKind::Instances {
                    instance_type,
                    hourly_usd,
                    ..
                } => {
                    let hours = round10(daily_on_demand(resource, anomaly) / hourly_usd);
                    let on_demand = round10(hours * hourly_usd);
                    let mut line = base(
                        LineType::Usage,
                        format!("EU-BoxUsage:{instance_type}"),
                        "RunInstances",
                    );
                    line.availability_zone = ZONE;
                    line.usage_amount = hours;
                    line.instance_type = instance_type;
                    line.product_family = "Compute Instance";
                    line.public_on_demand_cost = on_demand;
                    line.unblended_rate = *hourly_usd;
                    if resource.coverage == Coverage::SavingsPlan {
                        let effective = round10(on_demand * SAVINGS_PLAN_RATE);
                        used += effective;
                        line.line_type = LineType::SavingsPlanCoveredUsage;
                        line.line_item_id =
                            line_item_id(&format!("{}|covered", resource.resource_id));
                        line.description = format!(
                            "USD {:.4} per On Demand Linux {instance_type} Instance Hour covered by Savings Plan",
                            hourly_usd * SAVINGS_PLAN_RATE
                        );
                        line.unblended_cost = on_demand;
                        line.savings_plan_effective_cost = Some(effective);
                        let mut negation = line.clone();
                        negation.line_type = LineType::SavingsPlanNegation;
                        negation.line_item_id =
                            line_item_id(&format!("{}|negation", resource.resource_id));
                        negation.description = format!(
                            "SavingsPlanNegation used by AccountId : {account_id} and UsageSku : {instance_type}"
                        );
                        negation.unblended_cost = -on_demand;
                        negation.unblended_rate = -hourly_usd;
                        negation.public_on_demand_cost = 0.0;
                        negation.savings_plan_effective_cost = None;
                        lines.push(line);
                        lines.push(negation);
                    } else {
                        line.description = format!(
                            "${hourly_usd} per On Demand Linux {instance_type} Instance Hour"
                        );
                        line.unblended_cost = on_demand;
                        lines.push(line);
                    }
                }
                ResourceKind::Database {
                    instance_class,
                    hourly_usd,
                } => {
                    let on_demand = round10(daily_on_demand(resource, anomaly));
                    let mut line = base(
                        LineType::Usage,
                        format!("EU-InstanceUsage:{instance_class}"),
                        "CreateDBInstance:0014",
                    );
                    line.availability_zone = ZONE;
                    line.usage_amount = round10(on_demand / hourly_usd);
                    line.instance_type = instance_class;
                    line.product_family = "Database Instance";
                    line.public_on_demand_cost = on_demand;
                    if resource.coverage == Coverage::Reserved {
                        line.line_type = LineType::DiscountedUsage;
                        line.description =
                            format!("PostgreSQL, {instance_class} reserved instance applied");
                        line.reservation_effective_cost = Some(round10(on_demand * RESERVED_RATE));
                    } else {
                        line.description = format!(
                            "${hourly_usd} per RDS {instance_class} instance hour (or partial hour) running PostgreSQL"
                        );
                        line.unblended_cost = on_demand;
                        line.unblended_rate = *hourly_usd;
                    }
                    lines.push(line);
                }
                ResourceKind::Bucket { stored_gib } => {
                    let days_in = (date - world.config.start().date_naive()).num_days() as f64;
                    let gib = stored_gib * (1.0 + 0.002 * days_in);
                    let days_in_month = days_in_month(date) as f64;
                    let mut storage = base(
                        LineType::Usage,
                        "EU-TimedStorage-ByteHrs".to_owned(),
                        "StandardStorage",
                    );
                    storage.usage_amount = round10(gib / days_in_month);
                    storage.pricing_unit = "GB-Mo";
                    storage.product_family = "Storage";
                    storage.unblended_rate = 0.023;
                    storage.unblended_cost = round10(storage.usage_amount * 0.023);
                    storage.public_on_demand_cost = storage.unblended_cost;
                    storage.description =
                        "$0.023 per GB - first 50 TB / month of storage used".to_owned();
                    lines.push(storage);
                    let requests = daily.as_ref().map_or(0.0, |d| d.requests);
                    let mut tier1 =
                        base(LineType::Usage, "EU-Requests-Tier1".to_owned(), "PutObject");
                    tier1.usage_amount = (requests / 100.0).round();
                    tier1.pricing_unit = "Requests";
                    tier1.product_family = "API Request";
                    tier1.unblended_rate = 0.000_005;
                    tier1.unblended_cost = round10(tier1.usage_amount * 0.000_005);
                    tier1.public_on_demand_cost = tier1.unblended_cost;
                    tier1.description =
                        "$0.005 per 1,000 PUT, COPY, POST, or LIST requests".to_owned();
                    lines.push(tier1);
                }
                ResourceKind::NatGateway => {
                    let mut hours = base(
                        LineType::Usage,
                        "EU-NatGateway-Hours".to_owned(),
                        "NatGateway",
                    );
                    hours.usage_amount = 24.0;
                    hours.product_family = "NAT Gateway";
                    hours.unblended_rate = 0.048;
                    hours.unblended_cost = round10(24.0 * 0.048);
                    hours.public_on_demand_cost = hours.unblended_cost;
                    hours.description = "$0.048 per NAT Gateway Hour".to_owned();
                    lines.push(hours);
                }
            }
        }
        if self.savings_plan_daily_commitment > 0.0 {
            let (account_id, account_name) = self.account(usize::MAX);
            lines.push(CostLine {
                line_item_id: line_item_id(&format!("{}|fee", self.savings_plan_arn)),
                start,
                end,
                line_type: LineType::SavingsPlanRecurringFee,
                account_id,
                account_name,
                product: Product::Ec2,
                usage_type: "ComputeSP:1yrNoUpfront".to_owned(),
                operation: "",
                description: "1 year No Upfront Compute Savings Plan".to_owned(),
                resource_id: self.savings_plan_arn.clone(),
                region: "",
                availability_zone: "",
                usage_amount: 24.0,
                pricing_unit: "Hrs",
                instance_type: "",
                product_family: "",
                unblended_cost: self.savings_plan_daily_commitment,
                unblended_rate: round10(self.savings_plan_daily_commitment / 24.0),
                public_on_demand_cost: 0.0,
                savings_plan_effective_cost: None,
                savings_plan_commitment: Some(self.savings_plan_daily_commitment),
                savings_plan_used_commitment: Some(round10(used)),
                reservation_effective_cost: None,
                reservation_unused_recurring_fee: None,
                tags: Vec::new(),
                true_component: None,
            });
        }
        lines
    }

    /// Every line of the billing period containing `month` (any day of it),
    /// as of `now`: the days before `now` (and inside the world), plus the
    /// period's RI fee, tax on each account's charges so far, and credit.
    pub fn period(&self, world: &World, month: NaiveDate, now: DateTime<Utc>) -> Vec<CostLine> {
        let loads: BTreeMap<usize, &LoadProfile> =
            world.loads.iter().map(|l| (l.component, l)).collect();
        let (first, next) = month_bounds(month);
        let world_first = world.config.start().date_naive();
        let world_end = world.config.end().date_naive();
        let mut lines = Vec::new();
        let mut day = first.max(world_first);
        let mut days_billed = 0;
        while day < next && day < world_end && day_start(day) + Duration::days(1) <= now {
            lines.extend(self.day(world, &loads, day));
            day += Duration::days(1);
            days_billed += 1;
        }
        if days_billed == 0 {
            return lines;
        }
        let period_start = day_start(first);
        let period_end = day_start(next);
        let (payer_id, payer_name) = self.account(usize::MAX);
        let monthly = |line_type: LineType,
                       key: &str,
                       account_id: String,
                       account_name: String,
                       cost: f64| CostLine {
            line_item_id: line_item_id(key),
            start: period_start,
            end: period_end,
            line_type,
            account_id,
            account_name,
            product: Product::Ec2,
            usage_type: String::new(),
            operation: "",
            description: String::new(),
            resource_id: String::new(),
            region: "",
            availability_zone: "",
            usage_amount: 0.0,
            pricing_unit: "",
            instance_type: "",
            product_family: "",
            unblended_cost: cost,
            unblended_rate: 0.0,
            public_on_demand_cost: 0.0,
            savings_plan_effective_cost: None,
            savings_plan_commitment: None,
            savings_plan_used_commitment: None,
            reservation_effective_cost: None,
            reservation_unused_recurring_fee: None,
            tags: Vec::new(),
            true_component: None,
        };
        // AWS bills the reservation for every day of the month on its first
        // day; the days the world covers are what the covered usage uses.
        let days_in_world = (next.min(world_end) - first.max(world_first)).num_days() as f64;
        let ri_fee: f64 = self
            .resources
            .iter()
            .filter(|r| r.coverage == Coverage::Reserved)
            .map(|r| round10(daily_on_demand(r, 1.0)) * RESERVED_RATE)
            .sum::<f64>()
            * days_in_world;
        if ri_fee > 0.0 {
            let mut fee = monthly(
                LineType::RiFee,
                &format!("{}|fee", self.reservation_arn),
                payer_id.clone(),
                payer_name.clone(),
                round10(ri_fee),
            );
            fee.product = Product::Rds;
            fee.resource_id = self.reservation_arn.clone();
            fee.usage_type = "EU-HeavyUsage:db.r6g.large".to_owned();
            fee.description = "Reserved instances, monthly recurring fee".to_owned();
            fee.reservation_unused_recurring_fee = Some(0.0);
            lines.push(fee);
        }
        let mut charged: BTreeMap<(String, String), f64> = BTreeMap::new();
        for line in &lines {
            *charged
                .entry((line.account_id.clone(), line.account_name.clone()))
                .or_default() += line.unblended_cost;
        }
        for ((account_id, account_name), total) in charged {
            let mut tax = monthly(
                LineType::Tax,
                &format!("{account_id}|tax"),
                account_id,
                account_name,
                round2(total * TAX_RATE),
            );
            tax.description = "Tax for product code AmazonEC2".to_owned();
            lines.push(tax);
        }
        let mut credit = monthly(
            LineType::Credit,
            &format!("{payer_id}|credit"),
            payer_id,
            payer_name,
            MONTHLY_CREDIT_USD,
        );
        credit.description = "AWS Promotional Credit".to_owned();
        lines.push(credit);
        lines
    }
}
