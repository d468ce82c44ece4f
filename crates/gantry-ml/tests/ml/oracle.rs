//! Our algorithms against a well-kept reference, smartcore 0.7, on the same
//! train/test splits of the bundled datasets and on exactly the features our
//! model sees (its preprocessing applied to the raw rows).
//!
//! Convex problems (least squares, ridge, L2 logistic regression) have one
//! optimum, so coefficients and predictions must agree closely. Trees and
//! forests break ties and draw random numbers differently, so there the test
//! accuracy / R² must be within a few points of smartcore's and the
//! predictions must mostly agree.

use std::collections::BTreeMap;

use gantry_ml::dataset::{self, Dataset};
use gantry_ml::datasets;
use gantry_ml::model::Model;
use gantry_ml::transform;
use serde_json::{Value, json};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};

use crate::support::{Step, ingest, run};

/// One dataset split by our `split` component, with the raw rows of each part.
struct Problem {
    name: &'static str,
    label: &'static str,
    parts: Step,
    train: Dataset,
    test: Dataset,
}

impl Problem {
    fn new(name: &'static str, csv: &str, label: &'static str, stratify: bool) -> Problem {
        let data = ingest(csv, json!({}));
        let mut with = json!({"test_fraction": 0.25, "seed": 7});
        if stratify {
            with["stratify"] = json!(label);
        }
        let parts = run("split", with, &[("dataset", &data.output("dataset"))]);
        let train = dataset::read(&parts.output("train")).unwrap();
        let test = dataset::read(&parts.output("test")).unwrap();
        Problem {
            name,
            label,
            parts,
            train,
            test,
        }
    }

    /// Trains our model with `with` (label added) on the train part.
    fn ours(&self, with: Value) -> Ours {
        let mut with = with;
        with["label"] = json!(self.label);
        // No hold-out refit: the oracle compares the final model only.
        with["validation_fraction"] = json!(0);
        let step = run("train", with, &[("train", &self.parts.output("train"))]);
        let model = Model::load(&step.output("model")).unwrap();
        let x_train = features(&model, &self.train, self.label);
        let x_test = features(&model, &self.test, self.label);
        let predictions = model.predict(&rows_of(&self.test, self.label)).unwrap();
        Ours {
            estimator:
                serde_json::from_slice::<Value>(&model.to_bytes().unwrap()).unwrap()["estimator"]
                    .clone(),
            probabilities: predictions
                .iter()
                .filter_map(|p| p.probabilities.clone())
                .collect(),
            predictions: predictions.into_iter().map(|p| p.value).collect(),
            classes: model.classes().to_vec(),
            x_train,
            x_test,
        }
    }

    /// Class indices (in our model's class order) of a part's labels.
    fn class_indices(&self, ds: &Dataset, classes: &[String]) -> Vec<u32> {
        let label = ds.column(self.label).unwrap();
        (0..ds.rows())
            .map(|i| {
                let text = label.text(i).unwrap();
                classes.iter().position(|c| *c == text).unwrap() as u32
            })
            .collect()
    }

    fn values(&self, ds: &Dataset) -> Vec<f64> {
        let label = ds.column(self.label).unwrap();
        (0..ds.rows()).map(|i| label.number(i).unwrap()).collect()
    }
}

struct Ours {
    /// The `estimator` object of model.json (our stable format).
    estimator: Value,
    predictions: Vec<Value>,
    probabilities: Vec<Vec<f64>>,
    classes: Vec<String>,
    x_train: DenseMatrix<f64>,
    x_test: DenseMatrix<f64>,
}

impl Ours {
    fn predicted_classes(&self) -> Vec<u32> {
        self.predictions
            .iter()
            .map(|v| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                self.classes.iter().position(|c| *c == text).unwrap() as u32
            })
            .collect()
    }

    fn predicted_values(&self) -> Vec<f64> {
        self.predictions
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    }
}

fn rows_of(ds: &Dataset, label: &str) -> Vec<BTreeMap<String, Value>> {
    (0..ds.rows())
        .map(|i| {
            ds.columns
                .iter()
                .filter(|c| c.name != label)
                .map(|c| (c.name.clone(), c.json(i)))
                .collect()
        })
        .collect()
}

/// The feature matrix our model sees: its own preprocessing of the raw rows.
fn features(model: &Model, ds: &Dataset, label: &str) -> DenseMatrix<f64> {
    let rows = transform::apply(&model.preprocessing, &rows_of(ds, label)).unwrap();
    DenseMatrix::from_2d_vec(&rows).unwrap()
}

