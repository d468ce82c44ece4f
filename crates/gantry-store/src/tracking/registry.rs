//! MLflow's view of the model registry: the gantry registry's models, versions and aliases
//! (see `models.rs`), plus registered-model tags and MLflow's version fields (status, user,
//! run link, tags). A version created here has flavor "mlflow" and its `source` URI as
//! artifact digest, so gantry resolves it like any other version.

use std::collections::HashMap;

use sqlx::any::AnyRow;

use super::search::{Comparator, Condition, FieldValue, Literal};
use super::{
    KeyValue, MODEL_ATTRIBUTES, MODEL_VERSION_ATTRIBUTES, Page, SearchKey, SearchQuery, Stored,
    compare_values, invalid, limits, page_bounds, parse_filter, parse_order_by, search_hash,
    validate_key, validate_value,
};
use crate::error::StoreError;
use crate::models::validate_model_name;
use crate::store::{Store, column};

/// Versions created through the MLflow API are ready at once: their files are already wherever
/// `source` points.
const READY: &str = "READY";

#[derive(Clone, Debug, PartialEq)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: Option<String>,
    pub tags: Vec<KeyValue>,
    /// (alias, version), by alias.
    pub aliases: Vec<(String, i64)>,
    /// The newest version of each stage that has one (MLflow's `latest_versions`).
    pub latest_versions: Vec<RegisteredModelVersion>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RegisteredModelVersion {
    pub name: String,
    pub version: i64,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub user_id: Option<String>,
    /// Always "None": stages are replaced by aliases.
    pub current_stage: String,
    pub description: Option<String>,
    pub source: String,
    pub run_id: Option<String>,
    pub status: String,
    pub status_message: Option<String>,
    pub run_link: Option<String>,
    pub tags: Vec<KeyValue>,
    pub aliases: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct NewRegisteredModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub description: Option<String>,
    pub run_link: Option<String>,
    pub user_id: Option<String>,
    pub tags: Vec<KeyValue>,
}

/// Records that a version changed now (its `last_updated_timestamp`).
async fn touch_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    name: &str,
    version: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mlflow_model_version_meta (model, version, user_id, status, \
         status_message, run_link, updated_at_ms) VALUES ($1, $2, NULL, $3, NULL, NULL, $4) \
         ON CONFLICT (model, version) DO UPDATE SET updated_at_ms = excluded.updated_at_ms",
    )
    .bind(name)
    .bind(version)
    .bind(READY)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// MLflow's model version stages, as MLflow spells them.
pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

fn model_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "model",
        id: name.to_owned(),
    }
}

fn validate_tags(tags: &[KeyValue]) -> Result<(), StoreError> {
    for t in tags {
        validate_key("tag", &t.key)?;
        validate_value("tag", &t.key, &t.value, limits::TAG_VALUE_CHARS)?;
    }
    Ok(())
}

fn version_from_row(row: &AnyRow) -> Result<RegisteredModelVersion, StoreError> {
    let created: i64 = column(row, "created_at_ms")?;
    Ok(RegisteredModelVersion {
        name: column(row, "model")?,
        version: column(row, "version")?,
        creation_timestamp: created,
        last_updated_timestamp: column::<Option<i64>>(row, "updated_at_ms")?.unwrap_or(created),
        user_id: column(row, "user_id")?,
        current_stage: column(row, "stage")?,
        description: column(row, "description")?,
        source: column(row, "artifact_digest")?,
        run_id: column(row, "run_id")?,
        status: column::<Option<String>>(row, "status")?.unwrap_or_else(|| READY.to_owned()),
        status_message: column(row, "status_message")?,
        run_link: column(row, "run_link")?,
        tags: Vec::new(),
        aliases: Vec::new(),
    })
}

