//! The built-in ML components in real containers: the demo, determinism, the
//! registration gate, sweeps, messy CSVs and the model registry CLI.

use crate::support::{Gantry, step};
use std::path::Path;

fn example(g: &Gantry, name: &str) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let dst = g.dir.path().join(name);
    std::fs::create_dir_all(dst.join("data")).unwrap();
    for entry in std::fs::read_dir(src.join("data")).unwrap() {
        let e = entry.unwrap();
        std::fs::copy(e.path(), dst.join("data").join(e.file_name())).unwrap();
    }
    std::fs::copy(src.join("pipeline.yaml"), dst.join("pipeline.yaml")).unwrap();
    dst.join("pipeline.yaml")
}

#[test]
fn the_demo_trains_registers_deploys_serves_and_monitors_and_runs_again_cached_in_the_same_home() {
    let g = Gantry::empty();
    let dir = g.dir.path().join("demo");
    let out = g.run(&["demo", "--dir", dir.to_str().unwrap(), "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"]["status"], "succeeded", "{v:#}");
    assert_eq!(v["run"]["steps"].as_array().unwrap().len(), 12);
    let model = &v["models"][0];
    assert_eq!(model["model"], "breast-cancer");
    assert_eq!(model["aliases"][0], "champion");
    let metrics: serde_json::Value =
        serde_json::from_str(model["metrics_json"].as_str().unwrap()).unwrap();
    assert!(metrics["accuracy"].as_f64().unwrap() >= 0.9, "{metrics}");
    assert!(dir.join("data/breast_cancer.csv").exists());

    // The sweep is listed as a table with each combination's validation metrics.
    let run = v["run"]["run_id"].as_str().unwrap();
    let show = g.show(run);
    let sweep = &show["sweeps"][0];
    assert_eq!(sweep["step"], "train");
    assert_eq!(sweep["members"].as_array().unwrap().len(), 3);
    assert!(
        sweep["members"][0]["metrics"]["validation.accuracy"]
            .as_f64()
            .unwrap()
            > 0.9
    );
    let text = g.ok(&["show", run]);
    assert!(text.contains("sweep train (3 combinations)"), "{text}");

    // Lineage goes back to the raw CSV's digest.
    let m = g.json(&["model", "show", "breast-cancer@champion"]);
    let source = show["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["step"] == "ingest" && a["name"] == "source")
        .unwrap()["digest"]
        .clone();
    assert_eq!(m["lineage"]["data"][0], source);
    assert_eq!(m["lineage"]["run"], run);

    // The pipeline's builtin/deploy step asked for the deployment; the demo served it, sent
    // traffic whose size features drift half-way with feedback, and the monitor saw it.
    let monitor = &v["monitor"];
    assert_eq!(monitor["deployment"], "breast-cancer");
    assert_eq!(monitor["version"], 1);
    assert_eq!(monitor["revision"], 1);
    let report = &monitor["report"];
    assert_eq!(report["samples"], 300, "{report:#}");
    let drifted: Vec<&str> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "drift")
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    for f in ["mean_radius", "mean_area", "worst_perimeter"] {
        assert!(drifted.contains(&f), "{f} not in {drifted:?}");
    }
    assert!(!drifted.contains(&"mean_texture"), "{drifted:?}");
    let accuracy = report["performance"][0]["accuracy"].as_f64().unwrap();
    assert!(accuracy < 0.9, "the shift costs accuracy: {accuracy}");
    let firing: Vec<&str> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    assert!(firing.contains(&"psi > 0.2"), "{firing:?}");
    assert!(firing.contains(&"accuracy < 0.9"), "{firing:?}");
    assert!(g.runc_containers().is_empty(), "the demo stops its replica");

    let again = g.run(&["demo", "--dir", dir.to_str().unwrap(), "--output", "json"]);
    assert!(again.status.success());
    let v2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v2["run"]["cache_hits"], 12, "{v2:#}");
    // Each cached step carries the metrics its origin step recorded, and only those.
    let metrics_by_step = |run: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        let show = g.show(run.as_str().unwrap());
        let mut m: Vec<_> = show["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["step"].as_str().unwrap().to_owned(), s["metrics"].clone()))
            .collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        m
    };
    let (first_metrics, cached_metrics) = (
        metrics_by_step(&v["run"]["run_id"]),
        metrics_by_step(&v2["run"]["run_id"]),
    );
    assert_eq!(cached_metrics, first_metrics);
    let with_metrics = first_metrics
        .iter()
        .filter(|(_, m)| m.as_object().is_some_and(|o| !o.is_empty()))
        .count();
    assert!(with_metrics >= 4, "{first_metrics:#?}");
    assert_ne!(
        first_metrics[0].1,
        first_metrics[first_metrics.len() - 1].1,
        "steps have metrics of their own"
    );
    // Each run reports its own traffic's accuracy, not the monitor's window over both runs.
    assert_eq!(v2["accuracy"], v["accuracy"], "{:#}", v2["accuracy"]);
    let before = v2["accuracy"]["before_shift"].as_f64().unwrap();
    let drifted = v2["accuracy"]["drifted"].as_f64().unwrap();
    assert!(before >= 0.9 && drifted < before, "{:#}", v2["accuracy"]);
    assert_eq!(
        g.json(&["model", "show", "breast-cancer"])["version"],
        1,
        "a cached register registers nothing new"
    );
    // A third run in the same home: the monitor counts every run's traffic from its
    // aggregates (nothing re-read, nothing counted twice) and still sees the drift.
    assert_eq!(
        v2["monitor"]["report"]["samples"], 600,
        "{:#}",
        v2["monitor"]
    );
    let third = g.run(&["demo", "--dir", dir.to_str().unwrap(), "--output", "json"]);
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let v3: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    let report = &v3["monitor"]["report"];
    assert_eq!(report["samples"], 900, "{report:#}");
    assert!(
        report["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["feature"] == "mean_radius" && f["status"] == "drift"),
        "{report:#}"
    );
}

