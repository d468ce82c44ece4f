//! Where a container's cgroups live, what they recorded, and how to remove them.
//!
//! runc creates the container's cgroup `/<parent>/<id>` in every mounted hierarchy (on a
//! "hybrid" host that is each v1 controller plus the unified v2 tree). Usage must be read after
//! the process exits but before the cgroup is removed, because the kernel keeps the peak memory,
//! CPU time and OOM/pids counters only as long as the cgroup exists.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    pub mountpoint: PathBuf,
    /// v1: the controllers (and `name=...`) bound to it; v2: empty.
    pub controllers: Vec<String>,
    pub unified: bool,
}

/// The cgroup hierarchies mounted on this host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupLayout {
    pub hierarchies: Vec<Hierarchy>,
}

/// Counters read from a container's cgroup after its process exited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupStats {
    pub peak_memory_bytes: u64,
    pub cpu_micros: u64,
    pub oom_kills: u64,
    pub pids_max_events: u64,
}

impl CgroupLayout {
    pub fn detect() -> io::Result<Self> {
        let text = fs::read_to_string("/proc/self/mountinfo")?;
        Ok(Self::from_mountinfo(&text))
    }

    /// Keeps the mounts of a hierarchy's root (a bind mount of a sub-cgroup, as seen inside
    /// some containers, would map `/<parent>/<id>` to the wrong directory) and the first mount of
    /// each hierarchy.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            let (Some(root), Some(mountpoint), Some(fstype)) =
                (left.get(3), left.get(4), right.first())
            else {
                continue;
            };
            if *root != "/" {
                continue;
            }
            let hierarchy = match *fstype {
                "cgroup2" => Hierarchy {
                    mountpoint: PathBuf::from(unescape_mountinfo(mountpoint)),
                    controllers: Vec::new(),
                    unified: true,
                },
                "cgroup" => {
                    let superopts = right.get(2).copied().unwrap_or("");
                    let mut controllers: Vec<String> = superopts
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro" | "") && !o.contains('/'))
                        .map(str::to_owned)
                        .collect();
                    controllers.sort();
                    Hierarchy {
                        mountpoint: PathBuf::from(unescape_mountinfo(mountpoint)),
                        controllers,
                        unified: false,
                    }
                }
                _ => continue,
            };
            let duplicate = hierarchies
                .iter()
                .any(|h| h.unified == hierarchy.unified && h.controllers == hierarchy.controllers);
            if !duplicate {
                hierarchies.push(hierarchy);
            }
        }
        CgroupLayout { hierarchies }
    }

    /// The container's directory in every hierarchy; `rel` is `<parent>/<id>`.
    pub fn container_dirs(&self, rel: &str) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.mountpoint.join(rel))
            .collect()
    }

    fn v1_dir(&self, controller: &str, rel: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| !h.unified && h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mountpoint.join(rel))
    }

    fn unified_dir(&self, rel: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.unified)
            .map(|h| h.mountpoint.join(rel))
    }

    /// Where the v1 memory controller is mounted, if it is.
    pub fn v1_memory_root(&self) -> Option<PathBuf> {
        self.v1_dir("memory", "")
    }

    /// Reads what the kernel recorded for the cgroup `rel`; a counter whose file is missing
    /// (an old kernel, an unmounted controller) reads as 0 rather than failing the step.
    pub fn read_stats(&self, rel: &str) -> CgroupStats {
        let read = |path: Option<PathBuf>| path.and_then(|p| fs::read_to_string(p).ok());
        let mut stats = CgroupStats::default();
        if let Some(memory) = self.v1_dir("memory", rel) {
            stats.peak_memory_bytes = read(Some(memory.join("memory.max_usage_in_bytes")))
                .and_then(|t| parse_single(&t))
                .unwrap_or(0);
            stats.oom_kills = read(Some(memory.join("memory.oom_control")))
                .and_then(|t| parse_keyed(&t, "oom_kill"))
                .unwrap_or(0);
        } else if let Some(unified) = self.unified_dir(rel) {
            stats.peak_memory_bytes = read(Some(unified.join("memory.peak")))
                .and_then(|t| parse_single(&t))
                .unwrap_or(0);
            stats.oom_kills = read(Some(unified.join("memory.events")))
                .and_then(|t| parse_keyed(&t, "oom_kill"))
                .unwrap_or(0);
        }
        if let Some(cpuacct) = self.v1_dir("cpuacct", rel) {
            stats.cpu_micros = read(Some(cpuacct.join("cpuacct.usage")))
                .and_then(|t| parse_single(&t))
                .map(|ns| ns / 1000)
                .unwrap_or(0);
        } else if let Some(unified) = self.unified_dir(rel) {
            stats.cpu_micros = read(Some(unified.join("cpu.stat")))
                .and_then(|t| parse_keyed(&t, "usage_usec"))
                .unwrap_or(0);
        }
        let pids = self.v1_dir("pids", rel).or_else(|| self.unified_dir(rel));
        stats.pids_max_events = read(pids.map(|p| p.join("pids.events")))
            .and_then(|t| parse_keyed(&t, "max"))
            .unwrap_or(0);
        stats
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(value) = u8::try_from(value) {
                    out.push(value);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A file holding one number, like `memory.peak` or `cpuacct.usage`.
pub(crate) fn parse_single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A "flat keyed" file (`key value` per line), like `memory.events` or `pids.events`.
pub(crate) fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then(|| parts.next()?.parse().ok())?
    })
}

