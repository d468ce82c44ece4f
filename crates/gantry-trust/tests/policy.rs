//! The trust policy, one story per rule and mode: what an operator writes in `policy.yaml`
//! and what happens to an image.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use gantry_scan::Severity;
use gantry_trust::{
    Decision, Facts, ImageRef, KeyId, Outcome, Policy, PolicyError, SignatureSet, SigningKey,
    Verification, generate_key_pair, sha256_digest,
};

struct Setup {
    dir: tempfile::TempDir,
    team: SigningKey,
    release: SigningKey,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let mut keys = Vec::new();
    for name in ["team", "release"] {
        let pair = generate_key_pair().unwrap();
        std::fs::write(
            dir.path().join(format!("keys/{name}.pub")),
            &pair.public_pem,
        )
        .unwrap();
        keys.push(SigningKey::from_pem(&pair.private_pem).unwrap());
    }
    let release = keys.pop().unwrap();
    let team = keys.pop().unwrap();
    Setup { dir, team, release }
}

impl Setup {
    fn policy(&self, yaml: &str) -> Result<Policy, PolicyError> {
        let path = self.path();
        std::fs::write(&path, yaml).unwrap();
        Policy::load(&path)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }
}

fn image(reference: &str) -> ImageRef {
    ImageRef::parse(reference).unwrap()
}

fn pinned(repo: &str) -> (ImageRef, String) {
    let digest = sha256_digest(repo.as_bytes());
    (image(&format!("{repo}@{digest}")), digest)
}

/// Signs `digest` with each key and verifies with `policy`'s rule keys, as the caller would.
fn signed_by(
    keys: &[&SigningKey],
    digest: &str,
    verify_with: &[gantry_trust::PublicKey],
) -> Verification {
    let mut set = SignatureSet::new();
    for key in keys {
        set.sign(key, "localhost:5000/team/model", digest, None)
            .unwrap();
    }
    set.verify(digest, verify_with)
}

fn decide(policy: &Policy, reference: &ImageRef, facts: &Facts) -> Decision {
    match policy.rule_for(reference) {
        Ok(rule) => rule.decide(facts),
        Err(decision) => decision,
    }
}

#[test]
fn an_image_that_matches_no_rule_is_denied() {
    let s = setup();
    let policy = s
        .policy("rules:\n  - images: [\"localhost:5000/team/**\"]\n")
        .unwrap();
    let decision = decide(&policy, &image("ghcr.io/other/app:1"), &Facts::default());
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.rule, None);
    assert!(decision.reasons[0].contains("no rule in"), "{decision}");
    assert!(decision.reasons[0].contains("ghcr.io/other/app"));
}

#[test]
fn an_allow_listed_image_runs_and_the_first_matching_rule_decides() {
    let s = setup();
    let policy = s
        .policy(
            "rules:\n  - images: [docker.io/library/busybox]\n  - images: [\"**\"]\n    require_digest: true\n",
        )
        .unwrap();
    // `busybox` normalizes to docker.io/library/busybox: rule 0, no requirements.
    let decision = decide(&policy, &image("busybox:1.36"), &Facts::default());
    assert_eq!(decision.outcome, Outcome::Allow, "{decision}");
    assert_eq!(
        decision.rule.as_deref(),
        Some("rules[0] docker.io/library/busybox")
    );
    // Anything else falls to rule 1.
    let decision = decide(&policy, &image("alpine:3"), &Facts::default());
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.rule.as_deref(), Some("rules[1] **"));
}

#[test]
fn an_image_from_a_registry_not_listed_is_denied() {
    let s = setup();
    let policy = s
        .policy("registries: [localhost:5000]\nrules:\n  - images: [\"**\"]\n")
        .unwrap();
    let decision = decide(&policy, &image("ghcr.io/org/app:1"), &Facts::default());
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.rule.as_deref(), Some("registries"));
    assert!(
        decision.reasons[0]
            .contains("registry ghcr.io is not one of the policy's registries (localhost:5000)")
    );
    let ok = decide(
        &policy,
        &image("localhost:5000/team/model:1"),
        &Facts::default(),
    );
    assert_eq!(ok.outcome, Outcome::Allow);
}

