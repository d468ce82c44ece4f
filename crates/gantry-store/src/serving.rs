//! Serving: deployments' desired state with its revision history, the prediction log with
//! ground-truth feedback, and the monitors' alert events.
//!
//! The store does not interpret a deployment's spec: the control plane writes the desired
//! state here and reconciles the running containers towards it. Every change gets the next
//! revision number and a row in `deployment_revisions`, written in the same transaction, so
//! the history is complete; a compare-and-set on the revision keeps two editors from
//! silently overwriting each other.
//!
//! Predictions arrive in batches (the server groups concurrent requests) and each batch is one
//! transaction: a batch the caller saw committed survives a crash or kill of the process.
//! Feedback labels are keyed by request id and row, and shared by a request's roles (a shadow
//! copy has the primary's request id). Retention deletes old predictions in bounded batches
//! so it never holds the write lock for long.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor};

use crate::error::StoreError;
use crate::models::lost_race;
use crate::store::{Backend, Store, column};
use crate::tracking::{placeholders, values_rows};

/// Size limits of what the serving tables accept.
pub mod limits {
    /// A prediction's inputs, and separately its outputs, as JSON text.
    pub const PREDICTION_JSON_BYTES: usize = 1 << 20;
    /// A deployment's spec as JSON text.
    pub const SPEC_JSON_BYTES: usize = 1 << 20;
    /// One feedback label as JSON text.
    pub const LABEL_JSON_BYTES: usize = 64 << 10;
    /// Names, request ids, roles, actions, principals and alert rules.
    pub const NAME_BYTES: usize = 256;
    /// A prediction's error message is cut to this length (on a character boundary) rather
    /// than failing the whole batch it came in.
    pub const ERROR_BYTES: usize = 16 << 10;
}

/// The roles a logged prediction can have.
pub const PREDICTION_ROLES: [&str; 3] = ["primary", "canary", "shadow"];

/// Rows per multi-row INSERT: 14 parameters each, far below both backends' parameter limits.
const PREDICTIONS_PER_INSERT: usize = 200;

/// Predictions deleted per retention transaction: large enough to be quick, small enough that
/// inserts waiting for the write lock are not held up noticeably.
const PRUNE_BATCH: i64 = 1000;

/// Request ids per `IN (...)` list when reading labels.
const IDS_PER_QUERY: usize = 500;

/// How often a deployment write that lost a race with a concurrent one is tried again. Only
/// two concurrent creations of one name race (updates queue on the row lock), so this
/// bounds a pathological case.
const PUT_ATTEMPTS: u32 = 20;

const DEPLOYMENT_COLUMNS: &str = "name, revision, spec_json, project, created_at_ms, updated_at_ms";

const PREDICTION_COLUMNS: &str = "request_id, deployment, model, version, role, inputs_json, \
     outputs_json, rows, error, latency_us, created_at_ms, inputs_bin, log_writer, log_seq";

/// A deployment's current desired state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentRecord {
    pub name: String,
    /// 1 for the first version of the name, +1 on every change (undeploy included).
    pub revision: i64,
    /// The control plane's desired state; opaque to the store.
    pub spec: serde_json::Value,
    pub project: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One change to a deployment, kept after the deployment itself is deleted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentRevision {
    pub deployment: String,
    pub revision: i64,
    /// The spec after the change; for "undeploy", the last spec before it.
    pub spec: serde_json::Value,
    /// "create", "update", "promote", "rollback", "undeploy", … (free text).
    pub action: String,
    pub principal: String,
    pub created_at_ms: i64,
}

/// One logged prediction, as the server hands it to [`Store::insert_predictions`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewPrediction {
    pub request_id: String,
    pub deployment: String,
    pub model: String,
    pub version: i64,
    /// One of [`PREDICTION_ROLES`].
    pub role: String,
    /// One object per input row (JSON), or the rows as columns; `rows` of them.
    pub inputs: PredictionInputs,
    /// JSON array of predicted values, one per row (may be shorter when `error` is set).
    pub outputs: serde_json::Value,
    pub rows: i64,
    pub error: Option<String>,
    pub latency_us: i64,
    pub created_at_ms: i64,
}

/// A prediction's input rows as they are logged.
#[derive(Clone, Debug, PartialEq)]
pub enum PredictionInputs {
    /// A JSON array with one object per row.
    Rows(serde_json::Value),
    /// The rows column by column (a request that arrived as tensors): stored in binary,
    /// read back as rows.
    Columns(crate::columns::Columns),
}

impl From<serde_json::Value> for PredictionInputs {
    fn from(v: serde_json::Value) -> Self {
        PredictionInputs::Rows(v)
    }
}

impl PredictionInputs {
    /// No rows.
    pub fn empty() -> Self {
        PredictionInputs::Rows(serde_json::Value::Array(Vec::new()))
    }

    /// How many rows (None: the JSON is not an array).
    pub fn row_count(&self) -> Option<usize> {
        match self {
            PredictionInputs::Rows(v) => v.as_array().map(Vec::len),
            PredictionInputs::Columns(c) => Some(c.rows()),
        }
    }

    /// The rows as JSON objects.
    pub fn to_rows(&self) -> std::borrow::Cow<'_, serde_json::Value> {
        match self {
            PredictionInputs::Rows(v) => std::borrow::Cow::Borrowed(v),
            PredictionInputs::Columns(c) => std::borrow::Cow::Owned(c.to_rows()),
        }
    }
}

/// A prediction read back from the log in the order its writer logged it (see
/// [`Store::logged_predictions_after`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedPrediction {
    pub seq: i64,
    pub prediction: NewPrediction,
}

