//! The step contract of a Kubernetes pod, played in real runc containers with the artifact
//! store in a real S3 API (moto_server on 127.0.0.1): `gantry step-fetch` (the init
//! container) fetches the inputs by digest and leaves the wrapper's binary; `gantry step-exec`
//! (the step container) runs the command as a supervisor would — credentials hidden, orphans
//! reaped, timeout with SIGTERM first — uploads the outputs and writes the report that the
//! runtime reads as the container's termination message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_artifacts::{ArtifactStore, Location};
use gantry_kube::contract::{PLAN_ENV, PlannedInput, StepPlan, StepReport};
use gantry_runtime::{BindMount, OciRuntime, OciRuntimeConfig, Runtime, StepRequest};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::moto::Moto;

const BIN: &str = env!("CARGO_BIN_EXE_gantry");

/// The binary the pods run: this build's, or the shipped one given as `GANTRY_TEST_POD_BINARY`
/// (`scripts/build-static.sh`'s static release build, to check it in real containers).
fn pod_binary() -> PathBuf {
    std::env::var_os("GANTRY_TEST_POD_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}
const BUCKET: &str = "pods";
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// busybox plus this `gantry` at the built-in image's path, with the shared objects it loads
/// (the shipped binary is static and needs none).
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(crate::busybox::tar())
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    // The archive's own root entry may be private (it was made in a temporary directory).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    // What the built-in image holds besides the binary: the machine's CA bundle.
    let certs = root.join("etc/ssl/certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        certs.join("ca-certificates.crt"),
    )
    .unwrap();
    let exe = root.join("opt/gantry/bin/gantry");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    let bin = pod_binary();
    std::fs::copy(&bin, &exe).unwrap();
    let ldd = std::process::Command::new("ldd")
        .arg(&bin)
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = path {
            let dest = root.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dest).unwrap();
        }
    }
    root
}

struct Pod {
    moto: Moto,
    runtime: OciRuntime,
    rootfs: PathBuf,
    work: PathBuf,
    store: ArtifactStore,
    _dir: tempfile::TempDir,
}

impl Pod {
    fn new(moto: Moto) -> Pod {
        moto.create_bucket(BUCKET);
        let dir = tempfile::tempdir().unwrap();
        // The container's user must reach the init binary in the bundles directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let rootfs = rootfs(dir.path());
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        // The pod's emptyDir belongs to the pod's user (fsGroup).
        std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
        let runtime = OciRuntime::new(OciRuntimeConfig {
            binary: PathBuf::from("runc"),
            state_dir: dir.path().join("state"),
            bundles_dir: dir.path().join("bundles"),
            cgroup_parent: "gantry-test-pod".into(),
        })
        .unwrap();
        let env = moto.env();
        let store = ArtifactStore::open_with_env(
            &Location::parse(&format!("s3://{BUCKET}/gantry")).unwrap(),
            &dir.path().join("cache"),
            &|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        )
        .unwrap();
        Pod {
            moto,
            runtime,
            rootfs,
            work,
            store,
            _dir: dir,
        }
    }

    fn plan(&self, inputs: Vec<(&str, String)>, outputs: &[&str]) -> String {
        serde_json::to_string(&StepPlan {
            v: 1,
            artifacts: format!("s3://{BUCKET}/gantry"),
            inputs: inputs
                .into_iter()
                .map(|(path, digest)| PlannedInput {
                    path: path.into(),
                    digest,
                })
                .collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            params: json!({"lr": 0.5}),
            report: None,
        })
        .unwrap()
    }

    /// Runs one container of the pod; returns its exit code and log lines.
    fn container(
        &self,
        name: &str,
        args: &[&str],
        plan: &str,
        mounts: Vec<BindMount>,
    ) -> (Option<i32>, Vec<String>) {
        self.container_with(name, args, Some(plan), true, mounts, &[])
    }

