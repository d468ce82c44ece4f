-- Times are i64 milliseconds since the Unix epoch; ids and JSON documents are TEXT.
-- Booleans are BIGINT 0/1 like on SQLite, where the sqlx Any driver has no boolean mapping,
-- so one row decoder serves both backends.

CREATE TABLE runs (
    id             TEXT PRIMARY KEY NOT NULL,
    pipeline       TEXT NOT NULL,
    status         TEXT NOT NULL,
    spec_file      TEXT NOT NULL,
    spec_yaml      TEXT NOT NULL,
    params_json    TEXT NOT NULL,
    images_json    TEXT NOT NULL,
    no_cache       BIGINT NOT NULL CHECK (no_cache IN (0, 1)),
    rerun_of       TEXT,
    created_at_ms  BIGINT NOT NULL,
    started_at_ms  BIGINT,
    finished_at_ms BIGINT,
    owner_pid      BIGINT,
    owner_host     TEXT,
    error          TEXT
);
CREATE INDEX runs_by_created ON runs (created_at_ms, id);
CREATE INDEX runs_by_pipeline ON runs (pipeline, created_at_ms);
CREATE INDEX runs_by_status ON runs (status);

CREATE TABLE step_runs (
    id                     TEXT PRIMARY KEY NOT NULL,
    run_id                 TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step                   TEXT NOT NULL,
    seq                    BIGINT NOT NULL,
    attempt                BIGINT NOT NULL,
    status                 TEXT NOT NULL,
    exit_code              BIGINT,
    reason                 TEXT,
    cache_key              TEXT,
    cached_from            TEXT,
    image_digest           TEXT,
    started_at_ms          BIGINT,
    finished_at_ms         BIGINT,
    requested_cpu_millis   BIGINT NOT NULL,
    requested_memory_bytes BIGINT NOT NULL,
    requested_gpu          BIGINT NOT NULL,
    peak_memory_bytes      BIGINT,
    cpu_micros             BIGINT,
    wall_ms                BIGINT,
    inputs_json            TEXT NOT NULL,
    outputs_json           TEXT NOT NULL
);
CREATE INDEX step_runs_by_run ON step_runs (run_id, seq, attempt);
-- Only original successful executions can serve a cache hit.
CREATE INDEX step_runs_by_cache_key ON step_runs (cache_key, finished_at_ms)
    WHERE status = 'succeeded' AND cached_from IS NULL;

CREATE TABLE artifacts (
    digest        TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- No foreign key to artifacts: lineage may be recorded before (or without) the artifact row.
CREATE TABLE lineage (
    step_run_id TEXT NOT NULL REFERENCES step_runs (id) ON DELETE CASCADE,
    direction   TEXT NOT NULL CHECK (direction IN ('input', 'output')),
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    PRIMARY KEY (step_run_id, direction, name)
);
CREATE INDEX lineage_by_digest ON lineage (digest);

-- Identity ids can commit out of order across concurrent transactions; append_logs serializes
-- writers per run (row lock on the run) so a follower paging with after_id never misses rows.
CREATE TABLE logs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_run_id TEXT NOT NULL REFERENCES step_runs (id) ON DELETE CASCADE,
    stream      TEXT NOT NULL,
    ts_ms       BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX logs_by_run ON logs (run_id, id);
CREATE INDEX logs_by_step_run ON logs (step_run_id, id);

CREATE TABLE metrics (
    step_run_id    TEXT NOT NULL REFERENCES step_runs (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (step_run_id, name)
);
