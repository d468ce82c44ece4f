-- Admission control on a server:
-- * `project_quotas`: an admin's limits for one project (`gantry project quota`). A NULL limit
--   means no limit; `max_runs` bounds the runs in flight at once; `weight` is the project's
--   fair-share weight (>= 1) when several projects wait for the same resources.
-- * `run_queue`: the runs waiting for admission, so the queue survives a restart. `seq` is
--   the submission order (the queue is read by it), `request_json` what admission needs to
--   start the run. A row goes when the run is admitted or cancelled, and with its run (the
--   foreign key cascades), so a queued row never keeps a run from being deleted.
CREATE TABLE project_quotas (
    project        TEXT PRIMARY KEY NOT NULL,
    cpu_millis     INTEGER CHECK (cpu_millis >= 0),
    memory_bytes   INTEGER CHECK (memory_bytes >= 0),
    gpus           INTEGER CHECK (gpus >= 0),
    max_runs       INTEGER CHECK (max_runs >= 0),
    weight         INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    updated_at_ms  INTEGER NOT NULL,
    updated_by     TEXT
);

CREATE TABLE run_queue (
    run_id          TEXT PRIMARY KEY NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    project         TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    request_json    TEXT NOT NULL,
    enqueued_at_ms  INTEGER NOT NULL
);
CREATE INDEX run_queue_by_seq ON run_queue (seq);
