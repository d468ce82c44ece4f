//! Executing one step: inputs, cache, attempts with backoff, outputs, metrics, logs.

use crate::events::Event;
use crate::input_policy::PathAccess;
use crate::retry::backoff;
use crate::{EngineError, Inner, now_ms};
use gantry_artifacts::Confined;
use gantry_image::ImageInfo;
use gantry_runtime::{
    BindMount, LogBlock, RemoteArtifacts, RemoteStep, Runtime, StepOutcome, StepRequest,
    Termination,
};
use gantry_spec::{CacheKeyMaterial, ImageRef, InputSource, ParamValue, PlannedStep};
use gantry_store::{Direction, LogChunk, StepRunRecord, StepStatus, Store, new_id};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_util::sync::CancellationToken;

/// Uid/gid a step runs as when its image names no non-root user ("nobody").
pub(crate) const DEFAULT_UID: u32 = 65534;
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The largest `/gantry/metrics.json` read.
pub const METRICS_MAX_BYTES: u64 = 1 << 20;

pub(crate) struct StepCtx {
    pub(crate) run_id: String,
    /// The pipeline's name (the run's project).
    pub(crate) pipeline: String,
    pub(crate) first_record: StepRunRecord,
    pub(crate) step: PlannedStep,
    pub(crate) image: ImageInfo,
    /// Inputs produced by upstream steps: name -> digest.
    pub(crate) upstream: BTreeMap<String, String>,
    pub(crate) params: Arc<BTreeMap<String, ParamValue>>,
    pub(crate) pinned_inputs: Arc<BTreeMap<String, String>>,
    pub(crate) no_cache: bool,
    /// The pipeline run's MLflow experiment and run, parent of each step's MLflow run.
    pub(crate) tracking: Option<(String, String)>,
    /// The run's token for its steps' MLflow calls (servers with auth).
    pub(crate) tracking_token: Option<String>,
    pub(crate) cancel: CancellationToken,
    pub(crate) events: UnboundedSender<Event>,
    /// What admission gave this step (CPU, memory, its GPUs), held until the step ends;
    /// an OOM-killed step grows it before its next attempt.
    pub(crate) grant: crate::admission::Grant,
}

#[derive(Clone, Debug)]
pub(crate) struct StepResult {
    pub(crate) status: StepStatus,
    pub(crate) attempts: u32,
    pub(crate) exit_code: Option<i64>,
    pub(crate) reason: Option<String>,
    pub(crate) wall_ms: Option<i64>,
    pub(crate) outputs: BTreeMap<String, String>,
}

impl StepResult {
    pub(crate) fn skipped(reason: Option<String>) -> StepResult {
        StepResult {
            status: StepStatus::Skipped,
            attempts: 0,
            exit_code: None,
            reason,
            wall_ms: None,
            outputs: BTreeMap::new(),
        }
    }

    pub(crate) fn cancelled() -> StepResult {
        StepResult {
            status: StepStatus::Cancelled,
            reason: Some("run cancelled".into()),
            ..StepResult::skipped(None)
        }
    }

    fn from_record(rec: &StepRunRecord, outputs: BTreeMap<String, String>) -> StepResult {
        StepResult {
            status: rec.status,
            attempts: rec.attempt.max(1) as u32,
            exit_code: rec.exit_code,
            reason: rec.reason.clone(),
            wall_ms: rec.wall_ms,
            outputs,
        }
    }
}

