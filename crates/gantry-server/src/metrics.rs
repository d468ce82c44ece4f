//! Prometheus metrics served at `/metrics`: HTTP requests (count and latency by route),
//! runs by status, step durations and the number of steps waiting to run.

use gantry_engine::Event;
use gantry_store::{RunStatus, StepStatus, Store};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    runs: Family<Labels, Gauge>,
    steps: Family<Labels, Histogram, fn() -> Histogram>,
    queue_depth: Gauge,
    in_flight: Gauge,
    /// The admission queue by project: waiting entries, runs in flight, resources held.
    queue_waiting: Family<Labels, Gauge>,
    project_runs: Family<Labels, Gauge>,
    project_cpu: Family<Labels, Gauge<f64, AtomicU64>>,
    project_memory: Family<Labels, Gauge>,
    project_gpus: Family<Labels, Gauge>,
    inferences: Family<Labels, Counter>,
    inference_latency: Family<Labels, Histogram, fn() -> Histogram>,
    inference_errors: Family<Labels, Counter>,
    prediction_log: Family<Labels, Counter>,
    drift_psi: Family<Labels, Gauge<f64, AtomicU64>>,
    prediction_psi: Family<Labels, Gauge<f64, AtomicU64>>,
    performance: Family<Labels, Gauge<f64, AtomicU64>>,
    latency_quantile: Family<Labels, Gauge<f64, AtomicU64>>,
    error_rate: Family<Labels, Gauge<f64, AtomicU64>>,
    alerts: Family<Labels, Gauge>,
    image_vulnerabilities: Family<Labels, Gauge>,
    /// Reloads of the image trust policy on SIGHUP, by result, and whether the last one
    /// worked (a failed one leaves the previous policy in force).
    policy_reloads: Family<Labels, Counter>,
    policy_reload_ok: Gauge,
    /// All-time usage by project, refreshed from the store at each scrape.
    usage: std::sync::Arc<UsageCollector>,
    /// Deployments with monitor gauges, to drop theirs when they go away.
    monitored: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

