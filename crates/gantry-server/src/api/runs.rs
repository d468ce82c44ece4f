//! Runs: submit, list, get, cancel, and logs over Server-Sent Events.

use super::{ApiError, ApiResult, audit, json_object, query_map, require_write, type_name};
use crate::AppState;
use crate::auth::Principal;
use crate::state::StartError;
use crate::views;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, response::IntoResponse};
use futures::StreamExt;
use gantry_engine::{EngineError, RunRequest};
use gantry_store::{RunFilter, RunRecord, RunStatus, Store};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

/// Most runs one list page returns.
const MAX_PAGE: i64 = 1000;

/// The run, if it exists and the caller may see it; 404 alike for both, so a scoped token
/// learns nothing about other projects.
pub(crate) async fn visible_run(state: &AppState, p: &Principal, id: &str) -> ApiResult<RunRecord> {
    let run = state.store.get_run(id).await?;
    if !p.can_access_project(&run.pipeline) {
        return Err(ApiError::from(gantry_store::StoreError::NotFound {
            kind: "run",
            id: id.to_owned(),
        }));
    }
    Ok(run)
}

/// `POST /api/v1/runs` with `{"spec_yaml", "params"?, "no_cache"?, "file_name"?}`.
pub async fn submit(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    require_write(&p)?;
    let map = json_object(
        &body,
        &[
            "spec_yaml",
            "params",
            "no_cache",
            "file_name",
            "inputs",
            "priority",
        ],
    )?;
    let priority = match super::string_field(&map, "priority", false)? {
        None => gantry_engine::Priority::Normal,
        Some(text) => gantry_engine::Priority::parse(text).ok_or_else(|| {
            ApiError::invalid(
                "priority",
                format!(
                    "unknown priority '{text}': expected {}",
                    gantry_engine::Priority::NAMES
                ),
            )
        })?,
    };
    let spec_yaml = super::string_field(&map, "spec_yaml", true)?.unwrap_or_default();
    let file_name = super::string_field(&map, "file_name", false)?.unwrap_or("pipeline.yaml");
    let no_cache = match map.get("no_cache") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(ApiError::invalid(
                "no_cache",
                format!("`no_cache` must be a boolean, got {}", type_name(v)),
            ));
        }
    };
    let mut overrides = Vec::new();
    match map.get("params") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            for (k, v) in params {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(ApiError::invalid(
                            format!("params.{k}"),
                            format!(
                                "param `{k}` must be a string, number or boolean, got {}",
                                type_name(other)
                            ),
                        ));
                    }
                };
                overrides.push((k.clone(), text));
            }
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "params",
                format!(
                    "`params` must be an object of name → value, got {}",
                    type_name(v)
                ),
            ));
        }
    }
    let uploaded = uploaded_inputs(map.get("inputs"))?;
    // A remote spec has no directory on the server: its paths are the client's (uploaded,
    // see `inputs`) or absolute paths below a data root. Relative ones are taken from `/`
    // only so that the refusal names a full path.
    let pipeline = gantry_spec::parse(file_name, std::path::Path::new("/"), spec_yaml)
        .map_err(|e| ApiError::spec(e, Some("spec_yaml".into())))?;
    if !p.can_access_project(&pipeline.name) {
        return Err(ApiError::forbidden(format!(
            "token '{}' is scoped to project {}; pipeline {} belongs to project {}",
            p.name,
            p.project.as_deref().unwrap_or_default(),
            pipeline.name,
            pipeline.name
        )));
    }
    let params = match gantry_spec::resolve_params(&pipeline, &overrides) {
        Ok(v) => v,
        Err(e) => {
            let field = overrides
                .iter()
                .find(|o| gantry_spec::resolve_params(&pipeline, std::slice::from_ref(*o)).is_err())
                .map(|(k, _)| format!("params.{k}"))
                .unwrap_or_else(|| "params".into());
            return Err(ApiError::spec(e, Some(field)));
        }
    };
    let plan = gantry_spec::plan(&pipeline, &params)
        .map_err(|e| ApiError::spec(e, Some("spec_yaml".into())))?;
    let name = pipeline.name.clone();
    if let Err(refusal) = check_remote_run(&state, &plan, &name, &uploaded).await {
        if refusal.status == StatusCode::FORBIDDEN {
            audit(
                &state,
                &p,
                "run.refused",
                &name,
                json!({"field": refusal.field, "reason": refusal.message}),
            )
            .await;
        }
        return Err(refusal);
    }
    let mut req = RunRequest::new(pipeline, spec_yaml.to_owned(), params.clone());
    req.no_cache = no_cache;
    req.pinned_inputs = uploaded.clone();
    req.submitted_by = Some(p.name.clone());
    req.priority = priority;
    let run_id = state.runs.start(req).await.map_err(start_error)?;
    audit(
        &state,
        &p,
        "run.submit",
        &run_id,
        json!({"pipeline": name, "params": params, "no_cache": no_cache, "inputs": uploaded, "priority": priority}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"run_id": run_id, "pipeline": name})),
    ))
}

