//! Which process owns a run, so that a later `gantry` can tell a live run from one
//! whose process was killed (kill -9, power loss) and mark it interrupted.

/// Identifies a process across PID reuse and reboots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub boot_id: String,
    pub pid: u32,
    /// Process start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start_ticks: u64,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: hostname(),
            boot_id: boot_id(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// `host/boot_id/start_ticks`; the pid is stored in its own column.
    pub fn encode_host(&self) -> String {
        format!("{}/{}/{}", self.host, self.boot_id, self.start_ticks)
    }

    pub fn decode(pid: i64, host: &str) -> Option<Owner> {
        let mut parts = host.rsplitn(3, '/');
        let start_ticks = parts.next()?.parse().ok()?;
        let boot_id = parts.next()?.to_string();
        let host = parts.next()?.to_string();
        Some(Owner {
            host,
            boot_id,
            pid: u32::try_from(pid).ok()?,
            start_ticks,
        })
    }

    /// Whether this owner may still be running. Owners on other hosts are assumed
    /// alive: only their own machine can tell.
    pub fn may_be_alive(&self) -> bool {
        if self.host != hostname() {
            return true;
        }
        if self.boot_id != boot_id() {
            return false;
        }
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come fields 3.. ; start time is field 22, i.e. index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_round_trips() {
        let me = Owner::current();
        assert!(me.start_ticks > 0);
        let back = Owner::decode(me.pid as i64, &me.encode_host()).unwrap();
        assert_eq!(back, me);
        assert!(back.may_be_alive());
    }

    #[test]
    fn a_reused_pid_or_other_boot_is_dead() {
        let me = Owner::current();
        let reused = Owner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!reused.may_be_alive());
        let rebooted = Owner {
            boot_id: "other".into(),
            ..me.clone()
        };
        assert!(!rebooted.may_be_alive());
        let elsewhere = Owner {
            host: "some-other-host".into(),
            boot_id: "other".into(),
            ..me
        };
        assert!(elsewhere.may_be_alive());
    }

    #[test]
    fn a_child_is_alive_until_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        // The child's own identity, as it would have recorded itself.
        let o = Owner {
            pid,
            start_ticks: start_ticks(pid).unwrap(),
            ..Owner::current()
        };
        assert!(o.may_be_alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!o.may_be_alive());
    }
}
