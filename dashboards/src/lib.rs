//! Dashboards for engineering leaders: declarative panel files (a query over
//! the marts or an API read, plus a chart spec) and the pages that draw
//! them, embedded in the binary so they work offline.
//!
//! A panel is a TOML file in `dashboards/panels/` (embedded at build time:
//! adding a panel is adding a file). Its SQL names the filters it takes as
//! placeholders — `{{window_days}}`, `{{window}}`, `{{environment}}`,
//! `{{scope}}` — which [`Panel::sql`] fills with quoted literals, never with
//! raw text; drill-down paths get the same filters URL-encoded
//! ([`Panel::drill_path`]). A test plans every panel's SQL against the
//! warehouse schema, so a renamed column fails the build.
//!
//! The pages are one HTML shell, a script and a stylesheet
//! (`dashboards/web/`, see [`asset`]); the script asks the API for a page's
//! panels in one call and draws them as SVG.

use serde::{Deserialize, Serialize};

include!(concat!(env!("OUT_DIR"), "/panels.rs"));

/// A dashboard page: the one place a page is named. The API routes its
/// path to the shell, the shell hands the list to the script (navigation,
/// titles), panels name the pages they sit on, and the OpenAPI document
/// lists the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Page {
    /// Its name in panel files and `/api/v1/pages/{page}`.
    pub name: &'static str,
    /// Its path in the browser.
    pub path: &'static str,
    /// Its title in the navigation.
    pub title: &'static str,
}

/// The pages, in navigation order.
pub const PAGES: &[Page] = &[
    Page {
        name: "overview",
        path: "/",
        title: "Overview",
    },
    Page {
        name: "teams",
        path: "/teams",
        title: "Teams",
    },
    Page {
        name: "team",
        path: "/team",
        title: "Team",
    },
    Page {
        name: "service",
        path: "/service",
        title: "Service",
    },
    Page {
        name: "cost",
        path: "/cost",
        title: "Cost",
    },
    Page {
        name: "anomalies",
        path: "/anomalies",
        title: "Anomalies",
    },
    Page {
        name: "adoption",
        path: "/adoption",
        title: "Adoption",
    },
    Page {
        name: "health",
        path: "/health",
        title: "Data health",
    },
];

/// The page named `name`.
pub fn page(name: &str) -> Option<&'static Page> {
    PAGES.iter().find(|p| p.name == name)
}

/// The pages' names, comma-separated, for messages.
pub fn page_names() -> String {
    PAGES.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// How a panel draws its rows.
pub const CHART_KINDS: [&str; 9] = [
    "tiles",
    "line",
    "bar",
    "stacked_bar",
    "table",
    "timeline",
    "ranking",
    "bands",
    "scatter",
];

/// The reads a panel can take from the API instead of SQL (`api = "…"`):
/// they live in the state database, not in the warehouse.
pub const API_READS: [&str; 3] = ["freshness", "runs", "alerts"];

/// The filters a panel's SQL may use.
pub const PLACEHOLDERS: [&str; 4] = ["window_days", "window", "environment", "scope"];

/// The windows the marts hold.
pub const WINDOWS: [u32; 4] = [7, 30, 90, 365];

/// Why the panels cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A panel file does not parse or breaks a rule.
    #[error("dashboards/panels/{file}: {message}")]
    Panel {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A filter value is out of range.
    #[error("{0}")]
    Filter(String),
}

/// A chart spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chart {
    /// One of [`CHART_KINDS`].
    pub kind: String,
    /// The column along the x axis (or the row label), if any.
    #[serde(default)]
    pub x: Option<String>,
    /// The columns drawn (a series, a tile or a table column each).
    pub y: Vec<String>,
    /// Tiles: the panel whose rows give each tile's sparkline (the column
    /// of the same name, in row order).
    #[serde(default)]
    pub spark: Option<String>,
    /// Timelines: the panel whose rows are marked as events on the time
    /// line (`created_at` to `resolved_at`), e.g. incidents.
    #[serde(default)]
    pub marks: Option<String>,
    /// Bands: the column naming each small chart (rows of one value drawn
    /// together, in row order); `y` is the value, then the expected value
    /// and the band's lower and upper edges.
    #[serde(default)]
    pub group: Option<String>,
}

