-- Resource accounting (usage and cost reports, right-sizing):
-- * who submitted a run (a token's name on the server, the Unix user for `gantry run`);
-- * what an attempt got beyond CPU and memory: the GPU model it ran on, its mean GPU
--   utilization, peak GPU memory and the time its GPUs sat idle (< 10% utilized), and a note
--   saying where its resources came from when Gantry chose them (`memory: auto`, growth after
--   an OOM kill), and its history key (pipeline, step, image as written, command, `with:`);
-- * the lifetime and requests of every model replica container, so deployments count their
--   resources × time. `last_seen_ms` moves while the replica runs, so a replica of a server
--   that died counts until the last time it was seen.
ALTER TABLE runs ADD COLUMN submitted_by TEXT;
ALTER TABLE step_runs ADD COLUMN gpu_model TEXT;
ALTER TABLE step_runs ADD COLUMN gpu_util_percent REAL;
ALTER TABLE step_runs ADD COLUMN gpu_memory_peak_bytes INTEGER;
ALTER TABLE step_runs ADD COLUMN gpu_idle_ms INTEGER;
ALTER TABLE step_runs ADD COLUMN resources_note TEXT;
ALTER TABLE step_runs ADD COLUMN usage_key TEXT;
CREATE INDEX step_runs_by_finished ON step_runs (finished_at_ms);
-- Right-sizing reads the history of one step of one pipeline.
CREATE INDEX step_runs_by_usage_key ON step_runs (usage_key, finished_at_ms);

CREATE TABLE replica_usage (
    id                     TEXT PRIMARY KEY NOT NULL,
    deployment             TEXT NOT NULL,
    project                TEXT,
    model                  TEXT NOT NULL,
    version                INTEGER NOT NULL,
    requested_cpu_millis   INTEGER NOT NULL,
    requested_memory_bytes INTEGER NOT NULL,
    requested_gpu          INTEGER NOT NULL,
    gpu_model              TEXT,
    started_at_ms          INTEGER NOT NULL,
    last_seen_ms           INTEGER NOT NULL,
    stopped_at_ms          INTEGER,
    peak_memory_bytes      INTEGER,
    cpu_micros             INTEGER
);
CREATE INDEX replica_usage_by_time ON replica_usage (last_seen_ms);
