//! `config.json` for a step: the security defaults of DESIGN §4 applied to a [`StepRequest`].

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, HookBuilder, HooksBuilder, LinuxBuilder, LinuxCapabilitiesBuilder,
    LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder, get_default_maskedpaths, get_default_readonly_paths,
};

use crate::seccomp::default_seccomp;
use crate::{HostFacts, INIT_PATH, RuntimeError, StepRequest};

/// The cgroup (below each hierarchy's root) under which containers are created.
pub const DEFAULT_CGROUP_PARENT: &str = "gantry";

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel rejects CFS quotas below 1 ms.
const MIN_CPU_QUOTA_US: u64 = 1_000;
const DEV_SHM_BYTES: u64 = 64 << 20;
const MAX_ID_LEN: usize = 128;

/// [`build_spec_with_cgroup_parent`] with the default parent cgroup `gantry`.
pub fn build_spec(req: &StepRequest, host: &HostFacts) -> Result<Spec, RuntimeError> {
    build_spec_with_cgroup_parent(req, host, DEFAULT_CGROUP_PARENT)
}

/// The OCI runtime config for `req`. Pure apart from `stat`ing GPU device nodes.
///
/// Every container gets: the request's uid/gid, no capabilities, `noNewPrivileges`, the default
/// seccomp profile, a read-only rootfs (shared between containers, so never written to) with a
/// size-bounded tmpfs `/tmp`, a tmpfs `/dev` with only the standard devices, `/dev/shm`, `/proc`
/// with masked and read-only paths, read-only `/sys`, its own pid/ipc/uts/mount/cgroup
/// namespaces and a network namespace with only `lo` unless `network` is set, memory (and swap)
/// / CPU / pids limits in the cgroup `/<cgroup_parent>/<id>`, `RLIMIT_NOFILE` 1024/4096, hostname
/// `gantry` and no terminal.
pub fn build_spec_with_cgroup_parent(
    req: &StepRequest,
    host: &HostFacts,
    cgroup_parent: &str,
) -> Result<Spec, RuntimeError> {
    validate(req, cgroup_parent)?;
    let invalid = |reason: String| RuntimeError::InvalidRequest {
        id: req.id.clone(),
        reason,
    };
    let spec_error = |source| RuntimeError::Spec {
        id: req.id.clone(),
        source,
    };
    let memory = i64::try_from(req.memory_bytes)
        .map_err(|_| invalid(format!("memory limit {} is too large", req.memory_bytes)))?;
    let pids = i64::try_from(req.pids_limit)
        .map_err(|_| invalid(format!("pids limit {} is too large", req.pids_limit)))?;
    let cpu_quota = req
        .cpu_millis
        .saturating_mul(CPU_PERIOD_US)
        .div_euclid(1000)
        .max(MIN_CPU_QUOTA_US);
    let cpu_quota = i64::try_from(cpu_quota)
        .map_err(|_| invalid(format!("cpu limit {}m is too large", req.cpu_millis)))?;

    let gpu_devices = gpu_devices(req, host)?;

    let none: Capabilities = HashSet::new();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(none.clone())
        .effective(none.clone())
        .inheritable(none.clone())
        .permitted(none.clone())
        .ambient(none)
        .build()
        .map_err(spec_error)?;
    let mut env = req.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_owned());
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(req.uid)
                .gid(req.gid)
                .additional_gids(vec![req.gid])
                .build()
                .map_err(spec_error)?,
        )
        .args(process_args(req, host))
        .env(env)
        .cwd(PathBuf::from(&req.cwd))
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(1024u64)
                .hard(4096u64)
                .build()
                .map_err(spec_error)?,
        ])
        .no_new_privileges(true)
        .build()
        .map_err(spec_error)?;

    let mut memory_limits = LinuxMemoryBuilder::default().limit(memory);
    if host.swap_accounting {
        // memory+swap equal to memory: the step cannot swap its way past its limit.
        memory_limits = memory_limits.swap(memory);
    }
    let mut device_rules: Vec<LinuxDeviceCgroup> = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(spec_error)?,
    ];
    device_rules.extend(gpu_devices.iter().map(LinuxDeviceCgroup::from));
    let resources = LinuxResourcesBuilder::default()
        .devices(device_rules)
        .memory(memory_limits.build().map_err(spec_error)?)
        .cpu(
            LinuxCpuBuilder::default()
                .quota(cpu_quota)
                .period(CPU_PERIOD_US)
                .shares((req.cpu_millis.saturating_mul(1024) / 1000).max(2))
                .build()
                .map_err(spec_error)?,
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .map_err(spec_error)?,
        )
        .build()
        .map_err(spec_error)?;

    let mut masked_paths = get_default_maskedpaths();
    masked_paths.push("/sys/devices/virtual/powercap".to_owned());
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(req, host).map_err(spec_error)?)
        .resources(resources)
        .cgroups_path(PathBuf::from(format!("/{cgroup_parent}/{}", req.id)))
        .masked_paths(masked_paths)
        .readonly_paths(get_default_readonly_paths())
        .seccomp(default_seccomp().map_err(spec_error)?)
        .devices(gpu_devices);
    if host.rootless {
        // The step's uid/gid inside is this unprivileged user outside; nothing else is mapped.
        let (euid, egid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let map = |inside: u32, outside: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(inside)
                .host_id(outside)
                .size(1u32)
                .build()
        };
        linux = linux
            .uid_mappings(vec![map(req.uid, euid).map_err(spec_error)?])
            .gid_mappings(vec![map(req.gid, egid).map_err(spec_error)?]);
    }

    let mut spec = SpecBuilder::default();
    if let Some(argv) = &req.create_runtime_hook {
        let program = argv.first().filter(|p| p.starts_with('/')).ok_or_else(|| {
            invalid("the createRuntime hook needs an absolute program path".into())
        })?;
        let hook = HookBuilder::default()
            .path(PathBuf::from(program))
            .args(argv.clone())
            .timeout(10i64)
            .build()
            .map_err(spec_error)?;
        spec = spec.hooks(
            HooksBuilder::default()
                .create_runtime(vec![hook])
                .build()
                .map_err(spec_error)?,
        );
    }
    spec.version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path(req.rootfs.clone())
                .readonly(true)
                .build()
                .map_err(spec_error)?,
        )
        .mounts(mounts(req, host).map_err(spec_error)?)
        .process(process)
        .hostname("gantry")
        .linux(linux.build().map_err(spec_error)?)
        .build()
        .map_err(spec_error)
}

