-- Serving: deployments' desired state (kept by the control plane and reconciled by it), the
-- prediction log, ground-truth feedback and alert events of the monitors.
--
-- No foreign keys: revisions outlive their deployment (an audit trail), and predictions and
-- feedback are pruned by retention on their own schedule.
--
-- Names and request ids use the "C" collation so they sort bytewise, as SQLite sorts them.

CREATE TABLE deployments (
    name          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    revision      BIGINT NOT NULL CHECK (revision >= 1),
    spec_json     TEXT NOT NULL,
    project       TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Every change to a deployment, undeploy included. A deployment created again under the same
-- name continues the numbering, so (deployment, revision) names one spec forever.
CREATE TABLE deployment_revisions (
    deployment    TEXT COLLATE "C" NOT NULL,
    revision      BIGINT NOT NULL CHECK (revision >= 1),
    spec_json     TEXT NOT NULL,
    action        TEXT NOT NULL,
    principal     TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (deployment, revision)
);

-- A shadow copy of a request shares its request id, hence the role in the key.
CREATE TABLE predictions (
    request_id    TEXT COLLATE "C" NOT NULL,
    deployment    TEXT COLLATE "C" NOT NULL,
    model         TEXT NOT NULL,
    version       BIGINT NOT NULL,
    role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('primary', 'canary', 'shadow')),
    inputs_json   TEXT NOT NULL,
    outputs_json  TEXT NOT NULL,
    rows          BIGINT NOT NULL CHECK (rows >= 0),
    error         TEXT,
    latency_us    BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (request_id, role)
);
-- In the order the log is read and pruned (newest first, ties broken by key).
CREATE INDEX predictions_by_deployment ON predictions (deployment, created_at_ms, request_id, role);

-- Labels of a request's rows; a request's roles share them.
CREATE TABLE feedback (
    request_id    TEXT COLLATE "C" NOT NULL,
    row_index     BIGINT NOT NULL CHECK (row_index >= 0),
    deployment    TEXT COLLATE "C" NOT NULL,
    label_json    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (request_id, row_index)
);

CREATE TABLE alert_events (
    id            BIGSERIAL PRIMARY KEY,
    deployment    TEXT COLLATE "C" NOT NULL,
    rule          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    value         DOUBLE PRECISION,
    message       TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX alert_events_by_deployment ON alert_events (deployment, created_at_ms);
