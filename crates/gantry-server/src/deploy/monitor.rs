//! The monitor of each deployment: drift against the reference profile, performance over
//! feedback, latency and errors, alert rules — computed from the prediction log (so it
//! works the same for `gantry monitor` without a server), exported as Prometheus gauges,
//! and alert transitions recorded, logged and POSTed to the deployment's webhook.

use super::Deployments;
use super::aggregates::{Reference, bucket_of, load_reference};
use gantry_artifacts::ArtifactStore;
use gantry_monitor::aggregate::{Aggregate, PerformanceCounts, SplitMix, WINDOW_SAMPLE};
use gantry_monitor::{AlertRule, MonitorConfig, MonitorReport, Task};
use gantry_spec::deployment::DeploymentSpec;
use gantry_spec::quantity::parse_duration;
use gantry_store::{AlertEvent, BucketKey, NewAlertEvent, PerformanceKind, PerformanceSum, Store};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// How often monitors run when the server is not told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Performance is reported over these windows (plus the deployment's own window).
const PERFORMANCE_WINDOWS_MS: [i64; 3] = [15 * 60_000, 60 * 60_000, 24 * 60 * 60_000];

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
    /// What evaluations of this server reuse.
    pub cache: MonitorCache,
    firing: Mutex<HashMap<String, BTreeMap<String, bool>>>,
    /// When each deployment was last pruned.
    pruned: Mutex<HashMap<String, i64>>,
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

/// A bucket's revision: its `seq` and `updated_at_ms`.
type Revision = (i64, i64);

/// What a server's monitor evaluations reuse: references (model versions are immutable; a
/// short time-to-live covers a re-tagged profile) and parsed bucket states, valid while their
/// [`Revision`] is unchanged — a tick then reads the keys and the one or two buckets that
/// changed since the last one.
#[derive(Default)]
pub struct MonitorCache {
    references: Mutex<HashMap<ModelVersion, (std::time::Instant, Arc<Reference>)>>,
    /// By key: the revision cached (`seq` and `updated_at_ms`: a bucket rolled up and then
    /// written anew starts again at `seq` 1) and the parsed state.
    buckets: Mutex<HashMap<BucketKey, (Revision, Arc<Aggregate>)>>,
    /// Per deployment: the merge of the window's buckets before the current minute, and the
    /// signature (keys and revisions) it was made from.
    settled: Mutex<HashMap<String, (u64, Arc<Aggregate>)>>,
}

/// (model, version).
type ModelVersion = (String, i64);

/// How long a cached reference is used before it is read again.
const REFERENCE_TTL: Duration = Duration::from_secs(30);