fn namespaces(
    req: &StepRequest,
    host: &HostFacts,
) -> Result<Vec<LinuxNamespace>, oci_spec::OciSpecError> {
    let mut kinds = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ];
    if !req.network {
        kinds.push(LinuxNamespaceType::Network);
    }
    if host.rootless {
        kinds.push(LinuxNamespaceType::User);
    }
    kinds
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect()
}

fn mount(
    destination: &str,
    typ: &str,
    source: &str,
    options: &[&str],
) -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
}

/// The container's argv: the request's command, under gantry-init when the host has one.
fn process_args(req: &StepRequest, host: &HostFacts) -> Vec<String> {
    match host.init {
        Some(_) => [INIT_PATH.to_owned(), "--".to_owned()]
            .into_iter()
            .chain(req.args.iter().cloned())
            .collect(),
        None => req.args.clone(),
    }
}

fn mounts(req: &StepRequest, host: &HostFacts) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    // tmpfs pages are charged to the step's memory cgroup, so the memory limit already caps /tmp;
    // the size option only keeps one runaway writer from reaching that limit through /tmp alone.
    let tmp_size = format!("size={}", req.memory_bytes.max(1 << 20));
    let shm_size = format!("size={}", DEV_SHM_BYTES.min(req.memory_bytes.max(1 << 20)));
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        if host.rootless {
            // A user namespace has no group 5 to own the ptys.
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                ],
            )?
        } else {
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            )?
        },
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        if host.rootless {
            // sysfs can only be mounted by a user owning the network namespace, which a user
            // namespace does not when it shares the host's; bind the host's read-only instead.
            mount(
                "/sys",
                "none",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro"],
            )?
        } else {
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            )?
        },
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
        mount(
            "/tmp",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777", &tmp_size],
        )?,
    ];
    if let Some(init) = &host.init {
        mounts.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .typ("bind")
                .source(init.clone())
                .options(
                    ["bind", "rprivate", "nosuid", "nodev", "ro"]
                        .map(str::to_owned)
                        .to_vec(),
                )
                .build()?,
        );
    }
    // Parents before children: /gantry must be mounted before /gantry/inputs/x lands on it.
    let mut binds: Vec<_> = req.mounts.iter().collect();
    binds.sort_by_key(|m| Path::new(&m.destination).components().count());
    for bind in binds {
        let access = if bind.readonly { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(&bind.destination)
                .typ("bind")
                .source(bind.source.clone())
                .options(
                    ["rbind", "rprivate", "nosuid", "nodev", access]
                        .map(str::to_owned)
                        .to_vec(),
                )
                .build()?,
        );
    }
    Ok(mounts)
}

