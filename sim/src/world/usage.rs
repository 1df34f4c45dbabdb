//! Portal usage: people opening catalog pages, docs and search, and running
//! scaffolder templates, as Backstage analytics events — with adoption that
//! differs by team (some teams live in the portal, some barely open it).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::Rng;
use serde::Serialize;

use super::cost::day_start;
use super::{Org, WorldConfig};

/// One Backstage analytics event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortalEvent {
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Index of the user.
    pub user: usize,
    /// `navigate`, `search`, `create`, `click`.
    pub action: String,
    /// What the action was about (path, query, template).
    pub subject: String,
    /// Plugin that emitted it.
    pub plugin_id: String,
    /// Route pattern.
    pub route: String,
    /// Catalog entity in context.
    pub entity_ref: Option<String>,
}

/// How much each team uses the portal: the share of its members who have
/// adopted it.
pub fn team_adoption(config: &WorldConfig, org: &Org) -> Vec<f64> {
    (0..org.teams.len())
        .map(|t| {
            let mut rng = config.rng(3_000_000 + t as u64);
            // Spread adoption across teams, from reluctant to devoted.
            let base = 0.05 + 0.9 * (t as f64 + 0.5) / org.teams.len() as f64;
            (base * rng.random_range(0.8..1.2)).clamp(0.02, 0.98)
        })
        .collect()
}

/// Every event of one day, in time order.
pub fn events_on(
    config: &WorldConfig,
    org: &Org,
    adoption: &[f64],
    date: NaiveDate,
) -> Vec<PortalEvent> {
    let day_index = (date - config.start().date_naive()).num_days().max(0) as u64;
    let mut rng = config.rng(4_000_000 + day_index);
    let weekend = date.weekday().number_from_monday() > 5;
    let mut events = Vec::new();
    for (u, user) in org.users.iter().enumerate() {
        // Adopters use the portal most working days; the others almost never.
        let adopted = config.rng(3_500_000 + u as u64).random::<f64>()
            < adoption.get(user.team).copied().unwrap_or(0.0);
        let active = if adopted { 0.6 } else { 0.01 } * if weekend { 0.05 } else { 1.0 };
        if rng.random::<f64>() >= active {
            continue;
        }
        let owned: Vec<usize> = org
            .components
            .iter()
            .enumerate()
            .filter(|(_, c)| c.team == user.team)
            .map(|(i, _)| i)
            .collect();
        for _ in 0..rng.random_range(1..=8) {
            let at = day_start(date) + Duration::minutes(rng.random_range(8 * 60..18 * 60));
            let component = if owned.is_empty() || rng.random::<f64>() < 0.3 {
                rng.random_range(0..org.components.len().max(1))
            } else {
                owned[rng.random_range(0..owned.len())]
            };
            let name = org
                .components
                .get(component)
                .map_or("unknown", |c| c.name.as_str());
            let entity_ref = Some(format!("component:default/{name}"));
            let roll: f64 = rng.random();
            let (action, subject, plugin_id, route, entity_ref) = if roll < 0.55 {
                (
                    "navigate",
                    format!("/catalog/default/component/{name}"),
                    "catalog",
                    "/catalog/:namespace/:kind/:name",
                    entity_ref,
                )
            } else if roll < 0.8 {
                (
                    "navigate",
                    format!("/docs/default/component/{name}"),
                    "techdocs",
                    "/docs/:namespace/:kind/:name",
                    entity_ref,
                )
            } else if roll < 0.95 {
                (
                    "search",
                    name.split('-').next().unwrap_or(name).to_owned(),
                    "search",
                    "/search",
                    None,
                )
            } else {
                (
                    "create",
                    "template:default/new-service".to_owned(),
                    "scaffolder",
                    "/create/templates/:namespace/:templateName",
                    None,
                )
            };
            events.push(PortalEvent {
                occurred_at: at,
                user: u,
                action: action.to_owned(),
                subject,
                plugin_id: plugin_id.to_owned(),
                route: route.to_owned(),
                entity_ref,
            });
        }
    }
    events.sort_by(|a, b| a.occurred_at.cmp(&b.occurred_at).then(a.user.cmp(&b.user)));
    events
}

/// Share of each team's members active in the last `days` days of the world.
pub fn active_share(config: &WorldConfig, org: &Org, days: u32) -> Vec<f64> {
    let adoption = team_adoption(config, org);
    let last = config.end().date_naive() - Duration::days(1);
    let mut active = vec![std::collections::BTreeSet::new(); org.teams.len()];
    for back in 0..i64::from(days.min(config.days)) {
        for event in events_on(config, org, &adoption, last - Duration::days(back)) {
            if let Some(user) = org.users.get(event.user) {
                active[user.team].insert(event.user);
            }
        }
    }
    org.teams
        .iter()
        .zip(&active)
        .map(|(team, users)| users.len() as f64 / team.members.len().max(1) as f64)
        .collect()
}
