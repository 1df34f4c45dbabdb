//! Bounds on a caller's SQL before it reaches the planner: the text's
//! size, how deeply expressions nest, how many set operations a query
//! chains, and how many nodes its logical plan has.
//!
//! Why: the parser builds left-deep trees for `a + b + c …` and
//! `… UNION ALL …` chains in a loop, without its recursion limit, and
//! everything after it (planner, optimizer, `Drop`, `Display`) walks those
//! trees recursively. A 4 KB query with 2,000 terms used to overflow a
//! worker's stack, which aborts the whole process. So the text is parsed
//! and measured on a thread with a large stack ([`on_large_stack`]), and only
//! a statement within the bounds leaves it; a CTE referenced from CTEs that
//! reference it again plans into a tree that doubles per level, so the plan
//! is counted with a budget before anything optimizes or runs it.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, SetExpr, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::{Error, Result};

/// Stack of the threads that parse and measure callers' SQL: deep enough
/// for the largest text [`QueryBounds::max_sql_bytes`] admits to be parsed,
/// measured and dropped (it is reserved address space; only what a query
/// touches is used).
const LARGE_STACK: usize = 256 << 20;

/// The bounds a caller's query must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryBounds {
    /// Longest SQL text, bytes.
    pub max_sql_bytes: usize,
    /// Deepest nesting of expressions (`1+1+…+1` nests one level a term).
    pub max_expression_depth: usize,
    /// Most set operations (`UNION`, `INTERSECT`, `EXCEPT`) in one query.
    pub max_set_operations: usize,
    /// Most nodes in the logical plan (CTEs count once per reference).
    pub max_plan_nodes: usize,
    /// Most copies of CTE bodies a query expands to (a CTE referenced
    /// twice by a CTE referenced twice counts four).
    pub max_cte_expansions: u64,
}

impl Default for QueryBounds {
    fn default() -> Self {
        Self {
            max_sql_bytes: 1 << 20,
            max_expression_depth: 256,
            max_set_operations: 500,
            max_plan_nodes: 5_000,
            max_cte_expansions: 1_000,
        }
    }
}

/// Runs `work` on a thread with a large stack and waits for it without
/// blocking the async runtime. A panic on that thread is an error, not a
/// crash.
pub async fn on_large_stack<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (send, receive) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fathom-sql-guard".to_owned())
        .stack_size(LARGE_STACK)
        .spawn(move || {
            let _ = send.send(work());
        })
        .map_err(|e| Error::Sql(format!("cannot start a query thread: {e}")))?;
    receive
        .await
        .map_err(|_| Error::Sql("the query could not be checked (internal failure)".to_owned()))
}

/// Parses `sql` (one or more statements) and refuses it unless every
/// statement is within `bounds`. Call it on a large stack
/// ([`on_large_stack`]): the refused trees are dropped there.
pub fn parse_bounded(sql: &str, bounds: &QueryBounds) -> Result<Vec<DfStatement>> {
    check_size(sql, bounds)?;
    let dialect = GenericDialect {};
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .map_err(|e| Error::Sql(e.to_string()))?;
    let statements = parser
        .parse_statements()
        .map_err(|e| Error::Sql(e.to_string()))?;
    for statement in &statements {
        if let DfStatement::Statement(inner) = statement {
            check_ast(inner.as_ref(), bounds)?;
        }
    }
    Ok(statements.into_iter().collect())
}

/// Refuses a text longer than the bound.
pub fn check_size(sql: &str, bounds: &QueryBounds) -> Result<()> {
    if sql.len() > bounds.max_sql_bytes {
        return Err(too_complex(format!(
            "the SQL text is {} bytes; the limit is {} bytes",
            sql.len(),
            bounds.max_sql_bytes
        )));
    }
    Ok(())
}

/// Refuses a parsed statement (any `Visit` node) whose expressions nest
/// deeper, or whose queries chain more set operations, than the bounds.
pub fn check_ast<V: Visit>(node: &V, bounds: &QueryBounds) -> Result<()> {
    let mut measure = Measure {
        bounds,
        depth: 0,
        refusal: None,
    };
    let _ = node.visit(&mut measure);
    match measure.refusal {
        Some(reason) => Err(too_complex(reason)),
        None => Ok(()),
    }
}

fn too_complex(reason: String) -> Error {
    Error::TooComplex(format!(
        "the query is too complex to run: {reason}; simplify it (use IN lists, \
         CASE, or several smaller queries)"
    ))
}

/// The visitor that measures: it stops descending as soon as a bound is
/// passed, so its own recursion never goes deeper than the bounds.
struct Measure<'a> {
    bounds: &'a QueryBounds,
    depth: usize,
    refusal: Option<String>,
}