impl MonitorCache {
    async fn reference(
        &self,
        store: &Store,
        artifacts: &ArtifactStore,
        model: &str,
        version: i64,
    ) -> Result<Arc<Reference>, MonitorError> {
        let key = (model.to_string(), version);
        if let Some((at, r)) = self
            .references
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
            && at.elapsed() < REFERENCE_TTL
        {
            return Ok(r);
        }
        let r = Arc::new(load_reference(store, artifacts, model, version).await?);
        if let Ok(mut m) = self.references.lock() {
            m.insert(key, (std::time::Instant::now(), Arc::clone(&r)));
        }
        Ok(r)
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
    Ok(evaluate_deployment(store, artifacts, name, now_ms, None)
        .await?
        .0)
}

/// [`compute`] reusing `cache` (a server's API and monitor ticks).
pub async fn compute_cached(
    store: &Store,
    artifacts: &ArtifactStore,
    name: &str,
    now_ms: i64,
    cache: &MonitorCache,
) -> Result<MonitorView, MonitorError> {
    Ok(
        evaluate_deployment(store, artifacts, name, now_ms, Some(cache))
            .await?
            .0,
    )
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
    cache: Option<&MonitorCache>,
) -> Result<(MonitorView, DeploymentSpec, Vec<AlertEvent>), MonitorError> {
    let record = store.get_deployment(name).await?;
    let spec: DeploymentSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| MonitorError::Invalid(format!("deployment {name}: stored spec: {e}")))?;
    let reference = match cache {
        Some(c) => {
            c.reference(store, artifacts, &spec.model.model, spec.model.version)
                .await?
        }
        None => {
            Arc::new(load_reference(store, artifacts, &spec.model.model, spec.model.version).await?)
        }
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
    let config = MonitorConfig {
        window_ms,
        performance_windows_ms: windows,
        rules,
        ..MonitorConfig::default()
    };
    let window = window_aggregate(store, name, &reference.digest, now_ms, window_ms, cache).await?;
    let mut performance: HashMap<i64, PerformanceCounts> = HashMap::new();
    for w in config.performance_windows() {
        let sums = store
            .monitor_performance(name, bucket_of(now_ms - w), now_ms, &SERVED_ROLES)
            .await?;
        performance.insert(w, performance_counts(&sums));
    }
    let task = reference
        .task
        .unwrap_or_else(|| guess_task(performance.values().max_by_key(|p| p.confusion.len())));
    let report = gantry_monitor::evaluate_aggregated(
        reference.profile.as_ref(),
        reference.label.as_deref(),
        task,
        &window,
        &|w| performance.get(&w).cloned().unwrap_or_default(),
        &config,
        now_ms,
    );
    let reference_digest = (!reference.digest.is_empty()).then(|| reference.digest.clone());
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

/// Roles whose predictions answered callers (shadow copies are logged, never monitored).
const SERVED_ROLES: [&str; 2] = ["primary", "canary"];

/// The merge of the buckets of the drift window (from the bucket holding `now − window` to
/// the current one) of the served roles. Buckets counted against another reference (before a
/// promotion) add their requests, errors and latency but not their drift counts.
pub async fn window_aggregate(
    store: &Store,
    name: &str,
    reference: &str,
    now_ms: i64,
    window_ms: i64,
    cache: Option<&MonitorCache>,
) -> Result<Aggregate, MonitorError> {
    let from = bucket_of(now_ms - window_ms);
    let states = match cache {
        Some(c) => cached_states(store, name, from, now_ms, c).await?,
        None => {
            let mut out = Vec::new();
            for row in store.monitor_buckets(name, from, now_ms).await? {
                match serde_json::from_str::<Aggregate>(&row.state_json) {
                    Ok(a) => out.push((row.key, (row.seq, row.updated_at_ms), Arc::new(a))),
                    Err(e) => tracing::warn!(
                        deployment = %name,
                        bucket = row.key.bucket_ms,
                        "unreadable monitor bucket: {e}"
                    ),
                }
            }
            out
        }
    };
    let current = bucket_of(now_ms);
    let mut settled: Vec<Arc<Aggregate>> = Vec::new();
    let mut live: Vec<Arc<Aggregate>> = Vec::new();
    let mut signature = std::collections::hash_map::DefaultHasher::new();
    for (key, revision, agg) in states {
        if !SERVED_ROLES.contains(&key.role.as_str()) {
            continue;
        }
        let agg = if key.reference != reference {
            let mut counted = (*agg).clone();
            counted.features.clear();
            counted.prediction = None;
            counted.with_inputs = 0;
            Arc::new(counted)
        } else {
            agg
        };
        if key.bucket_ms < current {
            std::hash::Hash::hash(
                &(&key, revision, key.reference == reference),
                &mut signature,
            );
            settled.push(agg);
        } else {
            live.push(agg);
        }
    }
    // A fixed seed: the same buckets give the same sample, so a monitor read twice agrees.
    let merge = |parts: &[Arc<Aggregate>]| {
        let refs: Vec<&Aggregate> = parts.iter().map(|a| a.as_ref()).collect();
        Aggregate::merge(&refs, WINDOW_SAMPLE, &mut SplitMix::new(0))
    };
    let Some(cache) = cache else {
        settled.extend(live);
        return Ok(merge(&settled));
    };
    // Buckets before the current minute rarely change: their merge is kept until one does,
    // and each tick merges it with the current minute's buckets only.
    let signature = std::hash::Hasher::finish(&signature);
    let reused = cache.settled.lock().ok().and_then(|m| {
        m.get(name)
            .filter(|(s, _)| *s == signature)
            .map(|(_, a)| Arc::clone(a))
    });
    let settled = match reused {
        Some(a) => a,
        None => {
            let merged = Arc::new(merge(&settled));
            if let Ok(mut m) = cache.settled.lock() {
                m.insert(name.to_string(), (signature, Arc::clone(&merged)));
            }
            merged
        }
    };
    live.insert(0, settled);
    Ok(merge(&live))
}

/// The window's bucket states through the cache: keys and rewrite counts first, then only
/// the states that changed; entries of this deployment outside the window are dropped.
async fn cached_states(
    store: &Store,
    name: &str,
    from: i64,
    to: i64,
    cache: &MonitorCache,
) -> Result<Vec<(BucketKey, Revision, Arc<Aggregate>)>, MonitorError> {
    let keys = store.monitor_bucket_keys(name, from, to).await?;
    let mut out = Vec::with_capacity(keys.len());
    for (key, seq, updated_at_ms) in keys {
        let revision: Revision = (seq, updated_at_ms);
        let hit = cache.buckets.lock().ok().and_then(|m| {
            m.get(&key)
                .filter(|(r, _)| *r == revision)
                .map(|(_, a)| Arc::clone(a))
        });
        let agg = match hit {
            Some(a) => a,
            None => {
                let Some((_, text)) = store.monitor_bucket_state(&key).await? else {
                    continue;
                };
                let parsed = match serde_json::from_str::<Aggregate>(&text) {
                    Ok(a) => Arc::new(a),
                    Err(e) => {
                        tracing::warn!(
                            deployment = %name,
                            bucket = key.bucket_ms,
                            "unreadable monitor bucket: {e}"
                        );
                        continue;
                    }
                };
                if let Ok(mut m) = cache.buckets.lock() {
                    // Under the revision listed: newer content read since is read again.
                    m.insert(key.clone(), (revision, Arc::clone(&parsed)));
                }
                parsed
            }
        };
        out.push((key, revision, agg));
    }
    if let Ok(mut m) = cache.buckets.lock() {
        m.retain(|k, _| k.deployment != name || (k.bucket_ms >= from && k.bucket_ms <= to));
    }
    Ok(out)
}

/// Summed performance rows as the monitor's counts.
fn performance_counts(sums: &[PerformanceSum]) -> PerformanceCounts {
    let mut out = PerformanceCounts::default();
    for s in sums {
        let n = u64::try_from(s.n).unwrap_or(0);
        match &s.kind {
            PerformanceKind::Predictions => out.predictions += n,
            PerformanceKind::Class { truth, predicted } => {
                if n > 0 {
                    *out.confusion
                        .entry((truth.clone(), predicted.clone()))
                        .or_default() += n;
                }
            }
            PerformanceKind::Regression => {
                out.regression_n += n;
                out.sum_squared_error += s.sum_squared_error;
                out.sum_absolute_error += s.sum_absolute_error;
            }
        }
    }
    out
}

/// Models without a schema (ONNX, custom): regression when every labelled truth is a number
/// and some has a fraction, else classification.
fn guess_task(counts: Option<&PerformanceCounts>) -> Task {
    let truths: Vec<&str> = counts
        .map(|c| c.confusion.keys().map(|(t, _)| t.as_str()).collect())
        .unwrap_or_default();
    let numbers: Vec<f64> = truths
        .iter()
        .filter_map(|t| t.parse::<f64>().ok())
        .collect();
    if !truths.is_empty()
        && numbers.len() == truths.len()
        && numbers.iter().any(|x| x.fract() != 0.0)
    {
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
    d.predlog().checkpoint().await;
    let now = gantry_engine::now_ms();
    let (view, spec, events) = evaluate_deployment(
        d.store(),
        d.artifacts(),
        name,
        now,
        Some(&d.monitors().cache),
    )
    .await?;
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
    // Retention reads the log's index: once a minute is enough, and keeps ticks cheap.
    let due = d.monitors().pruned.lock().ok().is_some_and(|mut last| {
        let every = (d.monitors().interval().as_millis() as i64 * 10).min(PRUNE_EVERY_MS);
        let due = last.get(name).is_none_or(|t| now - t >= every);
        if due {
            last.insert(name.to_string(), now);
        }
        due
    });
    if due {
        prune(d.store(), name, &spec, now).await;
        if let Err(e) = roll_up(d.store(), name, now).await {
            tracing::warn!(deployment = %name, "rolling up monitor buckets: {e}");
        }
    }
    Ok(())
}

/// Minute buckets older than this are rolled up into hour buckets.
const ROLL_UP_AFTER_MS: i64 = 2 * HOUR_MS;
const HOUR_MS: i64 = 3_600_000;
/// Values of each numeric feature an hour bucket keeps for the KS test.
const HOUR_SAMPLE: usize = 256;

/// Merges the minute buckets of every whole hour older than [`ROLL_UP_AFTER_MS`] into one
/// bucket per hour, role, version and reference (writer `rollup`), in one transaction per
/// call: long windows and hourly history then read a few dozen rows, not thousands. Windows
/// reaching further back than two hours are therefore counted in whole hours. A bucket a
/// writer changed since it was read leaves everything as it was until the next call; a
/// writer whose bucket was rolled up reads it back (empty) before counting into it again
/// (its write of the stale copy fails, `write_own_buckets`).
pub async fn roll_up(store: &Store, name: &str, now_ms: i64) -> Result<usize, MonitorError> {
    let until = (now_ms - ROLL_UP_AFTER_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let rows = store.monitor_buckets(name, 0, until - 1).await?;
    type Group = (i64, String, i64, String);
    let mut groups: BTreeMap<Group, Vec<gantry_store::BucketState>> = BTreeMap::new();
    for row in rows {
        let hour = row.key.bucket_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let k = &row.key;
        groups
            .entry((hour, k.role.clone(), k.version, k.reference.clone()))
            .or_default()
            .push(row);
    }
    // One transaction per hour: a minute a writer changed meanwhile holds back its own hour
    // only, until the next call.
    let mut rolled = 0;
    for ((hour, role, version, reference), members) in groups {
        // Already rolled up and nothing new: leave it.
        if members.len() == 1 && members[0].key.span_ms == HOUR_MS {
            continue;
        }
        let mut parts = Vec::with_capacity(members.len());
        for m in &members {
            match serde_json::from_str::<Aggregate>(&m.state_json) {
                Ok(a) => parts.push(a),
                Err(e) => {
                    return Err(MonitorError::Invalid(format!(
                        "monitor bucket of {name} at {}: {e}",
                        m.key.bucket_ms
                    )));
                }
            }
        }
        let refs: Vec<&Aggregate> = parts.iter().collect();
        let merged = Aggregate::merge(&refs, HOUR_SAMPLE, &mut SplitMix::new(hour as u64));
        let state_json = serde_json::to_string(&merged)
            .map_err(|e| MonitorError::Invalid(format!("encoding a monitor bucket: {e}")))?;
        let seq = members.iter().map(|m| m.seq).max().unwrap_or(0) + 1;
        let remove: Vec<_> = members.into_iter().map(|m| (m.key, m.seq)).collect();
        let add = gantry_store::BucketState {
            key: gantry_store::BucketKey {
                deployment: name.to_string(),
                bucket_ms: hour,
                span_ms: HOUR_MS,
                role,
                version,
                reference,
                writer: "rollup".into(),
            },
            seq,
            state_json,
            updated_at_ms: now_ms,
        };
        match store.replace_monitor_buckets(&remove, &[add]).await {
            Ok(()) => rolled += 1,
            // A writer counted a late record into one of them, or another server rolled the
            // hour up, meanwhile: the next call rolls it up with what is there then.
            Err(gantry_store::StoreError::Conflict { id, .. }) => {
                tracing::debug!(deployment = %name, hour, "roll-up of an hour deferred: {id} changed");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(rolled)
}

/// Which predictions one side of a comparison counts: a role (`primary`, `canary`,
/// `shadow`) or a model version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Role(String),
    Version(i64),
}

impl Side {
    /// `role:canary`, `canary`, `version:3` or `v3`.
    pub fn parse(text: &str) -> Result<Side, String> {
        let t = text.trim();
        let version = t.strip_prefix("version:").or_else(|| {
            t.strip_prefix('v')
                .filter(|r| r.chars().all(|c| c.is_ascii_digit()))
        });
        if let Some(v) = version {
            return v
                .parse()
                .map(Side::Version)
                .map_err(|_| format!("`{text}`: expected version:N"));
        }
        let role = t.strip_prefix("role:").unwrap_or(t);
        if ["primary", "canary", "shadow"].contains(&role) {
            Ok(Side::Role(role.to_string()))
        } else {
            Err(format!(
                "`{text}`: expected primary, canary, shadow (or role:NAME) or version:N"
            ))
        }
    }

    fn counts(&self, key: &gantry_store::BucketKey) -> bool {
        match self {
            Side::Role(r) => key.role == *r,
            Side::Version(v) => key.version == *v,
        }
    }
}

/// One feature compared between two sides of a deployment's traffic.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureComparison {
    pub feature: String,
    /// Values of each side.
    pub samples: (u64, u64),
    /// PSI of `b` against `a` over the reference profile's bins; None without values.
    pub psi: Option<f64>,
    pub jensen_shannon: Option<f64>,
}

/// Compares the live distributions of two sides (e.g. canary against primary, version 2
/// against version 1) over the last `window_ms`, feature by feature and for the predictions.
pub async fn compare(
    store: &Store,
    artifacts: &ArtifactStore,
    name: &str,
    now_ms: i64,
    window_ms: i64,
    a: &Side,
    b: &Side,
) -> Result<Vec<FeatureComparison>, MonitorError> {
    let record = store.get_deployment(name).await?;
    let spec: DeploymentSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| MonitorError::Invalid(format!("deployment {name}: stored spec: {e}")))?;
    let reference = load_reference(store, artifacts, &spec.model.model, spec.model.version).await?;
    let rows = store
        .monitor_buckets(name, bucket_of(now_ms - window_ms), now_ms)
        .await?;
    let side = |s: &Side| -> Aggregate {
        let parts: Vec<Aggregate> = rows
            .iter()
            .filter(|r| r.key.reference == reference.digest && s.counts(&r.key))
            .filter_map(|r| serde_json::from_str(&r.state_json).ok())
            .collect();
        let refs: Vec<&Aggregate> = parts.iter().collect();
        Aggregate::merge(&refs, WINDOW_SAMPLE, &mut SplitMix::new(0))
    };
    let (left, right) = (side(a), side(b));
    let mut out = Vec::new();
    let mut names: Vec<(
        String,
        Option<&gantry_monitor::aggregate::ColumnCounts>,
        Option<&gantry_monitor::aggregate::ColumnCounts>,
    )> = left
        .features
        .keys()
        .chain(right.features.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|f| (f.clone(), left.features.get(f), right.features.get(f)))
        .collect();
    if let Some(label) = &reference.label {
        names.push((
            format!("prediction ({label})"),
            left.prediction.as_ref(),
            right.prediction.as_ref(),
        ));
    }
    for (feature, x, y) in names {
        let bins = |c: Option<&gantry_monitor::aggregate::ColumnCounts>| -> Vec<f64> {
            c.map(|c| c.bins.iter().map(|&n| n as f64).collect())
                .unwrap_or_default()
        };
        let (bx, by) = (bins(x), bins(y));
        let comparable = !bx.is_empty() && bx.len() == by.len();
        out.push(FeatureComparison {
            samples: (x.map_or(0, |c| c.values), y.map_or(0, |c| c.values)),
            psi: comparable
                .then(|| gantry_monitor::stats::psi(&bx, &by).ok())
                .flatten(),
            jensen_shannon: comparable
                .then(|| gantry_monitor::stats::jensen_shannon(&bx, &by).ok())
                .flatten(),
            feature,
        });
    }
    Ok(out)
}

/// One hour of a deployment's drift history.
#[derive(Clone, Debug, Serialize)]
pub struct HourOfDrift {
    pub hour_ms: i64,
    pub samples: u64,
    /// Feature → PSI (None: not enough values that hour).
    pub psi: BTreeMap<String, Option<f64>>,
    pub prediction_psi: Option<f64>,
    /// Requests, errors and latency of the hour (for the UI's time series).
    pub requests: usize,
    pub errors: usize,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Per-feature PSI and prediction drift per hour over the last `hours`, from the buckets
/// (for charts and `gantry monitor --history`).
pub async fn history(
    store: &Store,
    artifacts: &ArtifactStore,
    name: &str,
    now_ms: i64,
    hours: i64,
) -> Result<Vec<HourOfDrift>, MonitorError> {
    let record = store.get_deployment(name).await?;
    let spec: DeploymentSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| MonitorError::Invalid(format!("deployment {name}: stored spec: {e}")))?;
    let reference = load_reference(store, artifacts, &spec.model.model, spec.model.version).await?;
    let first = (now_ms - hours * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let rows = store.monitor_buckets(name, first, now_ms).await?;
    let mut per_hour: BTreeMap<i64, Vec<Aggregate>> = BTreeMap::new();
    for row in rows {
        if !SERVED_ROLES.contains(&row.key.role.as_str()) || row.key.reference != reference.digest {
            continue;
        }
        if let Ok(a) = serde_json::from_str::<Aggregate>(&row.state_json) {
            per_hour
                .entry(row.key.bucket_ms.div_euclid(HOUR_MS) * HOUR_MS)
                .or_default()
                .push(a);
        }
    }
    let config = MonitorConfig {
        window_ms: HOUR_MS,
        performance_windows_ms: Vec::new(),
        rules: Vec::new(),
        ..MonitorConfig::default()
    };
    let mut out = Vec::with_capacity(per_hour.len());
    for (hour, parts) in per_hour {
        let refs: Vec<&Aggregate> = parts.iter().collect();
        let merged = Aggregate::merge(&refs, WINDOW_SAMPLE, &mut SplitMix::new(0));
        let report = gantry_monitor::evaluate_aggregated(
            reference.profile.as_ref(),
            reference.label.as_deref(),
            reference.task.unwrap_or(Task::Classification),
            &merged,
            &|_| PerformanceCounts::default(),
            &config,
            hour + HOUR_MS,
        );
        out.push(HourOfDrift {
            hour_ms: hour,
            samples: merged.observations,
            psi: report
                .drift
                .iter()
                .map(|d| (d.feature.clone(), d.psi))
                .collect(),
            prediction_psi: report.prediction_drift.and_then(|d| d.psi),
            requests: report.latency.requests,
            errors: report.latency.errors,
            error_rate: report.latency.error_rate,
            p50_ms: report.latency.p50_ms,
            p99_ms: report.latency.p99_ms,
        });
    }
    Ok(out)
}

/// How often, at most, a deployment's log and aggregates are pruned to its retention (ten
/// monitor intervals when that is shorter).
const PRUNE_EVERY_MS: i64 = 60_000;

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
    // Aggregates are small: they keep the age bound only, so history outlives a count-bound log.
    if let Err(e) = store.prune_monitor(name, bucket_of(older_than)).await {
        tracing::warn!(deployment = %name, "pruning monitor aggregates: {e}");
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
