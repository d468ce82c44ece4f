//! MLflow's search grammar: `filter_string` (conditions joined by AND) and `order_by` clauses,
//! parsed into plain values and evaluated in memory against candidate runs or models.

use std::cmp::Ordering;

use crate::error::StoreError;

/// What a condition or an ordering looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SearchKey {
    Metric(String),
    Param(String),
    Tag(String),
    /// A normalized attribute name: `run_id`, `run_name`, `status`, `user_id`, `artifact_uri`,
    /// `lifecycle_stage`, `start_time`, `end_time` for runs; `name`, `run_id`, `source`,
    /// `version` … for registry searches.
    Attribute(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Number(f64),
    Str(String),
    List(Vec<String>),
}

/// One `key op value` condition of a filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub key: SearchKey,
    pub op: Comparator,
    pub value: Literal,
}

/// One `order_by` clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBy {
    pub key: SearchKey,
    pub ascending: bool,
}

/// A value a candidate has for a key, as conditions see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Num(f64),
    Str(&'a str),
}

/// Which attributes a search knows, and which of them are numbers.
#[derive(Clone, Copy, Debug)]
pub struct AttributeSet {
    pub what: &'static str,
    /// (accepted spelling, normalized name)
    pub strings: &'static [(&'static str, &'static str)],
    pub numbers: &'static [(&'static str, &'static str)],
    pub allow_metrics: bool,
    pub allow_params: bool,
}

pub const RUN_ATTRIBUTES: AttributeSet = AttributeSet {
    what: "runs",
    strings: &[
        ("run_id", "run_id"),
        ("run_uuid", "run_id"),
        ("run_name", "run_name"),
        ("status", "status"),
        ("user_id", "user_id"),
        ("artifact_uri", "artifact_uri"),
        ("lifecycle_stage", "lifecycle_stage"),
    ],
    numbers: &[
        ("start_time", "start_time"),
        ("created", "start_time"),
        ("Created", "start_time"),
        ("end_time", "end_time"),
    ],
    allow_metrics: true,
    allow_params: true,
};

pub const EXPERIMENT_ATTRIBUTES: AttributeSet = AttributeSet {
    what: "experiments",
    strings: &[("name", "name")],
    numbers: &[
        ("creation_time", "creation_time"),
        ("last_update_time", "last_update_time"),
        ("experiment_id", "experiment_id"),
    ],
    allow_metrics: false,
    allow_params: false,
};

pub const MODEL_ATTRIBUTES: AttributeSet = AttributeSet {
    what: "registered models",
    strings: &[("name", "name")],
    numbers: &[
        ("creation_timestamp", "creation_timestamp"),
        ("last_updated_timestamp", "last_updated_timestamp"),
        ("timestamp", "last_updated_timestamp"),
    ],
    allow_metrics: false,
    allow_params: false,
};

pub const MODEL_VERSION_ATTRIBUTES: AttributeSet = AttributeSet {
    what: "model versions",
    strings: &[
        ("name", "name"),
        ("run_id", "run_id"),
        ("source_path", "source"),
        ("source", "source"),
        ("current_stage", "current_stage"),
        ("status", "status"),
        ("user_id", "user_id"),
    ],
    numbers: &[
        ("version_number", "version"),
        ("version", "version"),
        ("creation_timestamp", "creation_timestamp"),
        ("last_updated_timestamp", "last_updated_timestamp"),
        ("timestamp", "last_updated_timestamp"),
    ],
    allow_metrics: false,
    allow_params: false,
};

