-- Metric points in one B-tree ordered by their key, instead of a rowid table plus a unique
-- index holding every column again: each logged point is one insert, not two, and a metric's
-- history is read from the same tree in (step, timestamp) order. The points are copied as
-- they are.
CREATE TABLE mlflow_metrics_keyed (
    run_uuid     TEXT NOT NULL REFERENCES mlflow_runs (run_uuid) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    step         INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    value        REAL NOT NULL,
    is_nan       INTEGER NOT NULL CHECK (is_nan IN (0, 1)),
    PRIMARY KEY (run_uuid, key, step, timestamp_ms, value, is_nan)
) WITHOUT ROWID;
INSERT INTO mlflow_metrics_keyed (run_uuid, key, step, timestamp_ms, value, is_nan)
    SELECT run_uuid, key, step, timestamp_ms, value, is_nan FROM mlflow_metrics
    ORDER BY run_uuid, key, step, timestamp_ms, value, is_nan;
DROP TABLE mlflow_metrics;
ALTER TABLE mlflow_metrics_keyed RENAME TO mlflow_metrics;