pub(crate) async fn execute_step<R: Runtime>(inner: Arc<Inner<R>>, mut ctx: StepCtx) -> StepResult {
    let mut rec = ctx.first_record.clone();
    let prepared = match prepare(&inner, &ctx).await {
        Ok(p) => p,
        Err(e) => return finish_failed(&inner, &ctx, &mut rec, e.to_string()).await,
    };
    rec.inputs_json = to_json(&prepared.inputs);
    rec.cache_key = Some(prepared.cache_key.clone());

    if ctx.step.cache && !ctx.no_cache {
        match cache_hit(&inner, &prepared.cache_key, &ctx.step.outputs).await {
            Ok(Some(hit)) => return record_cache_hit(&inner, &ctx, rec, hit, &prepared).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(step = %ctx.step.name, "cache lookup failed, running the step: {e}")
            }
        }
    }

    let max_attempts = ctx.step.retries + 1;
    let mut attempt = 1;
    // Memory reserved beyond the step's request after OOM kills (`retries.memory_growth`).
    let mut extra_memory = 0u64;
    loop {
        let memory = ctx.step.resources.memory_bytes + extra_memory;
        let result = match run_attempt(&inner, &ctx, &mut rec, &prepared, memory).await {
            Ok(r) => r,
            Err(e) => finish_failed(&inner, &ctx, &mut rec, e.to_string()).await,
        };
        if result.status != StepStatus::Failed
            || attempt >= max_attempts
            || ctx.cancel.is_cancelled()
        {
            return StepResult {
                attempts: attempt,
                ..result
            };
        }
        attempt += 1;
        let delay = backoff(inner.cfg.retry_base, attempt);
        let _ = ctx.events.send(Event::StepRetrying {
            step: ctx.step.name.clone(),
            next_attempt: attempt,
            reason: result.reason.clone().unwrap_or_default(),
            delay_ms: delay.as_millis() as u64,
        });
        // An OOM kill with `memory_growth`: the next attempt gets more memory, reserved
        // before it starts (waiting for running steps to give some back).
        let mut note = rec.resources_note.clone();
        let oom = result
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("oom-killed"));
        if let (true, Some(growth)) = (oom, ctx.step.retry_memory_growth) {
            let limit = ctx.grant.memory_limit();
            let grown = ((memory as f64 * growth).ceil() as u64).min(limit);
            if grown > memory {
                let granted = ctx
                    .grant
                    .grow(&ctx.run_id, &ctx.step.name, grown - memory, &ctx.cancel)
                    .await;
                if !granted {
                    return StepResult {
                        attempts: attempt - 1,
                        ..result
                    };
                }
                extra_memory += grown - memory;
                note = Some(format!(
                    "memory {} for attempt {attempt}: attempt {} was OOM-killed at {} (memory_growth {growth})",
                    gantry_alloc::recommend::fmt_memory(grown),
                    attempt - 1,
                    gantry_alloc::recommend::fmt_memory(memory),
                ));
            } else {
                note = Some(format!(
                    "memory stays {} for attempt {attempt}: already at the capacity or the project's memory quota",
                    gantry_alloc::recommend::fmt_memory(memory)
                ));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.cancel.cancelled() => return StepResult { attempts: attempt - 1, ..result },
        }
        rec = StepRunRecord {
            id: new_id("s-"),
            attempt: i64::from(attempt),
            status: StepStatus::Pending,
            exit_code: None,
            reason: None,
            started_at_ms: None,
            finished_at_ms: None,
            peak_memory_bytes: None,
            cpu_micros: None,
            wall_ms: None,
            outputs_json: "{}".into(),
            gpu_model: None,
            gpu_util_percent: None,
            gpu_memory_peak_bytes: None,
            gpu_idle_ms: None,
            gpu_devices: None,
            requested_memory_bytes: (ctx.step.resources.memory_bytes + extra_memory) as i64,
            resources_note: note,
            ..rec
        };
    }
}

/// What every attempt of a step shares.
struct Prepared {
    inputs: BTreeMap<String, String>,
    argv: Vec<String>,
    env: Vec<String>,
    uid: u32,
    gid: u32,
    rootfs: PathBuf,
    cache_key: String,
}

async fn prepare<R: Runtime>(
    inner: &Arc<Inner<R>>,
    ctx: &StepCtx,
) -> Result<Prepared, EngineError> {
    let step = &ctx.step;
    let err = |message: String| EngineError::Step {
        step: step.name.clone(),
        message,
    };
    let mut inputs = ctx.upstream.clone();
    for (name, src) in &step.inputs {
        match src {
            InputSource::Step { step: from, output } => {
                if !inputs.contains_key(name) {
                    return Err(err(format!(
                        "input {name}: {from}.{output} produced no artifact"
                    )));
                }
            }
            InputSource::Sweep {
                step: from,
                output,
                members,
            } => {
                for (label, _) in members {
                    if !inputs.contains_key(&sweep_input_key(name, label)) {
                        return Err(err(format!(
                            "input {name}: {from}[{label}].{output} produced no artifact"
                        )));
                    }
                }
            }
            InputSource::Path(_) | InputSource::Url(_) => {
                let key = format!("{}/{}", step.name, name);
                let digest = match ctx.pinned_inputs.get(&key) {
                    Some(d) => d.clone(),
                    None => store_external_input(inner, ctx, name, src)
                        .await
                        .map_err(err)?,
                };
                inputs.insert(name.clone(), digest);
            }
        }
    }

    let cfg = &ctx.image.config;
    let component_version = match &step.image {
        ImageRef::Builtin(name) => Some(builtin_component(name).map_err(err)?.version),
        ImageRef::Image(_) => None,
    };
    let argv = if let ImageRef::Builtin(name) = &step.image {
        // `with` travels on the command line, so it is part of the cache key and visible
        // in `gantry show`; serde_json sorts map keys, so the text is canonical.
        let with = serde_json::to_string(&step.with).map_err(|e| err(e.to_string()))?;
        vec![
            crate::BUILTIN_BINARY.to_string(),
            "component".into(),
            name.clone(),
            "--with".into(),
            with,
        ]
    } else if step.command.is_empty() {
        cfg.entrypoint
            .iter()
            .chain(cfg.cmd.iter())
            .cloned()
            .collect()
    } else {
        step.command.clone()
    };
    if argv.is_empty() {
        return Err(err(
            "no `command` and the image has no entrypoint or cmd; add `command:` to the step"
                .into(),
        ));
    }

    let images = Arc::clone(&inner.images);
    let digest = ctx.image.digest.clone();
    let user = cfg.user.clone().filter(|u| !u.trim().is_empty());
    let (rootfs, ids) = tokio::task::spawn_blocking(move || {
        let rootfs = images.rootfs(&digest)?;
        let ids = match user {
            Some(u) => Some(images.lookup_user(&digest, &u)?),
            None => None,
        };
        Ok::<_, gantry_image::ImageError>((rootfs, ids))
    })
    .await
    .map_err(|e| err(format!("image preparation panicked: {e}")))?
    .map_err(|e| err(format!("image {}: {e}", ctx.image.digest)))?;
    // Root in the image is never honoured by default: least privilege first.
    let (uid, gid) = match ids {
        Some((uid, gid)) if uid != 0 => (uid, gid),
        _ => (DEFAULT_UID, DEFAULT_UID),
    };

    let mut env: Vec<String> = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.into());
    }
    env.push("HOME=/tmp".into());
    env.push(format!("GANTRY_RUN_ID={}", ctx.run_id));
    env.push(format!("GANTRY_STEP={}", step.name));
    for (k, v) in &step.env {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }

    let cache_key = gantry_spec::cache_key(&CacheKeyMaterial {
        image_digest: &ctx.image.digest,
        command: &argv,
        env: &step.env,
        params: &ctx.params,
        inputs: &inputs,
        outputs: &step.outputs,
        component_version,
        resources_network: step.network,
    });
    Ok(Prepared {
        inputs,
        argv,
        env,
        uid,
        gid,
        rootfs,
        cache_key,
    })
}

