//! The model server's Prometheus metrics (OpenMetrics text at `/metrics`).
//!
//! The handles of each served model are created once, so a successful request only
//! touches atomics (and the histogram's own lock), never a label map.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model_set::ModelSet;

/// Which endpoint a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `…/infer` (Open Inference Protocol tensors).
    Infer,
    /// `…/predict` (raw rows).
    Predict,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Infer => "infer",
            Protocol::Predict => "predict",
        }
    }
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    version: String,
    protocol: Protocol,
    code: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    model: String,
    version: String,
    kind: String,
}

/// 100 µs to 10 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Pre-made handles of one model.
struct ModelHandles {
    labels: ModelLabels,
    infer_ok: Counter,
    predict_ok: Counter,
    duration: Histogram,
    rows: Counter,
}

pub(crate) struct ServeMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    /// Indexed like the model set.
    models: Vec<ModelHandles>,
}

impl ServeMetrics {
    pub(crate) fn new(set: &ModelSet) -> ServeMetrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: Family<ModelLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let rows = Family::<ModelLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "gantry_model_requests",
            "Model server requests, by model, version, protocol (infer or predict) and HTTP status code",
            requests.clone(),
        );
        registry.register(
            "gantry_model_request_duration_seconds",
            "Time from a request's body to its response, by model and version",
            duration.clone(),
        );
        registry.register(
            "gantry_model_rows",
            "Rows predicted, by model and version",
            rows.clone(),
        );
        registry.register(
            "gantry_model_errors",
            "Failed model requests, by model, version and kind (bad_request, too_large, internal)",
            errors.clone(),
        );
        let models = set
            .iter()
            .map(|m| {
                let labels = ModelLabels {
                    model: m.name().to_string(),
                    version: m.version().to_string(),
                };
                let ok = |protocol| {
                    requests
                        .get_or_create(&RequestLabels {
                            model: labels.model.clone(),
                            version: labels.version.clone(),
                            protocol,
                            code: 200,
                        })
                        .clone()
                };
                ModelHandles {
                    infer_ok: ok(Protocol::Infer),
                    predict_ok: ok(Protocol::Predict),
                    duration: duration.get_or_create(&labels).clone(),
                    rows: rows.get_or_create(&labels).clone(),
                    labels,
                }
            })
            .collect();
        ServeMetrics {
            registry,
            requests,
            errors,
            models,
        }
    }

    /// Records one request to the model at `index` of the model set.
    pub(crate) fn record(
        &self,
        index: usize,
        protocol: Protocol,
        code: u16,
        seconds: f64,
        rows: usize,
        error_kind: Option<&str>,
    ) {
        let Some(m) = self.models.get(index) else {
            return;
        };
        m.duration.observe(seconds);
        m.rows.inc_by(rows as u64);
        match (code, protocol) {
            (200, Protocol::Infer) => {
                m.infer_ok.inc();
            }
            (200, Protocol::Predict) => {
                m.predict_ok.inc();
            }
            _ => {
                self.requests
                    .get_or_create(&RequestLabels {
                        model: m.labels.model.clone(),
                        version: m.labels.version.clone(),
                        protocol,
                        code,
                    })
                    .inc();
            }
        }
        if let Some(kind) = error_kind {
            self.errors
                .get_or_create(&ErrorLabels {
                    model: m.labels.model.clone(),
                    version: m.labels.version.clone(),
                    kind: kind.to_string(),
                })
                .inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`ServeMetrics::encode`]'s text.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`prometheus_text`]'s text.
pub(crate) const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The response to a `/metrics` scrape of OpenMetrics text from prometheus-client:
/// OpenMetrics for scrapers that ask for it (Prometheus does), else the classic
/// Prometheus text format (what `promtool check metrics` reads).
pub fn exposition(
    openmetrics: String,
    headers: &axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
            openmetrics,
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
            prometheus_text(&openmetrics),
        )
            .into_response()
    }
}

/// OpenMetrics text rewritten in the Prometheus text format 0.0.4, for scrapers and tools
/// (`promtool check metrics`) that do not ask for OpenMetrics: a counter family is named
/// with its `_total` suffix there, and there is no `# EOF`.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_name_in_the_prometheus_format() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
                  # HELP a_seconds Time.\n# TYPE a_seconds histogram\na_seconds_count 1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
             # HELP a_seconds Time.\n# TYPE a_seconds histogram\na_seconds_count 1\n"
        );
    }
}