/// A logged prediction with the feedback labels received for it so far.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PredictionRecord {
    pub request_id: String,
    pub deployment: String,
    pub model: String,
    pub version: i64,
    pub role: String,
    pub inputs: serde_json::Value,
    pub outputs: serde_json::Value,
    pub rows: i64,
    pub error: Option<String>,
    pub latency_us: i64,
    pub created_at_ms: i64,
    /// Indexed by row; `labels.len() == rows`, None where no label arrived.
    pub labels: Vec<Option<serde_json::Value>>,
}

/// A monitor's alert changing state, as handed to [`Store::insert_alert_event`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlertEvent {
    pub deployment: String,
    pub rule: String,
    /// "firing" or "resolved".
    pub state: String,
    /// The measured value that decided the state, when there is one; finite.
    pub value: Option<f64>,
    pub message: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    pub deployment: String,
    pub rule: String,
    pub state: String,
    pub value: Option<f64>,
    pub message: String,
    pub created_at_ms: i64,
}

/// A prediction checked and turned into the text the table holds.
struct EncodedPrediction<'a> {
    p: &'a NewPrediction,
    inputs_json: String,
    inputs_bin: Option<Vec<u8>>,
    outputs_json: String,
    error: Option<String>,
}

impl NewPrediction {
    /// The checks [`Store::insert_predictions`] makes, so a caller batching predictions can
    /// drop a bad one before it fails the whole batch.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.encode_with(false).map(|_| ())
    }

    fn encode(&self) -> Result<EncodedPrediction<'_>, StoreError> {
        self.encode_with(true)
    }

    /// The checks, and the stored form when `bytes` (columns are only measured without it:
    /// a caller validating on the request path does not encode them twice).
    fn encode_with(&self, bytes: bool) -> Result<EncodedPrediction<'_>, StoreError> {
        validate_name("prediction request_id", &self.request_id)?;
        let what = |field: &str| format!("prediction '{}' {field}", self.request_id);
        validate_name(&what("deployment"), &self.deployment)?;
        validate_name(&what("model"), &self.model)?;
        validate_role(&what("role"), &self.role)?;
        for (field, value) in [
            ("version", self.version),
            ("rows", self.rows),
            ("latency_us", self.latency_us),
        ] {
            if value < 0 {
                return Err(invalid(what(field), format!("{value} is negative")));
            }
        }
        let inputs = self.inputs.row_count().ok_or_else(|| {
            invalid(
                what("inputs"),
                "not a JSON array: send one object per input row",
            )
        })?;
        let outputs = self.outputs.as_array().ok_or_else(|| {
            invalid(
                what("outputs"),
                "not a JSON array: send one predicted value per row",
            )
        })?;
        if usize::try_from(self.rows).ok() != Some(inputs) {
            return Err(invalid(
                what("rows"),
                format!(
                    "{} but inputs hold {inputs} rows: feedback is matched to rows by index, so they must agree",
                    self.rows,
                ),
            ));
        }
        if self.error.is_none() && outputs.len() != inputs {
            return Err(invalid(
                what("outputs"),
                format!(
                    "{} values for {inputs} input rows: a prediction without an error has one output per row",
                    outputs.len(),
                ),
            ));
        }
        let (inputs_json, inputs_bin) = match &self.inputs {
            PredictionInputs::Rows(v) => (
                bounded_json(&what("inputs"), v, limits::PREDICTION_JSON_BYTES)?,
                None,
            ),
            PredictionInputs::Columns(c) => {
                let n = c.encoded_len();
                if n > limits::PREDICTION_JSON_BYTES {
                    return Err(invalid(
                        what("inputs"),
                        format!(
                            "{n} bytes as columns; at most {} are stored (log a sample of the rows instead)",
                            limits::PREDICTION_JSON_BYTES
                        ),
                    ));
                }
                ("null".to_string(), bytes.then(|| c.encode()))
            }
        };
        Ok(EncodedPrediction {
            p: self,
            inputs_json,
            inputs_bin,
            outputs_json: bounded_json(
                &what("outputs"),
                &self.outputs,
                limits::PREDICTION_JSON_BYTES,
            )?,
            error: self.error.as_deref().map(storable_error),
        })
    }
}