/// Where one member of a fan-in input is mounted, below `/gantry/inputs/`.
pub(crate) fn sweep_input_key(input: &str, label: &str) -> String {
    format!("{input}/{}", label.replace('/', "_"))
}

/// The built-in component a `uses: builtin/<name>` step names, if it exists.
pub(crate) fn builtin_component(name: &str) -> Result<&'static gantry_ml::ComponentInfo, String> {
    gantry_ml::component(name).ok_or_else(|| {
        let known: Vec<&str> = gantry_ml::components().iter().map(|c| c.name).collect();
        format!(
            "unknown built-in component builtin/{name}; available: {}",
            known.join(", ")
        )
    })
}

/// Stores a path or URL input as an artifact and returns its digest.
async fn store_external_input<R: Runtime>(
    inner: &Arc<Inner<R>>,
    ctx: &StepCtx,
    name: &str,
    src: &InputSource,
) -> Result<String, String> {
    let info = match src {
        InputSource::Path(path) => match &inner.cfg.inputs.paths {
            PathAccess::Any => inner.artifacts.put_path(path).await,
            PathAccess::Roots { roots, read_as } => {
                let (root, rel) = crate::input_policy::locate(roots, &ctx.pipeline, path)
                    .map_err(|e| format!("input {name}: refused: {e}"))?;
                inner
                    .artifacts
                    .put_confined(&Confined {
                        root: root.dir.clone(),
                        rel,
                        read_as: *read_as,
                    })
                    .await
            }
        }
        .map_err(|e| format!("input {name} from {}: {e}", path.display()))?,
        InputSource::Url(url) => {
            let dir = inner.cfg.work_dir.join(&ctx.run_id);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let file = dir.join(format!(".download-{}-{name}", sanitize(&ctx.step.name)));
            let fetched = crate::fetch::download(url, &file, &inner.cfg.inputs.fetch).await;
            let stored = match fetched {
                Ok(_) => inner
                    .artifacts
                    .put_path(&file)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let _ = tokio::fs::remove_file(&file).await;
            stored.map_err(|e| format!("input {name} from {url}: {e}"))?
        }
        _ => return Err(format!("input {name} is not external data")),
    };
    inner
        .store
        .record_artifact(&info.digest, kind_str(&info), info.size, now_ms())
        .await
        .map_err(|e| e.to_string())?;
    Ok(info.digest)
}

/// A step name reduced to what runc ids and directory names accept, made unique by
/// a short hash when anything had to be replaced (sweep names hold `[`, `=` and `,`).
pub(crate) fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == name {
        return clean;
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let short: String = clean.chars().take(40).collect();
    format!("{short}-{}", &hash[..8])
}

/// A previous successful step run with this key whose outputs are all still stored.
async fn cache_hit<R: Runtime>(
    inner: &Arc<Inner<R>>,
    key: &str,
    declared: &[String],
) -> Result<Option<(StepRunRecord, BTreeMap<String, String>)>, EngineError> {
    let Some(hit) = inner.store.find_cached(key).await? else {
        return Ok(None);
    };
    let outputs: BTreeMap<String, String> =
        serde_json::from_str(&hit.outputs_json).unwrap_or_default();
    if declared.iter().any(|o| !outputs.contains_key(o)) {
        return Ok(None);
    }
    for digest in outputs.values() {
        if inner.artifacts.stat(digest).await?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some((hit, outputs)))
}

async fn record_cache_hit<R: Runtime>(
    inner: &Arc<Inner<R>>,
    ctx: &StepCtx,
    mut rec: StepRunRecord,
    (hit, outputs): (StepRunRecord, BTreeMap<String, String>),
    prepared: &Prepared,
) -> StepResult {
    let now = now_ms();
    rec.status = StepStatus::Cached;
    rec.cached_from = Some(hit.id.clone());
    rec.exit_code = hit.exit_code;
    rec.started_at_ms = Some(now);
    rec.finished_at_ms = Some(now);
    rec.wall_ms = Some(0);
    rec.outputs_json = to_json(&outputs);
    let recorded = async {
        inner.store.upsert_step_run(&rec).await?;
        record_lineage(&inner.store, &rec.id, &prepared.inputs, &outputs).await?;
        // The cached-from step run's own metrics (one index lookup, not the whole run's).
        let metrics: BTreeMap<String, f64> = inner
            .store
            .metrics_of_step_run(&hit.id)
            .await?
            .into_iter()
            .collect();
        if !metrics.is_empty() {
            inner.store.record_metrics(&rec.id, &metrics, now).await?;
        }
        Ok::<_, EngineError>(())
    }
    .await;
    if let Err(e) = recorded {
        return finish_failed(inner, ctx, &mut rec, e.to_string()).await;
    }
    let _ = ctx.events.send(Event::StepFinished {
        step: ctx.step.name.clone(),
        status: StepStatus::Cached,
        attempt: 1,
        exit_code: rec.exit_code,
        reason: None,
        wall_ms: Some(0),
    });
    StepResult::from_record(&rec, outputs)
}

/// Records what step run `step_run_id` read and wrote.
pub async fn record_lineage(
    store: &Store,
    step_run_id: &str,
    inputs: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, String>,
) -> Result<(), EngineError> {
    for (name, digest) in inputs {
        store
            .record_lineage(step_run_id, name, digest, Direction::Input)
            .await?;
    }
    for (name, digest) in outputs {
        store
            .record_lineage(step_run_id, name, digest, Direction::Output)
            .await?;
    }
    Ok(())
}

async fn run_attempt<R: Runtime>(
    inner: &Arc<Inner<R>>,
    ctx: &StepCtx,
    rec: &mut StepRunRecord,
    p: &Prepared,
    memory_bytes: u64,
) -> Result<StepResult, EngineError> {
    let step = &ctx.step;
    let err = |message: String| EngineError::Step {
        step: step.name.clone(),
        message,
    };
    let step_dir = inner.cfg.work_dir.join(&ctx.run_id).join(format!(
        "{}-{}",
        sanitize(&step.name),
        rec.attempt
    ));
    // Recorded as running (with its inputs) before they are materialized, so a concurrent
    // `gantry gc` sees them in use.
    rec.status = StepStatus::Running;
    rec.started_at_ms = Some(now_ms());
    let remote = inner.runtime.stages_artifacts();
    // On a cluster the numbers only count GPUs; which devices a pod gets is the node's business.
    let devices = &ctx.grant.placement.indexes;
    rec.gpu_devices = (!devices.is_empty() && !remote).then(|| {
        devices
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    });
    inner.store.upsert_step_run(rec).await?;
    // A runtime whose containers cannot see this machine (Kubernetes) moves the artifacts
    // itself, by digest: no step directory here.
    let mounts = if remote {
        Vec::new()
    } else {
        prepare_step_dir(inner, ctx, &step_dir, p)
            .await
            .map_err(|e| err(format!("preparing {}: {e}", step_dir.display())))?
    };
    let remote_step = if remote {
        Some(remote_step(ctx, rec, p).map_err(err)?)
    } else {
        None
    };
    let _ = ctx.events.send(Event::StepStarted {
        step: step.name.clone(),
        attempt: rec.attempt as u32,
    });

    let relay = match (
        inner.cfg.tracking_relay.filter(|_| !remote),
        &ctx.tracking,
        &inner.cfg.builtin_exe,
    ) {
        (Some(server), Some((experiment, parent)), Some(exe)) => {
            match crate::relay::Relay::prepare(
                &inner.store,
                server,
                exe,
                experiment,
                parent,
                &ctx.run_id,
                &step.name,
                &step_dir,
                step.network,
            )
            .await
            {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(step = %step.name, "no MLflow tracking for this step: {e}");
                    None
                }
            }
        }
        _ => None,
    };

    // Blocks of up to 64 KiB each: a few MiB in flight at most.
    let (tx, rx) = mpsc::channel::<LogBlock>(64);
    let forwarder = tokio::spawn(
        crate::step_log::StepLog {
            store: inner.store.clone(),
            run_id: ctx.run_id.clone(),
            step_run_id: rec.id.clone(),
            step: step.name.clone(),
            max_bytes: step.logs_max,
            events: ctx.events.clone(),
        }
        .forward(rx),
    );
    let request = StepRequest {
        id: format!(
            "gantry-{}-{}-{}",
            ctx.run_id,
            sanitize(&step.name),
            rec.attempt
        ),
        rootfs: p.rootfs.clone(),
        args: p.argv.clone(),
        env: {
            let mut env = p.env.clone();
            env.push(format!("GANTRY_ATTEMPT={}", rec.attempt));
            if let Some(r) = &relay {
                env.extend(r.env.iter().cloned());
                if let Some(token) = &ctx.tracking_token {
                    env.push(format!("MLFLOW_TRACKING_TOKEN={token}"));
                }
            }
            env
        },
        cwd: ctx
            .image
            .config
            .working_dir
            .clone()
            .filter(|w| w.starts_with('/'))
            .unwrap_or_else(|| "/".into()),
        uid: p.uid,
        gid: p.gid,
        mounts,
        network: step.network,
        cpu_millis: step.resources.cpu_millis,
        memory_bytes,
        pids_limit: inner.cfg.pids_limit,
        gpu_devices: if remote {
            Vec::new()
        } else {
            ctx.grant.placement.minors.clone()
        },
        timeout: step.timeout,
        stop_grace: step.timeout_grace,
        cancel: ctx.cancel.clone(),
        create_runtime_hook: relay.as_ref().and_then(|r| r.hook.clone()),
        remote: remote_step,
    };
    // GPU utilization and memory, sampled every second while the container runs.
    let sampling = (!ctx.grant.placement.indexes.is_empty() && !remote).then(|| {
        let indexes = ctx.grant.placement.indexes.clone();
        let stop = CancellationToken::new();
        let done = stop.clone();
        let task = tokio::spawn(async move {
            let sampler = gantry_gpu::Sampler::shared();
            let mut usage = gantry_gpu::GpuUsage::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let s = Arc::clone(&sampler);
                        let idx = indexes.clone();
                        if let Ok(samples) = tokio::task::spawn_blocking(move || s.sample(&idx)).await {
                            usage.record_all(&samples);
                        }
                    }
                    _ = done.cancelled() => break,
                }
            }
            usage
        });
        (stop, task)
    });
    let outcome = inner.runtime.run(request, tx).await;
    if let Some((stop, task)) = sampling {
        stop.cancel();
        if let Ok(usage) = task.await {
            rec.gpu_model = ctx.grant.placement.model.clone();
            rec.gpu_util_percent = usage.mean_utilization_percent();
            rec.gpu_memory_peak_bytes =
                (usage.samples > 0).then_some(usage.peak_memory_used_bytes as i64);
            if let (Some(idle), Ok(o)) = (usage.idle_fraction(), &outcome) {
                rec.gpu_idle_ms = Some((idle * o.usage.wall_ms as f64) as i64);
            }
        }
    }
    let last_stderr = forwarder.await.unwrap_or_default();
    if let Some(r) = relay {
        let ok = matches!(&outcome, Ok(o) if o.exit_code == Some(0));
        r.finish(ok).await;
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            cleanup_step_dir(inner, &step_dir).await;
            return Err(e.into());
        }
    };

    rec.finished_at_ms = Some(now_ms());
    rec.exit_code = outcome.exit_code.map(i64::from);
    rec.peak_memory_bytes = Some(outcome.usage.peak_memory_bytes as i64);
    rec.cpu_micros = Some(outcome.usage.cpu_micros as i64);
    rec.wall_ms = Some(outcome.usage.wall_ms as i64);
    let (status, reason) = classify(&outcome, step.timeout);
    rec.status = status;
    // "exit code 1" alone says little: the step's last complaint usually says why.
    rec.reason = match (reason, last_stderr) {
        (Some(r), Some(line)) if r.starts_with("exit code") => Some(format!("{r}: {line}")),
        (r, _) => r,
    };

    let mut outputs = BTreeMap::new();
    let mut remote_metrics = None;
    if rec.status == StepStatus::Succeeded && remote {
        match remote_outputs(inner, outcome.artifacts.as_ref(), &step.outputs).await {
            Ok((o, m)) => {
                outputs = o;
                remote_metrics = m;
            }
            Err(message) => {
                rec.status = StepStatus::Failed;
                rec.reason = Some(message);
            }
        }
    } else if rec.status == StepStatus::Succeeded {
        match capture_outputs(inner, &step_dir, &step.outputs, rec).await {
            Ok(o) => outputs = o,
            Err(message) => {
                rec.status = StepStatus::Failed;
                rec.reason = Some(message);
            }
        }
    }
    let side_effect = match &step.image {
        ImageRef::Builtin(n) => crate::registry::SideEffect::of_builtin(n),
        ImageRef::Image(_) => None,
    };
    if rec.status == StepStatus::Succeeded
        && let Some(effect) = side_effect
    {
        let done = effect
            .perform(
                &inner.store,
                &inner.artifacts,
                &ctx.run_id,
                &ctx.pipeline,
                rec,
                &p.inputs,
                &outputs,
                async |_| Ok(()),
            )
            .await;
        match done {
            Ok(line) => {
                let chunk = LogChunk::message("gantry", now_ms(), &line);
                inner.store.append_logs(&rec.id, &[chunk]).await?;
                let _ = ctx.events.send(Event::StepLog {
                    step: step.name.clone(),
                    stream: "gantry".into(),
                    line,
                    room: Default::default(),
                });
            }
            Err(message) => {
                rec.status = StepStatus::Failed;
                rec.reason = Some(effect.failed(&message));
            }
        }
    }
    let metrics = match (remote, &remote_metrics) {
        (false, _) => read_metrics(&step_dir.join("metrics.json")),
        (true, None) => Ok(BTreeMap::new()),
        (true, Some(digest)) => match inner.artifacts.read_bytes(digest, METRICS_MAX_BYTES).await {
            Ok(bytes) => parse_metrics(&bytes),
            Err(e) => Err(e.to_string()),
        },
    };
    cleanup_step_dir(inner, &step_dir).await;
    rec.outputs_json = to_json(&outputs);

    // Logged before the step is recorded as over, so `gantry logs -f RUN STEP` sees it.
    let metrics = match metrics {
        Ok(m) => m,
        Err(message) => {
            let chunk = LogChunk::message(
                "gantry",
                now_ms(),
                &format!("ignored /gantry/metrics.json: {message}"),
            );
            inner.store.append_logs(&rec.id, &[chunk]).await?;
            BTreeMap::new()
        }
    };
    inner.store.upsert_step_run(rec).await?;
    record_lineage(&inner.store, &rec.id, &p.inputs, &outputs).await?;
    if !metrics.is_empty() {
        inner
            .store
            .record_metrics(&rec.id, &metrics, now_ms())
            .await?;
    }
    let _ = ctx.events.send(Event::StepFinished {
        step: step.name.clone(),
        status: rec.status,
        attempt: rec.attempt as u32,
        exit_code: rec.exit_code,
        reason: rec.reason.clone(),
        wall_ms: rec.wall_ms,
    });
    Ok(StepResult::from_record(rec, outputs))
}

