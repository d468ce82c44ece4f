//! MLflow inside steps without opening the step's network.
//!
//! Under `gantry server`, each step gets `MLFLOW_TRACKING_URI=http://127.0.0.1:5000` and
//! `MLFLOW_RUN_ID` (a child run of the pipeline run's MLflow run). The step's network
//! namespace still has nothing but `lo`: once runc has created that namespace, and before
//! the step's process starts, an OCI `createRuntime` hook (`gantry hook netns-ready`)
//! passes the container's pid over a Unix socket; the engine then opens a listener on
//! 127.0.0.1:5000 *inside* the step's namespace (from a short-lived thread that joins it
//! with setns) and relays each connection to the server from the host side. The step can
//! reach the tracking API and nothing else.

use crate::now_ms;
use gantry_store::{KeyValue, NewTrackingRun, Store, TrackingRunUpdate};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio_util::sync::CancellationToken;

/// The port the relay listens on inside every step (MLflow's default).
pub const RELAY_PORT: u16 = 5000;

pub(crate) struct Relay {
    pub(crate) env: Vec<String>,
    pub(crate) hook: Option<Vec<String>>,
    child_run: String,
    store: Store,
    stop: CancellationToken,
}

impl Relay {
    /// Creates the step's child MLflow run and, for a step without network, the hook
    /// socket and the relay task.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn prepare(
        store: &Store,
        server: SocketAddr,
        exe: &Path,
        experiment_id: &str,
        parent_run: &str,
        run_id: &str,
        step: &str,
        step_dir: &Path,
        network: bool,
    ) -> Result<Relay, String> {
        let tags = vec![
            kv("mlflow.parentRunId", parent_run),
            kv(crate::GANTRY_RUN_TAG, run_id),
            kv("gantry.step", step),
        ];
        let child = store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: experiment_id.to_string(),
                    user_id: "gantry".into(),
                    run_name: Some(step.to_string()),
                    start_time: Some(now_ms()),
                    tags,
                },
                now_ms(),
            )
            .await
            .map_err(|e| format!("creating the step's MLflow run: {e}"))?;
        let child_run = child.info.run_id;
        let stop = CancellationToken::new();
        if network {
            // The step shares the host's network: it reaches the server directly.
            return Ok(Relay {
                env: vec![
                    format!("MLFLOW_TRACKING_URI=http://{server}"),
                    format!("MLFLOW_RUN_ID={child_run}"),
                ],
                hook: None,
                child_run,
                store: store.clone(),
                stop,
            });
        }
        let socket = hook_socket(step_dir, &format!("relay-{run_id}-{step}"))?;
        let _ = tokio::fs::remove_file(&socket).await;
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("binding {}: {e}", socket.display()))?;
        tokio::spawn(serve_hook(listener, socket.clone(), server, stop.clone()));
        Ok(Relay {
            env: vec![
                format!("MLFLOW_TRACKING_URI=http://127.0.0.1:{RELAY_PORT}"),
                format!("MLFLOW_RUN_ID={child_run}"),
            ],
            hook: Some(vec![
                exe.to_string_lossy().into_owned(),
                "hook".into(),
                "netns-ready".into(),
                "--socket".into(),
                socket.to_string_lossy().into_owned(),
            ]),
            child_run,
            store: store.clone(),
            stop,
        })
    }

    /// Stops relaying and records the step's MLflow run as ended.
    pub(crate) async fn finish(self, succeeded: bool) {
        self.stop.cancel();
        let update = TrackingRunUpdate {
            status: Some(if succeeded { "FINISHED" } else { "FAILED" }.into()),
            end_time: Some(now_ms()),
            run_name: None,
        };
        if let Err(e) = self
            .store
            .update_tracking_run(&self.child_run, &update)
            .await
        {
            tracing::warn!("could not end MLflow run {}: {e}", self.child_run);
        }
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

/// Answers the one hook call of this step, then relays until `stop`.
async fn serve_hook(
    hooks: UnixListener,
    socket: PathBuf,
    server: SocketAddr,
    stop: CancellationToken,
) {
    let accepted = tokio::select! {
        accepted = hooks.accept() => Some(accepted),
        _ = stop.cancelled() => None,
    };
    // One call per step: the socket's name is not needed any more.
    let _ = tokio::fs::remove_file(&socket).await;
    let Some(accepted) = accepted else { return };
    let listener = {
        match accepted {
            Ok((conn, _)) => match answer_hook(conn).await {
                Some(l) => l,
                None => return,
            },
            Err(e) => {
                tracing::warn!("tracking relay: accepting the hook: {e}");
                return;
            }
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(server).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            _ = stop.cancelled() => return,
        }
    }
}

async fn answer_hook(conn: tokio::net::UnixStream) -> Option<TcpListener> {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await.ok()?;
    let opened = match line.trim().parse::<u32>() {
        Ok(pid) => tokio::task::spawn_blocking(move || listen_in_netns_of(pid))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r),
        Err(_) => Err(format!("expected a pid, got {line:?}")),
    };
    match opened {
        Ok(std_listener) => {
            let _ = write.write_all(b"ok\n").await;
            TcpListener::from_std(std_listener).ok()
        }
        Err(e) => {
            let _ = write.write_all(format!("error: {e}\n").as_bytes()).await;
            None
        }
    }
}

