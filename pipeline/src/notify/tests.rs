//! Alerts against local receivers started by each test: a Slack-like one
//! (answers `ok`, or Slack's error text with a 4xx), a Feishu-like one
//! (checks the signature and the timestamp, answers `code`/`msg` in HTTP
//! 200) and a generic webhook that verifies the HMAC. Time is passed in,
//! so retries and quiet hours are tested without waiting for them.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Duration, Utc};
use fathom_warehouse::Warehouse;
use fathom_warehouse::state::{DeliveryState, StateDb};
use serde_json::{Value, json};

use super::channels::{ChannelConfig, ChannelKind, feishu_sign, verify_webhook_signature};
use super::events::{Event, EventKind, Field, Severity};
use super::rules::RuleConfig;
use super::*;

type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// How a receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    SlackOk,
    SlackError(u16),
    Feishu,
    Webhook,
}

#[derive(Clone)]
struct Receiver {
    received: Received,
    answer: Answer,
    secret: String,
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match receiver.answer {
        Answer::SlackOk => {
            receiver.push(headers, json);
            (StatusCode::OK, "ok".to_owned())
        }
        Answer::SlackError(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            "invalid_payload".to_owned(),
        ),
        Answer::Feishu => {
            let timestamp = json["timestamp"].as_str().unwrap_or("");
            let fresh = timestamp
                .parse::<i64>()
                .is_ok_and(|t| (Utc::now().timestamp() - t).abs() <= 3600);
            let signed = json["sign"].as_str() == Some(&feishu_sign(timestamp, &receiver.secret));
            if !(fresh && signed) {
                return (
                    StatusCode::OK,
                    json!({"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour from current time"}).to_string(),
                );
            }
            receiver.push(headers, json);
            (
                StatusCode::OK,
                json!({"code": 0, "data": {}, "msg": "success"}).to_string(),
            )
        }
        Answer::Webhook => {
            let signature = headers
                .get("x-fathom-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !verify_webhook_signature(&receiver.secret, &body, signature) {
                return (StatusCode::UNAUTHORIZED, "bad signature".to_owned());
            }
            receiver.push(headers, json);
            (StatusCode::OK, String::new())
        }
    }
}

impl Receiver {
    fn push(&self, headers: HeaderMap, json: Value) {
        if let Ok(mut received) = self.received.lock() {
            received.push((headers, json));
        }
    }
}

/// Starts a receiver on `listener`; returns what it received.
fn serve(listener: tokio::net::TcpListener, answer: Answer, secret: &str) -> Received {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(Receiver {
            received: received.clone(),
            answer,
            secret: secret.to_owned(),
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    received
}

async fn listener() -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    Ok((listener, url))
}

fn count(received: &Received) -> usize {
    received.lock().map(|r| r.len()).unwrap_or(usize::MAX)
}

struct Setup {
    _dir: tempfile::TempDir,
    state: StateDb,
    config: AlertsConfig,
}

/// A state database and `[alerts]` with one rule per channel, quick
/// retries (1 s doubling) and no retries within an attempt.
async fn setup(channels: Vec<(ChannelKind, String, Option<&str>)>) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let state = StateDb::connect(&format!("sqlite://{}/state.db", dir.path().display())).await?;
    let mut config = AlertsConfig {
        retry_initial_seconds: 1,
        retry_max_seconds: 60,
        max_attempts: 3,
        dashboard_url: Some("http://fathom.local".to_owned()),
        ..AlertsConfig::default()
    };
    config.http.max_retries = 0;
    config.http.timeout_seconds = 2.0;
    for (i, (kind, url, secret)) in channels.into_iter().enumerate() {
        let name = format!("{}-{i}", kind.as_str());
        let (url, url_file) = if matches!(kind, ChannelKind::Slack | ChannelKind::Feishu) {
            let path = dir.path().join(format!("{name}.url"));
            std::fs::write(&path, format!("{url}\n"))?;
            (None, Some(path.display().to_string()))
        } else {
            (Some(url), None)
        };
        let secret_file = match secret {
            Some(secret) => {
                let path = dir.path().join(format!("{name}.secret"));
                std::fs::write(&path, secret)?;
                Some(path.display().to_string())
            }
            None => None,
        };
        config.channels.push(ChannelConfig {
            name: name.clone(),
            kind,
            url,
            url_env: None,
            url_file,
            secret_env: None,
            secret_file,
        });
        config
            .rules
            .push(RuleConfig::new(&format!("rule-{i}"), vec![name]));
    }
    Ok(Setup {
        _dir: dir,
        state,
        config,
    })
}

