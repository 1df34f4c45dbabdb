//! The univariate detector: a causal, robust, seasonal baseline and the
//! scores of each point against it.
//!
//! One forward pass over a regular series (missing points allowed). For
//! every point the model is the one fitted on the points *before* it, so a
//! day's score never depends on later days: scoring a series to day t and
//! then extending it changes nothing up to t, and a backfill says what live
//! scoring would have said.
//!
//! - **Baseline**: a level (median of the last few de-seasonalized points,
//!   moved along a robust slope), times (or plus) a seasonal factor fitted
//!   on a trailing window and used only when detected ([`crate::seasonal`]).
//! - **Scale**: the robust spread (1.4826 × median absolute error) of the
//!   baseline's own past one-step errors, relative to the level for
//!   non-negative series, with floors (a share of the level; √level for
//!   counts) so a flat series does not turn every wobble into an alarm.
//! - **Spikes and drops**: one point's robust z-score.
//! - **Level shifts**: a two-sided CUSUM of clipped z-scores, so several
//!   moderately high points add up while one extreme point cannot on its
//!   own. Points that look anomalous are kept out of the baseline; when the
//!   CUSUM confirms a lasting change, the baseline is re-anchored at the
//!   change's start and the new level becomes normal.
//! - **Slow leaks**: a climb gentle enough for the baseline to follow day
//!   by day. The drift test compares the last three periods' change of the
//!   de-seasonalized level with what the series' own longer-run slope
//!   predicts; a change far beyond it, confirmed by a Mann–Kendall trend
//!   test, is anomalous while it lasts. Organic growth is the longer-run
//!   slope, so it does not alarm.

mod state;

pub use state::{Reader, StateError, Writer, read_scored, write_scored};

use crate::robust::{MAD_TO_SIGMA, all_integers, median, quantile};
use crate::seasonal::{self, Mode, Shape};

/// Tuning of the detector. The defaults were chosen on synthetic worlds
/// whose seeds are not those reported by the evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Robust z-score at which one point is anomalous by itself.
    pub spike_z: f64,
    /// CUSUM sum at which a lasting change is confirmed.
    pub cusum_limit: f64,
    /// Per-point allowance subtracted in the CUSUM.
    pub cusum_slack: f64,
    /// z-scores are clipped to ±this before entering the CUSUM.
    pub cusum_clip: f64,
    /// Points beyond this z-score are kept out of the baseline.
    pub reject_z: f64,
    /// Points whose median is the level.
    pub level_points: usize,
    /// Points needed before the full model replaces the short-series
    /// fallback.
    pub min_history: usize,
    /// Least trailing window, in points.
    pub min_window: usize,
    /// Least relative scale (share of the expected value).
    pub relative_floor: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            spike_z: 5.0,
            cusum_limit: 8.0,
            cusum_slack: 1.0,
            cusum_clip: 4.0,
            reject_z: 3.5,
            level_points: 7,
            min_history: 14,
            min_window: 56,
            relative_floor: 0.005,
        }
    }
}

/// One point's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The observed value (`None`: missing).
    pub value: Option<f64>,
    /// What the baseline expected (`None` before there is a baseline).
    pub expected: Option<f64>,
    /// Lower bound: where a single point becomes anomalous.
    pub lower: Option<f64>,
    /// Upper bound.
    pub upper: Option<f64>,
    /// Robust z-score of the point (0 without a baseline).
    pub z: f64,
    /// Anomaly score in [0, 1]; 0.5 is the alarm threshold.
    pub score: f64,
    /// `score ≥ 0.5`.
    pub anomalous: bool,
    /// A lasting change was confirmed at this point.
    pub sustained: bool,
    /// The seasonal factor the baseline applied (for drawing and for
    /// classifying a trend on de-seasonalized values).
    pub factor: f64,
    /// How seasonality combines with the level at this point.
    pub mode: Mode,
    /// The drift test's z-score (a slow climb or decline; 0 when none).
    pub drift: f64,
    /// Which way the point deviates (its sign): the z-score, or the drift
    /// when that is the stronger signal against its own threshold.
    pub deviation: f64,
}

