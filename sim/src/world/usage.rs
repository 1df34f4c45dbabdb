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
    /// `navigate`, `search`, `discover`, `create`.
    pub action: String,
    /// What the action was about (path, query, result title, created name).
    pub subject: String,
    /// Backstage's numeric `value`: a search's result count, a clicked
    /// result's rank, a template's minutes saved.
    pub value: Option<u64>,
    /// Other attributes (`to` of a clicked result, a template run's
    /// `status` and `templateSteps`).
    pub attributes: Vec<(String, String)>,
    /// Plugin that emitted it.
    pub plugin_id: String,
    /// Route pattern.
    pub route: String,
    /// Catalog entity in context (a template's ref for `create`).
    pub entity_ref: Option<String>,
}

/// The software templates people run, with the minutes each declares
/// saved (`backstage.io/time-saved`; `None`: not annotated).
pub const TEMPLATES: [(&str, Option<u64>); 3] = [
    ("template:default/new-service", Some(240)),
    ("template:default/new-library", Some(90)),
    ("template:default/new-website", None),
];

/// Share of template runs that fail.
pub const TEMPLATE_FAILURE_RATE: f64 = 0.1;

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

/// Whether `user` has adopted the portal (fixed for the whole history).
fn adopted(config: &WorldConfig, org: &Org, adoption: &[f64], user: usize) -> bool {
    let team = org.users.get(user).map_or(usize::MAX, |u| u.team);
    config.rng(3_500_000 + user as u64).random::<f64>() < adoption.get(team).copied().unwrap_or(0.0)
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
    let mut owned: Vec<Vec<usize>> = vec![Vec::new(); org.teams.len()];
    for (i, c) in org.components.iter().enumerate() {
        if let Some(list) = owned.get_mut(c.team) {
            list.push(i);
        }
    }
    let mut events = Vec::new();
    for (u, user) in org.users.iter().enumerate() {
        // Adopters use the portal most working days; the others almost never.
        let active = if adopted(config, org, adoption, u) {
            0.6
        } else {
            0.01
        } * if weekend { 0.05 } else { 1.0 };
        if rng.random::<f64>() >= active {
            continue;
        }
        let owned = owned.get(user.team).map_or(&[][..], Vec::as_slice);
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
            let event = |action: &str, subject: String, plugin_id: &str, route: &str| PortalEvent {
                occurred_at: at,
                user: u,
                action: action.to_owned(),
                subject,
                value: None,
                attributes: Vec::new(),
                plugin_id: plugin_id.to_owned(),
                route: route.to_owned(),
                entity_ref: None,
            };
            let entity_ref = Some(format!("component:default/{name}"));
            let roll: f64 = rng.random();
            if roll < 0.55 {
                events.push(PortalEvent {
                    entity_ref,
                    ..event(
                        "navigate",
                        format!("/catalog/default/component/{name}"),
                        "catalog",
                        "/catalog/:namespace/:kind/:name",
                    )
                });
            } else if roll < 0.8 {
                events.push(PortalEvent {
                    entity_ref,
                    ..event(
                        "navigate",
                        format!("/docs/default/component/{name}"),
                        "techdocs",
                        "/docs/:namespace/:kind/:name",
                    )
                });
            } else if roll < 0.95 {
                // A search: one in eight is mistyped and finds nothing;
                // most that find something lead to a click on a result a
                // few minutes later (`discover`, value = the rank).
                let word = name.split('-').next().unwrap_or(name);
                let mistyped = rng.random::<f64>() < 0.125;
                let query = if mistyped {
                    format!("{word}x")
                } else {
                    word.to_owned()
                };
                let results = if mistyped {
                    0
                } else {
                    word.len() as u64 * 3 + 1
                };
                events.push(PortalEvent {
                    value: Some(results),
                    ..event("search", query, "search", "/search")
                });
                if results > 0 && rng.random::<f64>() < 0.7 {
                    let rank = rng.random_range(1..=5u64);
                    events.push(PortalEvent {
                        occurred_at: at + Duration::seconds(rng.random_range(5..240)),
                        value: Some(rank),
                        attributes: vec![(
                            "to".to_owned(),
                            format!("/catalog/default/component/{name}"),
                        )],
                        ..event("discover", name.to_owned(), "search", "/search")
                    });
                }
            } else {
                let (template, minutes) = TEMPLATES[rng.random_range(0..TEMPLATES.len())];
                let status = if rng.random::<f64>() < TEMPLATE_FAILURE_RATE {
                    "failed"
                } else {
                    "completed"
                };
                events.push(PortalEvent {
                    value: minutes,
                    attributes: vec![
                        ("status".to_owned(), status.to_owned()),
                        ("templateSteps".to_owned(), "3".to_owned()),
                    ],
                    entity_ref: Some(template.to_owned()),
                    ..event(
                        "create",
                        "Task has been created".to_owned(),
                        "scaffolder",
                        "/create/templates/:namespace/:templateName",
                    )
                });
            }
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
