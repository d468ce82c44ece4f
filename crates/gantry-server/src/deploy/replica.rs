//! One model-server replica: a least-privilege container whose network namespace holds
//! nothing but `lo`, and the control plane's way into it.
//!
//! The replica's server listens on 127.0.0.1:PORT *inside* its own namespace. Once runc has
//! created that namespace (OCI `createRuntime` hook, the same `gantry hook netns-ready` the
//! tracking relay uses) a dedicated thread joins it with setns and stays there; every new
//! connection to the replica is opened by that thread, so the socket lives in the replica's
//! namespace while the control plane drives it from the host. The replica has no route to
//! anything — serving is its only network.
//!
//! A supervisor task keeps the replica alive: it (re)starts the container, waits for
//! `/v2/health/ready`, health-checks it, and restarts it with backoff when it exits or stops
//! answering.
//!
//! On a server whose runtime is Kubernetes the replica is a Deployment of one pod, a Service
//! and a NetworkPolicy instead (`gantry_kube::replica`, `run_once_kube`): the control plane
//! connects to the Service, and the same supervisor health-checks and restarts it.

use bytes::Bytes;
use gantry_engine::Engine;
use gantry_kube::StepRuntime;
use gantry_runtime::{BindMount, Runtime, StepRequest};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

/// How long a starting replica may take to answer `/v2/health/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Health checks of a ready replica.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Failed checks in a row after which a replica is restarted.
const HEALTH_FAILURES: u32 = 3;
/// Longest wait between restarts of a crashing replica.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Idle connections kept per replica.
const POOL_MAX: usize = 64;

/// What a replica runs: the container, minus what changes per start.
#[derive(Clone, Debug)]
pub struct ReplicaTemplate {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub mounts: Vec<BindMount>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// The port the server listens on inside the replica.
    pub port: u16,
    /// `gantry hook netns-ready` is run from this binary.
    pub hook_exe: PathBuf,
    /// Scratch directory for the hook socket.
    pub dir: PathBuf,
    /// Whose replica this is, for usage records (`replica_usage`): each container life is
    /// recorded with its requests, start, last-seen time, end and what it used.
    pub owner: Option<ReplicaOwner>,
    /// The replica as a Kubernetes pod, when the server's runtime is a cluster.
    pub remote: Option<RemoteReplica>,
}

/// What a replica on Kubernetes runs (see `gantry_kube::replica`).
#[derive(Clone, Debug)]
pub struct RemoteReplica {
    /// The server's image by digest; `None`: the built-in image.
    pub image: Option<String>,
    /// The server's argv, listening on every address of the pod.
    pub args: Vec<String>,
    /// The model, `(path under /gantry/inputs, digest)`, fetched by the pod's init container.
    pub model: Option<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct ReplicaOwner {
    pub deployment: String,
    pub model: String,
    pub version: i64,
}

/// How often a running replica's `last_seen_ms` moves.
const SEEN_INTERVAL: Duration = Duration::from_secs(30);

/// One replica life in `replica_usage`: started with its requests, seen every
/// [`SEEN_INTERVAL`] while it runs, stopped with what it used (best effort: a store error is
/// logged, never stops the replica).
struct UsageRecord {
    store: gantry_store::Store,
    id: String,
    seen: tokio::task::JoinHandle<()>,
}

impl UsageRecord {
    async fn start(
        store: &gantry_store::Store,
        id: &str,
        owner: ReplicaOwner,
        (cpu_millis, memory_bytes, gpus): (u64, u64, usize),
    ) -> UsageRecord {
        let record = gantry_store::ReplicaUsage {
            id: id.to_string(),
            deployment: owner.deployment,
            project: None,
            model: owner.model,
            version: owner.version,
            requested_cpu_millis: cpu_millis as i64,
            requested_memory_bytes: memory_bytes as i64,
            requested_gpu: gpus as i64,
            gpu_model: None,
            started_at_ms: gantry_engine::now_ms(),
        };
        if let Err(e) = store.replica_started(&record).await {
            tracing::warn!(replica = %id, "recording the replica's usage: {e}");
        }
        let seen = {
            let (store, id) = (store.clone(), id.to_string());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SEEN_INTERVAL);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let _ = store
                        .replicas_seen(std::slice::from_ref(&id), gantry_engine::now_ms())
                        .await;
                }
            })
        };
        UsageRecord {
            store: store.clone(),
            id: id.to_string(),
            seen,
        }
    }

    /// `peak` / `cpu`: what the life used, when the runtime measured it.
    async fn stop(self, peak: Option<i64>, cpu: Option<i64>) {
        self.seen.abort();
        if let Err(e) = self
            .store
            .replica_stopped(&self.id, gantry_engine::now_ms(), peak, cpu)
            .await
        {
            tracing::warn!(replica = %self.id, "recording the replica's end: {e}");
        }
    }
}

