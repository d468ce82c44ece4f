//! MLflow 3's logged models (`/logged-models/...`) and run outputs (`runs/outputs`): what
//! `mlflow.<flavor>.log_model` creates, uploads into and finalizes, and what
//! `search_logged_models` finds. A logged model belongs to its experiment's project.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use gantry_store::{LoggedModelMetricInput, NewLoggedModel, RunOutput, SearchQuery, ViewType};
use serde_json::{Map, Value, json};

use super::scope::Scope;
use super::{ApiError, ApiResult, Params, now_ms, require_write, shapes, type_error};
use crate::AppState;
use crate::auth::Principal;

fn ok() -> ApiResult {
    Ok(Json(json!({})))
}

fn model(m: &gantry_store::LoggedModel) -> ApiResult {
    Ok(Json(json!({"model": shapes::logged_model(m)})))
}

/// `status` of `FinalizeLoggedModel`: MLflow's enum name or number (proto JSON allows both).
fn status(p: &Params) -> Result<&'static str, ApiError> {
    let v = p.get("status").ok_or_else(|| ApiError::missing("status"))?;
    let parsed = match v {
        Value::String(s) => match s.as_str() {
            "LOGGED_MODEL_PENDING" | "PENDING" | "1" => Some("PENDING"),
            "LOGGED_MODEL_READY" | "READY" | "2" => Some("READY"),
            "LOGGED_MODEL_UPLOAD_FAILED" | "FAILED" | "3" => Some("FAILED"),
            _ => None,
        },
        other => match shapes::as_i64(other) {
            Some(1) => Some("PENDING"),
            Some(2) => Some("READY"),
            Some(3) => Some("FAILED"),
            _ => None,
        },
    };
    parsed.ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid value {v} for parameter 'status': use LOGGED_MODEL_PENDING, \
             LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED"
        ))
    })
}

/// `order_by` of a search: `[{"field_name": ..., "ascending": ...}]` (or clauses such as
/// `name DESC` from a query string), as the store's clauses.
fn order_by(p: &Params) -> Result<Vec<String>, ApiError> {
    let items = match p.get("order_by") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.clone(),
        Some(one) => vec![one.clone()],
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(clause) => Ok(clause.clone()),
            Value::Object(o) => order_clause(o),
            other => Err(type_error("order_by", "a list of objects", other)),
        })
        .collect()
}

fn order_clause(o: &Map<String, Value>) -> Result<String, ApiError> {
    let field = match o.get("field_name") {
        Some(Value::String(f)) if !f.is_empty() => f.clone(),
        None | Some(Value::Null) => return Err(ApiError::missing("order_by.field_name")),
        Some(other) => return Err(type_error("order_by.field_name", "a string", other)),
    };
    let ascending = match o.get("ascending") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(type_error("order_by.ascending", "a boolean", other)),
    };
    if o.get("dataset_name")
        .is_some_and(|d| !d.is_null() && d != "")
    {
        return Err(ApiError::invalid(
            "Invalid value for parameter 'order_by.dataset_name': ordering by a dataset's \
             metrics is not supported by gantry; order by name, creation_timestamp, \
             last_updated_timestamp, tags.<key> or params.<key>",
        ));
    }
    // Backticks keep a key with spaces or dots in one piece.
    let field = match field.split_once('.') {
        Some((entity @ ("tags" | "tag" | "params" | "param"), key)) => {
            format!("{entity}.`{key}`")
        }
        _ => field,
    };
    Ok(format!(
        "{field} {}",
        if ascending { "ASC" } else { "DESC" }
    ))
}

pub async fn create(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let experiment_id = p.req_str("experiment_id")?;
    let scope = Scope::new(&s.store, &who);
    scope.require_experiment(&experiment_id).await?;
    let source_run_id = p.opt_str("source_run_id")?.filter(|r| !r.is_empty());
    if let Some(run) = &source_run_id {
        scope.require_run(run).await?;
    }
    let new = NewLoggedModel {
        experiment_id,
        name: p.opt_str("name")?.filter(|n| !n.is_empty()),
        source_run_id,
        model_type: p.opt_str("model_type")?.filter(|t| !t.is_empty()),
        tags: p.key_values("tags")?,
        params: p.key_values("params")?,
    };
    let m = s.store.create_logged_model(&new, now_ms()).await?;
    model(&m)
}

pub async fn get(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(model_id): Path<String>,
    p: Params,
) -> ApiResult {
    let allow_deleted = p.opt_bool("allow_deleted")?.unwrap_or(false);
    let m = s.store.get_logged_model(&model_id, allow_deleted).await?;
    let m = Scope::new(&s.store, &who)
        .logged_model(m, &model_id)
        .await?;
    model(&m)
}