/// Removes the given cgroup directories, killing whatever is still inside them first. A cgroup
/// cannot be removed while it has members, and a container's processes can outlive its runtime
/// process when that was killed mid-start.
pub(crate) fn remove_cgroup_dirs(dirs: &[PathBuf]) -> Result<(), (PathBuf, io::Error)> {
    let mut first_error = None;
    for dir in dirs {
        if let Err(e) = remove_cgroup_dir(dir) {
            first_error.get_or_insert((dir.clone(), e));
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn remove_cgroup_dir(dir: &Path) -> io::Result<()> {
    const ATTEMPTS: u32 = 200;
    let mut attempt = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < ATTEMPTS => {
                attempt += 1;
                kill_members(dir);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // The process may already be gone; that is what we want anyway.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:32 /sub /mnt/memory\\040bind rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn mountinfo_of_a_hybrid_host_lists_v1_controllers_and_the_unified_tree() {
        let layout = CgroupLayout::from_mountinfo(HYBRID);
        let points: Vec<_> = layout
            .hierarchies
            .iter()
            .map(|h| h.mountpoint.to_str().unwrap())
            .collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified"
            ]
        );
        assert_eq!(
            layout.v1_dir("memory", "gantry/a").unwrap(),
            Path::new("/sys/fs/cgroup/memory/gantry/a")
        );
        assert_eq!(
            layout.unified_dir("gantry/a").unwrap(),
            Path::new("/sys/fs/cgroup/unified/gantry/a")
        );
        assert_eq!(layout.container_dirs("g/x").len(), 6);
    }

    #[test]
    fn mountinfo_of_a_combined_cpu_cpuacct_mount_serves_both_controllers() {
        let layout = CgroupLayout::from_mountinfo(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(
            layout.v1_dir("cpuacct", "g/x").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/g/x")
        );
        assert_eq!(layout.v1_dir("cpu", "g/x"), layout.v1_dir("cpuacct", "g/x"));
    }

    #[test]
    fn mountinfo_of_a_pure_v2_host_has_one_unified_hierarchy() {
        let layout = CgroupLayout::from_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(layout.hierarchies.len(), 1);
        assert!(layout.v1_dir("memory", "x").is_none());
        assert_eq!(layout.v1_memory_root(), None);
        assert_eq!(
            layout.unified_dir("g/x").unwrap(),
            Path::new("/sys/fs/cgroup/g/x")
        );
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/trailing\\"), "/trailing\\");
    }

    #[test]
    fn flat_keyed_files_are_parsed() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(oom_control, "oom_kill"), Some(3));
        assert_eq!(parse_keyed(oom_control, "under_oom"), Some(0));
        let memory_events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_keyed(memory_events, "oom_kill"), Some(1));
        assert_eq!(parse_keyed(memory_events, "max"), Some(12));
        assert_eq!(parse_keyed("max 7\n", "max"), Some(7));
        let cpu_stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(parse_keyed(cpu_stat, "usage_usec"), Some(123456));
        assert_eq!(parse_keyed(cpu_stat, "nr_periods"), None);
        assert_eq!(parse_keyed("max garbage\n", "max"), None);
    }

    #[test]
    fn single_value_files_are_parsed() {
        assert_eq!(parse_single("1048576\n"), Some(1048576));
        assert_eq!(parse_single("max\n"), None);
        assert_eq!(parse_single(""), None);
    }

    #[test]
    fn stats_are_read_from_v1_controller_files() {
        let root = tempfile::tempdir().unwrap();
        let mountinfo = format!(
            "1 0 0:1 / {r}/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / {r}/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             3 0 0:3 / {r}/pids rw - cgroup cgroup rw,pids\n",
            r = root.path().display()
        );
        let layout = CgroupLayout::from_mountinfo(&mountinfo);
        for c in ["memory", "cpuacct", "pids"] {
            fs::create_dir_all(root.path().join(c).join("g/x")).unwrap();
        }
        let dir = |c: &str, f: &str| root.path().join(c).join("g/x").join(f);
        fs::write(dir("memory", "memory.max_usage_in_bytes"), "5000\n").unwrap();
        fs::write(
            dir("memory", "memory.oom_control"),
            "under_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(dir("cpuacct", "cpuacct.usage"), "7000000\n").unwrap();
        fs::write(dir("pids", "pids.events"), "max 4\n").unwrap();
        assert_eq!(
            layout.read_stats("g/x"),
            CgroupStats {
                peak_memory_bytes: 5000,
                cpu_micros: 7000,
                oom_kills: 2,
                pids_max_events: 4
            }
        );
    }

    #[test]
    fn stats_are_read_from_v2_files() {
        let root = tempfile::tempdir().unwrap();
        let layout = CgroupLayout::from_mountinfo(&format!(
            "1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n",
            root.path().display()
        ));
        let dir = root.path().join("g/x");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("memory.peak"), "9000\n").unwrap();
        fs::write(dir.join("memory.events"), "max 1\noom 1\noom_kill 1\n").unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 42\nuser_usec 40\n").unwrap();
        fs::write(dir.join("pids.events"), "max 0\n").unwrap();
        assert_eq!(
            layout.read_stats("g/x"),
            CgroupStats {
                peak_memory_bytes: 9000,
                cpu_micros: 42,
                oom_kills: 1,
                pids_max_events: 0
            }
        );
        // A cgroup that is already gone reads as zeros instead of failing.
        assert_eq!(layout.read_stats("g/missing"), CgroupStats::default());
    }
}
