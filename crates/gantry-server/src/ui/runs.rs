//! Pipeline runs: the list, a run (DAG, steps, params, metrics, artifacts, lineage, MLflow),
//! its logs, an artifact, cancel/rerun, and comparing runs.

use super::page::{
    Cell, Form, Header, Input, Link, LogLine, LogView, Page, Pager, Row, Section, Table, enc,
    fmt_bytes, fmt_duration_ms, fmt_number, fmt_opt_time, fmt_time, parse_time, query,
};
use super::{UiError, UiResult, back_to, nav, render};
use crate::AppState;
use crate::api::{self, ApiError};
use crate::auth::Principal;
use crate::views;
use axum::Extension;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use gantry_store::{
    Cmp, RunCursor, RunQuery, RunRecord, RunSort, RunStatus, StepRunRecord, StepStatus,
};
use gantry_ui::dag;
use gantry_ui::svg::{LineChart, Series, XAxis};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Rows per page of the run list, unless `limit` says 25 or 100.
const PAGE_ROWS: usize = 50;
/// Log lines per page.
const LOG_PAGE: i64 = 1_000;
/// Largest artifact shown inline.
const PREVIEW_BYTES: u64 = 256 * 1024;
/// Most runs one comparison shows.
const MAX_COMPARE: usize = 12;
/// Pixel columns of an overlaid metric curve (the store reduces long histories to these).
const CURVE_COLUMNS: usize = 500;

/// `GET /`: the run list (MLflow-style `/#/…` links are followed by the script).
pub async fn home(
    state: State<AppState>,
    p: Extension<Principal>,
    q: Query<HashMap<String, String>>,
) -> UiResult {
    list(state, p, q).await
}

fn status_options() -> Vec<(String, String)> {
    let mut v = vec![(String::new(), "any".to_owned())];
    v.extend(
        RunStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), s.as_str().to_owned())),
    );
    v
}

/// `metric` filter text: `accuracy>0.9`, `loss<=0.2`, `f1=1`.
fn parse_metric_filter(s: &str) -> Result<(String, Cmp, f64), String> {
    for (op, cmp) in [
        (">=", Cmp::Ge),
        ("<=", Cmp::Le),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
        ("=", Cmp::Eq),
    ] {
        if let Some((k, v)) = s.split_once(op) {
            let k = k.trim();
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not a number", v.trim()))?;
            if k.is_empty() {
                break;
            }
            return Ok((k.to_owned(), cmp, v));
        }
    }
    Err(format!(
        "metric filter `{s}` must look like name>0.9 (operators > >= < <= =)"
    ))
}

