//! DuckDB running the marts' own SQL over the same Delta tables' live
//! Parquet files, for the benchmarks' comparisons: what an analyst would
//! run instead.

use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use fathom_models::TableDef;
use fathom_warehouse::Warehouse;

/// DuckDB's type for an Arrow type of the warehouse.
fn duckdb_type(data_type: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as T;
    match data_type {
        T::Int64 | T::Int32 => "BIGINT".to_owned(),
        T::Float64 => "DOUBLE".to_owned(),
        T::Boolean => "BOOLEAN".to_owned(),
        T::Timestamp(_, _) => "TIMESTAMPTZ".to_owned(),
        T::Date32 => "DATE".to_owned(),
        T::List(field) => format!("{}[]", duckdb_type(field.data_type())),
        T::Map(_, _) => "MAP(VARCHAR, VARCHAR)".to_owned(),
        _ => "VARCHAR".to_owned(),
    }
}

/// A DuckDB statement making `def` readable: a view over the table's live
/// Parquet files (the Delta snapshot's, so files a later commit removed
/// are not read), or an empty table of its columns.
async fn duckdb_table(warehouse: &Warehouse, def: &TableDef) -> Result<String> {
    let files: Vec<String> = match warehouse.open_table(def).await? {
        Some(table) => table
            .get_file_uris()
            .map_err(|e| anyhow::anyhow!("{}: {e}", def.name))?
            .map(|uri| uri.trim_start_matches("file://").to_owned())
            .collect(),
        None => Vec::new(),
    };
    if files.is_empty() {
        let columns: Vec<String> = def
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| format!("\"{}\" {}", f.name(), duckdb_type(f.data_type())))
            .collect();
        return Ok(format!(
            "CREATE TABLE {} ({})",
            def.name,
            columns.join(", ")
        ));
    }
    let list = files
        .iter()
        .map(|f| format!("'{}'", f.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "CREATE VIEW {} AS SELECT * FROM read_parquet([{list}], hive_partitioning = true)",
        def.name
    ))
}

/// What DuckDB did: per mart (seconds, rows), the peak resident MB, and
/// per mart the rows only one engine wrote (Fathom's, DuckDB's).
pub struct DuckDb {
    /// (mart, seconds, rows, rows only Fathom wrote, rows only DuckDB wrote).
    pub marts: Vec<(String, f64, u64, u64, u64)>,
    /// Peak resident MB of the DuckDB process.
    pub peak_mb: f64,
}

/// The marts `compared` (in order; a later one may read an earlier one)
/// run by DuckDB over the warehouse at `data` with the default
/// parameters, each compared row for row with the mart Fathom wrote;
/// `None` without the `duckdb` Python package.
pub async fn duckdb(
    warehouse: &Warehouse,
    data: &Path,
    as_of: DateTime<Utc>,
    compared: &[&str],
) -> Result<Option<DuckDb>> {
    let parameters = fathom_transforms::Parameters::default();
    let mut setup = Vec::new();
    let mut marts = Vec::new();
    let mut needed: Vec<&TableDef> = Vec::new();
    for name in compared {
        let mart = fathom_transforms::marts::named(name).context("no such mart")?;
        for def in mart.reads {
            if !compared.contains(&def.name) && !needed.iter().any(|d| d.name == def.name) {
                needed.push(def);
            }
        }
        let fathom_rows = format!(
            "{}\n",
            duckdb_table(warehouse, mart.def).await?.replacen(
                &format!(" {} ", mart.def.name),
                &format!(" fathom_{} ", mart.def.name),
                1
            )
        );
        marts.push(serde_json::json!({
            "name": name,
            "sql": parameters.fill(mart.sql, as_of)?,
            "fathom": fathom_rows,
        }));
    }
    for def in needed {
        setup.push(duckdb_table(warehouse, def).await?);
    }
    let spec = data.join("duckdb.json");
    std::fs::write(
        &spec,
        serde_json::to_vec(
            &serde_json::json!({"setup": setup, "marts": marts, "out": data.join("duckdb-out")}),
        )?,
    )?;
    // The marts' own functions, as DuckDB macros with the same meaning
    // (`functions.rs`); DataFusion's `regexp_match` returns the groups.
    let script = r#"
import duckdb, json, os, sys, time
spec = json.load(open(sys.argv[1]))
os.makedirs(spec["out"], exist_ok=True)
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
con.execute("SET TimeZone = 'UTC'")
con.execute("CREATE MACRO seconds_between(a, b) AS (epoch_us(b) - epoch_us(a)) / 1e6")
con.execute("CREATE MACRO nonnegative(x) AS CASE WHEN x < 0 THEN NULL ELSE x END")
con.execute("CREATE MACRO regexp_match(s, p) AS CASE WHEN regexp_matches(s, p) THEN [regexp_extract(s, p, 1)] END")
con.execute("CREATE MACRO regexp_like(s, p, f) AS regexp_matches(s, p, f)")
for name in ["array_element"]:
    try:
        con.execute("SELECT " + name + "([1], 1)")
    except Exception:
        con.execute("CREATE MACRO " + name + "(l, i) AS list_extract(l, i)")
for statement in spec["setup"]:
    con.execute(statement)
# Same function, another name.
renamed = {"btrim(": "trim(", "to_char(": "strftime("}
for mart in spec["marts"]:
    name = mart["name"]
    sql = mart["sql"]
    for ours, theirs in renamed.items():
        sql = sql.replace(ours, theirs)
    started = time.time()
    con.execute("CREATE TABLE " + name + " AS " + sql)
    path = os.path.join(spec["out"], name + ".parquet")
    con.execute("COPY " + name + " TO '" + path + "' (FORMAT parquet)")
    seconds = time.time() - started
    rows = con.execute("SELECT count(*) FROM " + name).fetchone()[0]
    con.execute(mart["fathom"])
    columns = ", ".join('"' + c[0] + '"' for c in con.execute("DESCRIBE " + name).fetchall())
    only_fathom = con.execute("SELECT count(*) FROM (SELECT " + columns + " FROM fathom_" + name + " EXCEPT ALL SELECT " + columns + " FROM " + name + ")").fetchone()[0]
    only_duckdb = con.execute("SELECT count(*) FROM (SELECT " + columns + " FROM " + name + " EXCEPT ALL SELECT " + columns + " FROM fathom_" + name + ")").fetchone()[0]
    print("mart", name, seconds, rows, only_fathom, only_duckdb, flush=True)
"#;
    let Some((stdout, peak)) = crate::timed::duckdb_script(data, script, &[&spec])? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("mart ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split_whitespace().collect();
        let [name, seconds, rows, only_fathom, only_duckdb] = parts[..] else {
            bail!("duckdb printed `{line}`");
        };
        out.push((
            name.to_owned(),
            seconds.parse()?,
            rows.parse()?,
            only_fathom.parse()?,
            only_duckdb.parse()?,
        ));
    }
    Ok(Some(DuckDb {
        marts: out,
        peak_mb: peak,
    }))
}
