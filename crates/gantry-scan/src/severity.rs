//! How bad a vulnerability is, in the CVSS qualitative scale.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// CVSS v3/v4 qualitative severity; `Unknown` when an advisory gives none. Ordered from least
/// to most severe, with `Unknown` below `None` so that a gate on "at most high" never lets an
/// unrated finding count as critical, and a gate on `none` still admits unrated findings only
/// when the policy says so (the caller decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// All values, least severe first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::None,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name (`critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The CVSS v3.x/v4 rating of a base score: 0 none, 0.1–3.9 low, 4–6.9 medium,
    /// 7–8.9 high, 9–10 critical.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::None
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown severity name.
#[derive(Debug, thiserror::Error)]
#[error("unknown severity {0:?}: expected one of unknown, none, low, medium, high, critical")]
pub struct ParseSeverityError(String);

impl FromStr for Severity {
    type Err = ParseSeverityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == lower || (lower == "moderate" && *v == Severity::Medium))
            .ok_or_else(|| ParseSeverityError(s.to_string()))
    }
}