impl Scored {
    /// A point with no baseline to judge it by (score 0).
    pub fn unjudged(value: Option<f64>, mode: Mode) -> Self {
        Self {
            value,
            expected: None,
            lower: None,
            upper: None,
            z: 0.0,
            score: 0.0,
            anomalous: false,
            sustained: false,
            factor: mode.neutral(),
            mode,
            drift: 0.0,
            deviation: 0.0,
        }
    }
}

/// Score of a multiple `x` of a threshold: 0.5 at the threshold, rising
/// smoothly towards 1.
fn score_of(x: f64) -> f64 {
    1.0 - (-(x * x)).exp2()
}

/// The fitted baseline between refits.
#[derive(Debug, Clone)]
struct Model {
    mode: Mode,
    shape: Shape,
    /// Relative (multiplicative) or absolute (additive) scale.
    scale: f64,
    /// Level change per step, in value units.
    slope: f64,
    /// Every value seen in the window was a whole number.
    counts: bool,
    /// A short series: level is the plain median, no seasonality.
    fallback: bool,
    /// The longer-run slope (per step) the drift test compares with;
    /// `None` with too little history since the last change.
    drift_slope: Option<f64>,
}

/// Periods (of the shortest seasonal candidate, else weeks of points) in
/// the drift test's recent level, its span, and its reference history.
const DRIFT_LEVEL_PERIODS: usize = 1;
const DRIFT_SPAN_PERIODS: usize = 3;
const DRIFT_REFERENCE_PERIODS: usize = 16;
/// The drift's z-score at which it is anomalous (score 0.5).
const DRIFT_Z: f64 = 6.0;
/// The Mann–Kendall score that must confirm a drift.
const DRIFT_TREND_Z: f64 = 3.0;
/// Periods after a confirmed change during which a return to the old
/// level ends it as an episode.
const REVERT_PERIODS: usize = 3;
/// How close to the old baseline (robust z) a point must be to count as
/// a return: well inside its normal band.
const REVERT_Z: f64 = 2.0;
/// Spread of the difference of two medians of `n` points, in units of the
/// points' standard deviation: √(2 · π/2 / n), here for a period of 7.
fn median_difference_spread(n: usize) -> f64 {
    (std::f64::consts::PI / n.max(1) as f64).sqrt()
}

/// The streaming detector: feed points in order with [`Detector::push`].
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    candidates: Vec<usize>,
    window: usize,
    refit_every: usize,
    /// Baseline values: observed, or the expectation for rejected points.
    clean: Vec<Option<f64>>,
    raw: Vec<Option<f64>>,
    /// One-step errors of accepted points: (error, expected).
    errors: Vec<Option<(f64, f64)>>,
    /// Baseline history starts here (moved by a confirmed change).
    since: usize,
    model: Option<Model>,
    fitted_at: Option<usize>,
    up: f64,
    up_start: usize,
    down: f64,
    down_start: usize,
    /// The last confirmed change, while it may still turn out to have
    /// been an episode.
    episode: Option<Episode>,
    /// Points taken into the history before there was any baseline to
    /// judge them by: screened once there is.
    unjudged: Vec<usize>,
    /// Positions before this were not restored (see [`state`]).
    kept_from: usize,
}

/// What the baseline was before a confirmed change: kept for
/// [`REVERT_PERIODS`] periods, so a series that returns to its old level
/// (an incident over, a load test ended) gets its old baseline back
/// instead of a second, opposite "change".
#[derive(Debug, Clone)]
struct Episode {
    /// First point of the change.
    start: usize,
    /// Where it was confirmed.
    confirmed: usize,
    /// The baseline's start before it.
    since: usize,
    /// The model before it.
    model: Model,
}