/// `GET /runs`: filters, sort and page all live in the query string.
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult {
    let get = |k: &str| q.get(k).map(|s| s.trim()).unwrap_or("");
    let bad = |field: &str, msg: String| UiError(ApiError::invalid(field, msg));
    let mut rq = RunQuery {
        limit: match get("limit") {
            "" => PAGE_ROWS,
            "25" => 25,
            "50" => 50,
            "100" => 100,
            v => {
                return Err(bad(
                    "limit",
                    format!("limit must be 25, 50 or 100, not {v}"),
                ));
            }
        },
        ..RunQuery::default()
    };
    if !get("pipeline").is_empty() {
        rq.pipeline = Some(get("pipeline").to_owned());
    }
    if !get("status").is_empty() {
        rq.status = Some(
            get("status")
                .parse()
                .map_err(|e: gantry_store::ParseStatusError| bad("status", e.to_string()))?,
        );
    }
    let date = |field: &str| -> Result<Option<i64>, UiError> {
        match get(field) {
            "" => Ok(None),
            text => parse_time(text).map(Some).ok_or_else(|| {
                bad(
                    field,
                    format!("`{text}` is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)"),
                )
            }),
        }
    };
    rq.since_ms = date("since")?;
    rq.until_ms = date("until")?;
    if !get("param").is_empty() {
        let (k, v) = get("param")
            .split_once('=')
            .ok_or_else(|| bad("param", "param filter must look like name=value".into()))?;
        rq.param = Some((k.trim().to_owned(), v.trim().to_owned()));
    }
    if !get("metric").is_empty() {
        rq.metric = Some(parse_metric_filter(get("metric")).map_err(|m| bad("metric", m))?);
    }
    rq.sort = match get("sort") {
        "" | "created" => RunSort::Created,
        "duration" => RunSort::Duration,
        v => {
            return Err(bad(
                "sort",
                format!("sort must be created or duration, not {v}"),
            ));
        }
    };
    rq.ascending = match get("order") {
        "" | "desc" => false,
        "asc" => true,
        v => return Err(bad("order", format!("order must be asc or desc, not {v}"))),
    };
    if !get("after").is_empty() {
        let (k, id) = get("after")
            .split_once('.')
            .ok_or_else(|| bad("after", "not a page cursor".into()))?;
        rq.after = Some(RunCursor {
            key: k
                .parse()
                .map_err(|_| bad("after", "not a page cursor".into()))?,
            id: id.to_owned(),
        });
    }
    // A project-scoped token sees its project only.
    let mut other_project = false;
    if let Some(project) = &p.project {
        other_project = rq.pipeline.as_ref().is_some_and(|asked| asked != project);
        rq.pipeline = Some(project.clone());
    }
    let page = if other_project {
        gantry_store::RunPage {
            runs: Vec::new(),
            next: None,
        }
    } else {
        state.store.list_runs_page(&rq).await?
    };
    let ids: Vec<String> = page.runs.iter().map(|r| r.id.clone()).collect();
    let summaries = state.store.step_summaries(&ids).await?;

    let mut out = Page::new(nav(&state, &p, "runs"), "Runs");
    let pipelines = match &p.project {
        Some(project) => vec![project.clone()],
        None => state.store.run_pipelines().await?,
    };
    let mut pipeline_opts = vec![(String::new(), "any".to_owned())];
    pipeline_opts.extend(pipelines.into_iter().map(|p| (p.clone(), p)));
    let state_pairs: Vec<(&str, &str)> = [
        "pipeline", "status", "param", "metric", "since", "until", "sort", "order", "limit",
    ]
    .iter()
    .map(|k| (*k, get(k)))
    .collect();
    out.push(Section::Forms(vec![Form {
        action: "/runs".into(),
        post: false,
        inputs: vec![
            Input::select("pipeline", "Pipeline", get("pipeline"), pipeline_opts),
            Input::select("status", "Status", get("status"), status_options()),
            Input::text("param", "Param", get("param"), "name=value"),
            Input::text("metric", "Metric", get("metric"), "accuracy>0.9"),
            Input::text("since", "Since", get("since"), "YYYY-MM-DD"),
            Input::text("until", "Until", get("until"), "YYYY-MM-DD"),
            Input::select(
                "sort",
                "Sort by",
                get("sort"),
                vec![
                    ("created".into(), "created".into()),
                    ("duration".into(), "duration".into()),
                ],
            ),
            Input::select(
                "order",
                "Order",
                get("order"),
                vec![
                    ("desc".into(), "newest/longest first".into()),
                    ("asc".into(), "oldest/shortest first".into()),
                ],
            ),
        ],
        button: "Filter".into(),
        reset: Some("/runs".into()),
        ..Form::default()
    }]));

    let sort_link = |key: &str| -> (Option<String>, &'static str) {
        let current = if get("sort").is_empty() {
            "created"
        } else {
            get("sort")
        };
        let asc = get("order") == "asc";
        let order = if current == key && !asc {
            "asc"
        } else {
            "desc"
        };
        let mut pairs: Vec<(&str, &str)> = state_pairs
            .iter()
            .filter(|(k, _)| *k != "sort" && *k != "order")
            .cloned()
            .collect();
        pairs.push(("sort", key));
        pairs.push(("order", order));
        let sorted = if current == key {
            if asc { "ascending" } else { "descending" }
        } else {
            ""
        };
        (Some(format!("/runs{}", query(&pairs))), sorted)
    };
    let mut table = Table::new(
        "Runs, newest first unless sorted otherwise",
        &[
            "Run",
            "Pipeline",
            "Status",
            "Created",
            "Duration",
            "Steps",
            "Cache hits",
            "CPU req.",
            "CPU used",
            "Memory req.",
            "Memory peak",
            "Error",
        ],
    )
    .empty("No runs match. Start one with `gantry run pipeline.yaml`.");
    table.selectable = true;
    let (href, sorted) = sort_link("created");
    table.headers[3] = Header {
        text: "Created".into(),
        href,
        sorted,
    };
    let (href, sorted) = sort_link("duration");
    table.headers[4] = Header {
        text: "Duration".into(),
        href,
        sorted,
    };
    for r in &page.runs {
        let s = summaries.get(&r.id).cloned().unwrap_or_default();
        let duration = r.finished_at_ms.zip(r.started_at_ms).map(|(f, s)| f - s);
        let mut row = Row::new(vec![
            Cell::link(r.id.clone(), format!("/runs/{}", enc(&r.id))).class("mono"),
            Cell::link(
                r.pipeline.clone(),
                format!("/runs{}", query(&[("pipeline", &r.pipeline)])),
            ),
            Cell::status(r.status.as_str()),
            Cell::text(fmt_time(r.created_at_ms)).class("time"),
            duration
                .map(|d| Cell::text(fmt_duration_ms(d)).class("num"))
                .unwrap_or_else(Cell::missing),
            Cell::text(s.step_runs.to_string()).class("num"),
            Cell::text(s.cached.to_string()).class("num"),
        ]);
        row.cells.extend(usage_cells(
            s.max_requested_cpu_millis,
            s.cpu_micros,
            s.max_requested_memory_bytes,
            s.max_peak_memory_bytes,
        ));
        row.cells.push(
            r.error
                .as_deref()
                .map(|e| Cell::text(truncate(e, 80)).title(e.to_owned()))
                .unwrap_or_default(),
        );
        row.select = Some(("runs".into(), r.id.clone(), false));
        if r.status == RunStatus::Failed {
            row.class = "failed".into();
        }
        table.rows.push(row);
    }
    out.push(Section::SelectTable(
        Form {
            action: "/compare".into(),
            button: "Compare selected".into(),
            note: "Tick two or more runs.".into(),
            ..Form::default()
        },
        table,
    ));
    let next = page.next.as_ref().map(|c| {
        let cursor = format!("{}.{}", c.key, c.id);
        let mut pairs: Vec<(&str, &str)> = state_pairs.clone();
        pairs.push(("after", &cursor));
        format!("/runs{}", query(&pairs))
    });
    let first = (!get("after").is_empty()).then(|| format!("/runs{}", query(&state_pairs)));
    out.push(Section::Pager(Pager {
        first,
        next,
        info: format!("{} runs on this page", page.runs.len()),
    }));
    Ok(render(&out))
}

/// Requested vs used CPU and memory: four cells.
fn usage_cells(
    cpu_millis: i64,
    cpu_micros: Option<i64>,
    memory_bytes: i64,
    peak_bytes: Option<i64>,
) -> [Cell; 4] {
    [
        Cell::text(format!("{cpu_millis}m")).class("num"),
        cpu_micros
            .map(|c| Cell::text(format!("{:.2} s", c as f64 / 1e6)).class("num"))
            .unwrap_or_else(Cell::missing),
        Cell::text(fmt_bytes(memory_bytes)).class("num"),
        peak_bytes
            .map(|b| Cell::text(fmt_bytes(b)).class("num"))
            .unwrap_or_else(Cell::missing),
    ]
}

