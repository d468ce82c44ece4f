//! One function per command.

use crate::cli::{
    ArtifactCommand, Cli, Command, ExecArgs, ImageCommand, ModelCommand, Output, RunArgs,
};
use crate::exit::{self, coded};
use crate::home::Home;
use crate::progress;
use crate::render::{self, table};
use anyhow::Context;
use gantry_engine::{Engine, Event, RunRequest, RunSummary};
use gantry_runtime::OciRuntime;
use gantry_store::{RunFilter, RunStatus, StepStatus, Store};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Validate {
            file,
            params,
            output,
        } => validate(&file, &params, output),
        Command::Run(args) => run(&Home::from_global(g)?, &g.runtime, args).await,
        Command::Rerun { run, exec } => rerun(&Home::from_global(g)?, &g.runtime, &run, exec).await,
        Command::Runs {
            pipeline,
            status,
            limit,
            offset,
            output,
        } => {
            runs(
                &Home::from_global(g)?,
                pipeline,
                status,
                limit,
                offset,
                output,
            )
            .await
        }
        Command::Show { run, output } => show(&Home::from_global(g)?, &run, output).await,
        Command::Logs { run, step, follow } => {
            logs(&Home::from_global(g)?, &run, step.as_deref(), follow).await
        }
        Command::Artifacts { run, output } => artifacts(&Home::from_global(g)?, &run, output).await,
        Command::Artifact(ArtifactCommand::Get { digest, out }) => {
            artifact_get(&Home::from_global(g)?, &digest, &out).await
        }
        Command::Images { output } => images(&Home::from_global(g)?, output),
        Command::Image(ImageCommand::Import { path, name, output }) => {
            image_import(&Home::from_global(g)?, &path, name.as_deref(), output)
        }
        Command::Models { output } => crate::models::list(&Home::from_global(g)?, output).await,
        Command::Model(ModelCommand::Show { reference, output }) => {
            crate::models::show(&Home::from_global(g)?, &reference, output).await
        }
        Command::Model(ModelCommand::Alias {
            name,
            model_version,
            alias,
        }) => crate::models::alias(&Home::from_global(g)?, &name, model_version, &alias).await,
        Command::Demo { dir, force, exec } => {
            crate::demo::run(&Home::from_global(g)?, &g.runtime, &dir, force, exec).await
        }
        Command::Dataset { name } => match gantry_ml::datasets::csv_by_name(&name) {
            Some(csv) => {
                print!("{csv}");
                Ok(exit::OK)
            }
            None => Err(coded(
                exit::NOT_FOUND,
                format!(
                    "no bundled data set {name}; available: {}",
                    gantry_ml::datasets::NAMES.join(", ")
                ),
            )),
        },
        Command::Component {
            name,
            with,
            inputs,
            outputs,
            metrics,
        } => crate::component::run(&name, &with, &inputs, &outputs, &metrics),
        Command::Image(ImageCommand::Rm { reference }) => {
            Home::from_global(g)?.images()?.remove(&reference)?;
            println!("removed {reference}");
            Ok(exit::OK)
        }
    }
}

fn parse_overrides(params: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(coded(
                exit::USAGE,
                format!("-p {p}: expected NAME=VALUE, e.g. -p max_depth=6"),
            )),
        })
        .collect()
}

fn validate(file: &Path, params: &[String], output: Output) -> anyhow::Result<u8> {
    let pipeline = gantry_spec::load(file)?;
    let values = gantry_spec::resolve_params(&pipeline, &parse_overrides(params)?)?;
    let plan = gantry_spec::plan(&pipeline, &values)?;
    if output == Output::Json {
        let steps: Vec<_> = plan
            .steps
            .iter()
            .map(|s| json!({"name": s.name, "deps": s.deps, "outputs": s.outputs}))
            .collect();
        println!(
            "{}",
            json!({"valid": true, "pipeline": plan.pipeline, "params": values, "steps": steps})
        );
    } else {
        println!(
            "{}: ok — pipeline {} with {} step(s): {}",
            file.display(),
            plan.pipeline,
            plan.steps.len(),
            plan.steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        );
    }
    Ok(exit::OK)
}