/// `inputs`: `{"step/input": "sha256:…"}`, the uploads that stand for the spec's `path:`
/// inputs.
fn uploaded_inputs(v: Option<&Value>) -> ApiResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (key, d) in m {
                let field = format!("inputs.{key}");
                let Some(d) = d.as_str() else {
                    return Err(ApiError::invalid(
                        field,
                        format!(
                            "`inputs.{key}` must be an artifact digest string, got {}",
                            type_name(d)
                        ),
                    ));
                };
                let digest =
                    super::artifacts::normalize_digest(d).map_err(|e| e.with_field(field))?;
                out.insert(key.clone(), digest);
            }
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "inputs",
                format!(
                    "`inputs` must be an object of \"step/input\" → uploaded digest, got {}",
                    type_name(v)
                ),
            ));
        }
    }
    Ok(out)
}

/// What a caller's run may not do on this server, checked before anything runs or is read:
/// each upload must stand for a `path:` input and belong to the project; every other path
/// input must lie below a data root open to the project; URLs must pass the fetch policy;
/// `network: true` and GPUs only where the admin allowed them.
async fn check_remote_run(
    state: &AppState,
    plan: &gantry_spec::Plan,
    project: &str,
    uploaded: &BTreeMap<String, String>,
) -> ApiResult<()> {
    for (key, digest) in uploaded {
        let field = format!("inputs.{key}");
        let names_a_path = key.split_once('/').is_some_and(|(step, input)| {
            plan.steps.iter().any(|s| {
                s.name == step
                    && matches!(s.inputs.get(input), Some(gantry_spec::InputSource::Path(_)))
            })
        });
        if !names_a_path {
            return Err(ApiError::invalid(
                field,
                format!(
                    "`{key}` is not a `path:` input of this pipeline (expected \"step/input\")"
                ),
            ));
        }
        let granted = state.store.artifact_granted(digest, project).await?
            && state
                .artifacts
                .stat(digest)
                .await
                .map_err(|e| ApiError::internal("reading the artifact store", e))?
                .is_some();
        if !granted {
            return Err(ApiError::forbidden(format!(
                "input {key}: {digest} was not uploaded for project {project}; upload it first (PUT /api/v1/uploads/{digest}?project={project})"
            ))
            .with_field(field));
        }
    }
    check_remote_policy(state, plan, project, uploaded).await
}

/// The server's rules for a remote run that do not depend on who uploaded what: network,
/// GPUs, and every input not pinned in `pinned` readable under the data roots / fetch policy.
async fn check_remote_policy(
    state: &AppState,
    plan: &gantry_spec::Plan,
    project: &str,
    pinned: &BTreeMap<String, String>,
) -> ApiResult<()> {
    let remote = &state.config.remote;
    for step in &plan.steps {
        if step.network && !remote.network_allowed(project) {
            return Err(ApiError::forbidden(format!(
                "step {} asks for `network: true`, which this server does not allow for project {project} (an admin can with `gantry server --allow-network {project}`)",
                step.name
            ))
            .with_field(format!("steps.{}.network", step.name)));
        }
        if step.resources.gpu > 0 && !remote.gpu_allowed(project) {
            return Err(ApiError::forbidden(format!(
                "step {} asks for {} GPU(s), which this server denies to project {project} (--deny-gpu)",
                step.name, step.resources.gpu
            ))
            .with_field(format!("steps.{}.resources.gpu", step.name)));
        }
    }
    if let Err(r) = state
        .runs
        .check_external_inputs(plan, project, pinned)
        .await
    {
        return Err(ApiError::forbidden(r.to_string())
            .with_field(format!("steps.{}.inputs.{}", r.step, r.input)));
    }
    Ok(())
}

