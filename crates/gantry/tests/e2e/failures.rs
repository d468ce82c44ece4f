//! How failures are reported: OOM, timeout, pids limit, retries, skipped dependents,
//! missing outputs, Ctrl-C.

use crate::support::{Gantry, attempts, step, wait_until};

#[test]
fn a_memory_hog_is_reported_as_oom_killed() {
    let g = Gantry::new();
    let file = g.write(
        "oom.yaml",
        r#"
name: oom
steps:
  - name: hog
    image: busybox:1
    command: [sh, -c, 'x=$(head -c 268435456 /dev/zero | tr "\0" a); echo survived']
    resources: { memory: 32Mi }
"#,
    );
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1, "{s:#}");
    assert_eq!(s["status"], "failed");
    assert_eq!(step(&s, "hog")["status"], "failed");
    assert_eq!(step(&s, "hog")["reason"], "oom-killed", "{s:#}");
    let show = g.show(s["run_id"].as_str().unwrap());
    let peak = step(&show, "hog")["usage"]["peak_memory_bytes"]
        .as_i64()
        .unwrap();
    assert!(
        peak >= 16 << 20,
        "peak {peak} should be near the 32Mi limit"
    );
}

#[test]
fn a_step_past_its_timeout_is_killed_and_reported() {
    let g = Gantry::new();
    let file = g.write(
        "slow.yaml",
        r#"
name: slow
steps:
  - name: sleepy
    image: busybox:1
    command: [sleep, "300"]
    timeout: 1s
"#,
    );
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1);
    assert_eq!(step(&s, "sleepy")["reason"], "timeout after 1s");
    assert!(g.runc_containers().is_empty());
}

#[test]
fn a_timed_out_step_gets_sigterm_and_its_grace_before_sigkill() {
    let g = Gantry::new();
    let file = g.write(
        "graceful.yaml",
        r#"
name: graceful
steps:
  - name: saver
    image: busybox:1
    command: [sh, -c, 'trap "echo saving checkpoint; exit 0" TERM; echo working; sleep 300 & wait']
    timeout: 1s
    timeout_grace: 60s
  - name: stubborn
    image: busybox:1
    command: [sh, -c, 'trap "" TERM; echo ignoring; sleep 300']
    timeout: 1s
    timeout_grace: 1s
"#,
    );
    let started = std::time::Instant::now();
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1, "{s:#}");
    for name in ["saver", "stubborn"] {
        assert_eq!(step(&s, name)["reason"], "timeout after 1s", "{s:#}");
    }
    // The trap ran: SIGTERM reached the command through gantry-init, well inside its 60 s.
    let run = s["run_id"].as_str().unwrap();
    let logs = g.ok(&["logs", run, "saver"]);
    assert!(logs.contains("saving checkpoint"), "{logs}");
    assert!(started.elapsed() < std::time::Duration::from_secs(45));
    let show = g.show(run);
    let wall = |name: &str| step(&show, name)["usage"]["wall_ms"].as_i64().unwrap();
    assert!(
        wall("stubborn") >= 2000,
        "killed after timeout + grace: {show:#}"
    );
    assert!(g.runc_containers().is_empty());
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    let g = Gantry::new();
    let file = g.write(
        "bomb.yaml",
        r#"
name: bomb
steps:
  - name: bomb
    image: busybox:1
    command: [sh, -c, 'i=0; while [ $i -lt 3000 ]; do sleep 30 & i=$((i+1)); done; wait']
    timeout: 20s
"#,
    );
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1, "{s:#}");
    assert_eq!(step(&s, "bomb")["reason"], "pids-limit", "{s:#}");
    assert!(g.runc_containers().is_empty());
}

#[test]
fn retries_rerun_a_failing_step_and_record_every_attempt() {
    let g = Gantry::new();
    let file = g.write(
        "flaky.yaml",
        r#"
name: flaky
steps:
  - name: flaky
    image: busybox:1
    command: [sh, -c, 'echo "attempt $GANTRY_ATTEMPT"; [ "$GANTRY_ATTEMPT" -ge 3 ]']
    retries: 3
  - name: hopeless
    image: busybox:1
    command: [sh, -c, 'exit 7']
    retries: 1
"#,
    );
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1);
    assert_eq!(step(&s, "flaky")["status"], "succeeded");
    assert_eq!(step(&s, "flaky")["attempts"], 3);
    assert_eq!(step(&s, "hopeless")["status"], "failed");
    assert_eq!(step(&s, "hopeless")["attempts"], 2);
    assert_eq!(step(&s, "hopeless")["exit_code"], 7);
    let show = g.show(s["run_id"].as_str().unwrap());
    let tries = attempts(&show, "flaky");
    assert_eq!(tries.len(), 3);
    assert_eq!(tries[0]["status"], "failed");
    assert_eq!(tries[2]["status"], "succeeded");
    let logs = g.ok(&["logs", s["run_id"].as_str().unwrap(), "flaky"]);
    assert!(
        logs.contains("attempt 1") && logs.contains("attempt 3"),
        "{logs}"
    );
}