fn event(key: &str) -> Event {
    Event {
        kind: EventKind::CostChange,
        key: key.to_owned(),
        severity: Severity::Warning,
        scope: "group:default/payments".to_owned(),
        teams: vec!["group:default/payments".to_owned()],
        title: "Cost of group:default/payments changed significantly in 2026-05".to_owned(),
        text: "group:default/payments cost 1,500.00 USD in 2026-05, 1,000.00 USD the month before."
            .to_owned(),
        fields: vec![Field {
            name: "Change".to_owned(),
            value: "+500.00 USD".to_owned(),
        }],
        link: Some("http://fathom.local/cost?scope=group:default/payments".to_owned()),
        at: Utc::now(),
        impact: Some(500.0),
        score: None,
    }
}

#[tokio::test]
async fn each_channel_gets_its_platforms_message_once() -> anyhow::Result<()> {
    let (slack_listener, slack_url) = listener().await?;
    let (feishu_listener, feishu_url) = listener().await?;
    let (hook_listener, hook_url) = listener().await?;
    let slack = serve(slack_listener, Answer::SlackOk, "");
    let feishu = serve(feishu_listener, Answer::Feishu, "bot-secret");
    let hook = serve(hook_listener, Answer::Webhook, "hook-secret");
    let s = setup(vec![
        (ChannelKind::Slack, slack_url, None),
        (ChannelKind::Feishu, feishu_url, Some("bot-secret")),
        (ChannelKind::N8n, hook_url, Some("hook-secret")),
    ])
    .await?;
    let notifier = Notifier::new(&s.config, &s.state)?;
    let now = Utc::now();
    assert_eq!(
        notifier
            .queue_event(&event("payments|2026-05|USD"), now)
            .await?,
        3
    );
    // Detected again (the next refresh): nothing new.
    assert_eq!(
        notifier
            .queue_event(&event("payments|2026-05|USD"), now)
            .await?,
        0
    );
    let report = notifier.deliver_due(now).await?;
    assert_eq!(
        (report.delivered, report.errors.len()),
        (3, 0),
        "{report:?}"
    );
    assert_eq!(notifier.deliver_due(now).await?.delivered, 0);
    assert_eq!((count(&slack), count(&feishu), count(&hook)), (1, 1, 1));

    let slack = slack.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    let blocks = &slack[0].1["blocks"];
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks[0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.ends_with("changed significantly in 2026-05")),
        "{blocks}"
    );
    assert_eq!(blocks[1]["fields"][0]["text"], "*Change*\n+500.00 USD");
    assert_eq!(
        blocks[2]["elements"][0]["url"],
        "http://fathom.local/cost?scope=group:default/payments"
    );

    let feishu = feishu.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    let card = &feishu[0].1;
    assert_eq!(card["msg_type"], "interactive");
    assert_eq!(card["card"]["header"]["template"], "orange");
    assert_eq!(
        card["card"]["header"]["title"]["content"],
        "Cost of group:default/payments changed significantly in 2026-05"
    );

    let hook = hook.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    let (headers, body) = &hook[0];
    assert_eq!(body["rule"], "rule-2");
    assert_eq!(body["event"]["kind"], "cost_change");
    assert_eq!(body["event"]["impact"], 500.0);
    let delivery = headers
        .get("x-fathom-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(body["delivery_id"], delivery);
    let delivered = s
        .state
        .alert_deliveries(Some(DeliveryState::Delivered), 10)
        .await?;
    assert_eq!(delivered.len(), 3);
    assert!(delivered.iter().all(|d| d.attempts == 1));
    Ok(())
}