/// Starts a rerun of run `id` for `p` (the UI's Rerun button): the same spec, params,
/// images, and the inputs the run read (pinned by digest). The server's rules for remote
/// runs apply again — network, GPUs, and any input the earlier run did not pin (a step that
/// never ran) must still be readable under the data roots and fetch policy.
pub(crate) async fn rerun(state: &AppState, p: &Principal, id: &str) -> ApiResult<String> {
    require_write(p)?;
    let run = visible_run(state, p, id).await?;
    let engine = state
        .runs
        .engine()
        .ok_or_else(|| start_error(StartError::NoEngine))?;
    let mut req = engine
        .rerun_request(&run.id)
        .await
        .map_err(|e| ApiError::conflict(e.to_string()))?;
    req.submitted_by = Some(p.name.clone());
    let plan = gantry_spec::plan(&req.pipeline, &req.params)
        .map_err(|e| ApiError::spec(e, Some("spec_yaml".into())))?;
    if let Err(refusal) = check_remote_policy(state, &plan, &run.pipeline, &req.pinned_inputs).await
    {
        if refusal.status == StatusCode::FORBIDDEN {
            audit(
                state,
                p,
                "run.refused",
                &run.pipeline,
                json!({"field": refusal.field, "reason": refusal.message, "rerun_of": run.id}),
            )
            .await;
        }
        return Err(refusal);
    }
    let new_id = state.runs.start(req).await.map_err(start_error)?;
    audit(state, p, "run.rerun", &new_id, json!({"rerun_of": run.id})).await;
    Ok(new_id)
}

fn start_error(e: StartError) -> ApiError {
    match e {
        StartError::NoEngine => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server runs no engine; start it with `gantry server` on a machine with an OCI runtime",
        ),
        StartError::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is shutting down; submit again once it is back",
        ),
        StartError::Engine(e) => match e {
            EngineError::Spec(s) => ApiError::spec(s, Some("spec_yaml".into())),
            EngineError::Capacity { .. }
            | EngineError::Builtin { .. }
            | EngineError::Invalid { .. }
            | EngineError::Image { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", e.to_string())
                    .with_field("spec_yaml")
            }
            // Recorded as a failed run with its decisions; the caller gets the reasons. 422:
            // the request is well-formed, the policy refuses its images.
            EngineError::PolicyDenied { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy_denied",
                e.to_string(),
            )
            .with_field("spec_yaml"),
            other => ApiError::internal("starting the run", other),
        },
    }
}

/// `GET /api/v1/runs?pipeline=&status=&limit=&offset=`, newest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = query_map(q, &["pipeline", "status", "limit", "offset"])?;
    let status = q
        .get("status")
        .map(|s| {
            s.parse::<RunStatus>()
                .map_err(|e| ApiError::invalid("status", e.to_string()))
        })
        .transpose()?;
    let int = |name: &str, default: i64, max: i64| -> ApiResult<i64> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (0..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid(
                    name,
                    format!("`{name}` must be an integer from 0 to {max}, got '{v}'"),
                )),
            },
        }
    };
    let limit = int("limit", 50, MAX_PAGE)?;
    let offset = int("offset", 0, i64::MAX)?;
    let mut pipeline = q.get("pipeline").cloned();
    if let Some(project) = &p.project {
        match &pipeline {
            Some(asked) if asked != project => {
                return Ok(Json(
                    json!({"runs": [], "limit": limit, "offset": offset, "next_offset": null}),
                ));
            }
            _ => pipeline = Some(project.clone()),
        }
    }
    // One more than asked tells whether a next page exists.
    let mut records = state
        .store
        .list_runs(&RunFilter {
            pipeline,
            status,
            limit: if limit == 0 { 0 } else { limit + 1 },
            offset,
        })
        .await?;
    let more = limit > 0 && records.len() as i64 > limit;
    records.truncate(if limit == 0 {
        records.len()
    } else {
        limit as usize
    });
    let runs = views::run_items(&state.store, &records).await?;
    Ok(Json(json!({
        "runs": runs, "limit": limit, "offset": offset,
        "next_offset": more.then(|| offset + limit),
    })))
}

