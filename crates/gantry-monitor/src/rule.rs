//! Alert rules: `metric OP number [for feature NAME]`.
//!
//! ```text
//! rule   := metric OP number [ "for" "feature" NAME ]
//! metric := ("psi" | "js" | "jensen_shannon" | "ks" | "ks_pvalue" | "missing") [ "(" NAME ")" ]
//!         | "prediction_psi" | "prediction_js"
//!         | ("accuracy" | "f1" | "rmse" | "mae") [ "(" DURATION ")" ]
//!         | "p50" | "p95" | "p99" | "error_rate" | "requests"
//! OP     := ">" | ">=" | "<" | "<="
//! NAME   := a word without spaces, quotes, parentheses, < > =  |  "a quoted name"
//! DURATION := integer with unit ms, s, m, h or d  (5m, 1h, 30s)
//! ```
//!
//! Keywords are case-insensitive, feature names are not. A rule prints back
//! (`Display`) in a canonical form that parses to the same rule, and
//! (de)serializes as that text, so configs hold rules as plain strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A per-feature drift statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureStat {
    Psi,
    JensenShannon,
    /// The KS statistic D.
    Ks,
    KsPValue,
    /// Live missing fraction.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionStat {
    Psi,
    JensenShannon,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerformanceStat {
    Accuracy,
    F1,
    Rmse,
    Mae,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyStat {
    P50,
    P95,
    P99,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Without a feature: the worst feature (largest value; smallest for the KS p-value).
    Feature {
        stat: FeatureStat,
        feature: Option<String>,
    },
    Prediction(PredictionStat),
    /// Without a window: the smallest configured performance window.
    Performance {
        stat: PerformanceStat,
        window_ms: Option<i64>,
    },
    /// Latency percentile in milliseconds over the monitor window.
    Latency(LatencyStat),
    ErrorRate,
    Requests,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AlertRule {
    pub metric: Metric,
    pub op: Op,
    pub threshold: f64,
}

/// A rule that does not parse: where, what was expected, what was there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("alert rule `{rule}`: at column {column} expected {expected}, found {found}")]
pub struct RuleError {
    pub rule: String,
    /// 1-based, in characters.
    pub column: usize,
    pub expected: String,
    pub found: String,
}

const FEATURE_METRICS: &str = "psi, js, jensen_shannon, ks, ks_pvalue, missing";
const METRICS: &str = "a metric (psi, js, jensen_shannon, ks, ks_pvalue, missing, prediction_psi, \
     prediction_js, accuracy, f1, rmse, mae, p50, p95, p99, error_rate, requests)";
const OPERATORS: &str = "a comparison (>, >=, <, <=)";

impl AlertRule {
    pub fn parse(text: &str) -> Result<AlertRule, RuleError> {
        Parser::new(text).rule()
    }

    /// The feature a per-feature rule is about, if it names one.
    pub fn feature(&self) -> Option<&str> {
        match &self.metric {
            Metric::Feature { feature, .. } => feature.as_deref(),
            _ => None,
        }
    }
}

impl FromStr for AlertRule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertRule::parse(s)
    }
}

impl TryFrom<String> for AlertRule {
    type Error = RuleError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        AlertRule::parse(&s)
    }
}

impl From<AlertRule> for String {
    fn from(rule: AlertRule) -> String {
        rule.to_string()
    }
}

impl FeatureStat {
    pub fn name(self) -> &'static str {
        match self {
            FeatureStat::Psi => "psi",
            FeatureStat::JensenShannon => "js",
            FeatureStat::Ks => "ks",
            FeatureStat::KsPValue => "ks_pvalue",
            FeatureStat::Missing => "missing",
        }
    }
}

impl PredictionStat {
    pub fn name(self) -> &'static str {
        match self {
            PredictionStat::Psi => "prediction_psi",
            PredictionStat::JensenShannon => "prediction_js",
        }
    }
}

