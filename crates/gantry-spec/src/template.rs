//! `${params.x}`, `${inputs.x}` and `${matrix.x}` substitution in commands, env values
//! and `with`.
//!
//! Anything else inside `${…}` is an error rather than passed through, so that a
//! typo never reaches a container as literal text; `$${` writes a literal `${`.

use std::collections::BTreeMap;

use crate::params::ParamValue;
use crate::suggestion::closest;

/// Where `${inputs.x}` points inside the container.
pub const INPUTS_DIR: &str = "/gantry/inputs";

#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Text(String),
    Param(&'a str),
    Input(&'a str),
    Matrix(&'a str),
}

#[derive(Debug, PartialEq)]
pub(crate) struct TemplateError {
    pub message: String,
    pub hint: String,
}

/// What a template may refer to: the resolved (or default) params, the step's input
/// names and, on a matrix step, the values of one combination.
pub(crate) struct Scope<'a> {
    pub params: &'a BTreeMap<String, ParamValue>,
    pub inputs: Vec<&'a str>,
    pub step: &'a str,
    /// `None` on a step without `matrix:`, where `${matrix.x}` is an error.
    pub matrix: Option<&'a BTreeMap<String, serde_json::Value>>,
}

fn parse(s: &str) -> Result<Vec<Segment<'_>>, TemplateError> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("$${") {
            text.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(TemplateError {
                    message: format!("unterminated `${{` in '{s}'"),
                    hint: "close the reference with `}`, or write `$${` for a literal `${`".into(),
                });
            };
            let inner = &after[..end];
            let reference = if let Some(name) = inner.strip_prefix("params.") {
                Segment::Param(name)
            } else if let Some(name) = inner.strip_prefix("inputs.") {
                Segment::Input(name)
            } else if let Some(name) = inner.strip_prefix("matrix.") {
                Segment::Matrix(name)
            } else {
                return Err(TemplateError {
                    message: format!("unsupported reference `${{{inner}}}` in '{s}'"),
                    hint: "only `${params.NAME}`, `${inputs.NAME}` and `${matrix.NAME}` are substituted; write `$${` for a literal `${` (e.g. shell variables)".into(),
                });
            };
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            segments.push(reference);
            rest = &after[end + 1..];
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                text.push(c);
            }
            rest = chars.as_str();
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

/// Whether `s` holds any `${…}` reference (escapes and malformed text do not count).
pub(crate) fn has_references(s: &str) -> bool {
    parse(s).is_ok_and(|segments| {
        segments
            .iter()
            .any(|segment| !matches!(segment, Segment::Text(_)))
    })
}

/// Checks that `s` refers to nothing but params: matrix values are fixed before a
/// step's inputs or combination exist. Returns whether it refers to any.
pub(crate) fn refers_only_to_params(s: &str) -> Result<bool, TemplateError> {
    let mut any = false;
    for segment in parse(s)? {
        match segment {
            Segment::Text(_) => {}
            Segment::Param(_) => any = true,
            Segment::Input(name) => return Err(not_a_param(s, &format!("inputs.{name}"))),
            Segment::Matrix(name) => return Err(not_a_param(s, &format!("matrix.{name}"))),
        }
    }
    Ok(any)
}

fn not_a_param(s: &str, reference: &str) -> TemplateError {
    TemplateError {
        message: format!(
            "matrix value '{s}' refers to `${{{reference}}}`; matrix values may only use `${{params.NAME}}`"
        ),
        hint: "write the value itself or take it from a param; inputs and other matrix keys are not known when the grid is built".into(),
    }
}

