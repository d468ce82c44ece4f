//! gantry's model server: the KServe Open Inference Protocol v2 over HTTP/REST, for
//! built-in models (`gantry_ml` artifacts, platform `gantry`) and ONNX models (run by
//! tract, platform `onnx`).
//!
//! ```text
//! load(flavor, path, name, version) ─> LoadedModel ─┐
//!                                                   ├─> ModelSet ─> ServeState ─> router() / serve()
//! load(…)                            ─> LoadedModel ─┘                  └─ optional InferenceObserver
//! ```
//!
//! # Endpoints
//!
//! | verb | path | answer |
//! |---|---|---|
//! | GET | `/v2` | server metadata `{name, version, extensions}` |
//! | GET | `/v2/health/live`, `/v2/health/ready` | 200, empty body |
//! | GET | `/v2/models/{name}[/versions/{v}]` | model metadata `{name, versions, platform, inputs, outputs, parameters}` |
//! | GET | `/v2/models/{name}[/versions/{v}]/ready` | 200, empty body (404 if not served) |
//! | POST | `/v2/models/{name}[/versions/{v}]/infer` | inference request → inference response |
//! | POST | `/v2/models/{name}[/versions/{v}]/predict` | the rows form (below) |
//! | GET | `/metrics` | Prometheus metrics (OpenMetrics text) |
//!
//! Without `/versions/{v}` a model's highest version answers (numeric versions compare as
//! numbers). Every error is `{"error": "..."}` with status 400 (bad request, bad JSON),
//! 404 (unknown model, version or path), 413 (body over 64 MiB) or 500. A response always
//! has an `id`: the request's, or a fresh UUID-like one (the prediction-log key).
//! Tensor `data` may be flat or nested (row-major); responses are flat.
//!
//! # Built-in models
//!
//! A model trained by `builtin/train` takes raw columns, in either form:
//!
//! - one input per column, named like it, shape `[N]` or `[N,1]` (BYTES for categorical
//!   and text columns, numbers or booleans otherwise); a column left out is imputed like
//!   in training, but at least one must be sent;
//! - a single `[N,F]` tensor, `F` the number of columns, in the order of the metadata's
//!   `inputs` (only when every column is numeric or boolean).
//!
//! Outputs: `predict` (`[N]`: the class, typed like the label — BYTES, INT64 or BOOL — or
//! the FP64 regression value) and, for classifiers, `probabilities` (`[N,C]` FP64, with
//! `parameters.classes` naming the columns; model metadata lists the classes too).
//!
//! ```text
//! POST /v2/models/iris/infer
//! {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2]]}]}
//! → {"model_name": "iris", "model_version": "1", "id": "…",
//!    "outputs": [{"name": "predict", "shape": [1], "datatype": "BYTES", "data": ["setosa"]},
//!                {"name": "probabilities", "shape": [1, 3], "datatype": "FP64",
//!                 "parameters": {"classes": ["setosa", "versicolor", "virginica"]},
//!                 "data": [0.97, 0.02, 0.01]}]}
//! ```
//!
//! # The rows form
//!
//! For models with a column schema (built-in models; ONNX models answer 400), rows of raw
//! values can be sent as JSON objects instead of tensors:
//!
//! ```text
//! POST /v2/models/iris/predict            (or /v2/models/iris/versions/1/predict)
//! {"id": "req-7", "rows": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}
//! → {"id": "req-7", "model_name": "iris", "model_version": "1",
//!    "predictions": [{"value": "setosa",
//!                     "probabilities": {"setosa": 0.97, "versicolor": 0.02, "virginica": 0.01}}]}
//! ```
//!
//! `id` is optional (a fresh one is returned without it); missing or `null` values are
//! imputed; unknown keys are ignored; regression predictions have no `probabilities`.
//!
//! # ONNX models
//!
//! Inputs and outputs are the graph's, with a variable batch dimension shown as `-1`.
//! JSON numbers are converted to each input's element type. Export scikit-learn
//! classifiers with skl2onnx's `zipmap` disabled: sequences of maps are not supported.
//!
//! # Metrics
//!
//! `gantry_model_requests_total{model,version,protocol="infer|predict",code}`,
//! `gantry_model_request_duration_seconds{model,version}` (histogram, 100 µs to 10 s),
//! `gantry_model_rows_total{model,version}`, `gantry_model_errors_total{model,version,kind}`
//! (`kind`: `bad_request`, `too_large`, `internal`). Requests for unknown models are not
//! counted (their names would be unbounded label values). `/metrics` answers OpenMetrics
//! to clients that accept `application/openmetrics-text` (Prometheus does) and the
//! Prometheus text format 0.0.4 otherwise (what `promtool check metrics` reads).

pub mod binary;
mod builtin;
mod error;
pub mod grpc;
mod json_request;
mod metrics;
mod model_set;
mod observer;
pub mod oip;
mod onnx;
mod predictor;
mod rows;
mod server;

pub use builtin::BuiltinPredictor;
pub use error::ServeError;
pub use metrics::{Protocol, exposition, prometheus_text};
pub use model_set::{
    Flavor, LoadedModel, ModelSet, RowsRequest, RowsResponse, load, new_request_id,
};
pub use observer::{InferenceEvent, InferenceObserver};
pub use oip::{InferenceRequest, InferenceResponse};
pub use onnx::OnnxPredictor;
pub use predictor::{Predictor, PredictorMetadata, RowPrediction};
pub use rows::{
    Row, RowColumns, column_datatype, request_columns, request_rows, response_predictions,
    tensor_columns, tensor_rows,
};
pub use server::{BODY_LIMIT, ServeState, router, serve, serve_grpc};