fn truncate(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() <= n {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(n).collect();
        format!("{cut}…")
    }
}

/// The last attempt of every step, in plan order.
fn latest_attempts(steps: &[StepRunRecord]) -> Vec<&StepRunRecord> {
    let mut out: Vec<&StepRunRecord> = Vec::new();
    for s in steps {
        match out.iter_mut().find(|o| o.step == s.step) {
            Some(o) if o.attempt <= s.attempt => *o = s,
            Some(_) => {}
            None => out.push(s),
        }
    }
    out
}

/// The DAG of a run: planned steps (from the stored spec and params) coloured by the last
/// attempt's status; a matrix step's members collapse into one node with counts.
fn run_graph(run: &RunRecord, steps: &[&StepRunRecord]) -> dag::Graph {
    let status_of = |name: &str| {
        steps
            .iter()
            .find(|s| s.step == name)
            .map(|s| s.status.as_str().to_owned())
            .unwrap_or_else(|| "pending".to_owned())
    };
    let base = |name: &str| name.split('[').next().unwrap_or(name).to_owned();
    let planned: Option<gantry_spec::Plan> = (|| {
        let pipeline = gantry_spec::parse(
            &run.spec_file,
            std::path::Path::new("/nonexistent"),
            &run.spec_yaml,
        )
        .ok()?;
        let params = serde_json::from_str(&run.params_json).ok()?;
        gantry_spec::plan(&pipeline, &params).ok()
    })();
    // (name, deps) of every step; without a plan, the recorded steps alone.
    let nodes: Vec<(String, Vec<String>)> = match &planned {
        Some(plan) => plan
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.deps.clone()))
            .collect(),
        None => steps.iter().map(|s| (s.step.clone(), Vec::new())).collect(),
    };
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (name, _) in &nodes {
        let b = base(name);
        match groups.iter_mut().find(|(g, _)| *g == b) {
            Some((_, members)) => members.push(name.clone()),
            None => groups.push((b, vec![name.clone()])),
        }
    }
    let rank = |s: &str| match s {
        "failed" | "interrupted" => 0,
        "running" => 1,
        "pending" => 2,
        "cancelled" => 3,
        "skipped" => 4,
        "cached" => 5,
        _ => 6,
    };
    let mut g = dag::Graph {
        nodes: Vec::new(),
        edges: Vec::new(),
    };
    for (b, members) in &groups {
        let statuses: Vec<String> = members.iter().map(|m| status_of(m)).collect();
        let worst = statuses
            .iter()
            .min_by_key(|s| rank(s))
            .cloned()
            .unwrap_or_else(|| "pending".into());
        let swept = members.len() > 1 || members.iter().any(|m| m.contains('['));
        let (sublabel, href) = if swept {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &statuses {
                *counts.entry(s.as_str()).or_default() += 1;
            }
            let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            (
                Some(format!("×{}: {}", members.len(), parts.join(", "))),
                format!("/runs/{}#sweeps", enc(&run.id)),
            )
        } else {
            (
                Some(worst.clone()),
                format!("/runs/{}/logs{}", enc(&run.id), query(&[("step", b)])),
            )
        };
        g.nodes.push(dag::Node {
            id: b.clone(),
            label: b.clone(),
            sublabel,
            status: worst,
            href: Some(href),
        });
    }
    let mut seen = BTreeSet::new();
    for (name, deps) in &nodes {
        for d in deps {
            let edge = (base(d), base(name));
            if edge.0 != edge.1 && seen.insert(edge.clone()) {
                g.edges.push(edge);
            }
        }
    }
    g
}

