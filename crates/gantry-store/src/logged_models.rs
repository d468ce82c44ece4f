//! MLflow 3's logged models: a model with its own id (`m-<32 hex>`), artifact folder, tags,
//! immutable params and linked metrics, usually produced by a tracking run, which lists it as
//! an output. Deleting one is soft, as for tracking runs.
//!
//! Search uses the tracking search's filter grammar: conditions on attributes, `tags.<key>` and `params.<key>`, ordering on the same, and
//! page tokens that are offsets bound to the search (not to the page size).

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{Any, Executor};

use crate::error::StoreError;
use crate::store::{Store, column};
use crate::tracking::{
    KeyValue, MetricPoint, Page, SearchQuery, ViewType, limits, placeholders, validate_key,
};

use crate::tracking::search::{AttributeSet, SearchKey, parse_filter, parse_order_by};
use crate::tracking::{Stored, filter_and_order, page_bounds, search_hash};

/// The statuses a logged model can have (MLflow's entity names).
pub const LOGGED_MODEL_STATUSES: [&str; 3] = ["PENDING", "READY", "FAILED"];

/// Default `max_results` of a logged-model search (MLflow's).
pub const LOGGED_MODEL_SEARCH_DEFAULT: usize = 100;

/// What a logged-model search can look at.
const LOGGED_MODEL_ATTRIBUTES: AttributeSet = AttributeSet {
    what: "logged models",
    strings: &[
        ("name", "name"),
        ("model_id", "model_id"),
        ("model_type", "model_type"),
        ("status", "status"),
        ("source_run_id", "source_run_id"),
    ],
    numbers: &[
        ("creation_time", "creation_time"),
        ("creation_timestamp", "creation_time"),
        ("creation_timestamp_ms", "creation_time"),
        ("last_updated_timestamp", "last_update_time"),
        ("last_updated_timestamp_ms", "last_update_time"),
    ],
    allow_metrics: false,
    allow_params: true,
};

/// A metric point logged for a logged model.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedModelMetric {
    pub run_id: String,
    pub point: MetricPoint,
    /// Empty when the point names no dataset.
    pub dataset_name: String,
    pub dataset_digest: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoggedModel {
    /// `m-` and 32 lowercase hex characters.
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    /// PENDING, READY or FAILED.
    pub status: String,
    pub status_message: Option<String>,
    /// `<experiment artifact location>/models/<model_id>/artifacts`.
    pub artifact_location: String,
    /// "active" or "deleted".
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    /// Sorted by key.
    pub tags: Vec<KeyValue>,
    /// Sorted by key.
    pub params: Vec<KeyValue>,
    /// Every point, by key, step, timestamp.
    pub metrics: Vec<LoggedModelMetric>,
}

#[derive(Clone, Debug, Default)]
pub struct NewLoggedModel {
    pub experiment_id: String,
    /// A random name when absent.
    pub name: Option<String>,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    pub tags: Vec<KeyValue>,
    pub params: Vec<KeyValue>,
}

/// One model output of a run: the model and the step it was produced at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    pub model_id: String,
    pub step: i64,
}

fn invalid(what: impl Into<String>, detail: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        what: what.into(),
        detail: detail.into(),
    }
}

fn model_not_found(model_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "logged model",
        id: model_id.to_owned(),
    }
}

fn check_value(kind: &str, key: &str, value: &str, max: usize) -> Result<(), StoreError> {
    let len = value.chars().count();
    if len > max {
        return Err(invalid(
            format!("value of {kind} '{key}'"),
            format!("it has {len} characters; the limit is {max}"),
        ));
    }
    Ok(())
}

fn check_tags(tags: &[KeyValue]) -> Result<(), StoreError> {
    for t in tags {
        validate_key("tag", &t.key)?;
        check_value("tag", &t.key, &t.value, limits::TAG_VALUE_CHARS)?;
    }
    Ok(())
}

