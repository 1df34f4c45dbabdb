//! What the hot paths keep in memory: the DORA metrics mart indexed by
//! scope, window and environment, recently verified credentials, and the
//! latest risk model.
//!
//! Portal pages ask for the same few thousand rows over and over; planning
//! a DataFusion query and loading Delta snapshots per request costs
//! milliseconds of CPU each, which two cores cannot pay a thousand times a
//! second. The mart is instead loaded whole and answered from a hash map.
//! Freshness: at most once per [`FRESH_FOR`] the table's Delta version is
//! read, and a new version (a transform committed) reloads the index, so an
//! answer is never more than that behind the warehouse. Credentials are
//! remembered for [`CREDENTIAL_TTL`], so a revoked token stops working
//! within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fathom_models::tables::DORA_METRICS;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use fathom_ml::risk::store::{self, Artifact};

use crate::{Api, ApiError, ApiResult, Caller, json_rows};

/// How long an answer may trail the warehouse.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// How long a verified credential is trusted without asking the state DB.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(10);

type DoraKey = (String, u32, String);

struct DoraIndex {
    checked: Instant,
    version: Option<u64>,
    rows: Arc<HashMap<DoraKey, Map<String, Value>>>,
}

/// The in-memory state of the hot paths.
#[derive(Default)]
pub struct Caches {
    dora: RwLock<Option<DoraIndex>>,
    credentials: Mutex<HashMap<String, (Instant, Caller)>>,
    // A model version's artifact never changes once written, so it is read
    // once per version instead of once per scoring request.
    risk_model: Mutex<Option<Arc<Artifact>>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

fn credential_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Caches {
    /// The caller a credential was verified as, if recently.
    pub(crate) fn caller(&self, secret: &str) -> Option<Caller> {
        let known = self.credentials.lock().ok()?;
        known
            .get(&credential_key(secret))
            .filter(|(at, _)| at.elapsed() < CREDENTIAL_TTL)
            .map(|(_, caller)| caller.clone())
    }

    /// Remembers a verified credential.
    pub(crate) fn remember(&self, secret: &str, caller: &Caller) {
        if let Ok(mut known) = self.credentials.lock() {
            // Expired entries go when the map grows, so it stays small.
            if known.len() > 10_000 {
                known.retain(|_, (at, _)| at.elapsed() < CREDENTIAL_TTL);
            }
            known.insert(credential_key(secret), (Instant::now(), caller.clone()));
        }
    }

    /// The risk model artifact of `version`, read from the warehouse the
    /// first time it is asked for.
    pub(crate) async fn risk_model(&self, api: &Api, version: &str) -> ApiResult<Arc<Artifact>> {
        if let Ok(cached) = self.risk_model.lock()
            && let Some(artifact) = cached.as_ref().filter(|a| a.version == version)
        {
            return Ok(artifact.clone());
        }
        let artifact = Arc::new(
            store::read_artifact(&api.warehouse, version)
                .await
                .map_err(ApiError::internal)?,
        );
        if let Ok(mut cached) = self.risk_model.lock() {
            *cached = Some(artifact.clone());
        }
        Ok(artifact)
    }

    /// The `dora_metrics` row of a scope, window and environment.
    pub(crate) async fn dora_row(
        &self,
        api: &Api,
        scope: &str,
        days: u32,
        env: &str,
    ) -> ApiResult<Option<Map<String, Value>>> {
        let key = (scope.to_owned(), days, env.to_owned());
        {
            let index = self.dora.read().await;
            if let Some(index) = index.as_ref()
                && index.checked.elapsed() < FRESH_FOR
            {
                return Ok(index.rows.get(&key).cloned());
            }
        }
        let mut index = self.dora.write().await;
        // Another request may have refreshed it while this one waited.
        if let Some(current) = index.as_ref()
            && current.checked.elapsed() < FRESH_FOR
        {
            return Ok(current.rows.get(&key).cloned());
        }
        let version = api.warehouse.version(&DORA_METRICS).await?;
        let rows = match index.as_ref() {
            Some(current) if current.version == version => current.rows.clone(),
            _ => Arc::new(load_dora(api).await?),
        };
        let answer = rows.get(&key).cloned();
        *index = Some(DoraIndex {
            checked: Instant::now(),
            version,
            rows,
        });
        Ok(answer)
    }
}

async fn load_dora(api: &Api) -> ApiResult<HashMap<DoraKey, Map<String, Value>>> {
    let rows = json_rows(
        api,
        "SELECT *, CAST(window_start AS VARCHAR) AS window_start_text, \
         CAST(as_of AS VARCHAR) AS as_of_text FROM dora_metrics",
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let scope = row.get("scope")?.as_str()?.to_owned();
            let days = u32::try_from(row.get("window_days")?.as_u64()?).ok()?;
            let env = row.get("environment")?.as_str()?.to_owned();
            Some(((scope, days, env), row))
        })
        .collect())
}
