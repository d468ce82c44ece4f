//! Real containers, run with the real runc. Each security default is checked from inside a
//! container, so a test fails when its default is missing. These tests need root and runc: they
//! fail (rather than skip) without them.

#[cfg(test)]
mod support {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use gantry_runtime::{
        BindMount, HostFacts, LogBlock, LogStream, OciRuntime, OciRuntimeConfig, Runtime,
        RuntimeError, StepOutcome, StepRequest, build_spec_with_cgroup_parent,
    };
    use tokio_util::sync::CancellationToken;

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// The applets the tests use; symlinked to busybox in the rootfs.
    const APPLETS: &[&str] = &[
        "sh", "id", "cat", "echo", "true", "false", "ls", "touch", "head", "tr", "sleep", "grep",
        "wc", "mount", "unshare", "stat", "hostname", "seq", "awk", "kill",
    ];

    pub fn require_root_and_runc() {
        let euid = nix::unistd::geteuid().as_raw();
        assert_eq!(
            euid, 0,
            "the gantry-runtime integration tests run real containers with runc and must run as root (euid is {euid})"
        );
        assert!(
            Path::new("/bin/busybox").exists(),
            "the gantry-runtime integration tests need a static busybox at /bin/busybox (Debian: apt install busybox-static)"
        );
    }

