//! `--runtime kubernetes`: the cluster settings, from the environment.
//!
//! The cluster itself comes from `KUBECONFIG` / `~/.kube/config`, or the pod's service account
//! when Gantry runs in the cluster. The rest:
//!
//! | variable | meaning |
//! |---|---|
//! | `GANTRY_KUBE_NAMESPACE` | the namespace of the step Jobs (default: the kubeconfig's) |
//! | `GANTRY_KUBE_BUILTIN_IMAGE` | the built-in image in a registry, by digest (required) |
//! | `GANTRY_KUBE_ARTIFACTS_SECRET` | a Secret with the store's `AWS_*` keys for the pods |
//! | `GANTRY_KUBE_PULL_SECRETS` | image pull Secrets, comma-separated |
//! | `GANTRY_KUBE_STORE_CIDRS` | where a step without network may still connect (the store) |
//! | `GANTRY_KUBE_STORE_PORTS` | the store's TCP ports (default: the endpoint's, else 443) |
//! | `GANTRY_KUBE_NODE_SELECTOR` | `key=value,…` every step pod's node must match |
//! | `GANTRY_KUBE_TOLERATIONS` | a JSON list of Kubernetes tolerations |
//! | `GANTRY_KUBE_TTL` | how long finished Jobs stay (default 24h) |
//! | `GANTRY_KUBE_UNSCHEDULABLE_TIMEOUT` | how long a pod may wait for a node (default 10m) |
//! | `GANTRY_KUBE_REPLICA_ADDRESS` | `host:port` to reach model replicas at instead of their Service (a control plane outside the cluster behind a proxy) |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_artifacts::Location;
use gantry_engine::Owner;
use gantry_kube::job::ArtifactEgress;
use gantry_kube::{KubeConfig, KubeRuntime};

use crate::exit::{self, coded};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn duration(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(v) => gantry_spec::quantity::parse_duration(&v)
            .map_err(|e| coded(exit::USAGE, format!("{name}={v}: {e}"))),
    }
}

fn list(name: &str) -> Vec<String> {
    var(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `pid:host/boot/start` — what [`owner_alive`] reads back.
fn owner_string(o: &Owner) -> String {
    format!("{}:{}", o.pid, o.encode_host())
}

fn owner_alive(text: &str) -> bool {
    let Some((pid, host)) = text.split_once(':') else {
        // Not ours to judge: leave it.
        return true;
    };
    match (pid.parse::<i64>(), host) {
        (Ok(pid), host) => Owner::decode(pid, host).is_none_or(|o| o.may_be_alive()),
        _ => true,
    }
}

/// The store's ports from its endpoint (`AWS_ENDPOINT_URL`), else HTTPS.
fn store_ports() -> anyhow::Result<Vec<u16>> {
    let given = list("GANTRY_KUBE_STORE_PORTS");
    if !given.is_empty() {
        return given
            .iter()
            .map(|p| {
                p.parse::<u16>().map_err(|_| {
                    coded(
                        exit::USAGE,
                        format!("GANTRY_KUBE_STORE_PORTS: {p} is not a port"),
                    )
                })
            })
            .collect();
    }
    let endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
    let port = endpoint
        .and_then(|e| reqwest::Url::parse(&e).ok())
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(443);
    Ok(vec![port])
}

/// The Kubernetes runtime for a home whose artifacts are in `location`.
pub async fn runtime(location: Option<&Location>) -> anyhow::Result<KubeRuntime> {
    let artifacts = match location {
        Some(l @ Location::S3 { .. }) => l.to_string(),
        _ => {
            return Err(coded(
                exit::USAGE,
                "--runtime kubernetes needs the artifacts in S3 (--artifacts s3://BUCKET/PREFIX or GANTRY_ARTIFACTS): the cluster's pods cannot reach this machine's store",
            ));
        }
    };
    let helper_image = var("GANTRY_KUBE_BUILTIN_IMAGE").ok_or_else(|| {
        coded(
            exit::USAGE,
            "--runtime kubernetes needs GANTRY_KUBE_BUILTIN_IMAGE: the built-in image (a static gantry) in a registry the cluster pulls from, by digest — push it with `gantry image push`",
        )
    })?;
    if !helper_image.contains("@sha256:") {
        return Err(coded(
            exit::USAGE,
            format!("GANTRY_KUBE_BUILTIN_IMAGE={helper_image} must name a digest (…@sha256:…)"),
        ));
    }
    let node_selector = list("GANTRY_KUBE_NODE_SELECTOR")
        .into_iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    coded(
                        exit::USAGE,
                        format!("GANTRY_KUBE_NODE_SELECTOR: {kv} is not key=value"),
                    )
                })
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let tolerations = match var("GANTRY_KUBE_TOLERATIONS") {
        None => Vec::new(),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            coded(
                exit::USAGE,
                format!("GANTRY_KUBE_TOLERATIONS is not a JSON list of tolerations: {e}"),
            )
        })?,
    };
    let client = kube::Client::try_default().await.map_err(|e| {
        coded(
            exit::ENVIRONMENT,
            format!("--runtime kubernetes: no cluster (KUBECONFIG, ~/.kube/config or an in-cluster service account): {e}"),
        )
    })?;
    let namespace =
        var("GANTRY_KUBE_NAMESPACE").unwrap_or_else(|| client.default_namespace().to_string());
    let cfg = KubeConfig {
        namespace,
        helper_image,
        artifacts,
        artifacts_secret: var("GANTRY_KUBE_ARTIFACTS_SECRET"),
        image_pull_secrets: list("GANTRY_KUBE_PULL_SECRETS"),
        egress: ArtifactEgress {
            cidrs: list("GANTRY_KUBE_STORE_CIDRS"),
            ports: store_ports()?,
        },
        node_selector,
        tolerations,
        ttl_after_finished: duration("GANTRY_KUBE_TTL", Duration::from_secs(24 * 3600))?,
        owner: owner_string(&Owner::current()),
        owner_alive: Arc::new(owner_alive),
        poll: duration("GANTRY_KUBE_POLL", Duration::from_millis(500))?,
        unschedulable_timeout: duration(
            "GANTRY_KUBE_UNSCHEDULABLE_TIMEOUT",
            Duration::from_secs(600),
        )?,
        replica_address: var("GANTRY_KUBE_REPLICA_ADDRESS"),
        deadline_slack: Duration::from_secs(30),
    };
    Ok(KubeRuntime::new(client, cfg))
}

