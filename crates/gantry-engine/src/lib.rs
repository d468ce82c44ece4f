//! The engine: turns a validated pipeline into a run.
//!
//! Data flows one way: spec → plan (pure, `gantry-spec`) → this scheduler → runtime → stores.
//! The scheduler keeps the run's DAG as a pure state machine ([`dag`]), admits ready steps
//! while they fit the machine's capacity ([`admission`]), and runs each admitted step as a
//! task ([`execute`]) that checks the cache, runs attempts with backoff, captures outputs,
//! metrics and logs, and records everything in the metadata store as it happens, so another
//! process can follow a run and a crash loses nothing that was recorded.

mod admission;
mod builtin_image;
mod dag;
pub mod deployments;
mod error;
mod events;
mod execute;
mod fetch;
pub mod gc;
pub mod input_policy;
mod mlflow_mirror;
mod owner;
mod reconcile;
mod registry;
mod relay;
mod retry;
mod run;
mod step_log;
pub mod trust;

pub use admission::{Capacity, QueueCapacity, QueueSnapshot, Scheduler};
pub use builtin_image::{BUILTIN_BINARY, ensure_builtin_image, existing_builtin_image};
pub use error::EngineError;
pub use events::{EchoRoom, Event, RunSummary, StepSummary};
pub use execute::{METRICS_MAX_BYTES, classify, parse_metrics, pullable, record_lineage};
pub use gantry_alloc::queue::{Priority, Quota};
pub use input_policy::{DataRoot, InputPolicy, PathAccess, PathRefusal};
pub use mlflow_mirror::GANTRY_RUN_TAG;
pub use owner::Owner;
pub use reconcile::{Reconciled, interrupt_orphaned_runs};
pub use registry::{REFERENCE_PROFILE_TAG, SideEffect, reference_profile_of};
pub use relay::{RELAY_PORT, hook_socket};
pub use run::{QueuedAt, RunRequest};

use gantry_artifacts::ArtifactStore;
use gantry_image::ImageStore;
use gantry_runtime::Runtime;
use gantry_store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Knobs that are the same for every run of one engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Scratch space for step directories (`/gantry` inside containers).
    pub work_dir: PathBuf,
    pub capacity: Capacity,
    /// The GPUs found through NVML (or the driver's /proc files): steps are placed on
    /// matching devices. Empty on machines without NVIDIA drivers.
    pub gpus: Arc<Vec<gantry_gpu::Gpu>>,
    /// Maximum number of processes (threads included) in one step.
    pub pids_limit: u64,
    /// First retry delay; doubles with each further attempt.
    pub retry_base: Duration,
    /// Keep step directories after the step ends (for debugging).
    pub keep_workdirs: bool,
    /// The binary packed into the built-in image for `uses: builtin/*` steps
    /// (normally the running `gantry` itself).
    pub builtin_exe: Option<PathBuf>,
    /// Where steps' MLflow calls are relayed (the server's own address). None: steps get
    /// no MLFLOW_* environment (plain `gantry run`).
    pub tracking_relay: Option<std::net::SocketAddr>,
    /// Issues each run a short-lived token for its steps' MLflow calls (servers with
    /// `--auth`); None: the relayed calls carry no token.
    pub step_tokens: Option<Arc<dyn StepTokens>>,
    /// Where `path:` and URL inputs may come from ([`InputPolicy::local`] for `gantry run`;
    /// servers confine them to data roots and refuse their own network).
    pub inputs: InputPolicy,
    /// Pulls images that name a registry and are not in the image store yet. None: such
    /// images must be imported or pulled beforehand.
    pub registry: Option<Arc<gantry_image::registry::RegistryClient>>,
    /// Shows layer downloads (a terminal's progress bars).
    pub pull_progress: Option<Arc<dyn gantry_image::registry::PullProgress>>,
    /// The image trust policy; None: every image may run.
    pub trust: Option<Arc<trust::ImageTrust>>,
    /// Who the audit log names for runs this engine starts (`local`, or the server's caller).
    pub principal: String,
    /// Keep runs waiting for admission in the store so a restarted server resumes them
    /// (servers); off, a run that waits when its process ends is interrupted.
    pub durable_queue: bool,
}

/// Mints and revokes the per-run token steps present as `MLFLOW_TRACKING_TOKEN`.
/// Implemented by the server, which owns token formats and roles.
pub trait StepTokens: Send + Sync {
    /// Returns (token id, secret) for `run_id` of `pipeline`.
    fn issue<'a>(
        &'a self,
        run_id: &'a str,
        pipeline: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(String, String), String>>;
    fn revoke<'a>(&'a self, token_id: &'a str) -> futures::future::BoxFuture<'a, ()>;
}

impl std::fmt::Debug for dyn StepTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepTokens")
    }
}

impl EngineConfig {
    pub fn new(work_dir: PathBuf) -> EngineConfig {
        EngineConfig {
            work_dir,
            capacity: Capacity::detect(),
            gpus: Arc::new(gantry_gpu::discover().unwrap_or_else(|e| {
                tracing::warn!("no GPU inventory: {e}");
                Vec::new()
            })),
            pids_limit: 1024,
            retry_base: Duration::from_secs(1),
            keep_workdirs: false,
            builtin_exe: std::env::current_exe().ok(),
            tracking_relay: None,
            step_tokens: None,
            inputs: InputPolicy::local(),
            registry: None,
            pull_progress: None,
            trust: None,
            principal: "local".to_string(),
            durable_queue: false,
        }
    }
}

/// Runs pipelines on one runtime against one set of stores.
pub struct Engine<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for Engine<R> {
    fn clone(&self) -> Self {
        Engine {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(crate) struct Inner<R> {
    pub(crate) store: Store,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) images: Arc<ImageStore>,
    pub(crate) runtime: R,
    pub(crate) cfg: EngineConfig,
    /// Admission for every run of this engine.
    pub(crate) scheduler: Arc<Scheduler>,
    /// Set when the server stops: runs still waiting for admission stay queued (in the
    /// store, for the next start) instead of being cancelled.
    pub(crate) parking: tokio_util::sync::CancellationToken,
}

impl<R: Runtime> Engine<R> {
    pub fn new(
        store: Store,
        artifacts: ArtifactStore,
        images: ImageStore,
        runtime: R,
        cfg: EngineConfig,
    ) -> Engine<R> {
        let scheduler = if runtime.stages_artifacts() {
            Scheduler::for_cluster(cfg.capacity)
        } else {
            Scheduler::new(cfg.capacity, Arc::clone(&cfg.gpus))
        };
        Engine {
            inner: Arc::new(Inner {
                store,
                artifacts,
                images: Arc::new(images),
                runtime,
                cfg,
                scheduler,
                parking: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    /// Admission shared by this engine's runs: quotas, the queue.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.inner.scheduler
    }

    /// Sets or lifts a project's quota (see [`Scheduler::set_quota`]).
    pub fn set_quota(&self, project: &str, quota: Option<Quota>) {
        self.inner.scheduler.set_quota(project, quota);
    }

    /// What waits for admission and why.
    pub fn queue_snapshot(&self) -> QueueSnapshot {
        self.inner.scheduler.snapshot()
    }

    /// Runs that still wait for admission stop waiting and stay queued in the store (with
    /// `durable_queue`), for the next start to resume. Called before a server's shutdown
    /// cancels its runs.
    pub fn park_queued(&self) {
        self.inner.parking.cancel();
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// The runtime steps run on; the server also runs deployments' replicas on it.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
