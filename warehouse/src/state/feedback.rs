//! Feedback on anomalies: whether an alert was real, a false alarm, or
//! planned activity (a migration, a load test) — the signal that measures
//! the detector's precision on a team's own data, over time.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{StateDb, parse_timestamp, timestamp_text};
use crate::{Error, Result};

/// What someone said about an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A real, unexpected anomaly.
    Yes,
    /// Not an anomaly: a false alarm.
    No,
    /// Real, but expected: planned activity (a migration, a load test).
    Planned,
}

impl Verdict {
    /// The stored (and accepted) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "yes",
            Self::No => "no",
            Self::Planned => "planned",
        }
    }
}

impl FromStr for Verdict {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "yes" => Ok(Self::Yes),
            "no" => Ok(Self::No),
            "planned" => Ok(Self::Planned),
            other => Err(Error::CorruptState {
                what: "anomaly verdict",
                detail: format!("{other:?} (expected yes, no or planned)"),
            }),
        }
    }
}

/// One verdict given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feedback {
    /// Time-ordered id.
    pub feedback_id: String,
    /// The anomaly (`anomalies.anomaly_id`).
    pub anomaly_id: String,
    /// When.
    pub given_at: DateTime<Utc>,
    /// Who: a token id or an OIDC subject.
    pub actor: String,
    /// What they said.
    pub verdict: Verdict,
    /// Why, if they said.
    pub note: Option<String>,
}

impl StateDb {
    /// Records a verdict on an anomaly (a history: an earlier verdict is
    /// kept, the newest counts).
    pub async fn give_feedback(
        &self,
        anomaly_id: &str,
        actor: &str,
        verdict: Verdict,
        note: Option<&str>,
    ) -> Result<Feedback> {
        let feedback = Feedback {
            feedback_id: uuid::Uuid::now_v7().to_string(),
            anomaly_id: anomaly_id.to_owned(),
            given_at: Utc::now(),
            actor: actor.to_owned(),
            verdict,
            note: note.map(str::to_owned),
        };
        sqlx::query(
            "INSERT INTO anomaly_feedback (feedback_id, anomaly_id, given_at, actor, verdict, note) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&feedback.feedback_id)
        .bind(&feedback.anomaly_id)
        .bind(timestamp_text(feedback.given_at))
        .bind(&feedback.actor)
        .bind(verdict.as_str())
        .bind(note)
        .execute(&self.pool)
        .await?;
        Ok(feedback)
    }

    /// Every verdict given on the anomalies `ids`, oldest first: what a
    /// page of the anomaly list shows, without reading the whole history.
    pub async fn feedback_on(&self, ids: &[&str]) -> Result<Vec<Feedback>> {
        let mut out = Vec::new();
        // Bounded lists: every engine takes a few hundred parameters.
        for chunk in ids.chunks(FEEDBACK_IDS_PER_QUERY) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT feedback_id, anomaly_id, given_at, actor, verdict, note FROM anomaly_feedback \
                 WHERE anomaly_id IN ({}) ORDER BY given_at, feedback_id",
                placeholders.join(", ")
            );
            // Only numbered placeholders are formatted in; the ids are bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&self.pool).await?;
            out.extend(rows.iter().map(feedback_row).collect::<Result<Vec<_>>>()?);
        }
        out.sort_by(|a, b| (a.given_at, &a.feedback_id).cmp(&(b.given_at, &b.feedback_id)));
        Ok(out)
    }

    /// Every verdict given, oldest first (optionally on one anomaly).
    pub async fn feedback(&self, anomaly_id: Option<&str>) -> Result<Vec<Feedback>> {
        let rows = match anomaly_id {
            Some(id) => {
                sqlx::query(
                    "SELECT feedback_id, anomaly_id, given_at, actor, verdict, note FROM anomaly_feedback \
                     WHERE anomaly_id = $1 ORDER BY given_at, feedback_id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT feedback_id, anomaly_id, given_at, actor, verdict, note FROM anomaly_feedback \
                     ORDER BY given_at, feedback_id",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(feedback_row).collect()
    }
}

/// Anomaly ids per query of [`StateDb::feedback_on`].
const FEEDBACK_IDS_PER_QUERY: usize = 200;

fn feedback_row(row: &sqlx::any::AnyRow) -> Result<Feedback> {
    Ok(Feedback {
        feedback_id: row.try_get("feedback_id")?,
        anomaly_id: row.try_get("anomaly_id")?,
        given_at: parse_timestamp("feedback time", &row.try_get::<String, _>("given_at")?)?,
        actor: row.try_get("actor")?,
        verdict: row.try_get::<String, _>("verdict")?.parse()?,
        note: row.try_get("note")?,
    })
}

/// Precision from feedback per calendar month of the verdicts: for each
/// anomaly its newest verdict counts once, in the month it was given;
/// `planned` counts as a true alert (the series did change) but is
/// reported apart so a team can see how much is noise from its own work.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// Anomalies judged real.
    pub yes: u64,
    /// Anomalies judged false alarms.
    pub no: u64,
    /// Anomalies judged planned activity.
    pub planned: u64,
    /// (yes + planned) / all judged; null with no verdicts.
    pub precision: Option<f64>,
}

/// Folds verdicts (oldest first) into months: the newest verdict per
/// anomaly, counted in the month it was given.
pub fn precision_by_month(feedback: &[Feedback]) -> Vec<FeedbackMonth> {
    let mut newest: std::collections::BTreeMap<&str, &Feedback> = Default::default();
    for f in feedback {
        newest.insert(&f.anomaly_id, f);
    }
    let mut months: std::collections::BTreeMap<String, FeedbackMonth> = Default::default();
    for f in newest.values() {
        let month = f.given_at.format("%Y-%m").to_string();
        let entry = months
            .entry(month.clone())
            .or_insert_with(|| FeedbackMonth {
                month,
                ..FeedbackMonth::default()
            });
        match f.verdict {
            Verdict::Yes => entry.yes += 1,
            Verdict::No => entry.no += 1,
            Verdict::Planned => entry.planned += 1,
        }
    }
    months
        .into_values()
        .map(|mut m| {
            let judged = m.yes + m.no + m.planned;
            m.precision = (judged > 0).then(|| (m.yes + m.planned) as f64 / judged as f64);
            m
        })
        .collect()
}
