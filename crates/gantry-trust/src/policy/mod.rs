//! The trust policy: which images may run, decided before they run.
//!
//! A policy file (`/etc/gantry/policy.yaml` or `$GANTRY_HOME/policy.yaml`):
//!
//! ```yaml
//! mode: enforce                 # what a violated rule does by default: enforce (deny) | warn
//! registries: [localhost:5000, ghcr.io]   # optional: images from any other registry are denied
//! rules:
//!   - images: ["localhost:5000/team/**"]  # globs on registry/repository (no tag or digest)
//!     mode: warn                # optional, overrides the top-level mode for this rule
//!     require_digest: true      # the reference must pin @sha256:…
//!     signatures:
//!       any_of: [keys/team.pub] # or all_of: [...]; relative to this file's directory
//!     max_severity: high        # none | low | medium | high | critical
//!     deny_unrated: false       # deny findings with no severity rating (default: allowed)
//!   - images: ["docker.io/library/busybox"]
//! ```
//!
//! Semantics:
//!
//! - Image names are normalized first (`busybox` is `docker.io/library/busybox`, see
//!   [`ImageRef`]); patterns must be written normalized and start with a registry or a
//!   wildcard. `*` matches within one path segment, `**` across segments.
//! - `registries`, when given, is checked first: an image from any other registry is denied.
//! - Rules are tried in order and **the first rule whose `images` match decides**; an image
//!   that matches no rule is denied. Put narrow rules before broad ones.
//! - A rule with no requirement admits its images (an allow-list entry).
//! - `signatures`: `any_of` needs a valid cosign signature by at least one of the keys,
//!   `all_of` by every one. Keys are SPKI PEM files (cosign's `cosign.pub`), loaded when the
//!   policy is loaded; a missing or bad key file is a policy error naming it.
//! - `max_severity`: the worst vulnerability the scan found may be at most this. Findings
//!   without a severity rating (`unknown`) do not count against it: an advisory with no rating
//!   is not evidence of a critical one. `deny_unrated: true` denies them instead.
//!   `max_severity: unknown` is refused as meaningless; use `max_severity: none` together with
//!   `deny_unrated: true` to allow no finding at all.
//! - `mode: warn` turns every denial of the rule into a warning that still lets the image run
//!   with the reasons recorded; a top-level `mode: warn` does the same for images that match no
//!   rule or come from a registry not listed (a dry run of a new policy).
//! - Unknown keys are errors; every error names the file, line and column.
//!
//! Evaluation is two-phase so the caller does only the I/O a rule needs:
//! [`Policy::rule_for`] picks the rule (or decides at once), [`Rule::needs_signatures`] and
//! [`Rule::needs_scan`] say what to gather, and [`Rule::decide`] turns the [`Facts`] into a
//! [`Decision`].

mod glob;
mod reference;

use std::fmt;
use std::path::{Path, PathBuf};

use gantry_scan::Severity;
use serde::{Deserialize, Serialize};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use crate::keys::{KeyId, PublicKey};
use crate::verify::Verification;

pub use glob::Glob;
pub use reference::{DOCKER_HUB, ImageRef, ReferenceError};

/// The largest policy file read.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("could not read the trust policy {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", origin.display())]
    Invalid {
        origin: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
}

/// What a violated rule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the image.
    #[default]
    Enforce,
    /// Let it run, recording a warning with the reasons.
    Warn,
}

/// The verdict on one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Warn,
    Deny,
}

/// A decision with the rule that made it and why; recorded on runs, deployments and in the
/// audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// The rule that decided (`rules[0] localhost:5000/team/**`), `registries`, or `None` when
    /// no rule matched.
    pub rule: Option<String>,
    /// Readable sentences: what failed, or what was checked when allowed.
    pub reasons: Vec<String>,
}

impl Decision {
    /// The decision for the built-in image, trusted by construction.
    pub fn builtin() -> Decision {
        Decision {
            outcome: Outcome::Allow,
            rule: Some("built-in image".into()),
            reasons: vec!["digest of the running binary".into()],
        }
    }

    /// Whether the image may run (allowed, or a warning).
    pub fn permits(&self) -> bool {
        self.outcome != Outcome::Deny
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            Outcome::Allow => "allowed",
            Outcome::Warn => "allowed with warnings",
            Outcome::Deny => "denied",
        };
        write!(f, "{outcome}")?;
        if let Some(rule) = &self.rule {
            write!(f, " by {rule}")?;
        }
        if !self.reasons.is_empty() {
            write!(f, ": {}", self.reasons.join("; "))?;
        }
        Ok(())
    }
}

