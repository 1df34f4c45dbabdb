//! Read-only SQL over the warehouse: a DataFusion session with every table
//! registered, a guard that lets only queries through, and result encoding
//! (table, CSV, JSON, Arrow IPC) shared by the CLI and the API.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::{Error, Result, Warehouse};

/// Limits of a query session.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Memory the engine may use for sorts, joins and aggregates before it
    /// spills or fails; `None` is unbounded.
    pub memory_limit_bytes: Option<usize>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_limit_bytes: Some(2 << 30),
        }
    }
}

/// A read-only DataFusion session over all warehouse tables at their latest
/// committed versions. URL tables (`SELECT * FROM 'file.csv'`) stay
/// disabled, so a query cannot read outside the warehouse.
pub async fn read_only_session(
    warehouse: &Warehouse,
    limits: QueryLimits,
) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("fathom", "public");
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = limits.memory_limit_bytes {
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.build_arc()?)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    warehouse.register_tables(&ctx).await?;
    Ok(ctx)
}

/// The first two words of a statement, to name it in a refusal without
/// echoing all of it.
pub fn statement_keyword(text: &str) -> String {
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Refuses anything but a single query (`SELECT`, `WITH`, `VALUES`,
/// `EXPLAIN` of a query, `SHOW TABLES`/`SHOW COLUMNS`).
pub fn ensure_read_only(sql: &str) -> Result<()> {
    let statements = DFParser::parse_sql(sql).map_err(|e| Error::Sql(e.to_string()))?;
    if statements.len() != 1 {
        return Err(Error::ReadOnly(format!(
            "expected exactly one statement, got {}; run statements one at a time",
            statements.len()
        )));
    }
    let refuse = |what: &str| {
        Err(Error::ReadOnly(format!(
            "{what} is refused: SQL over the warehouse is read-only (queries only); \
             data is changed by `fathom import` and ingestion"
        )))
    };
    let mut statement = &statements[0];
    // EXPLAIN is fine as long as what it explains is.
    loop {
        match statement {
            DfStatement::Explain(explain) => statement = &explain.statement,
            DfStatement::CreateExternalTable(_) => return refuse("CREATE EXTERNAL TABLE"),
            DfStatement::CopyTo(_) => return refuse("COPY"),
            DfStatement::Reset(_) => return refuse("RESET"),
            DfStatement::Statement(inner) => {
                return match inner.as_ref() {
                    SqlStatement::Query(_)
                    | SqlStatement::ShowTables { .. }
                    | SqlStatement::ShowColumns { .. } => Ok(()),
                    SqlStatement::Explain { statement, .. }
                        if matches!(statement.as_ref(), SqlStatement::Query(_)) =>
                    {
                        Ok(())
                    }
                    other => refuse(&format!("`{}`", statement_keyword(&other.to_string()))),
                };
            }
        }
    }
}

/// Every cell of `batches` as display text, row by row (nulls empty).
pub fn text_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default()))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// Runs one read-only query and collects its result.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    ensure_read_only(sql)?;
    // Defence in depth: the planner refuses DDL, DML and statements too.
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| Error::Sql(e.to_string()))?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok((schema, batches))
}

/// How query results are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
    /// Newline-delimited JSON, one object per row.
    NdJson,
    /// Arrow IPC stream.
    ArrowIpc,
}

/// Encodes query results.
pub fn encode(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            out.extend_from_slice(table.to_string().as_bytes());
            out.push(b'\n');
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for batch in batches {
                writer.write(batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
        OutputFormat::NdJson => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        OutputFormat::ArrowIpc => {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pass() -> Result<()> {
        for sql in [
            "SELECT 1",
            "with x as (select 1 as a) select a from x",
            "VALUES (1)",
            "EXPLAIN SELECT * FROM deployments",
            "SHOW TABLES",
        ] {
            ensure_read_only(sql)?;
        }
        Ok(())
    }

    #[test]
    fn writes_and_escapes_are_refused() {
        for sql in [
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/out.csv'",
            "INSERT INTO deployments VALUES (1)",
            "DELETE FROM deployments",
            "UPDATE deployments SET status = 'x'",
            "DROP TABLE deployments",
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "SET datafusion.execution.batch_size = 1",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
            "SELECT 1; SELECT 2",
        ] {
            match ensure_read_only(sql) {
                Err(Error::ReadOnly(message)) => assert!(!message.is_empty()),
                other => panic!("{sql:?} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn unparsable_sql_is_a_sql_error() {
        assert!(matches!(ensure_read_only("SELEC 1"), Err(Error::Sql(_))));
    }
}
