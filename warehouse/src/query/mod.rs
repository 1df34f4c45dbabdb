//! Read-only SQL over the warehouse: a DataFusion session with every table
//! registered, a guard that lets only bounded queries through
//! ([`guard`]), functions that cannot build unbounded values
//! ([`functions`]), results streamed up to a row limit, and result encoding
//! (table, CSV, JSON, Arrow IPC) shared by the CLI and the API.

pub mod functions;
pub mod guard;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;

pub use guard::QueryBounds;

use crate::{Error, Result, Warehouse};

/// Limits of a query session.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Memory the engine may use for sorts, joins and aggregates before it
    /// spills or fails; `None` is unbounded. Sessions opened on one
    /// [`query_runtime`] share it.
    pub memory_limit_bytes: Option<usize>,
    /// How large and deep a caller's query may be.
    pub bounds: QueryBounds,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_limit_bytes: Some(2 << 30),
            bounds: QueryBounds::default(),
        }
    }
}

/// The engine's runtime: its memory pool (fair between spilling
/// operators; an error names the largest consumers) and spill files. A
/// server opens every session on one, so the pool bounds all its queries
/// together, not each one.
pub fn query_runtime(limits: QueryLimits) -> Result<Arc<RuntimeEnv>> {
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = limits.memory_limit_bytes {
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(bytes),
            std::num::NonZeroUsize::new(3).unwrap_or(std::num::NonZeroUsize::MIN),
        );
        runtime = runtime.with_memory_pool(Arc::new(pool));
    }
    Ok(runtime.build_arc()?)
}

/// A read-only DataFusion session over all warehouse tables at their latest
/// committed versions, with its own memory pool. URL tables (`SELECT * FROM
/// 'file.csv'`) stay disabled, so a query cannot read outside the
/// warehouse.
pub async fn read_only_session(
    warehouse: &Warehouse,
    limits: QueryLimits,
) -> Result<SessionContext> {
    read_only_session_on(warehouse, query_runtime(limits)?).await
}

/// The engine settings every Fathom session starts from (the marts' and
/// the analysts').
///
/// Partial aggregation is never skipped: the engine switches a partial
/// aggregate with many groups to passing rows through
/// (`skip_partial_aggregation_probe_*`), and `percentile_cont … WITHIN
/// GROUP` (the DORA medians) then panics converting its input to state
/// (datafusion-functions-aggregate 55.2, "one argument to merge_batch"):
/// seen at 5,000 services, where `dora_trends` has a group per service
/// and week. A ratio above 1 can never be reached.
pub fn engine_config() -> SessionConfig {
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_ratio_threshold = 2.0;
    config
}

/// [`read_only_session`] on a shared runtime (its memory pool).
pub async fn read_only_session_on(
    warehouse: &Warehouse,
    runtime: Arc<RuntimeEnv>,
) -> Result<SessionContext> {
    let config = engine_config()
        .with_information_schema(true)
        .with_default_catalog_and_schema("fathom", "public");
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    functions::bound_growing_functions(&ctx);
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
    let statements =
        datafusion::sql::parser::DFParser::parse_sql(sql).map_err(|e| Error::Sql(e.to_string()))?;
    ensure_one_read_only(&statements.into_iter().collect::<Vec<_>>()).map(|_| ())
}

/// The one statement of `statements`, if it is a query.
fn ensure_one_read_only(statements: &[DfStatement]) -> Result<&DfStatement> {
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
    let first = &statements[0];
    let mut statement = first;
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
                    | SqlStatement::ShowColumns { .. } => Ok(first),
                    SqlStatement::Explain { statement, .. }
                        if matches!(statement.as_ref(), SqlStatement::Query(_)) =>
                    {
                        Ok(first)
                    }
                    // Bounded by the guard, so naming it is safe.
                    other => refuse(&format!("`{}`", statement_keyword(&other.to_string()))),
                };
            }
        }
    }
}

/// The plan of one read-only query within `bounds`: parsed and measured on
/// a large stack, refused unless it is a query, planned, verified
/// read-only by the planner too (which catches `SELECT … INTO`), and its
/// plan's size checked before anything optimizes or runs it.
pub async fn plan_read_only(
    ctx: &SessionContext,
    sql: &str,
    bounds: QueryBounds,
) -> Result<LogicalPlan> {
    let text = sql.to_owned();
    let statement = guard::on_large_stack(move || -> Result<DfStatement> {
        let statements = guard::parse_bounded(&text, &bounds)?;
        ensure_one_read_only(&statements)?;
        statements
            .into_iter()
            .next()
            .ok_or_else(|| Error::ReadOnly("no statement".to_owned()))
    })
    .await??;
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(|e| Error::Sql(e.to_string()))?;
    // Defence in depth: the planner refuses DDL, DML and statements too.
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| Error::ReadOnly(format!("this statement is refused: {e}")))?;
    guard::check_plan(&plan, &bounds)?;
    Ok(plan)
}

/// Runs one read-only query and streams its result.
pub async fn query_stream(
    ctx: &SessionContext,
    sql: &str,
    bounds: QueryBounds,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let plan = plan_read_only(ctx, sql, bounds).await?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(Error::from_engine)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let stream = frame.execute_stream().await.map_err(Error::from_engine)?;
    Ok((schema, stream))
}

