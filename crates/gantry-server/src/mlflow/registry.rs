//! Registered models, model versions and aliases.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use gantry_store::{KeyValue, NewRegisteredModelVersion, SearchQuery};
use serde_json::json;

use super::scope::Scope;
use super::{ApiError, ApiResult, Params, now_ms, require_write, shapes};
use crate::AppState;
use crate::auth::Principal;

fn version(p: &Params) -> Result<i64, ApiError> {
    let v = p.req_str("version")?;
    v.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::invalid(format!(
            "Model version must be a positive integer, got '{v}'"
        ))
    })
}

fn search_query(p: &Params) -> Result<SearchQuery, ApiError> {
    Ok(SearchQuery {
        filter: p.opt_str("filter")?.unwrap_or_default(),
        max_results: p.opt_usize("max_results")?,
        order_by: p.str_list("order_by")?,
        page_token: p.opt_str("page_token")?.filter(|t| !t.is_empty()),
        ..SearchQuery::default()
    })
}

pub async fn create_model(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let name = p.req_str("name")?;
    let description = p.opt_str("description")?;
    let tags = Scope::new(&s.store, &who).new_model_tags(p.key_values("tags")?)?;
    let m = s
        .store
        .create_registered_model(&name, description.as_deref(), &tags, now_ms())
        .await?;
    Ok(Json(
        json!({"registered_model": shapes::registered_model(&m)}),
    ))
}

pub async fn get_model(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let m = s.store.get_registered_model(&p.req_str("name")?).await?;
    let m = Scope::new(&s.store, &who).model(m).await?;
    Ok(Json(
        json!({"registered_model": shapes::registered_model(&m)}),
    ))
}

pub async fn update_model(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    let m = s
        .store
        .update_registered_model(
            &p.req_str("name")?,
            p.opt_str("description")?.as_deref(),
            now_ms(),
        )
        .await?;
    Ok(Json(
        json!({"registered_model": shapes::registered_model(&m)}),
    ))
}

pub async fn delete_model(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let name = p.req_str("name")?;
    Scope::new(&s.store, &who).require_model(&name).await?;
    s.store.delete_registered_model(&name).await?;
    Ok(Json(json!({})))
}

pub async fn search_models(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let mut page = s.store.search_registered_models(&search_query(&p)?).await?;
    Scope::new(&s.store, &who)
        .retain_models(&mut page.items)
        .await?;
    let mut out = json!({
        "registered_models": page.items.iter().map(shapes::registered_model).collect::<Vec<_>>(),
    });
    if let Some(t) = page.next_page_token {
        out["next_page_token"] = json!(t);
    }
    Ok(Json(out))
}

pub async fn set_model_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let tag = KeyValue::new(p.req_str("key")?, p.opt_str("value")?.unwrap_or_default());
    let name = p.req_str("name")?;
    let scope = Scope::new(&s.store, &who);
    scope.require_model(&name).await?;
    scope.may_change_model_tag(&tag.key)?;
    s.store.set_registered_model_tag(&name, &tag).await?;
    Ok(Json(json!({})))
}

pub async fn delete_model_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let (name, key) = (p.req_str("name")?, p.req_str("key")?);
    let scope = Scope::new(&s.store, &who);
    scope.require_model(&name).await?;
    scope.may_change_model_tag(&key)?;
    s.store.delete_registered_model_tag(&name, &key).await?;
    Ok(Json(json!({})))
}

/// `registered-models/rename`: the model with its versions, aliases and tags under a new
/// name. Refused while a deployment serves the model by its name (the deployment would lose it).
pub async fn rename_model(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let name = p.req_str("name")?;
    let new_name = p.req_str("new_name")?;
    Scope::new(&s.store, &who).require_model(&name).await?;
    for d in s.store.list_deployments().await? {
        let spec = &d.spec;
        let serves = [
            &spec["model"]["model"],
            &spec["canary"]["target"]["model"],
            &spec["shadow"]["model"],
        ]
        .iter()
        .any(|m| m.as_str() == Some(name.as_str()));
        if serves {
            return Err(ApiError::bad_request(format!(
                "registered model {name} is served by deployment {}: point the deployment at \
                 another model (or undeploy it) before renaming",
                d.name
            )));
        }
    }
    let m = s
        .store
        .rename_registered_model(&name, &new_name, now_ms())
        .await?;
    Ok(Json(
        json!({"registered_model": shapes::registered_model(&m)}),
    ))
}