/// Lays out `/gantry` for one attempt and returns the bind mounts.
async fn prepare_step_dir<R: Runtime>(
    inner: &Arc<Inner<R>>,
    ctx: &StepCtx,
    dir: &Path,
    p: &Prepared,
) -> Result<Vec<BindMount>, String> {
    let _ = tokio::fs::remove_dir_all(dir).await;
    let inputs_dir = dir.join("inputs");
    let outputs_dir = dir.join("outputs");
    for d in [dir, &inputs_dir, &outputs_dir] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|e| e.to_string())?;
    }
    let params = serde_json::to_vec_pretty(ctx.params.as_ref()).map_err(|e| e.to_string())?;
    tokio::fs::write(dir.join("params.json"), params)
        .await
        .map_err(|e| e.to_string())?;
    // The step may write /gantry/metrics.json and /gantry/outputs/*, nothing else.
    if nix::unistd::geteuid().is_root() {
        let uid = Some(nix::unistd::Uid::from_raw(p.uid));
        let gid = Some(nix::unistd::Gid::from_raw(p.gid));
        for d in [dir, &outputs_dir] {
            nix::unistd::chown(d, uid, gid).map_err(|e| format!("chown {}: {e}", d.display()))?;
        }
    }
    let mut mounts = vec![BindMount {
        source: dir.to_path_buf(),
        destination: "/gantry".into(),
        readonly: false,
    }];
    for (name, digest) in &p.inputs {
        let source = inner
            .artifacts
            .materialize(digest)
            .await
            .map_err(|e| format!("input {name} ({digest}): {e}"))?;
        let mountpoint = inputs_dir.join(name);
        if let Some(parent) = mountpoint.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| e.to_string())?;
        }
        if source.is_dir() {
            tokio::fs::create_dir_all(&mountpoint).await
        } else {
            tokio::fs::write(&mountpoint, b"").await
        }
        .map_err(|e| e.to_string())?;
        mounts.push(BindMount {
            source,
            destination: format!("/gantry/inputs/{name}"),
            readonly: true,
        });
    }
    Ok(mounts)
}

