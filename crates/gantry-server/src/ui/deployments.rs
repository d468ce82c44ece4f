//! Deployments: replicas, revisions, canary weight, promote/rollback, and the monitor
//! (drift per feature over time, prediction drift, performance, latency, errors, alerts).

use super::page::{Cell, Form, Link, Page, Section, Table, enc, fmt_bytes, fmt_number, fmt_time};
use super::{UiResult, back_to, nav, render};
use crate::AppState;
use crate::api;
use crate::auth::Principal;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use gantry_ui::svg::{BarChart, LineChart, Series, XAxis};
use serde_json::Value;
use std::collections::BTreeMap;

/// Hours of history the monitor charts show.
const HISTORY_HOURS: i64 = 72;

fn target(v: &Value) -> String {
    match (v["model"].as_str(), v["version"].as_i64()) {
        (Some(m), Some(n)) => format!("{m} v{n}"),
        _ => v["reference"].as_str().unwrap_or_default().to_owned(),
    }
}

/// `GET /deployments`
pub async fn list(State(state): State<AppState>, Extension(p): Extension<Principal>) -> UiResult {
    let Json(all) = api::deployments::list(State(state.clone()), Extension(p.clone())).await?;
    let mut out = Page::new(nav(&state, &p, "deployments"), "Deployments");
    let mut t = Table::new(
        "Deployments",
        &[
            "Deployment",
            "Model",
            "Canary",
            "Replicas",
            "Ready",
            "Revision",
            "Updated",
        ],
    )
    .empty("No deployments: `gantry deploy NAME --model MODEL@production` makes one.");
    for d in all.as_array().into_iter().flatten() {
        let name = d["name"].as_str().unwrap_or_default();
        let spec = &d["spec"];
        let ready: usize = d["actual"]["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["replicas"].as_array().into_iter().flatten())
            .filter(|r| r["ready"].as_bool() == Some(true))
            .count();
        t.push(vec![
            Cell::link(name.to_owned(), format!("/deployments/{}", enc(name))),
            Cell::text(target(&spec["model"])),
            if spec["canary"].is_object() {
                Cell::text(format!(
                    "{} at {}%",
                    target(&spec["canary"]["target"]),
                    spec["canary"]["weight"].as_i64().unwrap_or_default()
                ))
            } else {
                Cell::missing()
            },
            Cell::text(spec["replicas"].as_i64().unwrap_or_default().to_string()).class("num"),
            Cell::text(ready.to_string()).class("num"),
            Cell::text(d["revision"].as_i64().unwrap_or_default().to_string()).class("num"),
            Cell::text(fmt_time(d["updated_at_ms"].as_i64().unwrap_or_default())).class("time"),
        ]);
    }
    out.push(Section::Table(t));
    Ok(render(&out))
}

/// `GET /deployments/{name}`
pub async fn show(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> UiResult {
    let Json(d) = api::deployments::get(
        State(state.clone()),
        Extension(p.clone()),
        Path(name.clone()),
    )
    .await?;
    let href = format!("/deployments/{}", enc(&name));
    let mut out = Page::new(nav(&state, &p, "deployments"), format!("Deployment {name}"));
    out.crumbs = vec![Link::new("Deployments", "/deployments")];
    let spec = &d["spec"];
    let mut kv = vec![
        ("Model".to_owned(), Cell::text(target(&spec["model"]))),
        (
            "Canary".to_owned(),
            if spec["canary"].is_object() {
                Cell::text(format!(
                    "{} receives {}% of traffic",
                    target(&spec["canary"]["target"]),
                    spec["canary"]["weight"].as_i64().unwrap_or_default()
                ))
            } else {
                Cell::text("none")
            },
        ),
        (
            "Shadow".to_owned(),
            if spec["shadow"].is_object() {
                Cell::text(target(&spec["shadow"]))
            } else {
                Cell::text("none")
            },
        ),
        (
            "Replicas".to_owned(),
            Cell::text(format!(
                "{} × {} CPU millis, {}",
                spec["replicas"].as_i64().unwrap_or_default(),
                spec["cpu_millis"].as_i64().unwrap_or_default(),
                fmt_bytes(spec["memory_bytes"].as_i64().unwrap_or_default())
            )),
        ),
        (
            "Revision".to_owned(),
            Cell::text(format!(
                "{} (serving {})",
                d["revision"].as_i64().unwrap_or_default(),
                d["actual"]["serving_revision"]
                    .as_i64()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "none".into())
            )),
        ),
        (
            "Endpoint".to_owned(),
            Cell::text(format!("/v2/models/{name}/infer")).class("mono"),
        ),
    ];
    if let Some(r) = d["actual"]["rollout"].as_str() {
        kv.push(("Rollout".to_owned(), Cell::text(r.to_owned())));
    }
    out.push(Section::KeyValues(kv));
    if p.can_write() {
        let mut forms = Vec::new();
        if spec["canary"].is_object() {
            let mut f = Form::post(format!("{href}/promote"), "Promote canary");
            f.note = "The canary becomes the primary model.".into();
            forms.push(f);
        }
        let mut f = Form::post(format!("{href}/rollback"), "Roll back");
        f.class = "danger".into();
        f.note = "Back to the previous revision.".into();
        forms.push(f);
        out.push(Section::Forms(forms));
    }

    out.heading("Replicas", "replicas");
    let mut t = Table::new(
        "Replicas by pool",
        &[
            "Pool",
            "Model",
            "Flavor",
            "Replica",
            "Ready",
            "Restarts",
            "Last error",
        ],
    )
    .empty("No replicas are running.");
    for pool in d["actual"]["pools"].as_array().into_iter().flatten() {
        for r in pool["replicas"].as_array().into_iter().flatten() {
            let ready = r["ready"].as_bool() == Some(true);
            t.push(vec![
                Cell::text(pool["role"].as_str().unwrap_or_default().to_owned()),
                Cell::text(target(pool)),
                Cell::text(pool["flavor"].as_str().unwrap_or_default().to_owned()),
                Cell::text(r["id"].as_str().unwrap_or_default().to_owned()).class("mono"),
                Cell::status(if ready { "ready" } else { "starting" }),
                Cell::text(r["restarts"].as_i64().unwrap_or_default().to_string()).class("num"),
                r["last_error"].as_str().map(Cell::text).unwrap_or_default(),
            ]);
        }
    }
    out.push(Section::Table(t));

    out.heading("Revisions", "revisions");
    let revisions = state.store.deployment_revisions(&name).await?;
    let mut t = Table::new(
        "Every change, newest first",
        &["Revision", "Action", "By", "Model", "Canary", "When"],
    );
    for r in revisions.iter().rev().take(50) {
        t.push(vec![
            Cell::text(r.revision.to_string()).class("num"),
            Cell::text(r.action.clone()),
            Cell::text(r.principal.clone()),
            Cell::text(target(&r.spec["model"])),
            if r.spec["canary"].is_object() {
                Cell::text(format!(
                    "{} at {}%",
                    target(&r.spec["canary"]["target"]),
                    r.spec["canary"]["weight"].as_i64().unwrap_or_default()
                ))
            } else {
                Cell::missing()
            },
            Cell::text(fmt_time(r.created_at_ms)).class("time"),
        ]);
    }
    out.push(Section::Table(t));

    monitor_sections(&state, &p, &name, &mut out).await?;
    Ok(render(&out))
}

async fn monitor_sections(
    state: &AppState,
    p: &Principal,
    name: &str,
    out: &mut Page,
) -> UiResult<()> {
    out.heading("Monitor", "monitor");
    let view = match api::deployments::monitor(
        State(state.clone()),
        Extension(p.clone()),
        Path(name.to_owned()),
    )
    .await
    {
        Ok(Json(v)) => v,
        Err(e) => {
            out.push(Section::Notice(
                "warn".into(),
                format!("The monitor cannot be computed: {}", e.message),
            ));
            return Ok(());
        }
    };
    let report = &view["report"];
    let latency = &report["latency"];
    out.push(Section::KeyValues(vec![
        (
            "Verdict".to_owned(),
            Cell::text(report["verdict"].as_str().unwrap_or_default().to_owned()),
        ),
        (
            "Window".to_owned(),
            Cell::text(format!(
                "{} predictions ({} sampled) in the last {} min",
                report["rows"]
                    .as_i64()
                    .or(latency["requests"].as_i64())
                    .unwrap_or_default(),
                report["samples"].as_i64().unwrap_or_default(),
                report["window_ms"].as_i64().unwrap_or_default() / 60_000
            )),
        ),
        (
            "Latency".to_owned(),
            Cell::text(format!(
                "p50 {} ms · p95 {} ms · p99 {} ms",
                opt(&latency["p50_ms"]),
                opt(&latency["p95_ms"]),
                opt(&latency["p99_ms"])
            )),
        ),
        (
            "Errors".to_owned(),
            Cell::text(format!(
                "{} of {} requests ({})",
                latency["errors"].as_i64().unwrap_or_default(),
                latency["requests"].as_i64().unwrap_or_default(),
                latency["error_rate"]
                    .as_f64()
                    .map(|r| format!("{:.2}%", r * 100.0))
                    .unwrap_or_else(|| "—".into())
            )),
        ),
    ]));

    // Alerts now, then their transitions.
    let mut t = Table::new(
        "Alert rules",
        &["Rule", "State", "Value", "Threshold", "Message"],
    )
    .empty("No alert rules.");
    for a in report["alerts"].as_array().into_iter().flatten() {
        t.push(vec![
            Cell::text(a["rule"].as_str().unwrap_or_default().to_owned()).class("mono"),
            Cell::status(&a["state"].as_str().unwrap_or_default().replace('_', "-")),
            Cell::num(a["value"].as_f64()),
            Cell::num(a["threshold"].as_f64()),
            Cell::text(a["message"].as_str().unwrap_or_default().to_owned()),
        ]);
    }
    out.push(Section::Table(t));
    let mut t = Table::new(
        "Alert events, newest first",
        &["When", "Rule", "State", "Value", "Message"],
    )
    .empty("No alert has fired or cleared.");
    for e in view["alert_events"]
        .as_array()
        .into_iter()
        .flatten()
        .take(50)
    {
        t.push(vec![
            Cell::text(fmt_time(e["created_at_ms"].as_i64().unwrap_or_default())).class("time"),
            Cell::text(e["rule"].as_str().unwrap_or_default().to_owned()).class("mono"),
            Cell::status(e["state"].as_str().unwrap_or_default()),
            Cell::num(e["value"].as_f64()),
            Cell::text(e["message"].as_str().unwrap_or_default().to_owned()),
        ]);
    }
    out.push(Section::Table(t));

    // Drift now: PSI per feature as bars, with the usual 0.2 line.
    let drift: Vec<&Value> = report["drift"].as_array().into_iter().flatten().collect();
    let mut charts = Vec::new();
    if !drift.is_empty() {
        charts.push(
            BarChart {
                id: "psi-now".into(),
                title: "Feature drift now (PSI against the training data)".into(),
                labels: drift
                    .iter()
                    .map(|d| d["feature"].as_str().unwrap_or_default().to_owned())
                    .collect(),
                values: drift
                    .iter()
                    .map(|d| d["psi"].as_f64().unwrap_or(0.0))
                    .collect(),
                width: 560,
                height: 260,
                y_label: "PSI".into(),
                threshold: Some(0.2),
            }
            .render(),
        );
    }
    let mut dt = Table::new(
        "Drift per feature in the window",
        &[
            "Feature",
            "Kind",
            "Status",
            "PSI",
            "Jensen–Shannon",
            "Samples",
        ],
    )
    .empty("No drift data: no reference profile or no traffic yet.");
    for d in drift.iter().copied().chain(
        report["prediction_drift"]
            .as_object()
            .map(|_| &report["prediction_drift"]),
    ) {
        dt.push(vec![
            Cell::text(d["feature"].as_str().unwrap_or_default().to_owned()),
            Cell::text(value_text(&d["kind"])),
            Cell::status(&value_text(&d["status"]).replace('_', "-")),
            Cell::num(d["psi"].as_f64()),
            Cell::num(d["jensen_shannon"].as_f64()),
            Cell::text(d["samples"].as_i64().unwrap_or_default().to_string()).class("num"),
        ]);
    }

    // Over time, from the hourly history.
    let history = api::deployments::monitor_history(
        State(state.clone()),
        Extension(p.clone()),
        Path(name.to_owned()),
        axum::extract::Query(api::deployments::HistoryQuery::hours(HISTORY_HOURS)),
    )
    .await
    .map(|Json(v)| v)
    .unwrap_or(Value::Null);
    let hours: Vec<&Value> = history["hours"].as_array().into_iter().flatten().collect();
    if !hours.is_empty() {
        let x = |h: &Value| h["hour_ms"].as_f64().unwrap_or_default();
        let mut per_feature: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for h in &hours {
            if let Some(m) = h["psi"].as_object() {
                for (f, v) in m {
                    if let Some(v) = v.as_f64() {
                        per_feature.entry(f.clone()).or_default().push((x(h), v));
                    }
                }
            }
        }
        let mut psi_series: Vec<Series> = per_feature
            .into_iter()
            .map(|(name, points)| Series { name, points })
            .collect();
        let prediction: Vec<(f64, f64)> = hours
            .iter()
            .filter_map(|h| h["prediction_psi"].as_f64().map(|v| (x(h), v)))
            .collect();
        if !prediction.is_empty() {
            psi_series.push(Series {
                name: "prediction".into(),
                points: prediction,
            });
        }
        let series = |key: &str, scale: f64| -> Vec<(f64, f64)> {
            hours
                .iter()
                .filter_map(|h| h[key].as_f64().map(|v| (x(h), v * scale)))
                .collect()
        };
        charts.push(chart(
            "psi-hist",
            &format!("PSI per feature and prediction drift, last {HISTORY_HOURS} h"),
            "PSI",
            psi_series,
        ));
        charts.push(chart(
            "lat-hist",
            "Latency per hour",
            "ms",
            vec![
                Series {
                    name: "p50".into(),
                    points: series("p50_ms", 1.0),
                },
                Series {
                    name: "p99".into(),
                    points: series("p99_ms", 1.0),
                },
            ],
        ));
        charts.push(chart(
            "err-hist",
            "Error rate per hour",
            "%",
            vec![Series {
                name: "errors".into(),
                points: series("error_rate", 100.0),
            }],
        ));
        charts.push(chart(
            "req-hist",
            "Requests per hour",
            "requests",
            vec![Series {
                name: "requests".into(),
                points: series("requests", 1.0),
            }],
        ));
    }
    if !charts.is_empty() {
        out.push(Section::Charts(charts));
    }
    out.push(Section::Table(dt));

    let mut pt = Table::new(
        "Model performance over feedback windows",
        &[
            "Window",
            "Predictions",
            "Labelled",
            "Accuracy",
            "F1 (macro)",
            "RMSE",
            "MAE",
        ],
    )
    .empty("No feedback yet: POST /api/v1/deployments/NAME/feedback with the true labels.");
    for w in report["performance"].as_array().into_iter().flatten() {
        pt.push(vec![
            Cell::text(format!(
                "{} min",
                w["window_ms"].as_i64().unwrap_or_default() / 60_000
            )),
            Cell::text(w["predictions"].as_i64().unwrap_or_default().to_string()).class("num"),
            Cell::text(w["labelled"].as_i64().unwrap_or_default().to_string()).class("num"),
            Cell::num(w["accuracy"].as_f64()),
            Cell::num(w["f1_macro"].as_f64()),
            Cell::num(w["rmse"].as_f64()),
            Cell::num(w["mae"].as_f64()),
        ]);
    }
    out.push(Section::Table(pt));
    Ok(())
}

fn chart(id: &str, title: &str, y: &str, series: Vec<Series>) -> String {
    LineChart {
        id: id.into(),
        title: title.into(),
        x_label: "time (UTC)".into(),
        y_label: y.into(),
        x_axis: XAxis::TimeMs,
        width: 560,
        height: 260,
        series,
        y_log: false,
    }
    .render()
}

fn opt(v: &Value) -> String {
    v.as_f64().map(fmt_number).unwrap_or_else(|| "—".into())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `POST /deployments/{name}/promote`
pub async fn promote(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> UiResult {
    let _ = api::deployments::promote(State(state), Extension(p), Path(name.clone())).await?;
    Ok(back_to(&format!("/deployments/{}", enc(&name))))
}

/// `POST /deployments/{name}/rollback`
pub async fn rollback(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> UiResult {
    let _ = api::deployments::rollback(State(state), Extension(p), Path(name.clone())).await?;
    Ok(back_to(&format!("/deployments/{}", enc(&name))))
}
