//! Client uploads: the data of a remote run's `path:` inputs lives on the caller's machine,
//! so `gantry --server URL run` uploads it and the run names it by digest; the server then
//! reads no path of its own for it.
//!
//! - `GET /api/v1/uploads/{digest}?project=P` answers 200 when the server holds that content
//!   *and* someone of project P uploaded it, else 404: the client then uploads. Holding the
//!   digest is not enough, since knowing a digest is not holding the data: a project gets
//!   content only by sending it once.
//! - `PUT /api/v1/uploads/{digest}?project=P&kind=file|directory` streams the canonical bytes
//!   (a file's bytes, or the deterministic tar of a directory). The server hashes while it
//!   stores and refuses a digest mismatch, a body over `--max-upload-bytes` or a directory
//!   tar with unsafe entries, with nothing stored; then grants P and audits the upload.

use super::{ApiError, ApiResult, audit, query_map, require_write};
use crate::AppState;
use crate::auth::Principal;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse};
use futures::StreamExt;
use gantry_artifacts::{ArtifactError, ArtifactKind};
use serde_json::{Value, json};
use std::collections::HashMap;

/// `GET /api/v1/uploads/{digest}?project=P`.
pub async fn get(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(digest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = query_map(q, &["project"])?;
    let project = project_of(&p, &q)?;
    let digest = super::artifacts::normalize_digest(&digest)?;
    let missing = || {
        ApiError::not_found(format!(
            "project {project} has no upload {digest}: upload it with PUT"
        ))
    };
    if !state.store.artifact_granted(&digest, project).await? {
        return Err(missing());
    }
    let info = state
        .artifacts
        .stat(&digest)
        .await
        .map_err(|e| ApiError::internal("reading the artifact store", e))?
        .ok_or_else(missing)?;
    Ok(Json(json!({
        "digest": info.digest, "kind": info.kind.as_str(), "size": info.size, "project": project,
    })))
}

/// `PUT /api/v1/uploads/{digest}?project=P&kind=file|directory`.
pub async fn put(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(digest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    require_write(&p)?;
    let q = query_map(q, &["project", "kind"])?;
    let project = project_of(&p, &q)?.to_owned();
    let digest = super::artifacts::normalize_digest(&digest)?;
    let kind = match q.get("kind").map(String::as_str) {
        Some("file") => ArtifactKind::File,
        Some("directory" | "dir") => ArtifactKind::Directory,
        Some(other) => {
            return Err(ApiError::invalid(
                "kind",
                format!("`kind` must be file or directory, got '{other}'"),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                "kind",
                "`kind` is required: file or directory",
            ));
        }
    };
    let max = state.config.remote.max_upload_bytes;
    let stream = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    let info = state
        .artifacts
        .put_stream(kind, &digest, max, Box::pin(stream))
        .await
        .map_err(|e| upload_error(&digest, max, e))?;
    state
        .store
        .record_artifact(
            &info.digest,
            info.kind.as_str(),
            info.size,
            gantry_engine::now_ms(),
        )
        .await?;
    state
        .store
        .grant_artifact(&info.digest, &project, &p.name, gantry_engine::now_ms())
        .await?;
    audit(
        &state,
        &p,
        "artifact.upload",
        &info.digest,
        json!({"project": project, "kind": info.kind.as_str(), "size": info.size}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "digest": info.digest, "kind": info.kind.as_str(), "size": info.size, "project": project,
        })),
    ))
}

/// The project an upload is for: named by `project=`, and one the caller may use.
fn project_of<'a>(p: &Principal, q: &'a HashMap<String, String>) -> ApiResult<&'a str> {
    let project = q
        .get("project")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "project",
                "`project` is required: the pipeline whose runs will use the upload",
            )
        })?;
    if !p.can_access_project(project) {
        return Err(ApiError::forbidden(format!(
            "token '{}' is scoped to project {}; it cannot upload for project {project}",
            p.name,
            p.project.as_deref().unwrap_or_default()
        ))
        .with_field("project"));
    }
    Ok(project)
}

fn upload_error(digest: &str, max: u64, e: ArtifactError) -> ApiError {
    match e {
        ArtifactError::DigestMismatch { .. } => ApiError::invalid(
            "digest",
            format!("the uploaded content does not match {digest}: {e}; nothing was stored"),
        ),
        ArtifactError::UploadTooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the upload is larger than this server accepts ({max} bytes, --max-upload-bytes); nothing was stored"
            ),
        ),
        ArtifactError::UnsafeEntry { .. } | ArtifactError::BadArchive { .. } => {
            ApiError::invalid("body", format!("the directory upload was refused: {e}"))
        }
        ArtifactError::KindConflict { .. } => ApiError::invalid("kind", e.to_string()),
        ArtifactError::Body { .. } => ApiError::invalid("body", e.to_string()),
        other => ApiError::internal("storing the upload", other),
    }
}
