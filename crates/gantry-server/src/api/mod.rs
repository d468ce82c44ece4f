//! Gantry's own REST API under `/api/v1`.
//!
//! Every failure is `{"error": {"code", "message", "field"?}}` with a 4xx/5xx status
//! ([`ApiError`]). A run's project is its pipeline name: a token scoped to project P sees
//! and submits only runs of pipeline P, and models registered by them; anything else of
//! another project answers 404, as if it did not exist.

pub(crate) mod admin;
pub(crate) mod artifacts;
pub(crate) mod deployments;
mod error;
mod exported;
pub mod gc;
pub(crate) mod models;
pub mod queue;
pub(crate) mod runs;
mod uploads;
mod usage;

pub use error::{ApiError, ApiResult};

use crate::AppState;
use crate::auth::Principal;
use axum::Router;
use axum::routing::{get, post};
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs", get(runs::list).post(runs::submit))
        .route("/api/v1/runs/{id}", get(runs::get))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/runs/{id}/logs", get(runs::logs))
        .route("/api/v1/runs/{id}/artifacts", get(artifacts::list))
        .route(
            "/api/v1/runs/{id}/artifacts/{digest}",
            get(artifacts::content_of_run),
        )
        .route("/api/v1/artifacts/{digest}", get(artifacts::content))
        .route("/api/v1/exported/cache", post(exported::cache))
        .route("/api/v1/exported/steps", post(exported::report))
        .route("/api/v1/exported/runs", post(exported::end))
        .route(
            "/api/v1/uploads/{digest}",
            get(uploads::get).put(uploads::put),
        )
        .route("/api/v1/models", get(models::list))
        .route("/api/v1/models/{name}", get(models::get))
        .route(
            "/api/v1/models/{name}/versions/{version}",
            get(models::version),
        )
        .route("/api/v1/models/{name}/aliases", post(models::set_alias))
        .route(
            "/api/v1/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route("/api/v1/tokens/{token}/revoke", post(admin::revoke_token))
        .route("/api/v1/audit", get(admin::audit_log))
        .route("/api/v1/gc", post(gc::run))
        .route("/api/v1/df", get(gc::df))
        .route("/api/v1/usage", get(usage::report))
        .route("/api/v1/queue", get(queue::queue))
        .route("/api/v1/quotas", get(queue::list))
        .route(
            "/api/v1/projects/{project}/quota",
            get(queue::get).put(queue::put).delete(queue::delete),
        )
        .route("/api/v1/deployments", get(deployments::list))
        .route(
            "/api/v1/deployments/{name}",
            get(deployments::get)
                .post(deployments::apply)
                .delete(deployments::undeploy),
        )
        .route(
            "/api/v1/deployments/{name}/promote",
            post(deployments::promote),
        )
        .route(
            "/api/v1/deployments/{name}/rollback",
            post(deployments::rollback),
        )
        .route(
            "/api/v1/deployments/{name}/feedback",
            post(deployments::feedback),
        )
        .route(
            "/api/v1/deployments/{name}/monitor",
            get(deployments::monitor),
        )
        .route(
            "/api/v1/deployments/{name}/monitor/history",
            get(deployments::monitor_history),
        )
        .route(
            "/api/v1/deployments/{name}/monitor/compare",
            get(deployments::monitor_compare),
        )
        .route(
            "/api/v1/deployments/{name}/predictions",
            get(deployments::predictions),
        )
}

pub(crate) fn require_write(p: &Principal) -> ApiResult<()> {
    if p.can_write() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token '{}' has role {}: writing needs editor or admin",
            p.name,
            p.role.as_str()
        )))
    }
}

pub(crate) fn require_admin(p: &Principal) -> ApiResult<()> {
    if p.can_admin() && p.project.is_none() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token '{}' cannot manage tokens or read the audit log: that needs an admin token without a project",
            p.name
        )))
    }
}

/// Records a write in the audit log. The write already happened, so a failure to record
/// it is logged loudly rather than reported as a failed write.
pub(crate) async fn audit(
    state: &AppState,
    p: &Principal,
    action: &str,
    target: &str,
    detail: Value,
) {
    if let Err(e) = state
        .store
        .append_audit(&p.name, action, target, &detail, gantry_engine::now_ms())
        .await
    {
        tracing::error!(error = %e, action, target, "cannot record a write in the audit log");
    }
}

/// A JSON body, as a map, with a clear 400 for anything else.
pub(crate) fn json_object(
    body: &[u8],
    allowed: &[&str],
) -> ApiResult<serde_json::Map<String, Value>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(ApiError::invalid(
            "body",
            format!("expected a JSON object, got {}", type_name(&v)),
        ));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            k.clone(),
            format!(
                "unknown field `{k}`; expected one of: {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(map)
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn string_field<'a>(
    map: &'a serde_json::Map<String, Value>,
    field: &str,
    required: bool,
) -> ApiResult<Option<&'a str>> {
    match map.get(field) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(ApiError::invalid(field, format!("`{field}` is required"))),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::invalid(
            field,
            format!("`{field}` must be a string, got {}", type_name(v)),
        )),
    }
}

/// Query parameters as a map, refusing names the endpoint does not know.
pub(crate) fn query_map(
    q: std::collections::HashMap<String, String>,
    allowed: &[&str],
) -> ApiResult<std::collections::HashMap<String, String>> {
    if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            k.clone(),
            format!(
                "unknown query parameter `{k}`; expected one of: {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(q)
}
