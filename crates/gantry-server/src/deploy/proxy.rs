//! `/v2/…` on the control plane: the Open Inference Protocol for every deployment.
//!
//! `/v2/models/<deployment>/infer` (and the rows form `/predict`) picks the primary or the
//! canary by weight, forwards to a ready replica of that model version, retries another
//! replica when one cannot be reached, logs the prediction (group-committed before the
//! answer leaves), and copies the request to the shadow model without waiting for it.
//! `/v2/models/<deployment>/versions/<v>/…` pins a version the deployment serves.

use super::replica::{Forwarded, ReplicaResponse};
use super::{Deployments, Live, Pool};
use crate::AppState;
use crate::auth::Principal;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gantry_serve::oip::InferenceRequest;
use gantry_store::{NewPrediction, PredictionInputs};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

type Row = BTreeMap<String, Value>;

/// The OIP error shape.
pub(crate) fn oip_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

pub(crate) async fn server_metadata() -> Response {
    Json(json!({
        "name": "gantry",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "gantry_rows"],
    }))
    .into_response()
}

pub(crate) async fn live() -> Response {
    Json(json!({"live": true})).into_response()
}

pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    // The server is ready when its store answers; each model has its own readiness.
    match state.store.list_deployments().await {
        Ok(_) => Json(json!({"ready": true})).into_response(),
        Err(e) => oip_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("metadata store: {e}"),
        ),
    }
}

/// An OIP error not yet turned into a response (small, so `Result`s stay small).
pub(crate) struct OipError(StatusCode, String);

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        oip_error(self.0, self.1)
    }
}

fn live_or_404(d: &Deployments, name: &str) -> Result<Arc<Live>, OipError> {
    d.live(name).ok_or_else(|| {
        OipError(
            StatusCode::NOT_FOUND,
            format!("no deployment `{name}` is serving (see `gantry deployments`)"),
        )
    })
}

fn pool_of_version(live: &Live, version: &str) -> Result<(Arc<Pool>, &'static str), OipError> {
    let pools = [
        (Some(&live.primary), "primary"),
        (live.canary.as_ref(), "canary"),
        (live.shadow.as_ref(), "shadow"),
    ];
    for (pool, role) in pools {
        if let Some(p) = pool
            && p.model.target.version.to_string() == version
        {
            return Ok((Arc::clone(p), role));
        }
    }
    Err(OipError(
        StatusCode::NOT_FOUND,
        format!(
            "deployment `{}` does not serve version {version} (it serves {})",
            live.name, live.spec.model.version
        ),
    ))
}

