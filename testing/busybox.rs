//! A busybox rootfs tar for tests that run real containers, built from Debian's
//! busybox-static by scripts/busybox-rootfs.sh once per busybox binary: kept in the temp dir
//! under a name keyed by the binary's size and mtime and shared by every test process
//! (written under a private name, then renamed), so test runs do not pile up copies.
//!
//! One file for every crate's tests, included with `#[path = ".../testing/busybox.rs"]`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let meta = std::fs::metadata("/bin/busybox").unwrap_or_else(|_| {
            panic!(
                "these tests need /bin/busybox: apt-get install busybox-static (scripts/test.sh does)"
            )
        });
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let tmp = std::env::temp_dir();
        let out = tmp.join(format!("gantry-test-busybox-{}-{mtime}.tar", meta.len()));
        if out.exists() {
            return out;
        }
        let partial = tmp.join(format!(
            "gantry-test-busybox-{}.tar.partial",
            std::process::id()
        ));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-rootfs.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .arg(&partial)
            .status()
            .expect("running scripts/busybox-rootfs.sh");
        assert!(status.success(), "building the busybox rootfs failed");
        std::fs::rename(&partial, &out).expect("renaming the busybox rootfs tar into place");
        out
    })
}