fn check_params(params: &[KeyValue]) -> Result<(), StoreError> {
    if params.len() > limits::BATCH_PARAMS {
        return Err(invalid(
            "params",
            format!(
                "a request may log at most {} params, it has {}",
                limits::BATCH_PARAMS,
                params.len()
            ),
        ));
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for p in params {
        validate_key("param", &p.key)?;
        check_value("param", &p.key, &p.value, limits::PARAM_VALUE_CHARS)?;
        if let Some(prev) = seen.insert(&p.key, &p.value)
            && prev != p.value
        {
            return Err(invalid(
                format!("param '{}'", p.key),
                format!(
                    "the request logs it twice with different values ('{prev}' and '{}')",
                    p.value
                ),
            ));
        }
    }
    Ok(())
}

fn check_status(status: &str) -> Result<(), StoreError> {
    if LOGGED_MODEL_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(invalid(
            format!("logged model status '{status}'"),
            format!("expected one of {}", LOGGED_MODEL_STATUSES.join(", ")),
        ))
    }
}

fn experiment_number(id: &str) -> Result<i64, StoreError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| StoreError::NotFound {
            kind: "experiment",
            id: id.to_owned(),
        })
}

fn random_model_name() -> String {
    format!("model-{}", hex::encode(rand::random::<[u8; 4]>()))
}

const MODEL_COLUMNS: &str = "model_id, experiment_id, name, source_run_id, model_type, status, \
                             status_message, artifact_location, lifecycle_stage, creation_time, \
                             last_update_time";

fn model_from_row(row: &AnyRow) -> Result<LoggedModel, StoreError> {
    Ok(LoggedModel {
        model_id: column(row, "model_id")?,
        experiment_id: column::<i64>(row, "experiment_id")?.to_string(),
        name: column(row, "name")?,
        source_run_id: column(row, "source_run_id")?,
        model_type: column(row, "model_type")?,
        status: column(row, "status")?,
        status_message: column(row, "status_message")?,
        artifact_location: column(row, "artifact_location")?,
        lifecycle_stage: column(row, "lifecycle_stage")?,
        creation_time: column(row, "creation_time")?,
        last_update_time: column(row, "last_update_time")?,
        tags: Vec::new(),
        params: Vec::new(),
        metrics: Vec::new(),
    })
}

/// Fails unless `model_id` names an active logged model.
async fn active_model<'e, E>(executor: E, model_id: &str) -> Result<(), StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT lifecycle_stage FROM mlflow_logged_models WHERE model_id = $1")
        .bind(model_id)
        .fetch_optional(executor)
        .await
        .map_err(StoreError::query(format!(
            "looking up logged model {model_id}"
        )))?
        .ok_or_else(|| model_not_found(model_id))?;
    let stage: String = column(&row, "lifecycle_stage")?;
    if stage == "active" {
        Ok(())
    } else {
        Err(model_not_found(model_id))
    }
}

/// Inserts params that are new; the same value again is accepted, another one refused.
async fn insert_params(
    tx: &mut sqlx::Transaction<'static, Any>,
    model_id: &str,
    params: &[KeyValue],
    op: &str,
) -> Result<(), StoreError> {
    for p in params {
        let old = sqlx::query(
            "SELECT value FROM mlflow_logged_model_params WHERE model_id = $1 AND key = $2",
        )
        .bind(model_id)
        .bind(&p.key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::query(op))?;
        match old {
            Some(row) => {
                let old: String = column(&row, "value")?;
                if old != p.value {
                    return Err(invalid(
                        format!("param '{}' of logged model {model_id}", p.key),
                        format!(
                            "changing param values is not allowed: it was already logged with \
                             value '{old}', attempted new value '{}'",
                            p.value
                        ),
                    ));
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO mlflow_logged_model_params (model_id, key, value) \
                     VALUES ($1, $2, $3)",
                )
                .bind(model_id)
                .bind(&p.key)
                .bind(&p.value)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::query(op))?;
            }
        }
    }
    Ok(())
}

async fn upsert_tags(
    tx: &mut sqlx::Transaction<'static, Any>,
    model_id: &str,
    tags: &[KeyValue],
    op: &str,
) -> Result<(), StoreError> {
    for t in tags {
        sqlx::query(
            "INSERT INTO mlflow_logged_model_tags (model_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(model_id)
        .bind(&t.key)
        .bind(&t.value)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query(op))?;
    }
    Ok(())
}

