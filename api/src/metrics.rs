//! `/metrics`: request latency histograms kept in memory, keyed by method
//! label and route template (never the raw path or an unknown method, so no
//! request can create a series), and gauges of the newest run of each
//! command from the run ledger.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::{Api, ApiError, ApiResult};

/// Upper bounds (seconds) of the request latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Requests by (method, route, status): a latency histogram each.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    series: std::sync::Mutex<std::collections::BTreeMap<(String, String, u16), Histogram>>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl RequestMetrics {
    pub(crate) fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        // A poisoned lock only means another request panicked mid-update;
        // the counts are still usable.
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let h = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        h.count += 1;
        h.sum += seconds;
        for (bucket, bound) in h.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP fathom_http_request_duration_seconds API requests by route and status.\n",
        );
        out.push_str("# TYPE fathom_http_request_duration_seconds histogram\n");
        for ((method, route, status), h) in series.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (count, bound) in h.buckets.iter().zip(LATENCY_BUCKETS) {
                let _ = writeln!(
                    out,
                    "fathom_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "fathom_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "fathom_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "fathom_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
    }
}

/// The label of a request method in `/metrics`: the standard methods by
/// name, anything else as `other` (made-up methods must not make series).
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// `GET /metrics` (Prometheus text format): request latencies by route and
/// status, and the newest run of each command from the ledger (duration,
/// rows written, errors, success).
pub(crate) async fn metrics(State(api): State<Arc<Api>>) -> ApiResult<Response> {
    use std::fmt::Write as _;
    let mut out = String::new();
    api.requests.render(&mut out);
    let runs = api.state.runs(200).await.map_err(ApiError::internal)?;
    let mut newest: std::collections::BTreeMap<&str, &fathom_warehouse::state::RunRecord> =
        std::collections::BTreeMap::new();
    for run in &runs {
        newest.entry(run.command.as_str()).or_insert(run);
    }
    out.push_str(
        "# HELP fathom_run_duration_seconds Duration of the newest run of each command.\n",
    );
    out.push_str("# TYPE fathom_run_duration_seconds gauge\n");
    for (command, run) in &newest {
        if let Some(finished) = run.finished_at {
            let seconds = (finished - run.started_at).num_milliseconds() as f64 / 1000.0;
            let _ = writeln!(
                out,
                "fathom_run_duration_seconds{{command=\"{command}\"}} {seconds}"
            );
        }
    }
    out.push_str("# HELP fathom_run_rows Rows written by the newest run of each command.\n");
    out.push_str("# TYPE fathom_run_rows gauge\n");
    for (command, run) in &newest {
        let rows: i64 = run
            .row_counts
            .iter()
            .filter(|(k, _)| k.ends_with(".rows") || k.ends_with(".loaded"))
            .map(|(_, v)| *v)
            .sum();
        let _ = writeln!(out, "fathom_run_rows{{command=\"{command}\"}} {rows}");
    }
    out.push_str("# HELP fathom_run_errors Errors of the newest run of each command.\n");
    out.push_str("# TYPE fathom_run_errors gauge\n");
    for (command, run) in &newest {
        let _ = writeln!(
            out,
            "fathom_run_errors{{command=\"{command}\"}} {}",
            run.errors.len()
        );
    }
    out.push_str("# HELP fathom_run_succeeded Whether the newest run of each command succeeded (1) or not (0).\n");
    out.push_str("# TYPE fathom_run_succeeded gauge\n");
    for (command, run) in &newest {
        let ok = u8::from(run.status == fathom_warehouse::state::RunStatus::Succeeded);
        let _ = writeln!(out, "fathom_run_succeeded{{command=\"{command}\"}} {ok}");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
