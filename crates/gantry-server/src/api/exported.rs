//! Exported workflows (Argo Workflows, Kubeflow Pipelines) that report to this server
//! (`gantry compile --report-to`); the wrapper's side is `gantry step-exec`, the wire types
//! are in `gantry_kube::exported`.
//!
//! - `POST /api/v1/exported/cache` `{pipeline, key, outputs}` → `{hit: {step_run, run,
//!   outputs} | null}`: a previous execution with that cache key whose outputs are all stored.
//!   Gantry's own executions count, and those reported by exported runs of the same pipeline
//!   (project); Gantry's own runs never reuse what a pod reported.
//! - `POST /api/v1/exported/steps` (editor): one attempt of one step. The first report of a
//!   workflow run creates its run (id derived from the orchestrator's id), each report adds a
//!   step run with its usage, lineage and metrics; a failure of a step's last attempt fails
//!   the run, the success of every step succeeds it. Every reported output must be in this
//!   server's artifact store, and a cached step must name a step run the cache could have
//!   answered with the same outputs, so a report cannot claim what is not there. A report
//!   carries its attempt's step run id, so one sent again is answered from the record; a
//!   `register`/`deploy` attempt is recorded running until its side effect is done, and a
//!   copy arriving meanwhile waits for that outcome.
//! - `POST /api/v1/exported/runs` (editor): the workflow's end, from its exit handler. A run
//!   still running ends as the orchestrator says (a step that died before it could report —
//!   evicted, OOM-killed, never scheduled — fails it with the orchestrator's message); a run
//!   that already ended keeps its status; a workflow none of whose steps reported gets its run.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use gantry_engine::SideEffect;
use gantry_kube::exported::{
    CacheAnswer, CacheHit, CacheQuery, ExportedAnswer, ExportedEnd, ExportedEndAnswer,
    ExportedStatus, ExportedStep, WorkflowEnd, run_id,
};
use gantry_store::{RunRecord, RunStatus, StepRunRecord, StepStatus};
use serde_json::json;

use super::{ApiError, ApiResult, audit, require_write};
use crate::AppState;
use crate::auth::Principal;

fn project_check(p: &Principal, pipeline: &str) -> ApiResult<()> {
    if p.can_access_project(pipeline) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token '{}' is scoped to project {}: it cannot use pipeline {pipeline}",
            p.name,
            p.project.as_deref().unwrap_or("")
        )))
    }
}

fn body_error(e: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError::invalid("body", e.body_text())
}

