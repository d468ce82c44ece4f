//! The control plane's own manifests (`gantry kube manifests`): `gantry server` in a cluster,
//! running pipeline steps as Jobs next to itself. Pure: a [`ControlPlane`] in, Kubernetes
//! objects out ([`manifests`]), as multi-document YAML ([`to_yaml`]).
//!
//! What is made, in the order `kubectl apply` wants it:
//!
//! 1. a ServiceAccount (its token is mounted in the server's pod only);
//! 2. a Role limited to the namespace, with exactly what the server calls: step Jobs, their
//!    pods and logs, the steps' NetworkPolicies, and Deployments and Services for model
//!    replicas; no Secrets (the server only *names* the artifacts Secret in the step pods'
//!    `envFrom`; the kubelet reads it), nothing cluster-wide, no `*`;
//! 3. the RoleBinding;
//! 4. a PersistentVolumeClaim for `GANTRY_HOME`, when [`Storage::NewClaim`] asks for one;
//! 5. the Service (`http`, port 80 by default, to the container's 8080);
//! 6. the server pod's NetworkPolicy: ingress on its port only; egress to DNS, the API
//!    server, PostgreSQL, the artifact store, registries (the server resolves and scans step
//!    images) and model replica pods;
//! 7. the Deployment: one replica, `Recreate` (one engine owns the queue), the built-in image
//!    running `gantry server --auth --listen 0.0.0.0:8080 --runtime kubernetes`, under the same
//!    least-privilege security context as every step, with `/healthz` probes.
//!
//! Two Secrets, never one: the database URL (`GANTRY_DB`, key [`DB_SECRET_KEY`] of
//! [`ControlPlane::db_secret`]) goes to the server only; the store's `AWS_*` keys
//! ([`ControlPlane::artifacts_secret`]) go to the server *and* to every step pod's fetch and
//! wrapper, which hide `AWS_*` from the step's command but not other keys — so a database URL
//! in that Secret would reach user code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource,
    HTTPGetAction, LocalObjectReference, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretEnvSource, SecretKeySelector, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::job::{ArtifactEgress, HELPER_BINARY, LABEL_MANAGED_BY, MANAGED_BY};
