//! Registered models: versions, aliases, metrics, and lineage back to the data.

use super::page::{Cell, Form, Input, Link, Page, Section, Table, enc, fmt_number, fmt_time};
use super::{UiError, UiResult, back_to, nav, render};
use crate::AppState;
use crate::api::{self, ApiError};
use crate::auth::Principal;
use axum::extract::{Form as FormBody, Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

fn metrics_text(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| v.as_f64().map(|f| format!("{k}={}", fmt_number(f))))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// `GET /models`
pub async fn list(State(state): State<AppState>, Extension(p): Extension<Principal>) -> UiResult {
    let Json(models) = api::models::list(State(state.clone()), Extension(p.clone())).await?;
    let mut out = Page::new(nav(&state, &p, "models"), "Models");
    let mut t = Table::new(
        "Registered models",
        &["Model", "Latest version", "Aliases", "Updated"],
    )
    .empty("No models yet: a `builtin/register` step or `gantry model register` adds one.");
    for m in models.as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or_default();
        let aliases = m["aliases"]
            .as_object()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| format!("@{k} → v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        t.push(vec![
            Cell::link(name.to_owned(), format!("/models/{}", enc(name))),
            m["latest_version"]
                .as_i64()
                .map(|v| Cell::link(v.to_string(), format!("/models/{}/versions/{v}", enc(name))))
                .unwrap_or_else(Cell::missing),
            Cell::text(aliases),
            Cell::text(fmt_time(m["updated_at_ms"].as_i64().unwrap_or_default())).class("time"),
        ]);
    }
    out.push(Section::Table(t));
    Ok(render(&out))
}