/// `GET /api/v1/runs/{id}` (a unique prefix of 4+ characters works too).
pub async fn get(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = visible_run(&state, &p, &id).await?;
    let mut doc = views::run_detail(&state.store, &run, &state.config.prices).await?;
    // What of the run waits for admission, and why (its start, or steps ready to run).
    if !run.status.is_terminal()
        && let Some(engine) = state.runs.engine()
    {
        let waiting: Vec<Value> = engine
            .queue_snapshot()
            .waiting
            .into_iter()
            .filter(|w| w.request.run_id == run.id)
            .map(|w| {
                json!({
                    "step": w.request.step,
                    "kind": w.request.kind,
                    "position": w.position,
                    "since_ms": w.request.since_ms,
                    "reason": w.wait.to_string(),
                })
            })
            .collect();
        if let Value::Object(m) = &mut doc {
            m.insert("waiting".into(), Value::Array(waiting));
        }
    }
    Ok(Json(doc))
}

/// `POST /api/v1/runs/{id}/cancel`: stops a run this server executes; it ends `cancelled`.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    require_write(&p)?;
    let run = visible_run(&state, &p, &id).await?;
    if run.status.is_terminal() {
        return Err(ApiError::conflict(format!(
            "run {} already ended ({}); nothing to cancel",
            run.id, run.status
        )));
    }
    if let Some((orchestrator, _, name)) = state.store.exported_run(&run.id).await? {
        return Err(ApiError::conflict(format!(
            "run {} is {orchestrator} run {name}, which its orchestrator runs: stop it there (e.g. `argo stop {name}`)",
            run.id
        )));
    }
    if !state.runs.cancel(&run.id) {
        // Parked in the durable queue by a server that stopped and not resumed here: it
        // holds nothing, so cancelling is recording it.
        if run.status == gantry_store::RunStatus::Queued && state.store.dequeue_run(&run.id).await?
        {
            state
                .store
                .update_run_status(
                    &run.id,
                    gantry_store::RunStatus::Cancelled,
                    Some(gantry_engine::now_ms()),
                    Some("cancelled while queued"),
                )
                .await?;
            audit(&state, &p, "run.cancel", &run.id, json!({"queued": true})).await;
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"run_id": run.id, "status": "cancelled"})),
            ));
        }
        return Err(ApiError::conflict(format!(
            "run {} is executed by another gantry process, not this server; cancel it there (Ctrl-C)",
            run.id
        )));
    }
    audit(&state, &p, "run.cancel", &run.id, json!({})).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": run.id, "status": "cancelling"})),
    ))
}

struct LogCursor {
    store: Store,
    run_id: String,
    step: Option<String>,
    after: i64,
    follow: bool,
    grep: Option<regex::Regex>,
    since_ms: Option<i64>,
    /// `lines` events of whole chunks instead of a `log` event per line.
    batch: bool,
    done: bool,
}

