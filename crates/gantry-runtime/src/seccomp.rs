//! The default seccomp profile: allow everything except a deny list.
//!
//! An allow-list (Docker's approach) breaks whenever a new libc starts using a new syscall; a
//! deny-list of the syscalls that only matter for escaping, tampering with the kernel or the
//! host, or spying on other processes keeps arbitrary ML images working. Capabilities are dropped
//! too, so most of these fail anyway; the filter is the second line, and the only one for the
//! calls an unprivileged user may make (`unshare(CLONE_NEWUSER)`, `userfaultfd`, `bpf`, ...).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// Syscalls that fail with `EPERM` in every container.
pub const BLOCKED_SYSCALLS: &[&str] = &[
    // Mounts and root changes: the container's view of the filesystem is fixed.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // New namespaces (a user namespace would hand back capabilities) and joining others'.
    "unshare",
    "setns",
    // Reading or writing other processes' memory.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    // Kernel code, power state and swap.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    // The host clock.
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    // Kernel attack surface an unprivileged process could otherwise reach.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "lookup_dcookie",
    "fanotify_init",
    // Host filesystems by handle (the "shocker" escape), quotas, logs, terminals, hardware.
    "open_by_handle_at",
    "name_to_handle_at",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "vhangup",
    "nfsservctl",
    "iopl",
    "ioperm",
    "uselib",
    "_sysctl",
    "vm86",
    "vm86old",
];

const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The profile every container gets.
pub fn default_seccomp() -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    let eperm = u32::try_from(libc::EPERM).unwrap_or(1);
    let enosys = u32::try_from(libc::ENOSYS).unwrap_or(38);
    let mut syscalls: Vec<LinuxSyscall> = vec![
        LinuxSyscallBuilder::default()
            .names(
                BLOCKED_SYSCALLS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect::<Vec<_>>(),
            )
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(eperm)
            .build()?,
        // `clone` can create a user namespace too; its flags are the first argument on the
        // architectures we build for.
        LinuxSyscallBuilder::default()
            .names(vec!["clone".to_owned()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(eperm)
            .args(vec![
                LinuxSeccompArgBuilder::default()
                    .index(0usize)
                    .value(CLONE_NEWUSER)
                    .value_two(CLONE_NEWUSER)
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                    .build()?,
            ])
            .build()?,
    ];
    // clone3 passes its flags in memory, where a filter cannot look; ENOSYS makes libc fall back
    // to `clone`, which the rule above does check.
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_owned()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(enosys)
            .build()?,
    );
    let mut builder = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(syscalls);
    let arches = architectures();
    if !arches.is_empty() {
        builder = builder.architectures(arches);
    }
    builder.build()
}

/// The native architecture plus the compat ones the kernel also accepts syscalls from: a filter
/// that only knows x86_64 would let a 32-bit `int 0x80` caller through unfiltered.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_allows_by_default_and_denies_the_dangerous_calls_with_eperm() {
        let profile = default_seccomp().unwrap();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        let rules = profile.syscalls().as_ref().unwrap();
        let denied: Vec<&String> = rules
            .iter()
            .filter(|r| {
                r.action() == LinuxSeccompAction::ScmpActErrno
                    && r.errno_ret() == Some(libc::EPERM as u32)
                    && r.args().is_none()
            })
            .flat_map(|r| r.names())
            .collect();
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "bpf",
            "perf_event_open",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "open_by_handle_at",
            "name_to_handle_at",
            "userfaultfd",
            "lookup_dcookie",
            "iopl",
            "ioperm",
            "quotactl",
            "syslog",
            "vhangup",
            "nfsservctl",
        ] {
            assert!(denied.iter().any(|d| *d == name), "{name} is not denied");
        }
        // Ordinary process creation stays allowed.
        assert!(
            !denied
                .iter()
                .any(|d| *d == "clone" || *d == "execve" || *d == "fork")
        );
    }

    #[test]
    fn clone_is_denied_only_with_clone_newuser() {
        let profile = default_seccomp().unwrap();
        let clone = profile
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.names() == &["clone".to_owned()])
            .unwrap();
        let args = clone.args().as_ref().unwrap();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(args[0].value(), CLONE_NEWUSER);
        assert_eq!(args[0].value_two(), Some(CLONE_NEWUSER));
    }

    #[test]
    fn profile_serializes_with_oci_field_names() {
        let json = serde_json::to_value(default_seccomp().unwrap()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(json["syscalls"][0]["errnoRet"], libc::EPERM);
        assert_eq!(json["syscalls"][1]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
        }
    }
}