/// Runs one container life and records it in `replica_usage`.
async fn run_recorded(
    engine: Engine<StepRuntime>,
    req: StepRequest,
    log_tx: tokio::sync::mpsc::Sender<gantry_runtime::LogBlock>,
    owner: Option<ReplicaOwner>,
) -> Result<gantry_runtime::StepOutcome, gantry_runtime::RuntimeError> {
    let Some(owner) = owner else {
        return engine.runtime().run(req, log_tx).await;
    };
    let requests = (req.cpu_millis, req.memory_bytes, req.gpu_devices.len());
    let record = UsageRecord::start(engine.store(), &req.id, owner, requests).await;
    let outcome = engine.runtime().run(req, log_tx).await;
    let (peak, cpu) = match &outcome {
        Ok(o) => (
            Some(o.usage.peak_memory_bytes as i64),
            Some(o.usage.cpu_micros as i64),
        ),
        Err(_) => (None, None),
    };
    record.stop(peak, cpu).await;
    outcome
}

/// An error talking to a replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("replica {0} is not running")]
    NotRunning(String),
    #[error("connecting to replica {id}: {message}")]
    Connect { id: String, message: String },
    #[error("replica {id}: {message}")]
    Http { id: String, message: String },
}

/// The answer of a replica, fully read.
pub struct ReplicaResponse {
    pub status: u16,
    pub content_type: Option<String>,
    /// `Inference-Header-Content-Length` of an answer with binary outputs.
    pub header_length: Option<String>,
    pub body: Bytes,
}

/// The request headers forwarded to a replica.
#[derive(Clone, Copy, Default)]
pub struct Forwarded<'a> {
    pub content_type: Option<&'a str>,
    /// `Inference-Header-Content-Length` of a request with binary inputs.
    pub header_length: Option<&'a str>,
}

type ConnectRequest = (
    u16,
    tokio::sync::oneshot::Sender<std::io::Result<std::net::TcpStream>>,
);

/// How the control plane opens a connection to a replica.
enum Connector {
    /// A thread inside the replica's network namespace (see the module docs).
    Netns(std::sync::mpsc::Sender<ConnectRequest>),
    /// A Kubernetes replica's Service (`host:port`).
    Tcp(String),
}

