//! Bulk reads of a SQLite store: read-only connections of their own, used on a blocking
//! thread, for queries that return many rows (a metric's history). The rows come straight
//! from SQLite into the caller's vector; WAL mode lets them read while the store writes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;

/// Connections kept open between reads.
const IDLE: usize = 2;

#[derive(Clone, Debug)]
pub(crate) struct BulkReader {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl BulkReader {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> BulkReader {
        BulkReader {
            path,
            busy_timeout,
            idle: Arc::default(),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(self.busy_timeout)?;
        Ok(c)
    }

    /// Runs `read` with a connection on a blocking thread; `op` names it in errors.
    pub(crate) async fn read<T, F>(&self, op: String, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let this = self.clone();
        let op2 = op.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match this.idle.lock().ok().and_then(|mut i| i.pop()) {
                Some(c) => c,
                None => this.open()?,
            };
            let out = read(&conn);
            if let Ok(mut idle) = this.idle.lock()
                && idle.len() < IDLE
            {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Invalid {
            what: op2,
            detail: format!("the read stopped: {e}"),
        })?
        .map_err(|source| StoreError::BulkQuery { op, source })
    }
}
