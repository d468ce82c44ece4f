//! One run: plan, resolve images, record, then schedule steps until the DAG is done.

use crate::admission::{Grant, Pending, step_request};
use crate::dag::{Dag, NodeState};
use crate::events::{Event, RunSummary, StepSummary};
use crate::execute::{StepCtx, StepResult, execute_step};
use crate::owner::Owner;
use crate::{Engine, EngineError, now_ms};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gantry_alloc::queue::{Kind, Priority};
use gantry_alloc::recommend::{fmt_cpu, fmt_memory};
use gantry_image::ImageInfo;
use gantry_runtime::Runtime;
use gantry_spec::{ImageRef, InputSource, ParamValue, Pipeline, PlannedStep};
use gantry_store::{RunRecord, RunStatus, StepRunRecord, StepStatus, new_id};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What Gantry decided or has to say about a step's requests before the run starts.
#[derive(Debug, Default)]
struct Sizing {
    /// Recorded on the step run: where its requests came from (`memory: auto`).
    note: Option<String>,
    /// Said once in the step's log: a request far above what its last runs used.
    advice: Option<String>,
}

/// Everything needed to start a run. `pinned_*` make a rerun use exactly the image
/// digests and external input data of the run it reproduces.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub pipeline: Pipeline,
    pub spec_yaml: String,
    pub params: BTreeMap<String, ParamValue>,
    pub no_cache: bool,
    pub rerun_of: Option<String>,
    /// step name -> image digest
    pub pinned_images: BTreeMap<String, String>,
    /// "step/input" -> artifact digest, for inputs that come from a path
    pub pinned_inputs: BTreeMap<String, String>,
    /// Who asks for the run (recorded for usage reports): a token's name on the server,
    /// the Unix user for `gantry run`.
    pub submitted_by: Option<String>,
    /// Its class among its project's runs waiting for admission.
    pub priority: Priority,
    /// A run restored from the durable queue after a restart: its recorded id and place.
    pub queued: Option<QueuedAt>,
}

/// Where a queued run stands: the run recorded when it was submitted and its ticket (its
/// place in submission order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedAt {
    pub run_id: String,
    pub ticket: u64,
}

/// What the durable queue keeps of a request beyond the run's own record.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredRequest {
    base_dir: std::path::PathBuf,
    pinned_images: BTreeMap<String, String>,
    pinned_inputs: BTreeMap<String, String>,
}

impl RunRequest {
    pub fn new(
        pipeline: Pipeline,
        spec_yaml: String,
        params: BTreeMap<String, ParamValue>,
    ) -> RunRequest {
        RunRequest {
            pipeline,
            spec_yaml,
            params,
            no_cache: false,
            rerun_of: None,
            pinned_images: BTreeMap::new(),
            pinned_inputs: BTreeMap::new(),
            submitted_by: None,
            priority: Priority::Normal,
            queued: None,
        }
    }
}