fn invalid(what: &str, detail: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// Parses an MLflow filter string; an empty or blank filter has no conditions.
pub fn parse_filter(filter: &str, attrs: &AttributeSet) -> Result<Vec<Condition>, StoreError> {
    let what = format!("filter '{filter}' of a search of {}", attrs.what);
    let mut p = Parser::new(filter, &what);
    let mut conditions = Vec::new();
    p.skip_ws();
    if p.at_end() {
        return Ok(conditions);
    }
    loop {
        conditions.push(p.condition(attrs)?);
        p.skip_ws();
        if p.at_end() {
            return Ok(conditions);
        }
        let word = p.word();
        if word.eq_ignore_ascii_case("and") {
            continue;
        }
        if word.eq_ignore_ascii_case("or") {
            return Err(p.error("OR is not supported: join conditions with AND"));
        }
        return Err(p.error(format!(
            "expected AND between conditions, found '{}'",
            p.rest_preview(&word)
        )));
    }
}

/// Parses one `order_by` clause such as `metrics.acc DESC` or `attributes.start_time`.
pub fn parse_order_by(clause: &str, attrs: &AttributeSet) -> Result<OrderBy, StoreError> {
    let what = format!("order_by clause '{clause}' of a search of {}", attrs.what);
    let mut p = Parser::new(clause, &what);
    p.skip_ws();
    let (key, _) = p.key(attrs)?;
    p.skip_ws();
    let dir = p.word();
    let ascending = if dir.is_empty() || dir.eq_ignore_ascii_case("asc") {
        true
    } else if dir.eq_ignore_ascii_case("desc") {
        false
    } else {
        return Err(p.error(format!("expected ASC or DESC, found '{dir}'")));
    };
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("unexpected text after the sort direction"));
    }
    Ok(OrderBy { key, ascending })
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    what: &'a str,
}

impl<'a> Parser<'a> {
    fn new(text: &str, what: &'a str) -> Parser<'a> {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
            what,
        }
    }

    fn error(&self, detail: impl Into<String>) -> StoreError {
        invalid(
            self.what,
            format!("{} (at character {})", detail.into(), self.pos + 1),
        )
    }

