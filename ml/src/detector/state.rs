//! A detector's state between runs, so a daily run scores only the new
//! days: the scalars, the fitted model, and the last days of its history —
//! as many as it can still read (its windows, the drift test's reference,
//! a change or an episode under way). Positions stay absolute (the weekly
//! phase is `position % 7`); a restored detector has `None` before the
//! days kept, which it never reads. Restoring and pushing the next days
//! gives exactly what scoring the whole series gives (property-tested).
//!
//! The encoding is a small versioned binary: little-endian numbers, a tag
//! byte before every optional value.

use super::{DRIFT_REFERENCE_PERIODS, Detector, DetectorConfig, Episode, Model, Scored};
use crate::seasonal::{Mode, Shape};

/// Version of the encoding; a state of another version is not read.
const VERSION: u8 = 1;

/// Why a saved state could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the saved detector state is unreadable: {0}")]
pub struct StateError(pub String);

/// Appends values to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes so far.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// A whole number.
    pub fn usize(&mut self, v: usize) {
        self.bytes.extend((v as u64).to_le_bytes());
    }

    /// A signed whole number.
    pub fn i64(&mut self, v: i64) {
        self.bytes.extend(v.to_le_bytes());
    }

    /// A number, bit for bit.
    pub fn f64(&mut self, v: f64) {
        self.bytes.extend(v.to_bits().to_le_bytes());
    }

    /// A flag.
    pub fn bool(&mut self, v: bool) {
        self.bytes.push(u8::from(v));
    }

    /// An optional number.
    pub fn opt_f64(&mut self, v: Option<f64>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.f64(v);
        }
    }

    /// An optional whole number.
    pub fn opt_usize(&mut self, v: Option<usize>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.usize(v);
        }
    }

    /// Text.
    pub fn str(&mut self, v: &str) {
        self.usize(v.len());
        self.bytes.extend(v.as_bytes());
    }

    /// Bytes, length first.
    pub fn blob(&mut self, v: &[u8]) {
        self.usize(v.len());
        self.bytes.extend(v);
    }
}

