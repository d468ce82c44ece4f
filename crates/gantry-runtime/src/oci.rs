//! [`OciRuntime`]: steps as OCI bundles run by the runtime CLI (`runc`).
//!
//! One `runc run --keep` per step: a single runtime process creates, starts and waits for the
//! container (create + start would cost a second runtime start-up per step), and `--keep`
//! leaves the stopped container's cgroup in place so its usage counters can be read before we
//! remove it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tokio::process::{Child, Command};
use tokio::sync::mpsc::Sender;

use crate::bundle::{OWNER_FILE, Owner, RUNTIME_LOG_FILE, remove_bundle, write_bundle};
use crate::cgroup::{CgroupLayout, remove_cgroup_dirs};
use crate::host::{HostFacts, PrivilegeMode, PrivilegeProbe, decide_privileges};
use crate::init::install_init;
use crate::log_stream::pump;
use crate::spec::{
    DEFAULT_CGROUP_PARENT, build_spec_with_cgroup_parent, valid_cgroup_parent, validate_id,
};
use crate::{
    LogBlock, LogStream, Runtime, RuntimeError, StepOutcome, StepRequest, Termination, Usage,
};

/// Where and how [`OciRuntime`] keeps its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRuntimeConfig {
    /// The OCI runtime CLI: `runc` (default), or `crun`, `youki`, `runsc`; a bare name is looked
    /// up on PATH (and the sbin directories, where Debian puts runc).
    pub binary: PathBuf,
    /// The runtime's own state directory (`runc --root`); containers listed there belong to
    /// gantry.
    pub state_dir: PathBuf,
    /// Where bundles (`<id>/config.json` and the owner record) are written.
    pub bundles_dir: PathBuf,
    /// Containers' cgroups are `/<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
}

impl Default for OciRuntimeConfig {
    fn default() -> Self {
        OciRuntimeConfig {
            binary: PathBuf::from("runc"),
            state_dir: PathBuf::from("/run/gantry/runc"),
            bundles_dir: PathBuf::from("/run/gantry/bundles"),
            cgroup_parent: DEFAULT_CGROUP_PARENT.to_owned(),
        }
    }
}

/// Runs steps with an OCI runtime CLI. See the crate docs.
#[derive(Debug)]
pub struct OciRuntime {
    binary: PathBuf,
    state_dir: PathBuf,
    bundles_dir: PathBuf,
    cgroup_parent: String,
    host: HostFacts,
    layout: CgroupLayout,
    owner: String,
    /// runc's state of a stopped container is just its state directory and cgroups, which we
    /// remove ourselves: that saves a second runtime start-up (~8 ms) per step. Other runtimes
    /// keep state elsewhere and get a real `delete`.
    fast_delete: bool,
}

/// How long a bundle without an owner record may be "being written" by another process.
const UNOWNED_BUNDLE_GRACE: Duration = Duration::from_secs(60);
/// After this long of `kill` not ending the container, the runtime process itself is killed.
const KILL_GIVE_UP: Duration = Duration::from_secs(10);

