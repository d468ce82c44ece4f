//! One step attempt as a `batch/v1` Job (and its NetworkPolicy): pure, from a [`StepJob`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, LocalObjectReference, PodSpec, PodTemplateSpec, ResourceRequirements,
    Toleration,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::contract::{PLAN_ENV, StepPlan, WORK_DIR, WRAPPER_BIN};
use crate::names::{dns_label, label_value};
pub use crate::pod::container_security;
use crate::pod::{
    self, dns_egress, egress_to, empty_dir, env_var, mount, pod_security, requests_equal_limits,
};

/// Labels every object Gantry creates carries; the runtime finds its Jobs by them.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "gantry";
pub const LABEL_RUN: &str = "gantry.dev/run";
pub const LABEL_STEP: &str = "gantry.dev/step";
pub const LABEL_ATTEMPT: &str = "gantry.dev/attempt";
/// The Gantry process (host and pid) that created the Job: a restarted server cleans up
/// Jobs whose owner is gone.
pub const LABEL_OWNER: &str = "gantry.dev/owner";
/// The step's name as written (annotations take any text).
pub const ANNOTATION_STEP: &str = "gantry.dev/step-name";
/// The container id the engine gave the attempt.
pub const ANNOTATION_ID: &str = "gantry.dev/id";
/// The owner as the engine wrote it (host, boot, process), which the label only hashes.
pub const ANNOTATION_OWNER: &str = "gantry.dev/owner";

/// What a Job's `activeDeadlineSeconds` adds to the step's timeout and grace.
pub const JOB_DEADLINE_SLACK: Duration = Duration::from_secs(15 * 60);

/// The main container's name (`kubectl logs job/<name> -c step`).
pub const STEP_CONTAINER: &str = "step";
/// The init container that fetches the inputs.
pub const FETCH_CONTAINER: &str = "fetch";

/// Where the built-in image keeps the binary (see the engine's built-in image).
pub const HELPER_BINARY: &str = "/opt/gantry/bin/gantry";

/// A GPU request the Kubernetes way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuRequest {
    /// `nvidia.com/gpu`, or a MIG profile's resource (`nvidia.com/mig-1g.10gb`).
    pub resource: String,
    pub count: u32,
}

impl GpuRequest {
    /// The resource for `gpu: { model: M }`: a MIG profile (`1g.10gb`, `mig-1g.10gb`,
    /// `nvidia.com/mig-1g.10gb`) asks for that MIG resource, anything else for whole GPUs
    /// (the model then goes into the node selector, see [`StepJob::node_selector`]).
    pub fn for_model(model: Option<&str>, count: u32) -> GpuRequest {
        let resource = match model.and_then(gantry_gpu::parse_mig_profile) {
            Some(profile) => format!("nvidia.com/mig-{}", profile.replace('+', ".")),
            None => "nvidia.com/gpu".to_string(),
        };
        GpuRequest { resource, count }
    }
}

/// Where pods may send traffic when the step has no network: the artifact store (and DNS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactEgress {
    /// CIDRs of the artifact store's endpoint (`10.0.3.7/32`); empty: any address, on `ports`.
    pub cidrs: Vec<String>,
    /// TCP ports of the endpoint (443 for AWS S3, 9000 for a MinIO service, …).
    pub ports: Vec<u16>,
}

/// Everything one attempt's Job is made from.
#[derive(Clone, Debug)]
pub struct StepJob {
    pub namespace: String,
    /// The engine's container id for the attempt (`gantry-<run>-<step>-<attempt>`).
    pub id: String,
    pub run_id: String,
    pub step: String,
    pub attempt: u32,
    pub owner: String,
    /// The step's image, by digest (`registry/repo@sha256:…`).
    pub image: String,
    /// The built-in image, by digest: it holds the static `gantry` the init container runs
    /// and copies for the wrapper.
    pub helper_image: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub uid: u32,
    pub gid: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu: Option<GpuRequest>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub timeout: Option<Duration>,
    pub stop_grace: Duration,
    pub ttl_after_finished: Duration,
    pub image_pull_secrets: Vec<String>,
    /// A Secret whose keys become the environment of the init container and the wrapper
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, …). The wrapper
    /// removes them from the step's own environment.
    pub artifacts_secret: Option<String>,
    pub plan: StepPlan,
    pub network: bool,
    pub egress: ArtifactEgress,
}

