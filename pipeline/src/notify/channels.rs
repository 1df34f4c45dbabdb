//! Where alerts go: Slack incoming webhooks (Block Kit), Feishu custom bots
//! (interactive cards, signed with the bot's secret), and n8n or any
//! webhook (Fathom's JSON, signed with HMAC-SHA256 so the receiver can
//! verify it). Each channel renders an event in its platform's format and
//! reads the answer by its platform's conventions: Slack answers `ok` (an
//! error is a 4xx with its reason as text); Feishu answers HTTP 200 with
//! `code`/`msg`, where a non-zero code is a failure.
//!
//! URLs of Slack and Feishu carry their credential, so they are secrets:
//! read from an environment variable or a file, never from the
//! configuration itself, and never logged.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use fathom_ingest::http::{Fetched, HttpClient, HttpError, HttpPolicy, Payload, ResetStyle};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::NotifyError;
use super::events::{Event, Severity};

/// The platform a channel speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Slack incoming webhook.
    Slack,
    /// A Feishu (Lark) custom bot webhook.
    Feishu,
    /// An n8n Webhook node (Fathom's signed JSON).
    N8n,
    /// Any HTTP endpoint taking Fathom's signed JSON.
    Webhook,
}

impl ChannelKind {
    /// Its name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Feishu => "feishu",
            Self::N8n => "n8n",
            Self::Webhook => "webhook",
        }
    }

    /// Whether the URL itself is a credential (anyone holding it can post).
    fn url_is_secret(self) -> bool {
        matches!(self, Self::Slack | Self::Feishu)
    }
}

/// `[[alerts.channels]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Its name in rules and `fathom alerts test --channel`.
    pub name: String,
    /// `slack`, `feishu`, `n8n` or `webhook`.
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    /// The URL, for n8n and webhooks only (Slack and Feishu URLs are
    /// credentials: use `url_env` or `url_file`).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL.
    #[serde(default)]
    pub url_file: Option<String>,
    /// Environment variable holding the signing secret (Feishu: the bot's
    /// signature secret; n8n and webhooks: the HMAC key). Required for n8n
    /// and webhooks, optional for Feishu (as the bot is set up).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the signing secret.
    #[serde(default)]
    pub secret_file: Option<String>,
}

/// A channel ready to send: its URL and secret read, its HTTP client built.
#[derive(Debug)]
pub struct Channel {
    /// Its name.
    pub name: String,
    /// Its platform.
    pub kind: ChannelKind,
    url: String,
    secret: Option<String>,
    client: HttpClient,
}

/// One message to send: an event, or a test.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The outbox's id for it (receivers' idempotency key).
    pub delivery_id: &'a str,
    /// The rule that sent it (`test` for a test).
    pub rule: &'a str,
    /// The event.
    pub event: &'a Event,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The platform accepted the message.
    Delivered,
    /// It may work later (the platform was down, busy or rate limiting):
    /// try again, after `after` when the platform said.
    Retry {
        /// What happened.
        error: String,
        /// The platform's own wait, if it gave one.
        after: Option<Duration>,
    },
    /// The platform refused it; sending it again cannot help.
    Refused(String),
}

fn read_secret(
    channel: &str,
    what: &str,
    env: Option<&String>,
    file: Option<&String>,
) -> Result<Option<String>, NotifyError> {
    let config = |message: String| NotifyError::Config(format!("channel `{channel}`: {message}"));
    if let Some(var) = env {
        return std::env::var(var)
            .map(|v| Some(v.trim().to_owned()))
            .map_err(|_| {
                config(format!(
                    "environment variable `{var}` ({what}_env) is not set"
                ))
            });
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|v| Some(v.trim().to_owned()))
            .map_err(|e| config(format!("cannot read {what}_file `{path}`: {e}")));
    }
    Ok(None)
}