pub async fn finalize(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(model_id): Path<String>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_logged_model(&model_id)
        .await?;
    let status = status(&p)?;
    let m = s
        .store
        .finalize_logged_model(&model_id, status, now_ms())
        .await?;
    model(&m)
}

/// (Like every handler here it reads the request's body — MLflow sends one with DELETE too: a
/// body left unread makes the server close a keep-alive connection the client reuses.)
pub async fn delete(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(model_id): Path<String>,
    _body: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_logged_model(&model_id)
        .await?;
    s.store.delete_logged_model(&model_id, now_ms()).await?;
    ok()
}

pub async fn set_tags(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(model_id): Path<String>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_logged_model(&model_id)
        .await?;
    let tags = p.key_values("tags")?;
    s.store
        .set_logged_model_tags(&model_id, &tags, now_ms())
        .await?;
    ok()
}

pub async fn delete_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((model_id, key)): Path<(String, String)>,
    _body: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_logged_model(&model_id)
        .await?;
    s.store
        .delete_logged_model_tag(&model_id, &key, now_ms())
        .await?;
    ok()
}

pub async fn log_params(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(model_id): Path<String>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_logged_model(&model_id)
        .await?;
    let params = p.key_values("params")?;
    s.store
        .log_logged_model_params(&model_id, &params, now_ms())
        .await?;
    ok()
}

pub async fn search(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    if !p.objects("datasets")?.is_empty() {
        return Err(ApiError::invalid(
            "Invalid value for parameter 'datasets': filtering logged models by the metrics of \
             a dataset is not supported by gantry",
        ));
    }
    let q = SearchQuery {
        experiment_ids: Scope::new(&s.store, &who)
            .searchable_experiment_ids(p.str_list("experiment_ids")?)
            .await?,
        filter: p.opt_str("filter")?.unwrap_or_default(),
        view: ViewType::ActiveOnly,
        max_results: p.opt_usize("max_results")?,
        order_by: order_by(&p)?,
        page_token: p.opt_str("page_token")?.filter(|t| !t.is_empty()),
    };
    let page = s.store.search_logged_models(&q).await?;
    let mut out = json!({
        "models": page.items.iter().map(shapes::logged_model).collect::<Vec<_>>(),
    });
    if let Some(t) = page.next_page_token {
        out["next_page_token"] = json!(t);
    }
    Ok(Json(out))
}

/// `runs/outputs`: the logged models a run produced (`[{"model_id": ..., "step": ...}]`).
pub async fn log_outputs(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let run_id = p.run_id()?;
    let scope = Scope::new(&s.store, &who);
    scope.require_run(&run_id).await?;
    let mut outputs = Vec::new();
    for o in p.objects("models")? {
        let model_id = match o.get("model_id") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            None | Some(Value::Null) => return Err(ApiError::missing("models.model_id")),
            Some(other) => return Err(type_error("models.model_id", "a string", other)),
        };
        let step = match o.get("step") {
            None | Some(Value::Null) => 0,
            Some(v) => {
                shapes::as_i64(v).ok_or_else(|| type_error("models.step", "an integer", v))?
            }
        };
        scope.require_logged_model(&model_id).await?;
        outputs.push(RunOutput { model_id, step });
    }
    s.store.log_run_outputs(&run_id, &outputs).await?;
    ok()
}

/// The logged model a metric (`o`: a `log-metric` request or a `log-batch` item) names, if
/// any: MLflow 3 links such points to the model as well as logging them to the run.
pub(super) fn linked_metric(
    o: &Map<String, Value>,
    list: &str,
    point: &gantry_store::MetricPoint,
) -> Result<Option<LoggedModelMetricInput>, ApiError> {
    let text = |f: &str| -> Result<String, ApiError> {
        let name = if list.is_empty() {
            f.to_owned()
        } else {
            format!("{list}.{f}")
        };
        match o.get(f) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(type_error(&name, "a string", other)),
        }
    };
    let model_id = text("model_id")?;
    if model_id.is_empty() {
        return Ok(None);
    }
    Ok(Some(LoggedModelMetricInput {
        model_id,
        point: point.clone(),
        dataset_name: text("dataset_name")?,
        dataset_digest: text("dataset_digest")?,
    }))
}

/// Refuses (before anything is logged) metrics linked to logged models that do not exist,
/// are deleted, or are not the caller's.
pub(super) async fn check_linked(
    s: &AppState,
    who: &Principal,
    linked: &[LoggedModelMetricInput],
) -> Result<(), ApiError> {
    let scope = Scope::new(&s.store, who);
    let mut seen = std::collections::HashSet::new();
    for m in linked {
        if seen.insert(m.model_id.as_str()) {
            let found = s.store.get_logged_model(&m.model_id, false).await?;
            scope.logged_model(found, &m.model_id).await?;
        }
    }
    Ok(())
}
