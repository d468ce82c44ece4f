//! What the host offers (cgroup version, swap accounting, GPUs) and whether this process may
//! start containers at all.

use std::fs;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access};

use crate::RuntimeError;
use crate::cgroup::CgroupLayout;

/// Facts about the host that shape a container's `config.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The host runs a pure cgroup v2 hierarchy (not v1 or "hybrid").
    pub cgroup_v2: bool,
    /// Containers run in a user namespace mapped onto an unprivileged user.
    pub rootless: bool,
    /// The memory controller accounts swap, so a swap limit can be set.
    pub swap_accounting: bool,
    /// NVIDIA device nodes found under `/dev`, sorted.
    pub nvidia_devices: Vec<PathBuf>,
    /// The host path of the static `gantry-init` to run as every container's PID 1 (mounted
    /// read-only at [`INIT_PATH`](crate::INIT_PATH)); `None` runs the command itself as PID 1.
    pub init: Option<PathBuf>,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        let layout = CgroupLayout::detect().unwrap_or_default();
        let cgroup_v2 = cgroup_v2_mounted();
        let swap_accounting = if cgroup_v2 {
            own_v2_cgroup().is_some_and(|dir| {
                Path::new(CGROUP_ROOT)
                    .join(dir)
                    .join("memory.swap.max")
                    .exists()
            }) || first_child_has(Path::new(CGROUP_ROOT), "memory.swap.max")
        } else {
            layout
                .v1_memory_root()
                .is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists())
        };
        HostFacts {
            cgroup_v2,
            rootless: !nix::unistd::geteuid().is_root(),
            swap_accounting,
            nvidia_devices: nvidia_devices(Path::new("/dev")),
            init: None,
        }
    }
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn cgroup_v2_mounted() -> bool {
    use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
    statfs(CGROUP_ROOT).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
        || Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// This process's cgroup in the v2 hierarchy, relative to its root (no leading `/`).
pub(crate) fn own_v2_cgroup() -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    parse_v2_cgroup(&text)
}

fn parse_v2_cgroup(proc_self_cgroup: &str) -> Option<String> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().trim_start_matches('/').to_owned())
}

fn first_child_has(dir: &Path, file: &str) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .any(|e| e.path().join(file).exists())
    })
}

