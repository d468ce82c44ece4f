//! Live progress of a run: a view of step states on a terminal, plain lines otherwise,
//! nothing (only the final JSON) for scripts.

use gantry_engine::Event;
use gantry_store::StepStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Terminal,
    Plain,
    Quiet,
}

impl Mode {
    pub fn pick(json: bool) -> Mode {
        if json {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        }
    }
}

/// Renders events until the channel closes.
pub async fn render(mode: Mode, mut rx: UnboundedReceiver<Event>) {
    match mode {
        Mode::Quiet => while rx.recv().await.is_some() {},
        Mode::Plain => {
            while let Some(e) = rx.recv().await {
                if let Some(line) = plain_line(&e) {
                    eprintln!("{line}");
                }
            }
        }
        Mode::Terminal => terminal(rx).await,
    }
}

fn plain_line(e: &Event) -> Option<String> {
    Some(match e {
        Event::RunQueued { run_id, reason, .. } => format!("run {run_id}: queued ({reason})"),
        Event::RunStarted {
            run_id,
            pipeline,
            steps,
        } => format!("run {run_id}: pipeline {pipeline}, {} steps", steps.len()),
        Event::StepStarted { step, attempt } if *attempt > 1 => {
            format!("[{step}] running (attempt {attempt})")
        }
        Event::StepStarted { step, .. } => format!("[{step}] running"),
        Event::StepLog { step, line, .. } => format!("[{step}] | {line}"),
        Event::StepRetrying {
            step,
            next_attempt,
            reason,
            delay_ms,
        } => format!(
            "[{step}] {reason}; retrying in {} (attempt {next_attempt})",
            crate::render::duration_ms(*delay_ms as i64)
        ),
        Event::StepFinished {
            step,
            status,
            reason,
            wall_ms,
            ..
        } => finished_text(step, *status, reason.as_deref(), *wall_ms),
        Event::RunFinished { run_id, status } => format!("run {run_id}: {}", status.as_str()),
    })
}

fn finished_text(
    step: &str,
    status: StepStatus,
    reason: Option<&str>,
    wall: Option<i64>,
) -> String {
    let mut s = format!("[{step}] {}", status.as_str());
    if let Some(w) = wall.filter(|_| status != StepStatus::Cached) {
        s.push_str(&format!(" in {}", crate::render::duration_ms(w)));
    }
    if let Some(r) = reason {
        s.push_str(&format!(": {r}"));
    }
    s
}

async fn terminal(mut rx: UnboundedReceiver<Event>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let running = ProgressStyle::with_template("{spinner:.cyan} {prefix:<24} {msg} {elapsed:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let done = ProgressStyle::with_template("{prefix:<26} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    while let Some(e) = rx.recv().await {
        match &e {
            Event::RunQueued { .. } => {
                if let Some(line) = plain_line(&e) {
                    let _ = multi.println(line);
                }
            }
            Event::RunStarted { steps, .. } => {
                if let Some(line) = plain_line(&e) {
                    let _ = multi.println(line);
                }
                for s in steps {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(done.clone());
                    bar.set_prefix(format!("  {s}"));
                    bar.set_message("pending");
                    bars.insert(s.clone(), bar);
                }
            }
            Event::StepStarted { step, attempt } => {
                if let Some(bar) = bars.get(step) {
                    bar.set_style(running.clone());
                    bar.set_prefix(step.clone());
                    bar.reset_elapsed();
                    bar.set_message(if *attempt > 1 {
                        format!("running (attempt {attempt})")
                    } else {
                        "running".to_string()
                    });
                    bar.enable_steady_tick(Duration::from_millis(100));
                }
            }
            Event::StepLog { step, line, .. } => {
                let _ = multi.println(format!("[{step}] | {line}"));
            }
            Event::StepRetrying { step, reason, .. } => {
                if let Some(bar) = bars.get(step) {
                    bar.set_message(format!("{reason}; retrying"));
                }
            }
            Event::StepFinished {
                step,
                status,
                reason,
                wall_ms,
                ..
            } => {
                if let Some(bar) = bars.get(step) {
                    let mark = match status {
                        StepStatus::Succeeded => "✔",
                        StepStatus::Cached => "◆",
                        StepStatus::Skipped => "–",
                        _ => "✘",
                    };
                    bar.set_style(done.clone());
                    bar.set_prefix(format!("{mark} {step}"));
                    let text = finished_text(step, *status, reason.as_deref(), *wall_ms);
                    bar.finish_with_message(
                        text.trim_start_matches(&format!("[{step}] ")).to_string(),
                    );
                }
            }
            Event::RunFinished { .. } => {
                for bar in bars.values() {
                    if !bar.is_finished() {
                        bar.finish();
                    }
                }
            }
        }
    }
}
