//! The Kubernetes runtime against a mock API server on 127.0.0.1: each way a step's pod can
//! go, and what the runtime asks the cluster for.

mod mock;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_kube::contract::StepReport;
use gantry_kube::job::ArtifactEgress;
use gantry_kube::{KubeConfig, KubeRuntime};
use gantry_runtime::{
    LogBlock, RemoteStep, Runtime, RuntimeError, StepOutcome, StepRequest, Termination,
};
use mock::{MockApi, Script};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn config(owner: &str, alive: &'static [&'static str]) -> KubeConfig {
    KubeConfig {
        namespace: mock::NS.into(),
        helper_image: format!("registry.test/gantry@{DIGEST_A}"),
        artifacts: "s3://bucket/gantry".into(),
        artifacts_secret: Some("gantry-artifacts".into()),
        image_pull_secrets: vec!["regcred".into()],
        egress: ArtifactEgress {
            cidrs: vec!["10.0.3.7/32".into()],
            ports: vec![9000],
        },
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
        ttl_after_finished: Duration::from_secs(3600),
        owner: owner.into(),
        owner_alive: Arc::new(move |o: &str| alive.contains(&o)),
        poll: Duration::from_millis(20),
        unschedulable_timeout: Duration::from_millis(400),
        replica_address: None,
        deadline_slack: Duration::from_secs(30),
    }
}

fn request(step: &str) -> StepRequest {
    StepRequest {
        id: format!("gantry-r-1-{step}-1"),
        rootfs: "/nonexistent".into(),
        args: vec!["python".into(), "train.py".into()],
        env: vec!["PYTHONUNBUFFERED=1".into()],
        cwd: "/app".into(),
        uid: 65534,
        gid: 65534,
        mounts: Vec::new(),
        network: false,
        cpu_millis: 500,
        memory_bytes: 256 << 20,
        pids_limit: 256,
        gpu_devices: Vec::new(),
        timeout: Some(Duration::from_secs(600)),
        stop_grace: Duration::from_secs(7),
        cancel: CancellationToken::new(),
        create_runtime_hook: None,
        remote: Some(RemoteStep {
            run_id: "r-1".into(),
            step: step.into(),
            attempt: 1,
            image: format!("registry.test/app@{DIGEST_B}"),
            builtin: false,
            inputs: vec![("data".into(), DIGEST_A.into())],
            outputs: vec!["model".into()],
            params: json!({"lr": 0.1}),
            gpu: 0,
            gpu_model: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }),
    }
}

async fn run(
    rt: &KubeRuntime,
    req: StepRequest,
) -> (Result<StepOutcome, RuntimeError>, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LogBlock>(64);
    let collect = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(block) = rx.recv().await {
            lines.extend(block.lines().map(str::to_string));
        }
        lines
    });
    let out = tokio::time::timeout(Duration::from_secs(30), rt.run(req, tx))
        .await
        .expect("the runtime answers");
    (out, collect.await.expect("logs"))
}

fn report(exit: i32) -> String {
    let mut r = StepReport {
        v: 1,
        exit_code: Some(exit),
        peak_memory_bytes: 123 << 20,
        cpu_micros: 4_000_000,
        wall_ms: 5_000,
        metrics: Some(DIGEST_B.into()),
        ..Default::default()
    };
    r.outputs.insert("model".into(), DIGEST_A.into());
    r.message().expect("fits")
}

