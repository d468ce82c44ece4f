-- The prediction log at production rates.
--
-- A request that arrives as tensors is logged column by column in binary (`inputs_bin`, see
-- gantry_store::columns; `inputs_json` is then 'null') instead of one JSON object per row.
--
-- The server's log writer commits each batch of predictions before their answers leave, but
-- counts them into its monitor buckets afterwards, in memory, and checkpoints the buckets
-- every second: each prediction carries its writer and its number in that writer's order
-- (`log_writer`, `log_seq`), and `monitor_writers` says how far each writer has counted.
-- The checkpoint moves `folded_seq` with a compare-and-set in the transaction that writes
-- the buckets, so what a killed writer had not counted is counted exactly once by whoever
-- takes its records over (the next server to start, or a live one once its heartbeat is old).
ALTER TABLE predictions ADD COLUMN inputs_bin BYTEA;
ALTER TABLE predictions ADD COLUMN log_writer TEXT;
ALTER TABLE predictions ADD COLUMN log_seq BIGINT;
CREATE INDEX predictions_by_writer ON predictions (log_writer, log_seq)
    WHERE log_writer IS NOT NULL;

CREATE TABLE monitor_writers (
    writer       TEXT PRIMARY KEY,
    folded_seq   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
