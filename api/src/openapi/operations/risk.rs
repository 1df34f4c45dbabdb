//! The `risk` operations: deployment risk scores and the factors behind
//! them.

use super::super::{In, Operation, Param};
use super::LIMIT;

pub(super) const OPERATIONS: &[Operation] = &[
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
        params: &[Param {
            name: "id",
            location: In::Path,
            required: true,
            description: "A `deployment_id` (URL-encoded).",
            schema: r#"{"type": "string"}"#,
        }],
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