use crate::names::is_dns_label;
use crate::pod::{container_security, dns_egress, egress_to, empty_dir, pod_security, tcp_port};

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/name` of everything here.
pub const APP_NAME: &str = "gantry";
/// `app.kubernetes.io/component` of the server's objects.
pub const COMPONENT: &str = "control-plane";
/// `app.kubernetes.io/component` of model replica pods (the server may reach them).
pub const REPLICA_COMPONENT: &str = "model-replica";

/// The server's container.
pub const SERVER_CONTAINER: &str = "server";
/// `GANTRY_HOME` in the server's pod.
pub const HOME_DIR: &str = "/var/lib/gantry";
/// The server's open health endpoint (no token needed, even with `--auth`): 200 when the
/// metadata store answers, 503 when not.
pub const HEALTH_PATH: &str = "/healthz";
/// The key of [`ControlPlane::db_secret`] that holds the database URL.
pub const DB_SECRET_KEY: &str = "GANTRY_DB";
/// The uid and gid the server runs as (nobody), as steps do.
pub const SERVER_UID: u32 = 65534;
/// The named container and Service port.
pub const PORT_NAME: &str = "http";

/// How clients reach the server's Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    /// Inside the cluster only (`kubectl port-forward`, an Ingress, a Gateway).
    #[default]
    ClusterIP,
    /// On every node's port (a given one, or one Kubernetes picks).
    NodePort(Option<u16>),
    /// A cloud load balancer. Plain HTTP: put TLS in front (docs/operating.md).
    LoadBalancer,
}

/// Where `GANTRY_HOME` lives (image store, scan database, caches, `policy.yaml`, keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// An emptyDir: lost when the pod goes. Metadata (PostgreSQL) and artifacts (S3) live
    /// elsewhere, so nothing that matters is, but pulled images and caches are fetched again.
    EmptyDir { size_limit_bytes: Option<u64> },
    /// A PersistentVolumeClaim that already exists.
    ExistingClaim(String),
    /// A PersistentVolumeClaim made here (ReadWriteOnce).
    NewClaim {
        name: String,
        size_bytes: u64,
        storage_class: Option<String>,
    },
}

impl Default for Storage {
    fn default() -> Self {
        Storage::EmptyDir {
            size_limit_bytes: None,
        }
    }
}

/// Everything the control plane's manifests are made from. [`ControlPlane::new`] gives the
/// defaults; change the fields, then [`manifests`].
#[derive(Clone, Debug)]
pub struct ControlPlane {
    /// The namespace of everything here and of the step Jobs (it must exist).
    pub namespace: String,
    /// The name of every object (a DNS-1123 label starting with a letter), and the value of
    /// `app.kubernetes.io/instance`. Default `gantry`.
    pub name: String,
    /// The server's image by digest: the built-in image works (the static binary at
    /// `/opt/gantry/bin/gantry` and a CA bundle).
    pub image: String,
    /// The built-in image for steps, by digest (`GANTRY_KUBE_BUILTIN_IMAGE`).
    pub builtin_image: String,
    /// The artifact store, `s3://bucket/prefix` (`GANTRY_ARTIFACTS`: not a secret).
    pub artifacts: String,
    /// A Secret with the database URL under the key [`DB_SECRET_KEY`]; the server only.
    /// Default `gantry-db`.
    pub db_secret: String,
    /// A Secret with the store's `AWS_*` keys and nothing else (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`): the server's environment
    /// and the step pods' (`GANTRY_KUBE_ARTIFACTS_SECRET`). Default `gantry-artifacts`.
    pub artifacts_secret: String,
    pub service_type: ServiceType,
    /// The Service's port (default 80).
    pub service_port: u16,
    /// The server's container port (default 8080).
    pub port: u16,
    /// The server's CPU, requests = limits (default 1000m).
    pub cpu_millis: u64,
    /// The server's memory, requests = limits (default 2 GiB).
    pub memory_bytes: u64,
    pub storage: Storage,
    /// The artifact store's endpoint, for the server's egress and the steps'
    /// (`GANTRY_KUBE_STORE_CIDRS` / `GANTRY_KUBE_STORE_PORTS`). Default: any address, 443.
    pub store: ArtifactEgress,
    /// PostgreSQL. Default: any address, 5432.
    pub database: ArtifactEgress,
    /// The API server as the pod sees it after the Service's NAT (the control-plane nodes).
    /// Default: any address, 443 and 6443.
    pub api_server: ArtifactEgress,
    /// Image registries the server resolves and scans step images from. Default: any address,
    /// 443; no ports: none.
    pub registries: ArtifactEgress,
    /// Image pull Secrets for the server's pod, passed on to the step pods too
    /// (`GANTRY_KUBE_PULL_SECRETS`).
    pub image_pull_secrets: Vec<String>,
    /// `--public-url` (the URL people reach the server at, behind TLS).
    pub public_url: Option<String>,
    /// More arguments after `gantry server …` (`--cpus 64`, `--allow-fetch minio.internal`).
    pub extra_args: Vec<String>,
}

impl ControlPlane {
    /// The defaults around the three things that have none.
    pub fn new(image: &str, builtin_image: &str, artifacts: &str) -> ControlPlane {
        ControlPlane {
            namespace: "gantry".into(),
            name: "gantry".into(),
            image: image.into(),
            builtin_image: builtin_image.into(),
            artifacts: artifacts.into(),
            db_secret: "gantry-db".into(),
            artifacts_secret: "gantry-artifacts".into(),
            service_type: ServiceType::ClusterIP,
            service_port: 80,
            port: 8080,
            cpu_millis: 1000,
            memory_bytes: 2 << 30,
            storage: Storage::default(),
            store: ArtifactEgress {
                cidrs: Vec::new(),
                ports: vec![443],
            },
            database: ArtifactEgress {
                cidrs: Vec::new(),
                ports: vec![5432],
            },
            api_server: ArtifactEgress {
                cidrs: Vec::new(),
                ports: vec![443, 6443],
            },
            registries: ArtifactEgress {
                cidrs: Vec::new(),
                ports: vec![443],
            },
            image_pull_secrets: Vec::new(),
            public_url: None,
            extra_args: Vec::new(),
        }
    }

