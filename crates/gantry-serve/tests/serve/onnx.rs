//! ONNX models exported by skl2onnx serve what scikit-learn itself predicts.
//!
//! `GANTRY_TEST_SKLEARN_PYTHON` names a Python with scikit-learn, skl2onnx, onnx and numpy
//! (`tests/onnx/train_sklearn.py` trains and exports the models); unset, the test is skipped
//! (a failure under `GANTRY_TEST_REQUIRE_ALL`, see `testing/skip.rs`); set but unusable, it fails.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{TestServer, error_text, output};

const PYTHON_ENV: &str = "GANTRY_TEST_SKLEARN_PYTHON";

fn sklearn_python() -> Option<String> {
    let python = crate::skip::unless_env(
        PYTHON_ENV,
        "a python with scikit-learn, skl2onnx, onnx and numpy (e.g. .venv-test/bin/python) \
         to run the ONNX-vs-scikit-learn test",
    )?;
    let out = Command::new(&python)
        .args(["-c", "import sklearn, skl2onnx, onnx, numpy"])
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON_ENV}={python} is set but cannot be run: {e}"));
    assert!(
        out.status.success(),
        "{PYTHON_ENV}={python} is set but its imports fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(python)
}

fn export_models(python: &str, out: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/train_sklearn.py");
    let run = Command::new(python).arg(&script).arg(out).output().unwrap();
    assert!(
        run.status.success(),
        "{} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("expected.json")).unwrap()).unwrap()
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs().max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_models_predict_like_scikit_learn() {
    let Some(python) = sklearn_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let expected = export_models(&python, dir.path());
    let models = expected["models"].as_array().unwrap();

    let mut loaded = Vec::new();
    for m in models {
        let name = m["name"].as_str().unwrap();
        let file = dir.path().join(m["file"].as_str().unwrap());
        loaded.push(gantry_serve::load("onnx", &file, name, "1").unwrap());
    }
    // A directory with exactly one .onnx file loads too.
    let single = dir.path().join("single");
    std::fs::create_dir(&single).unwrap();
    std::fs::copy(dir.path().join("logistic.onnx"), single.join("model.onnx")).unwrap();
    loaded.push(gantry_serve::load("onnx", &single, "logistic", "2").unwrap());
    let s = TestServer::start(loaded).await;

    let (status, meta) = s.get("/v2/models/logistic/versions/1").await;
    assert_eq!(status, 200);
    assert_eq!(
        meta,
        json!({
            "name": "logistic",
            "versions": ["1", "2"],
            "platform": "onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            ],
        })
    );
    let (_, meta) = s.get("/v2/models/forest").await;
    assert_eq!(
        meta["outputs"][0],
        json!({"name": "label", "datatype": "INT64", "shape": [-1]})
    );

    for m in models {
        let name = m["name"].as_str().unwrap();
        let rows = m["rows"].as_array().unwrap();
        let width = rows[0].as_array().unwrap().len();
        let infer = format!("/v2/models/{name}/infer");
        let request = json!({"inputs": [{"name": "input", "shape": [rows.len(), width], "datatype": "FP64", "data": rows}]});
        let response = s.ok(&infer, &request).await;
        let first = &response["outputs"][0];
        assert_eq!(first["shape"][0], rows.len(), "{name}");
        let got = first["data"].as_array().unwrap();
        let want = m["label"].as_array().unwrap();
        if m["task"] == "classification" {
            assert_eq!(got, want, "{name}: labels");
            let probs = output(&response, "probabilities");
            let got: Vec<f64> = probs["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let want: Vec<f64> = m["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
                .collect();
            assert_eq!(got.len(), want.len(), "{name}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5,
                    "{name}: probability {i}: {g} vs scikit-learn {w}"
                );
            }
        } else {
            assert_eq!(first["shape"], json!([rows.len(), 1]), "{name}");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                assert!(
                    close(g, w, 1e-5),
                    "{name}: row {i}: {g} vs scikit-learn {w}"
                );
            }
        }

        // One row at a time gives the same labels as the batch (the batch dim is symbolic).
        for (i, row) in rows.iter().enumerate().step_by(37) {
            let single = json!({"inputs": [{"name": "input", "shape": [1, width], "datatype": "FP32", "data": row}]});
            let response = s.ok(&infer, &single).await;
            let label = &response["outputs"][0]["data"][0];
            if m["task"] == "classification" {
                assert_eq!(label, &want[i], "{name}: row {i}");
            } else {
                assert!(close(
                    label.as_f64().unwrap(),
                    want[i].as_f64().unwrap(),
                    1e-5
                ));
            }
        }
    }

    // Output selection, integers for a float input, and the errors ONNX adds.
    let rows = models[0]["rows"].as_array().unwrap();
    let only_probs = s
        .ok(
            "/v2/models/logistic/infer",
            &json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT64", "data": [[6, 3, 5, 2]]}],
                    "outputs": [{"name": "probabilities"}]}),
        )
        .await;
    assert_eq!(only_probs["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(only_probs["outputs"][0]["shape"], json!([1, 3]));
    let text = s
        .error(
            "/v2/models/logistic/infer",
            &json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}),
            400,
        )
        .await;
    assert_eq!(
        text,
        "input \"input\": shape [1,3] does not fit the model's [-1,4] (-1: any size)"
    );
    let text = s
        .error(
            "/v2/models/logistic/infer",
            &json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": rows[0]}]}),
            400,
        )
        .await;
    assert_eq!(
        text,
        "input \"x\" is not an input of this model; its inputs are input"
    );
    let text = s
        .error(
            "/v2/models/logistic/infer",
            &json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]}),
            400,
        )
        .await;
    assert_eq!(text, "input \"input\": the model takes FP32, got BYTES");
    let (status, body) = s
        .post(
            "/v2/models/logistic/predict",
            &json!({"rows": [{"input": 1}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_text(&body).starts_with(
        "the rows form (…/predict) needs a model with a column schema, and this onnx model has none"
    ));

    // skl2onnx's default ZipMap output is refused at load, with the export to use.
    let err = gantry_serve::load("onnx", &dir.path().join("logistic_zipmap.onnx"), "z", "1")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("export with zipmap disabled (options={id(model): {'zipmap': False}})"),
        "{err}"
    );
    let err = gantry_serve::load("onnx", dir.path(), "many", "1")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(".onnx files; pass the one to serve"), "{err}");
    s.stop().await;
}
