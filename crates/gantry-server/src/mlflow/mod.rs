//! The MLflow-compatible REST API under `/api/2.0/mlflow` and `/api/2.0/mlflow-artifacts`:
//! MLflow's paths, JSON shapes, limits and error codes, so MLflow's own clients work against
//! gantry unchanged. Every write is committed before the response is sent. A token scoped
//! to a project sees and changes only that project's experiments, runs, models and
//! artifacts; every handler asks [`scope::Scope`], where that rule lives.
//!
//! Requests are read into one [`Params`] map (the JSON body merged with the query string),
//! because MLflow clients send GET parameters in the query and the rest as JSON bodies, and
//! proto-JSON int64 fields may arrive as numbers or strings.

mod artifacts;
mod logged_models;
mod registry;
pub mod scope;
mod shapes;
mod tracking;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use gantry_store::{KeyValue, StoreError};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::Principal;

/// Prefixes of the tracking and registry API; the UI of MLflow uses the `ajax-api` one.
const API_PREFIXES: [&str; 2] = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"];

/// Routes of the MLflow API (mounted at the root: paths include `/api/2.0/...`).
pub fn router() -> Router<AppState> {
    let routes: Vec<(&str, MethodRouter<AppState>)> = vec![
        // Experiments.
        ("/experiments/create", post(tracking::create_experiment)),
        (
            "/experiments/get",
            get(tracking::get_experiment).post(tracking::get_experiment),
        ),
        (
            "/experiments/get-by-name",
            get(tracking::get_experiment_by_name).post(tracking::get_experiment_by_name),
        ),
        (
            "/experiments/search",
            get(tracking::search_experiments).post(tracking::search_experiments),
        ),
        ("/experiments/update", post(tracking::update_experiment)),
        ("/experiments/delete", post(tracking::delete_experiment)),
        ("/experiments/restore", post(tracking::restore_experiment)),
        (
            "/experiments/set-experiment-tag",
            post(tracking::set_experiment_tag),
        ),
        // Runs.
        ("/runs/create", post(tracking::create_run)),
        ("/runs/get", get(tracking::get_run).post(tracking::get_run)),
        ("/runs/update", post(tracking::update_run)),
        ("/runs/delete", post(tracking::delete_run)),
        ("/runs/restore", post(tracking::restore_run)),
        (
            "/runs/search",
            post(tracking::search_runs).get(tracking::search_runs),
        ),
        ("/runs/log-metric", post(tracking::log_metric)),
        ("/runs/log-parameter", post(tracking::log_param)),
        ("/runs/set-tag", post(tracking::set_tag)),
        ("/runs/delete-tag", post(tracking::delete_tag)),
        ("/runs/log-batch", post(tracking::log_batch)),
        ("/runs/log-inputs", post(tracking::log_inputs)),
        ("/runs/log-model", post(tracking::log_model)),
        (
            "/metrics/get-history",
            get(tracking::metric_history).post(tracking::metric_history),
        ),
        ("/artifacts/list", get(artifacts::list_run_artifacts)),
        // Logged models (MLflow 3).
        ("/runs/outputs", post(logged_models::log_outputs)),
        ("/logged-models", post(logged_models::create)),
        (
            "/logged-models/search",
            post(logged_models::search).get(logged_models::search),
        ),
        (
            "/logged-models/{model_id}",
            get(logged_models::get)
                .patch(logged_models::finalize)
                .delete(logged_models::delete),
        ),
        (
            "/logged-models/{model_id}/tags",
            patch(logged_models::set_tags),
        ),
        (
            "/logged-models/{model_id}/tags/{*key}",
            delete(logged_models::delete_tag),
        ),
        (
            "/logged-models/{model_id}/params",
            post(logged_models::log_params),
        ),
        // Registered models.
        ("/registered-models/create", post(registry::create_model)),
        ("/registered-models/get", get(registry::get_model)),
        (
            "/registered-models/update",
            patch(registry::update_model).post(registry::update_model),
        ),
        (
            "/registered-models/delete",
            delete(registry::delete_model).post(registry::delete_model),
        ),
        ("/registered-models/search", get(registry::search_models)),
        ("/registered-models/rename", post(registry::rename_model)),
        ("/registered-models/set-tag", post(registry::set_model_tag)),
        (
            "/registered-models/delete-tag",
            delete(registry::delete_model_tag).post(registry::delete_model_tag),
        ),
        (
            "/registered-models/get-latest-versions",
            post(registry::latest_versions).get(registry::latest_versions),
        ),
        (
            "/registered-models/alias",
            post(registry::set_alias)
                .delete(registry::delete_alias)
                .get(registry::get_by_alias),
        ),
        // Model versions.
        ("/model-versions/create", post(registry::create_version)),
        ("/model-versions/get", get(registry::get_version)),
        (
            "/model-versions/update",
            patch(registry::update_version).post(registry::update_version),
        ),
        (
            "/model-versions/delete",
            delete(registry::delete_version).post(registry::delete_version),
        ),
        ("/model-versions/search", get(registry::search_versions)),
        (
            "/model-versions/transition-stage",
            post(registry::transition_stage),
        ),
        ("/model-versions/set-tag", post(registry::set_version_tag)),
        (
            "/model-versions/delete-tag",
            delete(registry::delete_version_tag).post(registry::delete_version_tag),
        ),
        (
            "/model-versions/get-download-uri",
            get(registry::download_uri),
        ),
    ];
    let mut router = Router::new();
    for prefix in API_PREFIXES {
        for (path, handler) in &routes {
            router = router.route(&format!("{prefix}{path}"), handler.clone());
        }
    }
    router
        .route(
            "/api/2.0/mlflow-artifacts/artifacts",
            get(artifacts::list_proxied),
        )
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            get(artifacts::download)
                .put(artifacts::upload)
                .delete(artifacts::delete_artifact),
        )
}