fn field(m: &LoggedModel, key: &SearchKey) -> Option<Stored> {
    let find = |list: &[KeyValue], k: &str| {
        list.iter()
            .find(|kv| kv.key == k)
            .map(|kv| Stored::Str(kv.value.clone()))
    };
    match key {
        SearchKey::Attribute(a) => match a.as_str() {
            "name" => Some(Stored::Str(m.name.clone())),
            "model_id" => Some(Stored::Str(m.model_id.clone())),
            "model_type" => m.model_type.clone().map(Stored::Str),
            "status" => Some(Stored::Str(m.status.clone())),
            "source_run_id" => m.source_run_id.clone().map(Stored::Str),
            "creation_time" => Some(Stored::Num(m.creation_time as f64)),
            "last_update_time" => Some(Stored::Num(m.last_update_time as f64)),
            _ => None,
        },
        SearchKey::Tag(k) => find(&m.tags, k),
        SearchKey::Param(k) => find(&m.params, k),
        SearchKey::Metric(_) => None,
    }
}

impl Store {
    /// Creates a PENDING logged model in an active experiment; its artifacts go below the
    /// experiment's artifact location, in `models/<model_id>/artifacts`.
    pub async fn create_logged_model(
        &self,
        new: &NewLoggedModel,
        now_ms: i64,
    ) -> Result<LoggedModel, StoreError> {
        let exp_id = experiment_number(&new.experiment_id)?;
        let name = match new.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => n.to_owned(),
            None => random_model_name(),
        };
        if name.trim().is_empty() || name.chars().count() > limits::NAME_CHARS {
            return Err(invalid(
                "logged model name",
                format!(
                    "give 1 to {} characters, not only spaces",
                    limits::NAME_CHARS
                ),
            ));
        }
        check_tags(&new.tags)?;
        check_params(&new.params)?;
        let model_id = format!("m-{}", hex::encode(rand::random::<[u8; 16]>()));
        let op = || {
            format!(
                "creating a logged model in experiment {}",
                new.experiment_id
            )
        };
        let mut tx = self.begin_write(&op()).await?;
        let row = sqlx::query(
            "SELECT lifecycle_stage, artifact_location FROM mlflow_experiments \
             WHERE experiment_id = $1",
        )
        .bind(exp_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "experiment",
            id: new.experiment_id.clone(),
        })?;
        let stage: String = column(&row, "lifecycle_stage")?;
        if stage != "active" {
            return Err(invalid(
                format!("experiment {}", new.experiment_id),
                "logged models can only be created in an active experiment: restore it first",
            ));
        }
        let location: String = column(&row, "artifact_location")?;
        let artifact_location = format!(
            "{}/models/{model_id}/artifacts",
            location.trim_end_matches('/')
        );
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO mlflow_logged_models ({MODEL_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, 'PENDING', NULL, $6, 'active', $7, $7)"
        )))
        .bind(&model_id)
        .bind(exp_id)
        .bind(&name)
        .bind(new.source_run_id.as_deref().filter(|r| !r.is_empty()))
        .bind(new.model_type.as_deref().filter(|t| !t.is_empty()))
        .bind(&artifact_location)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        insert_params(&mut tx, &model_id, &new.params, &op()).await?;
        upsert_tags(&mut tx, &model_id, &new.tags, &op()).await?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_logged_model(&model_id, false).await
    }

    /// A logged model with its tags, params and metrics; a deleted one only with
    /// `allow_deleted`.
    pub async fn get_logged_model(
        &self,
        model_id: &str,
        allow_deleted: bool,
    ) -> Result<LoggedModel, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM mlflow_logged_models WHERE model_id = $1"
        )))
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "looking up logged model {model_id}"
        )))?
        .ok_or_else(|| model_not_found(model_id))?;
        let model = model_from_row(&row)?;
        if model.lifecycle_stage != "active" && !allow_deleted {
            return Err(model_not_found(model_id));
        }
        let mut models = self.hydrate_logged_models(vec![model], true).await?;
        models.pop().ok_or_else(|| model_not_found(model_id))
    }

    /// Sets the status (PENDING, READY or FAILED) of an active logged model.
    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<LoggedModel, StoreError> {
        check_status(status)?;
        let op = || format!("finalizing logged model {model_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_model(&mut *tx, model_id).await?;
        sqlx::query(
            "UPDATE mlflow_logged_models SET status = $1, last_update_time = $2 \
             WHERE model_id = $3",
        )
        .bind(status)
        .bind(now_ms)
        .bind(model_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_logged_model(model_id, false).await
    }

    /// Soft-deletes a logged model: it is no longer found (but by `allow_deleted`) nor
    /// searched.
    pub async fn delete_logged_model(&self, model_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let op = || format!("deleting logged model {model_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_model(&mut *tx, model_id).await?;
        sqlx::query(
            "UPDATE mlflow_logged_models SET lifecycle_stage = 'deleted', last_update_time = $1 \
             WHERE model_id = $2",
        )
        .bind(now_ms)
        .bind(model_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Sets tags of an active logged model (a key set again takes the new value).
    pub async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[KeyValue],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        check_tags(tags)?;
        let op = || format!("tagging logged model {model_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_model(&mut *tx, model_id).await?;
        upsert_tags(&mut tx, model_id, tags, &op()).await?;
        touch(&mut tx, model_id, now_ms, &op()).await?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Removes a tag of an active logged model (not found if it has none by that key).
    pub async fn delete_logged_model_tag(
        &self,
        model_id: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let op = || format!("deleting tag {key} of logged model {model_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_model(&mut *tx, model_id).await?;
        let done =
            sqlx::query("DELETE FROM mlflow_logged_model_tags WHERE model_id = $1 AND key = $2")
                .bind(model_id)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "logged model",
                id: format!("{model_id} (tag '{key}')"),
            });
        }
        touch(&mut tx, model_id, now_ms, &op()).await?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Logs params of an active logged model; params are immutable, as a run's are.
    pub async fn log_logged_model_params(
        &self,
        model_id: &str,
        params: &[KeyValue],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        check_params(params)?;
        let op = || format!("logging params of logged model {model_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_model(&mut *tx, model_id).await?;
        insert_params(&mut tx, model_id, params, &op()).await?;
        touch(&mut tx, model_id, now_ms, &op()).await?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Records metric points of tracking run `run_id` as linked to logged models (each
    /// model must be active). The run's own copy is logged separately (`log_batch`).
    pub async fn log_logged_model_metrics(
        &self,
        run_id: &str,
        metrics: &[LoggedModelMetricInput],
    ) -> Result<(), StoreError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let op = || format!("linking metrics of tracking run {run_id} to logged models");
        let mut tx = self.begin_write(&op()).await?;
        let models: HashSet<&str> = metrics.iter().map(|m| m.model_id.as_str()).collect();
        for model_id in models {
            active_model(&mut *tx, model_id).await?;
        }
        for m in metrics {
            let (value, is_nan) = if m.point.value.is_nan() {
                (0.0, 1_i64)
            } else {
                (m.point.value, 0)
            };
            sqlx::query(
                "INSERT INTO mlflow_logged_model_metrics (model_id, run_uuid, key, step, \
                 timestamp_ms, value, is_nan, dataset_name, dataset_digest) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(&m.model_id)
            .bind(run_id)
            .bind(&m.point.key)
            .bind(m.point.step)
            .bind(m.point.timestamp)
            .bind(value)
            .bind(is_nan)
            .bind(&m.dataset_name)
            .bind(&m.dataset_digest)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Records logged models as outputs of an active tracking run (`runs/outputs`); logging
    /// the same output again changes nothing.
    pub async fn log_run_outputs(
        &self,
        run_id: &str,
        outputs: &[RunOutput],
    ) -> Result<(), StoreError> {
        let op = || format!("logging outputs of tracking run {run_id}");
        let mut tx = self.begin_write(&op()).await?;
        let row = sqlx::query("SELECT lifecycle_stage FROM mlflow_runs WHERE run_uuid = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "tracking run",
                id: run_id.to_owned(),
            })?;
        let stage: String = column(&row, "lifecycle_stage")?;
        if stage != "active" {
            return Err(invalid(
                format!("tracking run {run_id}"),
                format!(
                    "the run must be in the 'active' state to be changed, it is '{stage}': \
                     restore it first"
                ),
            ));
        }
        for o in outputs {
            active_model(&mut *tx, &o.model_id).await?;
            sqlx::query(
                "INSERT INTO mlflow_run_outputs (run_uuid, model_id, step) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(run_id)
            .bind(&o.model_id)
            .bind(o.step)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// The model outputs of a tracking run, by step then model id.
    pub async fn run_outputs(&self, run_id: &str) -> Result<Vec<RunOutput>, StoreError> {
        let rows = sqlx::query(
            "SELECT model_id, step FROM mlflow_run_outputs WHERE run_uuid = $1 \
             ORDER BY step, model_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading outputs of tracking run {run_id}"
        )))?;
        rows.iter()
            .map(|r| {
                Ok(RunOutput {
                    model_id: column(r, "model_id")?,
                    step: column(r, "step")?,
                })
            })
            .collect()
    }

    /// MLflow's logged-model search: models of the given experiments matching every
    /// condition of the filter (attributes, `tags.<key>`, `params.<key>`), ordered by
    /// `order_by` clauses (`name ASC`, `creation_timestamp DESC`, …) then newest first, then
    /// by id. An empty list of experiments finds nothing.
    pub async fn search_logged_models(
        &self,
        query: &SearchQuery,
    ) -> Result<Page<LoggedModel>, StoreError> {
        let conditions = parse_filter(&query.filter, &LOGGED_MODEL_ATTRIBUTES)?;
        let orders = query
            .order_by
            .iter()
            .map(|o| parse_order_by(o, &LOGGED_MODEL_ATTRIBUTES))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids = Vec::with_capacity(query.experiment_ids.len());
        for e in &query.experiment_ids {
            ids.push(
                e.parse::<i64>()
                    .map_err(|_| invalid(format!("experiment id '{e}'"), "expected a number"))?,
            );
        }
        if ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let stage = match query.view {
            ViewType::ActiveOnly => " AND lifecycle_stage = 'active'",
            ViewType::DeletedOnly => " AND lifecycle_stage = 'deleted'",
            ViewType::All => "",
        };
        let sql = format!(
            "SELECT {MODEL_COLUMNS} FROM mlflow_logged_models WHERE experiment_id IN {}{stage}",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for id in &ids {
            q = q.bind(*id);
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("searching logged models"))?;
        let mut candidates = rows
            .iter()
            .map(model_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let needs_values = conditions
            .iter()
            .map(|c| &c.key)
            .chain(orders.iter().map(|o| &o.key))
            .any(|k| matches!(k, SearchKey::Tag(_) | SearchKey::Param(_)));
        if needs_values {
            candidates = self.hydrate_logged_models(candidates, false).await?;
        }
        filter_and_order(&mut candidates, &conditions, &orders, field, |a, b| {
            b.creation_time
                .cmp(&a.creation_time)
                .then_with(|| a.model_id.cmp(&b.model_id))
        });
        // Page tokens are offsets bound to the search, not to the page size.
        let (start, end, next) = page_bounds(
            query,
            search_hash("logged-models", query),
            LOGGED_MODEL_SEARCH_DEFAULT,
            candidates.len(),
        )?;
        let page: Vec<LoggedModel> = candidates.drain(start..end).collect();
        Ok(Page {
            items: self.hydrate_logged_models(page, true).await?,
            next_page_token: next,
        })
    }

    /// Adds tags and params (and, with `metrics`, metric points) to logged models, keeping
    /// their order.
    async fn hydrate_logged_models(
        &self,
        models: Vec<LoggedModel>,
        metrics: bool,
    ) -> Result<Vec<LoggedModel>, StoreError> {
        let mut tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
        let mut params: HashMap<String, Vec<KeyValue>> = HashMap::new();
        let mut points: HashMap<String, Vec<LoggedModelMetric>> = HashMap::new();
        let op = "reading tags, params and metrics of logged models";
        for chunk in models.chunks(500) {
            let ph = placeholders(1, chunk.len());
            let mut queries = vec![
                format!(
                    "SELECT model_id, key, value FROM mlflow_logged_model_tags \
                     WHERE model_id IN {ph}"
                ),
                format!(
                    "SELECT model_id, key, value FROM mlflow_logged_model_params \
                     WHERE model_id IN {ph}"
                ),
            ];
            if metrics {
                queries.push(format!(
                    "SELECT model_id, run_uuid, key, step, timestamp_ms, value, is_nan, \
                     dataset_name, dataset_digest FROM mlflow_logged_model_metrics \
                     WHERE model_id IN {ph}"
                ));
            }
            for (i, sql) in queries.iter().enumerate() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for m in chunk {
                    q = q.bind(&m.model_id);
                }
                let rows = q
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::query(op))?;
                for r in &rows {
                    let model: String = column(r, "model_id")?;
                    let key: String = column(r, "key")?;
                    match i {
                        0 => tags
                            .entry(model)
                            .or_default()
                            .push(KeyValue::new(key, column::<String>(r, "value")?)),
                        1 => params
                            .entry(model)
                            .or_default()
                            .push(KeyValue::new(key, column::<String>(r, "value")?)),
                        _ => {
                            let value: f64 = column(r, "value")?;
                            let is_nan: i64 = column(r, "is_nan")?;
                            points.entry(model).or_default().push(LoggedModelMetric {
                                run_id: column(r, "run_uuid")?,
                                point: MetricPoint {
                                    key,
                                    value: if is_nan != 0 { f64::NAN } else { value },
                                    timestamp: column(r, "timestamp_ms")?,
                                    step: column(r, "step")?,
                                },
                                dataset_name: column(r, "dataset_name")?,
                                dataset_digest: column(r, "dataset_digest")?,
                            });
                        }
                    }
                }
            }
        }
        // Sorted bytewise in Rust: PostgreSQL's collation may order keys differently.
        Ok(models
            .into_iter()
            .map(|mut m| {
                m.tags = tags.remove(&m.model_id).unwrap_or_default();
                m.params = params.remove(&m.model_id).unwrap_or_default();
                m.metrics = points.remove(&m.model_id).unwrap_or_default();
                m.tags.sort_by(|a, b| a.key.cmp(&b.key));
                m.params.sort_by(|a, b| a.key.cmp(&b.key));
                m.metrics.sort_by(|a, b| {
                    (&a.point.key, a.point.step, a.point.timestamp, &a.run_id).cmp(&(
                        &b.point.key,
                        b.point.step,
                        b.point.timestamp,
                        &b.run_id,
                    ))
                });
                m
            })
            .collect())
    }
}

/// A metric point to link to a logged model ([`Store::log_logged_model_metrics`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedModelMetricInput {
    pub model_id: String,
    pub point: MetricPoint,
    pub dataset_name: String,
    pub dataset_digest: String,
}

async fn touch(
    tx: &mut sqlx::Transaction<'static, Any>,
    model_id: &str,
    now_ms: i64,
    op: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE mlflow_logged_models SET last_update_time = $1 WHERE model_id = $2")
        .bind(now_ms)
        .bind(model_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query(op))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_grammar_knows_logged_model_keys() {
        for ok in [
            "name = 'model'",
            "tags.k = 'v' AND params.lr = '0.1'",
            "status = 'READY' and source_run_id = 'abc'",
            "creation_timestamp > 5",
            "model_type LIKE 'agent%'",
        ] {
            parse_filter(ok, &LOGGED_MODEL_ATTRIBUTES).unwrap();
        }
        for bad in [
            "metrics.acc > 1",
            "run_name = 'x'",
            "name = 'a' OR name = 'b'",
        ] {
            let err = parse_filter(bad, &LOGGED_MODEL_ATTRIBUTES).unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{bad}: {err}");
        }
        parse_order_by("name DESC", &LOGGED_MODEL_ATTRIBUTES).unwrap();
        parse_order_by("creation_timestamp", &LOGGED_MODEL_ATTRIBUTES).unwrap();
    }
}
