use crate::csv_series::{Axis, SeriesError, read, score, write};
use crate::detector::DetectorConfig;

fn lines(rows: &[String]) -> String {
    let mut text = String::from("timestamp,value\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    text
}

#[test]
fn hourly_timestamps_give_day_and_week_candidates_and_score_every_row() {
    let rows: Vec<String> = (0..24 * 30)
        .map(|h| {
            let day = 1 + h / 24;
            let value = if h == 500 {
                900.0
            } else {
                100.0 + (h % 24) as f64
            };
            format!("2024-01-{day:02} {:02}:00:00,{value}", h % 24)
        })
        .filter(|r| !r.starts_with("2024-01-31"))
        .collect();
    let series = read(lines(&rows).as_bytes()).unwrap();
    assert_eq!(series.axis, Axis::Time);
    assert_eq!(series.step, 3600.0);
    assert_eq!(series.candidates, vec![24, 168]);
    let scores = score(&series, DetectorConfig::default());
    let mut out = Vec::new();
    write(&series, &scores, false, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let flagged: Vec<&str> = text.lines().skip(1).filter(|l| l.ends_with(",1")).collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(
        flagged[0].starts_with("2024-01-21 20:00:00,900,"),
        "{flagged:?}"
    );
    assert_eq!(text.lines().count(), rows.len() + 1);
}

#[test]
fn unreadable_rows_name_their_line() {
    let err = read("timestamp,value\n2024-01-01,1\n2024-01-02,abc\n".as_bytes()).unwrap_err();
    assert!(matches!(err, SeriesError::Row { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("line 3"), "{err}");
    let err = read("timestamp,value\nyesterday,1\n".as_bytes()).unwrap_err();
    assert!(
        err.to_string().starts_with("line 2: cannot read timestamp"),
        "{err}"
    );
    let err = read("timestamp,value\n2024-01-01,1\n5,2\n".as_bytes()).unwrap_err();
    assert!(err.to_string().contains("mixes dates"), "{err}");
    let err = read("timestamp,value\n2024-01-01,\n".as_bytes()).unwrap_err();
    assert!(err.to_string().contains("no value"), "{err}");
}

#[test]
fn empty_input_is_an_error() {
    assert!(matches!(
        read("timestamp,value\n".as_bytes()),
        Err(SeriesError::Empty)
    ));
    assert!(matches!(read("".as_bytes()), Err(SeriesError::Empty)));
}

#[test]
fn unsorted_and_duplicate_rows_are_repaired_with_warnings() {
    let text = "timestamp,value\n3,30\n1,10\n2,20\n2,21\n";
    let series = read(text.as_bytes()).unwrap();
    assert_eq!(series.axis, Axis::Number);
    assert_eq!(series.values, vec![Some(10.0), Some(21.0), Some(30.0)]);
    assert_eq!(series.warnings.len(), 2, "{:?}", series.warnings);
}

#[test]
fn irregular_timestamps_land_on_the_nearest_slot_and_gaps_stay_gaps() {
    // Five-minute data with jitter and a missing slot.
    let text = "timestamp,value\n\
        2024-03-01T00:00:04Z,1\n2024-03-01T00:04:58Z,2\n2024-03-01T00:15:01Z,4\n2024-03-01T00:20:00Z,5\n";
    let series = read(text.as_bytes()).unwrap();
    // Gaps of 294, 603 and 299 s: the median is the step.
    assert_eq!(series.step, 299.0);
    assert_eq!(
        series.values,
        vec![Some(1.0), Some(2.0), None, Some(4.0), Some(5.0)]
    );
}

#[test]
fn a_grid_far_sparser_than_its_rows_is_refused() {
    let mut text = String::from("timestamp,value\n");
    for i in 0..10 {
        text.push_str(&format!("{i},1\n"));
    }
    text.push_str("100000,1\n");
    assert!(matches!(
        read(text.as_bytes()),
        Err(SeriesError::Irregular { .. })
    ));
}
