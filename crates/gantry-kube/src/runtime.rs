//! [`KubeRuntime`]: the engine's [`Runtime`] on a Kubernetes cluster.
//!
//! One `batch/v1` Job per step attempt (see [`crate::job`]), in one namespace. The runtime
//! creates the step's NetworkPolicy and Job, follows the Job's pod (a pod a drain evicts is
//! replaced by Kubernetes and followed in turn), streams the step container's log, and reads
//! how the step ended from the container's state and the wrapper's report in its termination
//! message. Cancellation and the runtime's own deadline delete the Job (the pod gets SIGTERM
//! and its grace period). Pods never reach the metadata database; outputs come back as digests.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt};
use gantry_runtime::{
    LogBlock, LogStream, RemoteArtifacts, RemoteStep, Runtime, RuntimeError, StepOutcome,
    StepRequest, Termination, Usage,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ContainerStateTerminated, ContainerStatus, Pod, Service, Toleration,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use tokio::sync::mpsc;

use crate::contract::{PlannedInput, StepPlan, StepReport, VERSION};
use crate::job::{
    ANNOTATION_OWNER, ArtifactEgress, GpuRequest, LABEL_ATTEMPT, LABEL_MANAGED_BY, LABEL_RUN,
    LABEL_STEP, MANAGED_BY, STEP_CONTAINER, StepJob,
};
use crate::names::label_value;
use crate::replica::ReplicaPod;

/// How long the API server may fail to answer before the attempt is given up.
const API_PATIENCE: Duration = Duration::from_secs(300);

/// Tells whether the Gantry process that wrote an owner string may still run (the engine's
/// host, boot and process identity); Jobs of dead owners are removed by `reap_leftovers`.
pub type OwnerAlive = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How the runtime reaches and uses the cluster.
#[derive(Clone)]
pub struct KubeConfig {
    pub namespace: String,
    /// The built-in image (static `gantry`), by digest: runs the fetch init container and
    /// gives the wrapper its binary.
    pub helper_image: String,
    /// The artifact store the pods read and write (`s3://bucket/prefix`): the engine's own.
    pub artifacts: String,
    /// A Secret in the namespace with the artifact store's credentials as environment keys.
    pub artifacts_secret: Option<String>,
    pub image_pull_secrets: Vec<String>,
    /// Where a step without network may still connect (the artifact store).
    pub egress: ArtifactEgress,
    /// Labels every step's node must have (e.g. a GPU node pool).
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// How long a finished Job stays for inspection (`ttlSecondsAfterFinished`).
    pub ttl_after_finished: Duration,
    /// This process, as [`OwnerAlive`] reads it.
    pub owner: String,
    pub owner_alive: OwnerAlive,
    /// How often the pod's status is read.
    pub poll: Duration,
    /// How long a pod may stay unschedulable before the attempt fails saying why.
    pub unschedulable_timeout: Duration,
    /// How long after a step's timeout and grace (from the container's start) the runtime
    /// deletes a Job whose wrapper has not ended it.
    pub deadline_slack: Duration,
    /// Where model replicas are reached instead of their Service's cluster DNS name
    /// (`host:port`): for a control plane outside the cluster behind a proxy, and tests.
    pub replica_address: Option<String>,
}

impl std::fmt::Debug for KubeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeConfig")
            .field("namespace", &self.namespace)
            .field("helper_image", &self.helper_image)
            .field("artifacts", &self.artifacts)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Runs steps as Kubernetes Jobs.
#[derive(Clone)]
pub struct KubeRuntime {
    client: kube::Client,
    cfg: Arc<KubeConfig>,
}

impl KubeRuntime {
    pub fn new(client: kube::Client, cfg: KubeConfig) -> KubeRuntime {
        KubeRuntime {
            client,
            cfg: Arc::new(cfg),
        }
    }

    /// A client from the usual places: `KUBECONFIG` or `~/.kube/config`, else the pod's
    /// in-cluster service account.
    pub async fn connect(cfg: KubeConfig) -> Result<KubeRuntime, RuntimeError> {
        let client =
            kube::Client::try_default()
                .await
                .map_err(|e| RuntimeError::InvalidConfig {
                    reason: format!(
                        "cannot reach Kubernetes (kubeconfig or in-cluster service account): {e}"
                    ),
                })?;
        Ok(KubeRuntime::new(client, cfg))
    }

    pub fn config(&self) -> &KubeConfig {
        &self.cfg
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    fn policies(&self) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    /// The Job description of one attempt (pure; what `run` creates).
    pub fn step_job(&self, req: &StepRequest, remote: &RemoteStep) -> StepJob {
        let cfg = &self.cfg;
        let env = crate::pod::env_pairs(&req.env);
        StepJob {
            namespace: cfg.namespace.clone(),
            id: req.id.clone(),
            run_id: remote.run_id.clone(),
            step: remote.step.clone(),
            attempt: remote.attempt,
            owner: cfg.owner.clone(),
            image: if remote.builtin {
                cfg.helper_image.clone()
            } else {
                remote.image.clone()
            },
            helper_image: cfg.helper_image.clone(),
            args: req.args.clone(),
            env,
            working_dir: req.cwd.clone(),
            uid: req.uid,
            gid: req.gid,
            cpu_millis: req.cpu_millis,
            memory_bytes: req.memory_bytes,
            gpu: (remote.gpu > 0)
                .then(|| GpuRequest::for_model(remote.gpu_model.as_deref(), remote.gpu)),
            // The runtime's settings, then the step's own (a step's label wins).
            node_selector: cfg
                .node_selector
                .iter()
                .chain(&remote.node_selector)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tolerations: cfg
                .tolerations
                .iter()
                .cloned()
                .chain(
                    remote
                        .tolerations
                        .iter()
                        .filter_map(|t| serde_json::from_value::<Toleration>(t.clone()).ok()),
                )
                .collect(),
            timeout: req.timeout,
            stop_grace: req.stop_grace,
            ttl_after_finished: cfg.ttl_after_finished,
            image_pull_secrets: cfg.image_pull_secrets.clone(),
            artifacts_secret: cfg.artifacts_secret.clone(),
            plan: StepPlan {
                v: VERSION,
                artifacts: cfg.artifacts.clone(),
                inputs: remote
                    .inputs
                    .iter()
                    .map(|(path, digest)| PlannedInput {
                        path: path.clone(),
                        digest: digest.clone(),
                    })
                    .collect(),
                outputs: remote.outputs.clone(),
                params: remote.params.clone(),
                report: None,
            },
            network: req.network,
            egress: cfg.egress.clone(),
        }
    }

    fn invalid(req: &StepRequest, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::InvalidRequest {
            id: req.id.clone(),
            reason: reason.into(),
        }
    }

    fn api_error(req: &StepRequest, what: &str, e: kube::Error) -> RuntimeError {
        RuntimeError::StartFailed {
            binary: "kubernetes".into(),
            id: req.id.clone(),
            stderr: format!("{what}: {e}"),
        }
    }

    fn failed_start(req: &StepRequest, message: String) -> RuntimeError {
        RuntimeError::StartFailed {
            binary: "kubernetes".into(),
            id: req.id.clone(),
            stderr: message,
        }
    }

    /// Deletes the attempt's Job (its pods get their grace period) and NetworkPolicy.
    async fn remove(&self, name: &str, grace: Option<Duration>) {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            grace_period_seconds: grace.map(|g| g.as_secs().max(1) as u32),
            ..Default::default()
        };
        if let Err(e) = self.jobs().delete(name, &dp).await
            && !is_not_found(&e)
        {
            tracing::warn!(job = name, "deleting the Job: {e}");
        }
        self.remove_policy(name).await;
    }

    async fn remove_policy(&self, name: &str) {
        if let Err(e) = self.policies().delete(name, &DeleteParams::default()).await
            && !is_not_found(&e)
        {
            tracing::warn!(policy = name, "deleting the NetworkPolicy: {e}");
        }
    }

    async fn create(&self, req: &StepRequest, sj: &StepJob) -> Result<(), RuntimeError> {
        let job = sj.job().map_err(|e| Self::invalid(req, e))?;
        let name = sj.name();
        let pp = PostParams::default();
        // A Job of the same attempt left by an earlier process (its owner died before it
        // could clean up) is replaced: the attempt starts over.
        if let Some(policy) = sj.network_policy() {
            match self.policies().create(&pp, &policy).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {
                    self.remove_policy(&name).await;
                    self.policies()
                        .create(&pp, &policy)
                        .await
                        .map_err(|e| Self::api_error(req, "creating the NetworkPolicy", e))?;
                }
                Err(e) => return Err(Self::api_error(req, "creating the NetworkPolicy", e)),
            }
        }
        match self.jobs().create(&pp, &job).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => {
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    ..Default::default()
                };
                let _ = self.jobs().delete(&name, &dp).await;
                for _ in 0..50 {
                    match self.jobs().get_opt(&name).await {
                        Ok(None) => break,
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                self.jobs()
                    .create(&pp, &job)
                    .await
                    .map(|_| ())
                    .map_err(|e| Self::api_error(req, "creating the Job", e))
            }
            Err(e) => {
                self.remove_policy(&name).await;
                Err(Self::api_error(req, "creating the Job", e))
            }
        }
    }

    async fn run_job(
        &self,
        req: StepRequest,
        logs: mpsc::Sender<LogBlock>,
    ) -> Result<StepOutcome, RuntimeError> {
        let remote = req
            .remote
            .clone()
            .ok_or_else(|| Self::invalid(&req, "the Kubernetes runtime needs the step's image reference and artifacts (StepRequest::remote)"))?;
        if req.uid == 0 {
            return Err(Self::invalid(
                &req,
                "steps on Kubernetes run as a non-root user (runAsNonRoot); uid 0 was asked",
            ));
        }
        let sj = self.step_job(&req, &remote);
        sj.plan.check().map_err(|e| Self::invalid(&req, e))?;
        let name = sj.name();
        let selector = format!(
            "{LABEL_RUN}={},{LABEL_STEP}={},{LABEL_ATTEMPT}={}",
            label_value(&remote.run_id),
            label_value(&remote.step),
            remote.attempt
        );
        if req.cancel.is_cancelled() {
            return Ok(outcome(
                Termination::Cancelled,
                None,
                None,
                Usage::default(),
                None,
            ));
        }
        self.create(&req, &sj).await?;
        let started = Instant::now();
        // The wrapper enforces the timeout in the pod, counted from the command's start as on
        // one machine; this is the line behind it, counted from when the step container is
        // first seen running (scheduling and image pulls do not count).
        let mut hard_deadline: Option<Instant> = None;
        let mut follow = Follow::new(logs);
        let mut disrupted: HashSet<String> = HashSet::new();
        let mut pending_since: Option<Instant> = None;
        let mut said = String::new();
        let mut api_down_since: Option<Instant> = None;
        let result = loop {
            tokio::select! {
                _ = req.cancel.cancelled() => {
                    self.remove(&name, Some(req.stop_grace)).await;
                    follow.finish().await;
                    break Ok(outcome(Termination::Cancelled, None, None, usage_since(started), None));
                }
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
            if hard_deadline.is_some_and(|d| Instant::now() >= d) {
                self.remove(&name, Some(req.stop_grace)).await;
                follow.finish().await;
                break Ok(outcome(
                    Termination::TimedOut,
                    None,
                    None,
                    usage_since(started),
                    None,
                ));
            }
            let pods = match self
                .pods()
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(list) => {
                    api_down_since = None;
                    list.items
                }
                Err(e) => {
                    tracing::warn!(job = %name, "reading the step's pods: {e}");
                    let since = *api_down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= API_PATIENCE {
                        self.remove(&name, Some(req.stop_grace)).await;
                        follow.finish().await;
                        break Err(Self::failed_start(
                            &req,
                            format!(
                                "the Kubernetes API has not answered for {}s: {e}",
                                API_PATIENCE.as_secs()
                            ),
                        ));
                    }
                    continue;
                }
            };
            // Pods a drain or preemption ended are replaced by the Job controller (the pod
            // failure policy ignores them): say so once and follow the newest other one.
            for pod in &pods {
                if let Some(why) = disruption(pod)
                    && disrupted.insert(pod_name(pod))
                {
                    follow.stop().await;
                    follow
                        .note(&format!(
                            "pod {} was stopped by the cluster ({why}); Kubernetes starts another",
                            pod_name(pod)
                        ))
                        .await;
                }
            }
            let current = pods
                .iter()
                .filter(|p| !disrupted.contains(&pod_name(p)))
                .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
            let Some(pod) = current else {
                // No pod yet: the Job controller has not made one, or the Job failed without
                // one (its deadline passed while the pod was being replaced).
                if let Ok(Some(job)) = self.jobs().get_opt(&name).await
                    && let Some(reason) = job_failed(&job)
                {
                    follow.finish().await;
                    break if reason == "DeadlineExceeded" {
                        Ok(outcome(
                            Termination::TimedOut,
                            None,
                            None,
                            usage_since(started),
                            None,
                        ))
                    } else {
                        Err(Self::failed_start(
                            &req,
                            format!("the Job failed: {reason}"),
                        ))
                    };
                }
                continue;
            };
            match state_of(pod, STEP_CONTAINER) {
                PodState::Pending(why) => {
                    if why.unschedulable {
                        let since = *pending_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.cfg.unschedulable_timeout {
                            self.remove(&name, None).await;
                            follow.finish().await;
                            break Err(Self::failed_start(
                                &req,
                                format!(
                                    "unschedulable for {}s: {}",
                                    self.cfg.unschedulable_timeout.as_secs(),
                                    why.message
                                ),
                            ));
                        }
                    } else {
                        pending_since = None;
                    }
                    if !why.message.is_empty() && why.message != said {
                        follow.note(&format!("waiting: {}", why.message)).await;
                        said = why.message;
                    }
                }
                PodState::CannotStart(message) => {
                    self.remove(&name, None).await;
                    follow.finish().await;
                    break Err(Self::failed_start(&req, message));
                }
                PodState::FetchFailed(message) => {
                    self.remove(&name, None).await;
                    follow.finish().await;
                    break Err(Self::failed_start(
                        &req,
                        format!("fetching the step's inputs failed: {message}"),
                    ));
                }
                PodState::Running => {
                    if hard_deadline.is_none() {
                        hard_deadline = req
                            .timeout
                            .map(|t| Instant::now() + t + req.stop_grace + self.cfg.deadline_slack);
                    }
                    follow.start(self.pods(), &pod_name(pod), true);
                }
                PodState::Ended(term) => {
                    // A container that ended before the log was followed: read it whole.
                    follow.start(self.pods(), &pod_name(pod), false);
                    follow.finish().await;
                    self.remove_policy(&name).await;
                    let failed = pod.status.as_ref().and_then(|s| s.reason.clone());
                    break Ok(ended(&term, failed.as_deref(), started));
                }
            }
        };
        if result.is_err() {
            self.remove_policy(&name).await;
        }
        result
    }

    /// A replica's pod description with this runtime's settings filled in.
    #[allow(clippy::too_many_arguments)]
    pub fn replica_pod(
        &self,
        id: &str,
        deployment: &str,
        image: Option<&str>,
        args: Vec<String>,
        env: Vec<(String, String)>,
        (uid, gid): (u32, u32),
        (cpu_millis, memory_bytes): (u64, u64),
        port: u16,
        model: Option<(String, String)>,
    ) -> ReplicaPod {
        let cfg = &self.cfg;
        ReplicaPod {
            namespace: cfg.namespace.clone(),
            id: id.to_string(),
            deployment: deployment.to_string(),
            owner: cfg.owner.clone(),
            image: image.unwrap_or(&cfg.helper_image).to_string(),
            helper_image: cfg.helper_image.clone(),
            args,
            env,
            uid,
            gid,
            cpu_millis,
            memory_bytes,
            port,
            model,
            artifacts: cfg.artifacts.clone(),
            artifacts_secret: cfg.artifacts_secret.clone(),
            image_pull_secrets: cfg.image_pull_secrets.clone(),
            node_selector: cfg.node_selector.clone(),
            tolerations: cfg.tolerations.clone(),
        }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    /// Creates the replica's NetworkPolicy, Service and Deployment (replacing any of the same
    /// name) and returns where the control plane reaches it.
    pub async fn start_replica(&self, pod: &ReplicaPod) -> Result<String, String> {
        let deployment = pod.deployment()?;
        let name = pod.name();
        self.stop_replica(pod).await;
        let pp = PostParams::default();
        let created = async {
            self.policies()
                .create(&pp, &pod.network_policy(&self.cfg.egress))
                .await?;
            self.services().create(&pp, &pod.service()).await?;
            self.deployments().create(&pp, &deployment).await?;
            Ok::<_, kube::Error>(())
        }
        .await;
        if let Err(e) = created {
            self.stop_replica(pod).await;
            return Err(format!("creating replica {name} on Kubernetes: {e}"));
        }
        Ok(self
            .cfg
            .replica_address
            .clone()
            .unwrap_or_else(|| pod.address()))
    }

    /// Why the replica's pod can never become ready as it is (an image that cannot be pulled,
    /// a failed model fetch, a server that keeps crashing), if it cannot; what it waits for
    /// otherwise goes to the log.
    pub async fn replica_problem(&self, pod: &ReplicaPod) -> Option<String> {
        let lp = ListParams::default().labels(&format!(
            "{}={}",
            crate::replica::LABEL_REPLICA,
            label_value(&pod.id)
        ));
        let pods = self.pods().list(&lp).await.ok()?;
        for p in &pods.items {
            match state_of(p, crate::replica::SERVER_CONTAINER) {
                PodState::CannotStart(m) => return Some(m),
                PodState::FetchFailed(m) => return Some(format!("fetching the model failed: {m}")),
                PodState::Pending(w) if w.unschedulable => {
                    tracing::info!(replica = %pod.id, "{}", w.message);
                }
                _ => {}
            }
            let restarts = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.name == crate::replica::SERVER_CONTAINER)
                })
                .map(|c| c.restart_count)
                .unwrap_or(0);
            if restarts >= 3 {
                return Some(format!(
                    "the model server restarted {restarts} times in pod {}",
                    pod_name(p)
                ));
            }
        }
        None
    }

    /// Deletes the replica's Deployment (its pod gets its grace period), Service and policy.
    pub async fn stop_replica(&self, pod: &ReplicaPod) {
        let name = pod.name();
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        for result in [
            self.deployments().delete(&name, &dp).await.map(|_| ()),
            self.services().delete(&name, &dp).await.map(|_| ()),
            self.policies().delete(&name, &dp).await.map(|_| ()),
        ] {
            if let Err(e) = result
                && !is_not_found(&e)
            {
                tracing::warn!(replica = %name, "removing the replica: {e}");
            }
        }
    }

    /// Deletes the Jobs (and NetworkPolicies) of Gantry processes that are gone.
    async fn reap(&self) -> Result<usize, RuntimeError> {
        // Step objects carry the run label; replicas the replica label; the control plane's
        // own objects neither, and they are never touched here.
        let steps =
            ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_RUN}"));
        let replicas = ListParams::default().labels(&format!(
            "{LABEL_MANAGED_BY}={MANAGED_BY},{}",
            crate::replica::LABEL_REPLICA
        ));
        let err = |e: kube::Error| RuntimeError::InvalidConfig {
            reason: format!("listing the namespace's Jobs: {e}"),
        };
        let mut removed = 0;
        let jobs = self.jobs().list(&steps).await.map_err(err)?;
        for job in jobs.items {
            let Some(name) = job.metadata.name.clone() else {
                continue;
            };
            let owner = owner_of(&job.metadata);
            let finished = job_failed(&job).is_some() || job_succeeded(&job);
            if owner != self.cfg.owner && !(self.cfg.owner_alive)(&owner) && !finished {
                self.remove(&name, None).await;
                removed += 1;
            }
        }
        let policies = self.policies().list(&steps).await.map_err(err)?;
        for policy in policies.items {
            let Some(name) = policy.metadata.name.clone() else {
                continue;
            };
            let owner = owner_of(&policy.metadata);
            if owner != self.cfg.owner && !(self.cfg.owner_alive)(&owner) {
                self.remove_policy(&name).await;
            }
        }
        // Replicas of a server that is gone: the next server makes its own.
        let dead = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            let owner = owner_of(meta);
            owner != self.cfg.owner && !(self.cfg.owner_alive)(&owner)
        };
        let err = |e: kube::Error| RuntimeError::InvalidConfig {
            reason: format!("listing the namespace's model replicas: {e}"),
        };
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        for d in self.deployments().list(&replicas).await.map_err(err)?.items {
            if let Some(name) = d.metadata.name.as_deref().filter(|_| dead(&d.metadata)) {
                let _ = self.deployments().delete(name, &dp).await;
                removed += 1;
            }
        }
        for svc in self.services().list(&replicas).await.map_err(err)?.items {
            if let Some(name) = svc.metadata.name.as_deref().filter(|_| dead(&svc.metadata)) {
                let _ = self.services().delete(name, &dp).await;
            }
        }
        for np in self.policies().list(&replicas).await.map_err(err)?.items {
            if let Some(name) = np.metadata.name.as_deref().filter(|_| dead(&np.metadata)) {
                let _ = self.policies().delete(name, &dp).await;
            }
        }
        Ok(removed)
    }
}