impl Detector {
    /// A detector for a series whose possible seasonal periods (in steps)
    /// are `candidates` (e.g. `[7]` for daily data).
    pub fn new(config: DetectorConfig, candidates: &[usize]) -> Self {
        let longest = candidates.iter().copied().max().unwrap_or(0);
        let shortest = candidates.iter().copied().filter(|p| *p >= 2).min();
        Self {
            window: config.min_window.max(4 * longest),
            refit_every: shortest.unwrap_or(7),
            config,
            candidates: candidates.iter().copied().filter(|p| *p >= 2).collect(),
            clean: Vec::new(),
            raw: Vec::new(),
            errors: Vec::new(),
            since: 0,
            model: None,
            fitted_at: None,
            up: 0.0,
            up_start: 0,
            down: 0.0,
            down_start: 0,
            episode: None,
            unjudged: Vec::new(),
            kept_from: 0,
        }
    }

    /// Scores a whole series.
    pub fn score_all(
        config: DetectorConfig,
        candidates: &[usize],
        values: &[Option<f64>],
    ) -> Vec<Scored> {
        let mut detector = Self::new(config, candidates);
        values.iter().map(|v| detector.push(*v)).collect()
    }

    /// Scores the next point (non-finite values count as missing).
    pub fn push(&mut self, value: Option<f64>) -> Scored {
        let pos = self.raw.len();
        let value = value.filter(|v| v.is_finite());
        // Refitted once a period (a week of days): so the first baseline
        // comes after a whole period, which shows a short series its own
        // weekly rhythm before anything is judged.
        let refit_due = match self.fitted_at {
            None => true,
            Some(at) => pos - at >= self.refit_every,
        };
        if refit_due {
            self.refit(pos);
        }
        if self
            .episode
            .as_ref()
            .is_some_and(|e| pos - e.confirmed > REVERT_PERIODS * self.refit_every)
        {
            self.episode = None;
        }
        let mut verdict = self.judge(pos, value);
        if verdict.anomalous
            && let Some(value) = value
            && let Some(restored) = self.try_revert(pos, value)
        {
            verdict = restored;
        }
        self.raw.push(value);
        let Some(value) = value else {
            self.clean.push(None);
            self.errors.push(None);
            return verdict;
        };
        let Some(expected) = verdict.expected else {
            self.unjudged.push(pos);
            self.clean.push(Some(value));
            self.errors.push(None);
            return verdict;
        };
        // A short series' fallback is too coarse to judge moderate
        // deviations (it cannot know the weekly pattern yet), so only what
        // it calls anomalous stays out of the history it learns from.
        let reject = match &self.model {
            Some(model) if !model.fallback => self.config.reject_z,
            _ => self.config.spike_z,
        };
        if verdict.z.abs() > reject {
            self.clean.push(Some(expected));
            self.errors.push(None);
        } else {
            self.clean.push(Some(value));
            self.errors.push(Some((value - expected, expected)));
        }
        if let Some(start) = self.track_change(pos, verdict.z) {
            verdict.sustained = true;
            verdict.score = verdict.score.max(score_of(1.0));
            verdict.anomalous = true;
            self.reanchor(start, pos);
        }
        verdict
    }

    /// Updates the CUSUMs with `z`; the start of a confirmed change.
    fn track_change(&mut self, pos: usize, z: f64) -> Option<usize> {
        let clip = self.config.cusum_clip;
        let z = z.clamp(-clip, clip);
        if self.up == 0.0 {
            self.up_start = pos;
        }
        if self.down == 0.0 {
            self.down_start = pos;
        }
        self.up = (self.up + z - self.config.cusum_slack).max(0.0);
        self.down = (self.down - z - self.config.cusum_slack).max(0.0);
        if self.up > self.config.cusum_limit {
            Some(self.up_start)
        } else if self.down > self.config.cusum_limit {
            Some(self.down_start)
        } else {
            None
        }
    }