impl Channel {
    /// Reads the channel's URL and secret and builds its client.
    pub fn open(config: &ChannelConfig, policy: &HttpPolicy) -> Result<Self, NotifyError> {
        let name = &config.name;
        let err = |message: String| NotifyError::Config(format!("channel `{name}`: {message}"));
        if config.kind.url_is_secret() && config.url.is_some() {
            return Err(err(format!(
                "a {} URL is a credential: set `url_env` or `url_file`, not `url`",
                config.kind.as_str()
            )));
        }
        let url = match &config.url {
            Some(url) => url.clone(),
            None => read_secret(
                name,
                "url",
                config.url_env.as_ref(),
                config.url_file.as_ref(),
            )?
            .ok_or_else(|| err("no URL: set `url_env` or `url_file`".to_owned()))?,
        };
        url::Url::parse(&url).map_err(|_| err("the URL is not a URL".to_owned()))?;
        let secret = read_secret(
            name,
            "secret",
            config.secret_env.as_ref(),
            config.secret_file.as_ref(),
        )?;
        if matches!(config.kind, ChannelKind::N8n | ChannelKind::Webhook) && secret.is_none() {
            return Err(err(
                "a webhook needs a signing secret, so its receiver can verify what it gets: set `secret_env` or `secret_file`"
                    .to_owned(),
            ));
        }
        let client = HttpClient::new(
            &format!("alerts channel {name}"),
            policy.clone(),
            &[],
            ResetStyle::SecondsFromNow,
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            name: name.clone(),
            kind: config.kind,
            url,
            secret,
            client,
        })
    }

    /// The request for `message`, signed, at `now` (Feishu's signature
    /// holds a timestamp that must be within an hour of the server's
    /// clock).
    pub fn payload(&self, message: &Message<'_>, now: DateTime<Utc>) -> Payload {
        let body = match self.kind {
            ChannelKind::Slack => slack_body(message.event),
            ChannelKind::Feishu => {
                let mut body = feishu_body(message.event);
                if let Some(secret) = &self.secret {
                    let timestamp = now.timestamp().to_string();
                    body["timestamp"] = json!(timestamp);
                    body["sign"] = json!(feishu_sign(&timestamp, secret));
                }
                body
            }
            ChannelKind::N8n | ChannelKind::Webhook => json!({
                "delivery_id": message.delivery_id,
                "rule": message.rule,
                "sent_at": now.to_rfc3339(),
                "event": message.event,
            }),
        };
        let bytes = bytes::Bytes::from(body.to_string());
        let mut headers = vec![
            (
                "X-Fathom-Delivery".to_owned(),
                message.delivery_id.to_owned(),
            ),
            (
                "X-Fathom-Event".to_owned(),
                message.event.kind.as_str().to_owned(),
            ),
        ];
        if matches!(self.kind, ChannelKind::N8n | ChannelKind::Webhook)
            && let Some(secret) = &self.secret
        {
            headers.push((
                "X-Fathom-Signature".to_owned(),
                webhook_signature(secret, &bytes),
            ));
        }
        Payload {
            content_type: "application/json",
            bytes,
            headers,
        }
    }

    /// Sends `message` once (the client retries a failed connection or a
    /// 5xx a few times within the attempt) and reads the answer.
    pub async fn send(&self, message: &Message<'_>, now: DateTime<Utc>) -> Outcome {
        let payload = self.payload(message, now);
        match self.client.post(&self.url, &payload).await {
            Ok(fetched) => self.judge(&fetched),
            Err(error) => outcome_of_error(&error),
        }
    }

    /// What an HTTP 2xx answer means on this platform.
    fn judge(&self, fetched: &Fetched) -> Outcome {
        match self.kind {
            ChannelKind::Slack | ChannelKind::N8n | ChannelKind::Webhook => Outcome::Delivered,
            ChannelKind::Feishu => feishu_outcome(&fetched.body),
        }
    }
}

/// A failed request: refusals (4xx but 429, bad configuration) are final,
/// the rest may pass later.
fn outcome_of_error(error: &HttpError) -> Outcome {
    match error {
        HttpError::Status {
            status, message, ..
        } => Outcome::Refused(format!("HTTP {status}: {message}")),
        HttpError::Invalid { message, .. } => Outcome::Refused(message.clone()),
        HttpError::RateLimited { wait_seconds, .. } => Outcome::Retry {
            error: error.to_string(),
            after: Some(Duration::from_secs_f64(wait_seconds.max(0.0))),
        },
        HttpError::Exhausted { .. } | HttpError::CircuitOpen { .. } => Outcome::Retry {
            error: error.to_string(),
            after: None,
        },
    }
}

