//! The statement guard of the PostgreSQL endpoint: what a connection may
//! send. Every statement is parsed and measured on a large stack (the same
//! bounds as `POST /sql`), then must be a query (checked on its plan,
//! which also catches `SELECT … INTO`, and the plan's size bounded),
//! `SHOW`, a client-protocol `SET` from [`CLIENT_SETTINGS`], a cursor, or a
//! transaction or clean-up marker.
//!
//! Why an allow list for `SET`: all connections share one engine session,
//! so any setting the engine accepts (`"datafusion".execution.batch_size`
//! in any quoting or case, `timezone`, the SQL dialect) would change every
//! other user's queries until restart. The settings listed are kept per
//! connection (or are no-ops), so they are safe to accept.

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use fathom_warehouse::query::QueryBounds;
use fathom_warehouse::query::guard::{check_ast, check_plan, check_size, on_large_stack};

use super::user_error;

/// The `SET` names a connection may send: protocol and formatting settings
/// drivers send on connect, kept per connection by the endpoint.
pub const CLIENT_SETTINGS: [&str; 8] = [
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "bytea_output",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
];

/// Client metadata keys of the server's own, never shown by `SHOW`.
pub const PRIVATE_PREFIX: &str = "fathom.";

/// Checks every statement of `sql`; the first refusal is the answer.
pub async fn guard(ctx: &SessionContext, sql: &str, bounds: QueryBounds) -> PgWireResult<()> {
    let text = sql.to_owned();
    let statements = on_large_stack(move || -> PgWireResult<Vec<Statement>> {
        check_size(&text, &bounds).map_err(too_complex)?;
        let statements = PostgresCompatibilityParser::new()
            .parse(&text)
            .map_err(|e| user_error("ERROR", "42601", e.to_string()))?;
        for statement in &statements {
            check_ast(statement, &bounds).map_err(too_complex)?;
        }
        for statement in &statements {
            check_kind(statement)?;
        }
        Ok(statements)
    })
    .await
    .map_err(|e| user_error("ERROR", "XX000", e.to_string()))??;
    for statement in statements {
        match &statement {
            Statement::Query(_) | Statement::Explain { .. } => {
                ensure_read_only_plan(ctx, statement, &bounds).await?;
            }
            Statement::Declare { stmts } => {
                for declare in stmts {
                    if let Some(query) = &declare.for_query {
                        ensure_read_only_plan(ctx, Statement::Query(query.clone()), &bounds)
                            .await?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn too_complex(error: fathom_warehouse::Error) -> PgWireError {
    user_error("ERROR", "54001", error.to_string())
}

fn refused(what: &str) -> PgWireError {
    user_error(
        "ERROR",
        "25006",
        format!(
            "{what} is refused: SQL over the warehouse is read-only (queries only); \
             data is changed by `fathom import` and ingestion"
        ),
    )
}

/// A name as the engine would read it: quotes dropped, lower case.
fn normalized(name: &str) -> String {
    name.replace(['"', '`'], "").to_ascii_lowercase()
}

/// Refuses a statement of a kind the endpoint does not run (checked
/// before any planning).
pub fn check_kind(statement: &Statement) -> PgWireResult<()> {
    match statement {
        Statement::Query(_) | Statement::Explain { .. } | Statement::Declare { .. } => Ok(()),
        Statement::Set(set) => check_set(set),
        Statement::ShowVariable { variable } => {
            let name = normalized(
                &variable
                    .iter()
                    .map(|i| i.value.as_str())
                    .collect::<Vec<_>>()
                    .join("."),
            );
            if name.starts_with(PRIVATE_PREFIX) {
                Err(refused("SHOW of a server-private setting"))
            } else {
                Ok(())
            }
        }
        Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        // Drivers and poolers clean up sessions with these (psycopg sends
        // `DEALLOCATE ALL` after an error, poolers `DISCARD ALL`).
        | Statement::Deallocate { .. }
        | Statement::Discard { .. } => Ok(()),
        other => Err(refused(&format!(
            "`{}`",
            fathom_warehouse::query::statement_keyword(&other.to_string())
        ))),
    }
}

/// Only settings kept per connection pass.
fn check_set(set: &Set) -> PgWireResult<()> {
    let refusal = |name: &str| {
        user_error(
            "ERROR",
            "42501",
            format!(
                "SET {name} is refused: engine settings are shared by every connection; \
                 the settings a connection may change are {}",
                CLIENT_SETTINGS.join(", ")
            ),
        )
    };
    match set {
        Set::SingleAssignment { variable, .. } => {
            let name = normalized(&variable.to_string());
            if CLIENT_SETTINGS.contains(&name.as_str()) {
                Ok(())
            } else {
                Err(refusal(&name))
            }
        }
        // `SET TIME ZONE …` is kept per connection; `SET NAMES` and
        // transaction characteristics are no-ops here.
        Set::SetTimeZone { local: false, .. }
        | Set::SetNames { .. }
        | Set::SetTransaction { .. } => Ok(()),
        other => Err(refusal(&fathom_warehouse::query::statement_keyword(
            &other.to_string(),
        ))),
    }
}

async fn ensure_read_only_plan(
    ctx: &SessionContext,
    statement: Statement,
    bounds: &QueryBounds,
) -> PgWireResult<()> {
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| refused(&format!("this statement ({e})")))?;
    check_plan(&plan, bounds).map_err(too_complex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(sql: &str) -> PgWireResult<()> {
        let statements = PostgresCompatibilityParser::new()
            .parse(sql)
            .map_err(|e| user_error("ERROR", "42601", e.to_string()))?;
        statements.iter().try_for_each(check_kind)
    }

    #[test]
    fn engine_settings_are_refused_in_every_spelling() {
        for sql in [
            "SET datafusion.execution.batch_size = 1",
            "SET \"datafusion\".execution.batch_size = 1",
            "SET \"DataFusion\".\"Execution\".\"Batch_Size\" = 1",
            "set DATAFUSION.EXECUTION.BATCH_SIZE to 1",
            "SET \"datafusion.execution.batch_size\" = 1",
            "SET timezone = 'Asia/Tokyo'",
            "SET \"TimeZone\" = 'Asia/Tokyo'",
            "SET \"datafusion\".sql_parser.dialect = 'MySQL'",
            "SET datafusion.sql_parser.dialect TO 'mysql'",
            "SET LOCAL datafusion.execution.batch_size = 1",
            "SET datafusion.runtime.memory_limit = '1K'",
            "SHOW \"fathom.credential\"",
        ] {
            assert!(kind(sql).is_err(), "{sql} was accepted");
        }
    }

    #[test]
    fn client_settings_pass() -> PgWireResult<()> {
        for sql in [
            "SET application_name = 'psql'",
            "SET extra_float_digits = 3",
            "SET DateStyle = 'ISO, MDY'",
            "SET client_encoding = 'UTF8'",
            "SET statement_timeout = 0",
            "SET TIME ZONE 'UTC'",
            "SHOW TimeZone",
            "SELECT 1",
        ] {
            kind(sql)?;
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, ..Default::default() })]

        /// Whatever a connection sends, the guard's parse and kind check
        /// answer (a refusal is an error), never panic.
        #[test]
        fn the_statement_guard_never_panics(sql in "(SET|SHOW|SELECT|WITH|DECLARE|FETCH|[\\PC]){0,6}[\\PC]{0,120}") {
            let _ = kind(&sql);
        }
    }
}