    /// After a recent confirmed change, a point that the new baseline
    /// calls anomalous but the old one calls normal ends an episode: the
    /// old baseline comes back, the episode's points leave the history
    /// (as rejected points do), and the point is judged by the old
    /// baseline. `None` (and nothing changed) otherwise.
    fn try_revert(&mut self, pos: usize, value: f64) -> Option<Scored> {
        let episode = self.episode.take()?;
        let kept_clean = self.clean[episode.start..pos].to_vec();
        let kept_errors = self.errors[episode.start..pos].to_vec();
        let kept = (self.since, self.model.take());
        for at in episode.start..pos {
            self.clean[at] = None;
            self.errors[at] = None;
        }
        self.since = episode.since;
        self.model = Some(episode.model.clone());
        let verdict = self.judge(pos, Some(value));
        if verdict.expected.is_some() && verdict.z.abs() <= REVERT_Z {
            self.up = 0.0;
            self.down = 0.0;
            return Some(verdict);
        }
        self.clean[episode.start..pos].copy_from_slice(&kept_clean);
        self.errors[episode.start..pos].copy_from_slice(&kept_errors);
        (self.since, self.model) = kept;
        self.episode = Some(episode);
        None
    }

    /// Accepts the points from `start` to `pos` as the new normal.
    fn reanchor(&mut self, start: usize, pos: usize) {
        self.episode = self
            .model
            .as_ref()
            .filter(|m| !m.fallback)
            .map(|model| Episode {
                start,
                confirmed: pos,
                since: self.since,
                model: model.clone(),
            });
        for at in start..=pos {
            self.clean[at] = self.raw[at];
            self.errors[at] = None;
        }
        self.since = start;
        self.up = 0.0;
        self.down = 0.0;
        let before = self.model.as_ref().filter(|m| m.fallback).map(|m| m.scale);
        let old_level = median(
            &self.clean[start.saturating_sub(self.window)..start]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>(),
        );
        self.refit(pos + 1);
        // A change while the series is still learning: a short-series
        // fallback fitted on the few days since the change would call the
        // first weekend a drop. The spread before the change, relative to
        // its level, is kept as the least spread at the new level: a
        // change moves the level, not the relative spread.
        if let (Some(scale), Some(old)) = (before, old_level)
            && old > 0.0
            && let Some(model) = self.model.as_mut().filter(|m| m.fallback)
        {
            let new_level = median(
                &self.clean[start..=pos]
                    .iter()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>(),
            );
            if let Some(new) = new_level.filter(|n| *n > 0.0) {
                model.scale = model.scale.max(scale * new / old);
            }
        }
    }

    fn window_start(&self, pos: usize) -> usize {
        self.since.max(pos.saturating_sub(self.window))
    }

    fn history(&self, pos: usize) -> Vec<(usize, f64)> {
        let from = self.window_start(pos);
        (from..pos.min(self.clean.len()))
            .filter_map(|at| self.clean[at].map(|v| (at, v)))
            .collect()
    }

    /// Once there are a few points, drops from the history the gross
    /// outliers among those taken in before any baseline (an incident in
    /// a series' first days would otherwise sit in every fit's window,
    /// hiding the weekly rhythm for weeks): the short-series rule, median
    /// ± 5 spreads.
    fn screen_unjudged(&mut self) {
        let from = self.window_start(self.clean.len()).min(self.clean.len());
        let values: Vec<f64> = self.clean[from..].iter().flatten().copied().collect();
        let (Some(model), Some(middle)) = (fallback(&values, false), median(&values)) else {
            return;
        };
        for at in std::mem::take(&mut self.unjudged) {
            if self.clean[at]
                .is_some_and(|v| (v - middle).abs() > self.config.spike_z * model.scale)
            {
                self.clean[at] = None;
                self.errors[at] = None;
            }
        }
    }