impl Runtime for KubeRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn stages_artifacts(&self) -> bool {
        true
    }

    fn run(
        &self,
        req: StepRequest,
        logs: mpsc::Sender<LogBlock>,
    ) -> impl Future<Output = Result<StepOutcome, RuntimeError>> + Send {
        self.run_job(req, logs)
    }

    fn reap_leftovers(&self) -> impl Future<Output = Result<usize, RuntimeError>> + Send {
        self.reap()
    }
}

/// The owner annotation Gantry puts on what it creates ("" when absent).
fn owner_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_OWNER))
        .cloned()
        .unwrap_or_default()
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn usage_since(started: Instant) -> Usage {
    Usage {
        wall_ms: started.elapsed().as_millis() as u64,
        ..Usage::default()
    }
}

fn outcome(
    termination: Termination,
    exit_code: Option<i32>,
    signal: Option<i32>,
    usage: Usage,
    artifacts: Option<RemoteArtifacts>,
) -> StepOutcome {
    StepOutcome {
        exit_code,
        signal,
        termination,
        pids_limit_hit: false,
        usage,
        artifacts,
    }
}

fn condition_true(job: &Job, kind: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_else(|| kind.to_string()))
}

/// The reason of the Job's `Failed` condition.
fn job_failed(job: &Job) -> Option<String> {
    condition_true(job, "Failed")
}

