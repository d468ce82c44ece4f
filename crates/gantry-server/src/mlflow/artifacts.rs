//! The artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>`): MLflow clients upload
//! and download a run's files through the server, which keeps them under
//! `config.mlflow_artifacts_dir`. Runs' artifact URIs are `mlflow-artifacts:/<exp>/<run>/artifacts`.
//!
//! Every path is checked before the disk is touched: it must be relative and stay below the
//! root after decoding (no `..`, `.`, empty segments, backslashes, NUL or still-encoded
//! dots and slashes). A project-scoped caller reaches only the paths of its experiments
//! (see `scope.rs`); the others answer as missing.

use std::path::{Path, PathBuf};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::scope::{Scope, artifact_experiment_id, experiment_missing};
use super::{ApiError, ApiResult, Params, require_write};
use crate::AppState;
use crate::auth::Principal;

const PROXY_PREFIX: &str = "/api/2.0/mlflow-artifacts/artifacts/";
const URI_SCHEME: &str = "mlflow-artifacts:/";

/// Largest single artifact accepted through the proxy.
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;

/// Decodes `%XX` escapes; None for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A decoded artifact path as a relative path below the root, or the reason it is refused.
/// The empty path is the root itself.
pub fn safe_relative(path: &str) -> Result<PathBuf, ApiError> {
    let refuse = |why: &str| {
        ApiError::invalid(format!(
            "Invalid artifact path '{}': {why}",
            path.escape_default()
        ))
    };
    if path.is_empty() {
        return Ok(PathBuf::new());
    }
    if path.contains('\0') {
        return Err(refuse("it contains a NUL byte"));
    }
    if path.contains('\\') {
        return Err(refuse("it contains a backslash"));
    }
    if path.starts_with('/') {
        return Err(refuse(
            "it is absolute; give a path relative to the artifact root",
        ));
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(refuse(
            "it contains encoded dots, slashes or NUL after decoding",
        ));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut rel = PathBuf::new();
    for seg in trimmed.split('/') {
        match seg {
            "" => return Err(refuse("it has an empty segment ('//')")),
            "." | ".." => return Err(refuse("it has '.' or '..' segments")),
            s => rel.push(s),
        }
    }
    Ok(rel)
}

/// The path after the proxy prefix in the raw request URI, decoded and checked.
fn path_from_uri(uri: &axum::http::Uri) -> Result<PathBuf, ApiError> {
    let raw = uri.path();
    let encoded = raw.strip_prefix(PROXY_PREFIX).unwrap_or_default();
    let decoded = percent_decode(encoded).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid artifact path '{encoded}': malformed percent-encoding"
        ))
    })?;
    if decoded.is_empty() {
        return Err(ApiError::invalid("Missing artifact path after /artifacts/"));
    }
    safe_relative(&decoded)
}

fn no_artifact(path: &Path) -> ApiError {
    ApiError::not_found(format!("No artifact at '{}'", path.display()))
}

fn io_error(what: &str, path: &Path, err: &std::io::Error) -> ApiError {
    if err.kind() == std::io::ErrorKind::NotFound {
        no_artifact(path)
    } else {
        tracing::error!(path = %path.display(), error = %err, "mlflow artifacts: {what} failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: format!("cannot {what} artifact '{}': {err}", path.display()),
        }
    }
}

/// `PUT /api/2.0/mlflow-artifacts/artifacts/<path>`: the body becomes the file, atomically
/// (written to a temporary file beside it, synced, then renamed over it).
pub async fn upload(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    body: Body,
) -> Result<Response, ApiError> {
    require_write(&who)?;
    let rel = path_from_uri(&uri)?;
    if !Scope::new(&s.store, &who).shows_artifact_path(&rel).await? {
        // Uploads create their directories, so what is missing is the experiment.
        let experiment = artifact_experiment_id(&rel).unwrap_or_default();
        return Err(experiment_missing(experiment));
    }
    let root = &s.config.mlflow_artifacts_dir;
    let dest = root.join(&rel);
    let dir = dest.parent().unwrap_or(root).to_path_buf();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| io_error("create the directory of", &rel, &e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.upload-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let result = write_body(&tmp, body).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    if let Err(e) = tokio::fs::rename(&tmp, &dest).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_error("store", &rel, &e));
    }
    Ok(Json(json!({})).into_response())
}

