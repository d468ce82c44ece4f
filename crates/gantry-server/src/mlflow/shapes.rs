//! MLflow's JSON shapes (proto3 JSON as MLflow's server writes it: int64 as numbers, non-finite
//! doubles as "NaN"/"Infinity"/"-Infinity", model version numbers as strings).

use gantry_store::{
    Experiment, KeyValue, LoggedModel, LoggedModelMetric, MetricPoint, RegisteredModel,
    RegisteredModelVersion, RunOutput, TrackingRun, TrackingRunInfo,
};
use serde_json::{Map, Value, json};

/// An int64 given as a JSON number or a decimal string.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A double given as a number, a numeric string, or proto JSON's "NaN"/"Infinity"/"-Infinity".
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
}

pub fn f64_value(v: f64) -> Value {
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v == f64::INFINITY {
        Value::String("Infinity".into())
    } else if v == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        json!(v)
    }
}

pub fn key_values(kvs: &[KeyValue]) -> Value {
    Value::Array(
        kvs.iter()
            .map(|kv| json!({"key": kv.key, "value": kv.value}))
            .collect(),
    )
}

pub fn metric(m: &MetricPoint) -> Value {
    json!({"key": m.key, "value": f64_value(m.value), "timestamp": m.timestamp, "step": m.step})
}

pub fn experiment(e: &Experiment) -> Value {
    json!({
        "experiment_id": e.experiment_id,
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage,
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
        "tags": key_values(&e.tags),
    })
}

pub fn run_info(info: &TrackingRunInfo) -> Value {
    let mut m = Map::new();
    m.insert("run_id".into(), json!(info.run_id));
    m.insert("run_uuid".into(), json!(info.run_id));
    m.insert("run_name".into(), json!(info.run_name));
    m.insert("experiment_id".into(), json!(info.experiment_id));
    m.insert("user_id".into(), json!(info.user_id));
    m.insert("status".into(), json!(info.status));
    if let Some(t) = info.start_time {
        m.insert("start_time".into(), json!(t));
    }
    if let Some(t) = info.end_time {
        m.insert("end_time".into(), json!(t));
    }
    m.insert("artifact_uri".into(), json!(info.artifact_uri));
    m.insert("lifecycle_stage".into(), json!(info.lifecycle_stage));
    Value::Object(m)
}

pub fn run(r: &TrackingRun) -> Value {
    json!({
        "info": run_info(&r.info),
        "data": {
            "metrics": r.metrics.iter().map(metric).collect::<Vec<_>>(),
            "params": key_values(&r.params),
            "tags": key_values(&r.tags),
        },
        "inputs": {},
    })
}

pub fn model_version(v: &RegisteredModelVersion) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(v.name));
    m.insert("version".into(), json!(v.version.to_string()));
    m.insert("creation_timestamp".into(), json!(v.creation_timestamp));
    m.insert(
        "last_updated_timestamp".into(),
        json!(v.last_updated_timestamp),
    );
    if let Some(u) = &v.user_id {
        m.insert("user_id".into(), json!(u));
    }
    m.insert("current_stage".into(), json!(v.current_stage));
    m.insert(
        "description".into(),
        json!(v.description.as_deref().unwrap_or("")),
    );
    m.insert("source".into(), json!(v.source));
    if let Some(r) = &v.run_id {
        m.insert("run_id".into(), json!(r));
    }
    m.insert("status".into(), json!(v.status));
    if let Some(s) = &v.status_message {
        m.insert("status_message".into(), json!(s));
    }
    if let Some(l) = &v.run_link {
        m.insert("run_link".into(), json!(l));
    }
    m.insert("tags".into(), key_values(&v.tags));
    m.insert("aliases".into(), json!(v.aliases));
    Value::Object(m)
}

pub fn registered_model(r: &RegisteredModel) -> Value {
    json!({
        "name": r.name,
        "creation_timestamp": r.creation_timestamp,
        "last_updated_timestamp": r.last_updated_timestamp,
        "description": r.description.as_deref().unwrap_or(""),
        "latest_versions": r.latest_versions.iter().map(model_version).collect::<Vec<_>>(),
        "tags": key_values(&r.tags),
        "aliases": r.aliases.iter()
            .map(|(a, v)| json!({"alias": a, "version": v.to_string()}))
            .collect::<Vec<_>>(),
    })
}

/// A stored logged-model status (PENDING, READY, FAILED) as MLflow's enum names it.
pub fn logged_model_status(status: &str) -> &'static str {
    match status {
        "PENDING" => "LOGGED_MODEL_PENDING",
        "READY" => "LOGGED_MODEL_READY",
        "FAILED" => "LOGGED_MODEL_UPLOAD_FAILED",
        _ => "LOGGED_MODEL_STATUS_UNSPECIFIED",
    }
}

fn logged_model_metric(m: &LoggedModelMetric, model_id: &str) -> Value {
    let mut out = metric(&m.point);
    out["model_id"] = json!(model_id);
    out["run_id"] = json!(m.run_id);
    if !m.dataset_name.is_empty() {
        out["dataset_name"] = json!(m.dataset_name);
    }
    if !m.dataset_digest.is_empty() {
        out["dataset_digest"] = json!(m.dataset_digest);
    }
    out
}

/// MLflow 3's `LoggedModel`: `info` and `data` (params and linked metrics).
pub fn logged_model(m: &LoggedModel) -> Value {
    let mut info = Map::new();
    info.insert("model_id".into(), json!(m.model_id));
    info.insert("experiment_id".into(), json!(m.experiment_id));
    info.insert("name".into(), json!(m.name));
    info.insert("creation_timestamp_ms".into(), json!(m.creation_time));
    info.insert(
        "last_updated_timestamp_ms".into(),
        json!(m.last_update_time),
    );
    info.insert("artifact_uri".into(), json!(m.artifact_location));
    info.insert("status".into(), json!(logged_model_status(&m.status)));
    if let Some(t) = &m.model_type {
        info.insert("model_type".into(), json!(t));
    }
    if let Some(r) = &m.source_run_id {
        info.insert("source_run_id".into(), json!(r));
    }
    if let Some(msg) = &m.status_message {
        info.insert("status_message".into(), json!(msg));
    }
    info.insert("tags".into(), key_values(&m.tags));
    json!({
        "info": info,
        "data": {
            "params": key_values(&m.params),
            "metrics": m.metrics.iter()
                .map(|p| logged_model_metric(p, &m.model_id))
                .collect::<Vec<_>>(),
        },
    })
}

/// A run's `outputs`: the logged models it produced.
pub fn run_outputs(outputs: &[RunOutput]) -> Value {
    json!({
        "model_outputs": outputs.iter()
            .map(|o| json!({"model_id": o.model_id, "step": o.step}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_either_form() {
        assert_eq!(as_i64(&json!(5)), Some(5));
        assert_eq!(as_i64(&json!("5")), Some(5));
        assert_eq!(as_i64(&json!(5.0)), Some(5));
        assert_eq!(as_i64(&json!(5.5)), None);
        assert_eq!(as_i64(&json!("x")), None);
        assert!(as_f64(&json!("NaN")).unwrap().is_nan());
        assert_eq!(as_f64(&json!("-Infinity")), Some(f64::NEG_INFINITY));
        assert_eq!(as_f64(&json!(0.5)), Some(0.5));
        assert_eq!(as_f64(&json!(true)), None);
        assert_eq!(f64_value(f64::INFINITY), json!("Infinity"));
        assert_eq!(f64_value(1.5), json!(1.5));
    }
}