    /// Fits the model on the history before `pos`.
    fn refit(&mut self, pos: usize) {
        if !self.unjudged.is_empty() {
            self.screen_unjudged();
        }
        self.fitted_at = Some(pos);
        let points = self.history(pos);
        let values: Vec<f64> = points.iter().map(|p| p.1).collect();
        let counts = all_integers(&values);
        // The full model needs enough history to have tested every
        // seasonal period at least once; until then, the fallback.
        let shortest = self.candidates.iter().copied().min().unwrap_or(0);
        let needed = self
            .config
            .min_history
            .max(seasonal::LEARNING_PERIODS * shortest);
        let span = points.first().map_or(0, |first| pos - first.0);
        if points.len() < self.config.min_history
            || (span < needed && self.model.as_ref().is_none_or(|m| m.fallback))
        {
            // After a confirmed change the old shape and scale still hold
            // (a shift moves the level, not the weekly pattern); only a
            // series with no model yet falls back.
            if let Some(model) = &mut self.model
                && !model.fallback
            {
                model.slope = 0.0;
                model.counts = model.counts && counts;
                return;
            }
            self.model = fallback(&values, counts);
            return;
        }
        let nonneg = values.iter().all(|v| *v >= 0.0);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let mode = if nonneg && mean > 0.0 {
            Mode::Multiplicative
        } else {
            Mode::Additive
        };
        // The level comes from the baseline values, the shape from the
        // observed ones: a rejected weekend dip the baseline does not know
        // yet must still be able to teach it (else a rhythm missed once is
        // missed for ever), while an incident's days are dropped as
        // outliers of their weekday by the fit itself. The shape looks
        // across confirmed changes (the whole trailing window): a change
        // moves the level, not the weekly rhythm, and a service whose
        // level changes every few weeks must not lose its rhythm for good.
        let observed: Vec<(usize, f64, f64)> = (pos.saturating_sub(self.window)..pos)
            .filter_map(|at| {
                let baseline = self.clean.get(at).copied().flatten()?;
                let raw = self.raw.get(at).copied().flatten().unwrap_or(baseline);
                Some((at, baseline, raw))
            })
            .collect();
        let mut shape = seasonal::fit(&observed, &self.candidates, mode);
        let span = pos - self.window_start(pos);
        if shape.period.is_none()
            && let Some(model) = &self.model
            && model.mode == mode
            && let Some(period) = model.shape.period
            && span < seasonal::LEARNING_PERIODS * period
        {
            // Too little history since a change to test the pattern again:
            // a shift moves the level, not the weekly rhythm.
            shape = model.shape.clone();
        }
        let deseasonalized: Vec<(usize, f64)> = points
            .iter()
            .map(|&(at, v)| (at, mode.remove(v, shape.factor(at, mode))))
            .collect();
        let slope = robust_slope(&deseasonalized, shape.period.unwrap_or(7).max(7));
        let errors: Vec<f64> = (self.window_start(pos)..pos.min(self.errors.len()))
            .filter_map(|at| self.errors[at])
            .filter_map(|(error, expected)| match mode {
                Mode::Multiplicative if expected > 0.0 => Some(error / expected),
                Mode::Multiplicative => None,
                Mode::Additive => Some(error),
            })
            .collect();
        let scale = if errors.len() >= self.config.min_history {
            // Spread about zero, not about the median: a biased baseline
            // is as wrong as a noisy one.
            let absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
            median(&absolute).unwrap_or(0.0) * MAD_TO_SIGMA
        } else if let Some(model) = self
            .model
            .as_ref()
            .filter(|m| !m.fallback && m.mode == mode)
        {
            model.scale
        } else {
            in_sample_scale(&deseasonalized, mode, self.config.level_points)
        };
        let drift_slope = self.drift_reference(pos, mode, &shape);
        self.model = Some(Model {
            mode,
            shape,
            scale,
            slope,
            counts,
            fallback: false,
            drift_slope,
        });
    }

    /// The robust slope of the de-seasonalized baseline values from the
    /// reference history: before the drift test's span, after the last
    /// confirmed change.
    fn drift_reference(&self, pos: usize, mode: Mode, shape: &Shape) -> Option<f64> {
        let block = self.refit_every;
        let to = pos.checked_sub(DRIFT_SPAN_PERIODS * block)?;
        let from = self
            .since
            .max(pos.saturating_sub(DRIFT_REFERENCE_PERIODS * block));
        let points: Vec<(usize, f64)> = (from..to)
            .filter_map(|at| {
                self.clean
                    .get(at)
                    .copied()
                    .flatten()
                    .map(|v| (at, mode.remove(v, shape.factor(at, mode))))
            })
            .collect();
        (points.len() >= 4 * block).then(|| robust_slope(&points, block))
    }

