-- Fathom state database. Runs unchanged on SQLite and PostgreSQL, so it uses
-- only portable types: instants are RFC 3339 UTC text with a fixed width
-- (lexical order is time order), structured values are JSON text.

CREATE TABLE source_cursors (
    source       TEXT NOT NULL,
    stream       TEXT NOT NULL,
    cursor_value TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (source, stream)
);

CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    command     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,
    row_counts  TEXT NOT NULL,
    errors      TEXT NOT NULL
);
CREATE INDEX runs_started_at ON runs (started_at);

CREATE TABLE api_tokens (
    token_id     TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    teams        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);

CREATE TABLE audit_log (
    audit_id    TEXT PRIMARY KEY,
    occurred_at TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at);