/// `/v2/models/{name}` and `/v2/models/{name}/versions/{version}` alike.
#[derive(serde::Deserialize)]
pub(crate) struct ModelPath {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

impl ModelPath {
    pub(crate) fn new(name: String, version: Option<String>) -> ModelPath {
        ModelPath { name, version }
    }
}

/// The pool a metadata or readiness request is about: the version asked for, else the
/// primary model.
fn pool_for(d: &Deployments, p: &ModelPath) -> Result<Arc<Pool>, OipError> {
    let live = live_or_404(d, &p.name)?;
    match &p.version {
        Some(v) => Ok(pool_of_version(&live, v)?.0),
        None => Ok(Arc::clone(&live.primary)),
    }
}

pub(crate) async fn model_metadata(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(p): Path<ModelPath>,
) -> Response {
    if let Some(r) = hidden_from(&state.deployments, &principal, &p.name) {
        return r;
    }
    match pool_for(&state.deployments, &p) {
        Ok(pool) => {
            let path = format!(
                "/v2/models/{}/versions/{}",
                p.name, pool.model.target.version
            );
            forward_get(&pool, &path).await
        }
        Err(r) => r.into_response(),
    }
}

pub(crate) async fn model_ready(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(p): Path<ModelPath>,
) -> Response {
    if let Some(r) = hidden_from(&state.deployments, &principal, &p.name) {
        return r;
    }
    match pool_for(&state.deployments, &p) {
        Ok(pool) => pool_ready(&p.name, &pool),
        Err(r) => r.into_response(),
    }
}

fn pool_ready(name: &str, pool: &Pool) -> Response {
    let ready = pool.ready() > 0;
    let body = Json(json!({"name": name, "ready": ready}));
    if ready {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn forward_get(pool: &Pool, path: &str) -> Response {
    let mut tried = Vec::new();
    loop {
        let Some(replica) = pool.pick(&tried) else {
            return no_replica(pool);
        };
        match replica
            .send(hyper::Method::GET, path, Forwarded::default(), Bytes::new())
            .await
        {
            Ok(r) => return passthrough(r),
            Err(e) => {
                tracing::debug!("{e}");
                tried.push(replica.id.clone());
            }
        }
    }
}

fn no_replica(pool: &Pool) -> Response {
    oip_error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no ready replica of {} right now; try again shortly",
            pool.model.target.label()
        ),
    )
}

fn passthrough(answer: ReplicaResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let ct = answer
        .content_type
        .unwrap_or_else(|| "application/json".into());
    let mut response = (status, [(header::CONTENT_TYPE, ct)], answer.body).into_response();
    if let Some(n) = answer
        .header_length
        .and_then(|n| header::HeaderValue::from_str(&n).ok())
    {
        response
            .headers_mut()
            .insert(gantry_serve::binary::HEADER_LENGTH, n);
    }
    response
}

/// What the proxy reads of a replica's answer for the prediction log.
enum Parsed {
    /// A successful inference answer (JSON or with binary outputs).
    Infer(gantry_serve::oip::InferenceResponse),
    /// Anything else that is JSON: a rows answer, an error.
    Json(Value),
    Unreadable,
}

impl Parsed {
    fn read(protocol: Protocol, answer: &ReplicaResponse) -> Parsed {
        if protocol == Protocol::Infer && (200..300).contains(&answer.status) {
            let length = answer.header_length.as_deref().map(str::as_bytes);
            if let Ok(response) = gantry_serve::binary::header_length(length)
                .and_then(|n| gantry_serve::binary::parse_response(&answer.body, n))
            {
                return Parsed::Infer(response);
            }
        }
        serde_json::from_slice(&answer.body).map_or(Parsed::Unreadable, Parsed::Json)
    }

    fn id(&self) -> Option<&str> {
        match self {
            Parsed::Infer(r) => Some(&r.id),
            Parsed::Json(v) => v.get("id").and_then(Value::as_str),
            Parsed::Unreadable => None,
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Parsed::Json(v) => v.get("error").and_then(Value::as_str),
            _ => None,
        }
    }
}

/// The request's body with the headers that say how to read it.
#[derive(Clone)]
struct Sent {
    content_type: Option<String>,
    header_length: Option<String>,
    body: Bytes,
}

impl Sent {
    fn forwarded(&self) -> Forwarded<'_> {
        Forwarded {
            content_type: self.content_type.as_deref(),
            header_length: self.header_length.as_deref(),
        }
    }

    /// The body as an inference request (JSON or with binary tensors); None when it is not
    /// one (the model server answers why).
    fn parse(&self) -> Option<InferenceRequest> {
        let length = self.header_length.as_deref().map(str::as_bytes);
        gantry_serve::binary::header_length(length)
            .and_then(|n| gantry_serve::binary::parse_request(&self.body, n))
            .ok()
    }
}

