//! Job locks: one runner of a scheduled job at a time.
//!
//! With PostgreSQL (several replicas share the state), a session-level
//! advisory lock held on a dedicated connection: if the holder dies, its
//! connection closes and the server releases the lock, so a crash never
//! leaves a job locked. With SQLite (one process by design) a lock in this
//! process, keyed by the database so two state files never collide.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Row};

use super::{Backend, StateDb};
use crate::Result;

/// Locks of this process, by (database, job).
static LOCAL: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A held job lock; [`JobLock::release`] gives it back. Dropping it without
/// releasing also frees it (the PostgreSQL connection is closed rather than
/// returned to the pool still holding the lock).
#[derive(Debug)]
pub struct JobLock {
    job: String,
    key: i64,
    connection: Option<PoolConnection<Any>>,
    local: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl JobLock {
    /// The job it locks.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<()> {
        if let Some(mut connection) = self.connection.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *connection)
                .await?;
        }
        self.local.take();
        Ok(())
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Closing the session is what frees an advisory lock.
            drop(connection.detach());
        }
    }
}

/// A stable 64-bit advisory lock key for a job name.
fn lock_key(job: &str) -> i64 {
    let digest = Sha256::digest(format!("fathom:{job}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl StateDb {
    /// Takes the lock of `job` if no one holds it; `None` when another
    /// runner (another replica, or another task here) does.
    pub async fn try_lock_job(&self, job: &str) -> Result<Option<JobLock>> {
        let key = lock_key(job);
        match self.backend {
            Backend::Postgres => {
                let mut connection = self.pool.acquire().await?;
                let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind(key)
                    .fetch_one(&mut *connection)
                    .await?;
                let locked: bool = row.try_get("locked")?;
                Ok(locked.then(|| JobLock {
                    job: job.to_owned(),
                    key,
                    connection: Some(connection),
                    local: None,
                }))
            }
            Backend::Sqlite => {
                let mutex = {
                    let mut locks = LOCAL.lock().unwrap_or_else(|p| p.into_inner());
                    locks
                        .entry(format!("{}\u{0}{job}", self.lock_scope))
                        .or_default()
                        .clone()
                };
                Ok(mutex.try_lock_owned().ok().map(|guard| JobLock {
                    job: job.to_owned(),
                    key,
                    connection: None,
                    local: Some(guard),
                }))
            }
        }
    }
}
