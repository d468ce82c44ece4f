//! The bundled datasets through whole pipelines, with quality floors that a
//! broken algorithm would miss.

use std::fs;

use gantry_ml::datasets;
use gantry_ml::model::Model;
use serde_json::json;

use crate::support::{Step, ingest, run, try_run};

fn split(dataset: &Step, stratify: Option<&str>) -> Step {
    let mut with = json!({"test_fraction": 0.2, "seed": 42});
    if let Some(col) = stratify {
        with["stratify"] = json!(col);
    }
    run("split", with, &[("dataset", &dataset.output("dataset"))])
}

fn evaluate(model: &Step, split: &Step) -> Step {
    run(
        "evaluate",
        json!({}),
        &[
            ("model", &model.output("model")),
            ("test", &split.output("test")),
        ],
    )
}

#[test]
fn breast_cancer_ingest_profile_validate_clean_split_train_evaluate_register() {
    let data = ingest(&datasets::breast_cancer_csv(), json!({}));
    assert_eq!(data.metric("rows"), 569.0);
    assert_eq!(data.metric("columns"), 31.0);

    let profile = run(
        "profile",
        json!({}),
        &[("dataset", &data.output("dataset"))],
    );
    let p = gantry_ml::profile::Profile::load(&profile.output("profile")).unwrap();
    assert_eq!(p.rows, 569);
    let radius = p.column("mean_radius").unwrap().numeric.as_ref().unwrap();
    assert!((radius.mean - 14.127).abs() < 0.01, "{}", radius.mean);
    assert_eq!(radius.histogram.counts.iter().sum::<u64>(), 569);
    let diagnosis = p.column("diagnosis").unwrap().categorical.as_ref().unwrap();
    assert_eq!(
        (diagnosis.top[0].value.as_str(), diagnosis.top[0].count),
        ("benign", 357)
    );
    assert!(
        fs::read_to_string(profile.output("summary"))
            .unwrap()
            .contains("| mean_radius | float |")
    );

    let validated = run(
        "validate",
        json!({
            "min_rows": 500,
            "required": ["diagnosis"],
            "columns": {
                "mean_radius": {"type": "float", "min": 0, "max": 50, "not_null": true},
                "diagnosis": {"allowed": ["benign", "malignant"], "max_missing": 0}
            }
        }),
        &[("dataset", &data.output("dataset"))],
    );
    assert_eq!(validated.metric("failed"), 0.0);
    assert!(validated.output("report").join("report.json").is_file());

    let clean = run(
        "clean",
        json!({"label": "diagnosis", "standardize": true}),
        &[("dataset", &data.output("dataset"))],
    );
    assert_eq!(clean.metric("features"), 30.0);
    let parts = split(&clean, Some("diagnosis"));
    assert_eq!(parts.metric("test_rows"), 114.0);

    let model = run(
        "train",
        json!({"label": "diagnosis", "algorithm": "logistic", "seed": 1}),
        &[
            ("train", &parts.output("train")),
            ("transform", &clean.output("transform")),
        ],
    );
    assert!(
        model.metric("validation.accuracy") >= 0.93,
        "{:?}",
        model.outcome.metrics
    );
    let report = evaluate(&model, &parts);
    let accuracy = report.metric("accuracy");
    assert!(
        accuracy >= 0.94,
        "logistic on breast cancer: accuracy {accuracy}"
    );
    assert!(report.metric("auc") >= 0.97, "auc {}", report.metric("auc"));
    assert!(report.metric("f1.malignant") > 0.9);
    let md = fs::read_to_string(report.output("report").join("report.md")).unwrap();
    assert!(md.contains("confusion"), "{md}");
    let json: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(report.output("report").join("report.json")).unwrap(),
    )
    .unwrap();
    let confusion = json["classification"]["confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 114);

    // Gate met: the registration describes the model and its files.
    let reg = run(
        "register",
        json!({"model": "breast-cancer", "alias": "staging", "require": "accuracy >= 0.9 and f1_macro > 0.9"}),
        &[
            ("model", &model.output("model")),
            ("report", &report.output("report")),
        ],
    );
    let registration: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(reg.output("registration")).unwrap()).unwrap();
    assert_eq!(registration["model"], "breast-cancer");
    assert_eq!(registration["alias"], "staging");
    assert_eq!(registration["metrics_source"], "report");
    assert_eq!(registration["gate"]["checks"][0]["passed"], true);
    assert_eq!(
        registration["files"]["model.json"].as_str().unwrap().len(),
        64
    );

    // Gate unmet: refused with the metric, its value and the threshold.
    let err = try_run(
        "register",
        json!({"model": "breast-cancer", "require": "accuracy >= 0.9999"}),
        &[
            ("model", &model.output("model")),
            ("report", &report.output("report")),
        ],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains(&format!(
            "accuracy is {accuracy} but the gate requires accuracy >= 0.9999"
        )),
        "{err}"
    );
    // Unknown metric: the available ones are listed.
    let err = try_run(
        "register",
        json!({"model": "breast-cancer", "require": "acc >= 0.9"}),
        &[
            ("model", &model.output("model")),
            ("report", &report.output("report")),
        ],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("`acc`") && err.contains("accuracy, auc, f1.benign"),
        "{err}"
    );
    // Without a report the gate reads the model's own validation metrics.
    let reg = run(
        "register",
        json!({"model": "bc", "require": "validation.accuracy > 0.9"}),
        &[("model", &model.output("model"))],
    );
    assert!(reg.metric("validation.accuracy") > 0.9);
}