/// `GET /api/v1/runs/{id}/logs?step=&follow=&after=&tail=&grep=&since_ms=`: log lines as
/// SSE `log` events (id = the line's position, so `Last-Event-ID` resumes), then one `end`
/// event with the run's status once the run is over (with `follow`) or the stored lines are
/// sent (without). `tail` starts at the last N lines (of those `grep`, a regular expression,
/// keeps); `since_ms` keeps lines captured since then; `batch` sends `lines` events of many
/// lines each (see `next_line_batches`).
pub async fn logs(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let q = query_map(
        q,
        &[
            "step", "follow", "after", "tail", "grep", "since_ms", "batch",
        ],
    )?;
    let run = visible_run(&state, &p, &id).await?;
    let step = q.get("step").filter(|s| !s.is_empty()).cloned();
    if let Some(step) = &step {
        let steps = state.store.list_step_runs(&run.id).await?;
        if !steps.iter().any(|s| &s.step == step) {
            let names: Vec<_> = steps.iter().map(|s| s.step.as_str()).collect();
            return Err(ApiError::not_found(format!(
                "run {} has no step {step}; its steps are: {}",
                run.id,
                names.join(", ")
            ))
            .with_field("step"));
        }
    }
    let batch = match q.get("batch").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(v) => {
            return Err(ApiError::invalid(
                "batch",
                format!("`batch` must be true or false, got '{v}'"),
            ));
        }
    };
    let follow = match q.get("follow").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(v) => {
            return Err(ApiError::invalid(
                "follow",
                format!("`follow` must be true or false, got '{v}'"),
            ));
        }
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let grep = match q.get("grep").filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => Some(
            regex::RegexBuilder::new(g)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ApiError::invalid("grep", format!("bad `grep` pattern: {e}")))?,
        ),
    };
    let since_ms = match q.get("since_ms").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "since_ms",
                format!("`since_ms` must be milliseconds since the epoch, got '{v}'"),
            )
        })?),
    };
    let tail = match q.get("tail").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "tail",
                format!("`tail` must be a number of lines, got '{v}'"),
            )
        })?),
    };
    let after = match (resume.as_ref().or(q.get("after")), tail) {
        (Some(v), _) => v.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "after",
                format!("`after` must be a log position, got '{v}'"),
            )
        })?,
        (None, Some(n)) => {
            state
                .store
                .log_tail_start(&run.id, step.as_deref(), n, since_ms, |l| {
                    grep.as_ref().is_none_or(|re| re.is_match(l))
                })
                .await?
        }
        (None, None) => 0,
    };
    let cursor = LogCursor {
        store: state.store.clone(),
        run_id: run.id,
        step,
        after,
        follow,
        grep,
        since_ms,
        batch,
        done: false,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        let events = next_log_events(&mut c).await;
        Some((events, c))
    })
    .flat_map(futures::stream::iter);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `batch=true`: one `lines` event per stored chunk (`{"step", "attempt", "lines": [..]}`,
/// id = the position of its last line), for clients that read whole logs: a million lines
/// are a few events instead of a million. Says whether more chunks may follow at once.
async fn next_line_batches(
    c: &mut LogCursor,
    out: &mut Vec<Result<Event, Infallible>>,
) -> Result<bool, gantry_store::StoreError> {
    const CHUNKS: i64 = 4;
    let page = c
        .store
        .log_chunks(
            &c.run_id,
            &gantry_store::ChunkQuery {
                step: c.step.as_deref(),
                from: gantry_store::ChunkQuery::from_position(c.after),
                since_ms: c.since_ms,
                limit: CHUNKS,
                ..Default::default()
            },
        )
        .await?;
    for ch in &page {
        let lines: Vec<&str> = ch
            .lines_after(c.after)
            .map(|(_, text)| text)
            .filter(|text| c.grep.as_ref().is_none_or(|re| re.is_match(text)))
            .collect();
        c.after = c.after.max(ch.last_position());
        if !lines.is_empty() {
            let data = json!({"step": ch.step, "attempt": ch.attempt, "lines": lines});
            out.push(Ok(Event::default()
                .id(c.after.to_string())
                .event("lines")
                .data(data.to_string())));
        }
    }
    Ok(page.len() as i64 == CHUNKS)
}

async fn next_log_events(c: &mut LogCursor) -> Vec<Result<Event, Infallible>> {
    const PAGE: i64 = 500;
    let error = |c: &mut LogCursor, message: String| {
        c.done = true;
        vec![Ok(Event::default()
            .event("error")
            .data(json!({"message": message}).to_string()))]
    };
    // Completion first: a line written before the run (or step) ended is then read below.
    let complete = if c.follow {
        match c.store.log_complete(&c.run_id, c.step.as_deref()).await {
            Ok(done) => done,
            Err(e) => return error(c, e.to_string()),
        }
    } else {
        true
    };
    let mut out = Vec::new();
    let more = if c.batch {
        match next_line_batches(c, &mut out).await {
            Ok(more) => more,
            Err(e) => return error(c, e.to_string()),
        }
    } else {
        let rows = match c
            .store
            .logs_since(&c.run_id, c.step.as_deref(), c.since_ms, c.after, PAGE)
            .await
        {
            Ok(rows) => rows,
            Err(e) => return error(c, e.to_string()),
        };
        for r in &rows {
            c.after = r.id;
            if c.grep.as_ref().is_some_and(|re| !re.is_match(&r.data)) {
                continue;
            }
            let data = serde_json::to_string(r).unwrap_or_default();
            out.push(Ok(Event::default()
                .id(r.id.to_string())
                .event("log")
                .data(data)));
        }
        rows.len() as i64 == PAGE
    };
    if more {
        return out;
    }
    if complete {
        let status = match c.store.get_run(&c.run_id).await {
            Ok(r) => r.status,
            Err(e) => return error(c, e.to_string()),
        };
        c.done = true;
        out.push(Ok(Event::default()
            .event("end")
            .data(json!({"status": status}).to_string())));
    } else if out.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}
