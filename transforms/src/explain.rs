//! `fathom explain dora`: the rows behind a stored metric, as SQL over the
//! marts, so the rows add up to the number shown.

use chrono::NaiveDate;

use crate::{Error, Result};

/// A metric `fathom explain dora` can trace to its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainedMetric {
    /// Deployments, deploy days, frequency: the completed deployments.
    Deployments,
    /// Lead time: the changes deployed in the window.
    LeadTime,
    /// Change failure rate: the completed deployments, failed first.
    ChangeFailureRate,
    /// Failed deployment recovery: the failed deployments.
    Recovery,
    /// Time to restore: the incidents started in the window.
    TimeToRestore,
    /// Rework rate: the completed deployments, rework first.
    Rework,
}

impl std::str::FromStr for ExplainedMetric {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "deployments" | "deployment_frequency" | "deploy_days" => Self::Deployments,
            "lead_time" => Self::LeadTime,
            "change_failure_rate" | "cfr" => Self::ChangeFailureRate,
            "recovery" | "failed_deployment_recovery" => Self::Recovery,
            "time_to_restore" => Self::TimeToRestore,
            "rework" | "rework_rate" => Self::Rework,
            other => {
                return Err(Error::Parameter {
                    name: "metric",
                    message: format!(
                        "`{other}` is not one of deployments, lead_time, change_failure_rate, recovery, time_to_restore, rework"
                    ),
                });
            }
        })
    }
}

/// The query listing the rows behind `metric` of `scope` over the window of
/// `window_days` in `environment` (`all` or one production environment)
/// that `dora_metrics` holds (same members, same window end, same
/// environment rule), so the rows add up to the stored number.
pub fn explain_sql(
    scope: &str,
    metric: ExplainedMetric,
    window_days: u32,
    environment: &str,
) -> String {
    let quoted_scope = scope.replace('\'', "''");
    let window = format!(
        "(SELECT as_of - INTERVAL '{window_days} days' AS window_start, as_of AS window_end \
         FROM dora_metrics WHERE scope = '{quoted_scope}' AND window_days = {window_days} \
         AND environment = 'all')"
    );
    explain_in(scope, metric, &window, environment)
}

/// The rows behind one calendar period of `dora_trends` (a week or a
/// month): the same rows as [`explain_sql`], in `[start, end)` instead of
/// a rolling window. The bounds are dates (`YYYY-MM-DD`, UTC midnight).
pub fn explain_period_sql(
    scope: &str,
    metric: ExplainedMetric,
    start: NaiveDate,
    end: NaiveDate,
    environment: &str,
) -> String {
    // Dates are formatted here, never passed through: nothing else reaches
    // the SQL text.
    let window = format!(
        "(SELECT CAST('{start}' AS TIMESTAMP) AS window_start, CAST('{end}' AS TIMESTAMP) AS window_end)"
    );
    explain_in(scope, metric, &window, environment)
}

fn explain_in(scope: &str, metric: ExplainedMetric, window: &str, environment: &str) -> String {
    let scope = scope.replace('\'', "''");
    let env = environment.replace('\'', "''");
    let members = format!("(SELECT entity_ref FROM dora_scope_members WHERE scope = '{scope}')");
    let in_env = |alias: &str| {
        if environment == "all" {
            String::new()
        } else {
            format!(" AND {alias}.environment = '{env}'")
        }
    };
    let deployments = |filter: &str, order: &str| {
        format!(
            "SELECT d.deployment_id, d.entity_ref, d.environment, d.finished_at, d.failed, \
             d.rolled_back, array_to_string(d.incident_ids, ' ') AS incident_ids, d.recovery_seconds, d.rework, d.change_count \
             FROM dora_deployments d CROSS JOIN {window} w \
             WHERE d.completed AND d.entity_ref IN {members}{} \
             AND d.finished_at >= w.window_start AND d.finished_at < w.window_end{filter} \
             ORDER BY {order}d.finished_at, d.deployment_id",
            in_env("d")
        )
    };
    // An environment's incidents are those linked to its deployments.
    let linked = if environment == "all" {
        String::new()
    } else {
        format!(
            " AND i.incident_id IN (SELECT incident_id FROM (SELECT unnest(incident_ids) AS incident_id \
             FROM dora_deployments WHERE completed AND environment = '{env}') linked)"
        )
    };
    match metric {
        ExplainedMetric::Deployments => deployments("", ""),
        ExplainedMetric::ChangeFailureRate => deployments("", "d.failed DESC, "),
        ExplainedMetric::Recovery => deployments(" AND d.failed", "d.recovery_seconds, "),
        ExplainedMetric::Rework => deployments("", "d.rework DESC, "),
        ExplainedMetric::LeadTime => format!(
            "SELECT c.change_id, c.entity_ref, c.kind, c.deployment_id, c.environment, c.first_commit_at, c.deployed_at, \
             c.lead_time_seconds, c.coding_seconds, c.pickup_seconds, c.review_seconds, c.deploy_seconds \
             FROM dora_changes c CROSS JOIN {window} w \
             WHERE c.entity_ref IN {members}{} \
             AND c.deployed_at >= w.window_start AND c.deployed_at < w.window_end \
             ORDER BY c.lead_time_seconds, c.change_id",
            in_env("c")
        ),
        ExplainedMetric::TimeToRestore => format!(
            "SELECT i.incident_id, i.entity_ref, i.title, i.created_at, i.resolved_at, \
             CAST(date_part('epoch', i.resolved_at) - date_part('epoch', i.created_at) AS DOUBLE) AS restore_seconds \
             FROM incidents i CROSS JOIN {window} w \
             WHERE i.entity_ref IN {members} AND i.resolved_at IS NOT NULL{linked} \
             AND i.created_at >= w.window_start AND i.created_at < w.window_end \
             ORDER BY restore_seconds, i.incident_id"
        ),
    }
}
