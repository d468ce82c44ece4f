//! Severity of an OSV record: CVSS base scores (via the RustSec `cvss` crate) or the
//! qualitative rating of the distribution or database.

use std::str::FromStr;

use crate::Severity;
use crate::osv::{OsvAffected, OsvRecord, OsvSeverity, severity_text};

/// The base score of a CVSS vector of OSV severity type `kind` (`CVSS_V2`, `CVSS_V3`,
/// `CVSS_V4`); `None` when the vector does not parse.
pub(crate) fn base_score(kind: &str, vector: &str) -> Option<f64> {
    let vector = vector.trim();
    let score = match kind {
        "CVSS_V3" => ::cvss::v3::Vector::from_str(vector).ok()?.score().value(),
        "CVSS_V4" => ::cvss::v4::Vector::from_str(vector).ok()?.score().value(),
        "CVSS_V2" => {
            let bare = vector.strip_prefix("CVSS:2.0/").unwrap_or(vector);
            ::cvss::v2::Vector::from_str(bare).ok()?.score().value()
        }
        _ => return None,
    };
    score.is_finite().then_some(score)
}

/// The first computable CVSS score of a `severity` array, preferring v3, then v4, then v2.
fn cvss_of(entries: &[OsvSeverity]) -> Option<f64> {
    ["CVSS_V3", "CVSS_V4", "CVSS_V2"].iter().find_map(|kind| {
        entries
            .iter()
            .filter(|e| e.kind == *kind)
            .find_map(|e| base_score(kind, &e.score))
    })
}

/// A qualitative rating: CVSS names, GHSA's `MODERATE`, Debian urgencies (`unimportant`,
/// `low**`), Ubuntu priorities (`negligible`).
pub(crate) fn qualitative(text: &str) -> Option<Severity> {
    let word: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    Some(match word.as_str() {
        "critical" => Severity::Critical,
        "high" | "important" => Severity::High,
        "medium" | "moderate" => Severity::Medium,
        "low" | "negligible" | "unimportant" => Severity::Low,
        "none" => Severity::None,
        _ => return None,
    })
}

/// A qualitative entry of a `severity` array (`{"type": "Ubuntu", "score": "medium"}`).
fn qualitative_of(entries: &[OsvSeverity]) -> Option<Severity> {
    entries
        .iter()
        .filter(|e| !e.kind.starts_with("CVSS_"))
        .find_map(|e| qualitative(&e.score))
}

/// The severity and score of one affected entry of `record`: a CVSS vector (the entry's own,
/// then the record's), else a qualitative rating (the entry's `severity`,
/// `ecosystem_specific`, `database_specific`, then the record's), else `Unknown`.
pub(crate) fn rate(record: &OsvRecord, affected: &OsvAffected) -> (Severity, Option<f64>) {
    if let Some(score) = cvss_of(&affected.severity).or_else(|| cvss_of(&record.severity)) {
        return (Severity::from_score(score), Some(score));
    }
    let severity = qualitative_of(&affected.severity)
        .or_else(|| severity_text(affected.ecosystem_specific.as_ref()).and_then(qualitative))
        .or_else(|| severity_text(affected.database_specific.as_ref()).and_then(qualitative))
        .or_else(|| qualitative_of(&record.severity))
        .or_else(|| severity_text(record.database_specific.as_ref()).and_then(qualitative))
        .unwrap_or(Severity::Unknown);
    (severity, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_scores() {
        let cases = [
            (
                "CVSS_V3",
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                9.8,
            ),
            (
                "CVSS_V3",
                "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
                5.5,
            ),
            (
                "CVSS_V3",
                "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
                6.1,
            ),
            (
                "CVSS_V3",
                "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N",
                0.0,
            ),
            ("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5),
            (
                "CVSS_V4",
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                9.3,
            ),
        ];
        for (kind, vector, want) in cases {
            let got = base_score(kind, vector);
            assert!(
                got.is_some_and(|g| (g - want).abs() < 1e-9),
                "{vector}: {got:?}"
            );
        }
        assert_eq!(base_score("CVSS_V3", "CVSS:3.1/AV:X"), None);
        assert_eq!(base_score("CVSS_V3", "garbage"), None);
    }

    #[test]
    fn qualitative_names() {
        assert_eq!(qualitative("MODERATE"), Some(Severity::Medium));
        assert_eq!(qualitative("low**"), Some(Severity::Low));
        assert_eq!(qualitative("unimportant"), Some(Severity::Low));
        assert_eq!(qualitative("not yet assigned"), None);
    }
}
