//! The deployment risk models trained: which exist, when they were
//! trained, on how many deployments and how they did. The newest scores.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{StateDb, parse_timestamp, timestamp_text};
use crate::Result;

/// One trained model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskModelRecord {
    /// `risk-<UTC time of training>`.
    pub version: String,
    /// When it was trained.
    pub trained_at: DateTime<Utc>,
    /// Its file, relative to the warehouse's own files.
    pub path: String,
    /// Deployments it was trained on.
    pub rows_trained: i64,
    /// AUC of its backtest.
    pub auc: Option<f64>,
    /// Its backtest summary (JSON).
    pub summary: String,
}

impl StateDb {
    /// Records a trained model.
    pub async fn record_risk_model(&self, record: &RiskModelRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO risk_models (version, trained_at, path, rows_trained, auc, summary) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.version)
        .bind(timestamp_text(record.trained_at))
        .bind(&record.path)
        .bind(record.rows_trained)
        .bind(record.auc)
        .bind(&record.summary)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The models trained, newest first.
    pub async fn risk_models(&self, limit: i64) -> Result<Vec<RiskModelRecord>> {
        let rows = sqlx::query(
            "SELECT version, trained_at, path, rows_trained, auc, summary FROM risk_models \
             ORDER BY trained_at DESC, version DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RiskModelRecord {
                    version: row.try_get("version")?,
                    trained_at: parse_timestamp(
                        "risk model",
                        &row.try_get::<String, _>("trained_at")?,
                    )?,
                    path: row.try_get("path")?,
                    rows_trained: row.try_get("rows_trained")?,
                    auc: row.try_get("auc")?,
                    summary: row.try_get("summary")?,
                })
            })
            .collect()
    }

    /// The newest model, which scores.
    pub async fn latest_risk_model(&self) -> Result<Option<RiskModelRecord>> {
        Ok(self.risk_models(1).await?.into_iter().next())
    }
}