#[tokio::test]
async fn a_refusal_is_recorded_and_never_retried() -> anyhow::Result<()> {
    let (slack_listener, slack_url) = listener().await?;
    let (feishu_listener, feishu_url) = listener().await?;
    let slack = serve(slack_listener, Answer::SlackError(400), "");
    let feishu = serve(feishu_listener, Answer::Feishu, "the-right-secret");
    let s = setup(vec![
        (ChannelKind::Slack, slack_url, None),
        (ChannelKind::Feishu, feishu_url, Some("a-wrong-secret")),
    ])
    .await?;
    let notifier = Notifier::new(&s.config, &s.state)?;
    let now = Utc::now();
    notifier.queue_event(&event("e"), now).await?;
    let report = notifier.deliver_due(now).await?;
    assert_eq!((report.failed, report.retrying), (2, 0), "{report:?}");
    let later = notifier.deliver_due(now + Duration::hours(2)).await?;
    assert_eq!(later, NotifyReport::default(), "nothing is tried again");
    let failed = s
        .state
        .alert_deliveries(Some(DeliveryState::Failed), 10)
        .await?;
    let errors: Vec<&str> = failed
        .iter()
        .filter_map(|f| f.last_error.as_deref())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("HTTP 400") && e.contains("invalid_payload")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("Feishu code 19021")),
        "{errors:?}"
    );
    assert_eq!(count(&slack), 0, "the Slack-like receiver stored nothing");
    assert_eq!(count(&feishu), 0, "a bad signature is not accepted");
    Ok(())
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_the_alert_once_it_is_up() -> anyhow::Result<()> {
    // A port with nothing listening: connections are refused.
    let (held, url) = listener().await?;
    let address = held.local_addr()?;
    drop(held);
    let s = setup(vec![(ChannelKind::Webhook, url, Some("k"))]).await?;
    let notifier = Notifier::new(&s.config, &s.state)?;
    let now = Utc::now();
    notifier.queue_event(&event("e"), now).await?;
    let first = notifier.deliver_due(now).await?;
    assert_eq!(first.retrying, 1, "{first:?}");
    assert_eq!(
        notifier.deliver_due(now).await?.retrying,
        0,
        "not due again before its backoff"
    );

    let listener = tokio::net::TcpListener::bind(address).await?;
    let received = serve(listener, Answer::Webhook, "k");
    // Backoff after one attempt: 0.5–1 s.
    let report = notifier.deliver_due(now + Duration::seconds(2)).await?;
    assert_eq!(report.delivered, 1, "{report:?}");
    assert_eq!(
        notifier
            .deliver_due(now + Duration::hours(1))
            .await?
            .delivered,
        0
    );
    assert_eq!(count(&received), 1);
    let delivered = s.state.alert_deliveries(None, 10).await?;
    assert_eq!(delivered[0].state, DeliveryState::Delivered);
    assert_eq!(delivered[0].attempts, 2);
    Ok(())
}

#[tokio::test]
async fn an_alert_failing_every_attempt_is_dead_and_listed() -> anyhow::Result<()> {
    let (held, url) = listener().await?;
    drop(held);
    let s = setup(vec![(ChannelKind::Webhook, url, Some("k"))]).await?;
    let notifier = Notifier::new(&s.config, &s.state)?;
    let mut now = Utc::now();
    notifier.queue_event(&event("e"), now).await?;
    let mut dead = 0;
    for _ in 0..3 {
        dead += notifier.deliver_due(now).await?.dead;
        now += Duration::minutes(2);
    }
    assert_eq!(dead, 1);
    let letters = s
        .state
        .alert_deliveries(Some(DeliveryState::Dead), 10)
        .await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot connect")),
        "{letters:?}"
    );
    Ok(())
}

#[tokio::test]
async fn quiet_hours_and_the_rate_limit_hold_alerts_without_losing_them() -> anyhow::Result<()> {
    let (listener, url) = listener().await?;
    let received = serve(listener, Answer::Webhook, "k");
    let mut s = setup(vec![(ChannelKind::Webhook, url, Some("k"))]).await?;
    s.config.rules[0].quiet_hours = Some("22:00-07:00".to_owned());
    s.config.rules[0].max_per_hour = Some(2);
    let notifier = Notifier::new(&s.config, &s.state)?;
    // Times ahead of the real clock: an attempt is recorded at the later
    // of the two, so the rate limit's hour is counted in these times.
    let night: DateTime<Utc> = "2030-03-02T23:00:00Z".parse()?;
    for key in ["a", "b", "c"] {
        notifier.queue_event(&event(key), night).await?;
    }
    let held = notifier.deliver_due(night).await?;
    assert_eq!((held.held, held.delivered), (3, 0), "{held:?}");
    assert_eq!(count(&received), 0);

    let morning: DateTime<Utc> = "2030-03-03T07:00:00Z".parse()?;
    let sent = notifier.deliver_due(morning).await?;
    assert_eq!((sent.delivered, sent.held), (2, 1), "{sent:?}");
    assert_eq!(
        notifier
            .deliver_due(morning + Duration::minutes(30))
            .await?
            .delivered,
        0,
        "still over the limit within the hour"
    );
    let rest = notifier
        .deliver_due(morning + Duration::minutes(61))
        .await?;
    assert_eq!(rest.delivered, 1, "{rest:?}");
    assert_eq!(count(&received), 3);
    Ok(())
}

