//! The OpenAPI 3.1 document of the API (`/api/v1/openapi.json`) and its
//! browsable page (`/api/v1/docs`, self-contained: no CDN, works offline).
//!
//! The document is generated from [`operations`], the table of every
//! route the router serves; a test sends each of them to the router, so an
//! operation documented but not routed fails the build, and the router's
//! fallback answer names the table for the reverse mistake.

use serde_json::{Map, Value, json};

mod operations;
use operations::JSON;
pub use operations::operations;

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

fn schema(text: &str) -> Value {
    // The table's schemas are literals checked by a test; a typo shows as
    // an empty schema rather than a failed request.
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in operations() {
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
            {"name": "anomalies", "description": "Anomalies of cost and operational series, and feedback on them."},
            {"name": "risk", "description": "Deployment risk: the model's scores and the factors behind them."},
            {"name": "usage", "description": "Portal adoption, features, search and templates; numbers about fewer than k people withheld."},
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
        for op in operations() {
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