    /// `gantry step-exec --fetch --plan PLAN --step STEP FLAGS… -- sh -c SCRIPT` with the
    /// store's credentials, the pod's work directory at /gantry and `env` (`K=V`).
    fn step_exec(
        &self,
        name: &str,
        plan: &str,
        step: &str,
        flags: &[&str],
        script: &str,
        env: &[String],
    ) -> (Option<i32>, Vec<String>) {
        let mut args = vec![
            "/opt/gantry/bin/gantry",
            "step-exec",
            "--fetch",
            "--plan",
            plan,
            "--step",
            step,
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let work = vec![BindMount {
            source: self.work.clone(),
            destination: "/gantry".into(),
            readonly: false,
        }];
        self.container_with(name, &args, None, true, work, env)
    }

    /// `plan`: in GANTRY_STEP_PLAN; `aws`: with the store's credentials; `extra`: more
    /// `K=V` of the container's environment.
    fn container_with(
        &self,
        name: &str,
        args: &[&str],
        plan: Option<&str>,
        aws: bool,
        mounts: Vec<BindMount>,
        extra: &[String],
    ) -> (Option<i32>, Vec<String>) {
        let mut env: Vec<String> = if aws {
            self.moto
                .env()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        } else {
            Vec::new()
        };
        if let Some(plan) = plan {
            env.push(format!("{PLAN_ENV}={plan}"));
        }
        env.extend(extra.iter().cloned());
        env.push("GANTRY_STEP_TERMINATION_LOG=/gantry/termination-log".into());
        env.push("PATH=/bin:/usr/bin".into());
        env.push("HOME=/tmp".into());
        let req = StepRequest {
            id: format!(
                "pod-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            rootfs: self.rootfs.clone(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env,
            cwd: "/".into(),
            uid: 65534,
            gid: 65534,
            mounts,
            // The host's network: moto listens on the host's loopback.
            network: true,
            cpu_millis: 1000,
            memory_bytes: 512 << 20,
            pids_limit: 256,
            gpu_devices: Vec::new(),
            timeout: Some(Duration::from_secs(120)),
            stop_grace: Duration::from_secs(5),
            cancel: CancellationToken::new(),
            create_runtime_hook: None,
            remote: None,
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let collect = tokio::spawn(async move {
                let mut lines = Vec::new();
                while let Some(b) = rx.recv().await {
                    let b: gantry_runtime::LogBlock = b;
                    lines.extend(b.lines().map(str::to_string));
                }
                lines
            });
            let out = self.runtime.run(req, tx).await.unwrap();
            (out.exit_code, collect.await.unwrap())
        })
    }

    fn fetch(&self, plan: &str) -> (Option<i32>, Vec<String>) {
        self.container(
            "fetch",
            &["/opt/gantry/bin/gantry", "step-fetch"],
            plan,
            vec![BindMount {
                source: self.work.clone(),
                destination: "/gantry".into(),
                readonly: false,
            }],
        )
    }

    fn step(&self, plan: &str, wrapper: &[&str], script: &str) -> (Option<i32>, Vec<String>) {
        let mut args = vec!["/gantry/bin/gantry", "step-exec"];
        args.extend_from_slice(wrapper);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let _ = std::fs::remove_file(self.work.join("termination-log"));
        self.container(
            "step",
            &args,
            plan,
            vec![
                BindMount {
                    source: self.work.clone(),
                    destination: "/gantry".into(),
                    readonly: false,
                },
                BindMount {
                    source: self.work.join("inputs"),
                    destination: "/gantry/inputs".into(),
                    readonly: true,
                },
                BindMount {
                    source: self.work.join("bin"),
                    destination: "/gantry/bin".into(),
                    readonly: true,
                },
            ],
        )
    }

    fn report(&self) -> StepReport {
        let text = std::fs::read_to_string(self.work.join("termination-log")).unwrap();
        assert!(text.len() <= 4096, "{} bytes", text.len());
        StepReport::parse(&text).unwrap()
    }

    fn put(&self, path: &Path) -> String {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(self.store.put_path(path)).unwrap().digest
    }

    fn read(&self, digest: &str) -> Vec<u8> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(self.store.read_bytes(digest, 1 << 20)).unwrap()
    }
}