#[tokio::test]
async fn rules_route_events_by_kind_and_team() -> anyhow::Result<()> {
    let mut s = setup(vec![
        (
            ChannelKind::Webhook,
            "http://127.0.0.1:9/a".to_owned(),
            Some("k"),
        ),
        (
            ChannelKind::Webhook,
            "http://127.0.0.1:9/b".to_owned(),
            Some("k"),
        ),
    ])
    .await?;
    s.config.rules[0].teams = vec!["group:default/search".to_owned()];
    s.config.rules[1].kinds = vec![EventKind::CostChange];
    s.config.rules[1].min_impact = 100.0;
    let notifier = Notifier::new(&s.config, &s.state)?;
    let now = Utc::now();
    assert_eq!(notifier.queue_event(&event("payments"), now).await?, 1);
    let mut small = event("small");
    small.impact = Some(20.0);
    assert_eq!(notifier.queue_event(&small, now).await?, 0);
    let queued = s.state.alert_deliveries(None, 10).await?;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].rule, "rule-1");
    assert_eq!(queued[0].event_key, "cost_change|payments");
    Ok(())
}

#[tokio::test]
async fn configuration_mistakes_are_named() -> anyhow::Result<()> {
    let s = setup(vec![(
        ChannelKind::Webhook,
        "http://127.0.0.1:9/a".to_owned(),
        Some("k"),
    )])
    .await?;
    let mut config = s.config.clone();
    config.rules[0].channels = vec!["nowhere".to_owned()];
    let error = Notifier::new(&config, &s.state)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(error.contains("channel `nowhere`"), "{error}");

    let mut config = s.config.clone();
    config.channels[0].kind = ChannelKind::Slack;
    let error = Notifier::new(&config, &s.state)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(error.contains("credential"), "{error}");

    let mut config = s.config.clone();
    config.channels[0].secret_file = None;
    let error = Notifier::new(&config, &s.state)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(error.contains("signing secret"), "{error}");

    let parsed: AlertsConfig = toml::from_str(
        r#"
        dashboard_url = "https://fathom.example.com"
        [[channels]]
        name = "platform"
        type = "feishu"
        url_env = "FATHOM_FEISHU_URL"
        secret_env = "FATHOM_FEISHU_SECRET"
        [[rules]]
        name = "suspects"
        kinds = ["suspect_deployment", "anomaly"]
        channels = ["platform"]
        teams = ["group:default/payments"]
        min_severity = "warning"
        quiet_hours = "22:00-07:00"
        max_per_hour = 10
        "#,
    )?;
    parsed.check()?;
    assert_eq!(
        parsed.rules[0].kinds,
        [EventKind::SuspectDeployment, EventKind::Anomaly]
    );
    assert_eq!(parsed.rules[0].min_severity, Severity::Warning);
    assert_eq!(parsed.max_attempts, 8);
    Ok(())
}

/// Appends rows (JSON objects) to tables.
async fn land(warehouse: &Warehouse, tables: &[(&str, Vec<Value>)]) -> anyhow::Result<()> {
    for (name, rows) in tables {
        let def = fathom_models::ALL_TABLES
            .iter()
            .find(|d| d.name == *name)
            .ok_or_else(|| anyhow::anyhow!("no table {name}"))?;
        let rows: Vec<serde_json::Map<String, Value>> =
            rows.iter().filter_map(|r| r.as_object().cloned()).collect();
        let refs: Vec<&serde_json::Map<String, Value>> = rows.iter().collect();
        let (batch, rejected) = fathom_ingest::import::json_rows_to_batch(def, &refs, "test")
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        anyhow::ensure!(rejected.is_empty(), "{name}: {rejected:?}");
        warehouse
            .append(def, &batch.into_iter().collect::<Vec<_>>())
            .await?;
    }
    Ok(())
}

