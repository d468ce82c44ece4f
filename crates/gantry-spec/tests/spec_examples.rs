//! A realistic pipeline through the whole public API: load → params → plan → cache keys.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_spec::{
    CacheKeyMaterial, ImageRef, InputSource, ParamValue, Resources, Sweep, cache_key, load, plan,
    resolve_params,
};

const IRIS: &str = r#"name: iris
description: Train and ship an iris classifier
params:                       # typed by their default
  test_fraction: 0.2
  max_depth: 4
  stratify: true
steps:
  - name: ingest
    uses: builtin/csv-ingest          # built-in component
    with: { source: data/iris.csv }
    outputs: [dataset]
  - name: split
    uses: builtin/split
    inputs: { dataset: ingest.dataset }
    with: { test_fraction: "${params.test_fraction}", seed: 7, stratify: species }
    outputs: [train, test]
  - name: train
    image: registry.example.com/team/trainer@sha256:0f3c
    command: [python, /app/train.py, --max-depth, "${params.max_depth}", --data, "${inputs.train}"]
    env:
      PYTHONHASHSEED: 0
      LOG_LEVEL: info
    inputs:
      train: split.train
      config: { path: conf/train.toml }
    outputs: [model]
    resources: { cpu: 2, memory: 2Gi, gpu: 0 }
    retries: 2
    timeout: 20m
  - name: evaluate
    uses: builtin/evaluate
    inputs: { model: train.model, test: split.test }
    outputs: [report]
    resources: { cpu: 500m, memory: 512Mi }
  - name: register
    uses: builtin/register
    inputs: { model: train.model, report: evaluate.report }
    with: { model: iris, alias: staging, require: "accuracy >= 0.9" }
    cache: false
"#;

#[test]
fn iris_pipeline_loads_plans_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gantry.yaml");
    std::fs::write(&file, IRIS).unwrap();

    let p = load(&file).unwrap();
    assert_eq!(p.name, "iris");
    assert_eq!(p.steps.len(), 5);
    assert_eq!(p.params["max_depth"], ParamValue::Int(4));
    let train = &p.steps[2];
    assert_eq!(train.location.line, 17);
    assert_eq!(
        train.inputs["config"],
        InputSource::Path(dir.path().join("conf/train.toml"))
    );
    assert_eq!(train.env["PYTHONHASHSEED"], "0");

    let params = resolve_params(&p, &[("max_depth".into(), "6".into())]).unwrap();
    let plan = plan(&p, &params).unwrap();
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ingest", "split", "train", "evaluate", "register"]);

    let train = &plan.steps[2];
    assert_eq!(
        train.image,
        ImageRef::Image("registry.example.com/team/trainer@sha256:0f3c".into())
    );
    assert_eq!(
        train.command,
        [
            "python",
            "/app/train.py",
            "--max-depth",
            "6",
            "--data",
            "/gantry/inputs/train"
        ]
    );
    assert_eq!(train.deps, ["split"]);
    assert_eq!(train.retries, 2);
    assert_eq!(train.timeout, Some(Duration::from_secs(20 * 60)));
    assert_eq!(
        train.resources,
        Resources {
            cpu_millis: 2000,
            memory_bytes: 2 << 30,
            gpu: 0,
            ..Resources::default()
        }
    );
    let split = &plan.steps[1];
    assert_eq!(split.image, ImageRef::Builtin("split".into()));
    assert_eq!(split.with["test_fraction"], serde_json::json!(0.2));
    let register = &plan.steps[4];
    assert_eq!(register.deps, ["train", "evaluate"]);
    assert!(!register.cache);
    assert_eq!(plan.steps[3].resources.cpu_millis, 500);

    // The plan survives a JSON round trip (the engine records it for reruns).
    let json = serde_json::to_string(&plan).unwrap();
    let back: gantry_spec::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);

    let inputs = BTreeMap::from([("train".to_owned(), "sha256:1111".to_owned())]);
    let key = |params: &BTreeMap<String, ParamValue>| {
        cache_key(&CacheKeyMaterial {
            image_digest: "sha256:0f3c",
            command: &train.command,
            env: &train.env,
            params,
            inputs: &inputs,
            outputs: &train.outputs,
            component_version: None,
            resources_network: train.network,
        })
    };
    assert_eq!(key(&params), key(&params.clone()));
    let defaults = resolve_params(&p, &[]).unwrap();
    assert_ne!(key(&params), key(&defaults));
}

