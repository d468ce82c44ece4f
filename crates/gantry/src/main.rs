//! `gantry`: the command-line interface. Thin: parses arguments, opens the stores under
//! GANTRY_HOME, calls the engine and renders tables, progress and JSON.

mod cli;
mod commands;
mod component;
mod demo;
mod demo_serve;
mod deployments;
mod exit;
mod home;
mod hook;
mod model_server;
mod models;
mod monitor;
mod progress;
mod register;
mod remote;
mod remote_run;
mod render;
mod serve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_tracing(&args.global);
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
