//! `gantry usage` (what runs and deployments used and cost) and `gantry recommend`
//! (right-sizing a pipeline's steps from their history).

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::Output;
use crate::commands::{Source, parse_overrides, parse_since, store_for_reading};
use crate::exit::{self, coded};
use crate::render::table;
use anyhow::Context;
use gantry_alloc::recommend::{fmt_cpu, fmt_memory};
use gantry_alloc::{Dimension, Report};

/// How many past attempts of a step a recommendation looks at.
const HISTORY: i64 = 50;

pub async fn usage(
    src: &Source<'_>,
    since: &str,
    until: Option<&str>,
    by: &str,
    project: Option<String>,
    output: Output,
) -> anyhow::Result<u8> {
    let by: Dimension = by
        .parse()
        .map_err(|e: String| coded(exit::USAGE, format!("bad --by: {e}")))?;
    let since_ms = parse_since(since)?;
    let until_ms = match until {
        Some(u) => parse_since(u)?,
        None => gantry_engine::now_ms() + 1,
    };
    if since_ms >= until_ms {
        return Err(coded(exit::USAGE, "--since must be before --until"));
    }
    let report: Report = match src {
        Source::Remote(client) => {
            let mut q = vec![
                ("since_ms", since_ms.to_string()),
                ("until_ms", until_ms.to_string()),
                ("by", by.as_str().to_string()),
            ];
            if let Some(p) = &project {
                q.push(("project", p.clone()));
            }
            serde_json::from_value(client.get(&["usage"], &q).await?)
                .context("reading the server's usage report")?
        }
        Source::Local(home) => {
            let prices = home.config()?.prices;
            let store = store_for_reading(home).await?;
            let q = gantry_store::UsageQuery {
                since_ms,
                until_ms,
                by,
                project,
                run_id: None,
            };
            let groups = store.usage(&q).await?;
            Report::new(by, since_ms, until_ms, groups, &prices)
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(exit::OK);
    }
    print_report(&report);
    Ok(exit::OK)
}

fn hours(h: f64) -> String {
    if h == 0.0 {
        "0".into()
    } else if h < 0.01 {
        format!("{:.4}", h)
    } else {
        format!("{h:.2}")
    }
}

fn print_report(r: &Report) {
    println!(
        "usage {} → {} by {} ({})",
        crate::render::timestamp(r.since_ms),
        crate::render::timestamp(r.until_ms),
        r.by,
        r.currency
    );
    let mut t = table(&[
        &r.by.as_str().to_uppercase(),
        "RUNS",
        "STEPS",
        "CACHED",
        "REPLICAS",
        "CPU-H REQ",
        "CPU-H USED",
        "MEM GIB-H REQ",
        "MEM GIB-H PEAK",
        "GPU-H",
        "GPU-H IDLE",
        "COST",
        "IDLE COST",
        "SAVED BY CACHE",
    ]);
    for l in r.lines.iter().chain(std::iter::once(&r.total)) {
        let s = &l.sums;
        t.add_row(vec![
            l.key.clone(),
            s.runs.to_string(),
            s.step_runs.to_string(),
            s.cache_hits.to_string(),
            s.replicas.to_string(),
            hours(s.cpu_hours_requested),
            hours(s.cpu_hours_used),
            hours(s.memory_gib_hours_requested),
            hours(s.memory_gib_hours_peak),
            hours(s.gpu_hours_total()),
            hours(s.gpu_hours_idle),
            format!("{:.4}", l.cost.total),
            format!("{:.4}", l.cost.idle),
            format!("{:.4}", l.cost.saved),
        ]);
    }
    println!("{t}");
}

/// One step's recommendation, as printed and as JSON.
#[derive(serde::Serialize)]
struct Row {
    step: String,
    cpu_millis: u64,
    memory_bytes: u64,
    memory_auto: bool,
    recommended: Option<gantry_alloc::Recommendation>,
    /// Why there is none.
    note: Option<String>,
}

pub async fn recommend(
    home: &crate::home::Home,
    file: &Path,
    params: &[String],
    write: bool,
    output: Output,
) -> anyhow::Result<u8> {
    let pipeline = gantry_spec::load(file)?;
    let params = gantry_spec::resolve_params(&pipeline, &parse_overrides(params)?)?;
    let plan = gantry_spec::plan(&pipeline, &params)?;
    let store = store_for_reading(home).await?;
    // Members of a sweep are one declared step: the largest of their recommendations.
    let mut rows: BTreeMap<String, (usize, Row)> = BTreeMap::new();
    for (i, s) in plan.steps.iter().enumerate() {
        let declared = s.sweep.as_ref().map_or(s.name.clone(), |w| w.step.clone());
        let history = store
            .step_history(&gantry_alloc::usage_key(&plan.pipeline, s), HISTORY)
            .await?;
        let (recommended, note) = match gantry_alloc::recommend(&history) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let row = rows.entry(declared.clone()).or_insert_with(|| {
            (
                i,
                Row {
                    step: declared.clone(),
                    cpu_millis: s.resources.cpu_millis,
                    memory_bytes: s.resources.memory_bytes,
                    memory_auto: s.resources.memory_auto,
                    recommended: None,
                    note: None,
                },
            )
        });
        let row = &mut row.1;
        match (&mut row.recommended, recommended) {
            (Some(have), Some(new)) => {
                if new.memory_bytes > have.memory_bytes || new.cpu_millis > have.cpu_millis {
                    have.memory_bytes = have.memory_bytes.max(new.memory_bytes);
                    have.cpu_millis = have.cpu_millis.max(new.cpu_millis);
                }
            }
            (have @ None, Some(new)) if row.note.is_none() => *have = Some(new),
            // A member without enough history: the step as a whole has none.
            (have, None) => {
                *have = None;
                row.note = note;
            }
            (None, Some(_)) => {}
        }
    }
    let mut rows: Vec<Row> = {
        let mut v: Vec<(usize, Row)> = rows.into_values().collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, r)| r).collect()
    };
    rows.iter_mut()
        .filter(|r| r.recommended.is_none() && r.note.is_none())
        .for_each(|r| r.note = Some("no history".into()));

    let mut patched = None;
    if write {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let changes: Vec<gantry_alloc::patch::Change> = rows
            .iter()
            .filter_map(|r| {
                let rec = r.recommended.as_ref()?;
                Some(gantry_alloc::patch::Change {
                    step: r.step.clone(),
                    cpu_millis: Some(rec.cpu_millis).filter(|c| *c != r.cpu_millis),
                    memory_bytes: Some(rec.memory_bytes)
                        .filter(|m| *m != r.memory_bytes && !r.memory_auto),
                })
            })
            .filter(|c| c.cpu_millis.is_some() || c.memory_bytes.is_some())
            .collect();
        if !changes.is_empty() {
            let label = file.display().to_string();
            let base = file.parent().unwrap_or(Path::new("."));
            let new_text = gantry_alloc::patch::apply(&label, base, &text, &changes)
                .map_err(|e| coded(exit::USAGE, format!("{} not written: {e}", file.display())))?;
            write_atomically(file, new_text.as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
        }
        patched = Some(changes.len());
    }
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "pipeline": plan.pipeline,
                "steps": rows,
                "written": patched,
            }))?
        );
        return Ok(exit::OK);
    }
    let mut t = table(&[
        "STEP",
        "CPU",
        "→ CPU",
        "MEMORY",
        "→ MEMORY",
        "RUNS",
        "PEAK P95",
        "PEAK MAX",
        "CPU P95",
        "NOTE",
    ]);
    for r in &rows {
        let memory = if r.memory_auto {
            format!("auto ({})", fmt_memory(r.memory_bytes))
        } else {
            fmt_memory(r.memory_bytes)
        };
        match &r.recommended {
            Some(rec) => {
                let e = &rec.evidence;
                t.add_row(vec![
                    r.step.clone(),
                    fmt_cpu(r.cpu_millis),
                    fmt_cpu(rec.cpu_millis),
                    memory,
                    fmt_memory(rec.memory_bytes),
                    e.runs.to_string(),
                    fmt_memory(e.peak_memory_p95),
                    fmt_memory(e.peak_memory_max),
                    fmt_cpu(e.cpu_millis_p95),
                    e.oom_killed_at
                        .map(|m| format!("OOM-killed at {}", fmt_memory(m)))
                        .unwrap_or_default(),
                ]);
            }
            None => {
                t.add_row(vec![
                    r.step.clone(),
                    fmt_cpu(r.cpu_millis),
                    String::new(),
                    memory,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    r.note.clone().unwrap_or_default(),
                ]);
            }
        }
    }
    println!("{t}");
    match patched {
        Some(0) => println!("{}: nothing to change", file.display()),
        Some(n) => println!("{}: wrote resources of {n} step(s)", file.display()),
        None => {}
    }
    Ok(exit::OK)
}

