//! Changing deployments: the one implementation behind the server's `/api/v1/deployments`,
//! the CLI in local mode and the `builtin/deploy` step. Each change resolves model references to
//! versions, validates the whole desired state, and writes it as a new revision.

use gantry_monitor::aggregate::BUCKET_MS;
use gantry_spec::deployment::{self, DeploymentChange, DeploymentSpec, ModelTarget};
use gantry_store::{DeploymentRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A change as the API and the CLI send it; absent fields stay as they are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// `NAME@ALIAS`, `NAME@VERSION` or `NAME` (its latest version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear_canary: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear_shadow: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_predictions: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Compare-and-set: fail if the deployment's revision is not this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<i64>,
}

/// Why a change was refused; `field` names the part of the request at fault.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Store(StoreError),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => OpError::NotFound(e.to_string()),
            StoreError::Conflict { .. } => OpError::Conflict(e.to_string()),
            other => OpError::Store(other),
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> OpError {
    OpError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

async fn resolve(store: &Store, field: &str, reference: &str) -> Result<ModelTarget, OpError> {
    let v = store.resolve_model(reference).await.map_err(|e| match e {
        StoreError::NotFound { .. } | StoreError::Invalid { .. } => invalid(field, e.to_string()),
        other => OpError::Store(other),
    })?;
    if !matches!(v.flavor.as_str(), "builtin" | "onnx" | "custom") {
        return Err(invalid(
            field,
            format!(
                "{}@{} has flavor `{}`: only builtin, onnx and custom models can be deployed",
                v.model, v.version, v.flavor
            ),
        ));
    }
    Ok(ModelTarget {
        reference: reference.to_string(),
        model: v.model,
        version: v.version,
    })
}

fn spec_of(record: &DeploymentRecord) -> Result<DeploymentSpec, OpError> {
    serde_json::from_value(record.spec.clone()).map_err(|e| {
        OpError::Store(StoreError::Invalid {
            what: format!("the stored spec of deployment {}", record.name),
            detail: format!("it is unreadable: {e}"),
        })
    })
}

async fn current(store: &Store, name: &str) -> Result<Option<DeploymentRecord>, OpError> {
    match store.get_deployment(name).await {
        Ok(r) => Ok(Some(r)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(OpError::Store(e)),
    }
}

/// Whether `project` (a scoped token's) may see this deployment.
pub fn visible_to(record: &DeploymentRecord, project: Option<&str>) -> bool {
    match (project, &record.project) {
        (None, _) => true,
        (Some(p), Some(owner)) => p == owner,
        (Some(_), None) => false,
    }
}

/// Creates or changes deployment `name`.
pub async fn apply(
    store: &Store,
    name: &str,
    req: DeployRequest,
    principal: &str,
    project: Option<&str>,
    now_ms: i64,
) -> Result<DeploymentRecord, OpError> {
    deployment::validate_name(name).map_err(|e| invalid(e.field, e.message))?;
    let existing = current(store, name).await?;
    if let Some(r) = &existing
        && !visible_to(r, project)
    {
        return Err(OpError::NotFound(format!("deployment {name} not found")));
    }
    if let Some(rules) = &req.rules {
        for rule in rules {
            gantry_monitor::AlertRule::parse(rule).map_err(|e| invalid("rules", e.to_string()))?;
        }
    }
    let mut change = DeploymentChange {
        weight: req.weight,
        clear_canary: req.clear_canary,
        clear_shadow: req.clear_shadow,
        replicas: req.replicas,
        cpu: req.cpu,
        memory: req.memory,
        sample_rate: req.sample_rate,
        rules: req.rules,
        webhook: req.webhook,
        window: req.window,
        max_predictions: req.max_predictions,
        max_age: req.max_age,
        ..Default::default()
    };
    if let Some(m) = &req.model {
        change.model = Some(resolve(store, "model", m).await?);
    }
    if let Some(c) = &req.canary {
        change.canary = Some(resolve(store, "canary", c).await?);
    }
    if let Some(s) = &req.shadow {
        change.shadow = Some(resolve(store, "shadow", s).await?);
    }
    let before = existing.as_ref().map(spec_of).transpose()?;
    let spec =
        deployment::apply(before.as_ref(), change).map_err(|e| invalid(e.field, e.message))?;
    let action = if existing.is_some() {
        "update"
    } else {
        "create"
    };
    write(
        store,
        name,
        &spec,
        existing.as_ref(),
        req.expected_revision,
        action,
        principal,
        project,
        now_ms,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn write(
    store: &Store,
    name: &str,
    spec: &DeploymentSpec,
    existing: Option<&DeploymentRecord>,
    expected: Option<i64>,
    action: &str,
    principal: &str,
    project: Option<&str>,
    now_ms: i64,
) -> Result<DeploymentRecord, OpError> {
    let value = serde_json::to_value(spec)
        .map_err(|e| invalid("spec", format!("cannot encode the deployment: {e}")))?;
    let project = existing
        .map(|r| r.project.clone())
        .unwrap_or_else(|| project.map(str::to_owned));
    // Without an explicit expectation, still refuse to overwrite a change made between our
    // read and our write.
    let expected = expected.or(Some(existing.map_or(0, |r| r.revision)));
    Ok(store
        .put_deployment(
            name,
            &value,
            project.as_deref(),
            action,
            principal,
            expected,
            now_ms,
        )
        .await?)
}

async fn existing(
    store: &Store,
    name: &str,
    project: Option<&str>,
) -> Result<DeploymentRecord, OpError> {
    match current(store, name).await? {
        Some(r) if visible_to(&r, project) => Ok(r),
        _ => Err(OpError::NotFound(format!(
            "deployment {name} not found (see `gantry deployments`)"
        ))),
    }
}

/// The canary becomes the primary model.
pub async fn promote(
    store: &Store,
    name: &str,
    principal: &str,
    project: Option<&str>,
    now_ms: i64,
) -> Result<DeploymentRecord, OpError> {
    let r = existing(store, name, project).await?;
    let spec = deployment::promote(&spec_of(&r)?).map_err(|e| invalid(e.field, e.message))?;
    write(
        store,
        name,
        &spec,
        Some(&r),
        None,
        "promote",
        principal,
        project,
        now_ms,
    )
    .await
}

/// Back to the state before the last change.
pub async fn rollback(
    store: &Store,
    name: &str,
    principal: &str,
    project: Option<&str>,
    now_ms: i64,
) -> Result<DeploymentRecord, OpError> {
    let r = existing(store, name, project).await?;
    let mut revisions = store.deployment_revisions(name).await?;
    revisions.reverse();
    let mut history = Vec::with_capacity(revisions.len());
    for v in &revisions {
        let spec: DeploymentSpec = serde_json::from_value(v.spec.clone()).map_err(|e| {
            OpError::Store(StoreError::Invalid {
                what: format!("revision {} of deployment {name}", v.revision),
                detail: format!("its stored spec is unreadable: {e}"),
            })
        })?;
        history.push((v.action.as_str(), spec));
    }
    let spec = deployment::rollback(history.iter().map(|(a, s)| (*a, s)))
        .map_err(|e| invalid(e.field, e.message))?;
    write(
        store,
        name,
        &spec,
        Some(&r),
        None,
        "rollback",
        principal,
        project,
        now_ms,
    )
    .await
}

/// Stops serving; the revisions stay for the record.
pub async fn undeploy(
    store: &Store,
    name: &str,
    principal: &str,
    project: Option<&str>,
    now_ms: i64,
) -> Result<(), OpError> {
    existing(store, name, project).await?;
    Ok(store.delete_deployment(name, principal, now_ms).await?)
}

/// Ground truth for logged predictions, as the API takes it: one item, or `{"feedback": [...]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum FeedbackRequest {
    Many { feedback: Vec<FeedbackItem> },
    One(FeedbackItem),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackItem {
    pub request_id: String,
    /// The row of a batch request (0 for single rows).
    #[serde(default)]
    pub row: Option<i64>,
    /// The true value of one row…
    #[serde(default)]
    pub label: Option<Value>,
    /// …or of every row of a batch request, in order.
    #[serde(default)]
    pub labels: Option<Vec<Value>>,
}

/// Records feedback; every item must belong to deployment `name`. Returns how many labels
/// were stored.
pub async fn feedback(
    store: &Store,
    name: &str,
    req: FeedbackRequest,
    now_ms: i64,
) -> Result<usize, OpError> {
    let items = match req {
        FeedbackRequest::Many { feedback } => feedback,
        FeedbackRequest::One(item) => vec![item],
    };
    if items.is_empty() {
        return Err(invalid("feedback", "no feedback items"));
    }
    // Check everything first: a bad item stores nothing.
    let mut labels = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = |f: &str| format!("feedback[{i}].{f}");
        let p = store
            .get_prediction(&item.request_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => OpError::Invalid {
                    field: field("request_id"),
                    message: format!(
                        "no logged prediction has request id `{}` (was it sampled out, or pruned?)",
                        item.request_id
                    ),
                },
                other => OpError::Store(other),
            })?;
        if p.deployment != name {
            return Err(OpError::Invalid {
                field: field("request_id"),
                message: format!(
                    "request `{}` was answered by deployment {}, not {name}",
                    item.request_id, p.deployment
                ),
            });
        }
        match (&item.label, &item.labels) {
            (Some(label), None) => {
                let row = item.row.unwrap_or(0);
                if row < 0 || row >= p.rows {
                    return Err(OpError::Invalid {
                        field: field("row"),
                        message: format!("row {row} is outside the request's {} rows", p.rows),
                    });
                }
                labels.push((item.request_id.clone(), row, label.clone()));
            }
            (None, Some(all)) => {
                if all.len() as i64 != p.rows || item.row.is_some() {
                    return Err(OpError::Invalid {
                        field: field("labels"),
                        message: format!(
                            "give one label per row: the request had {} rows, got {}",
                            p.rows,
                            all.len()
                        ),
                    });
                }
                for (row, label) in all.iter().enumerate() {
                    labels.push((item.request_id.clone(), row as i64, label.clone()));
                }
            }
            _ => {
                return Err(OpError::Invalid {
                    field: field("label"),
                    message: "give either `label` (one row) or `labels` (every row)".into(),
                });
            }
        }
    }
    // Each label also moves the performance counts of its prediction's bucket (monitors
    // read those, never the log).
    let bucket_ms = |t: i64| t.div_euclid(BUCKET_MS) * BUCKET_MS;
    let score = |prediction: Option<&serde_json::Value>, label: &serde_json::Value| {
        let s = gantry_monitor::aggregate::score(prediction, label);
        (s.classes, s.error)
    };
    let scoring = gantry_store::FeedbackScoring {
        bucket_ms: &bucket_ms,
        score: &score,
    };
    for (id, row, label) in &labels {
        store
            .put_feedback_scored(id, *row, label, now_ms, Some(&scoring))
            .await?;
    }
    Ok(labels.len())
}
