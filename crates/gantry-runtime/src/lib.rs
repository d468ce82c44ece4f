//! Runs one pipeline step as a least-privilege container.
//!
//! The engine talks to a [`Runtime`]: it hands over a [`StepRequest`] (rootfs, command, user,
//! mounts, limits, timeout, cancel token) plus a channel for the step's log lines and gets back a
//! [`StepOutcome`] (exit status, why it ended, cgroup usage).
//!
//! [`OciRuntime`] is the implementation for one Linux machine: it writes an OCI bundle whose
//! `config.json` comes from the pure [`build_spec`], runs it with the OCI runtime CLI (`runc` by
//! default) as `runc run --keep`, streams stdout/stderr line by line, reads usage from the
//! container's cgroup before it is removed, and always cleans up the container, its cgroup and
//! its bundle — on success, error, timeout, cancel, and when the future is dropped.
//!
//! Every container gets the security defaults of DESIGN §4 (see [`build_spec`]); the integration
//! tests in `tests/oci.rs` run real containers to prove each of them.

mod bundle;
mod cgroup;
mod error;
mod host;
mod init;
mod log_stream;
mod oci;
mod seccomp;
mod spec;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use error::RuntimeError;
pub use host::{HostFacts, PrivilegeMode, PrivilegeProbe, decide_privileges};
pub use init::{INIT_PATH, install_init};
pub use log_stream::MAX_LINE_BYTES;
pub use oci::{OciRuntime, OciRuntimeConfig};
pub use seccomp::{BLOCKED_SYSCALLS, default_seccomp};
pub use spec::{DEFAULT_CGROUP_PARENT, build_spec, build_spec_with_cgroup_parent};

/// Which of the container's output streams a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Whole lines of one of a step's output streams, as one read of the pipe delivered them:
/// a step printing a million short lines costs a few hundred of these, not a million.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBlock {
    pub stream: LogStream,
    /// The lines joined by `'\n'`, without the last one's `'\n'`, decoded as lossy UTF-8; a
    /// line longer than [`MAX_LINE_BYTES`] arrives as several lines.
    pub text: String,
    /// How many lines `text` holds (at least 1; `""` with `lines == 1` is one empty line).
    pub lines: usize,
}

impl LogBlock {
    /// The lines, in order.
    pub fn lines(&self) -> std::str::Split<'_, char> {
        self.text.split('\n')
    }
}

/// A host path made visible inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    pub readonly: bool,
}

/// Everything needed to run one step once.
#[derive(Clone, Debug)]
pub struct StepRequest {
    /// Unique container id made of `[A-Za-z0-9_.-]`; the engine uses
    /// `gantry-<run>-<step>-<attempt>`.
    pub id: String,
    /// The image's rootfs, shared by every container of that image and never written to.
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub mounts: Vec<BindMount>,
    /// `false`: a network namespace with only `lo`; `true`: the host's network.
    pub network: bool,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pids_limit: u64,
    /// The minors `N` of the `/dev/nvidiaN` GPUs the step gets (the caller's placement: each
    /// GPU is given to one step at a time); the NVIDIA control devices come with them. Empty:
    /// no GPU.
    pub gpu_devices: Vec<u32>,
    pub timeout: Option<Duration>,
    /// On timeout or cancellation the step's PID 1 gets SIGTERM (which gantry-init forwards to
    /// the command) and, if it has not ended this long after, SIGKILL.
    pub stop_grace: Duration,
    pub cancel: CancellationToken,
    /// An OCI `createRuntime` hook (argv, absolute program path): run by runc once the
    /// container's namespaces exist and before the step's process starts. The engine uses
    /// it to open the tracking relay inside the step's own network namespace.
    pub create_runtime_hook: Option<Vec<String>>,
    /// For a runtime whose containers cannot see this machine's files ([`Runtime::stages_artifacts`]:
    /// Kubernetes): the image as a registry reference and the artifacts by digest, which the
    /// runtime's own pod fetches and uploads. `rootfs` and `mounts` are then unused. `None` for
    /// local runtimes.
    pub remote: Option<RemoteStep>,
}