#[test]
fn a_pod_fetches_by_digest_runs_the_step_under_the_wrapper_and_reports_its_outputs() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let pod = Pod::new(moto);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("data.csv"), "a,b\n1,2\n").unwrap();
    std::fs::create_dir_all(src.path().join("models/m1")).unwrap();
    std::fs::write(src.path().join("models/m1/weights"), "w").unwrap();
    let data = pod.put(&src.path().join("data.csv"));
    let model_dir = pod.put(&src.path().join("models/m1"));
    let plan = pod.plan(
        vec![("data", data.clone()), ("models/lr-0.1", model_dir)],
        &["out", "never"],
    );

    let (code, logs) = pod.fetch(&plan);
    assert_eq!(code, Some(0), "{logs:?}");
    assert_eq!(
        std::fs::read_to_string(pod.work.join("inputs/data")).unwrap(),
        "a,b\n1,2\n"
    );
    assert_eq!(
        std::fs::read_to_string(pod.work.join("inputs/models/lr-0.1/weights")).unwrap(),
        "w"
    );
    let params: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pod.work.join("params.json")).unwrap()).unwrap();
    assert_eq!(params["lr"], 0.5);
    assert!(pod.work.join("bin/gantry").is_file());
    assert!(
        !pod.work.join(".fetch").exists(),
        "the download cache is gone"
    );

    // The step: reads its input, cannot write it, does not see the store's credentials or the
    // wrapper's environment, leaves an orphan behind, writes one of its two outputs and metrics.
    let script = r#"
        set -e
        cat /gantry/inputs/data > /gantry/outputs/out
        echo "x" >> /gantry/outputs/out
        if echo no > /gantry/inputs/data 2>/dev/null; then echo "inputs are writable"; exit 10; fi
        if env | grep -q '^AWS_'; then echo "credentials leaked"; exit 11; fi
        if env | grep -q 'GANTRY_STEP_PLAN'; then echo "plan leaked"; exit 12; fi
        if cat /proc/$PPID/environ >/dev/null 2>&1; then echo "wrapper environ readable"; exit 13; fi
        (sleep 0.2 &)
        echo '{"accuracy": 0.93}' > /gantry/metrics.json
        echo "done"
    "#;
    let (code, logs) = pod.step(&plan, &["--digests-dir", "/gantry/digests"], script);
    assert_eq!(code, Some(0), "{logs:?}");
    assert!(logs.iter().any(|l| l == "done"), "{logs:?}");
    let report = pod.report();
    assert_eq!(report.exit_code, Some(0));
    assert_eq!(report.error, None);
    assert!(report.wall_ms > 0);
    assert!(report.peak_memory_bytes > 0);
    let out = report.outputs.get("out").expect("the output's digest");
    assert!(!report.outputs.contains_key("never"));
    assert_eq!(pod.read(out), b"a,b\n1,2\nx\n");
    let metrics = report.metrics.as_deref().expect("metrics");
    assert_eq!(pod.read(metrics), b"{\"accuracy\": 0.93}\n");
    assert_eq!(
        std::fs::read_to_string(pod.work.join("digests/out")).unwrap(),
        *out
    );

    // A failing step: its exit code, and nothing uploaded.
    let (code, _) = pod.step(&plan, &[], "echo partial > /gantry/outputs/out; exit 3");
    assert_eq!(code, Some(3));
    let report = pod.report();
    assert_eq!(report.exit_code, Some(3));
    assert!(report.outputs.is_empty());

    // A step past its timeout gets SIGTERM first and may still save what it had.
    // (`wait` is interrupted by a trapped signal; busybox's `sleep` in a loop would not be.)
    let script = r#"trap 'echo saved > /gantry/outputs/out; exit 0' TERM; sleep 60 & wait $!"#;
    let (_, _) = pod.step(&plan, &["--timeout-ms=500", "--grace-ms=5000"], script);
    let report = pod.report();
    assert!(report.timed_out, "{report:?}");
    assert_eq!(report.exit_code, Some(0), "{report:?}");
    assert_eq!(pod.read(&report.outputs["out"]), b"saved\n");
    // One that ignores SIGTERM is killed after the grace (the loop never ends by itself).
    let (_, _) = pod.step(
        &plan,
        &["--timeout-ms=300", "--grace-ms=500"],
        "trap '' TERM; while true; do sleep 0.1; done",
    );
    let report = pod.report();
    assert!(report.timed_out);
    assert_eq!(report.signal, Some(9), "{report:?}");

    // A missing command is 127, as a shell says.
    let (code, _) = pod.container(
        "missing",
        &["/gantry/bin/gantry", "step-exec", "--", "/no/such/program"],
        &plan,
        vec![
            BindMount {
                source: pod.work.clone(),
                destination: "/gantry".into(),
                readonly: false,
            },
            BindMount {
                source: pod.work.join("bin"),
                destination: "/gantry/bin".into(),
                readonly: true,
            },
        ],
    );
    assert_eq!(code, Some(127));
}

