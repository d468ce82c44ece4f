//! The same inputs and options give byte-identical artifacts.

use gantry_ml::datasets;
use serde_json::json;

use crate::support::{Step, ingest, run, tree_bytes};

type Files = Vec<(String, Vec<u8>)>;

fn train_twice(parts: &Step, with: serde_json::Value) -> (Files, Files) {
    let a = run("train", with.clone(), &[("train", &parts.output("train"))]);
    let b = run("train", with, &[("train", &parts.output("train"))]);
    (
        tree_bytes(&a.output("model")),
        tree_bytes(&b.output("model")),
    )
}

#[test]
fn every_algorithm_trains_to_identical_bytes() {
    let iris = ingest(&datasets::iris_csv(), json!({}));
    let iris_parts = run(
        "split",
        json!({"seed": 1, "stratify": "species"}),
        &[("dataset", &iris.output("dataset"))],
    );
    for algorithm in [
        "logistic",
        "decision_tree",
        "random_forest",
        "gradient_boosting",
    ] {
        let with = json!({"label": "species", "algorithm": algorithm, "seed": 9, "subsample": if algorithm == "gradient_boosting" { json!(0.7) } else { json!(null) }});
        let (a, b) = train_twice(&iris_parts, with);
        assert!(!a.is_empty());
        assert!(a == b, "{algorithm}: two trainings differ");
    }
    let diabetes = ingest(&datasets::diabetes_csv(), json!({}));
    let parts = run(
        "split",
        json!({"seed": 1}),
        &[("dataset", &diabetes.output("dataset"))],
    );
    for algorithm in [
        "linear",
        "ridge",
        "decision_tree",
        "random_forest",
        "gradient_boosting",
    ] {
        let (a, b) = train_twice(
            &parts,
            json!({"label": "progression", "algorithm": algorithm, "seed": 4}),
        );
        assert!(a == b, "{algorithm}: two trainings differ");
    }
    // A different seed changes a randomised model.
    let a = run(
        "train",
        json!({"label": "species", "algorithm": "random_forest", "seed": 1}),
        &[("train", &iris_parts.output("train"))],
    );
    let b = run(
        "train",
        json!({"label": "species", "algorithm": "random_forest", "seed": 2}),
        &[("train", &iris_parts.output("train"))],
    );
    assert_ne!(
        tree_bytes(&a.output("model")),
        tree_bytes(&b.output("model"))
    );
}

#[test]
fn data_steps_are_deterministic_too() {
    let a = ingest(&datasets::breast_cancer_csv(), json!({}));
    let b = ingest(&datasets::breast_cancer_csv(), json!({}));
    assert_eq!(
        tree_bytes(&a.output("dataset")),
        tree_bytes(&b.output("dataset"))
    );
    let run_all = |data: &Step| {
        let clean = run(
            "clean",
            json!({"label": "diagnosis", "standardize": true}),
            &[("dataset", &data.output("dataset"))],
        );
        let parts = run(
            "split",
            json!({"seed": 3, "stratify": "diagnosis", "validation_fraction": 0.1}),
            &[("dataset", &clean.output("dataset"))],
        );
        let profile = run(
            "profile",
            json!({}),
            &[("dataset", &data.output("dataset"))],
        );
        (
            tree_bytes(&clean.dir.path().join("outputs")),
            tree_bytes(&parts.dir.path().join("outputs")),
            tree_bytes(&profile.dir.path().join("outputs")),
        )
    };
    assert!(run_all(&a) == run_all(&b));
    let other_seed = run(
        "split",
        json!({"seed": 4}),
        &[("dataset", &a.output("dataset"))],
    );
    let seed_3 = run(
        "split",
        json!({"seed": 3}),
        &[("dataset", &a.output("dataset"))],
    );
    assert_ne!(
        tree_bytes(&other_seed.output("test")),
        tree_bytes(&seed_3.output("test"))
    );
}
