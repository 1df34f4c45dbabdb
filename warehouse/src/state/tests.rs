//! The same suite against SQLite and PostgreSQL. PostgreSQL runs when
//! `FATHOM_TEST_DATABASE_URL` names a server (CI starts one); each run gets a
//! fresh database so runs never see each other's rows.

use std::collections::BTreeMap;

use sqlx::Connection;

use super::*;

async fn exercise(db: &StateDb) -> Result<()> {
    // Cursors: absent, set, overwritten, cleared.
    assert_eq!(db.cursor("github", "pulls").await?, None);
    db.set_cursor("github", "pulls", "2026-01-01T00:00:00Z")
        .await?;
    db.set_cursor("github", "pulls", "2026-02-01T00:00:00Z")
        .await?;
    db.set_cursor("github", "commits", "abc").await?;
    assert_eq!(
        db.cursor("github", "pulls").await?.as_deref(),
        Some("2026-02-01T00:00:00Z")
    );
    assert_eq!(
        db.cursor("github", "commits").await?.as_deref(),
        Some("abc")
    );
    db.clear_cursor("github", "pulls").await?;
    assert_eq!(db.cursor("github", "pulls").await?, None);

    // Run ledger.
    let first = db.start_run("import deployments").await?;
    let second = db.start_run("import incidents").await?;
    let mut counts = BTreeMap::new();
    counts.insert("deployments.loaded".to_owned(), 41);
    counts.insert("quarantine.rejected".to_owned(), 2);
    db.finish_run(
        &first,
        RunStatus::Partial,
        &counts,
        &["line 7: bad timestamp".to_owned()],
    )
    .await?;
    let runs = db.runs(10).await?;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].run_id, second, "newest first");
    assert_eq!(runs[0].status, RunStatus::Running);
    assert_eq!(runs[0].finished_at, None);
    let finished = db.run(&first).await?.ok_or(Error::CorruptState {
        what: "test",
        detail: "run missing".into(),
    })?;
    assert_eq!(finished.status, RunStatus::Partial);
    assert_eq!(finished.row_counts, counts);
    assert_eq!(finished.errors, vec!["line 7: bad timestamp".to_owned()]);
    assert!(
        finished
            .finished_at
            .is_some_and(|f| f >= finished.started_at)
    );
    assert!(
        db.finish_run("no-such-run", RunStatus::Failed, &counts, &[])
            .await
            .is_err()
    );

    // Tokens: only the hash is stored; revoked and expired tokens fail.
    let (token, secret) = db
        .create_token(
            "ci",
            "analyst",
            &["group:default/payments".to_owned()],
            None,
        )
        .await?;
    assert!(secret.expose().starts_with("fathom_"));
    assert!(!format!("{secret:?}").contains(secret.expose()));
    let verified = db.verify_token(secret.expose()).await?;
    assert_eq!(
        verified.as_ref().map(|t| t.token_id.as_str()),
        Some(token.token_id.as_str())
    );
    assert_eq!(
        verified.map(|t| t.teams),
        Some(vec!["group:default/payments".to_owned()])
    );
    assert_eq!(db.verify_token("fathom_wrong").await?, None);
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_all(&db.pool)
        .await?;
    assert!(stored.iter().all(|h| h != secret.expose() && h.len() == 64));
    assert!(db.revoke_token(&token.token_id).await?);
    assert!(
        !db.revoke_token(&token.token_id).await?,
        "second revoke is a no-op"
    );
    assert_eq!(db.verify_token(secret.expose()).await?, None);
    let (_, expired) = db
        .create_token(
            "old",
            "viewer",
            &[],
            Some(Utc::now() - chrono::Duration::seconds(1)),
        )
        .await?;
    assert_eq!(db.verify_token(expired.expose()).await?, None);
    assert_eq!(db.tokens().await?.len(), 2);

    // Audit log.
    db.audit(
        "cli:alice",
        "sql.query",
        None,
        &serde_json::json!({"sql": "SELECT 1", "rows": 1}),
    )
    .await?;
    db.audit(
        "token:abc",
        "token.revoke",
        Some(&token.token_id),
        &serde_json::json!({}),
    )
    .await?;
    // Job locks: one holder at a time, free again once released or dropped.
    let held = db.try_lock_job("ingest:github").await?;
    assert!(held.is_some());
    assert!(db.try_lock_job("ingest:github").await?.is_none());
    let other = db.try_lock_job("transform").await?;
    assert!(other.is_some());
    if let Some(lock) = held {
        lock.release().await?;
    }
    let again = db.try_lock_job("ingest:github").await?;
    assert!(again.is_some());
    drop(again);
    drop(other);
    // A dropped PostgreSQL lock is freed when the server sees its session
    // close, a moment later.
    let mut retaken = None;
    for _ in 0..50 {
        retaken = db.try_lock_job("ingest:github").await?;
        if retaken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    assert!(retaken.is_some(), "a dropped lock was never freed");

    let log = db.audit_log(10).await?;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].action, "token.revoke");
    assert_eq!(log[1].detail["rows"], 1);

    // Anomaly feedback: a history per anomaly, the newest verdict counts.
    db.give_feedback("a1", "alice", Verdict::No, None).await?;
    db.give_feedback("a2", "bob", Verdict::Yes, Some("disk leak"))
        .await?;
    db.give_feedback("a1", "carol", Verdict::Planned, Some("migration"))
        .await?;
    db.give_feedback("a3", "bob", Verdict::No, None).await?;
    let on_a1 = db.feedback(Some("a1")).await?;
    assert_eq!(
        on_a1.iter().map(|f| f.verdict).collect::<Vec<_>>(),
        [Verdict::No, Verdict::Planned]
    );
    assert_eq!(on_a1[1].note.as_deref(), Some("migration"));
    // A page of the list reads only its own anomalies' verdicts.
    let page = db.feedback_on(&["a3", "a1", "none"]).await?;
    assert_eq!(
        page.iter()
            .map(|f| (f.anomaly_id.as_str(), f.verdict))
            .collect::<Vec<_>>(),
        [
            ("a1", Verdict::No),
            ("a1", Verdict::Planned),
            ("a3", Verdict::No)
        ]
    );
    assert!(db.feedback_on(&[]).await?.is_empty());
    let months = precision_by_month(&db.feedback(None).await?);
    assert_eq!(months.len(), 1);
    assert_eq!((months[0].yes, months[0].no, months[0].planned), (1, 1, 1));
    assert_eq!(months[0].precision, Some(2.0 / 3.0));

    // Risk models: the newest scores; a missing AUC stays missing.
    assert!(db.latest_risk_model().await?.is_none());
    for (version, day, auc) in [("risk-1", 1, Some(0.8125)), ("risk-2", 2, None)] {
        db.record_risk_model(&RiskModelRecord {
            version: version.to_owned(),
            trained_at: Utc::now() - chrono::Duration::days(10 - i64::from(day)),
            path: format!("risk/{version}.json"),
            rows_trained: 1_000 * i64::from(day),
            auc,
            summary: "{}".to_owned(),
        })
        .await?;
    }
    let latest = db.latest_risk_model().await?;
    assert_eq!(
        latest.map(|l| (l.version, l.rows_trained, l.auc)),
        Some(("risk-2".to_owned(), 2_000, None))
    );
    let all = db.risk_models(10).await?;
    assert_eq!(
        all.iter().map(|m| m.auc).collect::<Vec<_>>(),
        [None, Some(0.8125)]
    );

    exercise_outbox(db).await
}

