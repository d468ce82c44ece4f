//! The Open Inference Protocol's gRPC API for deployments: `gantry server` answers
//! `inference.GRPCInferenceService` (on its own port and, over HTTP/2, on `--grpc-listen`) by
//! turning each call into the REST request the `/v2` routes take — ModelInfer becomes a binary
//! tensor request — and running it through the same handlers: routing, canary weights, project
//! scopes, the prediction log and metrics are the REST path's.

use axum::body::{Bytes, to_bytes};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use gantry_serve::grpc::{
    Code, Status, decode, frame, model_metadata_response, proto, reply, server_metadata_response,
    to_request, to_response,
};
use serde_json::Value;

use super::proxy::{self, ModelPath, Protocol};
use crate::AppState;
use crate::auth::Principal;

/// Answers bigger than this are not read back from the REST handler (they cannot be: the
/// server's body limit caps requests, and answers are of the same order).
const MAX_ANSWER: usize = 256 << 20;

/// `POST /inference.GRPCInferenceService/{method}`.
pub(crate) async fn call(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(method): Path<String>,
    body: Bytes,
) -> Response {
    reply(dispatch(state, principal, &method, &body).await)
}

fn model_path(name: String, version: String) -> ModelPath {
    ModelPath::new(name, (!version.is_empty()).then_some(version))
}

/// An HTTP status and `{"error": …}` answer as a gRPC status.
fn status_of(code: StatusCode, body: &[u8]) -> Status {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| code.to_string());
    let grpc = match code {
        StatusCode::BAD_REQUEST => Code::InvalidArgument,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => Code::Unavailable,
        StatusCode::CONFLICT => Code::AlreadyExists,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        _ => Code::Internal,
    };
    Status::new(grpc, message)
}

async fn read(response: Response) -> Result<(StatusCode, HeaderMap, Bytes), Status> {
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_ANSWER)
        .await
        .map_err(|e| Status::new(Code::Internal, format!("reading the answer: {e}")))?;
    Ok((parts.status, parts.headers, bytes))
}

async fn dispatch(
    state: AppState,
    principal: Principal,
    method: &str,
    body: &[u8],
) -> Result<Bytes, Status> {
    match method {
        "ServerLive" => {
            decode::<proto::ServerLiveRequest>(body)?;
            Ok(frame(&proto::ServerLiveResponse { live: true }))
        }
        "ServerReady" => {
            decode::<proto::ServerReadyRequest>(body)?;
            let (status, _, _) = read(proxy::ready(State(state)).await).await?;
            Ok(frame(&proto::ServerReadyResponse {
                ready: status.is_success(),
            }))
        }
        "ServerMetadata" => {
            decode::<proto::ServerMetadataRequest>(body)?;
            let (_, _, bytes) = read(proxy::server_metadata().await).await?;
            let meta: gantry_serve::oip::ServerMetadata = serde_json::from_slice(&bytes)
                .map_err(|e| Status::new(Code::Internal, e.to_string()))?;
            Ok(frame(&server_metadata_response(meta)))
        }
        "ModelReady" => {
            let r: proto::ModelReadyRequest = decode(body)?;
            let answer = proxy::model_ready(
                State(state),
                Extension(principal),
                Path(model_path(r.name, r.version)),
            )
            .await;
            let (status, _, _) = read(answer).await?;
            Ok(frame(&proto::ModelReadyResponse {
                ready: status.is_success(),
            }))
        }
        "ModelMetadata" => {
            let r: proto::ModelMetadataRequest = decode(body)?;
            let answer = proxy::model_metadata(
                State(state),
                Extension(principal),
                Path(model_path(r.name, r.version)),
            )
            .await;
            let (status, _, bytes) = read(answer).await?;
            if !status.is_success() {
                return Err(status_of(status, &bytes));
            }
            let meta: gantry_serve::oip::ModelMetadata = serde_json::from_slice(&bytes)
                .map_err(|e| Status::new(Code::Internal, format!("the model's metadata: {e}")))?;
            Ok(frame(&model_metadata_response(meta)))
        }
        "ModelInfer" => {
            let r: proto::ModelInferRequest = decode(body)?;
            let name = r.model_name.clone();
            let version = (!r.model_version.is_empty()).then(|| r.model_version.clone());
            let request = to_request(r).map_err(|e| Status::from(&e))?;
            let (body, header_length) =
                gantry_serve::binary::encode_request(&request).map_err(|e| Status::from(&e))?;
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(
                gantry_serve::binary::HEADER_LENGTH,
                HeaderValue::from(header_length),
            );
            let answer = proxy::handle(
                state,
                principal,
                name,
                version,
                Protocol::Infer,
                headers,
                Bytes::from(body),
            )
            .await;
            let (status, headers, bytes) = read(answer).await?;
            if !status.is_success() {
                return Err(status_of(status, &bytes));
            }
            let length = headers
                .get(gantry_serve::binary::HEADER_LENGTH)
                .map(HeaderValue::as_bytes);
            let response = gantry_serve::binary::header_length(length)
                .and_then(|n| gantry_serve::binary::parse_response(&bytes, n))
                .map_err(|e| {
                    Status::new(Code::Internal, format!("the model server's answer: {e}"))
                })?;
            Ok(frame(&to_response(&response)?))
        }
        other => Err(Status::new(
            Code::Unimplemented,
            format!(
                "{other} is not implemented; this server answers ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata and ModelInfer"
            ),
        )),
    }
}