async fn cleanup_step_dir<R: Runtime>(inner: &Arc<Inner<R>>, dir: &Path) {
    if !inner.cfg.keep_workdirs {
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
}

/// Maps how the container ended to a step status and a reason a person can act on.
pub fn classify(o: &StepOutcome, timeout: Option<Duration>) -> (StepStatus, Option<String>) {
    match o.termination {
        Termination::Cancelled => (StepStatus::Cancelled, Some("cancelled".into())),
        Termination::OomKilled => (StepStatus::Failed, Some("oom-killed".into())),
        Termination::TimedOut => (
            StepStatus::Failed,
            Some(match timeout {
                Some(t) => format!("timeout after {}", humanize(t)),
                None => "timeout".into(),
            }),
        ),
        _ if o.exit_code == Some(0) => (StepStatus::Succeeded, None),
        _ if o.pids_limit_hit => (StepStatus::Failed, Some("pids-limit".into())),
        Termination::Signaled => (
            StepStatus::Failed,
            Some(format!("killed by signal {}", o.signal.unwrap_or(0))),
        ),
        Termination::Exited => (
            StepStatus::Failed,
            Some(format!("exit code {}", o.exit_code.unwrap_or(-1))),
        ),
    }
}

fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

/// What a runtime that moves artifacts itself needs to know about the attempt.
fn remote_step(ctx: &StepCtx, rec: &StepRunRecord, p: &Prepared) -> Result<RemoteStep, String> {
    let step = &ctx.step;
    let (image, builtin) = match &step.image {
        ImageRef::Builtin(_) => (String::new(), true),
        ImageRef::Image(written) => (pullable(written, &ctx.image.digest)?, false),
    };
    Ok(RemoteStep {
        run_id: ctx.run_id.clone(),
        step: step.name.clone(),
        attempt: rec.attempt as u32,
        image,
        builtin,
        inputs: p
            .inputs
            .iter()
            .map(|(name, digest)| (name.clone(), digest.clone()))
            .collect(),
        outputs: step.outputs.clone(),
        params: serde_json::to_value(ctx.params.as_ref()).map_err(|e| e.to_string())?,
        gpu: step.resources.gpu,
        gpu_model: step.resources.gpu_model.clone(),
        node_selector: step.kubernetes.node_selector.clone(),
        tolerations: step
            .kubernetes
            .tolerations
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
    })
}

/// The image as a cluster pulls it: the reference as written, pinned to the digest this
/// engine resolved, checked and scanned (`registry/repo@sha256:…`).
pub fn pullable(written: &str, digest: &str) -> Result<String, String> {
    let parsed = gantry_image::registry::RegistryRef::parse(written)
        .map_err(|e| format!("image {written}: {e}"))?;
    if let Some(pinned) = &parsed.digest
        && pinned != digest
    {
        return Err(format!(
            "image {written} is pinned to {pinned} but resolved to {digest}"
        ));
    }
    let name = written.split('@').next().unwrap_or(written);
    // Drop a tag (`repo:tag`), not a registry port (`host:5000/repo`).
    let repo = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    };
    Ok(format!("{repo}@{digest}"))
}

