//! Functions that build values larger than their inputs (`repeat`,
//! `lpad`, `rpad`, `replace`, `regexp_replace`, `array_repeat`,
//! `array_resize`, and the array forms of `range` and `generate_series`),
//! wrapped so that one call cannot allocate more than a bound.
//!
//! Why: the engine's memory pool accounts for what sorts, joins and
//! aggregates hold, not for the arrays a scalar function returns, so
//! `SELECT repeat('x', 1000000000) FROM range(3)` allocated gigabytes
//! outside any limit and the kernel killed the server. Each wrapper
//! estimates, from its arguments and before calling the engine's function,
//! an upper bound of what the call will build for its batch, and answers an
//! error instead when that passes [`MAX_BUILT_BYTES`]. Everything else
//! (signature, types, simplification) is the engine's own function.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::kernels::aggregate;
use arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// Most bytes one call of a value-building function may build for its
/// batch (array elements count 8 bytes each).
pub const MAX_BUILT_BYTES: u64 = 64 << 20;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: text length × n.
    Repeat,
    /// `lpad(text, n [, fill])`: n characters (4 bytes each at most).
    Pad,
    /// `replace(text, from, to)` and `regexp_replace(text, pattern, to)`:
    /// at most one `to` per input character, plus the text.
    Replace,
    /// `array_repeat(x, n)` and `array_resize(a, n)`: n elements.
    Count,
    /// `range(start, stop [, step])`, `generate_series`: (stop − start) / step.
    Series,
}

/// The functions wrapped, by name.
const GROWING: [(&str, Growth); 9] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::Replace),
    ("array_repeat", Growth::Count),
    ("array_resize", Growth::Count),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// Replaces the value-building functions of `ctx` with bounded ones.
pub fn bound_growing_functions(ctx: &SessionContext) {
    for (name, growth) in GROWING {
        // A function the build leaves out has nothing to bound.
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner: inner.as_ref().clone(),
                growth,
            }));
        }
    }
}

/// An engine function behind a size check.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    growth: Growth,
}

impl Bounded {
    /// An upper bound of the bytes this call builds.
    fn estimate(&self, args: &ScalarFunctionArgs) -> u64 {
        let rows = args.number_rows.max(1) as u64;
        let arg = |i: usize| args.args.get(i);
        match self.growth {
            Growth::Repeat => {
                let text = arg(0).map_or(0, text_bytes);
                text.saturating_mul(arg(1).map_or(0, max_integer))
            }
            Growth::Pad => {
                let each = arg(1).map_or(0, max_integer).saturating_mul(4);
                each.saturating_mul(broadcast_rows(arg(0), rows))
            }
            Growth::Replace => {
                let text = arg(0).map_or(0, text_bytes);
                let to = arg(2).map_or(0, max_text_len);
                text.saturating_mul(to.saturating_add(1))
            }
            Growth::Count => {
                let each = arg(1).map_or(0, max_integer).saturating_mul(8);
                each.saturating_mul(broadcast_rows(arg(0), rows))
            }
            Growth::Series => {
                let rows_of_call = broadcast_rows(arg(0), rows);
                series_len(&args.args)
                    .saturating_mul(8)
                    .saturating_mul(rows_of_call)
            }
        }
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> datafusion::error::Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let estimate = self.estimate(&args);
        if estimate > MAX_BUILT_BYTES {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}(…) would build about {} MiB for one batch; the limit is {} MiB per call",
                self.inner.name(),
                estimate >> 20,
                MAX_BUILT_BYTES >> 20
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

/// Rows one call produces: the batch's rows unless every argument is a
/// constant (then one value, broadcast).
fn broadcast_rows(first: Option<&ColumnarValue>, rows: u64) -> u64 {
    match first {
        Some(ColumnarValue::Scalar(_)) | None => 1,
        Some(ColumnarValue::Array(_)) => rows,
    }
}

/// Total bytes of a text argument over the call (a constant counts once).
fn text_bytes(value: &ColumnarValue) -> u64 {
    match value {
        ColumnarValue::Scalar(s) => scalar_text_len(s),
        ColumnarValue::Array(a) => array_text_bytes(a),
    }
}

/// Longest text of an argument.
fn max_text_len(value: &ColumnarValue) -> u64 {
    match value {
        ColumnarValue::Scalar(s) => scalar_text_len(s),
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().iter().flatten().map(str::len).max(),
            DataType::LargeUtf8 => a.as_string::<i64>().iter().flatten().map(str::len).max(),
            DataType::Utf8View => a.as_string_view().iter().flatten().map(str::len).max(),
            _ => None,
        }
        .unwrap_or(0) as u64,
    }
}

fn scalar_text_len(value: &ScalarValue) -> u64 {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as u64,
        _ => 0,
    }
}

fn array_text_bytes(array: &ArrayRef) -> u64 {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().values().len() as u64,
        DataType::LargeUtf8 => array.as_string::<i64>().values().len() as u64,
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .flatten()
            .map(|s| s.len() as u64)
            .sum(),
        _ => array.get_array_memory_size() as u64,
    }
}

/// Largest integer of an argument (negative and null count 0).
fn max_integer(value: &ColumnarValue) -> u64 {
    let as_i64 = |array: &ArrayRef| -> Option<i64> {
        let cast = arrow::compute::cast(array, &DataType::Int64).ok()?;
        aggregate::max(cast.as_primitive::<Int64Type>())
    };
    let largest = match value {
        ColumnarValue::Scalar(s) => s.to_array().ok().as_ref().and_then(as_i64),
        ColumnarValue::Array(a) => as_i64(a),
    };
    largest.map_or(0, |n| n.max(0) as u64)
}

