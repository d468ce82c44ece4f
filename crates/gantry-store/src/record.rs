use std::collections::BTreeMap;

use serde::Serialize;

use crate::status::{RunStatus, StepStatus};

/// One execution of a pipeline, with everything `gantry rerun` needs to reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub spec_file: String,
    pub spec_yaml: String,
    pub params_json: String,
    /// JSON object: step name -> image digest.
    pub images_json: String,
    pub no_cache: bool,
    pub rerun_of: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub owner_pid: Option<i64>,
    /// Hostname + boot id, so a reader knows whether `owner_pid` refers to a process of this boot.
    pub owner_host: Option<String>,
    pub error: Option<String>,
    /// Who asked for the run: a token's name on the server, the Unix user for `gantry run`.
    pub submitted_by: Option<String>,
}

/// One attempt of one step within a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRunRecord {
    pub id: String,
    pub run_id: String,
    pub step: String,
    /// Position of the step in the run's plan.
    pub seq: i64,
    pub attempt: i64,
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub cache_key: Option<String>,
    /// For a cache hit: the step run whose outputs were reused.
    pub cached_from: Option<String>,
    pub image_digest: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub requested_cpu_millis: i64,
    pub requested_memory_bytes: i64,
    pub requested_gpu: i64,
    pub peak_memory_bytes: Option<i64>,
    pub cpu_micros: Option<i64>,
    pub wall_ms: Option<i64>,
    /// JSON object: input name -> artifact digest.
    pub inputs_json: String,
    /// JSON object: output name -> artifact digest.
    pub outputs_json: String,
    /// The GPU model the attempt ran on (NVML's name), when it had GPUs.
    pub gpu_model: Option<String>,
    /// Mean utilization of its GPUs over the attempt, 0–100.
    pub gpu_util_percent: Option<f64>,
    /// Peak GPU memory in use on its devices.
    pub gpu_memory_peak_bytes: Option<i64>,
    /// How long its GPUs sat allocated but idle (< 10% utilized).
    pub gpu_idle_ms: Option<i64>,
    /// Where the requested resources came from when Gantry chose them (`memory: auto`, more
    /// memory after an OOM kill).
    pub resources_note: Option<String>,
    /// The step's history key (`gantry_alloc::usage_key`): same pipeline step, image as
    /// written, command and `with:`.
    pub usage_key: Option<String>,
    /// The GPUs the attempt was placed on: NVML indexes, comma-separated.
    pub gpu_devices: Option<String>,
}

/// Which runs `list_runs` returns. `limit <= 0` means no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub pipeline: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineageRow {
    pub step_run_id: String,
    pub step: String,
    pub name: String,
    pub digest: String,
    /// "input" or "output".
    pub direction: String,
    /// Absent when the artifact itself was never recorded.
    pub kind: Option<String>,
    pub size: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactRow {
    pub digest: String,
    pub kind: String,
    pub size: i64,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricRow {
    pub step: String,
    pub key: String,
    pub value: f64,
}

/// A registered model: a name whose versions are numbered 1, 2, … in registration order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRecord {
    pub name: String,
    pub description: Option<String>,
    pub created_at_ms: i64,
    /// Last registration or alias change.
    pub updated_at_ms: i64,
    /// None only for a model without versions, which registration never leaves behind.
    pub latest_version: Option<i64>,
    /// Alias -> version.
    pub aliases: BTreeMap<String, i64>,
}

/// One version of a registered model: an artifact plus where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelVersionRecord {
    pub model: String,
    /// 1, 2, … per model, without gaps.
    pub version: i64,
    pub artifact_digest: String,
    pub artifact_kind: String,
    pub run_id: Option<String>,
    pub step_run_id: Option<String>,
    pub step: Option<String>,
    /// JSON object of numbers, e.g. `{"accuracy":0.97}`.
    pub metrics_json: String,
    /// JSON array of the digests of the data the model was trained on.
    pub data_digests_json: String,
    /// JSON object: hyperparameters (the step's `with`).
    pub params_json: String,
    /// How to load the artifact: "builtin", "onnx", "custom", …
    pub flavor: String,
    pub description: Option<String>,
    /// JSON object of string tags.
    pub tags_json: String,
    pub created_at_ms: i64,
    /// Aliases naming this version, sorted.
    pub aliases: Vec<String>,
}

/// What `Store::register_model_version` needs; the version number is assigned by the store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewModelVersion {
    pub model: String,
    pub artifact_digest: String,
    pub artifact_kind: String,
    pub run_id: Option<String>,
    /// Registering the same step run into the same model again returns the first version.
    pub step_run_id: Option<String>,
    pub step: Option<String>,
    /// JSON object of numbers.
    pub metrics_json: String,
    /// JSON array of digest strings.
    pub data_digests_json: String,
    /// JSON object.
    pub params_json: String,
    pub flavor: String,
    pub description: Option<String>,
    /// Set on the new version, moved from whichever version had it.
    pub alias: Option<String>,
    pub now_ms: i64,
}
