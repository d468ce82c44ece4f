//! One logged prediction, as the server hands it to the monitor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub request_id: String,
    pub timestamp_ms: i64,
    /// The raw named columns of the request row; empty when the log does not
    /// know them (such rows are left out of feature drift, not counted as
    /// missing values).
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// Predicted class (string, integer or bool) or regression value.
    #[serde(default)]
    pub prediction: Option<Value>,
    /// Ground truth from feedback, if any arrived.
    #[serde(default)]
    pub label: Option<Value>,
    pub latency_ms: f64,
    #[serde(default)]
    pub error: bool,
}

impl Observation {
    /// Whether the prediction was made in the `window_ms` up to `now_ms`
    /// (`now − window < t ≤ now`).
    pub fn in_window(&self, now_ms: i64, window_ms: i64) -> bool {
        self.timestamp_ms <= now_ms && self.timestamp_ms > now_ms.saturating_sub(window_ms)
    }
}

/// A class value as text, so that a label `1`, `"1"` and `1.0` name the same
/// class whichever way the client and the model typed them. `None` for null
/// and for arrays/objects (not a class).
pub(crate) fn class_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(x) if x.is_finite() && !s.is_empty() && looks_numeric(s) => Some(number_text(x)),
                _ => Some(s.to_string()),
            }
        }
        Value::Number(n) => n.as_f64().map(number_text),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A regression value (label or prediction) as a number: JSON numbers and
/// numeric strings.
pub(crate) fn regression_value(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if looks_numeric(s.trim()) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

fn looks_numeric(s: &str) -> bool {
    // Rust parses "inf" and "nan" as floats; a class named "nan" is text.
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
}

fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn class_values_compare_as_text() {
        for (a, b) in [
            (json!(1), json!("1")),
            (json!(1.0), json!("1")),
            (json!(" 1.0 "), json!(1)),
            (json!(true), json!("true")),
            (json!("setosa"), json!(" setosa")),
            (json!(-2.5), json!("-2.5")),
        ] {
            assert_eq!(class_text(&a), class_text(&b), "{a} vs {b}");
        }
        assert_ne!(class_text(&json!(1)), class_text(&json!(2)));
        assert_eq!(class_text(&json!("nan")).as_deref(), Some("nan"));
        assert_eq!(class_text(&Value::Null), None);
        assert_eq!(class_text(&json!([1])), None);
    }

    #[test]
    fn regression_values_accept_numbers_and_numeric_text() {
        assert_eq!(regression_value(&json!(2.5)), Some(2.5));
        assert_eq!(regression_value(&json!(" 3 ")), Some(3.0));
        assert_eq!(regression_value(&json!("inf")), None);
        assert_eq!(regression_value(&json!("abc")), None);
        assert_eq!(regression_value(&json!(true)), None);
    }

    #[test]
    fn the_window_is_open_at_the_start_and_closed_at_now() {
        let at = |t| Observation {
            request_id: "r".into(),
            timestamp_ms: t,
            inputs: BTreeMap::new(),
            prediction: None,
            label: None,
            latency_ms: 1.0,
            error: false,
        };
        assert!(at(1000).in_window(1000, 100));
        assert!(at(901).in_window(1000, 100));
        assert!(!at(900).in_window(1000, 100));
        assert!(!at(1001).in_window(1000, 100));
    }
}
