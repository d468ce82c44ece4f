//! Resource accounting as a platform engineer meets it: what steps used and cost, what the
//! cache saved, right-sizing from history (`gantry recommend`, `memory: auto`, the warning on
//! a request far above use), and a step that was OOM-killed retried with more memory.

use crate::support::{Gantry, KillOnDrop, attempts, step};
use serde_json::Value;

const MIB: f64 = (1u64 << 20) as f64;

fn run_id(summary: &Value) -> String {
    summary["run_id"].as_str().unwrap().to_owned()
}

fn line<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == key)
        .unwrap_or_else(|| panic!("no line {key} in {report:#}"))
}

/// The CPU seconds a busybox shell's `times` counted for itself and its children: the sum
/// of the four figures on its two lines (`0m0.01s 0m0.00s` / `0m1.98s 0m0.00s`).
fn cpu_seconds_of_times(log: &str) -> f64 {
    let figures: Vec<f64> = log
        .split_whitespace()
        .filter_map(|w| {
            let (m, s) = w.strip_suffix('s')?.split_once('m')?;
            Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
        })
        .collect();
    assert_eq!(figures.len(), 4, "no `times` output in {log:?}");
    figures.iter().sum()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn usage_and_cost_follow_what_steps_requested_and_used() {
    let g = Gantry::new();
    std::fs::write(
        g.home.path().join("config.yaml"),
        "prices:\n  currency: EUR\n  cpu_hour: 0.36\n  memory_gib_hour: 0.036\n",
    )
    .unwrap();
    let file = g.write(
        "usage.yaml",
        r#"
name: usage
steps:
  # One core busy for 2 seconds; the shell then prints the CPU time it and its children
  # used (`times`), which the step's measured usage must agree with however loaded the
  # machine is.
  - name: burn
    image: busybox:1
    command: [sh, -c, 'timeout 2 sh -c "while :; do :; done"; times']
    resources: { cpu: 1, memory: 64Mi }
  # A 96 MiB buffer, filled once.
  - name: buffer
    image: busybox:1
    command: [dd, if=/dev/zero, of=/dev/null, bs=96M, count=1]
    resources: { cpu: 500m, memory: 512Mi }
"#,
    );
    let (code, s, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{s:#}\n{err}");
    let run = run_id(&s);
    let show = g.show(&run);
    let burn = step(&show, "burn");
    let cpu_s = f(&burn["usage"]["cpu_seconds"]);
    let log = g.ok(&["logs", &run, "burn"]);
    let own = cpu_seconds_of_times(&log);
    assert!(own > 0.1, "the burn loop got no CPU at all: {log}");
    assert!(
        cpu_s >= own - 0.05 && cpu_s < own + 0.3,
        "burn measured {cpu_s} CPU-s, its shell counted {own}: {log}"
    );
    let buffer = step(&show, "buffer");
    let peak = f(&buffer["usage"]["peak_memory_bytes"]) / MIB;
    assert!((96.0..160.0).contains(&peak), "buffer peaked at {peak} MiB");
    assert_eq!(show["submitted_by"], "root");

    // The run's cost: requests × wall time × the configured prices.
    let usage = &show["usage"];
    assert_eq!(usage["currency"], "EUR");
    assert_eq!(usage["step_runs"], 2);
    let wall_h = |st: &Value| f(&st["usage"]["wall_ms"]) / 3.6e6;
    let cpu_h = wall_h(burn) * 1.0 + wall_h(buffer) * 0.5;
    let mem_gib_h = wall_h(burn) * (64.0 / 1024.0) + wall_h(buffer) * 0.5;
    assert!((f(&usage["cpu_hours_requested"]) - cpu_h).abs() < 1e-9);
    assert!((f(&usage["memory_gib_hours_requested"]) - mem_gib_h).abs() < 1e-9);
    let cost = cpu_h * 0.36 + mem_gib_h * 0.036;
    assert!(
        (f(&usage["cost"]["total"]) - cost).abs() < 1e-9,
        "{usage:#}"
    );
    let used_s = f(&usage["cpu_hours_used"]) * 3600.0;
    let steps_s = cpu_s + f(&buffer["usage"]["cpu_seconds"]);
    assert!(
        (used_s - steps_s).abs() < 1e-6,
        "{used_s} CPU-s used in all, {steps_s} by the steps"
    );
    let text = g.ok(&["show", &run]);
    assert!(text.contains("cost      "), "{text}");
    assert!(text.contains("EUR"), "{text}");

    // Again, from the cache: nothing runs, the saving is the first run's requests.
    let (code, again, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0);
    let report = g.json(&["usage", "--by", "step"]);
    assert_eq!(report["by"], "step");
    assert_eq!(report["currency"], "EUR");
    let b = line(&report, "usage/burn");
    assert_eq!(
        (
            b["runs"].as_u64(),
            b["step_runs"].as_u64(),
            b["cache_hits"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert!(
        (f(&b["saved"]["cpu_hours_requested"]) - wall_h(burn)).abs() < 1e-9,
        "{b:#}"
    );
    assert!((f(&b["saved"]["cpu_hours_used"]) * 3600.0 - cpu_s).abs() < 1e-6);
    let total = &report["total"];
    assert_eq!(total["cache_hits"], 2);
    assert!(
        (f(&total["cost"]["total"]) - cost).abs() < 1e-9,
        "the cached run cost nothing"
    );
    assert!(f(&total["cost"]["saved"]) > 0.0);
    let again_show = g.show(&run_id(&again));
    assert_eq!(f(&again_show["usage"]["cost"]["total"]), 0.0);

    // The same report through a server, and its Prometheus counters.
    let (server, url) = g.spawn_listening(&["server", "--listen", "127.0.0.1:0"], &[]);
    let server = KillOnDrop(server);
    let (code, remote, err) = g.remote(&url, &["usage", "--by", "step", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let remote: Value = serde_json::from_str(&remote).unwrap();
    assert_eq!(remote["lines"], report["lines"]);
    let metrics = crate::trust::get_text(&url, "/metrics");
    assert!(
        metrics.contains(r#"gantry_usage_cache_hits_total{project="usage"} 2"#),
        "{metrics}"
    );
    let cost_line = metrics
        .lines()
        .find(|l| l.starts_with(r#"gantry_usage_cost_total{project="usage",currency="EUR"}"#))
        .unwrap_or_else(|| panic!("no cost counter in\n{metrics}"));
    let counted: f64 = cost_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((counted - cost).abs() < 1e-9, "{cost_line}");
    drop(server);

    // By user and by project; a window that ends before the runs holds nothing.
    let by_user = g.json(&["usage", "--by", "user"]);
    assert_eq!(line(&by_user, "root")["runs"], 2);
    let by_project = g.json(&["usage", "--by", "project", "--since", "1h"]);
    assert_eq!(line(&by_project, "usage")["step_runs"], 2);
    let empty = g.json(&[
        "usage",
        "--since",
        "2020-01-01T00:00:00Z",
        "--until",
        "2020-01-02T00:00:00Z",
    ]);
    assert_eq!(empty["lines"], serde_json::json!([]));
    let table = g.ok(&["usage", "--by", "step"]);
    assert!(
        table.contains("usage/burn") && table.contains("SAVED BY CACHE"),
        "{table}"
    );

    // Bad input: a clear error and the usage exit code.
    let out = g.run(&["usage", "--by", "team"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("project, pipeline, step, deployment, user")
    );
    std::fs::write(
        g.home.path().join("config.yaml"),
        "prices:\n  cpu_hour: lots\n",
    )
    .unwrap();
    let out = g.run(&["usage"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.yaml:2:"), "{err}");
}

#[test]
fn history_right_sizes_steps_and_the_spec_is_patched_keeping_comments() {
    let g = Gantry::new();
    let spec = r#"# Sizing story
name: sizing
steps:
  - name: buffer   # fills a 64 MiB buffer
    image: busybox:1
    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=1]
    resources:
      cpu: 1
      memory: 2Gi   # a guess
"#;
    let file = g.write("sizing.yaml", spec);
    // Too little history: nothing recommended, nothing written.
    let r = g.json(&["recommend", file.to_str().unwrap()]);
    assert_eq!(r["steps"][0]["recommended"], Value::Null);
    for _ in 0..3 {
        let (code, s, err) = g.run_pipeline(&file, &["--no-cache"]);
        assert_eq!(code, 0, "{s:#}\n{err}");
    }
    let r = g.json(&["recommend", file.to_str().unwrap()]);
    let rec = &r["steps"][0]["recommended"];
    assert_eq!(rec["evidence"]["runs"], 3, "{r:#}");
    let memory = rec["memory_bytes"].as_u64().unwrap();
    let p95 = rec["evidence"]["peak_memory_p95"].as_u64().unwrap();
    assert!(p95 >= 64 << 20, "{r:#}");
    assert!(
        memory as f64 >= p95 as f64 * 1.2 && memory < 256 << 20,
        "{r:#}"
    );
    assert_eq!(memory % (64 << 20), 0, "rounded to 64Mi");

    // The fourth run says once that 2Gi is far above use.
    let out = g.run(&["run", file.to_str().unwrap(), "--no-cache"]);
    assert!(out.status.success());
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        said.matches("this step requests memory 2Gi but its last 3 runs peaked at")
            .count(),
        1,
        "{said}"
    );

    // --write: the same file, comments and layout kept, the new figures in place (the
    // figures of all four runs now).
    let r = g.json(&["recommend", file.to_str().unwrap()]);
    let rec = &r["steps"][0]["recommended"];
    assert_eq!(rec["evidence"]["runs"], 4, "{r:#}");
    let memory = rec["memory_bytes"].as_u64().unwrap();
    let table = g.ok(&["recommend", file.to_str().unwrap(), "--write"]);
    assert!(table.contains("wrote resources of 1 step(s)"), "{table}");
    let written = std::fs::read_to_string(&file).unwrap();
    let mem = format!("{}Mi", memory >> 20);
    let cpu = rec["cpu_millis"].as_u64().unwrap();
    let cpu = if cpu.is_multiple_of(1000) {
        format!("{}", cpu / 1000)
    } else {
        format!("{cpu}m")
    };
    let expected = spec
        .replace("      cpu: 1\n", &format!("      cpu: {cpu}\n"))
        .replace(
            "memory: 2Gi   # a guess",
            &format!("memory: {mem}   # a guess"),
        );
    assert_eq!(written, expected);
    let again = g.ok(&["recommend", file.to_str().unwrap(), "--write"]);
    assert!(again.contains("nothing to change"), "{again}");

    // `memory: auto` takes the recommendation and records why.
    std::fs::write(
        &file,
        expected.replace(&format!("memory: {mem}"), "memory: auto"),
    )
    .unwrap();
    let (code, s, _) = g.run_pipeline(&file, &["--no-cache"]);
    assert_eq!(code, 0, "{s:#}");
    let show = g.show(&run_id(&s));
    let st = step(&show, "buffer");
    assert_eq!(st["requested"]["memory_bytes"].as_u64(), Some(memory));
    let note = st["resources_note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!("memory: auto → {mem} (p95 of peak")),
        "{note}"
    );
    let logs = g.ok(&["logs", &run_id(&s), "buffer"]);
    assert!(logs.contains("memory: auto →"), "{logs}");
}

#[test]
fn an_oom_killed_step_is_retried_with_more_memory() {
    let g = Gantry::new();
    let file = g.write(
        "grow.yaml",
        r#"
name: grow
steps:
  - name: buffer
    image: busybox:1
    command: [dd, if=/dev/zero, of=/dev/null, bs=160M, count=1]
    resources: { memory: 64Mi }
    retries: { count: 3, memory_growth: 2 }
"#,
    );
    let (code, s, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{s:#}\n{err}");
    let show = g.show(&run_id(&s));
    let tries = attempts(&show, "buffer");
    assert_eq!(requested_mib(&show), [64, 128, 256], "{show:#}");
    assert_eq!(tries[0]["reason"], "oom-killed");
    assert_eq!(tries[1]["reason"], "oom-killed");
    assert_eq!(tries[2]["status"], "succeeded");
    assert_eq!(
        tries[2]["resources_note"],
        "memory 256Mi for attempt 3: attempt 2 was OOM-killed at 128Mi (memory_growth 2)"
    );
    // Without memory_growth the request stays and the retries fail alike.
    let file = g.write(
        "stay.yaml",
        r#"
name: stay
steps:
  - name: buffer
    image: busybox:1
    command: [dd, if=/dev/zero, of=/dev/null, bs=160M, count=1]
    resources: { memory: 64Mi }
    retries: 1
"#,
    );
    // (The same command succeeded above: not from the cache.)
    let (code, s, _) = g.run_pipeline(&file, &["--no-cache"]);
    assert_eq!(code, 1, "{s:#}");
    assert_eq!(requested_mib(&g.show(&run_id(&s))), [64, 64]);
}

/// Two steps OOM-killed at once, on a machine that fits only one of them grown: each gives
/// back the memory it holds idle while it waits, so one grows and runs, then the other
/// (before, each held half the memory and waited for the other's).
#[test]
fn two_steps_growing_at_once_take_turns() {
    let g = Gantry::new();
    let step = |name: &str| {
        format!(
            "  - name: {name}\n    image: busybox:1\n    command: [dd, if=/dev/zero, of=/dev/null, bs=150M, count=1]\n    resources: {{ memory: 100Mi }}\n    retries: {{ count: 1, memory_growth: 2 }}\n"
        )
    };
    let file = g.write(
        "both.yaml",
        &format!("name: both\nsteps:\n{}{}", step("left"), step("right")),
    );
    let mut run = KillOnDrop(g.spawn(&[
        "run",
        file.to_str().unwrap(),
        "--memory",
        "200Mi",
        "-o",
        "json",
    ]));
    assert!(
        crate::support::eventually(|| run.0.try_wait().unwrap().is_some()),
        "the two growing steps waited on each other"
    );
    let out = run.wait();
    let s: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", crate::support::both(&out)));
    assert_eq!(out.status.code(), Some(0), "{s:#}");
    let show = g.show(&run_id(&s));
    for name in ["left", "right"] {
        let tries = attempts(&show, name);
        let mib: Vec<u64> = tries
            .iter()
            .map(|a| a["requested"]["memory_bytes"].as_u64().unwrap() >> 20)
            .collect();
        assert_eq!(mib, [100, 200], "{name}: {show:#}");
        assert_eq!(tries[0]["reason"], "oom-killed", "{name}");
        assert_eq!(tries[1]["status"], "succeeded", "{name}");
    }
}

/// The memory each attempt of the step `buffer` asked for, in MiB.
fn requested_mib(show: &Value) -> Vec<u64> {
    attempts(show, "buffer")
        .iter()
        .map(|a| a["requested"]["memory_bytes"].as_u64().unwrap() >> 20)
        .collect()
}