#[test]
fn a_fetch_of_a_missing_or_tampered_input_fails_naming_it() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let pod = Pod::new(moto);
    let missing = format!("sha256:{}", "0".repeat(64));
    let plan = pod.plan(vec![("data", missing.clone())], &[]);
    let (code, logs) = pod.fetch(&plan);
    assert_ne!(code, Some(0));
    let all = logs.join("\n");
    assert!(
        all.contains("input data") && all.contains(&missing),
        "{all}"
    );
    // A plan that would write outside /gantry/inputs never gets that far.
    let bad = plan.replace("\"data\"", "\"../escape\"");
    let (code, logs) = pod.fetch(&bad);
    assert_eq!(code, Some(2), "{logs:?}");
    assert!(logs.join("\n").contains("../escape"));
}

#[test]
fn a_kubeflow_style_step_fetches_and_reports_through_its_arguments() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let pod = Pod::new(moto);
    let work = || BindMount {
        source: pod.work.clone(),
        destination: "/gantry".into(),
        readonly: false,
    };
    // The step: the plan, the fetch and the outputs' files all through arguments (KFP
    // substitutes placeholders only there).
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("in"), "abc").unwrap();
    let input = pod.put(&src.path().join("in"));
    let plan = pod.plan(vec![("data", input)], &["out"]);
    let script = r#"test "$STEP_NAME" = train || exit 7; tr a-z A-Z < /gantry/inputs/data > /gantry/outputs/out"#;
    let (code, logs) = pod.container_with(
        "kfp-step",
        &[
            // KFP adds no init container: the wrapper is in the image (as in the built-in one).
            "/opt/gantry/bin/gantry",
            "step-exec",
            "--fetch",
            "--plan",
            &plan,
            "--env",
            "STEP_NAME=train",
            "--digest-file",
            "out=/gantry/kfp/outputs/out",
            "--",
            "sh",
            "-c",
            script,
        ],
        None,
        true,
        vec![work()],
        &[],
    );
    assert_eq!(code, Some(0), "{logs:?}");
    let report = pod.report();
    let out = report.outputs.get("out").expect("digest").clone();
    assert_eq!(pod.read(&out), b"ABC");
    assert_eq!(
        std::fs::read_to_string(pod.work.join("kfp/outputs/out")).unwrap(),
        out
    );
    assert!(
        !pod.work.join("bin").exists(),
        "no copy of the wrapper is made"
    );
}

