-- Runs of exported workflows (Argo Workflows, Kubeflow Pipelines) whose steps report to this
-- server: the orchestrator's id of the run, and its name for people. Their step runs are
-- claims of a pod holding a project's token, so the cache of Gantry's own runs never reuses
-- them; exported runs of the same project do.
CREATE TABLE exported_runs (
    run_id       TEXT PRIMARY KEY NOT NULL,
    orchestrator TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    name         TEXT NOT NULL,
    UNIQUE (orchestrator, external_id)
);
