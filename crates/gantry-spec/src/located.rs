//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde-saphyr's `Spanned<T>` gives every node its line and column; deserializing
//! into this generic tree (instead of straight into typed structs) lets validation
//! keep going after the first problem and point at the exact key or value.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

/// 1-based line and character column inside the parsed text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub(crate) const START: Pos = Pos { line: 1, column: 1 };
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Source text of a plain non-string scalar: `1.10` must stay `1.10` when a
    /// number is used as a command argument or env value, not become `1.1`.
    pub raw: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar as the user wrote it; `None` for null and collections.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(self.raw.clone().unwrap_or_else(|| b.to_string())),
            Value::Int(i) => Some(self.raw.clone().unwrap_or_else(|| i.to_string())),
            Value::Float(f) => Some(self.raw.clone().unwrap_or_else(|| f.to_string())),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

/// A YAML problem that stops parsing before validation can start.
#[derive(Debug)]
pub(crate) struct YamlError {
    pub pos: Pos,
    pub message: String,
    pub hint: String,
}

pub(crate) fn parse_document(text: &str) -> Result<Node, YamlError> {
    // YAML 1.1 booleans (`on`, `yes`) silently turn strings like an alias name
    // `on` into booleans; the 1.2 core schema keeps them strings. Budgets stay on.
    let options = serde_saphyr::options! { strict_booleans: true };
    let raw: Spanned<RawValue> =
        serde_saphyr::from_str_with_options(text, options).map_err(yaml_error)?;
    convert(text, raw)
}

fn yaml_error(err: serde_saphyr::Error) -> YamlError {
    let inner = err.without_snippet();
    let pos = inner
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Pos {
            line: usize::try_from(l.line()).unwrap_or(usize::MAX),
            column: usize::try_from(l.column()).unwrap_or(usize::MAX).max(1),
        })
        .unwrap_or(Pos::START);
    let text = UserMessageFormatter.format_message(inner);
    // The renderer normally neutralizes control characters; we bypass it.
    let message: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let (message, hint) = match inner {
        serde_saphyr::Error::MultipleDocuments { .. } => (
            "the pipeline file holds more than one YAML document".to_owned(),
            "keep one pipeline per file and remove the `---` separator",
        ),
        serde_saphyr::Error::DuplicateMappingKey { .. } => (
            message,
            "each key may appear only once in a mapping; remove or rename one of them",
        ),
        serde_saphyr::Error::Budget { .. } => (
            message,
            "the file exceeds the parser's safety limits; make it smaller or less deeply nested",
        ),
        _ => (
            format!("invalid YAML: {message}"),
            "fix the YAML syntax at this position (check indentation, quotes and brackets)",
        ),
    };
    YamlError {
        pos,
        message,
        hint: hint.to_owned(),
    }
}

/// What serde-saphyr hands us; converted to [`Node`] once the whole tree is read.
#[derive(Debug)]
enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawValue>>),
    Map(Vec<(Spanned<RawValue>, Spanned<RawValue>)>),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(RawValue::Map(entries))
    }
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos {
        line: usize::try_from(loc.line()).unwrap_or(usize::MAX).max(1),
        column: usize::try_from(loc.column()).unwrap_or(usize::MAX).max(1),
    }
}

fn source_text(text: &str, loc: &serde_saphyr::Location) -> Option<String> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let raw = text.get(start..start.checked_add(len)?)?;
    (!raw.is_empty()).then(|| raw.to_owned())
}

fn convert(text: &str, raw: Spanned<RawValue>) -> Result<Node, YamlError> {
    let pos = pos_of(&raw.referenced);
    let scalar_raw = || source_text(text, &raw.referenced);
    let (value, raw_text) = match raw.value {
        RawValue::Null => (Value::Null, None),
        RawValue::Bool(b) => (Value::Bool(b), scalar_raw()),
        RawValue::Int(i) => (Value::Int(i), scalar_raw()),
        RawValue::UInt(u) => match i64::try_from(u) {
            Ok(i) => (Value::Int(i), scalar_raw()),
            Err(_) => {
                return Err(YamlError {
                    pos,
                    message: format!("integer {u} is too large"),
                    hint: format!(
                        "integers must be at most {}; quote it to keep it as text",
                        i64::MAX
                    ),
                });
            }
        },
        RawValue::Float(f) => (Value::Float(f), scalar_raw()),
        RawValue::Str(s) => (Value::Str(s), None),
        RawValue::Seq(items) => (
            Value::Seq(
                items
                    .into_iter()
                    .map(|item| convert(text, item))
                    .collect::<Result<_, _>>()?,
            ),
            None,
        ),
        RawValue::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let key = convert(text, key)?;
                let Some(name) = key.scalar_text() else {
                    return Err(YamlError {
                        pos: key.pos,
                        message: format!("a mapping key must be a plain name, not {}", key.kind()),
                        hint: "write keys as plain text such as `name:`".to_owned(),
                    });
                };
                out.push((Key { name, pos: key.pos }, convert(text, value)?));
            }
            (Value::Map(out), None)
        }
    };
    Ok(Node {
        value,
        pos,
        raw: raw_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(Key, Node)] {
        match &node.value {
            Value::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nodes_and_keys_carry_line_and_column() {
        let doc = parse_document("name: iris\nsteps:\n  - name: a\n    retries: 2\n").unwrap();
        let top = map(&doc);
        assert_eq!(top[0].0.name, "name");
        assert_eq!(top[0].1.pos, Pos { line: 1, column: 7 });
        let Value::Seq(steps) = &top[1].1.value else {
            panic!()
        };
        let step = map(&steps[0]);
        assert_eq!(step[1].0.pos, Pos { line: 4, column: 5 });
        assert_eq!(step[1].1.value, Value::Int(2));
        assert_eq!(
            step[1].1.pos,
            Pos {
                line: 4,
                column: 14
            }
        );
    }

    #[test]
    fn numbers_keep_their_source_spelling() {
        let doc = parse_document("v: 1.10\nw: \"1.10\"\nx: on\ny: true\n").unwrap();
        let m = map(&doc);
        assert_eq!(m[0].1.value, Value::Float(1.1));
        assert_eq!(m[0].1.scalar_text().unwrap(), "1.10");
        assert_eq!(m[1].1.value, Value::Str("1.10".into()));
        // YAML 1.2 core schema: `on` is a string, `true` a boolean.
        assert_eq!(m[2].1.value, Value::Str("on".into()));
        assert_eq!(m[3].1.value, Value::Bool(true));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse_document("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_rejected_at_the_second_key() {
        let err = parse_document("name: a\nname: b\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 1 });
        assert!(err.message.contains("name"), "{}", err.message);
    }

    #[test]
    fn several_documents_are_rejected() {
        let err = parse_document("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("more than one"), "{}", err.message);
        assert_eq!(err.pos.line, 3);
    }
}
