//! `gantry run --runtime kubernetes`: a pipeline whose steps are Jobs on a cluster (a mock API
//! server on 127.0.0.1 that plays the pods), with its artifacts in S3 (moto_server). The pods'
//! reports name output digests; the engine checks them against the bucket, hands them to the
//! next step's Job by digest, records lineage and metrics, and caches the rerun.

use std::process::Output;

use gantry_artifacts::{ArtifactStore, Location};
use gantry_kube::contract::StepReport;
use serde_json::{Value, json};

use crate::kube_mock::{self, MockApi, Script};
use crate::moto::Moto;
use crate::support::{Gantry, step};

const PIPELINE: &str = r#"
name: cluster
steps:
  - name: prepare
    image: busybox:1
    command: [sh, -c, "echo 1,2 > /gantry/outputs/data"]
    outputs: [data]
  - name: train
    image: busybox:1
    command: [sh, -c, "cat ${inputs.data} > /gantry/outputs/model"]
    inputs: { data: prepare.data }
    outputs: [model]
    resources: { cpu: 2, memory: 1Gi, gpu: { count: 1, model: 1g.10gb } }
    kubernetes:
      node_selector: { nvidia.com/mig.config: all-1g.10gb }
      tolerations: [{ key: nvidia.com/gpu, operator: Exists, effect: NoSchedule }]
"#;

struct Cluster {
    api: MockApi,
    rt: tokio::runtime::Runtime,
    moto: Moto,
    kubeconfig: tempfile::NamedTempFile,
    store: ArtifactStore,
}