/// The alert outbox: an event is queued once per rule and channel; a
/// claimed alert is held from other claims until its lease runs out; a
/// retry is due at its time; refusals and dead letters stay as they are.
async fn exercise_outbox(db: &StateDb) -> Result<()> {
    let now = Utc::now();
    let alert = |event: &str, channel: &str| NewAlert {
        rule: "cost".to_owned(),
        channel: channel.to_owned(),
        event_key: event.to_owned(),
        kind: "cost_change".to_owned(),
        severity: "warning".to_owned(),
        payload: serde_json::json!({"title": event}),
        not_before: now - chrono::Duration::seconds(1),
    };
    assert!(db.enqueue_alert(&alert("e1", "slack")).await?);
    assert!(
        !db.enqueue_alert(&alert("e1", "slack")).await?,
        "the same event, rule and channel is queued once"
    );
    assert!(db.enqueue_alert(&alert("e1", "feishu")).await?);
    assert!(db.enqueue_alert(&alert("e2", "slack")).await?);

    let lease = chrono::Duration::minutes(5);
    let claimed = db.claim_alerts(now, lease, 2).await?;
    assert_eq!(claimed.len(), 2, "up to the limit");
    assert!(claimed.iter().all(|c| c.state == DeliveryState::Sending));
    assert_eq!(claimed[0].payload["title"], "e1");
    let rest = db.claim_alerts(now, lease, 10).await?;
    assert_eq!(rest.len(), 1, "held alerts are not claimed twice");
    assert!(
        db.claim_alerts(now, lease, 10).await?.is_empty(),
        "every alert is held"
    );
    let later = now + lease + chrono::Duration::seconds(1);
    assert_eq!(
        db.claim_alerts(later, lease, 10).await?.len(),
        3,
        "a lease that ran out frees the alert"
    );

    db.alert_delivered(&claimed[0].delivery_id, later).await?;
    db.alert_retry(
        &claimed[1].delivery_id,
        later + chrono::Duration::minutes(1),
        "HTTP 503",
    )
    .await?;
    db.alert_given_up(
        &rest[0].delivery_id,
        DeliveryState::Failed,
        later,
        "HTTP 400",
    )
    .await?;
    assert!(
        db.claim_alerts(later, lease, 10).await?.is_empty(),
        "a retry is not due before its time"
    );
    let retried = db
        .claim_alerts(later + chrono::Duration::minutes(2), lease, 10)
        .await?;
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].last_error.as_deref(), Some("HTTP 503"));
    db.alert_postponed(
        &retried[0].delivery_id,
        later + chrono::Duration::hours(8),
        "quiet hours",
    )
    .await?;

    assert_eq!(
        db.alerts_delivered_since("cost", &claimed[0].channel, now)
            .await?,
        1
    );
    let failed = db.alert_deliveries(Some(DeliveryState::Failed), 10).await?;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 400"));
    assert_eq!(db.alert_deliveries(None, 10).await?.len(), 3);
    let counts = db.alert_counts().await?;
    assert_eq!(
        counts,
        vec![
            (DeliveryState::Delivered, 1),
            (DeliveryState::Failed, 1),
            (DeliveryState::Pending, 1)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn sqlite_backend() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::CorruptState {
        what: "tempdir",
        detail: e.to_string(),
    })?;
    let url = format!("sqlite://{}/nested/state.db", dir.path().display());
    let db = StateDb::connect(&url).await?;
    assert_eq!(db.backend(), Backend::Sqlite);
    exercise(&db).await?;
    db.close().await;
    // Reopening runs the migrations again as a no-op and keeps the data.
    let reopened = StateDb::connect(&url).await?;
    assert_eq!(reopened.runs(10).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn postgres_backend() -> Result<()> {
    let Ok(admin_url) = std::env::var("FATHOM_TEST_DATABASE_URL") else {
        println!(
            "skipped: FATHOM_TEST_DATABASE_URL is not set (CI sets it to a real PostgreSQL server)"
        );
        return Ok(());
    };
    let name = format!("fathom_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let mut url = url::Url::parse(&admin_url).map_err(|e| Error::CorruptState {
        what: "test url",
        detail: e.to_string(),
    })?;
    url.set_path(&name);
    let outcome = async {
        let db = StateDb::connect(url.as_str()).await?;
        assert_eq!(db.backend(), Backend::Postgres);
        exercise(&db).await?;
        db.close().await;
        let reopened = StateDb::connect(url.as_str()).await?;
        assert_eq!(reopened.runs(10).await?.len(), 2);
        reopened.close().await;
        Ok(())
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut admin)
    .await?;
    outcome
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact_url("postgres://fathom:s3cret@db:5432/fathom"),
        "postgres://fathom:%3Credacted%3E@db:5432/fathom"
    );
    assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
}

