//! What `fathom detect` keeps between runs, in the warehouse's own file
//! `_fathom/detect-state.bin`: per series its first day, the detector's
//! state after its last day, and its scored points from the first of its
//! anomalies that may still grow; the input tables' versions and the scope
//! membership the run read; the versions of the two tables it wrote; and a
//! fingerprint of the detector, so a changed detector starts over.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use super::DAILY_CANDIDATES;
use super::series::SeriesKey;
use crate::detector::{
    Detector, DetectorConfig, Reader, Scored, StateError, Writer, read_scored, write_scored,
};

/// The file's name among the warehouse's own files.
pub const FILE: &str = "detect-state.bin";
const MAGIC: &[u8] = b"FATHOM-DETECT";
const VERSION: u8 = 1;
/// Raised by hand when the detector's verdicts change in a way the
/// behaviour fingerprint below might not see.
const REVISION: &str = "2026-12-07.2";

/// One series as the last run left it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSeries {
    /// Day of position 0.
    pub first: NaiveDate,
    /// [`Detector::snapshot`] after the last day.
    pub detector: Vec<u8>,
    /// First position of `tail`: the first day of an anomaly that may
    /// still grow, else the series' length.
    pub tail_from: usize,
    /// Scored points from `tail_from` on.
    pub tail: Vec<Scored>,
}

/// Everything kept between runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    /// [`fingerprint`] of the detector that wrote it.
    pub fingerprint: String,
    /// Digest of the scope membership read.
    pub members: u64,
    /// Version of each input table read (`None`: it did not exist).
    pub inputs: BTreeMap<String, Option<u64>>,
    /// Versions of `anomaly_scores` and `anomalies` after the run.
    pub scores_version: Option<u64>,
    /// See `scores_version`.
    pub anomalies_version: Option<u64>,
    /// Per series.
    pub series: BTreeMap<SeriesKey, SavedSeries>,
}

fn days_since_epoch(date: NaiveDate) -> i64 {
    (date - NaiveDate::default()).num_days()
}

impl Saved {
    /// The bytes of the file.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes.extend(MAGIC);
        w.bytes.push(VERSION);
        w.str(&self.fingerprint);
        w.i64(self.members as i64);
        w.usize(self.inputs.len());
        for (name, version) in &self.inputs {
            w.str(name);
            w.opt_usize(version.map(|v| v as usize));
        }
        w.opt_usize(self.scores_version.map(|v| v as usize));
        w.opt_usize(self.anomalies_version.map(|v| v as usize));
        w.usize(self.series.len());
        for (key, series) in &self.series {
            for part in [
                &key.metric,
                &key.scope,
                &key.scope_kind,
                &key.unit,
                &key.dimension,
            ] {
                w.str(part);
            }
            w.i64(days_since_epoch(series.first));
            w.blob(&series.detector);
            w.usize(series.tail_from);
            w.usize(series.tail.len());
            for point in &series.tail {
                write_scored(&mut w, point);
            }
        }
        w.bytes
    }

    /// Reads a file made by [`Saved::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err(StateError("not a detector state file".to_owned()));
        };
        let Some((version, rest)) = rest.split_first() else {
            return Err(StateError("it ends early".to_owned()));
        };
        if *version != VERSION {
            return Err(StateError(format!("version {version}, not {VERSION}")));
        }
        let mut r = Reader::new(rest);
        let fingerprint = r.string()?;
        let members = r.i64()? as u64;
        let mut inputs = BTreeMap::new();
        for _ in 0..r.count(9)? {
            let name = r.string()?;
            inputs.insert(name, r.opt_usize()?.map(|v| v as u64));
        }
        let scores_version = r.opt_usize()?.map(|v| v as u64);
        let anomalies_version = r.opt_usize()?.map(|v| v as u64);
        let mut series = BTreeMap::new();
        for _ in 0..r.count(64)? {
            let key = SeriesKey {
                metric: r.string()?,
                scope: r.string()?,
                scope_kind: r.string()?,
                unit: r.string()?,
                dimension: r.string()?,
            };
            let first = NaiveDate::default()
                .checked_add_signed(chrono::Duration::days(r.i64()?))
                .ok_or_else(|| StateError("a first day is out of range".to_owned()))?;
            let detector = r.blob()?;
            let tail_from = r.usize()?;
            let tail = (0..r.count(40)?)
                .map(|_| read_scored(&mut r))
                .collect::<Result<Vec<_>, _>>()?;
            series.insert(
                key,
                SavedSeries {
                    first,
                    detector,
                    tail_from,
                    tail,
                },
            );
        }
        if !r.is_empty() {
            return Err(StateError("it has bytes after its end".to_owned()));
        }
        Ok(Self {
            fingerprint,
            members,
            inputs,
            scores_version,
            anomalies_version,
            series,
        })
    }
}

