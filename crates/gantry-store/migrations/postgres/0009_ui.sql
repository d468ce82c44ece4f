-- Browser sessions of the web UI (`gantry server --auth`): a login with a token starts one.
--
-- The cookie holds a random secret; only its sha256 is stored. A session lives no longer
-- than its token: revoking the token ends every session made with it (the lookup joins
-- api_tokens and requires it unrevoked).
CREATE TABLE ui_sessions (
    id_sha256      TEXT PRIMARY KEY NOT NULL,
    token_id       TEXT NOT NULL REFERENCES api_tokens (id),
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL
);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at_ms);

-- The run list filters on metrics (`accuracy > 0.9`) without a query per run.
CREATE INDEX metrics_by_name ON metrics (name, value);
