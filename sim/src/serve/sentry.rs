//! Sentry: organisation projects, project issues (with `stats` when
//! `statsPeriod` is given; `count` is a string, as Sentry sends it),
//! organisation releases and their deploys, and project event counts —
//! paged with Sentry's `Link` header, which always has both rels and says
//! with `results="true|false"` whether following it returns anything.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::{SimState, Upstream, check_bearer, faults::status_response};
use crate::world::cost::day_start;
use crate::world::errors::{ErrorIssue, ProjectErrors};

pub(super) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/0/organizations/{org}/projects/", get(projects))
        .route("/api/0/projects/{org}/{project}/issues/", get(issues))
        .route("/api/0/organizations/{org}/releases/", get(releases))
        .route(
            "/api/0/organizations/{org}/releases/{version}/deploys/",
            get(deploys),
        )
        .route("/api/0/projects/{org}/{project}/stats/", get(stats))
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn authorised(state: &SimState, headers: &HeaderMap, org: &str) -> Option<Response> {
    if let Some(response) = check_bearer(
        Upstream::Sentry,
        headers,
        &state.options.credentials.sentry_token,
    ) {
        return Some(response);
    }
    (!org.eq_ignore_ascii_case(&state.world().org.company)).then(|| {
        status_response(
            Upstream::Sentry,
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        )
    })
}

fn project<'a>(state: &'a SimState, slug: &str) -> Option<&'a ProjectErrors> {
    state.world().errors.iter().find(|p| p.slug == slug)
}

