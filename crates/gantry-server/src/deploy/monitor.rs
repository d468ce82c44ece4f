//! The monitor of each deployment: drift against the reference profile, performance over
//! feedback, latency and errors, alert rules — computed from the prediction log (so it
//! works the same for `gantry monitor` without a server), exported as Prometheus gauges,
//! and alert transitions recorded, logged and POSTed to the deployment's webhook.

use super::Deployments;
use gantry_artifacts::ArtifactStore;
use gantry_ml::profile::Profile;
use gantry_monitor::{AlertRule, MonitorConfig, MonitorReport, Observation, Task};
use gantry_spec::deployment::DeploymentSpec;
use gantry_spec::quantity::parse_duration;
use gantry_store::{AlertEvent, NewAlertEvent, PredictionRecord, Store};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// How often monitors run when the server is not told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Most predictions one evaluation reads.
const MAX_OBSERVED: i64 = 50_000;
/// Performance is reported over these windows (plus the deployment's own window).
const PERFORMANCE_WINDOWS_MS: [i64; 3] = [15 * 60_000, 60 * 60_000, 24 * 60 * 60_000];
/// Largest reference profile read.
const MAX_PROFILE_BYTES: u64 = 64 << 20;

/// What `gantry monitor NAME` shows.
#[derive(Clone, Debug, Serialize)]
pub struct MonitorView {
    pub deployment: String,
    pub revision: i64,
    pub model: String,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    pub reference_profile: Option<String>,
    pub report: MonitorReport,
    /// Latest alert transitions, newest first.
    pub alert_events: Vec<AlertEvent>,
}

/// Why a monitor could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    Store(#[from] gantry_store::StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// Alert states of the monitors this server runs, per deployment and rule.
#[derive(Default)]
pub struct Monitors {
    firing: Mutex<HashMap<String, BTreeMap<String, bool>>>,
    interval: Mutex<Option<Duration>>,
}

impl Monitors {
    pub fn set_interval(&self, every: Duration) {
        if let Ok(mut i) = self.interval.lock() {
            *i = Some(every);
        }
    }

    /// Set by [`Monitors::set_interval`], else `GANTRY_MONITOR_INTERVAL` (`15s`, `1s`), else
    /// [`DEFAULT_INTERVAL`].
    fn interval(&self) -> Duration {
        self.interval
            .lock()
            .ok()
            .and_then(|i| *i)
            .or_else(|| {
                std::env::var("GANTRY_MONITOR_INTERVAL")
                    .ok()
                    .and_then(|v| parse_duration(&v).ok())
            })
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_INTERVAL)
    }
}

/// Parses every rule of a spec; the error names the bad rule.
pub fn parse_rules(rules: &[String]) -> Result<Vec<AlertRule>, String> {
    rules
        .iter()
        .map(|r| AlertRule::parse(r).map_err(|e| format!("alert rule `{r}`: {e}")))
        .collect()
}

/// Computes the monitor of deployment `name` now, from the store alone.
pub async fn compute(
    store: &Store,
    artifacts: &ArtifactStore,
    name: &str,
    now_ms: i64,
) -> Result<MonitorView, MonitorError> {
    Ok(evaluate_deployment(store, artifacts, name, now_ms).await?.0)
}

/// Alert events shown with a monitor; restoring alert states reads further back.
const SHOWN_EVENTS: usize = 20;
const RESTORED_EVENTS: i64 = 500;