    /// A read-only busybox image rootfs, world-readable like an unpacked image.
    pub fn busybox_rootfs(root: &Path) -> PathBuf {
        let rootfs = root.join("rootfs");
        for dir in ["bin", "proc", "sys", "dev", "tmp", "gantry", "etc"] {
            fs::create_dir_all(rootfs.join(dir)).unwrap();
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        fs::set_permissions(
            rootfs.join("bin/busybox"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        for dir in [root, &rootfs] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        for entry in fs::read_dir(&rootfs).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        // As in every image: runc gives the tmpfs mounted on /tmp the mode of this directory.
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        rootfs
    }

    /// Everything about one rootfs tree that a write would change.
    pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, u32)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                out.insert(path.clone(), (meta.len(), meta.mtime(), meta.mode()));
                if meta.is_dir() {
                    stack.push(path);
                }
            }
        }
        out
    }

    pub struct Fixture {
        pub dir: tempfile::TempDir,
        pub rootfs: PathBuf,
        pub state: PathBuf,
        pub bundles: PathBuf,
        pub parent: String,
        pub runtime: OciRuntime,
    }

    pub struct Ran {
        pub outcome: Result<StepOutcome, RuntimeError>,
        pub stdout: Vec<String>,
        pub stderr: Vec<String>,
    }

    impl Ran {
        pub fn ok(&self) -> &StepOutcome {
            match &self.outcome {
                Ok(o) => o,
                Err(e) => panic!("step failed to run: {e}\nstderr: {:?}", self.stderr),
            }
        }

        pub fn out(&self) -> String {
            self.stdout.join("\n")
        }

        /// Asserts the step exited 0 and returns its stdout.
        pub fn success(&self) -> String {
            let o = self.ok();
            assert_eq!(
                o.exit_code,
                Some(0),
                "{o:?}\nstdout: {:?}\nstderr: {:?}",
                self.stdout,
                self.stderr
            );
            self.out()
        }
    }

    impl Fixture {
        pub fn new() -> Fixture {
            require_root_and_runc();
            let dir = tempfile::tempdir().unwrap();
            let rootfs = busybox_rootfs(dir.path());
            let state = dir.path().join("state");
            let bundles = dir.path().join("bundles");
            let parent = format!(
                "gantry-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            let runtime = OciRuntime::new(OciRuntimeConfig {
                binary: "runc".into(),
                state_dir: state.clone(),
                bundles_dir: bundles.clone(),
                cgroup_parent: parent.clone(),
            })
            .unwrap_or_else(|e| panic!("the integration tests need runc: {e}"));
            Fixture {
                dir,
                rootfs,
                state,
                bundles,
                parent,
                runtime,
            }
        }

        pub fn id(&self, name: &str) -> String {
            format!("{name}-{}", NEXT.fetch_add(1, Ordering::SeqCst))
        }

        pub fn request(&self, name: &str, script: &str) -> StepRequest {
            StepRequest {
                id: self.id(name),
                rootfs: self.rootfs.clone(),
                args: vec!["sh".into(), "-c".into(), script.into()],
                env: vec!["GANTRY_STEP=test".into()],
                cwd: "/".into(),
                uid: 65534,
                gid: 65534,
                mounts: vec![],
                network: false,
                cpu_millis: 1000,
                memory_bytes: 256 << 20,
                pids_limit: 64,
                gpu_devices: Vec::new(),
                timeout: Some(Duration::from_secs(60)),
                stop_grace: Duration::from_secs(10),
                cancel: CancellationToken::new(),
                create_runtime_hook: None,
                remote: None,
            }
        }

        pub async fn run(&self, req: StepRequest) -> Ran {
            self.run_with_capacity(req, 64).await
        }

        pub async fn run_with_capacity(&self, req: StepRequest, capacity: usize) -> Ran {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<LogBlock>(capacity);
            let collector = tokio::spawn(async move {
                let (mut out, mut err) = (Vec::new(), Vec::new());
                while let Some(block) = rx.recv().await {
                    let lines = block.lines().map(str::to_owned);
                    match block.stream {
                        LogStream::Stdout => out.extend(lines),
                        LogStream::Stderr => err.extend(lines),
                    }
                }
                (out, err)
            });
            let outcome = self.runtime.run(req, tx).await;
            let (stdout, stderr) = collector.await.unwrap();
            Ran {
                outcome,
                stdout,
                stderr,
            }
        }

        pub async fn script(&self, script: &str) -> Ran {
            self.run(self.request("step", script)).await
        }

        pub fn host(&self) -> &HostFacts {
            self.runtime.host_facts()
        }

        pub fn cgroup_mounts() -> Vec<PathBuf> {
            let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
            info.lines()
                .filter_map(|l| {
                    let (left, right) = l.split_once(" - ")?;
                    let fields: Vec<&str> = left.split_whitespace().collect();
                    let fstype = right.split_whitespace().next()?;
                    (matches!(fstype, "cgroup" | "cgroup2") && fields[3] == "/")
                        .then(|| PathBuf::from(fields[4]))
                })
                .collect()
        }

        pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
            Self::cgroup_mounts()
                .into_iter()
                .map(|m| m.join(&self.parent).join(id))
                .filter(|d| d.exists())
                .collect()
        }

        pub fn runc(&self, args: &[&str]) -> Output {
            Command::new("runc")
                .arg("--root")
                .arg(&self.state)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }

        pub fn listed_containers(&self) -> Vec<String> {
            let out = self.runc(&["list", "--format", "json"]);
            assert!(out.status.success(), "{out:?}");
            let list: Option<Vec<serde_json::Value>> = serde_json::from_slice(&out.stdout).unwrap();
            list.unwrap_or_default()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect()
        }

        /// Nothing of container `id` is left: no runtime state, bundle or cgroup.
        pub fn assert_gone(&self, id: &str) {
            assert!(
                !self.listed_containers().contains(&id.to_owned()),
                "{id} still known to runc"
            );
            assert!(!self.state.join(id).exists(), "{id} state left");
            assert!(!self.bundles.join(id).exists(), "{id} bundle left");
            assert_eq!(
                self.cgroup_dirs(id),
                Vec::<PathBuf>::new(),
                "{id} cgroups left"
            );
        }

        /// Writes a bundle for `req` the way a gantry process would, with `owner` as its owner
        /// record, and starts it detached with runc directly.
        pub fn start_raw(&self, req: &StepRequest, owner: &str) {
            let spec = build_spec_with_cgroup_parent(req, self.host(), &self.parent).unwrap();
            let bundle = self.bundles.join(&req.id);
            fs::create_dir_all(&bundle).unwrap();
            fs::write(bundle.join("owner"), owner).unwrap();
            spec.save(bundle.join("config.json")).unwrap();
            let status = Command::new("runc")
                .arg("--root")
                .arg(&self.state)
                .args(["run", "--detach", "--bundle"])
                .arg(&bundle)
                .arg(&req.id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "runc run --detach {} failed", req.id);
        }

        /// Every test ends here: nothing may be left in the state dir, the bundles dir or the
        /// test's cgroup parent (which must then be removable: `rmdir` fails if it has children).
        pub fn finish(self) {
            assert_eq!(self.listed_containers(), Vec::<String>::new());
            // `@init` holds the gantry-init every container runs as PID 1.
            let bundles: Vec<_> = fs::read_dir(&self.bundles)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| !p.ends_with("@init"))
                .collect();
            assert!(bundles.is_empty(), "bundles left: {bundles:?}");
            for mount in Self::cgroup_mounts() {
                let parent = mount.join(&self.parent);
                if parent.exists() {
                    fs::remove_dir(&parent)
                        .unwrap_or_else(|e| panic!("cgroup {} not empty: {e}", parent.display()));
                }
            }
        }

        pub fn bind(source: &Path, destination: &str, readonly: bool) -> BindMount {
            BindMount {
                source: source.to_path_buf(),
                destination: destination.into(),
                readonly,
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            // Best effort after a failed assertion; `finish` is the checked path.
            for id in self.listed_containers_quiet() {
                let _ = self.runc(&["delete", "--force", &id]);
            }
            for mount in Self::cgroup_mounts() {
                let parent = mount.join(&self.parent);
                if let Ok(children) = fs::read_dir(&parent) {
                    for child in children.flatten() {
                        let _ = fs::remove_dir(child.path());
                    }
                }
                let _ = fs::remove_dir(parent);
            }
        }
    }

    impl Fixture {
        fn listed_containers_quiet(&self) -> Vec<String> {
            let out = self.runc(&["list", "--format", "json"]);
            serde_json::from_slice::<Option<Vec<serde_json::Value>>>(&out.stdout)
                .ok()
                .flatten()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        }
    }

    /// `(mount point, per-mount options)` from a container's `/proc/self/mountinfo`.
    pub fn mount_table(mountinfo: &str) -> Vec<(String, String, String)> {
        mountinfo
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let f: Vec<&str> = left.split_whitespace().collect();
                let fstype = right.split_whitespace().next()?;
                Some((
                    f.get(4)?.to_string(),
                    f.get(5)?.to_string(),
                    fstype.to_owned(),
                ))
            })
            .collect()
    }

    /// The start time (field 22 of /proc/<pid>/stat) and boot id, as in an owner record.
    pub fn owner_record(pid: u32) -> String {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        let start: u64 = after.split_whitespace().nth(19).unwrap().parse().unwrap();
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        format!("{pid} {start} {}\n", boot.trim())
    }
}