/// Elements one `range`/`generate_series` call makes at most, from its
/// first row's arguments when they are constants and from the widest span
/// otherwise. Dates and timestamps are counted in the step's unit.
fn series_len(args: &[ColumnarValue]) -> u64 {
    let (Some(start), Some(stop)) = (args.first(), args.get(1)) else {
        // `range(n)`: 0 .. n.
        return args.first().map_or(0, max_integer);
    };
    let Some((low, high)) = span(start, stop) else {
        return 0;
    };
    let width = high.saturating_sub(low).unsigned_abs();
    let step = match args.get(2) {
        None => unit_step(start),
        Some(step) => step_size(step, start),
    };
    width / step.max(1)
}

/// The smallest start and the largest stop, in a common integer unit
/// (days for dates, nanoseconds for timestamps).
fn span(start: &ColumnarValue, stop: &ColumnarValue) -> Option<(i64, i64)> {
    let bounds = |value: &ColumnarValue| -> Option<(i64, i64)> {
        let array = value.to_array(1).ok()?;
        let target = match array.data_type() {
            DataType::Date32 | DataType::Date64 => DataType::Date32,
            DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Nanosecond, zone.clone()),
            _ => DataType::Int64,
        };
        let typed = arrow::compute::cast(&array, &target).ok()?;
        let ints = arrow::compute::cast(&typed, &DataType::Int64).ok()?;
        let ints = ints.as_primitive::<Int64Type>();
        Some((aggregate::min(ints)?, aggregate::max(ints)?))
    };
    let (start_low, start_high) = bounds(start)?;
    let (stop_low, stop_high) = bounds(stop)?;
    Some((
        start_low.min(stop_low),
        start_high.max(stop_high).max(start_low),
    ))
}

/// The default step of a series starting with `start`, in its unit.
fn unit_step(start: &ColumnarValue) -> u64 {
    match start.data_type() {
        DataType::Date32 | DataType::Date64 => 1,
        DataType::Timestamp(..) => 86_400 * 1_000_000_000,
        _ => 1,
    }
}

/// The smallest absolute step, in the unit of `start` (intervals of
/// months count 28 days).
fn step_size(step: &ColumnarValue, start: &ColumnarValue) -> u64 {
    let Ok(array) = step.to_array(1) else {
        return 1;
    };
    let days_unit = matches!(start.data_type(), DataType::Date32 | DataType::Date64);
    if let Ok(intervals) = arrow::compute::cast(
        &array,
        &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
    ) && matches!(array.data_type(), DataType::Interval(_))
    {
        let intervals = intervals.as_primitive::<IntervalMonthDayNanoType>();
        let smallest = intervals
            .iter()
            .flatten()
            .map(|i| {
                let nanos = i128::from(i.months.unsigned_abs()) * 28 * 86_400 * 1_000_000_000
                    + i128::from(i.days.unsigned_abs()) * 86_400 * 1_000_000_000
                    + i128::from(i.nanoseconds.unsigned_abs());
                if days_unit {
                    nanos / (86_400 * 1_000_000_000)
                } else {
                    nanos
                }
            })
            .min()
            .unwrap_or(1);
        return u64::try_from(smallest).unwrap_or(u64::MAX).max(1);
    }
    let Ok(ints) = arrow::compute::cast(&array, &DataType::Int64) else {
        return 1;
    };
    ints.as_primitive::<Int64Type>()
        .iter()
        .flatten()
        .map(i64::unsigned_abs)
        .min()
        .unwrap_or(1)
        .max(1)
}

/// Shares the wrapped functions' registration with tests.
#[cfg(test)]
pub(crate) fn growing_names() -> Vec<&'static str> {
    GROWING.iter().map(|(name, _)| *name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn value_bombs_are_refused_and_ordinary_calls_still_work() -> datafusion::error::Result<()>
    {
        let ctx = SessionContext::new();
        bound_growing_functions(&ctx);
        for name in growing_names() {
            assert!(ctx.udf(name).is_ok(), "{name} is registered");
        }
        for bomb in [
            "SELECT repeat('x', 1000000000) FROM range(3)",
            "SELECT repeat('xy', 100000000)",
            "SELECT lpad('x', 2000000000)",
            "SELECT rpad(CAST(value AS VARCHAR), 100000000) FROM range(10)",
            "SELECT array_repeat(1, 1000000000)",
            "SELECT range(0, 10000000000)",
            "SELECT generate_series(1, 9000000000)",
            "SELECT generate_series(TIMESTAMP '1970-01-01 00:00:00', TIMESTAMP '2100-01-01 00:00:00', INTERVAL '1 second')",
            "SELECT replace(repeat('a', 1000000), 'a', repeat('b', 1000))",
        ] {
            let error = run(&ctx, bomb).await.expect_err(bomb).to_string();
            assert!(error.contains("limit is"), "{bomb}: {error}");
        }
        assert_eq!(
            run(&ctx, "SELECT repeat('ab', 3), lpad('7', 3, '0')").await?,
            1
        );
        let sum = ctx
            .sql("SELECT cardinality(range(0, 1000)) AS n")
            .await?
            .collect()
            .await?;
        let n = sum[0]
            .column(0)
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .value(0);
        assert_eq!(n, 1000);
        Ok(())
    }
}
