//! Deployments: desired state in the store, reconciled here into pools of model-server
//! replicas, routed by `/v2/models/<deployment>/…` with weighted canary and shadow traffic,
//! every prediction logged, and a monitor per deployment.
//!
//! ```text
//! store (deployments, revisions) ──reconcile──> pools of replicas (containers)
//!                                                  ▲
//!  client ──/v2/models/NAME/infer──> routing snapshot (Live) ──> replica ──> answer
//!                                          └──> prediction log (group commit) ──> monitor
//! ```
//!
//! Rollouts never drop requests: a new routing snapshot is swapped in only once every pool
//! it names has a ready replica; requests already running keep the old snapshot (they hold
//! it), and an old pool is stopped only after the last of them let go of it.

pub mod aggregates;
pub mod grpc;
pub mod journal;
pub mod monitor;
pub mod ops;
mod predlog;
pub mod proxy;
pub mod replica;
pub mod resolve;

use crate::metrics::Metrics;
use gantry_artifacts::ArtifactStore;
use gantry_engine::Engine;
use gantry_kube::StepRuntime;
use gantry_ml::dataset::ColumnType;
use gantry_runtime::BindMount;
use gantry_spec::deployment::{DeploymentSpec, ModelTarget};
use gantry_store::Store;
use replica::{Replica, ReplicaTemplate};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the reconciler re-reads the desired state (changes made through this server
/// wake it at once).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);
/// The port model servers listen on inside their replica.
pub const REPLICA_PORT: u16 = 8080;
/// Longest a drained pool waits for requests still using it.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// What a flavor needs to serve, resolved from the registry once per pool.
#[derive(Clone, Debug)]
pub struct ServedModel {
    pub target: ModelTarget,
    pub flavor: String,
    /// Built-in models: the raw input columns (to log requests as named rows).
    pub schema: Option<Vec<(String, ColumnType)>>,
    /// Classification label column of the reference profile (built-in models).
    pub label: Option<String>,
    pub classification: bool,
    /// The reference profile's artifact digest, when the version has one.
    pub reference_profile: Option<String>,
    template: ReplicaTemplate,
}

/// The replicas of one model version of one deployment.
pub struct Pool {
    pub model: ServedModel,
    key: PoolKey,
    replicas: Mutex<Vec<RunningReplica>>,
    next: AtomicUsize,
    serial: AtomicUsize,
    /// Random, per pool: part of every replica's container id.
    nonce: String,
}

struct RunningReplica {
    replica: Arc<Replica>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    deployment: String,
    model: String,
    version: i64,
    cpu_millis: u64,
    memory_bytes: u64,
}

impl Pool {
    /// A ready replica, round robin; `skip` lists replicas that already failed this request.
    pub fn pick(&self, skip: &[String]) -> Option<Arc<Replica>> {
        let replicas = self.replicas.lock().ok()?;
        let n = replicas.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &replicas[(start + i) % n].replica)
            .find(|r| r.is_ready() && !skip.contains(&r.id))
            .cloned()
    }

    pub fn ready(&self) -> usize {
        self.replicas
            .lock()
            .map(|r| r.iter().filter(|x| x.replica.is_ready()).count())
            .unwrap_or(0)
    }

    fn status(&self, role: &str) -> PoolStatus {
        let replicas = self
            .replicas
            .lock()
            .map(|r| {
                r.iter()
                    .map(|x| ReplicaStatus {
                        id: x.replica.id.clone(),
                        ready: x.replica.is_ready(),
                        restarts: x.replica.restarts(),
                        last_error: x.replica.last_error(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        PoolStatus {
            role: role.into(),
            model: self.model.target.model.clone(),
            version: self.model.target.version,
            flavor: self.model.flavor.clone(),
            replicas,
        }
    }

    fn scale(&self, engine: &Engine<StepRuntime>, want: usize) {
        let Ok(mut replicas) = self.replicas.lock() else {
            return;
        };
        while replicas.len() < want {
            let n = self.serial.fetch_add(1, Ordering::Relaxed);
            // Container ids (and so cgroup paths) are machine-wide: the nonce keeps two
            // servers (other homes) with a deployment of the same name apart.
            let id = format!(
                "gantry-serve-{}-{}-v{}-{}-{n}",
                self.key.deployment,
                sanitize(&self.key.model),
                self.key.version,
                self.nonce
            );
            let mut template = self.model.template.clone();
            template.dir = template.dir.join(&id);
            template.owner = Some(replica::ReplicaOwner {
                deployment: self.key.deployment.clone(),
                model: self.key.model.clone(),
                version: self.key.version,
            });
            let stop = CancellationToken::new();
            let (replica, task) = replica::start(engine.clone(), template, id, stop.clone());
            replicas.push(RunningReplica {
                replica,
                stop,
                task,
            });
        }
        while replicas.len() > want {
            if let Some(r) = replicas.pop() {
                r.stop.cancel();
                tokio::spawn(async move {
                    let _ = r.task.await;
                });
            }
        }
    }

    async fn stop(&self) {
        let all: Vec<RunningReplica> = match self.replicas.lock() {
            Ok(mut r) => r.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for r in &all {
            r.stop.cancel();
        }
        for r in all {
            let _ = r.task.await;
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The routing snapshot of one deployment.
pub struct Live {
    pub name: String,
    /// Tokens scoped to another project cannot reach it.
    pub project: Option<String>,
    pub revision: i64,
    pub spec: DeploymentSpec,
    pub primary: Arc<Pool>,
    pub canary: Option<Arc<Pool>>,
    pub shadow: Option<Arc<Pool>>,
}

/// What `GET /api/v1/deployments/NAME` reports about the actual state.
#[derive(Clone, Debug, Serialize)]
pub struct ActualState {
    /// The revision traffic is routed by (may lag the desired one during a rollout).
    pub serving_revision: Option<i64>,
    pub pools: Vec<PoolStatus>,
    /// Why the desired revision is not serving yet, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolStatus {
    pub role: String,
    pub model: String,
    pub version: i64,
    pub flavor: String,
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub ready: bool,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The deployment controller of one server.
#[derive(Clone)]
pub struct Deployments {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    artifacts: ArtifactStore,
    engine: Option<Engine<StepRuntime>>,
    work_dir: PathBuf,
    live: RwLock<HashMap<String, Arc<Live>>>,
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    rollouts: Mutex<HashMap<String, (i64, String)>>,
    wake: tokio::sync::Notify,
    stop: CancellationToken,
    pub(crate) predlog: predlog::PredictionLog,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) monitors: monitor::Monitors,
    /// What alert webhooks may reach.
    fetch: gantry_net::FetchPolicy,
}

impl Deployments {
    pub fn new(
        store: Store,
        artifacts: ArtifactStore,
        engine: Option<Engine<StepRuntime>>,
        metrics: Arc<Metrics>,
        fetch: gantry_net::FetchPolicy,
    ) -> Deployments {
        let work_dir = engine
            .as_ref()
            .map(|e| e.config().work_dir.join("deployments"))
            .unwrap_or_else(|| std::env::temp_dir().join("gantry-deployments"));
        // Beside the deployments' folders, per home, like them; a server without a runtime
        // (no replicas, no home of its own) journals into a private temporary folder that
        // no other server takes over.
        let journal_dir = match engine.as_ref() {
            Some(e) => predlog::JournalDir::Home(e.config().work_dir.join("predlog")),
            None => predlog::JournalDir::private(),
        };
        let predlog = predlog::PredictionLog::start(
            store.clone(),
            artifacts.clone(),
            Arc::clone(&metrics),
            journal_dir,
        );
        Deployments {
            inner: Arc::new(Inner {
                monitors: monitor::Monitors::default(),
                store,
                artifacts,
                engine,
                work_dir,
                live: RwLock::default(),
                pools: Mutex::default(),
                rollouts: Mutex::default(),
                wake: tokio::sync::Notify::new(),
                stop: CancellationToken::new(),
                predlog,
                metrics,
                fetch,
            }),
        }
    }

    /// What alert webhooks may reach (`gantry server --allow-fetch`).
    pub fn fetch_policy(&self) -> &gantry_net::FetchPolicy {
        &self.inner.fetch
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    pub(crate) fn predlog(&self) -> &predlog::PredictionLog {
        &self.inner.predlog
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn monitors(&self) -> &monitor::Monitors {
        &self.inner.monitors
    }

    /// Whether this server runs replicas (it has an engine).
    pub fn can_serve(&self) -> bool {
        self.inner.engine.is_some()
    }

    /// The routing snapshot of a deployment, if it serves.
    pub fn live(&self, name: &str) -> Option<Arc<Live>> {
        self.inner.live.read().ok()?.get(name).cloned()
    }

    pub fn live_names(&self) -> Vec<String> {
        self.inner
            .live
            .read()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Wakes the reconciler (after a change made through this server).
    pub fn nudge(&self) {
        self.inner.wake.notify_one();
    }

    pub fn actual(&self, name: &str) -> ActualState {
        let live = self.live(name);
        let mut pools = Vec::new();
        if let Some(l) = &live {
            pools.push(l.primary.status("primary"));
            if let Some(c) = &l.canary {
                pools.push(c.status("canary"));
            }
            if let Some(s) = &l.shadow {
                pools.push(s.status("shadow"));
            }
        }
        let rollout = self.inner.rollouts.lock().ok().and_then(|r| {
            r.get(name)
                .map(|(rev, msg)| format!("revision {rev}: {msg}"))
        });
        ActualState {
            serving_revision: live.map(|l| l.revision),
            pools,
            rollout,
        }
    }

    /// Runs the reconciler and the monitors until [`Deployments::shutdown`].
    pub fn spawn(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if this.inner.engine.is_none() {
                return;
            }
            // Counts what a previous server left uncounted before monitors read.
            this.inner.predlog.start_writer();
            let monitors = {
                let this = this.clone();
                tokio::spawn(async move { monitor::run(this).await })
            };
            let mut pending: HashMap<String, (i64, JoinHandle<()>)> = HashMap::new();
            loop {
                if let Err(e) = this.reconcile(&mut pending).await {
                    tracing::warn!("reconciling deployments: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
                    _ = this.inner.wake.notified() => {}
                    _ = this.inner.stop.cancelled() => break,
                }
            }
            for (_, (_, task)) in pending.drain() {
                task.abort();
            }
            monitors.abort();
        })
    }

    /// Stops routing and every replica.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        if let Ok(mut live) = self.inner.live.write() {
            live.clear();
        }
        let pools: Vec<Arc<Pool>> = match self.inner.pools.lock() {
            Ok(mut p) => p.drain().map(|(_, v)| v).collect(),
            Err(_) => Vec::new(),
        };
        futures::future::join_all(pools.iter().map(|p| p.stop())).await;
        self.inner
            .predlog
            .checkpoint_if_started(std::time::Duration::from_secs(10))
            .await;
    }

    async fn reconcile(
        &self,
        pending: &mut HashMap<String, (i64, JoinHandle<()>)>,
    ) -> Result<(), String> {
        let desired = self
            .inner
            .store
            .list_deployments()
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = desired.iter().map(|d| d.name.clone()).collect();
        pending.retain(|_, (_, task)| !task.is_finished());
        for d in desired {
            let serving = self.live(&d.name).map(|l| l.revision);
            if serving == Some(d.revision) {
                continue;
            }
            if pending
                .get(&d.name)
                .is_some_and(|(rev, _)| *rev == d.revision)
            {
                continue;
            }
            if let Some((_, old)) = pending.remove(&d.name) {
                old.abort();
            }
            let this = self.clone();
            let name = d.name.clone();
            let revision = d.revision;
            let task = tokio::spawn(async move {
                if let Err(e) = this.roll_out(&name, revision, d.project, d.spec).await {
                    tracing::warn!(deployment = %name, revision, "rollout: {e}");
                    if let Ok(mut r) = this.inner.rollouts.lock() {
                        r.insert(name.clone(), (revision, e));
                    }
                }
            });
            pending.insert(d.name, (revision, task));
        }
        // Deployments that were deleted stop serving.
        let gone: Vec<Arc<Live>> = match self.inner.live.write() {
            Ok(mut live) => {
                let names_gone: Vec<String> = live
                    .keys()
                    .filter(|k| !names.contains(k))
                    .cloned()
                    .collect();
                names_gone.iter().filter_map(|n| live.remove(n)).collect()
            }
            Err(_) => Vec::new(),
        };
        for l in gone {
            tracing::info!(deployment = %l.name, "undeployed");
            if let Some((_, t)) = pending.remove(&l.name) {
                t.abort();
            }
            self.retire_unused(Some(l)).await;
        }
        Ok(())
    }

    /// Brings up the pools of `revision` and switches traffic to them once they are ready.
    async fn roll_out(
        &self,
        name: &str,
        revision: i64,
        project: Option<String>,
        spec: serde_json::Value,
    ) -> Result<(), String> {
        let engine = self
            .inner
            .engine
            .clone()
            .ok_or("this server has no engine to run replicas")?;
        let spec: DeploymentSpec = serde_json::from_value(spec)
            .map_err(|e| format!("the stored desired state is unreadable: {e}"))?;
        gantry_spec::deployment::validate(&spec).map_err(|e| e.to_string())?;
        let set_progress = |msg: String| {
            if let Ok(mut r) = self.inner.rollouts.lock() {
                r.insert(name.to_string(), (revision, msg));
            }
        };
        set_progress("starting replicas".into());
        let primary = self.pool(&engine, name, &spec, &spec.model).await?;
        let canary = match &spec.canary {
            Some(c) => Some(self.pool(&engine, name, &spec, &c.target).await?),
            None => None,
        };
        let shadow = match &spec.shadow {
            Some(s) => Some(self.pool(&engine, name, &spec, s).await?),
            None => None,
        };
        // Wait for every pool to have a ready replica; keep the old routing meanwhile.
        loop {
            let waiting: Vec<String> = [Some(&primary), canary.as_ref(), shadow.as_ref()]
                .into_iter()
                .flatten()
                .filter(|p| p.ready() == 0)
                .map(|p| {
                    let err = p
                        .replicas
                        .lock()
                        .ok()
                        .and_then(|r| r.iter().find_map(|x| x.replica.last_error()));
                    match err {
                        Some(e) => format!("{} not ready ({e})", p.model.target.label()),
                        None => format!("{} starting", p.model.target.label()),
                    }
                })
                .collect();
            if waiting.is_empty() {
                break;
            }
            set_progress(waiting.join("; "));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = self.inner.stop.cancelled() => return Ok(()),
            }
        }
        let live = Arc::new(Live {
            name: name.to_string(),
            project,
            revision,
            spec,
            primary,
            canary,
            shadow,
        });
        let previous = match self.inner.live.write() {
            Ok(mut l) => l.insert(name.to_string(), Arc::clone(&live)),
            Err(_) => None,
        };
        if let Ok(mut r) = self.inner.rollouts.lock() {
            r.remove(name);
        }
        tracing::info!(deployment = %name, revision, model = %live.spec.model.label(), "serving");
        self.retire_unused(previous).await;
        Ok(())
    }

    /// Stops the pools no routing snapshot uses any more, once requests let go of them.
    async fn retire_unused(&self, previous: Option<Arc<Live>>) {
        drop(previous);
        let in_use: Vec<PoolKey> = self
            .inner
            .live
            .read()
            .map(|l| {
                l.values()
                    .flat_map(|x| {
                        [Some(&x.primary), x.canary.as_ref(), x.shadow.as_ref()]
                            .into_iter()
                            .flatten()
                            .map(|p| p.key.clone())
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let retired: Vec<Arc<Pool>> = match self.inner.pools.lock() {
            Ok(mut pools) => {
                let keys: Vec<PoolKey> = pools
                    .keys()
                    .filter(|k| !in_use.contains(k))
                    .cloned()
                    .collect();
                keys.iter().filter_map(|k| pools.remove(k)).collect()
            }
            Err(_) => Vec::new(),
        };
        for pool in retired {
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
                // Requests in flight hold the old snapshot and with it the pool.
                while Arc::strong_count(&pool) > 1 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tracing::info!(model = %pool.model.target.label(), "stopping retired replicas");
                pool.stop().await;
            });
        }
    }

    /// The pool for `target` in deployment `name` with the spec's resources, scaled to the
    /// spec's replica count (created if needed).
    async fn pool(
        &self,
        engine: &Engine<StepRuntime>,
        name: &str,
        spec: &DeploymentSpec,
        target: &ModelTarget,
    ) -> Result<Arc<Pool>, String> {
        let key = PoolKey {
            deployment: name.to_string(),
            model: target.model.clone(),
            version: target.version,
            cpu_millis: spec.cpu_millis,
            memory_bytes: spec.memory_bytes,
        };
        let existing = self
            .inner
            .pools
            .lock()
            .ok()
            .and_then(|p| p.get(&key).cloned());
        let pool = match existing {
            Some(p) => p,
            None => {
                let model = resolve::served_model(
                    engine,
                    &self.inner.store,
                    &self.inner.artifacts,
                    name,
                    target,
                    spec,
                    &self.inner.work_dir.join(name),
                )
                .await?;
                let pool = Arc::new(Pool {
                    model,
                    key: key.clone(),
                    replicas: Mutex::new(Vec::new()),
                    next: AtomicUsize::new(0),
                    serial: AtomicUsize::new(0),
                    nonce: hex::encode(rand::random::<[u8; 4]>()),
                });
                if let Ok(mut pools) = self.inner.pools.lock() {
                    pools.insert(key, Arc::clone(&pool));
                }
                pool
            }
        };
        pool.scale(engine, spec.replicas as usize);
        Ok(pool)
    }
}

/// Builds the container template of a replica (used by [`resolve`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn template(
    rootfs: PathBuf,
    args: Vec<String>,
    env: Vec<String>,
    uid: u32,
    gid: u32,
    mounts: Vec<BindMount>,
    spec: &DeploymentSpec,
    port: u16,
    dir: PathBuf,
    hook_exe: PathBuf,
) -> ReplicaTemplate {
    ReplicaTemplate {
        rootfs,
        args,
        env,
        uid,
        gid,
        mounts,
        cpu_millis: spec.cpu_millis,
        memory_bytes: spec.memory_bytes,
        port,
        hook_exe,
        dir,
        owner: None,
        remote: None,
    }
}