/// What a runtime that moves a step's artifacts itself needs to know about the step.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteStep {
    pub run_id: String,
    /// The step's name as planned (a sweep member's name holds `[`, `=`, `,`).
    pub step: String,
    pub attempt: u32,
    /// The step's image, pullable by digest (`registry/repo@sha256:…`); unused for a built-in
    /// step, which runs in the runtime's own built-in image.
    pub image: String,
    pub builtin: bool,
    /// `(path under /gantry/inputs, digest)`.
    pub inputs: Vec<(String, String)>,
    /// Declared outputs.
    pub outputs: Vec<String>,
    /// `/gantry/params.json`.
    pub params: serde_json::Value,
    pub gpu: u32,
    pub gpu_model: Option<String>,
    /// The step's own node labels (its spec's `kubernetes.node_selector`).
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// The step's own tolerations, as the pod spec writes them (JSON objects).
    pub tolerations: Vec<serde_json::Value>,
}

/// What the runtime's pod uploaded, by digest (see [`StepRequest::remote`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemoteArtifacts {
    /// Output name → digest; a declared output the step did not write is absent.
    pub outputs: std::collections::BTreeMap<String, String>,
    /// `/gantry/metrics.json` as the step wrote it, stored as an artifact.
    pub metrics: Option<String>,
    /// The stored full report, when it did not fit in the termination message: its outputs
    /// and metrics replace the two fields above.
    pub more: Option<String>,
    /// Why the pod could not deliver the outputs (an upload failed, no report).
    pub error: Option<String>,
}

/// Why a step's container stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Termination {
    /// The process exited on its own (any exit code).
    Exited,
    /// The kernel's OOM killer killed a process of the step because of its memory limit.
    OomKilled,
    /// The step ran past its timeout and was stopped (SIGTERM, then SIGKILL after the grace).
    TimedOut,
    /// The step's cancel token fired and it was stopped (SIGTERM, then SIGKILL after the grace).
    Cancelled,
    /// A signal killed the process (not one of the reasons above).
    Signaled,
}

/// Resources a step consumed, read from its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub peak_memory_bytes: u64,
    pub cpu_micros: u64,
    pub wall_ms: u64,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepOutcome {
    /// The exit status when the process exited; `None` when a signal killed it. runc reports
    /// "killed by signal N" as status 128+N, so a step that itself exits with 129..=192 is
    /// reported as killed by signal N too.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub termination: Termination,
    /// The step tried to create more processes than its pids limit allows.
    pub pids_limit_hit: bool,
    pub usage: Usage,
    /// Set by runtimes that move artifacts themselves ([`Runtime::stages_artifacts`]).
    pub artifacts: Option<RemoteArtifacts>,
}

/// Something that runs steps as containers. The engine is tested with fakes of it.
pub trait Runtime: Send + Sync + 'static {
    /// Short name for logs and run records (`"oci"`, `"docker"`, ...).
    fn name(&self) -> &'static str;

    /// `true` when the runtime's containers cannot see this machine's files: the engine then
    /// fills [`StepRequest::remote`] instead of mounting inputs and reads the outputs from
    /// [`StepOutcome::artifacts`].
    fn stages_artifacts(&self) -> bool {
        false
    }

    /// Runs the step to completion, sending its output lines to `logs` (awaiting when the channel
    /// is full). Failing to *start* the container is an error; a step that starts and then fails,
    /// is killed, times out or is cancelled is an `Ok` outcome saying so.
    fn run(
        &self,
        req: StepRequest,
        logs: tokio::sync::mpsc::Sender<LogBlock>,
    ) -> impl Future<Output = Result<StepOutcome, RuntimeError>> + Send;

    /// Kills and deletes containers (with their bundles and cgroups) left behind by a gantry
    /// process that is no longer alive; returns how many were removed. Containers of live gantry
    /// processes are left alone.
    fn reap_leftovers(&self) -> impl Future<Output = Result<usize, RuntimeError>> + Send;
}