fn inference_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gantry");
        let requests = Family::<Labels, Counter>::default();
        let latency: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let runs = Family::<Labels, Gauge>::default();
        let steps: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(step_histogram);
        let queue_depth = Gauge::default();
        let in_flight = Gauge::default();
        let queue_waiting = Family::<Labels, Gauge>::default();
        let project_runs = Family::<Labels, Gauge>::default();
        let project_cpu = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let project_memory = Family::<Labels, Gauge>::default();
        let project_gpus = Family::<Labels, Gauge>::default();
        let inferences = Family::<Labels, Counter>::default();
        let inference_latency: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(inference_histogram);
        let inference_errors = Family::<Labels, Counter>::default();
        let prediction_log = Family::<Labels, Counter>::default();
        let drift_psi = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let prediction_psi = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let performance = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let latency_quantile = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let error_rate = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let alerts = Family::<Labels, Gauge>::default();
        let image_vulnerabilities = Family::<Labels, Gauge>::default();
        let policy_reloads = Family::<Labels, Counter>::default();
        let policy_reload_ok = Gauge::default();
        policy_reload_ok.set(1);
        registry.register(
            "trust_policy_reloads",
            "Reloads of the image trust policy file on SIGHUP, by result (ok, error)",
            policy_reloads.clone(),
        );
        registry.register(
            "trust_policy_last_reload_successful",
            "1 unless the last reload of the trust policy failed (the previous policy then stays in force)",
            policy_reload_ok.clone(),
        );
        registry.register(
            "image_vulnerabilities",
            "Known vulnerabilities of each stored image, by severity, from the last scan with the current advisory database",
            image_vulnerabilities.clone(),
        );
        registry.register(
            "deployment_requests",
            "Inference requests answered, by deployment, model version, role (primary, canary, shadow) and status code",
            inferences.clone(),
        );
        registry.register(
            "deployment_request_duration_seconds",
            "Inference latency through the control plane, by deployment and model version",
            inference_latency.clone(),
        );
        registry.register(
            "deployment_errors",
            "Inference requests that failed (status >= 400), by deployment and model version",
            inference_errors.clone(),
        );
        registry.register(
            "prediction_log_records",
            "Prediction log writes, by result (written, failed)",
            prediction_log.clone(),
        );
        registry.register(
            "deployment_feature_psi",
            "Population stability index of each input feature against the reference profile, over the monitor window",
            drift_psi.clone(),
        );
        registry.register(
            "deployment_prediction_psi",
            "Population stability index of the predictions against the training label distribution",
            prediction_psi.clone(),
        );
        registry.register(
            "deployment_performance",
            "Performance over ground-truth feedback, by metric (accuracy, f1_macro, rmse, mae) and window",
            performance.clone(),
        );
        registry.register(
            "deployment_window_latency_seconds",
            "Inference latency percentiles (p50, p95, p99) over the monitor window, from the prediction log",
            latency_quantile.clone(),
        );
        registry.register(
            "deployment_error_ratio",
            "Fraction of failed inference requests over the monitor window",
            error_rate.clone(),
        );
        registry.register(
            "deployment_alert_firing",
            "1 while an alert rule of a deployment fires, else 0",
            alerts.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method and route",
            latency.clone(),
        );
        registry.register(
            "runs",
            "Runs in the metadata store, by status",
            runs.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Wall time of finished step attempts run by this server, by final status",
            steps.clone(),
        );
        registry.register(
            "queue_depth",
            "Steps of running runs that wait for a dependency or for capacity",
            queue_depth.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs executing on this server, or queued for admission",
            in_flight.clone(),
        );
        registry.register(
            "queue_waiting",
            "Run starts and steps waiting for admission (capacity, quota or their turn), by project",
            queue_waiting.clone(),
        );
        registry.register(
            "project_runs_admitted",
            "Runs admitted and not finished, by project (what max_runs counts)",
            project_runs.clone(),
        );
        registry.register(
            "project_cpu_held_cores",
            "CPU requested by the project's running steps",
            project_cpu.clone(),
        );
        registry.register(
            "project_memory_held_bytes",
            "Memory requested by the project's running steps",
            project_memory.clone(),
        );
        registry.register(
            "project_gpus_held",
            "GPUs held by the project's running steps",
            project_gpus.clone(),
        );
        let usage = std::sync::Arc::new(UsageCollector::default());
        registry.register_collector(Box::new(std::sync::Arc::clone(&usage)));
        Metrics {
            usage,
            registry,
            requests,
            latency,
            runs,
            steps,
            queue_depth,
            in_flight,
            queue_waiting,
            project_runs,
            project_cpu,
            project_memory,
            project_gpus,
            inferences,
            inference_latency,
            inference_errors,
            prediction_log,
            drift_psi,
            prediction_psi,
            performance,
            latency_quantile,
            error_rate,
            alerts,
            image_vulnerabilities,
            policy_reloads,
            policy_reload_ok,
            monitored: std::sync::Mutex::default(),
        }
    }

    /// One inference request answered through the control plane.
    pub fn observe_inference(
        &self,
        deployment: &str,
        version: &str,
        role: &str,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let labels = vec![
            ("deployment".to_string(), deployment.to_string()),
            ("version".to_string(), version.to_string()),
            ("role".to_string(), role.to_string()),
            ("code".to_string(), status.to_string()),
        ];
        self.inferences.get_or_create(&labels).inc();
        let labels = vec![
            ("deployment".to_string(), deployment.to_string()),
            ("version".to_string(), version.to_string()),
        ];
        self.inference_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if status >= 400 {
            self.inference_errors.get_or_create(&labels).inc();
        }
    }

    pub fn observe_prediction_log(&self, written: usize, failed: usize) {
        for (result, n) in [("written", written), ("failed", failed)] {
            if n > 0 {
                self.prediction_log
                    .get_or_create(&vec![("result".to_string(), result.to_string())])
                    .inc_by(n as u64);
            }
        }
    }

    /// The latest monitor evaluation of a deployment as gauges.
    pub fn observe_monitor(&self, deployment: &str, report: &gantry_monitor::MonitorReport) {
        if let Ok(mut m) = self.monitored.lock() {
            m.insert(deployment.to_string());
        }
        let d = ("deployment".to_string(), deployment.to_string());
        for f in &report.drift {
            if let Some(psi) = f.psi {
                self.drift_psi
                    .get_or_create(&vec![d.clone(), ("feature".to_string(), f.feature.clone())])
                    .set(psi);
            }
        }
        if let Some(psi) = report.prediction_drift.as_ref().and_then(|p| p.psi) {
            self.prediction_psi.get_or_create(&vec![d.clone()]).set(psi);
        }
        for w in &report.performance {
            let window = format!("{}s", w.window_ms / 1000);
            for (metric, value) in [
                ("accuracy", w.accuracy),
                ("f1_macro", w.f1_macro),
                ("rmse", w.rmse),
                ("mae", w.mae),
            ] {
                if let Some(v) = value {
                    self.performance
                        .get_or_create(&vec![
                            d.clone(),
                            ("metric".to_string(), metric.to_string()),
                            ("window".to_string(), window.clone()),
                        ])
                        .set(v);
                }
            }
        }
        let l = &report.latency;
        for (q, v) in [("p50", l.p50_ms), ("p95", l.p95_ms), ("p99", l.p99_ms)] {
            if let Some(v) = v {
                self.latency_quantile
                    .get_or_create(&vec![d.clone(), ("percentile".to_string(), q.to_string())])
                    .set(v / 1000.0);
            }
        }
        self.error_rate
            .get_or_create(&vec![d.clone()])
            .set(l.error_rate.unwrap_or(0.0));
        for a in &report.alerts {
            self.alerts
                .get_or_create(&vec![d.clone(), ("rule".to_string(), a.rule.clone())])
                .set(i64::from(a.state == gantry_monitor::AlertState::Firing));
        }
    }

    /// Drops the monitor gauges of deployments that no longer exist (prometheus-client
    /// cannot remove by label prefix: the families are cleared and the next evaluation of
    /// the remaining deployments fills them again).
    pub fn forget_deployments_except(&self, names: &[String]) {
        let Ok(mut monitored) = self.monitored.lock() else {
            return;
        };
        if monitored.iter().all(|m| names.contains(m)) {
            return;
        }
        monitored.retain(|m| names.contains(m));
        self.drift_psi.clear();
        self.prediction_psi.clear();
        self.performance.clear();
        self.latency_quantile.clear();
        self.error_rate.clear();
        self.alerts.clear();
    }

    /// Counts one request; `route` is the matched route template (never the raw path, so
    /// ids do not explode the label space).
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = vec![
            ("method".to_string(), method.to_string()),
            ("route".to_string(), route.to_string()),
            ("status".to_string(), status.to_string()),
        ];
        self.requests.get_or_create(&labels).inc();
        let labels = vec![
            ("method".to_string(), method.to_string()),
            ("route".to_string(), route.to_string()),
        ];
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Step durations from the engine's events of runs this server executes.
    pub fn observe_event(&self, event: &Event) {
        if let Event::StepFinished {
            status,
            wall_ms: Some(ms),
            ..
        } = event
        {
            let labels = vec![("status".to_string(), status.as_str().to_string())];
            self.steps
                .get_or_create(&labels)
                .observe(*ms as f64 / 1000.0);
        }
    }

    /// Sets the vulnerability counts of `image` (`name` or digest) per severity.
    pub fn observe_image_scan(&self, image: &str, counts: &[(String, usize)]) {
        for (severity, n) in counts {
            let labels = vec![
                ("image".to_string(), image.to_string()),
                ("severity".to_string(), severity.clone()),
            ];
            self.image_vulnerabilities
                .get_or_create(&labels)
                .set(*n as i64);
        }
    }

    /// A reload of the trust policy file (SIGHUP) that worked or failed.
    pub fn observe_policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc();
        self.policy_reload_ok.set(i64::from(ok));
    }

    /// The text exposition, with the store-derived gauges refreshed first.
    pub async fn render(
        &self,
        store: &Store,
        in_flight: usize,
        prices: &gantry_alloc::Prices,
        projects: Option<&[gantry_alloc::queue::ProjectStanding]>,
    ) -> Result<String, String> {
        let now = gantry_engine::now_ms();
        let q = gantry_store::UsageQuery {
            since_ms: 0,
            until_ms: now + 1,
            by: gantry_alloc::Dimension::Project,
            project: None,
            run_id: None,
        };
        let groups = store.usage(&q).await.map_err(|e| e.to_string())?;
        let report = gantry_alloc::Report::new(q.by, q.since_ms, q.until_ms, groups, prices);
        if let Ok(mut snapshot) = self.usage.snapshot.lock() {
            *snapshot = report;
        }
        for status in RunStatus::ALL {
            let n = store
                .runs_with_status(&[*status])
                .await
                .map_err(|e| e.to_string())?;
            let labels = vec![("status".to_string(), status.as_str().to_string())];
            self.runs.get_or_create(&labels).set(n.len() as i64);
        }
        let mut waiting = 0i64;
        for run in store
            .runs_with_status(&[RunStatus::Running, RunStatus::Queued])
            .await
            .map_err(|e| e.to_string())?
        {
            let steps = store
                .list_step_runs(&run.id)
                .await
                .map_err(|e| e.to_string())?;
            waiting += steps
                .iter()
                .filter(|s| s.status == StepStatus::Pending)
                .count() as i64;
        }
        self.queue_depth.set(waiting);
        self.in_flight.set(in_flight as i64);
        self.queue_waiting.clear();
        self.project_runs.clear();
        self.project_cpu.clear();
        self.project_memory.clear();
        self.project_gpus.clear();
        if let Some(projects) = projects {
            for p in projects {
                let labels = vec![("project".to_string(), p.project.clone())];
                self.queue_waiting
                    .get_or_create(&labels)
                    .set(p.waiting as i64);
                self.project_runs
                    .get_or_create(&labels)
                    .set(i64::from(p.runs_in_flight));
                self.project_cpu
                    .get_or_create(&labels)
                    .set(p.used.cpu_millis as f64 / 1000.0);
                self.project_memory
                    .get_or_create(&labels)
                    .set(p.used.memory_bytes.min(i64::MAX as u64) as i64);
                self.project_gpus
                    .get_or_create(&labels)
                    .set(i64::from(p.used.gpus));
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// `gantry_usage_*_total{project}`: what every project used and cost since the store began
/// (a gc that deletes old runs lowers them, which Prometheus reads as a counter reset).
#[derive(Debug)]
struct UsageCollector {
    snapshot: std::sync::Mutex<gantry_alloc::Report>,
}

impl Default for UsageCollector {
    fn default() -> Self {
        UsageCollector {
            snapshot: std::sync::Mutex::new(gantry_alloc::Report::new(
                gantry_alloc::Dimension::Project,
                0,
                0,
                Default::default(),
                &gantry_alloc::Prices::default(),
            )),
        }
    }
}

impl prometheus_client::collector::Collector for UsageCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let Ok(report) = self.snapshot.lock() else {
            return Ok(());
        };
        type Value = fn(&gantry_alloc::Line) -> f64;
        let series: [(&str, &str, Value); 9] = [
            (
                "usage_step_runs",
                "Step attempts that ran a container, by project",
                |l| l.sums.step_runs as f64,
            ),
            (
                "usage_cache_hits",
                "Steps answered from the cache, by project",
                |l| l.sums.cache_hits as f64,
            ),
            (
                "usage_cpu_seconds_requested",
                "CPU core-seconds requested (requests × wall time), by project",
                |l| l.sums.cpu_hours_requested * 3600.0,
            ),
            (
                "usage_cpu_seconds_used",
                "CPU core-seconds used, by project",
                |l| l.sums.cpu_hours_used * 3600.0,
            ),
            (
                "usage_memory_byte_seconds_requested",
                "Memory requested × wall time, by project",
                |l| l.sums.memory_gib_hours_requested * 3600.0 * (1u64 << 30) as f64,
            ),
            (
                "usage_memory_byte_seconds_peak",
                "Peak memory × wall time, by project",
                |l| l.sums.memory_gib_hours_peak * 3600.0 * (1u64 << 30) as f64,
            ),
            (
                "usage_gpu_seconds",
                "GPU-seconds allocated, by project",
                |l| l.sums.gpu_hours_total() * 3600.0,
            ),
            (
                "usage_gpu_seconds_idle",
                "GPU-seconds allocated while < 10% utilized, by project",
                |l| l.sums.gpu_hours_idle * 3600.0,
            ),
            (
                "usage_cache_saved_cpu_seconds",
                "CPU core-seconds the cache saved (the reused step runs' requests), by project",
                |l| l.sums.saved.cpu_hours_requested * 3600.0,
            ),
        ];
        for (name, help, value) in series {
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for line in &report.lines {
                let labels = [("project", line.key.as_str())];
                ConstCounter::new(value(line)).encode(metric.encode_family(&labels)?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "usage_cost",
            "Cost of the requested resources at the configured prices, by project",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for line in &report.lines {
            let labels = [
                ("project", line.key.as_str()),
                ("currency", report.currency.as_str()),
            ];
            ConstCounter::new(line.cost.total).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
