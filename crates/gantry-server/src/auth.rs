//! Who is calling, and what they may do.
//!
//! The request middleware (see `auth::layer`, written with the token store) resolves
//! every request to a [`Principal`] and inserts it into the request extensions; handlers
//! take `axum::Extension<Principal>` and ask it before writing. In local mode (no
//! `--auth`) every request is the local admin.

use crate::AppState;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gantry_store::{NewToken, Store, StoreError, TokenRecord, new_id};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Roles, from least to most privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Token name, or "local" in single-user mode.
    pub name: String,
    pub role: Role,
    /// A token scoped to one project sees and changes only that project.
    pub project: Option<String>,
}

impl Principal {
    /// The single user of a server without `--auth`.
    pub fn local() -> Principal {
        Principal {
            name: "local".into(),
            role: Role::Admin,
            project: None,
        }
    }

    pub fn can_write(&self) -> bool {
        self.role >= Role::Editor
    }

    pub fn can_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller may see or change things of `project`.
    pub fn can_access_project(&self, project: &str) -> bool {
        self.project.as_deref().is_none_or(|p| p == project)
    }
}

/// What every token secret starts with, so it is recognisable in a leaked config file.
pub const TOKEN_PREFIX: &str = "gantry_";

/// A token just created: the record and the secret, which is shown once and never stored.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub record: TokenRecord,
    pub secret: String,
}

/// Hex sha256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The token id inside a secret `gantry_<id>_<random>`; None when it has another shape.
pub fn token_id_of(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(TOKEN_PREFIX)?;
    let (id, random) = rest.rsplit_once('_')?;
    (!id.is_empty() && random.len() == 64 && random.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(id)
}

/// Creates a token with a fresh random secret.
pub async fn issue_token(
    store: &Store,
    name: &str,
    role: Role,
    project: Option<&str>,
) -> Result<IssuedToken, StoreError> {
    let id = new_id("t");
    let random: [u8; 32] = rand::random();
    let secret = format!("{TOKEN_PREFIX}{id}_{}", hex::encode(random));
    let record = store
        .create_token(&NewToken {
            id,
            name: name.to_owned(),
            secret_sha256: hash_secret(&secret),
            role: role.as_str().to_owned(),
            project: project.map(str::to_owned),
            now_ms: gantry_engine::now_ms(),
        })
        .await?;
    Ok(IssuedToken { record, secret })
}

/// Resolves `Authorization: Bearer <token>` to a [`Principal`] request extension.
///
/// Without `--auth` every request is [`Principal::local`]. With it, `/healthz` is open and
/// everything else needs a live token: a missing, malformed, unknown or revoked one gets
/// 401 with a JSON error (MLflow-shaped under `/api/2.0/`), never a hint of what exists.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !state.config.auth || req.uri().path() == "/healthz" {
        req.extensions_mut().insert(Principal::local());
        return next.run(req).await;
    }
    let mlflow = req.uri().path().starts_with("/api/2.0/");
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    // Browsers: the UI and the log streams it opens take the session cookie instead.
    let ui = crate::ui::is_ui_path(req.uri().path());
    if presented.is_none() && (ui || is_log_stream(&req)) {
        if ui && crate::ui::is_open_ui_path(req.uri().path()) {
            return next.run(req).await;
        }
        if let Some(secret) = crate::ui::session::session_cookie(req.headers()) {
            match crate::ui::session::principal(&state, secret).await {
                Ok(Some(p)) => {
                    req.extensions_mut().insert(p);
                    return next.run(req).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "reading a session failed");
                    return crate::ui::error_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Server error",
                        "Cannot read the session: the metadata store failed.",
                    );
                }
            }
        }
        if ui {
            return login_redirect(&req);
        }
    }
    let Some(secret) = presented else {
        return unauthenticated(
            mlflow,
            "this server requires a token: send `Authorization: Bearer <token>` (gantry --token, GANTRY_TOKEN or MLFLOW_TRACKING_TOKEN)",
        );
    };
    let Some(id) = token_id_of(secret) else {
        return unauthenticated(mlflow, "the bearer token is not a gantry token");
    };
    match state
        .store
        .verify_token(id, &hash_secret(secret), gantry_engine::now_ms())
        .await
    {
        Ok(Some(token)) => {
            let Some(role) = Role::parse(&token.role) else {
                return unauthenticated(mlflow, "the token has an unknown role; create a new one");
            };
            req.extensions_mut().insert(Principal {
                name: token.name,
                role,
                project: token.project,
            });
            next.run(req).await
        }
        Ok(None) => unauthenticated(mlflow, "the bearer token is unknown or revoked"),
        Err(e) => {
            tracing::error!(error = %e, "verifying a token failed");
            let body = if mlflow {
                json!({"error_code": "INTERNAL_ERROR", "message": "cannot verify the token: the metadata store failed"})
            } else {
                json!({"error": {"code": "internal", "message": "cannot verify the token: the metadata store failed"}})
            };
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

/// `GET /api/v1/runs/{id}/logs` (the SSE stream the UI follows).
fn is_log_stream(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == axum::http::Method::GET
        && path
            .strip_prefix("/api/v1/runs/")
            .and_then(|rest| rest.strip_suffix("/logs"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// A page asked for without a session: to the login page, coming back here after it.
fn login_redirect(req: &Request) -> Response {
    if req.method() != axum::http::Method::GET {
        return crate::ui::error_page(
            StatusCode::UNAUTHORIZED,
            "Log in first",
            "Your session ended; log in again and repeat the change.",
        );
    }
    let here = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    axum::response::Redirect::to(&format!("/login?next={}", crate::ui::page::enc(here)))
        .into_response()
}

fn unauthenticated(mlflow: bool, message: &str) -> Response {
    let body = if mlflow {
        json!({"error_code": "UNAUTHENTICATED", "message": message})
    } else {
        json!({"error": {"code": "unauthenticated", "message": message}})
    };
    let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_privilege() {
        let viewer = Principal {
            name: "v".into(),
            role: Role::Viewer,
            project: Some("a".into()),
        };
        assert!(!viewer.can_write() && !viewer.can_admin());
        assert!(viewer.can_access_project("a") && !viewer.can_access_project("b"));
        let editor = Principal {
            role: Role::Editor,
            ..viewer.clone()
        };
        assert!(editor.can_write() && !editor.can_admin());
        assert!(Principal::local().can_admin());
        assert!(Principal::local().can_access_project("anything"));
        assert_eq!(Role::parse("editor"), Some(Role::Editor));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn secrets_carry_their_token_id() {
        let secret = format!("{TOKEN_PREFIX}t1a2b3c4d5e6f_{}", "ab".repeat(32));
        assert_eq!(token_id_of(&secret), Some("t1a2b3c4d5e6f"));
        assert_eq!(token_id_of("gantry_x_short"), None);
        assert_eq!(token_id_of("Bearer nonsense"), None);
        assert_eq!(hash_secret("a").len(), 64);
        assert_ne!(hash_secret("a"), hash_secret("b"));
    }
}
