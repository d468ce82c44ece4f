//! Project quotas and the run queue.
//!
//! * `GET /api/v1/queue`: what waits for admission, in the order it will be considered, with
//!   why each waits; each project's standing against its quota. A project-scoped caller sees
//!   its own project's entries (positions stay those of the whole queue).
//! * `GET /api/v1/quotas`: every quota the caller may see.
//! * `GET|PUT|DELETE /api/v1/projects/{project}/quota`: one project's quota; writing needs
//!   an admin token without a project. `PUT` replaces the whole quota:
//!   `{"cpu": "8" | 1.5, "memory": "32Gi" | bytes, "gpus": 1, "max_runs": 4, "weight": 2}`,
//!   a missing or null limit meaning none.

use super::{ApiError, ApiResult, audit, json_object, require_admin, type_name};
use crate::AppState;
use crate::auth::Principal;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use gantry_store::ProjectQuota;
use serde_json::{Map, Value, json};

/// The engine's view of a stored quota.
pub fn engine_quota(q: &ProjectQuota) -> gantry_engine::Quota {
    let nonneg = |v: Option<i64>| v.map(|n| n.max(0) as u64);
    gantry_engine::Quota {
        cpu_millis: nonneg(q.cpu_millis),
        memory_bytes: nonneg(q.memory_bytes),
        gpus: nonneg(q.gpus).map(|n| n.min(u64::from(u32::MAX)) as u32),
        max_runs: nonneg(q.max_runs).map(|n| n.min(u64::from(u32::MAX)) as u32),
        weight: q.weight.clamp(1, i64::from(u32::MAX)) as u32,
    }
}

/// Applies the stored quotas to the engine: those set, and those removed since.
pub async fn sync_quotas(state: &AppState) -> Result<(), gantry_store::StoreError> {
    let Some(engine) = state.runs.engine() else {
        return Ok(());
    };
    let stored = state.store.project_quotas().await?;
    let known: Vec<String> = engine
        .scheduler()
        .standings()
        .into_iter()
        .filter(|p| p.quota.is_some())
        .map(|p| p.project)
        .collect();
    for name in known {
        if !stored.iter().any(|q| q.project == name) {
            engine.set_quota(&name, None);
        }
    }
    for q in &stored {
        let want = engine_quota(q);
        if engine.scheduler().quota(&q.project).as_ref() != Some(&want) {
            engine.set_quota(&q.project, Some(want));
        }
    }
    Ok(())
}

/// Keeps the engine's quotas in step with the store (a quota set with `gantry project quota`
/// on the server's machine, without `--server`, applies within `every`).
pub fn spawn_quota_sync(
    state: AppState,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sync_quotas(&state).await {
                tracing::warn!("cannot read project quotas: {e}");
            }
        }
    })
}

/// `GET /api/v1/queue`
pub async fn queue(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let Some(engine) = state.runs.engine() else {
        return Ok(Json(
            json!({"engine": false, "waiting": [], "projects": []}),
        ));
    };
    let mut snap = engine.queue_snapshot();
    snap.waiting
        .retain(|w| p.can_access_project(&w.request.project));
    snap.projects.retain(|s| p.can_access_project(&s.project));
    let waiting: Vec<Value> = snap
        .waiting
        .iter()
        .map(|w| {
            let mut v = json!(w);
            if let Value::Object(m) = &mut v {
                m.insert("reason".into(), json!(w.wait.to_string()));
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "engine": true,
        "capacity": snap.capacity,
        "used": snap.used,
        "running_steps": snap.running_steps,
        "waiting": waiting,
        "projects": snap.projects,
    })))
}

/// `GET /api/v1/quotas`
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let mut all = state.store.project_quotas().await?;
    all.retain(|q| p.can_access_project(&q.project));
    Ok(Json(json!(all)))
}

