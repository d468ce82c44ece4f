-- Trust decisions about images: one row per image a run step or a deployment was checked
-- against the trust policy (allow, warn or deny, the rule that decided and why).
CREATE TABLE image_decisions (
    subject_kind   TEXT NOT NULL,     -- 'run' | 'deployment'
    subject_id     TEXT NOT NULL,     -- run id, deployment name
    item           TEXT NOT NULL,     -- step name, or the deployment's model slot
    reference      TEXT NOT NULL,
    digest         TEXT NOT NULL,
    outcome        TEXT NOT NULL,     -- allow | warn | deny
    rule           TEXT,
    reasons_json   TEXT NOT NULL,
    ts_ms          BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject_id, item, ts_ms)
);
CREATE INDEX image_decisions_by_digest ON image_decisions (digest);

-- Vulnerability scans, one per image digest and advisory database version.
CREATE TABLE image_scans (
    digest         TEXT NOT NULL,
    db_version     TEXT NOT NULL,
    scanned_at_ms  BIGINT NOT NULL,
    worst          TEXT NOT NULL,     -- worst rated severity found (none when clean)
    counts_json    TEXT NOT NULL,     -- findings per severity
    report_json    TEXT NOT NULL,
    PRIMARY KEY (digest, db_version)
);
