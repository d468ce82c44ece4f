//! What every handler shares.

use crate::deploy::Deployments;
use crate::metrics::Metrics;
use gantry_artifacts::ArtifactStore;
use gantry_engine::{Engine, EngineError, Event, RunRequest};
use gantry_kube::StepRuntime;
use gantry_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Server-wide settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Require bearer tokens (`gantry server --auth`). Off: local single-user mode.
    pub auth: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The externally visible base URL (for artifact URIs and MLFLOW_TRACKING_URI).
    pub public_url: String,
    /// Where MLflow artifacts uploaded through the proxy live.
    pub mlflow_artifacts_dir: PathBuf,
    /// What callers' runs and deployments may reach beyond their own containers.
    pub remote: RemotePolicy,
    /// The price table of usage reports and run costs (GANTRY_HOME/config.yaml).
    pub prices: gantry_alloc::Prices,
}

impl ServerConfig {
    /// Local single-user settings: no auth, 16 MiB bodies, the secure defaults of
    /// [`RemotePolicy::default`].
    pub fn local(public_url: &str, mlflow_artifacts_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            auth: false,
            max_body_bytes: 16 << 20,
            public_url: public_url.to_owned(),
            mlflow_artifacts_dir,
            remote: RemotePolicy::default(),
            prices: gantry_alloc::Prices::default(),
        }
    }
}

/// The admin's caps on what callers reach through the server: uploads, step network and
/// GPUs, and the server's own outbound fetches (alert webhooks). Data roots and URL inputs
/// are the engine's [`gantry_engine::InputPolicy`].
#[derive(Clone, Debug)]
pub struct RemotePolicy {
    /// Largest upload (one input file or directory) accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Projects whose steps may ask for `network: true` (`*`: every project). Empty by
    /// default: a step with the host's network would reach the server's own loopback.
    pub allow_network: Vec<String>,
    /// Projects whose steps may not use GPUs (`*`: every project).
    pub deny_gpu: Vec<String>,
    /// Where the server may send requests on callers' behalf (webhooks).
    pub fetch: gantry_net::FetchPolicy,
}

/// Default for `--max-upload-bytes`: 64 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 30;

impl Default for RemotePolicy {
    fn default() -> Self {
        RemotePolicy {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            allow_network: Vec::new(),
            deny_gpu: Vec::new(),
            fetch: gantry_net::FetchPolicy::default(),
        }
    }
}

impl RemotePolicy {
    /// Whether steps of `project` may use the host's network.
    pub fn network_allowed(&self, project: &str) -> bool {
        self.allow_network.iter().any(|p| p == "*" || p == project)
    }

    /// Whether steps of `project` may use GPUs.
    pub fn gpu_allowed(&self, project: &str) -> bool {
        !self.deny_gpu.iter().any(|p| p == "*" || p == project)
    }
}

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub config: Arc<ServerConfig>,
    /// Runs submitted over the API execute here (None: a read-only server).
    pub runs: RunHost,
    pub metrics: Arc<Metrics>,
    /// Deployments: routing, replicas, prediction log, monitors.
    pub deployments: Deployments,
    /// The web UI's cache of reduced metric histories.
    pub series: Arc<crate::ui::SeriesCache>,
}

impl AppState {
    /// A server without an engine: everything but submitting runs works.
    pub fn new(store: Store, artifacts: ArtifactStore, config: ServerConfig) -> AppState {
        let metrics = Arc::new(Metrics::new());
        let deployments = Deployments::new(
            store.clone(),
            artifacts.clone(),
            None,
            Arc::clone(&metrics),
            config.remote.fetch.clone(),
        );
        AppState {
            deployments,
            store,
            artifacts,
            config: Arc::new(config),
            runs: RunHost {
                engine: None,
                inflight: Arc::default(),
                closing: CancellationToken::new(),
                metrics: Arc::clone(&metrics),
            },
            metrics,
            series: Arc::default(),
        }
    }

    /// Runs submitted over the API execute on `engine`.
    pub fn with_engine(mut self, engine: Engine<StepRuntime>) -> AppState {
        self.deployments = Deployments::new(
            self.store.clone(),
            self.artifacts.clone(),
            Some(engine.clone()),
            Arc::clone(&self.metrics),
            self.config.remote.fetch.clone(),
        );
        self.runs.engine = Some(engine);
        self
    }
}