#[test]
fn a_rule_requiring_a_digest_denies_a_tag_only_reference() {
    let s = setup();
    let policy = s
        .policy("rules:\n  - images: [\"localhost:5000/**\"]\n    require_digest: true\n")
        .unwrap();
    let tagged = image("localhost:5000/team/model:latest");
    let rule = policy.rule_for(&tagged).unwrap();
    assert!(rule.requires_digest() && !rule.needs_signatures() && !rule.needs_scan());
    let decision = rule.decide(&Facts {
        pinned: tagged.is_pinned(),
        ..Facts::default()
    });
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(
        decision.reasons[0].contains("not pinned to a digest"),
        "{decision}"
    );

    let (reference, digest) = pinned("localhost:5000/team/model");
    let decision = decide(
        &policy,
        &reference,
        &Facts {
            pinned: reference.is_pinned(),
            digest: Some(digest.clone()),
            ..Facts::default()
        },
    );
    assert_eq!(decision.outcome, Outcome::Allow);
    assert_eq!(decision.reasons, vec![format!("pinned to {digest}")]);
}

const ANY_OF: &str = "rules:
  - images: [\"localhost:5000/team/**\"]
    signatures:
      any_of: [keys/team.pub, keys/release.pub]
";

const ALL_OF: &str = "rules:
  - images: [\"localhost:5000/team/**\"]
    signatures:
      all_of: [keys/team.pub, keys/release.pub]
";

#[test]
fn any_of_is_satisfied_by_one_listed_key_and_denies_without_signatures() {
    let s = setup();
    let policy = s.policy(ANY_OF).unwrap();
    let (reference, digest) = pinned("localhost:5000/team/model");
    let rule = policy.rule_for(&reference).unwrap();
    assert!(rule.needs_signatures());
    let keys = rule.keys();
    assert_eq!(keys.len(), 2);

    let facts = |v: Option<Verification>| Facts {
        pinned: true,
        digest: Some(digest.clone()),
        signatures: v,
        ..Facts::default()
    };
    let ok = rule.decide(&facts(Some(signed_by(&[&s.release], &digest, &keys))));
    assert_eq!(ok.outcome, Outcome::Allow, "{ok}");
    assert!(ok.reasons[0].starts_with("signed by keys/release.pub (sha256:"));

    let none = rule.decide(&facts(Some(Verification::default())));
    assert_eq!(none.outcome, Outcome::Deny);
    assert!(
        none.reasons[0].contains("not signed by any of keys/team.pub"),
        "{none}"
    );
    assert!(none.reasons[0].contains("the image has no signatures"));

    let unchecked = rule.decide(&facts(None));
    assert_eq!(unchecked.outcome, Outcome::Deny);
    assert!(unchecked.reasons[0].contains("signatures were not checked"));

    // A signature by a key the policy does not list does not count, and says why.
    let stranger = SigningKey::from_pem(&generate_key_pair().unwrap().private_pem).unwrap();
    let foreign = rule.decide(&facts(Some(signed_by(&[&stranger], &digest, &keys))));
    assert_eq!(foreign.outcome, Outcome::Deny);
    assert!(
        foreign.reasons[1].contains("no signature verifies with any of the keys"),
        "{foreign}"
    );
}

#[test]
fn all_of_needs_every_listed_key() {
    let s = setup();
    let policy = s.policy(ALL_OF).unwrap();
    let (reference, digest) = pinned("localhost:5000/team/model");
    let rule = policy.rule_for(&reference).unwrap();
    let keys = rule.keys();
    let facts = |v: Verification| Facts {
        pinned: true,
        digest: Some(digest.clone()),
        signatures: Some(v),
        ..Facts::default()
    };
    let one = rule.decide(&facts(signed_by(&[&s.team], &digest, &keys)));
    assert_eq!(one.outcome, Outcome::Deny);
    assert!(
        one.reasons[0].starts_with("not signed by keys/release.pub (sha256:")
            && one.reasons[0].contains("which all_of requires"),
        "{one}"
    );
    let both = rule.decide(&facts(signed_by(&[&s.team, &s.release], &digest, &keys)));
    assert_eq!(both.outcome, Outcome::Allow, "{both}");
    let ids: Vec<&KeyId> = keys.iter().map(|k| k.id()).collect();
    assert_eq!(ids.len(), 2);
}

const GATE: &str = "rules:
  - images: [\"**\"]
    max_severity: high
";

fn scanned(worst: Option<Severity>) -> Facts {
    Facts {
        worst_severity: worst,
        ..Facts::default()
    }
}

#[test]
fn max_severity_denies_worse_findings_and_allows_the_rest() {
    let s = setup();
    let policy = s.policy(GATE).unwrap();
    let reference = image("ghcr.io/org/app:1");
    let rule = policy.rule_for(&reference).unwrap();
    assert!(rule.needs_scan());
    let critical = rule.decide(&scanned(Some(Severity::Critical)));
    assert_eq!(critical.outcome, Outcome::Deny);
    assert_eq!(
        critical.reasons,
        vec!["the worst vulnerability is critical, above max_severity high".to_owned()]
    );
    for ok in [
        Severity::High,
        Severity::Low,
        Severity::None,
        Severity::Unknown,
    ] {
        assert_eq!(
            rule.decide(&scanned(Some(ok))).outcome,
            Outcome::Allow,
            "{ok}"
        );
    }
    let unscanned = rule.decide(&scanned(None));
    assert_eq!(unscanned.outcome, Outcome::Deny);
    assert!(unscanned.reasons[0].contains("not scanned"));
}

#[test]
fn deny_unrated_refuses_findings_without_a_severity() {
    let s = setup();
    let policy = s
        .policy("rules:\n  - images: [\"**\"]\n    max_severity: none\n    deny_unrated: true\n")
        .unwrap();
    let rule = policy.rule_for(&image("alpine")).unwrap();
    assert_eq!(
        rule.decide(&scanned(Some(Severity::None))).outcome,
        Outcome::Allow
    );
    assert_eq!(
        rule.decide(&scanned(Some(Severity::Unknown))).outcome,
        Outcome::Deny
    );
    let mixed = rule.decide(&Facts {
        worst_severity: Some(Severity::None),
        unrated_findings: true,
        ..Facts::default()
    });
    assert_eq!(mixed.outcome, Outcome::Deny);
    assert!(mixed.reasons[0].contains("without a severity rating"));
}

#[test]
fn warn_mode_turns_each_denial_into_a_warning_with_the_same_reasons() {
    let s = setup();
    let enforce = "registries: [localhost:5000]\nrules:\n  - images: [\"localhost:5000/team/**\"]\n    require_digest: true\n    max_severity: medium\n    signatures:\n      all_of: [keys/team.pub]\n".to_owned();
    let rule_warn = enforce.replace("require_digest", "mode: warn\n    require_digest");
    let global_warn = format!("mode: warn\n{enforce}");

    let tagged = image("localhost:5000/team/model:latest");
    let facts = Facts {
        pinned: false,
        signatures: Some(Verification::default()),
        worst_severity: Some(Severity::High),
        ..Facts::default()
    };
    let denied = decide(&s.policy(&enforce).unwrap(), &tagged, &facts);
    assert_eq!(denied.outcome, Outcome::Deny);
    assert_eq!(denied.reasons.len(), 3, "{denied}");
    for yaml in [&rule_warn, &global_warn] {
        let warned = decide(&s.policy(yaml).unwrap(), &tagged, &facts);
        assert_eq!(warned.outcome, Outcome::Warn);
        assert!(warned.permits());
        assert_eq!(warned.reasons, denied.reasons);
    }

    // A top-level warn also softens "no rule" and "registry not listed"; a rule's own warn
    // does not.
    let global = s.policy(&global_warn).unwrap();
    assert_eq!(
        decide(&global, &image("ghcr.io/x/y"), &facts).outcome,
        Outcome::Warn
    );
    assert_eq!(
        decide(&global, &image("localhost:5000/other/y"), &facts).outcome,
        Outcome::Warn
    );
    let per_rule = s.policy(&rule_warn).unwrap();
    assert_eq!(
        decide(&per_rule, &image("ghcr.io/x/y"), &facts).outcome,
        Outcome::Deny
    );
}

#[test]
fn decisions_serialize_for_the_audit_log() {
    let builtin = Decision::builtin();
    let json = serde_json::to_value(&builtin).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"outcome": "allow", "rule": "built-in image", "reasons": ["digest of the running binary"]})
    );
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, builtin);
}

