//! Tokens and the audit log: admin only (and only for admins without a project).

use super::{ApiError, ApiResult, audit, json_object, query_map, require_admin};
use crate::AppState;
use crate::auth::{Principal, Role, issue_token};
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::collections::HashMap;

/// `POST /api/v1/tokens` with `{"name", "role", "project"?}`: the secret is in this
/// response and nowhere else, ever.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    require_admin(&p)?;
    let map = json_object(&body, &["name", "role", "project"])?;
    let name = super::string_field(&map, "name", true)?.unwrap_or_default();
    let role_text = super::string_field(&map, "role", true)?.unwrap_or_default();
    let project = super::string_field(&map, "project", false)?;
    let role = Role::parse(role_text).ok_or_else(|| {
        ApiError::invalid(
            "role",
            format!("unknown role '{role_text}': expected viewer, editor or admin"),
        )
    })?;
    let issued = issue_token(&state.store, name, role, project).await?;
    audit(
        &state,
        &p,
        "token.create",
        &issued.record.name,
        json!({"id": issued.record.id, "role": role.as_str(), "project": project}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": issued.record, "secret": issued.secret})),
    ))
}

/// `GET /api/v1/tokens`: every token, without secrets or hashes.
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    Ok(Json(json!(state.store.list_tokens().await?)))
}

/// `POST /api/v1/tokens/{id or name}/revoke`
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    let rec = state
        .store
        .revoke_token(&token, gantry_engine::now_ms())
        .await?;
    audit(&state, &p, "token.revoke", &rec.name, json!({"id": rec.id})).await;
    Ok(Json(json!(rec)))
}

/// `GET /api/v1/audit?limit=`: newest first.
pub async fn audit_log(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    let q = query_map(q, &["limit"])?;
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid(
                "limit",
                format!("`limit` must be a non-negative integer, got '{v}'"),
            )
        })?,
    };
    Ok(Json(json!(state.store.list_audit(limit).await?)))
}