impl Connector {
    fn spawn(pid: u32) -> Result<Connector, String> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|e| format!("opening the network namespace of pid {pid}: {e}"))?;
        let (tx, rx) = std::sync::mpsc::channel::<ConnectRequest>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("netns-{pid}"))
            .spawn(move || {
                if let Err(e) = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET) {
                    let _ = ready_tx.send(Err(format!("joining the replica's namespace: {e}")));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                while let Ok((port, reply)) = rx.recv() {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    let conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                        .and_then(|s| {
                            s.set_nodelay(true)?;
                            s.set_nonblocking(true)?;
                            Ok(s)
                        });
                    let _ = reply.send(conn);
                }
            })
            .map_err(|e| format!("starting the connector thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "the connector thread ended".to_string())??;
        Ok(Connector::Netns(tx))
    }

    async fn connect(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let tx = match self {
            Connector::Netns(tx) => tx,
            Connector::Tcp(address) => {
                let stream = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(address.as_str()),
                )
                .await
                .map_err(|_| {
                    std::io::Error::other(format!("connecting to {address}: timed out"))
                })??;
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
        };
        let (tx_reply, rx) = tokio::sync::oneshot::channel();
        tx.send((port, tx_reply))
            .map_err(|_| std::io::Error::other("the replica's connector is gone"))?;
        let std = rx
            .await
            .map_err(|_| std::io::Error::other("the replica's connector is gone"))??;
        tokio::net::TcpStream::from_std(std)
    }
}

/// A running (or restarting) replica; shared by the router and its supervisor.
pub struct Replica {
    pub id: String,
    port: u16,
    ready: AtomicBool,
    restarts: AtomicU32,
    connector: Mutex<Option<Arc<Connector>>>,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    last_error: Mutex<Option<String>>,
}