/// An exported (here KFP-style) step with `--report-to`: the wrapper computes the step's
/// cache key, asks a real `gantry server --auth` (its artifacts in the same bucket), reports
/// each attempt, and on a hit skips the command and hands the stored digest on.
#[test]
fn an_exported_step_uses_gantrys_cache_and_is_recorded_by_the_server() {
    use gantry_kube::exported::{KeyPlan, ReportPlan, run_id};
    let Some(moto) = Moto::start() else {
        return;
    };
    let pod = Pod::new(moto);
    let g = crate::support::Gantry::empty();
    let token = g
        .ok(&[
            "token",
            "create",
            "--name",
            "argo-iris",
            "--role",
            "editor",
            "--project",
            "iris",
        ])
        .trim()
        .to_string();
    let mut env: Vec<(String, String)> = pod
        .moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("GANTRY_ARTIFACTS".into(), format!("s3://{BUCKET}/gantry")));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (server, url) =
        g.spawn_listening(&["server", "--auth", "--listen", "127.0.0.1:0"], &env_refs);
    let _server = crate::support::KillOnDrop(server);

    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("in"), "abc").unwrap();
    let input = pod.put(&src.path().join("in"));
    let plan_for = |run: &str| -> String {
        let mut plan: StepPlan =
            serde_json::from_str(&pod.plan(vec![("data", input.clone())], &["out"])).unwrap();
        plan.report = Some(ReportPlan {
            server: url.clone(),
            orchestrator: "kfp".into(),
            run: run.into(),
            run_name: format!("iris-{run}"),
            pipeline: "iris".into(),
            steps: 1,
            retries: 0,
            cache: true,
            cpu_millis: 1000,
            memory_bytes: 512 << 20,
            gpu: 0,
            effect: None,
            spec: None,
            key: Some(KeyPlan {
                image_digest: format!("sha256:{}", "a".repeat(64)),
                env: vec!["MODE".into()],
                network: false,
                builtin: false,
                float_params: vec![],
            }),
        });
        serde_json::to_string(&plan).unwrap()
    };
    // The command never sees the token; each execution leaves a line in /gantry/ran.
    let script = r#"test -z "$GANTRY_STEP_TOKEN" || exit 9; echo "$MODE" >> /gantry/ran; test "$MODE" != fail || exit 3; tr a-z A-Z < /gantry/inputs/data > /gantry/outputs/out; echo '{"chars": 3}' > /gantry/metrics.json"#;
    let with_token = [format!("GANTRY_STEP_TOKEN={token}")];
    let plan = plan_for;
    let step = |run: &str, mode: &str| {
        let mode = format!("MODE={mode}");
        pod.step_exec(
            run,
            &plan(run),
            "0:upper",
            &[
                "--env",
                &mode,
                "--digest-file",
                "out=/gantry/kfp/outputs/out",
            ],
            script,
            &with_token,
        )
    };
    let ran = || std::fs::read_to_string(pod.work.join("ran")).unwrap_or_default();
    let digest_file = || std::fs::read_to_string(pod.work.join("kfp/outputs/out")).unwrap();
    // `gantry --server URL ARGS… --output json` with the project's token.
    let json_of = |args: &[&str]| -> serde_json::Value {
        let mut full = vec!["--server", &url];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--output", "json"]);
        let out = g
            .command(&full)
            .env("GANTRY_TOKEN", &token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let show = |run: &str| json_of(&["show", run]);

    // The first run executes and is recorded: run, step, output, metrics.
    let (code, logs) = step("uid-1", "loud");
    assert_eq!(code, Some(0), "{logs:?}");
    assert_eq!(ran(), "loud\n");
    let out = digest_file();
    assert_eq!(pod.read(&out), b"ABC");
    let first = run_id("kfp", "uid-1");
    assert!(
        logs.iter()
            .any(|l| l.contains("reported to") && l.contains(&first)),
        "{logs:?}"
    );
    let shown = show(&first);
    assert_eq!(shown["status"], "succeeded", "{shown:#}");
    let upper = crate::support::step(&shown, "upper");
    assert_eq!(upper["status"], "succeeded", "{shown:#}");
    assert_eq!(upper["outputs"]["out"], serde_json::json!(out), "{shown:#}");
    assert_eq!(
        upper["inputs"]["data"],
        serde_json::json!(input),
        "{shown:#}"
    );

    // The next workflow run of the same step is a cache hit: the command does not run, the
    // orchestrator gets the same digest, the server records the hit.
    let _ = std::fs::remove_file(pod.work.join("kfp/outputs/out"));
    let (code, logs) = step("uid-2", "loud");
    assert_eq!(code, Some(0), "{logs:?}");
    assert_eq!(ran(), "loud\n", "the command ran again: {logs:?}");
    assert!(logs.iter().any(|l| l.contains("cache hit")), "{logs:?}");
    assert_eq!(digest_file(), out);
    let shown = show(&run_id("kfp", "uid-2"));
    let upper2 = crate::support::step(&shown, "upper");
    assert_eq!(upper2["status"], "cached", "{shown:#}");
    assert_eq!(upper2["cached_from"], upper["id"], "{shown:#}");

    // Another value of the step's env is another key: it runs.
    let (code, logs) = step("uid-3", "quiet");
    assert_eq!(code, Some(0), "{logs:?}");
    assert_eq!(ran(), "loud\nquiet\n", "{logs:?}");

    // A failing command is recorded as Gantry words it, and fails its run (no retries).
    let (code, logs) = step("uid-4", "fail");
    assert_eq!(code, Some(3), "{logs:?}");
    let shown = show(&run_id("kfp", "uid-4"));
    assert_eq!(shown["status"], "failed", "{shown:#}");
    let failed = crate::support::step(&shown, "upper");
    assert_eq!(failed["status"], "failed", "{shown:#}");
    assert_eq!(failed["reason"], "exit code 3", "{shown:#}");
    assert_eq!(failed["outputs"], serde_json::json!({}), "{shown:#}");

    // A `register` step (here a command writing what the built-in writes) registers its model
    // version through the server when it reports; a registration the server cannot act on
    // fails the step, so that the orchestrator sees it.
    let register_via = |run: &str, registration: &str, server: &str| {
        let mut plan: StepPlan =
            serde_json::from_str(&pod.plan(vec![("model", input.clone())], &["registration"]))
                .unwrap();
        let mut report: ReportPlan = serde_json::from_str::<StepPlan>(&plan_for(run))
            .unwrap()
            .report
            .unwrap();
        report.effect = Some("register".into());
        report.cache = false;
        report.server = server.to_string();
        plan.report = Some(report);
        let plan = serde_json::to_string(&plan).unwrap();
        let write = format!("printf '%s' '{registration}' > /gantry/outputs/registration");
        pod.step_exec(run, &plan, "0:register", &[], &write, &with_token)
    };
    let register = |run: &str, registration: &str| register_via(run, registration, &url);
    let registration = serde_json::json!({
        "format": "gantry.registration", "model": "iris", "alias": "champion",
        "algorithm": "logistic_regression", "task": "classification", "label": "species",
        "metrics_source": "report", "metrics": {"accuracy": 0.93}, "files": {},
    })
    .to_string();
    let (code, logs) = register("uid-7", &registration);
    assert_eq!(code, Some(0), "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.contains("registered model iris v1 (iris@champion)")),
        "{logs:?}"
    );
    let version = json_of(&["model", "show", "iris@champion"]);
    assert_eq!(
        version["artifact"]["digest"],
        serde_json::json!(input),
        "{version:#}"
    );
    assert_eq!(
        version["lineage"]["run"],
        serde_json::json!(run_id("kfp", "uid-7"))
    );
    let (code, logs) = register("uid-8", "{not json");
    assert_eq!(code, Some(1), "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.contains("registration failed: unreadable registration")),
        "{logs:?}"
    );
    let shown = show(&run_id("kfp", "uid-8"));
    assert_eq!(shown["status"], "failed", "{shown:#}");

    // The server registers, but its answer is lost on the way back (a proxy answers 503
    // instead): the wrapper sends the report again, with the same step run id, and the
    // server answers from its record: one attempt, one version.
    let (proxy, lost) = lossy_proxy(&url);
    let again = registration.replace("\"iris\"", "\"iris-retried\"");
    let (code, logs) = register_via("uid-9", &again, &proxy);
    assert_eq!(code, Some(0), "{logs:?}");
    assert_eq!(
        lost.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.contains("done already: step run")),
        "{logs:?}"
    );
    let version = json_of(&["model", "show", "iris-retried"]);
    assert_eq!(version["version"], json!(1), "{version:#}");
    let shown = show(&run_id("kfp", "uid-9"));
    assert_eq!(
        shown["steps"].as_array().map(Vec::len),
        Some(1),
        "{shown:#}"
    );
    assert_eq!(shown["status"], "succeeded", "{shown:#}");

    // A pod that dies before its wrapper can report (OOM-killed, evicted) leaves nothing; the
    // pipeline's exit handler, `gantry step-end` with KFP's final status, still ends the run
    // with the orchestrator's words. It exits 0 whatever happens: it never fails the workflow.
    let end = |run: &str, status: &str| {
        pod.container_with(
            &format!("end-{run}"),
            &[
                "/opt/gantry/bin/gantry",
                "step-end",
                "--kfp-status",
                status,
                "--plan",
                &plan(run),
            ],
            None,
            false,
            Vec::new(),
            &with_token,
        )
    };
    let (code, logs) = end(
        "uid-5",
        r#"{"state":"FAILED","error":{"code":9,"message":"upper: pod OOMKilled"}}"#,
    );
    assert_eq!(code, Some(0), "{logs:?}");
    let shown = show(&run_id("kfp", "uid-5"));
    assert_eq!(shown["status"], "failed", "{shown:#}");
    assert_eq!(
        shown["error"], "the workflow ended FAILED: upper: pod OOMKilled",
        "{shown:#}"
    );
    // A run that ended already keeps its status; a malformed status is said, not fatal.
    let (code, logs) = end("uid-1", r#"{"state":"SUCCEEDED"}"#);
    assert_eq!(code, Some(0), "{logs:?}");
    assert!(logs.iter().any(|l| l.contains("succeeded")), "{logs:?}");
    let (code, logs) = end("uid-6", "not json");
    assert_eq!(code, Some(0), "{logs:?}");
    assert!(logs.iter().any(|l| l.contains("is not JSON")), "{logs:?}");
}

/// An HTTP proxy to `upstream` on 127.0.0.1 that forwards everything, but answers the first
/// step report with a 503 after the server took it (an answer lost on the way back). Its
/// URL, and how many answers it lost.
fn lossy_proxy(upstream: &str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let lost = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let (upstream, counter) = (upstream.to_string(), lost.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let client = reqwest::Client::new();
            let forward = move |method: axum::http::Method,
                                uri: axum::http::Uri,
                                headers: axum::http::HeaderMap,
                                body: axum::body::Bytes| {
                let (client, upstream, counter) =
                    (client.clone(), upstream.clone(), counter.clone());
                async move {
                    let mut req = client.request(method.clone(), format!("{upstream}{uri}"));
                    for (name, value) in &headers {
                        if name != axum::http::header::HOST {
                            req = req.header(name, value);
                        }
                    }
                    let resp = req.body(body).send().await.unwrap();
                    let status = resp.status();
                    let bytes = resp.bytes().await.unwrap();
                    let report = method == axum::http::Method::POST
                        && uri.path() == "/api/v1/exported/steps";
                    let first = report
                        && counter
                            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok();
                    if first {
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            axum::body::Bytes::from_static(
                                br#"{"error":{"code":"unavailable","message":"lost"}}"#,
                            ),
                        );
                    }
                    (
                        status,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        bytes,
                    )
                }
            };
            let app = axum::Router::new().fallback(forward);
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), lost)
}

