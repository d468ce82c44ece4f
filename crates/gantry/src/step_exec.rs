//! The two halves of the step contract inside a Kubernetes pod (not for people):
//!
//! - `gantry step-fetch` (the init container, from the built-in image): fetches the plan's
//!   inputs by digest from the artifact store into `/gantry/inputs`, writes
//!   `/gantry/params.json`, makes `/gantry/outputs`, and leaves a copy of this (static) binary at
//!   `/gantry/bin/gantry` for the wrapper.
//! - `gantry step-exec [--timeout-ms N --grace-ms N] [--digests-dir DIR] -- CMD…` (the step's
//!   container): PID 1 of the container. Runs the command in its own process group without the
//!   artifact store's credentials, forwards SIGTERM/SIGINT, reaps every child (orphans too),
//!   stops the command at its timeout (SIGTERM, the grace, SIGKILL), then uploads the declared
//!   outputs and `/gantry/metrics.json` and writes a [`StepReport`] as the termination message.
//!   It exits with the command's status (128 + signal when a signal ended it).
//!
//! The plan comes from `GANTRY_STEP_PLAN` (see `gantry_kube::contract`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use gantry_artifacts::{ArtifactStore, Location};
use gantry_kube::contract::{PLAN_ENV, StepPlan, StepReport, TERMINATION_LOG, VERSION};

use crate::exit::{self, coded};
use crate::step_report;
use gantry_engine::now_ms;

/// Where the pod's files are; tests in a plain container point these elsewhere.
#[derive(Clone, Debug)]
pub struct Paths {
    pub work: PathBuf,
    pub termination_log: PathBuf,
}

impl Paths {
    pub fn from_env() -> Paths {
        Paths {
            work: std::env::var_os("GANTRY_STEP_WORK")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(gantry_kube::contract::WORK_DIR)),
            termination_log: std::env::var_os("GANTRY_STEP_TERMINATION_LOG")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(TERMINATION_LOG)),
        }
    }
}

/// The plan given as an argument, else the one in [`PLAN_ENV`].
pub(crate) fn read_plan(given: Option<&str>) -> anyhow::Result<StepPlan> {
    let (text, from) = match given {
        Some(t) => (t.to_string(), "--plan"),
        None => (
            std::env::var(PLAN_ENV)
                .map_err(|_| coded(exit::USAGE, format!("{PLAN_ENV} is not set")))?,
            PLAN_ENV,
        ),
    };
    let plan: StepPlan = serde_json::from_str(&text)
        .map_err(|e| coded(exit::USAGE, format!("{from} is not a step plan: {e}")))?;
    plan.check().map_err(|e| coded(exit::USAGE, e))?;
    Ok(plan)
}

fn open_store(plan: &StepPlan, cache: &Path) -> anyhow::Result<ArtifactStore> {
    let location = Location::parse(&plan.artifacts)
        .map_err(|e| coded(exit::USAGE, format!("the plan's artifact store: {e}")))?;
    ArtifactStore::open(&location, cache)
        .with_context(|| format!("opening the artifact store {}", plan.artifacts))
}

