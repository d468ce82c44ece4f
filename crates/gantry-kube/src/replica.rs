//! A model replica on Kubernetes: a Deployment of one pod, its Service, and a NetworkPolicy
//! that lets only Gantry's control plane reach it (pure, from a [`ReplicaPod`]).
//!
//! The pod is the step pod's shape: the init container `fetch` (the built-in image) places the
//! model by digest under `/gantry/inputs`, then the model server runs with the same
//! least-privilege security context, requests = limits, and readiness on `/v2/health/ready`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, LocalObjectReference, PodSpec, PodTemplateSpec, Probe,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::contract::{PLAN_ENV, PlannedInput, StepPlan, VERSION};
use crate::job::{ANNOTATION_OWNER, FETCH_CONTAINER, HELPER_BINARY, LABEL_MANAGED_BY, MANAGED_BY};
use crate::names::{dns_label, label_value};
use crate::pod::container_security;
use crate::pod::{
    dns_egress, egress_to, empty_dir, env_var, mount, pod_security, requests_equal_limits,
    secret_env, tcp_port,
};

/// The label that names a replica (its Service selects on it).
pub const LABEL_REPLICA: &str = "gantry.dev/replica";
/// The deployment a replica serves.
pub const LABEL_DEPLOYMENT: &str = "gantry.dev/deployment";
/// `app.kubernetes.io/component` of replica pods and of the control plane, which alone may
/// reach them.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const COMPONENT_REPLICA: &str = "model-replica";
pub const COMPONENT_CONTROL_PLANE: &str = "control-plane";

/// The model server's container name.
pub const SERVER_CONTAINER: &str = "server";

/// Everything one replica's objects are made from.
#[derive(Clone, Debug)]
pub struct ReplicaPod {
    pub namespace: String,
    /// The server's replica id (`<deployment>-<n>…`); the objects are named after it.
    pub id: String,
    pub deployment: String,
    pub owner: String,
    /// The server's image by digest (the built-in image for built-in and ONNX models).
    pub image: String,
    pub helper_image: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub port: u16,
    /// The model: `(path under /gantry/inputs, digest)`.
    pub model: Option<(String, String)>,
    pub artifacts: String,
    pub artifacts_secret: Option<String>,
    pub image_pull_secrets: Vec<String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
}

impl ReplicaPod {
    /// The name of the Deployment, Service and NetworkPolicy: a DNS-1035 label (a Service's
    /// name must start with a letter), at most 63 characters.
    pub fn name(&self) -> String {
        dns_label(&format!("gr-{}", self.id), 63)
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_COMPONENT.to_string(), COMPONENT_REPLICA.to_string()),
            (LABEL_REPLICA.to_string(), label_value(&self.id)),
            (LABEL_DEPLOYMENT.to_string(), label_value(&self.deployment)),
        ])
    }

    fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_REPLICA.to_string(), label_value(&self.id))])
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_OWNER.to_string(),
                self.owner.clone(),
            )])),
            ..Default::default()
        }
    }

    /// How the control plane reaches the replica: its Service's cluster DNS name.
    pub fn address(&self) -> String {
        format!("{}.{}.svc:{}", self.name(), self.namespace, self.port)
    }

    pub fn deployment(&self) -> Result<Deployment, String> {
        let plan = StepPlan {
            v: VERSION,
            artifacts: self.artifacts.clone(),
            inputs: self
                .model
                .iter()
                .map(|(path, digest)| PlannedInput {
                    path: path.clone(),
                    digest: digest.clone(),
                })
                .collect(),
            outputs: Vec::new(),
            params: serde_json::json!({}),
            report: None,
        };
        plan.check()?;
        let plan = serde_json::to_string(&plan).map_err(|e| e.to_string())?;
        let env_from = self.artifacts_secret.as_deref().map(secret_env);
        let resources = requests_equal_limits(self.cpu_millis, self.memory_bytes);
        let probe = |initial: i32, failures: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/v2/health/ready".into()),
                port: IntOrString::Int(i32::from(self.port)),
                ..Default::default()
            }),
            initial_delay_seconds: Some(initial),
            period_seconds: Some(2),
            failure_threshold: Some(failures),
            timeout_seconds: Some(2),
            ..Default::default()
        };
        let fetch = Container {
            name: FETCH_CONTAINER.to_string(),
            image: Some(self.helper_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![HELPER_BINARY.to_string(), "step-fetch".to_string()]),
            env: Some(vec![env_var(PLAN_ENV, &plan)]),
            env_from,
            resources: Some(resources.clone()),
            security_context: Some(container_security(self.uid, self.gid)),
            volume_mounts: Some(vec![
                mount("work", "/gantry", false, None),
                mount("tmp", "/tmp", false, None),
            ]),
            ..Default::default()
        };
        let server = Container {
            name: SERVER_CONTAINER.to_string(),
            image: Some(self.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(self.args.clone()),
            env: Some(self.env.iter().map(|(k, v)| env_var(k, v)).collect()),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(self.port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            readiness_probe: Some(probe(1, 3)),
            // A server that stops answering for a minute is restarted by the kubelet too.
            liveness_probe: Some(probe(30, 30)),
            resources: Some(resources),
            security_context: Some(container_security(self.uid, self.gid)),
            volume_mounts: Some(vec![
                mount("work", "/gantry/inputs", true, Some("inputs")),
                mount("tmp", "/tmp", false, None),
            ]),
            ..Default::default()
        };
        let labels = self.labels();
        Ok(Deployment {
            metadata: self.meta(),
            spec: Some(DeploymentSpec {
                // The server scales by replicas of its own (one Deployment each).
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(self.selector()),
                    match_expressions: None,
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        automount_service_account_token: Some(false),
                        enable_service_links: Some(false),
                        security_context: Some(pod_security(self.uid, self.gid)),
                        init_containers: Some(vec![fetch]),
                        containers: vec![server],
                        volumes: Some(vec![empty_dir("work"), empty_dir("tmp")]),
                        image_pull_secrets: (!self.image_pull_secrets.is_empty()).then(|| {
                            self.image_pull_secrets
                                .iter()
                                .map(|n| LocalObjectReference { name: n.clone() })
                                .collect()
                        }),
                        node_selector: (!self.node_selector.is_empty())
                            .then(|| self.node_selector.clone()),
                        tolerations: (!self.tolerations.is_empty())
                            .then(|| self.tolerations.clone()),
                        // `gantry serve` drains its connections on SIGTERM.
                        termination_grace_period_seconds: Some(5),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        })
    }

    pub fn service(&self) -> Service {
        Service {
            metadata: self.meta(),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(self.selector()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: i32::from(self.port),
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Only the control plane reaches the replica, on its port; the replica reaches DNS and
    /// the artifact store (its fetch) and nothing else.
    pub fn network_policy(&self, store: &crate::job::ArtifactEgress) -> NetworkPolicy {
        let egress = std::iter::once(dns_egress())
            .chain(egress_to(store))
            .collect();
        NetworkPolicy {
            metadata: self.meta(),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.selector()),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([
                                (LABEL_COMPONENT.to_string(), COMPONENT_CONTROL_PLANE.into()),
                                ("app.kubernetes.io/name".to_string(), "gantry".into()),
                            ])),
                            match_expressions: None,
                        }),
                        ..Default::default()
                    }]),
                    ports: Some(vec![tcp_port(self.port)]),
                }]),
                egress: Some(egress),
            }),
        }
    }
}