/// The outputs a runtime's pod uploaded: each declared one must be reported and stored.
/// Returns them with the digest of the step's metrics file, if it wrote one.
async fn remote_outputs<R: Runtime>(
    inner: &Arc<Inner<R>>,
    artifacts: Option<&RemoteArtifacts>,
    declared: &[String],
) -> Result<(BTreeMap<String, String>, Option<String>), String> {
    let Some(artifacts) = artifacts else {
        return Err("the runtime reported no outputs".into());
    };
    if let Some(e) = &artifacts.error {
        return Err(format!("the step's outputs were not delivered: {e}"));
    }
    let (reported, metrics) = match &artifacts.more {
        None => (artifacts.outputs.clone(), artifacts.metrics.clone()),
        Some(digest) => {
            // The report did not fit in the termination message: the pod stored it.
            let bytes = inner
                .artifacts
                .read_bytes(digest, 16 << 20)
                .await
                .map_err(|e| format!("reading the step's stored report {digest}: {e}"))?;
            #[derive(serde::Deserialize)]
            struct Stored {
                #[serde(default)]
                outputs: BTreeMap<String, String>,
                #[serde(default)]
                metrics: Option<String>,
            }
            let stored: Stored = serde_json::from_slice(&bytes)
                .map_err(|e| format!("the step's stored report {digest}: {e}"))?;
            (stored.outputs, stored.metrics)
        }
    };
    let mut out = BTreeMap::new();
    for name in declared {
        let Some(digest) = reported.get(name) else {
            return Err(format!(
                "missing output {name}: the step did not write /gantry/outputs/{name}"
            ));
        };
        let info = inner
            .artifacts
            .stat(digest)
            .await
            .map_err(|e| format!("output {name}: {e}"))?
            .ok_or_else(|| {
                format!("output {name}: the pod reported {digest}, which the store does not hold")
            })?;
        inner
            .store
            .record_artifact(&info.digest, kind_str(&info), info.size, now_ms())
            .await
            .map_err(|e| format!("recording output {name}: {e}"))?;
        out.insert(name.clone(), info.digest);
    }
    Ok((out, metrics))
}

