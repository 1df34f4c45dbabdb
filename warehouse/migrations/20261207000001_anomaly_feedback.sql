-- What people said about anomalies: one row per verdict given, kept as a
-- history (a changed mind is a new row), so precision from feedback can be
-- reported over time. Anomaly ids are stable across re-scoring.
CREATE TABLE anomaly_feedback (
    feedback_id TEXT PRIMARY KEY,
    anomaly_id  TEXT NOT NULL,
    given_at    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    note        TEXT
);
CREATE INDEX anomaly_feedback_anomaly ON anomaly_feedback (anomaly_id, given_at);
