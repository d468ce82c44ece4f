//! Keeps the server's image trust current: the policy file is re-read on SIGHUP, and every
//! stored image is scanned again when the vulnerability database changes (`gantry vulndb
//! import` while the server runs), which also refreshes `gantry_image_vulnerabilities`.

use std::sync::Arc;
use std::time::Duration;

use crate::state::AppState;

/// How often the database version is looked at.
const POLL: Duration = Duration::from_secs(10);

/// Starts the watcher; `None` when the server has no engine (so no trust gate).
pub fn spawn(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let engine = state.runs.engine()?.clone();
    let trust = Arc::clone(engine.config().trust.as_ref()?);
    let metrics = Arc::clone(&state.metrics);
    let store = state.store.clone();
    Some(tokio::spawn(async move {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut scanned_with: Option<String> = None;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match trust.reload() {
                        Ok(Some(path)) => {
                            tracing::info!("trust policy reloaded from {}", path.display());
                            metrics.observe_policy_reload(true);
                        }
                        Ok(None) => tracing::info!("SIGHUP: no trust policy file to reload"),
                        Err(e) => {
                            tracing::error!("trust policy not reloaded, the previous one stays in force: {e}");
                            metrics.observe_policy_reload(false);
                        }
                    }
                    continue;
                }
            }
            let db = match trust.vulndb() {
                Ok(Some(db)) => db,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("vulnerability database unreadable: {e}");
                    continue;
                }
            };
            if scanned_with.as_deref() == Some(db.version()) {
                continue;
            }
            let images = Arc::new(engine.images().clone());
            let listed = match images.list() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("cannot list images to rescan: {e}");
                    continue;
                }
            };
            let mut failures = 0;
            for info in listed {
                match trust.scan(&images, &store, &info.digest).await {
                    Ok(Some(scan)) => {
                        let counts: Vec<(String, usize)> = scan
                            .report
                            .counts
                            .iter()
                            .map(|(s, n)| (s.to_string(), *n))
                            .collect();
                        let label = info.names.first().cloned().unwrap_or(info.digest.clone());
                        metrics.observe_image_scan(&label, &counts);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("rescanning {}: {e}", info.digest);
                    }
                }
            }
            if failures == 0 {
                tracing::info!(
                    "images rescanned with vulnerability database {}",
                    db.version()
                );
                scanned_with = Some(db.version().to_string());
            }
        }
    }))
}
