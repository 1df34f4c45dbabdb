//! The `sql` operations: SQL over HTTP.

use super::super::Operation;
use super::JSON;

pub(super) const OPERATIONS: &[Operation] = &[Operation {
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
}];
