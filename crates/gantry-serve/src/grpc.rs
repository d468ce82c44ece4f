//! The Open Inference Protocol's gRPC API (KServe's `inference.GRPCInferenceService`, which
//! Triton's clients speak): ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata
//! and ModelInfer (with `raw_input_contents` / `raw_output_contents`), unary over HTTP/2.
//!
//! The messages are written here from the protocol's documented fields and numbers; gRPC's
//! framing (a 1-byte compression flag and a 4-byte big-endian length per message, the status in
//! the `grpc-status` / `grpc-message` trailers) is a few lines over axum's HTTP/2. Requests go
//! through the same [`ModelSet`](crate::ModelSet), metrics and observer as REST ones.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body::Frame;
use prost::Message;
use serde_json::Value;

use crate::ServeError;
use crate::oip::{
    Datatype, InferenceRequest, InferenceResponse, ModelMetadata, Parameters, RequestInput,
    RequestOutput, ServerMetadata, TensorData, TensorMetadata,
};
use crate::server::{BODY_LIMIT, ServeState, infer_with};

/// Messages of `inference.GRPCInferenceService` (field numbers as the protocol defines them).
pub mod proto {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerLiveRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerLiveResponse {
        #[prost(bool, tag = "1")]
        pub live: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerReadyRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerReadyResponse {
        #[prost(bool, tag = "1")]
        pub ready: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelReadyRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelReadyResponse {
        #[prost(bool, tag = "1")]
        pub ready: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerMetadataRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerMetadataResponse {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(string, repeated, tag = "3")]
        pub extensions: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelMetadataRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub datatype: String,
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelMetadataResponse {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, repeated, tag = "2")]
        pub versions: Vec<String>,
        #[prost(string, tag = "3")]
        pub platform: String,
        #[prost(message, repeated, tag = "4")]
        pub inputs: Vec<TensorMetadata>,
        #[prost(message, repeated, tag = "5")]
        pub outputs: Vec<TensorMetadata>,
    }
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum ParameterChoice {
        #[prost(bool, tag = "1")]
        BoolParam(bool),
        #[prost(int64, tag = "2")]
        Int64Param(i64),
        #[prost(string, tag = "3")]
        StringParam(String),
        #[prost(double, tag = "4")]
        DoubleParam(f64),
        #[prost(uint64, tag = "5")]
        Uint64Param(u64),
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferParameter {
        #[prost(oneof = "ParameterChoice", tags = "1, 2, 3, 4, 5")]
        pub parameter_choice: Option<ParameterChoice>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferTensorContents {
        #[prost(bool, repeated, tag = "1")]
        pub bool_contents: Vec<bool>,
        #[prost(int32, repeated, tag = "2")]
        pub int_contents: Vec<i32>,
        #[prost(int64, repeated, tag = "3")]
        pub int64_contents: Vec<i64>,
        #[prost(uint32, repeated, tag = "4")]
        pub uint_contents: Vec<u32>,
        #[prost(uint64, repeated, tag = "5")]
        pub uint64_contents: Vec<u64>,
        #[prost(float, repeated, tag = "6")]
        pub fp32_contents: Vec<f32>,
        #[prost(double, repeated, tag = "7")]
        pub fp64_contents: Vec<f64>,
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub bytes_contents: Vec<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferInputTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub datatype: String,
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, optional, tag = "5")]
        pub contents: Option<InferTensorContents>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferRequestedOutputTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(map = "string, message", tag = "2")]
        pub parameters: HashMap<String, InferParameter>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferRequest {
        #[prost(string, tag = "1")]
        pub model_name: String,
        #[prost(string, tag = "2")]
        pub model_version: String,
        #[prost(string, tag = "3")]
        pub id: String,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, repeated, tag = "5")]
        pub inputs: Vec<InferInputTensor>,
        #[prost(message, repeated, tag = "6")]
        pub outputs: Vec<InferRequestedOutputTensor>,
        #[prost(bytes = "vec", repeated, tag = "7")]
        pub raw_input_contents: Vec<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferOutputTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub datatype: String,
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, optional, tag = "5")]
        pub contents: Option<InferTensorContents>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferResponse {
        #[prost(string, tag = "1")]
        pub model_name: String,
        #[prost(string, tag = "2")]
        pub model_version: String,
        #[prost(string, tag = "3")]
        pub id: String,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, repeated, tag = "5")]
        pub outputs: Vec<InferOutputTensor>,
        #[prost(bytes = "vec", repeated, tag = "6")]
        pub raw_output_contents: Vec<Vec<u8>>,
    }
}