impl PerformanceStat {
    pub fn name(self) -> &'static str {
        match self {
            PerformanceStat::Accuracy => "accuracy",
            PerformanceStat::F1 => "f1",
            PerformanceStat::Rmse => "rmse",
            PerformanceStat::Mae => "mae",
        }
    }
}

impl LatencyStat {
    pub fn name(self) -> &'static str {
        match self {
            LatencyStat::P50 => "p50",
            LatencyStat::P95 => "p95",
            LatencyStat::P99 => "p99",
        }
    }
}

impl Metric {
    /// The metric's keyword (`psi`, `accuracy`, `p99`, …) without arguments.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Feature { stat, .. } => stat.name(),
            Metric::Prediction(stat) => stat.name(),
            Metric::Performance { stat, .. } => stat.name(),
            Metric::Latency(stat) => stat.name(),
            Metric::ErrorRate => "error_rate",
            Metric::Requests => "requests",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Metric::Feature {
                feature: Some(name),
                ..
            } => write!(f, "({})", quote_name(name)),
            Metric::Performance {
                window_ms: Some(ms),
                ..
            } => write!(f, "({})", format_duration(*ms)),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for AlertRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.threshold)
    }
}

/// `5m`, `1h`, `90s`, `250ms`: the largest unit that divides exactly.
pub fn format_duration(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn is_name_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '<' | '>' | '=' | '"')
}