async fn capture_outputs<R: Runtime>(
    inner: &Arc<Inner<R>>,
    step_dir: &Path,
    declared: &[String],
    rec: &StepRunRecord,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    // The step owns /gantry, so it could have replaced outputs/ by a symlink to a host
    // directory: capturing through it would move host files into the store. The container
    // has exited (its every process with it), so what is checked here cannot change after.
    let outputs_dir = step_dir.join("outputs");
    if !declared.is_empty() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::fs::symlink_metadata(&outputs_dir)
            .map_err(|e| format!("/gantry/outputs is gone: {e}"))?;
        let step = std::fs::symlink_metadata(step_dir)
            .map_err(|e| format!("reading {}: {e}", step_dir.display()))?;
        if !dir.file_type().is_dir() || dir.dev() != step.dev() {
            return Err(
                "/gantry/outputs was replaced by something other than a directory (a symlink?): \
                 outputs are only taken from the directory Gantry made"
                    .into(),
            );
        }
    }
    for name in declared {
        let path = outputs_dir.join(name);
        if tokio::fs::symlink_metadata(&path).await.is_err() {
            return Err(format!(
                "missing output {name}: the step did not write /gantry/outputs/{name}"
            ));
        }
        // The output is given up: a file is moved into the store, not copied.
        let info = inner.artifacts.capture(&path).await.map_err(|e| match e {
            gantry_artifacts::ArtifactError::NoSpace { .. } => format!("output {name}: {e}"),
            e => format!("output {name} rejected: {e}"),
        })?;
        inner
            .store
            .record_artifact(&info.digest, kind_str(&info), info.size, now_ms())
            .await
            .map_err(|e| format!("recording output {name}: {e}"))?;
        out.insert(name.clone(), info.digest);
        // Outputs stored so far are on the (still running) record, so a concurrent gc keeps
        // them while a large next output is packed.
        if out.len() < declared.len() {
            let partial = StepRunRecord {
                status: StepStatus::Running,
                outputs_json: to_json(&out),
                ..rec.clone()
            };
            inner
                .store
                .upsert_step_run(&partial)
                .await
                .map_err(|e| format!("recording output {name}: {e}"))?;
        }
    }
    Ok(out)
}

/// Reads `/gantry/metrics.json`: a JSON object of numbers (nested objects are
/// flattened with dots). The container has exited, so the file cannot change under us;
/// a symlink is refused so a step cannot make us read a host file.
pub(crate) fn read_metrics(path: &Path) -> Result<BTreeMap<String, f64>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(BTreeMap::new()),
    };
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > METRICS_MAX_BYTES {
        return Err(format!("larger than {METRICS_MAX_BYTES} bytes"));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    parse_metrics(&text)
}

