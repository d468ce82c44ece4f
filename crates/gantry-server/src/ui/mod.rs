//! The web UI: server-rendered HTML at `/` of `gantry server`.
//!
//! Pages are built from the same store queries and access checks as the REST API (a
//! viewer sees what its token sees, nothing else), rendered by one askama template
//! (`templates/page.html`) from the section model in [`page`]; charts and the DAG are SVG
//! drawn by `gantry-ui`. One small script of our own (`assets/app.js`) adds live log tails
//! and status over the existing SSE endpoint; everything else works without JavaScript.
//!
//! Security: every UI response carries a strict Content-Security-Policy (no inline script
//! or style), `X-Content-Type-Options: nosniff` and `frame-ancestors 'none'`; every write
//! (a POST form) must come from this origin (`Sec-Fetch-Site: same-origin`, or an `Origin`
//! equal to the request's host) whether the caller is a session cookie or the local admin.
//! Sessions: see [`session`].

mod admin;
pub(crate) mod assets;
mod deployments;
mod models;
pub mod page;
mod runs;
pub(crate) mod session;
mod tracking;

use crate::AppState;
use crate::api::ApiError;
use crate::auth::Principal;
use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use page::{Nav, Page, Section};
use std::collections::HashMap;
use std::sync::Arc;

/// The Content-Security-Policy of every UI page: our own script and stylesheet only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Paths that belong to the API, the model proxy or the exporters; everything else is UI.
pub fn is_ui_path(path: &str) -> bool {
    !(path.starts_with("/api/")
        || path.starts_with("/ajax-api/")
        || path == "/v2"
        || path.starts_with("/v2/")
        || path.starts_with("/inference.GRPCInferenceService/")
        || path == "/metrics"
        || path == "/healthz")
}

/// UI paths that need nobody logged in.
pub fn is_open_ui_path(path: &str) -> bool {
    path == "/login" || path.starts_with("/static/")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(runs::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/static/{file}", get(assets::serve))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/logs", get(runs::logs))
        .route("/runs/{id}/logs.txt", get(runs::logs_download))
        .route("/runs/{id}/artifacts/{digest}", get(runs::artifact))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/rerun", post(runs::rerun))
        .route("/compare", get(runs::compare))
        .route("/experiments", get(tracking::experiments))
        .route("/experiments/{id}", get(tracking::experiment))
        .route("/experiments/{id}/runs/{run}", get(tracking::run))
        .route("/models", get(models::list))
        .route("/models/{name}", get(models::show))
        .route("/models/{name}/versions/{version}", get(models::version))
        .route("/models/{name}/aliases", post(models::set_alias))
        .route("/deployments", get(deployments::list))
        .route("/deployments/{name}", get(deployments::show))
        .route("/deployments/{name}/promote", post(deployments::promote))
        .route("/deployments/{name}/rollback", post(deployments::rollback))
        .route("/images", get(admin::images))
        .route("/audit", get(admin::audit))
        .layer(middleware::from_fn(same_origin_writes))
}

/// Adds the security headers to every response of a UI path — pages of the UI routes, and
/// the login redirects, 404 and error pages made outside them. The server's outermost layer.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let ui = is_ui_path(req.uri().path());
    let mut resp = next.run(req).await;
    if !ui {
        return resp;
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Refuses a write that does not come from a page of this server: a form posted from
/// another site, or from another port of the same host, fails with 403.
async fn same_origin_writes(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    match same_origin(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(why) => {
            tracing::warn!(path = %req.uri().path(), "refused a cross-origin form post: {why}");
            error_page(
                StatusCode::FORBIDDEN,
                "Refused: cross-origin request",
                &format!("This change must be made from a page of this server ({why})."),
            )
        }
    }
}

/// Whether the request was made by a page of this origin.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return if site == "same-origin" {
            Ok(())
        } else {
            Err(format!("Sec-Fetch-Site is {site}"))
        };
    }
    let host = get("host").ok_or("the request has no Host")?;
    match get("origin") {
        Some(origin) => {
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            if bare == host {
                Ok(())
            } else {
                Err(format!("Origin {origin} is not this server ({host})"))
            }
        }
        None => Err("neither Sec-Fetch-Site nor Origin says where it came from".into()),
    }
}

