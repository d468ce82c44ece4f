//! `gantry server`: the control plane. One axum application hosting the engine, the
//! REST API under `/api/v1`, the MLflow-compatible tracking and registry API under
//! `/api/2.0/mlflow` and `/api/2.0/mlflow-artifacts`, deployments (reconciled replicas,
//! the Open Inference Protocol under `/v2`, prediction log, monitors), health and
//! Prometheus metrics, and the web UI at `/`.

pub mod api;
pub mod auth;
pub mod deploy;
pub mod image_watch;
pub mod metrics;
pub mod mlflow;
pub mod server;
pub mod state;
pub mod step_tokens;
pub mod ui;
pub mod views;

pub use server::{router, serve, serve_on, shutdown_signal};
pub use state::{
    AppState, DEFAULT_MAX_UPLOAD_BYTES, RemotePolicy, RunHost, ServerConfig, StartError,
};