impl StepJob {
    /// The Job's name: a DNS-1123 label of at most 63 characters (pods add a suffix to it and
    /// copy it into the `job-name` label).
    pub fn name(&self) -> String {
        dns_label(
            &format!("g-{}-{}-{}", self.run_id, self.step, self.attempt),
            52,
        )
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_RUN.to_string(), label_value(&self.run_id)),
            (LABEL_STEP.to_string(), label_value(&self.step)),
            (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
            (LABEL_OWNER.to_string(), label_value(&self.owner)),
        ])
    }

    /// The Job, its pod running the step under the wrapper after the fetch init container.
    pub fn job(&self) -> Result<Job, String> {
        let plan = serde_json::to_string(&self.plan).map_err(|e| e.to_string())?;
        let labels = self.labels();
        let annotations = BTreeMap::from([
            (ANNOTATION_STEP.to_string(), self.step.clone()),
            (ANNOTATION_ID.to_string(), self.id.clone()),
            (ANNOTATION_OWNER.to_string(), self.owner.clone()),
        ]);
        let mut env: Vec<EnvVar> = self
            .env
            .iter()
            .map(|(k, v)| env_var(k, v))
            .collect::<Vec<_>>();
        env.push(env_var(PLAN_ENV, &plan));
        let secret_env = self.artifacts_secret.as_deref().map(pod::secret_env);
        let mut command = vec![WRAPPER_BIN.to_string(), "step-exec".to_string()];
        if let Some(t) = self.timeout {
            // The wrapper stops the command itself first (SIGTERM, the grace, SIGKILL) and
            // still uploads what it wrote; the Job's deadline below is the second line.
            command.push(format!("--timeout-ms={}", t.as_millis()));
            command.push(format!("--grace-ms={}", self.stop_grace.as_millis()));
        }
        command.push("--".to_string());
        command.extend(self.args.iter().cloned());
        let step = Container {
            name: STEP_CONTAINER.to_string(),
            image: Some(self.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(command),
            working_dir: Some(self.working_dir.clone()),
            env: Some(env),
            env_from: secret_env.clone(),
            resources: Some(self.resources()),
            security_context: Some(container_security(self.uid, self.gid)),
            volume_mounts: Some(vec![
                mount("work", WORK_DIR, false, None),
                mount("work", "/gantry/inputs", true, Some("inputs")),
                mount("bin", "/gantry/bin", true, None),
                mount("tmp", "/tmp", false, None),
            ]),
            termination_message_policy: Some("File".into()),
            ..Default::default()
        };
        let fetch = Container {
            name: FETCH_CONTAINER.to_string(),
            image: Some(self.helper_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![HELPER_BINARY.to_string(), "step-fetch".to_string()]),
            env: Some(vec![
                env_var(PLAN_ENV, &plan),
                env_var("GANTRY_HOME", "/tmp/gantry-home"),
            ]),
            env_from: secret_env,
            // The fetch shares the step's budget: the pod's requests are the larger of the two.
            resources: Some(self.resources_without_gpu()),
            security_context: Some(container_security(self.uid, self.gid)),
            volume_mounts: Some(vec![
                mount("work", WORK_DIR, false, None),
                mount("bin", "/gantry/bin", false, None),
                mount("tmp", "/tmp", false, None),
            ]),
            ..Default::default()
        };
        let pod = PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(self.uid, self.gid)),
            init_containers: Some(vec![fetch]),
            containers: vec![step],
            volumes: Some(vec![empty_dir("work"), empty_dir("bin"), empty_dir("tmp")]),
            node_selector: (!self.node_selector.is_empty()).then(|| self.node_selector.clone()),
            tolerations: (!self.tolerations.is_empty()).then(|| self.tolerations.clone()),
            image_pull_secrets: (!self.image_pull_secrets.is_empty()).then(|| {
                self.image_pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.clone() })
                    .collect()
            }),
            termination_grace_period_seconds: Some(self.stop_grace.as_secs().max(1) as i64),
            ..Default::default()
        };
        Ok(Job {
            metadata: ObjectMeta {
                name: Some(self.name()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels.clone()),
                annotations: Some(annotations.clone()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                // Retries are the engine's: one pod per Job.
                backoff_limit: Some(0),
                completions: Some(1),
                parallelism: Some(1),
                // The wrapper's own timeout (from the command's start) plus the grace, time to
                // upload, and room for scheduling and image pulls (which this deadline counts):
                // then Kubernetes stops the pod whatever it does.
                active_deadline_seconds: self
                    .timeout
                    .map(|t| (t + self.stop_grace + JOB_DEADLINE_SLACK).as_secs() as i64),
                ttl_seconds_after_finished: Some(self.ttl_after_finished.as_secs() as i32),
                // A pod evicted by a drain or preempted is not the step's failure: Kubernetes
                // makes a new pod (not counted against backoffLimit).
                pod_failure_policy: Some(PodFailurePolicy {
                    rules: vec![PodFailurePolicyRule {
                        action: "Ignore".into(),
                        on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                            type_: "DisruptionTarget".into(),
                            status: "True".into(),
                        }]),
                        on_exit_codes: None,
                    }],
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        annotations: Some(annotations),
                        ..Default::default()
                    }),
                    spec: Some(pod),
                },
                ..Default::default()
            }),
            status: None,
        })
    }

    /// For a step without `network: true`: its pod may reach DNS and the artifact store only.
    /// `None` for a step with network.
    pub fn network_policy(&self) -> Option<NetworkPolicy> {
        if self.network {
            return None;
        }
        let selector = BTreeMap::from([
            (LABEL_RUN.to_string(), label_value(&self.run_id)),
            (LABEL_STEP.to_string(), label_value(&self.step)),
            (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
        ]);
        Some(NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(self.name()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels()),
                annotations: Some(BTreeMap::from([(
                    ANNOTATION_OWNER.to_string(),
                    self.owner.clone(),
                )])),
                ..Default::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(selector),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![]),
                egress: Some(
                    std::iter::once(dns_egress())
                        .chain(egress_to(&self.egress))
                        .collect(),
                ),
            }),
        })
    }

    /// Requests = limits (the step gets exactly what admission counted).
    fn resources(&self) -> ResourceRequirements {
        let mut r = self.resources_without_gpu();
        if let Some(gpu) = &self.gpu {
            for map in [&mut r.limits, &mut r.requests].into_iter().flatten() {
                map.insert(gpu.resource.clone(), Quantity(gpu.count.to_string()));
            }
        }
        r
    }

    fn resources_without_gpu(&self) -> ResourceRequirements {
        requests_equal_limits(self.cpu_millis, self.memory_bytes)
    }
}
