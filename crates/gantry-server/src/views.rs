//! The JSON documents of runs and models, shared by the REST API and the CLI (which
//! renders its tables from them, locally and against a server alike).

use gantry_store::{
    MetricRow, ModelVersionRecord, RunRecord, StepRunRecord, StepStatus, Store, StoreError,
};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Rows of a run list (`gantry runs`, `GET /api/v1/runs`): the runs' step summaries come
/// from one query, never one per run.
pub async fn run_items(store: &Store, runs: &[RunRecord]) -> Result<Vec<Value>, StoreError> {
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    let summaries = store.step_summaries(&ids).await?;
    Ok(runs
        .iter()
        .map(|r| {
            let hits = summaries.get(&r.id).map(|s| s.cached).unwrap_or(0);
            json!({
                "id": r.id, "pipeline": r.pipeline, "status": r.status,
                "created_at_ms": r.created_at_ms, "started_at_ms": r.started_at_ms,
                "finished_at_ms": r.finished_at_ms,
                "duration_ms": r.finished_at_ms.zip(r.started_at_ms).map(|(f, s)| f - s),
                "cache_hits": hits, "rerun_of": r.rerun_of, "error": r.error,
            })
        })
        .collect())
}

/// Everything about one run (`gantry show`, `GET /api/v1/runs/{id}`).
pub async fn run_detail(
    store: &Store,
    run: &RunRecord,
    prices: &gantry_alloc::Prices,
) -> Result<Value, StoreError> {
    let steps = store.list_step_runs(&run.id).await?;
    let lineage = store.lineage_for_run(&run.id).await?;
    let metrics = store.metrics_for_run(&run.id).await?;
    let params: Value = serde_json::from_str(&run.params_json).unwrap_or_default();
    let images: Value = serde_json::from_str(&run.images_json).unwrap_or_default();
    let steps_json: Vec<_> = steps
        .iter()
        .map(|s| {
            let step_metrics: BTreeMap<_, _> = metrics
                .iter()
                .filter(|m| m.step == s.step)
                .map(|m| (m.key.clone(), m.value))
                .collect();
            json!({
                "id": s.id, "step": s.step, "attempt": s.attempt, "status": s.status,
                "exit_code": s.exit_code, "reason": s.reason, "cached": s.status == StepStatus::Cached,
                "cached_from": s.cached_from, "cache_key": s.cache_key, "image": s.image_digest,
                "started_at_ms": s.started_at_ms, "finished_at_ms": s.finished_at_ms,
                "requested": {"cpu_millis": s.requested_cpu_millis, "memory_bytes": s.requested_memory_bytes, "gpu": s.requested_gpu},
                "usage": {"peak_memory_bytes": s.peak_memory_bytes, "cpu_seconds": s.cpu_micros.map(|c| c as f64 / 1e6), "wall_ms": s.wall_ms,
                          "gpu_model": s.gpu_model, "gpu_util_percent": s.gpu_util_percent,
                          "gpu_memory_peak_bytes": s.gpu_memory_peak_bytes, "gpu_idle_ms": s.gpu_idle_ms,
                          "gpu_devices": s.gpu_devices.as_deref().map(|d| d.split(',').filter_map(|i| i.trim().parse::<u32>().ok()).collect::<Vec<_>>())},
                "resources_note": s.resources_note,
                "inputs": serde_json::from_str::<Value>(&s.inputs_json).unwrap_or_default(),
                "outputs": serde_json::from_str::<Value>(&s.outputs_json).unwrap_or_default(),
                "metrics": step_metrics,
            })
        })
        .collect();
    Ok(json!({
        "id": run.id, "pipeline": run.pipeline, "status": run.status, "spec_file": run.spec_file,
        "params": params, "images": images, "no_cache": run.no_cache, "rerun_of": run.rerun_of,
        "created_at_ms": run.created_at_ms, "started_at_ms": run.started_at_ms,
        "finished_at_ms": run.finished_at_ms, "error": run.error,
        "submitted_by": run.submitted_by,
        "usage": run_usage(store, run, prices).await?,
        "steps": steps_json, "artifacts": lineage,
        "sweeps": sweeps(&steps, &metrics),
        "models": store.model_versions_for_run(&run.id).await?,
        "metrics": metrics,
        "mlflow": mlflow_view(store, run).await?,
        "image_decisions": store.image_decisions("run", &run.id).await?,
    }))
}

/// What the run's step runs used and what that cost (requests × time × prices), with what
/// its cache hits saved.
async fn run_usage(
    store: &Store,
    run: &RunRecord,
    prices: &gantry_alloc::Prices,
) -> Result<Value, StoreError> {
    let q = gantry_store::UsageQuery {
        since_ms: 0,
        until_ms: gantry_engine::now_ms().max(run.created_at_ms) + 1,
        by: gantry_alloc::Dimension::Pipeline,
        project: None,
        run_id: Some(run.id.clone()),
    };
    let groups = store.usage(&q).await?;
    let report = gantry_alloc::Report::new(q.by, q.since_ms, q.until_ms, groups, prices);
    let mut total = serde_json::to_value(&report.total).unwrap_or_default();
    if let Some(o) = total.as_object_mut() {
        o.remove("key");
        o.insert("currency".into(), json!(report.currency));
    }
    Ok(total)
}

