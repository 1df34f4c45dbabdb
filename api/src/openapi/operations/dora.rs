//! The `dora` operations: DORA metrics and deployments.

use super::super::{In, Operation, Param};
use super::{BENCHMARK, CURSOR, ENV, LIMIT, SCOPE, WINDOW};

pub(super) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/api/v1/dora/{scope}",
        tag: "dora",
        summary: "The five DORA keys of a scope",
        description: "Counts, metrics and tiers for one scope, window and environment. `ETag`; `If-None-Match` answers 304.",
        authenticated: true,
        params: &[SCOPE, WINDOW, ENV, BENCHMARK],
        body: None,
        responses: &[
            (
                200,
                "`counts`, `metrics`, `benchmark`, `tiers`, `window_start`, `as_of`.",
            ),
            (304, "Unchanged since the `ETag` sent."),
            (400, "Bad ref, window or benchmark."),
            (403, "Outside the caller's teams."),
            (404, "No metrics for the scope."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/dora/{scope}/trend",
        tag: "dora",
        summary: "DORA per calendar week or month",
        description: "`points`, oldest first.",
        authenticated: true,
        params: &[
            SCOPE,
            ENV,
            Param {
                name: "interval",
                location: In::Query,
                required: false,
                description: "Calendar weeks (Monday, UTC) or months. Default week.",
                schema: r#"{"type": "string", "enum": ["week", "month"], "default": "week"}"#,
            },
        ],
        body: None,
        responses: &[
            (200, "`points`."),
            (400, "Bad parameter."),
            (403, "Outside the caller's teams."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/dora/{scope}/{rows}",
        tag: "dora",
        summary: "The deployments, changes or incidents behind the numbers",
        description: "Paginated drill-down with keyset cursors: `items` and `next_cursor` (absent on the last page).",
        authenticated: true,
        params: &[
            SCOPE,
            Param {
                name: "rows",
                location: In::Path,
                required: true,
                description: "Which rows.",
                schema: r#"{"type": "string", "enum": ["deployments", "changes", "failed_deployments", "incidents"]}"#,
            },
            WINDOW,
            ENV,
            Param {
                name: "from",
                location: In::Query,
                required: false,
                description: "With `to`: the rows of a calendar period (a trend point) instead of the window; a date, inclusive.",
                schema: r#"{"type": "string", "format": "date"}"#,
            },
            Param {
                name: "to",
                location: In::Query,
                required: false,
                description: "With `from`: the end of the period, exclusive.",
                schema: r#"{"type": "string", "format": "date"}"#,
            },
            LIMIT,
            CURSOR,
        ],
        body: None,
        responses: &[
            (200, "`items`, `next_cursor`."),
            (400, "Bad parameter or cursor."),
            (403, "Outside the caller's teams."),
        ],
    },
];
