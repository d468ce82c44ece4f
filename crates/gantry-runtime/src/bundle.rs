//! The per-container OCI bundle directory and the record of which process owns it.
//!
//! `bundles_dir/<id>/` holds `config.json`, the runtime's log and an `owner` file naming the
//! gantry process that started the container. Several gantry processes may share one bundles
//! directory, so leftovers are reaped only when their owner is provably gone: a pid alone is not
//! enough (pids are reused), hence the process start time and the boot id.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::RuntimeError;

pub(crate) const OWNER_FILE: &str = "owner";
pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const RUNTIME_LOG_FILE: &str = "runtime.log";

/// Identifies one process across pid reuse and reboots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot when the process started.
    pub start_time: u64,
    pub boot_id: String,
}

impl Owner {
    pub fn current() -> io::Result<Owner> {
        let pid = i32::try_from(std::process::id()).map_err(io::Error::other)?;
        Owner::of_pid(pid)
    }

    pub fn of_pid(pid: i32) -> io::Result<Owner> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let start_time = parse_start_time(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected /proc/{pid}/stat"),
            )
        })?;
        let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id")?
            .trim()
            .to_owned();
        Ok(Owner {
            pid,
            start_time,
            boot_id,
        })
    }

    pub fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.split_whitespace();
        let owner = Owner {
            pid: parts.next()?.parse().ok()?,
            start_time: parts.next()?.parse().ok()?,
            boot_id: parts.next()?.to_owned(),
        };
        parts.next().is_none().then_some(owner)
    }

    pub fn render(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.boot_id)
    }

    /// The same process (same pid, same start time, same boot) is still running.
    pub fn is_alive(&self) -> bool {
        Owner::of_pid(self.pid).is_ok_and(|now| now == *self)
    }
}

/// The `comm` field (2) may hold spaces and parentheses, so fields are counted after the last
/// `)`; the start time is field 22, the 20th after `comm`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Creates `dir` (it must not exist yet: ids are unique) and writes the owner record before the
/// config, so a bundle is never seen without its owner once it holds a config.
pub(crate) fn write_bundle(
    dir: &Path,
    id: &str,
    owner: &str,
    config: &[u8],
) -> Result<(), RuntimeError> {
    let write_error = |path: &Path, source| RuntimeError::BundleWrite {
        path: path.to_path_buf(),
        source,
    };
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::AlreadyExists {
                id: id.to_owned(),
                path: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(write_error(dir, e)),
    }
    for (name, content) in [(OWNER_FILE, owner.as_bytes()), (CONFIG_FILE, config)] {
        let path = dir.join(name);
        // The config holds the step's environment, which may carry secrets.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(content))
            .map_err(|e| {
                // A half-written bundle of ours must not look like someone's container.
                let _ = fs::remove_dir_all(dir);
                write_error(&path, e)
            })?;
    }
    Ok(())
}

/// Removes a bundle directory; one that is already gone is fine.
pub(crate) fn remove_bundle(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 987654 1234567 100 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("4242 (short) S 1 2"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
    }

    #[test]
    fn owner_records_round_trip_and_reject_garbage() {
        let owner = Owner {
            pid: 17,
            start_time: 99,
            boot_id: "6afc6b2e-89d4-47a2-b564-aa17bfce703d".into(),
        };
        assert_eq!(Owner::parse(&owner.render()), Some(owner));
        assert_eq!(Owner::parse(""), None);
        assert_eq!(Owner::parse("17 99"), None);
        assert_eq!(Owner::parse("x 99 boot"), None);
        assert_eq!(Owner::parse("17 99 boot extra"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_record_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        let restarted = Owner {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(!restarted.is_alive());
        let other_boot = Owner {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..me.clone()
        };
        assert!(!other_boot.is_alive());
    }

    #[test]
    fn an_exited_process_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let owner = Owner::of_pid(pid).unwrap();
        child.wait().unwrap();
        assert!(!owner.is_alive());
    }

    #[test]
    fn bundles_are_private_and_never_overwritten() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c1");
        write_bundle(&dir, "c1", "1 2 b\n", b"{}").unwrap();
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(CONFIG_FILE)), 0o600);
        assert_eq!(fs::read_to_string(dir.join(OWNER_FILE)).unwrap(), "1 2 b\n");
        let again = write_bundle(&dir, "c1", "1 2 b\n", b"{}").unwrap_err();
        assert!(
            matches!(again, RuntimeError::AlreadyExists { .. }),
            "{again}"
        );
        remove_bundle(&dir).unwrap();
        assert!(!dir.exists());
        remove_bundle(&dir).unwrap();
    }
}
