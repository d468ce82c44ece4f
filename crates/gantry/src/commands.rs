//! One function per command.

use crate::cli::{
    ArtifactCommand, Cli, Command, ExecArgs, HookCommand, ImageCommand, KeyCommand, ModelCommand,
    Output, RunArgs, VulndbCommand,
};
use crate::exit::{self, coded};
use crate::home::Home;
use crate::progress;
use crate::remote::Client;
use crate::render::{self, table};
use anyhow::Context;
use gantry_engine::{Engine, Event, RunRequest, RunSummary};
use gantry_kube::StepRuntime;
use gantry_server::views;
use gantry_store::{RunFilter, RunStatus, StepStatus, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where read commands get their data: GANTRY_HOME's stores, or a server (`--server`).
pub enum Source<'a> {
    Local(Home),
    Remote(&'a Client),
}

fn local_only(g: &crate::cli::Global, what: &str) -> anyhow::Result<Home> {
    if g.server.is_some() {
        return Err(coded(
            exit::USAGE,
            format!(
                "`gantry {what}` works on GANTRY_HOME only, not against --server / GANTRY_SERVER"
            ),
        ));
    }
    Home::from_global(g)
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    let client = g
        .server
        .as_deref()
        .map(|s| Client::new(s, g.token.as_deref()))
        .transpose()?;
    let src = || -> anyhow::Result<Source<'_>> {
        match &client {
            Some(c) => Ok(Source::Remote(c)),
            None => Ok(Source::Local(Home::from_global(g)?)),
        }
    };
    match cli.command {
        Command::Validate {
            file,
            params,
            output,
        } => validate(&file, &params, output, client.is_some()),
        Command::Compile(args) => crate::compile::run(g, args),
        Command::Kube(crate::cli::KubeCommand::Manifests(args)) => crate::kube::manifests(g, *args),
        Command::Run(args) => match &client {
            Some(c) => crate::remote_run::run(c, &args).await,
            None => run(&Home::from_global(g)?, &g.runtime, args).await,
        },
        Command::Rerun { run, exec } => {
            rerun(&local_only(g, "rerun")?, &g.runtime, &run, exec).await
        }
        Command::Runs {
            pipeline,
            status,
            limit,
            offset,
            output,
        } => runs(&src()?, pipeline, status, limit, offset, output).await,
        Command::Show { run, output } => show(&src()?, &run, output).await,
        Command::Cancel { run } => crate::queue::cancel(&src()?, &run).await,
        Command::Logs {
            run,
            step,
            follow,
            tail,
            grep,
            since,
        } => {
            let filter = LogFilter::new(tail, grep.as_deref(), since.as_deref())?;
            logs(&src()?, &run, step.as_deref(), follow, &filter).await
        }
        Command::Artifacts { run, output } => artifacts(&src()?, &run, output).await,
        Command::Artifact(ArtifactCommand::Get { digest, out }) => match &client {
            Some(c) => crate::remote_run::artifact_get(c, &digest, &out).await,
            None => artifact_get(&Home::from_global(g)?, &digest, &out).await,
        },
        Command::Images { output } => images(&local_only(g, "images")?, output),
        Command::Image(ImageCommand::Import { path, name, output }) => image_import(
            &local_only(g, "image import")?,
            &path,
            name.as_deref(),
            output,
        ),
        Command::Models { output } => crate::models::list(&src()?, output).await,
        Command::Model(ModelCommand::Show { reference, output }) => {
            crate::models::show(&src()?, &reference, output).await
        }
        Command::Model(ModelCommand::Alias {
            name,
            model_version,
            alias,
        }) => crate::models::alias(&src()?, &name, model_version, &alias).await,
        Command::Model(ModelCommand::Register(args)) => {
            crate::register::register(&local_only(g, "model register")?, &args).await
        }
        Command::Deploy(args) => crate::deployments::deploy(&src()?, &args).await,
        Command::Promote { name, output } => {
            crate::deployments::promote_or_rollback(&src()?, &name, false, output).await
        }
        Command::Rollback { name, output } => {
            crate::deployments::promote_or_rollback(&src()?, &name, true, output).await
        }
        Command::Undeploy { name, output } => {
            crate::deployments::undeploy(&src()?, &name, output).await
        }
        Command::Deployments { name, output } => {
            crate::deployments::list_or_show(&src()?, name.as_deref(), output).await
        }
        Command::Monitor {
            name,
            history: true,
            hours,
            output,
        } => crate::monitor::history(&src()?, &name, hours, output).await,
        Command::Monitor { name, output, .. } => crate::monitor::show(&src()?, &name, output).await,
        Command::Drift(args) => crate::drift::run(g, &args).await,
        Command::Feedback(args) => crate::deployments::feedback(&src()?, &args).await,
        Command::Serve(args) => crate::model_server::serve(g, args).await,
        Command::Demo { dir, force, exec } => {
            crate::demo::run(&local_only(g, "demo")?, &g.runtime, &dir, force, exec).await
        }
        Command::Server(args) => {
            crate::serve::server(&local_only(g, "server")?, &g.runtime, args).await
        }
        Command::Token(cmd) => crate::serve::token(&src()?, cmd).await,
        Command::Gc {
            dry_run,
            older_than,
            output,
        } => crate::gc::gc(&src()?, &older_than, dry_run, output).await,
        Command::Df { older_than, output } => crate::gc::df(&src()?, &older_than, output).await,
        Command::Usage {
            since,
            until,
            by,
            project,
            output,
        } => crate::usage::usage(&src()?, &since, until.as_deref(), &by, project, output).await,
        Command::Recommend {
            file,
            params,
            write,
            output,
        } => {
            crate::usage::recommend(&local_only(g, "recommend")?, &file, &params, write, output)
                .await
        }
        Command::Queue { output } => match &client {
            Some(c) => crate::queue::queue(c, output).await,
            None => Err(coded(
                exit::USAGE,
                "`gantry queue` shows a server's queue: give --server URL (or GANTRY_SERVER); runs of plain `gantry run` never queue behind other runs",
            )),
        },
        Command::Project(cmd) => crate::queue::project(&src()?, cmd).await,
        Command::Gpus { output } => crate::usage::gpus(&local_only(g, "gpus")?, output).await,
        Command::Audit { limit, output } => crate::serve::audit(&src()?, limit, output).await,
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
        Command::Hook(HookCommand::NetnsReady { socket }) => crate::hook::netns_ready(&socket),
        Command::StepFetch => {
            crate::step_exec::fetch(&crate::step_exec::Paths::from_env(), None, true).await
        }
        Command::StepExec {
            timeout_ms,
            grace_ms,
            digests_dir,
            digest_file,
            plan,
            fetch,
            env,
            step,
            argv,
        } => {
            let pair = |flag: &str, kv: &str| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| coded(exit::USAGE, format!("--{flag} {kv}: expected A=B")))
            };
            let opts = crate::step_exec::ExecOptions {
                timeout: timeout_ms.map(std::time::Duration::from_millis),
                grace: std::time::Duration::from_millis(grace_ms),
                digests_dir,
                digest_files: digest_file
                    .iter()
                    .map(|kv| pair("digest-file", kv).map(|(k, v)| (k, PathBuf::from(v))))
                    .collect::<anyhow::Result<_>>()?,
                plan,
                fetch,
                env: step_env(step.as_deref())?
                    .into_iter()
                    .map(Ok)
                    .chain(env.iter().map(|kv| pair("env", kv)))
                    .collect::<anyhow::Result<_>>()?,
                argv,
            };
            crate::step_exec::exec(&crate::step_exec::Paths::from_env(), opts).await
        }
        Command::StepEnd {
            status,
            failures,
            kfp_status,
            plan,
        } => {
            let status = match (kfp_status, status) {
                (Some(json), _) => crate::step_report::EndStatus::Kfp(json),
                (None, status) => crate::step_report::EndStatus::Argo {
                    status: status.unwrap_or_default(),
                    failures,
                },
            };
            crate::step_report::end(plan.as_deref(), status).await
        }
        Command::Component {
            name,
            with,
            inputs,
            outputs,
            metrics,
        } => crate::component::run(&name, &with, &inputs, &outputs, &metrics),
        Command::Image(ImageCommand::Pull { reference, output }) => {
            crate::images::pull(&local_only(g, "image pull")?, &reference, output).await
        }
        Command::Image(ImageCommand::Push {
            local,
            reference,
            with_signatures,
            output,
        }) => {
            crate::images::push(
                &local_only(g, "image push")?,
                &local,
                &reference,
                with_signatures,
                output,
            )
            .await
        }
        Command::Login {
            registry,
            username,
            password_stdin,
        } => crate::images::login(
            &local_only(g, "login")?,
            &registry,
            &username,
            password_stdin,
        ),
        Command::Logout { registry } => crate::images::logout(&local_only(g, "logout")?, &registry),
        Command::Key(KeyCommand::Generate { name, force }) => {
            crate::trust_cmd::key_generate(&name, force)
        }
        Command::Image(ImageCommand::Sign {
            reference,
            key,
            local,
        }) => crate::trust_cmd::sign(&local_only(g, "image sign")?, &reference, &key, local).await,
        Command::Image(ImageCommand::Verify {
            reference,
            key,
            output,
        }) => {
            crate::trust_cmd::verify(&local_only(g, "image verify")?, &reference, &key, output)
                .await
        }
        Command::Image(ImageCommand::Scan {
            reference,
            fail_on,
            output,
        }) => {
            crate::trust_cmd::scan(
                &local_only(g, "image scan")?,
                &reference,
                fail_on.as_deref(),
                output,
            )
            .await
        }
        Command::Vulndb(VulndbCommand::Import { source, output }) => {
            crate::trust_cmd::vulndb_import(&local_only(g, "vulndb import")?, &source, output).await
        }
        Command::Vulndb(VulndbCommand::Show { output }) => {
            crate::trust_cmd::vulndb_show(&local_only(g, "vulndb show")?, output)
        }
        Command::Image(ImageCommand::Rm { reference }) => {
            local_only(g, "image rm")?.images()?.remove(&reference)?;
            println!("removed {reference}");
            Ok(exit::OK)
        }
    }
}