/// The navigation bar for a principal.
pub fn nav(state: &AppState, p: &Principal, current: &'static str) -> Nav {
    Nav {
        user: p.name.clone(),
        role: p.role.as_str(),
        project: p.project.clone(),
        auth: state.config.auth,
        admin: p.can_admin() && p.project.is_none(),
        current,
    }
}

/// Renders a page as an HTML response.
pub fn render(page: &Page) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the page failed",
            )
                .into_response()
        }
    }
}

/// A minimal error page (no navigation: it may answer a request nobody is logged into).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let nav = Nav {
        user: String::new(),
        role: "",
        project: None,
        auth: false,
        admin: false,
        current: "",
    };
    let mut page = Page::new(nav, title);
    page.push(Section::Notice("error".into(), message.to_owned()));
    page.push(Section::Links(vec![page::Link::new(
        "Back to runs",
        "/runs",
    )]));
    let mut resp = render(&page);
    *resp.status_mut() = status;
    resp
}

/// A UI handler's failure: an API error shown as a page with its status.
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<crate::mlflow::ApiError> for UiError {
    fn from(e: crate::mlflow::ApiError) -> Self {
        UiError(ApiError::from(e))
    }
}

impl From<gantry_store::StoreError> for UiError {
    fn from(e: gantry_store::StoreError) -> Self {
        UiError(ApiError::from(e))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = match e.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "Conflict",
            s if s.is_client_error() => "Bad request",
            _ => "Server error",
        };
        let message = match &e.field {
            Some(f) => format!("{} (field {f})", e.message),
            None => e.message.clone(),
        };
        error_page(e.status, title, &message)
    }
}

pub type UiResult<T = Response> = Result<T, UiError>;

/// Metric histories reduced for charts, keyed by their shape (points, first and last x):
/// MLflow points are only ever added, so a cached series is exact until the shape changes.
/// A history of 100k points costs one aggregate over its index; the next view of it costs
/// the shape query only. Bounded; the least recently used entries go first.
#[derive(Default)]
pub struct SeriesCache {
    entries: std::sync::Mutex<HashMap<SeriesKey, CachedSeries>>,
    clock: std::sync::atomic::AtomicU64,
}

type SeriesKey = (String, String, bool, usize, (i64, i64, i64));
/// When it was last used, and the points.
type CachedSeries = (u64, Arc<Vec<(f64, f64)>>);

/// Entries the cache keeps.
const SERIES_CACHE_ENTRIES: usize = 256;

impl SeriesCache {
    /// The chart points of a tracking run's metric (see `Store::metric_series`).
    pub async fn get(
        &self,
        store: &gantry_store::Store,
        run_id: &str,
        key: &str,
        by_time: bool,
        columns: usize,
    ) -> Result<Arc<Vec<(f64, f64)>>, gantry_store::StoreError> {
        let Some(shape) = store.metric_series_shape(run_id, key, by_time).await? else {
            return Ok(Arc::new(Vec::new()));
        };
        let k: SeriesKey = (run_id.to_owned(), key.to_owned(), by_time, columns, shape);
        let tick = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.entries.lock()
            && let Some((used, v)) = m.get_mut(&k)
        {
            *used = tick;
            return Ok(Arc::clone(v));
        }
        let v = Arc::new(
            store
                .metric_series_of(run_id, key, by_time, columns, shape)
                .await?,
        );
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= SERIES_CACHE_ENTRIES
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, (u, _))| *u)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            m.insert(k, (tick, Arc::clone(&v)));
        }
        Ok(v)
    }
}

/// Where a form goes after it succeeded: back to the page (303 so a reload does not post
/// again).
pub fn back_to(path: &str) -> Response {
    Redirect::to(path).into_response()
}
