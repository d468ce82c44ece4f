-- The model registry: a model is a name; each version points at an artifact and (when it came
-- from a run) the run and step run that made it. Aliases (champion, staging, ...) replace fixed
-- stages: an alias names one version of its model at a time.
--
-- No foreign keys to runs, step runs or artifacts: versions may be registered from outside a
-- run (the MLflow API), and must outlive the runs that made them.
--
-- Names and aliases use the "C" collation so they sort bytewise, as SQLite sorts them.

CREATE TABLE models (
    name          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    description   TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE model_versions (
    model             TEXT COLLATE "C" NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    version           BIGINT NOT NULL CHECK (version >= 1),
    artifact_digest   TEXT NOT NULL,
    artifact_kind     TEXT NOT NULL,
    run_id            TEXT,
    step_run_id       TEXT,
    step              TEXT,
    metrics_json      TEXT NOT NULL,
    data_digests_json TEXT NOT NULL,
    params_json       TEXT NOT NULL,
    flavor            TEXT NOT NULL,
    description       TEXT,
    tags_json         TEXT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (model, version)
);
-- A step run registers at most one version per model, so a retried registration finds it.
CREATE UNIQUE INDEX model_versions_by_step_run ON model_versions (model, step_run_id)
    WHERE step_run_id IS NOT NULL;
CREATE INDEX model_versions_by_run ON model_versions (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX model_versions_by_artifact ON model_versions (artifact_digest);

CREATE TABLE model_aliases (
    model         TEXT COLLATE "C" NOT NULL,
    alias         TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version) ON DELETE CASCADE
);
CREATE INDEX model_aliases_by_version ON model_aliases (model, version);
