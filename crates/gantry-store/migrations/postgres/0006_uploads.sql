-- Data a client uploaded for its runs, per project: a run of project P may name an uploaded
-- artifact by digest only if someone of P uploaded (proved they hold) that content.
CREATE TABLE artifact_grants (
    digest         TEXT NOT NULL,
    project        TEXT NOT NULL,
    granted_by     TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (digest, project)
);