/// `gantry step-fetch` (and `step-exec --fetch`, with its `--plan`); `place_binary`: leave a
/// copy of this binary and the CA bundle in `/gantry/bin` for a wrapper in another container.
pub async fn fetch(paths: &Paths, given: Option<&str>, place_binary: bool) -> anyhow::Result<u8> {
    let plan = read_plan(given)?;
    let work = &paths.work;
    // The download cache sits on the same volume as the inputs, so each input is renamed into
    // place rather than copied; it is removed before the step starts.
    let cache = work.join(".fetch");
    let inputs = work.join("inputs");
    let outputs = work.join("outputs");
    for d in [&inputs, &outputs, &cache] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // Without inputs (a workflow engine's init container that only places the binary) no
    // store is opened, so it needs no credentials.
    let store = if plan.inputs.is_empty() {
        None
    } else {
        Some(open_store(&plan, &cache)?)
    };
    for input in plan.inputs.iter().filter(|_| store.is_some()) {
        let Some(store) = store.as_ref() else { break };
        let dest = inputs.join(&input.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let fetched = store
            .materialize(&input.digest)
            .await
            .map_err(|e| anyhow::anyhow!("input {} ({}): {e}", input.path, input.digest))?;
        std::fs::rename(&fetched, &dest)
            .with_context(|| format!("placing input {} at {}", input.path, dest.display()))?;
    }
    let _ = std::fs::remove_dir_all(&cache);
    let params = serde_json::to_vec_pretty(&plan.params)?;
    std::fs::write(work.join("params.json"), params).context("writing params.json")?;
    if place_binary {
        place_wrapper(work)?;
    }
    eprintln!(
        "gantry: fetched {} input(s) from {}",
        plan.inputs.len(),
        plan.artifacts
    );
    Ok(exit::OK)
}

/// The CA bundle's name beside the wrapper's binary.
pub const CA_FILE: &str = "ca-certificates.crt";

/// The CA bundle this process uses: `SSL_CERT_FILE`, else Debian's path.
fn ca_bundle_source() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/etc/ssl/certs/ca-certificates.crt")])
        .find(|p| p.is_file())
}

/// For `step-exec`, called while the process has one thread: when the step's image has no CA
/// bundle the wrapper uses the one `step-fetch` left beside its binary. Returns the variable
/// it set, which the step's own environment does not get.
#[allow(unsafe_code)]
pub fn use_fetched_ca_bundle() -> Option<&'static str> {
    if std::env::var_os("SSL_CERT_FILE").is_some() || ca_bundle_source().is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let bundle = exe.parent()?.join(CA_FILE);
    if !bundle.is_file() {
        return None;
    }
    // SAFETY: main calls this before the async runtime starts, while no other thread exists
    // that could read the environment concurrently.
    unsafe { std::env::set_var("SSL_CERT_FILE", &bundle) };
    Some("SSL_CERT_FILE")
}

/// Copies this (static) binary and the CA bundle to `work/bin` for the step container.
fn place_wrapper(work: &Path) -> anyhow::Result<()> {
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let exe = std::env::current_exe().context("finding this binary")?;
    let target = bin.join("gantry");
    if std::fs::symlink_metadata(&target).is_err() {
        std::fs::copy(&exe, &target)
            .with_context(|| format!("copying {} to {}", exe.display(), target.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    }
    // The CA bundle goes with it: the step's image may have none, and the wrapper talks
    // HTTPS to the store.
    let ca = bin.join(CA_FILE);
    if let Some(bundle) = ca_bundle_source()
        && std::fs::symlink_metadata(&ca).is_err()
    {
        std::fs::copy(&bundle, &ca).with_context(|| format!("copying {}", bundle.display()))?;
    }
    Ok(())
}

/// What `step-exec` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub digests_dir: Option<PathBuf>,
    /// `(output, file)`: that output's digest written to that file.
    pub digest_files: Vec<(String, PathBuf)>,
    /// The plan as JSON (else [`PLAN_ENV`]).
    pub plan: Option<String>,
    /// Fetch the inputs first, as `step-fetch` would.
    pub fetch: bool,
    /// Set for the command.
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
}

/// How the command ended.
#[derive(Clone, Copy, Debug, Default)]
struct Ended {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stopped: bool,
}

/// The environment the step's command gets: ours without the artifact store's credentials
/// and the plan.
fn child_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let ours = SET_FOR_US.get().copied().flatten();
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            !(k.starts_with("AWS_")
                || Some(k.as_str()) == ours
                || k == PLAN_ENV
                || k == "GANTRY_ARTIFACTS"
                || k.starts_with("GANTRY_STEP_"))
        })
        .collect();
    // The step's position is for the wrapper's report only.
    env.extend(
        extra
            .iter()
            .filter(|(k, _)| k != gantry_kube::exported::SEQ_ENV)
            .cloned(),
    );
    env
}

