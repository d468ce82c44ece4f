use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, SpecError};
use crate::pipeline::Pipeline;
use crate::suggestion::closest;

/// A param's value; the type of its default in the spec fixes the type of overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            // Debug keeps a `.0` on whole floats, so `1.0` stays recognisably a float
            // on a command line and round-trips through `resolve_params`.
            ParamValue::Float(x) => write!(f, "{x:?}"),
            ParamValue::String(s) => f.write_str(s),
        }
    }
}

impl ParamValue {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Bool(_) => "a boolean (true or false)",
            ParamValue::Int(_) => "an integer",
            ParamValue::Float(_) => "a number",
            ParamValue::String(_) => "a string",
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Bool(b) => serde_json::Value::Bool(*b),
            ParamValue::Int(i) => serde_json::Value::from(*i),
            ParamValue::Float(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(x.to_string())),
            ParamValue::String(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// Parses `text` as a value of the same type as `self`.
    fn parse_like(&self, text: &str) -> Option<ParamValue> {
        let t = text.trim();
        match self {
            ParamValue::Bool(_) => match t.to_ascii_lowercase().as_str() {
                "true" => Some(ParamValue::Bool(true)),
                "false" => Some(ParamValue::Bool(false)),
                _ => None,
            },
            ParamValue::Int(_) => t.parse().ok().map(ParamValue::Int),
            ParamValue::Float(_) => t
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(ParamValue::Float),
            ParamValue::String(_) => Some(ParamValue::String(text.to_owned())),
        }
    }
}

/// Declared defaults overlaid with `-p name=value` overrides (later ones win).
pub fn resolve_params(
    p: &Pipeline,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, ParamValue>, SpecError> {
    let mut resolved: BTreeMap<String, ParamValue> = p
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut diagnostics = Vec::new();
    for (name, text) in overrides {
        let Some(default) = p.params.get(name) else {
            let declared: Vec<&str> = p.params.keys().map(String::as_str).collect();
            let hint = if declared.is_empty() {
                format!("pipeline '{}' declares no params", p.name)
            } else {
                let mut hint = format!("declared params: {}", declared.join(", "));
                if let Some(near) = closest(name, declared.iter().copied()) {
                    hint = format!("did you mean '{near}'? {hint}");
                }
                hint
            };
            diagnostics.push(Diagnostic {
                location: None,
                message: format!("unknown param '{name}' in -p {name}={text}"),
                hint: Some(hint),
            });
            continue;
        };
        match default.parse_like(text) {
            Some(value) => {
                resolved.insert(name.clone(), value);
            }
            None => diagnostics.push(Diagnostic {
                location: None,
                message: format!("{name} expects {}, got '{text}'", default.type_name()),
                hint: Some(format!(
                    "the default {default} fixes the type of '{name}'; pass e.g. -p {name}={}",
                    example_of(default)
                )),
            }),
        }
    }
    if diagnostics.is_empty() {
        Ok(resolved)
    } else {
        Err(SpecError { diagnostics })
    }
}

fn example_of(default: &ParamValue) -> String {
    match default {
        ParamValue::Bool(b) => (!b).to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use std::path::Path;

    fn pipeline() -> Pipeline {
        parse(
            "p.yaml",
            Path::new("/base"),
            "name: p\nparams:\n  max_depth: 4\n  test_fraction: 0.2\n  stratify: true\n  label: species\nsteps:\n  - name: a\n    image: busybox\n",
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_typed_by_their_yaml_type() {
        let p = pipeline();
        assert_eq!(p.params["max_depth"], ParamValue::Int(4));
        assert_eq!(p.params["test_fraction"], ParamValue::Float(0.2));
        assert_eq!(p.params["stratify"], ParamValue::Bool(true));
        assert_eq!(p.params["label"], ParamValue::String("species".into()));
        let keys: Vec<_> = p.params.keys().cloned().collect();
        assert_eq!(keys, ["max_depth", "test_fraction", "stratify", "label"]);
    }

    #[test]
    fn overrides_are_parsed_as_the_default_type() {
        let p = pipeline();
        let over = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let r = resolve_params(
            &p,
            &[
                over("max_depth", "6"),
                over("test_fraction", "1"),
                over("stratify", "FALSE"),
                over("label", "42"),
            ],
        )
        .unwrap();
        assert_eq!(r["max_depth"], ParamValue::Int(6));
        assert_eq!(r["test_fraction"], ParamValue::Float(1.0));
        assert_eq!(r["stratify"], ParamValue::Bool(false));
        assert_eq!(r["label"], ParamValue::String("42".into()));
        let defaults = resolve_params(&p, &[]).unwrap();
        assert_eq!(defaults["max_depth"], ParamValue::Int(4));
        assert_eq!(defaults.len(), 4);
    }

    #[test]
    fn later_override_wins() {
        let p = pipeline();
        let r = resolve_params(
            &p,
            &[
                ("max_depth".into(), "5".into()),
                ("max_depth".into(), "7".into()),
            ],
        )
        .unwrap();
        assert_eq!(r["max_depth"], ParamValue::Int(7));
    }

    #[test]
    fn wrong_types_and_unknown_names_are_all_reported() {
        let p = pipeline();
        let err = resolve_params(
            &p,
            &[
                ("max_depth".into(), "abc".into()),
                ("max_dept".into(), "3".into()),
                ("test_fraction".into(), "nan".into()),
                ("stratify".into(), "yes".into()),
            ],
        )
        .unwrap_err();
        let d = &err.diagnostics;
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].message, "max_depth expects an integer, got 'abc'");
        assert!(d[0].location.is_none());
        assert!(d[1].message.contains("unknown param 'max_dept'"));
        let hint = d[1].hint.as_deref().unwrap();
        assert!(hint.contains("did you mean 'max_depth'"), "{hint}");
        assert!(
            hint.contains("max_depth, test_fraction, stratify, label"),
            "{hint}"
        );
        assert!(d[2].message.contains("test_fraction expects a number"));
        assert!(d[3].message.contains("stratify expects a boolean"));
    }

    #[test]
    fn display_prints_the_plain_value() {
        assert_eq!(ParamValue::Int(4).to_string(), "4");
        assert_eq!(ParamValue::Float(0.2).to_string(), "0.2");
        assert_eq!(ParamValue::Float(1.0).to_string(), "1.0");
        assert_eq!(ParamValue::Bool(true).to_string(), "true");
        assert_eq!(ParamValue::String("a b".into()).to_string(), "a b");
    }

    #[test]
    fn serde_is_untagged() {
        let v: Vec<ParamValue> = serde_json::from_str(r#"[true, 4, 4.5, "x"]"#).unwrap();
        assert_eq!(
            v,
            [
                ParamValue::Bool(true),
                ParamValue::Int(4),
                ParamValue::Float(4.5),
                ParamValue::String("x".into())
            ]
        );
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"[true,4,4.5,"x"]"#);
    }
}
