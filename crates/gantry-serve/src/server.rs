//! The HTTP server: Open Inference Protocol v2 REST endpoints, the rows form and
//! `/metrics`, over a fixed set of loaded models.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::ServeError;
use crate::metrics::{Protocol, ServeMetrics};
use crate::model_set::{LoadedModel, ModelSet, RowsRequest, RowsResponse, request_id};
use crate::observer::{InferenceEvent, InferenceObserver};
use crate::oip::{ErrorResponse, InferenceRequest, InferenceResponse, ServerMetadata};
use crate::rows::response_predictions;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Requests with more tensor elements than this run on the blocking pool, so that a big
/// batch does not hold up the small requests sharing its worker thread.
const INLINE_ELEMENTS: usize = 16 * 1024;

/// What the server serves: the models, their metrics and an optional prediction observer.
pub struct ServeState {
    models: ModelSet,
    metrics: ServeMetrics,
    observer: Option<Arc<dyn InferenceObserver>>,
}

impl ServeState {
    pub fn new(models: ModelSet) -> ServeState {
        ServeState {
            metrics: ServeMetrics::new(&models),
            models,
            observer: None,
        }
    }

    /// Calls `observer` after every model request (see [`InferenceObserver`]).
    pub fn with_observer(mut self, observer: Arc<dyn InferenceObserver>) -> ServeState {
        self.observer = Some(observer);
        self
    }

    pub fn models(&self) -> &ModelSet {
        &self.models
    }

    /// The metrics in the OpenMetrics text format (`/metrics` also serves the Prometheus
    /// text format to clients that do not ask for OpenMetrics).
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    pub fn server_metadata(&self) -> ServerMetadata {
        ServerMetadata {
            name: "gantry".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: vec!["binary_tensor_data".to_string(), "predict_rows".to_string()],
        }
    }
}

/// The model server's routes (see the crate documentation for the list).
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer))
        .route("/v2/models/{name}/predict", post(predict))
        .route(
            "/v2/models/{name}/versions/{version}/predict",
            post(predict),
        )
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Responses are one small write each: never wait for an ACK before sending them.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the OIP gRPC API ([`crate::grpc`]) for `state` on `listener` (HTTP/2 without TLS)
/// until `shutdown` completes.
pub async fn serve_grpc(
    listener: TcpListener,
    state: Arc<ServeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, crate::grpc::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

type AppState = State<Arc<ServeState>>;

fn error_response(error: &ServeError) -> Response {
    (
        error.status(),
        Json(ErrorResponse {
            error: error.to_string(),
        }),
    )
        .into_response()
}

async fn no_route(method: Method, uri: Uri) -> Response {
    error_response(&ServeError::NotFound(format!(
        "no endpoint {method} {}; see GET /v2 and /v2/models/{{name}}",
        uri.path()
    )))
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorResponse {
            error: format!("{} does not take {method}", uri.path()),
        }),
    )
        .into_response()
}

