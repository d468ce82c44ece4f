//! `matrix:` sweeps: one declared step, one planned step per combination of values.
//!
//! Combination values end up in step names (`train[max_depth=2]`) and, through the
//! label, in directory names (`/gantry/inputs/<input>/<label>`) of fan-in consumers,
//! so they are restricted to characters that are safe in both.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde_json::Value;

use crate::template::{Scope, plain_text};

/// A grid larger than this is almost always a typo or a job for a search service.
pub(crate) const MAX_COMBINATIONS: usize = 4096;
/// The label is one directory name; Linux allows 255 bytes.
const MAX_LABEL_LEN: usize = 255;

pub(crate) const KEY_RULE: &str = "matrix keys are `with:` keys: they start with a letter or `_`, then letters, digits, `_` or `-`";
pub(crate) const VALUE_RULE: &str = "matrix values become part of step and directory names: use letters, digits, `_`, `.`, `+` and `-` (e.g. `random_forest`, `0.01`, `-1`)";
pub(crate) const GRID_HINT: &str =
    "reduce the grid: sweep fewer keys or fewer values per key, or split the sweep across steps";
pub(crate) const EMPTY_HINT: &str =
    "list at least one `with:` key and its values, e.g. `max_depth: [2, 4, 8]`, or remove `matrix`";

pub(crate) fn is_valid_key(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Checks how a value reads in names; the reason names the offending text.
pub(crate) fn check_value_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("an empty string".into());
    }
    match text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')))
    {
        Some(c) => Err(format!("'{text}', which contains {c:?}")),
        None => Ok(()),
    }
}

/// One point of the grid.
#[derive(Debug, PartialEq)]
pub(crate) struct Combination {
    pub values: BTreeMap<String, Value>,
    /// `key=value,…` with keys in declaration order.
    pub label: String,
}

#[derive(Debug, PartialEq)]
pub(crate) struct MatrixError {
    pub message: String,
    pub hint: String,
}