/// `POST /api/v1/exported/cache`.
pub async fn cache(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<CacheQuery>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<CacheAnswer>> {
    let Json(q) = body.map_err(body_error)?;
    project_check(&p, &q.pipeline)?;
    if !gantry_kube::contract::is_digest(&q.key) {
        return Err(ApiError::invalid("key", "must be sha256:<64 hex digits>"));
    }
    let Some(found) = state
        .store
        .find_cached_for_exported(&q.key, &q.pipeline)
        .await?
    else {
        return Ok(Json(CacheAnswer { hit: None }));
    };
    let outputs: BTreeMap<String, String> =
        serde_json::from_str(&found.outputs_json).unwrap_or_default();
    if q.outputs.iter().any(|o| !outputs.contains_key(o)) {
        return Ok(Json(CacheAnswer { hit: None }));
    }
    for digest in outputs.values() {
        let stored = state
            .artifacts
            .stat(digest)
            .await
            .map_err(|e| ApiError::internal("reading the artifact store", e))?;
        if stored.is_none() {
            return Ok(Json(CacheAnswer { hit: None }));
        }
    }
    Ok(Json(CacheAnswer {
        hit: Some(CacheHit {
            step_run: found.id,
            run: found.run_id,
            outputs,
        }),
    }))
}

/// `POST /api/v1/exported/steps`.
pub async fn report(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<ExportedStep>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<ExportedAnswer>> {
    require_write(&p)?;
    let Json(r) = body.map_err(body_error)?;
    r.check()
        .map_err(|(field, message)| ApiError::invalid(field, message))?;
    project_check(&p, &r.pipeline)?;

    // Everything the report names must be here: lineage points at stored artifacts only.
    let mut kinds = BTreeMap::new();
    for (side, map) in [("inputs", &r.inputs), ("outputs", &r.outputs)] {
        for (name, digest) in map {
            let info = state
                .artifacts
                .stat(digest)
                .await
                .map_err(|e| ApiError::internal("reading the artifact store", e))?
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!("{side}.{name}"),
                        format!(
                            "{digest} is not in this server's artifact store; the workflow's --artifacts must be the server's store"
                        ),
                    )
                })?;
            kinds.insert(digest.clone(), (info.kind.as_str(), info.size));
        }
    }
    let metrics = match &r.metrics {
        None => BTreeMap::new(),
        Some(digest) => {
            let bytes = state
                .artifacts
                .read_bytes(digest, gantry_engine::METRICS_MAX_BYTES)
                .await
                .map_err(|e| ApiError::invalid("metrics", format!("{digest}: {e}")))?;
            gantry_engine::parse_metrics(&bytes)
                .map_err(|e| ApiError::invalid("metrics", format!("metrics.json: {e}")))?
        }
    };
    if r.status == ExportedStatus::Cached {
        let (Some(from), Some(key)) = (&r.cached_from, &r.cache_key) else {
            return Err(ApiError::invalid("cached_from", "missing"));
        };
        let entry = state
            .store
            .cache_entry_for_exported(from, key, &r.pipeline)
            .await?
            .ok_or_else(|| {
                ApiError::invalid(
                    "cached_from",
                    format!(
                        "step run {from} is not a cache entry of key {key} for pipeline {}",
                        r.pipeline
                    ),
                )
            })?;
        let theirs: BTreeMap<String, String> =
            serde_json::from_str(&entry.outputs_json).unwrap_or_default();
        if r.outputs.iter().any(|(k, v)| theirs.get(k) != Some(v)) {
            return Err(ApiError::invalid(
                "outputs",
                format!("the outputs differ from those of step run {from}"),
            ));
        }
    }

    // A report sent again (its answer lost on the way) is answered from what was recorded.
    if let Some(id) = &r.step_run
        && let Some(earlier) = state.store.find_step_run(id).await?
    {
        return answer_again(&state, &r, earlier).await;
    }

    let now = gantry_engine::now_ms();
    let run = ensure_run(
        &state,
        &p,
        Workflow {
            orchestrator: &r.orchestrator,
            run: &r.run,
            run_name: &r.run_name,
            pipeline: &r.pipeline,
            params: &r.params,
            spec: None,
        },
        r.started_at_ms,
    )
    .await?;

    // A `register` or `deploy` that succeeded acts once recorded, as the engine does after
    // its own step. Until it has, the attempt is recorded running: a copy of the report that
    // arrives meanwhile waits for the outcome instead of answering before it is known.
    let effect_of = r
        .effect
        .as_deref()
        .and_then(SideEffect::of_builtin)
        .filter(|_| r.status == ExportedStatus::Succeeded);
    let (attempts, _) = state.store.step_progress(&run.id, &r.step).await?;
    let to_json = |m: &BTreeMap<String, String>| serde_json::to_string(m).unwrap_or_default();
    let rec = StepRunRecord {
        id: r
            .step_run
            .clone()
            .unwrap_or_else(|| gantry_store::new_id("step")),
        run_id: run.id.clone(),
        step: r.step.clone(),
        seq: i64::from(r.seq),
        attempt: attempts + 1,
        status: match r.status {
            ExportedStatus::Succeeded if effect_of.is_some() => StepStatus::Running,
            ExportedStatus::Succeeded => StepStatus::Succeeded,
            ExportedStatus::Failed => StepStatus::Failed,
            ExportedStatus::Cached => StepStatus::Cached,
            ExportedStatus::Cancelled => StepStatus::Cancelled,
        },
        exit_code: r.exit_code.map(i64::from),
        reason: r.reason.clone().map(|s| s.chars().take(4096).collect()),
        cache_key: r.cache_key.clone(),
        cached_from: r.cached_from.clone(),
        image_digest: r.image_digest.clone(),
        started_at_ms: Some(r.started_at_ms),
        finished_at_ms: Some(r.finished_at_ms),
        requested_cpu_millis: r.cpu_millis.min(i64::MAX as u64) as i64,
        requested_memory_bytes: r.memory_bytes.min(i64::MAX as u64) as i64,
        requested_gpu: i64::from(r.gpu),
        peak_memory_bytes: Some(r.peak_memory_bytes.min(i64::MAX as u64) as i64),
        cpu_micros: Some(r.cpu_micros.min(i64::MAX as u64) as i64),
        wall_ms: Some(r.wall_ms.min(i64::MAX as u64) as i64),
        inputs_json: to_json(&r.inputs),
        outputs_json: to_json(&r.outputs),
        gpu_model: None,
        gpu_util_percent: None,
        gpu_memory_peak_bytes: None,
        gpu_idle_ms: None,
        resources_note: None,
        usage_key: None,
        gpu_devices: None,
    };
    for (digest, (kind, size)) in &kinds {
        state
            .store
            .record_artifact(digest, kind, *size, now)
            .await?;
    }
    if !state.store.insert_step_run(&rec).await? {
        // The same report, sent twice at once: the other request recorded it a moment ago.
        let earlier = state
            .store
            .find_step_run(&rec.id)
            .await?
            .ok_or_else(|| ApiError::internal("reading step run", &rec.id))?;
        return answer_again(&state, &r, earlier).await;
    }
    // Recorded: the rest runs to its end even when the client goes away meanwhile (its call
    // timed out), so that the attempt never stays `running` with its side effect half done.
    let task = tokio::spawn(record_and_act(
        state, p, r, run, rec, metrics, effect_of, now,
    ));
    task.await
        .map_err(|e| ApiError::internal("handling the report", e))?
        .map(Json)
}

