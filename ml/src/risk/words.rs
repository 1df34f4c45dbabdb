//! A factor in words: what the value was and, for amounts, where it sits
//! among the service's own deployments ("2,500 lines added (p95 of this
//! service)"), so a reader sees why a deployment scored high without
//! knowing the model.

/// `value` of `feature` in words; `percentile` (0–100) is its rank among
/// the service's deployments, for amounts.
pub fn describe(feature: &str, value: Option<f64>, percentile: Option<f64>) -> String {
    let Some(v) = value else {
        return format!("{} unknown", feature.replace('_', " "));
    };
    let n = thousands(v);
    let text = match feature {
        "changes" => format!("{n} {} shipped", plural(v, "change", "changes")),
        "pull_requests" => format!("{n} {}", plural(v, "pull request", "pull requests")),
        "direct_pushes" => format!(
            "{n} {} pushed without a pull request",
            plural(v, "commit", "commits")
        ),
        "commits" => format!("{n} {}", plural(v, "commit", "commits")),
        "lines_added" => format!("{n} lines added"),
        "lines_deleted" => format!("{n} lines deleted"),
        "files_changed" => format!("{n} {} changed", plural(v, "file", "files")),
        "largest_change_lines" => format!("largest change {n} lines"),
        "size_vs_recent" => format!("{v:.1}× the service's usual size"),
        "directories" => format!("{n} top-level directories touched"),
        "file_entropy" => format!("changes spread over files ({v:.2} bits)"),
        "reviewers" => format!("{n} {}", plural(v, "reviewer", "reviewers")),
        "reviews" => format!("{n} {}", plural(v, "review", "reviews")),
        "unreviewed_changes" => {
            format!("{n} {} without review", plural(v, "change", "changes"))
        }
        "review_hours_mean" => format!("{v:.1} h from opened to merged"),
        "days_since_previous" => format!("{v:.1} days since the previous deployment"),
        "recent_deployments" => format!("{n} deployments in the 90 days before"),
        "recent_failure_rate" => format!(
            "{:.0} % of the service's deployments in the 90 days before failed",
            v * 100.0
        ),
        "author_min_prior_changes" => {
            format!("an author with {n} earlier pull requests in the repository")
        }
        "author_recent_failures" => {
            format!("{n} failed deployments of its authors' changes in the 90 days before")
        }
        "hour_utc" => format!("started at {:02}:00 UTC", v as i64),
        "friday" => flag(v, "on a Friday", "not on a Friday"),
        "weekend" => flag(v, "at the weekend", "on a weekday"),
        "during_incident" => flag(v, "during an open incident", "no open incident"),
        "hotfix" => flag(v, "ships a hotfix", "no hotfix"),
        "after_long_pause" => flag(
            v,
            "first deployment after more than 14 days",
            "no long pause before",
        ),
        "is_rollback" => flag(v, "a rollback", "not a rollback"),
        other => format!("{} = {}", other.replace('_', " "), thousands(v)),
    };
    match percentile {
        Some(p) if is_amount(feature) => format!("{text} (p{p:.0} of this service)"),
        _ => text,
    }
}

/// Whether a feature is an amount worth ranking among the service's own.
pub fn is_amount(feature: &str) -> bool {
    !matches!(
        feature,
        "hour_utc"
            | "friday"
            | "weekend"
            | "during_incident"
            | "hotfix"
            | "after_long_pause"
            | "is_rollback"
            | "recent_failure_rate"
            | "recent_deployments"
            | "size_vs_recent"
    )
}

fn plural<'a>(v: f64, one: &'a str, many: &'a str) -> &'a str {
    if v == 1.0 { one } else { many }
}

fn flag(v: f64, yes: &str, no: &str) -> String {
    if v > 0.5 { yes } else { no }.to_owned()
}

/// A number with thousands separators; whole numbers without decimals.
fn thousands(v: f64) -> String {
    if v.fract().abs() > 1e-9 {
        return format!("{v:.1}");
    }
    let digits = format!("{}", v.abs() as i64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_read_as_sentences() {
        assert_eq!(
            describe("lines_added", Some(1240.0), Some(95.0)),
            "1,240 lines added (p95 of this service)"
        );
        assert_eq!(
            describe("during_incident", Some(1.0), Some(100.0)),
            "during an open incident"
        );
        assert_eq!(
            describe("hour_utc", Some(17.0), None),
            "started at 17:00 UTC"
        );
        assert_eq!(
            describe("recent_failure_rate", Some(0.25), Some(80.0)),
            "25 % of the service's deployments in the 90 days before failed"
        );
        assert_eq!(
            describe("files_changed", None, None),
            "files changed unknown"
        );
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-1_000.0), "-1,000");
    }
}
