//! Experiments, runs, params, tags and metrics.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gantry_store::{
    DEFAULT_EXPERIMENT_ID, KeyValue, MetricPoint, NewTrackingRun, SearchQuery, TrackingRunUpdate,
    ViewType,
};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

use super::logged_models::{check_linked, linked_metric};
use super::scope::Scope;
use super::{ApiError, ApiResult, Params, key_value, now_ms, require_write, shapes, type_error};
use crate::AppState;
use crate::auth::Principal;

fn view_type(p: &Params, name: &str) -> Result<ViewType, ApiError> {
    match p.opt_str(name)? {
        None => Ok(ViewType::ActiveOnly),
        Some(s) => ViewType::parse(&s).ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid value '{s}' for parameter '{name}': use ACTIVE_ONLY, DELETED_ONLY or ALL"
            ))
        }),
    }
}

fn search_query(p: &Params, view_param: &str) -> Result<SearchQuery, ApiError> {
    Ok(SearchQuery {
        experiment_ids: Vec::new(),
        filter: p.opt_str("filter")?.unwrap_or_default(),
        view: view_type(p, view_param)?,
        max_results: p.opt_usize("max_results")?,
        order_by: p.str_list("order_by")?,
        page_token: p.opt_str("page_token")?.filter(|t| !t.is_empty()),
    })
}

fn ok() -> ApiResult {
    Ok(Json(json!({})))
}

fn metric_from(o: &Map<String, Value>, list: &str) -> Result<MetricPoint, ApiError> {
    let name = |f: &str| {
        if list.is_empty() {
            f.to_owned()
        } else {
            format!("{list}.{f}")
        }
    };
    let key = match o.get("key") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) => return Err(ApiError::missing(&name("key"))),
        Some(other) => return Err(type_error(&name("key"), "a string", other)),
    };
    let value = match o.get("value") {
        None | Some(Value::Null) => return Err(ApiError::missing(&name("value"))),
        Some(v) => shapes::as_f64(v).ok_or_else(|| type_error(&name("value"), "a number", v))?,
    };
    let timestamp = match o.get("timestamp") {
        None | Some(Value::Null) => return Err(ApiError::missing(&name("timestamp"))),
        Some(v) => {
            shapes::as_i64(v).ok_or_else(|| type_error(&name("timestamp"), "an integer", v))?
        }
    };
    let step = match o.get("step") {
        None | Some(Value::Null) => 0,
        Some(v) => shapes::as_i64(v).ok_or_else(|| type_error(&name("step"), "an integer", v))?,
    };
    Ok(MetricPoint {
        key,
        value,
        timestamp,
        step,
    })
}

// ----- experiments -------------------------------------------------------------------------

pub async fn create_experiment(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let name = p.req_str("name")?;
    Scope::new(&s.store, &who).may_name_experiment(&name)?;
    let location = p.opt_str("artifact_location")?.filter(|l| !l.is_empty());
    let tags = p.key_values("tags")?;
    let id = s
        .store
        .create_experiment(&name, location.as_deref(), &tags, now_ms())
        .await?;
    Ok(Json(json!({"experiment_id": id})))
}

pub async fn get_experiment(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let id = p.req_str("experiment_id")?;
    let e = s.store.get_experiment(&id).await?;
    let e = Scope::new(&s.store, &who).experiment(e, &id)?;
    Ok(Json(json!({"experiment": shapes::experiment(&e)})))
}

pub async fn get_experiment_by_name(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let name = p.req_str("experiment_name")?;
    let e = s.store.get_experiment_by_name(&name).await?;
    let e = Scope::new(&s.store, &who).experiment(e, &name)?;
    Ok(Json(json!({"experiment": shapes::experiment(&e)})))
}

pub async fn search_experiments(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let q = search_query(&p, "view_type")?;
    let mut page = s.store.search_experiments(&q).await?;
    Scope::new(&s.store, &who).retain_experiments(&mut page.items);
    let mut out = json!({
        "experiments": page.items.iter().map(shapes::experiment).collect::<Vec<_>>(),
    });
    if let Some(t) = page.next_page_token {
        out["next_page_token"] = json!(t);
    }
    Ok(Json(out))
}

pub async fn update_experiment(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.req_str("experiment_id")?;
    let scope = Scope::new(&s.store, &who);
    scope.require_experiment(&id).await?;
    if let Some(name) = p.opt_str("new_name")? {
        scope.may_name_experiment(&name)?;
        s.store.rename_experiment(&id, &name, now_ms()).await?;
    } else {
        s.store.get_experiment(&id).await?;
    }
    ok()
}

pub async fn delete_experiment(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.req_str("experiment_id")?;
    Scope::new(&s.store, &who).require_experiment(&id).await?;
    s.store.set_experiment_deleted(&id, true, now_ms()).await?;
    ok()
}

pub async fn restore_experiment(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.req_str("experiment_id")?;
    Scope::new(&s.store, &who).require_experiment(&id).await?;
    s.store.set_experiment_deleted(&id, false, now_ms()).await?;
    ok()
}

pub async fn set_experiment_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.req_str("experiment_id")?;
    Scope::new(&s.store, &who).require_experiment(&id).await?;
    let key = p.req_str("key")?;
    let value = p.opt_str("value")?.unwrap_or_default();
    s.store
        .set_experiment_tag(&id, &KeyValue::new(key, value))
        .await?;
    ok()
}

// ----- runs --------------------------------------------------------------------------------

