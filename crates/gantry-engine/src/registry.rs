//! The side effects of the `register` and `deploy` built-ins: the component (in its container)
//! checks the gate and describes the registration, or writes the deployment request; whoever
//! holds the metadata store records it after the step succeeded — the engine for its own runs,
//! the server for an exported workflow's step reports.

use crate::now_ms;
use gantry_artifacts::ArtifactStore;
use gantry_ml::register::Registration;
use gantry_store::{NewModelVersion, StepRunRecord, Store};
use std::collections::{BTreeMap, BTreeSet};

const MAX_REGISTRATION_BYTES: u64 = 4 << 20;
/// The model-version tag naming the artifact digest of the reference profile.
pub const REFERENCE_PROFILE_TAG: &str = "gantry.reference_profile";

/// The reference profile digest of a model version, if it has one.
pub async fn reference_profile_of(
    store: &gantry_store::Store,
    model: &str,
    version: i64,
) -> Option<String> {
    let v = store
        .get_registered_model_version(model, version)
        .await
        .ok()?;
    v.tags
        .into_iter()
        .find(|t| t.key == REFERENCE_PROFILE_TAG)
        .map(|t| t.value)
}

/// A built-in whose success has a side effect in the metadata store, done by whoever holds
/// it after the step succeeded: the engine for its own runs, the server for an exported
/// workflow's reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideEffect {
    /// `register`: the model version its `registration` output describes.
    Register,
    /// `deploy`: the deployment change its `deployment` output requests.
    Deploy,
}

impl SideEffect {
    /// The side effect of the built-in `name`, if it has one.
    pub fn of_builtin(name: &str) -> Option<SideEffect> {
        match name {
            "register" => Some(SideEffect::Register),
            "deploy" => Some(SideEffect::Deploy),
            _ => None,
        }
    }

    /// The reason the step's attempt is recorded failed with when the side effect failed.
    pub fn failed(self, message: &str) -> String {
        let what = match self {
            SideEffect::Register => "registration",
            SideEffect::Deploy => "deployment",
        };
        format!("{what} failed: {message}")
    }

    /// Does it for step run `rec` of run `run_id` (of `pipeline`, its project), with the step's
    /// input and output digests; `check` sees a registration before anything is written and
    /// may refuse it. A line for the step's log, or why it could not be done.
    #[allow(clippy::too_many_arguments)]
    pub async fn perform(
        self,
        store: &Store,
        artifacts: &ArtifactStore,
        run_id: &str,
        pipeline: &str,
        rec: &StepRunRecord,
        inputs: &BTreeMap<String, String>,
        outputs: &BTreeMap<String, String>,
        check: impl AsyncFnOnce(&Registration) -> Result<(), String>,
    ) -> Result<String, String> {
        match self {
            SideEffect::Register => {
                let reg = read_registration(artifacts, outputs).await?;
                check(&reg).await?;
                register_model(store, artifacts, run_id, rec, inputs, &reg).await
            }
            SideEffect::Deploy => {
                request_deployment(store, artifacts, run_id, pipeline, outputs).await
            }
        }
    }
}