impl Store {
    /// Creates or replaces the desired state of deployment `name` and records the change as
    /// its next revision, both in one transaction.
    ///
    /// `expected_revision`: None writes unconditionally; `Some(0)` only creates (fails if the
    /// deployment exists); `Some(r)` only replaces revision `r`. A mismatch fails with
    /// [`StoreError::Conflict`] carrying the current revision, and writes nothing. The
    /// project is replaced too (None clears it).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_deployment(
        &self,
        name: &str,
        spec: &serde_json::Value,
        project: Option<&str>,
        action: &str,
        principal: &str,
        expected_revision: Option<i64>,
        now_ms: i64,
    ) -> Result<DeploymentRecord, StoreError> {
        validate_name("deployment name", name)?;
        let what = |field: &str| format!("deployment '{name}' {field}");
        if let Some(project) = project {
            validate_name(&what("project"), project)?;
        }
        validate_name(&what("action"), action)?;
        validate_name(&what("principal"), principal)?;
        if let Some(expected) = expected_revision
            && expected < 0
        {
            return Err(invalid(
                what("expected revision"),
                format!("{expected} is negative: use 0 for \"must not exist yet\""),
            ));
        }
        let spec_json = bounded_json(&what("spec"), spec, limits::SPEC_JSON_BYTES)?;
        let change = DeploymentChange {
            name,
            spec_json: &spec_json,
            project,
            action,
            principal,
            expected_revision,
            now_ms,
        };
        let mut attempt = 1;
        loop {
            match self.try_put_deployment(&change).await {
                Err(StoreError::Query { source, .. })
                    if attempt < PUT_ATTEMPTS && lost_race(&source) =>
                {
                    attempt += 1;
                    let jitter = u64::from(rand::random::<u8>() % 16);
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt) + jitter))
                        .await;
                }
                Err(e) => return Err(e),
                Ok((revision, created_at_ms)) => {
                    return Ok(DeploymentRecord {
                        name: name.to_owned(),
                        revision,
                        spec: spec.clone(),
                        project: project.map(str::to_owned),
                        created_at_ms,
                        updated_at_ms: now_ms,
                    });
                }
            }
        }
    }

    /// Returns the new revision and the deployment's creation time.
    async fn try_put_deployment(&self, c: &DeploymentChange<'_>) -> Result<(i64, i64), StoreError> {
        let op = || format!("saving deployment {}", c.name);
        let mut tx = self.begin_write(&op()).await?;
        // On PostgreSQL the row lock makes concurrent editors of one deployment take turns, each
        // reading the revision the previous one committed; SQLite's BEGIN IMMEDIATE already
        // lets one writer in at a time. Two creations of a new name both find no row to lock:
        // the second fails on the primary key and is retried, then sees the first one's row.
        let current = sqlx::query(self.locked(
            "SELECT revision, created_at_ms FROM deployments WHERE name = $1",
            " FOR UPDATE",
        ))
        .bind(c.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        let (current_revision, created_at_ms) = match &current {
            Some(row) => (column(row, "revision")?, column(row, "created_at_ms")?),
            None => (0, c.now_ms),
        };
        if let Some(expected) = c.expected_revision
            && expected != current_revision
        {
            return Err(StoreError::Conflict {
                kind: "deployment",
                id: c.name.to_owned(),
                expected,
                actual: current_revision,
            });
        }
        let revision = next_revision(&mut *tx, c.name).await?;
        let write = if current.is_some() {
            sqlx::query(
                "UPDATE deployments SET revision = $2, spec_json = $3, project = $4, \
                 updated_at_ms = $5 WHERE name = $1",
            )
        } else {
            sqlx::query(
                "INSERT INTO deployments \
                 (name, revision, spec_json, project, updated_at_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
        };
        write
            .bind(c.name)
            .bind(revision)
            .bind(c.spec_json)
            .bind(c.project)
            .bind(c.now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        insert_revision(
            &mut *tx,
            c.name,
            revision,
            c.spec_json,
            c.action,
            c.principal,
            c.now_ms,
        )
        .await?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        Ok((revision, created_at_ms))
    }

    pub async fn get_deployment(&self, name: &str) -> Result<DeploymentRecord, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!("reading deployment {name}")))?
        .ok_or_else(|| deployment_not_found(name))?;
        deployment_from_row(&row)
    }

    /// All deployments, by name.
    pub async fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing deployments"))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Deletes deployment `name`, recording an "undeploy" revision that holds its last spec.
    /// Its revisions, predictions and feedback stay (retention prunes the predictions).
    pub async fn delete_deployment(
        &self,
        name: &str,
        principal: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        validate_name(&format!("deployment '{name}' principal"), principal)?;
        let op = || format!("deleting deployment {name}");
        let mut tx = self.begin_write(&op()).await?;
        let row = sqlx::query(self.locked(
            "SELECT spec_json FROM deployments WHERE name = $1",
            " FOR UPDATE",
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?
        .ok_or_else(|| deployment_not_found(name))?;
        let spec_json: String = column(&row, "spec_json")?;
        let revision = next_revision(&mut *tx, name).await?;
        insert_revision(
            &mut *tx, name, revision, &spec_json, "undeploy", principal, now_ms,
        )
        .await?;
        sqlx::query("DELETE FROM deployments WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Every revision of deployment `name`, newest first, including those from before it was
    /// deleted or recreated. NotFound when the name was never deployed.
    pub async fn deployment_revisions(
        &self,
        name: &str,
    ) -> Result<Vec<DeploymentRevision>, StoreError> {
        let rows = sqlx::query(
            "SELECT deployment, revision, spec_json, action, principal, created_at_ms \
             FROM deployment_revisions WHERE deployment = $1 ORDER BY revision DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading revisions of deployment {name}"
        )))?;
        if rows.is_empty() {
            return Err(deployment_not_found(name));
        }
        rows.iter()
            .map(|row| {
                Ok(DeploymentRevision {
                    deployment: column(row, "deployment")?,
                    revision: column(row, "revision")?,
                    spec: json_column(row, "spec_json", "deployment_revisions.spec_json")?,
                    action: column(row, "action")?,
                    principal: column(row, "principal")?,
                    created_at_ms: column(row, "created_at_ms")?,
                })
            })
            .collect()
    }

    /// Logs the batch in one transaction: all of it or, on any error, none of it.
    ///
    /// Every prediction is checked first ([`NewPrediction::validate`]); a (request id, role)
    /// logged before or twice in the batch fails with [`StoreError::AlreadyExists`] naming it.
    pub async fn insert_predictions(&self, batch: &[NewPrediction]) -> Result<(), StoreError> {
        self.insert_predictions_with(batch, &[], &[]).await
    }

    /// [`Store::insert_predictions`], writing in the same transaction the monitor buckets
    /// that count the batch and the performance counts it adds: the log and its aggregates
    /// commit together or not at all.
    pub async fn insert_predictions_with(
        &self,
        batch: &[NewPrediction],
        buckets: &[crate::BucketState],
        deltas: &[crate::PerformanceDelta],
    ) -> Result<(), StoreError> {
        self.insert_predictions_inner(batch, None, buckets, deltas)
            .await
    }

    /// Logs the batch in one transaction (as [`Store::insert_predictions`]) as writer
    /// `writer`'s records numbered `seqs` (one per prediction): the writer counts them into
    /// its monitor buckets later and checkpoints how far it counted
    /// ([`Store::checkpoint_log_writer`]); what it had not counted when it died is read back
    /// in that order with [`Store::logged_predictions_after`].
    pub async fn log_predictions(
        &self,
        writer: &str,
        seqs: &[i64],
        batch: &[NewPrediction],
    ) -> Result<(), StoreError> {
        if seqs.len() != batch.len() {
            return Err(invalid(
                "prediction log numbers",
                format!("{} numbers for {} predictions", seqs.len(), batch.len()),
            ));
        }
        self.insert_predictions_inner(batch, Some((writer, seqs)), &[], &[])
            .await
    }

    /// The highest record number of `writer` in the log (0 when it has none).
    pub async fn last_logged_seq(&self, writer: &str) -> Result<i64, StoreError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT MAX(log_seq) FROM predictions WHERE log_writer = $1")
                .bind(writer)
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::query(format!(
                    "reading the prediction log of writer {writer}"
                )))?;
        Ok(n.unwrap_or(0))
    }

    /// Whether a prediction with this request id and role is logged.
    pub async fn prediction_logged(
        &self,
        request_id: &str,
        role: &str,
    ) -> Result<bool, StoreError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM predictions WHERE request_id = $1 AND role = $2")
                .bind(request_id)
                .bind(role)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query(format!(
                    "looking up prediction {request_id}"
                )))?;
        Ok(n.is_some())
    }

    async fn insert_predictions_inner(
        &self,
        batch: &[NewPrediction],
        log: Option<(&str, &[i64])>,
        buckets: &[crate::BucketState],
        deltas: &[crate::PerformanceDelta],
    ) -> Result<(), StoreError> {
        if batch.is_empty() && buckets.is_empty() && deltas.is_empty() {
            return Ok(());
        }
        let encoded = batch
            .iter()
            .map(NewPrediction::encode)
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = HashSet::with_capacity(batch.len());
        for p in batch {
            if !keys.insert((p.request_id.as_str(), p.role.as_str())) {
                return Err(prediction_exists(&p.request_id, &p.role));
            }
        }
        if let Some(writer) = &self.writer
            && buckets.is_empty()
            && deltas.is_empty()
        {
            // SQLite: the process's writer thread inserts the rows on its own connection.
            let mut seqs = log.map(|(_, seqs)| seqs.iter().copied());
            let rows = encoded
                .into_iter()
                .map(|e| crate::writer::PredictionRow {
                    request_id: e.p.request_id.clone(),
                    deployment: e.p.deployment.clone(),
                    model: e.p.model.clone(),
                    version: e.p.version,
                    role: e.p.role.clone(),
                    inputs_json: e.inputs_json,
                    outputs_json: e.outputs_json,
                    rows: e.p.rows,
                    error: e.error,
                    latency_us: e.p.latency_us,
                    created_at_ms: e.p.created_at_ms,
                    inputs_bin: e.inputs_bin,
                    log_seq: seqs.as_mut().and_then(Iterator::next),
                })
                .collect();
            return writer
                .log_predictions(crate::writer::Predictions {
                    writer: log.map(|(w, _)| w.to_owned()),
                    rows,
                })
                .await;
        }
        let op = || format!("logging {} predictions", batch.len());
        let mut tx = self.begin_write(&op()).await?;
        let mut seqs = log.map(|(_, seqs)| seqs.iter().copied());
        for chunk in encoded.chunks(PREDICTIONS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO predictions ({PREDICTION_COLUMNS}) {}",
                values_rows(self.backend, chunk.len(), 14)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(&e.p.request_id)
                    .bind(&e.p.deployment)
                    .bind(&e.p.model)
                    .bind(e.p.version)
                    .bind(&e.p.role)
                    .bind(&e.inputs_json)
                    .bind(&e.outputs_json)
                    .bind(e.p.rows)
                    .bind(e.error.as_deref())
                    .bind(e.p.latency_us)
                    .bind(e.p.created_at_ms)
                    .bind(e.inputs_bin.as_deref())
                    .bind(log.map(|(writer, _)| writer))
                    .bind(seqs.as_mut().and_then(Iterator::next));
            }
            if let Err(e) = q.execute(&mut *tx).await {
                let duplicate = matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation());
                drop(tx);
                if duplicate {
                    return Err(self.name_logged_prediction(batch).await.unwrap_or_else(|| {
                        StoreError::Query {
                            op: op(),
                            source: e,
                        }
                    }));
                }
                return Err(StoreError::Query {
                    op: op(),
                    source: e,
                });
            }
        }
        crate::monitoring::write_own_buckets(&mut tx, buckets, &op()).await?;
        crate::monitoring::add_performance(&mut tx, deltas, &op()).await?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// After a batch hit the primary key: which of its predictions was logged already.
    async fn name_logged_prediction(&self, batch: &[NewPrediction]) -> Option<StoreError> {
        let wanted: HashSet<(&str, &str)> = batch
            .iter()
            .map(|p| (p.request_id.as_str(), p.role.as_str()))
            .collect();
        let ids: Vec<&str> = batch.iter().map(|p| p.request_id.as_str()).collect();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT request_id, role FROM predictions WHERE request_id IN {}",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(&self.pool).await.ok()?;
            for row in &rows {
                let id: String = column(row, "request_id").ok()?;
                let role: String = column(row, "role").ok()?;
                if wanted.contains(&(id.as_str(), role.as_str())) {
                    return Some(prediction_exists(&id, &role));
                }
            }
        }
        None
    }

    /// The primary (or canary) prediction of a request, with its labels; a shadow copy is
    /// never returned here.
    pub async fn get_prediction(&self, request_id: &str) -> Result<PredictionRecord, StoreError> {
        let op = || format!("reading prediction {request_id}");
        // 'primary' sorts after 'canary': should both exist, the primary answered the request.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PREDICTION_COLUMNS} FROM predictions \
             WHERE request_id = $1 AND role <> 'shadow' ORDER BY role DESC LIMIT 1"
        )))
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op()))?
        .ok_or_else(|| prediction_not_found(request_id))?;
        let mut records = vec![prediction_from_row(&row)?];
        self.attach_labels(&mut records).await?;
        records
            .pop()
            .ok_or_else(|| prediction_not_found(request_id))
    }

    /// Predictions of `deployment` created at or after `since_ms`, newest first, at most
    /// `limit` (`limit <= 0`: no limit), of the given roles (empty: all), each with the
    /// labels received so far.
    pub async fn recent_predictions(
        &self,
        deployment: &str,
        since_ms: i64,
        limit: i64,
        roles: &[&str],
    ) -> Result<Vec<PredictionRecord>, StoreError> {
        for role in roles {
            validate_role("prediction role filter", role)?;
        }
        let limit = if limit <= 0 { i64::MAX } else { limit };
        let role_filter = if roles.is_empty() {
            String::new()
        } else {
            format!(" AND role IN {}", placeholders(4, roles.len()))
        };
        let sql = format!(
            "SELECT {PREDICTION_COLUMNS} FROM predictions \
             WHERE deployment = $1 AND created_at_ms >= $2{role_filter} \
             ORDER BY created_at_ms DESC, request_id DESC, role DESC LIMIT $3"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(deployment)
            .bind(since_ms)
            .bind(limit);
        for role in roles {
            q = q.bind(*role);
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "reading predictions of deployment {deployment}"
            )))?;
        let mut records = rows
            .iter()
            .map(prediction_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_labels(&mut records).await?;
        Ok(records)
    }

    /// Fills in each record's labels. Read by the records' own request ids (not by repeating
    /// their query) so that predictions logged in between cannot shift which ones get labels.
    async fn attach_labels(&self, records: &mut [PredictionRecord]) -> Result<(), StoreError> {
        let mut ids: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut labels: HashMap<String, Vec<(i64, serde_json::Value)>> = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT request_id, row_index, label_json FROM feedback WHERE request_id IN {}",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("reading feedback labels"))?;
            for row in &rows {
                labels.entry(column(row, "request_id")?).or_default().push((
                    column(row, "row_index")?,
                    json_column(row, "label_json", "feedback.label_json")?,
                ));
            }
        }
        for record in records.iter_mut() {
            let Some(found) = labels.get(&record.request_id) else {
                continue;
            };
            for (index, label) in found {
                if let Some(slot) = usize::try_from(*index)
                    .ok()
                    .and_then(|i| record.labels.get_mut(i))
                {
                    *slot = Some(label.clone());
                }
            }
        }
        Ok(())
    }

    /// Records the true value of row `row_index` of request `request_id`, replacing an earlier
    /// label of that row. Fails with NotFound when no prediction has that request id (never
    /// logged, sampled out or pruned) and Invalid when the prediction has no such row.
    pub async fn put_feedback(
        &self,
        request_id: &str,
        row_index: i64,
        label: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.put_feedback_scored(request_id, row_index, label, now_ms, None)
            .await
    }

    /// [`Store::put_feedback`] that also moves the performance counts of the prediction's
    /// bucket in the same transaction: the row's score is added, and a replaced label's
    /// score removed, so late feedback lands in the window of the prediction it labels.
    pub async fn put_feedback_scored(
        &self,
        request_id: &str,
        row_index: i64,
        label: &serde_json::Value,
        now_ms: i64,
        scoring: Option<&crate::FeedbackScoring<'_>>,
    ) -> Result<(), StoreError> {
        let what = |field: &str| format!("feedback for '{request_id}' {field}");
        if row_index < 0 {
            return Err(invalid(
                what("row_index"),
                format!("{row_index} is negative"),
            ));
        }
        if label.is_null() {
            return Err(invalid(
                what("label"),
                "it is null: send the true value of the row",
            ));
        }
        let label_json = bounded_json(&what("label"), label, limits::LABEL_JSON_BYTES)?;
        let op = || format!("recording feedback for request {request_id}");
        let mut tx = self.begin_write(&op()).await?;
        // FOR SHARE: retention deleting this prediction waits until the label is in, then
        // deletes it with the prediction instead of leaving it orphaned.
        let row = sqlx::query(self.locked(
            "SELECT deployment, rows FROM predictions WHERE request_id = $1 \
             ORDER BY role DESC LIMIT 1",
            " FOR SHARE",
        ))
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?
        .ok_or_else(|| prediction_not_found(request_id))?;
        let deployment: String = column(&row, "deployment")?;
        let rows: i64 = column(&row, "rows")?;
        if row_index >= rows {
            return Err(invalid(
                what("row_index"),
                format!(
                    "row {row_index} does not exist: the prediction has {rows} rows, numbered from 0"
                ),
            ));
        }
        if let Some(scoring) = scoring {
            self.rescore(&mut tx, request_id, row_index, label, scoring, &op())
                .await?;
        }
        sqlx::query(
            "INSERT INTO feedback (request_id, row_index, deployment, label_json, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, row_index) DO UPDATE \
             SET label_json = excluded.label_json, created_at_ms = excluded.created_at_ms",
        )
        .bind(request_id)
        .bind(row_index)
        .bind(&deployment)
        .bind(&label_json)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Moves the performance counts for a new label of one row: the old label's score out, the
    /// new one's in, in the bucket and role of the prediction that answered (never a shadow).
    async fn rescore(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        request_id: &str,
        row_index: i64,
        label: &serde_json::Value,
        scoring: &crate::FeedbackScoring<'_>,
        op: &str,
    ) -> Result<(), StoreError> {
        let Some(row) = sqlx::query(
            "SELECT deployment, role, version, created_at_ms, outputs_json FROM predictions \
             WHERE request_id = $1 AND role <> 'shadow' ORDER BY role DESC LIMIT 1",
        )
        .bind(request_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::query(op.to_owned()))?
        else {
            return Ok(());
        };
        let deployment: String = column(&row, "deployment")?;
        let role: String = column(&row, "role")?;
        let version: i64 = column(&row, "version")?;
        let created: i64 = column(&row, "created_at_ms")?;
        let outputs = json_column(&row, "outputs_json", "predictions.outputs_json")?;
        let prediction = usize::try_from(row_index)
            .ok()
            .and_then(|i| outputs.as_array().and_then(|a| a.get(i)));
        let at = (
            deployment.as_str(),
            (scoring.bucket_ms)(created),
            role.as_str(),
            version,
        );
        let old =
            sqlx::query("SELECT label_json FROM feedback WHERE request_id = $1 AND row_index = $2")
                .bind(request_id)
                .bind(row_index)
                .fetch_optional(&mut **tx)
                .await
                .map_err(StoreError::query(op.to_owned()))?;
        let mut deltas = Vec::new();
        if let Some(old) = old {
            let old = json_column(&old, "label_json", "feedback.label_json")?;
            deltas.extend(crate::monitoring::scored_deltas(
                at,
                &(scoring.score)(prediction, &old),
                -1,
            ));
        }
        deltas.extend(crate::monitoring::scored_deltas(
            at,
            &(scoring.score)(prediction, label),
            1,
        ));
        crate::monitoring::add_performance(tx, &deltas, op).await
    }

    /// Writer `writer`'s predictions after its record `after_seq`, in the order it logged
    /// them, at most `limit`: what a writer that died had not yet counted into its monitor
    /// buckets.
    pub async fn logged_predictions_after(
        &self,
        writer: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<LoggedPrediction>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PREDICTION_COLUMNS} FROM predictions \
             WHERE log_writer = $1 AND log_seq > $2 ORDER BY log_seq LIMIT $3"
        )))
        .bind(writer)
        .bind(after_seq)
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading the prediction log of writer {writer}"
        )))?;
        rows.iter()
            .map(|row| {
                Ok(LoggedPrediction {
                    seq: column(row, "log_seq")?,
                    prediction: NewPrediction {
                        request_id: column(row, "request_id")?,
                        deployment: column(row, "deployment")?,
                        model: column(row, "model")?,
                        version: column(row, "version")?,
                        role: column(row, "role")?,
                        inputs: inputs_column(row)?,
                        outputs: json_column(row, "outputs_json", "predictions.outputs_json")?,
                        rows: column(row, "rows")?,
                        error: column(row, "error")?,
                        latency_us: column(row, "latency_us")?,
                        created_at_ms: column(row, "created_at_ms")?,
                    },
                })
            })
            .collect()
    }

    /// Retention: deletes the predictions of `deployment` created before `older_than_ms`, and
    /// those beyond its newest `keep` (`keep <= 0`: no count bound), with their feedback.
    /// Returns how many predictions (rows of the log, all roles) were deleted.
    ///
    /// Works in transactions of at most 1000 predictions, oldest first, so logging goes on
    /// meanwhile; predictions logged during the call are never deleted by it for the count.
    pub async fn prune_predictions(
        &self,
        deployment: &str,
        keep: i64,
        older_than_ms: i64,
    ) -> Result<u64, StoreError> {
        let op = || format!("pruning predictions of deployment {deployment}");
        // Everything strictly before `bound` in (created_at_ms, request_id, role) order goes.
        // The age bound sorts before every real row of that millisecond (request ids are not
        // empty); both backends compare text bytewise, as Rust does.
        let mut bound = (older_than_ms, String::new(), String::new());
        if keep > 0 {
            let newest_kept = sqlx::query(
                "SELECT created_at_ms, request_id, role FROM predictions WHERE deployment = $1 \
                 ORDER BY created_at_ms DESC, request_id DESC, role DESC LIMIT 1 OFFSET $2",
            )
            .bind(deployment)
            .bind(keep - 1)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op()))?;
            if let Some(row) = newest_kept {
                let oldest_kept = (
                    column(&row, "created_at_ms")?,
                    column(&row, "request_id")?,
                    column(&row, "role")?,
                );
                bound = bound.max(oldest_kept);
            }
        }
        let mut deleted = 0u64;
        loop {
            let mut tx = self.begin_write(&op()).await?;
            let gone = sqlx::query(
                "DELETE FROM predictions WHERE (request_id, role) IN (\
                 SELECT request_id, role FROM predictions WHERE deployment = $1 \
                 AND (created_at_ms, request_id, role) < ($2, $3, $4) \
                 ORDER BY created_at_ms, request_id, role LIMIT $5) RETURNING request_id",
            )
            .bind(deployment)
            .bind(bound.0)
            .bind(&bound.1)
            .bind(&bound.2)
            .bind(PRUNE_BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
            let mut ids = gone
                .iter()
                .map(|row| column::<String>(row, "request_id"))
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(IDS_PER_QUERY) {
                // A request's labels go with its last role: a shadow copy may outlive the
                // primary by a row when the count bound falls between them.
                let sql = format!(
                    "DELETE FROM feedback WHERE request_id IN {} AND NOT EXISTS \
                     (SELECT 1 FROM predictions p WHERE p.request_id = feedback.request_id)",
                    placeholders(1, chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await.map_err(StoreError::query(op()))?;
            }
            tx.commit().await.map_err(StoreError::query(op()))?;
            deleted += gone.len() as u64;
            if (gone.len() as i64) < PRUNE_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// How many predictions (all roles) of `deployment` are logged.
    pub async fn count_predictions(&self, deployment: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM predictions WHERE deployment = $1")
            .bind(deployment)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "counting predictions of deployment {deployment}"
            )))?;
        column(&row, "n")
    }

    pub async fn insert_alert_event(&self, e: &NewAlertEvent) -> Result<AlertEvent, StoreError> {
        validate_name("alert event deployment", &e.deployment)?;
        let what = |field: &str| format!("alert event of deployment '{}' {field}", e.deployment);
        validate_name(&what("rule"), &e.rule)?;
        if !matches!(e.state.as_str(), "firing" | "resolved") {
            return Err(invalid(
                what("state"),
                format!("'{}': expected firing or resolved", e.state),
            ));
        }
        if let Some(value) = e.value
            && !value.is_finite()
        {
            // SQLite would store NaN as NULL: refuse rather than read back something else.
            return Err(invalid(
                what("value"),
                format!("{value} is not a finite number: leave it out instead"),
            ));
        }
        let row = sqlx::query(
            "INSERT INTO alert_events (deployment, rule, state, value, message, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&e.deployment)
        .bind(&e.rule)
        .bind(&e.state)
        .bind(e.value)
        .bind(&e.message)
        .bind(e.created_at_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "recording alert {} of deployment {}",
            e.rule, e.deployment
        )))?;
        Ok(AlertEvent {
            id: column(&row, "id")?,
            deployment: e.deployment.clone(),
            rule: e.rule.clone(),
            state: e.state.clone(),
            value: e.value,
            message: e.message.clone(),
            created_at_ms: e.created_at_ms,
        })
    }

    /// The newest `limit` alert events of `deployment` (`limit <= 0`: all), newest first.
    pub async fn alert_events(
        &self,
        deployment: &str,
        limit: i64,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let limit = if limit <= 0 { i64::MAX } else { limit };
        let rows = sqlx::query(
            "SELECT id, deployment, rule, state, value, message, created_at_ms \
             FROM alert_events WHERE deployment = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2",
        )
        .bind(deployment)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading alert events of deployment {deployment}"
        )))?;
        rows.iter()
            .map(|row| {
                Ok(AlertEvent {
                    id: column(row, "id")?,
                    deployment: column(row, "deployment")?,
                    rule: column(row, "rule")?,
                    state: column(row, "state")?,
                    value: column(row, "value")?,
                    message: column(row, "message")?,
                    created_at_ms: column(row, "created_at_ms")?,
                })
            })
            .collect()
    }

    /// `sql` with a row-locking clause on PostgreSQL. SQLite has none and needs none: its
    /// writers hold the database lock for the whole transaction.
    fn locked(&self, sql: &'static str, lock: &'static str) -> AssertSqlSafe<String> {
        match self.backend {
            Backend::Postgres => AssertSqlSafe(format!("{sql}{lock}")),
            Backend::Sqlite => AssertSqlSafe(sql.to_owned()),
        }
    }
}