#[test]
fn when_a_step_fails_its_dependents_are_skipped_and_the_rest_finishes() {
    let g = Gantry::new();
    let file = g.write(
        "dag.yaml",
        r#"
name: dag
steps:
  - name: broken
    image: busybox:1
    command: [sh, -c, 'echo boom >&2; exit 3']
    outputs: [x]
  - name: child
    image: busybox:1
    command: [cat, "${inputs.x}"]
    inputs: { x: broken.x }
  - name: grandchild
    image: busybox:1
    command: ["true"]
    after: [child]
  - name: independent
    image: busybox:1
    command: [sh, -c, 'echo fine > /gantry/outputs/ok']
    outputs: [ok]
  - name: forgetful
    image: busybox:1
    command: ["true"]
    outputs: [promised]
"#,
    );
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1);
    assert_eq!(s["status"], "failed");
    assert_eq!(step(&s, "broken")["status"], "failed");
    assert_eq!(step(&s, "broken")["exit_code"], 3);
    assert_eq!(step(&s, "child")["status"], "skipped");
    assert_eq!(step(&s, "grandchild")["status"], "skipped");
    assert_eq!(step(&s, "independent")["status"], "succeeded");
    assert_eq!(step(&s, "forgetful")["status"], "failed");
    assert!(
        step(&s, "forgetful")["reason"]
            .as_str()
            .unwrap()
            .contains("missing output promised")
    );
    let logs = g.ok(&["logs", s["run_id"].as_str().unwrap(), "broken"]);
    assert!(logs.contains("boom"));
}

#[test]
fn ctrl_c_cancels_the_run_kills_its_containers_and_records_it() {
    let g = Gantry::new();
    let file = g.write(
        "long.yaml",
        r#"
name: long
steps:
  - name: wait
    image: busybox:1
    command: [sh, -c, 'echo started; sleep 300']
  - name: after
    image: busybox:1
    command: ["true"]
    after: [wait]
"#,
    );
    let child = g.spawn(&["run", file.to_str().unwrap()]);
    wait_until("the step to start", || {
        g.run(&["runs", "--output", "json"]).stdout.len() > 2 && g.runc_containers().len() == 1
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(g.runc_containers().is_empty());
    let runs = g.json(&["runs"]);
    assert_eq!(runs[0]["status"], "cancelled");
    let show = g.show(runs[0]["id"].as_str().unwrap());
    assert_eq!(step(&show, "wait")["status"], "cancelled");
    assert_eq!(step(&show, "after")["status"], "cancelled");
}

#[test]
fn gpu_requests_are_admitted_against_gpu_capacity_and_need_real_devices() {
    let g = Gantry::new();
    // The GPU capacity is the number of /dev/nvidiaN device nodes, counted from 0.
    let gpus = (0..)
        .take_while(|i| std::path::Path::new(&format!("/dev/nvidia{i}")).exists())
        .count();
    // The step shows the first card's device node and how many card nodes it can see.
    let pipeline = |name: &str, gpu: usize| {
        g.write(
            &format!("{name}.yaml"),
            &format!(
                "name: gpu\nsteps:\n  - name: a\n    image: busybox:1\n    resources: {{ gpu: {gpu} }}\n    command: [sh, -c, \"ls /dev/nvidia0 && ls /dev | grep -c '^nvidia[0-9]'\"]\n"
            ),
        )
    };

    // One GPU more than the machine has is refused before anything runs, naming the knob.
    let file = pipeline("too-many", gpus + 1);
    let out = g.run(&["run", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "requests {} GPU(s) but the capacity is {gpus}",
            gpus + 1
        )) && err.contains("--gpus"),
        "{err}"
    );
    assert!(g.runc_containers().is_empty());

    if gpus == 0 {
        // Raising the capacity by hand does not conjure devices: the step fails clearly,
        // and its command never runs.
        let file = pipeline("forced", 1);
        let (code, s, err) = g.run_pipeline(&file, &["--gpus", "1"]);
        assert_eq!(code, 1, "{s:#}\n{err}");
        let a = step(&s, "a");
        assert_eq!(a["status"], "failed", "{s:#}");
        let reason = a["reason"].as_str().unwrap();
        assert!(
            reason.contains("requests 1 GPU(s) but no NVIDIA devices were found"),
            "{reason}"
        );
        let logs = g.ok(&["logs", s["run_id"].as_str().unwrap(), "a"]);
        assert!(!logs.contains("nvidia"), "the command ran: {logs}");
    } else {
        // One GPU: the step gets the first card, and only that card.
        let file = pipeline("one", 1);
        let (code, s, err) = g.run_pipeline(&file, &[]);
        assert_eq!(code, 0, "{s:#}\n{err}");
        let logs = g.ok(&["logs", s["run_id"].as_str().unwrap(), "a"]);
        assert_eq!(logs.trim(), "/dev/nvidia0\n1", "{logs}");
    }
    assert!(g.runc_containers().is_empty());
}
