//! Browser sessions: a login page takes a token and starts a server-side session.
//!
//! The cookie (`gantry_session`) holds 32 random bytes; the store keeps only their sha256,
//! with the token it was made from and an expiry ([`SESSION_TTL_MS`]). It is `HttpOnly`,
//! `SameSite=Strict`, and `Secure` when the request came over TLS (a proxy in front says so
//! with `X-Forwarded-Proto: https`). Every request re-reads the session joined with its token,
//! so revoking the token ends its sessions at once. The cookie is accepted only on UI routes
//! and the SSE GETs (`auth::authenticate`); the JSON API keeps requiring a bearer token.

use super::page::LoginPage;
use super::{error_page, same_origin};
use crate::AppState;
use crate::auth::{Principal, Role, hash_secret, token_id_of};
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

pub const COOKIE: &str = "gantry_session";
/// Twelve hours.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// The session secret in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The principal of a live session.
pub async fn principal(state: &AppState, secret: &str) -> Result<Option<Principal>, String> {
    match state
        .store
        .ui_session(&hash_secret(secret), gantry_engine::now_ms())
        .await
    {
        Ok(Some(token)) => Ok(Role::parse(&token.role).map(|role| Principal {
            name: token.name,
            role,
            project: token.project,
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only local paths: never `//host` or a scheme, and only visible ASCII (browsers drop tabs
/// and newlines from URLs, so `/\t/host` would become `//host`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/runs".to_owned(),
    }
}

fn login_form(next: &str, error: &str, status: StatusCode) -> Response {
    let page = LoginPage {
        next: next.to_owned(),
        error: error.to_owned(),
        asset_version: super::assets::VERSION,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the login page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /login`
pub async fn login_page(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    if !state.config.auth {
        return Redirect::to(&next).into_response();
    }
    login_form(&next, "", StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /login` (a form): a valid token starts a session.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    if !state.config.auth {
        return Redirect::to(&next).into_response();
    }
    let secret = f.token.trim();
    let refused = || {
        login_form(
            &next,
            "That token is unknown or revoked.",
            StatusCode::UNAUTHORIZED,
        )
    };
    let Some(id) = token_id_of(secret) else {
        return refused();
    };
    let now = gantry_engine::now_ms();
    let token = match state
        .store
        .verify_token(id, &hash_secret(secret), now)
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => return refused(),
        Err(e) => {
            tracing::error!(error = %e, "verifying a token at login failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "Cannot verify the token: the metadata store failed.",
            );
        }
    };
    let session: [u8; 32] = rand::random();
    let session = hex::encode(session);
    if let Err(e) = state
        .store
        .create_ui_session(&hash_secret(&session), &token.id, now, now + SESSION_TTL_MS)
        .await
    {
        tracing::error!(error = %e, "starting a session failed");
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server error",
            "Cannot start a session: the metadata store failed.",
        );
    }
    let who = Principal {
        name: token.name.clone(),
        role: Role::parse(&token.role).unwrap_or(Role::Viewer),
        project: token.project.clone(),
    };
    crate::api::audit(&state, &who, "ui.login", &token.name, json!({})).await;
    let secure = over_tls(&headers);
    let cookie = format!(
        "{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(why) = same_origin(&headers) {
        return error_page(StatusCode::FORBIDDEN, "Refused: cross-origin request", &why);
    }
    if let Some(secret) = session_cookie(&headers)
        && let Err(e) = state.store.delete_ui_session(&hash_secret(secret)).await
    {
        tracing::error!(error = %e, "ending a session failed");
    }
    let mut resp = Redirect::to("/login").into_response();
    let clear = format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if over_tls(&headers) { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/runs/r-1")), "/runs/r-1");
        assert_eq!(safe_next(Some("//evil.example/x")), "/runs");
        assert_eq!(safe_next(Some("https://evil.example")), "/runs");
        assert_eq!(safe_next(Some("/\\evil.example")), "/runs");
        assert_eq!(safe_next(None), "/runs");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/runs");
        assert_eq!(safe_next(Some("/runs\n")), "/runs");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        let secret = "ab".repeat(32);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE}={secret}; b=2")).unwrap(),
        );
        assert_eq!(session_cookie(&h), Some(secret.as_str()));
        let mut bad = HeaderMap::new();
        bad.insert(
            header::COOKIE,
            HeaderValue::from_static("gantry_session=nothex"),
        );
        assert_eq!(session_cookie(&bad), None);
    }
}