/// The events read from marts: an open anomaly, a suspect deployment, a
/// significant cost change and a tier drop, each with the teams above its
/// scope; run twice, the outbox holds each once.
#[tokio::test]
async fn events_are_read_from_the_marts_and_queued_once() -> anyhow::Result<()> {
    let warehouse = Warehouse::in_memory()?;
    let now = Utc::now();
    let today = now.date_naive();
    let day = |back: i64| {
        (today - Duration::days(back))
            .format("%Y-%m-%d")
            .to_string()
    };
    let monday = today
        - Duration::days(i64::from(
            chrono::Datelike::weekday(&today).num_days_from_monday(),
        ));
    let week = |back: i64| format!("{}T00:00:00Z", monday - Duration::days(7 * back));
    let member = |scope: &str, kind: &str, component: &str| json!({"scope": scope, "scope_kind": kind, "entity_ref": component});
    let trend = |start: String, tier: &str| {
        json!({"scope": "group:default/payments", "scope_kind": "group", "granularity": "week",
               "period_start": start, "period_end": start, "period_days": 7, "environment": "all",
               "deployments": 3, "failed_jobs": 0, "deploy_days": 3, "changes": 3,
               "lead_time_anomalies": 0, "failed_deployments": 0, "failed_by_revert": 0,
               "incidents": 0, "rework_deployments": 0, "benchmark": "dora-2023",
               "overall_tier": tier})
    };
    let tables: Vec<(&str, Vec<Value>)> = vec![
        (
            "dora_scope_members",
            vec![
                member("group:default/eng", "group", "component:default/api"),
                member("group:default/payments", "group", "component:default/api"),
            ],
        ),
        (
            "anomalies",
            vec![
                json!({
                    "anomaly_id": "an-1", "metric": "cost", "scope": "component:default/api",
                    "scope_kind": "component", "unit": "USD", "kind": "spike", "direction": "up",
                    "first_day": day(2), "last_day": day(1), "status": "open", "peak_day": day(1),
                    "peak_score": 0.95, "days": 2, "actual": 300.0, "expected": 100.0, "impact": 200.0,
                }),
                json!({
                    "anomaly_id": "an-old", "metric": "cost", "scope": "component:default/api",
                    "scope_kind": "component", "unit": "USD", "kind": "spike", "direction": "up",
                    "first_day": day(40), "last_day": day(39), "status": "open", "peak_day": day(39),
                    "peak_score": 0.95, "days": 2, "actual": 300.0, "expected": 100.0, "impact": 200.0,
                }),
            ],
        ),
        (
            "deployment_signals",
            vec![json!({
                "deployment_id": "d-9", "entity_ref": "component:default/api", "environment": "production",
                "finished_at": format!("{}T10:00:00Z", day(1)), "finished_month": &day(1)[..7],
                "signal": "new_issue", "score": 7.25, "verdict": "degraded", "suspect": true,
            })],
        ),
        (
            "cost_monthly",
            vec![json!({
                "scope": "group:default/payments", "scope_kind": "group", "billing_period": "2026-05",
                "billing_currency": "USD", "billed_cost": 1500.0, "effective_cost": 1500.0,
                "previous_effective_cost": 1000.0, "change": 500.0, "change_ratio": 0.5,
                "significant": true, "complete": true, "driver": "component:default/api", "driver_change": 450.0,
            })],
        ),
        (
            "dora_trends",
            vec![trend(week(2), "elite"), trend(week(1), "medium")],
        ),
    ];
    land(&warehouse, &tables).await?;

    let s = setup(vec![(
        ChannelKind::Webhook,
        "http://127.0.0.1:9/a".to_owned(),
        Some("k"),
    )])
    .await?;
    let notifier = Notifier::new(&s.config, &s.state)?;
    let (found, queued) = notifier.queue(&warehouse, &[], now).await?;
    assert_eq!((found, queued), (4, 4));
    assert_eq!(notifier.queue(&warehouse, &[], now).await?, (4, 0));
    let queued = s.state.alert_deliveries(None, 10).await?;
    let by_kind = |kind: &str| {
        queued
            .iter()
            .find(|q| q.kind == kind)
            .map(|q| q.payload.clone())
            .unwrap_or(Value::Null)
    };
    let anomaly = by_kind("anomaly");
    assert_eq!(
        anomaly["key"], "an-1",
        "the 40-day-old anomaly is past the lookback"
    );
    assert_eq!(anomaly["severity"], "critical");
    assert_eq!(
        anomaly["teams"],
        json!(["group:default/eng", "group:default/payments"])
    );
    assert_eq!(anomaly["fields"][0]["value"], "200.00 USD");
    let suspect = by_kind("suspect_deployment");
    assert_eq!(suspect["key"], "d-9");
    assert_eq!(suspect["fields"][2]["value"], "new_issue (score 7.3)");
    let cost = by_kind("cost_change");
    assert_eq!(cost["key"], "group:default/payments|2026-05|USD");
    assert_eq!(cost["fields"][2]["value"], "+500.00 USD");
    assert_eq!(cost["fields"][3]["value"], "+50.0 %");
    let tier = by_kind("dora_tier_drop");
    assert_eq!(
        tier["title"],
        "DORA tier of group:default/payments dropped from elite to medium"
    );
    assert_eq!(tier["severity"], "warning");
    Ok(())
}

