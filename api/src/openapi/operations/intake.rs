//! The `intake` operations: Pushed data: webhooks and portal events.

use super::super::{In, Operation, Param};
use super::{DELIVERY, JSON};

pub(super) const OPERATIONS: &[Operation] = &[
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