/// An MLflow error response: `{"error_code": ..., "message": ...}` with MLflow's status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER_VALUE",
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "RESOURCE_DOES_NOT_EXIST",
            message: message.into(),
        }
    }

    /// 403 PERMISSION_DENIED: the caller may not do this (its role or its project).
    pub fn denied(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "PERMISSION_DENIED",
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: message.into(),
        }
    }

    fn missing(name: &str) -> ApiError {
        ApiError::invalid(format!("Missing value for required parameter '{name}'."))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let message = err.to_string();
        match err {
            StoreError::NotFound { .. } => ApiError::not_found(message),
            StoreError::Invalid { .. } | StoreError::Ambiguous { .. } => ApiError::invalid(message),
            // MLflow answers 400 for an existing resource.
            StoreError::AlreadyExists { .. } => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "RESOURCE_ALREADY_EXISTS",
                message,
            },
            _ => {
                tracing::error!(error = %message, "mlflow api: store failure");
                ApiError::internal(message)
            }
        }
    }
}

impl From<ApiError> for crate::api::ApiError {
    /// The same failure in the REST API's shape (the web UI shows MLflow data).
    fn from(e: ApiError) -> Self {
        crate::api::ApiError::new(e.status, "mlflow", e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error_code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

pub type ApiResult = Result<axum::Json<Value>, ApiError>;

/// Refuses callers that may not change anything.
fn require_write(principal: &Principal) -> Result<(), ApiError> {
    if principal.can_write() {
        Ok(())
    } else {
        Err(ApiError::denied(format!(
            "'{}' has the {} role, which cannot change experiments, runs or models: use an \
             editor or admin token",
            principal.name,
            principal.role.as_str()
        )))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A request's parameters: its JSON body (an object) merged with its query string.
#[derive(Debug, Default)]
pub struct Params {
    map: Map<String, Value>,
}

impl FromRequest<AppState> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Params, ApiError> {
        let raw = RawRequest::from_request(req, state).await?;
        Params::parse(&raw.query, &raw.body)
    }
}

/// A request's query string and body, read (up to the configured limit) but not parsed: for
/// handlers with a fast path for the common shape of their body.
#[derive(Debug)]
pub struct RawRequest {
    pub query: String,
    pub body: axum::body::Bytes,
}

impl FromRequest<AppState> for RawRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<RawRequest, ApiError> {
        let query = req.uri().query().unwrap_or_default().to_owned();
        let limit = state.config.max_body_bytes;
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "cannot read the request body (at most {limit} bytes): {e}"
                ))
            })?;
        Ok(RawRequest { query, body })
    }
}

