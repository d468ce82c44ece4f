//! External data named by URL is fetched by the engine, never by the step: the step
//! keeps no network, and the content digest goes into the cache key.
//!
//! Every fetch goes through the engine's [`FetchPolicy`]: on a server it refuses loopback,
//! link-local, private and unique-local addresses (after DNS resolution, on every redirect),
//! so a remote user cannot make the server fetch its own network for them.

use gantry_net::FetchPolicy;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Largest download accepted (a data set, not a disk image).
pub(crate) const MAX_DOWNLOAD_BYTES: u64 = 4 << 30;

/// Downloads `url` into `dest`, refusing non-2xx answers, oversized bodies and addresses
/// the policy forbids.
pub(crate) async fn download(url: &str, dest: &Path, policy: &FetchPolicy) -> Result<u64, String> {
    let checked = policy.check_url(url).map_err(|e| e.to_string())?;
    let client = policy
        .client(reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(20)))
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut resp = client
        .get(checked)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", gantry_net::describe(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let mut total = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {}", gantry_net::describe(&e)))?
    {
        total += chunk.len() as u64;
        if total > MAX_DOWNLOAD_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOWNLOAD_BYTES} bytes"));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    Ok(total)
}
