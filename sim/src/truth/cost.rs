//! The cost truth in the shape of the cost marts: cloud cost per billing
//! period × attributed owner × charge category, Kubernetes cost per billing
//! month × component, and the comparison the demo and the tests make.

use std::collections::BTreeMap;

use crate::world::World;
use crate::world::aws::CloudCostTruth;

/// (billing period `YYYY-MM`, owner ref or empty for unattributed, charge
/// category).
pub type CostKey = (String, String, String);

/// Billed, effective and list cost.
pub type CostAmounts = [f64; 3];

/// The cloud truth summed over the lines' true owners: what the tag
/// attribution must add up to.
pub fn cloud_cost_totals(truth: &[CloudCostTruth]) -> BTreeMap<CostKey, CostAmounts> {
    let mut out: BTreeMap<CostKey, CostAmounts> = BTreeMap::new();
    for t in truth {
        let entry = out
            .entry((
                t.billing_period.clone(),
                t.entity_ref.clone().unwrap_or_default(),
                t.charge_category.clone(),
            ))
            .or_default();
        entry[0] += t.billed_cost_usd;
        entry[1] += t.effective_cost_usd;
        entry[2] += t.list_cost_usd;
    }
    out
}

/// What OpenCost allocates to each deployed component per month (usage;
/// billed, effective and list alike). Idle capacity is the cluster's, not
/// a component's, and is not part of it.
pub fn kubernetes_cost_totals(world: &World) -> BTreeMap<CostKey, CostAmounts> {
    let mut out: BTreeMap<CostKey, CostAmounts> = BTreeMap::new();
    for load in &world.loads {
        let owner = world.org.component_ref(load.component);
        for day in crate::world::cost::days(&world.config) {
            let cost = load.day(&world.config, day).total_cost_usd();
            let entry = out
                .entry((
                    day.format("%Y-%m").to_string(),
                    owner.clone(),
                    "usage".to_owned(),
                ))
                .or_default();
            for amount in entry.iter_mut() {
                *amount += cost;
            }
        }
    }
    out
}

/// How many rows of `truth` `ours` matches to the cent in every amount,
/// and a line for each row that differs or is missing on either side.
pub fn compare_cost_totals(
    truth: &BTreeMap<CostKey, CostAmounts>,
    ours: &BTreeMap<CostKey, CostAmounts>,
) -> (usize, Vec<String>) {
    let mut agreed = 0;
    let mut differences = Vec::new();
    for (key, want) in truth {
        match ours.get(key) {
            Some(got) if got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.005) => agreed += 1,
            Some(got) => differences.push(format!("{key:?}: {got:?}, the world says {want:?}")),
            None => differences.push(format!("{key:?}: missing, the world says {want:?}")),
        }
    }
    for key in ours.keys().filter(|k| !truth.contains_key(*k)) {
        differences.push(format!("{key:?}: not in the world"));
    }
    (agreed, differences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cent_is_the_tolerance_and_extra_rows_differ() {
        let key = |owner: &str| ("2026-06".to_owned(), owner.to_owned(), "usage".to_owned());
        let truth = BTreeMap::from([(key("a"), [1.0, 2.0, 3.0]), (key("b"), [1.0, 1.0, 1.0])]);
        let ours = BTreeMap::from([
            (key("a"), [1.004, 2.0, 3.0]),
            (key("b"), [1.0, 1.02, 1.0]),
            (key("c"), [0.0, 0.0, 0.0]),
        ]);
        let (agreed, differences) = compare_cost_totals(&truth, &ours);
        assert_eq!(agreed, 1);
        assert_eq!(differences.len(), 2, "{differences:?}");
    }
}