/// What [`Store::put_deployment`] writes, checked.
struct DeploymentChange<'a> {
    name: &'a str,
    spec_json: &'a str,
    project: Option<&'a str>,
    action: &'a str,
    principal: &'a str,
    expected_revision: Option<i64>,
    now_ms: i64,
}

/// One past the highest revision the name ever had, so a recreated deployment continues
/// its numbering.
async fn next_revision<'e, E>(executor: E, name: &str) -> Result<i64, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT COALESCE(MAX(revision), 0) AS latest FROM deployment_revisions \
         WHERE deployment = $1",
    )
    .bind(name)
    .fetch_one(executor)
    .await
    .map_err(StoreError::query(format!(
        "reading revisions of deployment {name}"
    )))?;
    let latest: i64 = column(&row, "latest")?;
    Ok(latest + 1)
}

async fn insert_revision<'e, E>(
    executor: E,
    name: &str,
    revision: i64,
    spec_json: &str,
    action: &str,
    principal: &str,
    now_ms: i64,
) -> Result<(), StoreError>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO deployment_revisions \
         (deployment, revision, spec_json, action, principal, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(name)
    .bind(revision)
    .bind(spec_json)
    .bind(action)
    .bind(principal)
    .bind(now_ms)
    .execute(executor)
    .await
    .map_err(StoreError::query(format!(
        "recording revision {revision} of deployment {name}"
    )))?;
    Ok(())
}