/// One panel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// Unique id (also the file name without `.toml`).
    pub id: String,
    /// The [`PAGES`] it sits on.
    pub pages: Vec<String>,
    /// Where it sits on its pages: lower first (then by id).
    #[serde(default = "default_order")]
    pub order: i32,
    /// Heading.
    pub title: String,
    /// What it shows, for the page and screen readers.
    pub description: String,
    /// The query over the marts, with placeholders (empty for an API
    /// panel).
    #[serde(default)]
    pub sql: String,
    /// Instead of SQL, one of [`API_READS`].
    #[serde(default)]
    pub api: Option<String>,
    /// Whether it shows cost: only the cost-viewer, analyst and admin
    /// roles see it (others get the reason in its place).
    #[serde(default)]
    pub cost: bool,
    /// Where its numbers lead: a path with placeholders (and `{{row.col}}`
    /// for a row's value).
    #[serde(default)]
    pub drill: Option<String>,
    /// Per column, where that column's numbers lead (overrides `drill`).
    #[serde(default)]
    pub drills: std::collections::BTreeMap<String, String>,
    /// How it is drawn.
    pub chart: Chart,
}

fn default_order() -> i32 {
    100
}

/// The filter values of a page view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    /// 7, 30, 90 or 365.
    pub window_days: u32,
    /// `all` or a production environment.
    pub environment: String,
    /// An entity ref (lower case) or `org`.
    pub scope: String,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            window_days: 30,
            environment: "all".to_owned(),
            scope: "org".to_owned(),
        }
    }
}