impl Replica {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, e: impl Into<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e.into());
        }
    }

    fn connector(&self) -> Result<Arc<Connector>, ReplicaError> {
        self.connector
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| ReplicaError::NotRunning(self.id.clone()))
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut pool = self.pool.lock().ok()?;
        while let Some(s) = pool.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn give_back(&self, s: SendRequest<Full<Bytes>>) {
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOL_MAX
            && !s.is_closed()
        {
            pool.push(s);
        }
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, ReplicaError> {
        let connector = self.connector()?;
        let stream = connector
            .connect(self.port)
            .await
            .map_err(|e| ReplicaError::Connect {
                id: self.id.clone(),
                message: e.to_string(),
            })?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ReplicaError::Connect {
                id: self.id.clone(),
                message: e.to_string(),
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// Sends one request and reads the whole answer. A request that fails on a pooled
    /// connection (closed or reset by the peer while idle) is sent once more on a fresh one:
    /// model servers answer inference without side effects, so a repeat is harmless.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        headers: Forwarded<'_>,
        body: Bytes,
    ) -> Result<ReplicaResponse, ReplicaError> {
        if let Some(pooled) = self.take_idle() {
            match self.exchange(pooled, &method, path, headers, &body).await {
                Ok(r) => return Ok(r),
                Err(e) => tracing::debug!("{e}; retrying on a fresh connection"),
            }
        }
        let fresh = self.open().await?;
        self.exchange(fresh, &method, path, headers, &body).await
    }

    async fn exchange(
        &self,
        mut sender: SendRequest<Full<Bytes>>,
        method: &hyper::Method,
        path: &str,
        headers: Forwarded<'_>,
        body: &Bytes,
    ) -> Result<ReplicaResponse, ReplicaError> {
        let http = |message: String| ReplicaError::Http {
            id: self.id.clone(),
            message,
        };
        sender
            .ready()
            .await
            .map_err(|e| http(format!("the connection closed: {e}")))?;
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, "replica");
        if let Some(ct) = headers.content_type {
            request = request.header(hyper::header::CONTENT_TYPE, ct);
        }
        if let Some(n) = headers.header_length {
            request = request.header(gantry_serve::binary::HEADER_LENGTH, n);
        }
        let request = request
            .body(Full::new(body.clone()))
            .map_err(|e| http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_length = response
            .headers()
            .get(gantry_serve::binary::HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http(format!("reading the answer: {e}")))?
            .to_bytes();
        self.give_back(sender);
        Ok(ReplicaResponse {
            status,
            content_type,
            header_length,
            body,
        })
    }

    async fn healthy(&self) -> bool {
        matches!(
            tokio::time::timeout(
                Duration::from_secs(2),
                self.send(
                    hyper::Method::GET,
                    "/v2/health/ready",
                    Forwarded::default(),
                    Bytes::new()
                )
            )
            .await,
            Ok(Ok(ReplicaResponse { status: 200, .. }))
        )
    }

    fn reset(&self) {
        self.ready.store(false, Ordering::Release);
        if let Ok(mut c) = self.connector.lock() {
            *c = None;
        }
        if let Ok(mut p) = self.pool.lock() {
            p.clear();
        }
    }
}

/// Starts a replica's supervisor; it runs until `stop` fires (then the container is killed).
pub fn start(
    engine: Engine<StepRuntime>,
    template: ReplicaTemplate,
    id: String,
    stop: CancellationToken,
) -> (Arc<Replica>, tokio::task::JoinHandle<()>) {
    let replica = Arc::new(Replica {
        id,
        port: template.port,
        ready: AtomicBool::new(false),
        restarts: AtomicU32::new(0),
        connector: Mutex::new(None),
        pool: Mutex::new(Vec::new()),
        last_error: Mutex::new(None),
    });
    let task = tokio::spawn(supervise(engine, template, Arc::clone(&replica), stop));
    (replica, task)
}

async fn supervise(
    engine: Engine<StepRuntime>,
    template: ReplicaTemplate,
    replica: Arc<Replica>,
    stop: CancellationToken,
) {
    let mut attempt: u32 = 0;
    while !stop.is_cancelled() {
        attempt += 1;
        let started = std::time::Instant::now();
        if let Err(e) = run_once(&engine, &template, &replica, attempt, &stop).await {
            tracing::warn!(replica = %replica.id, "replica failed: {e}");
            replica.set_error(e);
        }
        replica.reset();
        if stop.is_cancelled() {
            break;
        }
        replica.restarts.fetch_add(1, Ordering::Relaxed);
        // A replica that ran for a while before failing starts over without delay.
        if started.elapsed() > Duration::from_secs(60) {
            attempt = 1;
        }
        let backoff =
            Duration::from_millis(250 * 2u64.saturating_pow(attempt.min(8))).min(MAX_BACKOFF);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// One life of the container: start, wait for readiness, health-check until it ends.
async fn run_once(
    engine: &Engine<StepRuntime>,
    t: &ReplicaTemplate,
    replica: &Arc<Replica>,
    attempt: u32,
    stop: &CancellationToken,
) -> Result<(), String> {
    if let StepRuntime::Kubernetes(k) = engine.runtime() {
        return run_once_kube(k, engine.store(), t, replica, attempt, stop).await;
    }
    tokio::fs::create_dir_all(&t.dir)
        .await
        .map_err(|e| format!("creating {}: {e}", t.dir.display()))?;
    let socket = gantry_engine::hook_socket(&t.dir, &format!("{}-{attempt}", replica.id))?;
    let _ = tokio::fs::remove_file(&socket).await;
    let hooks =
        UnixListener::bind(&socket).map_err(|e| format!("binding {}: {e}", socket.display()))?;
    // One hook call per container life: the name goes as soon as it is answered (or not).
    let remove_socket = || {
        let _ = std::fs::remove_file(&socket);
    };
    let kill = stop.child_token();
    let req = StepRequest {
        id: format!("{}-{attempt}", replica.id),
        rootfs: t.rootfs.clone(),
        args: t.args.clone(),
        env: t.env.clone(),
        cwd: "/".into(),
        uid: t.uid,
        gid: t.gid,
        mounts: t.mounts.clone(),
        network: false,
        cpu_millis: t.cpu_millis,
        memory_bytes: t.memory_bytes,
        pids_limit: 256,
        gpu_devices: Vec::new(),
        timeout: None,
        // `gantry serve` drains its connections on SIGTERM.
        stop_grace: std::time::Duration::from_secs(5),
        cancel: kill.clone(),
        create_runtime_hook: Some(vec![
            t.hook_exe.to_string_lossy().into_owned(),
            "hook".into(),
            "netns-ready".into(),
            "--socket".into(),
            socket.to_string_lossy().into_owned(),
        ]),
        remote: None,
    };
    let (log_tx, mut log_rx) = tokio::sync::mpsc::channel::<gantry_runtime::LogBlock>(64);
    let id = replica.id.clone();
    let logs = tokio::spawn(async move {
        let mut last = std::collections::VecDeque::new();
        while let Some(block) = log_rx.recv().await {
            for line in block.lines() {
                tracing::debug!(replica = %id, "{line}");
                if last.len() == 20 {
                    last.pop_front();
                }
                last.push_back(line.to_owned());
            }
        }
        last.into_iter().collect::<Vec<_>>().join("\n")
    });
    let mut container = tokio::spawn(run_recorded(engine.clone(), req, log_tx, t.owner.clone()));

    // The hook call arrives once the namespace exists; the container may also fail first.
    // `biased`: when the replica is being stopped, its container's end is not a failure.
    let pid = tokio::select! {
        biased;
        _ = stop.cancelled() => {
            remove_socket();
            kill.cancel();
            let _ = container.await;
            return Ok(());
        }
        accepted = hooks.accept() => {
            remove_socket();
            let (conn, _) = accepted.map_err(|e| format!("accepting the hook: {e}"))?;
            answer_hook(conn, replica).await?
        }
        ended = &mut container => {
            remove_socket();
            let tail = logs.await.unwrap_or_default();
            return Err(format!("the container ended before it started serving: {}; last output:\n{tail}", describe(ended)));
        }
    };
    tracing::debug!(replica = %replica.id, pid, "replica namespace ready");

    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut failures = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                replica.ready.store(false, Ordering::Release);
                kill.cancel();
                let _ = container.await;
                return Ok(());
            }
            ended = &mut container => {
                replica.reset();
                let tail = logs.await.unwrap_or_default();
                return Err(format!("the model server exited: {}; last output:\n{tail}", describe(ended)));
            }
            _ = tokio::time::sleep(if replica.is_ready() { HEALTH_INTERVAL } else { Duration::from_millis(100) }) => {}
        }
        let healthy = replica.healthy().await;
        if healthy {
            failures = 0;
            if !replica.is_ready() {
                tracing::info!(replica = %replica.id, "replica ready");
                replica.ready.store(true, Ordering::Release);
            }
        } else if replica.is_ready() {
            failures += 1;
            if failures >= HEALTH_FAILURES {
                replica.reset();
                kill.cancel();
                let _ = container.await;
                return Err(format!(
                    "{HEALTH_FAILURES} health checks failed in a row; restarting"
                ));
            }
        } else if tokio::time::Instant::now() > deadline {
            kill.cancel();
            let _ = container.await;
            let tail = logs.await.unwrap_or_default();
            return Err(format!(
                "not ready after {}s; last output:\n{tail}",
                READY_TIMEOUT.as_secs()
            ));
        }
    }
}