/// Sentry cursors: `<value>:<offset>:<is_prev>`.
fn page<T: Clone>(items: &[T], params: &[(String, String)]) -> (Vec<T>, usize, usize) {
    let per_page = params
        .iter()
        .find(|(k, _)| k == "per_page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let offset = params
        .iter()
        .find(|(k, _)| k == "cursor")
        .and_then(|(_, v)| v.split(':').nth(1))
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    (
        items.iter().skip(offset).take(per_page).cloned().collect(),
        offset,
        per_page,
    )
}

fn with_link(
    mut response: Response,
    headers: &HeaderMap,
    path: &str,
    params: &[(String, String)],
    offset: usize,
    per_page: usize,
    total: usize,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let query: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let url = |cursor: &str| {
        let mut q = query.clone();
        q.push(format!("cursor={cursor}"));
        format!(
            "http://{host}{}{path}?{}",
            Upstream::Sentry.prefix(),
            q.join("&")
        )
    };
    let previous = format!("0:{}:1", offset.saturating_sub(per_page));
    let next = format!("0:{}:0", offset + per_page);
    let link = format!(
        "<{}>; rel=\"previous\"; results=\"{}\"; cursor=\"{previous}\", <{}>; rel=\"next\"; results=\"{}\"; cursor=\"{next}\"",
        url(&previous),
        offset > 0,
        url(&next),
        offset + per_page < total
    );
    if let Ok(value) = HeaderValue::from_str(&link) {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

async fn projects(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = authorised(&state, &headers, &org) {
        return response;
    }
    let world = state.world();
    let all: Vec<Value> = world
        .errors
        .iter()
        .map(|p| {
            let team = &world.org.teams[world.org.components[p.component].team].name;
            json!({
                "id": p.project_id.to_string(), "slug": p.slug, "name": p.slug, "platform": "python",
                "dateCreated": timestamp(world.config.start()), "isBookmarked": false, "isMember": true, "hasAccess": true,
                "team": {"id": team.len().to_string(), "slug": team, "name": team},
                "teams": [{"id": team.len().to_string(), "slug": team, "name": team}],
                "environments": ["production", "staging"], "features": ["releases"],
                "firstEvent": p.issues.first().map(|i| timestamp(i.first_seen)), "access": [], "platforms": ["python"],
                "firstTransactionEvent": false, "hasSessions": false, "hasProfiles": false, "hasReplays": false,
                "hasFlags": false, "hasMinifiedStackTrace": false, "hasMonitors": false, "hasFeedbacks": false,
                "hasNewFeedbacks": false, "hasUserReports": false, "hasInsightsHttp": false, "hasInsightsDb": false,
                "hasInsightsAssets": false, "hasInsightsAppStart": false, "hasInsightsScreenLoad": false,
                "hasInsightsVitals": false, "hasInsightsCaches": false, "hasInsightsQueues": false,
                "hasInsightsAgentMonitoring": false, "hasInsightsMCP": false, "hasLogs": false, "hasTraceMetrics": false,
                "latestRelease": p.releases.last().map(|r| json!({"version": r.version})),
            })
        })
        .collect();
    let (items, offset, per_page) = page(&all, &params);
    with_link(
        axum::Json(items).into_response(),
        &headers,
        &format!("/api/0/organizations/{org}/projects/"),
        &params,
        offset,
        per_page,
        all.len(),
    )
}

fn issue_json(
    state: &SimState,
    project: &ProjectErrors,
    issue: &ErrorIssue,
    now: DateTime<Utc>,
    stats_period: Option<&str>,
) -> Value {
    let visible: Vec<&(chrono::NaiveDate, u64, u64)> = issue
        .daily
        .iter()
        .filter(|(d, _, _)| day_start(*d) < now)
        .collect();
    let count: u64 = visible.iter().map(|(_, e, _)| e).sum();
    let users: u64 = visible.iter().map(|(_, _, u)| u).sum();
    let last_seen =
        visible
            .iter()
            .rev()
            .find(|(_, e, _)| *e > 0)
            .map_or(issue.first_seen, |(d, _, _)| {
                (day_start(*d) + Duration::hours(20))
                    .min(now)
                    .max(issue.first_seen)
            });
    let org = &state.world().org.company;
    let short = project.slug.to_ascii_uppercase();
    let mut value = json!({
        "annotations": [], "assignedTo": null, "count": count.to_string(), "culprit": issue.culprit,
        "firstSeen": timestamp(issue.first_seen), "hasSeen": false, "id": issue.id.to_string(), "isBookmarked": false,
        "isPublic": false, "isSubscribed": true, "lastSeen": timestamp(last_seen), "level": issue.level, "logger": null,
        "metadata": {"title": issue.title}, "numComments": 0,
        "permalink": format!("https://sentry.io/organizations/{org}/issues/{}/", issue.id),
        "project": {"id": project.project_id.to_string(), "name": project.slug, "slug": project.slug},
        "shareId": null, "shortId": format!("{short}-{:X}", issue.number), "status": "unresolved", "statusDetails": {},
        "subscriptionDetails": null, "title": issue.title, "type": "error", "userCount": users,
        "firstRelease": issue.first_release.as_ref().map(|v| json!({"version": v})),
    });
    // `stats` only when asked for: hourly points over the last 24 hours, or
    // daily points over the last 14 days.
    if let Some(period) = stats_period {
        let points: Vec<Value> = match period {
            "14d" => (0..14)
                .rev()
                .map(|k| {
                    let day = (now - Duration::days(k)).date_naive();
                    let events = issue
                        .daily
                        .iter()
                        .find(|(d, _, _)| *d == day)
                        .map_or(0, |(_, e, _)| *e);
                    json!([day_start(day).timestamp(), events])
                })
                .collect(),
            _ => (0..24)
                .rev()
                .map(|h| {
                    let hour = now - Duration::hours(h);
                    let events = issue
                        .daily
                        .iter()
                        .find(|(d, _, _)| *d == hour.date_naive())
                        .map_or(0, |(_, e, _)| *e / 24);
                    json!([hour.timestamp() - hour.timestamp().rem_euclid(3600), events])
                })
                .collect(),
        };
        value["stats"] = json!({ period: points });
    }
    value
}

async fn issues(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((org, slug)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = authorised(&state, &headers, &org) {
        return response;
    }
    let Some(project) = project(&state, &slug) else {
        return status_response(
            Upstream::Sentry,
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        );
    };
    let now = state.now();
    let stats_period = params
        .iter()
        .find(|(k, _)| k == "statsPeriod")
        .map(|(_, v)| v.as_str())
        .filter(|p| !p.is_empty());
    // Newest activity first, as Sentry's default sort.
    let mut visible: Vec<&ErrorIssue> = project
        .issues
        .iter()
        .filter(|i| i.first_seen <= now)
        .collect();
    visible.reverse();
    let all: Vec<Value> = visible
        .iter()
        .map(|i| issue_json(&state, project, i, now, stats_period))
        .collect();
    let (items, offset, per_page) = page(&all, &params);
    with_link(
        axum::Json(items).into_response(),
        &headers,
        &format!("/api/0/projects/{org}/{slug}/issues/"),
        &params,
        offset,
        per_page,
        all.len(),
    )
}

async fn releases(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = authorised(&state, &headers, &org) {
        return response;
    }
    let now = state.now();
    let wanted: Option<u64> = params
        .iter()
        .find(|(k, _)| k == "project")
        .and_then(|(_, v)| v.parse().ok());
    let mut all: Vec<(DateTime<Utc>, Value)> = Vec::new();
    for project in state
        .world()
        .errors
        .iter()
        .filter(|p| wanted.is_none_or(|w| w == p.project_id))
    {
        for (n, release) in project
            .releases
            .iter()
            .enumerate()
            .filter(|(_, r)| r.created_at <= now)
        {
            let deploys: Vec<_> = release.deploys.iter().filter(|d| d.2 <= now).collect();
            let last = deploys.last().map(|d| json!({"id": d.0.to_string(), "environment": d.1, "dateStarted": timestamp(d.2), "dateFinished": timestamp(d.3), "name": null, "url": null}));
            let raw = release.version.split('@').nth(1).unwrap_or_default();
            all.push((release.created_at, json!({
                "id": project.project_id * 100_000 + n as u64, "version": release.version, "shortVersion": release.version,
                "status": "open",
                "versionInfo": {"package": project.slug, "version": {"raw": raw}, "description": raw, "buildHash": raw},
                "ref": release.revision, "url": null, "dateReleased": last.as_ref().map(|_| timestamp(release.created_at)),
                "dateCreated": timestamp(release.created_at), "data": {}, "newGroups": 0, "owner": null, "commitCount": 1,
                "lastCommit": null, "deployCount": deploys.len(), "lastDeploy": last, "authors": [],
                "projects": [{"id": project.project_id, "slug": project.slug, "name": project.slug, "newGroups": 0,
                    "platform": "python", "platforms": ["python"], "hasHealthData": false}],
                "firstEvent": null, "lastEvent": null, "currentProjectMeta": {}, "userAgent": null,
            })));
        }
    }
    all.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
    let all: Vec<Value> = all.into_iter().map(|(_, v)| v).collect();
    let (items, offset, per_page) = page(&all, &params);
    with_link(
        axum::Json(items).into_response(),
        &headers,
        &format!("/api/0/organizations/{org}/releases/"),
        &params,
        offset,
        per_page,
        all.len(),
    )
}

async fn deploys(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((org, version)): Path<(String, String)>,
) -> Response {
    if let Some(response) = authorised(&state, &headers, &org) {
        return response;
    }
    let now = state.now();
    let Some(release) = state
        .world()
        .errors
        .iter()
        .flat_map(|p| p.releases.iter())
        .find(|r| r.version == version && r.created_at <= now)
    else {
        return status_response(
            Upstream::Sentry,
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        );
    };
    // Newest first. Deploys recorded without a start or a name exist in
    // Sentry; staging deploys here are recorded that way.
    let items: Vec<Value> = release
        .deploys
        .iter()
        .filter(|d| d.3 <= now)
        .rev()
        .map(|(id, environment, started, finished)| {
            let production = environment == "production" || environment == "prod";
            json!({
                "id": id.to_string(), "environment": environment,
                "dateStarted": if production { json!(timestamp(*started)) } else { Value::Null },
                "dateFinished": timestamp(*finished),
                "name": if production { json!(format!("{version} to {environment}")) } else { Value::Null },
                "url": null,
            })
        })
        .collect();
    axum::Json(items).into_response()
}

async fn stats(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((org, slug)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = authorised(&state, &headers, &org) {
        return response;
    }
    let Some(project) = project(&state, &slug) else {
        return status_response(
            Upstream::Sentry,
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        );
    };
    let now = state.now();
    let number = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    let until = number("until")
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or(now)
        .min(now);
    let since = number("since")
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or(until - Duration::days(14));
    // Daily resolution: one point per UTC day, events of every issue.
    let mut points = Vec::new();
    let mut day = since.date_naive();
    while day_start(day) < until {
        let events: u64 = project
            .issues
            .iter()
            .flat_map(|i| i.daily.iter())
            .filter(|(d, _, _)| *d == day)
            .map(|(_, e, _)| e)
            .sum();
        points.push(json!([day_start(day).timestamp(), events]));
        day += Duration::days(1);
    }
    axum::Json(points).into_response()
}
