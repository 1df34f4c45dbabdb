//! The OpenAPI 3.1 document of the API (`/api/v1/openapi.json`) and its
//! browsable page (`/api/v1/docs`, self-contained: no CDN, works offline).
//!
//! The document is generated from [`OPERATIONS`], the table of every
//! route the router serves; a test sends each of them to the router, so an
//! operation documented but not routed fails the build, and the router's
//! fallback answer names the table for the reverse mistake.

use serde_json::{Map, Value, json};

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// In the path template.
    Path,
    /// In the query string.
    Query,
    /// A request header.
    Header,
}

/// One parameter of an operation.
#[derive(Debug)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Where it goes.
    pub location: In,
    /// Whether it must be sent.
    pub required: bool,
    /// What it means.
    pub description: &'static str,
    /// Its JSON Schema, as JSON text.
    pub schema: &'static str,
}

/// One operation (method + path).
#[derive(Debug)]
pub struct Operation {
    /// `get` or `post`.
    pub method: &'static str,
    /// The path template, `{name}` for path parameters.
    pub path: &'static str,
    /// Group in the docs.
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Details, including who may call it.
    pub description: &'static str,
    /// Whether a bearer credential is needed.
    pub authenticated: bool,
    /// Parameters.
    pub params: &'static [Param],
    /// Request body: content type and JSON Schema text.
    pub body: Option<(&'static str, &'static str)>,
    /// Answers: status and what it means.
    pub responses: &'static [(u16, &'static str)],
}

const SCOPE: Param = Param {
    name: "scope",
    location: In::Path,
    required: true,
    description: "A URL-encoded entity ref (`component%3Adefault%2Fpayments-api`, `group%3Adefault%2Fpayments`) or `org`.",
    schema: r#"{"type": "string"}"#,
};
const WINDOW: Param = Param {
    name: "window",
    location: In::Query,
    required: false,
    description: "The window ending at the marts' as-of date. Default 30d.",
    schema: r#"{"type": "string", "enum": ["7d", "30d", "90d", "365d"], "default": "30d"}"#,
};
const ENV: Param = Param {
    name: "env",
    location: In::Query,
    required: false,
    description: "`all` (every production environment) or one production environment. Default all.",
    schema: r#"{"type": "string", "default": "all"}"#,
};
const BENCHMARK: Param = Param {
    name: "benchmark",
    location: In::Query,
    required: false,
    description: "Re-tier the stored numbers with another benchmark table. Default: the configured one.",
    schema: r#"{"type": "string", "enum": ["dora-2021", "dora-2023", "dora-2024"]}"#,
};
const LIMIT: Param = Param {
    name: "limit",
    location: In::Query,
    required: false,
    description: "Rows per page (1–500). Default 50.",
    schema: r#"{"type": "integer", "minimum": 1, "maximum": 500, "default": 50}"#,
};
const CURSOR: Param = Param {
    name: "cursor",
    location: In::Query,
    required: false,
    description: "`next_cursor` of the previous page.",
    schema: r#"{"type": "string"}"#,
};
const DELIVERY: Param = Param {
    name: "X-Delivery-Id",
    location: In::Header,
    required: false,
    description: "Makes the delivery idempotent: one already applied is answered `{\"duplicate\": true}`.",
    schema: r#"{"type": "string"}"#,
};

const JSON: &str = "application/json";