#[test]
fn a_broken_pipeline_reports_every_problem_with_its_location() {
    let broken = IRIS
        .replace(
            "inputs: { dataset: ingest.dataset }",
            "inputs: { dataset: ingest.data }",
        )
        .replace("memory: 2Gi, gpu: 0", "memory: 2Gx, gpu: 0")
        .replace("    retries: 2\n", "    retries: 2\n    retrys: 3\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let err = load(&file).unwrap_err();
    let text = err.to_string();
    let label = file.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(err.diagnostics.len(), 3, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "{label}:14:24: error: input 'dataset' of step 'split'"
        )),
        "{text}"
    );
    assert!(lines[1].starts_with("  hint: "), "{text}");
    assert!(lines[1].contains("dataset"), "{text}");
    assert!(
        lines[2].starts_with(&format!("{label}:27:34: error: bad `memory`")),
        "{text}"
    );
    assert!(
        lines[4].starts_with(&format!("{label}:29:5: error: unknown key `retrys`")),
        "{text}"
    );
    assert!(lines[5].contains("did you mean `retries`?"), "{text}");
}

const SWEEP: &str = r#"name: cancer-sweep
params:
  deep: 8
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: "https://data.example.com/breast_cancer.csv" }
    outputs: [dataset]
  - name: split
    uses: builtin/split
    inputs: { dataset: ingest.dataset }
    with: { test_fraction: 0.25, seed: 7 }
    outputs: [train, test]
  - name: train
    uses: builtin/train
    inputs: { train: split.train }
    with: { label: diagnosis, seed: 7 }
    matrix:
      algorithm: [logistic, random_forest]
      max_depth: [2, "${params.deep}"]
    outputs: [model]
  - name: select
    uses: builtin/select
    inputs: { candidates: train.model, test: split.test }
    with: { metric: accuracy }
    outputs: [best]
  - name: bench
    image: registry.example.com/bench@sha256:0f3c
    matrix: { threads: [1, 4] }
    command: [bench, --threads, "${matrix.threads}", --model, "${inputs.model}/model.json"]
    inputs:
      model: select.best
      labels: { url: "https://data.example.com/labels.json" }
      local: { path: data/extra.csv }
    outputs: [timings]
  - name: publish
    image: busybox
    command: [sh, -c, "cat ${inputs.timings}/*/timings"]
    inputs: { timings: bench.timings }
    after: [train]
"#;