mod defaults {
    use std::path::Path;

    use gantry_runtime::{Termination, build_spec_with_cgroup_parent};

    use crate::support::{Fixture, mount_table};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_process_runs_as_the_requested_user() {
        let f = Fixture::new();
        assert_eq!(f.script("id -u; id -g").await.success(), "65534\n65534");
        let mut req = f.request("user", "id -u; id -g; id -G");
        req.uid = 1234;
        req.gid = 4321;
        assert_eq!(f.run(req).await.success(), "1234\n4321\n4321");
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_capabilities_are_dropped_even_for_uid_0() {
        let f = Fixture::new();
        for uid in [65534, 0] {
            let mut req = f.request(
                "caps",
                "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status",
            );
            req.uid = uid;
            req.gid = uid;
            let ran = f.run(req).await;
            let out = ran.success();
            assert_eq!(out.lines().count(), 5, "{out}");
            for line in out.lines() {
                assert!(line.ends_with("0000000000000000"), "uid {uid}: {line}");
            }
        }
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_new_privileges_is_set() {
        let f = Fixture::new();
        let out = f
            .script("grep NoNewPrivs /proc/self/status")
            .await
            .success();
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["NoNewPrivs:", "1"]
        );
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seccomp_filter_denies_namespaces_and_mounts_with_eperm() {
        let f = Fixture::new();
        let script = "grep '^Seccomp:' /proc/self/status; \
                      unshare -U true && echo unshare-ok; \
                      mount -t tmpfs none /tmp && echo mount-ok; \
                      true";
        let ran = f.script(script).await;
        let out = ran.success();
        assert_eq!(
            out.lines().next().unwrap().split_whitespace().nth(1),
            Some("2"),
            "{out}"
        );
        assert!(!out.contains("unshare-ok"), "{out}");
        assert!(!out.contains("mount-ok"), "{out}");
        let err = ran.stderr.join("\n");
        assert!(
            err.contains("unshare(0x10000000): Operation not permitted"),
            "expected EPERM from unshare: {err}"
        );
        // busybox words mount's EPERM this way.
        assert!(err.contains("mount: permission denied"), "{err}");

        // Control: the same container without the filter may create a user namespace, so the
        // assertion above is the filter's doing, not the kernel's.
        let req = f.request("noseccomp", "unshare -U true && echo unshare-ok");
        let mut spec = build_spec_with_cgroup_parent(&req, f.host(), &f.parent).unwrap();
        spec.linux_mut().as_mut().unwrap().set_seccomp(None);
        let bundle = f.dir.path().join("control");
        std::fs::create_dir(&bundle).unwrap();
        spec.save(bundle.join("config.json")).unwrap();
        let out = f.runc(&["run", "--bundle", bundle.to_str().unwrap(), &req.id]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("unshare-ok"),
            "without seccomp unshare should work: {out:?}"
        );
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rootfs_is_read_only_and_tmp_is_a_bounded_writable_tmpfs() {
        let f = Fixture::new();
        let before = crate::support::snapshot(&f.rootfs);
        let ran = f
            .script(
                "touch /etc/x && echo etc-writable; \
                 touch /x && echo root-writable; \
                 echo data > /tmp/x && cat /tmp/x; \
                 stat -c %a /tmp; \
                 grep ' /tmp ' /proc/mounts",
            )
            .await;
        let out = ran.success();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "data", "{out}");
        assert_eq!(lines[1], "1777", "{out}");
        let tmp: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(tmp[2], "tmpfs");
        let opts: Vec<&str> = tmp[3].split(',').collect();
        for o in ["rw", "nosuid", "nodev"] {
            assert!(opts.contains(&o), "/tmp lacks {o}: {}", tmp[3]);
        }
        assert!(opts.iter().any(|o| o.starts_with("size=")), "{}", tmp[3]);
        assert!(!out.contains("writable"), "{out}");
        assert!(
            ran.stderr.join("\n").contains("Read-only file system"),
            "{:?}",
            ran.stderr
        );
        assert_eq!(
            crate::support::snapshot(&f.rootfs),
            before,
            "the shared rootfs changed"
        );
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dev_is_a_tmpfs_with_only_the_standard_devices_and_shm() {
        let f = Fixture::new();
        let out = f
            .script(
                "ls /dev; echo --; echo x > /dev/null && echo null-ok; \
                 head -c 4 /dev/zero | wc -c; \
                 grep -E ' /dev(/shm)? ' /proc/mounts",
            )
            .await
            .success();
        let (listing, rest) = out.split_once("--").unwrap();
        let allowed = [
            "null",
            "zero",
            "full",
            "random",
            "urandom",
            "tty",
            "ptmx",
            "pts",
            "shm",
            "mqueue",
            "fd",
            "stdin",
            "stdout",
            "stderr",
            "core",
            "gantry-init",
        ];
        let entries: Vec<&str> = listing.split_whitespace().collect();
        for e in &entries {
            assert!(
                allowed.contains(e),
                "unexpected /dev entry {e}: {entries:?}"
            );
        }
        for needed in ["null", "zero", "full", "random", "urandom", "tty", "shm"] {
            assert!(
                entries.contains(&needed),
                "/dev lacks {needed}: {entries:?}"
            );
        }
        assert!(rest.contains("null-ok"));
        assert!(rest.contains("\n4\n"), "{rest}");
        assert!(rest.contains("tmpfs /dev tmpfs"), "{rest}");
        assert!(rest.contains("/dev/shm tmpfs"), "{rest}");
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proc_paths_are_masked_or_read_only_and_sys_is_read_only() {
        let f = Fixture::new();
        let ran = f
            .script(
                "cat /proc/self/mountinfo; echo --; cat /proc/kcore | wc -c; \
                 echo h > /proc/sysrq-trigger && echo sysrq-writable; \
                 touch /sys/x && echo sys-writable; true",
            )
            .await;
        let out = ran.success();
        let (mountinfo, rest) = out.split_once("--").unwrap();
        let table = mount_table(mountinfo);
        let mounted = |p: &str| table.iter().find(|(point, _, _)| point == p);
        for masked in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/proc/sched_debug",
            "/proc/scsi",
            "/proc/acpi",
            "/sys/firmware",
            "/proc/latency_stats",
            "/proc/asound",
        ] {
            // runc only masks what exists; everything present on this host must be covered.
            if Path::new(masked).exists() {
                assert!(mounted(masked).is_some(), "{masked} is not masked");
            }
        }
        for ro in [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ] {
            if Path::new(ro).exists() {
                let (_, opts, _) = mounted(ro).unwrap_or_else(|| panic!("{ro} not read-only"));
                assert!(opts.split(',').any(|o| o == "ro"), "{ro}: {opts}");
            }
        }
        let (_, sys_opts, sys_type) = mounted("/sys").unwrap();
        assert_eq!(sys_type, "sysfs");
        assert!(sys_opts.split(',').any(|o| o == "ro"), "/sys: {sys_opts}");
        let (_, _, proc_type) = mounted("/proc").unwrap();
        assert_eq!(proc_type, "proc");
        assert_eq!(
            rest.lines().nth(1),
            Some("0"),
            "/proc/kcore readable: {rest}"
        );
        assert!(!rest.contains("writable"), "{rest}");
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_loopback_exists_unless_network_is_requested() {
        let f = Fixture::new();
        let script = "ls /sys/class/net; echo --; cat /sys/class/net/lo/flags";
        let out = f.script(script).await.success();
        let (ifaces, flags) = out.split_once("--").unwrap();
        assert_eq!(ifaces.split_whitespace().collect::<Vec<_>>(), ["lo"]);
        // IFF_UP is bit 0: runc brings lo up.
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 1, 1, "lo is down");

        let mut req = f.request("net", "ls /sys/class/net");
        req.network = true;
        let out = f.run(req).await.success();
        let mut inside: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        inside.sort();
        host.sort();
        assert_eq!(inside, host);
        assert!(
            host.len() > 1,
            "this host should have a non-loopback interface"
        );
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostname_and_open_file_limits_are_fixed() {
        let f = Fixture::new();
        let out = f.script("hostname; ulimit -n; ulimit -Hn").await.success();
        assert_eq!(out, "gantry\n1024\n4096");
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cpu_quota_matches_the_request() {
        let f = Fixture::new();
        let script = if f.host().cgroup_v2 {
            "cat /sys/fs/cgroup/cpu.max"
        } else {
            "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
        };
        let mut req = f.request("cpu", script);
        req.cpu_millis = 500;
        let out = f.run(req).await.success();
        let values: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(values, ["50000", "100000"]);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_memory_hog_is_oom_killed_and_reported_as_such() {
        let f = Fixture::new();
        let limits = if f.host().cgroup_v2 {
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.swap.max"
        } else {
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
        };
        let mut req = f.request("limits", limits);
        req.memory_bytes = 64 << 20;
        let out = f.run(req).await.success();
        let values: Vec<&str> = out.split_whitespace().collect();
        let expected_swap = if f.host().cgroup_v2 {
            "0".to_owned()
        } else {
            (64u64 << 20).to_string()
        };
        assert_eq!(values[0], (64u64 << 20).to_string());
        if f.host().swap_accounting {
            assert_eq!(values[1], expected_swap);
        }

        let mut req = f.request(
            "hog",
            "x=$(head -c 300m /dev/zero | tr '\\0' a); echo survived",
        );
        req.memory_bytes = 64 << 20;
        let ran = f.run(req).await;
        let outcome = ran.ok();
        assert_eq!(outcome.termination, Termination::OomKilled, "{outcome:?}");
        assert_eq!(outcome.signal, Some(9));
        assert_eq!(outcome.exit_code, None);
        assert!(!ran.out().contains("survived"));
        assert!(
            outcome.usage.peak_memory_bytes >= 60 << 20,
            "peak {} should be near the limit",
            outcome.usage.peak_memory_bytes
        );
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fork_bomb_is_contained_by_the_pids_limit() {
        let f = Fixture::new();
        let mut req = f.request("forkbomb", "bomb() { bomb | bomb & }; bomb; sleep 2");
        req.pids_limit = 32;
        req.timeout = Some(std::time::Duration::from_secs(60));
        let ran = f.run(req).await;
        let outcome = ran.ok();
        assert!(outcome.pids_limit_hit, "{outcome:?}");
        assert_ne!(outcome.termination, Termination::TimedOut);
        // And a step that stays below the limit does not report it.
        let calm = f.script("sleep 0").await;
        assert!(!calm.ok().pids_limit_hit);
        f.finish();
    }
}

mod behaviour {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use gantry_runtime::{Runtime, RuntimeError, Termination};

    use crate::support::{Fixture, owner_record};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logs_arrive_in_order_per_stream_even_through_a_tiny_channel() {
        let f = Fixture::new();
        let req = f.request(
            "logs",
            "i=0; while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; printf tail",
        );
        let ran = f.run_with_capacity(req, 2).await;
        ran.success();
        let mut expected_out: Vec<String> = (0..300).map(|i| format!("out{i}")).collect();
        expected_out.push("tail".into());
        let expected_err: Vec<String> = (0..300).map(|i| format!("err{i}")).collect();
        assert_eq!(ran.stdout, expected_out);
        assert_eq!(ran.stderr, expected_err);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exit_codes_are_reported_and_a_missing_command_exits_127_saying_why() {
        let f = Fixture::new();
        let o = f.script("exit 3").await;
        assert_eq!(o.ok().exit_code, Some(3));
        assert_eq!(o.ok().signal, None);
        assert_eq!(o.ok().termination, Termination::Exited);
        assert_eq!(f.script("true").await.ok().exit_code, Some(0));
        // A signal that killed the command reads as before, through the init.
        let killed = f.script("kill -USR1 $$; sleep 5").await;
        assert_eq!(killed.ok().signal, Some(10), "{:?}", killed.ok());
        assert_eq!(killed.ok().termination, Termination::Signaled);

        let mut req = f.request("missing", "");
        req.args = vec!["no-such-program".into()];
        let id = req.id.clone();
        let ran = f.run(req).await;
        assert_eq!(ran.ok().exit_code, Some(127), "{:?}", ran.ok());
        assert_eq!(
            ran.stderr,
            ["gantry-init: cannot run \"no-such-program\": No such file or directory (os error 2)"]
        );
        f.assert_gone(&id);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pid_1_is_gantry_init_and_reaps_orphaned_grandchildren() {
        let f = Fixture::new();
        // The subshell exits at once, so its `sleep` is re-parented to PID 1; once it ends, only
        // PID 1 can reap it.
        let out = f
            .script(
                "cat /proc/1/comm; (sleep 0.2 &); sleep 1.5; \
                 z=0; for s in /proc/[0-9]*/stat; do \
                   set -- $(cat $s 2>/dev/null); [ \"$3\" = Z ] && z=$((z+1)); done; \
                 echo zombies=$z",
            )
            .await
            .success();
        assert_eq!(out, "gantry-init\nzombies=0");
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_trapping_sigterm_writes_its_output_before_it_is_stopped() {
        let f = Fixture::new();
        let out = f.dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
        let mut req = f.request(
            "trap",
            "trap 'echo saving; echo checkpoint > /gantry/state; exit 0' TERM; \
             echo started; sleep 100 & wait",
        );
        req.mounts = vec![Fixture::bind(&out, "/gantry", false)];
        req.timeout = Some(Duration::from_secs(1));
        req.stop_grace = Duration::from_secs(30);
        let id = req.id.clone();
        let started = Instant::now();
        let ran = f.run(req).await;
        let o = ran.ok();
        assert_eq!(o.termination, Termination::TimedOut);
        assert_eq!((o.exit_code, o.signal), (Some(0), None), "{o:?}");
        assert_eq!(ran.stdout, ["started", "saving"]);
        assert_eq!(
            fs::read_to_string(out.join("state")).unwrap(),
            "checkpoint\n"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "SIGTERM ended it"
        );
        f.assert_gone(&id);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_ignoring_sigterm_is_killed_after_the_grace() {
        let f = Fixture::new();
        let mut req = f.request("stubborn", "trap '' TERM; echo started; sleep 100");
        req.timeout = Some(Duration::from_secs(1));
        req.stop_grace = Duration::from_millis(1500);
        let id = req.id.clone();
        let ran = f.run(req).await;
        let o = ran.ok();
        assert_eq!(o.termination, Termination::TimedOut);
        assert_eq!(o.signal, Some(9), "{o:?}");
        assert!(o.usage.wall_ms >= 2500, "timeout + grace: {:?}", o.usage);
        assert_eq!(ran.stdout, ["started"]);
        f.assert_gone(&id);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usage_reports_cpu_time_and_peak_memory() {
        let f = Fixture::new();
        let busy = f
            .script("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
            .await;
        let usage = busy.ok().usage;
        assert!(usage.cpu_micros > 100_000, "{usage:?}");
        assert!(
            usage.wall_ms * 1000 + 50_000 >= usage.cpu_micros,
            "{usage:?}"
        );

        let toucher = f
            .script("x=$(head -c 50m /dev/zero | tr '\\0' a); echo ${#x}")
            .await;
        assert_eq!(toucher.success(), (50u64 << 20).to_string());
        let usage = toucher.ok().usage;
        assert!(usage.peak_memory_bytes >= 50 << 20, "{usage:?}");
        assert!(usage.peak_memory_bytes < 256 << 20, "{usage:?}");
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bind_mounts_are_writable_or_read_only_as_asked() {
        let f = Fixture::new();
        let step = f.dir.path().join("step");
        let input = f.dir.path().join("input");
        fs::create_dir_all(&step).unwrap();
        fs::create_dir_all(&input).unwrap();
        fs::set_permissions(&step, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(&input, fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(input.join("data.txt"), "hello input").unwrap();
        let mut req = f.request(
            "binds",
            "cat /gantry/inputs/data/data.txt; echo; \
             echo result > /gantry/out.txt && echo wrote; \
             touch /gantry/inputs/data/new && echo input-writable; true",
        );
        req.cwd = "/gantry".into();
        req.mounts = vec![
            Fixture::bind(&input, "/gantry/inputs/data", true),
            Fixture::bind(&step, "/gantry", false),
        ];
        let ran = f.run(req).await;
        let out = ran.success();
        assert_eq!(out, "hello input\nwrote");
        assert!(ran.stderr.join("\n").contains("Read-only file system"));
        assert_eq!(
            fs::read_to_string(step.join("out.txt")).unwrap(),
            "result\n"
        );
        assert!(!input.join("new").exists());
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_containers_share_one_rootfs_at_the_same_time() {
        let f = Fixture::new();
        let before = crate::support::snapshot(&f.rootfs);
        // Each reports when it ran by the kernel's uptime (shared by all containers): the
        // intervals must overlap, however loaded the machine is.
        let (a, b) = tokio::join!(
            f.script("read s _ < /proc/uptime; sleep 1; read e _ < /proc/uptime; echo a; ls /tmp; echo $s $e"),
            f.script("read s _ < /proc/uptime; touch /tmp/mine; sleep 1; read e _ < /proc/uptime; echo b; ls /tmp; echo $s $e")
        );
        let (a, b) = (a.success(), b.success());
        let interval = |out: &str| -> (f64, f64) {
            let last = out.lines().last().unwrap();
            let mut it = last.split_whitespace().map(|x| x.parse::<f64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        };
        let (a0, a1) = interval(&a);
        let (b0, b1) = interval(&b);
        assert!(a.starts_with("a\n"), "{a}");
        assert!(b.starts_with("b\nmine\n"), "{b}");
        assert!(
            a0 < b1 && b0 < a1,
            "they did not run concurrently: a {a0}..{a1}, b {b0}..{b1}"
        );
        assert_eq!(crate::support::snapshot(&f.rootfs), before);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timeout_kills_the_step_and_reports_usage() {
        let f = Fixture::new();
        let mut req = f.request("timeout", "echo started; sleep 100");
        req.timeout = Some(Duration::from_secs(1));
        let id = req.id.clone();
        let ran = f.run(req).await;
        let o = ran.ok();
        assert_eq!(o.termination, Termination::TimedOut);
        // SIGTERM first: `sleep` has no handler, so it ends at once.
        assert_eq!(o.signal, Some(15));
        assert!((1000..10_000).contains(&o.usage.wall_ms), "{:?}", o.usage);
        assert!(o.usage.peak_memory_bytes > 0, "{:?}", o.usage);
        assert_eq!(ran.stdout, ["started"]);
        f.assert_gone(&id);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelling_kills_the_step() {
        let f = Fixture::new();
        let req = f.request("cancel", "sleep 100");
        let cancel = req.cancel.clone();
        let id = req.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        let o = f.run(req).await;
        assert_eq!(o.ok().termination, Termination::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(10));
        f.assert_gone(&id);

        // Already cancelled: nothing starts.
        let req = f.request("cancelled", "echo ran");
        req.cancel.cancel();
        let ran = f.run(req).await;
        assert_eq!(ran.ok().termination, Termination::Cancelled);
        assert!(ran.stdout.is_empty());
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_future_removes_the_container() {
        let f = Fixture::new();
        let req = f.request("dropped", "sleep 100");
        let id = req.id.clone();
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let run = f.runtime.run(req, tx);
        let dropped = tokio::time::timeout(Duration::from_millis(800), run).await;
        assert!(dropped.is_err(), "the step should still have been running");
        f.assert_gone(&id);

        // Dropped while still starting, too.
        let req = f.request("dropped-early", "sleep 100");
        let id = req.id.clone();
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let _ = tokio::time::timeout(Duration::from_millis(5), f.runtime.run(req, tx)).await;
        f.assert_gone(&id);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leftovers_of_dead_owners_are_reaped_and_live_owners_are_left_alone() {
        let f = Fixture::new();
        // An owner that has exited.
        let mut gone = std::process::Command::new("sleep")
            .arg("0")
            .spawn()
            .unwrap();
        let dead_owner = owner_record(gone.id());
        gone.wait().unwrap();
        // Another gantry process that is still running.
        let mut alive = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let live_owner = owner_record(alive.id());

        let dead = f.request("leftover-dead", "sleep 1000");
        let live = f.request("leftover-live", "sleep 1000");
        f.start_raw(&dead, &dead_owner);
        f.start_raw(&live, &live_owner);
        assert!(!f.cgroup_dirs(&dead.id).is_empty());

        assert_eq!(f.runtime.reap_leftovers().await.unwrap(), 1);
        f.assert_gone(&dead.id);
        assert!(f.listed_containers().contains(&live.id));
        assert!(f.bundles.join(&live.id).join("owner").exists());
        assert!(!f.cgroup_dirs(&live.id).is_empty());

        // Once that process is gone too, its container goes.
        alive.kill().unwrap();
        alive.wait().unwrap();
        assert_eq!(f.runtime.reap_leftovers().await.unwrap(), 1);
        f.assert_gone(&live.id);
        assert_eq!(f.runtime.reap_leftovers().await.unwrap(), 0);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mount_points_missing_from_the_shared_rootfs_are_refused() {
        let f = Fixture::new();
        let before = crate::support::snapshot(&f.rootfs);
        let mut req = f.request("mountpoint", "true");
        req.mounts = vec![Fixture::bind(f.dir.path(), "/not-in-image", true)];
        let id = req.id.clone();
        let err = f.run(req).await.outcome.unwrap_err();
        assert!(
            err.to_string().contains("/not-in-image does not exist"),
            "{err}"
        );
        f.assert_gone(&id);
        let mut req = f.request("cwd", "pwd");
        req.cwd = "/app".into();
        let err = f.run(req).await.outcome.unwrap_err();
        assert!(
            err.to_string()
                .contains("working directory /app does not exist"),
            "{err}"
        );
        assert_eq!(crate::support::snapshot(&f.rootfs), before);
        f.finish();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ids_must_be_unique_and_well_formed() {
        let f = Fixture::new();
        let mut req = f.request("bad", "true");
        req.id = "../escape".into();
        let err = f.run(req).await.outcome.unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidRequest { .. }), "{err}");

        let (first, second) = (f.request("same", "sleep 1"), f.request("same", "true"));
        let second = gantry_runtime::StepRequest {
            id: first.id.clone(),
            ..second
        };
        let (a, b) = tokio::join!(f.run(first), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            f.run(second).await
        });
        a.success();
        let err = b.outcome.unwrap_err();
        assert!(matches!(err, RuntimeError::AlreadyExists { .. }), "{err}");
        f.finish();
    }
}

mod overhead {
    use std::time::{Duration, Instant};

    use gantry_runtime::{Runtime, build_spec_with_cgroup_parent};

    use crate::support::Fixture;

    /// Prints the mean time of `run` against bare `runc run` of the same config; read by the
    /// lead, never asserted (run with `--ignored --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement: cargo test -p gantry-runtime --test oci -- --ignored --nocapture"]
    async fn overhead_over_bare_runc() {
        let f = Fixture::new();
        const N: u32 = 20;
        let template = f.request("bare", "true");
        let mut req = template.clone();
        req.args = vec!["true".into()];
        let spec = build_spec_with_cgroup_parent(&req, f.host(), &f.parent).unwrap();
        let bundle = f.dir.path().join("bare");
        std::fs::create_dir(&bundle).unwrap();
        spec.save(bundle.join("config.json")).unwrap();
        // Warm the page cache for both paths.
        f.runc(&["run", "--bundle", bundle.to_str().unwrap(), &req.id]);

        let mut bare = Duration::ZERO;
        for _ in 0..N {
            let start = Instant::now();
            let out = f.runc(&["run", "--bundle", bundle.to_str().unwrap(), &req.id]);
            bare += start.elapsed();
            assert!(out.status.success(), "{out:?}");
        }
        let mut ours = Duration::ZERO;
        for _ in 0..N {
            let mut r = f.request("ours", "");
            r.args = vec!["true".into()];
            let (tx, _rx) = tokio::sync::mpsc::channel(16);
            let start = Instant::now();
            let o = f.runtime.run(r, tx).await.unwrap();
            ours += start.elapsed();
            assert_eq!(o.exit_code, Some(0));
        }
        let (bare, ours) = (bare / N, ours / N);
        println!(
            "mean of {N}: bare `runc run` {:.1} ms, OciRuntime::run {:.1} ms, overhead {:+.1} ms",
            bare.as_secs_f64() * 1e3,
            ours.as_secs_f64() * 1e3,
            (ours.as_secs_f64() - bare.as_secs_f64()) * 1e3
        );
        f.finish();
    }
}
