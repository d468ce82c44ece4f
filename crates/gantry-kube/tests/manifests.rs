//! Every object the Kubernetes runtime creates is valid for Kubernetes 1.30 and 1.33
//! (`kubernetes-validate --strict`, warnings fail), and the step Job matches its golden file.

#[path = "../../../testing/kube.rs"]
mod kube;
#[path = "../../../testing/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_kube::contract::{PlannedInput, StepPlan};
use gantry_kube::job::{ArtifactEgress, GpuRequest, StepJob};
use k8s_openapi::api::core::v1::Toleration;
use serde_json::json;

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn step_job(step: &str) -> StepJob {
    StepJob {
        namespace: "ml-team".into(),
        id: format!("gantry-r-20261205-{step}-1"),
        run_id: "r-20261205-abc".into(),
        step: step.into(),
        attempt: 1,
        owner: "host/boot-id/12345".into(),
        image: format!("registry.example.com/team/train@{DIGEST}"),
        helper_image: format!("registry.example.com/gantry/builtin@{DIGEST}"),
        args: vec!["python".into(), "train.py".into(), "--epochs=3".into()],
        env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
        working_dir: "/app".into(),
        uid: 65534,
        gid: 65534,
        cpu_millis: 2000,
        memory_bytes: 4 << 30,
        gpu: None,
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
        timeout: Some(Duration::from_secs(3600)),
        stop_grace: Duration::from_secs(10),
        ttl_after_finished: Duration::from_secs(86400),
        image_pull_secrets: vec!["registry-credentials".into()],
        artifacts_secret: Some("gantry-artifacts".into()),
        plan: StepPlan {
            v: 1,
            artifacts: "s3://ml-artifacts/gantry".into(),
            inputs: vec![PlannedInput {
                path: "train".into(),
                digest: DIGEST.into(),
            }],
            outputs: vec!["model".into()],
            params: json!({"epochs": 3}),
            report: None,
        },
        network: false,
        egress: ArtifactEgress {
            cidrs: vec!["10.96.12.5/32".into()],
            ports: vec![9000],
        },
    }
}

fn docs(jobs: &[StepJob]) -> String {
    let mut out = String::new();
    for j in jobs {
        let job = j.job().expect("a job");
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(&job).expect("json"));
        out.push('\n');
        if let Some(policy) = j.network_policy() {
            out.push_str("---\n");
            out.push_str(&serde_json::to_string_pretty(&policy).expect("json"));
            out.push('\n');
        }
    }
    out
}

#[test]
fn step_jobs_and_policies_are_valid_kubernetes_objects() {
    let plain = step_job("train");
    let mut gpu = step_job("train[lr=0.1,batch=32]");
    gpu.gpu = Some(GpuRequest::for_model(Some("h100"), 2));
    gpu.node_selector = BTreeMap::from([(
        "nvidia.com/gpu.product".to_string(),
        "NVIDIA-H100-80GB-HBM3".to_string(),
    )]);
    gpu.tolerations = vec![Toleration {
        key: Some("nvidia.com/gpu".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }];
    let mut mig = step_job("evaluate");
    mig.gpu = Some(GpuRequest::for_model(Some("1g.10gb"), 1));
    mig.timeout = None;
    let mut online = step_job("download");
    online.network = true;
    online.artifacts_secret = None;
    online.image_pull_secrets.clear();
    let mut open_egress = step_job("no-cidr");
    open_egress.egress = ArtifactEgress {
        cidrs: Vec::new(),
        ports: vec![443],
    };
    let all = [plain, gpu, mig, online, open_egress];
    for j in &all {
        let name = j.name();
        assert!(
            gantry_kube::names::is_dns_label(&name) && name.len() <= 52,
            "{name}"
        );
    }
    kube::assert_valid_kubernetes(&docs(&all));
}

#[test]
fn the_step_job_matches_its_golden_file() {
    let mut j = step_job("train");
    j.gpu = Some(GpuRequest {
        resource: "nvidia.com/gpu".into(),
        count: 1,
    });
    let text = docs(&[j]);
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/step-job.json");
    if std::env::var_os("GANTRY_BLESS").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden)
        .expect("tests/golden/step-job.json (GANTRY_BLESS=1 writes it)");
    assert_eq!(
        text, want,
        "the Job changed: review it, then GANTRY_BLESS=1 to accept"
    );
}

#[test]
fn a_misspelt_field_in_a_job_is_caught_by_the_validator() {
    let j = step_job("train");
    let text = docs(&[j]).replacen("\"backoffLimit\"", "\"backofLimit\"", 1);
    let Some(verdict) = kube::validate_kubernetes(&text) else {
        return;
    };
    assert!(verdict.is_err(), "the validator accepted a misspelt field");
}

#[test]
fn model_replica_objects_are_valid_kubernetes_objects() {
    use gantry_kube::replica::ReplicaPod;
    let pod = ReplicaPod {
        namespace: "ml-team".into(),
        id: "flowers-3f9a1c".into(),
        deployment: "flowers".into(),
        owner: "1234:host/boot/99".into(),
        image: format!("registry.example.com/gantry/builtin@{DIGEST}"),
        helper_image: format!("registry.example.com/gantry/builtin@{DIGEST}"),
        args: vec![
            "/opt/gantry/bin/gantry".into(),
            "serve".into(),
            "--model-dir".into(),
            "/gantry/inputs/model".into(),
            "--listen".into(),
            "0.0.0.0:8080".into(),
        ],
        env: vec![("HOME".into(), "/tmp".into())],
        uid: 65534,
        gid: 65534,
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        port: 8080,
        model: Some(("model/model.onnx".into(), DIGEST.into())),
        artifacts: "s3://ml-artifacts/gantry".into(),
        artifacts_secret: Some("gantry-artifacts".into()),
        image_pull_secrets: vec!["registry-credentials".into()],
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
    };
    let egress = ArtifactEgress {
        cidrs: vec!["10.96.12.5/32".into()],
        ports: vec![9000],
    };
    let docs = [
        serde_json::to_string_pretty(&pod.deployment().expect("deployment")).expect("json"),
        serde_json::to_string_pretty(&pod.service()).expect("json"),
        serde_json::to_string_pretty(&pod.network_policy(&egress)).expect("json"),
    ]
    .iter()
    .map(|d| format!("---\n{d}\n"))
    .collect::<String>();
    assert!(gantry_kube::names::is_dns_label(&pod.name()));
    kube::assert_valid_kubernetes(&docs);
}