fn error_of(s: &Setup, yaml: &str) -> String {
    let err = s.policy(yaml).unwrap_err();
    let message = err.to_string();
    let prefix = format!("{}:", s.path().display());
    assert!(message.starts_with(&prefix), "{message}");
    message[prefix.len()..].to_owned()
}

#[test]
fn parse_errors_carry_line_and_column() {
    let s = setup();
    let unknown = error_of(&s, "rules:\n  - images: [\"**\"]\n    max_severty: high\n");
    assert!(unknown.starts_with("3:5: "), "{unknown}");
    assert!(unknown.contains("max_severty"), "{unknown}");

    let bad_mode = error_of(&s, "mode: audit\nrules: []\n");
    assert!(bad_mode.starts_with("1:7: "), "{bad_mode}");

    let bad_yaml = error_of(&s, "rules:\n  - images: [\"**\"\n");
    assert!(
        bad_yaml.starts_with("2:") || bad_yaml.starts_with("3:"),
        "{bad_yaml}"
    );

    let unnormalized = error_of(&s, "rules:\n  - images: [busybox]\n");
    assert!(unnormalized.starts_with("2:14: "), "{unnormalized}");
    assert!(
        unnormalized.contains("docker.io/library/busybox"),
        "{unnormalized}"
    );

    let severity = error_of(
        &s,
        "rules:\n  - images: [\"**\"]\n    max_severity: severe\n",
    );
    assert!(severity.starts_with("3:19: "), "{severity}");
    let unknown_severity = error_of(
        &s,
        "rules:\n  - images: [\"**\"]\n    max_severity: unknown\n",
    );
    assert!(
        unknown_severity.contains("deny_unrated"),
        "{unknown_severity}"
    );

    let both = error_of(
        &s,
        "rules:\n  - images: [\"**\"]\n    signatures:\n      any_of: [keys/team.pub]\n      all_of: [keys/team.pub]\n",
    );
    assert!(both.contains("not both"), "{both}");
}

