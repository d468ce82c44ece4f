//! `gantry hook netns-ready`: the OCI `createRuntime` hook runc runs once a step's
//! namespaces exist. It hands the container's pid to the engine (over the Unix socket the
//! engine made for this step) and waits until the engine has opened the tracking relay
//! inside the step's network namespace; runc starts the step only after it exits 0.

use crate::exit::{self, coded};
use anyhow::Context;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

pub fn netns_ready(socket: &Path) -> anyhow::Result<u8> {
    let mut state = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut state)
        .context("reading the OCI state from stdin")?;
    let state: serde_json::Value =
        serde_json::from_str(&state).context("the OCI state on stdin is not JSON")?;
    let pid = state["pid"]
        .as_u64()
        .filter(|p| *p > 0)
        .ok_or_else(|| coded(exit::USAGE, "the OCI state has no pid"))?;
    let mut conn = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(9)))?;
    writeln!(conn, "{pid}")?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer)?;
    if answer.trim() == "ok" {
        Ok(exit::OK)
    } else {
        Err(coded(
            exit::ENVIRONMENT,
            format!(
                "the engine could not open the tracking relay: {}",
                answer.trim()
            ),
        ))
    }
}