/// `/gantry/metrics.json`'s bytes as flat metrics (`{"a": {"b": 1}}` is `a.b`).
pub fn parse_metrics(text: &[u8]) -> Result<BTreeMap<String, f64>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("expected a JSON object such as {\"accuracy\": 0.97}".into());
    };
    let mut out = BTreeMap::new();
    flatten_metrics("", &map, &mut out);
    Ok(out)
}

fn flatten_metrics(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut BTreeMap<String, f64>,
) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                    out.insert(key, f);
                }
            }
            serde_json::Value::Bool(b) => {
                out.insert(key, if *b { 1.0 } else { 0.0 });
            }
            serde_json::Value::Object(inner) => flatten_metrics(&key, inner, out),
            _ => {}
        }
    }
}

pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max_chars).collect();
    s.push('…');
    s
}

async fn finish_failed<R: Runtime>(
    inner: &Arc<Inner<R>>,
    ctx: &StepCtx,
    rec: &mut StepRunRecord,
    message: String,
) -> StepResult {
    rec.status = StepStatus::Failed;
    rec.reason = Some(message.clone());
    rec.finished_at_ms = Some(now_ms());
    if let Err(e) = inner.store.upsert_step_run(rec).await {
        tracing::error!(
            "could not record the failure of step {}: {e}",
            ctx.step.name
        );
    }
    let chunk = LogChunk::message("gantry", now_ms(), &message);
    let _ = inner.store.append_logs(&rec.id, &[chunk]).await;
    let _ = ctx.events.send(Event::StepFinished {
        step: ctx.step.name.clone(),
        status: StepStatus::Failed,
        attempt: rec.attempt as u32,
        exit_code: None,
        reason: rec.reason.clone(),
        wall_ms: None,
    });
    StepResult::from_record(rec, BTreeMap::new())
}

fn kind_str(info: &gantry_artifacts::ArtifactInfo) -> &'static str {
    match info.kind {
        gantry_artifacts::ArtifactKind::File => "file",
        gantry_artifacts::ArtifactKind::Directory => "directory",
    }
}

fn to_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_runtime::Usage;

    fn outcome(t: Termination, code: Option<i32>, pids: bool) -> StepOutcome {
        StepOutcome {
            exit_code: code,
            signal: None,
            termination: t,
            pids_limit_hit: pids,
            usage: Usage::default(),
            artifacts: None,
        }
    }

    #[test]
    fn a_cluster_pulls_the_image_as_written_pinned_to_the_resolved_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(pullable("busybox:1", &d), Ok(format!("busybox@{d}")));
        assert_eq!(
            pullable("localhost:5000/team/train:v2", &d),
            Ok(format!("localhost:5000/team/train@{d}"))
        );
        assert_eq!(
            pullable("registry.example.com:5000/train", &d),
            Ok(format!("registry.example.com:5000/train@{d}"))
        );
        assert_eq!(
            pullable(&format!("ghcr.io/org/app:1@{d}"), &d),
            Ok(format!("ghcr.io/org/app@{d}"))
        );
        let other = format!("sha256:{}", "b".repeat(64));
        let err = pullable(&format!("ghcr.io/org/app@{other}"), &d).expect_err("mismatch");
        assert!(err.contains("pinned"), "{err}");
    }

    #[test]
    fn classifies_each_way_a_container_ends() {
        let ok = classify(&outcome(Termination::Exited, Some(0), false), None);
        assert_eq!(ok, (StepStatus::Succeeded, None));
        let oom = classify(&outcome(Termination::OomKilled, None, false), None);
        assert_eq!(oom.1.as_deref(), Some("oom-killed"));
        let t = classify(
            &outcome(Termination::TimedOut, None, false),
            Some(Duration::from_secs(2)),
        );
        assert_eq!(t, (StepStatus::Failed, Some("timeout after 2s".into())));
        let fork = classify(&outcome(Termination::Exited, Some(2), true), None);
        assert_eq!(fork.1.as_deref(), Some("pids-limit"));
        let code = classify(&outcome(Termination::Exited, Some(3), false), None);
        assert_eq!(code.1.as_deref(), Some("exit code 3"));
        let c = classify(&outcome(Termination::Cancelled, None, false), None);
        assert_eq!(c.0, StepStatus::Cancelled);
    }

    #[test]
    fn metrics_are_flattened_numbers_and_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.json");
        std::fs::write(
            &p,
            r#"{"accuracy": 0.97, "loss": {"train": 0.1}, "note": "x", "ok": true}"#,
        )
        .unwrap();
        let m = read_metrics(&p).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["accuracy"], 0.97);
        assert_eq!(m["loss.train"], 0.1);
        assert_eq!(m["ok"], 1.0);

        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert!(read_metrics(&link).unwrap_err().contains("regular file"));
        std::fs::write(&p, "[1,2]").unwrap();
        assert!(read_metrics(&p).is_err());
        assert!(
            read_metrics(&dir.path().join("none.json"))
                .unwrap()
                .is_empty()
        );
    }
}