/// The side effect of a `builtin/deploy` step: the change it requested becomes the
/// deployment's new desired state (resolved and validated like `gantry deploy`, within the
/// run's project, its pipeline).
async fn request_deployment(
    store: &Store,
    artifacts: &ArtifactStore,
    run_id: &str,
    pipeline: &str,
    outputs: &BTreeMap<String, String>,
) -> Result<String, String> {
    let digest = outputs
        .get("deployment")
        .ok_or("the step wrote no `deployment` output; declare `outputs: [deployment]`")?;
    let bytes = artifacts
        .read_bytes(digest, MAX_REGISTRATION_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("unreadable deployment request: {e}"))?;
    let name = doc["deployment"]
        .as_str()
        .ok_or("the deployment request names no deployment")?;
    let req: crate::deployments::DeployRequest = serde_json::from_value(doc["change"].clone())
        .map_err(|e| format!("unreadable deployment request: {e}"))?;
    let record = crate::deployments::apply(
        store,
        name,
        req,
        &format!("run:{run_id}"),
        Some(pipeline),
        now_ms(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let spec: gantry_spec::deployment::DeploymentSpec =
        serde_json::from_value(record.spec).map_err(|e| e.to_string())?;
    Ok(format!(
        "deployment {name} revision {}: {}{} (served by `gantry server`)",
        record.revision,
        spec.model.label(),
        spec.canary
            .map(|c| format!(", canary {} at {}%", c.target.label(), c.weight))
            .unwrap_or_default()
    ))
}

/// The registration a `register` step wrote (its `registration` output).
async fn read_registration(
    artifacts: &ArtifactStore,
    outputs: &BTreeMap<String, String>,
) -> Result<Registration, String> {
    let reg_digest = outputs
        .get("registration")
        .ok_or("the step wrote no `registration` output; declare `outputs: [registration]`")?;
    let bytes = artifacts
        .read_bytes(reg_digest, MAX_REGISTRATION_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable registration: {e}"))
}

/// Registers the model `reg` describes (from [`read_registration`]) as the step run `rec` of
/// run `run_id` produced it, and returns a line for the step's log.
async fn register_model(
    store: &Store,
    artifacts: &ArtifactStore,
    run_id: &str,
    rec: &StepRunRecord,
    inputs: &BTreeMap<String, String>,
    reg: &Registration,
) -> Result<String, String> {
    let model_digest = inputs.get("model").ok_or("no `model` input")?;
    let kind = artifacts
        .stat(model_digest)
        .await
        .map_err(|e| e.to_string())?
        .map(|i| i.kind.as_str().to_string())
        .unwrap_or_else(|| "directory".into());
    let data = data_lineage(store, run_id, model_digest).await?;
    let params = serde_json::json!({
        "algorithm": reg.algorithm, "task": reg.task, "label": reg.label,
        "metrics_source": reg.metrics_source,
    });
    let version = store
        .register_model_version(&NewModelVersion {
            model: reg.model.clone(),
            artifact_digest: model_digest.clone(),
            artifact_kind: kind,
            run_id: Some(run_id.to_string()),
            step_run_id: Some(rec.id.clone()),
            step: Some(rec.step.clone()),
            metrics_json: serde_json::to_string(&reg.metrics).map_err(|e| e.to_string())?,
            data_digests_json: serde_json::to_string(&data).map_err(|e| e.to_string())?,
            params_json: params.to_string(),
            flavor: "builtin".into(),
            description: reg.description.clone(),
            alias: reg.alias.clone(),
            now_ms: now_ms(),
        })
        .await
        .map_err(|e| e.to_string())?;
    // The reference profile monitoring compares live traffic with.
    if let Some(profile) = inputs.get("profile") {
        store
            .set_registered_model_version_tag(
                &version.model,
                version.version,
                &gantry_store::KeyValue {
                    key: REFERENCE_PROFILE_TAG.into(),
                    value: profile.clone(),
                },
            )
            .await
            .map_err(|e| format!("recording the reference profile: {e}"))?;
    }
    Ok(match &reg.alias {
        Some(alias) => format!(
            "registered model {} v{} ({}@{alias})",
            version.model, version.version, version.model
        ),
        None => format!("registered model {} v{}", version.model, version.version),
    })
}

/// The external data a digest was derived from within this run: walk producers
/// upstream until reaching inputs that no step of the run produced.
async fn data_lineage(store: &Store, run_id: &str, digest: &str) -> Result<Vec<String>, String> {
    let steps = store
        .list_step_runs(run_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut producer: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in &steps {
        let outs: BTreeMap<String, String> =
            serde_json::from_str(&s.outputs_json).unwrap_or_default();
        let ins: BTreeMap<String, String> =
            serde_json::from_str(&s.inputs_json).unwrap_or_default();
        for d in outs.values() {
            producer.insert(d.clone(), ins.clone());
        }
    }
    Ok(roots(&producer, digest))
}

/// Pure part of [`data_lineage`]: `producer` maps each produced digest to the inputs of
/// the step that produced it.
pub(crate) fn roots(
    producer: &BTreeMap<String, BTreeMap<String, String>>,
    digest: &str,
) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = BTreeSet::new();
    let mut todo = vec![digest.to_string()];
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        match producer.get(&d) {
            Some(inputs) => todo.extend(inputs.values().cloned()),
            None if d != digest => {
                out.insert(d);
            }
            None => {}
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::roots;
    use std::collections::BTreeMap;

    #[test]
    fn lineage_reaches_the_external_data_through_every_step() {
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut producer = BTreeMap::new();
        producer.insert("dataset".to_string(), m(&[("source", "csv")]));
        producer.insert("train".to_string(), m(&[("dataset", "dataset")]));
        producer.insert("transform".to_string(), m(&[("dataset", "dataset")]));
        producer.insert(
            "model".to_string(),
            m(&[
                ("train", "train"),
                ("transform", "transform"),
                ("extra", "lookup"),
            ]),
        );
        assert_eq!(
            roots(&producer, "model"),
            vec!["csv".to_string(), "lookup".to_string()]
        );
        assert!(roots(&producer, "csv").is_empty());
    }
}