/// What follows a report's attempt being recorded: its lineage and metrics, its side effect,
/// the run's status. When this fails with the attempt still `running`, the attempt is
/// recorded failed with the reason (as far as the store lets), so that copies of the report
/// answer at once instead of waiting for an outcome that never comes.
#[allow(clippy::too_many_arguments)]
async fn record_and_act(
    state: AppState,
    p: Principal,
    r: ExportedStep,
    run: RunRecord,
    mut rec: StepRunRecord,
    metrics: BTreeMap<String, f64>,
    effect_of: Option<SideEffect>,
    now: i64,
) -> ApiResult<ExportedAnswer> {
    let answer = act(&state, &p, &r, run, &mut rec, &metrics, effect_of, now).await;
    if let Err(e) = &answer
        && rec.status == StepStatus::Running
    {
        rec.status = StepStatus::Failed;
        rec.reason = Some(format!(
            "the server could not finish handling this step's report: {}",
            e.message
        ));
        if let Err(e) = state.store.upsert_step_run(&rec).await {
            tracing::error!(step_run = %rec.id, error = %e, "recording a report's failure");
        }
    }
    answer
}

#[allow(clippy::too_many_arguments)]
async fn act(
    state: &AppState,
    p: &Principal,
    r: &ExportedStep,
    run: RunRecord,
    rec: &mut StepRunRecord,
    metrics: &BTreeMap<String, f64>,
    effect_of: Option<SideEffect>,
    now: i64,
) -> ApiResult<ExportedAnswer> {
    gantry_engine::record_lineage(&state.store, &rec.id, &r.inputs, &r.outputs)
        .await
        .map_err(|e| ApiError::internal("recording lineage", e))?;
    if !metrics.is_empty() {
        state.store.record_metrics(&rec.id, metrics, now).await?;
    }

    // The side effect; when it cannot be done, the attempt failed (the wrapper fails the
    // step).
    let (mut effect, mut effect_error) = (None, None);
    if let Some(kind) = effect_of {
        match side_effect(state, p, kind, &run, rec, r).await {
            Ok(line) => {
                rec.status = StepStatus::Succeeded;
                state.store.upsert_step_run(rec).await?;
                let chunk = gantry_store::LogChunk::message("gantry", now, &line);
                state.store.append_logs(&rec.id, &[chunk]).await?;
                effect = Some(line);
            }
            Err(message) => {
                let message = kind.failed(&message);
                rec.status = StepStatus::Failed;
                rec.reason = Some(message.chars().take(4096).collect());
                state.store.upsert_step_run(rec).await?;
                effect_error = Some(message);
            }
        }
    }
    let (outcome, reason) = match &effect_error {
        Some(e) => (ExportedStatus::Failed, Some(e.as_str())),
        None => (r.status, r.reason.as_deref()),
    };

    // The run's status: a failed last attempt fails it, all steps done succeeds it. A late
    // report (a retry that succeeded after all) moves a failed run on again.
    let (_, done) = state.store.step_progress(&run.id, &r.step).await?;
    let status = match outcome {
        ExportedStatus::Cancelled | ExportedStatus::Failed
            if outcome == ExportedStatus::Cancelled || rec.attempt > i64::from(r.retries) =>
        {
            let status = if outcome == ExportedStatus::Cancelled {
                RunStatus::Cancelled
            } else {
                RunStatus::Failed
            };
            let error = format!("step {} {}", r.step, reason.unwrap_or("failed"));
            state
                .store
                .update_run_status(&run.id, status, Some(r.finished_at_ms), Some(&error))
                .await?;
            status
        }
        _ if done >= i64::from(r.steps) => {
            state
                .store
                .update_run_status(&run.id, RunStatus::Succeeded, Some(r.finished_at_ms), None)
                .await?;
            RunStatus::Succeeded
        }
        _ => run.status,
    };
    audit(
        state,
        p,
        "exported.step",
        &run.id,
        json!({
            "orchestrator": r.orchestrator, "run": r.run, "step": r.step,
            "attempt": rec.attempt, "status": rec.status.as_str(),
        }),
    )
    .await;
    Ok(ExportedAnswer {
        run_id: run.id,
        step_run_id: rec.id.clone(),
        attempt: rec.attempt as u32,
        run_status: status.as_str().to_string(),
        effect,
        effect_error,
    })
}

