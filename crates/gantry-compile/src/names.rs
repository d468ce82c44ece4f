//! Unique, valid names for templates, tasks and parameters.

use std::collections::HashSet;

use gantry_kube::names::dns_label;

/// Hands out DNS-1123 labels of at most `max` characters, each different from every one
/// handed out before: a name that is already valid is kept, any other gets a hash suffix
/// ([`dns_label`]); should that still collide (a step literally named like another's
/// label), the name is hashed again with a counter.
pub(crate) struct Namer {
    used: HashSet<String>,
    max: usize,
    /// Names kept as they are (besides valid labels).
    keep: fn(&str) -> bool,
    /// `-` becomes `_` in every name handed out.
    underscores: bool,
}

impl Namer {
    pub fn new(max: usize) -> Namer {
        Namer {
            used: HashSet::new(),
            max,
            keep: |_| false,
            underscores: false,
        }
    }

    /// For parameter names: `[A-Za-z_][A-Za-z0-9_-]*` is kept; for KFP (names inside
    /// `{{$.inputs.parameters['…']}}`) only without `-`, and hashed labels get `_` for `-`.
    pub fn params(max: usize, kfp: bool) -> Namer {
        Namer {
            used: HashSet::new(),
            max,
            keep: if kfp { kfp_param } else { argo_param },
            underscores: kfp,
        }
    }

    pub fn name(&mut self, text: &str) -> String {
        let mut candidate = if (self.keep)(text) && text.len() <= self.max {
            text.to_string()
        } else {
            dns_label(text, self.max)
        };
        let mut i = 1u32;
        loop {
            if self.underscores {
                candidate = candidate.replace('-', "_");
            }
            if self.used.insert(candidate.clone()) {
                return candidate;
            }
            candidate = dns_label(&format!("{text}#{i}"), self.max);
            i += 1;
        }
    }
}

fn argo_param(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn kfp_param(text: &str) -> bool {
    argo_param(text) && !text.contains('-')
}