/// `template` with each `{{name}}` of `values` replaced, in one pass over
/// the template: a value is never searched for placeholders again (a filter
/// `env={{scope}}` stays text). Unknown placeholders are left as they are.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let known = after.find("}}").and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| (value, end))
        });
        match known {
            Some((value, end)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Percent-encodes a query-string value (everything but unreserved
/// characters and the `:`/`/` of entity refs).
fn url_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~:/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The placeholders `{{name}}` of a text.
fn placeholders(text: &str) -> Vec<&str> {
    text.split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(name, _)| name.trim()))
        .collect()
}

impl Panel {
    /// Its SQL with the filters filled in as literals.
    pub fn sql(&self, filters: &Filters) -> Result<String, Error> {
        if !WINDOWS.contains(&filters.window_days) {
            return Err(Error::Filter(format!(
                "window {}d: use 7, 30, 90 or 365",
                filters.window_days
            )));
        }
        Ok(fill(
            &self.sql,
            &[
                ("window_days", filters.window_days.to_string()),
                ("window", quoted(&format!("{}d", filters.window_days))),
                ("environment", quoted(&filters.environment)),
                ("scope", quoted(&filters.scope)),
            ],
        ))
    }

    /// A drill-down path with the filters filled in (URL-encoded); the
    /// `{{row.<column>}}` placeholders are left for the page to fill per row.
    pub fn drill_path(template: &str, filters: &Filters) -> String {
        fill(
            template,
            &[
                ("window_days", filters.window_days.to_string()),
                ("window", format!("{}d", filters.window_days)),
                ("environment", url_encoded(&filters.environment)),
                ("scope", url_encoded(&filters.scope)),
            ],
        )
    }

    /// Whether it reads one scope (so callers limited to teams may see it
    /// for theirs).
    pub fn is_per_scope(&self) -> bool {
        self.sql.contains("{{scope}}")
    }

    fn check(&self, file: &str) -> Result<(), Error> {
        let fail = |message: String| Error::Panel {
            file: file.to_owned(),
            message,
        };
        if file.trim_end_matches(".toml") != self.id {
            return Err(fail(format!("the id `{}` must be the file name", self.id)));
        }
        if self.pages.is_empty() {
            return Err(fail("`pages` is empty".to_owned()));
        }
        for page in &self.pages {
            if self::page(page).is_none() {
                return Err(fail(format!("page `{page}`: use one of {}", page_names())));
            }
        }
        match (self.sql.trim().is_empty(), &self.api) {
            (true, None) => return Err(fail("give `sql` or `api`".to_owned())),
            (false, Some(_)) => return Err(fail("give `sql` or `api`, not both".to_owned())),
            (true, Some(api)) if !API_READS.contains(&api.as_str()) => {
                return Err(fail(format!("api `{api}`: use one of {API_READS:?}")));
            }
            _ => {}
        }
        if !CHART_KINDS.contains(&self.chart.kind.as_str()) {
            return Err(fail(format!(
                "chart kind `{}`: use one of {CHART_KINDS:?}",
                self.chart.kind
            )));
        }
        if self.chart.y.is_empty() {
            return Err(fail("the chart draws no column (`y` is empty)".to_owned()));
        }
        if self.chart.kind == "bands"
            && (self.chart.group.is_none() || self.chart.x.is_none() || self.chart.y.len() != 4)
        {
            return Err(fail(
                "a bands chart needs `group`, `x` and `y` = [value, expected, lower, upper]"
                    .to_owned(),
            ));
        }
        if self.chart.kind == "scatter"
            && (self.chart.group.is_none() || self.chart.x.is_none() || self.chart.y.len() > 2)
        {
            return Err(fail(
                "a scatter chart needs `group` (each point's name), `x` and `y` = [value] or \
                 [value, reference]"
                    .to_owned(),
            ));
        }
        for name in placeholders(&self.sql) {
            if !PLACEHOLDERS.contains(&name) {
                return Err(fail(format!(
                    "`{{{{{name}}}}}` in sql: the filters are {PLACEHOLDERS:?}"
                )));
            }
        }
        for column in self.drills.keys() {
            if !self.chart.y.contains(column) && self.chart.x.as_ref() != Some(column) {
                return Err(fail(format!("drills.{column}: the chart does not draw it")));
            }
        }
        let templates = self.drill.iter().chain(self.drills.values());
        for name in templates.flat_map(|t| placeholders(t)) {
            if !PLACEHOLDERS.contains(&name) && !name.starts_with("row.") {
                return Err(fail(format!(
                    "`{{{{{name}}}}}` in drill: use the filters or `row.<column>`"
                )));
            }
        }
        Ok(())
    }
}

/// Every panel, checked; in file order. The files are embedded, so they
/// are parsed once per process, not on every request.
pub fn panels() -> Result<&'static [Panel], Error> {
    static PARSED: std::sync::OnceLock<Result<Vec<Panel>, Error>> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(parse_panels)
        .as_deref()
        .map_err(Clone::clone)
}

fn parse_panels() -> Result<Vec<Panel>, Error> {
    let mut panels: Vec<Panel> = Vec::new();
    for (file, text) in PANEL_FILES {
        let panel: Panel = toml::from_str(text).map_err(|e| Error::Panel {
            file: (*file).to_owned(),
            message: e.to_string(),
        })?;
        panel.check(file)?;
        panels.push(panel);
    }
    for panel in &panels {
        for (field, named) in [("spark", &panel.chart.spark), ("marks", &panel.chart.marks)] {
            if let Some(id) = named
                && !panels.iter().any(|p| &p.id == id)
            {
                return Err(Error::Panel {
                    file: format!("{}.toml", panel.id),
                    message: format!("chart.{field} names no panel `{id}`"),
                });
            }
        }
    }
    Ok(panels)
}

