//! gantry-init: PID 1 of every Gantry container.
//!
//! Usage: `gantry-init -- PROGRAM [ARGS...]`.
//!
//! It starts PROGRAM as its only direct child and then, until that child exits:
//! - reaps every process that ends up as its child (orphans are re-parented to PID 1, and a
//!   PID 1 that never waits for them leaves zombies that count against the pids limit);
//! - forwards the signals a supervisor sends (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, ...) to
//!   the child: the kernel drops signals sent to a namespace's init unless it handles them, so a
//!   step that is PID 1 itself never sees a SIGTERM it did not install a handler for;
//! - exits with the child's exit status, or 128 + N when signal N killed it (what a shell and
//!   runc report), so exit codes and signals read as before.
//!
//! When PROGRAM cannot be started it says why on stderr and exits 127 (not found) or 126 (any
//! other reason), as shells do.
//!
//! It is built by `build.rs` as a static binary with nothing but `std` (no crates: the build
//! script calls `rustc` on this one file), so it runs in any image, even one without a libc.
//! The few C functions it needs come from the statically linked C library.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// glibc's `sigset_t` (1024 bits on every Linux architecture).
#[repr(C)]
struct SigSet([u64; 16]);

/// `siginfo_t` is 128 bytes; only `si_signo` is read.
#[repr(C)]
struct SigInfo {
    signo: i32,
    _rest: [i32; 31],
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn sigfillset(set: *mut SigSet) -> i32;
    fn sigemptyset(set: *mut SigSet) -> i32;
    fn sigdelset(set: *mut SigSet, signo: i32) -> i32;
    fn pthread_sigmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
    fn sigtimedwait(set: *const SigSet, info: *mut SigInfo, timeout: *const Timespec) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, signo: i32) -> i32;
}

const SIG_SETMASK: i32 = 2;
const WNOHANG: i32 = 1;
const SIGCHLD: i32 = 17;
/// Signals that only the kernel raises for a faulting thread (or job control from a terminal,
/// which a container does not have): never waited for, never forwarded.
const NOT_FORWARDED: [i32; 10] = [
    4,  // SIGILL
    5,  // SIGTRAP
    6,  // SIGABRT
    7,  // SIGBUS
    8,  // SIGFPE
    11, // SIGSEGV
    20, // SIGTSTP
    21, // SIGTTIN
    22, // SIGTTOU
    31, // SIGSYS
];

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    if args.is_empty() {
        say("usage: gantry-init -- PROGRAM [ARGS...]");
        return ExitCode::from(2);
    }

    // Every forwardable signal is blocked here and collected with sigtimedwait below; the child
    // gets an empty mask back before exec (a blocked mask survives exec). No disposition is
    // changed here, so the child starts with the defaults (std resets SIGPIPE's itself).
    let mut waited = SigSet([0; 16]);
    // SAFETY: plain libc calls on a sigset we own.
    unsafe {
        sigfillset(&mut waited);
        for signo in NOT_FORWARDED {
            sigdelset(&mut waited, signo);
        }
        if pthread_sigmask(SIG_SETMASK, &waited, std::ptr::null_mut()) != 0 {
            say("cannot block signals");
            return ExitCode::from(126);
        }
    }

    let program = args.remove(0);
    let mut command = Command::new(&program);
    command.args(&args);
    // The child gets its own process group: a signal for the whole group (a terminal's, or a
    // step's own `kill 0`) does not reach this init.
    command.process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls on a local sigset.
    unsafe {
        command.pre_exec(|| {
            let mut none = SigSet([0; 16]);
            sigemptyset(&mut none);
            if pthread_sigmask(SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::other("cannot unblock signals"));
            }
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            say(&format!(
                "cannot run {:?}: {e}",
                program.to_string_lossy().as_ref()
            ));
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return ExitCode::from(code);
        }
    };
    let Ok(child_pid) = i32::try_from(child.id()) else {
        say("child pid out of range");
        return ExitCode::from(126);
    };
    // From here on the child is reaped with waitpid below, never through `child`.
    std::mem::forget(child);

    let mut info = SigInfo {
        signo: 0,
        _rest: [0; 31],
    };
    // Reap at least once a second even if a SIGCHLD was merged with another.
    let tick = Timespec { sec: 1, nsec: 0 };
    loop {
        // SAFETY: valid pointers to owned values.
        let signo = unsafe { sigtimedwait(&waited, &mut info, &tick) };
        if signo > 0 && signo != SIGCHLD {
            // SAFETY: kill(2) on our child's pid; it is not reaped yet (only this loop reaps),
            // so the pid cannot belong to another process.
            unsafe { kill(child_pid, signo) };
        }
        if let Some(status) = reap(child_pid) {
            return ExitCode::from(exit_code(status));
        }
    }
}

/// Waits for every child that has ended; the main child's wait status once it has.
fn reap(child_pid: i32) -> Option<i32> {
    let mut main_status = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with a pointer to a local.
        let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
        if pid <= 0 {
            return main_status;
        }
        if pid == child_pid {
            main_status = Some(status);
        }
    }
}

/// A wait status as a shell reports it: the exit code, or 128 + the signal's number.
fn exit_code(status: i32) -> u8 {
    let signal = status & 0x7f;
    if signal == 0 {
        ((status >> 8) & 0xff) as u8
    } else {
        (128 + signal).min(255) as u8
    }
}

fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "gantry-init: {message}");
}
