//! `gantry image pull|push`, `gantry login|logout`: images from and to registries.

use crate::cli::Output;
use crate::exit::{self, coded};
use crate::home::Home;
use gantry_image::registry::{
    CredentialStore, Credentials, PullProgress, PushProgress, RegistryClient, RegistryOptions,
    RegistryRef,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::sync::{Arc, Mutex};

/// The registry client commands and local runs use: credentials from GANTRY_HOME/auth.json
/// and Docker's config, plain HTTP for loopback and `--insecure-registry` hosts.
pub fn registry_client(home: &Home) -> anyhow::Result<RegistryClient> {
    let http = gantry_image::registry::default_http_client()?;
    Ok(RegistryClient::new(
        http,
        RegistryOptions {
            insecure: home.insecure_registries.clone(),
            credentials: CredentialStore::new(home.root.join("auth.json")),
            parallel_layers: 4,
            fetch: gantry_net::FetchPolicy::unrestricted(),
        },
    ))
}

/// Layer bars on a terminal; nothing otherwise.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Option<Arc<Bars>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }))
    }

    fn bar(&self, digest: &str, size: u64, offset: u64, verb: &str) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix}} {verb} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(short(digest));
        bar.set_position(offset);
        self.lock().insert(digest.to_string(), bar);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProgressBar>> {
        self.bars.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn inc(&self, digest: &str, n: u64) {
        if let Some(bar) = self.lock().get(digest) {
            bar.inc(n);
        }
    }

    fn done(&self, digest: &str, note: &str) {
        match self.lock().remove(digest) {
            Some(bar) => bar.finish_with_message(note.to_string()),
            None => {
                let _ = self.multi.println(format!("{} {note}", short(digest)));
            }
        }
    }

    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}

fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

impl PullProgress for Bars {
    fn layer_start(&self, digest: &str, size: u64, offset: u64) {
        self.bar(digest, size, offset, "pulling");
    }
    fn layer_bytes(&self, digest: &str, n: u64) {
        self.inc(digest, n);
    }
    fn layer_done(&self, digest: &str, reused: bool) {
        self.done(digest, if reused { "already stored" } else { "done" });
    }
    fn unpacking(&self) {
        let _ = self.multi.println("verifying and unpacking layers");
    }
}

impl PushProgress for Bars {
    fn blob_start(&self, digest: &str, size: u64, exists: bool) {
        if exists {
            self.done(digest, "already in the registry");
        } else {
            self.bar(digest, size, 0, "pushing");
        }
    }
    fn blob_bytes(&self, digest: &str, n: u64) {
        self.inc(digest, n);
    }
    fn blob_done(&self, digest: &str) {
        self.done(digest, "done");
    }
}

pub async fn pull(home: &Home, reference: &str, output: Output) -> anyhow::Result<u8> {
    let client = registry_client(home)?;
    let images = home.images()?;
    let bars = Bars::new();
    let progress: &dyn PullProgress = match &bars {
        Some(b) => b.as_ref(),
        None => &gantry_image::registry::NoProgress,
    };
    let pulled = client.pull(&images, reference, progress).await;
    if let Some(b) = &bars {
        b.clear();
    }
    let pulled = pulled?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "reference": reference,
                "digest": pulled.info.digest,
                "pinned": pulled.pinned.to_string(),
                "index_digest": pulled.index_digest,
                "names": pulled.info.names,
                "downloaded_bytes": pulled.downloaded,
                "reused_layers": pulled.reused_layers,
                "already_present": pulled.already_present,
                "size": pulled.info.size,
                "layers": pulled.info.layers,
            }))?
        );
    } else if pulled.already_present {
        println!("{reference}: already stored as {}", pulled.info.digest);
    } else {
        println!(
            "pulled {} ({} layers, {} downloaded, {} reused)",
            pulled.pinned,
            pulled.info.layers,
            crate::render::bytes(pulled.downloaded as i64),
            pulled.reused_layers
        );
    }
    Ok(exit::OK)
}

