//! Quality gates such as `accuracy >= 0.9 and f1_macro > 0.85`.
//!
//! Grammar: `gate := condition ("and" condition)*`,
//! `condition := metric op number`, `op := >= | > | <= | < | == | !=`.
//! A metric name holds letters, digits and `_ . - :` (e.g. `validation.accuracy`,
//! `f1.setosa`); `&&` may stand for `and`. `==` and `!=` compare with a relative
//! tolerance of 1e-9, since metrics are floating point.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::MlError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        let close = (value - threshold).abs() <= 1e-9 * threshold.abs().max(1.0);
        match self {
            Op::Ge => value >= threshold,
            Op::Gt => value > threshold,
            Op::Le => value <= threshold,
            Op::Lt => value < threshold,
            Op::Eq => close,
            Op::Ne => !close,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub metric: String,
    pub op: Op,
    pub threshold: f64,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.threshold)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub expression: String,
    pub conditions: Vec<Condition>,
}

/// The outcome of one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub condition: Condition,
    pub value: f64,
    pub passed: bool,
}

/// Parses a gate expression.
pub fn parse(expression: &str) -> Result<Gate, MlError> {
    let err = |position: usize, message: &str| MlError::GateSyntax {
        expression: expression.to_string(),
        position: position + 1,
        message: message.to_string(),
    };
    let chars: Vec<char> = expression.chars().collect();
    let mut pos = 0;
    let skip_ws = |pos: &mut usize| {
        while *pos < chars.len() && chars[*pos].is_whitespace() {
            *pos += 1;
        }
    };
    let mut conditions = Vec::new();
    loop {
        skip_ws(&mut pos);
        // metric
        let start = pos;
        while pos < chars.len()
            && (chars[pos].is_alphanumeric() || matches!(chars[pos], '_' | '.' | '-' | ':'))
        {
            pos += 1;
        }
        if pos == start {
            return Err(err(
                pos,
                if pos >= chars.len() {
                    "expected a metric name, e.g. `accuracy >= 0.9`"
                } else {
                    "expected a metric name"
                },
            ));
        }
        let metric: String = chars[start..pos].iter().collect();
        skip_ws(&mut pos);
        // operator
        let two: String = chars[pos..chars.len().min(pos + 2)].iter().collect();
        let (op, len) = match two.as_str() {
            ">=" => (Op::Ge, 2),
            "<=" => (Op::Le, 2),
            "==" => (Op::Eq, 2),
            "!=" => (Op::Ne, 2),
            _ if two.starts_with('>') => (Op::Gt, 1),
            _ if two.starts_with('<') => (Op::Lt, 1),
            _ if two.starts_with('=') => {
                return Err(err(
                    pos,
                    "`=` is not an operator; use `==` (or >=, >, <=, <, !=)",
                ));
            }
            _ => {
                return Err(err(
                    pos,
                    &format!("expected an operator (>=, >, <=, <, ==, !=) after `{metric}`"),
                ));
            }
        };
        pos += len;
        skip_ws(&mut pos);
        // number
        let start = pos;
        while pos < chars.len()
            && (chars[pos].is_ascii_digit() || matches!(chars[pos], '.' | '-' | '+' | 'e' | 'E'))
        {
            pos += 1;
        }
        let text: String = chars[start..pos].iter().collect();
        let threshold = text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                err(
                    start,
                    &format!("expected a number after `{metric} {}`", op.symbol()),
                )
            })?;
        conditions.push(Condition {
            metric,
            op,
            threshold,
        });
        skip_ws(&mut pos);
        if pos >= chars.len() {
            break;
        }
        let rest: String = chars[pos..].iter().collect();
        let lower = rest.to_ascii_lowercase();
        if lower.starts_with("and")
            && (rest.len() == 3 || rest[3..].starts_with(char::is_whitespace))
        {
            pos += 3;
        } else if rest.starts_with("&&") {
            pos += 2;
        } else if lower.starts_with("or") {
            return Err(err(
                pos,
                "`or` is not supported; every condition must hold (join them with `and`)",
            ));
        } else {
            return Err(err(pos, "expected `and` between conditions"));
        }
    }
    Ok(Gate {
        expression: expression.to_string(),
        conditions,
    })
}