struct InFlight {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The engine and the runs it executes for API callers.
#[derive(Clone)]
pub struct RunHost {
    engine: Option<Engine<StepRuntime>>,
    inflight: Arc<Mutex<HashMap<String, InFlight>>>,
    /// Set by shutdown: no new run starts after it.
    closing: CancellationToken,
    metrics: Arc<Metrics>,
}

/// Why a run could not be started.
#[derive(Debug)]
pub enum StartError {
    NoEngine,
    ShuttingDown,
    Engine(EngineError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoEngine => f.write_str("this server runs no engine"),
            StartError::ShuttingDown => f.write_str("the server is shutting down"),
            StartError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl RunHost {
    pub fn has_engine(&self) -> bool {
        self.engine.is_some()
    }

    /// The engine runs execute on, if this server has one.
    pub fn engine(&self) -> Option<&Engine<StepRuntime>> {
        self.engine.as_ref()
    }

    /// The engine's input policy applied to a run about to be submitted (see
    /// [`Engine::check_external_inputs`]); a server without an engine refuses nothing here
    /// (it cannot start the run anyway).
    pub async fn check_external_inputs(
        &self,
        plan: &gantry_spec::Plan,
        project: &str,
        uploaded: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), gantry_engine::input_policy::InputRefusal> {
        match &self.engine {
            Some(engine) => engine.check_external_inputs(plan, project, uploaded).await,
            None => Ok(()),
        }
    }

    /// Starts a run in the background and returns its id once the engine recorded it;
    /// errors that stop a run from starting (images, capacity, store) come back here.
    pub async fn start(&self, req: RunRequest) -> Result<String, StartError> {
        let engine = self.engine.clone().ok_or(StartError::NoEngine)?;
        if self.closing.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let cancel = self.closing.child_token();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let run_cancel = cancel.clone();
        let task = tokio::spawn(async move {
            let result = engine.run(req, tx, run_cancel).await;
            if let Err(e) = &result {
                tracing::warn!(error = %e, "a submitted run failed to run to its end");
            }
            let _ = done_tx.send(result.map(|s| s.run_id));
        });
        // The run id is born inside the engine: its first event carries it (queued, or
        // started at once).
        let started = loop {
            match rx.recv().await {
                Some(Event::RunQueued { run_id, .. } | Event::RunStarted { run_id, .. }) => {
                    break Some(run_id);
                }
                Some(_) => continue,
                None => break None,
            }
        };
        let Some(run_id) = started else {
            return match done_rx.await {
                Ok(Err(e)) => Err(StartError::Engine(e)),
                Ok(Ok(id)) => Ok(id),
                Err(_) => Err(StartError::Engine(EngineError::Step {
                    step: "?".into(),
                    message: "the run task ended before the run started".into(),
                })),
            };
        };
        // Keep draining events (for metrics, and so the engine never waits on them) and
        // forget the run once it ends. The lock is held until the entry is in, so a run
        // that ends at once cannot leave a stale entry behind.
        let Ok(mut map) = self.inflight.lock() else {
            return Ok(run_id);
        };
        let inflight = Arc::clone(&self.inflight);
        let metrics = Arc::clone(&self.metrics);
        let id = run_id.clone();
        let reaper = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                metrics.observe_event(&event);
            }
            let _ = done_rx.await;
            let _ = task.await;
            if let Ok(mut map) = inflight.lock() {
                map.remove(&id);
            }
        });
        map.insert(
            run_id.clone(),
            InFlight {
                cancel,
                task: reaper,
            },
        );
        Ok(run_id)
    }

    /// Starts again the runs a previous server process left queued (in their original
    /// order); returns how many. One that cannot start is recorded as failed by the engine.
    pub async fn resume_queued(&self) -> Result<usize, StartError> {
        let engine = self.engine.clone().ok_or(StartError::NoEngine)?;
        let requests = engine.queued_requests().await.map_err(StartError::Engine)?;
        let mut n = 0;
        for req in requests {
            let id = req
                .queued
                .as_ref()
                .map(|q| q.run_id.clone())
                .unwrap_or_default();
            match self.start(req).await {
                Ok(_) => n += 1,
                Err(e) => {
                    tracing::warn!("queued run {id} could not be resumed: {e}");
                    let _ = engine
                        .store()
                        .update_run_status(
                            &id,
                            gantry_store::RunStatus::Failed,
                            Some(gantry_engine::now_ms()),
                            Some(&format!("could not be resumed after a restart: {e}")),
                        )
                        .await;
                    let _ = engine.store().dequeue_run(&id).await;
                }
            }
        }
        Ok(n)
    }

    /// Cancels a run this server executes; false when it runs elsewhere or has ended.
    pub fn cancel(&self, run_id: &str) -> bool {
        match self.inflight.lock() {
            Ok(map) => match map.get(run_id) {
                Some(f) => {
                    f.cancel.cancel();
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }

    /// Number of runs executing on this server.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Refuses new runs, cancels the running ones (they are recorded as cancelled) and
    /// waits up to `grace` for them to finish recording.
    pub async fn shutdown(&self, grace: Duration) {
        // Runs still waiting for admission stay queued for the next start.
        if let Some(engine) = &self.engine {
            engine.park_queued();
        }
        self.closing.cancel();
        let tasks: Vec<JoinHandle<()>> = match self.inflight.lock() {
            Ok(mut map) => map.drain().map(|(_, f)| f.task).collect(),
            Err(_) => Vec::new(),
        };
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                "runs still finishing after {grace:?}; the next start marks them interrupted"
            );
        }
    }
}
