-- Deployment risk models trained (`fathom ml train-risk`): the newest is the
-- one `fathom ml risk` and the API score with. The model itself is a file
-- in the warehouse location (`path`); this is the record of what exists,
-- when it was trained, on how much, and how it did in its backtest.
CREATE TABLE risk_models (
    version      TEXT PRIMARY KEY,
    trained_at   TEXT NOT NULL,
    path         TEXT NOT NULL,
    rows_trained BIGINT NOT NULL,
    auc          DOUBLE PRECISION,
    summary      TEXT NOT NULL
);
CREATE INDEX risk_models_trained ON risk_models (trained_at);
