//! The cloud-cost truth: what a FOCUS mapping of the world's lines must
//! add up to, per billing period, attribution and charge category.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{AwsWorld, SERVICE_TAG, round10};
use crate::world::World;

/// Truth of the cloud costs: totals per billing period, attribution by tag,
/// true owner and charge category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudCostTruth {
    /// `YYYY-MM`.
    pub billing_period: String,
    /// The component ref the `service` tag attributes the lines to.
    pub entity_ref: Option<String>,
    /// The component that really caused them.
    pub true_entity_ref: Option<String>,
    /// FOCUS charge category.
    pub charge_category: String,
    /// Number of lines.
    pub lines: usize,
    /// Sum of BilledCost.
    pub billed_cost_usd: f64,
    /// Sum of EffectiveCost.
    pub effective_cost_usd: f64,
    /// Sum of the public on-demand (list) cost.
    pub list_cost_usd: f64,
}

/// (billing period, tagged entity, true entity, charge category).
type TruthKey = (String, Option<String>, Option<String>, &'static str);

/// The cloud-cost truth of the whole world (every period complete).
pub fn cloud_cost_truth(world: &World) -> (Vec<CloudCostTruth>, Vec<(String, String, String)>) {
    let aws = AwsWorld::generate(world);
    let mut totals: BTreeMap<TruthKey, (usize, f64, f64, f64)> = BTreeMap::new();
    for month in AwsWorld::periods(world) {
        let period = month.format("%Y-%m").to_string();
        for line in aws.period(world, month, world.config.end()) {
            let entry = totals
                .entry((
                    period.clone(),
                    line.tagged_service()
                        .map(|s| format!("component:default/{s}")),
                    line.true_component.map(|c| world.org.component_ref(c)),
                    line.line_type.charge_category(),
                ))
                .or_default();
            entry.0 += 1;
            entry.1 += line.billed_cost();
            entry.2 += line.effective_cost();
            entry.3 += line.public_on_demand_cost;
        }
    }
    let truth = totals
        .into_iter()
        .map(
            |(
                (billing_period, entity_ref, true_entity_ref, category),
                (lines, billed, effective, list),
            )| {
                CloudCostTruth {
                    billing_period,
                    entity_ref,
                    true_entity_ref,
                    charge_category: category.to_owned(),
                    lines,
                    billed_cost_usd: round10(billed),
                    effective_cost_usd: round10(effective),
                    list_cost_usd: round10(list),
                }
            },
        )
        .collect();
    let unmapped = aws
        .resources
        .iter()
        .filter(|r| !r.tags.iter().any(|(k, _)| k == SERVICE_TAG))
        .filter_map(|r| {
            r.component.map(|c| {
                (
                    "aws".to_owned(),
                    r.resource_id.clone(),
                    world.org.component_ref(c),
                )
            })
        })
        .collect();
    (truth, unmapped)
}