/// Picks `/dev/nvidia<minor>` for each of `minors` and the control devices (`nvidiactl`,
/// `nvidia-uvm`, `nvidia-uvm-tools`) that the host has, from the host's NVIDIA devices.
pub(crate) fn select_gpu_devices(
    available: &[PathBuf],
    minors: &[u32],
) -> Result<Vec<PathBuf>, RuntimeError> {
    if minors.is_empty() {
        return Ok(Vec::new());
    }
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let cards: Vec<&PathBuf> = available
        .iter()
        .filter(|p| {
            name(p)
                .strip_prefix("nvidia")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    if cards.is_empty() {
        return Err(RuntimeError::NoGpus {
            requested: minors.len(),
        });
    }
    let mut selected = Vec::new();
    for minor in minors {
        let wanted = format!("nvidia{minor}");
        match cards.iter().find(|p| name(p) == wanted) {
            Some(card) => selected.push((*card).clone()),
            None => {
                return Err(RuntimeError::GpuMissing {
                    missing: Path::new("/dev").join(wanted),
                    found: cards.into_iter().cloned().collect(),
                });
            }
        }
    }
    for control in ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] {
        if let Some(p) = available.iter().find(|p| name(p) == control) {
            selected.push(p.clone());
        }
    }
    Ok(selected)
}

fn gpu_devices(req: &StepRequest, host: &HostFacts) -> Result<Vec<LinuxDevice>, RuntimeError> {
    select_gpu_devices(&host.nvidia_devices, &req.gpu_devices)?
        .into_iter()
        .map(|path| char_device(&path, &req.id))
        .collect()
}

fn char_device(path: &Path, id: &str) -> Result<LinuxDevice, RuntimeError> {
    let st = nix::sys::stat::stat(path).map_err(|source| RuntimeError::Device {
        path: path.to_path_buf(),
        source,
    })?;
    let rdev = st.st_rdev;
    LinuxDeviceBuilder::default()
        .path(path.to_path_buf())
        .typ(LinuxDeviceType::C)
        .major(i64::from(nix::sys::stat::major(rdev) as u32))
        .minor(i64::from(nix::sys::stat::minor(rdev) as u32))
        .file_mode(0o666u32)
        .uid(0u32)
        .gid(0u32)
        .build()
        .map_err(|source| RuntimeError::Spec {
            id: id.to_owned(),
            source,
        })
}

/// An id runc accepts and that is safe as a file and cgroup name.
pub(crate) fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidRequest {
            id: id.to_owned(),
            reason: format!(
                "the container id must be 1 to {MAX_ID_LEN} characters of [A-Za-z0-9_.-]"
            ),
        })
    }
}

/// A relative cgroup path (`gantry`, `ci/gantry`) that cannot climb out of the hierarchy.
pub(crate) fn valid_cgroup_parent(parent: &str) -> bool {
    !parent.is_empty()
        && parent.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        })
}