/// What [`use_fetched_ca_bundle`] set, kept out of the step's environment.
pub static SET_FOR_US: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();

/// `gantry step-exec`.
pub async fn exec(paths: &Paths, opts: ExecOptions) -> anyhow::Result<u8> {
    let plan = read_plan(opts.plan.as_deref())?;
    if opts.argv.is_empty() {
        return Err(coded(exit::USAGE, "step-exec needs a command after --"));
    }
    let started_at_ms = now_ms();
    let reporter = crate::step_report::Reporter::new(&plan, &opts.env, &opts.argv);
    if reporter.is_none()
        && let Some(effect) = plan.report.as_ref().and_then(|r| r.effect.as_deref())
    {
        // Said why above: registering or deploying happens on the server, or not at all.
        return Err(coded(
            exit::RUN_FAILED,
            format!("a `{effect}` step acts through the Gantry server, which it cannot report to"),
        ));
    }
    if let Some(r) = &reporter {
        let cache = std::env::temp_dir().join("gantry-upload-cache");
        match open_store(&plan, &cache) {
            Ok(store) => {
                if let Some(hit) = r.lookup(&plan, &store).await {
                    return reuse(paths, &plan, &opts, r, hit, started_at_ms).await;
                }
            }
            Err(e) => eprintln!("gantry: no cache lookup: {e:#}"),
        }
    }
    if opts.fetch {
        fetch(paths, opts.plan.as_deref(), false).await?;
    }
    // The command runs as the same user: without this it could read our environment (the
    // credentials) from /proc/1/environ or attach to us.
    let _ = nix::sys::prctl::set_dumpable(false);
    let cgroup = CgroupProbe::open();
    let oom_before = cgroup.oom_kills();
    let started = Instant::now();
    let ended = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || supervise(&opts))
            .await
            .context("the supervising thread")??
    };
    let wall = started.elapsed();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok();
    let cpu_micros = usage
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                (tv.tv_sec() as u64) * 1_000_000 + tv.tv_usec() as u64
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0);
    let peak = cgroup
        .peak_memory()
        .or_else(|| usage.map(|u| (u.max_rss() as u64) * 1024))
        .unwrap_or(0);
    let oom = cgroup
        .oom_kills()
        .zip(oom_before)
        .is_some_and(|(a, b)| a > b);
    let mut report = StepReport {
        v: VERSION,
        exit_code: ended.code,
        signal: ended.signal,
        oom_killed: oom,
        timed_out: ended.timed_out,
        stopped: ended.stopped,
        peak_memory_bytes: peak,
        cpu_micros,
        wall_ms: wall.as_millis() as u64,
        ..Default::default()
    };
    // Outputs count only when the command succeeded (as on one machine).
    if ended.code == Some(0)
        && !ended.stopped
        && let Err(e) = upload(paths, &plan, &opts, &mut report).await
    {
        report.error = Some(format!("{e:#}"));
    }
    let message = match report.message() {
        Some(m) => m,
        None => match store_report(&plan, &report).await {
            Ok(digest) => report.pointer(&digest).message().unwrap_or_default(),
            Err(e) => {
                let mut short = report.pointer("");
                short.more = None;
                short.error = Some(format!(
                    "the report did not fit and could not be stored: {e:#}"
                ));
                short.message().unwrap_or_default()
            }
        },
    };
    if let Err(e) = std::fs::write(&paths.termination_log, &message) {
        eprintln!(
            "gantry: cannot write the report to {}: {e}",
            paths.termination_log.display()
        );
    }
    if let Some(e) = &report.error {
        eprintln!("gantry: {e}");
    }
    let effect_failed = match &reporter {
        Some(r) => r.send(&plan, done(&report, &opts, started_at_ms)).await,
        None => None,
    };
    if report.error.is_some() && ended.code == Some(0) {
        return Ok(exit::RUN_FAILED);
    }
    if let Some(e) = effect_failed
        && ended.code == Some(0)
    {
        eprintln!("gantry: {e}");
        return Ok(exit::RUN_FAILED);
    }
    Ok(match (ended.code, ended.signal) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        _ => exit::RUN_FAILED,
    })
}

