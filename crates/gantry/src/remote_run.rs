//! Commands that need more than one request against a server: `run` (submit, follow,
//! summarize), `logs` (Server-Sent Events) and `artifact get` (files of a tree).

use crate::cli::{Output, RunArgs};
use crate::commands::print_summary_value;
use crate::exit::{self, coded};
use crate::remote::Client;
use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Submits the pipeline file's YAML. Its local `path:` inputs are uploaded first (unless
/// `--no-upload`) and named by digest; paths not on this machine are the server's to read
/// from its data roots.
pub async fn run(client: &Client, args: &RunArgs) -> anyhow::Result<u8> {
    let spec_yaml = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let mut params = serde_json::Map::new();
    let mut overrides = Vec::new();
    for p in &args.params {
        match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                params.insert(k.trim().to_string(), Value::String(v.to_string()));
                overrides.push((k.trim().to_string(), v.to_string()));
            }
            _ => {
                return Err(coded(
                    exit::USAGE,
                    format!("-p {p}: expected NAME=VALUE, e.g. -p max_depth=6"),
                ));
            }
        }
    }
    let quiet = args.exec.output == Output::Json;
    let mut inputs = serde_json::Map::new();
    if !args.no_upload {
        // The same checks the server makes, here first: a bad spec fails before any upload,
        // and the plan says which paths the run reads.
        let pipeline = gantry_spec::load(&args.file)?;
        let resolved = gantry_spec::resolve_params(&pipeline, &overrides)?;
        let plan = gantry_spec::plan(&pipeline, &resolved)?;
        let up = crate::upload::upload_inputs(client, &plan, &pipeline.name, quiet).await?;
        if !quiet && (up.sent + up.skipped) > 0 {
            eprintln!(
                "inputs: {} uploaded ({} bytes), {} already on the server",
                up.sent, up.sent_bytes, up.skipped
            );
        }
        if !quiet {
            for p in &up.left_to_server {
                eprintln!(
                    "note: {} is not on this machine; the server reads it from its data roots",
                    p.display()
                );
            }
        }
        for (k, d) in up.inputs {
            inputs.insert(k, Value::String(d));
        }
    }
    let file_name = args.file.display().to_string();
    let submitted = client
        .post(
            &["runs"],
            &json!({"spec_yaml": spec_yaml, "params": params, "no_cache": args.exec.no_cache, "file_name": file_name, "inputs": inputs, "priority": args.priority}),
        )
        .await?;
    let run_id = submitted["run_id"]
        .as_str()
        .ok_or_else(|| coded(exit::INTERNAL, "the server's answer has no run_id"))?
        .to_string();
    if args.detach {
        if args.exec.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&submitted)?);
        } else {
            println!("{run_id}");
        }
        return Ok(exit::OK);
    }
    if args.exec.output != Output::Json {
        eprintln!("submitted run {run_id}");
    }
    let mut said_queued = false;
    let started = std::time::Instant::now();
    let mut cancelled = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let doc = loop {
        let doc = client.get(&["runs", &run_id], &[]).await?;
        let terminal = !matches!(doc["status"].as_str(), Some("running" | "queued"));
        if terminal {
            break doc;
        }
        if doc["status"] == "queued" && !said_queued && args.exec.output != Output::Json {
            said_queued = true;
            let why = crate::queue::why_waiting(client, &run_id).await;
            eprintln!(
                "run {run_id} is queued{} (`gantry queue` shows the queue)",
                why.map(|w| format!(": {w}")).unwrap_or_default()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = &mut ctrl_c, if !cancelled => {
                eprintln!("cancelling run {run_id} on the server…");
                cancelled = true;
                let _ = client.post(&["runs", &run_id, "cancel"], &json!({})).await;
            }
        }
    };
    let summary = summary_of(&doc, started.elapsed().as_millis() as i64);
    if args.exec.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary_value(&summary);
    }
    Ok(match doc["status"].as_str() {
        Some("succeeded") => exit::OK,
        Some("cancelled") => exit::CANCELLED,
        _ => exit::RUN_FAILED,
    })
}

/// The shape of the engine's run summary, from a run document: the last attempt of each
/// step, in plan order.
pub fn summary_of(doc: &Value, fallback_ms: i64) -> Value {
    let empty = Vec::new();
    let records = doc["steps"].as_array().unwrap_or(&empty);
    let mut steps: Vec<Value> = Vec::new();
    for s in records {
        let name = &s["step"];
        let entry = json!({
            "step": name, "status": s["status"], "attempts": s["attempt"],
            "exit_code": s["exit_code"], "reason": s["reason"], "cached": s["cached"],
            "wall_ms": s["usage"]["wall_ms"], "outputs": s["outputs"],
        });
        match steps.iter_mut().find(|e| &e["step"] == name) {
            Some(e) => *e = entry,
            None => steps.push(entry),
        }
    }
    let duration = doc["finished_at_ms"]
        .as_i64()
        .zip(doc["started_at_ms"].as_i64())
        .map(|(f, s)| f - s)
        .unwrap_or(fallback_ms);
    let hits = steps.iter().filter(|s| s["cached"] == true).count();
    json!({
        "run_id": doc["id"], "pipeline": doc["pipeline"], "status": doc["status"],
        "duration_ms": duration, "cache_hits": hits, "steps": steps,
    })
}

