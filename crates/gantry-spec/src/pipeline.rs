use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Location;
use crate::params::ParamValue;

/// A validated pipeline, as declared (params not yet resolved, templates not yet expanded).
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// Declared params with their defaults, in declaration order.
    pub params: indexmap::IndexMap<String, ParamValue>,
    pub steps: Vec<Step>,
    /// Label used in locations (usually the path as the user gave it).
    pub file: String,
    /// Directory that relative `path:` inputs are resolved against.
    pub base_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    pub image: Option<String>,
    /// `builtin/<name>`; exactly one of `image` and `uses` is set.
    pub uses: Option<String>,
    /// Empty means the image's default command.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub with: BTreeMap<String, serde_json::Value>,
    /// `with:` keys to sweep, each with its values as written (strings may hold
    /// `${params.x}`), in declaration order; empty for a step without `matrix:`.
    pub matrix: indexmap::IndexMap<String, Vec<serde_json::Value>>,
    /// `with: { source: … }` of a built-in step is not listed here: `plan` adds it.
    pub inputs: BTreeMap<String, InputSource>,
    pub outputs: Vec<String>,
    pub after: Vec<String>,
    pub retries: u32,
    /// `retries: { memory_growth: G }`: an attempt after one the OOM killer ended gets the
    /// memory of that attempt × G (1 < G ≤ 16), capped by the machine; `None`: the same memory.
    pub retry_memory_growth: Option<f64>,
    pub timeout: Option<Duration>,
    /// How long a step that is timed out or cancelled gets between SIGTERM and SIGKILL;
    /// `None`: [`DEFAULT_TIMEOUT_GRACE`](crate::DEFAULT_TIMEOUT_GRACE).
    pub timeout_grace: Option<Duration>,
    pub resources: Resources,
    /// `logs: { max: SIZE }`: the most log bytes kept for one attempt; `None`:
    /// [`DEFAULT_LOGS_MAX`](crate::DEFAULT_LOGS_MAX).
    pub logs_max: Option<u64>,
    pub network: bool,
    pub cache: bool,
    /// `kubernetes:`: where the step's pod may run on a cluster (the Kubernetes runtime and
    /// `gantry compile`); ignored on one machine. Not part of the cache key.
    pub kubernetes: KubePlacement,
    /// Where the step's mapping starts.
    pub location: Location,
    /// Where each input's value is written, by input name; a built-in's `with: { source: … }`
    /// as `source`.
    pub input_locations: BTreeMap<String, Location>,
}

/// A step's `kubernetes:` block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubePlacement {
    /// Node labels the pod's node must have (`nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl KubePlacement {
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.tolerations.is_empty()
    }
}

/// One Kubernetes toleration, as the pod spec writes it (`tolerationSeconds` in JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` (default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; none: every effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputSource {
    /// The output `output` of the step `step`.
    Step { step: String, output: String },
    /// A file or directory, already resolved against the pipeline's `base_dir`.
    Path(PathBuf),
    /// An `http://` or `https://` URL the engine fetches.
    Url(String),
    /// Only in a [`crate::PlannedStep`]: the output `output` of every combination of
    /// the matrix step `step`, as `(label, planned step name)` in combination order.
    /// The engine mounts each member at `/gantry/inputs/<input>/<label>`.
    Sweep {
        step: String,
        output: String,
        members: Vec<(String, String)>,
    },
}

/// What a step asks for; the engine admits steps only while these fit the machine.
///
/// None of it enters a step's cache key: the same step with more memory makes the same outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: u64,
    /// With `memory_auto`, the default until the engine replaces it with a recommendation.
    pub memory_bytes: u64,
    /// `memory: auto`: size the step from the peak memory of its earlier runs when there are
    /// enough of them; `memory_bytes` holds the default meanwhile.
    #[serde(default)]
    pub memory_auto: bool,
    /// Whole GPUs (`gpu: N` or `gpu: { count: N }`).
    pub gpu: u32,
    /// `gpu: { memory: SIZE }`: the least memory each GPU must have; 0 = any.
    #[serde(default)]
    pub gpu_memory_bytes: u64,
    /// `gpu: { model: NAME }`, lowercase (e.g. `h200`); `None` = any model.
    #[serde(default)]
    pub gpu_model: Option<String>,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu_millis: 1000,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            memory_auto: false,
            gpu: 0,
            gpu_memory_bytes: 0,
            gpu_model: None,
        }
    }
}

/// The memory of a step that does not say (and of `memory: auto` before a recommendation).
pub const DEFAULT_MEMORY_BYTES: u64 = 512 * 1024 * 1024;

/// A `path:` as written, resolved against the pipeline file's directory: leading `./` parts
/// are dropped (`data/x.csv` and `./data/x.csv` name the same file and read the same in
/// messages), the rest is kept as written (a trailing `/` still follows a symlink to a
/// directory); an absolute path stays as it is.
pub(crate) fn resolve_path(base_dir: &std::path::Path, written: &str) -> PathBuf {
    let mut rest = written;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r.trim_start_matches('/');
    }
    if rest.is_empty() || rest == "." {
        base_dir.to_path_buf()
    } else {
        base_dir.join(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_path;
    use std::path::Path;

    #[test]
    fn paths_are_resolved_without_their_leading_dot_parts() {
        let base = Path::new("/base");
        let cases = [
            ("data/x.csv", "/base/data/x.csv"),
            ("./data/x.csv", "/base/data/x.csv"),
            ("././/data/x.csv", "/base/data/x.csv"),
            ("data/dir/", "/base/data/dir/"),
            ("../up.csv", "/base/../up.csv"),
            ("/srv/x.csv", "/srv/x.csv"),
            (".", "/base"),
            ("./", "/base"),
        ];
        for (written, resolved) in cases {
            let got = resolve_path(base, written);
            assert_eq!(got.as_os_str(), resolved, "{written}");
        }
    }
}