/// The attempt as the server records it: the engine's status and reason for the same ending.
fn done(report: &StepReport, opts: &ExecOptions, started_at_ms: i64) -> step_report::Done {
    use gantry_kube::exported::ExportedStatus;
    use gantry_store::StepStatus;
    let outcome = gantry_runtime::StepOutcome {
        exit_code: report.exit_code,
        signal: report.signal,
        termination: report.termination(),
        pids_limit_hit: report.pids_limit_hit,
        usage: gantry_runtime::Usage::default(),
        artifacts: None,
    };
    let (status, reason) = match gantry_engine::classify(&outcome, opts.timeout) {
        // Outputs that did not reach the store fail the step, as on the cluster.
        (StepStatus::Succeeded, _) => match &report.error {
            None => (ExportedStatus::Succeeded, None),
            Some(e) => (ExportedStatus::Failed, Some(e.clone())),
        },
        (StepStatus::Cancelled, r) => (ExportedStatus::Cancelled, r),
        (_, r) => (ExportedStatus::Failed, r),
    };
    let succeeded = status == ExportedStatus::Succeeded;
    step_report::Done {
        status,
        exit_code: report.exit_code,
        reason,
        cached_from: None,
        started_at_ms,
        finished_at_ms: now_ms(),
        peak_memory_bytes: report.peak_memory_bytes,
        cpu_micros: report.cpu_micros,
        wall_ms: report.wall_ms,
        outputs: if succeeded {
            report.outputs.clone()
        } else {
            BTreeMap::new()
        },
        metrics: report.metrics.clone().filter(|_| succeeded),
    }
}

/// A cache hit: the command does not run; the orchestrator gets the stored outputs' digests
/// and the step's termination message says where they came from.
async fn reuse(
    paths: &Paths,
    plan: &StepPlan,
    opts: &ExecOptions,
    reporter: &step_report::Reporter,
    hit: gantry_kube::exported::CacheHit,
    started_at_ms: i64,
) -> anyhow::Result<u8> {
    eprintln!(
        "gantry: cache hit: reusing the outputs of step run {} (run {}); the command does not run",
        hit.step_run, hit.run
    );
    let outputs: BTreeMap<String, String> = plan
        .outputs
        .iter()
        .filter_map(|o| hit.outputs.get(o).map(|d| (o.clone(), d.clone())))
        .collect();
    write_digests(plan, opts, &outputs)?;
    let report = StepReport {
        v: VERSION,
        exit_code: Some(0),
        outputs: outputs.clone(),
        ..Default::default()
    };
    if let Some(m) = report.message()
        && let Err(e) = std::fs::write(&paths.termination_log, m)
    {
        eprintln!(
            "gantry: cannot write the report to {}: {e}",
            paths.termination_log.display()
        );
    }
    let now = now_ms();
    // A cached step reuses a result: like the engine, the server does not act on it again.
    let _ = reporter
        .send(
            plan,
            step_report::Done {
                status: gantry_kube::exported::ExportedStatus::Cached,
                exit_code: Some(0),
                reason: None,
                cached_from: Some(hit.step_run),
                started_at_ms,
                finished_at_ms: now,
                peak_memory_bytes: 0,
                cpu_micros: 0,
                wall_ms: 0,
                outputs,
                metrics: None,
            },
        )
        .await;
    Ok(exit::OK)
}