/// Prints log rows as the server streams them (SSE `log` events) until its `end` event.
pub async fn logs(
    client: &Client,
    run_id: &str,
    step: Option<&str>,
    follow: bool,
    filter: &crate::commands::LogFilter,
) -> anyhow::Result<u8> {
    let mut q = vec![
        ("follow", follow.to_string()),
        ("batch", "true".to_string()),
    ];
    if let Some(s) = step {
        q.push(("step", s.to_string()));
    }
    if let Some(n) = filter.tail {
        q.push(("tail", n.to_string()));
    }
    if let Some(g) = &filter.grep_text {
        q.push(("grep", g.clone()));
    }
    if let Some(ms) = filter.since_ms {
        q.push(("since_ms", ms.to_string()));
    }
    let url = client.url(&["runs", run_id, "logs"], &q);
    let mut resp = client.send(Method::GET, url, None).await?;
    // Bytes until a frame is whole: a network chunk may end inside a character.
    let mut buf: Vec<u8> = Vec::new();
    // Bytes of `buf` already searched for a frame's end (a large event arrives in pieces).
    let mut scanned = 0;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(chunk) = resp.chunk().await.context("reading the log stream")? {
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = memchr::memmem::find(&buf[scanned.max(start)..], b"\n\n")
            .map(|i| i + scanned.max(start) - start)
        {
            let frame = String::from_utf8_lossy(&buf[start..start + end]).into_owned();
            start += end + 2;
            let mut event = "message";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = match e.trim() {
                        "log" => "log",
                        "lines" => "lines",
                        "end" => "end",
                        "error" => "error",
                        _ => "other",
                    };
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            match event {
                "log" => {
                    let row: Value = serde_json::from_str(&data).unwrap_or_default();
                    let text = row["data"].as_str().unwrap_or_default();
                    let line = match step {
                        None => format!("[{}] {text}", row["step"].as_str().unwrap_or_default()),
                        Some(_) => text.to_string(),
                    };
                    if writeln!(out, "{line}").is_err() {
                        return Ok(exit::OK);
                    }
                }
                "lines" => {
                    let batch: Value = serde_json::from_str(&data).unwrap_or_default();
                    let prefix = match step {
                        None => format!("[{}] ", batch["step"].as_str().unwrap_or_default()),
                        Some(_) => String::new(),
                    };
                    for line in batch["lines"].as_array().into_iter().flatten() {
                        let text = line.as_str().unwrap_or_default();
                        if writeln!(out, "{prefix}{text}").is_err() {
                            return Ok(exit::OK);
                        }
                    }
                }
                "end" => {
                    let _ = out.flush();
                    return Ok(exit::OK);
                }
                "error" => {
                    let _ = out.flush();
                    let v: Value = serde_json::from_str(&data).unwrap_or_default();
                    return Err(coded(
                        exit::INTERNAL,
                        format!(
                            "server: {}",
                            v["message"].as_str().unwrap_or("the log stream failed")
                        ),
                    ));
                }
                _ => {}
            }
        }
        buf.drain(..start);
        // The last byte may be the first '\n' of a frame's end.
        scanned = buf.len().saturating_sub(1);
        if out.flush().is_err() {
            return Ok(exit::OK);
        }
    }
    let _ = out.flush();
    Err(coded(
        exit::INTERNAL,
        "the server closed the log stream before its end",
    ))
}

/// Writes the artifact to `out/<first 12 hex>` like the local command does.
pub async fn artifact_get(client: &Client, digest: &str, out: &Path) -> anyhow::Result<u8> {
    let digest = if digest.starts_with("sha256:") {
        digest.to_string()
    } else {
        format!("sha256:{digest}")
    };
    let hex = &digest["sha256:".len()..];
    let dest = out.join(&hex[..hex.len().min(12)]);
    if dest.symlink_metadata().is_ok() {
        return Err(coded(
            exit::USAGE,
            format!(
                "{} already exists; remove it or pick another --out",
                dest.display()
            ),
        ));
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let resp = client
        .send(Method::GET, client.url(&["artifacts", &digest], &[]), None)
        .await?;
    let is_json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        let bytes = resp.bytes().await.context("downloading the artifact")?;
        std::fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
        println!("{}", dest.display());
        return Ok(exit::OK);
    }
    let listing = crate::remote::json_of(resp).await?;
    let staging = out.join(format!(".download-{}", &hex[..hex.len().min(12)]));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for f in listing["files"].as_array().cloned().unwrap_or_default() {
        let Some(rel) = f["path"].as_str() else {
            continue;
        };
        // The server checks paths too; a client never writes outside its folder either.
        if Path::new(rel)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(coded(
                exit::INTERNAL,
                format!("the server listed an unsafe path {rel}"),
            ));
        }
        let resp = client
            .send(
                Method::GET,
                client.url(&["artifacts", &digest], &[("path", rel.to_string())]),
                None,
            )
            .await?;
        let bytes = resp.bytes().await.context("downloading the artifact")?;
        let target = staging.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &bytes).with_context(|| format!("writing {}", target.display()))?;
    }
    std::fs::rename(&staging, &dest).with_context(|| format!("creating {}", dest.display()))?;
    println!("{}", dest.display());
    Ok(exit::OK)
}
