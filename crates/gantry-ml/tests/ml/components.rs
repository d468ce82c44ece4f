//! The registry, option checking, the step layout and the generated docs.

use std::fs;

use gantry_ml::{component, components, components_markdown, run_in_step_dir, validate_with};
use serde_json::json;

#[test]
fn every_component_is_registered_with_its_contract() {
    let names: Vec<&str> = components().iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "csv-ingest",
            "profile",
            "clean",
            "validate",
            "drift",
            "split",
            "train",
            "evaluate",
            "select-best",
            "register",
            "deploy"
        ]
    );
    assert_eq!(
        component("register").unwrap().optional_inputs,
        ["report", "profile"]
    );
    let train = component("builtin/train").unwrap();
    assert_eq!(train.inputs, ["train"]);
    assert_eq!(train.optional_inputs, ["transform", "validation"]);
    assert_eq!(component("split").unwrap().optional_outputs, ["validation"]);
    assert!(component("nope").is_none());
    // deploy writes the change it asks for; bad values fail before anything runs.
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("out");
    gantry_ml::run_component(
        "deploy",
        &gantry_ml::ComponentIo {
            with: &json!({"deployment": "churn-prod", "model": "churn@champion", "canary": "churn@7", "weight": 20, "rules": ["accuracy < 0.8"]}),
            inputs: dir.path(),
            outputs: &outputs,
        },
    )
    .unwrap();
    let request: serde_json::Value =
        serde_json::from_slice(&fs::read(outputs.join("deployment")).unwrap()).unwrap();
    assert_eq!(request["deployment"], "churn-prod");
    assert_eq!(
        request["change"],
        json!({"model": "churn@champion", "canary": "churn@7", "weight": 20, "rules": ["accuracy < 0.8"]})
    );
    for bad in [
        json!({"deployment": "Churn Prod"}),
        json!({"deployment": "x", "weight": 100}),
        json!({"deployment": "x", "replicas": 0}),
        json!({"deployment": "x", "sample_rate": 2.0}),
    ] {
        assert!(validate_with("deploy", &bad).is_err(), "{bad}");
    }
    let err = gantry_ml::run_component(
        "nope",
        &gantry_ml::ComponentIo {
            with: &json!({}),
            inputs: std::path::Path::new("/nonexistent"),
            outputs: std::path::Path::new("/nonexistent"),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown component `nope`; the built-in components are: csv-ingest, profile"),
        "{err}"
    );
}

#[test]
fn options_are_checked_before_running() {
    let err = validate_with("split", &json!({"test_fraktion": 0.3, "seed": -1}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown option `test_fraktion`; did you mean `test_fraction`?"),
        "{err}"
    );
    assert!(err.contains("`seed` must be a integer"), "{err}");
    assert!(
        validate_with(
            "split",
            &json!({"test_fraction": "${params.test_fraction}", "seed": 7})
        )
        .is_ok()
    );
    let err = validate_with(
        "train",
        &json!({"label": "y", "algorithm": "logistic", "max_depth": 3, "n_trees": 5}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`max_depth`, `n_trees` are not used by algorithm `logistic`, whose hyperparameters are: C, max_iter"),
        "{err}"
    );
    let err = validate_with("train", &json!({"label": "y", "algorithm": "svm"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`algorithm` must be one of logistic, linear, ridge"),
        "{err}"
    );
    assert!(
        validate_with("train", &json!({"label": "y", "n_trees": 10})).is_ok(),
        "random_forest is the default"
    );
    let err = validate_with("clean", &json!({"encoding": "hash"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`encoding` must be one of onehot, ordinal"),
        "{err}"
    );
    let err = validate_with("evaluate", &json!({"x": 1}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("takes no options"), "{err}");
    let err = validate_with(
        "csv-ingest",
        &json!({"types": {"age": "number"}, "delimiter": ";;"}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`delimiter` must be a single ASCII character"),
        "{err}"
    );
    let err = validate_with(
        "register",
        &json!({"model": "m", "require": "accuracy => 0.9"}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("invalid gate `accuracy => 0.9` at character 10"),
        "{err}"
    );
    assert!(
        validate_with(
            "register",
            &json!({"model": "m", "require": "accuracy >= ${params.min}"})
        )
        .is_ok()
    );
    let err = validate_with("split", &json!([1])).unwrap_err().to_string();
    assert!(err.contains("`with:` must be a map"), "{err}");
}

#[test]
fn step_layout_reads_with_json_and_writes_metrics_json() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("inputs")).unwrap();
    fs::create_dir_all(root.path().join("outputs")).unwrap();
    fs::write(
        root.path().join("inputs/source"),
        gantry_ml::datasets::iris_csv(),
    )
    .unwrap();
    fs::write(
        root.path().join("with.json"),
        r#"{"source": "data/iris.csv"}"#,
    )
    .unwrap();
    let outcome = run_in_step_dir("csv-ingest", root.path()).unwrap();
    assert_eq!(outcome.metrics["rows"], 150.0);
    let metrics: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.path().join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["rows"], 150.0);
    assert!(root.path().join("outputs/dataset/data.jsonl").is_file());

    // A missing required input is named with a hint.
    let empty = tempfile::tempdir().unwrap();
    let err = run_in_step_dir("split", empty.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("split: missing input `dataset`"), "{err}");
}

/// docs/components.md (the one reference of the built-in components) is generated from the
/// option declarations; regenerate with
/// `GANTRY_UPDATE_DOCS=1 cargo test -p gantry-ml components_md`.
#[test]
fn components_md_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/components.md");
    let generated = components_markdown();
    if std::env::var_os("GANTRY_UPDATE_DOCS").is_some() {
        fs::write(&path, &generated).unwrap();
    }
    let on_disk = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/components.md is stale: run GANTRY_UPDATE_DOCS=1 cargo test -p gantry-ml components_md"
    );
    for c in components() {
        for o in c.options {
            assert!(
                on_disk.contains(&format!("| `{}` |", o.name)),
                "{} option {} undocumented",
                c.name,
                o.name
            );
        }
    }
}
