//! The pieces every pod Gantry makes shares (steps, model replicas, the control plane): the
//! least-privilege security contexts, requests = limits, volumes and mounts, environment, and
//! the egress rules of its NetworkPolicies.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, EnvFromSource, EnvVar, PodSecurityContext,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::job::ArtifactEgress;

pub fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// The least-privilege container defaults of every Gantry pod.
pub fn container_security(uid: u32, gid: u32) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(i64::from(uid)),
        run_as_group: Some(i64::from(gid)),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// The pod-level side: non-root, the volumes' group, the default seccomp profile.
pub fn pod_security(uid: u32, gid: u32) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(i64::from(uid)),
        run_as_group: Some(i64::from(gid)),
        fs_group: Some(i64::from(gid)),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// Requests = limits: the pod gets exactly what was asked for (and admitted).
pub fn requests_equal_limits(cpu_millis: u64, memory_bytes: u64) -> ResourceRequirements {
    let amounts = BTreeMap::from([
        (
            "cpu".to_string(),
            Quantity(format!("{}m", cpu_millis.max(1))),
        ),
        (
            "memory".to_string(),
            Quantity(memory_bytes.max(1 << 20).to_string()),
        ),
    ]);
    ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..Default::default()
    }
}

pub fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// `KEY=VALUE` entries (the engine's form) as pairs; an entry without `=` is an empty value.
pub fn env_pairs(entries: &[String]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// Every key of the Secret `name` as an environment variable.
pub fn secret_env(name: &str) -> Vec<EnvFromSource> {
    vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.to_string(),
            optional: Some(false),
        }),
        ..Default::default()
    }]
}

pub fn mount(volume: &str, path: &str, read_only: bool, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        sub_path: sub_path.map(str::to_string),
        ..Default::default()
    }
}

pub fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

pub fn tcp_port(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

/// Egress to DNS (port 53, UDP and TCP) anywhere.
pub fn dns_egress() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: None,
        ports: Some(
            ["UDP", "TCP"]
                .iter()
                .map(|proto| NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some((*proto).to_string()),
                    end_port: None,
                })
                .collect(),
        ),
    }
}

/// Egress to `e`'s addresses (any address without CIDRs) on its TCP ports; `None` without
/// ports.
pub fn egress_to(e: &ArtifactEgress) -> Option<NetworkPolicyEgressRule> {
    (!e.ports.is_empty()).then(|| NetworkPolicyEgressRule {
        to: (!e.cidrs.is_empty()).then(|| {
            e.cidrs
                .iter()
                .map(|c| NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: c.clone(),
                        except: None,
                    }),
                    ..Default::default()
                })
                .collect()
        }),
        ports: Some(e.ports.iter().map(|p| tcp_port(*p)).collect()),
    })
}