async fn upload(
    paths: &Paths,
    plan: &StepPlan,
    opts: &ExecOptions,
    report: &mut StepReport,
) -> anyhow::Result<()> {
    let cache = std::env::temp_dir().join("gantry-upload-cache");
    let store = open_store(plan, &cache)?;
    let outputs = paths.work.join("outputs");
    for name in &plan.outputs {
        let path = outputs.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let info = store
            .put_path(&path)
            .await
            .map_err(|e| anyhow::anyhow!("uploading output {name}: {e}"))?;
        report.outputs.insert(name.clone(), info.digest);
    }
    let metrics = paths.work.join("metrics.json");
    if std::fs::symlink_metadata(&metrics).is_ok_and(|m| m.is_file()) {
        let info = store
            .put_path(&metrics)
            .await
            .map_err(|e| anyhow::anyhow!("uploading metrics.json: {e}"))?;
        report.metrics = Some(info.digest);
    }
    write_digests(plan, opts, &report.outputs)
}

/// Each output's digest where the orchestrator reads it (`--digest-file`, `--digests-dir`);
/// an output the step did not write gets an empty file.
fn write_digests(
    plan: &StepPlan,
    opts: &ExecOptions,
    outputs: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for (name, file) in &opts.digest_files {
        let digest = outputs.get(name).map(String::as_str).unwrap_or("");
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(file, digest).with_context(|| format!("writing {}", file.display()))?;
    }
    if let Some(dir) = &opts.digests_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for name in &plan.outputs {
            let digest = outputs.get(name).map(String::as_str).unwrap_or("");
            std::fs::write(dir.join(name), digest)
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
        }
    }
    Ok(())
}

async fn store_report(plan: &StepPlan, report: &StepReport) -> anyhow::Result<String> {
    let cache = std::env::temp_dir().join("gantry-upload-cache");
    let store = open_store(plan, &cache)?;
    let file = std::env::temp_dir().join("gantry-step-report.json");
    std::fs::write(&file, serde_json::to_vec(report)?)?;
    let info = store.put_path(&file).await?;
    let _ = std::fs::remove_file(&file);
    Ok(info.digest)
}

/// The signals `step-exec` forwards (and SIGCHLD, which wakes it), blocked in every thread
/// so that none is delivered anywhere but to its `sigtimedwait`.
pub fn forwarded_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Call on the main thread before any other thread starts (they inherit the mask).
pub fn block_forwarded_signals() {
    if let Err(e) = forwarded_signals().thread_block() {
        eprintln!("gantry: cannot block signals for forwarding: {e}");
    }
}

/// Runs the command as PID 1 would: its own process group, signals forwarded, every child
/// reaped, the timeout enforced. Blocking; runs on its own thread.
fn supervise(opts: &ExecOptions) -> anyhow::Result<Ended> {
    use nix::sys::signal::{Signal, killpg};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use nix::unistd::Pid;
    use std::os::unix::process::CommandExt;

    // Signals we forward are blocked here and read with sigtimedwait, so none is lost between
    // the spawn and the wait; the child gets a clean mask.
    let forwarded = forwarded_signals();
    forwarded
        .thread_block()
        .context("blocking signals for forwarding")?;
    let mut cmd = std::process::Command::new(&opts.argv[0]);
    cmd.args(&opts.argv[1..])
        .env_clear()
        .envs(child_env(&opts.env))
        .process_group(0);
    clear_signal_mask_in_child(&mut cmd);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gantry: cannot run {}: {e}", opts.argv[0]);
            // 127: not found, 126: not executable, as a shell says.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(Ended {
                code: Some(code),
                ..Default::default()
            });
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    drop(child);
    let started = Instant::now();
    let mut ended = Ended::default();
    let mut kill_at: Option<Instant> = None;
    let mut done = false;
    while !done {
        // Reap everything that has ended (our command and any orphan that was re-parented).
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => {
                    ended.code = Some(code);
                    done = true;
                }
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                    ended.signal = Some(sig as i32);
                    done = true;
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if done {
            break;
        }
        let now = Instant::now();
        if let Some(t) = opts.timeout
            && !ended.timed_out
            && !ended.stopped
            && now >= started + t
        {
            ended.timed_out = true;
            let _ = killpg(pid, Signal::SIGTERM);
            kill_at = Some(now + opts.grace);
        }
        if kill_at.is_some_and(|k| now >= k) {
            let _ = killpg(pid, Signal::SIGKILL);
            kill_at = None;
        }
        let wait = Duration::from_millis(200);
        let ts = nix::sys::time::TimeSpec::from_duration(wait);
        if let Ok(sig) = sigtimedwait(&forwarded, &ts)
            && sig != Signal::SIGCHLD
        {
            if matches!(sig, Signal::SIGTERM | Signal::SIGINT) && !ended.timed_out {
                ended.stopped = true;
            }
            let _ = killpg(pid, sig);
        }
    }
    // The command is gone: stop what it left behind in its group, and reap it.
    let _ = killpg(pid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(ended)
}

