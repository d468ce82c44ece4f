-- MLflow 3's logged models: a model a run (or nothing) produced, with its own id
-- (`m-<32 hex>`), artifact folder, tags and immutable params, the metrics logged for it, and
-- the runs that list it as an output.
--
-- Deleting one is soft, as for runs: it stays, marked 'deleted'. Statuses are MLflow's entity
-- names (PENDING, READY, FAILED); the API writes them as LOGGED_MODEL_* enum names.

CREATE TABLE mlflow_logged_models (
    model_id          TEXT PRIMARY KEY NOT NULL,
    experiment_id     INTEGER NOT NULL REFERENCES mlflow_experiments (experiment_id),
    name              TEXT NOT NULL,
    source_run_id     TEXT,
    model_type        TEXT,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'READY', 'FAILED')),
    status_message    TEXT,
    artifact_location TEXT NOT NULL,
    lifecycle_stage   TEXT NOT NULL CHECK (lifecycle_stage IN ('active', 'deleted')),
    creation_time     INTEGER NOT NULL,
    last_update_time  INTEGER NOT NULL
);
CREATE INDEX mlflow_logged_models_by_experiment
    ON mlflow_logged_models (experiment_id, lifecycle_stage);

CREATE TABLE mlflow_logged_model_tags (
    model_id TEXT NOT NULL REFERENCES mlflow_logged_models (model_id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE mlflow_logged_model_params (
    model_id TEXT NOT NULL REFERENCES mlflow_logged_models (model_id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

-- Metric points logged with a model_id (MLflow 3's log_metric / log_batch), every point; the
-- run's own copy stays in mlflow_metrics. The same point logged twice is kept once.
CREATE TABLE mlflow_logged_model_metrics (
    model_id       TEXT NOT NULL REFERENCES mlflow_logged_models (model_id) ON DELETE CASCADE,
    run_uuid       TEXT NOT NULL,
    key            TEXT NOT NULL,
    step           INTEGER NOT NULL,
    timestamp_ms   INTEGER NOT NULL,
    value          REAL NOT NULL,
    is_nan         INTEGER NOT NULL CHECK (is_nan IN (0, 1)),
    dataset_name   TEXT NOT NULL DEFAULT '',
    dataset_digest TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX mlflow_logged_model_metrics_points ON mlflow_logged_model_metrics
    (model_id, run_uuid, key, step, timestamp_ms, value, is_nan, dataset_name, dataset_digest);

-- A run's outputs (`runs/outputs`): the models it produced, at a step.
CREATE TABLE mlflow_run_outputs (
    run_uuid TEXT NOT NULL REFERENCES mlflow_runs (run_uuid) ON DELETE CASCADE,
    model_id TEXT NOT NULL REFERENCES mlflow_logged_models (model_id) ON DELETE CASCADE,
    step     INTEGER NOT NULL,
    PRIMARY KEY (run_uuid, model_id, step)
);
CREATE INDEX mlflow_run_outputs_by_model ON mlflow_run_outputs (model_id);