impl Cluster {
    fn start(moto: Moto) -> Cluster {
        moto.create_bucket("cluster");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let api = rt.block_on(MockApi::start());
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            kubeconfig.path(),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: {}\nusers:\n- name: me\n  user: {{}}\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: me\n    namespace: {}\ncurrent-context: mock\n",
                api.url,
                kube_mock::NS
            ),
        )
        .unwrap();
        let env = moto.env();
        let cache = tempfile::tempdir().unwrap().keep();
        let store = ArtifactStore::open_with_env(
            &Location::parse("s3://cluster/gantry").unwrap(),
            &cache,
            &|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        )
        .unwrap();
        Cluster {
            api,
            rt,
            moto,
            kubeconfig,
            store,
        }
    }

    /// What a pod's wrapper would upload: `content` into the bucket, returning its digest.
    fn upload(&self, content: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, content).unwrap();
        self.rt.block_on(self.store.put_path(&file)).unwrap().digest
    }

    fn gantry(&self, g: &Gantry, args: &[&str], artifacts: &str) -> Output {
        let mut c = g.command(args);
        c.env("KUBECONFIG", self.kubeconfig.path())
            .env("GANTRY_RUNTIME", "kubernetes")
            .env("GANTRY_ARTIFACTS", artifacts)
            .env(
                "GANTRY_KUBE_BUILTIN_IMAGE",
                format!("registry.test/gantry@sha256:{}", "c".repeat(64)),
            )
            .env("GANTRY_KUBE_ARTIFACTS_SECRET", "s3-credentials")
            .env("GANTRY_KUBE_POLL", "20ms");
        for (k, v) in self.moto.env() {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn report(outputs: &[(&str, &str)], metrics: Option<&str>) -> String {
    let mut r = StepReport {
        v: 1,
        exit_code: Some(0),
        peak_memory_bytes: 50 << 20,
        cpu_micros: 1_500_000,
        wall_ms: 2_000,
        metrics: metrics.map(str::to_string),
        ..Default::default()
    };
    for (name, digest) in outputs {
        r.outputs.insert(name.to_string(), digest.to_string());
    }
    r.message().unwrap()
}

#[test]
fn a_pipeline_runs_as_jobs_on_a_cluster_with_its_artifacts_in_a_bucket() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let cluster = Cluster::start(moto);
    let data = cluster.upload("1,2\n");
    let model = cluster.upload("a trained model\n");
    let metrics = cluster.upload("{\"accuracy\": 0.91, \"loss\": {\"final\": 0.2}}");
    cluster.api.script(
        "prepare",
        Script {
            pods: vec![vec![
                kube_mock::pending(),
                kube_mock::running(),
                kube_mock::ended(0, "Completed", Some(&report(&[("data", &data)], None))),
            ]],
            log: "preparing\n".into(),
        },
    );
    cluster.api.script(
        "train",
        Script {
            pods: vec![vec![
                kube_mock::unschedulable(
                    "0/4 nodes are available: 4 Insufficient nvidia.com/mig-1g.10gb.",
                ),
                kube_mock::running(),
                kube_mock::ended(
                    0,
                    "Completed",
                    Some(&report(&[("model", &model)], Some(&metrics))),
                ),
            ]],
            log: "epoch 1\nepoch 2\n".into(),
        },
    );
    let g = Gantry::new();
    let file = g.write("cluster/pipeline.yaml", PIPELINE);
    let file = file.to_str().unwrap();
    let at = "s3://cluster/gantry";

    let run = ok_json(&cluster.gantry(&g, &["run", file, "-o", "json"], at));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "prepare")["outputs"]["data"], json!(data));
    assert_eq!(step(&run, "train")["outputs"]["model"], json!(model));
    let run_id = run["run_id"].as_str().unwrap().to_string();

    {
        let c = cluster.api.lock();
        assert_eq!(c.created_jobs.len(), 2);
        let train = c
            .created_jobs
            .iter()
            .find(|j| j["metadata"]["labels"]["gantry.dev/step"] == "train")
            .unwrap();
        let pod = &train["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        // The image the engine resolved and checked, pinned by digest.
        let image = container["image"].as_str().unwrap();
        assert!(image.starts_with("busybox@sha256:"), "{image}");
        let limits = &container["resources"]["limits"];
        assert_eq!(limits["cpu"], "2000m");
        assert_eq!(
            pod["nodeSelector"],
            json!({"nvidia.com/mig.config": "all-1g.10gb"})
        );
        assert_eq!(
            pod["tolerations"],
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
        );
        assert_eq!(limits["nvidia.com/mig-1g.10gb"], "1");
        // The upstream output travels by digest.
        let plan: Value = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "GANTRY_STEP_PLAN")
            .map(|e| serde_json::from_str(e["value"].as_str().unwrap()).unwrap())
            .unwrap();
        assert_eq!(plan["inputs"], json!([{"path": "data", "digest": data}]));
        assert_eq!(plan["artifacts"], at);
        assert_eq!(
            container["envFrom"][0]["secretRef"]["name"],
            "s3-credentials"
        );
        // Both steps had no network: each got its policy, removed when it ended.
        assert_eq!(c.created_policies.len(), 2);
        assert!(c.policies.is_empty());
    }

    // Lineage, metrics, usage and logs are recorded as for a local run.
    let show = ok_json(&cluster.gantry(&g, &["show", &run_id, "-o", "json"], at));
    let train = step(&show, "train");
    assert_eq!(train["metrics"]["accuracy"], json!(0.91), "{train}");
    assert_eq!(train["metrics"]["loss.final"], json!(0.2), "{train}");
    let logs = cluster.gantry(&g, &["logs", &run_id, "train"], at);
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(logs.contains("epoch 2"), "{logs}");
    assert!(
        logs.contains("waiting: unschedulable: 0/4 nodes are available"),
        "{logs}"
    );

    // The rerun is cached from the bucket: no new Jobs.
    let again = ok_json(&cluster.gantry(&g, &["run", file, "-o", "json"], at));
    assert_eq!(again["status"], "succeeded");
    assert_eq!(again["cache_hits"], 2, "{again}");
    assert_eq!(cluster.api.lock().created_jobs.len(), 2);
}

#[test]
fn a_pod_that_reports_an_output_the_bucket_lacks_fails_the_step() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let cluster = Cluster::start(moto);
    let missing = format!("sha256:{}", "9".repeat(64));
    cluster.api.script(
        "prepare",
        Script {
            pods: vec![vec![kube_mock::ended(
                0,
                "Completed",
                Some(&report(&[("data", &missing)], None)),
            )]],
            log: String::new(),
        },
    );
    let g = Gantry::new();
    let file = g.write("cluster/pipeline.yaml", PIPELINE);
    let out = cluster.gantry(
        &g,
        &["run", file.to_str().unwrap(), "-o", "json"],
        "s3://cluster/gantry",
    );
    assert_eq!(out.status.code(), Some(1));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reason = step(&run, "prepare")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        reason.contains("output data") && reason.contains("does not hold"),
        "{run}"
    );
}