/// What [`collect_bounded`] kept.
#[derive(Debug)]
pub struct Collected {
    /// The rows kept, at most the row limit.
    pub batches: Vec<RecordBatch>,
    /// How many rows that is.
    pub rows: usize,
    /// True when the result had more rows (or bytes) than kept.
    pub truncated: bool,
}

/// Reads `stream` until it ends, `max_rows` rows are kept or the kept
/// batches pass `max_bytes`; the rest is never computed (dropping the
/// stream cancels the query).
pub async fn collect_bounded(
    mut stream: SendableRecordBatchStream,
    max_rows: usize,
    max_bytes: usize,
) -> Result<Collected> {
    let mut kept = Collected {
        batches: Vec::new(),
        rows: 0,
        truncated: false,
    };
    let mut bytes = 0_usize;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::from_engine)?;
        let room = max_rows.saturating_sub(kept.rows);
        if batch.num_rows() > room || bytes > max_bytes {
            kept.truncated = true;
        }
        let batch = batch.slice(0, batch.num_rows().min(room));
        kept.rows += batch.num_rows();
        bytes = bytes.saturating_add(batch.get_array_memory_size());
        if batch.num_rows() > 0 {
            kept.batches.push(batch);
        }
        if kept.truncated || kept.rows >= max_rows {
            // One more row would tell "exactly the limit" from "more".
            if !kept.truncated && stream.next().await.is_some() {
                kept.truncated = true;
            }
            break;
        }
    }
    Ok(kept)
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

/// Runs one read-only query within the default bounds and collects its
/// whole result (the marts and panels: queries of known size).
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let (schema, stream) = query_stream(ctx, sql, QueryBounds::default()).await?;
    let batches = datafusion::physical_plan::common::collect(stream)
        .await
        .map_err(Error::from_engine)?;
    Ok((schema, batches))
}

/// Whether a spreadsheet would run `text` as a formula: it starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return.
pub fn looks_like_formula(text: &str) -> bool {
    text.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// Text that a spreadsheet shows as it is: a cell that
/// [looks like a formula](looks_like_formula) gets a leading `'`.
pub fn spreadsheet_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if looks_like_formula(text) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `batches` with every text cell made [spreadsheet-safe](spreadsheet_safe)
/// (CSV exports meant for people; numbers are left alone).
pub fn neutralise_formulas(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    use arrow::array::{Array, ArrayRef, AsArray, StringArray};
    use arrow::datatypes::DataType;
    batches
        .iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .map(|column| -> Result<ArrayRef> {
                    let text = match column.data_type() {
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                            arrow::compute::cast(column, &DataType::Utf8)?
                        }
                        _ => return Ok(column.clone()),
                    };
                    let text = text.as_string::<i32>();
                    let safe: StringArray = text
                        .iter()
                        .map(|v| v.map(|v| spreadsheet_safe(v).into_owned()))
                        .collect();
                    Ok(arrow::compute::cast(&safe, column.data_type())?)
                })
                .collect::<Result<_>>()?;
            Ok(RecordBatch::try_new(batch.schema(), columns)?)
        })
        .collect()
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

    /// A median per group over many groups and rows (where the engine
    /// would stop aggregating partially) answers instead of panicking.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn medians_over_many_groups_answer() -> Result<()> {
        let median = |config: SessionConfig| async move {
            let ctx = SessionContext::new_with_config(config.with_target_partitions(2));
            let batches = ctx
                .sql(
                    "SELECT count(*) AS groups, sum(m) AS total FROM ( \
                         SELECT k, percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS m \
                         FROM (SELECT value % 300000 AS k, CAST(value AS DOUBLE) AS v FROM range(600000)) \
                         GROUP BY k)",
                )
                .await?
                .collect()
                .await?;
            Ok::<_, Error>(arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
        };
        let text = median(engine_config()).await?;
        // Groups k and k + 300000: each median is k + 150000.
        assert!(text.contains("| 300000 | 89999850000.0 |"), "{text}");
        Ok(())
    }

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
    fn formulas_are_neutralised_and_other_text_is_not() -> Result<()> {
        use arrow::array::{AsArray, Int64Array, StringArray};
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("t", arrow::datatypes::DataType::Utf8, true),
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("=HYPERLINK(\"http://x\")"),
                    Some("+1"),
                    Some("-2"),
                    Some("@SUM(A1)"),
                    Some("\tx"),
                    Some("\rx"),
                    Some("plain = text"),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![-1, 2, 3, 4, 5, 6, 7, 8])),
            ],
        )?;
        let numbers = batch.column(1).clone();
        let safe = neutralise_formulas(&[batch])?;
        let text: Vec<Option<&str>> = safe[0].column(0).as_string::<i32>().iter().collect();
        assert_eq!(
            text,
            [
                Some("'=HYPERLINK(\"http://x\")"),
                Some("'+1"),
                Some("'-2"),
                Some("'@SUM(A1)"),
                Some("'\tx"),
                Some("'\rx"),
                Some("plain = text"),
                None
            ]
        );
        assert_eq!(
            safe[0].column(1).as_ref(),
            numbers.as_ref(),
            "numbers untouched"
        );
        let csv = String::from_utf8(encode(&safe[0].schema(), &safe, OutputFormat::Csv)?).unwrap();
        assert!(csv.contains("\n-1\n") || csv.contains(",-1\n"), "{csv}");
        Ok(())
    }

    #[test]
    fn unparsable_sql_is_a_sql_error() {
        assert!(matches!(ensure_read_only("SELEC 1"), Err(Error::Sql(_))));
    }
}