pub(crate) async fn open_engine(
    home: &Home,
    runtime: &str,
    exec: &ExecArgs,
) -> anyhow::Result<Engine<OciRuntime>> {
    let cpus = exec
        .cpus
        .as_deref()
        .map(gantry_spec::quantity::parse_cpu)
        .transpose()
        .map_err(|e| coded(exit::USAGE, format!("--cpus: {e}")))?;
    let memory = exec
        .memory
        .as_deref()
        .map(gantry_spec::quantity::parse_memory)
        .transpose()
        .map_err(|e| coded(exit::USAGE, format!("--memory: {e}")))?;
    let keep = exec.keep_workdirs;
    let retry_base = std::env::var("GANTRY_RETRY_BASE")
        .ok()
        .map(|v| {
            gantry_spec::quantity::parse_duration(&v)
                .map_err(|e| coded(exit::USAGE, format!("GANTRY_RETRY_BASE={v}: {e}")))
        })
        .transpose()?;
    let engine = home
        .engine(runtime, |c| {
            if let Some(cpu) = cpus {
                c.capacity.cpu_millis = cpu;
            }
            if let Some(m) = memory {
                c.capacity.memory_bytes = m;
            }
            c.keep_workdirs = keep;
            if let Some(b) = retry_base {
                c.retry_base = b;
            }
        })
        .await?;
    let rec = engine.reconcile().await?;
    for id in &rec.interrupted_runs {
        eprintln!(
            "note: run {id} was interrupted (its gantry process is gone); marked interrupted"
        );
    }
    Ok(engine)
}

async fn run(home: &Home, runtime: &str, args: RunArgs) -> anyhow::Result<u8> {
    let pipeline = gantry_spec::load(&args.file)?;
    let spec_yaml = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let params = gantry_spec::resolve_params(&pipeline, &parse_overrides(&args.params)?)?;
    // Plan before touching the machine: a bad spec never starts anything.
    gantry_spec::plan(&pipeline, &params)?;
    let mut req = RunRequest::new(pipeline, spec_yaml, params);
    req.no_cache = args.exec.no_cache;
    let engine = open_engine(home, runtime, &args.exec).await?;
    execute(&engine, req, args.exec.output).await
}

async fn rerun(home: &Home, runtime: &str, run_id: &str, exec: ExecArgs) -> anyhow::Result<u8> {
    let engine = open_engine(home, runtime, &exec).await?;
    let mut req = engine.rerun_request(run_id).await?;
    req.no_cache = req.no_cache || exec.no_cache;
    execute(&engine, req, exec.output).await
}

pub(crate) async fn execute(
    engine: &Engine<OciRuntime>,
    req: RunRequest,
    output: Output,
) -> anyhow::Result<u8> {
    let summary = execute_summary(engine, req, output).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(match summary.status {
        RunStatus::Succeeded => exit::OK,
        RunStatus::Cancelled => exit::CANCELLED,
        _ => exit::RUN_FAILED,
    })
}

/// Runs with live progress and Ctrl-C handling; returns the summary unprinted.
pub(crate) async fn execute_summary(
    engine: &Engine<OciRuntime>,
    req: RunRequest,
    output: Output,
) -> anyhow::Result<RunSummary> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let mode = progress::Mode::pick(output == Output::Json);
    let renderer = tokio::spawn(progress::render(mode, rx));
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
    let result = engine.run(req, tx, cancel.clone()).await;
    signals.abort();
    let _ = renderer.await;
    Ok(result?)
}

/// First Ctrl-C / SIGTERM cancels the run cleanly (containers killed, state recorded).
async fn cancel_on_signal(cancel: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("cancelling: stopping running steps…");
    cancel.cancel();
}

