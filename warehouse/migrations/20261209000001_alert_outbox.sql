-- Alerts to deliver, and what became of them: one row per rule, channel and
-- event (`dedupe_key` is unique, so an event detected again is never
-- notified twice). Rows are written by the step that detects the events and
-- taken by the delivery loop: `pending` until due, `sending` while one
-- process holds it (`claimed_by`, until `lease_until`), then `delivered`,
-- `failed` (refused, not retried) or `dead` (every attempt failed).
CREATE TABLE alert_outbox (
    delivery_id     TEXT PRIMARY KEY,
    dedupe_key      TEXT NOT NULL UNIQUE,
    rule            TEXT NOT NULL,
    channel         TEXT NOT NULL,
    event_key       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    claimed_by      TEXT,
    lease_until     TEXT,
    last_error      TEXT,
    delivered_at    TEXT
);
CREATE INDEX alert_outbox_due ON alert_outbox (state, next_attempt_at);
CREATE INDEX alert_outbox_rule ON alert_outbox (rule, channel, delivered_at);