fn job_succeeded(job: &Job) -> bool {
    condition_true(job, "Complete").is_some()
}

/// Why the cluster stopped this pod, when it did (eviction, drain, preemption).
fn disruption(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    if let Some(c) = status.conditions.as_ref().and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    }) {
        return Some(
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "DisruptionTarget".into()),
        );
    }
    (status.reason.as_deref() == Some("Evicted")).then(|| {
        status
            .message
            .clone()
            .unwrap_or_else(|| "evicted".to_string())
    })
}

struct Waiting {
    message: String,
    unschedulable: bool,
}

enum PodState {
    Pending(Waiting),
    /// The pod can never start as it is (image pull error, bad config): say why and stop.
    CannotStart(String),
    FetchFailed(String),
    Running,
    Ended(ContainerStateTerminated),
}

/// Image and configuration errors a pod does not recover from.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn state_of(pod: &Pod, main: &str) -> PodState {
    let Some(status) = pod.status.as_ref() else {
        return PodState::Pending(Waiting {
            message: String::new(),
            unschedulable: false,
        });
    };
    let step = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == main);
    if let Some(term) = step.and_then(terminated) {
        return PodState::Ended(term.clone());
    }
    for init in status.init_container_statuses.iter().flatten() {
        if let Some(t) = terminated(init)
            && t.exit_code != 0
        {
            let message = t
                .message
                .clone()
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "exit code {}{}",
                        t.exit_code,
                        t.reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )
                });
            return PodState::FetchFailed(message.trim().to_string());
        }
    }
    for c in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if FATAL_WAITING.contains(&reason.as_str()) {
                let what = if reason.contains("Image") {
                    format!("image {} cannot be pulled", c.image)
                } else {
                    format!("container {} cannot be created", c.name)
                };
                return PodState::CannotStart(format!(
                    "{what}: {reason}: {}",
                    w.message.clone().unwrap_or_default()
                ));
            }
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        // The pod failed without the step container ending (the deadline stopped it early).
        let reason = status.reason.clone().unwrap_or_else(|| "Failed".into());
        return PodState::Ended(ContainerStateTerminated {
            exit_code: 137,
            reason: Some(reason),
            message: status.message.clone(),
            ..Default::default()
        });
    }
    if step.is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())) {
        return PodState::Running;
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    match unschedulable {
        Some(c) => PodState::Pending(Waiting {
            message: format!("unschedulable: {}", c.message.clone().unwrap_or_default()),
            unschedulable: true,
        }),
        None => PodState::Pending(Waiting {
            message: String::new(),
            unschedulable: false,
        }),
    }
}

