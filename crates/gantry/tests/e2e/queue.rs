//! A shared server: projects take turns on a full machine, priorities order a project's own
//! runs, quotas hold a project back without holding back the others, a run too large is
//! refused at submit, queued runs can be cancelled and survive restarts — with real runc
//! steps.

use crate::support::{Gantry, KillOnDrop, wait_until};
use serde_json::Value;

/// A one-step pipeline of project `name` whose step holds `cpu` for `secs` seconds.
fn pipeline(g: &Gantry, name: &str, cpu: &str, secs: &str) -> String {
    g.write(
        &format!("{name}-{secs}.yaml"),
        &format!(
            "name: {name}\nsteps:\n  - name: work\n    image: busybox:1\n    command: [sleep, '{secs}']\n    resources: {{ cpu: {cpu}, memory: 64Mi }}\n"
        ),
    )
    .to_str()
    .unwrap()
    .to_owned()
}

/// `gantry --server URL run FILE --detach ARGS…`: the run id.
fn submit(g: &Gantry, url: &str, file: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", file, "--detach"];
    args.extend(extra);
    let (code, out, err) = g.remote(url, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.trim().to_owned();
    assert!(id.starts_with("r-"), "{out}");
    id
}

fn run_doc(g: &Gantry, url: &str, id: &str) -> Value {
    let (code, out, err) = g.remote(url, &["show", id, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn status(g: &Gantry, url: &str, id: &str) -> String {
    run_doc(g, url, id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn queue(g: &Gantry, url: &str) -> Value {
    let (code, out, err) = g.remote(url, &["queue", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn waiting_runs(q: &Value) -> Vec<String> {
    q["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["run_id"].as_str().unwrap().to_owned())
        .collect()
}

fn started_at(g: &Gantry, url: &str, id: &str) -> i64 {
    run_doc(g, url, id)["started_at_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("run {id} never started"))
}

fn start_server(g: &Gantry, cpus: &str) -> (KillOnDrop, String) {
    let (child, url) =
        g.spawn_listening(&["server", "--listen", "127.0.0.1:0", "--cpus", cpus], &[]);
    (KillOnDrop(child), url)
}

#[test]
fn projects_take_turns_on_a_full_machine_and_priorities_order_a_projects_runs() {
    let g = Gantry::new();
    let (server, url) = start_server(&g, "1");
    let hold = pipeline(&g, "alpha", "1", "4");
    let alpha = pipeline(&g, "alpha", "1", "0.3");
    let beta = pipeline(&g, "beta", "1", "0.3");
    // alpha holds the only CPU; then alpha submits three more runs, one of them urgent,
    // and beta two, after all of alpha's.
    let a1 = submit(&g, &url, &hold, &[]);
    wait_until("the first run to start", || {
        status(&g, &url, &a1) == "running"
    });
    let a2 = submit(&g, &url, &alpha, &[]);
    let a3 = submit(&g, &url, &alpha, &[]);
    let a4 = submit(&g, &url, &alpha, &["--priority", "high"]);
    let b1 = submit(&g, &url, &beta, &[]);
    let b2 = submit(&g, &url, &beta, &[]);
    for id in [&a2, &a3, &a4, &b1, &b2] {
        assert_eq!(status(&g, &url, id), "queued", "{id}");
    }

    // The queue, in the order it will be served, and why each waits.
    let q = queue(&g, &url);
    assert_eq!(
        waiting_runs(&q),
        [a4.as_str(), &b1, &a2, &b2, &a3],
        "alpha's urgent run first, then the projects alternate: {q:#}"
    );
    for w in q["waiting"].as_array().unwrap() {
        assert_eq!(w["kind"], "start_run");
        assert_eq!(
            w["reason"], "capacity: 0 of 1 CPU free on this machine; needs 1",
            "{w:#}"
        );
    }
    assert_eq!(q["used"]["cpu_millis"], 1000);
    let alpha_standing = q["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["project"] == "alpha")
        .unwrap();
    assert_eq!(alpha_standing["runs_in_flight"], 1);
    assert_eq!(alpha_standing["waiting"], 3);
    let metrics = crate::trust::get_text(&url, "/metrics");
    assert!(
        metrics.contains(r#"gantry_queue_waiting{project="alpha"} 3"#)
            && metrics.contains(r#"gantry_queue_waiting{project="beta"} 2"#)
            && metrics.contains(r#"gantry_project_runs_admitted{project="alpha"} 1"#),
        "{metrics}"
    );
    let doc = run_doc(&g, &url, &b1);
    assert_eq!(doc["waiting"][0]["position"], 2, "{doc:#}");
    let (_, shown, _) = g.remote(&url, &["show", &b1]);
    assert!(
        shown.contains("waiting   run start, #2 in the queue: capacity: 0 of 1 CPU free"),
        "{shown}"
    );
    let page = crate::trust::get_text(&url, &format!("/runs/{b1}"));
    assert!(
        page.contains("The run waits for admission, #2 in the queue: capacity: 0 of 1 CPU free"),
        "{page}"
    );
    let (code, table, err) = g.remote(&url, &["queue"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("WHY") && table.contains(&a4) && table.contains("(run start)"),
        "{table}"
    );

    // A queued run is cancelled without ever running.
    let (code, _, err) = g.remote(&url, &["cancel", &a3]);
    assert_eq!(code, 0, "{err}");
    wait_until("the queued run to be cancelled", || {
        status(&g, &url, &a3) == "cancelled"
    });
    assert!(!waiting_runs(&queue(&g, &url)).contains(&a3));

    for id in [&a1, &a2, &a4, &b1, &b2] {
        wait_until("every run to finish", || {
            status(&g, &url, id) == "succeeded"
        });
    }
    let doc = run_doc(&g, &url, &a3);
    assert!(doc["started_at_ms"].is_null(), "{doc:#}");
    assert_eq!(doc["steps"].as_array().map(Vec::len), Some(0), "{doc:#}");
    let mut order = vec![a1.clone(), a2.clone(), a4.clone(), b1.clone(), b2.clone()];
    order.sort_by_key(|id| started_at(&g, &url, id));
    assert_eq!(order, [a1.as_str(), &a4, &b1, &a2, &b2]);
    // One step at a time: each started after the one before it ended (the CPU is given back
    // when the step ends, a moment before its run records its own end).
    let step_times = |id: &str| {
        let doc = run_doc(&g, &url, id);
        let s = &doc["steps"][0];
        (
            s["started_at_ms"].as_i64().unwrap(),
            s["finished_at_ms"].as_i64().unwrap(),
        )
    };
    for pair in order.windows(2) {
        let (_, ended) = step_times(&pair[0]);
        let (started, _) = step_times(&pair[1]);
        assert!(ended <= started, "{} overlapped {}", pair[0], pair[1]);
    }
    drop(server);
}

#[test]
fn quotas_hold_one_project_back_and_queued_runs_survive_restarts() {
    let g = Gantry::new();
    let (server, url) = start_server(&g, "2");
    // An admin caps alpha at one run in flight and 1 CPU.
    let (code, out, err) = g.remote(
        &url,
        &[
            "project",
            "quota",
            "alpha",
            "--max-runs",
            "1",
            "--cpu",
            "1",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let set: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(set[0]["max_runs"], 1);
    assert_eq!(set[0]["cpu_millis"], 1000);
    assert_eq!(set[0]["weight"], 1);
    // Another flag later changes that limit only.
    let (code, out, err) = g.remote(
        &url,
        &["project", "quota", "alpha", "--weight", "2", "-o", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let set: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (set[0]["max_runs"].as_i64(), set[0]["weight"].as_i64()),
        (Some(1), Some(2))
    );

    // A run that could never fit alpha's quota is refused at submit, with the reason.
    let too_big = pipeline(&g, "alpha", "2", "1");
    let (code, out, err) = g.remote(&url, &["run", &too_big, "--detach"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("requests 2 CPU but project alpha's quota is 1 CPU"),
        "{err}"
    );

    let long = pipeline(&g, "alpha", "1", "60");
    let short = pipeline(&g, "alpha", "1", "0.2");
    let a1 = submit(&g, &url, &long, &[]);
    wait_until("alpha's first run to start", || {
        status(&g, &url, &a1) == "running"
    });
    let a2 = submit(&g, &url, &long, &[]);
    let a3 = submit(&g, &url, &short, &[]);
    let a5 = submit(&g, &url, &short, &[]);
    let q = queue(&g, &url);
    assert_eq!(waiting_runs(&q), [a2.as_str(), &a3, &a5]);
    assert_eq!(
        q["waiting"][0]["reason"],
        "quota: the project has 1 of 1 runs in flight (max_runs)"
    );
    // The machine has a free CPU, and beta is not held back by alpha's quota.
    let beta = pipeline(&g, "beta", "1", "0.2");
    let b1 = submit(&g, &url, &beta, &[]);
    wait_until("beta's run to finish", || {
        status(&g, &url, &b1) == "succeeded"
    });
    assert_eq!(status(&g, &url, &a1), "running");

    // A graceful stop cancels the running run and keeps the queued ones queued.
    let pid = server.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = server.wait();
    assert!(out.status.success(), "{out:?}");
    let local = |id: &str| g.show(id)["status"].as_str().unwrap().to_owned();
    assert_eq!(local(&a1), "cancelled");
    assert_eq!((local(&a2), local(&a3)), ("queued".into(), "queued".into()));
    // Commands run meanwhile on the machine do not take them for orphans, and one can be
    // cancelled there while no server holds it.
    g.ok(&["runs"]);
    assert_eq!(local(&a2), "queued");
    let said = g.ok(&["cancel", &a5]);
    assert!(said.contains("cancelled (it was queued)"), "{said}");
    assert_eq!(local(&a5), "cancelled");
    let out = g.run(&["cancel", &a5]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an ended run: nothing to cancel"
    );

    // The next server resumes them in their order, under the quota it reads back.
    let (server, url) = start_server(&g, "2");
    wait_until("the first queued run to start", || {
        status(&g, &url, &a2) == "running"
    });
    assert_eq!(status(&g, &url, &a3), "queued");
    let q = queue(&g, &url);
    assert_eq!(waiting_runs(&q), [a3.as_str()]);
    assert!(
        q["waiting"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_runs"),
        "{q:#}"
    );

    // Killed outright: the running run is interrupted, the queued one still waits …
    drop(server);
    assert_eq!(g.show(&a3)["status"], "queued");
    let (server, url) = start_server(&g, "2");
    assert_eq!(status(&g, &url, &a2), "interrupted");
    // … and runs to its end.
    wait_until("the last queued run to finish", || {
        status(&g, &url, &a3) == "succeeded"
    });
    let cancelled = run_doc(&g, &url, &a5);
    assert_eq!(
        cancelled["status"], "cancelled",
        "the cancelled run never ran"
    );
    assert!(cancelled["started_at_ms"].is_null(), "{cancelled:#}");
    assert!(started_at(&g, &url, &a3) > started_at(&g, &url, &a2));

    // Quotas are listed and removed; without a quota alpha is no longer capped.
    let (code, out, _) = g.remote(&url, &["project", "quota"]);
    assert_eq!(code, 0);
    assert!(out.contains("alpha") && out.contains("MAX RUNS"), "{out}");
    let (code, _, err) = g.remote(&url, &["project", "quota", "alpha", "--clear"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = g.remote(&url, &["project", "quota", "alpha"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("has no quota"), "{err}");
    let (code, _, err) = g.remote(&url, &["project", "quota", "alpha", "--cpu", "lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cpu lots"), "{err}");
    drop(server);
}
