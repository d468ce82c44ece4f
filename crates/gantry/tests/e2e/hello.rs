//! The README's user story: validate, run, list, show, logs, artifacts, cache, rerun.

use crate::support::{Gantry, attempts, step};
use std::path::Path;

fn hello(g: &Gantry) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello/pipeline.yaml");
    g.write(
        "hello/pipeline.yaml",
        &std::fs::read_to_string(src).unwrap(),
    )
}

#[test]
fn a_pipeline_runs_is_recorded_and_a_second_identical_run_is_fully_cached() {
    let g = Gantry::new();
    let file = hello(&g);
    let v = g.json(&["validate", file.to_str().unwrap()]);
    assert_eq!(v["valid"], true);

    let (code, first, stderr) = g.run_pipeline(&file, &["-p", "greeting=hi"]);
    assert_eq!(code, 0, "{first:#}\n{stderr}");
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["cache_hits"], 0);
    let run = first["run_id"].as_str().unwrap().to_string();

    // Outputs flow between steps: upper saw produce's lines.
    let upper = step(&first, "upper")["outputs"]["upper"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let path = g.ok(&[
        "artifact",
        "get",
        &upper,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let content = std::fs::read_to_string(path.trim()).unwrap();
    assert_eq!(content, "HI 1\nHI 2\nHI 3\n");

    // The report output is a directory tree.
    let report = step(&first, "report")["outputs"]["report"]
        .as_str()
        .unwrap()
        .to_string();
    let path = g.ok(&[
        "artifact",
        "get",
        &report,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let dir = Path::new(path.trim());
    assert_eq!(
        std::fs::read_to_string(dir.join("count")).unwrap().trim(),
        "3"
    );

    // show: steps, exit codes, usage, metrics, artifacts.
    let show = g.show(&run);
    assert_eq!(show["status"], "succeeded");
    assert_eq!(show["params"]["greeting"], "hi");
    let count = step(&show, "count");
    assert_eq!(count["exit_code"], 0);
    assert_eq!(count["metrics"]["lines"], 3.0);
    assert_eq!(count["requested"]["cpu_millis"], 500);
    assert!(count["usage"]["peak_memory_bytes"].as_i64().unwrap() > 0);
    assert!(count["usage"]["wall_ms"].as_i64().is_some());
    let artifacts = show["artifacts"].as_array().unwrap();
    assert!(
        artifacts
            .iter()
            .any(|a| a["step"] == "upper" && a["direction"] == "input")
    );
    assert!(artifacts.iter().any(|a| a["digest"] == upper.as_str()));

    // The table forms work too.
    let table = g.ok(&["show", &run]);
    assert!(
        table.contains("MEM PEAK") && table.contains("report"),
        "{table}"
    );
    let runs = g.ok(&["runs"]);
    assert!(runs.contains(&run) && runs.contains("succeeded"), "{runs}");

    // Logs are stored per step and retrievable after the run.
    let logs = g.ok(&["logs", &run, "upper"]);
    assert!(logs.contains("HI 3"), "{logs}");
    let all = g.ok(&["logs", &run]);
    assert!(all.contains("[upper] HI 1"), "{all}");

    // Identical second run: nothing executes.
    let (code, second, _) = g.run_pipeline(&file, &["-p", "greeting=hi"]);
    assert_eq!(code, 0);
    assert_eq!(second["cache_hits"], 4, "{second:#}");
    assert_eq!(step(&second, "upper")["outputs"]["upper"], upper.as_str());
    let listed = g.json(&["runs"]);
    assert_eq!(listed[0]["id"], second["run_id"]);
    assert_eq!(listed[0]["cache_hits"], 4);

    // A different param is a different cache key for every step that uses it.
    let (_, third, _) = g.run_pipeline(&file, &["-p", "greeting=yo"]);
    assert_eq!(third["cache_hits"], 0);

    // --no-cache runs everything again and yields the same content digests.
    let (code, forced, _) = g.run_pipeline(&file, &["-p", "greeting=hi", "--no-cache"]);
    assert_eq!(code, 0);
    assert_eq!(forced["cache_hits"], 0);
    assert_eq!(step(&forced, "upper")["outputs"]["upper"], upper.as_str());

    // rerun reproduces the first run: same params and image digests.
    let out = g.run(&["rerun", &run, "--output", "json", "--no-cache"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rerun: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rerun_show = g.show(rerun["run_id"].as_str().unwrap());
    assert_eq!(rerun_show["rerun_of"], run.as_str());
    assert_eq!(rerun_show["params"], show["params"]);
    assert_eq!(rerun_show["images"], show["images"]);
    assert_eq!(step(&rerun, "upper")["outputs"]["upper"], upper.as_str());
    assert_eq!(attempts(&rerun_show, "upper").len(), 1);
}

#[test]
fn independent_steps_run_in_parallel_within_capacity_and_queue_beyond_it() {
    let g = Gantry::new();
    let file = g.write(
        "par.yaml",
        r#"
name: par
steps:
  - name: a
    image: busybox:1
    command: [sleep, "1"]
    resources: { cpu: 1, memory: 32Mi }
  - name: b
    image: busybox:1
    command: [sleep, "1"]
    resources: { cpu: 1, memory: 32Mi }
"#,
    );
    let overlap = |v: &serde_json::Value| {
        let a = step(v, "a");
        let b = step(v, "b");
        let (a0, a1) = (
            a["started_at_ms"].as_i64().unwrap(),
            a["finished_at_ms"].as_i64().unwrap(),
        );
        let (b0, b1) = (
            b["started_at_ms"].as_i64().unwrap(),
            b["finished_at_ms"].as_i64().unwrap(),
        );
        a0 < b1 && b0 < a1
    };
    let (code, s, _) = g.run_pipeline(&file, &["--cpus", "2", "--no-cache"]);
    assert_eq!(code, 0);
    assert!(
        overlap(&g.show(s["run_id"].as_str().unwrap())),
        "2 CPUs: both run at once"
    );
    let (code, s, _) = g.run_pipeline(&file, &["--cpus", "1", "--no-cache"]);
    assert_eq!(code, 0);
    assert!(
        !overlap(&g.show(s["run_id"].as_str().unwrap())),
        "1 CPU: one after the other"
    );

    // A step larger than the machine is refused before anything runs.
    let out = g.run(&["run", file.to_str().unwrap(), "--cpus", "500m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requests 1 CPU"));
}

#[test]
fn path_inputs_are_stored_as_artifacts_and_pinned_by_rerun() {
    let g = Gantry::new();
    let data = g.write("proj/data/input.csv", "a,b\n1,2\n");
    let file = g.write(
        "proj/pipeline.yaml",
        r#"
name: paths
steps:
  - name: read
    image: busybox:1
    command: [sh, -c, "cat ${inputs.data} > /gantry/outputs/copy"]
    inputs: { data: { path: data/input.csv } }
    outputs: [copy]
"#,
    );
    let (code, first, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{first:#}");
    let digest = step(&first, "read")["outputs"]["copy"]
        .as_str()
        .unwrap()
        .to_string();
    // Changing the file changes the input digest, so the cache misses...
    std::fs::write(&data, "a,b\n3,4\n").unwrap();
    let (_, second, _) = g.run_pipeline(&file, &[]);
    assert_eq!(second["cache_hits"], 0);
    assert_ne!(step(&second, "read")["outputs"]["copy"], digest.as_str());
    // ...but a rerun of the first run uses the data it used.
    let out = g.run(&[
        "rerun",
        first["run_id"].as_str().unwrap(),
        "--output",
        "json",
        "--no-cache",
    ]);
    let rerun: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(step(&rerun, "read")["outputs"]["copy"], digest.as_str());
}

/// `gantry … | head`: a command whose reader goes away ends quietly — killed by SIGPIPE like
/// any Unix filter, or done — never a panic with a backtrace.
#[test]
fn listing_commands_end_quietly_when_the_reader_closes_the_pipe() {
    use std::os::unix::process::ExitStatusExt;
    let g = Gantry::new();
    let file = g.write(
        "chatty.yaml",
        "name: chatty\nsteps:\n  - name: talk\n    image: busybox:1\n    command: [\"seq\", \"1\", \"50000\"]\n",
    );
    let (code, summary, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{err}");
    let run = summary["run_id"].as_str().unwrap().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["runs"],
        vec!["runs", "--output", "json"],
        vec!["show", &run],
        vec!["show", &run, "--output", "json"],
        vec!["logs", &run],
        vec!["logs", &run, "talk"],
        vec!["artifacts", &run],
        vec!["images"],
        vec!["models"],
        vec!["dataset", "breast_cancer"],
    ];
    for args in commands {
        for read_first in [0usize, 100] {
            let mut child = g
                .command(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = child.stdout.take().unwrap();
            if read_first > 0 {
                let mut buf = vec![0u8; read_first];
                let _ = std::io::Read::read(&mut out, &mut buf);
            }
            drop(out);
            let done = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&done.stderr);
            assert!(
                !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
                "gantry {args:?} with a closed stdout: {stderr}"
            );
            assert!(
                done.status.success() || done.status.signal() == Some(libc::SIGPIPE),
                "gantry {args:?} with a closed stdout ended with {:?}: {stderr}",
                done.status
            );
        }
    }
}