    /// The labels of every object here.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector();
        l.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
        l
    }

    /// What selects the server's pod (the Deployment, the Service, the NetworkPolicy).
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), APP_NAME.to_string()),
            (LABEL_INSTANCE.to_string(), self.name.clone()),
            (LABEL_COMPONENT.to_string(), COMPONENT.to_string()),
        ])
    }

    /// The server's command line.
    pub fn command(&self) -> Vec<String> {
        let mut c: Vec<String> = [
            HELPER_BINARY,
            "server",
            "--auth",
            "--listen",
            &format!("0.0.0.0:{}", self.port),
            "--runtime",
            "kubernetes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(url) = &self.public_url {
            c.push("--public-url".into());
            c.push(url.clone());
        }
        c.extend(self.extra_args.iter().cloned());
        c
    }

    /// Refuses what Kubernetes or the server would refuse later, saying which setting and why.
    pub fn check(&self) -> Result<(), String> {
        if !is_rfc1123_label(&self.namespace) {
            return Err(format!(
                "namespace {:?} is not a valid namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
                self.namespace
            ));
        }
        if !is_dns_label(&self.name) {
            return Err(format!(
                "name {:?} is not a valid name for the control plane's objects: lowercase letters, digits and '-', starting with a letter, at most 63 characters",
                self.name
            ));
        }
        check_digest("image", &self.image)?;
        check_digest("builtin image", &self.builtin_image)?;
        let bucket = self
            .artifacts
            .strip_prefix("s3://")
            .map(|rest| rest.split('/').next().unwrap_or_default())
            .unwrap_or_default();
        if bucket.is_empty() || self.artifacts.chars().any(char::is_whitespace) {
            return Err(format!(
                "artifacts {:?} must be an S3 location (s3://BUCKET/PREFIX): the step pods read and write the artifacts there",
                self.artifacts
            ));
        }
        for (what, secret) in [
            ("db secret", &self.db_secret),
            ("artifacts secret", &self.artifacts_secret),
        ] {
            if !is_dns_subdomain(secret) {
                return Err(format!(
                    "{what} {secret:?} is not a valid Secret name (a DNS-1123 subdomain)"
                ));
            }
        }
        if self.db_secret == self.artifacts_secret {
            return Err(format!(
                "the db secret and the artifacts secret are both {:?}: the artifacts Secret goes to every step pod, so the database URL would reach the steps' code; keep GANTRY_DB in a Secret of its own",
                self.db_secret
            ));
        }
        for s in &self.image_pull_secrets {
            if !is_dns_subdomain(s) {
                return Err(format!(
                    "image pull secret {s:?} is not a valid Secret name (a DNS-1123 subdomain)"
                ));
            }
        }
        if self.port == 0 || self.service_port == 0 {
            return Err("ports must be between 1 and 65535".into());
        }
        if let ServiceType::NodePort(Some(p)) = self.service_type
            && !(30000..=32767).contains(&p)
        {
            return Err(format!(
                "node port {p} is outside Kubernetes' default NodePort range 30000-32767"
            ));
        }
        if self.cpu_millis == 0 {
            return Err("the server's CPU must be more than 0".into());
        }
        if self.memory_bytes < 256 << 20 {
            return Err(format!(
                "the server's memory ({} bytes) is below 256 MiB",
                self.memory_bytes
            ));
        }
        match &self.storage {
            Storage::EmptyDir {
                size_limit_bytes: Some(0),
            } => return Err("the emptyDir size limit must be more than 0".into()),
            Storage::EmptyDir { .. } => {}
            Storage::ExistingClaim(name) => check_claim_name(name)?,
            Storage::NewClaim {
                name,
                size_bytes,
                storage_class,
            } => {
                check_claim_name(name)?;
                if *size_bytes == 0 {
                    return Err(format!("the claim {name}'s size must be more than 0"));
                }
                if let Some(class) = storage_class
                    && !is_dns_subdomain(class)
                {
                    return Err(format!(
                        "storage class {class:?} is not a valid name (a DNS-1123 subdomain)"
                    ));
                }
            }
        }
        for (what, egress) in [
            ("store", &self.store),
            ("database", &self.database),
            ("api server", &self.api_server),
            ("registries", &self.registries),
        ] {
            for c in &egress.cidrs {
                check_cidr(what, c)?;
            }
            if egress.ports.contains(&0) {
                return Err(format!("{what}: port 0 is not a port"));
            }
        }
        if self.store.ports.is_empty() {
            return Err(
                "the store needs at least one port (443 for AWS S3, 9000 for a MinIO service)"
                    .into(),
            );
        }
        if self.database.ports.is_empty() || self.api_server.ports.is_empty() {
            return Err("the database and the API server need at least one port each".into());
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "public URL {url:?} must start with https:// or http://"
            ));
        }
        Ok(())
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            ..Default::default()
        }
    }

    pub fn service_account(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta(&self.name),
            // Only the server's pod mounts the token (it asks for it itself).
            automount_service_account_token: Some(false),
            ..Default::default()
        }
    }

    /// The server's permissions, in its namespace only.
    pub fn role(&self) -> Role {
        let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Role {
            metadata: self.meta(&self.name),
            rules: Some(vec![
                // Step attempts.
                rule(
                    "batch",
                    &["jobs"],
                    &["create", "get", "list", "watch", "delete"],
                ),
                rule("", &["pods"], &["get", "list", "watch"]),
                rule("", &["pods/log"], &["get"]),
                // Steps without network.
                rule(
                    "networking.k8s.io",
                    &["networkpolicies"],
                    &["create", "get", "list", "delete"],
                ),
                // Model replicas (next).
                rule(
                    "apps",
                    &["deployments"],
                    &["create", "get", "list", "watch", "patch", "delete"],
                ),
                rule(
                    "",
                    &["services"],
                    &["create", "get", "list", "watch", "patch", "delete"],
                ),
            ]),
        }
    }

    pub fn role_binding(&self) -> RoleBinding {
        RoleBinding {
            metadata: self.meta(&self.name),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: self.name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: self.name.clone(),
                namespace: Some(self.namespace.clone()),
                api_group: None,
            }]),
        }
    }

    /// The claim [`Storage::NewClaim`] asks for.
    pub fn claim(&self) -> Option<PersistentVolumeClaim> {
        let Storage::NewClaim {
            name,
            size_bytes,
            storage_class,
        } = &self.storage
        else {
            return None;
        };
        Some(PersistentVolumeClaim {
            metadata: self.meta(name),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(size_bytes.to_string()),
                    )])),
                    limits: None,
                }),
                storage_class_name: storage_class.clone(),
                ..Default::default()
            }),
            status: None,
        })
    }

    pub fn service(&self) -> Service {
        let (type_, node_port) = match self.service_type {
            ServiceType::ClusterIP => ("ClusterIP", None),
            ServiceType::NodePort(p) => ("NodePort", p.map(i32::from)),
            ServiceType::LoadBalancer => ("LoadBalancer", None),
        };
        Service {
            metadata: self.meta(&self.name),
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                selector: Some(self.selector()),
                ports: Some(vec![ServicePort {
                    name: Some(PORT_NAME.into()),
                    protocol: Some("TCP".into()),
                    port: i32::from(self.service_port),
                    target_port: Some(IntOrString::String(PORT_NAME.into())),
                    node_port,
                    app_protocol: None,
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// The server pod's NetworkPolicy.
    pub fn network_policy(&self) -> NetworkPolicy {
        // Model replica pods of this namespace, on whatever port they serve.
        let replicas = NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([
                        (LABEL_COMPONENT.to_string(), REPLICA_COMPONENT.to_string()),
                        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                    ])),
                    match_expressions: None,
                }),
                ..Default::default()
            }]),
            ports: None,
        };
        // Each destination without ports gets no rule (an empty port list would allow all).
        let mut egress = vec![dns_egress()];
        egress.extend(
            [
                &self.api_server,
                &self.database,
                &self.store,
                &self.registries,
            ]
            .into_iter()
            .filter_map(egress_to),
        );
        egress.push(replicas);
        NetworkPolicy {
            metadata: self.meta(&self.name),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.selector()),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![tcp_port(self.port)]),
                }]),
                egress: Some(egress),
            }),
        }
    }

    /// The server's Deployment.
    pub fn deployment(&self) -> Deployment {
        let value = |name: &str, v: &str| EnvVar {
            name: name.to_string(),
            value: Some(v.to_string()),
            value_from: None,
        };
        let mut env = vec![
            value("GANTRY_HOME", HOME_DIR),
            value("GANTRY_ARTIFACTS", &self.artifacts),
            EnvVar {
                name: DB_SECRET_KEY.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: self.db_secret.clone(),
                        key: DB_SECRET_KEY.into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "GANTRY_KUBE_NAMESPACE".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: "metadata.namespace".into(),
                    }),
                    ..Default::default()
                }),
            },
            value("GANTRY_KUBE_BUILTIN_IMAGE", &self.builtin_image),
            value("GANTRY_KUBE_ARTIFACTS_SECRET", &self.artifacts_secret),
            value("GANTRY_KUBE_STORE_PORTS", &join(&self.store.ports)),
        ];
        if !self.store.cidrs.is_empty() {
            env.push(value(
                "GANTRY_KUBE_STORE_CIDRS",
                &self.store.cidrs.join(","),
            ));
        }
        if !self.image_pull_secrets.is_empty() {
            env.push(value(
                "GANTRY_KUBE_PULL_SECRETS",
                &self.image_pull_secrets.join(","),
            ));
        }
        let probe = |period: i32, failures: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(HEALTH_PATH.into()),
                port: IntOrString::String(PORT_NAME.into()),
                scheme: Some("HTTP".into()),
                ..Default::default()
            }),
            period_seconds: Some(period),
            timeout_seconds: Some(5),
            failure_threshold: Some(failures),
            ..Default::default()
        };
        let amounts = BTreeMap::from([
            ("cpu".to_string(), Quantity(format!("{}m", self.cpu_millis))),
            (
                "memory".to_string(),
                Quantity(self.memory_bytes.to_string()),
            ),
        ]);
        let server = Container {
            name: SERVER_CONTAINER.into(),
            image: Some(self.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(self.command()),
            env: Some(env),
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: self.artifacts_secret.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }]),
            ports: Some(vec![ContainerPort {
                name: Some(PORT_NAME.into()),
                container_port: i32::from(self.port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            // Migrations and the first look at the cluster: up to 5 minutes to come up.
            startup_probe: Some(probe(5, 60)),
            readiness_probe: Some(probe(10, 3)),
            // /healthz also fails while the database is unreachable: a restart after 2 minutes
            // of that is the most it does.
            liveness_probe: Some(probe(20, 6)),
            resources: Some(ResourceRequirements {
                limits: Some(amounts.clone()),
                requests: Some(amounts),
                ..Default::default()
            }),
            security_context: Some(container_security(SERVER_UID, SERVER_UID)),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "home".into(),
                    mount_path: HOME_DIR.into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..Default::default()
                },
            ]),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Default::default()
        };
        let home = match &self.storage {
            Storage::EmptyDir { size_limit_bytes } => Volume {
                name: "home".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: None,
                    size_limit: size_limit_bytes.map(|b| Quantity(b.to_string())),
                }),
                ..Default::default()
            },
            Storage::ExistingClaim(name) | Storage::NewClaim { name, .. } => Volume {
                name: "home".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: name.clone(),
                    read_only: None,
                }),
                ..Default::default()
            },
        };
        let tmp = empty_dir("tmp");
        let pod = PodSpec {
            service_account_name: Some(self.name.clone()),
            // The server talks to the API: its pod, and only its pod, gets the token.
            automount_service_account_token: Some(true),
            enable_service_links: Some(false),
            security_context: Some(pod_security(SERVER_UID, SERVER_UID)),
            containers: vec![server],
            volumes: Some(vec![home, tmp]),
            image_pull_secrets: (!self.image_pull_secrets.is_empty()).then(|| {
                self.image_pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.clone() })
                    .collect()
            }),
            // The server stops within about 20 s of SIGTERM (it cancels its running steps).
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        };
        Deployment {
            metadata: self.meta(&self.name),
            spec: Some(DeploymentSpec {
                // One engine owns the queue: never two servers, not even during a rollout.
                replicas: Some(1),
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                selector: LabelSelector {
                    match_labels: Some(self.selector()),
                    match_expressions: None,
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels()),
                        ..Default::default()
                    }),
                    spec: Some(pod),
                },
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// Every object of the control plane, in apply order, as JSON values (`apiVersion` and `kind`
/// included). Refuses a [`ControlPlane`] that [`ControlPlane::check`] refuses.
pub fn manifests(cp: &ControlPlane) -> Result<Vec<Value>, String> {
    cp.check()?;
    let mut docs = vec![
        to_value(&cp.service_account())?,
        to_value(&cp.role())?,
        to_value(&cp.role_binding())?,
    ];
    if let Some(claim) = cp.claim() {
        docs.push(to_value(&claim)?);
    }
    docs.push(to_value(&cp.service())?);
    docs.push(to_value(&cp.network_policy())?);
    docs.push(to_value(&cp.deployment())?);
    Ok(docs)
}