/// How a matrix value reads in step names, labels and `${matrix.x}`: strings without quotes.
pub(crate) fn plain_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Scope<'_> {
    fn matrix_value(&self, name: &str) -> Result<&serde_json::Value, TemplateError> {
        let Some(values) = self.matrix else {
            return Err(TemplateError {
                message: format!(
                    "`${{matrix.{name}}}` in step '{}', which has no `matrix`",
                    self.step
                ),
                hint: "`${matrix.NAME}` is only available on steps with `matrix:`; add one or use `${params.NAME}`".into(),
            });
        };
        values.get(name).ok_or_else(|| {
            let keys: Vec<&str> = values.keys().map(String::as_str).collect();
            let list = format!("matrix keys of step '{}': {}", self.step, keys.join(", "));
            let hint = match closest(name, keys.iter().copied()) {
                Some(near) => format!("did you mean `${{matrix.{near}}}`? {list}"),
                None => list,
            };
            TemplateError {
                message: format!(
                    "unknown matrix key '{name}' in `${{matrix.{name}}}` of step '{}'",
                    self.step
                ),
                hint,
            }
        })
    }

    fn param(&self, name: &str) -> Result<&ParamValue, TemplateError> {
        self.params.get(name).ok_or_else(|| {
            let declared: Vec<&str> = self.params.keys().map(String::as_str).collect();
            let hint = if declared.is_empty() {
                "the pipeline declares no params; add it under `params:` with a default".to_owned()
            } else {
                let list = format!("declared params: {}", declared.join(", "));
                match closest(name, declared.iter().copied()) {
                    Some(near) => format!("did you mean `${{params.{near}}}`? {list}"),
                    None => list,
                }
            };
            TemplateError {
                message: format!("unknown param '{name}' in `${{params.{name}}}`"),
                hint,
            }
        })
    }

    fn input(&self, name: &str) -> Result<String, TemplateError> {
        if self.inputs.contains(&name) {
            return Ok(format!("{INPUTS_DIR}/{name}"));
        }
        let hint = if self.inputs.is_empty() {
            format!(
                "step '{}' declares no inputs; add it under `inputs:`",
                self.step
            )
        } else {
            let list = format!("inputs of step '{}': {}", self.step, self.inputs.join(", "));
            match closest(name, self.inputs.iter().copied()) {
                Some(near) => format!("did you mean `${{inputs.{near}}}`? {list}"),
                None => list,
            }
        };
        Err(TemplateError {
            message: format!(
                "unknown input '{name}' in `${{inputs.{name}}}` of step '{}'",
                self.step
            ),
            hint,
        })
    }

    pub(crate) fn render(&self, s: &str) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(s.len());
        for segment in parse(s)? {
            match segment {
                Segment::Text(t) => out.push_str(&t),
                Segment::Param(name) => out.push_str(&self.param(name)?.to_string()),
                Segment::Input(name) => out.push_str(&self.input(name)?),
                Segment::Matrix(name) => out.push_str(&plain_text(self.matrix_value(name)?)),
            }
        }
        Ok(out)
    }

    /// Renders every string inside `value`; a string that is exactly one `${params.x}`
    /// or `${matrix.x}` takes that value's JSON type, so `seed: "${params.seed}"` stays a number.
    pub(crate) fn render_json(
        &self,
        value: &serde_json::Value,
    ) -> Result<serde_json::Value, TemplateError> {
        use serde_json::Value;
        Ok(match value {
            Value::String(s) => match parse(s)?.as_slice() {
                [Segment::Param(name)] => self.param(name)?.to_json(),
                [Segment::Matrix(name)] => self.matrix_value(name)?.clone(),
                _ => Value::String(self.render(s)?),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.render_json(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json(v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> BTreeMap<String, ParamValue> {
        BTreeMap::from([
            ("depth".to_owned(), ParamValue::Int(4)),
            ("frac".to_owned(), ParamValue::Float(0.2)),
            ("flag".to_owned(), ParamValue::Bool(true)),
            ("label".to_owned(), ParamValue::String("species".into())),
        ])
    }

    fn scope(params: &BTreeMap<String, ParamValue>) -> Scope<'_> {
        Scope {
            params,
            inputs: vec!["train", "test"],
            step: "fit",
            matrix: None,
        }
    }

    #[test]
    fn substitutes_params_and_inputs() {
        let p = params();
        let s = scope(&p);
        assert_eq!(
            s.render("--max-depth=${params.depth}").unwrap(),
            "--max-depth=4"
        );
        assert_eq!(
            s.render("${inputs.train}/data.csv").unwrap(),
            "/gantry/inputs/train/data.csv"
        );
        assert_eq!(
            s.render("${params.label}-${params.frac}-${params.flag}")
                .unwrap(),
            "species-0.2-true"
        );
        assert_eq!(s.render("plain $HOME $ {x}").unwrap(), "plain $HOME $ {x}");
    }

    #[test]
    fn double_dollar_escapes_a_literal_reference() {
        let p = params();
        let s = scope(&p);
        assert_eq!(s.render("echo $${HOME}").unwrap(), "echo ${HOME}");
        assert_eq!(s.render("$${params.depth}").unwrap(), "${params.depth}");
        assert_eq!(s.render("$$${params.depth}").unwrap(), "$${params.depth}");
    }

    #[test]
    fn unknown_and_malformed_references_are_errors() {
        let p = params();
        let s = scope(&p);
        let e = s.render("${params.dept}").unwrap_err();
        assert_eq!(e.message, "unknown param 'dept' in `${params.dept}`");
        assert!(
            e.hint.contains("did you mean `${params.depth}`"),
            "{}",
            e.hint
        );
        let e = s.render("${inputs.nope}").unwrap_err();
        assert!(e.message.contains("unknown input 'nope'"));
        assert!(e.hint.contains("train, test"));
        let e = s.render("echo ${HOME}").unwrap_err();
        assert!(e.message.contains("unsupported reference `${HOME}`"));
        assert!(e.hint.contains("$${"));
        let e = s.render("${params.depth").unwrap_err();
        assert!(e.message.contains("unterminated"));
    }

    #[test]
    fn matrix_references_take_the_combination_values() {
        let p = params();
        let combination = BTreeMap::from([
            ("algo".to_owned(), json!("random_forest")),
            ("depth".to_owned(), json!(8)),
            ("lr".to_owned(), json!(0.01)),
        ]);
        let s = Scope {
            matrix: Some(&combination),
            ..scope(&p)
        };
        assert_eq!(
            s.render("--algo=${matrix.algo} --depth=${matrix.depth} ${matrix.lr}")
                .unwrap(),
            "--algo=random_forest --depth=8 0.01"
        );
        assert_eq!(
            s.render_json(&json!({"d": "${matrix.depth}", "t": "x${matrix.depth}"}))
                .unwrap(),
            json!({"d": 8, "t": "x8"})
        );
        let e = s.render("${matrix.dpth}").unwrap_err();
        assert!(
            e.message.contains("unknown matrix key 'dpth'"),
            "{}",
            e.message
        );
        assert!(
            e.hint.contains("did you mean `${matrix.depth}`"),
            "{}",
            e.hint
        );
        let e = scope(&p).render("${matrix.algo}").unwrap_err();
        assert!(e.message.contains("which has no `matrix`"), "{}", e.message);
    }

    #[test]
    fn matrix_values_may_only_refer_to_params() {
        assert_eq!(refers_only_to_params("plain"), Ok(false));
        assert_eq!(refers_only_to_params("$${params.x}"), Ok(false));
        assert_eq!(refers_only_to_params("v${params.x}"), Ok(true));
        assert!(refers_only_to_params("${inputs.x}").is_err());
        assert!(refers_only_to_params("${matrix.x}").is_err());
        assert!(refers_only_to_params("${oops").is_err());
        assert!(has_references("a${params.x}"));
        assert!(!has_references("a$${params.x}"));
        assert!(!has_references("${unterminated"));
    }

    #[test]
    fn with_values_keep_the_param_type_when_the_whole_string_is_one_reference() {
        let p = params();
        let s = scope(&p);
        let with = json!({
            "depth": "${params.depth}",
            "frac": "${params.frac}",
            "flag": "${params.flag}",
            "label": "${params.label}",
            "mixed": "d=${params.depth}",
            "nested": {"list": ["${params.depth}", "${inputs.test}", 7, null]},
            "escaped": "$${params.depth}"
        });
        assert_eq!(
            s.render_json(&with).unwrap(),
            json!({
                "depth": 4,
                "frac": 0.2,
                "flag": true,
                "label": "species",
                "mixed": "d=4",
                "nested": {"list": [4, "/gantry/inputs/test", 7, null]},
                "escaped": "${params.depth}"
            })
        );
        assert!(s.render_json(&json!({"a": ["${params.x}"]})).is_err());
    }
}