/// How long a copy of a report waits for another request still acting on it (registering,
/// deploying) before it answers 503 and the wrapper sends it again; below the wrapper's
/// 30-second call timeout.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The answer to a report whose step run id is recorded already: from the record, recording
/// and acting on nothing again; an id of another step or workflow run is refused. While
/// another request is still acting on it, the answer waits for its outcome (up to
/// [`SETTLE_WAIT`]).
async fn answer_again(
    state: &AppState,
    r: &ExportedStep,
    mut earlier: StepRunRecord,
) -> ApiResult<Json<ExportedAnswer>> {
    let run = run_id(&r.orchestrator, &r.run);
    let now = if earlier.run_id == run && earlier.step == r.step {
        Some(state.store.get_run(&run).await?)
    } else {
        None
    };
    let Some(mut now) = now.filter(|now| now.pipeline == r.pipeline) else {
        return Err(ApiError::conflict(format!(
            "step run {} exists and is not an attempt of step {} of this workflow run",
            earlier.id, r.step
        ))
        .with_field("step_run"));
    };
    if earlier.status == StepStatus::Running {
        earlier = settled(state, earlier).await?;
        now = state.store.get_run(&run).await?;
    }
    // Reported succeeded and recorded otherwise: its side effect failed (or the request
    // acting on it was interrupted, and the workflow's end settled it).
    let acted = r.effect.is_some() && r.status == ExportedStatus::Succeeded;
    let effect_error = (acted && earlier.status != StepStatus::Succeeded).then(|| {
        earlier
            .reason
            .clone()
            .unwrap_or_else(|| format!("step run {} is recorded {}", earlier.id, earlier.status))
    });
    Ok(Json(ExportedAnswer {
        run_id: run,
        attempt: earlier.attempt as u32,
        run_status: now.status.as_str().to_string(),
        effect: (acted && earlier.status == StepStatus::Succeeded)
            .then(|| format!("done already: step run {}", earlier.id)),
        effect_error,
        step_run_id: earlier.id,
    }))
}

/// The step run once the request acting on it (registering, deploying) has recorded the
/// outcome; 503 (send it again) if that takes more than [`SETTLE_WAIT`].
async fn settled(state: &AppState, mut rec: StepRunRecord) -> ApiResult<StepRunRecord> {
    let since = std::time::Instant::now();
    while rec.status == StepStatus::Running {
        if since.elapsed() >= SETTLE_WAIT {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "step run {} is still being acted on by another copy of this report; send it again",
                    rec.id
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        rec = state
            .store
            .find_step_run(&rec.id)
            .await?
            .ok_or_else(|| ApiError::internal("reading step run", &rec.id))?;
    }
    Ok(rec)
}

/// The side effect of a reported `register` or `deploy` step: what the engine does after its
/// own, within the run's project; a line for the step's log, or why it could not.
async fn side_effect(
    state: &AppState,
    p: &Principal,
    effect: SideEffect,
    run: &RunRecord,
    rec: &StepRunRecord,
    r: &ExportedStep,
) -> Result<String, String> {
    let mut model = None;
    let line = effect
        .perform(
            &state.store,
            &state.artifacts,
            &run.id,
            &run.pipeline,
            rec,
            &r.inputs,
            &r.outputs,
            // A token scoped to a project adds versions to its own models, or starts a new one.
            async |reg| {
                model = Some(reg.model.clone());
                match super::models::may_add_version(state, p, &reg.model).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "model {} belongs to another project than {}",
                        reg.model, run.pipeline
                    )),
                    Err(e) => Err(e.message),
                }
            },
        )
        .await?;
    let (action, target) = match (effect, model) {
        (SideEffect::Register, Some(model)) => ("model.register", model),
        _ => ("deployment.apply", run.id.clone()),
    };
    audit(
        state,
        p,
        action,
        &target,
        json!({"run": run.id, "step_run": rec.id, "via": "exported", "done": line}),
    )
    .await;
    if effect == SideEffect::Deploy {
        state.deployments.nudge();
    }
    Ok(line)
}

