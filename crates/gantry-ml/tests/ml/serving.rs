//! A model artifact serves raw rows exactly as evaluate scored them.

use std::collections::BTreeMap;

use gantry_ml::dataset;
use gantry_ml::datasets;
use gantry_ml::model::Model;
use serde_json::{Value, json};

use crate::support::{ingest, run};

fn rows_of(ds: &dataset::Dataset, skip: &str) -> Vec<BTreeMap<String, Value>> {
    (0..ds.rows())
        .map(|i| {
            ds.columns
                .iter()
                .filter(|c| c.name != skip)
                .map(|c| (c.name.clone(), c.json(i)))
                .collect()
        })
        .collect()
}

#[test]
fn raw_rows_predict_like_the_evaluation_with_probabilities() {
    let data = ingest(&datasets::iris_csv(), json!({}));
    let parts = run(
        "split",
        json!({"seed": 2, "stratify": "species"}),
        &[("dataset", &data.output("dataset"))],
    );
    let clean = run(
        "clean",
        json!({"label": "species", "standardize": true}),
        &[("dataset", &parts.output("train"))],
    );
    let trained = run(
        "train",
        json!({"label": "species", "algorithm": "logistic"}),
        &[
            ("train", &clean.output("dataset")),
            ("transform", &clean.output("transform")),
        ],
    );
    let model = Model::load(&trained.output("model")).unwrap();
    assert_eq!(model.classes(), ["setosa", "versicolor", "virginica"]);
    let schema: Vec<(String, String)> = model
        .input_schema()
        .into_iter()
        .map(|(n, t)| (n, t.to_string()))
        .collect();
    assert_eq!(schema[0], ("sepal_length".to_string(), "float".to_string()));
    assert_eq!(schema.len(), 4);

    let test = dataset::read(&parts.output("test")).unwrap();
    let predictions = model.predict(&rows_of(&test, "species")).unwrap();
    let truth = test.column("species").unwrap();
    let correct = predictions
        .iter()
        .enumerate()
        .filter(|(i, p)| p.value == truth.json(*i))
        .count();
    let report = run(
        "evaluate",
        json!({}),
        &[
            ("model", &trained.output("model")),
            ("test", &parts.output("test")),
        ],
    );
    assert_eq!(
        correct as f64 / test.rows() as f64,
        report.metric("accuracy")
    );
    for p in &predictions {
        let probs = p.probabilities.as_ref().unwrap();
        assert_eq!(probs.len(), 3);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    // The numeric fast path (row-major numbers in schema order, NaN = missing) answers
    // exactly like the rows, imputation included.
    let rows = rows_of(&test, "species");
    let mut numbers: Vec<f64> = rows
        .iter()
        .flat_map(|r| schema.iter().map(|(n, _)| r[n].as_f64().unwrap()))
        .collect();
    assert_eq!(model.predict_numeric(&numbers).unwrap(), predictions);
    numbers[1] = f64::NAN;
    let mut with_missing = rows.clone();
    with_missing[0].remove("sepal_width");
    assert_eq!(
        model.predict_numeric(&numbers).unwrap(),
        model.predict(&with_missing).unwrap()
    );
    assert!(
        model.predict_numeric(&numbers[..5]).is_err(),
        "5 values are not rows of 4"
    );

    // Strings for numbers, missing values and extra keys are fine; a bad value is not.
    let odd: Vec<BTreeMap<String, Value>> = vec![
        serde_json::from_value(json!({"sepal_length": "5.1", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "extra": 1})).unwrap(),
        serde_json::from_value(json!({"petal_length": 6.0, "petal_width": 2.3})).unwrap(),
    ];
    let p = model.predict(&odd).unwrap();
    assert_eq!(p[0].value, json!("setosa"));
    assert_eq!(p[1].value, json!("virginica"));
    let err = model
        .predict(&[serde_json::from_value(json!({"sepal_length": "long"})).unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 0, column `sepal_length`"), "{err}");
}

#[test]
fn typed_labels_and_regression_values_come_back_typed() {
    let mut csv = String::from("x,color,label\n");
    for i in 0..80 {
        csv.push_str(&format!(
            "{i},{},{}\n",
            ["red", "blue"][i % 2],
            usize::from(i >= 40)
        ));
    }
    let data = ingest(&csv, json!({}));
    let trained = run(
        "train",
        json!({"label": "label", "algorithm": "decision_tree"}),
        &[("train", &data.output("dataset"))],
    );
    let model = Model::load(&trained.output("model")).unwrap();
    assert_eq!(
        model.task,
        gantry_ml::model::Task::Classification,
        "an int label with 2 values"
    );
    let rows: Vec<BTreeMap<String, Value>> = vec![
        serde_json::from_value(json!({"x": 70, "color": "green"})).unwrap(),
        serde_json::from_value(json!({"x": 3, "color": null})).unwrap(),
    ];
    let p = model.predict(&rows).unwrap();
    assert_eq!(p[0].value, json!(1));
    assert_eq!(p[1].value, json!(0));

    let diabetes = ingest(&datasets::diabetes_csv(), json!({}));
    let trained = run(
        "train",
        json!({"label": "progression", "algorithm": "ridge"}),
        &[("train", &diabetes.output("dataset"))],
    );
    let model = Model::load(&trained.output("model")).unwrap();
    let p = model.predict(&[BTreeMap::new()]).unwrap();
    assert!(
        p[0].value.as_f64().unwrap() > 100.0,
        "an all-missing row predicts near the mean"
    );
    assert!(p[0].probabilities.is_none());
}
