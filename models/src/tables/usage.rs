//! The usage marts: portal adoption by team, feature, entity, search and
//! template, every number about people counted over at least `k` distinct
//! users or suppressed (docs/metrics.md § Usage).

use super::{UPDATED_AT, opt, req};
use crate::schema::ColumnType::{Boolean, Date, EntityRef, Float64, Int64, Utf8};
use crate::schema::{ColumnDef, MonthPartition, TableDef};

/// Whether a row's numbers about people are withheld.
const SUPPRESSED: ColumnDef = req(
    "suppressed",
    Boolean,
    "Whether numbers of this row about people are withheld (null): fewer than `[usage] k_anonymity` distinct users, or withheld so that no small number can be recovered by subtraction.",
);

/// Why.
const SUPPRESSION: ColumnDef = opt(
    "suppression",
    Utf8,
    "`below_k` (the row's own users are fewer than k) or `complement` (withheld so a total minus the published rows cannot reveal fewer than k users); null when published.",
);

/// Events per team, plugin, action and day.
pub const USAGE_DAILY: TableDef = TableDef {
    name: "usage_daily",
    description: "Mart: portal events and distinct users per day, plugin, action and team (the user's team from the catalog at intake). Per day, plugin and action, teams with fewer than k users are withheld and pooled into a row `team` = `other` (with one more team when the pool alone has fewer than k), so published teams plus `other` add up to everyone.",
    columns: &[
        req("day", Date, "UTC day."),
        req("month", Utf8, "`YYYY-MM` of the day (partition)."),
        req(
            "team",
            Utf8,
            "The users' team (group ref), `unattributed` (no known team, or no user), or `other` (the withheld teams pooled).",
        ),
        req(
            "plugin_id",
            Utf8,
            "Backstage plugin; `unknown` when the event names none.",
        ),
        req(
            "action",
            Utf8,
            "Analytics action as sent (navigate, search, discover, create, click, …).",
        ),
        opt("events", Int64, "Events."),
        opt("users", Int64, "Distinct users."),
        SUPPRESSED,
        SUPPRESSION,
        UPDATED_AT,
    ],
    primary_key: &["day", "plugin_id", "action", "team"],
    partition: Some(MonthPartition {
        column: "month",
        source: "day",
    }),
};

/// Active users per scope and period.
pub const USAGE_ACTIVE: TableDef = TableDef {
    name: "usage_active",
    description: "Mart: active users per scope (each group with its sub-groups, `org`) and period — each day someone was active (with the 7- and 30-day rolling counts ending that day) and each calendar month — new and returning users, adoption (active users / the scope's members in the catalog) and stickiness. A user counts in the team of their latest active day in the period (a later team change does not rewrite history). Counts below k are withheld, and between a scope and its direct sub-scopes so that the scope minus its published sub-scopes never reveals fewer than k users.",
    columns: &[
        req("scope", Utf8, "Group ref or `org`."),
        req("scope_kind", Utf8, "`group` or `org`."),
        opt(
            "group_type",
            Utf8,
            "The group's `spec.type` (team, department, …).",
        ),
        req("grain", Utf8, "`day` or `month`."),
        req("period_start", Date, "The day, or the month's first day."),
        req(
            "month",
            Utf8,
            "`YYYY-MM` of period_start (a daily refresh rewrites the rows from the earliest changed month on).",
        ),
        req(
            "members",
            Int64,
            "Users of the scope in the catalog (a user belongs to the first of their `memberOf` groups by ref, and to its ancestors).",
        ),
        opt(
            "active_users",
            Int64,
            "Users with at least one event in the period.",
        ),
        opt(
            "weekly_active_users",
            Int64,
            "Day rows: users active in the 7 days ending that day.",
        ),
        opt(
            "monthly_active_users",
            Int64,
            "Day rows: users active in the 30 days ending that day.",
        ),
        opt(
            "new_users",
            Int64,
            "Active users whose first event in the warehouse is in the period.",
        ),
        opt(
            "returning_users",
            Int64,
            "Active users seen before the period.",
        ),
        opt(
            "adoption",
            Float64,
            "Month rows: active_users / members; day rows: monthly_active_users / members.",
        ),
        opt(
            "stickiness",
            Float64,
            "Day rows: active_users / monthly_active_users (DAU/MAU); month rows: the mean of the month's published daily stickiness (an average over every day would reveal the withheld days' sum).",
        ),
        SUPPRESSED,
        SUPPRESSION,
        UPDATED_AT,
    ],
    primary_key: &["scope", "grain", "period_start"],
    partition: None,
};

/// Use of each plugin and feature per month, with retention.
pub const USAGE_FEATURES: TableDef = TableDef {
    name: "usage_features",
    description: "Mart: per plugin, feature and month: users, teams, events, users new to the feature, and the week-4 retention of those new users.",
    columns: &[
        req("month", Utf8, "`YYYY-MM`."),
        req(
            "plugin_id",
            Utf8,
            "Backstage plugin; `unknown` when the event names none.",
        ),
        req(
            "feature",
            Utf8,
            "catalog, docs, search, scaffolder, fathom:<page> (Fathom's own pages), or the plugin id.",
        ),
        opt("events", Int64, "Events."),
        opt("users", Int64, "Distinct users."),
        opt("teams", Int64, "Distinct teams of those users."),
        opt(
            "new_users",
            Int64,
            "Users whose first use of the feature is in the month.",
        ),
        opt(
            "retained_week4",
            Float64,
            "Share of the new users who used the feature again 21 to 27 days after their first use; null while that week is not over in the data, or when fewer than k users are new.",
        ),
        SUPPRESSED,
        SUPPRESSION,
        UPDATED_AT,
    ],
    primary_key: &["month", "plugin_id", "feature"],
    partition: None,
};