fn to_value<T: serde::Serialize>(object: &T) -> Result<Value, String> {
    serde_json::to_value(object).map_err(|e| e.to_string())
}

/// The documents as YAML, each after a `---` line: block style, keys in the order given,
/// strings quoted (JSON-style) unless they are plain words that YAML 1.1 and 1.2 both read as
/// the same string.
pub fn to_yaml(docs: &[Value]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        match doc {
            Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0, false),
            Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize, inline: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if !(inline && i == 0) {
            pad(out, indent);
        }
        out.push_str(&string(key));
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_map(out, m, indent + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, indent);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                write_map(out, m, indent + 2, true);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn pad(out: &mut String, n: usize) {
    let _ = write!(out, "{:n$}", "");
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// A plain scalar when it cannot be read as anything but this string, else a double-quoted
/// one (JSON's escapes are YAML's).
fn string(s: &str) -> String {
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-' | '@' | ':'))
        && !s.ends_with(':')
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn check_digest(what: &str, image: &str) -> Result<(), String> {
    let hex = image.rsplit_once("@sha256:").map(|(_, h)| h);
    let pinned = hex.is_some_and(|h| {
        h.len() == 64
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    }) && !image.starts_with("@")
        && !image.chars().any(char::is_whitespace);
    if pinned {
        Ok(())
    } else {
        Err(format!(
            "{what} {image:?} must be pinned by digest (REGISTRY/REPOSITORY@sha256:<64 hex digits>): push it with `gantry image push builtin REF` and use the reference it prints"
        ))
    }
}

fn check_claim_name(name: &str) -> Result<(), String> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "claim {name:?} is not a valid PersistentVolumeClaim name (a DNS-1123 subdomain)"
        ))
    }
}