/// The workflow run a report is about.
struct Workflow<'a> {
    orchestrator: &'a str,
    run: &'a str,
    run_name: &'a str,
    pipeline: &'a str,
    params: &'a serde_json::Value,
    /// The spec's text, from the exit handler: the run's snapshot.
    spec: Option<&'a str>,
}

/// The workflow run's Gantry run, created by the first report (or its end) that arrives.
async fn ensure_run(
    state: &AppState,
    p: &Principal,
    w: Workflow<'_>,
    started_at_ms: i64,
) -> ApiResult<RunRecord> {
    let fresh = RunRecord {
        id: run_id(w.orchestrator, w.run),
        pipeline: w.pipeline.to_string(),
        status: RunStatus::Running,
        spec_file: format!("{}:{}", w.orchestrator, w.run_name),
        spec_yaml: w.spec.unwrap_or_default().to_string(),
        params_json: if w.params.is_object() {
            w.params.to_string()
        } else {
            "{}".into()
        },
        images_json: "{}".into(),
        no_cache: false,
        rerun_of: None,
        created_at_ms: gantry_engine::now_ms(),
        started_at_ms: Some(started_at_ms),
        finished_at_ms: None,
        owner_pid: None,
        owner_host: None,
        error: None,
        submitted_by: Some(p.name.clone()),
    };
    let run = state
        .store
        .ensure_exported_run(&fresh, w.orchestrator, w.run, w.run_name)
        .await?;
    let ours = state.store.exported_run(&run.id).await?;
    if run.pipeline != w.pipeline || ours.is_none() {
        return Err(ApiError::conflict(format!(
            "run {} exists and is not this workflow run of pipeline {}",
            run.id, w.pipeline
        )));
    }
    // Created by a step's report: the end brings the spec.
    if let Some(spec) = w.spec.filter(|_| run.spec_yaml.is_empty()) {
        state.store.set_missing_spec(&run.id, spec).await?;
    }
    Ok(run)
}

/// `POST /api/v1/exported/runs`.
pub async fn end(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<ExportedEnd>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<ExportedEndAnswer>> {
    require_write(&p)?;
    let Json(e) = body.map_err(body_error)?;
    let outcome = e
        .outcome()
        .map_err(|(field, message)| ApiError::invalid(field, message))?;
    let spec = e
        .spec
        .as_deref()
        .map(gantry_kube::exported::decode_spec)
        .transpose()
        .map_err(|message| ApiError::invalid("spec", format!("the spec {message}")))?;
    project_check(&p, &e.pipeline)?;
    let run = ensure_run(
        &state,
        &p,
        Workflow {
            orchestrator: &e.orchestrator,
            run: &e.run,
            run_name: &e.run_name,
            pipeline: &e.pipeline,
            params: &e.params,
            spec: spec.as_deref(),
        },
        e.finished_at_ms,
    )
    .await?;
    let (status, error) = match outcome {
        WorkflowEnd::Succeeded => (RunStatus::Succeeded, None),
        WorkflowEnd::Failed => (RunStatus::Failed, Some(e.summary())),
        WorkflowEnd::Cancelled => (RunStatus::Cancelled, Some(e.summary())),
    };
    let ended = state
        .store
        .end_live_run(&run.id, status, e.finished_at_ms, error.as_deref())
        .await?;
    // An attempt still recorded running had its report's request stop halfway (the server
    // restarted while registering or deploying): it ends with the workflow. A request that
    // is in fact still acting records its outcome over this.
    state
        .store
        .interrupt_unfinished_step_runs(
            &run.id,
            e.finished_at_ms,
            "the server stopped before it finished acting on this step's report",
        )
        .await?;
    let now = state.store.get_run(&run.id).await?;
    audit(
        &state,
        &p,
        "exported.end",
        &run.id,
        json!({
            "orchestrator": e.orchestrator, "run": e.run, "status": e.status,
            "ended_here": ended,
        }),
    )
    .await;
    Ok(Json(ExportedEndAnswer {
        run_id: now.id,
        run_status: now.status.as_str().to_string(),
    }))
}