/// Replaces `path` by a file with `bytes` (same directory, same permissions, renamed over).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.gantry-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `gantry gpus`: the GPUs NVML (or the driver) reports, and the running steps holding GPUs.
pub async fn gpus(home: &crate::home::Home, output: Output) -> anyhow::Result<u8> {
    let gpus = gantry_gpu::discover().map_err(|e| coded(exit::ENVIRONMENT, e.to_string()))?;
    let store = store_for_reading(home).await?;
    let mut holders = Vec::new();
    for run in store
        .runs_with_status(&[gantry_store::RunStatus::Running])
        .await?
    {
        for s in store.list_step_runs(&run.id).await? {
            if s.status == gantry_store::StepStatus::Running && s.requested_gpu > 0 {
                let devices: Vec<u32> = s
                    .gpu_devices
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|d| d.trim().parse().ok())
                    .collect();
                holders.push(serde_json::json!({
                    "run": run.id, "step": s.step, "gpus": s.requested_gpu,
                    "model": s.gpu_model, "devices": devices,
                }));
            }
        }
    }
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"gpus": gpus, "held_by": holders}))?
        );
        return Ok(exit::OK);
    }
    if gpus.is_empty() {
        println!("no NVIDIA GPUs found (no driver, or NVML cannot be loaded)");
    } else {
        let mut t = table(&[
            "INDEX", "DEVICE", "MODEL", "MEMORY", "MIG", "DRIVER", "UUID", "HELD BY",
        ]);
        for g in &gpus {
            let held_by = holders
                .iter()
                .filter(|h| {
                    h["devices"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|i| i.as_u64() == Some(u64::from(g.index))))
                })
                .map(|h| {
                    format!(
                        "{}/{}",
                        h["run"].as_str().unwrap_or_default(),
                        h["step"].as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            t.add_row(vec![
                g.index.to_string(),
                format!("/dev/nvidia{}", g.minor),
                g.name.clone(),
                crate::render::bytes(g.memory_bytes as i64),
                match g.mig_mode {
                    Some(true) => format!(
                        "on ({})",
                        g.mig_devices
                            .iter()
                            .map(|m| m.profile.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(false) => "off".into(),
                    None => "-".into(),
                },
                g.driver.clone().unwrap_or_default(),
                g.uuid.clone(),
                if held_by.is_empty() {
                    "-".into()
                } else {
                    held_by
                },
            ]);
        }
        println!("{t}");
    }
    // Steps whose devices are not known (started by an older gantry) or not in the list.
    for h in holders.iter().filter(|h| {
        h["devices"].as_array().is_none_or(|d| {
            d.is_empty()
                || !d
                    .iter()
                    .all(|i| gpus.iter().any(|g| i.as_u64() == Some(u64::from(g.index))))
        })
    }) {
        println!(
            "held: run {} step {} ({} GPU{})",
            h["run"].as_str().unwrap_or_default(),
            h["step"].as_str().unwrap_or_default(),
            h["gpus"],
            h["model"]
                .as_str()
                .map(|m| format!(", {m}"))
                .unwrap_or_default()
        );
    }
    Ok(exit::OK)
}