async fn server_metadata(State(state): AppState) -> Response {
    Json(state.server_metadata()).into_response()
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(state): AppState) -> StatusCode {
    // Models are loaded before the server starts, so it is ready as soon as it listens.
    if state.models.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// `/v2/models/{name}` and `/v2/models/{name}/versions/{version}` alike.
#[derive(serde::Deserialize)]
struct ModelPath {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

async fn model_metadata(State(state): AppState, Path(p): Path<ModelPath>) -> Response {
    match state.models.get(&p.name, p.version.as_deref()) {
        Ok(model) => Json(model.metadata(state.models.versions(&p.name))).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn model_ready(State(state): AppState, Path(p): Path<ModelPath>) -> Response {
    match state.models.get(&p.name, p.version.as_deref()) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => error_response(&e),
    }
}

async fn metrics(State(state): AppState, headers: HeaderMap) -> Response {
    crate::metrics::exposition(state.metrics_text(), &headers)
}

async fn infer(
    State(state): AppState,
    Path(p): Path<ModelPath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let header_length = headers
        .get(crate::binary::HEADER_LENGTH)
        .map(|v| v.as_bytes());
    serve_infer(state, &p.name, p.version.as_deref(), header_length, body).await
}

async fn predict(
    State(state): AppState,
    Path(p): Path<ModelPath>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve_predict(state, &p.name, p.version.as_deref(), body).await
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ServeError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServeError::TooLarge(format!(
                "the request body is larger than {} MiB; send fewer rows per request",
                BODY_LIMIT >> 20
            ))
        } else {
            ServeError::bad_request(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, ServeError> {
    let bytes = read_body(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ServeError::bad_request(format!("invalid request body: {e}; send {expected}")))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `work` inline when it is small, else on the blocking pool.
async fn run_model<R, T>(
    model: &Arc<LoadedModel>,
    request: R,
    elements: usize,
    work: fn(&LoadedModel, &R) -> Result<T, ServeError>,
) -> (Option<R>, Result<T, ServeError>)
where
    R: Send + 'static,
    T: Send + 'static,
{
    if elements <= INLINE_ELEMENTS {
        let result = work(model, &request);
        return (Some(request), result);
    }
    let model = Arc::clone(model);
    match tokio::task::spawn_blocking(move || {
        let result = work(&model, &request);
        (request, result)
    })
    .await
    {
        Ok((request, result)) => (Some(request), result),
        Err(e) => (
            None,
            Err(ServeError::internal(format!("the model crashed: {e}"))),
        ),
    }
}

fn error_parts(result: &Result<impl Sized, ServeError>) -> (u16, Option<&'static str>) {
    match result {
        Ok(_) => (200, None),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!("model request failed: {e}");
            }
            (e.status().as_u16(), Some(e.kind()))
        }
    }
}

async fn serve_infer(
    state: Arc<ServeState>,
    name: &str,
    version: Option<&str>,
    header_length: Option<&[u8]>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (request, result) = infer_with(&state, name, version, || {
        let length = crate::binary::header_length(header_length)?;
        let bytes = read_body(body)?;
        crate::binary::parse_request(&bytes, length)
    })
    .await;
    match result {
        Ok(response) => infer_answer(&response, request.as_ref()),
        Err(e) => error_response(&e),
    }
}

/// Runs an inference request of any wire format (`parse` reads it) with the server's metrics
/// and observer; returns the request (when it could be read) and the answer.
pub(crate) async fn infer_with(
    state: &Arc<ServeState>,
    name: &str,
    version: Option<&str>,
    parse: impl FnOnce() -> Result<InferenceRequest, ServeError>,
) -> (
    Option<InferenceRequest>,
    Result<InferenceResponse, ServeError>,
) {
    let started = Instant::now();
    let timestamp_ms = now_ms();
    let (index, model) = match find_model(state, name, version) {
        Ok(found) => found,
        Err(e) => return (None, Err(e)),
    };
    let (request, result) = match parse() {
        Ok(request) => {
            let elements = request.inputs.iter().map(|i| i.data.len()).sum();
            run_model(model, request, elements, LoadedModel::infer).await
        }
        Err(e) => (None, Err(e)),
    };
    let latency = started.elapsed();
    let (code, kind) = error_parts(&result);
    let rows = result.as_ref().map_or(0, response_rows);
    state.metrics.record(
        index,
        Protocol::Infer,
        code,
        latency.as_secs_f64(),
        rows,
        kind,
    );
    if let Some(observer) = &state.observer {
        let (id, predictions, error) = match &result {
            Ok(response) => (response.id.clone(), response_predictions(response), None),
            Err(e) => (
                request_id(request.as_ref().and_then(|r| r.id.as_deref())),
                Vec::new(),
                Some(e.to_string()),
            ),
        };
        observer.observe(InferenceEvent {
            id,
            model: model.name().to_string(),
            version: model.version().to_string(),
            rows: request
                .as_ref()
                .map(|r| model.predictor().logged_rows(r))
                .unwrap_or_default(),
            predictions,
            latency,
            error,
            timestamp_ms,
        });
    }
    (request, result)
}

/// JSON, or a JSON header and binary outputs where the request asks for them.
fn infer_answer(response: &InferenceResponse, request: Option<&InferenceRequest>) -> Response {
    let encoded = crate::binary::encode_response(response, |output| {
        request.is_some_and(|r| crate::binary::wants_binary(r, output))
    });
    match encoded {
        Ok(crate::binary::Encoded {
            body,
            header_length: None,
        }) => ([(CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(crate::binary::Encoded {
            body,
            header_length: Some(n),
        }) => (
            [
                (CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    HeaderName::from_static(crate::binary::HEADER_LENGTH),
                    n.to_string(),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

fn find_model<'s>(
    state: &'s ServeState,
    name: &str,
    version: Option<&str>,
) -> Result<(usize, &'s Arc<LoadedModel>), ServeError> {
    let index = state.models.resolve(name, version)?;
    let model = state
        .models
        .model(index)
        .ok_or_else(|| ServeError::internal(format!("model index {index} is out of range")))?;
    Ok((index, model))
}

fn response_rows(response: &InferenceResponse) -> usize {
    response
        .outputs
        .first()
        .and_then(|o| o.shape.first().copied())
        .unwrap_or(0)
}

async fn serve_predict(
    state: Arc<ServeState>,
    name: &str,
    version: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let timestamp_ms = now_ms();
    let (index, model) = match find_model(&state, name, version) {
        Ok(found) => found,
        Err(e) => return error_response(&e),
    };
    let (request, result) = match parse_body::<RowsRequest>(
        body,
        r#"rows like {"rows": [{"sepal_length": 5.1, "sepal_width": 3.5}]}"#,
    ) {
        Ok(request) => {
            let elements = request.rows.iter().map(|r| r.len()).sum();
            run_model(model, request, elements, LoadedModel::predict).await
        }
        Err(e) => (None, Err(e)),
    };
    let latency = started.elapsed();
    let (code, kind) = error_parts(&result);
    let rows = result
        .as_ref()
        .map_or(0, |r: &RowsResponse| r.predictions.len());
    state.metrics.record(
        index,
        Protocol::Predict,
        code,
        latency.as_secs_f64(),
        rows,
        kind,
    );
    if let Some(observer) = &state.observer {
        let (id, predictions, error) = match &result {
            Ok(response) => (
                response.id.clone(),
                response
                    .predictions
                    .iter()
                    .map(|p| p.value.clone())
                    .collect(),
                None,
            ),
            Err(e) => (
                request_id(request.as_ref().and_then(|r| r.id.as_deref())),
                Vec::new(),
                Some(e.to_string()),
            ),
        };
        observer.observe(InferenceEvent {
            id,
            model: model.name().to_string(),
            version: model.version().to_string(),
            rows: request.map(|r| r.rows).unwrap_or_default(),
            predictions,
            latency,
            error,
            timestamp_ms,
        });
    }
    match result {
        Ok(response) => Json(response).into_response(),
        Err(e) => error_response(&e),
    }
}