pub async fn create_run(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let new = NewTrackingRun {
        experiment_id: p
            .opt_str("experiment_id")?
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_EXPERIMENT_ID.to_owned()),
        user_id: p
            .opt_str("user_id")?
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| who.name.clone()),
        run_name: p.opt_str("run_name")?.filter(|n| !n.is_empty()),
        start_time: p.opt_i64("start_time")?,
        tags: p.key_values("tags")?,
    };
    Scope::new(&s.store, &who)
        .require_experiment(&new.experiment_id)
        .await?;
    let run = s.store.create_tracking_run(&new, now_ms()).await?;
    Ok(Json(json!({"run": shapes::run(&run)})))
}

pub async fn get_run(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let id = p.run_id()?;
    let run = s.store.get_tracking_run(&id).await?;
    let run = Scope::new(&s.store, &who).run(run, &id).await?;
    let mut out = shapes::run(&run);
    let outputs = s.store.run_outputs(&id).await?;
    if !outputs.is_empty() {
        out["outputs"] = shapes::run_outputs(&outputs);
    }
    Ok(Json(json!({"run": out})))
}

pub async fn update_run(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let update = TrackingRunUpdate {
        status: p.opt_str("status")?,
        end_time: p.opt_i64("end_time")?,
        run_name: p.opt_str("run_name")?.filter(|n| !n.is_empty()),
    };
    let info = s.store.update_tracking_run(&id, &update).await?;
    Ok(Json(json!({"run_info": shapes::run_info(&info)})))
}

pub async fn delete_run(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    s.store
        .set_tracking_run_deleted(&id, true, now_ms())
        .await?;
    ok()
}

pub async fn restore_run(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    s.store
        .set_tracking_run_deleted(&id, false, now_ms())
        .await?;
    ok()
}

pub async fn search_runs(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let mut q = search_query(&p, "run_view_type")?;
    q.experiment_ids = Scope::new(&s.store, &who)
        .searchable_experiment_ids(p.str_list("experiment_ids")?)
        .await?;
    let page = s.store.search_tracking_runs(&q).await?;
    let mut out = json!({"runs": page.items.iter().map(shapes::run).collect::<Vec<_>>()});
    if let Some(t) = page.next_page_token {
        out["next_page_token"] = json!(t);
    }
    Ok(Json(out))
}

pub async fn log_metric(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let m = metric_from(&p.map, "")?;
    let linked: Vec<_> = linked_metric(&p.map, "", &m)?.into_iter().collect();
    check_linked(&s, &who, &linked).await?;
    s.store.log_batch(&id, &[m], &[], &[]).await?;
    s.store.log_logged_model_metrics(&id, &linked).await?;
    ok()
}

pub async fn log_param(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let kv = key_value("param", &p.map)?;
    s.store.log_batch(&id, &[], &[kv], &[]).await?;
    ok()
}

pub async fn set_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let kv = key_value("tag", &p.map)?;
    s.store.log_batch(&id, &[], &[], &[kv]).await?;
    ok()
}

pub async fn delete_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let key = p.req_str("key")?;
    s.store.delete_tracking_run_tag(&id, &key).await?;
    ok()
}

pub async fn log_batch(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let mut metrics = Vec::new();
    let mut linked = Vec::new();
    for o in p.objects("metrics")? {
        let m = metric_from(o, "metrics")?;
        linked.extend(linked_metric(o, "metrics", &m)?);
        metrics.push(m);
    }
    check_linked(&s, &who, &linked).await?;
    let params = p.key_values("params")?;
    let tags = p.key_values("tags")?;
    s.store.log_batch(&id, &metrics, &params, &tags).await?;
    // Linked after the run's batch, in a transaction of its own (both checked beforehand).
    s.store.log_logged_model_metrics(&id, &linked).await?;
    ok()
}

/// Dataset inputs are accepted and dropped (gantry tracks data lineage itself); the run must
/// exist, as in MLflow.
pub async fn log_inputs(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    s.store.get_tracking_run(&id).await?;
    ok()
}

/// MLflow 2 clients post the logged model's description here; it is kept as the
/// `mlflow.log-model.history` tag, as MLflow does.
pub async fn log_model(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let model = p.req_str("model_json")?;
    let run = s.store.get_tracking_run(&id).await?;
    let mut history: Vec<Value> = run
        .tags
        .iter()
        .find(|t| t.key == "mlflow.log-model.history")
        .and_then(|t| serde_json::from_str(&t.value).ok())
        .unwrap_or_default();
    let entry: Value = serde_json::from_str(&model)
        .map_err(|e| ApiError::invalid(format!("model_json is not valid JSON: {e}")))?;
    history.push(entry);
    let tag = KeyValue::new(
        "mlflow.log-model.history",
        Value::Array(history).to_string(),
    );
    s.store.log_batch(&id, &[], &[], &[tag]).await?;
    ok()
}

pub async fn metric_history(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> Result<Response, ApiError> {
    let id = p.run_id()?;
    Scope::new(&s.store, &who).require_run(&id).await?;
    let key = p.req_str("metric_key")?;
    let page = s
        .store
        .metric_history(
            &id,
            &key,
            p.opt_usize("max_results")?,
            p.opt_str("page_token")?.as_deref(),
        )
        .await?;
    // Written out directly: a page holds up to tens of thousands of points, and building a
    // JSON tree of them first costs more than reading them.
    let key_json = Value::String(key).to_string();
    let mut body = String::with_capacity(32 + page.items.len() * (key_json.len() + 64));
    body.push_str("{\"metrics\":[");
    for (i, m) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"key\":");
        body.push_str(&key_json);
        body.push_str(",\"value\":");
        if m.value.is_finite() {
            let _ = write!(body, "{:?}", m.value);
        } else {
            body.push_str(&shapes::f64_value(m.value).to_string());
        }
        let _ = write!(body, ",\"timestamp\":{},\"step\":{}}}", m.timestamp, m.step);
    }
    body.push(']');
    if let Some(t) = page.next_page_token {
        let _ = write!(body, ",\"next_page_token\":{}", Value::String(t));
    }
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
