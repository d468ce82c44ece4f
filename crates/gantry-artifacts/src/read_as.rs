//! Reading confined inputs with an unprivileged user's permissions.
//!
//! A server running as root would otherwise read any file in the data root, whatever its mode.
//! So, when an input is read "as" a user, the thread doing the reading switches its
//! *filesystem* identity to that user for the duration of the walk:
//!
//! - `setfsgid`/`setfsuid` are per-thread on Linux (glibc and musl call the syscall directly;
//!   unlike `setuid`, they are not broadcast to the other threads), and they only change the
//!   ids used for permission checks. Changing the fsuid from 0 to non-zero also drops
//!   CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
//!   CAP_LINUX_IMMUTABLE, CAP_MAC_OVERRIDE and CAP_MKNOD from the effective set, so the kernel
//!   checks every open exactly as for that user; changing it back to 0 raises them again.
//! - The supplementary groups are cleared too, with the raw `setgroups` syscall, which is
//!   per-thread (glibc's `setgroups` wrapper is broadcast to every thread, so it is not used):
//!   otherwise root's own groups would still grant access.
//!
//! The switch runs on a tokio `spawn_blocking` thread, which runs one closure at a time and is
//! reused afterwards. `ReadAsGuard` restores the saved identity when dropped, which happens
//! before the closure returns, also when the walk panics (unwinding drops it). If the identity
//! cannot be restored the process aborts, because handing a pool thread with the wrong
//! credentials back to tokio would make unrelated work fail or succeed in surprising ways.
//! Restoring cannot fail in a process that could switch: the saved ids are its own, and
//! CAP_SETGID (for the groups) is not among the capabilities a fsuid change drops.

use std::io;

use nix::unistd::{Gid, Uid, getegid, geteuid, getgroups, setfsgid, setfsuid};

/// The identity this thread had before a switch; restores it when dropped.
#[derive(Debug)]
pub(crate) struct ReadAsGuard {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

/// Switches this thread's filesystem identity to `uid`/`gid` with no supplementary groups.
/// None when the process already is that user (nothing to switch); an error when the
/// process may not switch (it is not root).
pub(crate) fn read_as(uid: u32, gid: u32) -> io::Result<Option<ReadAsGuard>> {
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    if geteuid() == uid && getegid() == gid {
        return Ok(None);
    }
    let groups = getgroups().map_err(io::Error::from)?;
    // Groups and gid first, while the thread still has its privileges. Nothing has changed
    // when this fails (it does when the process is not root).
    set_thread_groups(&[])?;
    // From here on, dropping `saved` restores everything.
    let saved = ReadAsGuard {
        uid: current_fsuid(),
        gid: current_fsgid(),
        groups,
    };
    setfsgid(gid);
    if current_fsgid() != gid {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    setfsuid(uid);
    if current_fsuid() != uid {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(Some(saved))
}

impl Drop for ReadAsGuard {
    fn drop(&mut self) {
        // The uid first: going back to fsuid 0 gives back the capabilities the rest needs.
        setfsuid(self.uid);
        setfsgid(self.gid);
        let groups = set_thread_groups(&self.groups);
        let restored = groups.is_ok()
            && current_fsuid() == self.uid
            && current_fsgid() == self.gid
            && getgroups().is_ok_and(|g| g == self.groups);
        if !restored {
            eprintln!(
                "gantry-artifacts: cannot restore this thread's filesystem identity \
                 (uid {}, gid {}) after reading an input as another user: aborting",
                self.uid, self.gid
            );
            std::process::abort();
        }
    }
}

/// setfsuid with an invalid id changes nothing and returns the current fsuid.
fn current_fsuid() -> Uid {
    setfsuid(Uid::from_raw(u32::MAX))
}

fn current_fsgid() -> Gid {
    setfsgid(Gid::from_raw(u32::MAX))
}

#[cfg(target_pointer_width = "64")]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;
// On 32-bit x86 and arm, SYS_setgroups takes 16-bit ids; setgroups32 takes gid_t.
#[cfg(all(
    target_pointer_width = "32",
    any(target_arch = "x86", target_arch = "arm")
))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;

/// Sets the supplementary groups of the calling thread only.
#[allow(unsafe_code)]
pub(crate) fn set_thread_groups(groups: &[Gid]) -> io::Result<()> {
    let raw: Vec<libc::gid_t> = groups.iter().map(|g| g.as_raw()).collect();
    // SAFETY: setgroups reads `raw.len()` gid_t values from `raw.as_ptr()`, a live Vec of
    // exactly that many gid_t (a dangling but aligned pointer when empty, which the kernel
    // does not read). The raw syscall changes only the calling thread's credentials.
    let rc = unsafe { libc::syscall(SYS_SETGROUPS, raw.len(), raw.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// The crate's one rule for skipped tests, shared with its integration tests.
#[cfg(test)]
#[path = "../../../testing/skip.rs"]
mod skip;

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Runs `f` on a fresh thread, so a failed test cannot leave this thread switched.
    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("test thread panicked")
    }

    #[test]
    fn switching_drops_root_groups_and_is_undone_by_the_guard() {
        if !geteuid().is_root() {
            skip::because(
                "switching filesystem identity needs root (scripts/test.sh runs as root)",
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("group-readable");
        fs::write(&secret, "x").unwrap();
        // root:root 0640 — readable through group 0 only.
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        on_thread(move || {
            // As if the server had been started with root's groups.
            set_thread_groups(&[Gid::from_raw(0)]).unwrap();
            {
                let _guard = read_as(65534, 65534).unwrap().expect("a switch");
                assert_eq!(getgroups().unwrap(), Vec::<Gid>::new());
                assert_eq!(current_fsuid(), Uid::from_raw(65534));
                assert_eq!(current_fsgid(), Gid::from_raw(65534));
                let err = fs::read(&secret).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
            }
            // Restored: root reads it again, and the thread has its groups back.
            assert_eq!(fs::read(&secret).unwrap(), b"x");
            assert_eq!(current_fsuid(), Uid::from_raw(0));
            assert_eq!(current_fsgid(), Gid::from_raw(0));
            assert_eq!(getgroups().unwrap(), vec![Gid::from_raw(0)]);
        });
    }

    #[test]
    fn the_guard_restores_on_panic() {
        if !geteuid().is_root() {
            skip::because(
                "switching filesystem identity needs root (scripts/test.sh runs as root)",
            );
            return;
        }
        on_thread(|| {
            let caught = std::panic::catch_unwind(|| {
                let _guard = read_as(65534, 65534).unwrap();
                panic!("walk failed");
            });
            assert!(caught.is_err());
            assert_eq!(current_fsuid(), Uid::from_raw(0));
            assert_eq!(current_fsgid(), Gid::from_raw(0));
        });
    }

    #[test]
    fn reading_as_oneself_switches_nothing() {
        let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
        assert!(read_as(uid, gid).unwrap().is_none());
    }
}