pub(crate) fn print_summary(s: &RunSummary) {
    let mut t = table(&["STEP", "STATUS", "ATTEMPTS", "EXIT", "DURATION", "REASON"]);
    for st in &s.steps {
        t.add_row(vec![
            st.step.clone(),
            st.status.as_str().to_string(),
            st.attempts.to_string(),
            st.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            st.wall_ms.map(render::duration_ms).unwrap_or_default(),
            st.reason.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    println!(
        "run {} {} in {} ({} of {} steps cached)",
        s.run_id,
        s.status.as_str(),
        render::duration_ms(s.duration_ms),
        s.cache_hits,
        s.steps.len()
    );
}

async fn store_for_reading(home: &Home) -> anyhow::Result<Store> {
    let store = home.store().await?;
    let interrupted = gantry_engine::interrupt_orphaned_runs(&store, &home.work_dir()).await?;
    for id in interrupted {
        eprintln!(
            "note: run {id} was interrupted (its gantry process is gone); marked interrupted"
        );
    }
    Ok(store)
}

async fn runs(
    home: &Home,
    pipeline: Option<String>,
    status: Option<String>,
    limit: i64,
    offset: i64,
    output: Output,
) -> anyhow::Result<u8> {
    let status = status
        .map(|s| {
            s.parse::<RunStatus>().map_err(|_| {
                coded(
                    exit::USAGE,
                    format!("--status {s}: expected queued, running, succeeded, failed, cancelled or interrupted"),
                )
            })
        })
        .transpose()?;
    let store = store_for_reading(home).await?;
    let list = store
        .list_runs(&RunFilter {
            pipeline,
            status,
            limit,
            offset,
        })
        .await?;
    let mut rows = Vec::new();
    for r in &list {
        let steps = store.list_step_runs(&r.id).await?;
        let hits = steps
            .iter()
            .filter(|s| s.status == StepStatus::Cached)
            .count();
        rows.push((r, hits));
    }
    if output == Output::Json {
        let v: Vec<_> = rows
            .iter()
            .map(|(r, hits)| {
                json!({
                    "id": r.id, "pipeline": r.pipeline, "status": r.status,
                    "created_at_ms": r.created_at_ms, "started_at_ms": r.started_at_ms,
                    "finished_at_ms": r.finished_at_ms,
                    "duration_ms": r.finished_at_ms.zip(r.started_at_ms).map(|(f, s)| f - s),
                    "cache_hits": hits, "rerun_of": r.rerun_of, "error": r.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit::OK);
    }
    let mut t = table(&[
        "ID",
        "PIPELINE",
        "STATUS",
        "STARTED",
        "DURATION",
        "CACHE HITS",
    ]);
    for (r, hits) in rows {
        t.add_row(vec![
            r.id.clone(),
            r.pipeline.clone(),
            r.status.as_str().to_string(),
            render::timestamp(r.started_at_ms.unwrap_or(r.created_at_ms)),
            r.finished_at_ms
                .zip(r.started_at_ms)
                .map(|(f, s)| render::duration_ms(f - s))
                .unwrap_or_else(|| "-".into()),
            hits.to_string(),
        ]);
    }
    println!("{t}");
    Ok(exit::OK)
}

async fn show(home: &Home, run_id: &str, output: Output) -> anyhow::Result<u8> {
    let store = store_for_reading(home).await?;
    let run = store.get_run(run_id).await?;
    let steps = store.list_step_runs(&run.id).await?;
    let lineage = store.lineage_for_run(&run.id).await?;
    let metrics = store.metrics_for_run(&run.id).await?;
    if output == Output::Json {
        let params: serde_json::Value = serde_json::from_str(&run.params_json).unwrap_or_default();
        let images: serde_json::Value = serde_json::from_str(&run.images_json).unwrap_or_default();
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
                    "usage": {"peak_memory_bytes": s.peak_memory_bytes, "cpu_seconds": s.cpu_micros.map(|c| c as f64 / 1e6), "wall_ms": s.wall_ms},
                    "inputs": serde_json::from_str::<serde_json::Value>(&s.inputs_json).unwrap_or_default(),
                    "outputs": serde_json::from_str::<serde_json::Value>(&s.outputs_json).unwrap_or_default(),
                    "metrics": step_metrics,
                })
            })
            .collect();
        let v = json!({
            "id": run.id, "pipeline": run.pipeline, "status": run.status, "spec_file": run.spec_file,
            "params": params, "images": images, "no_cache": run.no_cache, "rerun_of": run.rerun_of,
            "created_at_ms": run.created_at_ms, "started_at_ms": run.started_at_ms,
            "finished_at_ms": run.finished_at_ms, "error": run.error,
            "steps": steps_json, "artifacts": lineage,
            "sweeps": sweeps(&steps, &metrics),
            "models": store.model_versions_for_run(&run.id).await?,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit::OK);
    }
    println!("run       {}", run.id);
    println!("pipeline  {}  ({})", run.pipeline, run.spec_file);
    println!("status    {}", run.status.as_str());
    if let Some(s) = run.started_at_ms {
        println!("started   {}", render::timestamp(s));
    }
    if let (Some(s), Some(f)) = (run.started_at_ms, run.finished_at_ms) {
        println!("duration  {}", render::duration_ms(f - s));
    }
    if let Some(of) = &run.rerun_of {
        println!("rerun of  {of}");
    }
    if let Some(e) = &run.error {
        println!("error     {e}");
    }
    println!("params    {}", run.params_json);
    println!();
    let mut t = table(&[
        "STEP", "ATTEMPT", "STATUS", "EXIT", "REASON", "DURATION", "CPU REQ", "CPU USED",
        "MEM REQ", "MEM PEAK",
    ]);
    for s in &steps {
        t.add_row(vec![
            s.step.clone(),
            s.attempt.to_string(),
            match &s.cached_from {
                Some(from) if s.status == StepStatus::Cached => format!("cached ({from})"),
                _ => s.status.as_str().to_string(),
            },
            s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            s.reason.clone().unwrap_or_default(),
            s.wall_ms.map(render::duration_ms).unwrap_or_default(),
            render::cpu_millis(s.requested_cpu_millis),
            s.cpu_micros
                .map(|c| format!("{:.2}s", c as f64 / 1e6))
                .unwrap_or_default(),
            render::bytes(s.requested_memory_bytes),
            s.peak_memory_bytes.map(render::bytes).unwrap_or_default(),
        ]);
    }
    println!("{t}");
    for sweep in sweeps(&steps, &metrics) {
        println!();
        println!(
            "sweep {} ({} combinations)",
            sweep.step,
            sweep.members.len()
        );
        let mut header: Vec<String> = sweep.keys.clone();
        header.push("STATUS".into());
        header.extend(sweep.metric_keys.iter().cloned());
        let mut st = comfy_table::Table::new();
        st.load_style(comfy_table::presets::NOTHING);
        st.set_header(header);
        for m in &sweep.members {
            let mut row: Vec<String> = sweep
                .keys
                .iter()
                .map(|k| m.values.get(k).cloned().unwrap_or_default())
                .collect();
            row.push(m.status.clone());
            row.extend(sweep.metric_keys.iter().map(|k| {
                m.metrics
                    .get(k)
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_default()
            }));
            st.add_row(row);
        }
        println!("{st}");
    }
    let models = store.model_versions_for_run(&run.id).await?;
    for v in &models {
        println!();
        println!(
            "registered model {} v{}{}",
            v.model,
            v.version,
            if v.aliases.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.aliases.join(", "))
            }
        );
    }
    if !lineage.is_empty() {
        println!();
        println!("artifacts");
        print!("{}", lineage_table(&lineage));
    }
    if !metrics.is_empty() {
        println!();
        println!("metrics");
        let mut mt = table(&["STEP", "METRIC", "VALUE"]);
        for m in &metrics {
            mt.add_row(vec![m.step.clone(), m.key.clone(), format!("{}", m.value)]);
        }
        println!("{mt}");
    }
    Ok(exit::OK)
}

#[derive(serde::Serialize)]
struct SweepView {
    step: String,
    keys: Vec<String>,
    metric_keys: Vec<String>,
    members: Vec<SweepMember>,
}

#[derive(serde::Serialize)]
struct SweepMember {
    name: String,
    status: String,
    values: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
}

/// Groups the expansions of matrix steps (`train[algorithm=logistic,max_depth=2]`) with
/// their combination values and metrics, for the sweep tables of `gantry show`.
fn sweeps(
    steps: &[gantry_store::StepRunRecord],
    metrics: &[gantry_store::MetricRow],
) -> Vec<SweepView> {
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
        let view = match out.iter_mut().find(|v| v.step == base) {
            Some(v) => v,
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

fn lineage_table(rows: &[gantry_store::LineageRow]) -> String {
    let mut t = table(&["STEP", "DIRECTION", "NAME", "DIGEST", "KIND", "SIZE"]);
    for l in rows {
        t.add_row(vec![
            l.step.clone(),
            l.direction.clone(),
            l.name.clone(),
            l.digest.clone(),
            l.kind.clone().unwrap_or_default(),
            l.size.map(render::bytes).unwrap_or_default(),
        ]);
    }
    format!("{t}\n")
}

async fn logs(home: &Home, run_id: &str, step: Option<&str>, follow: bool) -> anyhow::Result<u8> {
    let store = store_for_reading(home).await?;
    let run = store.get_run(run_id).await?;
    if let Some(step) = step {
        let steps = store.list_step_runs(&run.id).await?;
        if !steps.iter().any(|s| s.step == step) {
            let names: Vec<_> = steps.iter().map(|s| s.step.as_str()).collect();
            return Err(coded(
                exit::NOT_FOUND,
                format!(
                    "run {} has no step {step}; its steps are: {}",
                    run.id,
                    names.join(", ")
                ),
            ));
        }
    }
    let mut after = 0;
    let mut last_step = String::new();
    let mut out = std::io::stdout().lock();
    loop {
        let rows = store.logs(&run.id, step, after, 1000).await?;
        for r in &rows {
            use std::io::Write;
            if step.is_none() && r.step != last_step {
                last_step = r.step.clone();
            }
            let line = if step.is_none() {
                format!("[{}] {}", r.step, r.data)
            } else {
                r.data.clone()
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(exit::OK);
            }
            after = r.id;
        }
        if rows.len() == 1000 {
            continue;
        }
        if !follow {
            break;
        }
        let current = store.get_run(&run.id).await?;
        if current.status.is_terminal() {
            // One last read: lines flushed between the previous read and the status change.
            let rest = store.logs(&run.id, step, after, i64::MAX).await?;
            for r in rest {
                use std::io::Write;
                let line = if step.is_none() {
                    format!("[{}] {}", r.step, r.data)
                } else {
                    r.data
                };
                let _ = writeln!(out, "{line}");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(exit::OK)
}

async fn artifacts(home: &Home, run_id: &str, output: Output) -> anyhow::Result<u8> {
    let store = store_for_reading(home).await?;
    let run = store.get_run(run_id).await?;
    let rows = store.lineage_for_run(&run.id).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", lineage_table(&rows));
    }
    Ok(exit::OK)
}

async fn artifact_get(home: &Home, digest: &str, out: &Path) -> anyhow::Result<u8> {
    let digest = if digest.starts_with("sha256:") {
        digest.to_string()
    } else {
        format!("sha256:{digest}")
    };
    let store = home.artifacts()?;
    if store.stat(&digest).await?.is_none() {
        return Err(coded(
            exit::NOT_FOUND,
            format!("artifact {digest} not found"),
        ));
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = store.export(&digest, out).await?;
    println!("{}", path.display());
    Ok(exit::OK)
}

fn images(home: &Home, output: Output) -> anyhow::Result<u8> {
    let list = home.images()?.list()?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(exit::OK);
    }
    let mut t = table(&["NAME", "DIGEST", "LAYERS", "SIZE"]);
    for i in &list {
        let names = if i.names.is_empty() {
            "<none>".to_string()
        } else {
            i.names.join(", ")
        };
        t.add_row(vec![
            names,
            render::short_digest(&i.digest),
            i.layers.to_string(),
            render::bytes(i.size as i64),
        ]);
    }
    println!("{t}");
    Ok(exit::OK)
}

fn image_import(
    home: &Home,
    path: &Path,
    name: Option<&str>,
    output: Output,
) -> anyhow::Result<u8> {
    let info = home.images()?.import(path, name)?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "imported {} as {}",
            info.digest,
            if info.names.is_empty() {
                "<no name>".to_string()
            } else {
                info.names.join(", ")
            }
        );
    }
    Ok(exit::OK)
}