    /// The drift test's z-score at `pos` (0 when it cannot run or the
    /// trend test does not confirm it).
    fn drift(&self, pos: usize, value: f64, model: &Model, sigma: f64, factor: f64) -> f64 {
        let Some(slope) = model.drift_slope else {
            return 0.0;
        };
        let block = self.refit_every;
        let span = DRIFT_SPAN_PERIODS * block;
        if pos < self.since + span + block || sigma <= 0.0 {
            return 0.0;
        }
        // Observed values the baseline accepted: a past incident's days
        // (rejected, or an episode that ended) are no drift, however they
        // sit in the windows compared.
        let deseasonalized = |at: usize| -> Option<f64> {
            let observed = if at == pos {
                Some(value)
            } else {
                let raw = self.raw.get(at).copied().flatten();
                raw.filter(|v| self.clean.get(at).copied().flatten() == Some(*v))
            };
            observed.map(|v| model.mode.remove(v, model.shape.factor(at, model.mode)))
        };
        let level = DRIFT_LEVEL_PERIODS * block;
        let recent: Vec<f64> = (pos + 1 - level..=pos).filter_map(deseasonalized).collect();
        let earlier: Vec<f64> = (pos - span..pos - span + level)
            .filter_map(deseasonalized)
            .collect();
        let trend: Vec<f64> = (pos + 1 - span..=pos).filter_map(deseasonalized).collect();
        let (Some(now), Some(then)) = (median(&recent), median(&earlier)) else {
            return 0.0;
        };
        if recent.len() * 2 < level || earlier.len() * 2 < level {
            return 0.0;
        }
        // The point's scale, brought to the de-seasonalized level.
        let level_sigma = match model.mode {
            Mode::Multiplicative if factor > 0.0 => sigma / factor,
            _ => sigma,
        };
        let excess = (now - then) - slope * span as f64;
        let z = excess / (level_sigma * median_difference_spread(recent.len().min(earlier.len())));
        let confirmed = crate::robust::mann_kendall_z(&trend);
        if (z > 0.0 && confirmed > DRIFT_TREND_Z) || (z < 0.0 && confirmed < -DRIFT_TREND_Z) {
            z
        } else {
            0.0
        }
    }

    /// The verdict on `value` at `pos` from the current model.
    fn judge(&self, pos: usize, value: Option<f64>) -> Scored {
        let mut verdict = Scored::unjudged(value, Mode::Multiplicative);
        let Some(model) = &self.model else {
            return verdict;
        };
        let Some((expected, sigma, factor)) = self.expect(pos, model) else {
            return verdict;
        };
        let band = self.config.spike_z * sigma;
        verdict.expected = Some(expected);
        verdict.lower = Some(expected - band);
        verdict.upper = Some(expected + band);
        verdict.factor = factor;
        verdict.mode = model.mode;
        if let Some(value) = value {
            let z = (value - expected) / sigma;
            let change = self.up.max(self.down) / self.config.cusum_limit;
            let drift = if model.fallback {
                0.0
            } else {
                self.drift(pos, value, model, sigma, factor)
            };
            verdict.z = z;
            verdict.drift = drift;
            verdict.deviation = if drift.abs() / DRIFT_Z > z.abs() / self.config.spike_z {
                drift
            } else {
                z
            };
            verdict.score = score_of(z.abs() / self.config.spike_z)
                .max(score_of(change))
                .max(score_of(drift.abs() / DRIFT_Z));
            verdict.anomalous = verdict.score >= 0.5;
        }
        verdict
    }

