//! The `usage` operations: Portal usage analytics.

use super::super::{In, Operation, Param};
use super::{JSON, SCOPE};

pub(super) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/api/v1/usage/{scope}",
        tag: "usage",
        summary: "Portal adoption of a group (with its sub-groups) or the organisation",
        description: "`series` (from `usage_active`, per day or calendar month over `from`–`to`: members, active users, new and returning users, adoption, stickiness; day rows also the 7- and 30-day rolling counts), `latest` (the newest day), `top_plugins` (events of the scope's teams' published rows of `usage_daily`, most first). Numbers about fewer than `[usage] k_anonymity` people are null with `suppressed` true. A caller limited to teams reads its own groups only.",
        authenticated: true,
        params: &[
            SCOPE,
            Param {
                name: "period",
                location: In::Query,
                required: false,
                description: "Days (`90d`, day rows) or calendar months (`12m`, month rows) back from the newest day of usage. Default 12m.",
                schema: r#"{"type": "string", "pattern": "^[0-9]+[dm]$"}"#,
            },
        ],
        body: None,
        responses: &[
            (200, "`latest`, `series`, `top_plugins`."),
            (400, "Bad parameter, or not a group."),
            (403, "Outside the caller's teams."),
            (404, "No such scope, or no usage computed yet."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/usage/features",
        tag: "usage",
        summary: "Use of each plugin and feature per month",
        description: "`features` (from `usage_features`): events, users, teams, users new to the feature and their week-4 retention, per month, plugin and feature. Not for callers limited to teams.",
        authenticated: true,
        params: &[Param {
            name: "months",
            location: In::Query,
            required: false,
            description: "Calendar months back from the newest day of usage, 1–36. Default 6.",
            schema: r#"{"type": "integer", "minimum": 1, "maximum": 36, "default": 6}"#,
        }],
        body: None,
        responses: &[
            (200, "`features`."),
            (400, "Bad parameter."),
            (403, "A caller limited to teams."),
            (404, "No usage computed yet."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/usage/search",
        tag: "usage",
        summary: "Search success per month and the queries left without a click",
        description: "`months` (from `usage_search`: searches, users, sessions, zero-result rate, clicked searches, success rate, mean clicked rank) and `unclicked_queries` (the newest month's queries most often searched without a click; only queries at least k people typed are stored). Not for callers limited to teams.",
        authenticated: true,
        params: &[Param {
            name: "months",
            location: In::Query,
            required: false,
            description: "Calendar months back from the newest day of usage, 1–36. Default 6.",
            schema: r#"{"type": "integer", "minimum": 1, "maximum": 36, "default": 6}"#,
        }],
        body: None,
        responses: &[
            (200, "`months`, `unclicked_queries`."),
            (400, "Bad parameter."),
            (403, "A caller limited to teams."),
            (404, "No usage computed yet."),
        ],
    },
    Operation {
        method: "post",
        path: "/api/v1/usage/page-views",
        tag: "usage",
        summary: "Record a view of a dashboard page",
        description: "Body `{\"page\": \"adoption\", \"path\": \"/adoption\"}`: lands one portal event of plugin `fathom` (action `navigate`, the path without its query, the caller's identity hashed at intake), so the usage marts count Fathom's own adoption. The dashboards send it on every page they draw unless `[api] report_page_views` is false; without a `portal_events` source nothing is recorded.",
        authenticated: true,
        params: &[],
        body: Some((
            JSON,
            r#"{"type": "object", "required": ["page"], "properties": {"page": {"type": "string"}, "path": {"type": "string"}}}"#,
        )),
        responses: &[
            (202, "`recorded`: whether the view landed."),
            (400, "Not a dashboard page, or a malformed body."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/usage/templates",
        tag: "usage",
        summary: "Template runs, outcomes and time saved",
        description: "`templates` (from `usage_templates`: runs, succeeded, failed, unknown outcome, users and minutes saved per month, template and team; withheld teams pooled into `other`) and `totals` per template. A caller limited to teams gets its teams' rows only, without `other` and totals.",
        authenticated: true,
        params: &[Param {
            name: "months",
            location: In::Query,
            required: false,
            description: "Calendar months back from the newest day of usage, 1–36. Default 6.",
            schema: r#"{"type": "integer", "minimum": 1, "maximum": 36, "default": 6}"#,
        }],
        body: None,
        responses: &[
            (200, "`templates`, `totals`."),
            (400, "Bad parameter."),
            (404, "No usage computed yet."),
        ],
    },
];
