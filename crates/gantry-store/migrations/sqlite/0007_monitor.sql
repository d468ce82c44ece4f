-- Monitoring aggregates, so a monitor reads counts instead of the prediction log.
--
-- A bucket is what one writer (a server process) counted of one deployment's predictions of
-- one model version and role during one span of time, binned against one reference profile;
-- its state is opaque JSON owned by gantry-monitor, rewritten whole (seq counts rewrites) in
-- the transaction that logs the predictions it counts, so the log and the counts never
-- disagree. A window is the sum of its buckets; a writer never touches another's rows.
CREATE TABLE monitor_buckets (
    deployment    TEXT NOT NULL,
    bucket_ms     INTEGER NOT NULL,
    span_ms       INTEGER NOT NULL CHECK (span_ms > 0),
    role          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    reference     TEXT NOT NULL,
    writer        TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    state_json    TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (deployment, bucket_ms, role, version, reference, writer)
);

-- Additive performance counts per bucket of the prediction's time: predictions made, labelled
-- rows per (truth, predicted) class, and regression error sums. Incremented (and, when a label
-- is replaced, decremented) in the transaction that logs the prediction or stores the label.
CREATE TABLE monitor_performance (
    deployment         TEXT NOT NULL,
    bucket_ms          INTEGER NOT NULL,
    role               TEXT NOT NULL,
    version            INTEGER NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('predictions', 'class', 'regression')),
    truth              TEXT NOT NULL,
    predicted          TEXT NOT NULL,
    n                  INTEGER NOT NULL,
    sum_squared_error  REAL NOT NULL,
    sum_absolute_error REAL NOT NULL,
    PRIMARY KEY (deployment, bucket_ms, role, version, kind, truth, predicted)
);