/// Reads values back in the order they were written.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.bytes.len() < n {
            return Err(StateError("it ends early".to_owned()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn eight(&mut self) -> Result<[u8; 8], StateError> {
        let mut out = [0; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(out)
    }

    /// A whole number.
    pub fn usize(&mut self) -> Result<usize, StateError> {
        usize::try_from(u64::from_le_bytes(self.eight()?))
            .map_err(|_| StateError("a count is too large".to_owned()))
    }

    /// A signed whole number.
    pub fn i64(&mut self) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.eight()?))
    }

    /// A number.
    pub fn f64(&mut self) -> Result<f64, StateError> {
        Ok(f64::from_bits(u64::from_le_bytes(self.eight()?)))
    }

    /// A flag.
    pub fn bool(&mut self) -> Result<bool, StateError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(StateError(format!("{other} is no flag"))),
        }
    }

    /// An optional number.
    pub fn opt_f64(&mut self) -> Result<Option<f64>, StateError> {
        Ok(if self.bool()? {
            Some(self.f64()?)
        } else {
            None
        })
    }

    /// An optional whole number.
    pub fn opt_usize(&mut self) -> Result<Option<usize>, StateError> {
        Ok(if self.bool()? {
            Some(self.usize()?)
        } else {
            None
        })
    }

    /// A count of items still to read, bounded by the bytes left (each
    /// item takes at least `least` bytes), so a corrupt count cannot ask
    /// for a huge allocation.
    pub fn count(&mut self, least: usize) -> Result<usize, StateError> {
        let n = self.usize()?;
        if n.saturating_mul(least.max(1)) > self.bytes.len() {
            return Err(StateError("a count exceeds the data".to_owned()));
        }
        Ok(n)
    }

    /// Text.
    pub fn string(&mut self) -> Result<String, StateError> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| StateError(e.to_string()))
    }

    /// Bytes.
    pub fn blob(&mut self) -> Result<Vec<u8>, StateError> {
        let n = self.count(1)?;
        Ok(self.take(n)?.to_vec())
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn write_mode(w: &mut Writer, mode: Mode) {
    w.bool(mode == Mode::Multiplicative);
}

fn read_mode(r: &mut Reader<'_>) -> Result<Mode, StateError> {
    Ok(if r.bool()? {
        Mode::Multiplicative
    } else {
        Mode::Additive
    })
}

fn write_model(w: &mut Writer, m: &Model) {
    write_mode(w, m.mode);
    w.opt_usize(m.shape.period);
    w.usize(m.shape.factors.len());
    for f in &m.shape.factors {
        w.f64(*f);
    }
    w.f64(m.shape.strength);
    w.f64(m.scale);
    w.f64(m.slope);
    w.bool(m.counts);
    w.bool(m.fallback);
    w.opt_f64(m.drift_slope);
}

fn read_model(r: &mut Reader<'_>) -> Result<Model, StateError> {
    let mode = read_mode(r)?;
    let period = r.opt_usize()?;
    let n = r.count(8)?;
    let factors = (0..n).map(|_| r.f64()).collect::<Result<Vec<_>, _>>()?;
    Ok(Model {
        mode,
        shape: Shape {
            period,
            factors,
            strength: r.f64()?,
        },
        scale: r.f64()?,
        slope: r.f64()?,
        counts: r.bool()?,
        fallback: r.bool()?,
        drift_slope: r.opt_f64()?,
    })
}

fn write_opt_model(w: &mut Writer, m: Option<&Model>) {
    w.bool(m.is_some());
    if let Some(m) = m {
        write_model(w, m);
    }
}

fn read_opt_model(r: &mut Reader<'_>) -> Result<Option<Model>, StateError> {
    Ok(if r.bool()? {
        Some(read_model(r)?)
    } else {
        None
    })
}

/// Writes one scored point.
pub fn write_scored(w: &mut Writer, p: &Scored) {
    w.opt_f64(p.value);
    w.opt_f64(p.expected);
    w.opt_f64(p.lower);
    w.opt_f64(p.upper);
    w.f64(p.z);
    w.f64(p.score);
    w.bool(p.anomalous);
    w.bool(p.sustained);
    w.f64(p.factor);
    write_mode(w, p.mode);
    w.f64(p.drift);
    w.f64(p.deviation);
}

/// Reads one scored point.
pub fn read_scored(r: &mut Reader<'_>) -> Result<Scored, StateError> {
    Ok(Scored {
        value: r.opt_f64()?,
        expected: r.opt_f64()?,
        lower: r.opt_f64()?,
        upper: r.opt_f64()?,
        z: r.f64()?,
        score: r.f64()?,
        anomalous: r.bool()?,
        sustained: r.bool()?,
        factor: r.f64()?,
        mode: read_mode(r)?,
        drift: r.f64()?,
        deviation: r.f64()?,
    })
}

impl Detector {
    /// Points pushed so far.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The first position whose observation a restored detector knows
    /// (0 for one that saw the whole series).
    pub fn kept_from(&self) -> usize {
        self.kept_from
    }

    /// The observation at `at` (`None`: missing, or before
    /// [`Detector::kept_from`]).
    pub fn observed(&self, at: usize) -> Option<f64> {
        self.raw.get(at).copied().flatten()
    }

    /// The first position the detector can still read: its windows, the
    /// drift test's reference, and any change or episode under way.
    fn needed_from(&self) -> usize {
        let len = self.raw.len();
        let reach = self.window.max(DRIFT_REFERENCE_PERIODS * self.refit_every) + self.refit_every;
        let mut from = len.saturating_sub(reach);
        if self.up > 0.0 {
            from = from.min(self.up_start);
        }
        if self.down > 0.0 {
            from = from.min(self.down_start);
        }
        if let Some(episode) = &self.episode {
            from = from.min(episode.start);
        }
        if let Some(first) = self.unjudged.first() {
            from = from.min(*first);
        }
        from
    }

    /// The state to continue from later, as bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes.push(VERSION);
        let len = self.raw.len();
        let from = self.needed_from();
        w.usize(len);
        w.usize(from);
        for at in from..len {
            w.opt_f64(self.raw[at]);
            w.opt_f64(self.clean[at]);
            let error = self.errors[at];
            w.bool(error.is_some());
            if let Some((e, x)) = error {
                w.f64(e);
                w.f64(x);
            }
        }
        w.usize(self.since);
        write_opt_model(&mut w, self.model.as_ref());
        w.opt_usize(self.fitted_at);
        w.f64(self.up);
        w.usize(self.up_start);
        w.f64(self.down);
        w.usize(self.down_start);
        w.bool(self.episode.is_some());
        if let Some(e) = &self.episode {
            w.usize(e.start);
            w.usize(e.confirmed);
            w.usize(e.since);
            write_model(&mut w, &e.model);
        }
        w.usize(self.unjudged.len());
        for at in &self.unjudged {
            w.usize(*at);
        }
        w.bytes
    }

    /// A detector continuing from `bytes` (made by [`Detector::snapshot`]
    /// with the same configuration and candidates).
    pub fn restore(
        config: DetectorConfig,
        candidates: &[usize],
        bytes: &[u8],
    ) -> Result<Self, StateError> {
        let mut detector = Self::new(config, candidates);
        let mut r = Reader::new(bytes);
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(StateError(format!("version {version}, not {VERSION}")));
        }
        let len = r.usize()?;
        let from = r.usize()?;
        if from > len || (len - from).saturating_mul(3) > r.bytes.len() {
            return Err(StateError("its history does not fit".to_owned()));
        }
        detector.kept_from = from;
        detector.raw = vec![None; len];
        detector.clean = vec![None; len];
        detector.errors = vec![None; len];
        for at in from..len {
            detector.raw[at] = r.opt_f64()?;
            detector.clean[at] = r.opt_f64()?;
            detector.errors[at] = if r.bool()? {
                Some((r.f64()?, r.f64()?))
            } else {
                None
            };
        }
        detector.since = r.usize()?;
        detector.model = read_opt_model(&mut r)?;
        detector.fitted_at = r.opt_usize()?;
        detector.up = r.f64()?;
        detector.up_start = r.usize()?;
        detector.down = r.f64()?;
        detector.down_start = r.usize()?;
        detector.episode = if r.bool()? {
            Some(Episode {
                start: r.usize()?,
                confirmed: r.usize()?,
                since: r.usize()?,
                model: read_model(&mut r)?,
            })
        } else {
            None
        };
        let n = r.count(8)?;
        detector.unjudged = (0..n).map(|_| r.usize()).collect::<Result<Vec<_>, _>>()?;
        let positions = [detector.since, detector.up_start, detector.down_start];
        if positions.iter().any(|p| *p > len)
            || detector.unjudged.iter().any(|p| *p >= len)
            || detector
                .episode
                .as_ref()
                .is_some_and(|e| e.start > len || e.confirmed > len)
            || !r.is_empty()
        {
            return Err(StateError("its positions are out of range".to_owned()));
        }
        Ok(detector)
    }
}
