//! Built-in models trained by gantry-ml serve exactly what `Model::predict` computes, over
//! tensors and over the rows form; the observer sees every request.

use std::sync::{Arc, Mutex};

use gantry_ml::datasets;
use gantry_serve::{InferenceEvent, InferenceObserver};
use serde_json::{Value, json};

use crate::support::{TestServer, csv_rows, diabetes, iris, matrix_request, output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iris_classification_matches_the_model_on_every_row() {
    let trained = iris();
    let model = trained.model();
    let s = TestServer::start(vec![trained.load("iris", "3")]).await;
    let (rows, labels) = csv_rows(&datasets::iris_csv(), "species");
    let expected = model.predict(&rows).unwrap();

    let response = s.ok("/v2/models/iris/infer", &matrix_request(&rows)).await;
    let predict = output(&response, "predict")["data"]
        .as_array()
        .unwrap()
        .clone();
    let probs = output(&response, "probabilities")["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(predict.len(), 150);
    let mut correct = 0;
    for (i, p) in expected.iter().enumerate() {
        assert_eq!(predict[i], p.value, "row {i}");
        let row: Vec<f64> = probs[i * 3..i * 3 + 3]
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(&row, p.probabilities.as_ref().unwrap(), "row {i}");
        assert!(
            (row.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "row {i}: {row:?}"
        );
        if predict[i] == labels[i] {
            correct += 1;
        }
    }
    assert!(
        correct >= 140,
        "a logistic iris model is right on most rows: {correct}/150"
    );

    // The rows form gives the same predictions, with probabilities by class.
    let body = json!({"id": "rows-1", "rows": rows[..20]});
    let answer = s.ok("/v2/models/iris/predict", &body).await;
    assert_eq!(answer["id"], "rows-1");
    assert_eq!(answer["model_name"], "iris");
    assert_eq!(answer["model_version"], "3");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 20);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p["value"], expected[i].value);
        let by_class = p["probabilities"].as_object().unwrap();
        let keys: Vec<&str> = by_class.keys().map(String::as_str).collect();
        assert_eq!(keys, ["setosa", "versicolor", "virginica"]);
        let values: Vec<f64> = by_class.values().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(&values, expected[i].probabilities.as_ref().unwrap());
    }
    let versioned = s
        .ok(
            "/v2/models/iris/versions/3/predict",
            &json!({"rows": [{"petal_length": 6.0, "petal_width": 2.3}]}),
        )
        .await;
    assert_eq!(versioned["predictions"][0]["value"], "virginica");
    assert_eq!(versioned["id"].as_str().unwrap().len(), 36);
    let (status, body) = s
        .post(
            "/v2/models/iris/predict",
            &json!({"rows": [{"sepal_length": "long"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("column `sepal_length`"),
        "{body}"
    );
    // A misspelt column is refused, not silently imputed.
    let (status, body) = s
        .post(
            "/v2/models/iris/predict",
            &json!({"rows": [{"petal_length": 6.0}, {"petal_lenght": 6.0}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("rows[1]: \"petal_lenght\""),
        "{body}"
    );
    let (status, body) = s
        .post("/v2/models/iris/predict", &json!({"rows": [1]}))
        .await;
    assert_eq!(status, 400, "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diabetes_regression_serves_fp64_values() {
    let trained = diabetes();
    let model = trained.model();
    let s = TestServer::start(vec![trained.load("diabetes", "1")]).await;
    let (meta_status, meta) = s.get("/v2/models/diabetes").await;
    assert_eq!(meta_status, 200);
    assert_eq!(
        meta["outputs"],
        json!([{"name": "predict", "datatype": "FP64", "shape": [-1]}])
    );
    assert_eq!(meta["parameters"]["task"], "regression");
    assert!(meta["parameters"].get("classes").is_none());
    let columns: Vec<String> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        columns,
        [
            "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"
        ]
    );

    let (rows, _) = csv_rows(&datasets::diabetes_csv(), "progression");
    let sample = &rows[..32];
    let expected = model.predict(sample).unwrap();
    let data: Vec<Vec<Value>> = sample
        .iter()
        .map(|r| columns.iter().map(|c| r[c].clone()).collect())
        .collect();
    let response = s
        .ok(
            "/v2/models/diabetes/infer",
            &json!({"inputs": [{"name": "x", "shape": [32, 10], "datatype": "FP64", "data": data}]}),
        )
        .await;
    assert_eq!(response["outputs"].as_array().unwrap().len(), 1);
    let predict = output(&response, "predict");
    assert_eq!(predict["datatype"], "FP64");
    let values: Vec<Value> = expected.iter().map(|p| p.value.clone()).collect();
    assert_eq!(predict["data"], Value::Array(values.clone()));

    let answer = s
        .ok("/v2/models/diabetes/predict", &json!({"rows": sample}))
        .await;
    let rows_values: Vec<Value> = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p.get("probabilities").is_none(), "{p}");
            p["value"].clone()
        })
        .collect();
    assert_eq!(rows_values, values);
    s.stop().await;
}

#[derive(Default)]
struct Recorder(Mutex<Vec<InferenceEvent>>);

impl InferenceObserver for Recorder {
    fn observe(&self, event: InferenceEvent) {
        self.0.lock().unwrap().push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_decoded_rows_predictions_and_errors() {
    let trained = iris();
    let recorder = Arc::new(Recorder::default());
    let s = TestServer::start_with(
        vec![trained.load("iris", "1")],
        Some(recorder.clone() as Arc<dyn InferenceObserver>),
    )
    .await;
    let (rows, _) = csv_rows(&datasets::iris_csv(), "species");
    let response = s
        .ok("/v2/models/iris/infer", &matrix_request(&rows[..2]))
        .await;
    s.ok(
        "/v2/models/iris/predict",
        &json!({"id": "p-1", "rows": rows[100..101]}),
    )
    .await;
    s.error(
        "/v2/models/iris/infer",
        &json!({"id": "bad-1", "inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": []}]}),
        400,
    )
    .await;

    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events.len(), 3);
    let infer = &events[0];
    assert_eq!(infer.id, response["id"].as_str().unwrap());
    assert_eq!(
        (infer.model.as_str(), infer.version.as_str()),
        ("iris", "1")
    );
    assert_eq!(infer.rows, rows[..2].to_vec());
    assert_eq!(infer.predictions, vec![json!("setosa"), json!("setosa")]);
    assert!(infer.error.is_none());
    assert!(infer.timestamp_ms > 1_600_000_000_000);
    assert!(infer.latency.as_nanos() > 0);

    assert_eq!(events[1].id, "p-1");
    assert_eq!(events[1].rows, rows[100..101].to_vec());
    assert_eq!(events[1].predictions, vec![json!("virginica")]);

    assert_eq!(events[2].id, "bad-1");
    assert!(events[2].rows.is_empty());
    assert!(events[2].predictions.is_empty());
    assert_eq!(
        events[2].error.as_deref(),
        Some("input \"sepal_length\": shape [1] needs 1 elements, got 0")
    );
    s.stop().await;
}