impl Gate {
    /// Checks every condition; an unknown metric is an error listing the available ones.
    pub fn check(&self, metrics: &BTreeMap<String, f64>) -> Result<Vec<Check>, MlError> {
        self.conditions
            .iter()
            .map(|c| {
                let value = *metrics.get(&c.metric).ok_or_else(|| {
                    MlError::GateUnknownMetric(format!(
                        "the gate `{}` uses the metric `{}`, which is not available; the available metrics are: {}",
                        self.expression,
                        c.metric,
                        if metrics.is_empty() {
                            "none".to_string()
                        } else {
                            metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ))
                })?;
                Ok(Check {
                    condition: c.clone(),
                    value,
                    passed: c.op.holds(value, c.threshold),
                })
            })
            .collect()
    }

    /// `Ok(checks)` when every condition holds; otherwise an error naming each
    /// failed metric with its value and threshold.
    pub fn require(&self, metrics: &BTreeMap<String, f64>) -> Result<Vec<Check>, MlError> {
        let checks = self.check(metrics)?;
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| {
                format!(
                    "{} is {} but the gate requires {} {} {}",
                    c.condition.metric,
                    c.value,
                    c.condition.metric,
                    c.condition.op.symbol(),
                    c.condition.threshold
                )
            })
            .collect();
        if failed.is_empty() {
            Ok(checks)
        } else {
            Err(MlError::GateUnmet(failed.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("accuracy".to_string(), 0.93),
            ("f1.setosa".to_string(), 1.0),
            ("rmse".to_string(), 12.5),
        ])
    }

    #[test]
    fn parses_conditions_joined_with_and() {
        let g = parse("accuracy >= 0.9 and rmse<20 AND f1.setosa == 1 && accuracy != 0.5").unwrap();
        assert_eq!(g.conditions.len(), 4);
        assert_eq!(
            g.conditions[1],
            Condition {
                metric: "rmse".into(),
                op: Op::Lt,
                threshold: 20.0
            }
        );
        assert_eq!(g.conditions[2].metric, "f1.setosa");
        let checks = g.require(&metrics()).unwrap();
        assert!(checks.iter().all(|c| c.passed));
    }

    #[test]
    fn every_operator() {
        for (expr, expected) in [
            ("accuracy >= 0.93", true),
            ("accuracy > 0.93", false),
            ("accuracy <= 0.93", true),
            ("accuracy < 0.93", false),
            ("accuracy == 0.93", true),
            ("accuracy != 0.93", false),
            ("rmse > -1e3", true),
        ] {
            let checks = parse(expr).unwrap().check(&metrics()).unwrap();
            assert_eq!(checks[0].passed, expected, "{expr}");
        }
    }

    #[test]
    fn an_unmet_gate_names_metric_value_and_threshold() {
        let err = parse("accuracy >= 0.95 and rmse < 20")
            .unwrap()
            .require(&metrics())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "registration refused: accuracy is 0.93 but the gate requires accuracy >= 0.95"
        );
    }

    #[test]
    fn an_unknown_metric_lists_the_available_ones() {
        let err = parse("acuracy >= 0.9")
            .unwrap()
            .check(&metrics())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`acuracy`"), "{err}");
        assert!(
            err.contains("available metrics are: accuracy, f1.setosa, rmse"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        for (expr, position, message) in [
            ("", 1, "expected a metric name"),
            ("accuracy 0.9", 10, "expected an operator"),
            ("accuracy = 0.9", 10, "use `==`"),
            ("accuracy >= high", 13, "expected a number"),
            ("accuracy >= 0.9 or f1 > 0", 17, "`or` is not supported"),
            ("accuracy >= 0.9 f1 > 0", 17, "expected `and`"),
            ("accuracy >= 0.9 and", 20, "expected a metric name"),
        ] {
            match parse(expr) {
                Err(MlError::GateSyntax {
                    position: p,
                    message: m,
                    ..
                }) => {
                    assert_eq!(p, position, "{expr}: {m}");
                    assert!(m.contains(message), "{expr}: {m}");
                }
                other => panic!("{expr}: {other:?}"),
            }
        }
    }
}
