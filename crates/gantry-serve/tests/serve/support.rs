use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_ml::{ComponentIo, datasets, run_component};
use gantry_serve::{InferenceObserver, LoadedModel, ModelSet, ServeState, serve};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A model trained by gantry-ml's real components; the directory lives as long as this.
pub struct Trained {
    pub dir: TempDir,
}

impl Trained {
    pub fn model_dir(&self) -> PathBuf {
        self.dir.path().join("train/outputs/model")
    }

    pub fn model(&self) -> gantry_ml::model::Model {
        gantry_ml::model::Model::load(&self.model_dir()).unwrap()
    }

    pub fn load(&self, name: &str, version: &str) -> LoadedModel {
        gantry_serve::load("builtin", &self.model_dir(), name, version).unwrap()
    }
}

fn run(root: &Path, step: &str, component: &str, with: Value, inputs: &[(&str, PathBuf)]) {
    let input_dir = root.join(step).join("inputs");
    let output_dir = root.join(step).join("outputs");
    fs::create_dir_all(&input_dir).unwrap();
    fs::create_dir_all(&output_dir).unwrap();
    for (name, path) in inputs {
        copy(path, &input_dir.join(name));
    }
    run_component(
        component,
        &ComponentIo {
            with: &with,
            inputs: &input_dir,
            outputs: &output_dir,
        },
    )
    .unwrap_or_else(|e| panic!("{component} failed: {e}"));
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap();
    }
}

/// csv-ingest then train, like a pipeline would.
pub fn train(csv: &str, label: &str, algorithm: &str) -> Trained {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data.csv");
    fs::write(&source, csv).unwrap();
    run(
        dir.path(),
        "ingest",
        "csv-ingest",
        json!({}),
        &[("source", source)],
    );
    let dataset = dir.path().join("ingest/outputs/dataset");
    run(
        dir.path(),
        "train",
        "train",
        json!({"label": label, "algorithm": algorithm}),
        &[("train", dataset)],
    );
    Trained { dir }
}

pub fn iris() -> Trained {
    train(&datasets::iris_csv(), "species", "logistic")
}

pub fn diabetes() -> Trained {
    train(&datasets::diabetes_csv(), "progression", "ridge")
}

/// The rows of a bundled CSV (numbers parsed), without the label column.
pub fn csv_rows(csv: &str, label: &str) -> (Vec<BTreeMap<String, Value>>, Vec<String>) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for line in lines {
        let mut row = BTreeMap::new();
        for (name, cell) in header.iter().zip(line.split(',')) {
            if *name == label {
                labels.push(cell.to_string());
            } else {
                let number: f64 = cell.parse().unwrap();
                row.insert(name.to_string(), json!(number));
            }
        }
        rows.push(row);
    }
    (rows, labels)
}

/// A real server on 127.0.0.1:0, shut down when dropped.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(models: Vec<LoadedModel>) -> TestServer {
        TestServer::start_with(models, None).await
    }

    pub async fn start_with(
        models: Vec<LoadedModel>,
        observer: Option<Arc<dyn InferenceObserver>>,
    ) -> TestServer {
        let mut set = ModelSet::new();
        for m in models {
            set.insert(m).unwrap();
        }
        let mut state = ServeState::new(set);
        if let Some(observer) = observer {
            state = state.with_observer(observer);
        }
        let state = Arc::new(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// (status, body text)
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (status, parse(&text))
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, parse(&response.text().await.unwrap()))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_bytes(path, serde_json::to_vec(body).unwrap())
            .await
    }

    /// POSTs and expects 200.
    pub async fn ok(&self, path: &str, body: &Value) -> Value {
        let (status, value) = self.post(path, body).await;
        assert_eq!(status, 200, "{path}: {value:#}");
        value
    }

    /// POSTs and expects an OIP error with `status`; returns its message.
    pub async fn error(&self, path: &str, body: &Value, status: u16) -> String {
        let (got, value) = self.post(path, body).await;
        assert_eq!(got, status, "{path}: {value:#}");
        error_text(&value)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn parse(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

/// The message of an OIP error body, which must be exactly `{"error": "..."}`.
pub fn error_text(value: &Value) -> String {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    assert_eq!(object.len(), 1, "an OIP error has only `error`: {value}");
    object["error"].as_str().unwrap().to_string()
}

/// The iris feature columns in schema order.
pub const IRIS_COLUMNS: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// An OIP request with one named FP64 input per iris column.
pub fn named_request(rows: &[BTreeMap<String, Value>]) -> Value {
    let inputs: Vec<Value> = IRIS_COLUMNS
        .iter()
        .map(|c| {
            json!({
                "name": c,
                "shape": [rows.len()],
                "datatype": "FP64",
                "data": rows.iter().map(|r| r[*c].clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "inputs": inputs })
}

/// An OIP request with a single nested [N, 4] FP64 tensor.
pub fn matrix_request(rows: &[BTreeMap<String, Value>]) -> Value {
    let data: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| IRIS_COLUMNS.iter().map(|c| r[*c].clone()).collect())
        .collect();
    json!({"inputs": [{"name": "features", "shape": [rows.len(), 4], "datatype": "FP64", "data": data}]})
}

pub fn output<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {response:#}"))
}
