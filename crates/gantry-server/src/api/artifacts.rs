//! Artifacts: what a run consumed and produced, and their content.

use super::runs::visible_run;
use super::{ApiError, ApiResult, query_map};
use crate::AppState;
use crate::auth::Principal;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gantry_artifacts::ArtifactKind;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Component, PathBuf};

/// `GET /api/v1/runs/{id}/artifacts`: the run's lineage rows.
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = visible_run(&state, &p, &id).await?;
    let rows = state.store.lineage_for_run(&run.id).await?;
    Ok(Json(json!(rows)))
}

/// `GET /api/v1/runs/{id}/artifacts/{digest}[?path=]`: an artifact of that run.
pub async fn content_of_run(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, digest)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let run = visible_run(&state, &p, &id).await?;
    let digest = normalize_digest(&digest)?;
    let rows = state.store.lineage_for_run(&run.id).await?;
    if !rows.iter().any(|r| r.digest == digest) {
        return Err(ApiError::not_found(format!(
            "run {} neither consumed nor produced artifact {digest}",
            run.id
        )));
    }
    serve(&state, &digest, q).await
}

/// `GET /api/v1/artifacts/{digest}[?path=]`: a file's bytes; for a directory, its file
/// list, or with `path=` one file inside it. Project-scoped tokens must name the run.
pub async fn content(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(digest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if p.project.is_some() {
        return Err(ApiError::forbidden(
            "a project-scoped token reads artifacts through their run: GET /api/v1/runs/{id}/artifacts/{digest}",
        ));
    }
    let digest = normalize_digest(&digest)?;
    serve(&state, &digest, q).await
}

pub(crate) fn normalize_digest(d: &str) -> ApiResult<String> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ApiError::invalid(
            "digest",
            format!("'{d}' is not an artifact digest: expected sha256:<64 lowercase hex>"),
        ));
    }
    Ok(format!("sha256:{hex}"))
}

/// A relative path inside a directory artifact: no `..`, no root, no empty name.
fn inner_path(path: &str) -> ApiResult<PathBuf> {
    let bad = || {
        ApiError::invalid(
            "path",
            format!("'{path}' is not a path inside the artifact: use a relative path without `..`"),
        )
    };
    if path.is_empty() || path.contains('\0') || path.contains('\\') {
        return Err(bad());
    }
    let p = PathBuf::from(path);
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    Ok(p)
}

async fn serve(state: &AppState, digest: &str, q: HashMap<String, String>) -> ApiResult<Response> {
    let q = query_map(q, &["path"])?;
    let inner = q.get("path").map(|p| inner_path(p)).transpose()?;
    let info = state
        .artifacts
        .stat(digest)
        .await
        .map_err(|e| ApiError::internal("reading the artifact store", e))?
        .ok_or_else(|| ApiError::not_found(format!("artifact {digest} is not in the store")))?;
    let local = state
        .artifacts
        .materialize(digest)
        .await
        .map_err(|e| ApiError::internal("materializing the artifact", e))?;
    let file = match (info.kind, inner) {
        (ArtifactKind::File, None) => local,
        (ArtifactKind::File, Some(_)) => {
            return Err(ApiError::invalid(
                "path",
                format!("artifact {digest} is a file: it has no paths inside"),
            ));
        }
        (ArtifactKind::Directory, None) => {
            let root = local.clone();
            let files = tokio::task::spawn_blocking(move || list_files(&root))
                .await
                .map_err(|e| ApiError::internal("listing the artifact", e))?
                .map_err(|e| ApiError::internal("listing the artifact", e))?;
            return Ok(
                Json(json!({"digest": digest, "kind": "directory", "files": files}))
                    .into_response(),
            );
        }
        (ArtifactKind::Directory, Some(rel)) => {
            // Symlinks in a tree may point anywhere: resolve, then require the result to
            // stay inside the artifact.
            let root = tokio::fs::canonicalize(&local)
                .await
                .map_err(|e| ApiError::internal("resolving the artifact", e))?;
            let missing =
                || ApiError::not_found(format!("artifact {digest} has no file {}", rel.display()));
            let full = tokio::fs::canonicalize(root.join(&rel))
                .await
                .map_err(|_| missing())?;
            if !full.starts_with(&root) {
                return Err(ApiError::invalid(
                    "path",
                    format!("{} leads outside the artifact", rel.display()),
                ));
            }
            if !tokio::fs::metadata(&full)
                .await
                .map(|m| m.is_file())
                .unwrap_or(false)
            {
                return Err(missing());
            }
            full
        }
    };
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(|e| ApiError::internal("reading the artifact", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("x-gantry-artifact-kind"),
                "file".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Regular files of a tree, relative paths with sizes, sorted.
fn list_files(root: &std::path::Path) -> std::io::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let name = rel.join(entry.file_name());
            if meta.is_dir() {
                stack.push(name);
            } else if meta.is_file() {
                out.push((name.to_string_lossy().into_owned(), meta.len()));
            }
        }
    }
    out.sort();
    Ok(out
        .into_iter()
        .map(|(path, size)| json!({"path": path, "size": size}))
        .collect())
}