fn check_cidr(what: &str, cidr: &str) -> Result<(), String> {
    let ok = cidr.split_once('/').is_some_and(|(addr, len)| {
        let max = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        len.parse::<u8>().is_ok_and(|l| l <= max) && !len.starts_with('+')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: {cidr:?} is not a CIDR (10.96.12.5/32, 10.0.0.0/16, fd00::/64)"
        ))
    }
}

/// A DNS-1123 label (namespaces may start with a digit).
fn is_rfc1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS-1123 subdomain (Secret, claim and storage class names).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_rfc1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_quotes_what_yaml_would_read_otherwise() {
        let doc = json!({
            "a": "plain-word",
            "b": ["yes", "On", "null", "8080", "0.0.0.0:8080", "", "a b", "x:", "#c", "/healthz"],
            "c": {"d": 1, "e": true, "f": null, "g": {}, "h": []},
            "i": [{"j": 1, "k": [1, 2]}, [3, [4]]],
            "we\"ird key": "line\nbreak",
        });
        let text = to_yaml(&[doc]);
        assert_eq!(
            text,
            r##"---
a: plain-word
b:
- "yes"
- "On"
- "null"
- "8080"
- "0.0.0.0:8080"
- ""
- "a b"
- "x:"
- "#c"
- /healthz
c:
  d: 1
  e: true
  f: null
  g: {}
  h: []
i:
- j: 1
  k:
  - 1
  - 2
-
  - 3
  -
    - 4
"we\"ird key": "line\nbreak"
"##
        );
    }

    #[test]
    fn names_follow_dns_1123() {
        assert!(is_rfc1123_label("1team"));
        assert!(!is_rfc1123_label("Team"));
        assert!(!is_rfc1123_label("team-"));
        assert!(is_dns_subdomain("registry.example-creds"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(check_cidr("x", "10.0.0.0/8").is_ok());
        assert!(check_cidr("x", "fd00::/64").is_ok());
        assert!(check_cidr("x", "10.0.0.0/33").is_err());
        assert!(check_cidr("x", "10.0.0.0").is_err());
        assert!(check_cidr("x", "minio.internal/32").is_err());
    }
}