/// `GET /api/v1/projects/{project}/quota`
pub async fn get(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    let none = || ApiError::not_found(format!("project {project} has no quota"));
    if !p.can_access_project(&project) {
        return Err(none());
    }
    match state.store.project_quota(&project).await? {
        Some(q) => Ok(Json(json!(q))),
        None => Err(none()),
    }
}

/// `PUT /api/v1/projects/{project}/quota`
pub async fn put(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(project): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    if project.trim().is_empty() {
        return Err(ApiError::invalid("project", "the project name is empty"));
    }
    let map = json_object(&body, &["cpu", "memory", "gpus", "max_runs", "weight"])?;
    let quota = ProjectQuota {
        project: project.clone(),
        cpu_millis: cpu_field(&map)?,
        memory_bytes: memory_field(&map)?,
        gpus: count_field(&map, "gpus")?,
        max_runs: count_field(&map, "max_runs")?,
        weight: match count_field(&map, "weight")? {
            None => 1,
            Some(0) => {
                return Err(ApiError::invalid(
                    "weight",
                    "`weight` must be at least 1 (a project's fair-share weight)",
                ));
            }
            Some(w) => w,
        },
        updated_at_ms: gantry_engine::now_ms(),
        updated_by: Some(p.name.clone()),
    };
    state.store.set_project_quota(&quota).await?;
    if let Some(engine) = state.runs.engine() {
        engine.set_quota(&project, Some(engine_quota(&quota)));
    }
    audit(&state, &p, "quota.set", &project, json!(quota)).await;
    Ok(Json(json!(quota)))
}

/// `DELETE /api/v1/projects/{project}/quota`
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    if !state.store.delete_project_quota(&project).await? {
        return Err(ApiError::not_found(format!(
            "project {project} has no quota"
        )));
    }
    if let Some(engine) = state.runs.engine() {
        engine.set_quota(&project, None);
    }
    audit(&state, &p, "quota.delete", &project, json!({})).await;
    Ok(Json(json!({"project": project, "deleted": true})))
}

fn cpu_field(map: &Map<String, Value>) -> ApiResult<Option<i64>> {
    let bad = |m: String| ApiError::invalid("cpu", m);
    match map.get("cpu") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => gantry_spec::quantity::parse_cpu(s)
            .map(|m| Some(m as i64))
            .map_err(|e| bad(format!("`cpu`: {e}"))),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(cores) if (0.0..1e9).contains(&cores) => Ok(Some((cores * 1000.0).round() as i64)),
            _ => Err(bad(format!(
                "`cpu` must be a non-negative number of cores, got {n}"
            ))),
        },
        Some(v) => Err(bad(format!(
            "`cpu` must be cores (2, 1.5) or a quantity (\"1500m\"), got {}",
            type_name(v)
        ))),
    }
}

fn memory_field(map: &Map<String, Value>) -> ApiResult<Option<i64>> {
    let bad = |m: String| ApiError::invalid("memory", m);
    match map.get("memory") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => gantry_spec::quantity::parse_memory(s)
            .map(|b| Some(b.min(i64::MAX as u64) as i64))
            .map_err(|e| bad(format!("`memory`: {e}"))),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(b) if b >= 0 => Ok(Some(b)),
            _ => Err(bad(format!(
                "`memory` must be a non-negative number of bytes, got {n}"
            ))),
        },
        Some(v) => Err(bad(format!(
            "`memory` must be bytes or a quantity (\"32Gi\"), got {}",
            type_name(v)
        ))),
    }
}

fn count_field(map: &Map<String, Value>, field: &str) -> ApiResult<Option<i64>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(c) if (0..=i64::from(u32::MAX)).contains(&c) => Ok(Some(c)),
            _ => Err(ApiError::invalid(
                field,
                format!("`{field}` must be a non-negative integer, got {n}"),
            )),
        },
        Some(v) => Err(ApiError::invalid(
            field,
            format!(
                "`{field}` must be a non-negative integer, got {}",
                type_name(v)
            ),
        )),
    }
}