/// Feishu's custom bots answer HTTP 200 with `{"code": 0, "msg":
/// "success"}` (older bots: `StatusCode`/`StatusMessage`); any other code
/// is a failure. Code 11232 is its rate limit (100 messages a minute, 5 a
/// second per bot): worth trying again; others (a bad signature 19021, a
/// keyword or IP rule 19024/19022, a malformed card) are not.
fn feishu_outcome(body: &[u8]) -> Outcome {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return Outcome::Refused(format!(
            "Feishu answered something that is not JSON: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    };
    let code = answer
        .get("code")
        .or_else(|| answer.get("StatusCode"))
        .and_then(Value::as_i64);
    let message = answer
        .get("msg")
        .or_else(|| answer.get("StatusMessage"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match code {
        Some(0) => Outcome::Delivered,
        Some(11232) => Outcome::Retry {
            error: format!("Feishu code 11232 (rate limited): {message}"),
            after: Some(Duration::from_secs(60)),
        },
        Some(code) => Outcome::Refused(format!("Feishu code {code}: {message}")),
        None => Outcome::Refused(format!("Feishu answered without a code: {answer}")),
    }
}

/// Feishu's signature: HMAC-SHA256 keyed with `timestamp + "\n" + secret`
/// over an empty message, in base64 (as Feishu's documentation defines it).
pub fn feishu_sign(timestamp: &str, secret: &str) -> String {
    let key = format!("{timestamp}\n{secret}");
    // HMAC takes a key of any length: this cannot fail.
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).map(|m| m.finalize().into_bytes());
    match mac {
        Ok(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// `X-Fathom-Signature`: `sha256=` and the hex HMAC-SHA256 of the body
/// with the channel's secret.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// Whether `signature` is the channel's signature of `body` (what a
/// receiver checks; compared in constant time).
pub fn verify_webhook_signature(secret: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_part) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_part) else {
        return false;
    };
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        }
        Err(_) => false,
    }
}

/// Slack's limits: a header of 150 characters, section text of 3,000,
/// at most 10 fields of 2,000 each.
fn clip(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn severity_mark(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
    }
}

/// A Block Kit message: header, text with the fields, a button to the
/// dashboard, and a context line; `text` is the notification's fallback.
pub fn slack_body(event: &Event) -> Value {
    let title = format!("{} {}", severity_mark(event.severity), event.title);
    let fields: Vec<Value> = event
        .fields
        .iter()
        .take(10)
        .map(|f| json!({"type": "mrkdwn", "text": clip(&format!("*{}*\n{}", f.name, f.value), 2000)}))
        .collect();
    let mut section =
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&event.text, 3000)}});
    if !fields.is_empty() {
        section["fields"] = Value::Array(fields);
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&title, 150), "emoji": true}}),
        section,
    ];
    if let Some(link) = &event.link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open in Fathom"},
            "url": clip(link, 3000),
        }]}));
    }
    blocks.push(json!({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": format!("{} · {} · {}", event.severity.as_str(), event.kind.as_str(), event.scope),
    }]}));
    json!({"text": clip(&title, 3000), "blocks": blocks})
}

/// A Feishu interactive card: coloured header by severity, the text, the
/// fields two to a row, and a button to the dashboard.
pub fn feishu_body(event: &Event) -> Value {
    let template = match event.severity {
        Severity::Critical => "red",
        Severity::Warning => "orange",
        Severity::Info => "blue",
    };
    let mut elements =
        vec![json!({"tag": "div", "text": {"tag": "lark_md", "content": event.text}})];
    if !event.fields.is_empty() {
        let fields: Vec<Value> = event
            .fields
            .iter()
            .map(|f| json!({"is_short": true, "text": {"tag": "lark_md", "content": format!("**{}**\n{}", f.name, f.value)}}))
            .collect();
        elements.push(json!({"tag": "div", "fields": fields}));
    }
    if let Some(link) = &event.link {
        elements.push(json!({"tag": "action", "actions": [{
            "tag": "button",
            "text": {"tag": "plain_text", "content": "Open in Fathom"},
            "type": "primary",
            "url": link,
        }]}));
    }
    elements.push(json!({"tag": "note", "elements": [{
        "tag": "plain_text",
        "content": format!("{} · {} · {}", event.severity.as_str(), event.kind.as_str(), event.scope),
    }]}));
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {"template": template, "title": {"tag": "plain_text", "content": event.title}},
            "elements": elements,
        },
    })
}