/// With the server unreachable, an exported step still runs and delivers its outputs; it
/// says in its log that it is neither cached nor recorded.
#[test]
fn an_exported_step_runs_when_the_server_cannot_be_reached() {
    use gantry_kube::exported::{KeyPlan, ReportPlan};
    let Some(moto) = Moto::start() else {
        return;
    };
    let pod = Pod::new(moto);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("in"), "abc").unwrap();
    let input = pod.put(&src.path().join("in"));
    let mut plan: StepPlan =
        serde_json::from_str(&pod.plan(vec![("data", input)], &["out"])).unwrap();
    // Nothing listens on port 1.
    plan.report = Some(ReportPlan {
        server: "http://127.0.0.1:1".into(),
        orchestrator: "argo".into(),
        run: "uid-x".into(),
        run_name: "iris-x".into(),
        pipeline: "iris".into(),
        steps: 1,
        retries: 0,
        cache: true,
        cpu_millis: 1000,
        memory_bytes: 512 << 20,
        gpu: 0,
        effect: None,
        spec: None,
        key: Some(KeyPlan {
            image_digest: format!("sha256:{}", "a".repeat(64)),
            env: vec![],
            network: false,
            builtin: false,
            float_params: vec![],
        }),
    });
    let plan = serde_json::to_string(&plan).unwrap();
    let (code, logs) = pod.container_with(
        "unreachable",
        &[
            "/opt/gantry/bin/gantry",
            "step-exec",
            "--fetch",
            "--plan",
            &plan,
            "--env",
            "GANTRY_STEP=upper",
            "--env",
            "GANTRY_STEP_SEQ=0",
            "--digest-file",
            "out=/gantry/kfp/outputs/out",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z < /gantry/inputs/data > /gantry/outputs/out",
        ],
        None,
        true,
        vec![BindMount {
            source: pod.work.clone(),
            destination: "/gantry".into(),
            readonly: false,
        }],
        &["GANTRY_STEP_TOKEN=gantry_unused".to_string()],
    );
    assert_eq!(code, Some(0), "{logs:?}");
    let out = std::fs::read_to_string(pod.work.join("kfp/outputs/out")).unwrap();
    assert_eq!(pod.read(&out), b"ABC");
    assert!(
        logs.iter()
            .any(|l| l.contains("cache lookup at http://127.0.0.1:1 failed")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("could not report to http://127.0.0.1:1")),
        "{logs:?}"
    );

    // A `register` or `deploy` step does its work through the server: without a way to
    // report it fails before its command runs, instead of succeeding without registering.
    let mut with_effect: StepPlan = serde_json::from_str(&plan).unwrap();
    if let Some(r) = with_effect.report.as_mut() {
        r.effect = Some("register".into());
    }
    let with_effect = serde_json::to_string(&with_effect).unwrap();
    let (code, logs) = pod.container_with(
        "no-token-register",
        &[
            "/opt/gantry/bin/gantry",
            "step-exec",
            "--plan",
            &with_effect,
            "--step",
            "0:register",
            "--",
            "sh",
            "-c",
            "echo ran; exit 0",
        ],
        None,
        true,
        Vec::new(),
        &[],
    );
    assert_eq!(code, Some(1), "{logs:?}");
    assert!(!logs.iter().any(|l| l == "ran"), "{logs:?}");
    assert!(
        logs.iter().any(|l| l.contains(
            "a `register` step acts through the Gantry server, which it cannot report to"
        )),
        "{logs:?}"
    );

    // The exit handler neither: it says it could not report the end (after its retries), or
    // that it has no token, and exits 0 so the workflow's own status stands.
    let end = |name: &str, env: &[String]| {
        pod.container_with(
            name,
            &[
                "/opt/gantry/bin/gantry",
                "step-end",
                "--status",
                "Failed",
                "--failures",
                "[]",
                "--plan",
                &plan,
            ],
            None,
            false,
            Vec::new(),
            env,
        )
    };
    let (code, logs) = end(
        "end-unreachable",
        &["GANTRY_STEP_TOKEN=gantry_unused".to_string()],
    );
    assert_eq!(code, Some(0), "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.contains("could not report the workflow's end to http://127.0.0.1:1")),
        "{logs:?}"
    );
    let (code, logs) = end("end-no-token", &[]);
    assert_eq!(code, Some(0), "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.contains("not reporting the workflow's end to http://127.0.0.1:1: no token")),
        "{logs:?}"
    );
}