/// What a built-in replica (`gantry serve`, which reads the binary tensor extension) is sent
/// for a JSON inference request that was parsed here already: the same request with its
/// inputs' data binary, so the numbers are parsed once. None (send the body as it came) for
/// a custom model server, a request with binary data already, or one whose data does not
/// fit its shape and datatype, whose error the model server words as usual.
fn binary_for_replica(flavor: &str, sent: &Sent, request: &InferenceRequest) -> Option<Sent> {
    if flavor == "custom" || sent.header_length.is_some() {
        return None;
    }
    let fits = request.inputs.iter().all(|i| {
        let elements = i
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
        elements == Some(i.data.len())
    });
    if !fits {
        return None;
    }
    let (body, header) = gantry_serve::binary::encode_request_inputs(request).ok()?;
    Some(Sent {
        content_type: Some("application/octet-stream".into()),
        header_length: Some(header.to_string()),
        body: Bytes::from(body),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Infer,
    Predict,
}

impl Protocol {
    fn path(self) -> &'static str {
        match self {
            Protocol::Infer => "infer",
            Protocol::Predict => "predict",
        }
    }
}

pub(crate) async fn infer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(p): Path<ModelPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        state,
        principal,
        p.name,
        p.version,
        Protocol::Infer,
        headers,
        body,
    )
    .await
}

pub(crate) async fn predict(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(p): Path<ModelPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        state,
        principal,
        p.name,
        p.version,
        Protocol::Predict,
        headers,
        body,
    )
    .await
}

/// A deployment of another project answers as if it did not exist, like runs of other
/// projects.
fn hidden_from(d: &Deployments, principal: &Principal, name: &str) -> Option<Response> {
    let live = match live_or_404(d, name) {
        Ok(live) => live,
        Err(r) => return Some(r.into_response()),
    };
    match &live.project {
        Some(project) if !principal.can_access_project(project) => Some(oip_error(
            StatusCode::NOT_FOUND,
            format!("no deployment `{name}` is serving (see `gantry deployments`)"),
        )),
        _ => None,
    }
}

pub(crate) async fn handle(
    state: AppState,
    principal: Principal,
    name: String,
    version: Option<String>,
    protocol: Protocol,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let d = &state.deployments;
    let live = match live_or_404(d, &name) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    if let Some(project) = &live.project
        && !principal.can_access_project(project)
    {
        // As if it did not exist, like runs of other projects.
        return oip_error(
            StatusCode::NOT_FOUND,
            format!("no deployment `{name}` is serving (see `gantry deployments`)"),
        );
    }
    let (pool, role) = match &version {
        Some(v) => match pool_of_version(&live, v) {
            Ok(p) => p,
            Err(r) => return r.into_response(),
        },
        None => match gantry_spec::deployment::route(&live.spec, rand::random::<u8>() % 100) {
            gantry_spec::deployment::Route::Canary => match &live.canary {
                Some(c) => (Arc::clone(c), "canary"),
                None => (Arc::clone(&live.primary), "primary"),
            },
            gantry_spec::deployment::Route::Primary => (Arc::clone(&live.primary), "primary"),
        },
    };
    let path = format!(
        "/v2/models/{name}/versions/{}/{}",
        pool.model.target.version,
        protocol.path()
    );
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let sent = Sent {
        content_type: text(header::CONTENT_TYPE.as_str()),
        header_length: text(gantry_serve::binary::HEADER_LENGTH),
        body,
    };
    let sampled = live.spec.sample_rate >= 1.0
        || (live.spec.sample_rate > 0.0 && rand::random::<f64>() < live.spec.sample_rate);
    // A logged tensor request is read here for the log anyway: a built-in replica then gets
    // its tensors in binary and does not parse the numbers a second time.
    let request = (sampled && protocol == Protocol::Infer)
        .then(|| sent.parse())
        .flatten();
    let forward = request
        .as_ref()
        .and_then(|r| binary_for_replica(&pool.model.flavor, &sent, r))
        .unwrap_or_else(|| sent.clone());
    let mut tried = Vec::new();
    let mut last_error = None;
    let answer = loop {
        let Some(replica) = pool.pick(&tried) else {
            let (status, response) = match last_error {
                // Every ready replica failed this request: say why.
                Some(e) => (
                    502,
                    oip_error(
                        StatusCode::BAD_GATEWAY,
                        format!("the model server failed: {e}"),
                    ),
                ),
                None => (503, no_replica(&pool)),
            };
            d.metrics().observe_inference(
                &name,
                &pool.model.target.label(),
                role,
                status,
                started.elapsed(),
            );
            return response;
        };
        match replica
            .send(
                hyper::Method::POST,
                &path,
                forward.forwarded(),
                forward.body.clone(),
            )
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(deployment = %name, "{e}; trying another replica");
                tried.push(replica.id.clone());
                last_error = Some(e);
            }
        }
    };
    let elapsed = started.elapsed();
    let version_label = pool.model.target.label();
    d.metrics()
        .observe_inference(&name, &version_label, role, answer.status, elapsed);

    let parsed = Parsed::read(protocol, &answer);
    // The model server's id keys the log; a failed request (no id in an error answer) is
    // logged under a fresh one so errors count in the monitor's error rate.
    let request_id = parsed
        .id()
        .map(str::to_owned)
        .or_else(|| (answer.status >= 400).then(gantry_serve::new_request_id));
    if sampled && let Some(request_id) = request_id.clone() {
        let record = prediction_record(
            &name,
            &pool,
            role,
            protocol,
            &sent,
            request.as_ref(),
            answer.status,
            &parsed,
            &request_id,
            elapsed,
        );
        if let Err(e) = d.predlog().record(record, may_carry_id(&sent)).await {
            let conflict = e.contains("already") || e.contains("duplicate") || e.contains("unique");
            return if conflict {
                oip_error(
                    StatusCode::CONFLICT,
                    format!(
                        "request id `{request_id}` is already in the prediction log: feedback is keyed by request id, so each request needs its own (omit `id` to get one)"
                    ),
                )
            } else {
                oip_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the prediction could not be logged, so it is not returned: {e}"),
                )
            };
        }
    }
    if let (Some(shadow), Some(request_id)) = (&live.shadow, request_id)
        && version.is_none()
    {
        let shadow = Arc::clone(shadow);
        let state = state.clone();
        let name = name.clone();
        tokio::spawn(async move {
            shadow_copy(state, name, shadow, protocol, sent, request_id).await;
        });
    }
    passthrough(answer)
}

