-- MLflow-compatible experiment tracking: experiments, runs, params, tags and metric history,
-- plus what MLflow's registry has that the gantry registry (0002) lacks.
--
-- Metric values are REAL with an is_nan flag: NaN is kept as 0
-- with is_nan = 1 (as MLflow does, and as the SQLite schema must). Infinities are stored as they are.

CREATE TABLE mlflow_experiments (
    experiment_id     BIGSERIAL PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL,
    lifecycle_stage   TEXT NOT NULL CHECK (lifecycle_stage IN ('active', 'deleted')),
    creation_time     BIGINT NOT NULL,
    last_update_time  BIGINT NOT NULL
);
-- MLflow clients expect the "Default" experiment 0 to exist.
INSERT INTO mlflow_experiments VALUES
    (0, 'Default', 'mlflow-artifacts:/0', 'active',
     (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);

CREATE TABLE mlflow_experiment_tags (
    experiment_id BIGINT NOT NULL REFERENCES mlflow_experiments (experiment_id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);

CREATE TABLE mlflow_runs (
    run_uuid        TEXT PRIMARY KEY NOT NULL,
    experiment_id   BIGINT NOT NULL REFERENCES mlflow_experiments (experiment_id),
    run_name        TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    start_time      BIGINT,
    end_time        BIGINT,
    lifecycle_stage TEXT NOT NULL CHECK (lifecycle_stage IN ('active', 'deleted')),
    artifact_uri    TEXT NOT NULL,
    deleted_time    BIGINT
);
CREATE INDEX mlflow_runs_by_experiment ON mlflow_runs (experiment_id, lifecycle_stage);

CREATE TABLE mlflow_params (
    run_uuid TEXT NOT NULL REFERENCES mlflow_runs (run_uuid) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);

-- Searches select runs by a param's or tag's value. Not indexed on the value: values run
-- to thousands of characters, past PostgreSQL's index entry limit.
CREATE INDEX mlflow_params_by_key ON mlflow_params (key);

CREATE TABLE mlflow_tags (
    run_uuid TEXT NOT NULL REFERENCES mlflow_runs (run_uuid) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);

CREATE INDEX mlflow_tags_by_key ON mlflow_tags (key);

-- Every logged point. Logging the very same point twice (a retried request) keeps one row.
CREATE TABLE mlflow_metrics (
    run_uuid     TEXT NOT NULL REFERENCES mlflow_runs (run_uuid) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    step         BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    is_nan       BIGINT NOT NULL CHECK (is_nan IN (0, 1))
);
CREATE UNIQUE INDEX mlflow_metrics_points
    ON mlflow_metrics (run_uuid, key, step, timestamp_ms, value, is_nan);

-- The point MLflow reports as a run's metric: the largest step, then timestamp, then value.
CREATE TABLE mlflow_latest_metrics (
    run_uuid     TEXT NOT NULL REFERENCES mlflow_runs (run_uuid) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    step         BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    is_nan       BIGINT NOT NULL CHECK (is_nan IN (0, 1)),
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX mlflow_latest_metrics_by_value ON mlflow_latest_metrics (key, value);

CREATE TABLE mlflow_registered_model_tags (
    model TEXT COLLATE "C" NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model, key)
);

-- MLflow's fields of a model version; versions registered by gantry pipelines have no row here
-- and read as READY, registered by nobody.
CREATE TABLE mlflow_model_version_meta (
    model          TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    user_id        TEXT,
    status         TEXT NOT NULL,
    status_message TEXT,
    run_link       TEXT,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (model, version),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version) ON DELETE CASCADE
);

CREATE TABLE mlflow_model_version_tags (
    model   TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (model, version, key),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version) ON DELETE CASCADE
);

-- Experiment 0 was inserted explicitly; new experiments continue from 1.
SELECT setval(pg_get_serial_sequence('mlflow_experiments', 'experiment_id'), 1, false);