/// How long a replica on a cluster may take to become ready (image pulls, scheduling).
const KUBE_READY_TIMEOUT: Duration = Duration::from_secs(600);

/// One life of a replica on Kubernetes: its Deployment, Service and NetworkPolicy are made,
/// then it is health-checked through its Service until it is stopped or fails.
async fn run_once_kube(
    k: &gantry_kube::KubeRuntime,
    store: &gantry_store::Store,
    t: &ReplicaTemplate,
    replica: &Arc<Replica>,
    attempt: u32,
    stop: &CancellationToken,
) -> Result<(), String> {
    let remote = t
        .remote
        .as_ref()
        .ok_or("this replica has no Kubernetes form (it was resolved for a local runtime)")?;
    let env = gantry_kube::pod::env_pairs(&t.env);
    let deployment = t
        .owner
        .as_ref()
        .map(|o| o.deployment.clone())
        .unwrap_or_else(|| replica.id.clone());
    let pod = k.replica_pod(
        &replica.id,
        &deployment,
        remote.image.as_deref(),
        remote.args.clone(),
        env,
        (t.uid, t.gid),
        (t.cpu_millis, t.memory_bytes),
        t.port,
        remote.model.clone(),
    );
    let address = k.start_replica(&pod).await?;
    if let Ok(mut c) = replica.connector.lock() {
        *c = Some(Arc::new(Connector::Tcp(address)));
    }
    // Its requests and time (the kubelet's usage figures are not read back).
    let record = match t.owner.clone() {
        Some(owner) => Some(
            UsageRecord::start(
                store,
                &format!("{}-{attempt}", replica.id),
                owner,
                (t.cpu_millis, t.memory_bytes, 0),
            )
            .await,
        ),
        None => None,
    };
    let result = watch_kube_replica(k, &pod, replica, stop).await;
    if let Some(r) = record {
        r.stop(None, None).await;
    }
    result
}