fn terminated(c: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    c.state.as_ref()?.terminated.as_ref()
}

/// How the step ended, from its container's final state and the wrapper's report.
fn ended(
    term: &ContainerStateTerminated,
    pod_reason: Option<&str>,
    started: Instant,
) -> StepOutcome {
    let reason = term.reason.as_deref().unwrap_or("");
    let deadline = reason == "DeadlineExceeded" || pod_reason == Some("DeadlineExceeded");
    let report = term.message.as_deref().map(StepReport::parse);
    match report {
        Some(Ok(r)) => {
            // What the container's state adds to the wrapper's own account.
            let termination = if reason == "OOMKilled" {
                Termination::OomKilled
            } else if deadline && !r.oom_killed {
                Termination::TimedOut
            } else {
                r.termination()
            };
            let wall = if r.wall_ms > 0 {
                r.wall_ms
            } else {
                usage_since(started).wall_ms
            };
            StepOutcome {
                exit_code: r.exit_code,
                signal: r.signal,
                termination,
                pids_limit_hit: r.pids_limit_hit,
                usage: Usage {
                    peak_memory_bytes: r.peak_memory_bytes,
                    cpu_micros: r.cpu_micros,
                    wall_ms: wall,
                },
                artifacts: Some(RemoteArtifacts {
                    outputs: r.outputs,
                    metrics: r.metrics,
                    more: r.more,
                    error: r.error,
                }),
            }
        }
        other => {
            // The wrapper itself was killed (the OOM killer chose it, the deadline), or the
            // image's entrypoint never ran it: the container's state is all there is.
            let error = match other {
                Some(Err(e)) => e,
                _ => "the step's pod left no report".to_string(),
            };
            let (exit_code, signal) = if term.exit_code > 128 && term.exit_code < 160 {
                (None, Some(term.exit_code - 128))
            } else {
                (Some(term.exit_code), None)
            };
            let termination = if reason == "OOMKilled" {
                Termination::OomKilled
            } else if deadline {
                Termination::TimedOut
            } else if signal.is_some() {
                Termination::Signaled
            } else {
                Termination::Exited
            };
            StepOutcome {
                exit_code: if termination == Termination::Exited {
                    exit_code
                } else {
                    None
                },
                signal,
                termination,
                pids_limit_hit: false,
                usage: usage_since(started),
                artifacts: Some(RemoteArtifacts {
                    error: Some(error),
                    ..Default::default()
                }),
            }
        }
    }
}

