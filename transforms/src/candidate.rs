//! A deployment that has not happened yet: the features `deployment_features`
//! would give a production deployment of a repository shipping some pull
//! requests (or the commits of a range) at a given instant. Computed by the
//! mart's own SQL over the warehouse with that deployment added, so a CI
//! gate or a portal page sees the numbers the risk model was trained on —
//! no second definition of any feature.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use fathom_warehouse::query::text_rows;

use crate::incremental::{Affected, restrict_to_components};
use crate::{Error, Parameters, Result, compute, marts};

/// The id the hypothetical deployment carries.
pub const CANDIDATE_ID: &str = "candidate:now";

/// What the deployment would ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These pull requests of the repository (merged or not).
    PullRequests(Vec<i64>),
    /// The commits after `from` up to and including `to` on the default
    /// branch (as `commits` orders them by commit time): their pull
    /// requests, and the commits pushed without one.
    Commits {
        /// The revision production runs (exclusive).
        from: String,
        /// The revision to deploy (inclusive).
        to: String,
    },
}

/// The features of the hypothetical deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The component it would deploy (the one the repository's production
    /// deployments deploy most), if known.
    pub entity_ref: Option<String>,
    /// Its production environment.
    pub environment: String,
    /// The changes it would ship (`pr:…`, `push:…`).
    pub changes: Vec<String>,
    /// Every column of its `deployment_features` row as text (booleans
    /// `true`/`false`; empty when null).
    pub columns: BTreeMap<String, String>,
}