fn deployment_from_row(row: &AnyRow) -> Result<DeploymentRecord, StoreError> {
    Ok(DeploymentRecord {
        name: column(row, "name")?,
        revision: column(row, "revision")?,
        spec: json_column(row, "spec_json", "deployments.spec_json")?,
        project: column(row, "project")?,
        created_at_ms: column(row, "created_at_ms")?,
        updated_at_ms: column(row, "updated_at_ms")?,
    })
}

/// A prediction without its labels yet (all None).
fn prediction_from_row(row: &AnyRow) -> Result<PredictionRecord, StoreError> {
    let rows: i64 = column(row, "rows")?;
    Ok(PredictionRecord {
        request_id: column(row, "request_id")?,
        deployment: column(row, "deployment")?,
        model: column(row, "model")?,
        version: column(row, "version")?,
        role: column(row, "role")?,
        inputs: inputs_column(row)?.to_rows().into_owned(),
        outputs: json_column(row, "outputs_json", "predictions.outputs_json")?,
        rows,
        error: column(row, "error")?,
        latency_us: column(row, "latency_us")?,
        created_at_ms: column(row, "created_at_ms")?,
        labels: vec![None; usize::try_from(rows).unwrap_or(0)],
    })
}

/// A stored prediction's inputs: its columns when it has them, else its JSON rows.
fn inputs_column(row: &AnyRow) -> Result<PredictionInputs, StoreError> {
    let bin: Option<Vec<u8>> = column(row, "inputs_bin")?;
    match bin {
        Some(bytes) => crate::columns::Columns::decode(&bytes)
            .map(PredictionInputs::Columns)
            .map_err(|e| StoreError::Corrupt {
                what: "predictions.inputs_bin".into(),
                detail: e.to_string(),
            }),
        None => {
            json_column(row, "inputs_json", "predictions.inputs_json").map(PredictionInputs::Rows)
        }
    }
}