/// `GET /models/{name}`
pub async fn show(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> UiResult {
    let Json(v) = api::models::get(
        State(state.clone()),
        Extension(p.clone()),
        Path(name.clone()),
    )
    .await?;
    let mut out = Page::new(nav(&state, &p, "models"), format!("Model {name}"));
    out.crumbs = vec![Link::new("Models", "/models")];
    if let Some(d) = v["model"]["description"].as_str() {
        out.push(Section::Text(d.to_owned()));
    }
    let mut t = Table::new(
        "Versions, newest first",
        &[
            "Version",
            "Aliases",
            "Flavor",
            "Metrics",
            "Run",
            "Step",
            "Data",
            "Registered",
        ],
    );
    let mut versions = Vec::new();
    for ver in v["versions"].as_array().into_iter().flatten() {
        let n = ver["version"].as_i64().unwrap_or_default();
        versions.push(n);
        let run = ver["lineage"]["run"].as_str();
        let data = ver["lineage"]["data"]
            .as_object()
            .map(|d| d.len())
            .or_else(|| ver["lineage"]["data"].as_array().map(|a| a.len()))
            .unwrap_or(0);
        t.push(vec![
            Cell::link(
                format!("v{n}"),
                format!("/models/{}/versions/{n}", enc(&name)),
            ),
            Cell::text(
                ver["aliases"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .map(|x| format!("@{x}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
            ),
            Cell::text(ver["flavor"].as_str().unwrap_or_default().to_owned()),
            Cell::text(metrics_text(&ver["metrics"])),
            run.map(|r| Cell::link(r.to_owned(), format!("/runs/{}", enc(r))).class("mono"))
                .unwrap_or_else(Cell::missing),
            ver["lineage"]["step"]
                .as_str()
                .map(Cell::text)
                .unwrap_or_else(Cell::missing),
            Cell::text(format!("{data} data artifact(s)")),
            Cell::text(fmt_time(ver["created_at_ms"].as_i64().unwrap_or_default())).class("time"),
        ]);
    }
    out.push(Section::Table(t));
    if p.can_write() && !versions.is_empty() {
        out.heading("Move an alias", "alias");
        let mut f = Form::post(format!("/models/{}/aliases", enc(&name)), "Set alias");
        f.inputs = vec![
            Input::text("alias", "Alias", "production", "production"),
            Input::select(
                "version",
                "Version",
                &versions[0].to_string(),
                versions
                    .iter()
                    .map(|n| (n.to_string(), format!("v{n}")))
                    .collect(),
            ),
        ];
        f.note = "Deployments that follow the alias roll to the new version.".into();
        out.push(Section::Forms(vec![f]));
    }
    Ok(render(&out))
}

/// `GET /models/{name}/versions/{version}`: one version and its lineage to the data.
pub async fn version(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((name, version)): Path<(String, String)>,
) -> UiResult {
    let Json(v) = api::models::version(
        State(state.clone()),
        Extension(p.clone()),
        Path((name.clone(), version.clone())),
    )
    .await?;
    let n = v["version"].as_i64().unwrap_or_default();
    let mut out = Page::new(nav(&state, &p, "models"), format!("Model {name} v{n}"));
    out.crumbs = vec![
        Link::new("Models", "/models"),
        Link::new(name.clone(), format!("/models/{}", enc(&name))),
    ];
    let digest = v["artifact"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let run = v["lineage"]["run"].as_str().map(str::to_owned);
    let mut kv = vec![
        (
            "Flavor".to_owned(),
            Cell::text(v["flavor"].as_str().unwrap_or_default().to_owned()),
        ),
        (
            "Aliases".to_owned(),
            Cell::text(
                v["aliases"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .map(|x| format!("@{x}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
            ),
        ),
        (
            "Artifact".to_owned(),
            match &run {
                Some(r) => Cell::link(
                    digest.clone(),
                    format!("/runs/{}/artifacts/{}", enc(r), enc(&digest)),
                ),
                None => Cell::text(digest.clone()),
            }
            .class("mono"),
        ),
        (
            "Registered".to_owned(),
            Cell::text(fmt_time(v["created_at_ms"].as_i64().unwrap_or_default())),
        ),
    ];
    if let Some(r) = &run {
        kv.push((
            "Trained by run".to_owned(),
            Cell::link(r.clone(), format!("/runs/{}", enc(r))).class("mono"),
        ));
    }
    if let Some(s) = v["lineage"]["step"].as_str() {
        kv.push(("Step".to_owned(), Cell::text(s.to_owned())));
    }
    out.push(Section::KeyValues(kv));
    out.heading("Metrics", "metrics");
    let mut mt = Table::new(
        "Validation metrics recorded with the version",
        &["Metric", "Value"],
    )
    .empty("No metrics were recorded with this version.");
    if let Value::Object(m) = &v["metrics"] {
        for (k, val) in m {
            mt.push(vec![Cell::text(k.clone()), Cell::num(val.as_f64())]);
        }
    }
    out.push(Section::Table(mt));
    out.heading("Lineage: the data it was trained on", "lineage");
    let mut lt = Table::new(
        "Data artifacts the training step read, by digest",
        &["Input", "Digest"],
    )
    .empty("No data lineage was recorded.");
    let mut rows: Vec<(String, String)> = Vec::new();
    match &v["lineage"]["data"] {
        Value::Object(m) => {
            for (k, d) in m {
                rows.push((
                    k.clone(),
                    d.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| d.to_string()),
                ));
            }
        }
        Value::Array(a) => {
            for d in a {
                let name = d["name"].as_str().unwrap_or("data").to_owned();
                let digest = d["digest"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| d.as_str().unwrap_or_default().to_owned());
                rows.push((name, digest));
            }
        }
        _ => {}
    }
    for (name, d) in rows {
        let cell = match &run {
            Some(r) => Cell::link(d.clone(), format!("/runs/{}/artifacts/{}", enc(r), enc(&d))),
            None => Cell::text(d.clone()),
        };
        lt.push(vec![Cell::text(name), cell.class("mono")]);
    }
    out.push(Section::Table(lt));
    if let Value::Object(m) = &v["params"]
        && !m.is_empty()
    {
        out.heading("Params", "params");
        out.push(Section::KeyValues(
            m.iter()
                .map(|(k, val)| {
                    (
                        k.clone(),
                        Cell::text(
                            val.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| val.to_string()),
                        ),
                    )
                })
                .collect(),
        ));
    }
    Ok(render(&out))
}

#[derive(Deserialize)]
pub struct AliasForm {
    alias: String,
    version: String,
}

/// `POST /models/{name}/aliases` (a form): moves an alias, as an editor.
pub async fn set_alias(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    FormBody(f): FormBody<AliasForm>,
) -> UiResult {
    let version: i64 = f.version.trim().parse().map_err(|_| {
        UiError(ApiError::invalid(
            "version",
            format!("`{}` is not a version number", f.version),
        ))
    })?;
    let body = json!({"alias": f.alias.trim(), "version": version}).to_string();
    let _ = api::models::set_alias(
        State(state),
        Extension(p),
        Path(name.clone()),
        axum::body::Bytes::from(body),
    )
    .await?;
    Ok(back_to(&format!("/models/{}", enc(&name))))
}