impl Candidate {
    /// A column as a number (booleans 0/1); `None` when null.
    pub fn number(&self, column: &str) -> Option<f64> {
        match self.columns.get(column).map(String::as_str) {
            Some("true") => Some(1.0),
            Some("false") => Some(0.0),
            Some(text) => text.parse().ok(),
            None => None,
        }
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn texts(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<String>>> {
    let sql_error = |source| Error::Sql {
        mart: "deployment_features",
        source,
    };
    let batches = ctx
        .sql(sql)
        .await
        .map_err(sql_error)?
        .collect()
        .await
        .map_err(sql_error)?;
    text_rows(&batches).map_err(|e| Error::Declaration(e.to_string()))
}

/// Replaces table `name` in `ctx` by its rows and the rows of `extra` (a
/// query giving some of its columns by name; the rest are null), each cast
/// to the table's own type.
async fn with_rows(
    ctx: &SessionContext,
    name: &str,
    extra: &BTreeMap<&str, String>,
    from: &str,
) -> Result<()> {
    let sql_error = |source| Error::Sql {
        mart: "deployment_features",
        source,
    };
    let provider = ctx.table_provider(name).await.map_err(sql_error)?;
    let schema = provider.schema();
    // Each addition stacks on the previous one.
    let mut n = 0;
    while ctx
        .table_exist(format!("{name}__base{n}").as_str())
        .map_err(sql_error)?
    {
        n += 1;
    }
    let base = format!("{name}__base{n}");
    ctx.deregister_table(name).map_err(sql_error)?;
    ctx.register_table(base.as_str(), provider)
        .map_err(sql_error)?;
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|field| match extra.get(field.name().as_str()) {
            // Given values are scalars, cast to the column's exact type; a
            // bare NULL takes any type in the union (lists included, whose
            // type has no text form to cast to).
            Some(value) => format!(
                "arrow_cast({value}, '{}') AS {}",
                field.data_type(),
                field.name()
            ),
            None => format!("NULL AS {}", field.name()),
        })
        .collect();
    let view = ctx
        .sql(&format!(
            "SELECT * FROM {base} UNION ALL SELECT {} FROM {from}",
            columns.join(", ")
        ))
        .await
        .map_err(sql_error)?
        .into_view();
    ctx.register_table(name, view).map_err(sql_error)?;
    Ok(())
}

/// The features of a production deployment of `repository` shipping
/// `selection` at `at`, over the warehouse tables of `ctx` (an analyst
/// session; its tables are replaced by views for the computation).
pub async fn candidate(
    ctx: &SessionContext,
    repository: &str,
    selection: &Selection,
    at: DateTime<Utc>,
) -> Result<Candidate> {
    let repo = quoted(repository);
    let not_found = Error::NotFound;
    // What it ships: pull requests, and commits pushed without one.
    let (pulls, pushes): (Vec<i64>, Vec<String>) = match selection {
        Selection::PullRequests(numbers) => {
            let listed = numbers
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let found: BTreeSet<i64> = texts(
                ctx,
                &format!(
                    "SELECT CAST(number AS VARCHAR) FROM pull_requests \
                     WHERE repository_id = {repo} AND number IN ({listed})"
                ),
            )
            .await?
            .iter()
            .filter_map(|r| r.first().and_then(|n| n.parse().ok()))
            .collect();
            let missing: Vec<String> = numbers
                .iter()
                .filter(|n| !found.contains(n))
                .map(|n| format!("#{n}"))
                .collect();
            if !missing.is_empty() {
                return Err(not_found(format!(
                    "no pull request {} in `{repository}`",
                    missing.join(", ")
                )));
            }
            (found.into_iter().collect(), Vec::new())
        }
        Selection::Commits { from, to } => {
            let bounds = texts(
                ctx,
                &format!(
                    "SELECT sha FROM commits WHERE repository_id = {repo} AND sha IN ({}, {})",
                    quoted(from),
                    quoted(to)
                ),
            )
            .await?;
            for sha in [from, to] {
                if !bounds.iter().any(|r| r.first() == Some(sha)) {
                    return Err(not_found(format!("no commit `{sha}` in `{repository}`")));
                }
            }
            let rows = texts(
                ctx,
                &format!(
                    "WITH b AS (SELECT max(CASE WHEN sha = {f} THEN committed_at END) AS low, \
                                       max(CASE WHEN sha = {t} THEN committed_at END) AS high \
                                FROM commits WHERE repository_id = {repo}) \
                     SELECT c.sha, CAST(coalesce(c.pull_request_number, min(pc.pull_request_number)) AS VARCHAR) \
                     FROM commits c CROSS JOIN b \
                     LEFT JOIN pull_request_commits pc ON pc.repository_id = c.repository_id AND pc.sha = c.sha \
                     WHERE c.repository_id = {repo} AND c.committed_at > b.low AND c.committed_at <= b.high \
                     GROUP BY c.sha, c.pull_request_number",
                    f = quoted(from),
                    t = quoted(to)
                ),
            )
            .await?;
            let mut pulls = BTreeSet::new();
            let mut pushes = Vec::new();
            for row in rows {
                match row.get(1).and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) => {
                        pulls.insert(n);
                    }
                    None => pushes.extend(row.first().cloned()),
                }
            }
            (pulls.into_iter().collect(), pushes)
        }
    };
    if pulls.is_empty() && pushes.is_empty() {
        return Err(not_found(format!(
            "nothing to ship: the selection holds no change of `{repository}`"
        )));
    }
    // The component and environment its production deployments go to.
    let target = texts(
        ctx,
        &format!(
            "SELECT d.entity_ref, d.environment, count(*) AS n FROM dora_deployments d \
             JOIN deployments x ON x.deployment_id = d.deployment_id \
             WHERE x.repository_id = {repo} AND d.completed AND d.entity_ref IS NOT NULL \
             GROUP BY d.entity_ref, d.environment ORDER BY n DESC, d.entity_ref, d.environment LIMIT 1"
        ),
    )
    .await?;
    let (entity, environment) = match target.first() {
        Some(row) => (
            row.first().cloned().filter(|e| !e.is_empty()),
            row.get(1)
                .cloned()
                .unwrap_or_else(|| "production".to_owned()),
        ),
        None => (None, "production".to_owned()),
    };
    let affected = Affected {
        components: entity.iter().cloned().collect(),
        unattributed: entity.is_none(),
        repositories: BTreeSet::from([repository.to_owned()]),
        broad: false,
    };
    let mart = marts::named("deployment_features")
        .ok_or_else(|| Error::Declaration("no deployment_features mart".to_owned()))?;
    restrict_to_components(ctx, mart, &affected).await?;
    let id = quoted(CANDIDATE_ID);
    let entity_sql = entity.as_deref().map_or_else(|| "NULL".to_owned(), quoted);
    let at_sql = format!("to_timestamp({})", quoted(&at.to_rfc3339()));
    let changes: Vec<String> = pulls
        .iter()
        .map(|n| format!("pr:{repository}#{n}"))
        .chain(pushes.iter().map(|sha| format!("push:{repository}@{sha}")))
        .collect();
    with_rows(
        ctx,
        "dora_deployments",
        &BTreeMap::from([
            ("deployment_id", id.clone()),
            ("entity_ref", entity_sql.clone()),
            ("environment", quoted(&environment)),
            ("source", "'candidate'".to_owned()),
            ("started_at", at_sql.clone()),
            ("finished_at", at_sql.clone()),
            ("completed", "true".to_owned()),
            ("is_baseline", "false".to_owned()),
            ("is_rollback", "false".to_owned()),
            ("change_count", changes.len().to_string()),
            ("rolled_back", "false".to_owned()),
        ]),
        "(SELECT 1 AS one) one",
    )
    .await?;
    // `column IN (…)`, or false for an empty list (the engine (55) reads
    // `x IN (NULL)` as true).
    let among = |column: &str, items: Vec<String>| {
        if items.is_empty() {
            "false".to_owned()
        } else {
            format!("{column} IN ({})", items.join(", "))
        }
    };
    let pull_items: Vec<String> = pulls.iter().map(i64::to_string).collect();
    let push_items: Vec<String> = pushes.iter().map(|s| quoted(s)).collect();
    // Its changes: the pull requests (first review by someone else, as the
    // change mart takes it) and the pushes.
    with_rows(
        ctx,
        "dora_changes",
        &BTreeMap::from([
            (
                "change_id",
                "'pr:' || p.repository_id || '#' || CAST(p.number AS VARCHAR)".to_owned(),
            ),
            ("entity_ref", entity_sql.clone()),
            ("kind", "'pull_request'".to_owned()),
            ("repository_id", "p.repository_id".to_owned()),
            ("pull_request_number", "p.number".to_owned()),
            ("first_commit_at", "p.first_commit_at".to_owned()),
            ("opened_at", "p.created_at".to_owned()),
            (
                "first_review_at",
                "coalesce(p.first_review_at, r.first_review_at)".to_owned(),
            ),
            ("merged_at", "p.merged_at".to_owned()),
            ("deployment_id", id.clone()),
            ("environment", quoted(&environment)),
            ("lead_time_anomaly", "false".to_owned()),
        ]),
        &format!(
            "pull_requests p LEFT JOIN ( \
                 SELECT v.repository_id, v.pull_request_number, min(v.submitted_at) AS first_review_at \
                 FROM pull_request_reviews v JOIN pull_requests q \
                   ON q.repository_id = v.repository_id AND q.number = v.pull_request_number \
                 WHERE v.reviewer_login IS NULL OR q.author_login IS NULL OR v.reviewer_login <> q.author_login \
                 GROUP BY v.repository_id, v.pull_request_number) r \
               ON r.repository_id = p.repository_id AND r.pull_request_number = p.number \
             WHERE p.repository_id = {repo} AND {}",
            among("p.number", pull_items.clone())
        ),
    )
    .await?;
    with_rows(
        ctx,
        "dora_changes",
        &BTreeMap::from([
            (
                "change_id",
                "'push:' || c.repository_id || '@' || c.sha".to_owned(),
            ),
            ("entity_ref", entity_sql),
            ("kind", "'push'".to_owned()),
            ("repository_id", "c.repository_id".to_owned()),
            ("sha", "c.sha".to_owned()),
            ("first_commit_at", "c.authored_at".to_owned()),
            ("deployment_id", id.clone()),
            ("environment", quoted(&environment)),
            ("lead_time_anomaly", "false".to_owned()),
        ]),
        &format!(
            "commits c WHERE c.repository_id = {repo} AND {}",
            among("c.sha", push_items.clone())
        ),
    )
    .await?;
    // The commits it delivers, for the spread over files.
    with_rows(
        ctx,
        "deployment_changes",
        &BTreeMap::from([
            ("deployment_id", id.clone()),
            ("sha", "s.sha".to_owned()),
            ("repository_id", repo.clone()),
        ]),
        &format!(
            "(SELECT sha FROM pull_request_commits WHERE repository_id = {repo} AND {} \
              UNION SELECT merge_commit_sha AS sha FROM pull_requests WHERE repository_id = {repo} \
                 AND {} AND merge_commit_sha IS NOT NULL \
              UNION SELECT sha FROM commits WHERE repository_id = {repo} AND {}) s",
            among("pull_request_number", pull_items.clone()),
            among("number", pull_items),
            among("sha", push_items)
        ),
    )
    .await?;
    let batches = compute(ctx, mart, &Parameters::default(), at).await?;
    let names: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let row = text_rows(&batches)
        .map_err(|e| Error::Declaration(e.to_string()))?
        .into_iter()
        .find(|r| r.first().map(String::as_str) == Some(CANDIDATE_ID))
        .ok_or_else(|| Error::Declaration("the candidate deployment got no features".to_owned()))?;
    Ok(Candidate {
        entity_ref: entity,
        environment,
        changes,
        columns: names.into_iter().zip(row).collect(),
    })
}
