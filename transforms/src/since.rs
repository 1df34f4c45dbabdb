//! The placeholders of a recomputation from a month on
//! ([`crate::marts::Refresh::FromMonth`]): the query computes the rows of
//! `{{from_month}}` and later from the events of those months, reaches
//! back to `{{window_day}}` (31 days before `{{from_day}}`, in partitions
//! from `{{window_month}}`) for rolling windows, and reads the months
//! before `{{from_month}}` only for what it must know about them (who was
//! seen before). A whole recomputation fills in a beginning before any
//! data, so the same query computes everything.

use chrono::{Duration, NaiveDate};

/// How far back the rolling windows reach: the longest window (30 days)
/// and a day to spare.
const WINDOW_DAYS: i64 = 31;

/// `sql` with the placeholders of a recomputation from `from` (the first
/// day of a month) filled in; `None`: from the beginning.
pub(crate) fn fill(sql: &str, from: Option<NaiveDate>) -> String {
    let (from_month, from_day, window_month, window_day) = match from {
        Some(from) => {
            let window = from - Duration::days(WINDOW_DAYS);
            (
                from.format("%Y-%m").to_string(),
                from.format("%Y-%m-%d").to_string(),
                window.format("%Y-%m").to_string(),
                window.format("%Y-%m-%d").to_string(),
            )
        }
        // Sorts before every `YYYY-MM` and every date of the data.
        None => (
            "0000-00".to_owned(),
            "0001-01-01".to_owned(),
            "0000-00".to_owned(),
            "0001-01-01".to_owned(),
        ),
    };
    sql.replace("{{from_month}}", &from_month)
        .replace("{{from_day}}", &from_day)
        .replace("{{window_month}}", &window_month)
        .replace("{{window_day}}", &window_day)
}

/// The first day of the month `back` months before `month` (`YYYY-MM`);
/// `None` when it is not one.
pub(crate) fn month_start(month: &str, back: u32) -> Option<NaiveDate> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    first.checked_sub_months(chrono::Months::new(back))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recomputation_reaches_back_a_window_before_its_first_month() {
        let from = month_start("2026-03", 0);
        assert_eq!(from, NaiveDate::from_ymd_opt(2026, 3, 1));
        let sql = "{{from_month}} {{from_day}} {{window_month}} {{window_day}}";
        assert_eq!(fill(sql, from), "2026-03 2026-03-01 2026-01 2026-01-29");
        assert_eq!(fill(sql, None), "0000-00 0001-01-01 0000-00 0001-01-01");
        assert_eq!(
            month_start("2026-01", 1),
            NaiveDate::from_ymd_opt(2025, 12, 1)
        );
        assert_eq!(month_start("2026-1x", 0), None);
    }
}
