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
use std::borrow::Cow;
use std::fmt::Write as _;

use super::logged_models::{check_linked, linked_metric};
use super::scope::Scope;
use super::{
    ApiError, ApiResult, Params, RawRequest, key_value, now_ms, require_write, shapes, type_error,
};
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

/// The common shape of a `runs/log-batch` body — a run id and plain metric points, no params,
/// tags or linked models — read straight into metric points, without a JSON tree. Anything
/// else (or anything wrong) is None, and the handler reads the body the general way, which
/// also words its errors.
#[derive(serde::Deserialize)]
struct PlainBatch<'a> {
    #[serde(borrow, default)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    run_uuid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metrics: Option<Vec<PlainMetric<'a>>>,
    #[serde(default)]
    params: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    tags: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(serde::Deserialize)]
struct PlainMetric<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    step: Option<i64>,
    #[serde(borrow, default)]
    model_id: Option<Cow<'a, str>>,
}

fn plain_batch(body: &[u8]) -> Option<(String, Vec<MetricPoint>)> {
    let b: PlainBatch<'_> = serde_json::from_slice(body).ok()?;
    if b.params.is_some_and(|p| !p.is_empty()) || b.tags.is_some_and(|t| !t.is_empty()) {
        return None;
    }
    let id = b
        .run_id
        .filter(|s| !s.is_empty())
        .or(b.run_uuid.filter(|s| !s.is_empty()))?;
    let metrics = b
        .metrics
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            if m.model_id.is_some_and(|id| !id.is_empty()) {
                return None;
            }
            Some(MetricPoint {
                key: m.key.filter(|k| !k.is_empty())?.into_owned(),
                value: m.value?,
                timestamp: m.timestamp?,
                step: m.step.unwrap_or(0),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((id.into_owned(), metrics))
}

pub async fn log_batch(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    raw: RawRequest,
) -> ApiResult {
    require_write(&who)?;
    if raw.query.is_empty()
        && let Some((id, metrics)) = plain_batch(&raw.body)
    {
        Scope::new(&s.store, &who).require_run(&id).await?;
        s.store
            .log_batch_owned(&id, metrics, Vec::new(), Vec::new())
            .await?;
        return ok();
    }
    let p = Params::parse(&raw.query, &raw.body)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn point(key: &str, value: f64, timestamp: i64, step: i64) -> MetricPoint {
        MetricPoint {
            key: key.into(),
            value,
            timestamp,
            step,
        }
    }

    #[test]
    fn plain_batches_are_read_directly() {
        let body = br#"{"run_id": "r1", "metrics": [
            {"key": "loss", "value": 0.5, "timestamp": 10, "step": 3},
            {"key": "acc", "value": 1, "timestamp": 11},
            {"key": "a\u00e9", "value": -2e3, "timestamp": 12, "step": -1, "model_id": ""}],
            "params": [], "tags": null, "unknown": {"x": 1}}"#;
        let (id, metrics) = plain_batch(body).unwrap();
        assert_eq!(id, "r1");
        assert_eq!(
            metrics,
            [
                point("loss", 0.5, 10, 3),
                point("acc", 1.0, 11, 0),
                point("aé", -2000.0, 12, -1)
            ]
        );
        // Older clients name the run run_uuid; an empty run_id does not hide it.
        let (id, metrics) = plain_batch(br#"{"run_id": "", "run_uuid": "r2"}"#).unwrap();
        assert_eq!((id.as_str(), metrics.len()), ("r2", 0));
    }

    #[test]
    fn anything_else_takes_the_general_path() {
        for body in [
            &br#"{"metrics": [{"key": "m", "value": 1, "timestamp": 1}]}"#[..],
            br#"{"run_id": 7, "metrics": []}"#,
            br#"{"run_id": "r", "params": [{"key": "p", "value": "1"}]}"#,
            br#"{"run_id": "r", "tags": [{"key": "t", "value": "1"}]}"#,
            br#"{"run_id": "r", "metrics": [{"value": 1, "timestamp": 1}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "", "value": 1, "timestamp": 1}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "timestamp": 1}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": null, "timestamp": 1}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": "NaN", "timestamp": 1}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": 1}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": 1, "timestamp": "5"}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": 1, "timestamp": 1.0}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": "2"}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": 1, "timestamp": 1, "model_id": "m-1"}]}"#,
            br#"{"run_id": "r", "metrics": [{"key": "m", "value": 1, "timestamp": 1, "key": "n"}]}"#,
            br#"{"run_id": "r", "metrics": {"key": "m"}}"#,
            br#"{"run_id": "r", "metrics": [7]}"#,
            br#"{"run_id": "r", "metrics": []"#,
            br#"[1]"#,
            b"",
        ] {
            assert!(
                plain_batch(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
