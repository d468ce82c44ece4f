use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{Any, Executor};

use crate::error::StoreError;
use crate::record::{ModelRecord, ModelVersionRecord, NewModelVersion};
use crate::store::{Store, column};

/// Longest model name or alias accepted.
const MAX_NAME_LEN: usize = 128;

/// How often a registration that lost a race with a concurrent one is tried again. Races are
/// rare (PostgreSQL registrations of one model queue on its row lock; SQLite serializes every
/// writer), so this only bounds a pathological case.
const REGISTER_ATTEMPTS: u32 = 20;

/// In a reference, `name@latest` means the newest version, so no alias may be called that.
const LATEST: &str = "latest";
/// MLflow's limit on alias names.
const MAX_ALIAS_LEN: usize = 255;

macro_rules! version_columns {
    () => {
        "model, version, artifact_digest, artifact_kind, run_id, step_run_id, step, \
         metrics_json, data_digests_json, params_json, flavor, description, tags_json, \
         created_at_ms"
    };
}

impl Store {
    /// Registers a new version of `v.model` (creating the model if it is new), numbered one
    /// past its latest, and points `v.alias` at it when given.
    ///
    /// Registering the same step run into the same model again returns the version it
    /// registered the first time, unchanged (its aliases are not moved back), so a retried
    /// registration never creates a second version. It fails with [`StoreError::Invalid`] if
    /// that version holds a different artifact.
    pub async fn register_model_version(
        &self,
        v: &NewModelVersion,
    ) -> Result<ModelVersionRecord, StoreError> {
        validate_new_version(v)?;
        let mut attempt = 1;
        loop {
            match self.try_register_model_version(v).await {
                Err(StoreError::Query { source, .. })
                    if attempt < REGISTER_ATTEMPTS && lost_race(&source) =>
                {
                    attempt += 1;
                    let jitter = u64::from(rand::random::<u8>() % 16);
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt) + jitter))
                        .await;
                }
                result => return result,
            }
        }
    }

    async fn try_register_model_version(
        &self,
        v: &NewModelVersion,
    ) -> Result<ModelVersionRecord, StoreError> {
        let op = || format!("registering a version of model {}", v.model);
        let mut tx = self.begin_write(&op()).await?;
        // On PostgreSQL the upsert locks the model's row until commit: concurrent registrations
        // of one model take turns, and each reads the latest version the previous one
        // committed. SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
        sqlx::query(
            "INSERT INTO models (name, description, created_at_ms, updated_at_ms) \
             VALUES ($1, NULL, $2, $2) ON CONFLICT (name) DO UPDATE SET updated_at_ms = \
             CASE WHEN excluded.updated_at_ms > models.updated_at_ms \
             THEN excluded.updated_at_ms ELSE models.updated_at_ms END",
        )
        .bind(&v.model)
        .bind(v.now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;

        if let Some(step_run_id) = &v.step_run_id {
            let existing = sqlx::query(
                "SELECT version, artifact_digest FROM model_versions \
                 WHERE model = $1 AND step_run_id = $2",
            )
            .bind(&v.model)
            .bind(step_run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
            if let Some(row) = existing {
                let version: i64 = column(&row, "version")?;
                let digest: String = column(&row, "artifact_digest")?;
                tx.rollback().await.map_err(StoreError::query(op()))?;
                if digest != v.artifact_digest {
                    return Err(StoreError::Invalid {
                        what: format!(
                            "registration of step run {step_run_id} as a version of model {}",
                            v.model
                        ),
                        detail: format!(
                            "that step run already registered version {version} with artifact \
                             {digest}, not {}; register the other artifact from its own step run",
                            v.artifact_digest
                        ),
                    });
                }
                return self.get_model_version(&v.model, version).await;
            }
        }

        let version = next_version(&mut tx, &v.model)
            .await
            .map_err(StoreError::query(op()))?;
        let tags_json = "{}";
        sqlx::query(concat!(
            "INSERT INTO model_versions (",
            version_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&v.model)
        .bind(version)
        .bind(&v.artifact_digest)
        .bind(&v.artifact_kind)
        .bind(v.run_id.as_deref())
        .bind(v.step_run_id.as_deref())
        .bind(v.step.as_deref())
        .bind(&v.metrics_json)
        .bind(&v.data_digests_json)
        .bind(&v.params_json)
        .bind(&v.flavor)
        .bind(v.description.as_deref())
        .bind(tags_json)
        .bind(v.now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        if let Some(alias) = &v.alias {
            upsert_alias(&mut *tx, &v.model, alias, version, v.now_ms)
                .await
                .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))?;

        Ok(ModelVersionRecord {
            model: v.model.clone(),
            version,
            artifact_digest: v.artifact_digest.clone(),
            artifact_kind: v.artifact_kind.clone(),
            run_id: v.run_id.clone(),
            step_run_id: v.step_run_id.clone(),
            step: v.step.clone(),
            metrics_json: v.metrics_json.clone(),
            data_digests_json: v.data_digests_json.clone(),
            params_json: v.params_json.clone(),
            flavor: v.flavor.clone(),
            description: v.description.clone(),
            tags_json: tags_json.to_owned(),
            created_at_ms: v.now_ms,
            aliases: v.alias.iter().cloned().collect(),
        })
    }

    /// Every model, by name (bytewise).
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let op = "listing models";
        let rows = sqlx::query(
            "SELECT m.name, m.description, m.created_at_ms, m.updated_at_ms, \
             (SELECT MAX(v.version) FROM model_versions v WHERE v.model = m.name) \
             AS latest_version FROM models m ORDER BY m.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        let alias_rows = sqlx::query("SELECT model, alias, version FROM model_aliases")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        let mut aliases: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
        for row in &alias_rows {
            aliases
                .entry(column(row, "model")?)
                .or_default()
                .insert(column(row, "alias")?, column(row, "version")?);
        }
        rows.iter()
            .map(|row| {
                let mut model = model_from_row(row)?;
                model.aliases = aliases.remove(&model.name).unwrap_or_default();
                Ok(model)
            })
            .collect()
    }

    pub async fn get_model(&self, name: &str) -> Result<ModelRecord, StoreError> {
        let op = || format!("looking up model {name}");
        let row = sqlx::query(
            "SELECT m.name, m.description, m.created_at_ms, m.updated_at_ms, \
             (SELECT MAX(v.version) FROM model_versions v WHERE v.model = m.name) \
             AS latest_version FROM models m WHERE m.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op()))?
        .ok_or_else(|| model_not_found(name))?;
        let mut model = model_from_row(&row)?;
        let alias_rows = sqlx::query("SELECT alias, version FROM model_aliases WHERE model = $1")
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op()))?;
        for row in &alias_rows {
            model
                .aliases
                .insert(column(row, "alias")?, column(row, "version")?);
        }
        Ok(model)
    }

    /// The model's versions, newest first.
    pub async fn list_model_versions(
        &self,
        name: &str,
    ) -> Result<Vec<ModelVersionRecord>, StoreError> {
        let op = || format!("listing versions of model {name}");
        let rows = sqlx::query(concat!(
            "SELECT ",
            version_columns!(),
            " FROM model_versions WHERE model = $1 ORDER BY version DESC"
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        if rows.is_empty() && !model_exists(&self.pool, name).await? {
            return Err(model_not_found(name));
        }
        let alias_rows = sqlx::query(
            "SELECT model, alias, version FROM model_aliases WHERE model = $1 ORDER BY alias",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        versions_with_aliases(&rows, &alias_rows)
    }

    pub async fn get_model_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<ModelVersionRecord, StoreError> {
        let op = || format!("looking up version {version} of model {name}");
        let row = sqlx::query(concat!(
            "SELECT ",
            version_columns!(),
            " FROM model_versions WHERE model = $1 AND version = $2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        let Some(row) = row else {
            return Err(missing_version(&self.pool, name, &version.to_string()).await);
        };
        let mut record = version_from_row(&row)?;
        let alias_rows = sqlx::query(
            "SELECT alias FROM model_aliases WHERE model = $1 AND version = $2 ORDER BY alias",
        )
        .bind(name)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        record.aliases = alias_rows
            .iter()
            .map(|row| column(row, "alias"))
            .collect::<Result<_, _>>()?;
        Ok(record)
    }

    /// Resolves `name` or `name@latest` (the newest version), `name@7` (version 7) or
    /// `name@champion` (the version the alias names).
    pub async fn resolve_model(&self, reference: &str) -> Result<ModelVersionRecord, StoreError> {
        let (name, selector) = match reference.split_once('@') {
            Some((name, selector)) => (name, selector),
            None => (reference, LATEST),
        };
        let invalid = |detail: String| StoreError::Invalid {
            what: format!("model reference '{reference}'"),
            detail,
        };
        validate_model_name(name).map_err(|e| invalid(e.to_string()))?;
        let op = || format!("resolving model reference {reference}");
        if selector == LATEST {
            let row =
                sqlx::query("SELECT MAX(version) AS latest FROM model_versions WHERE model = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(StoreError::query(op()))?;
            return match column::<Option<i64>>(&row, "latest")? {
                Some(version) => self.get_model_version(name, version).await,
                None => Err(missing_version(&self.pool, name, LATEST).await),
            };
        }
        if !selector.is_empty() && selector.bytes().all(|b| b.is_ascii_digit()) {
            let version = selector.parse::<i64>().map_err(|_| {
                invalid(format!(
                    "version {selector} is larger than any version number"
                ))
            })?;
            return self.get_model_version(name, version).await;
        }
        validate_alias(selector).map_err(|e| {
            invalid(format!(
                "after '@' give a version number, 'latest' or an alias: {e}"
            ))
        })?;
        let row = sqlx::query("SELECT version FROM model_aliases WHERE model = $1 AND alias = $2")
            .bind(name)
            .bind(selector)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op()))?;
        match row {
            Some(row) => self.get_model_version(name, column(&row, "version")?).await,
            None if model_exists(&self.pool, name).await? => Err(StoreError::NotFound {
                kind: "model alias",
                id: format!("{name}@{selector}"),
            }),
            None => Err(model_not_found(name)),
        }
    }

    /// Points `alias` at `version` of model `name`, moving it from the version that had it.
    ///
    /// Aliases match `[a-z][a-z0-9_-]*` (so they never look like a version number), up to 128
    /// characters, and may not be `latest`.
    pub async fn set_model_alias(
        &self,
        name: &str,
        version: i64,
        alias: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        validate_alias(alias)?;
        let op = || format!("setting alias {alias} of model {name} to version {version}");
        let mut tx = self.begin_write(&op()).await?;
        let exists =
            sqlx::query("SELECT version FROM model_versions WHERE model = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        if exists.is_none() {
            return Err(missing_version(&mut *tx, name, &version.to_string()).await);
        }
        upsert_alias(&mut *tx, name, alias, version, now_ms)
            .await
            .map_err(StoreError::query(op()))?;
        sqlx::query(
            "UPDATE models SET updated_at_ms = CASE WHEN $2 > updated_at_ms THEN $2 \
             ELSE updated_at_ms END WHERE name = $1",
        )
        .bind(name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Removes `alias` from model `name`; the version it named stays.
    pub async fn delete_model_alias(&self, name: &str, alias: &str) -> Result<(), StoreError> {
        let op = || format!("deleting alias {alias} of model {name}");
        let done = sqlx::query("DELETE FROM model_aliases WHERE model = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            if !model_exists(&self.pool, name).await? {
                return Err(model_not_found(name));
            }
            return Err(StoreError::NotFound {
                kind: "model alias",
                id: format!("{name}@{alias}"),
            });
        }
        Ok(())
    }

    /// Versions registered from the run, in registration order.
    pub async fn model_versions_for_run(
        &self,
        run_id: &str,
    ) -> Result<Vec<ModelVersionRecord>, StoreError> {
        let op = || format!("listing model versions of run {run_id}");
        let rows = sqlx::query(concat!(
            "SELECT ",
            version_columns!(),
            " FROM model_versions WHERE run_id = $1 ORDER BY created_at_ms, model, version"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        let alias_rows = sqlx::query(
            "SELECT a.model, a.alias, a.version FROM model_aliases a \
             JOIN model_versions v ON v.model = a.model AND v.version = a.version \
             WHERE v.run_id = $1 ORDER BY a.alias",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        versions_with_aliases(&rows, &alias_rows)
    }
}

async fn upsert_alias<'e, E>(
    executor: E,
    model: &str,
    alias: &str,
    version: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO model_aliases (model, alias, version, updated_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (model, alias) \
         DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(model)
    .bind(alias)
    .bind(version)
    .bind(now_ms)
    .execute(executor)
    .await?;
    Ok(())
}

async fn model_exists<'e, E>(executor: E, name: &str) -> Result<bool, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT name FROM models WHERE name = $1")
        .bind(name)
        .fetch_optional(executor)
        .await
        .map_err(StoreError::query(format!("looking up model {name}")))?;
    Ok(row.is_some())
}

/// The error for a version (a number or `latest`) that is not there: the model itself when
/// that is what is missing.
async fn missing_version<'e, E>(executor: E, name: &str, version: &str) -> StoreError
where
    E: Executor<'e, Database = Any>,
{
    match model_exists(executor, name).await {
        Ok(true) => StoreError::NotFound {
            kind: "model version",
            id: format!("{name}@{version}"),
        },
        Ok(false) => model_not_found(name),
        Err(e) => e,
    }
}

fn model_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "model",
        id: name.to_owned(),
    }
}

/// Whether a failed registration lost a race with a concurrent one and can simply run again.
pub(crate) fn lost_race(err: &sqlx::Error) -> bool {
    match err {
        // Unique violation: another registration took the version number or the step run.
        // 40001/40P01: PostgreSQL serialization failure or deadlock.
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || matches!(db.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}

fn model_from_row(row: &AnyRow) -> Result<ModelRecord, StoreError> {
    Ok(ModelRecord {
        name: column(row, "name")?,
        description: column(row, "description")?,
        created_at_ms: column(row, "created_at_ms")?,
        updated_at_ms: column(row, "updated_at_ms")?,
        latest_version: column(row, "latest_version")?,
        aliases: BTreeMap::new(),
    })
}

fn version_from_row(row: &AnyRow) -> Result<ModelVersionRecord, StoreError> {
    Ok(ModelVersionRecord {
        model: column(row, "model")?,
        version: column(row, "version")?,
        artifact_digest: column(row, "artifact_digest")?,
        artifact_kind: column(row, "artifact_kind")?,
        run_id: column(row, "run_id")?,
        step_run_id: column(row, "step_run_id")?,
        step: column(row, "step")?,
        metrics_json: column(row, "metrics_json")?,
        data_digests_json: column(row, "data_digests_json")?,
        params_json: column(row, "params_json")?,
        flavor: column(row, "flavor")?,
        description: column(row, "description")?,
        tags_json: column(row, "tags_json")?,
        created_at_ms: column(row, "created_at_ms")?,
        aliases: Vec::new(),
    })
}

/// Version rows with their aliases, from alias rows (model, alias, version) sorted by alias.
fn versions_with_aliases(
    rows: &[AnyRow],
    alias_rows: &[AnyRow],
) -> Result<Vec<ModelVersionRecord>, StoreError> {
    let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
    for row in alias_rows {
        aliases
            .entry((column(row, "model")?, column(row, "version")?))
            .or_default()
            .push(column(row, "alias")?);
    }
    rows.iter()
        .map(|row| {
            let mut record = version_from_row(row)?;
            record.aliases = aliases
                .remove(&(record.model.clone(), record.version))
                .unwrap_or_default();
            Ok(record)
        })
        .collect()
}

/// Model names: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 characters, so they are safe in
/// URLs, file names and `name@version` references.
pub(crate) fn validate_model_name(name: &str) -> Result<(), StoreError> {
    let valid = name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        return Ok(());
    }
    Err(StoreError::Invalid {
        what: format!("model name '{name}'"),
        detail: format!(
            "use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-', starting with a letter \
             or digit"
        ),
    })
}

/// Aliases as MLflow accepts them: 1 to 255 letters, digits, `_` or `-` (any case, Unicode
/// letters too), except `latest` in any case and `v<digits>` (both reserved by MLflow), and
/// except digits only, which would read as a version number in `name@7`.
pub(crate) fn validate_alias(alias: &str) -> Result<(), StoreError> {
    let invalid = |detail: String| StoreError::Invalid {
        what: format!("model alias '{alias}'"),
        detail,
    };
    if alias.eq_ignore_ascii_case(LATEST) {
        return Err(invalid(format!(
            "'{LATEST}' (in any case) always means the newest version; choose another name"
        )));
    }
    let versionlike = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    if versionlike(alias) {
        return Err(invalid(
            "digits alone name a version (name@7); add a letter".to_owned(),
        ));
    }
    if let Some(rest) = alias.strip_prefix(['v', 'V'])
        && versionlike(rest)
    {
        return Err(invalid(
            "v followed by digits is reserved for versions (as in MLflow); choose another name"
                .to_owned(),
        ));
    }
    let valid = !alias.is_empty()
        && alias.chars().count() <= MAX_ALIAS_LEN
        && alias
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if valid {
        return Ok(());
    }
    Err(invalid(format!(
        "use 1 to {MAX_ALIAS_LEN} letters, digits, '_' or '-'"
    )))
}

fn validate_new_version(v: &NewModelVersion) -> Result<(), StoreError> {
    validate_model_name(&v.model)?;
    if let Some(alias) = &v.alias {
        validate_alias(alias)?;
    }
    let invalid = |field: &str, detail: &str| StoreError::Invalid {
        what: format!("{field} of the new version of model {}", v.model),
        detail: detail.to_owned(),
    };
    for (field, value) in [
        ("artifact_digest", &v.artifact_digest),
        ("artifact_kind", &v.artifact_kind),
        ("flavor", &v.flavor),
    ] {
        if value.is_empty() {
            return Err(invalid(field, "it is empty"));
        }
    }
    let parse = |field: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| invalid(field, &format!("not valid JSON: {e}")))
    };
    let metrics = parse("metrics_json", &v.metrics_json)?;
    if !metrics
        .as_object()
        .is_some_and(|m| m.values().all(serde_json::Value::is_number))
    {
        return Err(invalid(
            "metrics_json",
            "expected a JSON object of numbers, e.g. {\"accuracy\": 0.97}",
        ));
    }
    let data = parse("data_digests_json", &v.data_digests_json)?;
    if !data
        .as_array()
        .is_some_and(|d| d.iter().all(serde_json::Value::is_string))
    {
        return Err(invalid(
            "data_digests_json",
            "expected a JSON array of digest strings, e.g. [\"sha256:…\"]",
        ));
    }
    if !parse("params_json", &v.params_json)?.is_object() {
        return Err(invalid("params_json", "expected a JSON object"));
    }
    Ok(())
}

/// The next version number of `model` (whose row exists and is locked by the caller's write
/// transaction): one above the highest it ever gave, so a deleted version's number is never
/// handed out again; the model remembers it.
pub(crate) async fn next_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    model: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT m.last_version AS last, \
         (SELECT MAX(version) FROM model_versions WHERE model = $1) AS highest \
         FROM models m WHERE m.name = $1",
    )
    .bind(model)
    .fetch_one(&mut **tx)
    .await?;
    let last: i64 = sqlx::Row::try_get::<Option<i64>, _>(&row, "last")?.unwrap_or(0);
    let highest: i64 = sqlx::Row::try_get::<Option<i64>, _>(&row, "highest")?.unwrap_or(0);
    let next = last.max(highest) + 1;
    sqlx::query("UPDATE models SET last_version = $2 WHERE name = $1")
        .bind(model)
        .bind(next)
        .execute(&mut **tx)
        .await?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for ok in ["iris", "Iris-2.v1_final", "7", &"a".repeat(128)] {
            validate_model_name(ok).unwrap();
        }
        for bad in [
            "",
            "-iris",
            ".iris",
            "_x",
            "ir is",
            "iris@2",
            "iris/x",
            "ïris",
            &"a".repeat(129),
        ] {
            let err = validate_model_name(bad).unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn aliases() {
        // As MLflow accepts them (its rule: `^[\w\-]*$`, ≤ 255, not `latest`, not `v\d+`).
        for ok in [
            "champion",
            "staging-2",
            "a_b",
            "x",
            "Champion",
            "2x",
            "-a",
            "_prod",
            "vNext",
            "v1a",
            "produção",
            &"a".repeat(255),
        ] {
            validate_alias(ok).unwrap();
        }
        for bad in [
            "",
            "latest",
            "LATEST",
            "7",
            "v2",
            "V10",
            "a.b",
            "a@b",
            "a b",
            &"a".repeat(256),
        ] {
            let err = validate_alias(bad).unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{bad}: {err}");
        }
    }
}
