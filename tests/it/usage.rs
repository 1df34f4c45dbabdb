//! Portal usage analytics end to end: a simulated organisation's catalog
//! and analytics events ingested, the usage marts computed by
//! `fathom transform`, and every published number compared with the
//! generator's truth — adoption per scope and month, search success,
//! template runs — while every withheld number is one the privacy rule
//! withholds. Then retention deletes old events and the marts are
//! recomputed from what remains.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use fathom_sim::WorldConfig;
use fathom_sim::serve::{ExportTarget, SimOptions};
use fathom_sim::truth::usage::{UsageTruth, usage_truth};
use fathom_sim::world::usage::PortalEvent;
use serde_json::Value;

use crate::api::{serve, token};
use crate::files::write_config;
use crate::support::{fathom_bin, local_warehouse, rows};

/// The privacy threshold of these tests: small enough that some teams
/// publish and some do not.
const K: i64 = 3;

fn number(text: &str) -> Option<i64> {
    text.parse().ok()
}

/// Every usage mart row against the truth of `events`.
async fn assert_marts_match(
    warehouse: &fathom_warehouse::Warehouse,
    truth: &UsageTruth,
) -> Result<()> {
    // Adoption per scope and month.
    let landed = rows(
        warehouse,
        "SELECT scope, to_char(period_start, '%Y-%m'), members, \
                coalesce(CAST(active_users AS VARCHAR), ''), coalesce(suppression, ''), \
                coalesce(CAST(adoption AS VARCHAR), '') \
         FROM usage_active WHERE grain = 'month' ORDER BY 1, 2",
    )
    .await?;
    let expected: BTreeMap<(String, String), (usize, usize)> = truth
        .active
        .iter()
        .map(|t| {
            (
                (t.scope.clone(), t.month.clone()),
                (t.members, t.active_users),
            )
        })
        .collect();
    let (mut published, mut withheld) = (0, 0);
    for row in &landed {
        let key = (row[0].clone(), row[1].clone());
        let (members, active) = expected.get(&key).copied().unwrap_or_else(|| {
            // No event of the scope that month: none active.
            let members = truth
                .active
                .iter()
                .find(|t| t.scope == key.0)
                .map_or(0, |t| t.members);
            (members, 0)
        });
        ensure!(
            number(&row[2]) == Some(members as i64),
            "members of {key:?}: {row:?} vs {members}"
        );
        match number(&row[3]) {
            Some(n) => {
                published += 1;
                ensure!(
                    n == active as i64,
                    "active users of {key:?}: {n} vs truth {active}"
                );
                ensure!(n >= K, "{key:?} published {n} < k");
                let adoption: f64 = row[5].parse()?;
                ensure!((adoption - active as f64 / members as f64).abs() < 1e-9);
            }
            None => {
                withheld += 1;
                match row[4].as_str() {
                    "below_k" => {
                        ensure!((active as i64) < K, "{key:?} withheld with {active} users")
                    }
                    "complement" => {}
                    other => anyhow::bail!("{key:?}: null active users, suppression `{other}`"),
                }
            }
        }
    }
    for (scope, month) in expected.keys() {
        ensure!(
            landed.iter().any(|r| &r[0] == scope && &r[1] == month),
            "no usage_active row for {scope} {month}"
        );
    }
    ensure!(
        published > 0 && withheld > 0,
        "published {published}, withheld {withheld}"
    );

    // Search, whole organisation per month.
    let search = rows(
        warehouse,
        "SELECT month, searches, zero_result_searches, clicked_searches, \
                CAST(mean_clicked_rank AS VARCHAR) FROM usage_search WHERE NOT suppressed ORDER BY 1",
    )
    .await?;
    ensure!(search.len() == truth.search.len(), "{search:?}");
    for (row, t) in search.iter().zip(&truth.search) {
        ensure!(row[0] == t.month);
        ensure!(
            number(&row[1]) == Some(t.searches as i64),
            "{row:?} vs {t:?}"
        );
        ensure!(
            number(&row[2]) == Some(t.zero_results as i64),
            "{row:?} vs {t:?}"
        );
        ensure!(
            number(&row[3]) == Some(t.clicked as i64),
            "{row:?} vs {t:?}"
        );
        let rank: f64 = row[4].parse()?;
        ensure!((rank - t.rank_sum as f64 / t.clicked as f64).abs() < 1e-9);
    }

    // Template runs: per month and template, the published teams plus
    // `other` are every run.
    let templates = rows(
        warehouse,
        "SELECT month, template_ref, sum(runs), sum(failed), bool_or(suppressed AND team = 'other') \
         FROM usage_templates WHERE NOT suppressed OR team = 'other' GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await?;
    ensure!(templates.len() == truth.templates.len(), "{templates:?}");
    let mut compared = 0;
    for (row, t) in templates.iter().zip(&truth.templates) {
        ensure!(
            row[0] == t.month && row[1] == t.template,
            "{row:?} vs {t:?}"
        );
        if row[4] == "false" {
            ensure!(number(&row[2]) == Some(t.runs as i64), "{row:?} vs {t:?}");
            ensure!(number(&row[3]) == Some(t.failed as i64), "{row:?} vs {t:?}");
            compared += 1;
        }
    }
    // Some month's `other` is published, or nothing above was compared.
    ensure!(
        compared > 0,
        "no template month was compared: {templates:?}"
    );

    // No published number about people counts fewer than k.
    let small = rows(
        warehouse,
        &format!(
            "SELECT 'daily', count(*) FROM usage_daily WHERE users < {K} \
             UNION ALL SELECT 'active', count(*) FROM usage_active \
               WHERE active_users < {K} OR new_users < {K} OR returning_users < {K} \
                  OR weekly_active_users < {K} OR monthly_active_users < {K} \
             UNION ALL SELECT 'features', count(*) FROM usage_features WHERE users < {K} OR new_users < {K} \
             UNION ALL SELECT 'templates', count(*) FROM usage_templates WHERE users < {K} \
             UNION ALL SELECT 'entities', count(*) FROM usage_entities WHERE viewers < {K} \
             UNION ALL SELECT 'queries', count(*) FROM usage_search_queries WHERE users < {K}"
        ),
    )
    .await?;
    for row in small {
        ensure!(row[1] == "0", "{} publishes a number below k", row[0]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_marts_equal_the_truth_where_published_and_follow_retention() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = dir.path().join("exports").display().to_string();
    let (store, root) = fathom_warehouse::WarehouseLocation::parse(&url)?
        .object_store(&fathom_warehouse::StorageOptions::default())?;
    let world = WorldConfig {
        teams: 6,
        services: 12,
        days: 60,
        ..WorldConfig::default()
    };
    let served = crate::ingest::Sim::start(
        world,
        SimOptions {
            export: Some(ExportTarget { store, root, url }),
            ..SimOptions::default()
        },
    )?;
    served.state.deliver().await?;
    let generated = served.state.world();
    let config = write_config(
        dir.path(),
        &format!(
            "[usage]\nk_anonymity = {K}\n\n\
             [[sources]]\ntype = \"backstage\"\nbase_url = \"http://{}/backstage\"\ntoken = \"{}\"\n\n\
             [[sources]]\ntype = \"portal_events\"\nlocation = \"{}\"\npseudonymize_key = \"a-test-key-of-enough-length\"\n",
            served.addr,
            fathom_sim::serve::Credentials::default().backstage_token,
            dir.path().join("exports/portal-events").display()
        ),
    )?;
    let run = |args: &[&str], env: &[(&str, String)]| -> Result<()> {
        let output = Command::new(fathom_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("FATHOM_WAREHOUSE__URL")
            .env_remove("FATHOM_STATE__DATABASE_URL")
            .output()?;
        ensure!(
            output.status.success(),
            "fathom {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    run(&["ingest"], &[])?;
    run(&["transform"], &[])?;

    let org = &generated.org;
    let adoption = fathom_sim::world::usage::team_adoption(&generated.config, org);
    let events: Vec<PortalEvent> = fathom_sim::world::cost::days(&generated.config)
        .flat_map(|date| {
            fathom_sim::world::usage::events_on(&generated.config, org, &adoption, date)
        })
        .collect();
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    let truth = usage_truth(org, &events);
    assert_marts_match(&warehouse, &truth).await?;
    serves_usage_by_role_and_team(dir.path(), org, &truth).await?;

    // Retention: keep the events of the last 20 days; the marts follow.
    let cutoff = chrono::Utc::now()
        - chrono::Duration::days(
            (chrono::Utc::now() - (generated.config.end() - chrono::Duration::days(20))).num_days(),
        );
    let days = (chrono::Utc::now() - cutoff).num_days().to_string();
    run(
        &["warehouse", "retain"],
        &[("FATHOM_USAGE__RETENTION_DAYS", days)],
    )?;
    run(&["transform"], &[])?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    // Retention cut at the command's own clock: what it kept is every
    // event from the oldest one left.
    let oldest = rows(
        &warehouse,
        "SELECT to_char(min(occurred_at), '%Y-%m-%dT%H:%M:%S%.fZ') FROM portal_events",
    )
    .await?;
    let oldest = chrono::DateTime::parse_from_rfc3339(&oldest[0][0])?;
    let kept: Vec<PortalEvent> = events
        .into_iter()
        .filter(|e| e.occurred_at >= oldest)
        .collect();
    ensure!(
        kept.len() > 100
            && kept
                .iter()
                .all(|e| e.occurred_at >= cutoff - chrono::Duration::minutes(1))
    );
    assert_marts_match(&warehouse, &usage_truth(org, &kept)).await?;
    Ok(())
}

/// The usage endpoints: the organisation's adoption equals the truth for
/// an analyst; a contractor of one team reads that team's adoption and
/// template rows, never the organisation's or another team's.
async fn serves_usage_by_role_and_team(
    dir: &std::path::Path,
    org: &fathom_sim::world::Org,
    truth: &UsageTruth,
) -> Result<()> {
    let team = org.teams.first().context("no team")?;
    let team_ref = org.team_ref(0);
    let other_team = org.team_ref(1);
    let analyst = token(dir, "analyst", "")?;
    let contractor = token(dir, "contractor", &team.name)?;
    let server = serve(dir, &[], "127.0.0.1:0")?;
    let http = reqwest::Client::new();
    let get = |path: String, secret: String| {
        let request = http
            .get(format!("{}/api/v1/usage/{path}", server.base))
            .bearer_auth(secret);
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            anyhow::Ok((status, body))
        }
    };
    let (status, body) = get("org?period=12m".to_owned(), analyst.clone()).await?;
    ensure!(status == 200, "{body}");
    let series = body["series"].as_array().context("no series")?;
    let months: Vec<&fathom_sim::truth::usage::UsageMonthTruth> =
        truth.active.iter().filter(|t| t.scope == "org").collect();
    ensure!(series.len() == months.len(), "{body}");
    for (point, t) in series.iter().zip(&months) {
        ensure!(
            point["period_start"] == format!("{}-01", t.month).as_str(),
            "{point}"
        );
        ensure!(point["active_users"] == t.active_users, "{point} vs {t:?}");
        ensure!(point["members"] == Value::from(t.members));
    }
    ensure!(
        body["latest"]["monthly_active_users"].as_u64().is_some(),
        "{body}"
    );
    let (status, body) = get("search".to_owned(), analyst.clone()).await?;
    ensure!(
        status == 200 && body["months"].as_array().map(Vec::len) == Some(truth.search.len()),
        "{body}"
    );
    let (status, body) = get("features?months=3".to_owned(), analyst.clone()).await?;
    ensure!(
        status == 200 && !body["features"].as_array().is_none_or(Vec::is_empty),
        "{body}"
    );
    let (status, body) = get("templates".to_owned(), analyst.clone()).await?;
    ensure!(
        status == 200 && !body["totals"].as_array().is_none_or(Vec::is_empty),
        "{body}"
    );
    let (status, _) = get("org?period=1x".to_owned(), analyst.clone()).await?;
    ensure!(status == 400);

    // The contractor: its team yes; the organisation, another team and
    // the organisation's breakdowns no.
    let encoded = |r: &str| r.replace(':', "%3A").replace('/', "%2F");
    let (status, body) = get(
        format!("{}?period=30d", encoded(&team_ref)),
        contractor.clone(),
    )
    .await?;
    ensure!(status == 200 && body["grain"] == "day", "{body}");
    for path in [
        "org".to_owned(),
        encoded(&other_team),
        "features".to_owned(),
        "search".to_owned(),
    ] {
        let (status, body) = get(path.clone(), contractor.clone()).await?;
        ensure!(status == 403, "{path}: {status} {body}");
    }
    let (status, body) = get("templates".to_owned(), contractor.clone()).await?;
    ensure!(status == 200, "{body}");
    let rows = body["templates"].as_array().context("no templates")?;
    ensure!(
        rows.iter().all(|r| r["team"] == team_ref.as_str()),
        "{body}"
    );
    ensure!(
        body["totals"].as_array().is_some_and(Vec::is_empty),
        "{body}"
    );
    server.terminate()
}
