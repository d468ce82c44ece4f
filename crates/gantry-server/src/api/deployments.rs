//! `/api/v1/deployments`: desired state (the reconciler makes it so), feedback, monitor.

use super::{ApiError, ApiResult, audit, require_write};
use crate::AppState;
use crate::auth::Principal;
use crate::deploy::monitor;
use crate::deploy::ops::{self, DeployRequest, FeedbackRequest, OpError};
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use gantry_store::DeploymentRecord;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid { field, message } => ApiError::invalid(field, message),
            OpError::NotFound(m) => ApiError::not_found(m),
            OpError::Conflict(m) => ApiError::conflict(m),
            OpError::Store(e) => ApiError::from(e),
        }
    }
}

/// `text` with `url` (as given, and as parsed: messages show the normalised form) shown
/// by host only.
fn without_url(text: &str, url: &str) -> String {
    let shown = gantry_net::redact_url(url);
    let mut out = text.replace(url, &shown);
    if let Ok(parsed) = reqwest::Url::parse(url) {
        out = out.replace(parsed.as_str(), &shown);
    }
    out
}

fn view(state: &AppState, r: &DeploymentRecord) -> Value {
    let mut spec = r.spec.clone();
    // A webhook URL may hold its receiver's secret (chat webhooks do): shown by host only.
    if let Some(hook) = r.spec["monitor"]["webhook"].as_str() {
        spec["monitor"]["webhook"] = json!(gantry_net::redact_url(hook));
    }
    json!({
        "name": r.name,
        "revision": r.revision,
        "project": r.project,
        "spec": spec,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
        "actual": state.deployments.actual(&r.name),
    })
}

async fn visible(state: &AppState, p: &Principal, name: &str) -> ApiResult<DeploymentRecord> {
    let r = state.store.get_deployment(name).await?;
    if ops::visible_to(&r, p.project.as_deref()) {
        Ok(r)
    } else {
        Err(ApiError::not_found(format!("deployment {name} not found")))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return serde_json::from_str("{}").map_err(|e| ApiError::invalid("body", e.to_string()));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names the offending field in its message (`unknown field `replica``).
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field") || msg.starts_with("invalid type"))
            .unwrap_or("body")
            .to_string();
        ApiError::invalid(field, format!("the request body is not valid: {msg}"))
    })
}

/// `GET /api/v1/deployments`
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let all = state.store.list_deployments().await?;
    Ok(Json(Value::Array(
        all.iter()
            .filter(|r| ops::visible_to(r, p.project.as_deref()))
            .map(|r| view(&state, r))
            .collect(),
    )))
}

/// `GET /api/v1/deployments/{name}`: desired state, actual state and revisions.
pub async fn get(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = visible(&state, &p, &name).await?;
    let mut v = view(&state, &r);
    v["revisions"] = json!(state.store.deployment_revisions(&name).await?);
    v["image_decisions"] = json!(state.store.image_decisions("deployment", &name).await?);
    Ok(Json(v))
}

/// `POST /api/v1/deployments/{name}`: create or change (fields absent stay as they are).
pub async fn apply(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_write(&p)?;
    let req: DeployRequest = parse(&body)?;
    // The webhook is the server's own request on the caller's behalf: refuse the server's
    // network up front (names are checked again when resolved at send time).
    if let Some(hook) = req.webhook.as_deref().filter(|h| !h.is_empty())
        && let Err(e) = state.config.remote.fetch.check_url(hook)
    {
        let message = without_url(&e.to_string(), hook);
        audit(
            &state,
            &p,
            "deployment.refused",
            &name,
            json!({"field": "webhook", "reason": message}),
        )
        .await;
        return Err(ApiError::forbidden(message).with_field("webhook"));
    }
    let mut detail = json!(req);
    // Chat webhooks carry their secret in the path: the audit log keeps the host only.
    if let Some(hook) = req.webhook.as_deref().filter(|h| !h.is_empty()) {
        detail["webhook"] = json!(gantry_net::redact_url(hook));
    }
    let r = ops::apply(
        &state.store,
        &name,
        req,
        &p.name,
        p.project.as_deref(),
        gantry_engine::now_ms(),
    )
    .await?;
    audit(&state, &p, "deployment.apply", &name, detail).await;
    state.deployments.nudge();
    Ok(Json(view(&state, &r)))
}

/// `POST /api/v1/deployments/{name}/promote`: the canary takes all traffic.
pub async fn promote(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require_write(&p)?;
    let now = gantry_engine::now_ms();
    let r = ops::promote(&state.store, &name, &p.name, p.project.as_deref(), now).await;
    changed(&state, &p, &name, "deployment.promote", r?).await
}

/// `POST /api/v1/deployments/{name}/rollback`: back to the state before the last change.
pub async fn rollback(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require_write(&p)?;
    let now = gantry_engine::now_ms();
    let r = ops::rollback(&state.store, &name, &p.name, p.project.as_deref(), now).await;
    changed(&state, &p, &name, "deployment.rollback", r?).await
}

