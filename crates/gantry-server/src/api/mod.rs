//! Gantry's own REST API under `/api/v1`.

use crate::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
