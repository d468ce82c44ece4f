-- A step's log is kept as chunks of lines, one row per flush of its output (at most every
-- 200 ms, ≤ 1 MiB), instead of a row per line: a step printing a million lines costs tens
-- of rows. `streams` says which stream each line came from as runs ("o120e3g1": 120 stdout
-- lines, 3 stderr, 1 from gantry); `first_line` numbers the step run's lines from 0,
-- counting lines dropped by the `logs.max` cap. A line's position is `id << 20 | index`.
CREATE TABLE log_chunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_run_id TEXT NOT NULL REFERENCES step_runs (id) ON DELETE CASCADE,
    first_line  INTEGER NOT NULL,
    line_count  INTEGER NOT NULL,
    streams     TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    ts_last_ms  INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    data        TEXT NOT NULL
);
-- Every old row becomes a chunk of its own (a message of several lines stays together).
INSERT INTO log_chunks
    (id, run_id, step_run_id, first_line, line_count, streams, ts_ms, ts_last_ms, bytes, data)
SELECT id, run_id, step_run_id,
       SUM(n) OVER (PARTITION BY step_run_id ORDER BY id) - n,
       n,
       CASE stream WHEN 'stdout' THEN 'o' WHEN 'stderr' THEN 'e' ELSE 'g' END || n,
       ts_ms, ts_ms, length(CAST(d AS BLOB)) + 1, d
FROM (
    SELECT id, run_id, step_run_id, stream, ts_ms, d,
           length(d) - length(replace(d, char(10), '')) + 1 AS n
    FROM (SELECT id, run_id, step_run_id, stream, ts_ms, rtrim(data, char(10)) AS d FROM logs)
);
DROP TABLE logs;
CREATE INDEX log_chunks_by_run ON log_chunks (run_id, id);
CREATE INDEX log_chunks_by_step_run ON log_chunks (step_run_id, id);