/// [`compute`], also returning the desired state it was computed for and the recent alert
/// events (newest first, more than the view shows).
async fn evaluate_deployment(
    store: &Store,
    artifacts: &ArtifactStore,
    name: &str,
    now_ms: i64,
) -> Result<(MonitorView, DeploymentSpec, Vec<AlertEvent>), MonitorError> {
    let record = store.get_deployment(name).await?;
    let spec: DeploymentSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| MonitorError::Invalid(format!("deployment {name}: stored spec: {e}")))?;
    let version = store
        .get_model_version(&spec.model.model, spec.model.version)
        .await?;
    let reference_digest =
        gantry_engine::reference_profile_of(store, &spec.model.model, spec.model.version).await;
    let reference: Option<Profile> = match &reference_digest {
        Some(digest) => match artifacts.read_bytes(digest, MAX_PROFILE_BYTES).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| tracing::warn!("reference profile {digest}: {e}"))
                .ok(),
            Err(e) => {
                tracing::warn!("reference profile {digest}: {e}");
                None
            }
        },
        None => None,
    };
    let (label, task) = if version.flavor == "builtin" {
        match artifacts.materialize(&version.artifact_digest).await {
            Ok(path) => match gantry_ml::model::Model::load(&path) {
                Ok(m) => (Some(m.label.clone()), Some(m.task)),
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        }
    } else {
        (None, None)
    };
    let window_ms = parse_duration(&spec.monitor.window)
        .map(|d| d.as_millis() as i64)
        .map_err(MonitorError::Invalid)?;
    let rules = parse_rules(&spec.monitor.rules).map_err(MonitorError::Invalid)?;
    let mut windows: Vec<i64> = PERFORMANCE_WINDOWS_MS.to_vec();
    if !windows.contains(&window_ms) {
        windows.push(window_ms);
        windows.sort_unstable();
    }
    let since = now_ms - windows.iter().copied().max().unwrap_or(window_ms);
    let predictions = store
        .recent_predictions(name, since, MAX_OBSERVED, &["primary", "canary"])
        .await?;
    let observations = observations(&predictions);
    let task = task.unwrap_or_else(|| guess_task(&observations));
    let config = MonitorConfig {
        window_ms,
        performance_windows_ms: windows,
        rules,
        ..MonitorConfig::default()
    };
    let report = gantry_monitor::evaluate(
        reference.as_ref(),
        label.as_deref(),
        task,
        &observations,
        &config,
        now_ms,
    );
    let events = store.alert_events(name, RESTORED_EVENTS).await?;
    let alert_events = events.iter().take(SHOWN_EVENTS).cloned().collect();
    let view = MonitorView {
        deployment: name.to_string(),
        revision: record.revision,
        model: spec.model.model.clone(),
        version: spec.model.version,
        canary: spec
            .canary
            .as_ref()
            .map(|c| format!("{} ({}%)", c.target.label(), c.weight)),
        reference_profile: reference_digest,
        report,
        alert_events,
    };
    Ok((view, spec, events))
}

/// One observation per row of every logged prediction.
fn observations(predictions: &[PredictionRecord]) -> Vec<Observation> {
    let mut out = Vec::new();
    for p in predictions {
        let latency_ms = p.latency_us as f64 / 1000.0;
        let inputs = p.inputs.as_array().cloned().unwrap_or_default();
        let outputs = p.outputs.as_array().cloned().unwrap_or_default();
        if p.error.is_some() || p.rows == 0 {
            out.push(Observation {
                request_id: p.request_id.clone(),
                timestamp_ms: p.created_at_ms,
                inputs: BTreeMap::new(),
                prediction: None,
                label: None,
                latency_ms,
                error: p.error.is_some(),
            });
            continue;
        }
        for i in 0..p.rows.max(0) as usize {
            let row = inputs
                .get(i)
                .and_then(|r| r.as_object())
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            out.push(Observation {
                request_id: p.request_id.clone(),
                timestamp_ms: p.created_at_ms,
                inputs: row,
                prediction: outputs.get(i).cloned(),
                label: p.labels.get(i).cloned().flatten(),
                latency_ms,
                error: false,
            });
        }
    }
    out
}

/// Models without a schema (ONNX, custom): classification when labels look like classes.
fn guess_task(observations: &[Observation]) -> Task {
    let labels: Vec<&Value> = observations
        .iter()
        .filter_map(|o| o.label.as_ref())
        .collect();
    let regression = !labels.is_empty()
        && labels
            .iter()
            .all(|l| l.as_f64().is_some_and(|x| x.fract() != 0.0) || l.is_f64());
    if regression {
        Task::Regression
    } else {
        Task::Classification
    }
}

/// The monitors of every serving deployment, until the server stops.
pub(crate) async fn run(d: Deployments) {
    // Webhook targets are chosen by callers: the client refuses the server's own network
    // unless the admin allowed it (`--allow-fetch`), after DNS resolution and on redirects.
    let http = match d
        .fetch_policy()
        .client(reqwest::Client::builder().timeout(Duration::from_secs(5)))
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!("monitor: cannot build the webhook client: {e}");
            None
        }
    };
    loop {
        tokio::time::sleep(d.monitors().interval()).await;
        for name in d.live_names() {
            if let Err(e) = tick(&d, http.as_ref(), &name).await {
                tracing::warn!(deployment = %name, "monitor: {e}");
            }
        }
        d.metrics().forget_deployments_except(&d.live_names());
    }
}