/// The run's MLflow side: its own MLflow run and what steps logged from inside their
/// containers (child runs tagged `gantry.step`). Null when the run was never mirrored.
async fn mlflow_view(store: &Store, run: &RunRecord) -> Result<Value, StoreError> {
    let experiment = match store.get_experiment_by_name(&run.pipeline).await {
        Ok(e) => e,
        Err(StoreError::NotFound { .. }) => return Ok(Value::Null),
        Err(e) => return Err(e),
    };
    let found = store
        .search_tracking_runs(&gantry_store::SearchQuery {
            experiment_ids: vec![experiment.experiment_id.clone()],
            filter: format!(
                "tags.`{}` = '{}'",
                gantry_engine::GANTRY_RUN_TAG,
                run.id.replace('\'', "")
            ),
            view: gantry_store::ViewType::ActiveOnly,
            max_results: Some(10_000),
            order_by: Vec::new(),
            page_token: None,
        })
        .await?;
    let mut parent = Value::Null;
    let mut steps = serde_json::Map::new();
    for r in found.items {
        let step = r
            .tags
            .iter()
            .find(|t| t.key == "gantry.step")
            .map(|t| t.value.clone());
        let metrics: BTreeMap<String, f64> =
            r.metrics.iter().map(|m| (m.key.clone(), m.value)).collect();
        let params: BTreeMap<String, String> = r
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        match step {
            Some(step) => {
                steps.insert(
                    step,
                    json!({"run_id": r.info.run_id, "status": r.info.status, "metrics": metrics, "params": params}),
                );
            }
            None => parent = Value::String(r.info.run_id.clone()),
        }
    }
    Ok(json!({
        "experiment_id": experiment.experiment_id,
        "run_id": parent,
        "steps": steps,
    }))
}

/// One model version (`gantry model show`, `GET /api/v1/models/{name}/versions/{v}`).
pub fn model_version(v: &ModelVersionRecord) -> Value {
    let metrics: Value = serde_json::from_str(&v.metrics_json).unwrap_or_default();
    let data: Value = serde_json::from_str(&v.data_digests_json).unwrap_or_default();
    let params: Value = serde_json::from_str(&v.params_json).unwrap_or_default();
    json!({
        "model": v.model, "version": v.version, "aliases": v.aliases, "flavor": v.flavor,
        "artifact": {"digest": v.artifact_digest, "kind": v.artifact_kind},
        "metrics": metrics, "params": params,
        "lineage": {"run": v.run_id, "step": v.step, "step_run": v.step_run_id, "data": data},
        "description": v.description, "created_at_ms": v.created_at_ms,
    })
}

#[derive(Serialize)]
pub struct SweepView {
    pub step: String,
    pub keys: Vec<String>,
    pub metric_keys: Vec<String>,
    pub members: Vec<SweepMember>,
}

#[derive(Serialize)]
pub struct SweepMember {
    pub name: String,
    pub status: String,
    pub values: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
}

/// Groups the expansions of matrix steps (`train[algorithm=logistic,max_depth=2]`) with
/// their combination values and metrics, for the sweep tables of `gantry show`.
pub fn sweeps(steps: &[StepRunRecord], metrics: &[MetricRow]) -> Vec<SweepView> {
    let mut out: Vec<SweepView> = Vec::new();
    for s in steps {
        let Some((base, rest)) = s.step.split_once('[') else {
            continue;
        };
        let Some(label) = rest.strip_suffix(']') else {
            continue;
        };
        let values: BTreeMap<String, String> = label
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let keys: Vec<String> = label
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
            .collect();
        let member_metrics: BTreeMap<String, f64> = metrics
            .iter()
            .filter(|m| m.step == s.step)
            .map(|m| (m.key.clone(), m.value))
            .collect();
        let member = SweepMember {
            name: s.step.clone(),
            status: s.status.as_str().to_string(),
            values,
            metrics: member_metrics,
        };
        let view = match out.iter_mut().position(|v| v.step == base) {
            Some(i) => &mut out[i],
            None => {
                out.push(SweepView {
                    step: base.to_string(),
                    keys,
                    metric_keys: Vec::new(),
                    members: Vec::new(),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        // Later attempts of the same combination replace earlier ones.
        view.members.retain(|m| m.name != member.name);
        view.members.push(member);
    }
    for v in &mut out {
        let mut keys: Vec<String> = v
            .members
            .iter()
            .flat_map(|m| m.metrics.keys().cloned())
            .filter(|k| k.starts_with("validation."))
            .collect();
        keys.sort();
        keys.dedup();
        v.metric_keys = keys;
    }
    out
}
