//! Garbage collection and disk use through the server (admin only): `POST /api/v1/gc`,
//! `GET /api/v1/df`, and the schedule of `gantry server --gc-interval`. Every gc that removed
//! something is in the audit log.

use std::time::Duration;

use super::{ApiError, ApiResult, audit, json_object, query_map, require_admin};
use crate::AppState;
use crate::auth::Principal;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use gantry_engine::gc::{self, GcReport, GcTargets};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Runs kept by default: those that ended in the last 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn retention(text: Option<&str>) -> ApiResult<Duration> {
    match text {
        None => Ok(DEFAULT_RETENTION),
        Some(t) => humantime::parse_duration(t).map_err(|e| {
            ApiError::invalid(
                "older_than",
                format!("`older_than` must be a duration such as 30d or 12h: {e}"),
            )
        }),
    }
}

fn no_engine() -> ApiError {
    ApiError::invalid(
        "server",
        "this server runs no pipelines, so it has no artifacts or images of its own to collect",
    )
}

/// Collects garbage on the server's home and records it in the audit log as `principal`.
pub async fn collect_and_audit(
    state: &AppState,
    principal: &Principal,
    older_than: Duration,
    dry_run: bool,
) -> ApiResult<GcReport> {
    let engine = state.runs.engine().ok_or_else(no_engine)?;
    let report = gc::collect(&GcTargets::of_engine(engine), older_than, dry_run)
        .await
        .map_err(|e| ApiError::internal("collecting garbage", e))?;
    if !dry_run {
        audit(
            state,
            principal,
            "gc",
            "home",
            json!({
                "older_than_s": older_than.as_secs(),
                "freed_bytes": report.freed_bytes(),
                "report": report,
            }),
        )
        .await;
    }
    Ok(report)
}

/// `POST /api/v1/gc` with `{"dry_run"?: bool, "older_than"?: "30d"}`.
pub async fn run(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    let map = if body.is_empty() {
        serde_json::Map::new()
    } else {
        json_object(&body, &["dry_run", "older_than"])?
    };
    let dry_run = match map.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "dry_run",
                "`dry_run` must be true or false",
            ));
        }
    };
    let older_than = retention(super::string_field(&map, "older_than", false)?)?;
    let report = collect_and_audit(&state, &p, older_than, dry_run).await?;
    Ok(Json(json!(report)))
}

/// `GET /api/v1/df?older_than=`: what uses the disk and what gc would free.
pub async fn df(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    let q = query_map(q, &["older_than"])?;
    let older_than = retention(q.get("older_than").map(String::as_str))?;
    let engine = state.runs.engine().ok_or_else(no_engine)?;
    let db = state.store.sqlite_path();
    let usage = gc::disk_usage(&GcTargets::of_engine(engine), db.as_deref(), older_than)
        .await
        .map_err(|e| ApiError::internal("measuring disk use", e))?;
    Ok(Json(json!(usage)))
}

/// `gantry server --gc-interval`: collects every `interval` with `older_than`, as the
/// principal `gc-schedule` in the audit log, until the server stops.
pub fn spawn_schedule(state: AppState, interval: Duration, older_than: Duration) {
    tokio::spawn(async move {
        let principal = Principal {
            name: "gc-schedule".into(),
            role: crate::auth::Role::Admin,
            project: None,
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match collect_and_audit(&state, &principal, older_than, false).await {
                Ok(r) => tracing::info!(freed_bytes = r.freed_bytes(), "scheduled gc"),
                Err(e) => tracing::warn!("scheduled gc failed: {}", e.message),
            }
        }
    });
}