/// Search success per month.
pub const USAGE_SEARCH: TableDef = TableDef {
    name: "usage_search",
    description: "Mart: per month, searches (Backstage `search` events; the value is the result count), searches that found nothing, searches followed by a click on a result (`discover`, value = rank) by the same user within `[usage] click_window_minutes` and before searching again, success rate and mean clicked rank.",
    columns: &[
        req("month", Utf8, "`YYYY-MM` of the searches."),
        opt("searches", Int64, "Searches."),
        opt("users", Int64, "Distinct users who searched."),
        opt(
            "sessions",
            Int64,
            "Sessions with a search (a session ends after `[usage] session_gap_minutes` without an event).",
        ),
        opt(
            "zero_result_searches",
            Int64,
            "Searches whose result count was 0.",
        ),
        opt(
            "zero_result_rate",
            Float64,
            "zero_result_searches / searches with a known result count.",
        ),
        opt(
            "clicked_searches",
            Int64,
            "Searches followed by a click on a result.",
        ),
        opt("success_rate", Float64, "clicked_searches / searches."),
        opt(
            "mean_clicked_rank",
            Float64,
            "Mean rank of the clicked results (1 = first).",
        ),
        SUPPRESSED,
        SUPPRESSION,
        UPDATED_AT,
    ],
    primary_key: &["month"],
    partition: None,
};

/// Queries nobody clicked a result of, per month.
pub const USAGE_SEARCH_QUERIES: TableDef = TableDef {
    name: "usage_search_queries",
    description: "Mart: per month, the queries (lower-cased, trimmed) most often searched without a click on a result — only queries at least k distinct users typed: query text is what people wrote, and is never stored for fewer. At most 50 per month.",
    columns: &[
        req("month", Utf8, "`YYYY-MM`."),
        req("query", Utf8, "The query, lower-cased and trimmed."),
        req("searches", Int64, "Searches of it."),
        req("users", Int64, "Distinct users who searched it (≥ k)."),
        req(
            "unclicked_searches",
            Int64,
            "Searches of it with no click on a result.",
        ),
        req(
            "zero_result_searches",
            Int64,
            "Searches of it that found nothing.",
        ),
        req(
            "rank",
            Int64,
            "1 = the most unclicked searches in the month.",
        ),
        UPDATED_AT,
    ],
    primary_key: &["month", "query"],
    partition: None,
};

/// Template runs and time saved.
pub const USAGE_TEMPLATES: TableDef = TableDef {
    name: "usage_templates",
    description: "Mart: scaffolder template runs (`create` events; the template is the event's entity) per month, template and team, by outcome (the `status` attribute when the app sends it), and the minutes they saved (`[usage.templates]`, else the template's `backstage.io/time-saved` sent as the event's value, else `[usage] default_template_minutes`; failed runs save nothing). Teams with fewer than k users are pooled into `other` as in `usage_daily`.",
    columns: &[
        req("month", Utf8, "`YYYY-MM` (partition)."),
        req("period_start", Date, "The month's first day."),
        req("template_ref", Utf8, "The template's ref, or `unknown`."),
        req("team", Utf8, "Group ref, `unattributed` or `other`."),
        opt("runs", Int64, "Runs."),
        opt("succeeded", Int64, "Runs whose status says completed."),
        opt(
            "failed",
            Int64,
            "Runs whose status says failed (or cancelled).",
        ),
        opt("unknown_outcome", Int64, "Runs sent without a status."),
        opt("users", Int64, "Distinct users."),
        opt(
            "minutes_saved",
            Float64,
            "Estimated minutes saved by the runs that did not fail.",
        ),
        SUPPRESSED,
        SUPPRESSION,
        UPDATED_AT,
    ],
    primary_key: &["month", "template_ref", "team"],
    partition: Some(MonthPartition {
        column: "month",
        source: "period_start",
    }),
};

/// Most viewed entities and docs.
pub const USAGE_ENTITIES: TableDef = TableDef {
    name: "usage_entities",
    description: "Mart: the most viewed catalog entity pages and TechDocs sites per month (up to 100 of each): views and distinct viewers. Entities are not people, so views are always published; a viewer count below k is withheld.",
    columns: &[
        req("month", Utf8, "`YYYY-MM` (partition)."),
        req("period_start", Date, "The month's first day."),
        req(
            "surface",
            Utf8,
            "`catalog` (entity pages) or `docs` (TechDocs).",
        ),
        req(
            "entity_ref",
            EntityRef(Some("component")),
            "The entity viewed.",
        ),
        req("entity_kind", Utf8, "Its kind."),
        req("views", Int64, "Page views (`navigate` events)."),
        opt("viewers", Int64, "Distinct viewers; null below k."),
        req(
            "rank",
            Int64,
            "1 = the most viewed of its surface in the month.",
        ),
        SUPPRESSED,
        UPDATED_AT,
    ],
    primary_key: &["month", "surface", "entity_ref"],
    partition: Some(MonthPartition {
        column: "month",
        source: "period_start",
    }),
};