    /// Expected value, absolute scale and seasonal factor at `pos`.
    fn expect(&self, pos: usize, model: &Model) -> Option<(f64, f64, f64)> {
        let from = self.window_start(pos);
        let mut recent = Vec::with_capacity(self.config.level_points);
        let mut at = pos;
        while at > from && recent.len() < self.config.level_points {
            at -= 1;
            if let Some(v) = self.clean.get(at).copied().flatten() {
                recent.push((at, v));
            }
        }
        if recent.is_empty() {
            return None;
        }
        let (expected, factor) = if model.fallback {
            let values: Vec<f64> = self.history(pos).iter().map(|p| p.1).collect();
            (median(&values)?, 1.0)
        } else {
            let levels: Vec<f64> = recent
                .iter()
                .map(|&(at, v)| model.mode.remove(v, model.shape.factor(at, model.mode)))
                .collect();
            let centre = recent.iter().map(|p| p.0 as f64).sum::<f64>() / recent.len() as f64;
            let level = median(&levels)? + model.slope * (pos as f64 - centre);
            let factor = model.shape.factor(pos, model.mode);
            (model.mode.apply(level, factor), factor)
        };
        let relative = match model.mode {
            Mode::Multiplicative if !model.fallback => model.scale * expected.abs(),
            _ => model.scale,
        };
        let count_floor = if model.counts {
            expected.abs().max(1.0).sqrt()
        } else {
            0.0
        };
        let sigma = relative
            .max(self.config.relative_floor * expected.abs())
            .max(count_floor)
            .max(1e-9 * expected.abs().max(1.0));
        Some((expected, sigma, factor))
    }
}

/// A short series' model: its median, with a spread from its 10th–90th
/// percentiles as well as its MAD, so an unseen weekly pattern (weekends
/// at half the weekday level) reads as normal while gross outliers still
/// stand out. `None` below three points: nothing to compare with.
fn fallback(values: &[f64], counts: bool) -> Option<Model> {
    if values.len() < 3 {
        return None;
    }
    let mad_sigma = crate::robust::robust_sigma(values)?;
    let spread = (quantile(values, 0.9)? - quantile(values, 0.1)?) / 2.563;
    Some(Model {
        mode: Mode::Additive,
        shape: Shape::none(),
        scale: mad_sigma.max(spread),
        slope: 0.0,
        counts,
        fallback: true,
        drift_slope: None,
    })
}

/// Median of the pairwise slopes between block medians (blocks of `block`
/// positions): a Theil–Sen slope on block summaries, cheap and robust to a
/// block that jumped. Zero with fewer than two full blocks.
fn robust_slope(points: &[(usize, f64)], block: usize) -> f64 {
    let Some(first) = points.first() else {
        return 0.0;
    };
    let mut blocks: Vec<(f64, Vec<f64>)> = Vec::new();
    for &(at, v) in points {
        let index = (at - first.0) / block;
        while blocks.len() <= index {
            let centre =
                first.0 as f64 + (blocks.len() * block) as f64 + (block as f64 - 1.0) / 2.0;
            blocks.push((centre, Vec::new()));
        }
        blocks[index].1.push(v);
    }
    let summaries: Vec<(f64, f64)> = blocks
        .iter()
        .filter(|(_, values)| values.len() * 2 >= block)
        .filter_map(|(centre, values)| median(values).map(|m| (*centre, m)))
        .collect();
    let mut slopes = Vec::new();
    for (i, a) in summaries.iter().enumerate() {
        for b in &summaries[i + 1..] {
            slopes.push((b.1 - a.1) / (b.0 - a.0));
        }
    }
    median(&slopes).unwrap_or(0.0)
}

/// Scale from the history itself when the baseline has too few past
/// errors: the spread of each point about the median of the points before
/// it, inflated because in-sample errors flatter.
fn in_sample_scale(points: &[(usize, f64)], mode: Mode, level_points: usize) -> f64 {
    let mut errors = Vec::new();
    for i in level_points..points.len() {
        let before: Vec<f64> = points[i - level_points..i].iter().map(|p| p.1).collect();
        let Some(level) = median(&before) else {
            continue;
        };
        let error = points[i].1 - level;
        errors.push(match mode {
            Mode::Multiplicative if level > 0.0 => error / level,
            Mode::Multiplicative => continue,
            Mode::Additive => error,
        });
    }
    let absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    median(&absolute).unwrap_or(0.0) * MAD_TO_SIGMA * 1.25
}