/// `GET /runs/{id}`
pub async fn show(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> UiResult {
    let run = api::runs::visible_run(&state, &p, &id).await?;
    let detail = views::run_detail(&state.store, &run, &state.config.prices).await?;
    let all_steps = state.store.list_step_runs(&run.id).await?;
    let steps = latest_attempts(&all_steps);
    let run_href = format!("/runs/{}", enc(&run.id));

    let mut out = Page::new(nav(&state, &p, "runs"), format!("Run {}", run.id));
    out.crumbs = vec![
        Link::new("Runs", "/runs"),
        Link::new(
            run.pipeline.clone(),
            format!("/runs{}", query(&[("pipeline", &run.pipeline)])),
        ),
    ];
    out.badge = Some(Cell::status(run.status.as_str()));
    if !run.status.is_terminal() {
        let last = state.store.last_log_id(&run.id).await?;
        out.live_status = Some(format!(
            "/api/v1/runs/{}/logs?follow=true&after={last}",
            enc(&run.id)
        ));
    }
    if let Some(err) = &run.error {
        out.push(Section::Notice("error".into(), err.clone()));
    }
    // What of the run waits for admission, and why (as `gantry queue` says it).
    if !run.status.is_terminal()
        && let Some(engine) = state.runs.engine()
    {
        for w in engine
            .queue_snapshot()
            .waiting
            .iter()
            .filter(|w| w.request.run_id == run.id)
        {
            let what = match w.request.kind {
                gantry_alloc::queue::Kind::StartRun => "The run".to_owned(),
                _ => format!("Step {}", w.request.step),
            };
            out.push(Section::Notice(
                "warn".into(),
                format!(
                    "{what} waits for admission, #{} in the queue: {}",
                    w.position, w.wait
                ),
            ));
        }
    }
    let failed: Vec<&&StepRunRecord> = steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    if !failed.is_empty() {
        out.push(Section::Links(
            failed
                .iter()
                .map(|s| {
                    Link::new(
                        format!(
                            "Step {} failed ({}): open its log",
                            s.step,
                            s.reason.as_deref().unwrap_or("no reason recorded")
                        ),
                        format!("{run_href}/logs{}", query(&[("step", &s.step)])),
                    )
                })
                .collect(),
        ));
    }
    let duration = run
        .finished_at_ms
        .zip(run.started_at_ms)
        .map(|(f, s)| f - s);
    let mut kv = vec![
        (
            "Pipeline".to_owned(),
            Cell::link(
                run.pipeline.clone(),
                format!("/runs{}", query(&[("pipeline", &run.pipeline)])),
            ),
        ),
        ("Spec file".to_owned(), Cell::text(run.spec_file.clone())),
        ("Created".to_owned(), fmt_opt_time(Some(run.created_at_ms))),
        ("Started".to_owned(), fmt_opt_time(run.started_at_ms)),
        ("Finished".to_owned(), fmt_opt_time(run.finished_at_ms)),
        (
            "Duration".to_owned(),
            duration
                .map(|d| Cell::text(fmt_duration_ms(d)))
                .unwrap_or_else(Cell::missing),
        ),
        (
            "Cache".to_owned(),
            Cell::text(if run.no_cache {
                "off (--no-cache)"
            } else {
                "on"
            }),
        ),
    ];
    if let Some(of) = &run.rerun_of {
        kv.push((
            "Rerun of".to_owned(),
            Cell::link(of.clone(), format!("/runs/{}", enc(of))),
        ));
    }
    out.push(Section::KeyValues(kv));
    if p.can_write() {
        let mut forms = Vec::new();
        if !run.status.is_terminal() {
            let mut f = Form::post(format!("{run_href}/cancel"), "Cancel run");
            f.class = "danger".into();
            forms.push(f);
        }
        let mut rerun = Form::post(format!("{run_href}/rerun"), "Rerun");
        rerun.note = "same spec, params, images and inputs".into();
        forms.push(rerun);
        out.push(Section::Forms(forms));
    }

    out.heading("Graph", "graph");
    let graph = run_graph(&run, &steps);
    out.push(Section::Svg(dag::render(
        &graph,
        "dag",
        &format!("Steps of run {}", run.id),
    )));

    out.heading("Steps", "steps");
    let mut table = Table::new(
        "Every attempt of every step",
        &[
            "Step",
            "Attempt",
            "Status",
            "Reason",
            "Started",
            "Duration",
            "CPU req.",
            "CPU used",
            "Memory req.",
            "Memory peak",
            "Image",
            "Log",
        ],
    );
    for s in &all_steps {
        let wall = s
            .wall_ms
            .or(s.finished_at_ms.zip(s.started_at_ms).map(|(f, st)| f - st));
        let mut row = Row::new(vec![
            Cell::text(s.step.clone()),
            Cell::text(s.attempt.to_string()).class("num"),
            Cell::status(s.status.as_str()),
            s.reason
                .as_deref()
                .map(Cell::text)
                .or_else(|| {
                    s.cached_from
                        .as_deref()
                        .map(|c| Cell::text(format!("cache hit of {c}")))
                })
                .unwrap_or_default(),
            fmt_opt_time(s.started_at_ms),
            wall.map(|w| Cell::text(fmt_duration_ms(w)).class("num"))
                .unwrap_or_else(Cell::missing),
        ]);
        row.cells.extend(usage_cells(
            s.requested_cpu_millis,
            s.cpu_micros,
            s.requested_memory_bytes,
            s.peak_memory_bytes,
        ));
        row.cells.extend([
            s.image_digest
                .as_deref()
                .map(|d| {
                    Cell::text(short_digest(d))
                        .class("mono")
                        .title(d.to_owned())
                })
                .unwrap_or_else(Cell::missing),
            Cell::link(
                "log",
                format!("{run_href}/logs{}", query(&[("step", &s.step)])),
            )
            .title(format!("log of step {}", s.step)),
        ]);
        if s.status == StepStatus::Failed {
            row.class = "failed".into();
        }
        table.rows.push(row);
    }
    out.push(Section::Table(table));

    // Sweeps: members side by side with their values and validation metrics.
    let sweeps = views::sweeps(&all_steps, &state.store.metrics_for_run(&run.id).await?);
    if !sweeps.is_empty() {
        out.heading("Sweeps", "sweeps");
        for sw in &sweeps {
            let mut headers: Vec<&str> = vec!["Member", "Status"];
            headers.extend(sw.keys.iter().map(String::as_str));
            headers.extend(sw.metric_keys.iter().map(String::as_str));
            let mut t = Table::new(format!("Matrix step {}", sw.step), &headers);
            for m in &sw.members {
                let mut cells = vec![
                    Cell::link(
                        m.name.clone(),
                        format!("{run_href}/logs{}", query(&[("step", &m.name)])),
                    ),
                    Cell::status(&m.status),
                ];
                cells.extend(sw.keys.iter().map(|k| {
                    m.values
                        .get(k)
                        .map(Cell::text)
                        .unwrap_or_else(Cell::missing)
                }));
                cells.extend(
                    sw.metric_keys
                        .iter()
                        .map(|k| Cell::num(m.metrics.get(k).copied())),
                );
                t.push(cells);
            }
            out.push(Section::Table(t));
        }
    }

    out.heading("Params", "params");
    match &detail["params"] {
        Value::Object(m) if !m.is_empty() => {
            out.push(Section::KeyValues(
                m.iter()
                    .map(|(k, v)| (k.clone(), Cell::text(value_text(v)).class("mono")))
                    .collect(),
            ));
        }
        _ => out.push(Section::Text("This run has no params.".into())),
    }

    out.heading("Metrics", "metrics");
    let metrics = state.store.metrics_for_run(&run.id).await?;
    let mut mt = Table::new(
        "Metrics each step wrote to /gantry/metrics.json",
        &["Step", "Metric", "Value"],
    )
    .empty("No step wrote metrics.");
    for m in &metrics {
        mt.push(vec![
            Cell::text(m.step.clone()),
            Cell::text(m.key.clone()),
            Cell::num(Some(m.value)),
        ]);
    }
    out.push(Section::Table(mt));

    out.heading("Artifacts and lineage", "artifacts");
    let lineage = state.store.lineage_for_run(&run.id).await?;
    let mut at = Table::new(
        "What each step read (input) and wrote (output)",
        &["Step", "Direction", "Name", "Kind", "Size", "Digest"],
    )
    .empty("No artifacts.");
    for l in &lineage {
        at.push(vec![
            Cell::text(l.step.clone()),
            Cell::text(l.direction.clone()),
            Cell::text(l.name.clone()),
            l.kind.clone().map(Cell::text).unwrap_or_else(Cell::missing),
            l.size
                .map(|s| Cell::text(fmt_bytes(s)).class("num"))
                .unwrap_or_else(Cell::missing),
            Cell::link(
                short_digest(&l.digest),
                format!("{run_href}/artifacts/{}", enc(&l.digest)),
            )
            .class("mono")
            .title(l.digest.clone()),
        ]);
    }
    out.push(Section::Table(at));

    if let Value::Array(models) = &detail["models"]
        && !models.is_empty()
    {
        out.heading("Registered models", "models");
        let mut t = Table::new("Model versions this run registered", &["Model", "Version"]);
        for m in models {
            let name = m["model"].as_str().unwrap_or_default();
            let version = m["version"].as_i64().unwrap_or_default();
            t.push(vec![
                Cell::link(name.to_owned(), format!("/models/{}", enc(name))),
                Cell::link(
                    version.to_string(),
                    format!("/models/{}/versions/{version}", enc(name)),
                ),
            ]);
        }
        out.push(Section::Table(t));
    }

    let mlflow = &detail["mlflow"];
    if let Some(exp) = mlflow["experiment_id"].as_str() {
        out.heading("MLflow", "mlflow");
        let mut links = Vec::new();
        if let Some(parent) = mlflow["run_id"].as_str() {
            links.push(Link::new(
                format!("MLflow run of this pipeline run ({parent})"),
                format!("/experiments/{}/runs/{}", enc(exp), enc(parent)),
            ));
        }
        links.push(Link::new(
            format!("Experiment {}", run.pipeline),
            format!("/experiments/{}", enc(exp)),
        ));
        out.push(Section::Links(links));
        if let Value::Object(steps) = &mlflow["steps"]
            && !steps.is_empty()
        {
            let mut t = Table::new(
                "What steps logged with mlflow.log_*",
                &["Step", "MLflow run", "Status", "Params", "Metrics"],
            );
            for (step, v) in steps {
                let rid = v["run_id"].as_str().unwrap_or_default();
                t.push(vec![
                    Cell::text(step.clone()),
                    Cell::link(
                        rid.to_owned(),
                        format!("/experiments/{}/runs/{}", enc(exp), enc(rid)),
                    )
                    .class("mono"),
                    Cell::status(&v["status"].as_str().unwrap_or_default().to_lowercase()),
                    Cell::text(object_text(&v["params"])),
                    Cell::text(object_text(&v["metrics"])),
                ]);
            }
            out.push(Section::Table(t));
        }
    }

    if let Value::Array(decisions) = &detail["image_decisions"]
        && !decisions.is_empty()
    {
        out.heading("Image decisions", "images");
        let mut t = Table::new(
            "What the trust policy decided for each image",
            &["Step", "Image", "Decision", "Reasons"],
        );
        for d in decisions {
            t.push(vec![
                Cell::text(d["subject"].as_str().unwrap_or_default().to_owned()),
                Cell::text(short_digest(d["digest"].as_str().unwrap_or_default()))
                    .class("mono")
                    .title(d["digest"].as_str().unwrap_or_default().to_owned()),
                Cell::status(d["decision"].as_str().unwrap_or_default()),
                Cell::text(value_text(&d["reasons"])),
            ]);
        }
        out.push(Section::Table(t));
    }
    Ok(render(&out))
}

fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    format!("{}…", &hex[..hex.len().min(12)])
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn object_text(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::Number(n) => {
                    format!("{k}={}", n.as_f64().map(fmt_number).unwrap_or_default())
                }
                other => format!("{k}={}", value_text(other)),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// `GET /runs/{id}/logs?step=&q=&after=`: a page of log lines; live while the run runs.
pub async fn logs(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult {
    let run = api::runs::visible_run(&state, &p, &id).await?;
    let step = q.get("step").filter(|s| !s.is_empty()).cloned();
    let needle = q.get("q").filter(|s| !s.is_empty()).cloned();
    let after: i64 = match q.get("after").filter(|s| !s.is_empty()) {
        Some(a) => a
            .parse()
            .map_err(|_| UiError(ApiError::invalid("after", "not a log position")))?,
        None => 0,
    };
    let steps = state.store.list_step_runs(&run.id).await?;
    let mut names: Vec<String> = Vec::new();
    for s in &steps {
        if !names.contains(&s.step) {
            names.push(s.step.clone());
        }
    }
    if let Some(step) = &step
        && !names.contains(step)
    {
        return Err(UiError(
            ApiError::not_found(format!(
                "run {} has no step {step}; its steps are: {}",
                run.id,
                names.join(", ")
            ))
            .with_field("step"),
        ));
    }
    let rows = match &needle {
        Some(n) => {
            state
                .store
                .search_logs(&run.id, step.as_deref(), n, after, LOG_PAGE + 1)
                .await?
        }
        None => {
            state
                .store
                .logs(&run.id, step.as_deref(), after, LOG_PAGE + 1)
                .await?
        }
    };
    let more = rows.len() as i64 > LOG_PAGE;
    let shown = &rows[..rows.len().min(LOG_PAGE as usize)];
    let run_href = format!("/runs/{}", enc(&run.id));
    let title = match &step {
        Some(s) => format!("Log of {s}"),
        None => "Log of every step".to_owned(),
    };
    let mut out = Page::new(nav(&state, &p, "runs"), title);
    out.crumbs = vec![
        Link::new("Runs", "/runs"),
        Link::new(format!("Run {}", run.id), run_href.clone()),
    ];
    out.badge = Some(Cell::status(run.status.as_str()));
    let mut step_opts = vec![(String::new(), "every step".to_owned())];
    step_opts.extend(names.iter().map(|n| (n.clone(), n.clone())));
    let step_s = step.clone().unwrap_or_default();
    let needle_s = needle.clone().unwrap_or_default();
    out.push(Section::Forms(vec![Form {
        action: format!("{run_href}/logs"),
        post: false,
        inputs: vec![
            Input::select("step", "Step", &step_s, step_opts),
            Input::text("q", "Search", &needle_s, "text in a line"),
        ],
        button: "Show".into(),
        reset: Some(format!("{run_href}/logs")),
        ..Form::default()
    }]));
    out.push(Section::Links(vec![Link::new(
        "Download the whole log",
        format!("{run_href}/logs.txt{}", query(&[("step", &step_s)])),
    )]));
    if let Some(step) = &step
        && let Some(s) = latest_attempts(&steps)
            .into_iter()
            .find(|s| &s.step == step)
        && let Some(reason) = &s.reason
        && s.status == StepStatus::Failed
    {
        out.push(Section::Notice(
            "error".into(),
            format!("Step {step} failed: {reason}"),
        ));
    }
    // Live only for the unfiltered tail of a running run.
    let live = (!run.status.is_terminal() && needle.is_none() && !more).then(|| {
        let last = shown.last().map(|r| r.id).unwrap_or(after);
        format!(
            "/api/v1/runs/{}/logs{}",
            enc(&run.id),
            query(&[
                ("step", &step_s),
                ("follow", "true"),
                ("after", &last.to_string())
            ])
        )
    });
    out.push(Section::Log(LogView {
        lines: shown
            .iter()
            .map(|r| LogLine {
                id: r.id,
                step: r.step.clone(),
                stream: r.stream.clone(),
                time: fmt_time(r.ts_ms)[11..].to_owned(),
                text: r.data.strip_suffix('\n').unwrap_or(&r.data).to_owned(),
            })
            .collect(),
        live,
        show_step: step.is_none(),
    }));
    if shown.is_empty() {
        out.push(Section::Text(match &needle {
            Some(n) => format!("No line contains “{n}”."),
            None => "No output (yet).".into(),
        }));
    }
    let next = more.then(|| {
        let last = shown.last().map(|r| r.id).unwrap_or(after).to_string();
        format!(
            "{run_href}/logs{}",
            query(&[("step", &step_s), ("q", &needle_s), ("after", &last)])
        )
    });
    out.push(Section::Pager(Pager {
        first: (after > 0).then(|| {
            format!(
                "{run_href}/logs{}",
                query(&[("step", &step_s), ("q", &needle_s)])
            )
        }),
        next,
        info: format!("{} lines", shown.len()),
    }));
    Ok(render(&out))
}

/// `GET /runs/{id}/logs.txt?step=`: the whole log as text, streamed page by page.
pub async fn logs_download(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult {
    let run = api::runs::visible_run(&state, &p, &id).await?;
    let step = q.get("step").filter(|s| !s.is_empty()).cloned();
    let store = state.store.clone();
    let run_id = run.id.clone();
    let show_step = step.is_none();
    let stream = futures::stream::unfold(Some(0i64), move |after| {
        let store = store.clone();
        let run_id = run_id.clone();
        let step = step.clone();
        async move {
            let after = after?;
            match store.logs(&run_id, step.as_deref(), after, 5_000).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut text = String::new();
                    for r in &rows {
                        if show_step {
                            text.push_str(&format!("[{}] ", r.step));
                        }
                        text.push_str(&r.data);
                        if !r.data.ends_with('\n') {
                            text.push('\n');
                        }
                    }
                    let next = rows.last().map(|r| r.id);
                    Some((Ok::<_, std::io::Error>(text), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.log\"",
        run.id
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `GET /runs/{id}/artifacts/{digest}[?path=][&download=1]`: an artifact of the run — a
/// preview page (small text files shown, a directory listed), or its bytes.
pub async fn artifact(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, digest)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult {
    let run = api::runs::visible_run(&state, &p, &id).await?;
    let digest = api::artifacts::normalize_digest(&digest)?;
    let lineage = state.store.lineage_for_run(&run.id).await?;
    let Some(row) = lineage.iter().find(|r| r.digest == digest) else {
        return Err(UiError(ApiError::not_found(format!(
            "run {} neither consumed nor produced artifact {digest}",
            run.id
        ))));
    };
    let inner = q.get("path").filter(|s| !s.is_empty()).cloned();
    let mut api_q = HashMap::new();
    if let Some(path) = &inner {
        api_q.insert("path".to_owned(), path.clone());
    }
    let download = q.get("download").is_some_and(|v| v == "1");
    let resp = api::artifacts::content_of_run(
        State(state.clone()),
        Extension(p.clone()),
        Path((run.id.clone(), digest.clone())),
        Query(api_q),
    )
    .await?;
    let is_dir_listing = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if download && !is_dir_listing {
        let name = inner
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or(&row.name);
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut resp = resp;
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(resp);
    }
    let body = axum::body::to_bytes(resp.into_body(), PREVIEW_BYTES as usize * 64)
        .await
        .map_err(|e| UiError(ApiError::internal("reading the artifact", e)))?;
    let run_href = format!("/runs/{}", enc(&run.id));
    let art_href = format!("{run_href}/artifacts/{}", enc(&digest));
    let mut out = Page::new(
        nav(&state, &p, "runs"),
        format!("{} {} of {}", row.direction, row.name, row.step),
    );
    out.crumbs = vec![
        Link::new("Runs", "/runs"),
        Link::new(format!("Run {}", run.id), format!("{run_href}#artifacts")),
    ];
    out.push(Section::KeyValues(vec![
        ("Digest".into(), Cell::text(digest.clone()).class("mono")),
        (
            "Kind".into(),
            Cell::text(row.kind.clone().unwrap_or_default()),
        ),
        (
            "Size".into(),
            row.size
                .map(|s| Cell::text(fmt_bytes(s)))
                .unwrap_or_else(Cell::missing),
        ),
    ]));
    if is_dir_listing && inner.is_none() {
        let listing: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut t = Table::new("Files in this directory artifact", &["Path", "Size", ""]);
        for f in listing["files"].as_array().into_iter().flatten() {
            let path = f["path"].as_str().unwrap_or_default();
            t.push(vec![
                Cell::link(
                    path.to_owned(),
                    format!("{art_href}{}", query(&[("path", path)])),
                ),
                Cell::text(fmt_bytes(f["size"].as_i64().unwrap_or_default())).class("num"),
                Cell::link(
                    "download",
                    format!("{art_href}{}", query(&[("path", path), ("download", "1")])),
                )
                .title(format!("download {path}")),
            ]);
        }
        out.push(Section::Table(t));
    } else {
        let inner_s = inner.clone().unwrap_or_default();
        out.push(Section::Links(vec![Link::new(
            "Download",
            format!(
                "{art_href}{}",
                query(&[("path", &inner_s), ("download", "1")])
            ),
        )]));
        if let Some(path) = &inner {
            out.push(Section::Links(vec![Link::new(
                "All files of this artifact",
                art_href.clone(),
            )]));
            out.push(Section::Text(format!("File {path}")));
        }
        out.push(preview(inner.as_deref().unwrap_or(&row.name), &body));
    }
    Ok(render(&out))
}

/// A preview of small text (pretty-printed JSON, CSV as a table, markdown and text as is).
fn preview(name: &str, body: &[u8]) -> Section {
    if body.len() as u64 > PREVIEW_BYTES {
        return Section::Text(format!(
            "Too large to preview ({}); download it.",
            fmt_bytes(body.len() as i64)
        ));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Section::Text("Binary content: download it to look inside.".into());
    };
    let lower = name.to_ascii_lowercase();
    let one_json =
        lower.ends_with(".json") || (lower.ends_with(".jsonl") && text.lines().count() == 1);
    if one_json && let Ok(v) = serde_json::from_str::<Value>(text) {
        return Section::Pre(
            name.to_owned(),
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_owned()),
        );
    }
    if lower.ends_with(".csv") {
        let mut lines = text.lines();
        if let Some(head) = lines.next() {
            let headers: Vec<&str> = head.split(',').collect();
            let mut t = Table::new(format!("{name} (first 200 rows)"), &headers);
            for line in lines.take(200) {
                t.push(line.split(',').map(Cell::text).collect());
            }
            return Section::Table(t);
        }
    }
    Section::Pre(name.to_owned(), text.to_owned())
}

/// `POST /runs/{id}/cancel`
pub async fn cancel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> UiResult {
    api::runs::cancel(State(state), Extension(p), Path(id.clone())).await?;
    Ok(back_to(&format!("/runs/{}", enc(&id))))
}

/// `POST /runs/{id}/rerun`: the same spec, params, images and inputs, as `gantry rerun`.
pub async fn rerun(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> UiResult {
    let new_id = api::runs::rerun(&state, &p, &id).await?;
    Ok(back_to(&format!("/runs/{}", enc(&new_id))))
}

/// `GET /compare?runs=A&runs=B…`: runs as columns, params and metrics as rows; rows whose
/// values differ are highlighted; a value a run lacks is shown as missing.
pub async fn compare(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> UiResult {
    let mut ids: Vec<String> = Vec::new();
    for pair in raw.unwrap_or_default().split('&') {
        if let Some(v) = pair.strip_prefix("runs=") {
            let v = percent_decode(v);
            for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !ids.iter().any(|x| x == id) {
                    ids.push(id.to_owned());
                }
            }
        }
    }
    if ids.len() < 2 || ids.len() > MAX_COMPARE {
        return Err(UiError(ApiError::invalid(
            "runs",
            format!(
                "compare needs 2 to {MAX_COMPARE} runs (runs=A&runs=B…), got {}",
                ids.len()
            ),
        )));
    }
    let mut runs = Vec::new();
    for id in &ids {
        runs.push(api::runs::visible_run(&state, &p, id).await?);
    }
    let mut params: Vec<BTreeMap<String, String>> = Vec::new();
    let mut metrics: Vec<BTreeMap<String, f64>> = Vec::new();
    for r in &runs {
        let v: Value = serde_json::from_str(&r.params_json).unwrap_or_default();
        params.push(
            v.as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), value_text(v))).collect())
                .unwrap_or_default(),
        );
        metrics.push(
            state
                .store
                .metrics_for_run(&r.id)
                .await?
                .into_iter()
                .map(|m| (format!("{} · {}", m.step, m.key), m.value))
                .collect(),
        );
    }
    let mut out = Page::new(
        nav(&state, &p, "runs"),
        format!("Compare {} runs", runs.len()),
    );
    out.crumbs = vec![Link::new("Runs", "/runs")];
    let mut headers = vec!["".to_owned()];
    headers.extend(runs.iter().map(|r| r.id.clone()));
    let hdr: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut overview = Table::new("Runs", &hdr);
    overview.headers = std::iter::once(Header::new(""))
        .chain(runs.iter().map(|r| Header {
            text: r.id.clone(),
            href: Some(format!("/runs/{}", enc(&r.id))),
            sorted: "",
        }))
        .collect();
    let mut row = vec![Cell::text("pipeline")];
    row.extend(runs.iter().map(|r| Cell::text(r.pipeline.clone())));
    overview.push(row);
    let mut row = vec![Cell::text("status")];
    row.extend(runs.iter().map(|r| Cell::status(r.status.as_str())));
    overview.push(row);
    let mut row = vec![Cell::text("duration")];
    row.extend(runs.iter().map(|r| {
        r.finished_at_ms
            .zip(r.started_at_ms)
            .map(|(f, s)| Cell::text(fmt_duration_ms(f - s)))
            .unwrap_or_else(Cell::missing)
    }));
    overview.push(row);
    let headers_linked = overview.headers.clone();
    out.push(Section::Table(overview));

    out.heading("Params", "params");
    let keys: BTreeSet<&String> = params.iter().flat_map(|m| m.keys()).collect();
    let mut pt = Table::new("Params (rows that differ are highlighted)", &hdr);
    pt.headers = headers_linked.clone();
    for k in keys {
        let values: Vec<Option<&String>> = params.iter().map(|m| m.get(k)).collect();
        let differ = values.iter().any(|v| *v != values[0]);
        let mut cells = vec![Cell::text(k.clone())];
        cells.extend(values.iter().map(|v| {
            v.map(|s| Cell::text(s.clone()).class("mono"))
                .unwrap_or_else(Cell::missing)
        }));
        let mut row = Row::new(cells);
        if differ {
            row.class = "diff".into();
        }
        pt.rows.push(row);
    }
    out.push(Section::Table(pt.empty("No params.")));

    out.heading("Metrics", "metrics");
    let keys: BTreeSet<&String> = metrics.iter().flat_map(|m| m.keys()).collect();
    let mut mt = Table::new("Metrics by step (rows that differ are highlighted)", &hdr);
    mt.headers = headers_linked;
    for k in &keys {
        let values: Vec<Option<f64>> = metrics.iter().map(|m| m.get(*k).copied()).collect();
        let differ = values.iter().any(|v| *v != values[0]);
        let mut cells = vec![Cell::text((*k).clone())];
        cells.extend(values.iter().map(|v| Cell::num(*v)));
        let mut row = Row::new(cells);
        if differ {
            row.class = "diff".into();
        }
        mt.rows.push(row);
    }
    out.push(Section::Table(mt.empty("No metrics.")));

    // Metric curves: what the runs' steps logged through MLflow, overlaid per key.
    let mut curves: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for r in &runs {
        let detail = views::run_detail(&state.store, r, &state.config.prices).await?;
        if let Value::Object(steps) = &detail["mlflow"]["steps"] {
            for (step, v) in steps {
                let Some(rid) = v["run_id"].as_str() else {
                    continue;
                };
                let Some(keys) = v["metrics"].as_object() else {
                    continue;
                };
                for key in keys.keys() {
                    let points = state
                        .series
                        .get(&state.store, rid, key, false, CURVE_COLUMNS)
                        .await?
                        .as_ref()
                        .clone();
                    curves
                        .entry(format!("{step} · {key}"))
                        .or_default()
                        .push(Series {
                            name: r.id.clone(),
                            points,
                        });
                }
            }
        }
    }
    if !curves.is_empty() {
        out.heading("Metric curves", "curves");
        let charts = curves
            .into_iter()
            .take(24)
            .enumerate()
            .map(|(i, (key, series))| {
                LineChart {
                    id: format!("curve{i}"),
                    title: key.clone(),
                    x_label: "step".into(),
                    y_label: key,
                    x_axis: XAxis::Number,
                    width: 560,
                    height: 260,
                    series,
                    y_log: false,
                }
                .render()
            })
            .collect();
        out.push(Section::Charts(charts));
    }
    Ok(render(&out))
}

/// Decodes `%XX` and `+` in a query value.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_filters_parse() {
        assert_eq!(
            parse_metric_filter("accuracy>0.9").unwrap(),
            ("accuracy".into(), Cmp::Gt, 0.9)
        );
        assert_eq!(
            parse_metric_filter("loss <= 0.2").unwrap(),
            ("loss".into(), Cmp::Le, 0.2)
        );
        assert!(parse_metric_filter("accuracy").is_err());
        assert!(parse_metric_filter(">3").is_err());
        assert!(parse_metric_filter("a>x").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("r-1%2Cr-2"), "r-1,r-2");
        assert_eq!(percent_decode("a+b%zz"), "a b%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