/// gRPC status codes used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// A gRPC error: its code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }
}

impl From<&ServeError> for Status {
    fn from(e: &ServeError) -> Status {
        let code = match e.status() {
            StatusCode::BAD_REQUEST => Code::InvalidArgument,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// The gRPC service's routes, for a listener of its own (`--grpc-listen`).
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .route("/inference.GRPCInferenceService/{method}", post(call))
        .fallback(|| async { reply(Err(Status::new(Code::Unimplemented, "unknown service"))) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Reads the one message of a unary call's body.
pub fn unframe(body: &[u8]) -> Result<&[u8], Status> {
    let Some((header, rest)) = body.split_first_chunk::<5>() else {
        return Err(Status::new(
            Code::InvalidArgument,
            "the request body is not a gRPC message",
        ));
    };
    if header[0] != 0 {
        return Err(Status::new(
            Code::Unimplemented,
            "compressed messages are not supported; send them uncompressed",
        ));
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length != rest.len() {
        return Err(Status::new(
            Code::InvalidArgument,
            format!(
                "the gRPC message says {length} bytes but {} follow; unary calls carry one message",
                rest.len()
            ),
        ));
    }
    Ok(rest)
}

/// One message as a unary call's body.
pub fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // Encoding into a Vec cannot run out of space.
    let _ = message.encode(&mut out);
    Bytes::from(out)
}

/// A unary gRPC answer: the message (on success) then the status trailers.
pub fn reply(result: Result<Bytes, Status>) -> Response {
    let (data, status) = match result {
        Ok(data) => (Some(data), Status::new(Code::Ok, "")),
        Err(status) => (None, status),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status.code as u16));
    if !status.message.is_empty()
        && let Ok(v) = HeaderValue::from_str(&percent_encode(&status.message))
    {
        trailers.insert("grpc-message", v);
    }
    let body = Body::new(Unary {
        data,
        trailers: Some(trailers),
    });
    (
        StatusCode::OK,
        [("content-type", "application/grpc+proto")],
        body,
    )
        .into_response()
}

/// gRPC's `grpc-message` encoding: printable ASCII but `%` as is, the rest percent-encoded.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Unary {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Unary {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// The one message of a unary call's body.
pub fn decode<M: Message + Default>(body: &[u8]) -> Result<M, Status> {
    M::decode(unframe(body)?).map_err(|e| {
        Status::new(
            Code::InvalidArgument,
            format!("cannot decode the request: {e}"),
        )
    })
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

async fn call(
    State(state): State<Arc<ServeState>>,
    Path(method): Path<String>,
    body: Bytes,
) -> Response {
    reply(dispatch(&state, &method, &body).await)
}

async fn dispatch(state: &Arc<ServeState>, method: &str, body: &[u8]) -> Result<Bytes, Status> {
    let models = state.models();
    match method {
        "ServerLive" => {
            decode::<proto::ServerLiveRequest>(body)?;
            Ok(frame(&proto::ServerLiveResponse { live: true }))
        }
        "ServerReady" => {
            decode::<proto::ServerReadyRequest>(body)?;
            Ok(frame(&proto::ServerReadyResponse {
                ready: !models.is_empty(),
            }))
        }
        "ServerMetadata" => {
            decode::<proto::ServerMetadataRequest>(body)?;
            Ok(frame(&server_metadata_response(state.server_metadata())))
        }
        "ModelReady" => {
            let r: proto::ModelReadyRequest = decode(body)?;
            let ready = models.get(&r.name, version(&r.version)).is_ok();
            Ok(frame(&proto::ModelReadyResponse { ready }))
        }
        "ModelMetadata" => {
            let r: proto::ModelMetadataRequest = decode(body)?;
            let model = models
                .get(&r.name, version(&r.version))
                .map_err(|e| Status::from(&e))?;
            Ok(frame(&model_metadata_response(
                model.metadata(models.versions(&r.name)),
            )))
        }
        "ModelInfer" => {
            let r: proto::ModelInferRequest = decode(body)?;
            let name = r.model_name.clone();
            let ver = r.model_version.clone();
            let (_, result) = infer_with(state, &name, version(&ver), || to_request(r)).await;
            let response = result.map_err(|e| Status::from(&e))?;
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

/// REST's server metadata as the gRPC answer.
pub fn server_metadata_response(meta: ServerMetadata) -> proto::ServerMetadataResponse {
    proto::ServerMetadataResponse {
        name: meta.name,
        version: meta.version,
        extensions: meta.extensions,
    }
}

/// REST's model metadata as the gRPC answer.
pub fn model_metadata_response(meta: ModelMetadata) -> proto::ModelMetadataResponse {
    let tensors = |t: Vec<TensorMetadata>| {
        t.into_iter()
            .map(|t| proto::TensorMetadata {
                name: t.name,
                datatype: t.datatype.as_str().to_owned(),
                shape: t.shape,
            })
            .collect()
    };
    proto::ModelMetadataResponse {
        name: meta.name,
        versions: meta.versions,
        platform: meta.platform,
        inputs: tensors(meta.inputs),
        outputs: tensors(meta.outputs),
    }
}

fn parameters(map: HashMap<String, proto::InferParameter>) -> Option<Parameters> {
    if map.is_empty() {
        return None;
    }
    let mut out: Vec<(String, Value)> = map
        .into_iter()
        .filter_map(|(k, p)| {
            let v = match p.parameter_choice? {
                proto::ParameterChoice::BoolParam(b) => Value::Bool(b),
                proto::ParameterChoice::Int64Param(i) => Value::from(i),
                proto::ParameterChoice::StringParam(s) => Value::String(s),
                proto::ParameterChoice::DoubleParam(d) => Value::from(d),
                proto::ParameterChoice::Uint64Param(u) => Value::from(u),
            };
            Some((k, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some(out.into_iter().collect())
}

fn proto_parameters(p: &Option<Parameters>) -> HashMap<String, proto::InferParameter> {
    let Some(p) = p else {
        return HashMap::new();
    };
    p.iter()
        .filter_map(|(k, v)| {
            let choice = match v {
                Value::Bool(b) => proto::ParameterChoice::BoolParam(*b),
                Value::String(s) => proto::ParameterChoice::StringParam(s.clone()),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => proto::ParameterChoice::Int64Param(i),
                    (_, Some(u), _) => proto::ParameterChoice::Uint64Param(u),
                    (_, _, Some(f)) => proto::ParameterChoice::DoubleParam(f),
                    _ => return None,
                },
                _ => return None,
            };
            Some((
                k.clone(),
                proto::InferParameter {
                    parameter_choice: Some(choice),
                },
            ))
        })
        .collect()
}

/// A gRPC inference request as the REST one the models take.
pub fn to_request(r: proto::ModelInferRequest) -> Result<InferenceRequest, ServeError> {
    let raw = !r.raw_input_contents.is_empty();
    if raw && r.raw_input_contents.len() != r.inputs.len() {
        return Err(ServeError::bad_request(format!(
            "raw_input_contents has {} entries for {} inputs; send one per input, in input order",
            r.raw_input_contents.len(),
            r.inputs.len()
        )));
    }
    let mut raw_contents = r.raw_input_contents.into_iter();
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for input in r.inputs {
        let data = if raw {
            let bytes = raw_contents.next().unwrap_or_default();
            let datatype: Datatype = input
                .datatype
                .parse()
                .map_err(|e| ServeError::bad_request(format!("input \"{}\": {e}", input.name)))?;
            crate::binary::decode(&input.name, datatype, &bytes)?
        } else {
            contents_data(&input.name, input.contents.unwrap_or_default())?
        };
        inputs.push(RequestInput {
            name: input.name,
            shape: input.shape,
            datatype: input.datatype,
            parameters: parameters(input.parameters),
            data,
        });
    }
    Ok(InferenceRequest {
        id: (!r.id.is_empty()).then_some(r.id),
        parameters: parameters(r.parameters),
        inputs,
        outputs: r
            .outputs
            .into_iter()
            .map(|o| RequestOutput {
                name: o.name,
                parameters: parameters(o.parameters),
            })
            .collect(),
    })
}

/// Typed `contents`: exactly one of its lists holds the elements.
fn contents_data(name: &str, c: proto::InferTensorContents) -> Result<TensorData, ServeError> {
    let mut found: Vec<TensorData> = Vec::new();
    if !c.bool_contents.is_empty() {
        found.push(TensorData::Bool(c.bool_contents));
    }
    if !c.int_contents.is_empty() {
        found.push(TensorData::Int(
            c.int_contents.into_iter().map(i64::from).collect(),
        ));
    }
    if !c.int64_contents.is_empty() {
        found.push(TensorData::Int(c.int64_contents));
    }
    if !c.uint_contents.is_empty() {
        found.push(TensorData::Uint(
            c.uint_contents.into_iter().map(u64::from).collect(),
        ));
    }
    if !c.uint64_contents.is_empty() {
        found.push(TensorData::Uint(c.uint64_contents));
    }
    if !c.fp32_contents.is_empty() {
        found.push(TensorData::Fp64(
            c.fp32_contents.into_iter().map(f64::from).collect(),
        ));
    }
    if !c.fp64_contents.is_empty() {
        found.push(TensorData::Fp64(c.fp64_contents));
    }
    if !c.bytes_contents.is_empty() {
        let texts = c
            .bytes_contents
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                String::from_utf8(b).map_err(|_| {
                    ServeError::bad_request(format!(
                        "input \"{name}\": BYTES element {i} is not UTF-8 text"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        found.push(TensorData::Bytes(texts));
    }
    match found.len() {
        0 => Ok(TensorData::none()),
        1 => Ok(found.remove(0)),
        _ => Err(ServeError::bad_request(format!(
            "input \"{name}\": contents has elements in more than one typed list; use the one of its datatype"
        ))),
    }
}

/// The REST answer as a gRPC one, every output in `raw_output_contents`.
pub fn to_response(r: &InferenceResponse) -> Result<proto::ModelInferResponse, Status> {
    let mut outputs = Vec::with_capacity(r.outputs.len());
    let mut raw = Vec::with_capacity(r.outputs.len());
    for o in &r.outputs {
        let mut bytes = Vec::new();
        crate::binary::encode(o, &mut bytes).map_err(|e| Status::from(&e))?;
        raw.push(bytes);
        outputs.push(proto::InferOutputTensor {
            name: o.name.clone(),
            datatype: o.datatype.as_str().to_owned(),
            shape: o
                .shape
                .iter()
                .map(|d| i64::try_from(*d).unwrap_or(i64::MAX))
                .collect(),
            parameters: proto_parameters(&o.parameters),
            contents: None,
        });
    }
    Ok(proto::ModelInferResponse {
        model_name: r.model_name.clone(),
        model_version: r.model_version.clone().unwrap_or_default(),
        id: r.id.clone(),
        parameters: proto_parameters(&r.parameters),
        outputs,
        raw_output_contents: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_frames_are_refused() {
        let message = proto::ModelReadyRequest {
            name: "iris".into(),
            version: "2".into(),
        };
        let framed = frame(&message);
        assert_eq!(framed[0], 0);
        assert_eq!(
            u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize,
            framed.len() - 5
        );
        let back: proto::ModelReadyRequest = decode(&framed).unwrap();
        assert_eq!(back, message);
        assert_eq!(unframe(&[0, 0, 0]).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(
            unframe(&[1, 0, 0, 0, 0]).unwrap_err().code,
            Code::Unimplemented
        );
        assert_eq!(
            unframe(&[0, 0, 0, 0, 9, 1]).unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(
            percent_encode("bad \"x\" 100%\nü"),
            "bad \"x\" 100%25%0A%C3%BC"
        );
    }

    #[test]
    fn requests_convert_from_raw_and_typed_contents() {
        let input = |name: &str, datatype: &str, contents| proto::InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![2],
            parameters: HashMap::new(),
            contents,
        };
        let raw: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let request = to_request(proto::ModelInferRequest {
            model_name: "m".into(),
            id: "r".into(),
            inputs: vec![input("a", "FP64", None)],
            raw_input_contents: vec![raw],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(request.id.as_deref(), Some("r"));
        assert_eq!(request.inputs[0].data, TensorData::Fp64(vec![1.5, -2.0]));
        let typed = to_request(proto::ModelInferRequest {
            inputs: vec![input(
                "b",
                "INT32",
                Some(proto::InferTensorContents {
                    int_contents: vec![3, -4],
                    ..Default::default()
                }),
            )],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(typed.id, None);
        assert_eq!(
            typed.inputs[0].decode().unwrap().data,
            TensorData::Int(vec![3, -4])
        );
        let err = to_request(proto::ModelInferRequest {
            inputs: vec![input("a", "FP64", None), input("b", "FP64", None)],
            raw_input_contents: vec![vec![0; 16]],
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("raw_input_contents has 1 entries for 2 inputs")
        );
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        assert_eq!(
            Status::from(&ServeError::bad_request("x")).code,
            Code::InvalidArgument
        );
        assert_eq!(
            Status::from(&ServeError::NotFound("x".into())).code,
            Code::NotFound
        );
        assert_eq!(
            Status::from(&ServeError::internal("x")).code,
            Code::Internal
        );
    }
}
