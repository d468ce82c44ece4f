//! `gantry demo`: writes an example project (the Wisconsin breast-cancer data set and a
//! pipeline) and runs the whole workflow on it with live progress, then summarizes.

use crate::cli::{ExecArgs, Output};
use crate::commands::{execute_summary, open_engine};
use crate::exit;
use crate::home::Home;
use anyhow::Context;
use gantry_store::RunStatus;
use std::path::Path;

/// The demo pipeline; `examples/breast-cancer/pipeline.yaml` is the same file.
pub const PIPELINE: &str = include_str!("../../../examples/breast-cancer/pipeline.yaml");

pub async fn run(
    home: &Home,
    runtime: &str,
    dir: &Path,
    force: bool,
    exec: ExecArgs,
) -> anyhow::Result<u8> {
    write_project(dir, force)?;
    let file = dir.join("pipeline.yaml");
    if exec.output != Output::Json {
        eprintln!("example project written to {}", dir.display());
    }
    let pipeline = gantry_spec::load(&file)?;
    let params = gantry_spec::resolve_params(&pipeline, &[])?;
    let mut req = gantry_engine::RunRequest::new(pipeline, PIPELINE.to_string(), params);
    req.no_cache = exec.no_cache;
    req.submitted_by = Some(crate::commands::local_user());
    let engine = open_engine(home, runtime, &exec).await?;
    let summary = execute_summary(&engine, req, exec.output).await?;
    let store = engine.store();
    let mut versions = store.model_versions_for_run(&summary.run_id).await?;
    if versions.is_empty() {
        // A fully cached run registered nothing new: show what its cached register
        // step registered when it really ran.
        for s in store.list_step_runs(&summary.run_id).await? {
            if s.step == "register"
                && let Some(from) = &s.cached_from
            {
                for m in store.list_models().await? {
                    versions.extend(
                        store
                            .list_model_versions(&m.name)
                            .await?
                            .into_iter()
                            .filter(|v| v.step_run_id.as_deref() == Some(from.as_str())),
                    );
                }
            }
        }
    }
    let quiet = exec.output == Output::Json;
    let serving = if summary.status == RunStatus::Succeeded {
        Some(crate::demo_serve::run(&engine, &home.root, quiet).await?)
    } else {
        None
    };
    if exec.output == Output::Json {
        let v = serde_json::json!({
            "run": summary,
            "models": versions,
            "monitor": serving.as_ref().map(|s| &s.monitor),
            // This run's own traffic, phase by phase (the monitor's windows span runs).
            "accuracy": serving.as_ref().map(|s| serde_json::json!({
                "before_shift": s.phase_accuracy[0],
                "drifted": s.phase_accuracy[1],
            })),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        crate::commands::print_summary(&summary);
        println!();
        for v in &versions {
            let m: std::collections::BTreeMap<String, f64> =
                serde_json::from_str(&v.metrics_json).unwrap_or_default();
            let params: serde_json::Value =
                serde_json::from_str(&v.params_json).unwrap_or_default();
            println!(
                "best model: {} v{} ({}), aliases: {}",
                v.model,
                v.version,
                params["algorithm"].as_str().unwrap_or("?"),
                v.aliases.join(", ")
            );
            let shown: Vec<String> = [
                "accuracy",
                "f1_macro",
                "roc_auc",
                "precision_macro",
                "recall_macro",
            ]
            .iter()
            .filter_map(|k| m.get(*k).map(|val| format!("{k} {val:.4}")))
            .collect();
            println!("test metrics: {}", shown.join(", "));
            println!(
                "model artifact: {} (gantry artifact get {} --out DIR)",
                v.artifact_digest, v.artifact_digest
            );
        }
        println!(
            "artifacts live in {}; try: gantry show {}, gantry model show breast-cancer@champion",
            home.root.join("artifacts").display(),
            summary.run_id
        );
        if let Some(s) = &serving {
            println!();
            print_monitor_summary(s);
        }
    }
    Ok(match summary.status {
        RunStatus::Succeeded => exit::OK,
        RunStatus::Cancelled => exit::CANCELLED,
        _ => exit::RUN_FAILED,
    })
}

fn write_project(dir: &Path, force: bool) -> anyhow::Result<()> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let csv = gantry_ml::datasets::breast_cancer_csv();
    write_if_changed(&data.join("breast_cancer.csv"), &csv, force)?;
    write_if_changed(&dir.join("pipeline.yaml"), PIPELINE, force)?;
    Ok(())
}

/// Leaves an identical file alone, so a second demo run is a full cache hit and the
/// user's edits to a different file are never silently lost.
fn write_if_changed(path: &Path, content: &str, force: bool) -> anyhow::Result<()> {
    match std::fs::read_to_string(path) {
        Ok(existing) if existing == content => Ok(()),
        Ok(_) if !force => Err(crate::exit::coded(
            exit::USAGE,
            format!(
                "{} exists and differs from the demo's; keep your edits and pass --dir OTHER, or overwrite with --force",
                path.display()
            ),
        )),
        _ => std::fs::write(path, content).with_context(|| format!("writing {}", path.display())),
    }
}

/// What the monitor made of the demo's traffic, in a few lines.
fn print_monitor_summary(s: &crate::demo_serve::DemoTraffic) {
    let r = &s.monitor["report"];
    println!(
        "== monitor of deployment {} ({} requests served; `gantry monitor {}` shows it all) ==",
        crate::demo_serve::DEPLOYMENT,
        s.served,
        crate::demo_serve::DEPLOYMENT
    );
    let mut drifted: Vec<(&str, f64)> = r["drift"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter(|f| f["status"] == "drift")
                .map(|f| {
                    (
                        f["feature"].as_str().unwrap_or("?"),
                        f["psi"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    drifted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total = r["drift"].as_array().map_or(0, |d| d.len());
    println!(
        "input drift: {} of {total} features drifted{}",
        drifted.len(),
        if drifted.is_empty() {
            String::new()
        } else {
            format!(
                " — {}",
                drifted
                    .iter()
                    .take(6)
                    .map(|(f, psi)| format!("{f} (PSI {psi:.2})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if let Some(psi) = r["prediction_drift"]["psi"].as_f64() {
        println!("prediction drift: PSI {psi:.2} against the training labels");
    }
    if let [Some(b), Some(n)] = s.phase_accuracy {
        println!(
            "accuracy over this run's feedback: {b:.3} before the shift, {n:.3} with the drifted traffic"
        );
    }
    if let Some(w) = r["performance"].as_array().and_then(|w| w.first())
        && let Some(a) = w["accuracy"].as_f64()
    {
        let labelled = w["labelled"]
            .as_u64()
            .map_or(String::new(), |c| format!(" over {c} labelled predictions"));
        let minutes = w["window_ms"].as_i64().map_or(String::new(), |ms| {
            format!(" of the last {} min", ms / 60_000)
        });
        println!("the monitor's accuracy{minutes}: {a:.3}{labelled}");
    }
    let l = &r["latency"];
    if let (Some(p50), Some(p99)) = (l["p50_ms"].as_f64(), l["p99_ms"].as_f64()) {
        println!("latency through the control plane: p50 {p50:.2} ms, p99 {p99:.2} ms");
    }
    for a in r["alerts"].as_array().into_iter().flatten() {
        if a["state"] == "firing" {
            println!(
                "ALERT firing: {} — {}",
                a["rule"].as_str().unwrap_or("?"),
                a["message"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(v) = r["verdict"].as_str() {
        println!("verdict: {v}");
    }
}
