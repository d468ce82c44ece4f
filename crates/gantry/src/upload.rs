//! `gantry --server URL run FILE` brings its own data: the spec's `path:` inputs (and
//! `with.source` paths) that exist on this machine are uploaded, content-addressed, before
//! the run is submitted, and the run names them by digest. The server holds each content
//! once: what it already has for the project is not sent again.

use crate::exit::{self, coded};
use crate::remote::Client;
use anyhow::Context;
use futures::StreamExt;
use gantry_artifacts::{ArtifactInfo, ArtifactKind};
use gantry_spec::{InputSource, Plan};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// What the uploads did, for the caller's summary line.
#[derive(Debug, Default)]
pub struct Uploaded {
    /// "step/input" → digest, sent with the run.
    pub inputs: BTreeMap<String, String>,
    /// Contents sent now, and their bytes.
    pub sent: usize,
    pub sent_bytes: u64,
    /// Contents the server already held for the project.
    pub skipped: usize,
    /// Paths not on this machine, left to the server's data roots.
    pub left_to_server: Vec<PathBuf>,
}

/// Uploads the local path inputs of `plan` for `project` and returns their digests.
pub async fn upload_inputs(
    client: &Client,
    plan: &Plan,
    project: &str,
    quiet: bool,
) -> anyhow::Result<Uploaded> {
    let mut out = Uploaded::default();
    // One content may feed several inputs: hash and send each path once.
    let mut done: BTreeMap<PathBuf, String> = BTreeMap::new();
    for step in &plan.steps {
        for (input, src) in &step.inputs {
            let InputSource::Path(path) = src else {
                continue;
            };
            let key = format!("{}/{}", step.name, input);
            if let Some(d) = done.get(path) {
                out.inputs.insert(key, d.clone());
                continue;
            }
            if std::fs::symlink_metadata(path).is_err() {
                out.left_to_server.push(path.clone());
                continue;
            }
            let owned = path.clone();
            let info = tokio::task::spawn_blocking(move || gantry_artifacts::digest_path(&owned))
                .await
                .context("hashing an input")?
                .map_err(|e| coded(exit::USAGE, format!("input {key}: {e}")))?;
            if held(client, &info.digest, project).await? {
                out.skipped += 1;
            } else {
                send(client, path, &info, project, quiet).await?;
                out.sent += 1;
                out.sent_bytes += info.size;
            }
            done.insert(path.clone(), info.digest.clone());
            out.inputs.insert(key, info.digest);
        }
    }
    Ok(out)
}

/// Whether the server already holds `digest` for `project`.
async fn held(client: &Client, digest: &str, project: &str) -> anyhow::Result<bool> {
    let url = client.url(&["uploads", digest], &[("project", project.to_owned())]);
    match client.send(Method::GET, url, None).await {
        Ok(_) => Ok(true),
        Err(e) if crate::remote::code_of(&e) == Some(exit::NOT_FOUND) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Streams the canonical bytes of `path` (a file, or a directory's deterministic tar).
async fn send(
    client: &Client,
    path: &Path,
    info: &ArtifactInfo,
    project: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let bar = if !quiet && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(info.size);
        bar.set_style(
            ProgressStyle::with_template(
                "uploading {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(path.display().to_string());
        Some(bar)
    } else {
        if !quiet {
            eprintln!("uploading {} ({} bytes)", path.display(), info.size);
        }
        None
    };
    let counter = bar.clone();
    let body = gantry_artifacts::canonical_body(path.to_owned(), info.kind).map(move |chunk| {
        if let (Ok(bytes), Some(bar)) = (&chunk, &counter) {
            bar.inc(bytes.len() as u64);
        }
        chunk
    });
    let kind = match info.kind {
        ArtifactKind::File => "file",
        ArtifactKind::Directory => "directory",
    };
    let url = client.url(
        &["uploads", &info.digest],
        &[("project", project.to_owned()), ("kind", kind.to_owned())],
    );
    let sent = client
        .send_body(Method::PUT, url, reqwest::Body::wrap_stream(body))
        .await
        .with_context(|| format!("uploading {}", path.display()));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    sent.map(|_| ())
}
