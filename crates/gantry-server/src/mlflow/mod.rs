//! The MLflow-compatible REST API under `/api/2.0/mlflow` and `/api/2.0/mlflow-artifacts`.

use crate::AppState;
use axum::Router;

/// Routes of the MLflow API (mounted at the root: paths include `/api/2.0/...`).
pub fn router() -> Router<AppState> {
    Router::new()
}
