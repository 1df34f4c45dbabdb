//! The panels against the warehouse schema: each one's SQL is planned (not
//! run) over every table registered empty, so a renamed or missing column,
//! a wrong table or a type error fails here.

use super::*;

#[test]
fn every_panel_file_is_valid_and_each_page_has_panels() {
    let panels = panels().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(panels.len(), PANEL_FILES.len());
    for page in PAGES {
        assert!(
            panels
                .iter()
                .any(|p| p.pages.iter().any(|x| x == page.name)),
            "no panel on {}",
            page.name
        );
    }
}

#[test]
fn filters_become_literals_never_raw_text() {
    let panel = panels()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .find(|p| p.id == "teams-table")
        .unwrap_or_else(|| panic!("teams-table"));
    let filters = Filters {
        window_days: 90,
        environment: "prod' OR '1'='1".to_owned(),
        scope: "org".to_owned(),
    };
    let sql = panel.sql(&filters).unwrap_or_else(|e| panic!("{e}"));
    assert!(sql.contains("window_days = 90"));
    assert!(sql.contains("environment = 'prod'' OR ''1''=''1'"));
    let bad = Filters {
        window_days: 45,
        ..Filters::default()
    };
    assert!(panel.sql(&bad).is_err());
}

#[test]
fn unknown_placeholders_and_kinds_are_refused() {
    let mut panel = panels()
        .unwrap_or_else(|e| panic!("{e}"))
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no panels"));
    let file = format!("{}.toml", panel.id);
    panel.sql.push_str(" AND x = {{team}}");
    assert!(panel.check(&file).is_err());
    panel.sql = "SELECT 1".to_owned();
    panel.chart.kind = "pie".to_owned();
    assert!(panel.check(&file).is_err());
    panel.chart.kind = "table".to_owned();
    assert!(panel.check(&file).is_ok());
    panel.api = Some("freshness".to_owned());
    assert!(panel.check(&file).is_err(), "sql and api together");
    panel.sql.clear();
    assert!(panel.check(&file).is_ok());
    panel.api = Some("tokens".to_owned());
    assert!(panel.check(&file).is_err(), "an unknown API read");
    panel.api = None;
    assert!(panel.check(&file).is_err(), "neither sql nor api");
}

#[tokio::test]
async fn every_panel_plans_against_the_warehouse_schema() {
    let warehouse = fathom_warehouse::Warehouse::in_memory().unwrap_or_else(|e| panic!("{e}"));
    let ctx = datafusion::prelude::SessionContext::new();
    warehouse
        .register_tables(&ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for panel in panels().unwrap_or_else(|e| panic!("{e}")) {
        if panel.api.is_some() {
            continue;
        }
        let sql = panel
            .sql(&Filters::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let frame = ctx
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("panel {}: {e}\n{sql}", panel.id));
        let columns: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for column in panel
            .chart
            .y
            .iter()
            .chain(&panel.chart.x)
            .chain(&panel.chart.group)
        {
            assert!(
                columns.contains(column),
                "panel {}: the chart draws `{column}`, which the query does not return ({columns:?})",
                panel.id
            );
        }
    }
}

#[test]
fn the_grafana_export_has_every_panel_with_variables_not_placeholders() {
    let panels = panels().unwrap_or_else(|e| panic!("{e}"));
    let dashboard = grafana_dashboard(panels);
    let exported = dashboard["panels"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        exported.len(),
        panels.iter().filter(|p| p.api.is_none()).count()
    );
    for panel in &exported {
        let sql = panel["targets"][0]["rawSql"].as_str().unwrap_or_default();
        assert!(!sql.is_empty() && !sql.contains("{{"), "{sql}");
    }
    let teams = exported
        .iter()
        .find(|p| p["title"] == "Teams")
        .unwrap_or_else(|| panic!("no Teams panel"));
    let sql = teams["targets"][0]["rawSql"].as_str().unwrap_or_default();
    assert!(
        sql.contains("window_days = $window_days AND environment = '$environment'"),
        "{sql}"
    );
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["window_days", "environment", "scope"]);
}

#[test]
fn drill_paths_are_url_encoded_and_keep_row_placeholders() {
    let filters = Filters {
        window_days: 90,
        environment: "prod eu&x".to_owned(),
        scope: "group:default/team-a".to_owned(),
    };
    let path = Panel::drill_path(
        "/rows?rows=deployments&scope={{scope}}&window={{window_days}}&env={{environment}}&x={{row.team}}",
        &filters,
    );
    assert_eq!(
        path,
        "/rows?rows=deployments&scope=group:default/team-a&window=90&env=prod%20eu%26x&x={{row.team}}"
    );
}

#[test]
fn every_asset_is_embedded_and_references_no_network() {
    for name in ["index.html", "app.js", "draw.js", "app.css"] {
        let (_, body) = asset(name).unwrap_or_else(|| panic!("no {name}"));
        assert!(!body.is_empty(), "{name} is empty");
        // Offline: nothing is fetched from another origin (the SVG
        // namespace is a name, not a request).
        let text = body.replace("http://www.w3.org/2000/svg", "");
        for needle in ["http://", "https://", "//cdn", "@import", "url(http"] {
            assert!(!text.contains(needle), "{name} references `{needle}`");
        }
    }
    assert!(index_html().contains("/assets/app.js"));
    assert!(asset("../Cargo.toml").is_none());
}

#[test]
fn a_filter_value_is_never_expanded_again() {
    let filters = Filters {
        window_days: 30,
        environment: "{{scope}}".to_owned(),
        scope: "group:default/team-a".to_owned(),
    };
    let filled = fill(
        "env={{environment}} scope={{scope}} other={{unknown}} {{",
        &[
            ("environment", quoted(&filters.environment)),
            ("scope", quoted(&filters.scope)),
        ],
    );
    assert_eq!(
        filled,
        "env='{{scope}}' scope='group:default/team-a' other={{unknown}} {{"
    );
    let path = Panel::drill_path("/rows?env={{environment}}&scope={{scope}}", &filters);
    assert_eq!(
        path,
        "/rows?env=%7B%7Bscope%7D%7D&scope=group:default/team-a"
    );
}

#[test]
fn the_shell_carries_the_page_list() {
    let html = index_html();
    assert!(!html.contains("{{pages}}"));
    let start = html.find("data-pages='").map(|i| i + "data-pages='".len());
    let list = start.and_then(|s| html[s..].find('\'').map(|e| &html[s..s + e]));
    let pages: Vec<serde_json::Value> =
        serde_json::from_str(list.unwrap_or("")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pages.len(), PAGES.len());
    assert_eq!(pages[4]["title"], "Cost");
    assert_eq!(pages[4]["path"], "/cost");
    assert_eq!(pages[5]["title"], "Anomalies");
    assert_eq!(pages[6]["title"], "Adoption");
    assert_eq!(pages[7]["title"], "Data health");
    assert_eq!(pages[0]["path"], "/");
    assert_eq!(shell_paths().last(), Some("/rows"));
}
