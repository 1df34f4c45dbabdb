//! The state database: everything that is not table data — source cursors,
//! the run ledger, API tokens (hashed), the audit log, feedback on
//! anomalies, the deployment risk models trained and the alert outbox.
//!
//! SQLite (a file in the data directory) by default, PostgreSQL when
//! `state.database_url` points at one. Both run the same migrations through
//! sqlx's `Any` driver, so every query here is written in the SQL the two
//! share (`$n` parameters, `ON CONFLICT … DO UPDATE`).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::{Error, Result};

mod feedback;
mod freshness;
mod locks;
mod models;
mod outbox;
pub use feedback::{Feedback, FeedbackMonth, Verdict, precision_by_month};
pub use freshness::{SourceFreshness, source_freshness};
pub use locks::JobLock;
pub use models::RiskModelRecord;
pub use outbox::{DeliveryState, NewAlert, OutboxEntry};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The token columns, followed by a fixed clause (a literal, so the query
/// text stays static).
macro_rules! select_tokens {
    ($tail:literal) => {
        concat!(
            "SELECT token_id, name, role, teams, created_at, expires_at, revoked_at, last_used_at FROM api_tokens ",
            $tail
        )
    };
}

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Handle on the state database (a connection pool; cheap to clone).
#[derive(Debug, Clone)]
pub struct StateDb {
    pool: AnyPool,
    backend: Backend,
    /// What identifies this database among others in the process (for
    /// in-process job locks).
    lock_scope: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still running (or killed before it could record its end).
    Running,
    /// Everything succeeded.
    Succeeded,
    /// Finished, but some parts failed or some records were rejected.
    Partial,
    /// Nothing useful was done.
    Failed,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for RunStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "partial" => Ok(Self::Partial),
            "failed" => Ok(Self::Failed),
            other => Err(Error::CorruptState {
                what: "run status",
                detail: other.to_owned(),
            }),
        }
    }
}

/// One entry of the run ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Time-ordered id (UUID v7).
    pub run_id: String,
    /// What ran, e.g. `import deployments`.
    pub command: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished; `None` while running or if it was killed.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub status: RunStatus,
    /// Counts by name, e.g. `deployments.loaded`, `quarantine.rejected`.
    pub row_counts: BTreeMap<String, i64>,
    /// Error messages, in the order they happened.
    pub errors: Vec<String>,
}

/// An API token as stored (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Public id, shown in listings and used to revoke.
    pub token_id: String,
    /// Human label.
    pub name: String,
    /// Role granted (viewer, cost-viewer, analyst, admin, contractor).
    pub role: String,
    /// Teams the token is limited to (empty: not limited).
    pub teams: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last presented successfully.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A newly created token's secret. Shown once; not `Debug`-printable.
pub struct TokenSecret(String);

impl TokenSecret {
    /// The secret to hand to the user.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Time-ordered id.
    pub audit_id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who: a token id, an OIDC subject or `cli:<user>`.
    pub actor: String,
    /// What: `sql.query`, `token.create`, `run.trigger`, …
    pub action: String,
    /// On what, if anything.
    pub target: Option<String>,
    /// Details (query text, row count, duration, …).
    pub detail: serde_json::Value,
}

fn timestamp_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_timestamp(what: &'static str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::CorruptState {
            what,
            detail: format!("{text:?}: {e}"),
        })
}

fn parse_optional_timestamp(
    what: &'static str,
    text: Option<String>,
) -> Result<Option<DateTime<Utc>>> {
    text.map(|t| parse_timestamp(what, &t)).transpose()
}

fn parse_json<T: for<'de> Deserialize<'de>>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::CorruptState {
        what,
        detail: e.to_string(),
    })
}

fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::CorruptState {
        what,
        detail: e.to_string(),
    })
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl StateDb {
    /// Connects and brings the schema up to date. A `sqlite://` file is
    /// created if missing (its directory too).
    pub async fn connect(database_url: &str) -> Result<Self> {
        install_default_drivers();
        let backend = if database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else {
            return Err(Error::InvalidLocation {
                url: redact_url(database_url),
                reason: "state.database_url must start with sqlite:// or postgres://".to_owned(),
            });
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url_creating_file(database_url)?,
            Backend::Postgres => database_url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            // SQLite allows one writer; a single connection avoids
            // "database is locked" between our own tasks.
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .connect(&url)
            .await?;
        MIGRATOR.run(&pool).await?;
        let db = Self {
            pool,
            backend,
            lock_scope: url,
        };
        let closed = db.abandon_dead_runs().await?;
        if closed > 0 {
            tracing::warn!(closed, "closed runs left running by killed processes");
        }
        Ok(db)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The cursor of a source's stream, if one was saved.
    pub async fn cursor(&self, source: &str, stream: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT cursor_value FROM source_cursors WHERE source = $1 AND stream = $2",
        )
        .bind(source)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| r.try_get::<String, _>("cursor_value"))
            .transpose()?)
    }

    /// Saves a stream's cursor. Callers do this only after the data it
    /// covers is committed, so a crash replays rather than skips.
    pub async fn set_cursor(&self, source: &str, stream: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO source_cursors (source, stream, cursor_value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (source, stream) DO UPDATE SET cursor_value = excluded.cursor_value, updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(stream)
        .bind(value)
        .bind(timestamp_text(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a stream's cursor (a `--full` reload).
    pub async fn clear_cursor(&self, source: &str, stream: &str) -> Result<()> {
        sqlx::query("DELETE FROM source_cursors WHERE source = $1 AND stream = $2")
            .bind(source)
            .bind(stream)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the start of a run and returns its id.
    pub async fn start_run(&self, command: &str) -> Result<String> {
        let run_id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO runs (run_id, command, started_at, status, row_counts, errors, owner) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&run_id)
        .bind(command)
        .bind(timestamp_text(Utc::now()))
        .bind(RunStatus::Running.as_str())
        .bind("{}")
        .bind("[]")
        .bind(this_process())
        .execute(&self.pool)
        .await?;
        Ok(run_id)
    }

    /// Closes the runs a process on this host left "running" when it was
    /// killed (its pid is gone): they are marked failed, saying so. What
    /// such a run committed is whole (every write is one commit); a re-run
    /// completes it. Runs of other hosts are left alone (their processes
    /// cannot be seen from here). Returns how many were closed.
    pub async fn abandon_dead_runs(&self) -> Result<usize> {
        let rows = sqlx::query("SELECT run_id, owner, errors FROM runs WHERE status = $1")
            .bind(RunStatus::Running.as_str())
            .fetch_all(&self.pool)
            .await?;
        let host = format!("{}:", host_name());
        let mut closed = 0;
        for row in rows {
            let run_id: String = row.try_get("run_id")?;
            let owner: Option<String> = row.try_get("owner")?;
            let Some(pid) = owner
                .as_deref()
                .and_then(|o| o.strip_prefix(&host))
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() || process_alive(pid) {
                continue;
            }
            let mut errors: Vec<String> =
                parse_json("run errors", &row.try_get::<String, _>("errors")?)?;
            errors.push(format!(
                "abandoned: process {pid} ended without recording the run's end (killed?); \
                 what it committed is whole, and running the command again completes it"
            ));
            sqlx::query(
                "UPDATE runs SET status = $1, finished_at = $2, errors = $3 WHERE run_id = $4 AND status = $5",
            )
            .bind(RunStatus::Failed.as_str())
            .bind(timestamp_text(Utc::now()))
            .bind(to_json("run errors", &errors)?)
            .bind(&run_id)
            .bind(RunStatus::Running.as_str())
            .execute(&self.pool)
            .await?;
            closed += 1;
        }
        Ok(closed)
    }

    /// Records how a run ended, with its counts and errors.
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        row_counts: &BTreeMap<String, i64>,
        errors: &[String],
    ) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE runs SET finished_at = $1, status = $2, row_counts = $3, errors = $4 WHERE run_id = $5",
        )
        .bind(timestamp_text(Utc::now()))
        .bind(status.as_str())
        .bind(to_json("run row counts", row_counts)?)
        .bind(to_json("run errors", &errors)?)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::CorruptState {
                what: "run id",
                detail: format!("no run `{run_id}` to finish"),
            });
        }
        Ok(())
    }

    /// The most recent runs, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT run_id, command, started_at, finished_at, status, row_counts, errors FROM runs \
             ORDER BY started_at DESC, run_id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// One run by id.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query(
            "SELECT run_id, command, started_at, finished_at, status, row_counts, errors FROM runs WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Creates an API token. Only its SHA-256 is stored; the secret is
    /// returned once. Tokens carry 256 random bits, so a fast hash is enough
    /// (a slow password hash defends guessable secrets, which these are not).
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        teams: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(ApiToken, TokenSecret)> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!("fathom_{}", hex::encode(bytes));
        let token = ApiToken {
            token_id: uuid::Uuid::now_v7().simple().to_string()[..16].to_owned(),
            name: name.to_owned(),
            role: role.to_owned(),
            teams: teams.to_vec(),
            created_at: Utc::now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_tokens (token_id, name, token_hash, role, teams, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.token_id)
        .bind(&token.name)
        .bind(hash_secret(&secret))
        .bind(&token.role)
        .bind(to_json("token teams", &token.teams)?)
        .bind(timestamp_text(token.created_at))
        .bind(token.expires_at.map(timestamp_text))
        .execute(&self.pool)
        .await?;
        Ok((token, TokenSecret(secret)))
    }

    /// The token a secret belongs to, if it is valid (known, not revoked,
    /// not expired); records the use.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(select_tokens!("WHERE token_hash = $1"))
            .bind(hash_secret(secret))
            .fetch_optional(&self.pool)
            .await?;
        let Some(token) = row.as_ref().map(token_from_row).transpose()? else {
            return Ok(None);
        };
        let now = Utc::now();
        if token.revoked_at.is_some() || token.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_id = $2")
            .bind(timestamp_text(now))
            .bind(&token.token_id)
            .execute(&self.pool)
            .await?;
        Ok(Some(ApiToken {
            last_used_at: Some(now),
            ..token
        }))
    }

    /// Revokes a token; false when no active token has this id.
    pub async fn revoke_token(&self, token_id: &str) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE token_id = $2 AND revoked_at IS NULL",
        )
        .bind(timestamp_text(Utc::now()))
        .bind(token_id)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// All tokens, newest first.
    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(select_tokens!("ORDER BY created_at DESC, token_id DESC"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Appends to the audit log.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<String> {
        let audit_id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO audit_log (audit_id, occurred_at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&audit_id)
        .bind(timestamp_text(Utc::now()))
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(to_json("audit detail", detail)?)
        .execute(&self.pool)
        .await?;
        Ok(audit_id)
    }

    /// The most recent audit entries, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT audit_id, occurred_at, actor, action, target, detail FROM audit_log \
             ORDER BY occurred_at DESC, audit_id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    audit_id: row.try_get("audit_id")?,
                    occurred_at: parse_timestamp(
                        "audit time",
                        &row.try_get::<String, _>("occurred_at")?,
                    )?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: parse_json("audit detail", &row.try_get::<String, _>("detail")?)?,
                })
            })
            .collect()
    }
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        token_id: row.try_get("token_id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        teams: parse_json("token teams", &row.try_get::<String, _>("teams")?)?,
        created_at: parse_timestamp("token time", &row.try_get::<String, _>("created_at")?)?,
        expires_at: parse_optional_timestamp("token time", row.try_get("expires_at")?)?,
        revoked_at: parse_optional_timestamp("token time", row.try_get("revoked_at")?)?,
        last_used_at: parse_optional_timestamp("token time", row.try_get("last_used_at")?)?,
    })
}

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<RunRecord> {
    Ok(RunRecord {
        run_id: row.try_get("run_id")?,
        command: row.try_get("command")?,
        started_at: parse_timestamp("run time", &row.try_get::<String, _>("started_at")?)?,
        finished_at: parse_optional_timestamp("run time", row.try_get("finished_at")?)?,
        status: row.try_get::<String, _>("status")?.parse()?,
        row_counts: parse_json("run row counts", &row.try_get::<String, _>("row_counts")?)?,
        errors: parse_json("run errors", &row.try_get::<String, _>("errors")?)?,
    })
}

/// Adds `mode=rwc` so SQLite creates the file, and creates its directory.
fn sqlite_url_creating_file(url: &str) -> Result<String> {
    let path_part = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if let Some(parent) = Path::new(path_part)
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && path_part != ":memory:")
    {
        std::fs::create_dir_all(parent).map_err(|e| Error::InvalidLocation {
            url: url.to_owned(),
            reason: format!("cannot create directory `{}`: {e}", parent.display()),
        })?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// A database URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one,
            // and this one has one.
            let _ = parsed.set_password(Some("<redacted>"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;

/// This host's name (for run owners).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `host:pid` of this process.
fn this_process() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

/// Whether process `pid` runs on this host (Linux: `/proc`; elsewhere every
/// process is assumed alive, so nothing is closed wrongly).
fn process_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    // A zombie has finished: its run will not record an end either.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
