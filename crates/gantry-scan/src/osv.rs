//! The parts of the OSV schema (<https://ossf.github.io/osv-schema/>) that matching and
//! reporting need; everything else in a record is ignored.

use serde::{Deserialize, Deserializer};

/// One OSV record as published.
#[derive(Debug, Deserialize)]
pub(crate) struct OsvRecord {
    pub id: String,
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub severity: Vec<OsvSeverity>,
    #[serde(default, deserialize_with = "null_default")]
    pub affected: Vec<OsvAffected>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// A `severity` entry: `CVSS_V3` + vector, or a qualitative rating such as `Ubuntu` + `medium`.
#[derive(Debug, Deserialize)]
pub(crate) struct OsvSeverity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

/// An `affected` entry.
#[derive(Debug, Deserialize)]
pub(crate) struct OsvAffected {
    #[serde(default)]
    pub package: Option<OsvPackage>,
    #[serde(default, deserialize_with = "null_default")]
    pub severity: Vec<OsvSeverity>,
    #[serde(default, deserialize_with = "null_default")]
    pub ranges: Vec<OsvRange>,
    #[serde(default, deserialize_with = "null_default")]
    pub versions: Vec<String>,
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// `affected[].package`.
#[derive(Debug, Deserialize)]
pub(crate) struct OsvPackage {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
}

/// `affected[].ranges[]`.
#[derive(Debug, Deserialize)]
pub(crate) struct OsvRange {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<OsvEvent>,
}

/// One range event; exactly one field is set.
#[derive(Debug, Deserialize)]
pub(crate) struct OsvEvent {
    #[serde(default)]
    pub introduced: Option<String>,
    #[serde(default)]
    pub fixed: Option<String>,
    #[serde(default)]
    pub last_affected: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A `severity` string in a `database_specific` or `ecosystem_specific` object
/// (`severity`, or Debian's `urgency`).
pub(crate) fn severity_text(value: Option<&serde_json::Value>) -> Option<&str> {
    let obj = value?.as_object()?;
    ["severity", "urgency"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(serde_json::Value::as_str))
}