#[test]
fn breast_cancer_other_algorithms_without_clean() {
    let data = ingest(&datasets::breast_cancer_csv(), json!({}));
    let parts = split(&data, Some("diagnosis"));
    for (algorithm, floor) in [
        ("logistic", 0.94),
        ("random_forest", 0.92),
        ("gradient_boosting", 0.92),
        ("decision_tree", 0.88),
    ] {
        let model = run(
            "train",
            json!({"label": "diagnosis", "algorithm": algorithm}),
            &[("train", &parts.output("train"))],
        );
        let accuracy = evaluate(&model, &parts).metric("accuracy");
        eprintln!("breast_cancer {algorithm}: test accuracy {accuracy:.4}");
        assert!(
            accuracy >= floor,
            "{algorithm}: accuracy {accuracy} < {floor}"
        );
    }
}

#[test]
fn iris_every_classifier_then_select_best() {
    let data = ingest(&datasets::iris_csv(), json!({}));
    let parts = split(&data, Some("species"));
    let candidates = tempfile::tempdir().unwrap();
    for (algorithm, extra) in [
        ("decision_tree", json!({"max_depth": 4})),
        ("random_forest", json!({"n_trees": 50})),
        ("logistic", json!({"C": 10})),
        ("gradient_boosting", json!({"n_estimators": 50})),
    ] {
        let mut with = json!({"label": "species", "algorithm": algorithm, "seed": 3});
        with.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let model = run("train", with, &[("train", &parts.output("train"))]);
        let report = evaluate(&model, &parts);
        let accuracy = report.metric("accuracy");
        eprintln!("iris {algorithm}: test accuracy {accuracy:.4}");
        assert!(accuracy >= 0.9, "{algorithm}: accuracy {accuracy}");
        crate::support::copy(&model.output("model"), &candidates.path().join(algorithm));
    }
    let best = run(
        "select-best",
        json!({"metric": "validation.accuracy"}),
        &[("candidates", candidates.path())],
    );
    let report: gantry_ml::SelectionReport = serde_json::from_str(
        &fs::read_to_string(best.output("report").join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report.mode, "max");
    assert_eq!(report.candidates.len(), 4);
    assert!(
        report
            .candidates
            .windows(2)
            .all(|w| w[0].value >= w[1].value)
    );
    // The winner is copied byte for byte.
    let winner = fs::read(candidates.path().join(&report.winner).join("model.json")).unwrap();
    assert_eq!(
        fs::read(best.output("model").join("model.json")).unwrap(),
        winner
    );
    assert_eq!(
        best.metric("validation.accuracy"),
        report.candidates[0].value
    );

    // min mode on log loss picks the lowest.
    let best = run(
        "select-best",
        json!({"metric": "validation.log_loss"}),
        &[("candidates", candidates.path())],
    );
    let report: gantry_ml::SelectionReport = serde_json::from_str(
        &fs::read_to_string(best.output("report").join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report.mode, "min");
    assert!(
        report
            .candidates
            .windows(2)
            .all(|w| w[0].value <= w[1].value)
    );
    // Read each candidate's log loss from its own model file, not from select-best's report:
    // the output is a byte-for-byte copy of the lowest.
    let mut by_log_loss: Vec<(f64, &str)> = [
        "decision_tree",
        "random_forest",
        "logistic",
        "gradient_boosting",
    ]
    .into_iter()
    .map(|name| {
        let m = Model::load(&candidates.path().join(name)).unwrap();
        (m.metrics["validation.log_loss"], name)
    })
    .collect();
    by_log_loss.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        by_log_loss[0].0 < by_log_loss[1].0,
        "no tie for the lowest: {by_log_loss:?}"
    );
    let lowest = by_log_loss[0].1;
    assert!(
        fs::read(best.output("model").join("model.json")).unwrap()
            == fs::read(candidates.path().join(lowest).join("model.json")).unwrap(),
        "the output is not {lowest}, the candidate with the lowest log loss: {by_log_loss:?}"
    );

    let err = try_run(
        "select-best",
        json!({"metric": "validation.nope"}),
        &[("candidates", candidates.path())],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("cannot tell whether a larger `validation.nope` is better"),
        "{err}"
    );
    let err = try_run(
        "select-best",
        json!({"metric": "validation.nope", "mode": "max"}),
        &[("candidates", candidates.path())],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("has no metric `validation.nope`; its metrics are: training.accuracy"),
        "{err}"
    );
}

#[test]
fn diabetes_regression() {
    let data = ingest(&datasets::diabetes_csv(), json!({}));
    let parts = split(&data, None);
    for (algorithm, extra, floor) in [
        ("linear", json!({}), 0.3),
        ("ridge", json!({"alpha": 1.0}), 0.3),
        (
            "gradient_boosting",
            json!({"n_estimators": 100, "learning_rate": 0.05}),
            0.25,
        ),
        (
            "random_forest",
            json!({"n_trees": 60, "min_samples_leaf": 5}),
            0.25,
        ),
    ] {
        let mut with = json!({"label": "progression", "algorithm": algorithm});
        with.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let model = run("train", with, &[("train", &parts.output("train"))]);
        let report = evaluate(&model, &parts);
        let (r2, rmse) = (report.metric("r2"), report.metric("rmse"));
        eprintln!(
            "diabetes {algorithm}: R² {r2:.4}, RMSE {rmse:.2}, MAE {:.2}",
            report.metric("mae")
        );
        assert!(r2 > floor, "{algorithm}: R² {r2}");
        // The label's standard deviation is about 77: a sane model does much better than that.
        assert!(rmse > 30.0 && rmse < 70.0, "{algorithm}: RMSE {rmse}");
        let m = Model::load(&model.output("model")).unwrap();
        assert_eq!(m.task, gantry_ml::model::Task::Regression);
        assert!(model.outcome.metrics.contains_key("validation.rmse"));
    }
    // Classification algorithms refuse a regression task, and vice versa.
    let err = try_run(
        "train",
        json!({"label": "progression", "algorithm": "logistic"}),
        &[("train", &parts.output("train"))],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("`logistic` is a classification algorithm"),
        "{err}"
    );
}