    fn rest_preview(&self, word: &str) -> String {
        if word.is_empty() {
            self.chars[self.pos..].iter().take(20).collect()
        } else {
            word.to_owned()
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Letters, digits and '_'.
    fn word(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn quoted(&mut self) -> Result<String, StoreError> {
        let Some(quote) = self.peek() else {
            return Err(self.error("expected a quoted string"));
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error(format!("unterminated {quote}quoted{quote} text"))),
                Some(c) if c == quote => {
                    self.pos += 1;
                    // SQL style: a doubled quote stands for one.
                    if self.peek() == Some(quote) {
                        out.push(quote);
                        self.pos += 1;
                    } else {
                        return Ok(out);
                    }
                }
                Some('\\') if self.chars.get(self.pos + 1) == Some(&quote) => {
                    out.push(quote);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `entity.key` (the key bare, `backticked` or "double-quoted"), or a bare attribute.
    /// Returns the key and whether its attribute is numeric.
    fn key(&mut self, attrs: &AttributeSet) -> Result<(SearchKey, bool), StoreError> {
        let (entity, name) = if matches!(self.peek(), Some('`' | '"')) {
            (String::new(), self.quoted()?)
        } else {
            let entity = self.word();
            if entity.is_empty() {
                return Err(self.error("expected a key such as metrics.acc or params.lr"));
            }
            if self.peek() == Some('.') {
                self.pos += 1;
                let name = if matches!(self.peek(), Some('`' | '"')) {
                    self.quoted()?
                } else {
                    let start = self.pos;
                    while self.peek().is_some_and(|c| {
                        !c.is_whitespace() && !matches!(c, '=' | '!' | '<' | '>' | '(' | ')' | '\'')
                    }) {
                        self.pos += 1;
                    }
                    self.chars[start..self.pos].iter().collect()
                };
                (entity, name)
            } else {
                (String::new(), entity)
            }
        };
        if name.is_empty() {
            return Err(self.error(format!("missing key after '{entity}.'")));
        }
        let key = match entity.to_ascii_lowercase().as_str() {
            "metric" | "metrics" if attrs.allow_metrics => SearchKey::Metric(name),
            "param" | "params" | "parameter" | "parameters" if attrs.allow_params => {
                SearchKey::Param(name)
            }
            "tag" | "tags" => SearchKey::Tag(name),
            "" | "attribute" | "attributes" | "attr" | "run" => {
                return self.attribute(attrs, &name);
            }
            other => {
                return Err(self.error(format!(
                    "'{other}' is not something {} can be searched by: use {}tags.<key> or \
                     attributes.<name>",
                    attrs.what,
                    if attrs.allow_metrics {
                        "metrics.<key>, params.<key>, "
                    } else {
                        ""
                    }
                )));
            }
        };
        Ok((key, false))
    }

    fn attribute(&self, attrs: &AttributeSet, name: &str) -> Result<(SearchKey, bool), StoreError> {
        if let Some((_, n)) = attrs.strings.iter().find(|(a, _)| *a == name) {
            return Ok((SearchKey::Attribute((*n).to_owned()), false));
        }
        if let Some((_, n)) = attrs.numbers.iter().find(|(a, _)| *a == name) {
            return Ok((SearchKey::Attribute((*n).to_owned()), true));
        }
        let valid: Vec<&str> = attrs
            .strings
            .iter()
            .chain(attrs.numbers)
            .map(|(a, _)| *a)
            .collect();
        Err(self.error(format!(
            "invalid attribute key '{name}': valid keys are {}",
            valid.join(", ")
        )))
    }

    fn comparator(&mut self) -> Result<Comparator, StoreError> {
        let two: String = self.chars[self.pos..].iter().take(2).collect();
        for (text, op) in [
            ("!=", Comparator::Ne),
            ("<>", Comparator::Ne),
            ("<=", Comparator::Le),
            (">=", Comparator::Ge),
            ("==", Comparator::Eq),
        ] {
            if two == text {
                self.pos += 2;
                return Ok(op);
            }
        }
        match self.peek() {
            Some('=') => {
                self.pos += 1;
                return Ok(Comparator::Eq);
            }
            Some('<') => {
                self.pos += 1;
                return Ok(Comparator::Lt);
            }
            Some('>') => {
                self.pos += 1;
                return Ok(Comparator::Gt);
            }
            _ => {}
        }
        let word = self.word().to_ascii_uppercase();
        match word.as_str() {
            "LIKE" => Ok(Comparator::Like),
            "ILIKE" => Ok(Comparator::ILike),
            "IN" => Ok(Comparator::In),
            "NOT" => {
                self.skip_ws();
                if self.word().eq_ignore_ascii_case("in") {
                    Ok(Comparator::NotIn)
                } else {
                    Err(self.error("expected IN after NOT"))
                }
            }
            _ => Err(self.error(format!(
                "expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN), found '{}'",
                self.rest_preview(&word)
            ))),
        }
    }

    fn number(&mut self) -> Result<f64, StoreError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse::<f64>()
            .ok()
            .filter(|_| !text.is_empty())
            .ok_or_else(|| self.error(format!("expected a number, found '{text}'")))
    }

    fn list(&mut self) -> Result<Vec<String>, StoreError> {
        if self.peek() != Some('(') {
            return Err(self.error("expected a parenthesized list such as ('a', 'b')"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if !matches!(self.peek(), Some('\'' | '"')) {
                return Err(self.error("list items must be quoted strings"));
            }
            items.push(self.quoted()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return Err(self.error("expected ',' or ')' in the list")),
            }
        }
    }

    fn condition(&mut self, attrs: &AttributeSet) -> Result<Condition, StoreError> {
        self.skip_ws();
        let (key, numeric_attribute) = self.key(attrs)?;
        self.skip_ws();
        let op = self.comparator()?;
        self.skip_ws();
        use Comparator::*;
        let value = match &key {
            SearchKey::Metric(_) => {
                if !matches!(op, Eq | Ne | Lt | Le | Gt | Ge) {
                    return Err(self.error("metrics compare with =, !=, <, <=, > or >="));
                }
                Literal::Number(self.number()?)
            }
            SearchKey::Attribute(_) if numeric_attribute => {
                if !matches!(op, Eq | Ne | Lt | Le | Gt | Ge) {
                    return Err(self.error("numeric attributes compare with =, !=, <, <=, > or >="));
                }
                Literal::Number(self.number()?)
            }
            _ => match op {
                In | NotIn => Literal::List(self.list()?),
                Eq | Ne | Like | ILike => {
                    if !matches!(self.peek(), Some('\'' | '"')) {
                        return Err(self
                            .error("compare strings with a quoted value, e.g. params.lr = '0.1'"));
                    }
                    Literal::Str(self.quoted()?)
                }
                _ => {
                    return Err(self.error(
                        "params, tags and string attributes compare with =, !=, LIKE, ILIKE, \
                         IN or NOT IN",
                    ));
                }
            },
        };
        Ok(Condition { key, op, value })
    }
}

/// SQL LIKE: `%` any run of characters, `_` one character.
pub fn like(text: &str, pattern: &str, case_insensitive: bool) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            text.to_lowercase().chars().collect(),
            pattern.to_lowercase().chars().collect(),
        )
    } else {
        (text.chars().collect(), pattern.chars().collect())
    };
    // Greedy matching with backtracking to the last '%': linear in practice.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

impl Condition {
    /// Whether a candidate whose value for this condition's key is `value` (None: it has
    /// none) satisfies it. A missing key never matches, as in MLflow's SQL joins.
    pub fn matches(&self, value: Option<FieldValue<'_>>) -> bool {
        use Comparator::*;
        match (value, &self.value) {
            (Some(FieldValue::Num(v)), Literal::Number(x)) => {
                if v.is_nan() {
                    return false;
                }
                match self.op {
                    Eq => v == *x,
                    Ne => v != *x,
                    Lt => v < *x,
                    Le => v <= *x,
                    Gt => v > *x,
                    Ge => v >= *x,
                    _ => false,
                }
            }
            (Some(FieldValue::Str(v)), Literal::Str(x)) => match self.op {
                Eq => v == x,
                Ne => v != x,
                Like => like(v, x, false),
                ILike => like(v, x, true),
                _ => false,
            },
            (Some(FieldValue::Str(v)), Literal::List(xs)) => match self.op {
                In => xs.iter().any(|x| x == v),
                NotIn => xs.iter().all(|x| x != v),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Orders two optional values: present before missing whichever the direction (as MLflow
/// does), NaN above every number.
pub fn compare_values(
    a: Option<FieldValue<'_>>,
    b: Option<FieldValue<'_>>,
    ascending: bool,
) -> Ordering {
    let ord = match (a, b) {
        (None, None) => return Ordering::Equal,
        (None, Some(_)) => return Ordering::Greater,
        (Some(_), None) => return Ordering::Less,
        // NaN (stored positive) sorts above +inf, as MLflow sorts it.
        (Some(FieldValue::Num(x)), Some(FieldValue::Num(y))) => x.total_cmp(&y),
        (Some(FieldValue::Str(x)), Some(FieldValue::Str(y))) => x.cmp(y),
        (Some(FieldValue::Num(_)), Some(FieldValue::Str(_))) => Ordering::Less,
        (Some(FieldValue::Str(_)), Some(FieldValue::Num(_))) => Ordering::Greater,
    };
    if ascending { ord } else { ord.reverse() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Vec<Condition> {
        parse_filter(s, &RUN_ATTRIBUTES).unwrap()
    }

    #[test]
    fn filters_parse_into_conditions() {
        let c = parse(
            "metrics.acc > 0.9 and params.lr = '0.1' AND tags.`a b` != \"x\" and \
             attributes.status = 'FINISHED' and run_name LIKE 'foo%' and \
             attributes.run_id IN ('a', 'b') and metric.\"val loss\" <= -1e-3 and \
             tags.mlflow.runName ILIKE '%X%' and attributes.start_time >= 5",
        );
        assert_eq!(c.len(), 9);
        assert_eq!(c[0].key, SearchKey::Metric("acc".into()));
        assert_eq!(c[0].op, Comparator::Gt);
        assert_eq!(c[0].value, Literal::Number(0.9));
        assert_eq!(c[1].key, SearchKey::Param("lr".into()));
        assert_eq!(c[1].value, Literal::Str("0.1".into()));
        assert_eq!(c[2].key, SearchKey::Tag("a b".into()));
        assert_eq!(c[2].op, Comparator::Ne);
        assert_eq!(c[3].key, SearchKey::Attribute("status".into()));
        assert_eq!(c[4].key, SearchKey::Attribute("run_name".into()));
        assert_eq!(c[4].op, Comparator::Like);
        assert_eq!(c[5].value, Literal::List(vec!["a".into(), "b".into()]));
        assert_eq!(c[6].key, SearchKey::Metric("val loss".into()));
        assert_eq!(c[6].value, Literal::Number(-1e-3));
        assert_eq!(c[7].key, SearchKey::Tag("mlflow.runName".into()));
        assert_eq!(c[8].key, SearchKey::Attribute("start_time".into()));
        assert!(parse("  ").is_empty());
    }

    #[test]
    fn bad_filters_say_why() {
        for (bad, says) in [
            (
                "metrics.acc > 0.9 or params.lr = '1'",
                "OR is not supported",
            ),
            ("metrics.acc > 'x'", "expected a number"),
            ("params.lr > '1'", "compare with"),
            ("params.lr = 1", "quoted value"),
            ("attributes.nope = 'x'", "invalid attribute key 'nope'"),
            ("params.lr = 'x", "unterminated"),
            ("metrics.acc LIKE 1", "metrics compare"),
            ("datasets.x = 'a'", "not something"),
            ("metrics.acc > 1 params.x = 'a'", "expected AND"),
        ] {
            let err = parse_filter(bad, &RUN_ATTRIBUTES).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn order_by_clauses() {
        let o = parse_order_by("metrics.acc DESC", &RUN_ATTRIBUTES).unwrap();
        assert_eq!(o.key, SearchKey::Metric("acc".into()));
        assert!(!o.ascending);
        let o = parse_order_by("attributes.start_time", &RUN_ATTRIBUTES).unwrap();
        assert_eq!(o.key, SearchKey::Attribute("start_time".into()));
        assert!(o.ascending);
        let o = parse_order_by("params.`learning rate` asc", &RUN_ATTRIBUTES).unwrap();
        assert_eq!(o.key, SearchKey::Param("learning rate".into()));
        assert!(parse_order_by("metrics.acc sideways", &RUN_ATTRIBUTES).is_err());
    }

    #[test]
    fn like_patterns() {
        assert!(like("foobar", "foo%", false));
        assert!(like("foobar", "%bar", false));
        assert!(like("foobar", "f_o%r", false));
        assert!(!like("Foobar", "foo%", false));
        assert!(like("Foobar", "foo%", true));
        assert!(like("", "%", false));
        assert!(!like("abc", "a_", false));
        assert!(like("aXbXc", "%X%X%", false));
    }

    #[test]
    fn conditions_on_missing_values_never_match() {
        let c = &parse("params.lr != 'x'")[0];
        assert!(!c.matches(None));
        assert!(c.matches(Some(FieldValue::Str("y"))));
        let c = &parse("metrics.acc >= 0.5")[0];
        assert!(c.matches(Some(FieldValue::Num(0.5))));
        assert!(!c.matches(Some(FieldValue::Num(f64::NAN))));
    }

    #[test]
    fn missing_values_sort_last_both_ways() {
        let a = Some(FieldValue::Num(1.0));
        assert_eq!(compare_values(a, None, true), Ordering::Less);
        assert_eq!(compare_values(a, None, false), Ordering::Less);
        assert_eq!(
            compare_values(a, Some(FieldValue::Num(2.0)), false),
            Ordering::Greater
        );
    }
}
