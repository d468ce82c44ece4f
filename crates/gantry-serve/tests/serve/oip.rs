//! Open Inference Protocol v2 conformance: every endpoint and its JSON shape, both tensor
//! forms, ids, output selection and every error shape.

use gantry_ml::datasets;
use serde_json::{Value, json};

use crate::support::{
    IRIS_COLUMNS, TestServer, csv_rows, error_text, iris, matrix_request, named_request, output,
};

const INFER: &str = "/v2/models/iris/infer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metadata_endpoints() {
    let trained = iris();
    let s = TestServer::start(vec![trained.load("iris", "1"), trained.load("iris", "2")]).await;

    for path in ["/v2", "/v2/"] {
        let (status, meta) = s.get(path).await;
        assert_eq!(status, 200);
        assert_eq!(
            meta,
            json!({"name": "gantry", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data", "predict_rows"]})
        );
    }
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/iris/ready",
        "/v2/models/iris/versions/1/ready",
    ] {
        assert_eq!(s.get_text(path).await, (200, String::new()), "{path}");
    }

    let (status, meta) = s.get("/v2/models/iris").await;
    assert_eq!(status, 200);
    let classes = json!(["setosa", "versicolor", "virginica"]);
    let column = |name: &str| json!({"name": name, "datatype": "FP64", "shape": [-1], "parameters": {"column_type": "float"}});
    assert_eq!(
        meta,
        json!({
            "name": "iris",
            "versions": ["1", "2"],
            "platform": "gantry",
            "inputs": IRIS_COLUMNS.iter().map(|c| column(c)).collect::<Vec<_>>(),
            "outputs": [
                {"name": "predict", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3], "parameters": {"classes": classes}},
            ],
            "parameters": {"task": "classification", "algorithm": "logistic", "label": "species", "classes": classes},
        })
    );
    let (status, v1) = s.get("/v2/models/iris/versions/1").await;
    assert_eq!(status, 200);
    assert_eq!(v1, meta, "both versions are the same model here");

    // Unknown model, version or path: 404 in the OIP error shape.
    for path in [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/iris/versions/9",
        "/v2/models/iris/versions/9/ready",
        "/v2/nothing/here",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        let message = error_text(&body);
        assert!(!message.is_empty(), "{path}");
    }
    let (_, body) = s.get("/v2/models/iris/versions/9").await;
    assert_eq!(
        error_text(&body),
        "model \"iris\" has no version \"9\"; its versions are: 1, 2"
    );
    let (status, body) = s.get(INFER).await;
    assert_eq!(status, 405);
    assert!(error_text(&body).contains("does not take GET"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_inputs_matrix_flat_and_nested_agree_with_the_model() {
    let trained = iris();
    let model = trained.model();
    let s = TestServer::start(vec![trained.load("iris", "1")]).await;
    let (rows, _) = csv_rows(&datasets::iris_csv(), "species");
    let sample = &rows[45..55];
    let expected = model.predict(sample).unwrap();

    let named = s.ok(INFER, &named_request(sample)).await;
    let nested = s.ok(INFER, &matrix_request(sample)).await;
    let mut flat_request = matrix_request(sample);
    let flat_data: Vec<Value> = flat_request["inputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().clone())
        .collect();
    flat_request["inputs"][0]["data"] = Value::Array(flat_data);
    let flat = s.ok(INFER, &flat_request).await;
    // A [N,1] column is a column too.
    let mut column_request = named_request(sample);
    for input in column_request["inputs"].as_array_mut().unwrap() {
        input["shape"] = json!([sample.len(), 1]);
    }
    let columns = s.ok(INFER, &column_request).await;

    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("id");
        v
    };
    assert_eq!(strip(named.clone()), strip(nested.clone()));
    assert_eq!(strip(nested.clone()), strip(flat));
    assert_eq!(strip(named.clone()), strip(columns));

    assert_eq!(named["model_name"], "iris");
    assert_eq!(named["model_version"], "1");
    let predict = output(&named, "predict");
    assert_eq!(predict["shape"], json!([10]));
    assert_eq!(predict["datatype"], "BYTES");
    let values: Vec<Value> = expected.iter().map(|p| p.value.clone()).collect();
    assert_eq!(predict["data"], Value::Array(values));
    let probabilities = output(&named, "probabilities");
    assert_eq!(probabilities["shape"], json!([10, 3]));
    assert_eq!(probabilities["datatype"], "FP64");
    assert_eq!(
        probabilities["parameters"],
        json!({"classes": ["setosa", "versicolor", "virginica"]})
    );
    let flat_probs: Vec<f64> = expected
        .iter()
        .flat_map(|p| p.probabilities.clone().unwrap())
        .collect();
    assert_eq!(probabilities["data"], json!(flat_probs));

    // Integer JSON numbers are fine for FP64, FP32 and INT64 inputs.
    let ints = json!({"inputs": [
        {"name": "sepal_length", "shape": [1], "datatype": "INT64", "data": [6]},
        {"name": "sepal_width", "shape": [1], "datatype": "FP32", "data": [3]},
        {"name": "petal_length", "shape": [1], "datatype": "FP64", "data": [5]},
    ]});
    let response = s.ok(INFER, &ints).await;
    let partial_row: std::collections::BTreeMap<String, Value> =
        serde_json::from_value(json!({"sepal_length": 6, "sepal_width": 3.0, "petal_length": 5.0}))
            .unwrap();
    assert_eq!(
        output(&response, "predict")["data"][0],
        model.predict(&[partial_row]).unwrap()[0].value,
        "missing columns are imputed by the model"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_64_equals_64_single_requests() {
    let trained = iris();
    let s = TestServer::start(vec![trained.load("iris", "1")]).await;
    let (rows, _) = csv_rows(&datasets::iris_csv(), "species");
    let batch: Vec<_> = rows.iter().step_by(2).take(64).cloned().collect();
    assert_eq!(batch.len(), 64);
    let together = s.ok(INFER, &matrix_request(&batch)).await;
    let together_predict = output(&together, "predict")["data"]
        .as_array()
        .unwrap()
        .clone();
    let together_probs = output(&together, "probabilities")["data"]
        .as_array()
        .unwrap()
        .clone();
    for (i, row) in batch.iter().enumerate() {
        let single = s.ok(INFER, &named_request(std::slice::from_ref(row))).await;
        assert_eq!(
            output(&single, "predict")["data"][0],
            together_predict[i],
            "row {i}"
        );
        assert_eq!(
            output(&single, "probabilities")["data"],
            json!(together_probs[i * 3..i * 3 + 3]),
            "row {i}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_outputs_selection_and_parameters() {
    let trained = iris();
    let s = TestServer::start(vec![trained.load("iris", "1")]).await;
    let (rows, _) = csv_rows(&datasets::iris_csv(), "species");
    let mut request = matrix_request(&rows[..2]);
    request["id"] = json!("req-42");
    request["parameters"] = json!({"content_type": "np", "custom": {"a": [1, 2]}});
    request["inputs"][0]["parameters"] = json!({"content_type": "np"});
    request["outputs"] = json!([{"name": "probabilities", "parameters": {"binary_data": false}}]);
    let response = s.ok(INFER, &request).await;
    assert_eq!(response["id"], "req-42");
    let names: Vec<&str> = response["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["probabilities"]);

    request["outputs"] = json!([{"name": "probabilities"}, {"name": "predict"}]);
    let response = s.ok(INFER, &request).await;
    assert_eq!(response["outputs"][0]["name"], "probabilities");
    assert_eq!(response["outputs"][1]["name"], "predict");

    request["outputs"] = json!([{"name": "label"}]);
    assert_eq!(
        s.error(INFER, &request, 400).await,
        "requested output \"label\" is not an output of model \"iris\"; its outputs are predict, probabilities"
    );

    // No id: a fresh one every time, UUID-shaped.
    let plain = matrix_request(&rows[..1]);
    let a = s.ok(INFER, &plain).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.ok(INFER, &plain).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(a, b);
    for id in [&a, &b] {
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    let versioned = s.ok("/v2/models/iris/versions/1/infer", &plain).await;
    assert_eq!(versioned["model_version"], "1");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_oip_errors_with_the_right_status() {
    let trained = iris();
    let s = TestServer::start(vec![trained.load("iris", "1")]).await;
    let input = |name: &str, shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]});

    assert_eq!(
        s.error(
            INFER,
            &input(
                "features",
                json!([2, 4]),
                "FP64",
                json!([1, 2, 3, 4, 5, 6, 7])
            ),
            400
        )
        .await,
        "input \"features\": shape [2,4] needs 8 elements, got 7"
    );
    assert_eq!(
        s.error(
            INFER,
            &input("features", json!([1, 3]), "FP64", json!([1, 2, 3])),
            400
        )
        .await,
        "input \"features\": a [N,F] tensor needs F = 4 (the model's columns sepal_length, sepal_width, petal_length, petal_width in this order), got shape [1,3]"
    );
    assert_eq!(
        s.error(
            INFER,
            &input("sepal_length", json!([2]), "FP32", json!([1.5, "x"])),
            400
        )
        .await,
        "input \"sepal_length\": element 1 is \"x\", which is not an FP32 number"
    );
    assert!(
        s.error(
            INFER,
            &input("sepal_length", json!([1]), "FLOAT64", json!([1.5])),
            400
        )
        .await
        .starts_with("input \"sepal_length\": unknown datatype \"FLOAT64\"; use one of BOOL,")
    );
    assert_eq!(
        s.error(
            INFER,
            &input("petal", json!([1]), "FP64", json!([1.5])),
            400
        )
        .await,
        "input \"petal\" is not a column of this model; send inputs named after its columns \
         (sepal_length, sepal_width, petal_length, petal_width), or a single [N,4] tensor of them in that order"
    );
    // A value the model cannot read, in the right datatype.
    let text = s
        .error(
            INFER,
            &input("sepal_length", json!([1]), "BYTES", json!(["long"])),
            400,
        )
        .await;
    assert!(text.contains("column `sepal_length`"), "{text}");
    assert!(
        s.error(INFER, &json!({"inputs": []}), 400)
            .await
            .starts_with("the request has no inputs; send one input per model column")
    );

    // Bodies that are not inference requests.
    let (status, body) = s.post_bytes(INFER, b"{\"inputs\": [".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        error_text(&body).starts_with("invalid request body: "),
        "{body}"
    );
    let (status, body) = s.post_bytes(INFER, b"not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        error_text(&body).contains("send an inference request like"),
        "{body}"
    );
    let text = s.error(INFER, &json!({"id": "x"}), 400).await;
    assert!(text.contains("missing field `inputs`"), "{text}");
    let text = s
        .error(
            INFER,
            &input("f", json!([1]), "FP64", json!([{"a": 1}])),
            400,
        )
        .await;
    assert!(text.contains("an array (flat or nested)"), "{text}");

    // Unknown model or version: 404.
    assert_eq!(
        s.error(
            "/v2/models/nope/infer",
            &input("f", json!([1]), "FP64", json!([1])),
            404
        )
        .await,
        "model \"nope\" is not served here; the served models are: iris"
    );
    assert_eq!(
        s.error(
            "/v2/models/iris/versions/7/infer",
            &input("f", json!([1]), "FP64", json!([1])),
            404
        )
        .await,
        "model \"iris\" has no version \"7\"; its versions are: 1"
    );

    // Over 64 MiB: 413.
    let mut big =
        b"{\"inputs\": [{\"name\": \"f\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": [\""
            .to_vec();
    big.resize(big.len() + 65 * 1024 * 1024, b'a');
    big.extend_from_slice(b"\"]}]}");
    let (status, body) = s.post_bytes(INFER, big).await;
    assert_eq!(status, 413);
    assert_eq!(
        error_text(&body),
        "the request body is larger than 64 MiB; send fewer rows per request"
    );
    s.stop().await;
}
