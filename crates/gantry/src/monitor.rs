//! `gantry monitor NAME`: a deployment's monitor computed now, from the prediction log on
//! GANTRY_HOME's store or through `--server`. Both give the same JSON, rendered the same way.

use crate::cli::Output;
use crate::commands::{Source, text};
use crate::exit::{self, coded};
use crate::render::{self, table};
use gantry_monitor::{format_value, window_phrase};
use gantry_server::deploy::monitor::{self, MonitorError};
use serde_json::Value;

pub async fn show(src: &Source<'_>, name: &str, output: Output) -> anyhow::Result<u8> {
    let view = match src {
        Source::Remote(client) => client.get(&["deployments", name, "monitor"], &[]).await?,
        Source::Local(home) => {
            let store = home.store().await?;
            let artifacts = home.artifacts()?;
            let view = monitor::compute(&store, &artifacts, name, gantry_engine::now_ms())
                .await
                .map_err(|e| match e {
                    MonitorError::Store(s) => anyhow::Error::new(s),
                    MonitorError::Invalid(m) => coded(exit::INTERNAL, m),
                })?;
            serde_json::to_value(&view)?
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", render_view(&view));
    }
    Ok(exit::OK)
}

/// `gantry monitor NAME --history`: one line per hour with the prediction drift and the
/// features that drifted most.
pub async fn history(
    src: &Source<'_>,
    name: &str,
    hours: i64,
    output: Output,
) -> anyhow::Result<u8> {
    if !(1..=24 * 90).contains(&hours) {
        return Err(coded(
            exit::USAGE,
            format!("--hours {hours}: expected 1 to 2160"),
        ));
    }
    let v = match src {
        Source::Remote(client) => {
            client
                .get(
                    &["deployments", name, "monitor", "history"],
                    &[("hours", hours.to_string())],
                )
                .await?
        }
        Source::Local(home) => {
            let store = home.store().await?;
            let artifacts = home.artifacts()?;
            let h = monitor::history(&store, &artifacts, name, gantry_engine::now_ms(), hours)
                .await
                .map_err(|e| match e {
                    MonitorError::Store(s) => anyhow::Error::new(s),
                    MonitorError::Invalid(m) => coded(exit::INTERNAL, m),
                })?;
            serde_json::json!({"deployment": name, "hours": h})
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit::OK);
    }
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v["hours"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|h| {
            let mut psi: Vec<(String, f64)> = h["psi"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(f, p)| p.as_f64().map(|p| (f.clone(), p)))
                        .collect()
                })
                .unwrap_or_default();
            psi.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top: Vec<String> = psi
                .iter()
                .take(3)
                .map(|(f, p)| format!("{f} {}", format_value(*p)))
                .collect();
            vec![
                render::timestamp(h["hour_ms"].as_i64().unwrap_or(0)),
                text(&h["samples"]),
                number(&h["prediction_psi"]),
                if top.is_empty() {
                    "-".into()
                } else {
                    top.join(", ")
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no predictions of {name} in the last {hours} hours");
    } else {
        let mut t = table(&["HOUR", "SAMPLES", "PREDICTION PSI", "HIGHEST FEATURE PSI"]);
        for row in rows {
            t.add_row(row);
        }
        println!("{t}");
    }
    Ok(exit::OK)
}

fn number(v: &Value) -> String {
    v.as_f64().map(format_value).unwrap_or_else(|| "-".into())
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{}%", format_value(x * 100.0)))
        .unwrap_or_else(|| "-".into())
}

fn millis(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{}ms", format_value(x)))
        .unwrap_or_else(|| "-".into())
}

/// Everything `gantry monitor` prints, from the monitor's JSON.
pub fn render_view(v: &Value) -> String {
    let r = &v["report"];
    let empty = Vec::new();
    let window = window_phrase(r["window_ms"].as_i64().unwrap_or(0));
    let mut out = String::new();
    out.push_str(&format!(
        "deployment {} (revision {}): {}:{}{}\n",
        text(&v["deployment"]),
        text(&v["revision"]),
        text(&v["model"]),
        text(&v["version"]),
        v["canary"]
            .as_str()
            .map(|c| format!(", canary {c}"))
            .unwrap_or_default()
    ));
    out.push_str(&format!(
        "window    last {window}: {} predictions (at {})\n",
        text(&r["samples"]),
        render::timestamp(r["now_ms"].as_i64().unwrap_or(0))
    ));
    out.push_str(&format!(
        "reference {}\n",
        v["reference_profile"]
            .as_str()
            .map(render::short_digest)
            .unwrap_or_else(|| {
                "none: drift is not checked (register the model with a reference profile)".into()
            })
    ));

    let drift = r["drift"].as_array().unwrap_or(&empty);
    if !drift.is_empty() {
        out.push_str("\ndrift\n");
        let mut t = table(&["FEATURE", "PSI", "JS", "KS p", "MISSING", "STATUS"]);
        for d in drift {
            t.add_row(drift_row(d));
        }
        out.push_str(&format!("{t}\n"));
    }
    let pd = &r["prediction_drift"];
    if !pd.is_null() {
        out.push_str(&prediction_line(pd));
    }

    let perf = r["performance"].as_array().unwrap_or(&empty);
    if !perf.is_empty() {
        let regression = perf.iter().any(|p| !p["rmse"].is_null());
        out.push_str("\nperformance (feedback labels)\n");
        let mut header = vec!["WINDOW", "PREDICTIONS", "LABELLED"];
        header.extend(if regression {
            ["RMSE", "MAE"]
        } else {
            ["ACCURACY", "F1 (MACRO)"]
        });
        let mut t = table(&header);
        for p in perf {
            let (a, b) = if regression {
                (number(&p["rmse"]), number(&p["mae"]))
            } else {
                (number(&p["accuracy"]), number(&p["f1_macro"]))
            };
            t.add_row(vec![
                window_phrase(p["window_ms"].as_i64().unwrap_or(0)),
                text(&p["predictions"]),
                text(&p["labelled"]),
                a,
                b,
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }

    let l = &r["latency"];
    out.push_str(&format!(
        "\nlatency   p50 {}, p95 {}, p99 {} over {} requests; errors {} ({})\n",
        millis(&l["p50_ms"]),
        millis(&l["p95_ms"]),
        millis(&l["p99_ms"]),
        text(&l["requests"]),
        text(&l["errors"]),
        percent(&l["error_rate"])
    ));

    let alerts = r["alerts"].as_array().unwrap_or(&empty);
    if alerts.is_empty() {
        out.push_str("\nalerts    no rules (add them with `gantry deploy NAME --rule \"psi > 0.2 for feature x\"`)\n");
    } else {
        out.push_str("\nalerts\n");
        let mut t = table(&["RULE", "STATE", "VALUE", "MESSAGE"]);
        for a in alerts {
            t.add_row(vec![
                text(&a["rule"]),
                text(&a["state"]),
                number(&a["value"]),
                text(&a["message"]),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    if let Some(events) = v["alert_events"].as_array().filter(|e| !e.is_empty()) {
        out.push_str("\nrecent alert events\n");
        let mut t = table(&["TIME", "RULE", "STATE", "VALUE", "MESSAGE"]);
        for e in events {
            t.add_row(vec![
                render::timestamp(e["created_at_ms"].as_i64().unwrap_or(0)),
                text(&e["rule"]),
                text(&e["state"]),
                number(&e["value"]),
                text(&e["message"]),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out.push_str(&format!("\n{}\n", text(&r["verdict"])));
    out
}

/// The line under the drift table about the predictions' drift.
pub(crate) fn prediction_line(pd: &Value) -> String {
    format!(
        "{}: psi {}, js {}{} — {}{}\n",
        text(&pd["feature"]),
        number(&pd["psi"]),
        number(&pd["jensen_shannon"]),
        if pd["chi_square"].is_null() {
            String::new()
        } else {
            format!(", chi² p {}", number(&pd["chi_square"]["p_value"]))
        },
        text(&pd["status"]),
        pd["note"]
            .as_str()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    )
}

/// One row of the drift table (`gantry drift` prints the same table).
pub(crate) fn drift_row(d: &Value) -> Vec<String> {
    let status = text(&d["status"]);
    vec![
        text(&d["feature"]),
        number(&d["psi"]),
        number(&d["jensen_shannon"]),
        // Categorical features are tested with chi² instead of KS.
        if d["ks"].is_null() {
            d["chi_square"]["p_value"]
                .as_f64()
                .map(|p| format!("{} (chi²)", format_value(p)))
                .unwrap_or_else(|| "-".into())
        } else {
            number(&d["ks"]["p_value"])
        },
        percent(&d["missing_fraction"]),
        match d["note"].as_str() {
            Some(n) => format!("{status} ({n})"),
            None => status,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_ml::dataset::{Column, ColumnData, Dataset};
    use gantry_monitor::{AlertRule, MonitorConfig, Observation, Task};
    use serde_json::json;
    use std::collections::BTreeMap;

    /// A report from the real monitor: the renderer reads the field names it writes.
    fn real_view() -> Value {
        let reference = Dataset::new(vec![
            Column::new(
                "age",
                ColumnData::Float((0..200).map(|i| Some(20.0 + (i % 40) as f64)).collect()),
            ),
            Column::new(
                "plan",
                ColumnData::Categorical(
                    (0..200)
                        .map(|i| Some(if i % 2 == 0 { "basic" } else { "pro" }.to_string()))
                        .collect(),
                ),
            ),
            Column::new(
                "churn",
                ColumnData::Categorical(
                    (0..200)
                        .map(|i| Some(if i % 3 == 0 { "yes" } else { "no" }.to_string()))
                        .collect(),
                ),
            ),
        ])
        .unwrap();
        let profile = gantry_ml::profile::profile_dataset(&reference, 10, 20);
        let now = 10_000_000;
        let observations: Vec<Observation> = (0..100)
            .map(|i| Observation {
                request_id: format!("r{i}"),
                timestamp_ms: now - 1000 * i,
                // Everyone is old now: age drifts; plan does not.
                inputs: BTreeMap::from([
                    ("age".to_string(), json!(70.0 + (i % 5) as f64)),
                    (
                        "plan".to_string(),
                        json!(if i % 2 == 0 { "basic" } else { "pro" }),
                    ),
                ]),
                prediction: Some(json!("no")),
                label: (i < 10).then(|| json!(if i < 8 { "no" } else { "yes" })),
                latency_ms: 2.0 + i as f64 / 10.0,
                error: false,
            })
            .collect();
        let config = MonitorConfig {
            rules: vec![
                AlertRule::parse("psi > 0.2 for feature age").unwrap(),
                AlertRule::parse("accuracy < 0.9").unwrap(),
            ],
            ..MonitorConfig::default()
        };
        let report = gantry_monitor::evaluate(
            Some(&profile),
            Some("churn"),
            Task::Classification,
            &observations,
            &config,
            now,
        );
        json!({
            "deployment": "churn",
            "revision": 4,
            "model": "churn",
            "version": 2,
            "canary": "churn:3 (10%)",
            "reference_profile": "sha256:0123456789abcdef0123",
            "report": report,
            "alert_events": [{
                "id": 1, "deployment": "churn", "rule": "psi > 0.2 for feature age",
                "state": "firing", "value": 1.5, "message": "psi of age is 1.5 > 0.2",
                "created_at_ms": now,
            }],
        })
    }

    #[test]
    fn a_real_report_renders_every_section() {
        let v = real_view();
        let out = render_view(&v);
        for expected in [
            "deployment churn (revision 4): churn:2, canary churn:3 (10%)",
            "last hour: 100 predictions",
            "reference sha256:0123456789ab",
            "FEATURE",
            "prediction (churn)",
            "ACCURACY",
            "p50 ",
            "RULE",
            "recent alert events",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        let age = out
            .lines()
            .find(|l| l.trim_start().starts_with("age"))
            .unwrap_or_default();
        assert!(age.contains("drift"), "age should drift: {age}\n{out}");
        let plan = out
            .lines()
            .find(|l| l.trim_start().starts_with("plan"))
            .unwrap_or_default();
        assert!(plan.contains("ok"), "plan should not drift: {plan}\n{out}");
        assert!(plan.contains("(chi²)"), "categorical p-value: {plan}");
        // Accuracy 0.8 over 10 labels is below the rule's 0.9.
        assert!(out.contains("0.8"), "{out}");
        let verdict = text(&v["report"]["verdict"]);
        assert!(!verdict.is_empty());
        assert_eq!(out.trim_end().lines().last(), Some(verdict.as_str()));
    }

    #[test]
    fn an_idle_deployment_says_so() {
        let report = gantry_monitor::evaluate(
            None,
            None,
            Task::Regression,
            &[],
            &MonitorConfig::default(),
            1_000,
        );
        let v = json!({
            "deployment": "d", "revision": 1, "model": "m", "version": 1,
            "reference_profile": null, "report": report, "alert_events": [],
        });
        let out = render_view(&v);
        assert!(out.contains("reference none"), "{out}");
        assert!(out.contains("p50 -, p95 -, p99 - over 0 requests"), "{out}");
        assert!(out.contains("alerts    no rules"), "{out}");
        assert!(out.contains("no predictions in the last hour"), "{out}");
    }
}
