//! Recovery after a crash: runs whose owning process is gone are marked interrupted (but
//! not those parked in a server's durable queue), and containers it left behind are reaped. Called when `gantry` starts.

use crate::owner::Owner;
use crate::{Engine, EngineError, now_ms};
use gantry_runtime::Runtime;
use gantry_store::{RunStatus, Store};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Reconciled {
    pub interrupted_runs: Vec<String>,
    pub reaped_containers: usize,
}

impl<R: Runtime> Engine<R> {
    /// Marks orphaned runs interrupted and reaps containers left by dead processes.
    pub async fn reconcile(&self) -> Result<Reconciled, EngineError> {
        let interrupted_runs =
            interrupt_orphaned_runs(&self.inner.store, &self.inner.cfg.work_dir).await?;
        let reaped_containers = self.inner.runtime.reap_leftovers().await?;
        Ok(Reconciled {
            interrupted_runs,
            reaped_containers,
        })
    }
}

/// Marks runs whose owning process is gone as interrupted (with their unfinished
/// steps) and removes their scratch directories. Needs no runtime, so read-only
/// commands can call it on a machine without runc.
pub async fn interrupt_orphaned_runs(
    store: &Store,
    work_dir: &Path,
) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    {
        let live = store
            .runs_with_status(&[RunStatus::Running, RunStatus::Queued])
            .await?;
        // Runs in a server's durable queue hold nothing and wait for the next server start.
        let parked: std::collections::HashSet<String> = store
            .queued_runs()
            .await?
            .into_iter()
            .map(|q| q.run_id)
            .collect();
        // An exported workflow's run is the orchestrator's: its steps report when they end.
        let exported = store.live_exported_runs().await?;
        for run in live {
            if parked.contains(&run.id) || exported.contains(&run.id) {
                continue;
            }
            let alive = match (run.owner_pid, run.owner_host.as_deref()) {
                (Some(pid), Some(host)) => {
                    Owner::decode(pid, host).is_none_or(|o| o.may_be_alive())
                }
                _ => false,
            };
            if alive {
                continue;
            }
            store
                .mark_run_interrupted(
                    &run.id,
                    now_ms(),
                    "the gantry process running it exited before it finished (killed or crashed)",
                )
                .await?;
            let _ = tokio::fs::remove_dir_all(work_dir.join(&run.id)).await;
            out.push(run.id);
        }
    }
    Ok(out)
}