#[tokio::test]
async fn runs_of_killed_processes_are_closed_at_the_next_start() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::CorruptState {
        what: "tempdir",
        detail: e.to_string(),
    })?;
    let url = format!("sqlite://{}/state.db", dir.path().display());
    let db = StateDb::connect(&url).await?;
    let ours = db.start_run("ingest").await?;
    let dead = db.start_run("import deployments").await?;
    let elsewhere = db.start_run("transform").await?;
    // A process that no longer exists on this host, and one on another.
    sqlx::query("UPDATE runs SET owner = $1 WHERE run_id = $2")
        .bind(format!("{}:{}", host_name(), u32::MAX - 1))
        .bind(&dead)
        .execute(&db.pool)
        .await?;
    sqlx::query("UPDATE runs SET owner = $1 WHERE run_id = $2")
        .bind("another-host:1")
        .bind(&elsewhere)
        .execute(&db.pool)
        .await?;
    db.close().await;
    let reopened = StateDb::connect(&url).await?;
    let status = |id: String| {
        let db = &reopened;
        async move { db.run(&id).await.map(|r| r.map(|r| (r.status, r.errors))) }
    };
    let (dead_status, dead_errors) = status(dead).await?.ok_or(Error::CorruptState {
        what: "test",
        detail: "run missing".into(),
    })?;
    assert_eq!(dead_status, RunStatus::Failed);
    assert!(dead_errors.iter().any(|e| e.starts_with("abandoned")));
    assert_eq!(
        status(ours).await?.map(|r| r.0),
        Some(RunStatus::Running),
        "this process's own run is alive"
    );
    assert_eq!(
        status(elsewhere).await?.map(|r| r.0),
        Some(RunStatus::Running),
        "another host's run is left alone"
    );
    Ok(())
}