impl Visitor for Measure<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // Set operations chain left-deep without passing through an
        // expression; count them without recursion before descending.
        let operations = set_operations(&query.body, self.bounds.max_set_operations);
        if operations > self.bounds.max_set_operations {
            self.refusal = Some(format!(
                "more than {} set operations (UNION, INTERSECT, EXCEPT) in one query",
                self.bounds.max_set_operations
            ));
            return ControlFlow::Break(());
        }
        // The planner expands every reference to a CTE into its own copy of
        // the CTE's plan, so CTEs that reference CTEs twice grow 2^levels:
        // count the copies before anything plans them.
        match cte_expansions(query, self.bounds) {
            Ok(copies) if copies <= self.bounds.max_cte_expansions => ControlFlow::Continue(()),
            Ok(_) => {
                self.refusal = Some(format!(
                    "its CTEs expand to more than {} copies (a CTE referenced twice by a CTE \
                     referenced twice counts four)",
                    self.bounds.max_cte_expansions
                ));
                ControlFlow::Break(())
            }
            Err(reason) => {
                self.refusal = Some(reason);
                ControlFlow::Break(())
            }
        }
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.bounds.max_expression_depth {
            self.refusal = Some(format!(
                "expressions nest more than {} levels deep",
                self.bounds.max_expression_depth
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

/// How many CTE bodies `query` expands to: each CTE weighs one plus the
/// weights of the earlier CTEs it references (as often as it references
/// them), and the query the weights of what its body references. Names
/// are compared in lower case, ignoring shadowing (an over-count, never an
/// under-count). An expression too deep to count is an error.
fn cte_expansions(query: &Query, bounds: &QueryBounds) -> Result<u64, String> {
    let Some(with) = &query.with else {
        return Ok(0);
    };
    let mut weights: HashMap<String, u64> = HashMap::new();
    let mut largest = 0_u64;
    for cte in &with.cte_tables {
        let name = cte.alias.name.value.to_lowercase();
        let references = references(cte.query.as_ref(), &weights, bounds)?;
        let weight = references.saturating_add(1);
        largest = largest.max(weight);
        weights.insert(name, weight);
    }
    let body = references(query.body.as_ref(), &weights, bounds)?;
    Ok(largest.max(body))
}

/// The summed weights of the relations in `node` that name a CTE of
/// `weights`.
fn references<V: Visit>(
    node: &V,
    weights: &HashMap<String, u64>,
    bounds: &QueryBounds,
) -> Result<u64, String> {
    let mut count = References {
        weights,
        bounds,
        depth: 0,
        total: 0,
        too_deep: false,
    };
    let _ = node.visit(&mut count);
    if count.too_deep {
        return Err(format!(
            "expressions nest more than {} levels deep",
            bounds.max_expression_depth
        ));
    }
    Ok(count.total)
}

/// Counts references to CTEs; stops at the expression-depth bound so its
/// own recursion stays bounded.
struct References<'a> {
    weights: &'a HashMap<String, u64>,
    bounds: &'a QueryBounds,
    depth: usize,
    total: u64,
    too_deep: bool,
}

impl Visitor for References<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let [ObjectNamePart::Identifier(name)] = relation.0.as_slice()
            && let Some(weight) = self.weights.get(&name.value.to_lowercase())
        {
            self.total = self.total.saturating_add(*weight);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.bounds.max_expression_depth {
            self.too_deep = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

/// Set operations in a query body, counted with an explicit stack; stops
/// counting past `limit`.
fn set_operations(body: &SetExpr, limit: usize) -> usize {
    let mut count = 0;
    let mut pending = vec![body];
    while let Some(node) = pending.pop() {
        if let SetExpr::SetOperation { left, right, .. } = node {
            count += 1;
            if count > limit {
                break;
            }
            pending.push(left);
            pending.push(right);
        }
    }
    count
}

/// Refuses a logical plan with more nodes than the bound (subqueries
/// included). Counting stops at the bound, so a plan that would double per
/// CTE level is refused in bounded time.
pub fn check_plan(plan: &LogicalPlan, bounds: &QueryBounds) -> Result<()> {
    let mut nodes = 0_usize;
    let _ = plan.apply_with_subqueries(|_| {
        nodes += 1;
        Ok(if nodes > bounds.max_plan_nodes {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if nodes > bounds.max_plan_nodes {
        return Err(too_complex(format!(
            "its plan has more than {} nodes (a CTE counts once per reference)",
            bounds.max_plan_nodes
        )));
    }
    Ok(())
}

/// `SELECT 1+1+…+1` with `terms` terms (tests and the abuse suite).
pub fn sum_of_ones(terms: usize) -> String {
    format!("SELECT {}", vec!["1"; terms.max(1)].join("+"))
}

/// `SELECT 1 UNION ALL SELECT 1 …` with `branches` branches.
pub fn union_of_ones(branches: usize) -> String {
    vec!["SELECT 1 AS x"; branches.max(1)].join(" UNION ALL ")
}

/// A CTE chain where each level joins the previous one to itself:
/// `levels` levels plan into about 2^levels scans.
pub fn cte_fan_out(levels: usize) -> String {
    let mut sql = String::from("WITH t0 AS (SELECT value AS v FROM range(10))");
    for level in 1..=levels {
        let previous = level - 1;
        sql.push_str(&format!(
            ", t{level} AS (SELECT a.v FROM t{previous} a JOIN t{previous} b ON a.v = b.v)"
        ));
    }
    sql.push_str(&format!(" SELECT count(*) FROM t{levels}"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> bool {
        matches!(
            parse_bounded(sql, &QueryBounds::default()),
            Err(Error::TooComplex(_))
        )
    }

    #[tokio::test]
    async fn deep_expressions_and_long_unions_are_refused_without_overflowing() -> Result<()> {
        let refusals = on_large_stack(|| {
            [
                refused(&sum_of_ones(2_000)),
                refused(&sum_of_ones(100_000)),
                refused(&union_of_ones(8_000)),
                refused(&format!("SELECT * FROM ({}) u", union_of_ones(8_000))),
                refused(&cte_fan_out(11)),
                refused(&cte_fan_out(40)),
                !refused(&sum_of_ones(200)),
                !refused(&union_of_ones(400)),
                !refused(&cte_fan_out(8)),
            ]
        })
        .await?;
        assert_eq!(refusals, [true; 9]);
        Ok(())
    }

    #[test]
    fn text_over_the_size_bound_is_refused() {
        let bounds = QueryBounds {
            max_sql_bytes: 100,
            ..QueryBounds::default()
        };
        let sql = format!("SELECT '{}'", "x".repeat(200));
        assert!(matches!(
            parse_bounded(&sql, &bounds),
            Err(Error::TooComplex(_))
        ));
    }
}