/// `nvidiactl`, `nvidia-uvm`, `nvidia0`, ... as present under `dev`.
pub(crate) fn nvidia_devices(dev: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dev)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
                .filter(|e| {
                    use std::os::unix::fs::FileTypeExt;
                    e.file_type().is_ok_and(|t| t.is_char_device())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// What this process knows about its own privileges, gathered by [`PrivilegeProbe::detect`]
/// and judged by the pure [`decide_privileges`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivilegeProbe {
    pub euid: u32,
    /// The kernel lets an unprivileged user create a user namespace.
    pub unprivileged_userns: bool,
    pub cgroup_v2: bool,
    /// This process's own v2 cgroup (relative to the hierarchy root) when it is writable by this
    /// user and offers the cpu, memory and pids controllers, as a systemd scope with
    /// `Delegate=yes` does.
    pub delegated_cgroup: Option<String>,
}

impl PrivilegeProbe {
    pub fn detect() -> PrivilegeProbe {
        let cgroup_v2 = cgroup_v2_mounted();
        PrivilegeProbe {
            euid: nix::unistd::geteuid().as_raw(),
            unprivileged_userns: unprivileged_userns_allowed(),
            cgroup_v2,
            delegated_cgroup: if cgroup_v2 {
                own_v2_cgroup().filter(|c| is_delegated(&Path::new(CGROUP_ROOT).join(c)))
            } else {
                None
            },
        }
    }
}

fn read_sysctl(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn unprivileged_userns_allowed() -> bool {
    // Each knob exists only on some kernels (Debian, Ubuntu); a missing one does not forbid.
    read_sysctl("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v == 1)
        && read_sysctl("/proc/sys/user/max_user_namespaces").is_none_or(|v| v > 0)
        && read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            .is_none_or(|v| v == 0)
}

fn is_delegated(dir: &Path) -> bool {
    let writable = |p: &Path| access(p, AccessFlags::W_OK).is_ok();
    let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    writable(dir)
        && writable(&dir.join("cgroup.procs"))
        && writable(&dir.join("cgroup.subtree_control"))
        && has("cpu")
        && has("memory")
        && has("pids")
}

/// How containers will be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivilegeMode {
    /// Running as root: plain `runc`.
    Root,
    /// `runc --rootless true` in a user namespace, with cgroups under the delegated subtree.
    Rootless { delegated_cgroup: String },
}

/// Root runs containers directly. Anyone else needs both a user namespace (to become "root"
/// inside it) and a delegated cgroup v2 subtree (to enforce the memory, CPU and pids limits every
/// step must have); without either, refuse with what to change rather than run unconfined.
pub fn decide_privileges(probe: &PrivilegeProbe) -> Result<PrivilegeMode, RuntimeError> {
    if probe.euid == 0 {
        return Ok(PrivilegeMode::Root);
    }
    let unsupported = |reason: &str| RuntimeError::Unsupported {
        euid: probe.euid,
        reason: reason.to_owned(),
    };
    if !probe.unprivileged_userns {
        return Err(unsupported(
            "the kernel does not allow unprivileged user namespaces",
        ));
    }
    if !probe.cgroup_v2 {
        return Err(unsupported(
            "the host uses cgroup v1, where resource limits cannot be delegated to an unprivileged user",
        ));
    }
    match &probe.delegated_cgroup {
        Some(cgroup) => Ok(PrivilegeMode::Rootless {
            delegated_cgroup: cgroup.clone(),
        }),
        None => Err(unsupported(
            "this process's cgroup v2 subtree is not delegated to it (it must be writable and offer the cpu, memory and pids controllers)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> PrivilegeProbe {
        PrivilegeProbe {
            euid: 1000,
            unprivileged_userns: true,
            cgroup_v2: true,
            delegated_cgroup: Some("user.slice/user-1000.slice/gantry.scope".into()),
        }
    }

    #[test]
    fn root_runs_containers_directly() {
        let root = PrivilegeProbe {
            euid: 0,
            unprivileged_userns: false,
            cgroup_v2: false,
            delegated_cgroup: None,
        };
        assert_eq!(decide_privileges(&root).unwrap(), PrivilegeMode::Root);
    }

    #[test]
    fn a_user_with_userns_and_a_delegated_v2_subtree_runs_rootless() {
        assert_eq!(
            decide_privileges(&probe()).unwrap(),
            PrivilegeMode::Rootless {
                delegated_cgroup: "user.slice/user-1000.slice/gantry.scope".into()
            }
        );
    }

    fn refusal(p: PrivilegeProbe) -> String {
        let err = decide_privileges(&p).unwrap_err();
        assert!(matches!(err, RuntimeError::Unsupported { euid: 1000, .. }));
        let msg = err.to_string();
        for needed in [
            "cannot run containers as uid 1000",
            "run gantry as root",
            "kernel.unprivileged_userns_clone=1",
            "Delegate=yes",
            "cgroup v2",
        ] {
            assert!(
                msg.to_lowercase().contains(&needed.to_lowercase()),
                "{msg:?} lacks {needed:?}"
            );
        }
        msg
    }

    #[test]
    fn a_user_without_userns_is_told_what_to_enable() {
        let msg = refusal(PrivilegeProbe {
            unprivileged_userns: false,
            ..probe()
        });
        assert!(msg.contains("does not allow unprivileged user namespaces"));
    }

    #[test]
    fn a_user_on_cgroup_v1_is_told_limits_cannot_be_delegated() {
        let msg = refusal(PrivilegeProbe {
            cgroup_v2: false,
            delegated_cgroup: None,
            ..probe()
        });
        assert!(msg.contains("uses cgroup v1"));
    }

    #[test]
    fn a_user_without_a_delegated_subtree_is_told_to_use_a_delegated_scope() {
        let msg = refusal(PrivilegeProbe {
            delegated_cgroup: None,
            ..probe()
        });
        assert!(msg.contains("not delegated"));
    }

    #[test]
    fn own_v2_cgroup_is_read_from_the_unified_line() {
        let text = "9:name=systemd:/\n4:memory:/process_api/x\n0::/user.slice/a.scope\n";
        assert_eq!(parse_v2_cgroup(text).as_deref(), Some("user.slice/a.scope"));
        assert_eq!(parse_v2_cgroup("0::/\n").as_deref(), Some(""));
        assert_eq!(parse_v2_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn nvidia_devices_are_char_devices_named_nvidia() {
        let dev = tempfile::tempdir().unwrap();
        // A regular file named like a GPU is not a device.
        fs::write(dev.path().join("nvidia0"), "").unwrap();
        assert!(nvidia_devices(dev.path()).is_empty());
        // This host has no GPUs; /dev itself must still be readable without error.
        let on_host = nvidia_devices(Path::new("/dev"));
        assert!(on_host.iter().all(|p| p.starts_with("/dev/nvidia")));
    }

    #[test]
    fn detection_on_this_host_matches_its_cgroup_mounts() {
        let facts = HostFacts::detect();
        assert_eq!(
            facts.cgroup_v2,
            Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        );
        assert_eq!(facts.rootless, !nix::unistd::geteuid().is_root());
    }
}
