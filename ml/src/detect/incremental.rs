//! The incremental run: continue every series from the state the last run
//! saved. It reads the days from the first month any input rewrote (and,
//! for a series with an anomaly that may still grow, the days its driver
//! needs), checks that every day it had scored still has the value it
//! scored, scores the new days, appends their `anomaly_scores` rows, and
//! rewrites only the anomalies that grew or are new. Whatever it cannot
//! prove unchanged returns the reason, and the run is a full one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type};
use chrono::{Duration, NaiveDate};
use datafusion::prelude::SessionContext;
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, read_only_session};

use super::saved::{FILE, Saved, SavedSeries, fingerprint};
use super::series::{Series, SeriesKey, load};
use super::{
    ANOMALIES, ANOMALY_SCORES, DAILY_CANDIDATES, DetectError, DetectReport, Found, INPUTS,
    SHARE_DAYS, contributions, finish, input_versions, members_digest, rows, save, score_whole,
};
use crate::anomaly::Anomaly;
use crate::detector::{Detector, DetectorConfig, Scored};
use crate::seasonal::Mode;

/// The furthest back an incremental run reads before the first changed
/// month (for an anomaly open that long); beyond it a full run is cheaper.
const MAX_LOOKBACK_DAYS: i64 = 183;

/// Why the run cannot be incremental.
type Reason = String;

fn day(first: NaiveDate, at: usize) -> NaiveDate {
    first + Duration::days(i64::try_from(at).unwrap_or(i64::MAX))
}

fn position(first: NaiveDate, date: NaiveDate) -> Option<usize> {
    usize::try_from((date - first).num_days()).ok()
}

/// Two readings of one day agree (sums of the same rows may differ in the
/// last bits when added in another order).
fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// The first day of the earliest month any input rewrote since the saved
/// versions (`None`: nothing changed).
async fn changed_from(
    warehouse: &Warehouse,
    saved: &Saved,
    now: &BTreeMap<String, Option<u64>>,
) -> Result<Result<Option<NaiveDate>, Reason>, DetectError> {
    let mut earliest: Option<NaiveDate> = None;
    for def in INPUTS {
        let current = now.get(def.name).copied().flatten();
        let before = saved.inputs.get(def.name).copied().flatten();
        if current == before {
            continue;
        }
        let Some(months) = warehouse.changed_partitions_since(def, before).await? else {
            return Ok(Err(format!(
                "what changed in `{}` cannot be told from its log",
                def.name
            )));
        };
        for month in months {
            let Ok(first) = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d") else {
                return Ok(Err(format!("`{}` has a partition `{month}`", def.name)));
            };
            earliest = Some(earliest.map_or(first, |e| e.min(first)));
        }
    }
    Ok(Ok(earliest))
}