fn quote_name(name: &str) -> String {
    if !name.is_empty() && name.chars().all(is_name_char) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Op(Op),
    /// `=`, `==`, `!=`, … : kept so the error can show it.
    BadOp(String),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Quoted(q) => format!("\"{q}\""),
            Token::Open => "`(`".to_string(),
            Token::Close => "`)`".to_string(),
            Token::Op(op) => format!("`{}`", op.symbol()),
            Token::BadOp(s) => format!("`{s}`"),
            Token::End => "the end of the rule".to_string(),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    /// (1-based column, token)
    tokens: Vec<(usize, Token)>,
    next: usize,
    error: Option<RuleError>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let mut parser = Parser {
            text,
            tokens: Vec::new(),
            next: 0,
            error: None,
        };
        parser.tokenize();
        parser
    }

    fn tokenize(&mut self) {
        let chars: Vec<char> = self.text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let column = i + 1;
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let token = match c {
                '(' => {
                    i += 1;
                    Token::Open
                }
                ')' => {
                    i += 1;
                    Token::Close
                }
                '<' | '>' | '=' | '!' if c != '!' || chars.get(i + 1) == Some(&'=') => {
                    let with_equals = chars.get(i + 1) == Some(&'=');
                    i += if with_equals { 2 } else { 1 };
                    match (c, with_equals) {
                        ('>', false) => Token::Op(Op::Gt),
                        ('>', true) => Token::Op(Op::Ge),
                        ('<', false) => Token::Op(Op::Lt),
                        ('<', true) => Token::Op(Op::Le),
                        (c, true) => Token::BadOp(format!("{c}=")),
                        (c, false) => Token::BadOp(c.to_string()),
                    }
                }
                '"' => {
                    let mut value = String::new();
                    i += 1;
                    let mut closed = false;
                    while i < chars.len() {
                        match chars[i] {
                            '\\' if i + 1 < chars.len() => {
                                value.push(chars[i + 1]);
                                i += 2;
                            }
                            '"' => {
                                closed = true;
                                i += 1;
                                break;
                            }
                            other => {
                                value.push(other);
                                i += 1;
                            }
                        }
                    }
                    if !closed {
                        self.error = Some(RuleError {
                            rule: self.text.to_string(),
                            column,
                            expected: "a closing `\"` for the quoted name".to_string(),
                            found: "the end of the rule".to_string(),
                        });
                        return;
                    }
                    Token::Quoted(value)
                }
                _ => {
                    let start = i;
                    while i < chars.len() && is_name_char(chars[i]) {
                        i += 1;
                    }
                    Token::Word(chars[start..i].iter().collect())
                }
            };
            self.tokens.push((column, token));
        }
        self.tokens.push((chars.len() + 1, Token::End));
    }

    fn peek(&self) -> &(usize, Token) {
        // `tokenize` always ends the list with `End`, and `advance` never
        // moves past it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> (usize, Token) {
        let token = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    fn fail<T>(&self, column: usize, expected: &str, found: &Token) -> Result<T, RuleError> {
        Err(RuleError {
            rule: self.text.to_string(),
            column,
            expected: expected.to_string(),
            found: found.describe(),
        })
    }

    fn rule(mut self) -> Result<AlertRule, RuleError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let mut metric = self.metric()?;
        let (column, token) = self.advance();
        let op = match token {
            Token::Op(op) => op,
            Token::Open => {
                return self.fail(
                    column,
                    &format!("{OPERATORS} (`{}` takes no argument)", metric.name()),
                    &token,
                );
            }
            other => return self.fail(column, OPERATORS, &other),
        };
        let threshold = self.number()?;
        let (column, token) = self.advance();
        match token {
            Token::End => {}
            Token::Word(w) if w.eq_ignore_ascii_case("for") => {
                let Metric::Feature { feature, .. } = &mut metric else {
                    return self.fail(
                        column,
                        &format!(
                            "the end of the rule (`for feature` applies to {FEATURE_METRICS} only)"
                        ),
                        &Token::Word(w),
                    );
                };
                if feature.is_some() {
                    return self.fail(
                        column,
                        "the end of the rule (the feature is already named in parentheses)",
                        &Token::Word(w),
                    );
                }
                let (column, token) = self.advance();
                match token {
                    Token::Word(w) if w.eq_ignore_ascii_case("feature") => {}
                    other => return self.fail(column, "`feature` after `for`", &other),
                }
                *feature = Some(self.name()?);
                let (column, token) = self.advance();
                if token != Token::End {
                    return self.fail(column, "the end of the rule", &token);
                }
            }
            other => return self.fail(column, "the end of the rule or `for feature NAME`", &other),
        }
        Ok(AlertRule {
            metric,
            op,
            threshold,
        })
    }

    fn metric(&mut self) -> Result<Metric, RuleError> {
        let (column, token) = self.advance();
        let Token::Word(word) = &token else {
            return self.fail(column, METRICS, &token);
        };
        let feature = |stat| Metric::Feature {
            stat,
            feature: None,
        };
        let performance = |stat| Metric::Performance {
            stat,
            window_ms: None,
        };
        let mut metric = match word.to_ascii_lowercase().as_str() {
            "psi" => feature(FeatureStat::Psi),
            "js" | "jensen_shannon" => feature(FeatureStat::JensenShannon),
            "ks" => feature(FeatureStat::Ks),
            "ks_pvalue" => feature(FeatureStat::KsPValue),
            "missing" => feature(FeatureStat::Missing),
            "prediction_psi" => Metric::Prediction(PredictionStat::Psi),
            "prediction_js" => Metric::Prediction(PredictionStat::JensenShannon),
            "accuracy" => performance(PerformanceStat::Accuracy),
            "f1" => performance(PerformanceStat::F1),
            "rmse" => performance(PerformanceStat::Rmse),
            "mae" => performance(PerformanceStat::Mae),
            "p50" => Metric::Latency(LatencyStat::P50),
            "p95" => Metric::Latency(LatencyStat::P95),
            "p99" => Metric::Latency(LatencyStat::P99),
            "error_rate" => Metric::ErrorRate,
            "requests" => Metric::Requests,
            _ => return self.fail(column, METRICS, &token),
        };
        let takes_argument = matches!(metric, Metric::Feature { .. } | Metric::Performance { .. });
        if takes_argument && self.peek().1 == Token::Open {
            self.advance();
            match &mut metric {
                Metric::Feature { feature, .. } => *feature = Some(self.name()?),
                Metric::Performance { window_ms, .. } => *window_ms = Some(self.duration()?),
                _ => {}
            }
            let (column, token) = self.advance();
            if token != Token::Close {
                return self.fail(column, "`)`", &token);
            }
        }
        Ok(metric)
    }

    fn name(&mut self) -> Result<String, RuleError> {
        let (column, token) = self.advance();
        match token {
            Token::Word(w) => Ok(w),
            Token::Quoted(q) if !q.is_empty() => Ok(q),
            other => self.fail(column, "a feature name", &other),
        }
    }

    fn number(&mut self) -> Result<f64, RuleError> {
        let (column, token) = self.advance();
        if let Token::Word(w) = &token
            && let Ok(x) = w.parse::<f64>()
            && x.is_finite()
            && w.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
        {
            return Ok(x);
        }
        self.fail(column, "a number (like 0.2 or 50)", &token)
    }

    fn duration(&mut self) -> Result<i64, RuleError> {
        let (column, token) = self.advance();
        if let Token::Word(w) = &token {
            let lower = w.to_ascii_lowercase();
            let digits = lower.chars().take_while(char::is_ascii_digit).count();
            let (amount, unit) = lower.split_at(digits);
            let size = match unit {
                "ms" => Some(1),
                "s" => Some(1000),
                "m" => Some(60_000),
                "h" => Some(3_600_000),
                "d" => Some(86_400_000),
                _ => None,
            };
            if let (Ok(amount), Some(size)) = (amount.parse::<i64>(), size)
                && let Some(ms) = amount.checked_mul(size)
                && ms > 0
            {
                return Ok(ms);
            }
        }
        self.fail(
            column,
            "a duration (a positive whole number with unit ms, s, m, h or d, like 5m or 1h)",
            &token,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AlertRule {
        AlertRule::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_documented_examples_parse() {
        let feature = |stat, name: Option<&str>| Metric::Feature {
            stat,
            feature: name.map(str::to_string),
        };
        let cases = [
            (
                "psi > 0.2 for feature mean_radius",
                feature(FeatureStat::Psi, Some("mean_radius")),
                Op::Gt,
                0.2,
            ),
            (
                "psi(mean_radius) > 0.2",
                feature(FeatureStat::Psi, Some("mean_radius")),
                Op::Gt,
                0.2,
            ),
            ("psi > 0.25", feature(FeatureStat::Psi, None), Op::Gt, 0.25),
            (
                "accuracy < 0.85",
                Metric::Performance {
                    stat: PerformanceStat::Accuracy,
                    window_ms: None,
                },
                Op::Lt,
                0.85,
            ),
            (
                "accuracy(1h) < 0.9",
                Metric::Performance {
                    stat: PerformanceStat::Accuracy,
                    window_ms: Some(3_600_000),
                },
                Op::Lt,
                0.9,
            ),
            ("p99 > 50", Metric::Latency(LatencyStat::P99), Op::Gt, 50.0),
            ("error_rate >= 0.05", Metric::ErrorRate, Op::Ge, 0.05),
        ];
        for (text, metric, op, threshold) in cases {
            assert_eq!(
                parse(text),
                AlertRule {
                    metric,
                    op,
                    threshold
                },
                "{text}"
            );
        }
    }

    #[test]
    fn keywords_ignore_case_and_spacing_and_names_keep_theirs() {
        let want = AlertRule {
            metric: Metric::Feature {
                stat: FeatureStat::JensenShannon,
                feature: Some("Mean_Radius".to_string()),
            },
            op: Op::Le,
            threshold: 0.001,
        };
        assert_eq!(parse("  JS( Mean_Radius )<=1e-3  "), want);
        assert_eq!(parse("jensen_shannon<=0.001 FOR Feature Mean_Radius"), want);
        assert_eq!(parse("KS_PVALUE<0.01").metric.name(), "ks_pvalue");
        assert_eq!(parse("mae(90S) > 2").to_string(), "mae(90s) > 2");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "psi > 0.2 for feature mean_radius",
            "psi(mean_radius) > 0.2",
            "js >= 0.1",
            "ks(x) > 0.3",
            "ks_pvalue < 0.001",
            "missing(\"petal length (cm)\") > 0.05",
            "missing > 0.5 for feature \"a \\\"quoted\\\" name\"",
            "prediction_psi > 0.2",
            "prediction_js > 0.1",
            "accuracy < 0.85",
            "accuracy(1h) < 0.9",
            "f1(30m) < 0.8",
            "rmse(1d) > 3.5",
            "mae(1500ms) > 1",
            "p50 > 10",
            "p95 > 20",
            "p99 > 50",
            "error_rate >= 0.05",
            "requests < 1",
            "requests <= -2.5e3",
        ] {
            let rule = parse(text);
            let printed = rule.to_string();
            assert_eq!(parse(&printed), rule, "{text} printed as {printed}");
        }
        assert_eq!(
            parse("psi > 0.2 for feature mean_radius").to_string(),
            "psi(mean_radius) > 0.2"
        );
        assert_eq!(
            parse("missing(\"petal length (cm)\") > 0.05").to_string(),
            "missing(\"petal length (cm)\") > 0.05"
        );
        let json = serde_json::to_string(&parse("accuracy(5m) < 0.9")).unwrap();
        assert_eq!(json, "\"accuracy(5m) < 0.9\"");
        assert_eq!(
            serde_json::from_str::<AlertRule>(&json).unwrap(),
            parse("accuracy(5m) < 0.9")
        );
        assert!(serde_json::from_str::<AlertRule>("\"psi >\"").is_err());
    }

    #[test]
    fn bad_rules_name_the_column_and_what_was_expected() {
        let cases = [
            ("", 1, "a metric (psi", "the end of the rule"),
            ("latency > 5", 1, "a metric (psi", "`latency`"),
            ("> 5", 1, "a metric", "`>`"),
            ("psi 0.2", 5, "a comparison (>, >=, <, <=)", "`0.2`"),
            ("psi = 0.2", 5, "a comparison", "`=`"),
            ("psi == 0.2", 5, "a comparison", "`==`"),
            ("psi != 0.2", 5, "a comparison", "`!=`"),
            ("psi >> 0.2", 6, "a number", "`>`"),
            ("psi > high", 7, "a number", "`high`"),
            ("psi > inf", 7, "a number", "`inf`"),
            (
                "psi > 0.2 for",
                14,
                "`feature` after `for`",
                "the end of the rule",
            ),
            (
                "psi > 0.2 for column x",
                15,
                "`feature` after `for`",
                "`column`",
            ),
            (
                "psi > 0.2 for feature",
                22,
                "a feature name",
                "the end of the rule",
            ),
            (
                "psi > 0.2 for feature a b",
                25,
                "the end of the rule",
                "`b`",
            ),
            (
                "psi > 0.2 when",
                11,
                "the end of the rule or `for feature NAME`",
                "`when`",
            ),
            (
                "psi(x) > 0.2 for feature y",
                14,
                "already named in parentheses",
                "`for`",
            ),
            ("p99 > 50 for feature x", 10, "applies to psi, js", "`for`"),
            ("p99(1h) > 50", 4, "`p99` takes no argument", "`(`"),
            ("psi() > 0.2", 5, "a feature name", "`)`"),
            ("psi(x > 0.2", 7, "`)`", "`>`"),
            ("psi(\"x) > 0.2", 5, "a closing `\"`", "the end of the rule"),
            ("accuracy(1 h) < 0.9", 10, "a duration", "`1`"),
            ("accuracy(5w) < 0.9", 10, "a duration", "`5w`"),
            ("accuracy(0m) < 0.9", 10, "a duration", "`0m`"),
            ("accuracy(h) < 0.9", 10, "a duration", "`h`"),
        ];
        for (text, column, expected, found) in cases {
            let err = AlertRule::parse(text).expect_err(text);
            assert_eq!(err.column, column, "{text}: {err}");
            assert!(err.expected.contains(expected), "{text}: {err}");
            assert_eq!(err.found, found, "{text}: {err}");
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("alert rule `{text}`: at column {column} expected")),
                "{message}"
            );
        }
    }
}
