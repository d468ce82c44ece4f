//! Crash safety: `gantry` killed with SIGKILL mid-run loses nothing recorded, the run
//! shows as interrupted, and the next start reaps the container it left behind.

use crate::support::{Gantry, eventually, step, wait_until};

#[test]
fn kill_9_mid_run_leaves_a_readable_store_and_an_interrupted_run() {
    let g = Gantry::new();
    let file = g.write(
        "crash.yaml",
        r#"
name: crash
steps:
  - name: first
    image: busybox:1
    command: [sh, -c, 'echo done > /gantry/outputs/x']
    outputs: [x]
  - name: stuck
    image: busybox:1
    command: [sh, -c, 'echo waiting; sleep 300']
    inputs: { x: first.x }
"#,
    );
    let mut child = g.spawn(&["run", file.to_str().unwrap()]);
    let mut last = String::new();
    let running = eventually(|| {
        let out = g.run(&["runs", "--output", "json"]);
        let Ok(runs) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            last = format!("runs: {}", String::from_utf8_lossy(&out.stderr));
            return false;
        };
        let Some(id) = runs[0]["id"].as_str() else {
            return false;
        };
        let show = g.show(id);
        last = format!("{show:#}");
        step(&show, "stuck")["status"] == "running" && g.runc_containers().len() == 1
    });
    if !running {
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the second step never ran; last state:\n{last}\ngantry run stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        g.runc_containers().len(),
        1,
        "the container outlives its killed parent"
    );

    let runs = g.json(&["runs"]);
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
    let show = g.show(runs[0]["id"].as_str().unwrap());
    assert_eq!(step(&show, "first")["status"], "succeeded");
    assert!(
        step(&show, "first")["outputs"]["x"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(step(&show, "stuck")["status"], "interrupted");

    // The next run reaps the orphaned container before it starts.
    let quick = g.write(
        "quick.yaml",
        "name: quick\nsteps:\n  - name: a\n    image: busybox:1\n    command: [\"true\"]\n",
    );
    let (code, _, _) = g.run_pipeline(&quick, &[]);
    assert_eq!(code, 0);
    assert!(g.runc_containers().is_empty());
    // The completed first step is a cache hit in a new run of the crashed pipeline.
    let mut again = g.spawn(&["run", file.to_str().unwrap(), "--output", "json"]);
    wait_until("the retry run to reach the stuck step", || {
        g.runc_containers().len() == 1
    });
    let runs = g.json(&["runs"]);
    let show = g.show(runs[0]["id"].as_str().unwrap());
    assert_eq!(step(&show, "first")["status"], "cached");
    again.kill().unwrap();
    again.wait().unwrap();
    let (code, _, _) = g.run_pipeline(&quick, &["--no-cache"]);
    assert_eq!(code, 0);
    assert!(g.runc_containers().is_empty());
}