pub(crate) fn parse_overrides(params: &[String]) -> anyhow::Result<Vec<(String, String)>> {
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

/// Whether a local input is there: anything but "not found" counts (a file that cannot be
/// read is the step's error to report, with the reason).
fn present(path: &Path) -> bool {
    !matches!(path.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// `gantry validate`: the spec, its params and its plan, and (unless a server will read them)
/// that its local `path:` inputs exist.
fn validate(file: &Path, params: &[String], output: Output, remote: bool) -> anyhow::Result<u8> {
    let pipeline = gantry_spec::load(file)?;
    let values = gantry_spec::resolve_params(&pipeline, &parse_overrides(params)?)?;
    let plan = gantry_spec::plan(&pipeline, &values)?;
    // Against a server, a path missing here may be one of its data roots (`gantry run` says so).
    if !remote {
        gantry_spec::check_local_inputs(&pipeline, &plan, present)?;
    }
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
) -> anyhow::Result<Engine<StepRuntime>> {
    open_engine_relaying(
        home,
        runtime,
        exec,
        None,
        None,
        gantry_engine::InputPolicy::local(),
    )
    .await
}

/// Like [`open_engine`]; `tracking_relay` (the server's address) gives every step
/// MLFLOW_TRACKING_URI and MLFLOW_RUN_ID relayed to it.
pub(crate) async fn open_engine_relaying(
    home: &Home,
    runtime: &str,
    exec: &ExecArgs,
    tracking_relay: Option<std::net::SocketAddr>,
    step_tokens: Option<std::sync::Arc<dyn gantry_engine::StepTokens>>,
    inputs: gantry_engine::InputPolicy,
) -> anyhow::Result<Engine<StepRuntime>> {
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
    let gpus = exec.gpus;
    // A server pulls images for remote users: through the same guard as their URL inputs, so
    // an image reference cannot make it reach its own network (--allow-fetch opens a registry).
    let guarded_registry = if inputs.fetch.is_unrestricted() {
        None
    } else {
        let http = inputs
            .fetch
            .client(gantry_image::registry::http_builder())
            .map_err(|e| coded(exit::USAGE, e.to_string()))?;
        let client = crate::images::registry_client(home)?;
        let mut options = client.options().clone();
        options.fetch = inputs.fetch.clone();
        let client = gantry_image::registry::RegistryClient::new(http, options);
        Some(std::sync::Arc::new(client))
    };
    let retry_base = std::env::var("GANTRY_RETRY_BASE")
        .ok()
        .map(|v| {
            gantry_spec::quantity::parse_duration(&v)
                .map_err(|e| coded(exit::USAGE, format!("GANTRY_RETRY_BASE={v}: {e}")))
        })
        .transpose()?;
    let engine = home
        .engine(runtime, |c| {
            if runtime == "kubernetes" {
                // The cluster's scheduler places pods; this bounds what this process puts on
                // it at once (--cpus / --memory / --gpus narrow it), and quotas still apply.
                c.capacity = gantry_engine::Capacity {
                    cpu_millis: 1_000_000,
                    memory_bytes: 64 << 40,
                    gpus: 1024,
                    max_parallel: 256,
                };
            }
            if let Some(cpu) = cpus {
                c.capacity.cpu_millis = cpu;
            }
            if let Some(m) = memory {
                c.capacity.memory_bytes = m;
            }
            if let Some(g) = gpus {
                c.capacity.gpus = g;
            }
            c.keep_workdirs = keep;
            c.tracking_relay = tracking_relay;
            c.step_tokens = step_tokens;
            c.inputs = inputs;
            // A server keeps runs that wait for admission across restarts.
            c.durable_queue = tracking_relay.is_some();
            if let Some(r) = guarded_registry {
                c.registry = Some(r);
                c.pull_progress = None;
                c.principal = "server".into();
            }
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
    // Plan before touching the machine: a bad spec, or an input file that is not there, never
    // starts anything.
    let plan = gantry_spec::plan(&pipeline, &params)?;
    gantry_spec::check_local_inputs(&pipeline, &plan, present)?;
    if args.detach {
        return Err(coded(
            exit::USAGE,
            "--detach needs --server: a plain `gantry run` executes the run in this process",
        ));
    }
    let mut req = RunRequest::new(pipeline, spec_yaml, params);
    req.no_cache = args.exec.no_cache;
    req.submitted_by = Some(local_user());
    req.priority = gantry_engine::Priority::parse(&args.priority).unwrap_or_default();
    let engine = open_engine(home, runtime, &args.exec).await?;
    execute(&engine, req, args.exec.output).await
}

async fn rerun(home: &Home, runtime: &str, run_id: &str, exec: ExecArgs) -> anyhow::Result<u8> {
    let engine = open_engine(home, runtime, &exec).await?;
    let mut req = engine.rerun_request(run_id).await?;
    req.no_cache = req.no_cache || exec.no_cache;
    req.submitted_by = Some(local_user());
    execute(&engine, req, exec.output).await
}

/// The Unix user running `gantry`, for usage reports: the account name, else `uid:N`.
pub(crate) fn local_user() -> String {
    let uid = nix::unistd::Uid::current();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}

pub(crate) async fn execute(
    engine: &Engine<StepRuntime>,
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
    engine: &Engine<StepRuntime>,
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
    print_summary_value(&json!(s));
}

/// The step table and one-line verdict of a run summary (local or from a server).
pub(crate) fn print_summary_value(s: &Value) {
    let mut t = table(&["STEP", "STATUS", "ATTEMPTS", "EXIT", "DURATION", "REASON"]);
    let empty = Vec::new();
    let steps = s["steps"].as_array().unwrap_or(&empty);
    for st in steps {
        t.add_row(vec![
            text(&st["step"]),
            text(&st["status"]),
            text(&st["attempts"]),
            text(&st["exit_code"]),
            st["wall_ms"]
                .as_i64()
                .map(render::duration_ms)
                .unwrap_or_default(),
            text(&st["reason"]),
        ]);
    }
    println!("{t}");
    println!(
        "run {} {} in {} ({} of {} steps cached)",
        text(&s["run_id"]),
        text(&s["status"]),
        render::duration_ms(s["duration_ms"].as_i64().unwrap_or(0)),
        text(&s["cache_hits"]),
        steps.len()
    );
}

pub(crate) async fn store_for_reading(home: &Home) -> anyhow::Result<Store> {
    let store = home.store().await?;
    let interrupted = gantry_engine::interrupt_orphaned_runs(&store, &home.work_dir()).await?;
    for id in interrupted {
        eprintln!(
            "note: run {id} was interrupted (its gantry process is gone); marked interrupted"
        );
    }
    Ok(store)
}

fn parse_status(status: Option<String>) -> anyhow::Result<Option<RunStatus>> {
    status
        .map(|s| {
            s.parse::<RunStatus>().map_err(|_| {
                coded(
                    exit::USAGE,
                    format!("--status {s}: expected queued, running, succeeded, failed, cancelled or interrupted"),
                )
            })
        })
        .transpose()
}

async fn runs(
    src: &Source<'_>,
    pipeline: Option<String>,
    status: Option<String>,
    limit: i64,
    offset: i64,
    output: Output,
) -> anyhow::Result<u8> {
    let status = parse_status(status)?;
    let items: Vec<Value> = match src {
        Source::Remote(client) => {
            let mut q = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            if let Some(p) = pipeline {
                q.push(("pipeline", p));
            }
            if let Some(s) = status {
                q.push(("status", s.as_str().to_string()));
            }
            let page = client.get(&["runs"], &q).await?;
            page["runs"].as_array().cloned().unwrap_or_default()
        }
        Source::Local(home) => {
            let store = store_for_reading(home).await?;
            let list = store
                .list_runs(&RunFilter {
                    pipeline,
                    status,
                    limit,
                    offset,
                })
                .await?;
            views::run_items(&store, &list).await?
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&items)?);
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
    for r in &items {
        let started = r["started_at_ms"]
            .as_i64()
            .or(r["created_at_ms"].as_i64())
            .unwrap_or(0);
        t.add_row(vec![
            text(&r["id"]),
            text(&r["pipeline"]),
            text(&r["status"]),
            render::timestamp(started),
            r["duration_ms"]
                .as_i64()
                .map(render::duration_ms)
                .unwrap_or_else(|| "-".into()),
            r["cache_hits"].to_string(),
        ]);
    }
    println!("{t}");
    Ok(exit::OK)
}

/// A JSON string's text ("" for null), or any other value as JSON.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The document `gantry show --output json` prints, from the store or the server.
async fn run_document(src: &Source<'_>, run_id: &str) -> anyhow::Result<Value> {
    match src {
        Source::Remote(client) => client.get(&["runs", run_id], &[]).await,
        Source::Local(home) => {
            let store = store_for_reading(home).await?;
            let run = store.get_run(run_id).await?;
            Ok(views::run_detail(&store, &run, &home.config()?.prices).await?)
        }
    }
}

async fn show(src: &Source<'_>, run_id: &str, output: Output) -> anyhow::Result<u8> {
    let v = run_document(src, run_id).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit::OK);
    }
    print_run(&v);
    Ok(exit::OK)
}

pub(crate) fn print_run(v: &Value) {
    println!("run       {}", text(&v["id"]));
    println!(
        "pipeline  {}  ({})",
        text(&v["pipeline"]),
        text(&v["spec_file"])
    );
    println!("status    {}", text(&v["status"]));
    let started = v["started_at_ms"].as_i64();
    if let Some(s) = started {
        println!("started   {}", render::timestamp(s));
    }
    if let (Some(s), Some(f)) = (started, v["finished_at_ms"].as_i64()) {
        println!("duration  {}", render::duration_ms(f - s));
    }
    if let Some(of) = v["rerun_of"].as_str() {
        println!("rerun of  {of}");
    }
    if let Some(e) = v["error"].as_str() {
        println!("error     {e}");
    }
    println!("params    {}", v["params"]);
    if let Some(by) = v["submitted_by"].as_str() {
        println!("by        {by}");
    }
    for w in v["waiting"].as_array().into_iter().flatten() {
        let what = match w["kind"].as_str() {
            Some("start_run") => "run start".to_string(),
            _ => format!("step {}", text(&w["step"])),
        };
        println!(
            "waiting   {what}, #{} in the queue: {}",
            w["position"],
            text(&w["reason"])
        );
    }
    let u = &v["usage"];
    if let Some(total) = u["cost"]["total"].as_f64() {
        let f = |x: &Value| x.as_f64().unwrap_or(0.0);
        let gpu: f64 = u["gpu_hours"]
            .as_object()
            .map(|m| m.values().map(f).sum())
            .unwrap_or(0.0);
        println!(
            "cost      {total:.4} {} (CPU {:.4} core-h requested, {:.4} used; memory {:.4} GiB-h{}{})",
            text(&u["currency"]),
            f(&u["cpu_hours_requested"]),
            f(&u["cpu_hours_used"]),
            f(&u["memory_gib_hours_requested"]),
            if gpu > 0.0 {
                format!("; GPU {gpu:.4} h")
            } else {
                String::new()
            },
            match f(&u["cost"]["saved"]) {
                s if s > 0.0 => format!("; the cache saved {s:.4}"),
                _ => String::new(),
            }
        );
    }
    if let Some(decisions) = v["image_decisions"].as_array().filter(|d| !d.is_empty()) {
        println!("images    trust policy:");
        for d in decisions {
            let reasons: Vec<&str> = d["reasons"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            println!(
                "          {} {} {} ({}): {}",
                text(&d["item"]),
                text(&d["outcome"]),
                text(&d["reference"]),
                d["rule"].as_str().unwrap_or("no rule"),
                reasons.join("; ")
            );
        }
    }
    println!();
    let mut t = table(&[
        "STEP", "ATTEMPT", "STATUS", "EXIT", "REASON", "DURATION", "CPU REQ", "CPU USED",
        "MEM REQ", "MEM PEAK",
    ]);
    let empty = Vec::new();
    for s in v["steps"].as_array().unwrap_or(&empty) {
        let status = text(&s["status"]);
        t.add_row(vec![
            text(&s["step"]),
            text(&s["attempt"]),
            match s["cached_from"].as_str() {
                Some(from) if status == StepStatus::Cached.as_str() => {
                    format!("cached ({from})")
                }
                _ => status,
            },
            text(&s["exit_code"]),
            text(&s["reason"]),
            s["usage"]["wall_ms"]
                .as_i64()
                .map(render::duration_ms)
                .unwrap_or_default(),
            render::cpu_millis(s["requested"]["cpu_millis"].as_i64().unwrap_or(0)),
            s["usage"]["cpu_seconds"]
                .as_f64()
                .map(|c| format!("{c:.2}s"))
                .unwrap_or_default(),
            render::bytes(s["requested"]["memory_bytes"].as_i64().unwrap_or(0)),
            s["usage"]["peak_memory_bytes"]
                .as_i64()
                .map(render::bytes)
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
    for s in v["steps"].as_array().unwrap_or(&empty) {
        if let Some(note) = s["resources_note"].as_str() {
            println!(
                "{} (attempt {}): {note}",
                text(&s["step"]),
                text(&s["attempt"])
            );
        }
        if let Some(model) = s["usage"]["gpu_model"].as_str() {
            println!(
                "{} (attempt {}): GPU {model}, {:.0}% utilized, {} GPU memory peak, idle {}",
                text(&s["step"]),
                text(&s["attempt"]),
                s["usage"]["gpu_util_percent"].as_f64().unwrap_or(0.0),
                render::bytes(s["usage"]["gpu_memory_peak_bytes"].as_i64().unwrap_or(0)),
                render::duration_ms(s["usage"]["gpu_idle_ms"].as_i64().unwrap_or(0))
            );
        }
    }
    for sweep in v["sweeps"].as_array().unwrap_or(&empty) {
        let strings = |x: &Value| -> Vec<String> {
            x.as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default()
        };
        let keys = strings(&sweep["keys"]);
        let metric_keys = strings(&sweep["metric_keys"]);
        let members = sweep["members"].as_array().unwrap_or(&empty);
        println!();
        println!(
            "sweep {} ({} combinations)",
            text(&sweep["step"]),
            members.len()
        );
        let mut header: Vec<String> = keys.clone();
        header.push("STATUS".into());
        header.extend(metric_keys.iter().cloned());
        let mut st = comfy_table::Table::new();
        st.load_style(comfy_table::presets::NOTHING);
        st.set_header(header);
        for m in members {
            let mut row: Vec<String> = keys.iter().map(|k| text(&m["values"][k])).collect();
            row.push(text(&m["status"]));
            row.extend(metric_keys.iter().map(|k| {
                m["metrics"][k]
                    .as_f64()
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_default()
            }));
            st.add_row(row);
        }
        println!("{st}");
    }
    for m in v["models"].as_array().unwrap_or(&empty) {
        let aliases: Vec<String> = m["aliases"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        println!();
        println!(
            "registered model {} v{}{}",
            text(&m["model"]),
            text(&m["version"]),
            if aliases.is_empty() {
                String::new()
            } else {
                format!(" ({})", aliases.join(", "))
            }
        );
    }
    if let Some(steps) = v["mlflow"]["steps"].as_object() {
        let logged: Vec<(String, String, String)> = steps
            .iter()
            .flat_map(|(step, r)| {
                let metrics = r["metrics"].as_object().cloned().unwrap_or_default();
                let params = r["params"].as_object().cloned().unwrap_or_default();
                metrics
                    .into_iter()
                    .map(|(k, v)| (step.clone(), format!("metric {k}"), v.to_string()))
                    .chain(
                        params
                            .into_iter()
                            .map(|(k, v)| (step.clone(), format!("param {k}"), text(&v))),
                    )
                    .collect::<Vec<_>>()
            })
            .collect();
        if !logged.is_empty() {
            println!();
            println!(
                "logged through MLflow from inside steps (MLflow run {})",
                text(&v["mlflow"]["run_id"])
            );
            let mut t = table(&["STEP", "WHAT", "VALUE"]);
            for (step, what, value) in logged {
                t.add_row(vec![step, what, value]);
            }
            println!("{t}");
        }
    }
    if let Some(rows) = v["artifacts"].as_array().filter(|a| !a.is_empty()) {
        println!();
        println!("artifacts");
        print!("{}", lineage_table(rows));
    }
    if let Some(metrics) = v["metrics"].as_array().filter(|a| !a.is_empty()) {
        println!();
        println!("metrics");
        let mut mt = table(&["STEP", "METRIC", "VALUE"]);
        for m in metrics {
            mt.add_row(vec![
                text(&m["step"]),
                text(&m["key"]),
                m["value"]
                    .as_f64()
                    .map(|x| format!("{x}"))
                    .unwrap_or_default(),
            ]);
        }
        println!("{mt}");
    }
}

fn lineage_table(rows: &[Value]) -> String {
    let mut t = table(&["STEP", "DIRECTION", "NAME", "DIGEST", "KIND", "SIZE"]);
    for l in rows {
        t.add_row(vec![
            text(&l["step"]),
            text(&l["direction"]),
            text(&l["name"]),
            text(&l["digest"]),
            text(&l["kind"]),
            l["size"].as_i64().map(render::bytes).unwrap_or_default(),
        ]);
    }
    format!("{t}\n")
}

/// What `gantry logs` keeps: the last N lines, lines matching a pattern, lines since a time.
pub(crate) struct LogFilter {
    pub(crate) tail: Option<u64>,
    pub(crate) grep: Option<regex::Regex>,
    /// The pattern as given (sent to a server).
    pub(crate) grep_text: Option<String>,
    pub(crate) since_ms: Option<i64>,
}

impl LogFilter {
    fn new(tail: Option<u64>, grep: Option<&str>, since: Option<&str>) -> anyhow::Result<Self> {
        let grep_re = grep
            .map(|g| {
                regex::RegexBuilder::new(g)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| coded(exit::USAGE, format!("bad --grep pattern: {e}")))
            })
            .transpose()?;
        let since_ms = since.map(parse_since).transpose()?;
        Ok(Self {
            tail,
            grep: grep_re,
            grep_text: grep.map(str::to_owned),
            since_ms,
        })
    }

    fn keeps(&self, line: &str) -> bool {
        self.grep.as_ref().is_none_or(|re| re.is_match(line))
    }
}

/// `10m`, `2h30m` (that long ago) or an RFC 3339 time, as ms since the epoch.
pub(crate) fn parse_since(text: &str) -> anyhow::Result<i64> {
    let bad = || {
        coded(
            exit::USAGE,
            format!(
                "bad --since '{text}': give a duration such as 10m or 2h, or a time such as \
                 2026-12-05T08:00:00Z"
            ),
        )
    };
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(text) {
        Ok(d) => now.checked_sub(d).ok_or_else(bad)?,
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| bad())?,
    };
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(ms)
}

async fn logs(
    src: &Source<'_>,
    run_id: &str,
    step: Option<&str>,
    follow: bool,
    filter: &LogFilter,
) -> anyhow::Result<u8> {
    let home = match src {
        Source::Remote(client) => {
            return crate::remote_run::logs(client, run_id, step, follow, filter).await;
        }
        Source::Local(home) => home,
    };
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
    let mut after = match filter.tail {
        Some(n) => {
            store
                .log_tail_start(&run.id, step, n, filter.since_ms, |l| filter.keeps(l))
                .await?
        }
        None => 0,
    };
    let mut out = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    loop {
        // Read the status first: a line written before the run ended is then read below.
        let ended = !follow || store.log_complete(&run.id, step).await?;
        loop {
            let page = store
                .log_chunks(
                    &run.id,
                    &gantry_store::ChunkQuery {
                        step,
                        from: gantry_store::ChunkQuery::from_position(after),
                        since_ms: filter.since_ms,
                        limit: 64,
                        ..Default::default()
                    },
                )
                .await?;
            for c in &page {
                for (_, text) in c.lines_after(after).filter(|(_, t)| filter.keeps(t)) {
                    if write_log_line(&mut out, step, &c.step, text).is_err() {
                        return Ok(exit::OK);
                    }
                }
                after = after.max(c.last_position());
            }
            if page.len() < 64 {
                break;
            }
        }
        if ended {
            break;
        }
        if std::io::Write::flush(&mut out).is_err() {
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::io::Write::flush(&mut out);
    Ok(exit::OK)
}

fn write_log_line(
    out: &mut impl std::io::Write,
    step: Option<&str>,
    row_step: &str,
    text: &str,
) -> std::io::Result<()> {
    if step.is_none() {
        out.write_all(b"[")?;
        out.write_all(row_step.as_bytes())?;
        out.write_all(b"] ")?;
    }
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")
}

async fn artifacts(src: &Source<'_>, run_id: &str, output: Output) -> anyhow::Result<u8> {
    let rows: Vec<Value> = match src {
        Source::Remote(client) => client
            .get(&["runs", run_id, "artifacts"], &[])
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Source::Local(home) => {
            let store = store_for_reading(home).await?;
            let run = store.get_run(run_id).await?;
            let rows = store.lineage_for_run(&run.id).await?;
            rows.iter().map(|r| json!(r)).collect()
        }
    };
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
        // Recorded but not stored: gc removed it with the runs past the retention.
        let known = match home.store().await {
            Ok(s) => s.get_artifact(&digest).await.ok().flatten().is_some(),
            Err(_) => false,
        };
        let message = if known {
            format!(
                "artifact {digest} is not in the store any more: gc removed it (no kept run, model or upload uses it); run the pipeline that produced it again"
            )
        } else {
            format!("artifact {digest} not found")
        };
        return Err(coded(exit::NOT_FOUND, message));
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

/// `step-exec --step SEQ:NAME`: the variables it stands for.
fn step_env(step: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
    let Some(step) = step else {
        return Ok(Vec::new());
    };
    let parsed = step
        .split_once(':')
        .filter(|(seq, name)| seq.parse::<u32>().is_ok() && !name.is_empty());
    let Some((seq, name)) = parsed else {
        return Err(coded(
            exit::USAGE,
            format!("--step {step}: expected SEQ:NAME (a position, then the step's name)"),
        ));
    };
    Ok(vec![
        (
            gantry_kube::exported::STEP_ENV.to_string(),
            name.to_string(),
        ),
        (gantry_kube::exported::SEQ_ENV.to_string(), seq.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_position_and_name_or_is_refused() {
        assert_eq!(
            step_env(Some("3:train[seed=1]")).unwrap(),
            vec![
                ("GANTRY_STEP".to_string(), "train[seed=1]".to_string()),
                ("GANTRY_STEP_SEQ".to_string(), "3".to_string()),
            ]
        );
        assert!(step_env(None).unwrap().is_empty());
        for bad in ["train", "x:train", "3:", "-1:train"] {
            let err = step_env(Some(bad)).unwrap_err();
            assert_eq!(exit::code_for(&err), exit::USAGE, "{bad}");
            assert!(err.to_string().contains("SEQ:NAME"), "{bad}: {err}");
        }
    }
}
