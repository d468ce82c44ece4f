//! The whole application: routes, auth, body limit, request metrics, graceful shutdown.

use crate::api::ApiError;
use crate::deploy::proxy;
use crate::{AppState, api, auth, mlflow, ui};
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long shutdown waits for cancelled runs to record their end, and then for open
/// connections (log streams of runs of other processes never end on their own).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Every route of the server, with its middleware.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api::router())
        .merge(mlflow::router())
        .merge(ui::router())
        .route(
            "/inference.GRPCInferenceService/{method}",
            post(crate::deploy::grpc::call),
        )
        .route("/v2", get(proxy::server_metadata))
        .route("/v2/health/live", get(proxy::live))
        .route("/v2/health/ready", get(proxy::ready))
        .route("/v2/models/{name}", get(proxy::model_metadata))
        .route("/v2/models/{name}/ready", get(proxy::model_ready))
        .route("/v2/models/{name}/infer", post(proxy::infer))
        .route("/v2/models/{name}/predict", post(proxy::predict))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(proxy::model_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(proxy::model_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(proxy::infer),
        )
        .route(
            "/v2/models/{name}/versions/{version}/predict",
            post(proxy::predict),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            limit_bodies(max_body, req, next)
        }))
        .layer(middleware::from_fn(json_limit_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn(ui::security_headers))
        .with_state(state)
}

/// Serves until `shutdown` resolves; then refuses new runs, cancels the running ones
/// (recorded as cancelled), and stops within [`SHUTDOWN_GRACE`] twice at most.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(state, listener, Vec::new(), shutdown).await
}

/// [`serve`] on `listener` and every one of `more` (the same routes on each: `gantry server
/// --grpc-listen` gives gRPC clients a port of their own).
pub async fn serve_on(
    state: AppState,
    listener: tokio::net::TcpListener,
    more: Vec<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = tokio_util::sync::CancellationToken::new();
    let others: Vec<_> = more
        .into_iter()
        .map(|l| {
            let stop = stopping.clone();
            tokio::spawn(
                axum::serve(l, router(state.clone()))
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .into_future(),
            )
        })
        .collect();
    let shutdown = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
        }
    };
    let result = serve_one(state, listener, shutdown).await;
    stopping.cancel();
    for other in others {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, other).await;
    }
    result
}

async fn serve_one(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let runs = state.runs.clone();
    let deployments = state.deployments.clone();
    let reconciler = deployments.spawn();
    let image_watch = crate::image_watch::spawn(&state);
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: cancelling in-flight runs, stopping replicas");
        let (_, _) = tokio::join!(runs.shutdown(SHUTDOWN_GRACE), deployments.shutdown());
        let _ = reconciler.await;
        if let Some(w) = image_watch {
            w.abort();
        }
        let _ = stopped_tx.send(());
    };
    let app = router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    tokio::select! {
        r = server => r,
        _ = async {
            if stopped_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
            Ok(())
        }
    }
}

/// Resolves on the first Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state
        .store
        .list_runs(&gantry_store::RunFilter {
            limit: 1,
            ..Default::default()
        })
        .await
    {
        Ok(_) => Json(json!({
            "status": "ok",
            "store": state.store.backend(),
            "engine": state.runs.has_engine(),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: the metadata store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "store": state.store.backend()})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    match state
        .metrics
        .render(
            &state.store,
            state.runs.in_flight(),
            &state.config.prices,
            state
                .runs
                .engine()
                .map(|e| e.scheduler().standings())
                .as_deref(),
        )
        .await
    {
        Ok(text) => gantry_serve::exposition(text, &headers),
        Err(e) => ApiError::internal("rendering metrics", e).into_response(),
    }
}

async fn not_found(req: Request) -> Response {
    if ui::is_ui_path(req.uri().path()) {
        return ui::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no page at {}.", req.uri().path()),
        );
    }
    ApiError::not_found(format!("no endpoint {} {}", req.method(), req.uri().path()))
        .into_response()
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    state.metrics.observe_request(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// Bounds every request body to `max` bytes, except artifact uploads through the MLflow
/// proxy: those stream to a temp file under their own, larger cap
/// (`mlflow::artifacts::MAX_ARTIFACT_BYTES`), since models are routinely bigger than any
/// sensible JSON body.
async fn limit_bodies(max: usize, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // Uploads stream to their own limits (MLflow's artifact cap, --max-upload-bytes).
    if path.starts_with("/api/2.0/mlflow-artifacts/")
        || path.starts_with("/ajax-api/2.0/mlflow-artifacts/")
        || path.starts_with("/api/v1/uploads/")
    {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    // Without a Content-Length (chunked), the body is cut off at `max` while it is read.
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, max)));
    next.run(req).await
}

/// The body-limit layers answer 413 in plain text; clients of this API expect JSON.
async fn json_limit_errors(req: Request, next: Next) -> Response {
    let mlflow = req.uri().path().starts_with("/api/2.0/");
    let oip = req.uri().path().starts_with("/v2/");
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return resp;
    }
    let message = "the request body is larger than this server accepts";
    let body = if oip {
        json!({"error": message})
    } else if mlflow {
        json!({"error_code": "INVALID_PARAMETER_VALUE", "message": message})
    } else {
        json!({"error": {"code": "payload_too_large", "message": message}})
    };
    (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
}