#[test]
fn the_kubernetes_runtime_says_what_it_needs() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let cluster = Cluster::start(moto);
    let g = Gantry::new();
    let file = g.write("cluster/pipeline.yaml", PIPELINE);
    let file = file.to_str().unwrap();
    // The pods cannot read this machine's store.
    let local = g.dir.path().join("store");
    let out = cluster.gantry(&g, &["run", file], local.to_str().unwrap());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs the artifacts in S3"), "{err}");
    // The built-in image must be in a registry, by digest.
    let mut c = g.command(&["run", file]);
    c.env("KUBECONFIG", cluster.kubeconfig.path())
        .env("GANTRY_RUNTIME", "kubernetes")
        .env("GANTRY_ARTIFACTS", "s3://cluster/gantry")
        .env("GANTRY_KUBE_BUILTIN_IMAGE", "registry.test/gantry:latest");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must name a digest"), "{err}");
    // Each setting that does not parse is named, before any Job is made.
    let pinned = format!("registry.test/gantry@sha256:{}", "c".repeat(64));
    for (name, value, says) in [
        ("GANTRY_KUBE_NODE_SELECTOR", "gpu", "is not key=value"),
        (
            "GANTRY_KUBE_TOLERATIONS",
            "{\"key\": 1",
            "is not a JSON list of tolerations",
        ),
        (
            "GANTRY_KUBE_TOLERATIONS",
            "[{\"effect\": 7}]",
            "is not a JSON list of tolerations",
        ),
        ("GANTRY_KUBE_STORE_PORTS", "99999", "is not a port"),
        ("GANTRY_KUBE_TTL", "forever", "GANTRY_KUBE_TTL"),
        (
            "GANTRY_KUBE_UNSCHEDULABLE_TIMEOUT",
            "10 parsecs",
            "GANTRY_KUBE_UNSCHEDULABLE_TIMEOUT",
        ),
    ] {
        let mut c = g.command(&["run", file]);
        c.env("KUBECONFIG", cluster.kubeconfig.path())
            .env("GANTRY_RUNTIME", "kubernetes")
            .env("GANTRY_ARTIFACTS", "s3://cluster/gantry")
            .env("GANTRY_KUBE_BUILTIN_IMAGE", &pinned)
            .env(name, value);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {err}");
        assert!(
            err.contains(name) && err.contains(says),
            "{name}={value}: {err}"
        );
    }
    assert!(
        cluster.api.requests("POST", "/jobs").is_empty(),
        "no Job was made"
    );
}

