//! The `with:` options of a component: declared once (name, kind, default,
//! description), checked before a run (unknown names, wrong types) and read
//! with coercion, because `${params.x}` templating may turn a number into a
//! string such as `"0.2"`.

use serde_json::{Map, Value};

use crate::MlError;

/// What kind of value an option takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    Bool,
    /// A whole number ≥ 0.
    Integer,
    Number,
    /// A number in `[0, 1)`.
    Fraction,
    String,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// A list of strings.
    StringList,
    /// A list of names, or a map `old: new` (select and rename).
    Columns,
    /// A map from column name to something (a type, a rule).
    Map,
    /// A number, or one of the listed words.
    NumberOr(&'static [&'static str]),
    /// A string or a number (e.g. a fill value).
    Scalar,
}

impl OptionKind {
    pub fn describe(self) -> String {
        match self {
            OptionKind::Bool => "bool".into(),
            OptionKind::Integer => "integer".into(),
            OptionKind::Number => "number".into(),
            OptionKind::Fraction => "number in [0, 1)".into(),
            OptionKind::String => "string".into(),
            OptionKind::Choice(words) => words.join(" \\| "),
            OptionKind::StringList => "list of strings".into(),
            OptionKind::Columns => "list of names, or map old: new".into(),
            OptionKind::Map => "map".into(),
            OptionKind::NumberOr(words) => format!("number \\| {}", words.join(" \\| ")),
            OptionKind::Scalar => "string or number".into(),
        }
    }
}

/// One `with:` option of a component.
#[derive(Clone, Copy, Debug)]
pub struct OptionInfo {
    pub name: &'static str,
    pub kind: OptionKind,
    /// The default as shown in the docs; empty when the option is required or absent means off.
    pub default: &'static str,
    pub description: &'static str,
}

/// Checked access to one component's `with:` object.
pub(crate) struct Options<'a> {
    component: &'a str,
    map: &'a Map<String, Value>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Options<'a> {
    /// Checks names and kinds; `templates_allowed` accepts unresolved
    /// `${...}` strings (validation at spec time, before templating).
    pub(crate) fn check(
        component: &'a str,
        with: &'a Value,
        specs: &[OptionInfo],
        templates_allowed: bool,
    ) -> Result<Self, MlError> {
        let map = match with {
            Value::Object(map) => map,
            Value::Null => &*EMPTY,
            other => {
                return Err(MlError::option(
                    component,
                    format!("`with:` must be a map of options, found {other}"),
                ));
            }
        };
        let mut problems = Vec::new();
        for (name, value) in map {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                problems.push(unknown_option_message(name, specs));
                continue;
            };
            if templates_allowed && value.as_str().is_some_and(|s| s.contains("${")) {
                continue;
            }
            if let Err(message) = check_kind(spec, value) {
                problems.push(message);
            }
        }
        if !problems.is_empty() {
            return Err(MlError::option(component, problems.join("; ")));
        }
        Ok(Self { component, map })
    }

    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> MlError {
        MlError::option(self.component, message)
    }

    pub(crate) fn bool(&self, name: &str, default: bool) -> Result<bool, MlError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => as_bool(v)
                .ok_or_else(|| self.error(format!("`{name}` must be true or false, found {v}"))),
        }
    }

    pub(crate) fn number(&self, name: &str) -> Result<Option<f64>, MlError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => as_number(v)
                .map(Some)
                .ok_or_else(|| self.error(format!("`{name}` must be a number, found {v}"))),
        }
    }

    pub(crate) fn number_or(&self, name: &str, default: f64) -> Result<f64, MlError> {
        Ok(self.number(name)?.unwrap_or(default))
    }

    pub(crate) fn fraction(&self, name: &str, default: f64) -> Result<f64, MlError> {
        let v = self.number_or(name, default)?;
        if !(0.0..1.0).contains(&v) {
            return Err(self.error(format!(
                "`{name}` must be at least 0 and below 1, found {v}"
            )));
        }
        Ok(v)
    }

    pub(crate) fn integer(&self, name: &str) -> Result<Option<u64>, MlError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => as_integer(v).map(Some).ok_or_else(|| {
                self.error(format!("`{name}` must be a whole number ≥ 0, found {v}"))
            }),
        }
    }

    pub(crate) fn count(&self, name: &str, default: usize, min: usize) -> Result<usize, MlError> {
        let v = self.integer(name)?.map_or(default, |v| v as usize);
        if v < min {
            return Err(self.error(format!("`{name}` must be at least {min}, found {v}")));
        }
        Ok(v)
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, MlError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(v) => Err(self.error(format!("`{name}` must be a string, found {v}"))),
        }
    }

    pub(crate) fn required_string(&self, name: &str, hint: &str) -> Result<String, MlError> {
        self.string(name)?
            .ok_or_else(|| self.error(format!("the option `{name}` is required: {hint}")))
    }

    /// One of `choices`; `default` when absent.
    pub(crate) fn choice(
        &self,
        name: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, MlError> {
        match self.string(name)? {
            None => Ok(default),
            Some(s) => choices.iter().copied().find(|c| *c == s).ok_or_else(|| {
                self.error(format!(
                    "`{name}` must be one of {}, found `{s}`",
                    choices.join(", ")
                ))
            }),
        }
    }

    pub(crate) fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, MlError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => as_string_list(v).map(Some).ok_or_else(|| {
                self.error(format!("`{name}` must be a list of strings, found {v}"))
            }),
        }
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

