//! The `portal` operations: What portal pages read by entity ref.

use super::super::{In, Operation, Param};

pub(super) const OPERATIONS: &[Operation] = &[
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
];