#[tokio::test]
async fn a_step_runs_as_a_job_and_its_outputs_come_back_as_digests() {
    let api = MockApi::start().await;
    api.script(
        "train",
        Script {
            pods: vec![vec![
                mock::pending(),
                mock::running(),
                mock::running(),
                mock::ended(0, "Completed", Some(&report(0))),
            ]],
            log: "epoch 1\nepoch 2\n".into(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (out, logs) = run(&rt, request("train")).await;
    let out = out.expect("ran");
    assert_eq!(out.termination, Termination::Exited);
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.usage.peak_memory_bytes, 123 << 20);
    assert_eq!(out.usage.cpu_micros, 4_000_000);
    let artifacts = out.artifacts.expect("artifacts");
    assert_eq!(
        artifacts.outputs.get("model").map(String::as_str),
        Some(DIGEST_A)
    );
    assert_eq!(artifacts.metrics.as_deref(), Some(DIGEST_B));
    assert_eq!(artifacts.error, None);
    assert!(logs.contains(&"epoch 2".to_string()), "{logs:?}");

    let c = api.lock();
    let job = c.created_jobs.first().expect("a job");
    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["ttlSecondsAfterFinished"], 3600);
    assert_eq!(spec["activeDeadlineSeconds"], 600 + 7 + 15 * 60);
    assert_eq!(
        spec["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["type"],
        "DisruptionTarget"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    let step = &pod["containers"][0];
    assert_eq!(step["image"], format!("registry.test/app@{DIGEST_B}"));
    assert_eq!(
        step["command"],
        json!([
            "/gantry/bin/gantry",
            "step-exec",
            "--timeout-ms=600000",
            "--grace-ms=7000",
            "--",
            "python",
            "train.py"
        ])
    );
    let sc = &step["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sc["runAsUser"], 65534);
    assert_eq!(step["resources"]["limits"], step["resources"]["requests"]);
    assert_eq!(step["resources"]["limits"]["cpu"], "500m");
    assert_eq!(step["envFrom"][0]["secretRef"]["name"], "gantry-artifacts");
    let mounts = step["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.iter().any(|m| m["mountPath"] == "/gantry/inputs"
        && m["readOnly"] == true
        && m["subPath"] == "inputs"));
    let plan: serde_json::Value = step["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == "GANTRY_STEP_PLAN"))
        .and_then(|v| serde_json::from_str(v["value"].as_str()?).ok())
        .expect("a plan");
    assert_eq!(
        plan["inputs"][0],
        json!({"path": "data", "digest": DIGEST_A})
    );
    assert_eq!(plan["outputs"], json!(["model"]));
    assert_eq!(plan["artifacts"], "s3://bucket/gantry");
    assert_eq!(pod["initContainers"][0]["command"][1], "step-fetch");

    // No network: a policy that lets the pod reach DNS and the artifact store only, removed
    // once the step is over.
    let policy = c.created_policies.first().expect("a policy");
    let egress = &policy["spec"]["egress"];
    assert_eq!(egress[1]["to"][0]["ipBlock"]["cidr"], "10.0.3.7/32");
    assert_eq!(egress[1]["ports"][0]["port"], 9000);
    assert_eq!(policy["spec"]["ingress"], json!([]));
    assert!(c.policies.is_empty(), "the policy is removed at the end");
    // The Job stays for its TTL (kubectl can still show it).
    assert_eq!(c.jobs.len(), 1);
}

#[tokio::test]
async fn a_step_with_network_gets_no_policy_and_a_gpu_step_asks_for_its_resource() {
    let api = MockApi::start().await;
    api.script(
        "gpu",
        Script {
            pods: vec![vec![mock::ended(0, "Completed", Some(&report(0)))]],
            log: String::new(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let mut req = request("gpu");
    req.network = true;
    if let Some(r) = req.remote.as_mut() {
        r.gpu = 1;
        r.gpu_model = Some("1g.10gb".into());
        r.node_selector = BTreeMap::from([("pool".to_string(), "a100".to_string())]);
        r.tolerations =
            vec![json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})];
    }
    let (out, _) = run(&rt, req).await;
    assert_eq!(out.expect("ran").exit_code, Some(0));
    let c = api.lock();
    assert!(c.created_policies.is_empty());
    let limits =
        &c.created_jobs[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["nvidia.com/mig-1g.10gb"], "1");
    let pod = &c.created_jobs[0]["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"pool": "a100"}));
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
}

#[tokio::test]
async fn oom_kills_map_to_oom_killed_with_or_without_the_wrappers_report() {
    let api = MockApi::start().await;
    // The OOM killer chose the wrapper itself: only the container state tells.
    api.script(
        "big",
        Script {
            pods: vec![vec![mock::running(), mock::ended(137, "OOMKilled", None)]],
            log: String::new(),
        },
    );
    // It killed the step's command: the wrapper saw it in its cgroup's events.
    let oom_report = StepReport {
        v: 1,
        signal: Some(9),
        oom_killed: true,
        peak_memory_bytes: 256 << 20,
        ..Default::default()
    };
    api.script(
        "big2",
        Script {
            pods: vec![vec![mock::ended(
                1,
                "Error",
                Some(&oom_report.message().expect("fits")),
            )]],
            log: String::new(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (out, _) = run(&rt, request("big")).await;
    let out = out.expect("ran");
    assert_eq!(out.termination, Termination::OomKilled);
    assert_eq!(out.signal, Some(9));
    let (out, _) = run(&rt, request("big2")).await;
    let out = out.expect("ran");
    assert_eq!(out.termination, Termination::OomKilled);
    assert_eq!(out.usage.peak_memory_bytes, 256 << 20);
}

#[tokio::test]
async fn an_unschedulable_pod_says_why_and_fails_after_the_wait() {
    let api = MockApi::start().await;
    let why = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.";
    api.script(
        "gpu",
        Script {
            pods: vec![vec![mock::unschedulable(why); 1000]],
            log: String::new(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (out, logs) = run(&rt, request("gpu")).await;
    let err = out.expect_err("fails").to_string();
    assert!(err.contains("unschedulable") && err.contains(why), "{err}");
    assert!(
        logs.iter()
            .any(|l| l.contains("waiting: unschedulable") && l.contains(why)),
        "{logs:?}"
    );
    let c = api.lock();
    assert!(c.jobs.is_empty(), "the Job is deleted");
    assert!(c.policies.is_empty());
}

#[tokio::test]
async fn an_image_pull_error_fails_at_once_with_the_registrys_message() {
    let api = MockApi::start().await;
    let message = "failed to pull image \"registry.test/app@sha256:bbbb\": manifest unknown";
    api.script(
        "pull",
        Script {
            pods: vec![vec![
                mock::pending(),
                mock::step_waiting("ErrImagePull", message),
            ]],
            log: String::new(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (out, _) = run(&rt, request("pull")).await;
    let err = out.expect_err("fails").to_string();
    assert!(
        err.contains("cannot be pulled") && err.contains("manifest unknown"),
        "{err}"
    );
    assert!(api.lock().jobs.is_empty());
}

#[tokio::test]
async fn a_failed_fetch_names_the_input() {
    let api = MockApi::start().await;
    api.script(
        "fetch",
        Script {
            pods: vec![vec![mock::init_failed(
                1,
                "input data (sha256:aaaa…): not found in s3://bucket/gantry",
            )]],
            log: String::new(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (out, _) = run(&rt, request("fetch")).await;
    let err = out.expect_err("fails").to_string();
    assert!(
        err.contains("fetching the step's inputs failed") && err.contains("input data"),
        "{err}"
    );
}

#[tokio::test]
async fn deadlines_map_to_timed_out() {
    let api = MockApi::start().await;
    // Kubernetes stopped the pod at activeDeadlineSeconds before the wrapper reported.
    api.script(
        "slow",
        Script {
            pods: vec![vec![
                mock::running(),
                mock::pod_failed(
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                ),
            ]],
            log: String::new(),
        },
    );
    // The wrapper stopped the command at its timeout and said so.
    let timed = StepReport {
        v: 1,
        signal: Some(15),
        timed_out: true,
        ..Default::default()
    };
    api.script(
        "slow2",
        Script {
            pods: vec![vec![mock::ended(
                1,
                "Error",
                Some(&timed.message().expect("fits")),
            )]],
            log: String::new(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (out, _) = run(&rt, request("slow")).await;
    assert_eq!(out.expect("ran").termination, Termination::TimedOut);
    let (out, _) = run(&rt, request("slow2")).await;
    assert_eq!(out.expect("ran").termination, Termination::TimedOut);
}

#[tokio::test]
async fn an_evicted_pod_is_replaced_and_the_step_goes_on() {
    let api = MockApi::start().await;
    api.script(
        "drain",
        Script {
            pods: vec![
                vec![
                    mock::running(),
                    mock::disrupted("node drained for maintenance"),
                ],
                vec![
                    mock::pending(),
                    mock::running(),
                    mock::ended(0, "Completed", Some(&report(0))),
                ],
            ],
            log: "working\n".into(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (out, logs) = run(&rt, request("drain")).await;
    let out = out.expect("ran");
    assert_eq!(out.termination, Termination::Exited);
    assert_eq!(out.exit_code, Some(0));
    assert!(
        logs.iter()
            .any(|l| l.contains("was stopped by the cluster") && l.contains("node drained")),
        "{logs:?}"
    );
    assert_eq!(
        api.lock().created_jobs.len(),
        1,
        "one Job: retries are not Kubernetes'"
    );
}

#[tokio::test]
async fn cancel_deletes_the_job_with_the_steps_grace() {
    let api = MockApi::start().await;
    api.script(
        "long",
        Script {
            pods: vec![vec![mock::running(); 100_000]],
            log: "started\n".into(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let req = request("long");
    let cancel = req.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let (out, _) = run(&rt, req).await;
    assert_eq!(out.expect("ran").termination, Termination::Cancelled);
    let deletes = api.requests("DELETE", "/jobs/");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    let (query, body) = &deletes[0];
    let options: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_str(body).expect("delete options")
    };
    let grace_in_query = query.contains("gracePeriodSeconds=7");
    assert!(
        grace_in_query || options["gracePeriodSeconds"] == 7,
        "{query} {body}"
    );
    assert!(
        query.contains("propagationPolicy=Background")
            || options["propagationPolicy"] == "Background",
        "{query} {body}"
    );
    let c = api.lock();
    assert!(c.jobs.is_empty() && c.policies.is_empty());
}

#[tokio::test]
async fn a_leftover_job_of_the_same_attempt_is_replaced() {
    let api = MockApi::start().await;
    api.script(
        "again",
        Script {
            pods: vec![vec![mock::ended(0, "Completed", Some(&report(0)))]],
            log: String::new(),
        },
    );
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let (first, _) = run(&rt, request("again")).await;
    assert_eq!(first.expect("ran").exit_code, Some(0));
    // The same attempt again (its process died after creating the Job): the old Job goes.
    let (second, _) = run(&rt, request("again")).await;
    assert_eq!(second.expect("ran").exit_code, Some(0));
    assert_eq!(api.lock().created_jobs.len(), 2);
    assert_eq!(api.requests("DELETE", "/jobs/").len(), 1);
}

#[tokio::test]
async fn a_restarted_process_removes_the_jobs_of_dead_owners_only() {
    let api = MockApi::start().await;
    for (step, _) in [("a", 0), ("b", 1), ("c", 2)] {
        api.script(
            step,
            Script {
                pods: vec![vec![mock::running(); 100_000]],
                log: String::new(),
            },
        );
    }
    // Three processes start one step each and "die" before the steps end.
    for (owner, step) in [
        ("dead-host/boot/1", "a"),
        ("live-host/boot/2", "b"),
        ("me", "c"),
    ] {
        let rt = KubeRuntime::new(api.client(), config(owner, &[]));
        let req = request(step);
        let cancel = req.cancel.clone();
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let handle = tokio::spawn(async move { rt.run(req, tx).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        handle.abort();
        drop(cancel);
    }
    assert_eq!(api.lock().jobs.len(), 3);
    let rt = KubeRuntime::new(api.client(), config("me", &["live-host/boot/2"]));
    let removed = rt.reap_leftovers().await.expect("reaped");
    assert_eq!(removed, 1);
    let c = api.lock();
    let left: Vec<&String> = c.jobs.keys().collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|n| !n.contains("-a-")), "{left:?}");
    assert_eq!(c.policies.len(), 2);
}

#[tokio::test]
async fn requests_the_runtime_cannot_run_are_refused_before_anything_is_created() {
    let api = MockApi::start().await;
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let mut req = request("x");
    req.remote = None;
    let (out, _) = run(&rt, req).await;
    assert!(
        matches!(out, Err(RuntimeError::InvalidRequest { .. })),
        "{out:?}"
    );
    let mut req = request("x");
    req.uid = 0;
    let (out, _) = run(&rt, req).await;
    assert!(out.expect_err("root").to_string().contains("non-root"));
    let mut req = request("x");
    if let Some(r) = req.remote.as_mut() {
        r.inputs = vec![("../etc".into(), DIGEST_A.into())];
    }
    let (out, _) = run(&rt, req).await;
    assert!(out.expect_err("escape").to_string().contains("../etc"));
    assert!(api.lock().requests.is_empty());
}

fn replica_pod(rt: &KubeRuntime, id: &str) -> gantry_kube::replica::ReplicaPod {
    rt.replica_pod(
        id,
        "flowers",
        None,
        vec![
            "/opt/gantry/bin/gantry".into(),
            "serve".into(),
            "--model-dir".into(),
            "/gantry/inputs/model".into(),
            "--listen".into(),
            "0.0.0.0:8080".into(),
        ],
        vec![("HOME".into(), "/tmp".into())],
        (65534, 65534),
        (500, 256 << 20),
        8080,
        Some(("model".into(), DIGEST_A.into())),
    )
}

#[tokio::test]
async fn a_model_replica_is_a_deployment_a_service_and_a_policy() {
    let api = MockApi::start().await;
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let pod = replica_pod(&rt, "flowers-1a2b");
    let address = rt.start_replica(&pod).await.expect("started");
    assert_eq!(address, format!("{}.ns.svc:8080", pod.name()));
    {
        let c = api.lock();
        let d = &c.deployments[&pod.name()];
        assert_eq!(d["spec"]["replicas"], 1);
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false);
        let server = &spec["containers"][0];
        assert_eq!(server["image"], format!("registry.test/gantry@{DIGEST_A}"));
        assert_eq!(
            server["readinessProbe"]["httpGet"]["path"],
            "/v2/health/ready"
        );
        assert_eq!(server["securityContext"]["readOnlyRootFilesystem"], true);
        let plan: serde_json::Value = serde_json::from_str(
            spec["initContainers"][0]["env"][0]["value"]
                .as_str()
                .expect("plan"),
        )
        .expect("json");
        assert_eq!(
            plan["inputs"],
            json!([{"path": "model", "digest": DIGEST_A}])
        );
        let svc = &c.services[&pod.name()];
        assert_eq!(
            svc["spec"]["selector"]["gantry.dev/replica"],
            "flowers-1a2b"
        );
        let np = &c.policies[&pod.name()];
        assert_eq!(
            np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "control-plane"
        );
    }
    // Started again (a restart after a failure): the objects are replaced, not duplicated.
    rt.start_replica(&pod).await.expect("restarted");
    assert_eq!(api.lock().created_deployments.len(), 2);
    assert_eq!(api.lock().deployments.len(), 1);
    rt.stop_replica(&pod).await;
    let c = api.lock();
    assert!(c.deployments.is_empty() && c.services.is_empty() && c.policies.is_empty());
}

#[tokio::test]
async fn a_replica_that_cannot_start_says_why() {
    let api = MockApi::start().await;
    let rt = KubeRuntime::new(api.client(), config("me", &[]));
    let pod = replica_pod(&rt, "flowers-9z");
    rt.start_replica(&pod).await.expect("started");
    assert_eq!(rt.replica_problem(&pod).await, None);
    // The kubelet cannot pull the image.
    let mut status = mock::step_waiting("ImagePullBackOff", "Back-off pulling image: not found");
    status["containerStatuses"][0]["name"] = json!("server");
    let labels =
        api.lock().deployments[&pod.name()]["spec"]["template"]["metadata"]["labels"].clone();
    api.lock().pods.insert(
        "replica-pod".into(),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "replica-pod", "namespace": "ns", "labels": labels},
               "status": status}),
    );
    let problem = rt.replica_problem(&pod).await.expect("a problem");
    assert!(
        problem.contains("cannot be pulled") && problem.contains("not found"),
        "{problem}"
    );
}

#[tokio::test]
async fn replicas_of_a_dead_server_are_removed_and_the_control_planes_objects_never() {
    let api = MockApi::start().await;
    let dead = KubeRuntime::new(api.client(), config("dead-host/boot/1", &[]));
    dead.start_replica(&replica_pod(&dead, "old-1"))
        .await
        .expect("started");
    let live = KubeRuntime::new(api.client(), config("live-host/boot/2", &[]));
    live.start_replica(&replica_pod(&live, "other-1"))
        .await
        .expect("started");
    // The control plane's own policy: managed by gantry, no owner, no run or replica.
    api.lock().policies.insert(
        "gantry".into(),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "gantry", "namespace": "ns",
                            "labels": {"app.kubernetes.io/managed-by": "gantry"}},
               "spec": {"podSelector": {}}}),
    );
    let me = KubeRuntime::new(api.client(), config("me", &["live-host/boot/2"]));
    assert_eq!(me.reap_leftovers().await.expect("reaped"), 1);
    let c = api.lock();
    let left: Vec<&String> = c.deployments.keys().collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("other-1"));
    assert_eq!(c.services.len(), 1);
    assert!(c.policies.contains_key("gantry"));
    assert_eq!(c.policies.len(), 2);
}

#[tokio::test]
async fn the_runtimes_own_deadline_counts_from_the_containers_start() {
    let api = MockApi::start().await;
    // Pending (scheduling, image pull) for longer than the timeout, then running forever: a
    // wrapper that never reports.
    let mut statuses = vec![mock::pending(); 20];
    statuses.extend(vec![mock::running(); 100_000]);
    api.script(
        "hang",
        Script {
            pods: vec![statuses],
            log: "started\n".into(),
        },
    );
    let mut cfg = config("me", &[]);
    cfg.deadline_slack = Duration::ZERO;
    let rt = KubeRuntime::new(api.client(), cfg);
    let mut req = request("hang");
    req.timeout = Some(Duration::from_millis(150));
    req.stop_grace = Duration::ZERO;
    let (out, logs) = run(&rt, req).await;
    assert_eq!(out.expect("ran").termination, Termination::TimedOut);
    // Had the pending time counted, the step would have been stopped before it started.
    assert!(logs.contains(&"started".to_string()), "{logs:?}");
    assert!(api.lock().jobs.is_empty(), "the Job is deleted");
}
