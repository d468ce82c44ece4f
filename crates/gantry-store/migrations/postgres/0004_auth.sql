-- API tokens and the audit log of `gantry server --auth`.
--
-- A token's secret is never stored: only its sha256 (hex). The token id is part of the
-- secret the client presents, so verification reads one row by id and compares hashes.

CREATE TABLE api_tokens (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    secret_sha256    TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    project          TEXT,
    created_at_ms    BIGINT NOT NULL,
    last_used_at_ms  BIGINT,
    revoked_at_ms    BIGINT
);

-- Every write made through the server, in order. Never updated or deleted by gantry.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    ts_ms       BIGINT NOT NULL,
    principal   TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE INDEX audit_log_by_ts ON audit_log (ts_ms);