/// A path inside the container: absolute and without `..`, which could point a mount outside
/// its intended place.
fn is_clean_absolute(path: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute() && !p.components().any(|c| matches!(c, Component::ParentDir))
}

fn validate(req: &StepRequest, cgroup_parent: &str) -> Result<(), RuntimeError> {
    validate_id(&req.id)?;
    let fail = |reason: String| {
        Err(RuntimeError::InvalidRequest {
            id: req.id.clone(),
            reason,
        })
    };
    if !req.rootfs.is_absolute() {
        return fail(format!(
            "rootfs {} must be an absolute path",
            req.rootfs.display()
        ));
    }
    if req.args.is_empty() {
        return fail("the command is empty".into());
    }
    if !is_clean_absolute(&req.cwd) {
        return fail(format!(
            "working directory {:?} must be an absolute path without `..`",
            req.cwd
        ));
    }
    if let Some(bad) = req
        .env
        .iter()
        .find(|e| !e.contains('=') || e.starts_with('='))
    {
        return fail(format!(
            "environment entry {bad:?} is not of the form KEY=VALUE"
        ));
    }
    for m in &req.mounts {
        if Path::new(INIT_PATH).starts_with(&m.destination) {
            return fail(format!(
                "mount destination {:?} would hide the container's init at {INIT_PATH}",
                m.destination
            ));
        }
        if !is_clean_absolute(&m.destination) || m.destination == "/" {
            return fail(format!(
                "mount destination {:?} must be an absolute path below / without `..`",
                m.destination
            ));
        }
        if !m.source.is_absolute() {
            return fail(format!(
                "mount source {} must be an absolute path",
                m.source.display()
            ));
        }
    }
    let mut minors = std::collections::BTreeSet::new();
    if let Some(twice) = req.gpu_devices.iter().find(|m| !minors.insert(**m)) {
        return fail(format!("GPU /dev/nvidia{twice} is listed twice"));
    }
    if req.memory_bytes == 0 || req.pids_limit == 0 || req.cpu_millis == 0 {
        return fail("memory, cpu and pids limits are mandatory for every step (got 0)".to_owned());
    }
    if !valid_cgroup_parent(cgroup_parent) {
        return fail(format!(
            "cgroup parent {cgroup_parent:?} must be a relative cgroup path of [A-Za-z0-9_.-] names"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BindMount;
    use tokio_util::sync::CancellationToken;

    fn request() -> StepRequest {
        StepRequest {
            id: "gantry-r1-train-1".into(),
            rootfs: "/var/lib/gantry/rootfs/abc".into(),
            args: vec!["python".into(), "/app/train.py".into()],
            env: vec!["GANTRY_STEP=train".into()],
            cwd: "/gantry".into(),
            uid: 65534,
            gid: 65534,
            mounts: vec![
                BindMount {
                    source: "/data/in/train".into(),
                    destination: "/gantry/inputs/train".into(),
                    readonly: true,
                },
                BindMount {
                    source: "/data/step".into(),
                    destination: "/gantry".into(),
                    readonly: false,
                },
            ],
            network: false,
            cpu_millis: 1500,
            memory_bytes: 256 << 20,
            pids_limit: 128,
            gpu_devices: Vec::new(),
            timeout: None,
            stop_grace: std::time::Duration::from_secs(10),
            cancel: CancellationToken::new(),
            create_runtime_hook: None,
            remote: None,
        }
    }

    fn root_host() -> HostFacts {
        HostFacts {
            cgroup_v2: false,
            rootless: false,
            swap_accounting: true,
            nvidia_devices: vec![],
            init: None,
        }
    }

    #[test]
    fn with_an_init_the_command_runs_under_it_and_the_init_is_mounted_read_only() {
        let req = request();
        assert_eq!(
            json(&req, &root_host())["process"]["args"],
            serde_json::json!(["python", "/app/train.py"])
        );
        let host = HostFacts {
            init: Some("/run/gantry/gantry-init".into()),
            ..root_host()
        };
        let spec = json(&req, &host);
        assert_eq!(
            spec["process"]["args"],
            serde_json::json!(["/dev/gantry-init", "--", "python", "/app/train.py"])
        );
        let init = mount_of(&spec, "/dev/gantry-init");
        assert_eq!(init["source"], "/run/gantry/gantry-init");
        assert_eq!(init["type"], "bind");
        for option in ["ro", "nosuid", "nodev"] {
            assert!(
                init["options"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o == option),
                "{option} missing: {init}"
            );
        }
        // After the /dev tmpfs it lands on.
        let destinations: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        let at = |d: &str| destinations.iter().position(|x| *x == d).unwrap();
        assert!(at("/dev") < at("/dev/gantry-init"), "{destinations:?}");

        let mut shadowing = request();
        shadowing.mounts.push(BindMount {
            source: "/data/x".into(),
            destination: "/dev".into(),
            readonly: true,
        });
        assert!(build_spec(&shadowing, &host).is_err());
    }

    fn json(req: &StepRequest, host: &HostFacts) -> serde_json::Value {
        serde_json::to_value(build_spec(req, host).unwrap()).unwrap()
    }

    fn mount_of<'a>(spec: &'a serde_json::Value, dest: &str) -> &'a serde_json::Value {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == dest)
            .unwrap_or_else(|| panic!("no mount at {dest}"))
    }

    fn options(m: &serde_json::Value) -> Vec<&str> {
        m["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect()
    }

    #[test]
    fn process_runs_as_the_requested_user_without_privileges() {
        let spec = json(&request(), &root_host());
        let p = &spec["process"];
        assert_eq!(p["terminal"], false);
        assert_eq!(p["user"]["uid"], 65534);
        assert_eq!(p["user"]["gid"], 65534);
        assert_eq!(p["noNewPrivileges"], true);
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            assert_eq!(p["capabilities"][set], serde_json::json!([]), "{set}");
        }
        assert_eq!(
            p["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}])
        );
        assert_eq!(p["args"], serde_json::json!(["python", "/app/train.py"]));
        assert_eq!(p["cwd"], "/gantry");
        let env: Vec<&str> = p["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(env.contains(&"GANTRY_STEP=train"));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert_eq!(spec["hostname"], "gantry");
    }

    #[test]
    fn an_explicit_path_is_kept() {
        let mut req = request();
        req.env.push("PATH=/opt/bin".into());
        let spec = json(&req, &root_host());
        let paths: Vec<_> = spec["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.as_str().unwrap().starts_with("PATH="))
            .collect();
        assert_eq!(paths, [&serde_json::json!("PATH=/opt/bin")]);
    }

    #[test]
    fn rootfs_is_the_shared_absolute_path_read_only() {
        let spec = json(&request(), &root_host());
        assert_eq!(spec["root"]["path"], "/var/lib/gantry/rootfs/abc");
        assert_eq!(spec["root"]["readonly"], true);
    }

    #[test]
    fn writable_places_are_bounded_tmpfs_and_system_trees_are_read_only() {
        let spec = json(&request(), &root_host());
        let tmp = mount_of(&spec, "/tmp");
        assert_eq!(tmp["type"], "tmpfs");
        let tmp_opts = options(tmp);
        for o in ["nosuid", "nodev", "mode=1777"] {
            assert!(tmp_opts.contains(&o), "{o}");
        }
        assert!(tmp_opts.contains(&format!("size={}", 256 << 20).as_str()));
        assert!(options(mount_of(&spec, "/sys")).contains(&"ro"));
        assert_eq!(mount_of(&spec, "/dev")["type"], "tmpfs");
        assert_eq!(mount_of(&spec, "/dev/shm")["type"], "tmpfs");
        assert_eq!(mount_of(&spec, "/proc")["type"], "proc");
        let masked = spec["linux"]["maskedPaths"].as_array().unwrap();
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/sys/firmware",
            "/proc/acpi",
        ] {
            assert!(masked.contains(&serde_json::json!(p)), "{p}");
        }
        let ro = spec["linux"]["readonlyPaths"].as_array().unwrap();
        for p in [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ] {
            assert!(ro.contains(&serde_json::json!(p)), "{p}");
        }
    }

    #[test]
    fn bind_mounts_keep_their_access_and_parents_come_first() {
        let spec = json(&request(), &root_host());
        let dests: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        let parent = dests.iter().position(|d| *d == "/gantry").unwrap();
        let child = dests
            .iter()
            .position(|d| *d == "/gantry/inputs/train")
            .unwrap();
        assert!(parent < child);
        let input = mount_of(&spec, "/gantry/inputs/train");
        assert_eq!(input["source"], "/data/in/train");
        assert!(options(input).contains(&"ro"));
        assert!(options(mount_of(&spec, "/gantry")).contains(&"rw"));
    }

    #[test]
    fn namespaces_isolate_the_network_unless_asked_for() {
        let kinds = |spec: &serde_json::Value| -> Vec<String> {
            spec["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].as_str().unwrap().to_owned())
                .collect()
        };
        let isolated = kinds(&json(&request(), &root_host()));
        for ns in ["pid", "ipc", "uts", "mount", "cgroup", "network"] {
            assert!(isolated.iter().any(|k| k == ns), "{ns}");
        }
        assert!(!isolated.iter().any(|k| k == "user"));
        let mut req = request();
        req.network = true;
        let spec = json(&req, &root_host());
        assert!(!kinds(&spec).iter().any(|k| k == "network"));
        assert_eq!(mount_of(&spec, "/sys")["type"], "sysfs");
    }

    #[test]
    fn limits_land_in_the_step_cgroup() {
        let spec = json(&request(), &root_host());
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 256 << 20);
        assert_eq!(r["memory"]["swap"], 256 << 20);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["pids"]["limit"], 128);
        assert_eq!(r["devices"][0]["allow"], false);
        assert_eq!(r["devices"][0]["access"], "rwm");
        assert_eq!(spec["linux"]["cgroupsPath"], "/gantry/gantry-r1-train-1");
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        let custom = build_spec_with_cgroup_parent(&request(), &root_host(), "ci/gantry").unwrap();
        assert_eq!(
            custom.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/ci/gantry/gantry-r1-train-1"))
        );
    }

    #[test]
    fn swap_is_only_limited_where_it_is_accounted_and_tiny_cpu_shares_are_raised() {
        let mut req = request();
        req.cpu_millis = 1;
        let host = HostFacts {
            swap_accounting: false,
            ..root_host()
        };
        let spec = json(&req, &host);
        let r = &spec["linux"]["resources"];
        assert!(r["memory"].get("swap").is_none());
        assert_eq!(r["cpu"]["quota"], 1_000);
    }

    #[test]
    fn rootless_maps_the_step_user_onto_this_user() {
        let host = HostFacts {
            rootless: true,
            cgroup_v2: true,
            ..root_host()
        };
        let spec = json(&request(), &host);
        let linux = &spec["linux"];
        assert!(
            linux["namespaces"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!({"type": "user"}))
        );
        let euid = nix::unistd::geteuid().as_raw();
        assert_eq!(
            linux["uidMappings"],
            serde_json::json!([{"containerID": 65534, "hostID": euid, "size": 1}])
        );
        assert!(!options(mount_of(&spec, "/dev/pts")).contains(&"gid=5"));
        assert_eq!(mount_of(&spec, "/sys")["type"], "none");
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        type Mutation = Box<dyn Fn(&mut StepRequest)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|r| r.id = "a/b".into()), "container id"),
            (Box::new(|r| r.id = String::new()), "container id"),
            (Box::new(|r| r.rootfs = "rel/rootfs".into()), "absolute"),
            (Box::new(|r| r.args.clear()), "command is empty"),
            (Box::new(|r| r.cwd = "gantry".into()), "working directory"),
            (Box::new(|r| r.env.push("NOEQUALS".into())), "KEY=VALUE"),
            (
                Box::new(|r| r.mounts[0].destination = "/gantry/../etc".into()),
                "mount destination",
            ),
            (
                Box::new(|r| r.mounts[0].source = "rel".into()),
                "mount source",
            ),
            (Box::new(|r| r.memory_bytes = 0), "mandatory"),
            (Box::new(|r| r.pids_limit = 0), "mandatory"),
            (Box::new(|r| r.cpu_millis = 0), "mandatory"),
        ];
        for (mutate, expected) in cases {
            let mut req = request();
            mutate(&mut req);
            let err = build_spec(&req, &root_host()).unwrap_err();
            assert!(matches!(err, RuntimeError::InvalidRequest { .. }), "{err}");
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
        let err = build_spec_with_cgroup_parent(&request(), &root_host(), "../x").unwrap_err();
        assert!(err.to_string().contains("cgroup parent"), "{err}");
    }

    #[test]
    fn gpus_need_nvidia_devices() {
        let mut req = request();
        req.gpu_devices = vec![0, 1];
        let err = build_spec(&req, &root_host()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step requests 2 GPU(s) but no NVIDIA devices were found; install the NVIDIA driver or request `gpu: 0`"
        );
        let two_cards: Vec<PathBuf> = [
            "/dev/nvidia0",
            "/dev/nvidia1",
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
        ]
        .map(PathBuf::from)
        .to_vec();
        let err = select_gpu_devices(&two_cards, &[1, 2]).unwrap_err();
        assert!(
            matches!(&err, RuntimeError::GpuMissing { missing, .. } if missing == Path::new("/dev/nvidia2")),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "step was given GPU /dev/nvidia2 but no such device exists (found: /dev/nvidia0, /dev/nvidia1); the GPU list is out of date, check the NVIDIA driver and restart gantry"
        );
        // `nvidia1` is a card; `nvidia-uvm` or `nvidiactl` are not, whatever the minor.
        assert!(select_gpu_devices(&two_cards[2..], &[0]).is_err());
    }

    #[test]
    fn gpu_selection_takes_exactly_the_given_cards_and_the_control_devices() {
        let devices: Vec<PathBuf> = [
            "/dev/nvidia-modeset",
            "/dev/nvidia-uvm",
            "/dev/nvidia0",
            "/dev/nvidia1",
            "/dev/nvidia2",
            "/dev/nvidia12",
            "/dev/nvidiactl",
            "/dev/nvidia-uvm-tools",
        ]
        .map(PathBuf::from)
        .to_vec();
        let controls = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];
        let picked = |minors: &[u32]| {
            select_gpu_devices(&devices, minors)
                .unwrap()
                .into_iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        // Two one-GPU steps get different cards, not both nvidia0.
        assert_eq!(picked(&[2]), [&["/dev/nvidia2"][..], &controls].concat());
        assert_eq!(picked(&[1]), [&["/dev/nvidia1"][..], &controls].concat());
        assert_eq!(
            picked(&[12, 0]),
            [&["/dev/nvidia12", "/dev/nvidia0"][..], &controls].concat()
        );
        assert!(picked(&[]).is_empty());
        // Control devices the host lacks are left out.
        let without_tools: Vec<PathBuf> = devices
            .iter()
            .filter(|p| !p.ends_with("nvidia-uvm-tools"))
            .cloned()
            .collect();
        assert_eq!(
            select_gpu_devices(&without_tools, &[0]).unwrap(),
            ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn a_gpu_listed_twice_is_refused() {
        let mut req = request();
        req.gpu_devices = vec![1, 0, 1];
        let err = build_spec(&req, &root_host()).unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidRequest { .. }), "{err}");
        assert!(
            err.to_string().contains("GPU /dev/nvidia1 is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn device_entries_carry_the_host_device_numbers() {
        // /dev/null is char 1:3 on Linux.
        let dev = char_device(Path::new("/dev/null"), "x").unwrap();
        assert_eq!((dev.major(), dev.minor()), (1, 3));
        assert_eq!(dev.typ(), LinuxDeviceType::C);
        let rule = LinuxDeviceCgroup::from(&dev);
        assert!(rule.allow());
        let err = char_device(Path::new("/dev/definitely-missing"), "x").unwrap_err();
        assert!(err.to_string().contains("/dev/definitely-missing"));
    }
}