/// A Grafana dashboard of every panel, for teams that already run Grafana:
/// each panel queries Fathom's PostgreSQL endpoint through a PostgreSQL data
/// source chosen on import (`DS_FATHOM`), the filters become dashboard
/// variables (`window_days`, `environment`, `scope`).
pub fn grafana_dashboard(panels: &[Panel]) -> serde_json::Value {
    use serde_json::json;
    let datasource = json!({"type": "grafana-postgresql-datasource", "uid": "${DS_FATHOM}"});
    // API panels read the state database, which Grafana cannot reach.
    let grafana_panels: Vec<serde_json::Value> = panels
        .iter()
        .filter(|p| p.api.is_none())
        .enumerate()
        .map(|(i, panel)| {
            let sql = panel
                .sql
                .replace("{{window_days}}", "$window_days")
                .replace("{{window}}", "'${window_days}d'")
                .replace("{{environment}}", "'$environment'")
                .replace("{{scope}}", "'$scope'");
            // Table frames: Grafana's time series panels take the first
            // timestamp column as time, so no column needs renaming.
            let kind = match panel.chart.kind.as_str() {
                "tiles" => "stat",
                "line" => "timeseries",
                "bar" | "stacked_bar" | "ranking" => "barchart",
                "scatter" => "xychart",
                "timeline" => "state-timeline",
                _ => "table",
            };
            let (x, y) = ((i % 2) * 12, (i / 2) * 9);
            json!({
                "id": i + 1,
                "type": kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": datasource,
                "gridPos": {"h": 9, "w": 12, "x": x, "y": y},
                "targets": [{
                    "refId": "A",
                    "datasource": datasource,
                    "editorMode": "code",
                    "rawQuery": true,
                    "format": "table",
                    "rawSql": sql.trim(),
                }],
            })
        })
        .collect();
    json!({
        "__inputs": [{
            "name": "DS_FATHOM",
            "label": "Fathom (PostgreSQL endpoint)",
            "description": "A PostgreSQL data source pointing at `fathom serve`'s postgres_listen, with an analyst token as the password.",
            "type": "datasource",
            "pluginId": "grafana-postgresql-datasource",
            "pluginName": "PostgreSQL",
        }],
        "title": "Fathom — DORA",
        "uid": "fathom-dora",
        "schemaVersion": 39,
        "tags": ["fathom", "dora"],
        "time": {"from": "now-90d", "to": "now"},
        "templating": {"list": [
            {"name": "window_days", "label": "Window (days)", "type": "custom", "query": "7,30,90,365",
             "current": {"text": "30", "value": "30"}},
            {"name": "environment", "label": "Environment", "type": "textbox", "query": "all",
             "current": {"text": "all", "value": "all"}},
            {"name": "scope", "label": "Scope (entity ref or org)", "type": "textbox", "query": "org",
             "current": {"text": "org", "value": "org"}},
        ]},
        "panels": grafana_panels,
    })
}

/// The page shell, script and stylesheet, embedded (no CDN, no external
/// fonts): `(path under /assets/, content type, body)`.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "draw.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/draw.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
];

/// The HTML shell every page path answers with (the script draws the page
/// named by the path), the page list in the body's `data-pages`.
pub fn index_html() -> &'static str {
    static HTML: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        // JSON in a single-quoted attribute: names and titles are ours and
        // hold no quote, but escape anyway.
        let pages = serde_json::to_string(PAGES)
            .unwrap_or_default()
            .replace('&', "&amp;")
            .replace('\'', "&#39;");
        include_str!("../web/index.html").replace("{{pages}}", &pages)
    });
    &HTML
}

/// The paths the shell answers: every page's, and `/rows` (the rows
/// behind a number, opened from a page).
pub fn shell_paths() -> impl Iterator<Item = &'static str> {
    PAGES.iter().map(|p| p.path).chain(["/rows"])
}

/// An embedded asset by file name: `(content type, body)`.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, kind, body)| (*kind, *body))
}

#[cfg(test)]
mod tests;