#[test]
fn the_control_planes_manifests_are_valid_for_kubernetes() {
    let g = Gantry::empty();
    let image = format!("registry.test/gantry/builtin@sha256:{}", "b".repeat(64));
    let yaml = g.ok(&[
        "kube",
        "manifests",
        "--builtin-image",
        &image,
        "--artifacts",
        "s3://ml-artifacts/gantry",
        "--store-port",
        "9000",
        "--home-claim",
        "gantry-home",
        "--home-size",
        "20Gi",
    ]);
    for kind in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PersistentVolumeClaim",
        "Service",
        "NetworkPolicy",
        "Deployment",
    ] {
        assert!(yaml.contains(&format!("kind: {kind}\n")), "{kind}:\n{yaml}");
    }
    assert!(yaml.contains("--runtime"), "{yaml}");
    crate::kube::assert_valid_kubernetes(&yaml);
    // Images must be pinned; the artifacts must be in S3.
    let out = g
        .command(&[
            "kube",
            "manifests",
            "--builtin-image",
            "registry.test/gantry:v1",
            "--artifacts",
            "s3://ml-artifacts/g",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pinned by digest"));
}

/// A free port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_deployment_on_a_cluster_serves_through_the_server_from_a_kubernetes_deployment() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let cluster = Cluster::start(moto);
    let at = "s3://cluster/gantry";
    let g = Gantry::new();
    // A model trained here (runc steps), stored in the bucket.
    let csv = g.ok(&["dataset", "iris"]);
    g.write("iris.csv", &csv);
    let file = g.write("iris.yaml", crate::deploy::PIPELINE);
    let mut c = g.command(&["run", file.to_str().unwrap(), "-o", "json"]);
    c.env("GANTRY_ARTIFACTS", at);
    for (k, v) in cluster.moto.env() {
        c.env(k, v);
    }
    ok_json(&c.output().unwrap());
    let mut c = g.command(&["model", "show", "iris@1", "-o", "json"]);
    c.env("GANTRY_ARTIFACTS", at);
    let model = ok_json(&c.output().unwrap());
    let digest = model["artifact"]["digest"].as_str().unwrap().to_string();

    // The cluster's pod, played here by the same model server the pod would run.
    let out = tempfile::tempdir().unwrap();
    let mut c = g.command(&[
        "artifact",
        "get",
        &digest,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    c.env("GANTRY_ARTIFACTS", at);
    for (k, v) in cluster.moto.env() {
        c.env(k, v);
    }
    let got = c.output().unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let model_path = String::from_utf8_lossy(&got.stdout).trim().to_string();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut pod = g
        .command(&[
            "serve",
            "--model-dir",
            &model_path,
            "--flavor",
            "builtin",
            "--name",
            "flowers",
            "--version",
            "1",
            "--listen",
            &listen,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // The server, with its steps and replicas on the cluster.
    let mut env: Vec<(String, String)> = cluster
        .moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.extend([
        (
            "KUBECONFIG".to_string(),
            cluster.kubeconfig.path().to_string_lossy().into_owned(),
        ),
        ("GANTRY_ARTIFACTS".into(), at.into()),
        ("GANTRY_RUNTIME".into(), "kubernetes".into()),
        (
            "GANTRY_KUBE_BUILTIN_IMAGE".into(),
            format!("registry.test/gantry@sha256:{}", "c".repeat(64)),
        ),
        ("GANTRY_KUBE_REPLICA_ADDRESS".into(), listen.clone()),
    ]);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (mut server, url) = g.spawn_listening(&["server", "--listen", "127.0.0.1:0"], &env_refs);
    let (code, _, err) = g.remote(&url, &["deploy", "flowers", "--model", "iris@1"]);
    assert_eq!(code, 0, "{err}");
    crate::support::wait_until("the replica serves through the server", || {
        let (status, body) = crate::deploy::http(
            &url,
            "POST",
            "/v2/models/flowers/infer",
            Some(&crate::deploy::infer_body(&[(5.1, 3.5, 1.4, 0.2)])),
        );
        status == 200 && body["model_version"] == "1"
    });
    {
        let c = cluster.api.lock();
        let d = c.deployments.values().next().expect("a Deployment");
        let spec = &d["spec"]["template"]["spec"];
        let server_c = &spec["containers"][0];
        let args: Vec<&str> = server_c["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--model-dir", "/gantry/inputs/model"]),
            "{args:?}"
        );
        assert!(
            args.windows(2).any(|w| w == ["--listen", "0.0.0.0:8080"]),
            "{args:?}"
        );
        let plan: Value = serde_json::from_str(
            spec["initContainers"][0]["env"][0]["value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(plan["inputs"][0]["digest"], json!(digest));
        assert_eq!(c.services.len(), 1);
        assert!(
            c.policies
                .values()
                .any(|p| p["metadata"]["labels"]["app.kubernetes.io/component"] == "model-replica")
        );
    }
    let (code, _, err) = g.remote(&url, &["undeploy", "flowers"]);
    assert_eq!(code, 0, "{err}");
    crate::support::wait_until("the replica's objects are removed", || {
        let c = cluster.api.lock();
        c.deployments.is_empty() && c.services.is_empty()
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = server.wait();
    let _ = pod.kill();
    let _ = pod.wait();
    // The replica's life is in the usage records with what it requested.
    let usage: Value =
        serde_json::from_str(&g.ok(&["usage", "--by", "deployment", "-o", "json"])).unwrap();
    assert!(
        usage["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["key"] == "flowers"),
        "{usage}"
    );
}