pub async fn push(
    home: &Home,
    local: &str,
    reference: &str,
    with_signatures: bool,
    output: Output,
) -> anyhow::Result<u8> {
    let client = registry_client(home)?;
    let images = home.images()?;
    // `builtin`: the image built-in steps run in, made from this very binary (a cluster
    // needs it in a registry to run built-in steps).
    let local = if local == "builtin" {
        let exe = std::env::current_exe()?;
        let store = images.clone();
        tokio::task::spawn_blocking(move || gantry_engine::ensure_builtin_image(&store, &exe))
            .await??
            .digest
    } else {
        local.to_string()
    };
    let local = local.as_str();
    let bars = Bars::new();
    let progress: &dyn PushProgress = match &bars {
        Some(b) => b.as_ref(),
        None => &gantry_image::registry::NoPushProgress,
    };
    let pushed = client.push(&images, local, reference, progress).await;
    if let Some(b) = &bars {
        b.clear();
    }
    let pushed = pushed?;
    let digest = pushed.pinned.digest.clone().unwrap_or_default();
    let mut signatures = false;
    if with_signatures {
        let Some(sigs) = images.signatures(&digest)? else {
            return Err(coded(
                exit::NOT_FOUND,
                format!(
                    "pushed {} but no signatures are kept for {digest}: sign it with `gantry image sign`, or pull/verify it from a registry that has them",
                    pushed.pinned
                ),
            ));
        };
        let target = RegistryRef::parse(reference)?;
        client.push_signatures(&target, &digest, &sigs).await?;
        signatures = true;
    }
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "pinned": pushed.pinned.to_string(),
                "digest": digest,
                "uploaded_bytes": pushed.uploaded_bytes,
                "uploaded_blobs": pushed.uploaded_blobs,
                "existing_blobs": pushed.existing_blobs,
                "signatures": signatures,
            }))?
        );
    } else {
        println!(
            "pushed {} ({} blobs uploaded, {}, {} already there){}",
            pushed.pinned,
            pushed.uploaded_blobs,
            crate::render::bytes(pushed.uploaded_bytes as i64),
            pushed.existing_blobs,
            if signatures {
                ", with its signatures"
            } else {
                ""
            }
        );
    }
    Ok(exit::OK)
}

pub fn login(
    home: &Home,
    registry: &str,
    username: &str,
    password_stdin: bool,
) -> anyhow::Result<u8> {
    if registry.contains('/') {
        return Err(coded(
            exit::USAGE,
            format!(
                "{registry}: give the registry host (`localhost:5000`, `ghcr.io`), not a URL or repository"
            ),
        ));
    }
    let password = if password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        read_hidden(&format!("password for {username}@{registry}: "))?
    } else {
        return Err(coded(
            exit::USAGE,
            "no terminal to ask for the password: pipe it in with --password-stdin",
        ));
    };
    if password.is_empty() {
        return Err(coded(exit::USAGE, "the password is empty"));
    }
    let store = CredentialStore::new(home.root.join("auth.json"));
    let path = store.login(
        registry,
        &Credentials {
            username: username.to_string(),
            password,
        },
    )?;
    println!(
        "credentials for {registry} stored in {} (mode 0600)",
        path.display()
    );
    Ok(exit::OK)
}

pub fn logout(home: &Home, registry: &str) -> anyhow::Result<u8> {
    let store = CredentialStore::new(home.root.join("auth.json"));
    if store.logout(registry)? {
        println!("forgot the credentials for {registry}");
        Ok(exit::OK)
    } else {
        Err(coded(
            exit::NOT_FOUND,
            format!(
                "no credentials for {registry} in {}",
                home.root.join("auth.json").display()
            ),
        ))
    }
}

/// Reads a line from the terminal with echo off.
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    eprint!("{prompt}");
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