impl OciRuntime {
    /// Finds the runtime binary, checks that this process may run containers (root, or rootless
    /// with user namespaces and a delegated cgroup v2 subtree), and creates the state and bundle
    /// directories.
    pub fn new(cfg: OciRuntimeConfig) -> Result<OciRuntime, RuntimeError> {
        if !valid_cgroup_parent(&cfg.cgroup_parent) {
            return Err(RuntimeError::InvalidConfig {
                reason: format!(
                    "cgroup parent {:?} must be a relative cgroup path of [A-Za-z0-9_.-] names",
                    cfg.cgroup_parent
                ),
            });
        }
        let binary = find_binary(&cfg.binary)?;
        let mode = decide_privileges(&PrivilegeProbe::detect())?;
        let mut host = HostFacts::detect();
        host.rootless = matches!(mode, PrivilegeMode::Rootless { .. });
        let layout = CgroupLayout::detect().map_err(|source| RuntimeError::Io {
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
        let cgroup_parent = match &mode {
            PrivilegeMode::Root => cfg.cgroup_parent.clone(),
            PrivilegeMode::Rootless { delegated_cgroup } => {
                prepare_delegated_cgroup(delegated_cgroup, &cfg.cgroup_parent)?
            }
        };
        let prepare_dir = |dir: &PathBuf| {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .and_then(|()| fs::canonicalize(dir))
                .map_err(|source| RuntimeError::Io {
                    path: dir.clone(),
                    source,
                })
        };
        let state_dir = prepare_dir(&cfg.state_dir)?;
        let bundles_dir = prepare_dir(&cfg.bundles_dir)?;
        // `@` is never part of a container id, so no bundle or reap ever touches this directory.
        let init_dir = bundles_dir.join("@init");
        host.init = Some(install_init(&init_dir).map_err(|source| RuntimeError::Io {
            path: init_dir,
            source,
        })?);
        let owner = Owner::current()
            .map_err(|source| RuntimeError::Io {
                path: "/proc/self/stat".into(),
                source,
            })?
            .render();
        let fast_delete = binary.file_name().is_some_and(|n| n == "runc");
        Ok(OciRuntime {
            binary,
            state_dir,
            bundles_dir,
            cgroup_parent,
            host,
            layout,
            owner,
            fast_delete,
        })
    }

    /// What was detected about the host (and is used for every `config.json`).
    pub fn host_facts(&self) -> &HostFacts {
        &self.host
    }

    /// The runtime binary in use, as an absolute path.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The cgroup under which containers are created (below each hierarchy's root).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.state_dir);
        if self.host.rootless {
            cmd.arg("--rootless").arg("true");
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a short runtime subcommand, capturing its output.
    async fn runtime_output(&self, args: &[&str]) -> Result<std::process::Output, RuntimeError> {
        self.command()
            .args(args)
            .output()
            .await
            .map_err(|source| RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            })
    }

    fn cgroup_rel(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    fn leftovers(&self, id: &str, bundle: &Path) -> Leftovers {
        Leftovers {
            binary: self.binary.clone(),
            state_dir: self.state_dir.clone(),
            rootless: self.host.rootless,
            id: id.to_owned(),
            cgroup_dirs: self.layout.container_dirs(&self.cgroup_rel(id)),
            bundle: bundle.to_path_buf(),
        }
    }

    async fn run_step(
        &self,
        mut req: StepRequest,
        logs: Sender<LogBlock>,
    ) -> Result<StepOutcome, RuntimeError> {
        validate_id(&req.id)?;
        if req.cancel.is_cancelled() {
            return Ok(StepOutcome {
                exit_code: None,
                signal: None,
                termination: Termination::Cancelled,
                pids_limit_hit: false,
                usage: Usage::default(),
                artifacts: None,
            });
        }
        let id = req.id.clone();
        req.rootfs = fs::canonicalize(&req.rootfs).map_err(|e| RuntimeError::InvalidRequest {
            id: id.clone(),
            reason: format!("rootfs {} cannot be used: {e}", req.rootfs.display()),
        })?;
        check_rootfs_paths(&req)?;
        let spec = build_spec_with_cgroup_parent(&req, &self.host, &self.cgroup_parent)?;
        let config = serde_json::to_vec_pretty(&spec).map_err(|e| RuntimeError::Spec {
            id: id.clone(),
            source: e.into(),
        })?;
        let bundle = self.bundles_dir.join(&id);
        write_bundle(&bundle, &id, &self.owner, &config)?;
        // From here on, every way out of this function (including the future being dropped)
        // removes the container, its cgroups and the bundle.
        let mut guard = StepGuard {
            leftovers: Some(self.leftovers(&id, &bundle)),
            runtime: None,
        };

        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(bundle.join(RUNTIME_LOG_FILE))
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg("--keep")
            .arg(&id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Keep a terminal's Ctrl-C away from the step: the engine decides, via `cancel`.
            .process_group(0);
        let started = Instant::now();
        let child = guard
            .runtime
            .insert(cmd.spawn().map_err(|source| RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            })?);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let waiter = async {
            let timer = async {
                match req.timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                status = child.wait() => Ok(status),
                () = timer => Err(Termination::TimedOut),
                () = req.cancel.cancelled() => Err(Termination::Cancelled),
            };
            match first {
                Ok(status) => (status, None, false, Instant::now()),
                Err(reason) => {
                    let (status, runtime_killed) =
                        self.stop_until_exit(&id, child, req.stop_grace).await;
                    (status, Some(reason), runtime_killed, Instant::now())
                }
            }
        };
        let out_logs = logs.clone();
        let out_pump = async move {
            if let Some(out) = stdout {
                pump(out, LogStream::Stdout, out_logs).await;
            }
        };
        let err_pump = async move {
            if let Some(err) = stderr {
                pump(err, LogStream::Stderr, logs).await;
            }
        };
        let ((status, killed_for, runtime_killed, ended), (), ()) =
            tokio::join!(waiter, out_pump, err_pump);
        let status = status.map_err(|source| RuntimeError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;

        let stats = self.layout.read_stats(&self.cgroup_rel(&id));
        let start_errors = if killed_for.is_none() && !status.success() {
            runtime_errors(&bundle.join(RUNTIME_LOG_FILE))
        } else {
            Vec::new()
        };
        let stopped = !runtime_killed && status.code().is_some();
        // The guard stays armed until removal is done, in case the future is dropped meanwhile.
        if let Some(leftovers) = guard.leftovers.clone() {
            self.remove(leftovers, stopped).await;
        }
        guard.leftovers = None;
        if !start_errors.is_empty() {
            return Err(RuntimeError::StartFailed {
                binary: self.binary.clone(),
                id,
                stderr: start_errors.join("; "),
            });
        }
        let (exit_code, signal, termination) = classify(status, killed_for, stats.oom_kills);
        Ok(StepOutcome {
            exit_code,
            signal,
            termination,
            pids_limit_hit: stats.pids_max_events > 0,
            usage: Usage {
                peak_memory_bytes: stats.peak_memory_bytes,
                cpu_micros: stats.cpu_micros,
                wall_ms: u64::try_from(ended.duration_since(started).as_millis())
                    .unwrap_or(u64::MAX),
            },
            artifacts: None,
        })
    }

    /// SIGTERM to the container's init (which forwards it to the step's command), then, if the
    /// container still runs `grace` later, [`kill_until_exit`](Self::kill_until_exit).
    async fn stop_until_exit(
        &self,
        id: &str,
        child: &mut Child,
        grace: Duration,
    ) -> (io::Result<ExitStatus>, bool) {
        let deadline = Instant::now() + grace;
        let mut signalled = false;
        while Instant::now() < deadline {
            // `kill` fails while the runtime is still creating the container: try again.
            if !signalled {
                signalled = self
                    .runtime_output(&["kill", id, "TERM"])
                    .await
                    .is_ok_and(|o| o.status.success());
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            if let Ok(status) = tokio::time::timeout(wait, child.wait()).await {
                return (status, false);
            }
        }
        self.kill_until_exit(id, child).await
    }

    /// `kill` fails while the runtime is still creating the container, so it is repeated until
    /// the runtime process reports the end; a runtime that never does is killed itself (its
    /// container is then removed with `delete --force`). Returns whether that happened.
    async fn kill_until_exit(&self, id: &str, child: &mut Child) -> (io::Result<ExitStatus>, bool) {
        let give_up = Instant::now() + KILL_GIVE_UP;
        loop {
            let _ = self.runtime_output(&["kill", id, "KILL"]).await;
            match tokio::time::timeout(Duration::from_millis(100), child.wait()).await {
                Ok(status) => return (status, false),
                Err(_) if Instant::now() < give_up => continue,
                Err(_) => {
                    let _ = child.start_kill();
                    let status = child.wait().await;
                    // Orphaned container processes would keep the log pipes open forever.
                    let _ = self.runtime_output(&["delete", "--force", id]).await;
                    return (status, true);
                }
            }
        }
    }

    /// Removes a container with its cgroups, state and bundle. `stopped`: the runtime reported
    /// the container's exit, so nothing in it runs any more.
    async fn remove(&self, leftovers: Leftovers, stopped: bool) {
        if !(stopped && self.fast_delete) {
            let _ = self
                .runtime_output(&["delete", "--force", &leftovers.id])
                .await;
        }
        let id = leftovers.id.clone();
        // If the task is cancelled while the blocking removal runs, that removal still finishes.
        let done = tokio::task::spawn_blocking(move || leftovers.remove_files()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(container = %id, error = %e, "container cleanup incomplete")
            }
            Err(e) => tracing::warn!(container = %id, error = %e, "container cleanup task failed"),
        }
    }

    async fn reap(&self) -> Result<usize, RuntimeError> {
        let mut dead: BTreeSet<String> = BTreeSet::new();
        let entries = fs::read_dir(&self.bundles_dir).map_err(|source| RuntimeError::Io {
            path: self.bundles_dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if validate_id(&id).is_err() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let owner = fs::read_to_string(entry.path().join(OWNER_FILE))
                .ok()
                .and_then(|t| Owner::parse(&t));
            let reap = match owner {
                Some(owner) => !owner.is_alive(),
                None => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > UNOWNED_BUNDLE_GRACE),
            };
            if reap {
                dead.insert(id);
            }
        }
        // A container in our state directory whose bundle is gone has lost its owner record;
        // the bundle is written before and removed after the container, so no live owner exists.
        let listed = self.runtime_output(&["list", "--format", "json"]).await?;
        if !listed.status.success() {
            return Err(RuntimeError::Command {
                binary: self.binary.clone(),
                args: format!("--root {} list --format json", self.state_dir.display()),
                stderr: String::from_utf8_lossy(&listed.stderr).trim().to_owned(),
            });
        }
        for container in parse_list(&listed.stdout) {
            let ours = container.bundle.starts_with(&self.bundles_dir);
            if ours
                && validate_id(&container.id).is_ok()
                && !self.bundles_dir.join(&container.id).exists()
            {
                dead.insert(container.id);
            }
        }
        for id in &dead {
            tracing::info!(container = %id, "reaping container left by a gantry process that is gone");
            let bundle = self.bundles_dir.join(id);
            self.remove(self.leftovers(id, &bundle), false).await;
        }
        Ok(dead.len())
    }
}

impl Runtime for OciRuntime {
    fn name(&self) -> &'static str {
        "oci"
    }

    fn run(
        &self,
        req: StepRequest,
        logs: Sender<LogBlock>,
    ) -> impl Future<Output = Result<StepOutcome, RuntimeError>> + Send {
        self.run_step(req, logs)
    }

    fn reap_leftovers(&self) -> impl Future<Output = Result<usize, RuntimeError>> + Send {
        self.reap()
    }
}

/// Everything a container leaves on the host.
#[derive(Clone, Debug)]
struct Leftovers {
    binary: PathBuf,
    state_dir: PathBuf,
    rootless: bool,
    id: String,
    cgroup_dirs: Vec<PathBuf>,
    bundle: PathBuf,
}

impl Leftovers {
    /// Blocking: cgroups (killing stragglers), the runtime's state directory, then the bundle —
    /// last, because the bundle's owner record is what lets a later reap find anything else.
    fn remove_files(&self) -> io::Result<()> {
        remove_cgroup_dirs(&self.cgroup_dirs).map_err(|(dir, e)| {
            io::Error::new(
                e.kind(),
                format!("cannot remove cgroup {}: {e}", dir.display()),
            )
        })?;
        match fs::remove_dir_all(self.state_dir.join(&self.id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        remove_bundle(&self.bundle)
    }

    /// Blocking, for `Drop`: a forced delete (the container may still run), then the files.
    fn remove_now(&self) {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("--root").arg(&self.state_dir);
        if self.rootless {
            cmd.arg("--rootless").arg("true");
        }
        let _ = cmd
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = self.remove_files() {
            tracing::warn!(container = %self.id, error = %e, "container cleanup incomplete");
        }
    }
}

/// Removes the container synchronously if the step's future is dropped before it could. It
/// owns the runtime process so that process is still unreaped (its pid cannot be reused) when
/// `drop` kills it.
struct StepGuard {
    leftovers: Option<Leftovers>,
    runtime: Option<Child>,
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        let Some(leftovers) = self.leftovers.take() else {
            return;
        };
        let runtime_pid = self
            .runtime
            .as_ref()
            .and_then(Child::id)
            .and_then(|pid| i32::try_from(pid).ok());
        if let Some(pid) = runtime_pid {
            // A runtime still creating the container would recreate what we remove.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_until_dead(pid);
        }
        leftovers.remove_now();
    }
}

/// Waits (briefly, blocking) until `pid` is a zombie or gone.
fn wait_until_dead(pid: i32) {
    for _ in 0..500 {
        let state = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, after_comm) = stat.rsplit_once(')')?;
                after_comm.split_whitespace().next().map(str::to_owned)
            });
        match state.as_deref() {
            None | Some("Z" | "X") => return,
            Some(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// runc creates a missing mount point or working directory inside the rootfs before it makes it
/// read-only: for a rootfs shared by every container of an image that would be a write into the
/// image. So each must already exist, or lie below a mount (like `/gantry/inputs/x` below the
/// step's own `/gantry`).
fn check_rootfs_paths(req: &StepRequest) -> Result<(), RuntimeError> {
    let missing =
        |dest: &str| fs::symlink_metadata(req.rootfs.join(dest.trim_start_matches('/'))).is_err();
    let invalid = |reason: String| RuntimeError::InvalidRequest {
        id: req.id.clone(),
        reason,
    };
    for fixed in ["/proc", "/dev", "/sys", "/tmp"] {
        if missing(fixed) {
            return Err(invalid(format!(
                "the image rootfs {} lacks {fixed}; image rootfs directories must contain proc, dev, sys and tmp",
                req.rootfs.display()
            )));
        }
    }
    for m in &req.mounts {
        let below_another = req.mounts.iter().any(|other| {
            other.destination != m.destination
                && Path::new(&m.destination).starts_with(&other.destination)
        });
        if !below_another && missing(&m.destination) {
            return Err(invalid(format!(
                "mount destination {} does not exist in the image rootfs {}; the rootfs is shared and read-only, so a mount point must exist in it or lie below another mount",
                m.destination,
                req.rootfs.display()
            )));
        }
    }
    let below_a_mount = |path: &str| {
        req.mounts
            .iter()
            .any(|m| Path::new(path).starts_with(&m.destination))
    };
    if !below_a_mount(&req.cwd) && missing(&req.cwd) {
        return Err(invalid(format!(
            "working directory {} does not exist in the image rootfs {}",
            req.cwd,
            req.rootfs.display()
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    // runc gives the /tmp tmpfs the mode of the rootfs's /tmp directory.
    if let Ok(meta) = fs::metadata(req.rootfs.join("tmp"))
        && meta.permissions().mode() & 0o7777 != 0o1777
    {
        tracing::warn!(
            rootfs = %req.rootfs.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o7777),
            "the image's /tmp is not mode 1777, so /tmp will not be writable by the step's user"
        );
    }
    Ok(())
}

/// Maps the runtime's exit status to the step's. runc exits with the container's status, or
/// 128+N when signal N killed it.
pub(crate) fn classify(
    status: ExitStatus,
    killed_for: Option<Termination>,
    oom_kills: u64,
) -> (Option<i32>, Option<i32>, Termination) {
    let (exit_code, signal) = match (status.code(), status.signal()) {
        (Some(code), _) if (129..=128 + 64).contains(&code) => (None, Some(code - 128)),
        (Some(code), _) => (Some(code), None),
        (None, signal) => (None, signal),
    };
    let termination = match killed_for {
        Some(reason) => reason,
        None if oom_kills > 0 && (signal == Some(libc::SIGKILL) || exit_code.unwrap_or(0) != 0) => {
            Termination::OomKilled
        }
        None if signal.is_some() => Termination::Signaled,
        None => Termination::Exited,
    };
    (exit_code, signal, termination)
}

/// The error messages runc wrote to its JSON log (a failure to create or start the container,
/// as opposed to the container's own non-zero exit).
fn runtime_errors(log: &Path) -> Vec<String> {
    let text = fs::read_to_string(log).unwrap_or_default();
    parse_runtime_errors(&text)
}

pub(crate) fn parse_runtime_errors(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| matches!(entry["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|entry| entry["msg"].as_str().map(str::to_owned))
        .collect()
}

#[derive(Debug, serde::Deserialize)]
struct ListedContainer {
    id: String,
    #[serde(default)]
    bundle: PathBuf,
}

/// `runc list --format json` prints `null` when there are no containers.
fn parse_list(json: &[u8]) -> Vec<ListedContainer> {
    serde_json::from_slice::<Option<Vec<ListedContainer>>>(json)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn find_binary(binary: &Path) -> Result<PathBuf, RuntimeError> {
    let missing = || RuntimeError::RuntimeMissing {
        binary: binary.to_path_buf(),
    };
    let executable = |p: &Path| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
            && fs::metadata(p).is_ok_and(|m| m.is_file())
    };
    if binary.components().count() > 1 || binary.is_absolute() {
        return if executable(binary) {
            fs::canonicalize(binary).map_err(|_| missing())
        } else {
            Err(missing())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(binary))
        .find(|candidate| executable(candidate))
        .ok_or_else(missing)
}

/// cgroup v2 forbids processes in a cgroup that hands controllers to its children, so this
/// process moves into a leaf of its delegated subtree before enabling the cpu, memory and pids
/// controllers for the containers' parent.
fn prepare_delegated_cgroup(delegated: &str, parent: &str) -> Result<String, RuntimeError> {
    let base = Path::new("/sys/fs/cgroup").join(delegated);
    let io_error = |path: PathBuf| move |source| RuntimeError::Io { path, source };
    let leaf = base.join("gantry-supervisor");
    fs::create_dir_all(&leaf).map_err(io_error(leaf.clone()))?;
    fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
        .map_err(io_error(leaf.join("cgroup.procs")))?;
    let containers = base.join(parent);
    fs::create_dir_all(&containers).map_err(io_error(containers.clone()))?;
    for dir in [&base, &containers] {
        let control = dir.join("cgroup.subtree_control");
        fs::write(&control, "+cpu +memory +pids").map_err(io_error(control.clone()))?;
    }
    Ok(format!("{}/{parent}", delegated.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn exit_codes_and_signals_are_told_apart() {
        assert_eq!(
            classify(exited(0), None, 0),
            (Some(0), None, Termination::Exited)
        );
        assert_eq!(
            classify(exited(3), None, 0),
            (Some(3), None, Termination::Exited)
        );
        assert_eq!(
            classify(exited(128 + 15), None, 0),
            (None, Some(15), Termination::Signaled)
        );
        // The runtime process itself killed by a signal.
        assert_eq!(
            classify(ExitStatus::from_raw(9), None, 0),
            (None, Some(9), Termination::Signaled)
        );
        assert_eq!(
            classify(exited(255), None, 0),
            (Some(255), None, Termination::Exited)
        );
    }

    #[test]
    fn oom_kills_are_reported_only_when_the_step_failed() {
        assert_eq!(
            classify(exited(137), None, 1),
            (None, Some(9), Termination::OomKilled)
        );
        // A child was OOM-killed and the step failed because of it.
        assert_eq!(classify(exited(1), None, 2).2, Termination::OomKilled);
        // A child was OOM-killed but the step recovered.
        assert_eq!(classify(exited(0), None, 1).2, Termination::Exited);
    }

    #[test]
    fn our_own_kills_keep_their_reason() {
        assert_eq!(
            classify(exited(137), Some(Termination::TimedOut), 0),
            (None, Some(9), Termination::TimedOut)
        );
        assert_eq!(
            classify(exited(137), Some(Termination::Cancelled), 1).2,
            Termination::Cancelled
        );
    }

    #[test]
    fn runtime_errors_are_read_from_the_json_log() {
        let log = r#"{"level":"warning","msg":"cgroup v1 is deprecated","time":"t"}
{"level":"error","msg":"runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"t"}
not json
"#;
        assert_eq!(
            parse_runtime_errors(log),
            [
                "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
            ]
        );
        assert!(parse_runtime_errors("").is_empty());
    }

    #[test]
    fn container_lists_are_parsed() {
        assert!(parse_list(b"null\n").is_empty());
        assert!(parse_list(b"").is_empty());
        let listed = parse_list(
            br#"[{"ociVersion":"1.0.2-dev","id":"a","pid":12,"status":"running","bundle":"/b/a","rootfs":"/r","created":"2026-01-01T00:00:00Z","owner":"root"}]"#,
        );
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "a");
        assert_eq!(listed[0].bundle, Path::new("/b/a"));
    }

    #[test]
    fn bad_configs_are_refused_before_touching_the_host() {
        let err = OciRuntime::new(OciRuntimeConfig {
            cgroup_parent: "../escape".into(),
            ..OciRuntimeConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidConfig { .. }), "{err}");
        let err = OciRuntime::new(OciRuntimeConfig {
            binary: "no-such-runtime-xyz".into(),
            ..OciRuntimeConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, RuntimeError::RuntimeMissing { .. }), "{err}");
    }

    #[test]
    fn binaries_are_found_on_path_and_sbin() {
        assert!(find_binary(Path::new("sh")).unwrap().is_absolute());
        let err = find_binary(Path::new("no-such-runtime-xyz")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "oci runtime `no-such-runtime-xyz` was not found on PATH; install runc (Debian: `apt install runc`) or configure another runtime binary"
        );
        assert!(find_binary(Path::new("/nonexistent/runc")).is_err());
        // A directory is not a runtime.
        assert!(find_binary(Path::new("/tmp")).is_err());
    }
}