/// The command must not inherit the mask that keeps our forwarded signals for `sigtimedwait`
/// (std leaves the mask as it is).
#[allow(unsafe_code)]
fn clear_signal_mask_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // sigemptyset and sigprocmask, which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            if libc::sigemptyset(empty.as_mut_ptr()) != 0
                || libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `sigtimedwait(2)`: the next pending signal of `set`, or an error after `timeout`.
#[allow(unsafe_code)]
fn sigtimedwait(
    set: &nix::sys::signal::SigSet,
    timeout: &nix::sys::time::TimeSpec,
) -> nix::Result<nix::sys::signal::Signal> {
    let raw: &libc::sigset_t = set.as_ref();
    let ts: &libc::timespec = timeout.as_ref();
    // SAFETY: both pointers come from live references for the duration of the call, and a
    // null siginfo pointer is allowed.
    let n = unsafe { libc::sigtimedwait(raw, std::ptr::null_mut(), ts) };
    if n < 0 {
        return Err(nix::errno::Errno::last());
    }
    nix::sys::signal::Signal::try_from(n)
}

/// The container's own cgroup (cgroup v2 namespaced at `/sys/fs/cgroup`, or v1's memory
/// controller): peak memory and OOM kills.
struct CgroupProbe {
    root: PathBuf,
    v2: bool,
}

impl CgroupProbe {
    fn open() -> CgroupProbe {
        let root = PathBuf::from(
            std::env::var_os("GANTRY_STEP_CGROUP").unwrap_or_else(|| "/sys/fs/cgroup".into()),
        );
        let v2 = root.join("cgroup.controllers").exists();
        CgroupProbe { root, v2 }
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(file)).ok()
    }

    /// The cgroup's peak, when this is the container's own cgroup: it has a memory limit
    /// (a step always does), unlike the machine's root cgroup a process outside a container
    /// would read here.
    fn peak_memory(&self) -> Option<u64> {
        let (peak, limit) = if self.v2 {
            (self.read("memory.peak")?, self.read("memory.max")?)
        } else {
            (
                self.read("memory/memory.max_usage_in_bytes")?,
                self.read("memory/memory.limit_in_bytes")?,
            )
        };
        let limit: u64 = limit.trim().parse().ok()?;
        // cgroup v1 spells "no limit" as a huge page-aligned number.
        if limit >= 1 << 62 {
            return None;
        }
        peak.trim().parse().ok()
    }

    fn oom_kills(&self) -> Option<u64> {
        if self.v2 {
            let events = self.read("memory.events")?;
            parse_counter(&events, "oom_kill")
        } else {
            let control = self.read("memory/memory.oom_control")?;
            parse_counter(&control, "oom_kill")
        }
    }
}

fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_counters_are_read_by_name() {
        let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n";
        assert_eq!(parse_counter(events, "oom_kill"), Some(2));
        assert_eq!(parse_counter(events, "oom"), Some(1));
        assert_eq!(parse_counter(events, "nope"), None);
    }
}
