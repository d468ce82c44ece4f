//! `GET /api/v1/usage`: resources used and their cost over a window, grouped by project,
//! pipeline, step, deployment or user. A project-scoped caller sees its project only.

use std::collections::HashMap;

use super::{ApiError, ApiResult, query_map};
use crate::AppState;
use crate::auth::Principal;
use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use gantry_alloc::{Dimension, Report};

/// The window when none is asked for: the last 7 days.
const DEFAULT_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

fn millis(q: &HashMap<String, String>, field: &str) -> ApiResult<Option<i64>> {
    q.get(field)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::invalid(
                    field,
                    format!("`{field}` must be milliseconds since the Unix epoch, got {v:?}"),
                )
            })
        })
        .transpose()
}

/// `?since_ms=&until_ms=&by=project|pipeline|step|deployment|user&project=`.
pub async fn report(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Report>> {
    let q = query_map(q, &["since_ms", "until_ms", "by", "project"])?;
    let now = gantry_engine::now_ms();
    let until_ms = millis(&q, "until_ms")?.unwrap_or(now + 1);
    let since_ms = millis(&q, "since_ms")?.unwrap_or(until_ms - DEFAULT_WINDOW_MS);
    if since_ms >= until_ms {
        return Err(ApiError::invalid(
            "since_ms",
            "`since_ms` must be before `until_ms`",
        ));
    }
    let by: Dimension = match q.get("by") {
        None => Dimension::Project,
        Some(b) => b.parse().map_err(|e: String| ApiError::invalid("by", e))?,
    };
    let project = match (&p.project, q.get("project")) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(ApiError::invalid(
                "project",
                format!("this token sees project {own} only"),
            ));
        }
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked.cloned(),
    };
    let query = gantry_store::UsageQuery {
        since_ms,
        until_ms,
        by,
        project,
        run_id: None,
    };
    let groups = state
        .store
        .usage(&query)
        .await
        .map_err(|e| ApiError::internal("summing usage", e))?;
    Ok(Json(Report::new(
        by,
        since_ms,
        until_ms,
        groups,
        &state.config.prices,
    )))
}
