//! `gantry queue` (a server's admission queue and why each entry waits) and `gantry project
//! quota` (projects' quotas).

use crate::cli::{Output, ProjectCommand};
use crate::commands::Source;
use crate::exit::{self, coded};
use crate::remote::{Client, code_of, json_of};
use crate::render::table;
use gantry_alloc::recommend::{fmt_cpu, fmt_memory};
use gantry_store::ProjectQuota;
use serde_json::{Value, json};

/// Why run `run_id` waits, from the server's queue (its first entry), if it is there.
pub async fn why_waiting(client: &Client, run_id: &str) -> Option<String> {
    let q = client.get(&["queue"], &[]).await.ok()?;
    q["waiting"]
        .as_array()?
        .iter()
        .find(|w| w["run_id"] == run_id)
        .and_then(|w| w["reason"].as_str().map(str::to_owned))
}

pub async fn queue(client: &Client, output: Output) -> anyhow::Result<u8> {
    let q = client.get(&["queue"], &[]).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&q)?);
        return Ok(exit::OK);
    }
    if q["engine"] == false {
        println!("this server runs no engine: nothing is ever queued here");
        return Ok(exit::OK);
    }
    let u64_of = |v: &Value| v.as_u64().unwrap_or(0);
    let cap = &q["capacity"];
    let used = &q["used"];
    println!(
        "capacity {} CPU, {} memory, {} GPU(s), {} parallel steps; in use {} CPU, {} memory, {} GPU(s) by {} step(s)",
        fmt_cpu(u64_of(&cap["cpu_millis"])),
        fmt_memory(u64_of(&cap["memory_bytes"])),
        u64_of(&cap["gpus"]),
        u64_of(&cap["max_parallel"]),
        cpu_text(u64_of(&used["cpu_millis"])),
        fmt_memory(u64_of(&used["memory_bytes"])),
        u64_of(&used["gpus"]),
        u64_of(&q["running_steps"]),
    );
    let empty = Vec::new();
    let projects = q["projects"].as_array().unwrap_or(&empty);
    if !projects.is_empty() {
        println!();
        let mut t = table(&[
            "PROJECT", "QUOTA", "IN USE", "RUNS", "WAITING", "SHARE", "WEIGHT",
        ]);
        for p in projects {
            let quota = &p["quota"];
            let runs = match quota["max_runs"].as_u64() {
                Some(m) => format!("{}/{m}", u64_of(&p["runs_in_flight"])),
                None => u64_of(&p["runs_in_flight"]).to_string(),
            };
            t.add_row(vec![
                p["project"].as_str().unwrap_or_default().to_string(),
                quota_text(quota),
                format!(
                    "{} CPU, {}, {} GPU",
                    cpu_text(u64_of(&p["used"]["cpu_millis"])),
                    fmt_memory(u64_of(&p["used"]["memory_bytes"])),
                    u64_of(&p["used"]["gpus"])
                ),
                runs,
                u64_of(&p["waiting"]).to_string(),
                format!("{:.0}%", p["share"].as_f64().unwrap_or(0.0) * 100.0),
                quota["weight"].as_u64().unwrap_or(1).to_string(),
            ]);
        }
        println!("{t}");
    }
    let waiting = q["waiting"].as_array().unwrap_or(&empty);
    println!();
    if waiting.is_empty() {
        println!("nothing waits");
        return Ok(exit::OK);
    }
    let now = gantry_engine::now_ms();
    let mut t = table(&[
        "#", "RUN", "PROJECT", "STEP", "PRIORITY", "NEEDS", "WAITING", "WHY",
    ]);
    for w in waiting {
        let step = w["step"].as_str().unwrap_or_default();
        let step = match w["kind"].as_str() {
            Some("start_run") => format!("{step} (run start)"),
            Some("grow") => format!("{step} (more memory)"),
            _ => step.to_string(),
        };
        let d = &w["demand"];
        let mut needs = format!(
            "{} CPU, {}",
            cpu_text(u64_of(&d["cpu_millis"])),
            fmt_memory(u64_of(&d["memory_bytes"]))
        );
        if u64_of(&d["gpus"]) > 0 {
            needs.push_str(&format!(", {} GPU", u64_of(&d["gpus"])));
        }
        let since = w["since_ms"].as_i64().unwrap_or(now);
        t.add_row(vec![
            u64_of(&w["position"]).to_string(),
            w["run_id"].as_str().unwrap_or_default().to_string(),
            w["project"].as_str().unwrap_or_default().to_string(),
            step,
            w["priority"].as_str().unwrap_or_default().to_string(),
            needs,
            crate::render::duration_ms((now - since).max(0)),
            w["reason"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    println!("{t}");
    Ok(exit::OK)
}

fn cpu_text(millis: u64) -> String {
    if millis == 0 {
        "0".into()
    } else {
        fmt_cpu(millis)
    }
}

/// `cpu 8, memory 32Gi, 1 GPU, 4 runs` or `none`.
fn quota_text(q: &Value) -> String {
    if q.is_null() {
        return "none".into();
    }
    let mut parts = Vec::new();
    if let Some(c) = q["cpu_millis"].as_u64() {
        parts.push(format!("{} CPU", cpu_text(c)));
    }
    if let Some(m) = q["memory_bytes"].as_u64() {
        parts.push(fmt_memory(m));
    }
    if let Some(g) = q["gpus"].as_u64() {
        parts.push(format!("{g} GPU"));
    }
    if let Some(r) = q["max_runs"].as_u64() {
        parts.push(format!("{r} runs"));
    }
    if parts.is_empty() {
        "no limits".into()
    } else {
        parts.join(", ")
    }
}

/// A flag's new value: `None` not given, `Some(None)` lifted (`none`), `Some(Some(v))` set.
fn limit<T>(
    flag: &str,
    v: Option<&str>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<Option<T>>> {
    match v {
        None => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(text) => parse(text)
            .map(|v| Some(Some(v)))
            .map_err(|e| coded(exit::USAGE, format!("--{flag} {text}: {e}"))),
    }
}

fn count(text: &str) -> Result<i64, String> {
    text.parse::<u32>()
        .map(i64::from)
        .map_err(|_| "expected a non-negative integer or `none`".to_string())
}

pub async fn project(src: &Source<'_>, cmd: ProjectCommand) -> anyhow::Result<u8> {
    let ProjectCommand::Quota {
        project,
        cpu,
        memory,
        gpus,
        max_runs,
        weight,
        clear,
        output,
    } = cmd;
    let cpu = limit("cpu", cpu.as_deref(), |t| {
        gantry_spec::quantity::parse_cpu(t)
            .map(|m| m as i64)
            .map_err(|e| e.to_string())
    })?;
    let memory = limit("memory", memory.as_deref(), |t| {
        gantry_spec::quantity::parse_memory(t)
            .map(|b| b.min(i64::MAX as u64) as i64)
            .map_err(|e| e.to_string())
    })?;
    let gpus = limit("gpus", gpus.as_deref(), count)?;
    let max_runs = limit("max-runs", max_runs.as_deref(), count)?;
    if weight == Some(0) {
        return Err(coded(exit::USAGE, "--weight must be at least 1"));
    }
    let changes = cpu.is_some()
        || memory.is_some()
        || gpus.is_some()
        || max_runs.is_some()
        || weight.is_some();
    let Some(project) = project else {
        if changes || clear {
            return Err(coded(exit::USAGE, "name the project whose quota to change"));
        }
        let all = list(src).await?;
        print_quotas(&all, output)?;
        return Ok(exit::OK);
    };
    let current = get(src, &project).await?;
    if clear {
        if current.is_none() {
            return Err(coded(
                exit::NOT_FOUND,
                format!("project {project} has no quota"),
            ));
        }
        match src {
            Source::Remote(c) => {
                c.delete(&["projects", &project, "quota"]).await?;
            }
            Source::Local(home) => {
                let store = home.store().await?;
                store.delete_project_quota(&project).await?;
                store
                    .append_audit(
                        "local",
                        "quota.delete",
                        &project,
                        &json!({}),
                        gantry_engine::now_ms(),
                    )
                    .await?;
            }
        }
        if output != Output::Json {
            println!("quota of project {project} removed");
        }
        return Ok(exit::OK);
    }
    if !changes {
        match current {
            Some(q) => print_quotas(&[q], output)?,
            None => {
                return Err(coded(
                    exit::NOT_FOUND,
                    format!(
                        "project {project} has no quota (set one with `gantry project quota {project} --cpu 8 --max-runs 4`)"
                    ),
                ));
            }
        }
        return Ok(exit::OK);
    }
    let mut q = current.unwrap_or(ProjectQuota {
        project: project.clone(),
        cpu_millis: None,
        memory_bytes: None,
        gpus: None,
        max_runs: None,
        weight: 1,
        updated_at_ms: 0,
        updated_by: None,
    });
    if let Some(v) = cpu {
        q.cpu_millis = v;
    }
    if let Some(v) = memory {
        q.memory_bytes = v;
    }
    if let Some(v) = gpus {
        q.gpus = v;
    }
    if let Some(v) = max_runs {
        q.max_runs = v;
    }
    if let Some(w) = weight {
        q.weight = i64::from(w);
    }
    let saved = match src {
        Source::Remote(c) => {
            let body = json!({
                "cpu": q.cpu_millis.map(|m| format!("{m}m")),
                "memory": q.memory_bytes,
                "gpus": q.gpus,
                "max_runs": q.max_runs,
                "weight": q.weight,
            });
            let resp = c
                .send(
                    reqwest::Method::PUT,
                    c.url(&["projects", &project, "quota"], &[]),
                    Some(&body),
                )
                .await?;
            serde_json::from_value(json_of(resp).await?)?
        }
        Source::Local(home) => {
            let store = home.store().await?;
            q.updated_at_ms = gantry_engine::now_ms();
            q.updated_by = Some(crate::commands::local_user());
            store.set_project_quota(&q).await?;
            store
                .append_audit("local", "quota.set", &project, &json!(q), q.updated_at_ms)
                .await?;
            q
        }
    };
    print_quotas(&[saved], output)?;
    Ok(exit::OK)
}

async fn get(src: &Source<'_>, project: &str) -> anyhow::Result<Option<ProjectQuota>> {
    match src {
        Source::Remote(c) => match c.get(&["projects", project, "quota"], &[]).await {
            Ok(v) => Ok(Some(serde_json::from_value(v)?)),
            Err(e) if code_of(&e) == Some(exit::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        },
        Source::Local(home) => Ok(home.store().await?.project_quota(project).await?),
    }
}

async fn list(src: &Source<'_>) -> anyhow::Result<Vec<ProjectQuota>> {
    match src {
        Source::Remote(c) => Ok(serde_json::from_value(c.get(&["quotas"], &[]).await?)?),
        Source::Local(home) => Ok(home.store().await?.project_quotas().await?),
    }
}

fn print_quotas(all: &[ProjectQuota], output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no project has a quota");
        return Ok(());
    }
    let none = || "-".to_string();
    let mut t = table(&[
        "PROJECT", "CPU", "MEMORY", "GPUS", "MAX RUNS", "WEIGHT", "SET BY",
    ]);
    for q in all {
        t.add_row(vec![
            q.project.clone(),
            q.cpu_millis
                .map(|c| cpu_text(c.max(0) as u64))
                .unwrap_or_else(none),
            q.memory_bytes
                .map(|m| fmt_memory(m.max(0) as u64))
                .unwrap_or_else(none),
            q.gpus.map(|g| g.to_string()).unwrap_or_else(none),
            q.max_runs.map(|r| r.to_string()).unwrap_or_else(none),
            q.weight.to_string(),
            q.updated_by.clone().unwrap_or_else(none),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `gantry cancel RUN`.
pub async fn cancel(src: &Source<'_>, run_id: &str) -> anyhow::Result<u8> {
    match src {
        Source::Remote(c) => {
            let v = c.post(&["runs", run_id, "cancel"], &json!({})).await?;
            match v["status"].as_str() {
                Some("cancelled") => println!("run {run_id} cancelled (it was queued)"),
                _ => println!("run {run_id} is being cancelled"),
            }
            Ok(exit::OK)
        }
        Source::Local(home) => {
            let store = home.store().await?;
            let run = store.get_run(run_id).await?;
            if run.status.is_terminal() {
                return Err(coded(
                    exit::USAGE,
                    format!(
                        "run {run_id} already ended ({}); nothing to cancel",
                        run.status
                    ),
                ));
            }
            // Parked in a stopped server's queue: it holds nothing; recording is cancelling.
            if run.status == gantry_store::RunStatus::Queued && store.dequeue_run(run_id).await? {
                store
                    .update_run_status(
                        run_id,
                        gantry_store::RunStatus::Cancelled,
                        Some(gantry_engine::now_ms()),
                        Some("cancelled while queued"),
                    )
                    .await?;
                store
                    .append_audit(
                        "local",
                        "run.cancel",
                        run_id,
                        &json!({"queued": true}),
                        gantry_engine::now_ms(),
                    )
                    .await?;
                println!("run {run_id} cancelled (it was queued)");
                return Ok(exit::OK);
            }
            Err(coded(
                exit::USAGE,
                format!(
                    "run {run_id} is executed by a gantry process (pid {}): cancel it through its server with --server URL, or with Ctrl-C where `gantry run` runs",
                    run.owner_pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "?".into())
                ),
            ))
        }
    }
}
