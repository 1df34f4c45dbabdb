//! From scored points to anomalies: runs of anomalous points in one
//! direction, with a kind, a peak, and an impact (actual − expected summed
//! over the run).

use serde::Serialize;

use crate::detector::Scored;
use crate::robust::mann_kendall_z;

/// What an anomaly looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A short rise (one or two points).
    Spike,
    /// A short fall.
    Drop,
    /// A lasting step to a new level (up or down).
    LevelShift,
    /// A lasting steady climb or decline (a slow leak).
    Trend,
}

impl Kind {
    /// The name used in tables and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spike => "spike",
            Kind::Drop => "drop",
            Kind::LevelShift => "level_shift",
            Kind::Trend => "trend",
        }
    }
}

/// Which way the series deviated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above the baseline.
    Up,
    /// Below it.
    Down,
}

/// One anomaly over a span of positions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// First position.
    pub first: usize,
    /// Last position (inclusive).
    pub last: usize,
    /// Kind.
    pub kind: Kind,
    /// Direction.
    pub direction: Direction,
    /// Highest score in the span.
    pub peak_score: f64,
    /// Position of the highest score.
    pub peak: usize,
    /// Sum of the observed values over the span.
    pub actual: f64,
    /// Sum of the expected values over the span.
    pub expected: f64,
    /// `actual − expected`.
    pub impact: f64,
    /// The span reaches the end of the series: it may still grow.
    pub open: bool,
}

/// Points between two anomalous points that still join them into one
/// anomaly; after a confirmed lasting change, the level window (the
/// baseline needs that long to settle on the new level).
const SHORT_GAP: usize = 2;
/// Mann–Kendall score beyond which a lasting change is a trend.
const TREND_Z: f64 = 2.33;
/// Fewest points in a span before it can be called a trend.
const TREND_POINTS: usize = 6;

/// Groups anomalous points into anomalies. `settle` is the gap allowed
/// after a confirmed lasting change (the detector's level window).
pub fn assemble(points: &[Scored], settle: usize) -> Vec<Anomaly> {
    let mut spans: Vec<(usize, usize, Direction, bool)> = Vec::new();
    for (at, point) in points.iter().enumerate() {
        if !point.anomalous {
            continue;
        }
        let direction = if point.deviation < 0.0 {
            Direction::Down
        } else {
            Direction::Up
        };
        if let Some(span) = spans.last_mut() {
            let gap = if span.3 { settle } else { SHORT_GAP };
            if span.2 == direction && at - span.1 <= gap + 1 {
                span.1 = at;
                span.3 |= point.sustained;
                continue;
            }
        }
        spans.push((at, at, direction, point.sustained));
    }
    let len = points.len();
    spans
        .into_iter()
        .map(|(first, last, direction, sustained)| {
            let span = &points[first..=last];
            let (mut actual, mut expected) = (0.0, 0.0);
            let mut deseasonalized = Vec::new();
            for point in span {
                if let (Some(v), Some(e)) = (point.value, point.expected) {
                    actual += v;
                    expected += e;
                    deseasonalized.push(point.mode.remove(v, point.factor));
                }
            }
            let (peak, peak_score) = span
                .iter()
                .enumerate()
                .map(|(i, p)| (first + i, p.score))
                .fold(
                    (first, 0.0),
                    |best, next| if next.1 > best.1 { next } else { best },
                );
            let lasting = sustained || last - first >= 2;
            let trend = mann_kendall_z(&deseasonalized);
            let monotone = match direction {
                Direction::Up => trend > TREND_Z,
                Direction::Down => trend < -TREND_Z,
            };
            let kind = match (lasting, direction) {
                (true, _) if monotone && deseasonalized.len() >= TREND_POINTS => Kind::Trend,
                (true, _) => Kind::LevelShift,
                (false, Direction::Up) => Kind::Spike,
                (false, Direction::Down) => Kind::Drop,
            };
            let gap = if sustained { settle } else { SHORT_GAP };
            Anomaly {
                first,
                last,
                kind,
                direction,
                peak_score,
                peak,
                actual,
                expected,
                impact: actual - expected,
                open: last + gap + 1 >= len,
            }
        })
        .collect()
}