#[test]
fn a_missing_or_bad_key_file_is_named_with_its_location() {
    let s = setup();
    let missing = error_of(
        &s,
        "rules:\n  - images: [\"**\"]\n    signatures:\n      any_of: [keys/team.pub, keys/gone.pub]\n",
    );
    assert!(missing.starts_with("4:31: "), "{missing}");
    assert!(missing.contains("key file keys/gone.pub"), "{missing}");

    std::fs::write(s.dir.path().join("keys/bad.pub"), "garbage").unwrap();
    let bad = error_of(
        &s,
        "rules:\n  - images: [\"**\"]\n    signatures:\n      all_of:\n        - keys/bad.pub\n",
    );
    assert!(bad.starts_with("5:11: "), "{bad}");
    assert!(
        bad.contains("key file keys/bad.pub") && bad.contains("BEGIN PUBLIC KEY"),
        "{bad}"
    );
}

#[test]
fn key_paths_are_relative_to_the_policy_file() {
    let s = setup();
    let text = ANY_OF;
    // Parsed as if it lived elsewhere, the relative key paths do not resolve.
    let elsewhere = Policy::parse(text, Path::new("/nonexistent/policy.yaml"));
    assert!(elsewhere.is_err());
    let here = Policy::parse(text, &s.path()).unwrap();
    assert_eq!(here.rules().len(), 1);
    assert_eq!(here.key_ids().len(), 2);
}