impl Store {
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[KeyValue],
        now_ms: i64,
    ) -> Result<RegisteredModel, StoreError> {
        validate_model_name(name)?;
        validate_tags(tags)?;
        let op = || format!("creating registered model {name}");
        let mut tx = self.begin_write(&op()).await?;
        let done = sqlx::query(
            "INSERT INTO models (name, description, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description.filter(|d| !d.is_empty()))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                kind: "registered model",
                id: name.to_owned(),
            });
        }
        for t in tags {
            sqlx::query(
                "INSERT INTO mlflow_registered_model_tags (model, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (model, key) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_registered_model(name).await
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, StoreError> {
        let mut models = self.load_registered_models(Some(name)).await?;
        models.pop().ok_or_else(|| model_not_found(name))
    }

    /// Sets (Some) or clears (Some("")) the description.
    pub async fn update_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        now_ms: i64,
    ) -> Result<RegisteredModel, StoreError> {
        let done = sqlx::query(
            "UPDATE models SET description = CASE WHEN $1 = 1 THEN $2 ELSE description END, \
             updated_at_ms = $3 WHERE name = $4",
        )
        .bind(i64::from(description.is_some()))
        .bind(description.filter(|d| !d.is_empty()))
        .bind(now_ms)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "updating registered model {name}"
        )))?;
        if done.rows_affected() == 0 {
            return Err(model_not_found(name));
        }
        self.get_registered_model(name).await
    }

    /// Deletes a model with its versions, aliases and tags.
    pub async fn delete_registered_model(&self, name: &str) -> Result<(), StoreError> {
        let op = || format!("deleting registered model {name}");
        let mut tx = self.begin_write(&op()).await?;
        // Explicit deletes: they do not depend on SQLite's foreign_keys pragma.
        for sql in [
            "DELETE FROM mlflow_model_version_tags WHERE model = $1",
            "DELETE FROM mlflow_model_version_meta WHERE model = $1",
            "DELETE FROM mlflow_registered_model_tags WHERE model = $1",
            "DELETE FROM model_aliases WHERE model = $1",
            "DELETE FROM model_versions WHERE model = $1",
        ] {
            sqlx::query(sql)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        }
        let done = sqlx::query("DELETE FROM models WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            return Err(model_not_found(name));
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    pub async fn set_registered_model_tag(
        &self,
        name: &str,
        tag: &KeyValue,
    ) -> Result<(), StoreError> {
        validate_tags(std::slice::from_ref(tag))?;
        let op = || format!("tagging registered model {name}");
        let mut tx = self.begin_write(&op()).await?;
        let exists = sqlx::query("SELECT name FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        if exists.is_none() {
            return Err(model_not_found(name));
        }
        sqlx::query(
            "INSERT INTO mlflow_registered_model_tags (model, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (model, key) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(&tag.key)
        .bind(&tag.value)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    pub async fn delete_registered_model_tag(
        &self,
        name: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        self.get_registered_model(name).await?;
        sqlx::query("DELETE FROM mlflow_registered_model_tags WHERE model = $1 AND key = $2")
            .bind(name)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "deleting tag {key} of registered model {name}"
            )))?;
        Ok(())
    }

    /// MLflow's `registered-models/search`: filter on `name` (=, !=, LIKE, ILIKE) and
    /// `tags.<key>`; default order by name.
    pub async fn search_registered_models(
        &self,
        query: &SearchQuery,
    ) -> Result<Page<RegisteredModel>, StoreError> {
        let conditions = parse_filter(&query.filter, &MODEL_ATTRIBUTES)?;
        let orders = query
            .order_by
            .iter()
            .map(|o| parse_order_by(o, &MODEL_ATTRIBUTES))
            .collect::<Result<Vec<_>, _>>()?;
        let mut models = self.load_registered_models(None).await?;
        let field = |m: &RegisteredModel, key: &SearchKey| -> Option<Stored> {
            match key {
                SearchKey::Attribute(a) => match a.as_str() {
                    "name" => Some(Stored::Str(m.name.clone())),
                    "creation_timestamp" => Some(Stored::Num(m.creation_timestamp as f64)),
                    "last_updated_timestamp" => Some(Stored::Num(m.last_updated_timestamp as f64)),
                    _ => None,
                },
                SearchKey::Tag(k) => m
                    .tags
                    .iter()
                    .find(|t| &t.key == k)
                    .map(|t| Stored::Str(t.value.clone())),
                _ => None,
            }
        };
        models.retain(|m| {
            conditions
                .iter()
                .all(|c| registry_match(c, field(m, &c.key).as_ref().map(Stored::as_field)))
        });
        models.sort_by(|a, b| {
            for o in &orders {
                let ord = compare_values(
                    field(a, &o.key).as_ref().map(Stored::as_field),
                    field(b, &o.key).as_ref().map(Stored::as_field),
                    o.ascending,
                );
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            a.name.cmp(&b.name)
        });
        let (start, end, next) = page_bounds(
            query,
            search_hash("registered-models", query),
            100,
            models.len(),
        )?;
        Ok(Page {
            items: models.drain(start..end).collect(),
            next_page_token: next,
        })
    }

    async fn load_registered_models(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<RegisteredModel>, StoreError> {
        let op = "reading registered models";
        let filter = if name.is_some() {
            " WHERE name = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT name, description, created_at_ms, updated_at_ms FROM models{filter} ORDER BY name"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        if let Some(n) = name {
            q = q.bind(n);
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let model_filter = if name.is_some() {
            " WHERE model = $1"
        } else {
            ""
        };
        let tag_sql = format!(
            "SELECT model, key, value FROM mlflow_registered_model_tags{model_filter} ORDER BY key"
        );
        let alias_sql =
            format!("SELECT model, alias, version FROM model_aliases{model_filter} ORDER BY alias");
        let mut tag_q = sqlx::query(sqlx::AssertSqlSafe(tag_sql.as_str()));
        let mut alias_q = sqlx::query(sqlx::AssertSqlSafe(alias_sql.as_str()));
        if let Some(n) = name {
            tag_q = tag_q.bind(n);
            alias_q = alias_q.bind(n);
        }
        let tag_rows = tag_q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        let alias_rows = alias_q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        let mut tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
        for r in &tag_rows {
            tags.entry(column(r, "model")?)
                .or_default()
                .push(KeyValue::new(
                    column::<String>(r, "key")?,
                    column::<String>(r, "value")?,
                ));
        }
        let mut aliases: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for r in &alias_rows {
            aliases
                .entry(column(r, "model")?)
                .or_default()
                .push((column(r, "alias")?, column(r, "version")?));
        }
        // MLflow's latest_versions: the newest version of each stage.
        let mut latest_by_stage: HashMap<(String, String), RegisteredModelVersion> = HashMap::new();
        for v in self.load_versions(name, None).await? {
            let key = (v.name.clone(), v.current_stage.clone());
            match latest_by_stage.get(&key) {
                Some(cur) if cur.version >= v.version => {}
                _ => {
                    latest_by_stage.insert(key, v);
                }
            }
        }
        let mut latest: HashMap<String, Vec<RegisteredModelVersion>> = HashMap::new();
        for ((model, _), v) in latest_by_stage {
            latest.entry(model).or_default().push(v);
        }
        for versions in latest.values_mut() {
            versions.sort_by_key(|v| v.version);
        }
        rows.iter()
            .map(|r| {
                let name: String = column(r, "name")?;
                let mut t = tags.remove(&name).unwrap_or_default();
                t.sort_by(|a, b| a.key.cmp(&b.key));
                let mut a = aliases.remove(&name).unwrap_or_default();
                a.sort();
                Ok(RegisteredModel {
                    creation_timestamp: column(r, "created_at_ms")?,
                    last_updated_timestamp: column(r, "updated_at_ms")?,
                    description: column(r, "description")?,
                    tags: t,
                    aliases: a,
                    latest_versions: latest.remove(&name).unwrap_or_default(),
                    name,
                })
            })
            .collect()
    }

    /// Versions with their tags and aliases: all, one model's, or one version.
    async fn load_versions(
        &self,
        name: Option<&str>,
        version: Option<i64>,
    ) -> Result<Vec<RegisteredModelVersion>, StoreError> {
        let op = "reading model versions";
        let (vf, f) = match (name, version) {
            (Some(_), Some(_)) => (
                " WHERE v.model = $1 AND v.version = $2",
                " WHERE model = $1 AND version = $2",
            ),
            (Some(_), None) => (" WHERE v.model = $1", " WHERE model = $1"),
            _ => ("", ""),
        };
        let sql = format!(
            "SELECT v.model, v.version, v.artifact_digest, v.run_id, v.description, \
             v.created_at_ms, v.stage, m.user_id, m.status, m.status_message, m.run_link, m.updated_at_ms \
             FROM model_versions v LEFT JOIN mlflow_model_version_meta m \
             ON m.model = v.model AND m.version = v.version{vf} ORDER BY v.model, v.version"
        );
        let tag_sql = format!(
            "SELECT model, version, key, value FROM mlflow_model_version_tags{f} ORDER BY key"
        );
        let alias_sql =
            format!("SELECT model, version, alias FROM model_aliases{f} ORDER BY alias");
        let mut qs = [
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str())),
            sqlx::query(sqlx::AssertSqlSafe(tag_sql.as_str())),
            sqlx::query(sqlx::AssertSqlSafe(alias_sql.as_str())),
        ];
        let mut results = Vec::with_capacity(3);
        for q in &mut qs {
            let mut bound = std::mem::replace(q, sqlx::query(""));
            if let Some(n) = name {
                bound = bound.bind(n);
                if let Some(v) = version {
                    bound = bound.bind(v);
                }
            }
            results.push(
                bound
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::query(op))?,
            );
        }
        let mut tags: HashMap<(String, i64), Vec<KeyValue>> = HashMap::new();
        for r in &results[1] {
            tags.entry((column(r, "model")?, column(r, "version")?))
                .or_default()
                .push(KeyValue::new(
                    column::<String>(r, "key")?,
                    column::<String>(r, "value")?,
                ));
        }
        let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
        for r in &results[2] {
            aliases
                .entry((column(r, "model")?, column(r, "version")?))
                .or_default()
                .push(column(r, "alias")?);
        }
        results[0]
            .iter()
            .map(|r| {
                let mut v = version_from_row(r)?;
                let k = (v.name.clone(), v.version);
                v.tags = tags.remove(&k).unwrap_or_default();
                v.tags.sort_by(|a, b| a.key.cmp(&b.key));
                v.aliases = aliases.remove(&k).unwrap_or_default();
                v.aliases.sort();
                Ok(v)
            })
            .collect()
    }

    /// Registers a version of an existing model, numbered one past its newest.
    pub async fn create_registered_model_version(
        &self,
        new: &NewRegisteredModelVersion,
        now_ms: i64,
    ) -> Result<RegisteredModelVersion, StoreError> {
        validate_model_name(&new.name)?;
        validate_tags(&new.tags)?;
        if new.source.is_empty() {
            return Err(invalid(
                format!("source of the new version of model {}", new.name),
                "it is empty: give the URI of the model's files",
            ));
        }
        let op = || format!("creating a version of registered model {}", new.name);
        let mut tx = self.begin_write(&op()).await?;
        // On PostgreSQL this locks the model's row until commit, so concurrent registrations
        // of one model take turns numbering their versions.
        let done = sqlx::query("UPDATE models SET updated_at_ms = $1 WHERE name = $2")
            .bind(now_ms)
            .bind(&new.name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            return Err(model_not_found(&new.name));
        }
        let version = crate::models::next_version(&mut tx, &new.name)
            .await
            .map_err(StoreError::query(op()))?;
        sqlx::query(
            "INSERT INTO model_versions (model, version, artifact_digest, artifact_kind, run_id, \
             step_run_id, step, metrics_json, data_digests_json, params_json, flavor, \
             description, tags_json, created_at_ms) \
             VALUES ($1, $2, $3, 'mlflow-model', $4, NULL, NULL, '{}', '[]', '{}', 'mlflow', $5, \
             '{}', $6)",
        )
        .bind(&new.name)
        .bind(version)
        .bind(&new.source)
        .bind(new.run_id.as_deref().filter(|r| !r.is_empty()))
        .bind(new.description.as_deref().filter(|d| !d.is_empty()))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        sqlx::query(
            "INSERT INTO mlflow_model_version_meta (model, version, user_id, status, \
             status_message, run_link, updated_at_ms) VALUES ($1, $2, $3, $4, NULL, $5, $6)",
        )
        .bind(&new.name)
        .bind(version)
        .bind(new.user_id.as_deref())
        .bind(READY)
        .bind(new.run_link.as_deref().filter(|l| !l.is_empty()))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        for t in &new.tags {
            sqlx::query(
                "INSERT INTO mlflow_model_version_tags (model, version, key, value) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (model, version, key) \
                 DO UPDATE SET value = excluded.value",
            )
            .bind(&new.name)
            .bind(version)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_registered_model_version(&new.name, version).await
    }

    pub async fn get_registered_model_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<RegisteredModelVersion, StoreError> {
        let mut v = self.load_versions(Some(name), Some(version)).await?;
        match v.pop() {
            Some(v) => Ok(v),
            None => {
                self.get_registered_model(name).await?;
                Err(StoreError::NotFound {
                    kind: "model version",
                    id: format!("{name}@{version}"),
                })
            }
        }
    }

    /// The version an alias names.
    pub async fn registered_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<RegisteredModelVersion, StoreError> {
        let row = sqlx::query("SELECT version FROM model_aliases WHERE model = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "resolving alias {alias} of model {name}"
            )))?;
        match row {
            Some(r) => {
                self.get_registered_model_version(name, column(&r, "version")?)
                    .await
            }
            None => {
                self.get_registered_model(name).await?;
                Err(StoreError::NotFound {
                    kind: "model alias",
                    id: format!("{name}@{alias}"),
                })
            }
        }
    }

    /// The newest version of each stage (MLflow's get-latest-versions).
    pub async fn latest_registered_model_versions(
        &self,
        name: &str,
    ) -> Result<Vec<RegisteredModelVersion>, StoreError> {
        Ok(self.get_registered_model(name).await?.latest_versions)
    }

    pub async fn update_registered_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<&str>,
        now_ms: i64,
    ) -> Result<RegisteredModelVersion, StoreError> {
        let op = || format!("updating version {version} of model {name}");
        let mut tx = self.begin_write(&op()).await?;
        let done = sqlx::query(
            "UPDATE model_versions SET description = CASE WHEN $1 = 1 THEN $2 ELSE description END \
             WHERE model = $3 AND version = $4",
        )
        .bind(i64::from(description.is_some()))
        .bind(description.filter(|d| !d.is_empty()))
        .bind(name)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            drop(tx);
            return self.get_registered_model_version(name, version).await;
        }
        touch_version(&mut tx, name, version, now_ms)
            .await
            .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_registered_model_version(name, version).await
    }

    /// MLflow's `transition-stage`: moves a version to a stage (None, Staging, Production or
    /// Archived; any case); with `archive_existing`, the other versions in that stage (Staging
    /// or Production) move to Archived.
    pub async fn transition_registered_model_version_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
        archive_existing: bool,
        now_ms: i64,
    ) -> Result<RegisteredModelVersion, StoreError> {
        let Some(stage) = STAGES.iter().find(|s| s.eq_ignore_ascii_case(stage.trim())) else {
            return Err(invalid(
                "stage",
                format!("'{stage}' is not a stage: use None, Staging, Production or Archived"),
            ));
        };
        let op = || format!("moving version {version} of model {name} to stage {stage}");
        let mut tx = self.begin_write(&op()).await?;
        let done =
            sqlx::query("UPDATE model_versions SET stage = $3 WHERE model = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .bind(*stage)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            drop(tx);
            return self.get_registered_model_version(name, version).await;
        }
        if archive_existing && matches!(*stage, "Staging" | "Production") {
            sqlx::query(
                "UPDATE model_versions SET stage = 'Archived' \
                 WHERE model = $1 AND version <> $2 AND stage = $3",
            )
            .bind(name)
            .bind(version)
            .bind(*stage)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        sqlx::query("UPDATE models SET updated_at_ms = $2 WHERE name = $1")
            .bind(name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        touch_version(&mut tx, name, version, now_ms)
            .await
            .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_registered_model_version(name, version).await
    }

    /// MLflow's `rename`: the model, its versions (numbers, stages, metadata), aliases and tags
    /// under a new name, in one transaction. The callers check what else names the model
    /// (deployments).
    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now_ms: i64,
    ) -> Result<RegisteredModel, StoreError> {
        validate_model_name(new_name)?;
        if name == new_name {
            return self.get_registered_model(name).await;
        }
        let op = || format!("renaming registered model {name} to {new_name}");
        let mut tx = self.begin_write(&op()).await?;
        let taken = sqlx::query("SELECT name FROM models WHERE name = $1")
            .bind(new_name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        if taken.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "registered model",
                id: new_name.to_owned(),
            });
        }
        let copied = sqlx::query(
            "INSERT INTO models (name, description, created_at_ms, updated_at_ms, last_version) \
             SELECT $2, description, created_at_ms, $3, last_version FROM models WHERE name = $1",
        )
        .bind(name)
        .bind(new_name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        if copied.rows_affected() == 0 {
            return Err(model_not_found(name));
        }
        // Children first copied under the new name (their foreign keys then hold), then the old
        // model deleted, which cascades to its rows.
        for sql in [
            "INSERT INTO model_versions (model, version, artifact_digest, artifact_kind, run_id, \
             step_run_id, step, metrics_json, data_digests_json, params_json, flavor, \
             description, tags_json, created_at_ms, stage) \
             SELECT $2, version, artifact_digest, artifact_kind, run_id, step_run_id, step, \
             metrics_json, data_digests_json, params_json, flavor, description, tags_json, \
             created_at_ms, stage FROM model_versions WHERE model = $1",
            "INSERT INTO model_aliases (model, alias, version, updated_at_ms) \
             SELECT $2, alias, version, updated_at_ms FROM model_aliases WHERE model = $1",
            "INSERT INTO mlflow_registered_model_tags (model, key, value) \
             SELECT $2, key, value FROM mlflow_registered_model_tags WHERE model = $1",
            "INSERT INTO mlflow_model_version_meta (model, version, user_id, status, \
             status_message, run_link, updated_at_ms) SELECT $2, version, user_id, status, \
             status_message, run_link, updated_at_ms FROM mlflow_model_version_meta WHERE model = $1",
            "INSERT INTO mlflow_model_version_tags (model, version, key, value) \
             SELECT $2, version, key, value FROM mlflow_model_version_tags WHERE model = $1",
            "DELETE FROM models WHERE name = $1",
        ] {
            sqlx::query(sql)
                .bind(name)
                .bind(new_name)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_registered_model(new_name).await
    }

    /// Deletes a version with its tags and the aliases that named it.
    pub async fn delete_registered_model_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<(), StoreError> {
        let op = || format!("deleting version {version} of model {name}");
        let mut tx = self.begin_write(&op()).await?;
        for sql in [
            "DELETE FROM mlflow_model_version_tags WHERE model = $1 AND version = $2",
            "DELETE FROM mlflow_model_version_meta WHERE model = $1 AND version = $2",
            "DELETE FROM model_aliases WHERE model = $1 AND version = $2",
        ] {
            sqlx::query(sql)
                .bind(name)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        }
        let done = sqlx::query("DELETE FROM model_versions WHERE model = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            drop(tx);
            self.get_registered_model_version(name, version).await?;
            return Ok(());
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    pub async fn set_registered_model_version_tag(
        &self,
        name: &str,
        version: i64,
        tag: &KeyValue,
    ) -> Result<(), StoreError> {
        validate_tags(std::slice::from_ref(tag))?;
        self.get_registered_model_version(name, version).await?;
        sqlx::query(
            "INSERT INTO mlflow_model_version_tags (model, version, key, value) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (model, version, key) \
             DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(version)
        .bind(&tag.key)
        .bind(&tag.value)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "tagging version {version} of model {name}"
        )))?;
        Ok(())
    }

    pub async fn delete_registered_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
    ) -> Result<(), StoreError> {
        self.get_registered_model_version(name, version).await?;
        sqlx::query(
            "DELETE FROM mlflow_model_version_tags WHERE model = $1 AND version = $2 AND key = $3",
        )
        .bind(name)
        .bind(version)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "deleting tag {key} of version {version} of model {name}"
        )))?;
        Ok(())
    }

    /// MLflow's `model-versions/search`: filter on `name`, `run_id`, `source_path`, `version`,
    /// `tags.<key>`; default order: name, then newest version first.
    pub async fn search_registered_model_versions(
        &self,
        query: &SearchQuery,
    ) -> Result<Page<RegisteredModelVersion>, StoreError> {
        let conditions = parse_filter(&query.filter, &MODEL_VERSION_ATTRIBUTES)?;
        let orders = query
            .order_by
            .iter()
            .map(|o| parse_order_by(o, &MODEL_VERSION_ATTRIBUTES))
            .collect::<Result<Vec<_>, _>>()?;
        // A filter on one name (the common case) reads only that model's versions.
        let only = conditions.iter().find_map(|c| match (&c.key, &c.value) {
            (SearchKey::Attribute(a), Literal::Str(n)) if a == "name" && c.op == Comparator::Eq => {
                Some(n.as_str())
            }
            _ => None,
        });
        let mut versions = self.load_versions(only, None).await?;
        let field = |v: &RegisteredModelVersion, key: &SearchKey| -> Option<Stored> {
            match key {
                SearchKey::Attribute(a) => match a.as_str() {
                    "name" => Some(Stored::Str(v.name.clone())),
                    "run_id" => v.run_id.clone().map(Stored::Str),
                    "source" => Some(Stored::Str(v.source.clone())),
                    "current_stage" => Some(Stored::Str(v.current_stage.clone())),
                    "status" => Some(Stored::Str(v.status.clone())),
                    "user_id" => v.user_id.clone().map(Stored::Str),
                    "version" => Some(Stored::Num(v.version as f64)),
                    "creation_timestamp" => Some(Stored::Num(v.creation_timestamp as f64)),
                    "last_updated_timestamp" => Some(Stored::Num(v.last_updated_timestamp as f64)),
                    _ => None,
                },
                SearchKey::Tag(k) => v
                    .tags
                    .iter()
                    .find(|t| &t.key == k)
                    .map(|t| Stored::Str(t.value.clone())),
                _ => None,
            }
        };
        versions.retain(|v| {
            conditions
                .iter()
                .all(|c| registry_match(c, field(v, &c.key).as_ref().map(Stored::as_field)))
        });
        versions.sort_by(|a, b| {
            for o in &orders {
                let ord = compare_values(
                    field(a, &o.key).as_ref().map(Stored::as_field),
                    field(b, &o.key).as_ref().map(Stored::as_field),
                    o.ascending,
                );
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            a.name.cmp(&b.name).then(b.version.cmp(&a.version))
        });
        let (start, end, next) = page_bounds(
            query,
            search_hash("model-versions", query),
            10_000,
            versions.len(),
        )?;
        Ok(Page {
            items: versions.drain(start..end).collect(),
            next_page_token: next,
        })
    }
}

/// As MLflow's registry: `tags.k != 'v'` also matches what has no tag `k` (MLflow 3 clients
/// add `tags.\`mlflow.prompt.is_prompt\` != 'true'` to every search to leave prompts out).
fn registry_match(c: &Condition, value: Option<FieldValue<'_>>) -> bool {
    if value.is_none() && c.op == Comparator::Ne && matches!(c.key, SearchKey::Tag(_)) {
        return true;
    }
    c.matches(value)
}