/// The first 64 bits of a SHA-256: a digest that stays the same across
/// releases and platforms (the standard hasher may change).
pub fn digest(hash: Sha256) -> u64 {
    let bytes = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(first)
}

/// The detector's identity: its settings, candidates, a hand-kept
/// revision, and a digest of its verdicts on a fixed series with a weekly
/// rhythm, spikes, a shift, an episode, a leak and gaps — so a detector
/// that judges differently does not continue another's state.
pub fn fingerprint() -> String {
    let values: Vec<Option<f64>> = (0..300usize)
        .map(|d| {
            if d % 41 == 40 {
                return None;
            }
            let weekend = if d % 7 >= 5 { 0.6 } else { 1.0 };
            let wobble = 1.0 + 0.04 * (((d * 37) % 17) as f64 / 16.0 - 0.5);
            let mut v = 100.0 * weekend * wobble;
            if d >= 150 {
                v *= 1.7;
            }
            if (200..205).contains(&d) {
                v *= 3.0;
            }
            if d >= 240 {
                v *= 1.0 + (d - 240) as f64 * 0.01;
            }
            if d == 90 {
                v *= 6.0;
            }
            Some(v)
        })
        .collect();
    let mut w = Writer::default();
    for p in Detector::score_all(DetectorConfig::default(), &DAILY_CANDIDATES, &values) {
        write_scored(&mut w, &p);
    }
    format!(
        "{REVISION}/{:?}/{:?}/{:016x}",
        DetectorConfig::default(),
        DAILY_CANDIDATES,
        digest(Sha256::new_with_prefix(&w.bytes))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_reads_back_as_written_and_a_damaged_one_is_refused() {
        let values: Vec<Option<f64>> = (0..200)
            .map(|d| (d % 13 != 0).then_some(50.0 + (d % 7) as f64))
            .collect();
        let mut detector = Detector::new(DetectorConfig::default(), &DAILY_CANDIDATES);
        let points: Vec<_> = values.iter().map(|v| detector.push(*v)).collect();
        let key = |scope: &str| SeriesKey {
            metric: "cost".to_owned(),
            scope: scope.to_owned(),
            scope_kind: "component".to_owned(),
            unit: "USD".to_owned(),
            dimension: String::new(),
        };
        let first = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default();
        let saved = Saved {
            fingerprint: fingerprint(),
            members: 42,
            inputs: BTreeMap::from([("cost_daily".to_owned(), Some(7)), ("x".to_owned(), None)]),
            scores_version: Some(3),
            anomalies_version: None,
            series: BTreeMap::from([
                (
                    key("component:default/a"),
                    SavedSeries {
                        first,
                        detector: detector.snapshot(),
                        tail_from: 190,
                        tail: points[190..].to_vec(),
                    },
                ),
                (
                    key("component:default/b"),
                    SavedSeries {
                        first,
                        detector: Vec::new(),
                        tail_from: 0,
                        tail: Vec::new(),
                    },
                ),
            ]),
        };
        let bytes = saved.encode();
        assert_eq!(Saved::decode(&bytes).ok(), Some(saved));
        for cut in [0, 5, bytes.len() / 3, bytes.len() - 1] {
            assert!(Saved::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // The fingerprint is stable within a build and names the settings.
        assert_eq!(fingerprint(), fingerprint());
        assert!(fingerprint().starts_with(REVISION));
    }
}