/// Every operation the router serves.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/healthz",
        tag: "operations",
        summary: "Liveness",
        description: "Answers `ok` while the process runs.",
        authenticated: false,
        params: &[],
        body: None,
        responses: &[(200, "Alive.")],
    },
    Operation {
        method: "get",
        path: "/readyz",
        tag: "operations",
        summary: "Readiness",
        description: "200 when the warehouse and the state database respond; 503 with the failure otherwise.",
        authenticated: false,
        params: &[],
        body: None,
        responses: &[(200, "Ready."), (503, "Not ready.")],
    },
    Operation {
        method: "get",
        path: "/metrics",
        tag: "operations",
        summary: "Prometheus metrics",
        description: "Request latency histograms by route template and status; duration, rows and errors of the newest run of each command.",
        authenticated: false,
        params: &[],
        body: None,
        responses: &[(200, "Prometheus text format.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/openapi.json",
        tag: "operations",
        summary: "This document",
        description: "The OpenAPI 3.1 description of the API.",
        authenticated: false,
        params: &[],
        body: None,
        responses: &[(200, "The document.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/docs",
        tag: "operations",
        summary: "Browsable reference",
        description: "An HTML page rendering this document; needs no network.",
        authenticated: false,
        params: &[],
        body: None,
        responses: &[(200, "HTML.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/entities",
        tag: "portal",
        summary: "Services and teams with their DORA summary",
        description: "Components and groups with their 30-day DORA summary. Any role; team-limited callers see their teams only.",
        authenticated: true,
        params: &[
            Param {
                name: "kind",
                location: In::Query,
                required: false,
                description: "Only this kind.",
                schema: r#"{"type": "string", "enum": ["component", "group"]}"#,
            },
            Param {
                name: "owner",
                location: In::Query,
                required: false,
                description: "Only entities owned by this group (name or ref).",
                schema: r#"{"type": "string"}"#,
            },
        ],
        body: None,
        responses: &[(200, "`entities`."), (400, "Bad filter.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/entities/{entity}",
        tag: "portal",
        summary: "One service or team",
        description: "Its catalog facts and 30-day DORA summary.",
        authenticated: true,
        params: &[Param {
            name: "entity",
            location: In::Path,
            required: true,
            description: "A URL-encoded entity ref.",
            schema: r#"{"type": "string"}"#,
        }],
        body: None,
        responses: &[
            (200, "The entity."),
            (400, "Not an entity ref."),
            (403, "Outside the caller's teams."),
            (404, "Unknown."),
        ],
    },
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
        path: "/api/v1/cost/coverage",
        tag: "cost",
        summary: "Tag coverage per month, and the unmapped resources",
        description: "`months` (from `cost_coverage`: taggable, mapped and unmapped cost, coverage, unmapped resources per cost source, provider and currency) over `from`–`to`, and `unmapped`: the latest month's resources with cost that maps to no component, largest first (at most 100). Readable by the cost-viewer, analyst and admin roles.",
        authenticated: true,
        params: &[
            Param {
                name: "period",
                location: In::Query,
                required: false,
                description: "Calendar months (`12m`) back from the latest. Default 12m.",
                schema: r#"{"type": "string", "pattern": "^[0-9]+[dm]$"}"#,
            },
            Param {
                name: "month",
                location: In::Query,
                required: false,
                description: "The month (`YYYY-MM`) whose unmapped resources to list. Default the latest.",
                schema: r#"{"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}"#,
            },
        ],
        body: None,
        responses: &[
            (200, "`months`, `unmapped`."),
            (400, "Bad parameter."),
            (403, "A role that may not see cost."),
            (404, "No cost computed yet."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/cost/{scope}",
        tag: "cost",
        summary: "Cost of a scope per day or month, its breakdown and month-over-month change",
        description: "`series` (period, currency, cost), `breakdown` (by cost source, service category, charge category and attribution) and `months` (from `cost_monthly`: change, `significant`, `driver`), over `from`–`to` ending at the last day with cost. `org` includes shared cost. Readable by the cost-viewer, analyst and admin roles.",
        authenticated: true,
        params: &[
            SCOPE,
            Param {
                name: "period",
                location: In::Query,
                required: false,
                description: "Days (`30d`) or calendar months (`12m`) back from the last day with cost. Default 30d by day, 12m by month.",
                schema: r#"{"type": "string", "pattern": "^[0-9]+[dm]$"}"#,
            },
            Param {
                name: "granularity",
                location: In::Query,
                required: false,
                description: "Series per day or per billing month. Default month.",
                schema: r#"{"type": "string", "enum": ["day", "month"], "default": "month"}"#,
            },
            Param {
                name: "basis",
                location: In::Query,
                required: false,
                description: "Billed (the invoice) or effective (amortized) cost. Default effective.",
                schema: r#"{"type": "string", "enum": ["billed", "effective"], "default": "effective"}"#,
            },
        ],
        body: None,
        responses: &[
            (200, "`series`, `breakdown`, `months`."),
            (400, "Bad parameter."),
            (
                403,
                "A role that may not see cost, or outside the caller's teams.",
            ),
            (404, "No such scope, or no cost computed yet."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/cost/{scope}/benchmark",
        tag: "cost",
        summary: "A component's unit costs and its place among its peers",
        description: "`months` (from `cost_benchmarks`: cost per 1,000 requests, per deployment, CPU and memory efficiency, peer group, percentile, peer median, gap to it), `latest` (the last of them) and `peers` (the components of its group in that month, cheapest first). Readable by the cost-viewer, analyst and admin roles.",
        authenticated: true,
        params: &[SCOPE],
        body: None,
        responses: &[
            (200, "`latest`, `peers`, `months`."),
            (400, "Not a component."),
            (
                403,
                "A role that may not see cost, or outside the caller's teams.",
            ),
            (404, "No benchmark for it yet."),
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
    Operation {
        method: "get",
        path: "/api/v1/panels",
        tag: "dashboards",
        summary: "The dashboard panels",
        description: "Every panel of the dashboards (`dashboards/panels/*.toml`): id, pages, title, source (`sql` or `api`), chart spec, drill-downs.",
        authenticated: true,
        params: &[],
        body: None,
        responses: &[(200, "`panels`.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/panels/{id}",
        tag: "dashboards",
        summary: "A panel's rows",
        description: "The rows of one panel for the filters: JSON (`columns`, `rows`) or CSV with `Accept: text/csv` (the panel's export). Callers limited to teams get per-scope panels of their teams only.",
        authenticated: true,
        params: &[
            Param {
                name: "id",
                location: In::Path,
                required: true,
                description: "The panel id.",
                schema: r#"{"type": "string"}"#,
            },
            WINDOW,
            ENV,
            Param {
                name: "scope",
                location: In::Query,
                required: false,
                description: "The entity ref (or `org`) of per-scope panels. Default org.",
                schema: r#"{"type": "string", "default": "org"}"#,
            },
        ],
        body: None,
        responses: &[
            (200, "The rows."),
            (400, "Bad filter."),
            (403, "Outside the caller's teams."),
            (404, "No such panel."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/pages/{page}",
        tag: "dashboards",
        summary: "Every panel of a dashboard page",
        description: "What a dashboard page draws, in one call: `panels` (each with `columns`, `rows`, its chart spec and drill-down paths with the filters filled in; a panel the caller may not see carries an `error` instead of rows), `filters` as applied, `options` for the filter bar (windows, environments, benchmarks, teams, whether the caller may see the whole organisation, and on the service page the services) and `as_of`. Tiers follow `benchmark`. The Team and Service pages need `scope` (a group or a component); without it `needs` names which and no panels are answered. Callers limited to teams start on their first team.",
        authenticated: true,
        params: &[
            Param {
                name: "page",
                location: In::Path,
                required: true,
                description: "The page.",
                // The names are filled in from the dashboards' page list.
                schema: r#"{"type": "string", "enum": []}"#,
            },
            WINDOW,
            ENV,
            BENCHMARK,
            Param {
                name: "scope",
                location: In::Query,
                required: false,
                description: "`org`, a team (group ref) or a service (component ref). Default org.",
                schema: r#"{"type": "string", "default": "org"}"#,
            },
        ],
        body: None,
        responses: &[
            (
                200,
                "`page`, `needs`, `filters`, `options`, `as_of`, `panels`.",
            ),
            (400, "Bad filter."),
            (403, "Outside the caller's teams."),
            (404, "No such page."),
        ],
    },
    Operation {
        method: "get",
        path: "/api/v1/health/{rows}",
        tag: "dashboards",
        summary: "The records behind the data-health counts",
        description: "`quarantine`: rejected records (filter by `source`, `stream`, `reason`; the raw record cut to 500 characters). `unattributed`: a table's rows that name no catalog entity (`table`, and `source` where the table has one). Newest first, at most `limit` (default and most 1,000): `items`, `truncated`. Analysts and admins not limited to teams.",
        authenticated: true,
        params: &[
            Param {
                name: "rows",
                location: In::Path,
                required: true,
                description: "Which records.",
                schema: r#"{"type": "string", "enum": ["quarantine", "unattributed"]}"#,
            },
            Param {
                name: "source",
                location: In::Query,
                required: false,
                description: "Only this source.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "stream",
                location: In::Query,
                required: false,
                description: "Quarantine: only this stream.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "reason",
                location: In::Query,
                required: false,
                description: "Quarantine: only this reason.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "table",
                location: In::Query,
                required: false,
                description: "Unattributed: the table (deployments, incidents, pull_requests, cost_allocations_daily, cloud_costs_daily).",
                schema: r#"{"type": "string"}"#,
            },
            LIMIT,
        ],
        body: None,
        responses: &[
            (200, "`items`, `truncated`."),
            (400, "Unknown table."),
            (403, "Not an analyst or admin, or limited to teams."),
            (404, "Neither quarantine nor unattributed."),
        ],
    },
    Operation {
        method: "get",
        path: "/",
        tag: "dashboards",
        summary: "The dashboards",
        description: "The dashboard pages (also `/teams`, `/team`, `/service`, `/health`, `/rows`): one embedded page that draws them with the data of `/api/v1/pages/{page}`. The page is public; it asks for an API token (kept for the browser tab) or reads one from a `#token=` link. Filters live in the query string (`window`, `env`, `benchmark`, `team`, `service`), so a link reproduces the view.",
        authenticated: false,
        params: &[],
        body: None,
        responses: &[(200, "The HTML page.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/dashboards/grafana.json",
        tag: "dashboards",
        summary: "The panels as a Grafana dashboard",
        description: "A dashboard JSON to import into Grafana: every panel querying Fathom's PostgreSQL endpoint through a PostgreSQL data source chosen on import, the filters as dashboard variables.",
        authenticated: true,
        params: &[],
        body: None,
        responses: &[(200, "The dashboard JSON.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/freshness",
        tag: "operations",
        summary: "How fresh each source is",
        description: "Per configured source: `last_run_at`, `last_success_at`, `lag_seconds`, `degraded`, `last_error`.",
        authenticated: true,
        params: &[],
        body: None,
        responses: &[(200, "`sources`.")],
    },
    Operation {
        method: "get",
        path: "/api/v1/runs",
        tag: "operations",
        summary: "The run ledger",
        description: "Admins. The newest 100 runs (ingest, transform, imports), with counts and errors.",
        authenticated: true,
        params: &[],
        body: None,
        responses: &[(200, "`runs`."), (403, "Not an admin.")],
    },
    Operation {
        method: "post",
        path: "/api/v1/runs",
        tag: "operations",
        summary: "Run a source now",
        description: "Admins. Asks the scheduler to ingest one source (or all) and then update the marts; the run appears in `GET /runs`.",
        authenticated: true,
        params: &[],
        body: Some((
            JSON,
            r#"{"type": "object", "properties": {"source": {"type": "string", "description": "A source name; absent: every source."}}, "additionalProperties": false}"#,
        )),
        responses: &[
            (202, "`queued`: the sources asked for."),
            (403, "Not an admin."),
            (404, "Unknown source."),
            (429, "Too many runs waiting."),
            (503, "The scheduler is off."),
        ],
    },
    Operation {
        method: "post",
        path: "/api/v1/sql",
        tag: "sql",
        summary: "A read-only SQL query",
        description: "Analysts and admins not limited to teams. JSON (default), CSV (`Accept: text/csv`) or Arrow IPC (`Accept: application/vnd.apache.arrow.stream`). At most the configured row limit (`x-fathom-row-limit` says when cut) and timeout; audited.",
        authenticated: true,
        params: &[],
        body: Some((
            JSON,
            r#"{"type": "object", "required": ["sql"], "properties": {"sql": {"type": "string"}}}"#,
        )),
        responses: &[
            (200, "The rows."),
            (400, "Not one read-only query, or it failed."),
            (403, "Not an analyst."),
            (408, "Ran longer than the timeout."),
        ],
    },
    Operation {
        method: "post",
        path: "/api/v1/intake/{kind}",
        tag: "intake",
        summary: "Deployments or incidents from any tool",
        description: "Admins. One record, an array, or `{\"records\": [...]}` with the columns of the `deployments` (or `incidents`) table. Committed before the answer; bad records quarantined and listed in `rejections`; all bad: 422.",
        authenticated: true,
        params: &[
            Param {
                name: "kind",
                location: In::Path,
                required: true,
                description: "What the records are.",
                schema: r#"{"type": "string", "enum": ["deployments", "incidents"]}"#,
            },
            DELIVERY,
        ],
        body: Some((
            JSON,
            r#"{"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}"#,
        )),
        responses: &[
            (200, "`accepted`, `quarantined`, `rejections`."),
            (403, "Not an admin."),
            (422, "No record was usable."),
        ],
    },
    Operation {
        method: "post",
        path: "/api/v1/intake/github",
        tag: "intake",
        summary: "GitHub webhooks",
        description: "`deployment_status`, `pull_request`, `push` (default branch) and `workflow_run`, signed with the GitHub source's webhook secret (`X-Hub-Signature-256`, which is the authentication). Stored as polling would store them; once per `X-GitHub-Delivery`.",
        authenticated: false,
        params: &[
            Param {
                name: "X-GitHub-Event",
                location: In::Header,
                required: true,
                description: "The event type.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "X-GitHub-Delivery",
                location: In::Header,
                required: true,
                description: "The delivery id.",
                schema: r#"{"type": "string"}"#,
            },
            Param {
                name: "X-Hub-Signature-256",
                location: In::Header,
                required: true,
                description: "`sha256=` and the HMAC-SHA256 of the body under the secret.",
                schema: r#"{"type": "string"}"#,
            },
        ],
        body: Some((JSON, r#"{"type": "object"}"#)),
        responses: &[
            (
                200,
                "`rows` per table, `quarantined`, or `ignored` with the reason.",
            ),
            (401, "Missing or wrong signature; nothing stored."),
            (404, "No GitHub source has a webhook secret."),
        ],
    },
    Operation {
        method: "post",
        path: "/api/v1/intake/events",
        tag: "intake",
        summary: "Backstage analytics events",
        description: "Admins. An event, an array, `{\"events\": [...]}` or NDJSON. Users are stored only as keyed hashes; bad events quarantined without their user.",
        authenticated: true,
        params: &[DELIVERY],
        body: Some((
            JSON,
            r#"{"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}"#,
        )),
        responses: &[
            (200, "`accepted`, `quarantined`."),
            (403, "Not an admin."),
            (404, "No portal_events source."),
            (422, "No event was usable."),
        ],
    },
];

fn schema(text: &str) -> Value {
    // The table's schemas are literals checked by a test; a typo shows as
    // an empty schema rather than a failed request.
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let parameters: Vec<Value> = op
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": match p.location { In::Path => "path", In::Query => "query", In::Header => "header" },
                    "required": p.required,
                    "description": p.description,
                    "schema": if op.path == "/api/v1/pages/{page}" && p.name == "page" {
                        json!({"type": "string", "enum": fathom_dashboards::PAGES.iter().map(|page| page.name).collect::<Vec<_>>()})
                    } else {
                        schema(p.schema)
                    },
                })
            })
            .collect();
        let mut responses = Map::new();
        for (status, description) in op.responses {
            let mut response = json!({"description": description});
            if *status >= 400 {
                response["content"] =
                    json!({JSON: {"schema": {"$ref": "#/components/schemas/Error"}}});
            }
            responses.insert(status.to_string(), response);
        }
        if op.authenticated {
            responses.insert(
                "401".to_owned(),
                json!({"description": "No, unknown, revoked or expired credential.",
                       "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
            responses.insert(
                "429".to_owned(),
                json!({"description": "Over the credential's rate limit; see `Retry-After`.",
                       "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
        }
        let mut operation = json!({
            "tags": [op.tag],
            "summary": op.summary,
            "description": op.description,
            "operationId": format!("{}_{}", op.method, op.path.trim_start_matches('/').replace(['/', '{', '}', '.'], "_")),
            "parameters": parameters,
            "responses": responses,
        });
        if op.authenticated {
            operation["security"] = json!([{"bearer": []}]);
        } else {
            operation["security"] = json!([]);
        }
        if let Some((content_type, body)) = op.body {
            operation["requestBody"] =
                json!({"required": true, "content": {content_type: {"schema": schema(body)}}});
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Fathom",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The analytics warehouse of the internal developer platform: DORA metrics for portal pages, SQL for analysts, intake for any tool. Every error is `{\"error\": {\"code\", \"message\"}}`.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "portal", "description": "Entities by Backstage ref."},
            {"name": "dora", "description": "DORA metrics, trends and the rows behind them."},
            {"name": "cost", "description": "Cost per scope: series, breakdown, month over month."},
            {"name": "sql", "description": "SQL over the warehouse (also over the PostgreSQL protocol)."},
            {"name": "intake", "description": "Data pushed in."},
            {"name": "dashboards", "description": "The panels of the dashboards, as data and CSV."},
            {"name": "operations", "description": "Health, freshness, runs."},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (`fathom tokens create`) or an OIDC access token."},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
                },
            },
        },
    })
}

/// The docs page: renders `openapi.json` with a few lines of script.
pub const DOCS_PAGE: &str = include_str!("docs.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_literal_is_json_and_operations_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for op in OPERATIONS {
            assert!(
                seen.insert((op.method, op.path)),
                "{} {} twice",
                op.method,
                op.path
            );
            for p in op.params {
                assert!(
                    serde_json::from_str::<Value>(p.schema).is_ok(),
                    "{} {}: schema of {}",
                    op.method,
                    op.path,
                    p.name
                );
                if p.location == In::Path {
                    assert!(op.path.contains(&format!("{{{}}}", p.name)), "{}", p.name);
                }
            }
            if let Some((_, body)) = op.body {
                assert!(serde_json::from_str::<Value>(body).is_ok(), "{}", op.path);
            }
        }
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["paths"]["/api/v1/dora/{scope}"]["get"]["parameters"][1]["schema"]["enum"][1],
            "30d"
        );
    }
}
