//! The table of every operation the router serves, with the parameters
//! several of them share: what `/api/v1/openapi.json` is generated from.

use super::{In, Operation, Param};

mod anomalies;
mod cost;
mod dashboards;
mod dora;
mod intake;
mod ops;
mod portal;
mod risk;
mod sql;
mod usage;

pub(super) const SCOPE: Param = Param {
    name: "scope",
    location: In::Path,
    required: true,
    description: "A URL-encoded entity ref (`component%3Adefault%2Fpayments-api`, `group%3Adefault%2Fpayments`) or `org`.",
    schema: r#"{"type": "string"}"#,
};
pub(super) const WINDOW: Param = Param {
    name: "window",
    location: In::Query,
    required: false,
    description: "The window ending at the marts' as-of date. Default 30d.",
    schema: r#"{"type": "string", "enum": ["7d", "30d", "90d", "365d"], "default": "30d"}"#,
};
pub(super) const ENV: Param = Param {
    name: "env",
    location: In::Query,
    required: false,
    description: "`all` (every production environment) or one production environment. Default all.",
    schema: r#"{"type": "string", "default": "all"}"#,
};
pub(super) const BENCHMARK: Param = Param {
    name: "benchmark",
    location: In::Query,
    required: false,
    description: "Re-tier the stored numbers with another benchmark table. Default: the configured one.",
    schema: r#"{"type": "string", "enum": ["dora-2021", "dora-2023", "dora-2024"]}"#,
};
pub(super) const LIMIT: Param = Param {
    name: "limit",
    location: In::Query,
    required: false,
    description: "Rows per page (1–500). Default 50.",
    schema: r#"{"type": "integer", "minimum": 1, "maximum": 500, "default": 50}"#,
};
pub(super) const CURSOR: Param = Param {
    name: "cursor",
    location: In::Query,
    required: false,
    description: "`next_cursor` of the previous page.",
    schema: r#"{"type": "string"}"#,
};
pub(super) const DELIVERY: Param = Param {
    name: "X-Delivery-Id",
    location: In::Header,
    required: false,
    description: "Makes the delivery idempotent: one already applied is answered `{\"duplicate\": true}`.",
    schema: r#"{"type": "string"}"#,
};

/// The Cost Insights plugin's intervals and the currency of its amounts.
pub(super) const INTERVALS: Param = Param {
    name: "intervals",
    location: In::Query,
    required: true,
    description: "The Cost Insights plugin's ISO 8601 repeating interval, `R2/P30D/<exclusive end>` (durations P<n>D or P3M).",
    schema: r#"{"type": "string"}"#,
};
pub(super) const CURRENCY: Param = Param {
    name: "currency",
    location: In::Query,
    required: false,
    description: "Billing currency of the amounts. Default USD.",
    schema: r#"{"type": "string", "default": "USD"}"#,
};
pub(super) const JSON: &str = "application/json";

/// Every operation the router serves, grouped by tag.
const GROUPS: &[&[Operation]] = &[
    ops::OPERATIONS,
    portal::OPERATIONS,
    dora::OPERATIONS,
    cost::OPERATIONS,
    anomalies::OPERATIONS,
    risk::OPERATIONS,
    usage::OPERATIONS,
    dashboards::OPERATIONS,
    sql::OPERATIONS,
    intake::OPERATIONS,
];

/// Every operation the router serves.
pub fn operations() -> impl Iterator<Item = &'static Operation> {
    GROUPS.iter().flat_map(|group| group.iter())
}