/// Audits a new revision, wakes the reconciler and answers with the deployment.
async fn changed(
    state: &AppState,
    p: &Principal,
    name: &str,
    action: &str,
    r: DeploymentRecord,
) -> ApiResult<Json<Value>> {
    audit(state, p, action, name, json!({"revision": r.revision})).await;
    state.deployments.nudge();
    Ok(Json(view(state, &r)))
}

/// `DELETE /api/v1/deployments/{name}`
pub async fn undeploy(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require_write(&p)?;
    ops::undeploy(
        &state.store,
        &name,
        &p.name,
        p.project.as_deref(),
        gantry_engine::now_ms(),
    )
    .await?;
    audit(&state, &p, "deployment.undeploy", &name, json!({})).await;
    state.deployments.nudge();
    Ok(Json(json!({"name": name, "deleted": true})))
}

/// `POST /api/v1/deployments/{name}/feedback`: ground truth keyed by request id.
pub async fn feedback(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_write(&p)?;
    visible(&state, &p, &name).await?;
    let req: FeedbackRequest = parse(&body)?;
    // A prediction answered a moment ago may still be on its way from the journal.
    state.deployments.predlog().flush().await;
    let n = ops::feedback(&state.store, &name, req, gantry_engine::now_ms()).await?;
    Ok(Json(json!({"stored": n})))
}

/// `GET /api/v1/deployments/{name}/monitor`: computed now.
pub async fn monitor(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    visible(&state, &p, &name).await?;
    state.deployments.predlog().checkpoint().await;
    let view = monitor::compute_cached(
        &state.store,
        &state.artifacts,
        &name,
        gantry_engine::now_ms(),
        &state.deployments.monitors().cache,
    )
    .await
    .map_err(|e| match e {
        monitor::MonitorError::Store(s) => ApiError::from(s),
        monitor::MonitorError::Invalid(m) => ApiError::invalid("spec", m),
    })?;
    Ok(Json(json!(view)))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    hours: Option<i64>,
}

impl HistoryQuery {
    pub fn hours(hours: i64) -> HistoryQuery {
        HistoryQuery { hours: Some(hours) }
    }
}

/// `GET /api/v1/deployments/{name}/monitor/history?hours=72`: per-feature PSI and prediction
/// drift per hour, from the monitor's buckets.
pub async fn monitor_history(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    visible(&state, &p, &name).await?;
    let hours = q.hours.unwrap_or(72);
    if !(1..=24 * 90).contains(&hours) {
        return Err(ApiError::invalid(
            "hours",
            format!("`hours` must be from 1 to 2160, got {hours}"),
        ));
    }
    state.deployments.predlog().checkpoint().await;
    let history = monitor::history(
        &state.store,
        &state.artifacts,
        &name,
        gantry_engine::now_ms(),
        hours,
    )
    .await
    .map_err(|e| match e {
        monitor::MonitorError::Store(s) => ApiError::from(s),
        monitor::MonitorError::Invalid(m) => ApiError::invalid("spec", m),
    })?;
    Ok(Json(json!({"deployment": name, "hours": history})))
}

#[derive(Deserialize)]
pub struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
    window: Option<String>,
}

/// `GET /api/v1/deployments/{name}/monitor/compare?a=primary&b=canary&window=1h` (sides:
/// `primary`, `canary`, `shadow`, `version:N`): per-feature PSI and Jensen–Shannon of `b`'s
/// live distribution against `a`'s, from the monitor's buckets.
pub async fn monitor_compare(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<CompareQuery>,
) -> ApiResult<Json<Value>> {
    visible(&state, &p, &name).await?;
    let side = |field: &str, v: Option<&str>, default: &str| {
        monitor::Side::parse(v.unwrap_or(default)).map_err(|m| ApiError::invalid(field, m))
    };
    let a = side("a", q.a.as_deref(), "primary")?;
    let b = side("b", q.b.as_deref(), "canary")?;
    let window = q.window.as_deref().unwrap_or("1h");
    let window_ms = gantry_spec::quantity::parse_duration(window)
        .map(|d| d.as_millis() as i64)
        .map_err(|m| ApiError::invalid("window", m))?;
    state.deployments.predlog().checkpoint().await;
    let features = monitor::compare(
        &state.store,
        &state.artifacts,
        &name,
        gantry_engine::now_ms(),
        window_ms,
        &a,
        &b,
    )
    .await
    .map_err(|e| match e {
        monitor::MonitorError::Store(s) => ApiError::from(s),
        monitor::MonitorError::Invalid(m) => ApiError::invalid("spec", m),
    })?;
    Ok(Json(
        json!({"deployment": name, "a": a, "b": b, "window": window, "features": features}),
    ))
}

#[derive(Deserialize)]
pub struct PredictionQuery {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    since_ms: Option<i64>,
}

/// `GET /api/v1/deployments/{name}/predictions`: the prediction log, newest first.
pub async fn predictions(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<PredictionQuery>,
) -> ApiResult<Json<Value>> {
    visible(&state, &p, &name).await?;
    state.deployments.predlog().flush().await;
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "use 1–10000"));
    }
    let rows = state
        .store
        .recent_predictions(
            &name,
            q.since_ms.unwrap_or(0),
            limit,
            &["primary", "canary", "shadow"],
        )
        .await?;
    Ok(Json(json!(rows)))
}
