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
            "Runs executing on this server",
            in_flight.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            runs,
            steps,
            queue_depth,
            in_flight,
        }
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

    /// The text exposition, with the store-derived gauges refreshed first.
    pub async fn render(&self, store: &Store, in_flight: usize) -> Result<String, String> {
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
        let mut out = String::new();
        encode(&mut out, &self.registry).map_err(|e| e.to_string())?;
        Ok(out)
    }
}
