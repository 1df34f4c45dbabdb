//! The `risk` operations: deployment risk scores and the factors behind
//! them.

use super::super::{In, Operation, Param};
use super::{JSON, LIMIT};

/// A deployment in the path.
const ID: Param = Param {
    name: "id",
    location: In::Path,
    required: true,
    description: "A `deployment_id` (URL-encoded).",
    schema: r#"{"type": "string"}"#,
};

pub(super) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/api/v1/deployments/{id}/signals",
        tag: "risk",
        summary: "What followed a deployment",
        description: "The deployment's signals from `deployment_signals`: new error-tracker issues first seen in the 24 hours after it (before the next deployment), the project's error events, the service's error rate and p95 latency a day — each with the usual value (median of the 14 days before), the value after, the same weekday a week before, a robust score and a verdict — and `suspect`: a new issue timed to the deployment came with a significant jump in the project's events. Kept apart from DORA's incident links. Any role; the deployment's component must be within the caller's teams.",
        authenticated: true,
        params: &[ID],
        body: None,
        responses: &[
            (
                200,
                "`deployment_id`, `entity_ref`, `finished_at`, `suspect`, `signals`.",
            ),
            (
                403,
                "The deployment's component is outside the caller's teams.",
            ),
            (
                404,
                "No signals (no such completed production deployment of a component).",
            ),
        ],
    },
    Operation {
        method: "post",
        path: "/api/v1/risk/score",
        tag: "risk",
        summary: "The risk of a deployment not made yet",
        description: "For portal pages and CI gates: the probability that deploying some pull requests (`pull_requests`) — or the commits after `from` up to `to` — of `repository` to production now (or at `at`) fails, with the newest risk model. The features are computed by `deployment_features`' own SQL as if the deployment had happened (history as the warehouse holds it now), so they mean what the model was trained on. Returns the component and environment it would deploy, the changes, `probability`, `flagged` (at or above the model's `threshold`), the three factors that raised it most (`reasons` in words, `factors` with contributions to the log-odds) and every feature. Any role; the repository's component must be within the caller's teams.",
        authenticated: true,
        params: &[],
        body: Some((
            JSON,
            r#"{"type": "object", "required": ["repository"], "properties": {"repository": {"type": "string", "description": "Repository id as the warehouse holds it (`owner/name`)."}, "pull_requests": {"type": "array", "items": {"type": "integer"}, "maxItems": 500}, "from": {"type": "string", "description": "The revision production runs (exclusive)."}, "to": {"type": "string", "description": "The revision to deploy (inclusive)."}, "at": {"type": "string", "format": "date-time", "description": "When the deployment would start. Default: now."}}}"#,
        )),
        responses: &[
            (
                200,
                "`repository`, `entity_ref`, `environment`, `at`, `changes`, `model_version`, `probability`, `flagged`, `threshold`, `reasons`, `factors`, `features`.",
            ),
            (
                400,
                "Neither pull requests nor a commit range, or a malformed body.",
            ),
            (
                403,
                "The repository's component is outside the caller's teams.",
            ),
            (
                404,
                "No model trained yet, or a pull request or commit the warehouse does not hold.",
            ),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/risk/deployments",
        tag: "risk",
        summary: "Riskiest recent deployments",
        description: "Production deployments that started in the last `days` before the newest scored one, riskiest first, from `deployment_risk` (the newest model's scores, `fathom ml risk`): probability of failure, whether it is flagged (at or above the model's operating threshold), the three factors that raised it most in words and numbers, and what happened once known. With the model's version, training time, rows and backtest AUC. Any role; team-limited callers see their teams' components only.",
        authenticated: true,
        params: &[
            Param {
                name: "scope",
                location: In::Query,
                required: false,
                description: "An entity ref or `org`: the scope's deployments and those of its components. Default: every readable scope.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "days",
                location: In::Query,
                required: false,
                description: "How far back (1–366). Default 30.",
                schema: r#"{"type": "integer", "minimum": 1, "maximum": 366, "default": 30}"#,
            },
            Param {
                description: "Rows (1–500). Default 20.",
                schema: r#"{"type": "integer", "minimum": 1, "maximum": 500, "default": 20}"#,
                ..LIMIT
            },
        ],
        body: None,
        responses: &[
            (200, "`days`, `model`, `deployments`."),
            (400, "Bad filter."),
            (403, "A scope outside the caller's teams."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/risk/deployments/{id}",
        tag: "risk",
        summary: "A deployment's risk and its factors",
        description: "The deployment's risk score (`risk`: probability, flagged, model version, reasons, factors with their contribution to the log-odds, outcome once known) and every feature it was computed from (`features`: `deployment_features`, as known when it started).",
        authenticated: true,
        params: &[ID],
        body: None,
        responses: &[
            (200, "`risk`, `features`."),
            (
                403,
                "The deployment's component is outside the caller's teams.",
            ),
            (404, "Not scored (no such deployment, or no features yet)."),
        ],
    },
];