/// The step container's log, streamed into the engine's channel while the pod runs.
struct Follow {
    logs: mpsc::Sender<LogBlock>,
    pod: Option<String>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Follow {
    fn new(logs: mpsc::Sender<LogBlock>) -> Follow {
        Follow {
            logs,
            pod: None,
            task: None,
        }
    }

    /// Starts streaming `pod`'s step log (once per pod); `follow: false` reads what there is.
    fn start(&mut self, pods: Api<Pod>, pod: &str, follow: bool) {
        if self.pod.as_deref() == Some(pod) {
            return;
        }
        self.pod = Some(pod.to_string());
        let logs = self.logs.clone();
        let pod = pod.to_string();
        self.task = Some(tokio::spawn(async move {
            let lp = LogParams {
                container: Some(STEP_CONTAINER.to_string()),
                follow,
                ..Default::default()
            };
            let stream = match pods.log_stream(&pod, &lp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(pod = %pod, "reading the step's log: {e}");
                    return;
                }
            };
            let mut lines = stream.lines().chunks_timeout_like();
            while let Some(batch) = lines.next().await {
                let text = batch.join("\n");
                let block = LogBlock {
                    stream: LogStream::Stdout,
                    lines: batch.len(),
                    text,
                };
                if logs.send(block).await.is_err() {
                    return;
                }
            }
        }));
    }

    /// A line from Gantry itself about the step (waiting reasons, evictions).
    async fn note(&self, line: &str) {
        let _ = self
            .logs
            .send(LogBlock {
                // Not stderr: the step's last stderr line becomes its failure reason.
                stream: LogStream::Stdout,
                text: format!("gantry: {line}"),
                lines: 1,
            })
            .await;
    }

    /// Stops following the current pod (it was replaced).
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.pod = None;
    }

    /// Waits a little for the rest of the log of a container that has ended.
    async fn finish(&mut self) {
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

/// Groups the lines a read delivered into one block (at most 256 lines), so a chatty step
/// costs a few blocks, not one message per line.
trait ChunkLines {
    fn chunks_timeout_like(self) -> futures::stream::BoxStream<'static, Vec<String>>;
}

impl<S> ChunkLines for S
where
    S: futures::Stream<Item = std::io::Result<String>> + Send + 'static,
{
    fn chunks_timeout_like(self) -> futures::stream::BoxStream<'static, Vec<String>> {
        self.take_while(|l| futures::future::ready(l.is_ok()))
            .filter_map(|l| futures::future::ready(l.ok()))
            .ready_chunks(256)
            .boxed()
    }
}