fn as_integer(v: &Value) -> Option<u64> {
    let x = as_number(v)?;
    (x >= 0.0 && x.fract() == 0.0 && x <= 9.0e15).then_some(x as u64)
}

fn as_string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|item| match item {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .collect()
}

fn check_kind(spec: &OptionInfo, v: &Value) -> Result<(), String> {
    let name = spec.name;
    if v.is_null() {
        return Ok(());
    }
    let ok = match spec.kind {
        OptionKind::Bool => as_bool(v).is_some(),
        OptionKind::Integer => as_integer(v).is_some(),
        OptionKind::Number => as_number(v).is_some(),
        OptionKind::Fraction => as_number(v).is_some_and(|x| (0.0..1.0).contains(&x)),
        OptionKind::String => v.is_string() || v.is_number(),
        OptionKind::Choice(words) => {
            if let Some(s) = v.as_str().filter(|s| !words.contains(s)) {
                return Err(format!(
                    "`{name}` must be one of {}, found `{s}`",
                    words.join(", ")
                ));
            }
            v.is_string()
        }
        OptionKind::StringList => as_string_list(v).is_some(),
        OptionKind::Columns => {
            as_string_list(v).is_some()
                || v.as_object()
                    .is_some_and(|m| m.values().all(Value::is_string))
        }
        OptionKind::Map => v.is_object(),
        OptionKind::NumberOr(words) => {
            as_number(v).is_some() || v.as_str().is_some_and(|s| words.contains(&s))
        }
        OptionKind::Scalar => v.is_string() || v.is_number() || v.is_boolean(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be a {}, found {v}",
            spec.kind.describe().replace("\\|", "or")
        ))
    }
}

fn unknown_option_message(name: &str, specs: &[OptionInfo]) -> String {
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    let close = names
        .iter()
        .map(|n| (edit_distance(name, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min();
    let hint = close.map_or(String::new(), |(_, n)| format!("did you mean `{n}`? "));
    if names.is_empty() {
        format!("unknown option `{name}`: this component takes no options")
    } else {
        format!(
            "unknown option `{name}`; {hint}the options are: {}",
            names.join(", ")
        )
    }
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPECS: &[OptionInfo] = &[
        OptionInfo {
            name: "test_fraction",
            kind: OptionKind::Fraction,
            default: "0.2",
            description: "",
        },
        OptionInfo {
            name: "mode",
            kind: OptionKind::Choice(&["max", "min"]),
            default: "",
            description: "",
        },
        OptionInfo {
            name: "seed",
            kind: OptionKind::Integer,
            default: "0",
            description: "",
        },
    ];

    #[test]
    fn unknown_names_are_listed_with_a_suggestion() {
        let with = json!({"test_fractoin": 0.3, "sede": 1});
        let err = Options::check("split", &with, SPECS, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("unknown option `test_fractoin`; did you mean `test_fraction`?"),
            "{err}"
        );
        assert!(err.contains("unknown option `sede`"), "{err}");
        assert!(
            err.contains("the options are: test_fraction, mode, seed"),
            "{err}"
        );
    }

    #[test]
    fn kinds_are_checked_and_templated_strings_coerced() {
        let err = Options::check("split", &json!({"test_fraction": 1.5}), SPECS, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`test_fraction` must be a number in [0, 1)"),
            "{err}"
        );
        let err = Options::check("split", &json!({"mode": "maximum"}), SPECS, false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("one of max, min, found `maximum`"), "{err}");
        // Before templating, `${...}` passes; after, "0.3" coerces.
        assert!(Options::check("split", &json!({"seed": "${params.seed}"}), SPECS, true).is_ok());
        assert!(Options::check("split", &json!({"seed": "${params.seed}"}), SPECS, false).is_err());
        let with = json!({"test_fraction": "0.3", "seed": "7"});
        let o = Options::check("split", &with, SPECS, false).unwrap();
        assert_eq!(o.fraction("test_fraction", 0.2).unwrap(), 0.3);
        assert_eq!(o.integer("seed").unwrap(), Some(7));
        assert_eq!(o.choice("mode", &["max", "min"], "max").unwrap(), "max");
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