/// Continues from the saved state; `Err(reason)` when it cannot.
pub(super) async fn run(
    warehouse: &Warehouse,
    started: Instant,
) -> Result<Result<DetectReport, Reason>, DetectError> {
    let Some(bytes) = warehouse.read_own_file(FILE).await? else {
        return Ok(Err("no saved state (the first run)".to_owned()));
    };
    let mut saved = match Saved::decode(&bytes) {
        Ok(saved) => saved,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if saved.fingerprint != fingerprint() {
        return Ok(Err(
            "the detector changed since the state was saved".to_owned()
        ));
    }
    if warehouse.version(&ANOMALY_SCORES).await? != saved.scores_version
        || warehouse.version(&ANOMALIES).await? != saved.anomalies_version
    {
        return Ok(Err(
            "`anomaly_scores` or `anomalies` was written since the state was saved".to_owned(),
        ));
    }
    // Versions before the session: a write in between is seen again by
    // the next run, never missed. One session serves the whole run.
    let inputs = input_versions(warehouse).await?;
    let ctx = read_only_session(warehouse, QueryLimits::default()).await?;
    if members_digest(&ctx).await? != saved.members {
        return Ok(Err("the scope membership changed".to_owned()));
    }
    let changed = match changed_from(warehouse, &saved, &inputs).await? {
        Ok(Some(changed)) => changed,
        Ok(None) => {
            return Ok(Ok(DetectReport {
                mode: "incremental".to_owned(),
                seconds: started.elapsed().as_secs_f64(),
                ..DetectReport::default()
            }));
        }
        Err(reason) => return Ok(Err(reason)),
    };
    // A series that may still grow an anomaly needs the days its driver
    // compares with; a series whose data stopped long before needs none.
    let mut read_from = changed;
    for series in saved.series.values() {
        let len = series.tail_from + series.tail.len();
        if day(series.first, len) + Duration::days(SHARE_DAYS as i64) < changed {
            continue;
        }
        let need = day(series.first, series.tail_from) - Duration::days(SHARE_DAYS as i64);
        read_from = read_from.min(need);
    }
    if (changed - read_from).num_days() > MAX_LOOKBACK_DAYS {
        return Ok(Err(format!(
            "an anomaly open since before {read_from} needs more history than a daily run reads"
        )));
    }
    let loaded = load(&ctx, Some(read_from)).await?;
    let read = started.elapsed().as_secs_f64();

    let mut work = Work::default();
    let mut seen = BTreeSet::new();
    for series in &loaded {
        seen.insert(series.key.clone());
        let outcome = match saved.series.get(&series.key) {
            Some(old) => work.continue_series(series, old, changed, read_from),
            None => Ok(Some(work.new_series(series))),
        };
        match outcome {
            Ok(Some(kept)) => {
                saved.series.insert(series.key.clone(), kept);
            }
            Ok(None) => {}
            Err(reason) => return Ok(Err(reason)),
        }
    }
    // A series gone from the recent days must have had nothing there.
    for (key, old) in &saved.series {
        if seen.contains(key) {
            continue;
        }
        let detector =
            match Detector::restore(DetectorConfig::default(), &DAILY_CANDIDATES, &old.detector) {
                Ok(detector) => detector,
                Err(e) => return Ok(Err(e.to_string())),
            };
        let from = position(old.first, changed).unwrap_or(0);
        if (from..detector.len()).any(|at| detector.observed(at).is_some()) {
            return Ok(Err(format!(
                "{} of {} lost days it had",
                key.metric, key.scope
            )));
        }
    }
    let scored = started.elapsed().as_secs_f64();

    let mut report = DetectReport {
        mode: "incremental".to_owned(),
        series: work.series,
        points: work.scores.len(),
        ..DetectReport::default()
    };
    let rows = work.found.into_report(&mut report)?;
    if work.scores.len() > 0 {
        warehouse
            .append(&ANOMALY_SCORES, &[work.scores.finish()?])
            .await?;
    }
    if !work.replaced.is_empty() {
        let mut batches = kept_anomalies(&ctx, &work.replaced).await?;
        batches.push(rows);
        warehouse.replace_all(&ANOMALIES, &batches).await?;
    }
    saved.inputs = inputs;
    save(warehouse, &mut saved).await?;
    finish(&mut report, started, read, scored);
    Ok(Ok(report))
}

/// The rows an incremental run writes.
#[derive(Debug, Default)]
struct Work {
    scores: rows::ScoreRows,
    found: Found,
    /// Per series, the first day from which its old anomalies are
    /// replaced by those in `found`.
    replaced: BTreeMap<SeriesKey, NaiveDate>,
    series: usize,
}

impl Work {
    /// A series the last run did not know: every day of it is new.
    fn new_series(&mut self, series: &Series) -> SavedSeries {
        self.replaced.insert(series.key.clone(), series.first);
        self.series += 1;
        score_whole(series, &mut self.scores, &mut self.found)
    }

    /// A known series: checks the days it scored, scores the new ones.
    /// `Ok(None)` when it has no new day.
    fn continue_series(
        &mut self,
        series: &Series,
        old: &SavedSeries,
        changed: NaiveDate,
        read_from: NaiveDate,
    ) -> Result<Option<SavedSeries>, Reason> {
        let mut detector =
            match Detector::restore(DetectorConfig::default(), &DAILY_CANDIDATES, &old.detector) {
                Ok(detector) => detector,
                Err(e) => return Err(e.to_string()),
            };
        let value_at = |date: NaiveDate| {
            position(series.first, date)
                .and_then(|at| series.values.get(at).copied())
                .flatten()
        };
        let len = detector.len();
        let from = position(old.first, changed.max(old.first)).unwrap_or(0);
        if from < detector.kept_from() && from < len {
            return Err(format!(
                "{} of {} changed before the history the state keeps",
                series.key.metric, series.key.scope
            ));
        }
        for at in from..len {
            let date = day(old.first, at);
            if !same(value_at(date), detector.observed(at)) {
                return Err(format!(
                    "{} of {} changed on {date}",
                    series.key.metric, series.key.scope
                ));
            }
        }
        let last = day(series.first, series.values.len().saturating_sub(1));
        let Some(end) = position(old.first, last).map(|p| p + 1) else {
            return Ok(None);
        };
        if end <= len {
            return Ok(None);
        }
        let new: Vec<Scored> = (len..end)
            .map(|at| detector.push(value_at(day(old.first, at))))
            .collect();
        let tail_series = Series {
            key: series.key.clone(),
            first: day(old.first, len),
            values: Vec::new(),
            parts: BTreeMap::new(),
        };
        self.scores.push(&tail_series, &new);

        // The anomalies from the first that could still grow, with the
        // driver's context: the days before it, as read.
        let context_from = old.tail_from.saturating_sub(SHARE_DAYS);
        if old.tail_from < len && day(old.first, context_from) < read_from {
            // A series whose data stopped with an anomaly open and now
            // resumes: that anomaly's driver needs days not read.
            return Err(format!(
                "{} of {} resumed with an anomaly open since {}",
                series.key.metric,
                series.key.scope,
                day(old.first, old.tail_from)
            ));
        }
        let window: Vec<Scored> = old.tail.iter().chain(&new).copied().collect();
        let found = crate::assemble(&window, DetectorConfig::default().level_points);
        let points: Vec<Scored> = (context_from..end)
            .map(|at| match at.checked_sub(old.tail_from) {
                Some(i) => window[i],
                None => Scored::unjudged(value_at(day(old.first, at)), Mode::Multiplicative),
            })
            .collect();
        let parts: BTreeMap<String, Vec<f64>> = series
            .parts
            .iter()
            .map(|(dimension, values)| {
                let aligned = (context_from..end)
                    .map(|at| {
                        position(series.first, day(old.first, at))
                            .and_then(|i| values.get(i).copied())
                            .unwrap_or(0.0)
                    })
                    .collect();
                (dimension.clone(), aligned)
            })
            .collect();
        let whole = Series {
            key: series.key.clone(),
            first: old.first,
            values: Vec::new(),
            parts: BTreeMap::new(),
        };
        let shift = |a: &Anomaly, by: usize| Anomaly {
            first: a.first + by,
            last: a.last + by,
            peak: a.peak + by,
            ..a.clone()
        };
        let mut open_from = end;
        for anomaly in &found {
            let absolute = shift(anomaly, old.tail_from);
            let local = shift(anomaly, old.tail_from - context_from);
            let drivers = contributions(&local, &points, &parts);
            self.found.push(&whole, &absolute, &drivers);
            if absolute.open {
                open_from = open_from.min(absolute.first);
            }
        }
        self.replaced
            .insert(series.key.clone(), day(old.first, old.tail_from));
        self.series += 1;
        Ok(Some(SavedSeries {
            first: old.first,
            detector: detector.snapshot(),
            tail_from: open_from,
            tail: window[open_from - old.tail_from..].to_vec(),
        }))
    }
}

/// The stored anomalies, without those of `replaced` series from their
/// day on.
async fn kept_anomalies(
    ctx: &SessionContext,
    replaced: &BTreeMap<SeriesKey, NaiveDate>,
) -> Result<Vec<RecordBatch>, DetectError> {
    let batches = ctx.sql("SELECT * FROM anomalies").await?.collect().await?;
    let epoch = NaiveDate::default();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let text = |name: &str| -> Result<arrow::array::StringArray, arrow::error::ArrowError> {
            let column = batch.column_by_name(name).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("`anomalies` has no `{name}`"))
            })?;
            Ok(arrow::compute::cast(column, &DataType::Utf8)?
                .as_string::<i32>()
                .clone())
        };
        let (metric, scope, kind, unit, dimension) = (
            text("metric")?,
            text("scope")?,
            text("scope_kind")?,
            text("unit")?,
            text("dimension")?,
        );
        let first_day = batch
            .column_by_name("first_day")
            .and_then(|c| c.as_primitive_opt::<Date32Type>())
            .ok_or_else(|| DetectError::Shape("`anomalies.first_day` is no date".to_owned()))?
            .clone();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let key = SeriesKey::at([&metric, &scope, &kind, &unit, &dimension], row);
                let first = epoch + Duration::days(i64::from(first_day.value(row)));
                Some(replaced.get(&key).is_none_or(|from| first < *from))
            })
            .collect();
        out.push(arrow::compute::filter_record_batch(&batch, &keep)?);
    }
    Ok(out)
}