impl<R: Runtime> Engine<R> {
    /// Runs a pipeline to completion (or cancellation) and returns its summary.
    /// Errors are reserved for runs that cannot start or cannot be recorded; failed
    /// steps are part of a successful call with a `failed` status.
    pub async fn run(
        &self,
        req: RunRequest,
        events: UnboundedSender<Event>,
        cancel: CancellationToken,
    ) -> Result<RunSummary, EngineError> {
        let inner = &self.inner;
        let mut plan = gantry_spec::plan(&req.pipeline, &req.params)?;
        let sizing = self.size_steps(&mut plan).await;
        for s in &plan.steps {
            if let Some(reason) = inner
                .cfg
                .capacity
                .rejects(&s.resources)
                .or_else(|| inner.scheduler.rejects(&plan.pipeline, &s.resources))
            {
                return Err(EngineError::Capacity {
                    step: s.name.clone(),
                    reason,
                });
            }
        }
        // Images the policy refuses whatever their content (registry, no rule, no digest) are
        // never pulled; the rest are resolved (pulled when missing) and then judged.
        let pre_denied = self.precheck_images(&plan.steps, &req.pinned_images);
        let (images, decisions) = if pre_denied.is_empty() {
            let images = self.resolve_images(&plan.steps, &req.pinned_images).await?;
            let decisions = self
                .check_images(&plan.steps, &images, &req.pinned_images)
                .await;
            (images, decisions)
        } else {
            (HashMap::new(), pre_denied)
        };

        let resumed = req.queued.clone();
        let run_id = resumed
            .as_ref()
            .map(|q| q.run_id.clone())
            .unwrap_or_else(|| new_id("r-"));
        let owner = Owner::current();
        let mut started = now_ms();

        let index: HashMap<&str, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = plan
            .steps
            .iter()
            .map(|s| {
                s.deps
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut dag = Dag::new(plan.steps.iter().map(|s| s.name.clone()).collect(), deps);
        // The run is admitted with its first step: that request also takes one of the
        // project's runs in flight (`max_runs`).
        let first = dag.ready().first().copied().unwrap_or(0);
        let mut admission = inner.scheduler.request(
            step_request(
                &run_id,
                &plan.pipeline,
                &plan.steps[first].name,
                Kind::StartRun,
                req.priority,
                &plan.steps[first].resources,
            ),
            resumed.as_ref().map(|q| q.ticket),
        );
        let mut first_grant = admission.try_take();
        let queued = first_grant.is_none();
        let images_json = serde_json::to_string(
            &images
                .iter()
                .map(|(k, v)| (k.clone(), v.digest.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap_or_default();
        let denied: Vec<String> = decisions
            .iter()
            .filter(|d| d.outcome == "deny")
            .map(|d| {
                format!(
                    "step {}: image {} ({}): {}",
                    d.item,
                    d.reference,
                    d.rule.as_deref().unwrap_or("no rule"),
                    d.reasons.join("; ")
                )
            })
            .collect();
        for d in decisions.iter().filter(|d| d.outcome == "warn") {
            tracing::warn!(
                "step {}: image {} allowed with warnings by the trust policy ({}): {}",
                d.item,
                d.reference,
                d.rule.as_deref().unwrap_or("no rule"),
                d.reasons.join("; ")
            );
        }
        if resumed.is_none() {
            inner
                .store
                .create_run(&RunRecord {
                    id: run_id.clone(),
                    pipeline: plan.pipeline.clone(),
                    status: if queued {
                        RunStatus::Queued
                    } else {
                        RunStatus::Running
                    },
                    spec_file: req.pipeline.file.clone(),
                    spec_yaml: req.spec_yaml.clone(),
                    params_json: serde_json::to_string(&req.params).unwrap_or_default(),
                    images_json,
                    no_cache: req.no_cache,
                    rerun_of: req.rerun_of.clone(),
                    created_at_ms: started,
                    started_at_ms: (!queued).then_some(started),
                    finished_at_ms: None,
                    owner_pid: Some(i64::from(owner.pid)),
                    owner_host: Some(owner.encode_host()),
                    error: None,
                    submitted_by: req.submitted_by.clone(),
                })
                .await?;
        }
        if !decisions.is_empty() && resumed.is_none() {
            let decisions: Vec<_> = decisions
                .into_iter()
                .map(|mut d| {
                    d.subject_id = run_id.clone();
                    d
                })
                .collect();
            inner.store.record_image_decisions(&decisions).await?;
            for d in &decisions {
                let detail = serde_json::json!({
                    "reference": d.reference,
                    "digest": d.digest,
                    "outcome": d.outcome,
                    "rule": d.rule,
                    "reasons": d.reasons,
                });
                inner
                    .store
                    .append_audit(
                        &inner.cfg.principal,
                        &format!("image.{}", d.outcome),
                        &format!("{run_id}/{}", d.item),
                        &detail,
                        now_ms(),
                    )
                    .await?;
            }
        }
        if !denied.is_empty() {
            let message = denied.join("\n");
            inner
                .store
                .update_run_status(&run_id, RunStatus::Failed, Some(now_ms()), Some(&message))
                .await?;
            if resumed.is_some() {
                inner.store.dequeue_run(&run_id).await?;
            }
            return Err(EngineError::PolicyDenied {
                run: run_id,
                message,
            });
        }
        if queued {
            match self
                .wait_for_admission(&run_id, &plan.pipeline, &req, admission, &events, &cancel)
                .await?
            {
                Some(g) => first_grant = Some(g),
                None => {
                    let status = inner.store.get_run(&run_id).await?.status;
                    return Ok(RunSummary {
                        run_id,
                        pipeline: plan.pipeline,
                        status,
                        duration_ms: 0,
                        cache_hits: 0,
                        steps: Vec::new(),
                    });
                }
            }
            started = now_ms();
        } else if resumed.is_some() {
            inner.store.dequeue_run(&run_id).await?;
            started = now_ms();
            inner.store.set_run_started(&run_id, started).await?;
            inner
                .store
                .update_run_status(&run_id, RunStatus::Running, None, None)
                .await?;
        }
        // The run's place among its project's runs in flight lasts until it ends.
        let _run_slot = first_grant.as_mut().and_then(Grant::take_run_slot);

        // Every step is recorded as pending up front so `gantry show` lists the whole DAG.
        let mut first_ids = Vec::with_capacity(plan.steps.len());
        for (seq, s) in plan.steps.iter().enumerate() {
            let mut rec = pending_record(&run_id, &plan.pipeline, seq as i64, s, &images[&s.name]);
            rec.resources_note = sizing[seq].note.clone();
            inner.store.upsert_step_run(&rec).await?;
            for line in sizing[seq].note.iter().chain(&sizing[seq].advice) {
                let line = format!("[gantry] {line}");
                inner
                    .store
                    .append_logs(
                        &rec.id,
                        &[gantry_store::LogChunk::message("gantry", now_ms(), &line)],
                    )
                    .await?;
                let _ = events.send(Event::StepLog {
                    step: s.name.clone(),
                    stream: "gantry".into(),
                    line,
                    room: Default::default(),
                });
            }
            first_ids.push(rec);
        }
        let mirror =
            crate::mlflow_mirror::Mirror::start(&inner.store, &plan.pipeline, &run_id, &req.params)
                .await;
        // Steps' MLflow calls go through the relay; with auth they need a token of their own,
        // scoped to this pipeline and revoked when the run ends.
        let step_token = match (&inner.cfg.step_tokens, &inner.cfg.tracking_relay) {
            (Some(tokens), Some(_)) => match tokens.issue(&run_id, &plan.pipeline).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("run {run_id}: no MLflow token for its steps: {e}");
                    None
                }
            },
            _ => None,
        };
        let _ = events.send(Event::RunStarted {
            run_id: run_id.clone(),
            pipeline: plan.pipeline.clone(),
            steps: plan.steps.iter().map(|s| s.name.clone()).collect(),
        });

        // Steps waiting for admission, and those already asked for.
        let mut waiting: FuturesUnordered<_> = FuturesUnordered::new();
        let mut asked = vec![false; plan.steps.len()];
        let mut granted: Vec<Option<Grant>> = (0..plan.steps.len()).map(|_| None).collect();
        if let Some(g) = first_grant.take() {
            asked[first] = true;
            granted[first] = Some(g);
        }
        let mut outputs: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut results: Vec<Option<StepResult>> = vec![None; plan.steps.len()];
        let mut tasks: JoinSet<(usize, StepResult)> = JoinSet::new();
        let params = Arc::new(req.params.clone());
        let pinned_inputs = Arc::new(req.pinned_inputs.clone());
        let mut cancelled = false;

        loop {
            for (i, blocker) in dag.propagate_skips() {
                let rec = StepRunRecord {
                    status: StepStatus::Skipped,
                    reason: Some(format!("dependency {blocker} did not succeed")),
                    finished_at_ms: Some(now_ms()),
                    ..first_ids[i].clone()
                };
                inner.store.upsert_step_run(&rec).await?;
                let _ = events.send(Event::StepFinished {
                    step: rec.step.clone(),
                    status: StepStatus::Skipped,
                    attempt: 0,
                    exit_code: None,
                    reason: rec.reason.clone(),
                    wall_ms: None,
                });
                results[i] = Some(StepResult::skipped(rec.reason.clone()));
            }
            if !cancelled {
                for i in dag.ready() {
                    if asked[i] {
                        continue;
                    }
                    asked[i] = true;
                    let step = &plan.steps[i];
                    let pending: Pending = inner.scheduler.request(
                        step_request(
                            &run_id,
                            &plan.pipeline,
                            &step.name,
                            Kind::Step,
                            req.priority,
                            &step.resources,
                        ),
                        None,
                    );
                    waiting.push(async move { (i, pending.await) });
                }
                for i in 0..plan.steps.len() {
                    let Some(grant) = granted[i].take() else {
                        continue;
                    };
                    let step = &plan.steps[i];
                    dag.set(i, NodeState::Running);
                    let upstream = upstream_inputs(step, &outputs);
                    let ctx = StepCtx {
                        run_id: run_id.clone(),
                        pipeline: plan.pipeline.clone(),
                        first_record: first_ids[i].clone(),
                        step: step.clone(),
                        image: images[&step.name].clone(),
                        upstream,
                        params: Arc::clone(&params),
                        pinned_inputs: Arc::clone(&pinned_inputs),
                        no_cache: req.no_cache,
                        tracking: mirror
                            .as_ref()
                            .map(|m| (m.experiment_id.clone(), m.tracking_run.clone())),
                        tracking_token: step_token.as_ref().map(|(_, secret)| secret.clone()),
                        cancel: cancel.child_token(),
                        events: events.clone(),
                        grant,
                    };
                    let inner = Arc::clone(&self.inner);
                    tasks.spawn(async move { (i, execute_step(inner, ctx).await) });
                }
            }
            if tasks.is_empty() && waiting.is_empty() {
                if dag.all_done() || cancelled {
                    break;
                }
                // Nothing runs and nothing is ready: only possible when every waiting
                // step is blocked, which propagate_skips resolves on the next pass.
                if dag.ready().is_empty() && dag.propagate_skips().is_empty() {
                    break;
                }
                continue;
            }
            tokio::select! {
                Some((i, grant)) = waiting.next(), if !waiting.is_empty() => {
                    granted[i] = Some(grant);
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    let (i, result) = match joined {
                        Ok(v) => v,
                        Err(e) => return Err(EngineError::Step {
                            step: "?".into(),
                            message: format!("step task panicked: {e}"),
                        }),
                    };
                    let state = match result.status {
                        StepStatus::Succeeded | StepStatus::Cached => NodeState::Succeeded,
                        StepStatus::Cancelled => NodeState::Cancelled,
                        _ => NodeState::Failed,
                    };
                    dag.set(i, state);
                    outputs.insert(plan.steps[i].name.clone(), result.outputs.clone());
                    results[i] = Some(result);
                }
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    // Steps still waiting leave the queue.
                    waiting.clear();
                    granted.iter_mut().for_each(|g| *g = None);
                }
            }
            if cancelled {
                for i in dag.cancel_waiting() {
                    let rec = StepRunRecord {
                        status: StepStatus::Cancelled,
                        reason: Some("run cancelled".into()),
                        finished_at_ms: Some(now_ms()),
                        ..first_ids[i].clone()
                    };
                    inner.store.upsert_step_run(&rec).await?;
                    results[i] = Some(StepResult::cancelled());
                }
            }
        }

        let status = if cancelled {
            RunStatus::Cancelled
        } else if results
            .iter()
            .flatten()
            .all(|r| matches!(r.status, StepStatus::Succeeded | StepStatus::Cached))
        {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        let finished = now_ms();
        inner
            .store
            .update_run_status(&run_id, status, Some(finished), None)
            .await?;
        if let Some(m) = &mirror {
            m.finish(&run_id, status).await;
        }
        if let (Some(tokens), Some((id, _))) = (&inner.cfg.step_tokens, &step_token) {
            tokens.revoke(id).await;
        }
        if !inner.cfg.keep_workdirs {
            let _ = tokio::fs::remove_dir_all(inner.cfg.work_dir.join(&run_id)).await;
        }
        let _ = events.send(Event::RunFinished {
            run_id: run_id.clone(),
            status,
        });
        let steps: Vec<StepSummary> = plan
            .steps
            .iter()
            .zip(results)
            .map(|(s, r)| {
                let r = r.unwrap_or_else(StepResult::cancelled);
                StepSummary {
                    step: s.name.clone(),
                    status: r.status,
                    attempts: r.attempts,
                    exit_code: r.exit_code,
                    reason: r.reason,
                    cached: r.status == StepStatus::Cached,
                    wall_ms: r.wall_ms,
                    outputs: r.outputs,
                }
            })
            .collect();
        Ok(RunSummary {
            run_id,
            pipeline: plan.pipeline,
            status,
            duration_ms: finished - started,
            cache_hits: steps.iter().filter(|s| s.cached).count(),
            steps,
        })
    }

    /// A run that could not start at once waits here for its first step's admission: it is
    /// kept in the durable queue (servers), says why it waits, and ends as cancelled when
    /// cancelled — or, when the server stops, stays queued for the next start. The grant,
    /// or None when it did not get one.
    async fn wait_for_admission(
        &self,
        run_id: &str,
        pipeline: &str,
        req: &RunRequest,
        mut admission: Pending,
        events: &UnboundedSender<Event>,
        cancel: &CancellationToken,
    ) -> Result<Option<Grant>, EngineError> {
        let inner = &self.inner;
        let durable = inner.cfg.durable_queue;
        if durable && req.queued.is_none() {
            let stored = StoredRequest {
                base_dir: req.pipeline.base_dir.clone(),
                pinned_images: req.pinned_images.clone(),
                pinned_inputs: req.pinned_inputs.clone(),
            };
            inner
                .store
                .enqueue_run(&gantry_store::QueuedRun {
                    run_id: run_id.to_owned(),
                    project: pipeline.to_owned(),
                    priority: req.priority.rank(),
                    seq: admission.ticket() as i64,
                    request_json: serde_json::to_string(&stored).unwrap_or_default(),
                    enqueued_at_ms: now_ms(),
                })
                .await?;
        }
        let reason = inner
            .scheduler
            .snapshot()
            .waiting
            .into_iter()
            .find(|w| w.ticket == admission.ticket())
            .map(|w| w.wait.to_string())
            .unwrap_or_else(|| "waiting for its turn".into());
        let _ = events.send(Event::RunQueued {
            run_id: run_id.to_owned(),
            pipeline: pipeline.to_owned(),
            reason,
        });
        let grant = tokio::select! {
            biased;
            _ = inner.parking.cancelled(), if durable => {
                // Withdrawn from this process's queue; the store keeps it for the next one.
                drop(admission);
                return Ok(None);
            }
            _ = cancel.cancelled() => {
                drop(admission);
                let now = now_ms();
                inner
                    .store
                    .update_run_status(run_id, RunStatus::Cancelled, Some(now), Some("cancelled while queued"))
                    .await?;
                if durable {
                    inner.store.dequeue_run(run_id).await?;
                }
                let _ = events.send(Event::RunFinished {
                    run_id: run_id.to_owned(),
                    status: RunStatus::Cancelled,
                });
                return Ok(None);
            }
            g = &mut admission => g,
        };
        if durable {
            inner.store.dequeue_run(run_id).await?;
        }
        inner.store.set_run_started(run_id, now_ms()).await?;
        inner
            .store
            .update_run_status(run_id, RunStatus::Running, None, None)
            .await?;
        Ok(Some(grant))
    }

    /// The runs a previous server process left in the durable queue, in submission order,
    /// ready to be started again (each keeps its run id and place in line). Runs that can no
    /// longer be read are recorded as failed and dropped from the queue.
    pub async fn queued_requests(&self) -> Result<Vec<RunRequest>, EngineError> {
        let store = &self.inner.store;
        let mut out = Vec::new();
        for q in store.queued_runs().await? {
            let rec = match store.get_run(&q.run_id).await {
                Ok(r) => r,
                Err(gantry_store::StoreError::NotFound { .. }) => {
                    store.dequeue_run(&q.run_id).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if rec.status != RunStatus::Queued {
                store.dequeue_run(&q.run_id).await?;
                continue;
            }
            let restored = (|| -> Result<RunRequest, String> {
                let stored: StoredRequest = serde_json::from_str(&q.request_json)
                    .map_err(|e| format!("its queued request is unreadable: {e}"))?;
                let pipeline = gantry_spec::parse(&rec.spec_file, &stored.base_dir, &rec.spec_yaml)
                    .map_err(|e| format!("its spec no longer parses: {e}"))?;
                let params: BTreeMap<String, ParamValue> =
                    serde_json::from_str(&rec.params_json)
                        .map_err(|e| format!("its params are unreadable: {e}"))?;
                let mut req = RunRequest::new(pipeline, rec.spec_yaml.clone(), params);
                req.no_cache = rec.no_cache;
                req.rerun_of = rec.rerun_of.clone();
                // The digests resolved (and judged) at submission, so a tag that moved while
                // the run waited does not change what it runs.
                req.pinned_images =
                    match serde_json::from_str::<BTreeMap<String, String>>(&rec.images_json) {
                        Ok(m) if !m.is_empty() => m,
                        _ => stored.pinned_images,
                    };
                req.pinned_inputs = stored.pinned_inputs;
                req.submitted_by = rec.submitted_by.clone();
                req.priority = Priority::from_rank(q.priority);
                req.queued = Some(QueuedAt {
                    run_id: rec.id.clone(),
                    ticket: q.seq.max(0) as u64,
                });
                Ok(req)
            })();
            match restored {
                Ok(req) => out.push(req),
                Err(message) => {
                    store
                        .update_run_status(
                            &rec.id,
                            RunStatus::Failed,
                            Some(now_ms()),
                            Some(&message),
                        )
                        .await?;
                    store.dequeue_run(&rec.id).await?;
                }
            }
        }
        Ok(out)
    }

    /// `memory: auto` from each step's history, and advice on requests far above use.
    async fn size_steps(&self, plan: &mut gantry_spec::Plan) -> Vec<Sizing> {
        let capacity = self.inner.cfg.capacity;
        let mut out = Vec::with_capacity(plan.steps.len());
        for s in &mut plan.steps {
            let key = gantry_alloc::usage_key(&plan.pipeline, s);
            let history = match self.inner.store.step_history(&key, 50).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(step = %s.name, "no usage history: {e}");
                    Vec::new()
                }
            };
            let mut sizing = Sizing::default();
            if s.resources.memory_auto {
                sizing.note = Some(match gantry_alloc::recommend(&history) {
                    Ok(r) => {
                        let memory = r.memory_bytes.min(capacity.memory_bytes);
                        s.resources.memory_bytes = memory;
                        let e = &r.evidence;
                        format!(
                            "memory: auto → {} (p95 of peak {} × 1.2 over {} run(s){}{})",
                            fmt_memory(memory),
                            fmt_memory(e.peak_memory_p95),
                            e.runs,
                            e.oom_killed_at
                                .map(|m| format!(
                                    ", above the {} that was OOM-killed",
                                    fmt_memory(m)
                                ))
                                .unwrap_or_default(),
                            if memory < r.memory_bytes {
                                ", capped at the capacity"
                            } else {
                                ""
                            }
                        )
                    }
                    Err(e) => format!(
                        "memory: auto → the default {} ({e})",
                        fmt_memory(s.resources.memory_bytes)
                    ),
                });
            } else if let Some(waste) =
                gantry_alloc::wasteful(&history, s.resources.cpu_millis, s.resources.memory_bytes)
            {
                let hint = gantry_alloc::recommend(&history)
                    .map(|r| {
                        format!(
                            " (`gantry recommend` suggests cpu: {}, memory: {}; or `memory: auto`)",
                            fmt_cpu(r.cpu_millis),
                            fmt_memory(r.memory_bytes)
                        )
                    })
                    .unwrap_or_default();
                sizing.advice = Some(format!("this step requests {waste}{hint}"));
            }
            out.push(sizing);
        }
        out
    }

    async fn resolve_images(
        &self,
        steps: &[PlannedStep],
        pinned: &BTreeMap<String, String>,
    ) -> Result<HashMap<String, ImageInfo>, EngineError> {
        let mut out = HashMap::new();
        let mut builtin: Option<ImageInfo> = None;
        for s in steps {
            let step_err = |message: String| EngineError::Step {
                step: s.name.clone(),
                message,
            };
            if let ImageRef::Builtin(name) = &s.image {
                check_builtin_step(s, name).map_err(|message| EngineError::Invalid {
                    step: s.name.clone(),
                    message,
                })?;
            }
            let reference = match (&s.image, pinned.get(&s.name)) {
                (_, Some(digest)) => digest.clone(),
                (ImageRef::Image(r), None) => r.clone(),
                (ImageRef::Builtin(name), None) => {
                    if builtin.is_none() {
                        let Some(exe) = self.inner.cfg.builtin_exe.clone() else {
                            return Err(EngineError::Builtin {
                                step: s.name.clone(),
                                name: name.clone(),
                            });
                        };
                        let images = Arc::clone(&self.inner.images);
                        let info = tokio::task::spawn_blocking(move || {
                            crate::builtin_image::ensure_builtin_image(&images, &exe)
                        })
                        .await
                        .map_err(|e| {
                            step_err(format!("building the built-in image panicked: {e}"))
                        })??;
                        builtin = Some(info);
                    }
                    if let Some(info) = &builtin {
                        out.insert(s.name.clone(), info.clone());
                    }
                    continue;
                }
            };
            let spec_ref = match &s.image {
                ImageRef::Image(r) => r.as_str(),
                ImageRef::Builtin(_) => reference.as_str(),
            };
            let info = self
                .obtain_image(spec_ref, pinned.get(&s.name).map(String::as_str))
                .await
                .map_err(|source| EngineError::Image {
                    step: s.name.clone(),
                    reference: reference.clone(),
                    source: Box::new(source),
                })?;
            out.insert(s.name.clone(), info);
        }
        Ok(out)
    }

    /// The trust policy's decision on every step's image (nothing without a policy). The
    /// records carry no run id yet.
    /// The denials the policy makes before any image is pulled (see
    /// [`crate::trust::ImageTrust::precheck`]); empty when none.
    fn precheck_images(
        &self,
        steps: &[PlannedStep],
        pinned: &BTreeMap<String, String>,
    ) -> Vec<gantry_store::ImageDecisionRecord> {
        let Some(trust) = &self.inner.cfg.trust else {
            return Vec::new();
        };
        steps
            .iter()
            .filter_map(|s| {
                let ImageRef::Image(r) = &s.image else {
                    return None;
                };
                let decision = trust.precheck(r, pinned.contains_key(&s.name))?;
                Some(gantry_store::ImageDecisionRecord {
                    subject_kind: "run".into(),
                    subject_id: String::new(),
                    item: s.name.clone(),
                    reference: r.clone(),
                    digest: pinned.get(&s.name).cloned().unwrap_or_default(),
                    outcome: outcome_name(&decision).into(),
                    rule: decision.rule.clone(),
                    reasons: decision.reasons.clone(),
                    ts_ms: now_ms(),
                })
            })
            .collect()
    }

    async fn check_images(
        &self,
        steps: &[PlannedStep],
        images: &HashMap<String, ImageInfo>,
        pinned: &BTreeMap<String, String>,
    ) -> Vec<gantry_store::ImageDecisionRecord> {
        let Some(trust) = &self.inner.cfg.trust else {
            return Vec::new();
        };
        if trust.policy().is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut seen: HashMap<(String, String), gantry_trust::Decision> = HashMap::new();
        for s in steps {
            let Some(info) = images.get(&s.name) else {
                continue;
            };
            let (reference, decision) = match &s.image {
                ImageRef::Builtin(name) => {
                    (format!("builtin/{name}"), gantry_trust::Decision::builtin())
                }
                ImageRef::Image(r) => {
                    let key = (r.clone(), info.digest.clone());
                    let decision = match seen.get(&key) {
                        Some(d) => d.clone(),
                        None => {
                            let d = trust
                                .check(
                                    &self.inner.images,
                                    self.inner.cfg.registry.as_deref(),
                                    &self.inner.store,
                                    r,
                                    &info.digest,
                                    pinned.contains_key(&s.name),
                                )
                                .await
                                .unwrap_or_else(gantry_trust::Decision::builtin);
                            seen.insert(key, d.clone());
                            d
                        }
                    };
                    (r.clone(), decision)
                }
            };
            out.push(gantry_store::ImageDecisionRecord {
                subject_kind: "run".into(),
                subject_id: String::new(),
                item: s.name.clone(),
                reference,
                digest: info.digest.clone(),
                outcome: outcome_name(&decision).into(),
                rule: decision.rule.clone(),
                reasons: decision.reasons.clone(),
                ts_ms: now_ms(),
            });
        }
        out
    }

    /// The stored image for a step: by the digest a rerun pins, by the digest the reference
    /// pins, else by name; an image missing from the store whose reference names a registry
    /// is pulled (a rerun pulls the pinned digest, never the tag).
    pub async fn obtain_image(
        &self,
        reference: &str,
        pinned: Option<&str>,
    ) -> Result<ImageInfo, gantry_image::ImageError> {
        use gantry_image::registry::{NoProgress, RegistryRef};
        let from_registry = RegistryRef::names_registry(reference);
        let local = match (pinned, reference.split_once('@')) {
            (Some(d), _) => d.to_string(),
            (None, Some((_, d))) if from_registry => d.to_string(),
            _ => reference.to_string(),
        };
        let images = Arc::clone(&self.inner.images);
        let found = tokio::task::spawn_blocking(move || images.resolve(&local))
            .await
            .map_err(|e| {
                gantry_image::ImageError::Malformed(format!("image lookup panicked: {e}"))
            })?;
        match (found, &self.inner.cfg.registry) {
            (Err(gantry_image::ImageError::NotFound(_)), Some(registry)) if from_registry => {
                let target = match pinned {
                    Some(d) => RegistryRef::parse(reference)?.with_digest(d).to_string(),
                    None => reference.to_string(),
                };
                let progress: &dyn gantry_image::registry::PullProgress =
                    match &self.inner.cfg.pull_progress {
                        Some(p) => p.as_ref(),
                        None => &NoProgress,
                    };
                let pulled = registry.pull(&self.inner.images, &target, progress).await?;
                tracing::info!(
                    "pulled {} ({} bytes downloaded)",
                    pulled.pinned,
                    pulled.downloaded
                );
                Ok(pulled.info)
            }
            (found, _) => found,
        }
    }

    /// Builds the request that reproduces a recorded run: same spec snapshot, same
    /// params, same image digests, same external input data.
    pub async fn rerun_request(&self, run: &str) -> Result<RunRequest, EngineError> {
        let rec = self.inner.store.get_run(run).await?;
        let bad = |message: String| EngineError::Rerun {
            run: rec.id.clone(),
            message,
        };
        if let Some((orchestrator, _, name)) = self.inner.store.exported_run(&rec.id).await? {
            return Err(bad(format!(
                "it is a run of an exported workflow ({orchestrator} run {name}), recorded from its steps' reports; run the workflow again there, or run the pipeline file with gantry"
            )));
        }
        let base_dir = std::path::Path::new(&rec.spec_file)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let pipeline = gantry_spec::parse(&rec.spec_file, &base_dir, &rec.spec_yaml)?;
        let params: BTreeMap<String, ParamValue> = serde_json::from_str(&rec.params_json)
            .map_err(|e| bad(format!("stored params are unreadable: {e}")))?;
        let pinned_images: BTreeMap<String, String> = serde_json::from_str(&rec.images_json)
            .map_err(|e| bad(format!("stored image digests are unreadable: {e}")))?;
        // External inputs (paths, URLs, `with.source`) exist only in the plan.
        let plan = gantry_spec::plan(&pipeline, &params)?;
        let mut pinned_inputs = BTreeMap::new();
        for sr in self.inner.store.list_step_runs(&rec.id).await? {
            let Some(step) = plan.steps.iter().find(|s| s.name == sr.step) else {
                continue;
            };
            let inputs: BTreeMap<String, String> =
                serde_json::from_str(&sr.inputs_json).unwrap_or_default();
            for (name, digest) in inputs {
                if matches!(
                    step.inputs.get(&name),
                    Some(InputSource::Path(_) | InputSource::Url(_))
                ) {
                    pinned_inputs.insert(format!("{}/{}", step.name, name), digest);
                }
            }
        }
        Ok(RunRequest {
            pipeline,
            spec_yaml: rec.spec_yaml.clone(),
            params,
            no_cache: rec.no_cache,
            rerun_of: Some(rec.id.clone()),
            pinned_images,
            pinned_inputs,
            // The caller sets who asks for the rerun.
            submitted_by: None,
            priority: Priority::Normal,
            queued: None,
        })
    }
}

/// Catches a misconfigured built-in step before anything runs: unknown component,
/// unknown or mistyped `with:` options, missing inputs, outputs it never writes.
fn check_builtin_step(s: &PlannedStep, name: &str) -> Result<(), String> {
    let info = crate::execute::builtin_component(name)?;
    let with = serde_json::Value::Object(s.with.clone().into_iter().collect());
    gantry_ml::validate_with(name, &with).map_err(|e| format!("builtin/{name}: {e}"))?;
    for required in info.inputs {
        if !s.inputs.contains_key(*required) {
            return Err(format!(
                "builtin/{name} needs an input named `{required}` (inputs: {}{})",
                info.inputs.join(", "),
                if info.optional_inputs.is_empty() {
                    String::new()
                } else {
                    format!("; optional: {}", info.optional_inputs.join(", "))
                }
            ));
        }
    }
    for input in s.inputs.keys() {
        if !info.inputs.contains(&input.as_str()) && !info.optional_inputs.contains(&input.as_str())
        {
            return Err(format!(
                "builtin/{name} has no input `{input}` (inputs: {}; optional: {})",
                info.inputs.join(", "),
                info.optional_inputs.join(", ")
            ));
        }
    }
    for output in &s.outputs {
        if !info.outputs.contains(&output.as_str())
            && !info.optional_outputs.contains(&output.as_str())
        {
            let all: Vec<&str> = info
                .outputs
                .iter()
                .chain(info.optional_outputs)
                .copied()
                .collect();
            return Err(format!(
                "builtin/{name} has no output `{output}` (outputs: {})",
                all.join(", ")
            ));
        }
    }
    Ok(())
}

fn upstream_inputs(
    step: &PlannedStep,
    outputs: &HashMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let produced =
        |step: &str, output: &str| outputs.get(step).and_then(|o| o.get(output)).cloned();
    let mut out = BTreeMap::new();
    for (name, src) in &step.inputs {
        match src {
            InputSource::Step { step, output } => {
                if let Some(d) = produced(step, output) {
                    out.insert(name.clone(), d);
                }
            }
            InputSource::Sweep {
                output, members, ..
            } => {
                for (label, member) in members {
                    if let Some(d) = produced(member, output) {
                        out.insert(crate::execute::sweep_input_key(name, label), d);
                    }
                }
            }
            InputSource::Path(_) | InputSource::Url(_) => {}
        }
    }
    out
}

fn pending_record(
    run_id: &str,
    pipeline: &str,
    seq: i64,
    s: &PlannedStep,
    image: &ImageInfo,
) -> StepRunRecord {
    StepRunRecord {
        id: new_id("s-"),
        run_id: run_id.to_string(),
        step: s.name.clone(),
        seq,
        attempt: 1,
        status: StepStatus::Pending,
        exit_code: None,
        reason: None,
        cache_key: None,
        cached_from: None,
        image_digest: Some(image.digest.clone()),
        started_at_ms: None,
        finished_at_ms: None,
        requested_cpu_millis: s.resources.cpu_millis as i64,
        requested_memory_bytes: s.resources.memory_bytes as i64,
        requested_gpu: i64::from(s.resources.gpu),
        peak_memory_bytes: None,
        cpu_micros: None,
        wall_ms: None,
        inputs_json: "{}".into(),
        outputs_json: "{}".into(),
        gpu_model: None,
        gpu_util_percent: None,
        gpu_memory_peak_bytes: None,
        gpu_idle_ms: None,
        resources_note: None,
        usage_key: Some(gantry_alloc::usage_key(pipeline, s)),
        gpu_devices: None,
    }
}

/// `allow`, `warn` or `deny`.
pub(crate) fn outcome_name(decision: &gantry_trust::Decision) -> &'static str {
    match decision.outcome {
        gantry_trust::Outcome::Allow => "allow",
        gantry_trust::Outcome::Warn => "warn",
        gantry_trust::Outcome::Deny => "deny",
    }
}