async fn write_body(tmp: &Path, body: Body) -> Result<(), ApiError> {
    let shown = Path::new(tmp.file_name().unwrap_or_default());
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| io_error("write", shown, &e))?;
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read the upload: {e}")))?;
        written += chunk.len() as u64;
        if written > MAX_ARTIFACT_BYTES {
            return Err(ApiError::invalid(format!(
                "artifact too large: the limit is {MAX_ARTIFACT_BYTES} bytes"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| io_error("write", shown, &e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| io_error("write", shown, &e))?;
    Ok(())
}

/// `GET /api/2.0/mlflow-artifacts/artifacts/<path>`: the file's bytes.
pub async fn download(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let rel = path_from_uri(&uri)?;
    if !Scope::new(&s.store, &who).shows_artifact_path(&rel).await? {
        return Err(no_artifact(&rel));
    }
    let path = s.config.mlflow_artifacts_dir.join(&rel);
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| io_error("read", &rel, &e))?;
    if !meta.is_file() {
        return Err(ApiError::not_found(format!(
            "'{}' is a directory, not a file: list it instead",
            rel.display()
        )));
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io_error("read", &rel, &e))?;
    let stream = futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `DELETE /api/2.0/mlflow-artifacts/artifacts/<path>`: a file or a whole directory.
pub async fn delete_artifact(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult {
    require_write(&who)?;
    let rel = path_from_uri(&uri)?;
    if !Scope::new(&s.store, &who).shows_artifact_path(&rel).await? {
        return Err(no_artifact(&rel));
    }
    let path = s.config.mlflow_artifacts_dir.join(&rel);
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| io_error("delete", &rel, &e))?;
    let removed = if meta.is_dir() {
        tokio::fs::remove_dir_all(&path).await
    } else {
        tokio::fs::remove_file(&path).await
    };
    removed.map_err(|e| io_error("delete", &rel, &e))?;
    Ok(Json(json!({})))
}

/// Entries of a directory below the root: (name, is_dir, size), by name. A missing directory
/// lists as empty, as in MLflow.
async fn list_dir(root: &Path, rel: &Path) -> Result<Vec<(String, bool, u64)>, ApiError> {
    let dir = root.join(rel);
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", rel, &e)),
    };
    let mut out = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| io_error("list", rel, &e))?
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        // In-flight uploads are not artifacts yet.
        if name.starts_with('.') && name.contains(".upload-") {
            continue;
        }
        let meta = entry
            .metadata()
            .await
            .map_err(|e| io_error("list", rel, &e))?;
        out.push((name, meta.is_dir(), meta.len()));
    }
    out.sort();
    Ok(out)
}

fn file_info(path: String, is_dir: bool, size: u64) -> Value {
    if is_dir {
        json!({"path": path, "is_dir": true})
    } else {
        json!({"path": path, "is_dir": false, "file_size": size})
    }
}

/// `GET /api/2.0/mlflow-artifacts/artifacts?path=`: entries of a directory, by base name.
pub async fn list_proxied(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let rel = safe_relative(&p.opt_str("path")?.unwrap_or_default())?;
    let scope = Scope::new(&s.store, &who);
    // What the caller may not see lists as a missing directory does: empty.
    let mut entries = if scope.shows_artifact_path(&rel).await? {
        list_dir(&s.config.mlflow_artifacts_dir, &rel).await?
    } else {
        Vec::new()
    };
    if rel.as_os_str().is_empty() {
        scope
            .retain_artifact_root(&mut entries, |(name, _, _)| name.as_str())
            .await?;
    }
    let files: Vec<Value> = entries
        .into_iter()
        .map(|(name, is_dir, size)| file_info(name, is_dir, size))
        .collect();
    Ok(Json(json!({"files": files})))
}

/// `GET /api/2.0/mlflow/artifacts/list?run_id=&path=`: a run's artifacts, by path relative
/// to the run's artifact root.
pub async fn list_run_artifacts(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> ApiResult {
    let id = p.run_id()?;
    let scope = Scope::new(&s.store, &who);
    let run = scope.run(s.store.get_tracking_run(&id).await?, &id).await?;
    let sub = p.opt_str("path")?.unwrap_or_default();
    let sub_rel = safe_relative(&sub)?;
    let root_uri = run.info.artifact_uri.clone();
    let Some(run_root) = root_uri.strip_prefix(URI_SCHEME) else {
        // Artifacts stored elsewhere (an experiment's own location) are not listed here.
        return Ok(Json(json!({"root_uri": root_uri, "files": []})));
    };
    let run_rel = safe_relative(run_root.trim_start_matches('/'))?;
    // A run's artifact root lies below its experiment's location, which its creator chose:
    // it is listed only where the proxy would let the caller read.
    let entries = if scope.shows_artifact_path(&run_rel).await? {
        list_dir(&s.config.mlflow_artifacts_dir, &run_rel.join(&sub_rel)).await?
    } else {
        Vec::new()
    };
    let prefix = sub.trim_end_matches('/');
    let files: Vec<Value> = entries
        .into_iter()
        .map(|(name, is_dir, size)| {
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            file_info(path, is_dir, size)
        })
        .collect();
    Ok(Json(json!({"root_uri": root_uri, "files": files})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\\..\\b",
            "a/./b",
            "a//b",
            "a\0b",
            "%2e%2e/x",
            "%2E%2e%2Fx",
            "..",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            safe_relative("1/abc/artifacts/m/model.pkl").unwrap(),
            PathBuf::from("1/abc/artifacts/m/model.pkl")
        );
        assert_eq!(safe_relative("dir/").unwrap(), PathBuf::from("dir"));
        assert_eq!(safe_relative("").unwrap(), PathBuf::new());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").unwrap(), "a b");
        assert_eq!(percent_decode("%2e%2E").unwrap(), "..");
        assert_eq!(percent_decode("%252e").unwrap(), "%2e");
        assert!(percent_decode("%zz").is_none());
        assert!(percent_decode("%2").is_none());
        assert!(percent_decode("%ff").is_none());
    }
}