#[test]
fn training_is_deterministic_and_the_registry_tracks_versions_and_aliases() {
    let g = Gantry::empty();
    let file = example(&g, "iris");
    let (code, a, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{a:#}\n{err}");
    let (code, b, _) = g.run_pipeline(&file, &["--no-cache"]);
    assert_eq!(code, 0);
    assert_eq!(b["cache_hits"], 0);
    let model_a = step(&a, "train")["outputs"]["model"].as_str().unwrap();
    let model_b = step(&b, "train")["outputs"]["model"].as_str().unwrap();
    assert_eq!(
        model_a, model_b,
        "same data and params give a byte-identical model"
    );

    // Each run registered a version (the second re-ran register), staging moved along.
    let m = g.json(&["model", "show", "iris@staging"]);
    assert_eq!(m["version"], 2);
    assert!(m["metrics"]["accuracy"].as_f64().unwrap() >= 0.9);
    g.ok(&["model", "alias", "iris", "1", "champion"]);
    assert_eq!(g.json(&["model", "show", "iris@champion"])["version"], 1);
    let models = g.json(&["models"]);
    assert_eq!(models[0]["name"], "iris");
    assert_eq!(models[0]["latest_version"], 2);
    assert_eq!(
        g.run(&["model", "show", "iris@nope"]).status.code(),
        Some(3)
    );
    assert_eq!(g.run(&["model", "show", "nothing"]).status.code(), Some(3));

    // A different param changes the model.
    let (_, c, _) = g.run_pipeline(&file, &["-p", "max_depth=1"]);
    assert_ne!(
        step(&c, "train")["outputs"]["model"].as_str().unwrap(),
        model_a
    );
}

#[test]
fn an_unmet_gate_fails_the_run_and_registers_nothing() {
    let g = Gantry::empty();
    let file = example(&g, "breast-cancer");
    let (code, s, _) = g.run_pipeline(&file, &["-p", "min_accuracy=0.9999"]);
    assert_eq!(code, 1, "{s:#}");
    let reg = step(&s, "register");
    assert_eq!(reg["status"], "failed");
    let reason = reg["reason"].as_str().unwrap();
    assert!(
        reason.contains("accuracy") && reason.contains("0.9999"),
        "{reason}"
    );
    assert!(g.json(&["models"]).as_array().unwrap().is_empty());
}

#[test]
fn a_regression_sweep_picks_the_best_combination() {
    let g = Gantry::empty();
    let file = example(&g, "diabetes");
    let (code, s, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{s:#}\n{err}");
    let members: Vec<_> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["step"].as_str().unwrap().starts_with("ridge["))
        .collect();
    assert_eq!(members.len(), 3);
    let best = step(&s, "select")["outputs"]["model"].as_str().unwrap();
    // Each candidate's validation RMSE as its own train step recorded it: select-best must
    // have copied the one with the lowest, unchanged.
    let show = g.show(s["run_id"].as_str().unwrap());
    let mut scored: Vec<(f64, &str, &str)> = members
        .iter()
        .map(|m| {
            let name = m["step"].as_str().unwrap();
            let rmse = step(&show, name)["metrics"]["validation.rmse"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} recorded no validation.rmse: {show:#}"));
            (rmse, name, m["outputs"]["model"].as_str().unwrap())
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        scored[0].0 < scored[1].0,
        "the sweep should not tie for the best: {scored:?}"
    );
    assert_eq!(
        best, scored[0].2,
        "select-best picked another model than {}, the lowest validation.rmse: {scored:?}",
        scored[0].1
    );
    let r2 = step(&show, "evaluate")["metrics"]["r2"].as_f64().unwrap();
    assert!(r2 > 0.3, "r2 {r2}");
}

#[test]
fn messy_csvs_are_ingested_and_a_ragged_row_is_reported_by_line() {
    let g = Gantry::empty();
    let mut csv = String::from("id,city,temp,raining,label\n");
    for i in 0..60 {
        let city = ["\"Paris, FR\"", "Berlin", "NA", "\"Rome, \"\"IT\"\"\""][i % 4];
        let temp = if i % 7 == 0 {
            "?".to_string()
        } else {
            format!("{}.5", 10 + i % 13)
        };
        let raining = if i % 5 == 0 {
            ""
        } else if i % 2 == 0 {
            "yes"
        } else {
            "no"
        };
        let label = if (i % 13) > 6 { "warm" } else { "cold" };
        csv.push_str(&format!("{i},{city},{temp},{raining},{label}\n"));
    }
    g.write("messy/data/weather.csv", &csv);
    let file = g.write(
        "messy/pipeline.yaml",
        r#"
name: messy
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: data/weather.csv }
    outputs: [dataset]
  - name: profile
    uses: builtin/profile
    inputs: { dataset: ingest.dataset }
    outputs: [profile, summary]
  - name: clean
    uses: builtin/clean
    inputs: { dataset: ingest.dataset }
    with: { label: label, drop: [id], standardize: true }
    outputs: [dataset, transform]
  - name: split
    uses: builtin/split
    inputs: { dataset: clean.dataset }
    with: { test_fraction: 0.25, seed: 2, stratify: label }
    outputs: [train, test]
  - name: train
    uses: builtin/train
    inputs: { train: split.train, transform: clean.transform }
    with: { label: label, algorithm: logistic }
    outputs: [model]
  - name: evaluate
    uses: builtin/evaluate
    inputs: { model: train.model, test: split.test }
    outputs: [report]
"#,
    );
    let (code, s, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{s:#}\n{err}");
    let run = s["run_id"].as_str().unwrap();
    let logs = g.ok(&["logs", run, "profile"]);
    assert!(logs.contains("city"), "{logs}");
    let out = tempfile::tempdir().unwrap();
    let profile = g.ok(&[
        "artifact",
        "get",
        step(&s, "profile")["outputs"]["profile"].as_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(profile.trim()).unwrap()).unwrap();
    let col = |n: &str| {
        p["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(col("city")["type"], "categorical");
    assert_eq!(col("city")["missing"], 15);
    assert_eq!(col("temp")["type"], "float");
    assert_eq!(col("raining")["type"], "bool");
    assert!(
        col("city")["categorical"]["top"]
            .to_string()
            .contains("Rome, \\\"IT\\\"")
    );

    // A ragged row fails the ingest step with its line number; nothing downstream runs.
    csv.push_str("61,Berlin,3.5\n");
    g.write("messy/data/weather.csv", &csv);
    let (code, s, _) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 1);
    let reason = step(&s, "ingest")["reason"].as_str().unwrap();
    assert!(reason.contains("line 62"), "{reason}");
    assert_eq!(step(&s, "train")["status"], "skipped");
}

#[test]
fn a_misconfigured_builtin_step_is_refused_before_anything_runs() {
    let g = Gantry::empty();
    let file = g.write(
        "bad.yaml",
        "name: bad\nsteps:\n  - name: split\n    uses: builtin/split\n    inputs: { dataset: { path: data.csv } }\n    with: { test_fracton: 0.2 }\n    outputs: [train, test]\n",
    );
    g.write("data.csv", "a\n1\n");
    let out = g.run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("test_fracton") && err.contains("test_fraction"),
        "{err}"
    );
    let file = g.write(
        "unknown.yaml",
        "name: bad\nsteps:\n  - name: x\n    uses: builtin/teleport\n",
    );
    let out = g.run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("teleport"));
    assert!(g.json(&["runs"]).as_array().unwrap().is_empty());
}

/// Serves `files` (path -> bytes) over HTTP/1.0 on 127.0.0.1 until the test ends.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(body);
                }
                None => {
                    let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_csv_url_is_fetched_by_the_engine_and_gzip_is_recognised() {
    let g = Gantry::empty();
    let csv = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/iris/data/iris.csv"),
    )
    .unwrap();
    let gz = {
        let mut child = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&csv).unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let base = serve(vec![("/iris.csv.gz", gz.clone())]);
    let file = g.write(
        "url.yaml",
        &format!(
            r#"
name: url
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: {{ source: "{base}/iris.csv.gz" }}
    outputs: [dataset]
  - name: split
    uses: builtin/split
    inputs: {{ dataset: ingest.dataset }}
    with: {{ test_fraction: 0.3, seed: 1, stratify: species }}
    outputs: [train, test]
  - name: train
    uses: builtin/train
    inputs: {{ train: split.train }}
    with: {{ label: species, algorithm: logistic }}
    outputs: [model]
  - name: evaluate
    uses: builtin/evaluate
    inputs: {{ model: train.model, test: split.test }}
    outputs: [report]
"#
        ),
    );
    let (code, s, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{s:#}\n{err}");
    let show = g.show(s["run_id"].as_str().unwrap());
    assert!(
        step(&show, "evaluate")["metrics"]["accuracy"]
            .as_f64()
            .unwrap()
            >= 0.9
    );
    // The step saw the fetched bytes as an input artifact: the digest is the download's.
    let source = step(&show, "ingest")["inputs"]["source"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let got = g.ok(&[
        "artifact",
        "get",
        &source,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(got.trim()).unwrap(), gz);

    // A missing URL fails the step with the HTTP status, before any container runs.
    let missing = g.write(
        "missing.yaml",
        &format!("name: m\nsteps:\n  - name: ingest\n    uses: builtin/csv-ingest\n    with: {{ source: \"{base}/nope.csv\" }}\n    outputs: [dataset]\n"),
    );
    let (code, s, _) = g.run_pipeline(&missing, &[]);
    assert_eq!(code, 1);
    let reason = step(&s, "ingest")["reason"].as_str().unwrap();
    assert!(reason.contains("404"), "{reason}");
}