#[test]
fn a_sweep_pipeline_expands_fans_in_and_keys_each_combination() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.yaml");
    std::fs::write(&file, SWEEP).unwrap();
    let p = load(&file).unwrap();
    assert_eq!(p.steps[2].matrix.len(), 2);
    assert_eq!(
        p.steps[4].inputs["labels"],
        InputSource::Url("https://data.example.com/labels.json".into())
    );

    let params = resolve_params(&p, &[]).unwrap();
    let plan = plan(&p, &params).unwrap();
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    let trains = [
        "train[algorithm=logistic,max_depth=2]",
        "train[algorithm=logistic,max_depth=8]",
        "train[algorithm=random_forest,max_depth=2]",
        "train[algorithm=random_forest,max_depth=8]",
    ];
    let mut expected = vec!["ingest", "split"];
    expected.extend(trains);
    expected.extend(["select", "bench[threads=1]", "bench[threads=4]", "publish"]);
    assert_eq!(names, expected);

    let ingest = &plan.steps[0];
    assert_eq!(
        ingest.inputs["source"],
        InputSource::Url("https://data.example.com/breast_cancer.csv".into())
    );

    let rf8 = plan.steps.iter().find(|s| s.name == trains[3]).unwrap();
    assert_eq!(rf8.with["algorithm"], serde_json::json!("random_forest"));
    assert_eq!(rf8.with["max_depth"], serde_json::json!(8));
    assert_eq!(rf8.with["label"], serde_json::json!("diagnosis"));
    assert_eq!(
        rf8.sweep,
        Some(Sweep {
            step: "train".into(),
            index: 3,
            values: BTreeMap::from([
                ("algorithm".to_owned(), serde_json::json!("random_forest")),
                ("max_depth".to_owned(), serde_json::json!(8)),
            ]),
            label: "algorithm=random_forest,max_depth=8".into(),
        })
    );

    let select = plan.steps.iter().find(|s| s.name == "select").unwrap();
    let InputSource::Sweep {
        step,
        output,
        members,
    } = &select.inputs["candidates"]
    else {
        panic!(
            "candidates is not a sweep: {:?}",
            select.inputs["candidates"]
        );
    };
    assert_eq!((step.as_str(), output.as_str()), ("train", "model"));
    let member_names: Vec<&str> = members.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(member_names, trains);
    assert_eq!(members[0].0, "algorithm=logistic,max_depth=2");
    let mut deps = vec!["split"];
    deps.extend(trains);
    assert_eq!(select.deps, deps);

    let publish = plan.steps.iter().find(|s| s.name == "publish").unwrap();
    let mut deps = trains.to_vec();
    deps.extend(["bench[threads=1]", "bench[threads=4]"]);
    assert_eq!(publish.deps, deps);
    assert_eq!(publish.command[2], "cat /gantry/inputs/timings/*/timings");

    let bench: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| s.sweep.as_ref().is_some_and(|w| w.step == "bench"))
        .collect();
    assert_eq!(bench[1].command[2], "4");
    assert_eq!(
        bench[0].inputs["local"],
        InputSource::Path(dir.path().join("data/extra.csv"))
    );
    // Each combination's command differs, so each gets its own cache key.
    let inputs = BTreeMap::from([("model".to_owned(), "sha256:1111".to_owned())]);
    let keys: Vec<String> = bench
        .iter()
        .map(|s| {
            cache_key(&CacheKeyMaterial {
                image_digest: "sha256:0f3c",
                command: &s.command,
                env: &s.env,
                params: &params,
                inputs: &inputs,
                outputs: &s.outputs,
                component_version: None,
                resources_network: s.network,
            })
        })
        .collect();
    assert_ne!(keys[0], keys[1]);

    let json = serde_json::to_string(&plan).unwrap();
    let back: gantry_spec::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
}

#[test]
fn a_broken_sweep_reports_every_problem_with_its_location() {
    let broken = SWEEP
        .replace(
            "max_depth: [2, \"${params.deep}\"]",
            "max_depth: [2, 2, \"${params.depp}\"]",
        )
        .replace("\"${matrix.threads}\"", "\"${matrix.thread}\"")
        .replace(
            "https://data.example.com/breast_cancer.csv",
            "s3://data/breast_cancer.csv",
        );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let err = load(&file).unwrap_err();
    let label = file.display().to_string();
    let located: Vec<String> = err
        .diagnostics
        .iter()
        .map(|d| {
            assert!(d.hint.is_some(), "{d}");
            format!("{}: {}", d.location.as_ref().unwrap(), d.message)
        })
        .collect();
    assert_eq!(located.len(), 4, "{located:#?}");
    assert!(
        located[0].starts_with(&format!("{label}:7:21: bad `source` of step 'ingest'")),
        "{located:#?}"
    );
    assert!(
        located[1].starts_with(&format!("{label}:20:22: duplicate value '2'")),
        "{located:#?}"
    );
    assert!(
        located[2].starts_with(&format!("{label}:20:25: unknown param 'depp'")),
        "{located:#?}"
    );
    assert!(
        located[3].starts_with(&format!("{label}:30:33: unknown matrix key 'thread'")),
        "{located:#?}"
    );
}