/// One evaluation: gauges, alert transitions, retention.
pub(crate) async fn tick(
    d: &Deployments,
    http: Option<&reqwest::Client>,
    name: &str,
) -> Result<(), MonitorError> {
    let now = gantry_engine::now_ms();
    let (view, spec, events) = evaluate_deployment(d.store(), d.artifacts(), name, now).await?;
    d.metrics().observe_monitor(name, &view.report);
    let known = d
        .monitors()
        .firing
        .lock()
        .ok()
        .and_then(|f| f.get(name).cloned());
    let previous = match known {
        Some(states) => states,
        // First evaluation by this server process: continue from the recorded events, so a
        // restart does not announce alerts that were already firing a second time.
        None => last_recorded_states(&events),
    };
    let mut current = BTreeMap::new();
    for alert in &view.report.alerts {
        let firing = alert.state == gantry_monitor::AlertState::Firing;
        current.insert(alert.rule.clone(), firing);
        let was = previous.get(&alert.rule).copied().unwrap_or(false);
        if firing == was {
            continue;
        }
        let state = if firing { "firing" } else { "resolved" };
        if firing {
            tracing::warn!(deployment = %name, rule = %alert.rule, "alert firing: {}", alert.message);
        } else {
            tracing::info!(deployment = %name, rule = %alert.rule, "alert resolved: {}", alert.message);
        }
        let event = d
            .store()
            .insert_alert_event(&NewAlertEvent {
                deployment: name.to_string(),
                rule: alert.rule.clone(),
                state: state.to_string(),
                value: alert.value,
                message: alert.message.clone(),
                created_at_ms: now,
            })
            .await?;
        if let (Some(http), Some(url)) = (http, spec.monitor.webhook.clone()) {
            let body = json!({
                "deployment": name,
                "model": view.model,
                "version": view.version,
                "rule": event.rule,
                "state": event.state,
                "value": event.value,
                "message": event.message,
                "at_ms": event.created_at_ms,
            });
            let http = http.clone();
            let policy = d.fetch_policy().clone();
            tokio::spawn(async move { post_webhook(&http, &policy, &url, &body).await });
        }
    }
    if let Ok(mut f) = d.monitors().firing.lock() {
        f.insert(name.to_string(), current);
    }
    prune(d.store(), name, &spec, now).await;
    Ok(())
}

/// The latest recorded state of each rule (`events` newest first): firing or not.
fn last_recorded_states(events: &[AlertEvent]) -> BTreeMap<String, bool> {
    let mut states = BTreeMap::new();
    for e in events {
        states.entry(e.rule.clone()).or_insert(e.state == "firing");
    }
    states
}

/// Delivers an alert, retrying a failing receiver a few times.
/// Its path and query are not logged: receivers such as chat webhooks carry their secret there.
async fn post_webhook(
    http: &reqwest::Client,
    policy: &gantry_net::FetchPolicy,
    url: &str,
    body: &Value,
) {
    let shown = gantry_net::redact_url(url);
    let target = match policy.check_url(url) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(
                "alert webhook {shown}: {}",
                e.to_string().replace(url, &shown)
            );
            return;
        }
    };
    for attempt in 0..4u32 {
        match http
            .post(target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!("alert webhook {shown}: HTTP {}", r.status()),
            Err(e) => {
                let why = gantry_net::describe(&e);
                tracing::warn!("alert webhook {shown}: {}", why.replace(url, &shown));
                if gantry_net::refusal(&e).is_some() {
                    // The address will not become allowed by retrying.
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
    }
    tracing::error!("alert webhook {shown}: giving up after 4 attempts");
}

/// Keeps the prediction log within the deployment's retention.
async fn prune(store: &Store, name: &str, spec: &DeploymentSpec, now: i64) {
    let Ok(age) = parse_duration(&spec.retention.max_age) else {
        return;
    };
    let older_than = now - age.as_millis() as i64;
    match store
        .prune_predictions(name, spec.retention.max_predictions, older_than)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(deployment = %name, "pruned {n} predictions past retention"),
        Err(e) => tracing::warn!(deployment = %name, "pruning predictions: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback receiver that counts connections and answers 200.
    async fn receiver() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 64 << 10];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        (port, hits)
    }

    fn client(policy: &gantry_net::FetchPolicy) -> reqwest::Client {
        policy
            .client(reqwest::Client::builder().timeout(Duration::from_secs(5)))
            .unwrap()
    }

    #[tokio::test]
    async fn webhooks_to_the_servers_own_network_are_not_sent_unless_allowed() {
        let (port, hits) = receiver().await;
        let guarded = gantry_net::FetchPolicy::default();
        for url in [
            format!("http://127.0.0.1:{port}/hook"),
            format!("http://localhost:{port}/hook"),
        ] {
            post_webhook(&client(&guarded), &guarded, &url, &json!({"x": 1})).await;
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused webhook was sent");
        let allowed = gantry_net::FetchPolicy::guarded(vec![
            gantry_net::FetchPolicy::parse_allow("127.0.0.1").unwrap(),
        ]);
        let url = format!("http://localhost:{port}/hook");
        post_webhook(&client(&allowed), &allowed, &url, &json!({"x": 1})).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