/// The weekly digest: due from the configured day and time, queued once
/// per scope and week for the digest channels, with the team's numbers;
/// the next week's comes the next week.
#[tokio::test]
async fn the_weekly_digest_goes_out_once_a_week() -> anyhow::Result<()> {
    let warehouse = Warehouse::in_memory()?;
    let cost = json!({
        "scope": "group:default/payments", "scope_kind": "group", "billing_period": "2026-11",
        "billing_currency": "USD", "billed_cost": 1500.0, "effective_cost": 1500.0,
        "previous_effective_cost": 1000.0, "change": 500.0, "change_ratio": 0.5,
        "significant": true, "complete": true, "driver": "component:default/api",
        "driver_change": 450.0,
    });
    let dora = json!({
        "scope": "group:default/payments", "scope_kind": "group", "window_days": 30,
        "period": "30d", "environment": "all", "window_start": "2026-11-07T00:00:00Z",
        "as_of": "2026-12-07T00:00:00Z", "deployments": 12, "failed_jobs": 0,
        "deploy_days": 10, "deployments_per_week": 2.8, "changes": 20,
        "lead_time_p50_seconds": 7200.0, "lead_time_anomalies": 0, "failed_deployments": 1,
        "failed_by_revert": 0, "change_failure_rate": 0.0833,
        "failed_deployment_recovery_p50_seconds": 1800.0, "incidents": 1,
        "rework_deployments": 0, "benchmark": "dora-2023", "overall_tier": "high",
    });
    land(
        &warehouse,
        &[("cost_monthly", vec![cost]), ("dora_metrics", vec![dora])],
    )
    .await?;
    let (listener, url) = listener().await?;
    let received = serve(listener, Answer::Webhook, "k");
    let mut s = setup(vec![(ChannelKind::Webhook, url, Some("k"))]).await?;
    s.config.rules.clear();
    s.config.digest.channels = vec!["webhook-0".to_owned()];
    s.config.digest.teams = vec!["group:default/payments".to_owned()];
    s.config.digest.leaders = false;
    let notifier = Notifier::new(&s.config, &s.state)?;
    // Monday 2030-12-02, 09:00 UTC is this week's slot; the Sunday before
    // is still in last week's.
    let sunday: DateTime<Utc> = "2030-12-01T12:00:00Z".parse()?;
    let monday: DateTime<Utc> = "2030-12-02T09:30:00Z".parse()?;
    assert_eq!(
        notifier.queue_digests(&warehouse, sunday).await?,
        1,
        "last week's"
    );
    assert_eq!(notifier.queue_digests(&warehouse, sunday).await?, 0);
    assert_eq!(
        notifier.queue_digests(&warehouse, monday).await?,
        1,
        "this week's"
    );
    assert_eq!(notifier.queue_digests(&warehouse, monday).await?, 0);
    let report = notifier.deliver_due(monday).await?;
    assert_eq!(report.delivered, 2, "{report:?}");
    let received = received.lock().map_err(|e| anyhow::anyhow!("{e}"))?;
    let titles: Vec<&str> = received
        .iter()
        .filter_map(|(_, body)| body["event"]["title"].as_str())
        .collect();
    assert!(
        titles.contains(&"Weekly digest for group:default/payments, week to 2030-12-02"),
        "{titles:?}"
    );
    let event = &received[0].1["event"];
    assert_eq!(event["kind"], "digest");
    let field = |name: &str| {
        event["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == name)
            .and_then(|f| f["value"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        field("DORA, last 30 days"),
        "12 production deployments (2.8 a week); lead time 2.0 h; change failure rate 8.3 %; \
         recovery 30 min\nOverall tier: high"
    );
    assert_eq!(
        field("Cost"),
        "2026-11: 1,500.00 USD, +500.00 USD on the month before (+50.0 %) — significant; \
         driver: component:default/api"
    );
    assert_eq!(field("Open anomalies"), "None.");
    Ok(())
}