fn accuracy(predicted: &[u32], truth: &[u32]) -> f64 {
    let right = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    right as f64 / truth.len() as f64
}

fn agreement(a: &[u32], b: &[u32]) -> f64 {
    accuracy(a, b)
}

fn r2(predicted: &[f64], truth: &[f64]) -> f64 {
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    let residual: f64 = predicted
        .iter()
        .zip(truth)
        .map(|(p, t)| (t - p).powi(2))
        .sum();
    let total: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    1.0 - residual / total
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(numbers).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn matrix_values(m: &DenseMatrix<f64>) -> Vec<f64> {
    let (rows, cols) = m.shape();
    (0..rows)
        .flat_map(|i| (0..cols).map(move |j| *m.get((i, j))))
        .collect()
}

/// Multinomial intercepts minus their mean: unpenalised, they only enter
/// through softmax, so they are defined up to a shared constant. A binary
/// model's single intercept is kept as is.
fn centred(values: &[f64]) -> Vec<f64> {
    if values.len() < 2 {
        return values.to_vec();
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| v - mean).collect()
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn report(
    problem: &Problem,
    algorithm: &str,
    metric: &str,
    ours: f64,
    reference: f64,
    extra: &str,
) {
    println!(
        "oracle {:<13} {:<17} {metric} ours {ours:.4} smartcore {reference:.4} {extra}",
        problem.name, algorithm
    );
}

/// Classification: ours is within `slack` of smartcore's accuracy (and above `floor`).
fn assert_close_accuracy(
    problem: &Problem,
    algorithm: &str,
    ours: f64,
    reference: f64,
    slack: f64,
    floor: f64,
) {
    assert!(
        ours >= reference - slack && ours >= floor,
        "{} {algorithm}: our test accuracy {ours:.4} vs smartcore {reference:.4}",
        problem.name
    );
}

fn logistic(problem: &Problem) {
    let ours = problem.ours(json!({"algorithm": "logistic", "C": 1.0, "max_iter": 1000}));
    let y_train = problem.class_indices(&problem.train, &ours.classes);
    let y_test = problem.class_indices(&problem.test, &ours.classes);
    // Ours minimises mean log loss + ‖W‖²/(2·C·n); smartcore the summed log
    // loss + alpha/2·‖W‖²: the same optimum for alpha = 1/C.
    let reference = LogisticRegression::fit(
        &ours.x_train,
        &y_train,
        LogisticRegressionParameters::default().with_alpha(1.0),
    )
    .unwrap();
    let predicted = reference.predict(&ours.x_test).unwrap();

    let weights = numbers(&ours.estimator["weights"]);
    let intercepts = numbers(&ours.estimator["intercepts"]);
    let (ref_weights, ref_intercepts) = (
        matrix_values(reference.coefficients()),
        matrix_values(reference.intercept()),
    );
    let scale = ref_weights.iter().fold(1.0f64, |m, w| m.max(w.abs()));
    let dw = max_abs_diff(&weights, &ref_weights) / scale;
    let db = max_abs_diff(&centred(&intercepts), &centred(&ref_intercepts)) / scale;
    // Probabilities from smartcore's coefficients, for the classes our model orders the same way.
    let (d, k) = (ours.x_test.shape().1, ref_intercepts.len());
    let ref_probabilities: Vec<Vec<f64>> = (0..ours.x_test.shape().0)
        .map(|i| {
            let z: Vec<f64> = (0..k)
                .map(|c| {
                    (0..d)
                        .map(|j| ref_weights[c * d + j] * *ours.x_test.get((i, j)))
                        .sum::<f64>()
                        + ref_intercepts[c]
                })
                .collect();
            if k == 1 {
                let p = 1.0 / (1.0 + (-z[0]).exp());
                vec![1.0 - p, p]
            } else {
                softmax(&z)
            }
        })
        .collect();
    let dp = max_abs_diff(&ours.probabilities.concat(), &ref_probabilities.concat());
    let (a_ours, a_ref) = (
        accuracy(&ours.predicted_classes(), &y_test),
        accuracy(&predicted, &y_test),
    );
    report(
        problem,
        "logistic",
        "accuracy",
        a_ours,
        a_ref,
        &format!("| max Δweight {dw:.1e} (relative), Δintercept {db:.1e}, Δprobability {dp:.1e}"),
    );
    assert!(
        dw < 1e-3 && db < 1e-3,
        "{} logistic coefficients differ: weights {dw:.2e}, intercepts {db:.2e}\nours {weights:?} {intercepts:?}\nsmartcore {ref_weights:?} {ref_intercepts:?}",
        problem.name
    );
    assert!(
        dp < 1e-3,
        "{} logistic probabilities differ by {dp:.2e}",
        problem.name
    );
    assert!(
        agreement(&ours.predicted_classes(), &predicted) >= 0.99,
        "{} logistic: predictions disagree",
        problem.name
    );
    assert_close_accuracy(problem, "logistic", a_ours, a_ref, 0.01, 0.9);
}

fn decision_tree(problem: &Problem, depth: u16) {
    let ours = problem.ours(json!({"algorithm": "decision_tree", "max_depth": depth}));
    let y_train = problem.class_indices(&problem.train, &ours.classes);
    let y_test = problem.class_indices(&problem.test, &ours.classes);
    // smartcore counts the root as level 1 and splits while level < max_depth,
    // so its max_depth d grows trees of depth d - 1 (ours follows scikit-learn:
    // the root is at depth 0); its `depth()` counts levels too.
    let reference = DecisionTreeClassifier::fit(
        &ours.x_train,
        &y_train,
        DecisionTreeClassifierParameters::default()
            .with_max_depth(depth + 1)
            .with_min_samples_split(2)
            .with_min_samples_leaf(1),
    )
    .unwrap();
    assert!(
        reference.depth() <= depth + 1,
        "smartcore depth {}",
        reference.depth()
    );
    let predicted = reference.predict(&ours.x_test).unwrap();
    let (a_ours, a_ref) = (
        accuracy(&ours.predicted_classes(), &y_test),
        accuracy(&predicted, &y_test),
    );
    let agree = agreement(&ours.predicted_classes(), &predicted);
    report(
        problem,
        &format!("decision_tree d={depth}"),
        "accuracy",
        a_ours,
        a_ref,
        &format!("| predictions agree {:.1}%", agree * 100.0),
    );
    assert!(
        agree >= 0.9,
        "{} decision tree: only {agree:.3} of predictions agree",
        problem.name
    );
    assert_close_accuracy(problem, "decision_tree", a_ours, a_ref, 0.04, 0.85);
}

fn random_forest(problem: &Problem) {
    let ours = problem.ours(json!({"algorithm": "random_forest", "n_trees": 100, "seed": 1}));
    let y_train = problem.class_indices(&problem.train, &ours.classes);
    let y_test = problem.class_indices(&problem.test, &ours.classes);
    // Both default to sqrt(features) per split.
    let reference = RandomForestClassifier::fit(
        &ours.x_train,
        &y_train,
        RandomForestClassifierParameters::default()
            .with_n_trees(100)
            .with_seed(1),
    )
    .unwrap();
    let predicted = reference.predict(&ours.x_test).unwrap();
    let (a_ours, a_ref) = (
        accuracy(&ours.predicted_classes(), &y_test),
        accuracy(&predicted, &y_test),
    );
    let agree = agreement(&ours.predicted_classes(), &predicted);
    report(
        problem,
        "random_forest",
        "accuracy",
        a_ours,
        a_ref,
        &format!("| predictions agree {:.1}%", agree * 100.0),
    );
    assert!(
        agree >= 0.93,
        "{} random forest: only {agree:.3} of predictions agree",
        problem.name
    );
    assert_close_accuracy(problem, "random_forest", a_ours, a_ref, 0.03, 0.9);
}

#[test]
fn iris_classifiers_match_smartcore() {
    let iris = Problem::new("iris", &datasets::iris_csv(), "species", true);
    logistic(&iris);
    decision_tree(&iris, 3);
    random_forest(&iris);
}

#[test]
fn breast_cancer_classifiers_match_smartcore() {
    let cancer = Problem::new(
        "breast_cancer",
        &datasets::breast_cancer_csv(),
        "diagnosis",
        true,
    );
    logistic(&cancer);
    decision_tree(&cancer, 4);
    random_forest(&cancer);
}

#[test]
fn diabetes_regressors_match_smartcore() {
    let diabetes = Problem::new("diabetes", &datasets::diabetes_csv(), "progression", false);
    let y_train = diabetes.values(&diabetes.train);
    let y_test = diabetes.values(&diabetes.test);
    let spread = {
        let mean = y_test.iter().sum::<f64>() / y_test.len() as f64;
        (y_test.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / y_test.len() as f64).sqrt()
    };

    // Least squares: one solution; smartcore solves it by SVD, we by Cholesky.
    let ours = diabetes.ours(json!({"algorithm": "linear"}));
    let reference = LinearRegression::fit(
        &ours.x_train,
        &y_train,
        LinearRegressionParameters::default(),
    )
    .unwrap();
    let predicted = reference.predict(&ours.x_test).unwrap();
    let dy = max_abs_diff(&ours.predicted_values(), &predicted);
    let dw = max_abs_diff(
        &numbers(&ours.estimator["coefficients"]),
        &matrix_values(reference.coefficients()),
    );
    let (r_ours, r_ref) = (
        r2(&ours.predicted_values(), &y_test),
        r2(&predicted, &y_test),
    );
    report(
        &diabetes,
        "linear",
        "R²",
        r_ours,
        r_ref,
        &format!("| max Δprediction {dy:.1e}, Δcoefficient {dw:.1e} (label sd {spread:.1})"),
    );
    assert!(
        dy < 1e-6 * spread && dw < 1e-6 * spread,
        "linear: predictions differ by {dy:.2e}, coefficients by {dw:.2e}"
    );
    assert!((r_ours - r_ref).abs() < 1e-9);

    // Ridge, alpha 1, intercept not penalised. Our features are standardized
    // (population sd) on the train part; smartcore's `normalize` standardizes
    // the same way and penalises the standardized coefficients: the same problem.
    let ours = diabetes.ours(json!({"algorithm": "ridge", "alpha": 1.0}));
    let reference = RidgeRegression::fit(
        &ours.x_train,
        &y_train,
        RidgeRegressionParameters::default()
            .with_alpha(1.0)
            .with_normalize(true),
    )
    .unwrap();
    let predicted = reference.predict(&ours.x_test).unwrap();
    let dy = max_abs_diff(&ours.predicted_values(), &predicted);
    let dw = max_abs_diff(
        &numbers(&ours.estimator["coefficients"]),
        &matrix_values(reference.coefficients()),
    );
    let (r_ours, r_ref) = (
        r2(&ours.predicted_values(), &y_test),
        r2(&predicted, &y_test),
    );
    report(
        &diabetes,
        "ridge alpha=1",
        "R²",
        r_ours,
        r_ref,
        &format!("| max Δprediction {dy:.1e}, Δcoefficient {dw:.1e}"),
    );
    assert!(
        dy < 1e-6 * spread && dw < 1e-6 * spread,
        "ridge: predictions differ by {dy:.2e}, coefficients by {dw:.2e}"
    );
    assert!(r_ours > 0.35, "{r_ours}");

    let depth = 4;
    let ours = diabetes.ours(json!({"algorithm": "decision_tree", "max_depth": depth}));
    let reference = DecisionTreeRegressor::fit(
        &ours.x_train,
        &y_train,
        DecisionTreeRegressorParameters {
            max_depth: Some(depth + 1),
            min_samples_leaf: 1,
            min_samples_split: 2,
            seed: None,
        },
    )
    .unwrap();
    let predicted = reference.predict(&ours.x_test).unwrap();
    let same = ours
        .predicted_values()
        .iter()
        .zip(&predicted)
        .filter(|(a, b)| (*a - *b).abs() <= 1e-9 * spread)
        .count() as f64
        / predicted.len() as f64;
    let (r_ours, r_ref) = (
        r2(&ours.predicted_values(), &y_test),
        r2(&predicted, &y_test),
    );
    report(
        &diabetes,
        &format!("decision_tree d={depth}"),
        "R²",
        r_ours,
        r_ref,
        &format!("| same prediction for {:.1}%", same * 100.0),
    );
    // Same criterion, same midpoint thresholds: only tie-breaking may differ.
    assert!(
        same >= 0.9,
        "decision tree: only {same:.3} of predictions agree"
    );
    assert!(
        r_ours >= r_ref - 0.05,
        "decision tree R²: ours {r_ours:.4}, smartcore {r_ref:.4}"
    );

    let features = ours.x_train.shape().1;
    let ours = diabetes.ours(json!({"algorithm": "random_forest", "n_trees": 100, "seed": 1}));
    // Our regression forests try every feature per split by default.
    let reference = RandomForestRegressor::fit(
        &ours.x_train,
        &y_train,
        RandomForestRegressorParameters {
            max_depth: None,
            min_samples_leaf: 1,
            min_samples_split: 2,
            n_trees: 100,
            m: Some(features),
            keep_samples: false,
            seed: 1,
        },
    )
    .unwrap();
    let predicted = reference.predict(&ours.x_test).unwrap();
    let (r_ours, r_ref) = (
        r2(&ours.predicted_values(), &y_test),
        r2(&predicted, &y_test),
    );
    report(&diabetes, "random_forest", "R²", r_ours, r_ref, "");
    assert!(
        r_ours >= r_ref - 0.03 && r_ours > 0.25,
        "random forest R²: ours {r_ours:.4}, smartcore {r_ref:.4}"
    );
}