async fn shadow_copy(
    state: AppState,
    name: String,
    pool: Arc<Pool>,
    protocol: Protocol,
    sent: Sent,
    request_id: String,
) {
    let started = Instant::now();
    let Some(replica) = pool.pick(&[]) else {
        return;
    };
    let path = format!(
        "/v2/models/{name}/versions/{}/{}",
        pool.model.target.version,
        protocol.path()
    );
    let Ok(answer) = replica
        .send(
            hyper::Method::POST,
            &path,
            sent.forwarded(),
            sent.body.clone(),
        )
        .await
    else {
        return;
    };
    let elapsed = started.elapsed();
    state.deployments.metrics().observe_inference(
        &name,
        &pool.model.target.label(),
        "shadow",
        answer.status,
        elapsed,
    );
    let parsed = Parsed::read(protocol, &answer);
    let record = prediction_record(
        &name,
        &pool,
        "shadow",
        protocol,
        &sent,
        None,
        answer.status,
        &parsed,
        &request_id,
        elapsed,
    );
    state.deployments.predlog().record_detached(record).await;
}

#[allow(clippy::too_many_arguments)]
fn prediction_record(
    deployment: &str,
    pool: &Pool,
    role: &str,
    protocol: Protocol,
    request: &Sent,
    parsed_request: Option<&InferenceRequest>,
    status: u16,
    answer: &Parsed,
    request_id: &str,
    elapsed: std::time::Duration,
) -> NewPrediction {
    let mut inputs = decode_inputs(pool, protocol, request, parsed_request);
    let (mut outputs, error) = if (200..300).contains(&status) {
        (decode_predictions(answer), None)
    } else {
        let message = answer
            .error()
            .unwrap_or("the model server failed")
            .to_string();
        (Vec::new(), Some(format!("{status}: {message}")))
    };
    // One output per input row. Whatever could not be decoded (a custom model's odd
    // answer) is logged as unknown rather than losing the record.
    let n_inputs = inputs.row_count().unwrap_or(0);
    if error.is_none() && n_inputs != outputs.len() {
        let n = n_inputs.max(outputs.len());
        let mut rows = match inputs.to_rows().into_owned() {
            Value::Array(rows) => rows,
            _ => Vec::new(),
        };
        rows.resize_with(n, || Value::Object(serde_json::Map::new()));
        inputs = PredictionInputs::Rows(Value::Array(rows));
        outputs.resize(n, Value::Null);
    }
    let mut record = NewPrediction {
        request_id: request_id.to_string(),
        deployment: deployment.to_string(),
        model: pool.model.target.model.clone(),
        version: pool.model.target.version,
        role: role.to_string(),
        rows: inputs.row_count().unwrap_or(0) as i64,
        inputs,
        outputs: Value::Array(outputs),
        error,
        latency_us: elapsed.as_micros().min(i64::MAX as u128) as i64,
        created_at_ms: gantry_engine::now_ms(),
    };
    // A batch too large for one log record is still answered and counted (latency,
    // errors); its rows are left out of the log, so drift and feedback skip it.
    let limit = gantry_store::serving_limits::PREDICTION_JSON_BYTES;
    let inputs_too_large = match &record.inputs {
        PredictionInputs::Columns(c) => c.encoded_len() > limit,
        PredictionInputs::Rows(v) => v.to_string().len() > limit,
    };
    if inputs_too_large || record.outputs.to_string().len() > limit {
        tracing::warn!(request = %request_id, rows = record.rows, "request too large to log its rows");
        record.inputs = PredictionInputs::empty();
        record.outputs = Value::Array(Vec::new());
        record.rows = 0;
    }
    record
}

