//! `gantry component NAME`: what a `uses: builtin/<name>` step runs inside its container.

use crate::exit;
use anyhow::Context;
use std::path::Path;

pub fn run(
    name: &str,
    with: &str,
    inputs: &Path,
    outputs: &Path,
    metrics: &Path,
) -> anyhow::Result<u8> {
    let with: serde_json::Value = serde_json::from_str(with)
        .with_context(|| format!("component {name}: --with is not a JSON object"))?;
    let io = gantry_ml::ComponentIo {
        with: &with,
        inputs,
        outputs,
    };
    // builtin/drift is declared in gantry-ml; its statistics live in gantry-monitor.
    let extensions = gantry_ml::Extensions {
        drift: Some(&gantry_monitor::offline::Reporter),
    };
    match gantry_ml::run_component_with(name, &io, extensions) {
        Ok(outcome) => {
            if !outcome.metrics.is_empty() {
                let text = serde_json::to_vec_pretty(&outcome.metrics)?;
                std::fs::write(metrics, text)
                    .with_context(|| format!("writing {}", metrics.display()))?;
            }
            if !outcome.summary.is_empty() {
                println!("{}", outcome.summary.trim_end());
            }
            Ok(exit::OK)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            Ok(exit::RUN_FAILED)
        }
    }
}