/// `model-versions/transition-stage` with `stage` (None, Staging, Production, Archived) and
/// `archive_existing_versions`.
pub async fn transition_stage(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let name = p.req_str("name")?;
    let version = version(&p)?;
    let stage = p.req_str("stage")?;
    let archive = p.opt_bool("archive_existing_versions")?.unwrap_or(false);
    Scope::new(&s.store, &who).require_model(&name).await?;
    let v = s
        .store
        .transition_registered_model_version_stage(&name, version, &stage, archive, now_ms())
        .await?;
    Ok(Json(json!({"model_version": shapes::model_version(&v)})))
}

/// The newest version of each stage, or of the stages asked for.
pub async fn latest_versions(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let name = p.req_str("name")?;
    Scope::new(&s.store, &who).require_model(&name).await?;
    let versions = s.store.latest_registered_model_versions(&name).await?;
    let stages = p.str_list("stages")?;
    let shown: Vec<_> = versions
        .iter()
        .filter(|v| {
            stages.is_empty()
                || stages
                    .iter()
                    .any(|st| st.eq_ignore_ascii_case(&v.current_stage))
        })
        .map(shapes::model_version)
        .collect();
    Ok(Json(json!({"model_versions": shown})))
}

pub async fn set_alias(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    s.store
        .set_model_alias(
            &p.req_str("name")?,
            version(&p)?,
            &p.req_str("alias")?,
            now_ms(),
        )
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_alias(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    s.store
        .delete_model_alias(&p.req_str("name")?, &p.req_str("alias")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn get_by_alias(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    let v = s
        .store
        .registered_model_version_by_alias(&p.req_str("name")?, &p.req_str("alias")?)
        .await?;
    Ok(Json(json!({"model_version": shapes::model_version(&v)})))
}

pub async fn create_version(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let new = NewRegisteredModelVersion {
        name: p.req_str("name")?,
        source: p.req_str("source")?,
        run_id: p.opt_str("run_id")?.filter(|r| !r.is_empty()),
        description: p.opt_str("description")?,
        run_link: p.opt_str("run_link")?,
        user_id: Some(who.name.clone()),
        tags: p.key_values("tags")?,
    };
    let scope = Scope::new(&s.store, &who);
    scope.require_model(&new.name).await?;
    if let Some(run_id) = &new.run_id {
        scope.require_run(run_id).await?;
    }
    let v = s
        .store
        .create_registered_model_version(&new, now_ms())
        .await?;
    Ok(Json(json!({"model_version": shapes::model_version(&v)})))
}

pub async fn get_version(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    let v = s
        .store
        .get_registered_model_version(&p.req_str("name")?, version(&p)?)
        .await?;
    Ok(Json(json!({"model_version": shapes::model_version(&v)})))
}

pub async fn update_version(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    let v = s
        .store
        .update_registered_model_version(
            &p.req_str("name")?,
            version(&p)?,
            p.opt_str("description")?.as_deref(),
            now_ms(),
        )
        .await?;
    Ok(Json(json!({"model_version": shapes::model_version(&v)})))
}

pub async fn delete_version(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    s.store
        .delete_registered_model_version(&p.req_str("name")?, version(&p)?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn search_versions(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let mut page = s
        .store
        .search_registered_model_versions(&search_query(&p)?)
        .await?;
    Scope::new(&s.store, &who)
        .retain_versions(&mut page.items)
        .await?;
    let mut out = json!({
        "model_versions": page.items.iter().map(shapes::model_version).collect::<Vec<_>>(),
    });
    if let Some(t) = page.next_page_token {
        out["next_page_token"] = json!(t);
    }
    Ok(Json(out))
}

pub async fn set_version_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    let tag = KeyValue::new(p.req_str("key")?, p.opt_str("value")?.unwrap_or_default());
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    s.store
        .set_registered_model_version_tag(&p.req_str("name")?, version(&p)?, &tag)
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_version_tag(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    require_write(&who)?;
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    s.store
        .delete_registered_model_version_tag(&p.req_str("name")?, version(&p)?, &p.req_str("key")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn download_uri(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    Scope::new(&s.store, &who)
        .require_model(&p.req_str("name")?)
        .await?;
    let v = s
        .store
        .get_registered_model_version(&p.req_str("name")?, version(&p)?)
        .await?;
    Ok(Json(json!({"artifact_uri": v.source})))
}
