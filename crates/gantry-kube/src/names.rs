//! Kubernetes names made from Gantry's: valid, bounded and without collisions.

use sha2::{Digest, Sha256};

/// The longest DNS-1123 label (object names used in labels, container and template names).
pub const MAX_LABEL: usize = 63;

/// `text` as a DNS-1123 label of at most `max` characters (`[a-z0-9-]`, starting with a letter
/// and ending alphanumeric). A name that is already valid is returned unchanged; any other gets
/// `-` and the first 8 hex digits of its SHA-256 appended, so two different names never map to
/// the same label (`train[lr=0.1]` and `train[lr=0.2]` stay apart).
pub fn dns_label(text: &str, max: usize) -> String {
    let max = max.clamp(10, MAX_LABEL);
    if is_dns_label(text) && text.len() <= max {
        return text.to_string();
    }
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (clean.is_empty() || clean.ends_with('-'))) {
            clean.push(c);
        }
    }
    if !clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        clean.insert_str(0, "s-");
    }
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    clean.truncate(max - 9);
    let clean = clean.trim_end_matches('-');
    format!("{clean}-{}", &hash[..8])
}

/// Whether `text` is a non-empty DNS-1123 label that starts with a letter.
pub fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_LABEL
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && !text.ends_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `text` as a label *value* (`[A-Za-z0-9._-]`, at most 63, alphanumeric at both ends), with
/// the same hash suffix rule as [`dns_label`].
pub fn label_value(text: &str) -> String {
    let valid = |t: &str| {
        t.len() <= MAX_LABEL
            && (t.is_empty()
                || (t.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && t.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))))
    };
    if valid(text) {
        return text.to_string();
    }
    dns_label(text, MAX_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept_and_others_made_valid_without_collisions() {
        assert_eq!(dns_label("train", 63), "train");
        let a = dns_label("train[lr=0.1]", 63);
        let b = dns_label("train[lr=0.2]", 63);
        assert_ne!(a, b);
        assert!(is_dns_label(&a) && is_dns_label(&b), "{a} {b}");
        assert!(a.starts_with("train-lr-0-1-"), "{a}");
        let upper = dns_label("Train", 63);
        assert_ne!(upper, "train");
        assert!(is_dns_label(&upper));
        let digits = dns_label("1st", 63);
        assert!(digits.starts_with("s-1st-"), "{digits}");
        let long = "x".repeat(200);
        let l = dns_label(&long, 63);
        assert_eq!(l.len(), 63);
        assert!(is_dns_label(&l));
        assert_ne!(l, dns_label(&"x".repeat(201), 63));
        assert!(is_dns_label(&dns_label("---", 63)));
        assert!(is_dns_label(&dns_label("", 63)));
        assert!(is_dns_label(&dns_label("a_b", 20)));
        assert!(dns_label("a-very-long-step-name-indeed", 20).len() <= 20);
    }

    #[test]
    fn label_values_allow_what_kubernetes_allows() {
        assert_eq!(label_value("r-20261205-abc"), "r-20261205-abc");
        assert_eq!(label_value("Train.v2_x"), "Train.v2_x");
        let v = label_value("train[lr=0.1]");
        assert!(is_dns_label(&v), "{v}");
    }
}