/// Renders every value with `scope` (params only), checks the grid and lists its
/// combinations: keys in declaration order, values in list order, the last key
/// varying fastest.
pub(crate) fn expand(
    matrix: &IndexMap<String, Vec<Value>>,
    scope: &Scope,
) -> Result<Vec<Combination>, MatrixError> {
    let step = scope.step;
    let fail = |message: String, hint: &str| MatrixError {
        message,
        hint: hint.to_owned(),
    };
    if matrix.is_empty() {
        return Err(fail(
            format!("`matrix` of step '{step}' is empty"),
            EMPTY_HINT,
        ));
    }
    let mut axes: Vec<(&str, Vec<(Value, String)>)> = Vec::with_capacity(matrix.len());
    let mut count: usize = 1;
    for (key, values) in matrix {
        if !is_valid_key(key) {
            return Err(fail(
                format!("invalid matrix key '{key}' in step '{step}'"),
                KEY_RULE,
            ));
        }
        if values.is_empty() {
            return Err(fail(
                format!("matrix key '{key}' of step '{step}' has no values"),
                "list at least one value, e.g. `max_depth: [2, 4, 8]`, or remove the key",
            ));
        }
        let mut rendered: Vec<(Value, String)> = Vec::with_capacity(values.len());
        for value in values {
            if matches!(value, Value::Null | Value::Array(_) | Value::Object(_)) {
                return Err(fail(
                    format!(
                        "matrix key '{key}' of step '{step}' has a value that is not a string, number or boolean: {value}"
                    ),
                    "matrix values are scalars; pass structured settings through `with:`",
                ));
            }
            let value = scope
                .render_json(value)
                .map_err(|e| fail(e.message, &e.hint))?;
            let text = plain_text(&value);
            check_value_text(&text).map_err(|reason| {
                fail(
                    format!("matrix key '{key}' of step '{step}' has value {reason}"),
                    VALUE_RULE,
                )
            })?;
            if rendered.iter().any(|(_, seen)| *seen == text) {
                return Err(fail(
                    format!("duplicate value '{text}' in matrix key '{key}' of step '{step}'"),
                    "each value may appear once per key; remove the repeat (or check the params it comes from)",
                ));
            }
            rendered.push((value, text));
        }
        count = count.saturating_mul(rendered.len());
        axes.push((key.as_str(), rendered));
    }
    if count > MAX_COMBINATIONS {
        return Err(fail(
            format!(
                "`matrix` of step '{step}' has {count} combinations, more than {MAX_COMBINATIONS}"
            ),
            GRID_HINT,
        ));
    }

    let mut combinations = Vec::with_capacity(count);
    for index in 0..count {
        // Mixed-radix digits of `index`, last axis least significant.
        let mut rest = index;
        let mut picks = vec![0; axes.len()];
        for (axis, (_, values)) in axes.iter().enumerate().rev() {
            picks[axis] = rest % values.len();
            rest /= values.len();
        }
        let mut values = BTreeMap::new();
        let mut parts = Vec::with_capacity(axes.len());
        for ((key, axis_values), pick) in axes.iter().zip(picks) {
            let (value, text) = &axis_values[pick];
            values.insert((*key).to_owned(), value.clone());
            parts.push(format!("{key}={text}"));
        }
        let label = parts.join(",");
        if label.len() > MAX_LABEL_LEN {
            return Err(fail(
                format!(
                    "the combination '{label}' of step '{step}' is longer than {MAX_LABEL_LEN} characters"
                ),
                "it names a directory; use shorter matrix keys or values",
            ));
        }
        combinations.push(Combination { values, label });
    }
    Ok(combinations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamValue;
    use serde_json::json;

    fn grid(entries: &[(&str, Value)]) -> IndexMap<String, Vec<Value>> {
        entries
            .iter()
            .map(|(k, v)| {
                let Value::Array(items) = v else {
                    panic!("not a list")
                };
                ((*k).to_owned(), items.clone())
            })
            .collect()
    }

    fn run(
        matrix: &IndexMap<String, Vec<Value>>,
        params: &BTreeMap<String, ParamValue>,
    ) -> Result<Vec<Combination>, MatrixError> {
        let scope = Scope {
            params,
            inputs: vec![],
            step: "train",
            matrix: None,
        };
        expand(matrix, &scope)
    }

    #[test]
    fn combinations_follow_declaration_order_with_the_last_key_fastest() {
        let m = grid(&[
            ("b_algo", json!(["logistic", "random_forest"])),
            ("a_depth", json!([2, 4, 8])),
        ]);
        let combos = run(&m, &BTreeMap::new()).unwrap();
        let labels: Vec<&str> = combos.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "b_algo=logistic,a_depth=2",
                "b_algo=logistic,a_depth=4",
                "b_algo=logistic,a_depth=8",
                "b_algo=random_forest,a_depth=2",
                "b_algo=random_forest,a_depth=4",
                "b_algo=random_forest,a_depth=8",
            ]
        );
        assert_eq!(
            combos[4].values,
            BTreeMap::from([
                ("b_algo".to_owned(), json!("random_forest")),
                ("a_depth".to_owned(), json!(4)),
            ])
        );
    }

    #[test]
    fn values_render_plainly_and_params_keep_their_type() {
        let params = BTreeMap::from([("lr".to_owned(), ParamValue::Float(0.5))]);
        let m = grid(&[(
            "x",
            json!([true, -1, 0.01, "${params.lr}", "v${params.lr}"]),
        )]);
        let combos = run(&m, &params).unwrap();
        let labels: Vec<&str> = combos.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["x=true", "x=-1", "x=0.01", "x=0.5", "x=v0.5"]);
        assert_eq!(combos[3].values["x"], json!(0.5));
        assert_eq!(combos[4].values["x"], json!("v0.5"));
    }

    #[test]
    fn bad_grids_are_rejected() {
        let p = BTreeMap::from([("d".to_owned(), ParamValue::Int(4))]);
        let err = |m: IndexMap<String, Vec<Value>>| run(&m, &p).unwrap_err().message;
        assert!(err(IndexMap::new()).contains("is empty"));
        assert!(err(grid(&[("x", json!([]))])).contains("'x' of step 'train' has no values"));
        assert!(err(grid(&[("9x", json!([1]))])).contains("invalid matrix key '9x'"));
        assert!(err(grid(&[("x", json!([[1]]))])).contains("not a string, number or boolean"));
        assert!(err(grid(&[("x", json!(["a/b"]))])).contains("'a/b', which contains '/'"));
        assert!(err(grid(&[("x", json!([""]))])).contains("an empty string"));
        // Equal once rendered: both would be named `x=4`.
        assert!(err(grid(&[("x", json!([4, "${params.d}"]))])).contains("duplicate value '4'"));
        assert!(err(grid(&[("x", json!([4, "4"]))])).contains("duplicate value '4'"));
        assert!(err(grid(&[("x", json!(["${params.nope}"]))])).contains("unknown param 'nope'"));
        let big: Vec<i64> = (0..65).collect();
        let e = err(grid(&[("a", json!(big)), ("b", json!(big))]));
        assert!(e.contains("4225 combinations, more than 4096"), "{e}");
        let long = "v".repeat(252);
        assert!(err(grid(&[("key", json!([long]))])).contains("longer than 255"));
        // Exactly at the limit is fine.
        let edge: Vec<i64> = (0..64).collect();
        assert_eq!(
            run(&grid(&[("a", json!(edge)), ("b", json!(edge))]), &p)
                .unwrap()
                .len(),
            4096
        );
    }
}