/// Health-checks a replica on the cluster until it is stopped (`Ok`) or fails.
async fn watch_kube_replica(
    k: &gantry_kube::KubeRuntime,
    pod: &gantry_kube::replica::ReplicaPod,
    replica: &Arc<Replica>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + KUBE_READY_TIMEOUT;
    let mut failures = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                replica.ready.store(false, Ordering::Release);
                k.stop_replica(pod).await;
                return Ok(());
            }
            _ = tokio::time::sleep(if replica.is_ready() { HEALTH_INTERVAL } else { Duration::from_millis(500) }) => {}
        }
        if replica.healthy().await {
            failures = 0;
            if !replica.is_ready() {
                tracing::info!(replica = %replica.id, "replica ready");
                replica.ready.store(true, Ordering::Release);
            }
            continue;
        }
        if replica.is_ready() {
            failures += 1;
            if failures >= HEALTH_FAILURES {
                replica.reset();
                k.stop_replica(pod).await;
                return Err(format!(
                    "{HEALTH_FAILURES} health checks failed in a row; restarting"
                ));
            }
        } else if let Some(problem) = k.replica_problem(pod).await {
            k.stop_replica(pod).await;
            return Err(problem);
        } else if tokio::time::Instant::now() > deadline {
            k.stop_replica(pod).await;
            return Err(format!(
                "not ready after {}s on the cluster",
                KUBE_READY_TIMEOUT.as_secs()
            ));
        }
    }
}

fn describe(
    ended: Result<
        Result<gantry_runtime::StepOutcome, gantry_runtime::RuntimeError>,
        tokio::task::JoinError,
    >,
) -> String {
    match ended {
        Ok(Ok(o)) => match (o.exit_code, o.signal) {
            (Some(code), _) => format!("exit code {code} ({:?})", o.termination),
            (None, Some(sig)) => format!("killed by signal {sig} ({:?})", o.termination),
            _ => format!("{:?}", o.termination),
        },
        Ok(Err(e)) => format!("the runtime failed: {e}"),
        Err(e) => format!("the container task failed: {e}"),
    }
}

async fn answer_hook(conn: tokio::net::UnixStream, replica: &Replica) -> Result<u32, String> {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading the hook: {e}"))?;
    let opened = match line.trim().parse::<u32>() {
        Ok(pid) => tokio::task::spawn_blocking(move || Connector::spawn(pid).map(|c| (pid, c)))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r),
        Err(_) => Err(format!("expected a pid, got {line:?}")),
    };
    match opened {
        Ok((pid, connector)) => {
            if let Ok(mut c) = replica.connector.lock() {
                *c = Some(Arc::new(connector));
            }
            let _ = write.write_all(b"ok\n").await;
            Ok(pid)
        }
        Err(e) => {
            let _ = write.write_all(format!("error: {e}\n").as_bytes()).await;
            Err(e)
        }
    }
}
