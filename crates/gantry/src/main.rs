//! `gantry`: the command-line interface. Thin: parses arguments, opens the stores under
//! GANTRY_HOME, calls the engine and renders tables, progress and JSON.

/// The allocator of every gantry process (server, model replicas, steps' built-in components):
/// request bodies and tensors are large, short-lived buffers, which mimalloc serves from
/// per-thread pages where glibc's malloc consolidates and searches its bins.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod commands;
mod compile;
mod component;
mod demo;
mod demo_serve;
mod deployments;
mod drift;
mod exit;
mod gc;
mod home;
mod hook;
mod images;
mod kube;
mod model_server;
mod models;
mod monitor;
mod progress;
mod queue;
mod register;
mod remote;
mod remote_run;
mod render;
mod serve;
mod step_exec;
mod step_report;
mod trust_cmd;
mod upload;
mod usage;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    die_quietly_on_a_closed_pipe();
    warn_secrets_on_the_command_line(std::env::args());
    let args = cli::Cli::parse();
    init_tracing(&args.global);
    if matches!(args.command, cli::Command::StepExec { .. }) {
        // Before the async runtime's threads exist: they inherit the mask.
        step_exec::block_forwarded_signals();
        let _ = step_exec::SET_FOR_US.set(step_exec::use_fetched_ca_bundle());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(commands::dispatch(args)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{}", exit::render_error(&err));
            ExitCode::from(exit::code_for(&err))
        }
    }
}

/// `gantry runs | head -1`: like every Unix filter, end quietly when the reader goes away.
/// Rust ignores SIGPIPE, so a write to a closed pipe would otherwise fail and `println!`
/// panic with a backtrace.
#[allow(unsafe_code)]
fn die_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL installs no
    // handler code, so nothing here runs in signal context.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("warning: cannot restore SIGPIPE: {e}");
    }
}

/// Every user of the machine can read a process's arguments (`ps`, /proc/PID/cmdline):
/// a token or a database password given there is not secret. The environment
/// (GANTRY_TOKEN, GANTRY_DB) is readable only by the same user.
fn warn_secrets_on_the_command_line(args: impl Iterator<Item = String>) {
    let args: Vec<String> = args.collect();
    for (i, a) in args.iter().enumerate() {
        let value = |flag: &str| {
            a.strip_prefix(&format!("{flag}="))
                .map(str::to_owned)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned().unwrap_or_default()))
        };
        if value("--token").is_some() {
            eprintln!(
                "warning: --token on the command line is visible to every user of this machine (ps); set GANTRY_TOKEN instead"
            );
        }
        if let Some(db) = value("--db")
            && db.contains('@')
            && db.split_once("://").is_some_and(|(_, rest)| {
                rest.split('@')
                    .next()
                    .is_some_and(|auth| auth.contains(':'))
            })
        {
            eprintln!(
                "warning: --db with a password on the command line is visible to every user of this machine (ps); set GANTRY_DB instead"
            );
        }
    }
}

fn init_tracing(g: &cli::Global) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match g.log_format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.without_time().init(),
    }
}
