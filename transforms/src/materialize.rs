//! Common table expressions a mart's SQL marks `AS MATERIALIZED` are
//! computed once.
//!
//! The engine inlines every CTE where it is referenced, so a CTE read three
//! times is computed three times — with its joins, sorts and window
//! functions — and their hash tables are held at once. The hint is
//! PostgreSQL's and DuckDB's (which honour it too), so the SQL stays
//! runnable elsewhere; the engine's parser does not know it, so it is
//! taken out of the text first ([`hints`]). Here each marked
//! CTE the query reads at least twice, in order, is run on its own (with the CTEs before it), streamed to
//! a temporary Parquet file in the system's temporary directory (`TMPDIR`,
//! as spills), and registered in the mart's session under its name; the
//! query then runs without it. The files live as long as the returned
//! [`Scratch`], which the caller keeps until the mart's rows are written.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::LazyLock;

use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Cte, Query, Statement, visit_relations};
use regex::Regex;

use crate::{Error, Result};

/// Rows per row group of a materialized CTE: the writer holds one row
/// group per file in memory (outside the engine's pool).
const ROW_GROUP_ROWS: usize = 65_536;

/// `name AS MATERIALIZED (`, the hint's only form in the marts.
static HINT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b([a-z_][a-z0-9_]*)\s+AS\s+MATERIALIZED\s*\(").ok());

/// `sql` without its `AS MATERIALIZED` hints, and the CTEs they mark
/// (lower case).
pub(crate) fn hints(sql: &str) -> (String, BTreeSet<String>) {
    let Some(hint) = HINT.as_ref() else {
        return (sql.to_owned(), BTreeSet::new());
    };
    let marked = hint
        .captures_iter(sql)
        .filter_map(|c| c.get(1))
        .map(|name| name.as_str().to_ascii_lowercase())
        .collect();
    (hint.replace_all(sql, "$1 AS (").into_owned(), marked)
}

/// Where the materialized CTEs of one query live; removed when dropped.
#[derive(Debug)]
pub(crate) struct Scratch {
    _dir: Option<tempfile::TempDir>,
}

/// The query `sql` as a frame of `ctx`, its `AS MATERIALIZED` CTEs
/// computed first. `mart` names the query in errors.
pub(crate) async fn frame(
    ctx: &SessionContext,
    sql: &str,
    mart: &'static str,
) -> Result<(DataFrame, Scratch)> {
    let sql_error = |source| Error::Sql { mart, source };
    let (sql, hinted) = hints(sql);
    // Without a hint the text is planned once, as any query.
    let marked_query = if hinted.is_empty() {
        None
    } else {
        let dialect = ctx.state().config().options().sql_parser.dialect;
        match ctx
            .state()
            .sql_to_statement(&sql, &dialect)
            .map_err(sql_error)?
        {
            DfStatement::Statement(boxed) => match *boxed {
                Statement::Query(query) if marked(&query, &hinted) => Some(query),
                _ => None,
            },
            _ => None,
        }
    };
    let Some(mut query) = marked_query else {
        let frame = ctx.sql(&sql).await.map_err(sql_error)?;
        return Ok((frame, Scratch { _dir: None }));
    };
    let read = reads(&query);
    let Some(with) = query.with.as_mut() else {
        // `marked` found a CTE, so there is a WITH.
        let frame = ctx.sql(&sql).await.map_err(sql_error)?;
        return Ok((frame, Scratch { _dir: None }));
    };
    let dir = tempfile::Builder::new()
        .prefix("fathom-mart-")
        .tempdir()
        .map_err(|e| Error::Scratch(e.to_string()))?;
    let mut kept = Vec::with_capacity(with.cte_tables.len());
    let mut registered = Vec::new();
    for cte in std::mem::take(&mut with.cte_tables) {
        if !apart(&cte, &hinted, &read) {
            kept.push(cte);
            continue;
        }
        let name = cte.alias.name.value.clone();
        // The CTE on its own, with the (unmaterialized) CTEs before it;
        // those already materialized are tables of the session now.
        let mut own = (*cte.query).clone();
        if !kept.is_empty() {
            let mut before = with.clone();
            before.cte_tables = kept.clone();
            if let Some(inner) = own.with.as_mut() {
                before.cte_tables.append(&mut inner.cte_tables);
            }
            own.with = Some(before);
        }
        // A directory (the trailing slash): one file per partition.
        let path_text = format!("{}/", dir.path().join(&name).display());
        let mut options = TableParquetOptions::default();
        options.global.max_row_group_size = ROW_GROUP_ROWS;
        let started = std::time::Instant::now();
        let rows = ctx.sql(&own.to_string()).await.map_err(sql_error)?;
        // Declared, not inferred: an empty result writes no file.
        let schema = rows.schema().as_arrow().clone();
        rows.write_parquet(&path_text, DataFrameWriteOptions::new(), Some(options))
            .await
            .map_err(sql_error)?;
        ctx.register_parquet(
            &name,
            &path_text,
            ParquetReadOptions::default().schema(&schema),
        )
        .await
        .map_err(sql_error)?;
        tracing::debug!(mart, cte = %name, seconds = started.elapsed().as_secs_f64(), "materialized");
        registered.push(name);
    }
    with.cte_tables = kept;
    if with.cte_tables.is_empty() {
        query.with = None;
    }
    let frame = ctx.sql(&query.to_string()).await.map_err(sql_error);
    // Planned: the plan holds the tables it reads, and the names must not
    // outlive this query in a session other queries share.
    for name in &registered {
        ctx.deregister_table(name.as_str()).map_err(sql_error)?;
    }
    Ok((frame?, Scratch { _dir: Some(dir) }))
}

/// How many times `query` reads each relation name (lower case).
fn reads(query: &Query) -> BTreeMap<String, usize> {
    let mut read = BTreeMap::new();
    let _: ControlFlow<()> = visit_relations(query, |relation| {
        *read
            .entry(relation.to_string().to_ascii_lowercase())
            .or_insert(0) += 1;
        ControlFlow::Continue(())
    });
    read
}

/// Whether `cte` is to be computed apart: marked, and read at least twice
/// (a fragment shared by two marts may be read once in one of them, where
/// writing it out would only cost).
fn apart(cte: &Cte, hinted: &BTreeSet<String>, read: &BTreeMap<String, usize>) -> bool {
    let name = cte.alias.name.value.to_ascii_lowercase();
    hinted.contains(&name) && read.get(&name).is_some_and(|n| *n >= 2)
}

/// Whether `query` has a CTE to compute apart.
fn marked(query: &Query, hinted: &BTreeSet<String>) -> bool {
    let read = reads(query);
    query
        .with
        .as_ref()
        .is_some_and(|with| with.cte_tables.iter().any(|cte| apart(cte, hinted, &read)))
}