/// Longest Unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// Where the `createRuntime` hook of one container reaches this process: `dir/hook.sock`
/// when that path fits a Unix socket address, else a short name (a hash of `key`) in a
/// private directory: `/run/gantry` for root, else `$XDG_RUNTIME_DIR/gantry`, else
/// `/tmp/gantry-<uid>`; the directory must be ours and closed to others (mode 0700), so no
/// other user can answer in our place.
pub fn hook_socket(dir: &Path, key: &str) -> Result<PathBuf, String> {
    let preferred = dir.join("hook.sock");
    if preferred.as_os_str().len() <= SUN_PATH_MAX {
        return Ok(preferred);
    }
    let uid = nix::unistd::geteuid();
    let base = if uid.is_root() {
        PathBuf::from("/run/gantry")
    } else if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(runtime).join("gantry")
    } else {
        std::env::temp_dir().join(format!("gantry-{uid}"))
    };
    private_dir(&base, uid)?;
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let path = base.join(format!("{}.sock", &hash[..24]));
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(format!(
            "no short enough path for a hook socket ({} is too long); set TMPDIR to a short directory",
            path.display()
        ));
    }
    Ok(path)
}

/// Creates `dir` (mode 0700) or checks that the existing one is a directory of `uid` that
/// nobody else can enter.
fn private_dir(dir: &Path, uid: nix::unistd::Uid) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid.as_raw() || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} must be a directory of uid {uid} with mode 0700 (it holds hook sockets); remove it or fix its owner and mode",
            dir.display()
        ));
    }
    Ok(())
}

/// Opens 127.0.0.1:RELAY_PORT in the network namespace of `pid`. setns only moves the
/// calling thread, so a dedicated thread does it and ends; the socket stays in that
/// namespace.
fn listen_in_netns_of(pid: u32) -> Result<std::net::TcpListener, String> {
    let ns: PathBuf = format!("/proc/{pid}/ns/net").into();
    std::thread::spawn(move || {
        let file =
            std::fs::File::open(&ns).map_err(|e| format!("opening {}: {e}", ns.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("joining the step's network namespace: {e}"))?;
        let l = std::net::TcpListener::bind(("127.0.0.1", RELAY_PORT))
            .map_err(|e| format!("listening on 127.0.0.1:{RELAY_PORT} in the step: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(l)
    })
    .join()
    .map_err(|_| "the relay thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hook_sockets_fit_a_unix_address_however_deep_the_work_directory() {
        let short = Path::new("/tmp/w");
        assert_eq!(hook_socket(short, "k").unwrap(), short.join("hook.sock"));
        let deep = PathBuf::from(format!("/tmp/{}/work/deployments/x", "d".repeat(120)));
        let a = hook_socket(&deep, "replica-a-1").unwrap();
        let b = hook_socket(&deep, "replica-b-1").unwrap();
        assert!(a.as_os_str().len() <= SUN_PATH_MAX, "{}", a.display());
        assert_ne!(a, b, "each container gets its own name");
        let dir = a.parent().unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        // A listener really binds there.
        std::os::unix::net::UnixListener::bind(&a).unwrap();
        std::fs::remove_file(&a).unwrap();
    }

    #[test]
    fn a_socket_directory_others_can_enter_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = private_dir(&open, nix::unistd::geteuid()).unwrap_err();
        assert!(err.contains("mode 0700"), "{err}");
        let file = t.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(private_dir(&file, nix::unistd::geteuid()).is_err());
        private_dir(&t.path().join("fresh"), nix::unistd::geteuid()).unwrap();
    }
}