fn violated(mode: Mode, rule: Option<String>, reasons: Vec<String>) -> Decision {
    Decision {
        outcome: match mode {
            Mode::Enforce => Outcome::Deny,
            Mode::Warn => Outcome::Warn,
        },
        rule,
        reasons,
    }
}

/// What the caller found out about an image, for [`Rule::decide`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Whether the reference pinned a digest.
    pub pinned: bool,
    /// The image's manifest digest, when resolved.
    pub digest: Option<String>,
    /// The signature check, or `None` when signatures were not checked.
    pub signatures: Option<Verification>,
    /// The worst severity the scan found (`Some(Severity::None)` for a clean scan), or `None`
    /// when the image was not scanned.
    pub worst_severity: Option<Severity>,
    /// Whether the scan found vulnerabilities without a severity rating.
    pub unrated_findings: bool,
}

/// A public key a rule trusts, with the path it was written as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// The path as written in the policy.
    pub path: String,
    pub key: PublicKey,
}

impl TrustedKey {
    fn describe(&self) -> String {
        format!("{} ({})", self.path, self.key.id().short())
    }
}

/// Which signatures a rule requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureRequirement {
    /// A valid signature by at least one of the keys.
    AnyOf(Vec<TrustedKey>),
    /// A valid signature by every key.
    AllOf(Vec<TrustedKey>),
}

impl SignatureRequirement {
    /// The keys named.
    pub fn keys(&self) -> &[TrustedKey] {
        match self {
            SignatureRequirement::AnyOf(k) | SignatureRequirement::AllOf(k) => k,
        }
    }
}

/// One rule of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    index: usize,
    images: Vec<Glob>,
    mode: Mode,
    require_digest: bool,
    signatures: Option<SignatureRequirement>,
    max_severity: Option<Severity>,
    deny_unrated: bool,
}

impl Rule {
    /// `rules[<index>] <patterns>`, as recorded in decisions.
    pub fn label(&self) -> String {
        let patterns: Vec<&str> = self.images.iter().map(Glob::as_str).collect();
        format!("rules[{}] {}", self.index, patterns.join(", "))
    }

    /// The rule's position in the file, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The rule's mode (its own, or the policy's default).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the reference must pin a digest.
    pub fn requires_digest(&self) -> bool {
        self.require_digest
    }

    /// Whether the caller must check signatures (with [`Rule::keys`]).
    pub fn needs_signatures(&self) -> bool {
        self.signatures.is_some()
    }

    /// The signature requirement, if any.
    pub fn signatures(&self) -> Option<&SignatureRequirement> {
        self.signatures.as_ref()
    }

