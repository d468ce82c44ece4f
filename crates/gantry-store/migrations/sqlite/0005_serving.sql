-- Serving: deployments' desired state (kept by the control plane and reconciled by it), the
-- prediction log, ground-truth feedback and alert events of the monitors.
--
-- No foreign keys: revisions outlive their deployment (an audit trail), and predictions and
-- feedback are pruned by retention on their own schedule.

CREATE TABLE deployments (
    name          TEXT PRIMARY KEY NOT NULL,
    revision      INTEGER NOT NULL CHECK (revision >= 1),
    spec_json     TEXT NOT NULL,
    project       TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- Every change to a deployment, undeploy included. A deployment created again under the same
-- name continues the numbering, so (deployment, revision) names one spec forever.
CREATE TABLE deployment_revisions (
    deployment    TEXT NOT NULL,
    revision      INTEGER NOT NULL CHECK (revision >= 1),
    spec_json     TEXT NOT NULL,
    action        TEXT NOT NULL,
    principal     TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (deployment, revision)
);

-- A shadow copy of a request shares its request id, hence the role in the key.
CREATE TABLE predictions (
    request_id    TEXT NOT NULL,
    deployment    TEXT NOT NULL,
    model         TEXT NOT NULL,
    version       INTEGER NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('primary', 'canary', 'shadow')),
    inputs_json   TEXT NOT NULL,
    outputs_json  TEXT NOT NULL,
    rows          INTEGER NOT NULL CHECK (rows >= 0),
    error         TEXT,
    latency_us    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (request_id, role)
);
-- In the order the log is read and pruned (newest first, ties broken by key).
CREATE INDEX predictions_by_deployment ON predictions (deployment, created_at_ms, request_id, role);

-- Labels of a request's rows; a request's roles share them.
CREATE TABLE feedback (
    request_id    TEXT NOT NULL,
    row_index     INTEGER NOT NULL CHECK (row_index >= 0),
    deployment    TEXT NOT NULL,
    label_json    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (request_id, row_index)
);

CREATE TABLE alert_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment    TEXT NOT NULL,
    rule          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    value         REAL,
    message       TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX alert_events_by_deployment ON alert_events (deployment, created_at_ms);