/// `gantry kube manifests`.
pub fn manifests(g: &crate::cli::Global, a: crate::cli::KubeManifestsArgs) -> anyhow::Result<u8> {
    use gantry_kube::control_plane::{self, ControlPlane, ServiceType, Storage};
    use gantry_spec::quantity::{parse_cpu, parse_memory};
    let usage = |m: String| coded(exit::USAGE, m);
    let artifacts = match g.artifacts.as_deref().map(Location::parse) {
        Some(Ok(l @ Location::S3 { .. })) => l.to_string(),
        Some(Err(e)) => return Err(usage(format!("--artifacts / GANTRY_ARTIFACTS: {e}"))),
        _ => {
            return Err(usage(
                "gantry kube manifests needs the artifacts in S3: --artifacts s3://BUCKET/PREFIX (or GANTRY_ARTIFACTS)".into(),
            ));
        }
    };
    let image = a.image.clone().unwrap_or_else(|| a.builtin_image.clone());
    let mut cp = ControlPlane::new(&image, &a.builtin_image, &artifacts);
    cp.namespace = a.namespace;
    cp.name = a.name;
    cp.db_secret = a.db_secret;
    cp.artifacts_secret = a.artifacts_secret;
    cp.service_type = match a.service_type.to_ascii_lowercase().as_str() {
        "clusterip" => ServiceType::ClusterIP,
        "nodeport" => ServiceType::NodePort(a.node_port),
        "loadbalancer" => ServiceType::LoadBalancer,
        other => {
            return Err(usage(format!(
                "--service-type {other}: use clusterip, nodeport or loadbalancer"
            )));
        }
    };
    if a.node_port.is_some() && !matches!(cp.service_type, ServiceType::NodePort(_)) {
        return Err(usage("--node-port needs --service-type nodeport".into()));
    }
    cp.service_port = a.service_port;
    cp.port = a.port;
    cp.cpu_millis = parse_cpu(&a.cpu).map_err(|e| usage(format!("--cpu: {e}")))?;
    cp.memory_bytes = parse_memory(&a.memory).map_err(|e| usage(format!("--memory: {e}")))?;
    cp.storage = match (a.home_claim, a.home_size, a.home_size_limit) {
        (Some(name), None, None) => Storage::ExistingClaim(name),
        (Some(name), Some(size), None) => Storage::NewClaim {
            name,
            size_bytes: parse_memory(&size).map_err(|e| usage(format!("--home-size: {e}")))?,
            storage_class: a.storage_class,
        },
        (None, None, limit) => Storage::EmptyDir {
            size_limit_bytes: limit
                .map(|l| parse_memory(&l).map_err(|e| usage(format!("--home-size-limit: {e}"))))
                .transpose()?,
        },
        (None, Some(_), _) => return Err(usage("--home-size needs --home-claim NAME".into())),
        (Some(_), _, Some(_)) => {
            return Err(usage(
                "--home-size-limit is for the emptyDir; with --home-claim give --home-size".into(),
            ));
        }
    };
    let set = |egress: &mut ArtifactEgress, cidrs: Vec<String>, ports: Vec<u16>| {
        if !cidrs.is_empty() {
            egress.cidrs = cidrs;
        }
        if !ports.is_empty() {
            egress.ports = ports;
        }
    };
    set(&mut cp.store, a.store_cidrs, a.store_ports);
    set(&mut cp.database, a.db_cidrs, a.db_ports);
    set(&mut cp.api_server, a.api_cidrs, a.api_ports);
    set(&mut cp.registries, a.registry_cidrs, a.registry_ports);
    cp.image_pull_secrets = a.pull_secrets;
    cp.public_url = a.public_url;
    cp.extra_args = a.server_args;
    let docs = control_plane::manifests(&cp).map_err(usage)?;
    print!("{}", control_plane::to_yaml(&docs));
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_foreign_ones_are_left_alone() {
        let me = owner_string(&Owner::current());
        assert!(owner_alive(&me));
        let dead = format!("{}:{}", std::process::id(), "this-host/other-boot/1");
        // Another host's process: only its machine can tell, so it is left alone.
        assert!(owner_alive(&dead));
        assert!(owner_alive("not ours"));
        let current = Owner::current();
        let gone = Owner {
            boot_id: "a-previous-boot".into(),
            ..current
        };
        assert!(!owner_alive(&owner_string(&gone)));
    }
}
