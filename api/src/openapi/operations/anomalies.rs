//! The `anomalies` operations: what `fathom detect` found, and feedback on it.

use super::super::{In, Operation, Param};
use super::{JSON, LIMIT};

const ID: Param = Param {
    name: "id",
    location: In::Path,
    required: true,
    description: "An `anomaly_id` from the list (stable across re-scoring).",
    schema: r#"{"type": "string"}"#,
};

pub(super) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/api/v1/anomalies",
        tag: "anomalies",
        summary: "Anomalies of cost and operational series",
        description: "Anomalies (from `anomalies`) overlapping `from`–`to` (default: the 90 days to the newest scored day): open first, then cost by dollars of impact, then the rest by impact relative to the expected; each with the newest feedback verdict. Any role for operational series; cost anomalies only for the cost-viewer, analyst and admin roles (left out for the others). Team-limited callers see their teams, sub-teams and components only. `total` counts every match, `anomalies` the first `limit`.",
        authenticated: true,
        params: &[
            Param {
                name: "scope",
                location: In::Query,
                required: false,
                description: "An entity ref or `org`: the scope's own series and those of its components. Default: every readable scope.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "kind",
                location: In::Query,
                required: false,
                description: "Only this kind.",
                schema: r#"{"type": "string", "enum": ["spike", "drop", "level_shift", "trend"]}"#,
            },
            Param {
                name: "status",
                location: In::Query,
                required: false,
                description: "open, closed or all (default).",
                schema: r#"{"type": "string", "enum": ["open", "closed", "all"], "default": "all"}"#,
            },
            Param {
                name: "metric",
                location: In::Query,
                required: false,
                description: "Only this series measure: cost, requests, error_rate, latency_p95_seconds, cpu_usage_cores, memory_usage_bytes, error_events.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "from",
                location: In::Query,
                required: false,
                description: "First day (YYYY-MM-DD).",
                schema: r#"{"type": "string", "format": "date"}"#,
            },
            Param {
                name: "to",
                location: In::Query,
                required: false,
                description: "Last day (YYYY-MM-DD).",
                schema: r#"{"type": "string", "format": "date"}"#,
            },
            LIMIT,
        ],
        body: None,
        responses: &[
            (200, "`from`, `to`, `total`, `anomalies`."),
            (400, "Bad filter."),
            (
                403,
                "A scope outside the caller's teams, or cost without a cost role.",
            ),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/anomalies/{id}",
        tag: "anomalies",
        summary: "One anomaly against its baseline",
        description: "The anomaly; `series`: its series from four weeks before to two weeks after, each day with value, expected, band and score; `drivers`: every sub-series' contribution (they sum to the impact); `candidate_deployments`: production deployments finished in the 48 hours before its first day or on it — the component's own first, then those of the components it depends on (catalog dependsOn), failed ones first, then the latest (a group's: its components'); `feedback`: the verdicts given. Same access rules as the list.",
        authenticated: true,
        params: &[ID],
        body: None,
        responses: &[
            (
                200,
                "`anomaly`, `drivers`, `series`, `candidate_deployments`, `feedback`.",
            ),
            (
                403,
                "Outside the caller's teams, or cost without a cost role.",
            ),
            (404, "No such anomaly."),
        ],
    },
    Operation {
        method: "post",
        path: "/api/v1/anomalies/{id}/feedback",
        tag: "anomalies",
        summary: "Say whether an anomaly was real",
        description: "Cost viewers, analysts and admins who may read the anomaly. `verdict`: yes (a real anomaly), no (a false alarm) or planned (planned activity: a migration, a load test); an optional `note` (≤ 2,000 characters). Kept as a history (the newest verdict counts), audited as `anomaly.feedback`; `fathom ml feedback` reports precision from it per month.",
        authenticated: true,
        params: &[ID],
        body: Some((
            JSON,
            r#"{"type": "object", "required": ["verdict"], "properties": {"verdict": {"type": "string", "enum": ["yes", "no", "planned"]}, "note": {"type": "string"}}}"#,
        )),
        responses: &[
            (200, "The stored verdict."),
            (400, "Bad verdict or note."),
            (
                403,
                "Not a cost viewer, analyst or admin, or an anomaly the caller may not read.",
            ),
            (404, "No such anomaly."),
        ],
    },
];
