//! Why a deployment fails: the generator's change-risk model.
//!
//! Real change failure is not a coin with the team's rate: studies of
//! deployment and defect data find larger changes, unreviewed changes,
//! deployments late in the day or before a weekend and the first release
//! after a long pause fail more often. The generator draws each production
//! release's failure from its team's rate scaled by such factors, each
//! measured against what is usual for that service so far (so a team's
//! overall rate stays near its profile's). The risk model Fathom trains never sees these
//! coefficients; it must find the effect in the data, and its evaluation
//! reports how well it does.

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};

use super::org::Profile;

/// What a production release ships and when, as the failure draw sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Release {
    /// Lines added and deleted by the pull requests it ships.
    pub lines: u64,
    /// Commits pushed to main without a pull request (unreviewed).
    pub direct_pushes: u32,
    /// When it starts.
    pub at: DateTime<Utc>,
    /// Days since the service's previous successful production deployment.
    pub gap_days: f64,
}

/// Weight of each factor on the log-odds of failure, per unit of its
/// deviation from the service's own mean so far: ln(1 + lines), ln(1 +
/// direct pushes), late (16:00 or later), Friday, ln(days since the previous
/// release).
const WEIGHTS: [f64; 5] = [1.0, 0.6, 0.6, 0.4, 0.5];

/// What a service's releases have looked like so far: each factor's mean,
/// and the mean of the odds multiplier, so a team's overall failure rate
/// stays at its profile's whatever the spread of its releases.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    releases: f64,
    means: [f64; 5],
    mean_multiplier: f64,
}

impl Memory {
    /// The probability that `release` of a service with `profile` causes a
    /// failure (incident or rollback), remembering the release.
    pub fn failure_probability(&mut self, profile: Profile, release: &Release) -> f64 {
        let factors = [
            (release.lines as f64).ln_1p(),
            f64::from(release.direct_pushes).ln_1p(),
            f64::from(u8::from(release.at.hour() >= 16)),
            f64::from(u8::from(release.at.weekday() == Weekday::Fri)),
            release.gap_days.max(0.01).ln(),
        ];
        let score: f64 = if self.releases == 0.0 {
            0.0
        } else {
            factors
                .iter()
                .zip(&self.means)
                .zip(&WEIGHTS)
                .map(|((x, m), w)| w * (x - m))
                .sum::<f64>()
                .clamp(-4.0, 4.0)
        };
        let multiplier = score.exp();
        self.releases += 1.0;
        for (m, x) in self.means.iter_mut().zip(&factors) {
            *m += (x - *m) / self.releases;
        }
        self.mean_multiplier += (multiplier - self.mean_multiplier) / self.releases;
        let base = profile.failure_rate();
        let odds = base / (1.0 - base) * multiplier / self.mean_multiplier;
        odds / (1.0 + odds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn release(lines: u64, direct_pushes: u32, hour: u32, gap_days: f64) -> Release {
        Release {
            lines,
            direct_pushes,
            // A Wednesday.
            at: Utc.with_ymd_and_hms(2026, 3, 4, hour, 0, 0).unwrap(),
            gap_days,
        }
    }

    #[test]
    fn bigger_unreviewed_late_and_paused_releases_fail_more() {
        let usual = release(850, 0, 10, 9.0);
        let mut memory = Memory::default();
        let first = memory.failure_probability(Profile::Medium, &usual);
        assert!((first - Profile::Medium.failure_rate()).abs() < 1e-12);
        for risky in [
            release(8_500, 0, 10, 9.0),
            release(850, 3, 10, 9.0),
            release(850, 0, 17, 9.0),
            release(850, 0, 10, 60.0),
        ] {
            let mut memory = Memory::default();
            for _ in 0..10 {
                memory.failure_probability(Profile::Medium, &usual);
            }
            let p = memory.clone().failure_probability(Profile::Medium, &risky);
            let q = memory.failure_probability(Profile::Medium, &usual);
            assert!(p > q * 1.3, "{risky:?}: {p} against {q}");
            assert!(p < 1.0);
        }
    }
}
