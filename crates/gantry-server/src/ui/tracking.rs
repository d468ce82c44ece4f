//! MLflow experiments and runs (what `mlflow` clients and steps logged): the experiment
//! list, an experiment's runs with params/metrics/tags columns, and a run with its metric
//! histories drawn. MLflow's `/#/experiments/…` links land here (the script maps them).

use super::page::{
    Cell, Form, Input, Link, Page, Pager, Row, Section, Table, enc, fmt_duration_ms, fmt_opt_time,
    fmt_time, query,
};
use super::{UiError, UiResult, nav, render};
use crate::AppState;
use crate::api::ApiError;
use crate::auth::Principal;
use crate::mlflow::scope::Scope;
use axum::Extension;
use axum::extract::{Path, Query, State};
use gantry_store::{SearchQuery, ViewType};
use gantry_ui::svg::{LineChart, Series, XAxis};
use std::collections::{BTreeSet, HashMap};

/// Runs per page of an experiment.
const RUNS_PER_PAGE: usize = 50;
/// Columns of params, metrics and tags an experiment's table shows at most.
const MAX_COLUMNS: usize = 12;
/// Pixel columns of a metric chart's plot: the store reduces a long history to these.
const CHART_COLUMNS: usize = 500;

/// `GET /experiments`
pub async fn experiments(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> UiResult {
    let scope = Scope::new(&state.store, &p);
    let mut all = Vec::new();
    let mut q = SearchQuery {
        view: ViewType::ActiveOnly,
        max_results: Some(gantry_store::tracking_limits::SEARCH_MAX),
        ..SearchQuery::default()
    };
    loop {
        let page = state.store.search_experiments(&q).await?;
        all.extend(page.items);
        match page.next_page_token {
            Some(t) if all.len() < 10_000 => q.page_token = Some(t),
            _ => break,
        }
    }
    scope.retain_experiments(&mut all);
    let mut out = Page::new(nav(&state, &p, "experiments"), "Experiments");
    let mut t = Table::new(
        "MLflow experiments (pipelines mirror their runs into one each)",
        &["Experiment", "Id", "Created", "Last update"],
    )
    .empty("No experiments yet.");
    for e in &all {
        t.push(vec![
            Cell::link(
                e.name.clone(),
                format!("/experiments/{}", enc(&e.experiment_id)),
            ),
            Cell::text(e.experiment_id.clone()).class("mono"),
            fmt_opt_time(Some(e.creation_time)),
            fmt_opt_time(Some(e.last_update_time)),
        ]);
    }
    out.push(Section::Table(t));
    Ok(render(&out))
}

/// `GET /experiments/{id}?filter=&order=&page=`: MLflow's own filter syntax
/// (`metrics.accuracy > 0.9 and params.algo = 'rf'`).
pub async fn experiment(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult {
    let scope = Scope::new(&state.store, &p);
    let exp = scope.experiment(state.store.get_experiment(&id).await?, &id)?;
    let filter = q.get("filter").cloned().unwrap_or_default();
    let order = q.get("order").cloned().unwrap_or_default();
    let page_token = q.get("page").filter(|s| !s.is_empty()).cloned();
    let order_by = if order.is_empty() {
        vec!["attributes.start_time DESC".to_owned()]
    } else {
        vec![order.clone()]
    };
    let found = state
        .store
        .search_tracking_runs(&SearchQuery {
            experiment_ids: vec![exp.experiment_id.clone()],
            filter: filter.clone(),
            view: ViewType::ActiveOnly,
            max_results: Some(RUNS_PER_PAGE),
            order_by,
            page_token: page_token.clone(),
        })
        .await
        .map_err(|e| match e {
            gantry_store::StoreError::Invalid { what, detail } => {
                UiError(ApiError::invalid("filter", format!("{what}: {detail}")))
            }
            other => UiError::from(other),
        })?;
    let mut out = Page::new(
        nav(&state, &p, "experiments"),
        format!("Experiment {}", exp.name),
    );
    out.crumbs = vec![Link::new("Experiments", "/experiments")];
    out.push(Section::Forms(vec![Form {
        action: format!("/experiments/{}", enc(&exp.experiment_id)),
        post: false,
        inputs: vec![
            Input::text(
                "filter",
                "Filter (MLflow syntax)",
                &filter,
                "metrics.accuracy > 0.9",
            ),
            Input::text("order", "Order by", &order, "metrics.accuracy DESC"),
        ],
        button: "Search".into(),
        reset: Some(format!("/experiments/{}", enc(&exp.experiment_id))),
        ..Form::default()
    }]));
    let params: BTreeSet<&str> = found
        .items
        .iter()
        .flat_map(|r| r.params.iter().map(|k| k.key.as_str()))
        .collect();
    let metrics: BTreeSet<&str> = found
        .items
        .iter()
        .flat_map(|r| r.metrics.iter().map(|k| k.key.as_str()))
        .collect();
    let tags: BTreeSet<&str> = found
        .items
        .iter()
        .flat_map(|r| r.tags.iter().map(|k| k.key.as_str()))
        .filter(|k| !k.starts_with("mlflow."))
        .collect();
    let params: Vec<&str> = params.into_iter().take(MAX_COLUMNS).collect();
    let metrics: Vec<&str> = metrics.into_iter().take(MAX_COLUMNS).collect();
    let tags: Vec<&str> = tags.into_iter().take(MAX_COLUMNS / 2).collect();
    let mut headers: Vec<String> = vec![
        "Run".into(),
        "Status".into(),
        "Started".into(),
        "Duration".into(),
    ];
    headers.extend(params.iter().map(|k| format!("param {k}")));
    headers.extend(metrics.iter().map(|k| format!("metric {k}")));
    headers.extend(tags.iter().map(|k| format!("tag {k}")));
    let h: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new("Runs (params, latest metrics, tags)", &h).empty("No runs match.");
    for r in &found.items {
        let mut cells = vec![
            Cell::link(
                if r.info.run_name.is_empty() {
                    r.info.run_id.clone()
                } else {
                    r.info.run_name.clone()
                },
                format!(
                    "/experiments/{}/runs/{}",
                    enc(&exp.experiment_id),
                    enc(&r.info.run_id)
                ),
            )
            .title(r.info.run_id.clone()),
            Cell::status(&r.info.status.to_lowercase()),
            fmt_opt_time(r.info.start_time),
            r.info
                .end_time
                .zip(r.info.start_time)
                .map(|(e, s)| Cell::text(fmt_duration_ms(e - s)).class("num"))
                .unwrap_or_else(Cell::missing),
        ];
        for k in &params {
            cells.push(
                r.params
                    .iter()
                    .find(|x| x.key == *k)
                    .map(|x| Cell::text(x.value.clone()))
                    .unwrap_or_else(Cell::missing),
            );
        }
        for k in &metrics {
            cells.push(Cell::num(
                r.metrics.iter().find(|x| x.key == *k).map(|x| x.value),
            ));
        }
        for k in &tags {
            cells.push(
                r.tags
                    .iter()
                    .find(|x| x.key == *k)
                    .map(|x| Cell::text(x.value.clone()))
                    .unwrap_or_else(Cell::missing),
            );
        }
        t.rows.push(Row::new(cells));
    }
    out.push(Section::Table(t));
    let base = format!("/experiments/{}", enc(&exp.experiment_id));
    out.push(Section::Pager(Pager {
        first: page_token
            .as_ref()
            .map(|_| format!("{base}{}", query(&[("filter", &filter), ("order", &order)]))),
        next: found.next_page_token.as_ref().map(|tok| {
            format!(
                "{base}{}",
                query(&[("filter", &filter), ("order", &order), ("page", tok)])
            )
        }),
        info: format!("{} runs on this page", found.items.len()),
    }));
    Ok(render(&out))
}

/// `GET /experiments/{id}/runs/{run}?x=step|time&log=1&metric=`: one MLflow run.
pub async fn run(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, run_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult {
    let scope = Scope::new(&state.store, &p);
    let r = scope
        .run(state.store.get_tracking_run(&run_id).await?, &run_id)
        .await?;
    let exp = scope.experiment(
        state.store.get_experiment(&r.info.experiment_id).await?,
        &r.info.experiment_id,
    )?;
    if exp.experiment_id != id {
        // A link with the wrong experiment still finds the run; the canonical URL is shown.
        tracing::debug!(run = %run_id, asked = %id, "run found in another experiment");
    }
    let x_time = q.get("x").is_some_and(|x| x == "time");
    let log = q.get("log").is_some_and(|v| v == "1");
    let only = q.get("metric").filter(|s| !s.is_empty()).cloned();
    let title = if r.info.run_name.is_empty() {
        format!("MLflow run {}", r.info.run_id)
    } else {
        format!("MLflow run {}", r.info.run_name)
    };
    let mut out = Page::new(nav(&state, &p, "experiments"), title);
    out.crumbs = vec![
        Link::new("Experiments", "/experiments"),
        Link::new(
            exp.name.clone(),
            format!("/experiments/{}", enc(&exp.experiment_id)),
        ),
    ];
    out.badge = Some(Cell::status(&r.info.status.to_lowercase()));
    let mut kv = vec![
        (
            "Run id".to_owned(),
            Cell::text(r.info.run_id.clone()).class("mono"),
        ),
        ("User".to_owned(), Cell::text(r.info.user_id.clone())),
        ("Started".to_owned(), fmt_opt_time(r.info.start_time)),
        ("Ended".to_owned(), fmt_opt_time(r.info.end_time)),
        (
            "Artifacts".to_owned(),
            Cell::text(r.info.artifact_uri.clone()).class("mono"),
        ),
    ];
    if let Some(g) = r
        .tags
        .iter()
        .find(|t| t.key == gantry_engine::GANTRY_RUN_TAG)
    {
        kv.push((
            "Gantry run".to_owned(),
            Cell::link(g.value.clone(), format!("/runs/{}", enc(&g.value))).class("mono"),
        ));
    }
    out.push(Section::KeyValues(kv));

    out.heading("Metrics", "metrics");
    let mut mt = Table::new(
        "Latest value of each metric",
        &["Metric", "Value", "Step", "Time"],
    )
    .empty("No metrics were logged.");
    for m in &r.metrics {
        mt.push(vec![
            Cell::link(
                m.key.clone(),
                format!(
                    "/experiments/{}/runs/{}{}#charts",
                    enc(&exp.experiment_id),
                    enc(&r.info.run_id),
                    query(&[
                        ("metric", &m.key),
                        ("x", if x_time { "time" } else { "" }),
                        ("log", if log { "1" } else { "" })
                    ])
                ),
            ),
            Cell::num(Some(m.value)),
            Cell::text(m.step.to_string()).class("num"),
            Cell::text(fmt_time(m.timestamp)).class("time"),
        ]);
    }
    out.push(Section::Table(mt));

    if !r.metrics.is_empty() {
        out.heading("Metric history", "charts");
        let here = format!(
            "/experiments/{}/runs/{}",
            enc(&exp.experiment_id),
            enc(&r.info.run_id)
        );
        let only_s = only.clone().unwrap_or_default();
        out.push(Section::Forms(vec![Form {
            action: here.clone(),
            post: false,
            inputs: vec![
                Input::select(
                    "metric",
                    "Metric",
                    &only_s,
                    std::iter::once((String::new(), "all".to_owned()))
                        .chain(r.metrics.iter().map(|m| (m.key.clone(), m.key.clone())))
                        .collect(),
                ),
                Input::select(
                    "x",
                    "X axis",
                    if x_time { "time" } else { "step" },
                    vec![
                        ("step".into(), "step".into()),
                        ("time".into(), "time".into()),
                    ],
                ),
                Input::select(
                    "log",
                    "Y scale",
                    if log { "1" } else { "" },
                    vec![
                        (String::new(), "linear".into()),
                        ("1".into(), "logarithmic".into()),
                    ],
                ),
            ],
            button: "Draw".into(),
            reset: Some(here),
            ..Form::default()
        }]));
        let mut charts = Vec::new();
        for (i, m) in r
            .metrics
            .iter()
            .filter(|m| only.as_ref().is_none_or(|o| *o == m.key))
            .take(24)
            .enumerate()
        {
            let points = state
                .series
                .get(&state.store, &r.info.run_id, &m.key, x_time, CHART_COLUMNS)
                .await?
                .as_ref()
                .clone();
            charts.push(
                LineChart {
                    id: format!("metric{i}"),
                    title: m.key.clone(),
                    x_label: if x_time {
                        "time (UTC)".into()
                    } else {
                        "step".into()
                    },
                    y_label: m.key.clone(),
                    x_axis: if x_time { XAxis::TimeMs } else { XAxis::Number },
                    width: 560,
                    height: 260,
                    series: vec![Series {
                        name: m.key.clone(),
                        points,
                    }],
                    y_log: log,
                }
                .render(),
            );
        }
        out.push(Section::Charts(charts));
    }

    out.heading("Params", "params");
    let mut pt = Table::new("Params", &["Param", "Value"]).empty("No params were logged.");
    for kv in &r.params {
        pt.push(vec![
            Cell::text(kv.key.clone()),
            Cell::text(kv.value.clone()).class("mono"),
        ]);
    }
    out.push(Section::Table(pt));
    out.heading("Tags", "tags");
    let mut tt = Table::new("Tags", &["Tag", "Value"]).empty("No tags.");
    for kv in &r.tags {
        tt.push(vec![
            Cell::text(kv.key.clone()),
            Cell::text(kv.value.clone()),
        ]);
    }
    out.push(Section::Table(tt));
    Ok(render(&out))
}
