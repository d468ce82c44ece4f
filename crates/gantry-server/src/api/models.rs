//! Registered models and their versions.

use super::{ApiError, ApiResult, audit, json_object, require_write};
use crate::AppState;
use crate::auth::Principal;
use crate::views;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};

/// A model belongs to the projects of the runs that registered its versions.
async fn visible(state: &AppState, p: &Principal, name: &str) -> ApiResult<bool> {
    let Some(project) = &p.project else {
        return Ok(true);
    };
    let versions = state.store.list_model_versions(name).await?;
    registered_by(state, &versions, project).await
}

/// Whether `p` may add a version to model `name`: a new model, or one of its project's.
pub(crate) async fn may_add_version(
    state: &AppState,
    p: &Principal,
    name: &str,
) -> ApiResult<bool> {
    let Some(project) = &p.project else {
        return Ok(true);
    };
    match state.store.list_model_versions(name).await {
        Ok(versions) if !versions.is_empty() => registered_by(state, &versions, project).await,
        Ok(_) | Err(gantry_store::StoreError::NotFound { .. }) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Whether a run of `project` registered one of `versions`.
async fn registered_by(
    state: &AppState,
    versions: &[gantry_store::ModelVersionRecord],
    project: &str,
) -> ApiResult<bool> {
    for v in versions {
        if let Some(run) = &v.run_id
            && let Ok(r) = state.store.get_run(run).await
            && r.pipeline == project
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn require_visible(state: &AppState, p: &Principal, name: &str) -> ApiResult<()> {
    if visible(state, p, name).await? {
        Ok(())
    } else {
        Err(ApiError::from(gantry_store::StoreError::NotFound {
            kind: "model",
            id: name.to_owned(),
        }))
    }
}

/// `GET /api/v1/models`
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let mut out = Vec::new();
    for m in state.store.list_models().await? {
        if visible(&state, &p, &m.name).await? {
            out.push(m);
        }
    }
    Ok(Json(json!(out)))
}

/// `GET /api/v1/models/{name}`: the model and its versions, newest first.
pub async fn get(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require_visible(&state, &p, &name).await?;
    let model = state.store.get_model(&name).await?;
    let versions: Vec<Value> = state
        .store
        .list_model_versions(&name)
        .await?
        .iter()
        .map(views::model_version)
        .collect();
    Ok(Json(json!({"model": model, "versions": versions})))
}

/// `GET /api/v1/models/{name}/versions/{version}`: a number, an alias, or `latest`.
pub async fn version(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_visible(&state, &p, &name).await?;
    let reference = if version == "latest" {
        name
    } else {
        format!("{name}@{version}")
    };
    let v = state.store.resolve_model(&reference).await?;
    Ok(Json(views::model_version(&v)))
}

/// `POST /api/v1/models/{name}/aliases` with `{"alias", "version"}`.
pub async fn set_alias(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_write(&p)?;
    let map = json_object(&body, &["alias", "version"])?;
    let alias = super::string_field(&map, "alias", true)?.unwrap_or_default();
    let version = match map.get("version") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v >= 1) => n.as_i64().unwrap_or(1),
        Some(v) => {
            return Err(ApiError::invalid(
                "version",
                format!("`version` must be an integer ≥ 1, got {v}"),
            ));
        }
        None => return Err(ApiError::invalid("version", "`version` is required")),
    };
    require_visible(&state, &p, &name).await?;
    state
        .store
        .set_model_alias(&name, version, alias, gantry_engine::now_ms())
        .await?;
    audit(
        &state,
        &p,
        "model.alias",
        &name,
        json!({"alias": alias, "version": version}),
    )
    .await;
    Ok(Json(
        json!({"model": name, "alias": alias, "version": version}),
    ))
}