impl Params {
    /// The parameters of a body (a JSON object, or nothing) and a query string.
    pub fn parse(query: &str, body: &[u8]) -> Result<Params, ApiError> {
        let mut map = if body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(ApiError::bad_request(
                        "the request body must be a JSON object",
                    ));
                }
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "malformed JSON in the request body: {e}"
                    )));
                }
            }
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode_query(k)?, decode_query(v)?);
            match map.get_mut(&k) {
                Some(Value::Array(items)) => items.push(Value::String(v)),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(v)]);
                }
                None => {
                    map.insert(k, Value::String(v));
                }
            }
        }
        Ok(Params { map })
    }
}

fn decode_query(s: &str) -> Result<String, ApiError> {
    artifacts::percent_decode(&s.replace('+', " "))
        .ok_or_else(|| ApiError::bad_request(format!("malformed query string near '{s}'")))
}

fn type_error(name: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value {got} for parameter '{name}' supplied: expected {expected}"
    ))
}

impl Params {
    fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter; a number is accepted and written out (ids are often numbers).
    fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(type_error(name, "a string", other)),
        }
    }

    fn req_str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::missing(name))
    }

    /// MLflow names the run `run_id`, older clients `run_uuid`.
    fn run_id(&self) -> Result<String, ApiError> {
        match self.opt_str("run_id")?.filter(|s| !s.is_empty()) {
            Some(id) => Ok(id),
            None => self
                .req_str("run_uuid")
                .map_err(|_| ApiError::missing("run_id")),
        }
    }

    fn opt_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => shapes::as_i64(v)
                .map(Some)
                .ok_or_else(|| type_error(name, "an integer", v)),
        }
    }

    /// A boolean: JSON true/false, or "true"/"false" in a query string.
    fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(type_error(name, "a boolean", other)),
        }
    }

    fn opt_usize(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.opt_i64(name)? {
            None => Ok(None),
            Some(n) => usize::try_from(n).map(Some).map_err(|_| {
                ApiError::invalid(format!(
                    "Invalid value {n} for parameter '{name}': must be positive"
                ))
            }),
        }
    }

    /// A list of strings: a JSON array, or one or more query parameters.
    fn str_list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(type_error(name, "a list of strings", other)),
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(other) => Err(type_error(name, "a list of strings", other)),
        }
    }

    fn objects(&self, name: &str) -> Result<Vec<&Map<String, Value>>, ApiError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_object()
                        .ok_or_else(|| type_error(name, "a list of objects", v))
                })
                .collect(),
            Some(other) => Err(type_error(name, "a list of objects", other)),
        }
    }

    /// `[{"key": ..., "value": ...}]`.
    fn key_values(&self, name: &str) -> Result<Vec<KeyValue>, ApiError> {
        self.objects(name)?
            .into_iter()
            .map(|o| key_value(name, o))
            .collect()
    }
}

fn key_value(list: &str, o: &Map<String, Value>) -> Result<KeyValue, ApiError> {
    let field = |f: &str| -> Result<String, ApiError> {
        match o.get(f) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) if f == "value" => Ok(String::new()),
            None | Some(Value::Null) => Err(ApiError::missing(&format!("{list}.{f}"))),
            Some(other) => Err(type_error(&format!("{list}.{f}"), "a string", other)),
        }
    };
    Ok(KeyValue::new(field("key")?, field("value")?))
}