    /// The keys to verify signatures with (empty when none are required).
    pub fn keys(&self) -> Vec<PublicKey> {
        self.signatures
            .as_ref()
            .map(|s| s.keys().iter().map(|k| k.key.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether the caller must scan the image.
    pub fn needs_scan(&self) -> bool {
        self.max_severity.is_some() || self.deny_unrated
    }

    /// The highest severity allowed, if the rule gates on vulnerabilities.
    pub fn max_severity(&self) -> Option<Severity> {
        self.max_severity
    }

    /// Decides on an image this rule matched.
    pub fn decide(&self, facts: &Facts) -> Decision {
        let mut violations = Vec::new();
        let mut details = Vec::new();
        let mut passed = Vec::new();
        if self.require_digest {
            if facts.pinned {
                passed.push(match &facts.digest {
                    Some(d) => format!("pinned to {d}"),
                    None => "pinned to a digest".to_owned(),
                });
            } else {
                violations.push(
                    "the image is not pinned to a digest; the rule requires `name@sha256:…` \
                     (require_digest)"
                        .to_owned(),
                );
            }
        }
        if let Some(requirement) = &self.signatures {
            self.check_signatures(
                requirement,
                facts,
                &mut violations,
                &mut details,
                &mut passed,
            );
        }
        if self.needs_scan() {
            self.check_scan(facts, &mut violations, &mut passed);
        }
        if violations.is_empty() {
            if passed.is_empty() {
                passed.push("the rule admits these images without further requirements".into());
            }
            return Decision {
                outcome: Outcome::Allow,
                rule: Some(self.label()),
                reasons: passed,
            };
        }
        violations.extend(details);
        violated(self.mode, Some(self.label()), violations)
    }

    fn check_signatures(
        &self,
        requirement: &SignatureRequirement,
        facts: &Facts,
        violations: &mut Vec<String>,
        details: &mut Vec<String>,
        passed: &mut Vec<String>,
    ) {
        let Some(verification) = &facts.signatures else {
            violations.push("signatures were not checked, and the rule requires them".into());
            return;
        };
        let signed = |k: &&TrustedKey| verification.is_verified_by(k.key.id());
        let describe = |keys: &[&TrustedKey]| {
            keys.iter()
                .map(|k| k.describe())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (by, missing): (Vec<&TrustedKey>, Vec<&TrustedKey>) =
            requirement.keys().iter().partition(signed);
        let ok = match requirement {
            SignatureRequirement::AnyOf(_) => !by.is_empty(),
            SignatureRequirement::AllOf(_) => missing.is_empty(),
        };
        if ok {
            passed.push(format!("signed by {}", describe(&by)));
            return;
        }
        let none_found = verification.verified_by.is_empty() && verification.rejected.is_empty();
        let suffix = if none_found {
            ": the image has no signatures"
        } else {
            ""
        };
        violations.push(match requirement {
            SignatureRequirement::AnyOf(_) => {
                format!("not signed by any of {}{suffix}", describe(&missing))
            }
            SignatureRequirement::AllOf(_) => format!(
                "not signed by {}, which all_of requires{suffix}",
                describe(&missing)
            ),
        });
        details.extend(verification.rejected.iter().map(|r| r.reason.clone()));
    }

    fn check_scan(&self, facts: &Facts, violations: &mut Vec<String>, passed: &mut Vec<String>) {
        let Some(worst) = facts.worst_severity else {
            violations.push(
                "the image was not scanned for vulnerabilities, and the rule gates on them".into(),
            );
            return;
        };
        let unrated = worst == Severity::Unknown || facts.unrated_findings;
        if let Some(max) = self.max_severity {
            if worst > max {
                violations.push(format!(
                    "the worst vulnerability is {worst}, above max_severity {max}"
                ));
            } else {
                passed.push(format!(
                    "worst vulnerability {worst}, within max_severity {max}"
                ));
            }
        }
        if unrated && self.deny_unrated {
            violations.push(
                "the scan found vulnerabilities without a severity rating (deny_unrated)".into(),
            );
        }
    }
}

/// A loaded trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    origin: PathBuf,
    mode: Mode,
    registries: Option<Vec<String>>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    registries: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    images: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    require_digest: bool,
    #[serde(default)]
    signatures: Option<Spanned<RawSignatures>>,
    #[serde(default)]
    max_severity: Option<Spanned<String>>,
    #[serde(default)]
    deny_unrated: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignatures {
    #[serde(default)]
    any_of: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    all_of: Option<Vec<Spanned<String>>>,
}

impl Policy {
    /// Reads and parses a policy file; key paths are relative to its directory.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let read_err = |source| PolicyError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_POLICY_BYTES as u64 {
            return Err(read_err(std::io::Error::other(format!(
                "it is {} bytes, more than the {MAX_POLICY_BYTES} allowed",
                meta.len()
            ))));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Policy::parse(&text, path)
    }

    /// Parses policy text; `origin` is the file it came from (named in errors; key paths are
    /// relative to its directory).
    pub fn parse(text: &str, origin: &Path) -> Result<Policy, PolicyError> {
        let at = |line: u64, column: u64, message: String| PolicyError::Invalid {
            origin: origin.to_owned(),
            line: line.max(1),
            column: column.max(1),
            message,
        };
        let located =
            |loc: &serde_saphyr::Location, message: String| at(loc.line(), loc.column(), message);
        if text.len() > MAX_POLICY_BYTES {
            return Err(at(
                1,
                1,
                format!("the policy is larger than {MAX_POLICY_BYTES} bytes"),
            ));
        }
        let options = serde_saphyr::options! { strict_booleans: true };
        let raw: Option<RawPolicy> = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| yaml_error(&e, origin))?;
        let Some(raw) = raw else {
            return Err(at(
                1,
                1,
                "the policy is empty; an empty policy would deny every image (write `rules: []` \
                 if that is what you want)"
                    .into(),
            ));
        };
        let mode = raw.mode.unwrap_or_default();
        let registries = match raw.registries {
            None => None,
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for registry in list {
                    let name = registry.value.trim();
                    reference::validate_registry(name)
                        .map_err(|m| located(&registry.referenced, m))?;
                    out.push(match name {
                        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
                        other => other.to_owned(),
                    });
                }
                Some(out)
            }
        };
        let base = origin.parent().unwrap_or(Path::new("."));
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (index, spanned) in raw.rules.into_iter().enumerate() {
            let raw_rule = spanned.value;
            if raw_rule.images.value.is_empty() {
                return Err(located(
                    &raw_rule.images.referenced,
                    format!("rules[{index}]: `images` is empty; list at least one pattern"),
                ));
            }
            let mut images = Vec::new();
            for pattern in &raw_rule.images.value {
                let glob = Glob::new(pattern.value.trim())
                    .map_err(|m| located(&pattern.referenced, format!("rules[{index}]: {m}")))?;
                images.push(glob);
            }
            let signatures = match raw_rule.signatures {
                None => None,
                Some(sig) => Some(load_requirement(sig, index, base, &located)?),
            };
            let max_severity = match raw_rule.max_severity {
                None => None,
                Some(s) => Some(
                    parse_max_severity(&s.value)
                        .map_err(|m| located(&s.referenced, format!("rules[{index}]: {m}")))?,
                ),
            };
            rules.push(Rule {
                index,
                images,
                mode: raw_rule.mode.unwrap_or(mode),
                require_digest: raw_rule.require_digest,
                signatures,
                max_severity,
                deny_unrated: raw_rule.deny_unrated,
            });
        }
        Ok(Policy {
            origin: origin.to_owned(),
            mode,
            registries,
            rules,
        })
    }

    /// The file the policy came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The default mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The allowed registries, when restricted.
    pub fn registries(&self) -> Option<&[String]> {
        self.registries.as_deref()
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every distinct key the policy names, for callers that verify once for all rules.
    pub fn key_ids(&self) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = self
            .rules
            .iter()
            .flat_map(|r| r.keys().into_iter().map(|k| k.id().clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The rule that decides on `reference`, or the decision itself when the registry is not
    /// allowed or no rule matches (a denial, or a warning under a top-level `mode: warn`).
    pub fn rule_for(&self, reference: &ImageRef) -> Result<&Rule, Decision> {
        if let Some(allowed) = &self.registries
            && !allowed.iter().any(|r| r == &reference.registry)
        {
            return Err(violated(
                self.mode,
                Some("registries".into()),
                vec![format!(
                    "registry {} is not one of the policy's registries ({}) in {}",
                    reference.registry,
                    allowed.join(", "),
                    self.origin.display()
                )],
            ));
        }
        let name = reference.name();
        self.rules
            .iter()
            .find(|rule| rule.images.iter().any(|g| g.matches(&name)))
            .ok_or_else(|| {
                violated(
                    self.mode,
                    None,
                    vec![format!(
                        "no rule in {} matches {name}; images that match no rule are denied",
                        self.origin.display()
                    )],
                )
            })
    }
}

fn parse_max_severity(text: &str) -> Result<Severity, String> {
    let severity: Severity = text.trim().parse().map_err(|_| {
        format!("max_severity `{text}` is not one of none, low, medium, high, critical")
    })?;
    if severity == Severity::Unknown {
        return Err(
            "max_severity cannot be `unknown`; to deny unrated findings write \
                    `deny_unrated: true`"
                .into(),
        );
    }
    Ok(severity)
}

fn load_requirement(
    sig: Spanned<RawSignatures>,
    index: usize,
    base: &Path,
    located: &dyn Fn(&serde_saphyr::Location, String) -> PolicyError,
) -> Result<SignatureRequirement, PolicyError> {
    let (all, list) = match (sig.value.any_of, sig.value.all_of) {
        (Some(list), None) => (false, list),
        (None, Some(list)) => (true, list),
        (Some(_), Some(_)) => {
            return Err(located(
                &sig.referenced,
                format!("rules[{index}].signatures: give either `any_of` or `all_of`, not both"),
            ));
        }
        (None, None) => {
            return Err(located(
                &sig.referenced,
                format!("rules[{index}].signatures: give `any_of` or `all_of` with key files"),
            ));
        }
    };
    if list.is_empty() {
        return Err(located(
            &sig.referenced,
            format!("rules[{index}].signatures: the key list is empty"),
        ));
    }
    let mut keys = Vec::with_capacity(list.len());
    for entry in list {
        let written = entry.value.trim().to_owned();
        let path = base.join(&written);
        let key = PublicKey::load(&path).map_err(|e| {
            located(
                &entry.referenced,
                format!("rules[{index}].signatures: key file {written}: {e}"),
            )
        })?;
        keys.push(TrustedKey { path: written, key });
    }
    Ok(if all {
        SignatureRequirement::AllOf(keys)
    } else {
        SignatureRequirement::AnyOf(keys)
    })
}

fn yaml_error(err: &serde_saphyr::Error, origin: &Path) -> PolicyError {
    let inner = err.without_snippet();
    let (line, column) = inner
        .location()
        .filter(|l| l.line() > 0)
        .map_or((1, 1), |l| (l.line(), l.column().max(1)));
    let text = UserMessageFormatter.format_message(inner);
    let message: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    PolicyError::Invalid {
        origin: origin.to_owned(),
        line,
        column,
        message,
    }
}
