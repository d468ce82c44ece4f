//! The second half of `gantry demo`: serve the champion the pipeline's `builtin/deploy`
//! step asked for, send it traffic that drifts half-way through, post ground truth, and
//! print what the monitor concludes — on this machine, with the same control plane as
//! `gantry server` (started in-process on a loopback port and stopped at the end).

use anyhow::Context;
use gantry_engine::Engine;
use gantry_kube::StepRuntime;
use gantry_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The deployment the demo pipeline's `deploy` step creates.
pub const DEPLOYMENT: &str = "breast-cancer";
/// Features the demo shifts in the second half of its traffic (as if a new scanner
/// reported every size 80% larger).
const SHIFTED: [&str; 6] = [
    "mean_radius",
    "mean_perimeter",
    "mean_area",
    "worst_radius",
    "worst_perimeter",
    "worst_area",
];
const SHIFT: f64 = 1.8;
/// Requests before and after the shift.
const REQUESTS: usize = 150;

pub struct DemoTraffic {
    pub monitor: Value,
    /// Accuracy of this run's answers against the labels it sent as feedback, per phase
    /// (before the shift, with the drifted traffic): the monitor's windows also hold earlier
    /// demo runs' traffic in the same GANTRY_HOME.
    pub phase_accuracy: [Option<f64>; 2],
    pub served: usize,
}

/// Serves the deployment, sends the traffic and returns the monitor's view.
pub async fn run(
    engine: &Engine<StepRuntime>,
    home_root: &std::path::Path,
    quiet: bool,
) -> anyhow::Result<DemoTraffic> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1 for the demo's control plane")?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let config = ServerConfig::local(&url, home_root.join("mlflow-artifacts"));
    let state = AppState::new(engine.store().clone(), engine.artifacts().clone(), config)
        .with_engine(engine.clone());
    state
        .deployments
        .monitors()
        .set_interval(Duration::from_secs(1));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gantry_server::serve(state.clone(), listener, async move {
        let _ = stop_rx.await;
    }));
    let result = traffic(&state, &url, quiet).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    result
}

async fn traffic(state: &AppState, url: &str, quiet: bool) -> anyhow::Result<DemoTraffic> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let say = |s: String| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    say(format!(
        "serving deployment {DEPLOYMENT} at {url}/v2/models/{DEPLOYMENT}/infer (starting a replica)…"
    ));
    let started = Instant::now();
    loop {
        let ready = http
            .get(format!("{url}/v2/models/{DEPLOYMENT}/ready"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let actual = state.deployments.actual(DEPLOYMENT);
            anyhow::bail!(
                "the deployment did not become ready in 90 s: {}",
                serde_json::to_string(&actual).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(format!(
        "replica ready after {:.1}s",
        started.elapsed().as_secs_f64()
    ));

    let csv = gantry_ml::datasets::breast_cancer_csv();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let label_col = header.iter().position(|h| *h == "diagnosis");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // Spread the requests over the whole data set, both classes alike.
    let step = (rows.len() / REQUESTS).max(1);
    let picked: Vec<&Vec<&str>> = rows.iter().step_by(step).take(REQUESTS).collect();
    let mut feedback = Vec::new();
    let mut phase_accuracy = [None, None];
    let mut served = 0;
    for (index, (phase, shift)) in [
        ("like the training data", false),
        ("drifted: sizes ×1.8", true),
    ]
    .into_iter()
    .enumerate()
    {
        let t = Instant::now();
        let (mut right, mut labelled) = (0usize, 0usize);
        for r in &picked {
            let mut row = serde_json::Map::new();
            let mut truth = Value::Null;
            for (i, name) in header.iter().enumerate() {
                let cell = r.get(i).copied().unwrap_or("");
                if Some(i) == label_col {
                    truth = Value::from(cell);
                    continue;
                }
                let mut v: f64 = cell.parse().unwrap_or(f64::NAN);
                if shift && SHIFTED.contains(name) {
                    v *= SHIFT;
                }
                row.insert((*name).to_string(), json!(v));
            }
            let resp = http
                .post(format!("{url}/v2/models/{DEPLOYMENT}/predict"))
                .header("content-type", "application/json")
                .body(json!({"rows": [row]}).to_string())
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json_or_text().await;
            anyhow::ensure!(status.is_success(), "prediction failed: {status} {body}");
            served += 1;
            if !truth.is_null() {
                labelled += 1;
                right += usize::from(body["predictions"][0]["value"] == truth);
            }
            if let Some(id) = body["id"].as_str() {
                feedback.push(json!({"request_id": id, "label": truth}));
            }
        }
        say(format!(
            "sent {} requests ({phase}) in {:.2}s",
            picked.len(),
            t.elapsed().as_secs_f64()
        ));
        // Ground truth arrives (here at once) for everything sent so far.
        let resp = http
            .post(format!("{url}/api/v1/deployments/{DEPLOYMENT}/feedback"))
            .header("content-type", "application/json")
            .body(json!({"feedback": feedback}).to_string())
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "posting feedback failed: {}",
            resp.status()
        );
        feedback.clear();
        phase_accuracy[index] = (labelled > 0).then(|| right as f64 / labelled as f64);
    }
    // Let the server's monitor run once over everything (alerts, gauges).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(DemoTraffic {
        monitor: monitor(&http, url).await?,
        phase_accuracy,
        served,
    })
}

async fn monitor(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let resp = http
        .get(format!("{url}/api/v1/deployments/{DEPLOYMENT}/monitor"))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.json_or_text().await;
    anyhow::ensure!(
        status.is_success(),
        "reading the monitor failed: {status} {body}"
    );
    Ok(body)
}

trait JsonOrText {
    async fn json_or_text(self) -> Value;
}

impl JsonOrText for reqwest::Response {
    async fn json_or_text(self) -> Value {
        let bytes = self.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&bytes).into_owned()))
    }
}