/// The request's rows: columns when it is a tensor request (no JSON value per row).
/// `parsed`: the tensor request, when it was read already.
fn decode_inputs(
    pool: &Pool,
    protocol: Protocol,
    request: &Sent,
    parsed: Option<&InferenceRequest>,
) -> PredictionInputs {
    match protocol {
        Protocol::Predict => PredictionInputs::Rows(Value::Array(
            serde_json::from_slice::<Value>(&request.body)
                .ok()
                .and_then(|v| v.get("rows").cloned())
                .and_then(|r| serde_json::from_value::<Vec<Row>>(r).ok())
                .unwrap_or_default()
                .into_iter()
                .map(|r| Value::Object(r.into_iter().collect()))
                .collect(),
        )),
        Protocol::Infer => {
            let read;
            let req = match parsed {
                Some(r) => r,
                None => match request.parse() {
                    Some(r) => {
                        read = r;
                        &read
                    }
                    None => return PredictionInputs::empty(),
                },
            };
            let columns = match &pool.model.schema {
                Some(schema) => {
                    gantry_serve::request_columns(req, schema).unwrap_or(gantry_serve::RowColumns {
                        rows: 0,
                        columns: Vec::new(),
                    })
                }
                None => gantry_serve::tensor_columns(req),
            };
            store_columns(columns)
        }
    }
}

/// Tensor columns as the log stores them (rows, should two columns share a name).
fn store_columns(c: gantry_serve::RowColumns) -> PredictionInputs {
    use gantry_serve::oip::TensorData;
    use gantry_store::columns::{Column, ColumnValues, Columns};
    let mut names = std::collections::HashSet::with_capacity(c.columns.len());
    if !c
        .columns
        .iter()
        .all(|(name, _)| names.insert(name.as_str()))
    {
        return PredictionInputs::Rows(Value::Array(
            c.into_rows()
                .into_iter()
                .map(|r| Value::Object(r.into_iter().collect()))
                .collect(),
        ));
    }
    let rows = c.rows;
    let columns = c
        .columns
        .into_iter()
        .map(|(name, data)| Column {
            name,
            values: match data {
                TensorData::Fp64(v) => ColumnValues::F64(v),
                TensorData::Int(v) => ColumnValues::I64(v),
                TensorData::Uint(v) => ColumnValues::U64(v),
                TensorData::Bool(v) => ColumnValues::Bool(v),
                TensorData::Bytes(v) => ColumnValues::Text(v),
                other => ColumnValues::Json((0..rows).map(|i| other.json(i)).collect()),
            },
        })
        .collect();
    Columns::new(rows, columns)
        .map(PredictionInputs::Columns)
        .unwrap_or_else(|_| PredictionInputs::empty())
}

