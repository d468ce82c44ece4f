use std::path::PathBuf;

/// Why a container could not be prepared, started or cleaned up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "oci runtime `{binary}` was not found on PATH; install runc (Debian: `apt install runc`) or configure another runtime binary"
    )]
    RuntimeMissing { binary: PathBuf },

    #[error(
        "cannot run containers as uid {euid}: {reason}. Run gantry as root, or enable unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1`) and run gantry inside a systemd scope with Delegate=yes on cgroup v2 (e.g. `systemd-run --user --scope -p Delegate=yes gantry ...`)"
    )]
    Unsupported { euid: u32, reason: String },

    #[error("invalid oci runtime config: {reason}")]
    InvalidConfig { reason: String },

    #[error("invalid step request for container `{id}`: {reason}")]
    InvalidRequest { id: String, reason: String },

    #[error(
        "step requests {requested} GPU(s) but no NVIDIA devices were found; install the NVIDIA driver or request `gpu: 0`"
    )]
    NoGpus { requested: usize },

    #[error(
        "step was given GPU {} but no such device exists (found: {}); the GPU list is out of date, check the NVIDIA driver and restart gantry",
        .missing.display(),
        .found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    GpuMissing {
        missing: PathBuf,
        found: Vec<PathBuf>,
    },

    #[error("cannot inspect device {path}: {source}")]
    Device {
        path: PathBuf,
        source: nix::errno::Errno,
    },

    #[error("cannot build config.json for container `{id}`: {source}")]
    Spec {
        id: String,
        source: oci_spec::OciSpecError,
    },

    #[error(
        "a container `{id}` already exists (bundle {path}); use a unique id per attempt, or let gantry reap leftovers once the process that started it has exited"
    )]
    AlreadyExists { id: String, path: PathBuf },

    #[error("cannot write bundle {path}: {source}; check that the bundles directory is writable")]
    BundleWrite {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot execute {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },

    #[error("{binary} failed to start container `{id}`: {stderr}")]
    StartFailed {
        binary: PathBuf,
        id: String,
        stderr: String,
    },

    #[error("`{binary} {args}` failed: {stderr}")]
    Command {
        binary: PathBuf,
        args: String,
        stderr: String,
    },
}