fn json_column(
    row: &AnyRow,
    name: &str,
    what: &'static str,
) -> Result<serde_json::Value, StoreError> {
    let text: String = column(row, name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        what: what.into(),
        detail: e.to_string(),
    })
}

/// Names, ids, roles and the like: non-empty, bounded and free of control characters (they
/// end up in URLs, logs and error messages).
fn validate_name(what: &str, value: &str) -> Result<(), StoreError> {
    if value.trim().is_empty() {
        return Err(invalid(what, "it is empty"));
    }
    if value.len() > limits::NAME_BYTES {
        return Err(invalid(
            what,
            format!(
                "{} bytes long; at most {} are allowed",
                value.len(),
                limits::NAME_BYTES
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            what,
            format!("{value:?} contains control characters"),
        ));
    }
    Ok(())
}

fn validate_role(what: &str, role: &str) -> Result<(), StoreError> {
    if PREDICTION_ROLES.contains(&role) {
        Ok(())
    } else {
        Err(invalid(
            what,
            format!("'{role}': expected primary, canary or shadow"),
        ))
    }
}

fn bounded_json(what: &str, value: &serde_json::Value, max: usize) -> Result<String, StoreError> {
    let text = value.to_string();
    if text.len() > max {
        return Err(invalid(
            what,
            format!(
                "{} bytes of JSON; at most {max} are stored (log a sample of the rows instead)",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// PostgreSQL text cannot hold NUL, and an error message is not worth failing a batch for.
fn storable_error(error: &str) -> String {
    let mut end = error.len().min(limits::ERROR_BYTES);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    let mut text = error[..end].replace('\0', "\u{FFFD}");
    if end < error.len() {
        text.push('…');
    }
    text
}

fn invalid(what: impl Into<String>, detail: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        what: what.into(),
        detail: detail.into(),
    }
}

fn deployment_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "deployment",
        id: name.to_owned(),
    }
}

fn prediction_not_found(request_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "prediction",
        id: request_id.to_owned(),
    }
}

pub(crate) fn prediction_exists(request_id: &str, role: &str) -> StoreError {
    StoreError::AlreadyExists {
        kind: "prediction",
        id: format!("{request_id}/{role}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(limits::ERROR_BYTES);
        let stored = storable_error(&long);
        assert!(stored.len() <= limits::ERROR_BYTES + '…'.len_utf8());
        assert!(stored.ends_with('…'));
        assert_eq!(storable_error("a\0b"), "a\u{FFFD}b");
        assert_eq!(storable_error("short"), "short");
    }

    #[test]
    fn predictions_must_agree_with_their_rows() {
        let ok = NewPrediction {
            request_id: "q-1".into(),
            deployment: "iris".into(),
            model: "iris".into(),
            version: 1,
            role: "primary".into(),
            inputs: serde_json::json!([{"x": 1.0}, {"x": 2.0}]).into(),
            outputs: serde_json::json!([0, 1]),
            rows: 2,
            error: None,
            latency_us: 10,
            created_at_ms: 1,
        };
        ok.validate().unwrap();
        let short_outputs = NewPrediction {
            outputs: serde_json::json!([0]),
            ..ok.clone()
        };
        assert!(short_outputs.validate().is_err());
        // A failed prediction may have no outputs at all.
        NewPrediction {
            error: Some("model crashed".into()),
            outputs: serde_json::json!([]),
            ..ok.clone()
        }
        .validate()
        .unwrap();
        let wrong_rows = NewPrediction {
            rows: 3,
            ..ok.clone()
        };
        assert!(wrong_rows.validate().is_err());
        let bad_role = NewPrediction {
            role: "champion".into(),
            ..ok
        };
        let err = bad_role.validate().unwrap_err().to_string();
        assert!(err.contains("prediction 'q-1' role"), "{err}");
    }
}