/// Whether the request may name its own id (its JSON mentions an `id` key): only such ids
/// are checked against the log before the answer (the model server's own are unique).
fn may_carry_id(request: &Sent) -> bool {
    let json = match request
        .header_length
        .as_deref()
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        Some(n) => request.body.get(..n).unwrap_or(&request.body),
        None => &request.body,
    };
    memchr::memmem::find(json, b"\"id\"").is_some()
}

fn decode_predictions(answer: &Parsed) -> Vec<Value> {
    match answer {
        Parsed::Json(answer) => answer
            .get("predictions")
            .and_then(|p| p.as_array())
            .map(|p| {
                p.iter()
                    .map(|x| x.get("value").cloned().unwrap_or(Value::Null))
                    .collect()
            })
            .unwrap_or_default(),
        Parsed::Infer(r) => gantry_serve::response_predictions(r),
        Parsed::Unreadable => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: serde_json::Value) -> Sent {
        Sent {
            content_type: Some("application/json".into()),
            header_length: None,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn a_built_in_replica_gets_a_parsed_json_request_with_binary_inputs() {
        let sent = json(json!({
            "id": "r-1",
            "parameters": {"p": 1},
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1.5, -2], [3e2, 0.25]]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
            ],
            "outputs": [{"name": "predict"}]
        }));
        let request = sent.parse().unwrap();
        for flavor in ["builtin", "onnx"] {
            let forward = binary_for_replica(flavor, &sent, &request).unwrap();
            let header = forward.header_length.as_deref().unwrap();
            assert!(header.parse::<usize>().unwrap() < forward.body.len());
            // What the replica reads is the request that came, outputs asked for as they were.
            let read = forward.parse().unwrap();
            assert_eq!(read.id.as_deref(), Some("r-1"));
            assert_eq!(read.outputs, request.outputs);
            assert_eq!(read.parameters, request.parameters);
            assert!(!gantry_serve::binary::wants_binary(&read, "predict"));
            for (a, b) in read.inputs.iter().zip(&request.inputs) {
                assert_eq!(
                    a.decode().unwrap().data,
                    b.decode().unwrap().data,
                    "{}",
                    a.name
                );
                assert_eq!(
                    (&a.name, &a.shape, &a.datatype),
                    (&b.name, &b.shape, &b.datatype)
                );
            }
        }
    }

    #[test]
    fn anything_else_is_sent_as_it_came() {
        let sent = json(
            json!({"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]}),
        );
        let request = sent.parse().unwrap();
        // A custom model server may not read binary tensors.
        assert!(binary_for_replica("custom", &sent, &request).is_none());
        // Binary already.
        let (body, n) = gantry_serve::binary::encode_request_inputs(&request).unwrap();
        let binary = Sent {
            content_type: None,
            header_length: Some(n.to_string()),
            body: Bytes::from(body),
        };
        assert!(binary_for_replica("builtin", &binary, &binary.parse().unwrap()).is_none());
        // Data that does not fit its shape: the model server words the error.
        let misfit = json(
            json!({"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0]}]}),
        );
        assert!(binary_for_replica("builtin", &misfit, &misfit.parse().unwrap()).is_none());
        // A datatype that cannot be encoded.
        let odd = json(
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1.0]}]}),
        );
        assert!(binary_for_replica("builtin", &odd, &odd.parse().unwrap()).is_none());
    }
}
