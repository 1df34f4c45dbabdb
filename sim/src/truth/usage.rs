//! The portal-usage truth in the shape of the usage marts: active users
//! per scope (team, department, org) and calendar month, searches and
//! their clicks, template runs — counted from the generated events
//! themselves, so a mart that miscounts or mis-attributes a user differs.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration};
use serde::Serialize;

use crate::world::Org;
use crate::world::usage::PortalEvent;

/// Active users of one scope in one calendar month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageMonthTruth {
    /// `group:default/<team or department>` or `org`.
    pub scope: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Catalog members of the scope.
    pub members: usize,
    /// Members with at least one event in the month.
    pub active_users: usize,
}

/// Searches of one month, the whole organisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SearchMonthTruth {
    /// `YYYY-MM`.
    pub month: String,
    /// Searches.
    pub searches: usize,
    /// Searches that found nothing.
    pub zero_results: usize,
    /// Searches followed by a click on a result.
    pub clicked: usize,
    /// Sum of the clicked ranks.
    pub rank_sum: u64,
}

/// Template runs of one month and template, the whole organisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TemplateMonthTruth {
    /// `YYYY-MM`.
    pub month: String,
    /// Template ref.
    pub template: String,
    /// Runs.
    pub runs: usize,
    /// Runs that failed.
    pub failed: usize,
}

/// The usage truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageTruth {
    /// Per scope and month, scopes and months sorted.
    pub active: Vec<UsageMonthTruth>,
    /// Per month.
    pub search: Vec<SearchMonthTruth>,
    /// Per month and template.
    pub templates: Vec<TemplateMonthTruth>,
}

fn month(event: &PortalEvent) -> String {
    format!(
        "{:04}-{:02}",
        event.occurred_at.year(),
        event.occurred_at.month()
    )
}

/// The truth of a day-ordered stream of events.
pub fn usage_truth<'a>(org: &Org, events: impl IntoIterator<Item = &'a PortalEvent>) -> UsageTruth {
    let department_ref = |d: usize| {
        org.departments
            .get(d)
            .map(|d| format!("group:default/{}", d.name))
    };
    // Scope → members.
    let mut members: BTreeMap<String, usize> = BTreeMap::new();
    for (t, team) in org.teams.iter().enumerate() {
        *members.entry(org.team_ref(t)).or_default() += team.members.len();
        if let Some(d) = department_ref(team.department) {
            *members.entry(d).or_default() += team.members.len();
        }
    }
    members.insert("org".to_owned(), org.users.len());
    let mut active: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
    let mut search: BTreeMap<String, SearchMonthTruth> = BTreeMap::new();
    let mut templates: BTreeMap<(String, String), TemplateMonthTruth> = BTreeMap::new();
    // A user's last search waiting for its click: (month, time).
    let mut waiting: BTreeMap<usize, (String, chrono::DateTime<chrono::Utc>)> = BTreeMap::new();
    for event in events {
        let m = month(event);
        if let Some(user) = org.users.get(event.user) {
            let mut scopes = vec!["org".to_owned(), org.team_ref(user.team)];
            scopes.extend(
                org.teams
                    .get(user.team)
                    .and_then(|t| department_ref(t.department)),
            );
            for scope in scopes {
                active
                    .entry((scope, m.clone()))
                    .or_default()
                    .insert(event.user);
            }
        }
        match event.action.as_str() {
            "search" => {
                let entry = search.entry(m.clone()).or_insert_with(|| SearchMonthTruth {
                    month: m.clone(),
                    ..SearchMonthTruth::default()
                });
                entry.searches += 1;
                if event.value == Some(0) {
                    entry.zero_results += 1;
                }
                waiting.insert(event.user, (m, event.occurred_at));
            }
            "discover" => {
                // Clicked within the window of the user's latest search,
                // in the same month.
                if let Some((searched_month, at)) = waiting.remove(&event.user)
                    && event.occurred_at - at <= Duration::minutes(10)
                    && searched_month == m
                    && let Some(entry) = search.get_mut(&searched_month)
                {
                    entry.clicked += 1;
                    entry.rank_sum += event.value.unwrap_or(0);
                }
            }
            "create" => {
                let template = event.entity_ref.clone().unwrap_or_default();
                let entry = templates
                    .entry((m.clone(), template.clone()))
                    .or_insert_with(|| TemplateMonthTruth {
                        month: m,
                        template,
                        ..TemplateMonthTruth::default()
                    });
                entry.runs += 1;
                if event
                    .attributes
                    .iter()
                    .any(|(k, v)| k == "status" && v == "failed")
                {
                    entry.failed += 1;
                }
            }
            _ => {}
        }
    }
    UsageTruth {
        active: active
            .into_iter()
            .map(|((scope, month), users)| UsageMonthTruth {
                members: members.get(&scope).copied().unwrap_or(0),
                scope,
                month,
                active_users: users.len(),
            })
            .collect(),
        search: search.into_values().collect(),
        templates: templates.into_values().collect(),
    }
}
