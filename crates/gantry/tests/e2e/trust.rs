//! Image trust: cosign-compatible signatures made with `gantry key generate` and checked with
//! `gantry image verify`, and the trust policy that decides which images `gantry run` may use
//! (rules, registries, pinned digests, signatures, vulnerability scans; enforce and warn).

use crate::support::{Gantry, both, text, wait_until};
use crate::test_registry::{self as oci, Layer, TarEntry, TestRegistry};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// `gantry key generate DIR/NAME`: returns (private key, public key).
fn generate_key(g: &Gantry, name: &str) -> (PathBuf, PathBuf) {
    let prefix = g.dir.path().join(name);
    g.ok(&["key", "generate", prefix.to_str().unwrap()]);
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

fn verify(g: &Gantry, reference: &str, keys: &[&Path]) -> (Option<i32>, Value) {
    let mut args = vec!["image", "verify", reference, "-o", "json"];
    for k in keys {
        args.push("--key");
        args.push(k.to_str().unwrap());
    }
    let out = g.run(&args);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON from verify ({e}):\n{}", both(&out)));
    (out.status.code(), v)
}

#[test]
fn a_signed_image_verifies_with_its_key_but_not_with_another_key_a_copied_signature_or_a_moved_tag()
{
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let signer = Gantry::new();
    let (k1, k1_pub) = generate_key(&signer, "release");
    let (_k2, k2_pub) = generate_key(&signer, "intruder");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&k1).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the private key has mode {mode:o}");
    }
    assert!(
        std::fs::read_to_string(&k1_pub)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"),
        "the public key is not SPKI PEM"
    );
    // Refuses to overwrite a key pair unless told to.
    let out = signer.run(&[
        "key",
        "generate",
        signer.dir.path().join("release").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(text(&out.stderr).contains("--force"), "{}", both(&out));

    let a_ref = format!("{}/team/app:a", reg.addr);
    let pushed = signer.json(&["image", "push", "busybox:1", &a_ref]);
    let a = pushed["digest"].as_str().unwrap().to_string();
    let other = oci::build_image(
        &[oci::file_entries(&[(
            "etc/other",
            b"another image\n".as_slice(),
        )])],
        &[],
    );
    let b = reg.push_image(&other, "team/app:b");
    let b_ref = format!("{}/team/app:b", reg.addr);
    assert_ne!(a, b);

    // Unsigned: nothing verifies.
    let (code, v) = verify(&signer, &a_ref, &[&k1_pub]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["signatures"], false, "{v:#}");

    let signed = signer.ok(&["image", "sign", &a_ref, "--key", k1.to_str().unwrap()]);
    let a_hex = a.trim_start_matches("sha256:");
    let sig_tag = format!("sha256-{a_hex}.sig");
    assert!(signed.contains(&sig_tag), "{signed}");
    let tags = text(&reg.get("/v2/team/app/tags/list", false).body);
    assert!(tags.contains(&sig_tag), "{tags}");

    // The signer verifies, and so does anyone else, from the registry alone.
    let (code, v) = verify(&signer, &a_ref, &[&k1_pub]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["verified"], true);
    assert_eq!(v["digest"], a.as_str());
    let someone = Gantry::empty();
    let (code, v) = verify(&someone, &a_ref, &[&k1_pub]);
    assert_eq!(code, Some(0), "{v:#}");
    let human = someone.ok(&["image", "verify", &a_ref, "--key", k1_pub.to_str().unwrap()]);
    assert!(human.contains("verified") && human.contains(&a), "{human}");

    // The wrong key is refused; with both keys, one verifying is enough.
    let (code, v) = verify(&someone, &a_ref, &[&k2_pub]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["verified"], false);
    assert!(!v["rejected"].as_array().unwrap().is_empty(), "{v:#}");
    let (code, v) = verify(&someone, &a_ref, &[&k2_pub, &k1_pub]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["verified_by"].as_array().unwrap().len(), 1, "{v:#}");

    // A's signature copied byte for byte onto B's signature tag does not sign B.
    let b_sig_tag = format!("sha256-{}.sig", b.trim_start_matches("sha256:"));
    reg.skopeo(&[
        "copy".into(),
        "--preserve-digests".into(),
        "--src-tls-verify=false".into(),
        "--dest-tls-verify=false".into(),
        format!("docker://{}/team/app:{sig_tag}", reg.addr),
        format!("docker://{}/team/app:{b_sig_tag}", reg.addr),
    ]);
    assert_eq!(
        reg.get(&format!("/v2/team/app/manifests/{sig_tag}"), false)
            .body,
        reg.get(&format!("/v2/team/app/manifests/{b_sig_tag}"), false)
            .body,
        "the copy is not byte for byte"
    );
    for g in [&someone, &signer, &Gantry::empty()] {
        let (code, v) = verify(g, &b_ref, &[&k1_pub]);
        assert_eq!(code, Some(1), "{v:#}");
        assert_eq!(v["digest"], b.as_str());
        assert_eq!(v["verified"], false, "{v:#}");
        let reasons = v["rejected"].to_string();
        assert!(reasons.contains(&a) && reasons.contains(&b), "{v:#}");
    }

    // Moving tag `a` to image B: the tag no longer names a signed image.
    reg.skopeo(&[
        "copy".into(),
        "--preserve-digests".into(),
        "--src-tls-verify=false".into(),
        "--dest-tls-verify=false".into(),
        format!("docker://{}/team/app:b", reg.addr),
        format!("docker://{}/team/app:a", reg.addr),
    ]);
    assert_eq!(reg.skopeo_inspect_digest("team/app:a"), b);
    for g in [&someone, &signer, &Gantry::empty()] {
        let (code, v) = verify(g, &a_ref, &[&k1_pub]);
        assert_eq!(code, Some(1), "{v:#}");
        assert_eq!(v["digest"], b.as_str(), "{v:#}");
    }
    // The signed image itself, named by digest, still verifies.
    let (code, v) = verify(
        &Gantry::empty(),
        &format!("{}/team/app@{a}", reg.addr),
        &[&k1_pub],
    );
    assert_eq!(code, Some(0), "{v:#}");
}

// ------------------------------------------------------------------------------------------
// The trust policy and `gantry run`
// ------------------------------------------------------------------------------------------

/// A registry holding busybox as `team/app:1`, a team key pair and another key pair, and a
/// fresh runner home that has nothing yet (it pulls the image when a run needs it).
struct Setup {
    reg: TestRegistry,
    signer: Gantry,
    runner: Gantry,
    /// `ADDR/team/app:1`
    reference: String,
    digest: String,
    team_key: PathBuf,
    team_pub: PathBuf,
    ops_key: PathBuf,
    ops_pub: PathBuf,
}

fn setup() -> Option<Setup> {
    let reg = TestRegistry::start()?;
    let signer = Gantry::new();
    let (team_key, team_pub) = generate_key(&signer, "team");
    let (ops_key, ops_pub) = generate_key(&signer, "ops");
    let reference = format!("{}/team/app:1", reg.addr);
    let digest = signer.json(&["image", "push", "busybox:1", &reference])["digest"]
        .as_str()
        .unwrap()
        .to_string();
    Some(Setup {
        reg,
        signer,
        runner: Gantry::empty(),
        reference,
        digest,
        team_key,
        team_pub,
        ops_key,
        ops_pub,
    })
}

impl Setup {
    fn sign(&self, key: &Path) {
        self.signer.ok(&[
            "image",
            "sign",
            &self.reference,
            "--key",
            key.to_str().unwrap(),
        ]);
    }

    /// Writes the runner's GANTRY_HOME/policy.yaml.
    fn policy(&self, yaml: &str) {
        std::fs::write(self.runner.home.path().join("policy.yaml"), yaml).unwrap();
    }
}

/// A one-step pipeline in `g` running `image`, which prints a marker.
fn pipeline(g: &Gantry, image: &str) -> PathBuf {
    g.write(
        "pipeline.yaml",
        &format!(
            "name: gated\nsteps:\n  - name: hello\n    image: \"{image}\"\n    command: [sh, -c, \"echo the step ran\"]\n"
        ),
    )
}

/// `gantry [PRE] run FILE`: the output.
fn run(g: &Gantry, pre: &[&str], file: &Path) -> Output {
    let mut args: Vec<&str> = pre.to_vec();
    args.extend(["run", file.to_str().unwrap(), "--no-cache"]);
    g.run(&args)
}

/// Runs `file` and requires the policy to deny it: exit 2, the message naming the step and
/// image, each of `expect` in it; the newest run is failed with no step run. Returns stderr.
fn denied(g: &Gantry, pre: &[&str], file: &Path, image: &str, expect: &[&str]) -> String {
    let out = run(g, pre, file);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        err.contains("denied by the image trust policy")
            && err.contains(&format!("step hello: image {image}")),
        "{err}"
    );
    for e in expect {
        assert!(err.contains(e), "no {e:?} in:\n{err}");
    }
    assert!(!text(&out.stdout).contains("the step ran"));
    let runs = g.json(&["runs"]);
    let newest = &runs[0];
    assert_eq!(newest["status"], "failed", "{runs:#}");
    let show = g.show(newest["id"].as_str().unwrap());
    assert!(show["steps"].as_array().unwrap().is_empty(), "{show:#}");
    assert!(
        show["error"].as_str().unwrap().contains("step hello"),
        "{show:#}"
    );
    let table = g.ok(&["show", newest["id"].as_str().unwrap()]);
    assert!(
        table.contains("trust policy") && table.contains(&format!("hello deny {image}")),
        "{table}"
    );
    err
}

/// Runs `file` and requires it to succeed; returns (run id, stderr).
fn allowed(g: &Gantry, pre: &[&str], file: &Path) -> (String, String) {
    let mut args: Vec<&str> = pre.to_vec();
    args.extend(["run", file.to_str().unwrap(), "--no-cache", "-o", "json"]);
    let out = g.run(&args);
    assert!(out.status.success(), "{}", both(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "succeeded", "{v:#}");
    let id = v["run_id"].as_str().unwrap().to_string();
    let logs = g.ok(&["logs", &id, "hello"]);
    assert!(logs.contains("the step ran"), "{logs}");
    (id, text(&out.stderr))
}

/// The audit entries about images of `run`'s step `item`, newest first; `gantry show` lists
/// the same decisions.
fn decisions(g: &Gantry, run: &str, item: &str) -> Vec<Value> {
    let audit: Vec<Value> = g
        .json(&["audit", "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"].as_str().unwrap().starts_with("image.")
                && e["target"] == format!("{run}/{item}").as_str()
        })
        .cloned()
        .collect();
    let show = g.show(run);
    let shown: Vec<&Value> = show["image_decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no image_decisions in {show:#}"))
        .iter()
        .filter(|d| d["item"] == item)
        .collect();
    assert_eq!(shown.len(), audit.len(), "audit {audit:#?}\nshow {show:#}");
    for (a, d) in audit.iter().zip(shown) {
        assert_eq!(
            a["action"],
            format!("image.{}", d["outcome"].as_str().unwrap()).as_str()
        );
        for field in ["reference", "digest", "rule", "reasons"] {
            assert_eq!(a["detail"][field], d[field], "{field}: {a:#} vs {d:#}");
        }
    }
    audit
}

fn newest_run(g: &Gantry) -> String {
    g.json(&["runs"])[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_run_whose_image_matches_no_policy_rule_is_denied_before_any_step_and_recorded_as_failed() {
    let Some(s) = setup() else {
        return;
    };
    let g = &s.runner;
    let file = pipeline(g, &s.reference);
    s.policy("rules:\n  - images: [\"docker.io/library/**\"]\n");
    denied(
        g,
        &[],
        &file,
        &s.reference,
        &["no rule", "team/app", "policy.yaml"],
    );
    let run = newest_run(g);
    let audit = decisions(g, &run, "hello");
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["action"], "image.deny");
    // Denied before it was pulled: no digest is known, nothing was downloaded.
    assert_eq!(audit[0]["detail"]["digest"], "");
    assert_eq!(audit[0]["detail"]["reference"], s.reference.as_str());
    let images = g.ok(&["images"]);
    assert!(
        !images.contains("team/app"),
        "a denied image is not pulled: {images}"
    );
    let table = g.ok(&["runs"]);
    assert!(table.contains(&run) && table.contains("failed"), "{table}");

    // --policy names another file, which wins over GANTRY_HOME/policy.yaml.
    let other = g.write(
        "policies/allow-team.yaml",
        &format!("rules:\n  - images: [\"{}/team/**\"]\n", s.reg.addr),
    );
    let (run, _) = allowed(g, &["--policy", other.to_str().unwrap()], &file);
    let audit = decisions(g, &run, "hello");
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["action"], "image.allow");
    assert!(
        audit[0]["detail"]["rule"]
            .as_str()
            .unwrap()
            .starts_with("rules[0]"),
        "{audit:#?}"
    );
    // Without a policy file everything runs and nothing is decided.
    std::fs::remove_file(g.home.path().join("policy.yaml")).unwrap();
    let (run, _) = allowed(g, &[], &file);
    assert!(decisions(g, &run, "hello").is_empty());
}

#[test]
fn an_image_from_a_registry_the_policy_does_not_list_is_denied_even_when_a_rule_matches() {
    let Some(s) = setup() else {
        return;
    };
    let g = &s.runner;
    let file = pipeline(g, &s.reference);
    s.policy("registries: [ghcr.io]\nrules:\n  - images: [\"**\"]\n");
    denied(
        g,
        &[],
        &file,
        &s.reference,
        &[
            "(registries)",
            &format!("registry {} is not one of", s.reg.addr),
            "ghcr.io",
        ],
    );
    s.policy(&format!(
        "registries: [ghcr.io, \"{}\"]\nrules:\n  - images: [\"**\"]\n",
        s.reg.addr
    ));
    allowed(g, &[], &file);
}

#[test]
fn require_digest_denies_an_image_named_by_tag_and_admits_it_pinned_by_digest() {
    let Some(s) = setup() else {
        return;
    };
    let g = &s.runner;
    s.policy(&format!(
        "rules:\n  - images: [\"{}/team/*\"]\n    require_digest: true\n",
        s.reg.addr
    ));
    let by_tag = pipeline(g, &s.reference);
    denied(
        g,
        &[],
        &by_tag,
        &s.reference,
        &["require_digest", "not pinned"],
    );
    let pinned = format!("{}/team/app@{}", s.reg.addr, s.digest);
    let by_digest = pipeline(g, &pinned);
    let (run, _) = allowed(g, &[], &by_digest);
    let audit = decisions(g, &run, "hello");
    assert_eq!(audit[0]["action"], "image.allow", "{audit:#?}");
    assert!(
        audit[0]["detail"]["reasons"]
            .to_string()
            .contains(&s.digest),
        "{audit:#?}"
    );
}

#[test]
fn an_image_runs_when_one_of_the_keys_any_of_trusts_signed_it_and_not_when_unsigned() {
    let Some(s) = setup() else {
        return;
    };
    let g = &s.runner;
    let file = pipeline(g, &s.reference);
    // Key paths are relative to the policy file.
    std::fs::copy(&s.team_pub, g.home.path().join("team.pub")).unwrap();
    std::fs::copy(&s.ops_pub, g.home.path().join("ops.pub")).unwrap();
    s.policy(&format!(
        "rules:\n  - images: [\"{}/team/**\"]\n    signatures:\n      any_of: [ops.pub, team.pub]\n",
        s.reg.addr
    ));
    denied(
        g,
        &[],
        &file,
        &s.reference,
        &["not signed by any of", "has no signatures"],
    );

    s.sign(&s.team_key);
    let (run, _) = allowed(g, &[], &file);
    let audit = decisions(g, &run, "hello");
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["action"], "image.allow");
    assert!(
        audit[0]["detail"]["reasons"]
            .to_string()
            .contains("signed by team.pub"),
        "{audit:#?}"
    );
}

#[test]
fn all_of_denies_an_image_until_every_required_key_has_signed_it() {
    let Some(s) = setup() else {
        return;
    };
    let g = &s.runner;
    let file = pipeline(g, &s.reference);
    s.policy(&format!(
        "rules:\n  - images: [\"{}/team/app\"]\n    signatures:\n      all_of: [\"{}\", \"{}\"]\n",
        s.reg.addr,
        s.team_pub.display(),
        s.ops_pub.display()
    ));
    s.sign(&s.team_key);
    let err = denied(
        g,
        &[],
        &file,
        &s.reference,
        &["which all_of requires", "ops.pub"],
    );
    // Only the missing key is named as missing.
    let missing = err.split("not signed by").nth(1).unwrap_or_default();
    assert!(!missing.contains(s.team_pub.to_str().unwrap()), "{err}");

    // The second signature arrives later: the same runner now admits the image.
    s.sign(&s.ops_key);
    let (run, _) = allowed(g, &[], &file);
    assert_eq!(decisions(g, &run, "hello")[0]["action"], "image.allow");
}

#[test]
fn warn_mode_runs_a_violating_image_and_says_why_on_stderr() {
    let Some(s) = setup() else {
        return;
    };
    let g = &s.runner;
    let file = pipeline(g, &s.reference);
    // A rule in warn mode whose requirement fails.
    s.policy(&format!(
        "rules:\n  - images: [\"{}/team/**\"]\n    mode: warn\n    signatures:\n      any_of: [\"{}\"]\n",
        s.reg.addr,
        s.ops_pub.display()
    ));
    let (run, err) = allowed(g, &[], &file);
    assert!(
        err.contains("allowed with warnings by the trust policy")
            && err.contains("step hello")
            && err.contains("not signed by any of"),
        "{err}"
    );
    let audit = decisions(g, &run, "hello");
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["action"], "image.warn");

    // A top-level warn mode is a dry run: an image no rule matches runs, with a warning.
    s.policy("mode: warn\nrules:\n  - images: [\"docker.io/**\"]\n");
    let (run, err) = allowed(g, &[], &file);
    assert!(
        err.contains("allowed with warnings") && err.contains("no rule"),
        "{err}"
    );
    assert_eq!(decisions(g, &run, "hello")[0]["action"], "image.warn");

    // The same policy in enforce mode denies.
    s.policy("mode: enforce\nrules:\n  - images: [\"docker.io/**\"]\n");
    denied(g, &[], &file, &s.reference, &["no rule"]);
}

#[test]
fn built_in_steps_run_under_a_policy_that_has_no_rule_for_them() {
    let g = Gantry::new();
    std::fs::write(
        g.home.path().join("policy.yaml"),
        "rules:\n  - images: [\"ghcr.io/nobody/**\"]\n",
    )
    .unwrap();
    g.write("data.csv", "x,y\n1,2\n3,4\n");
    let file = g.write(
        "builtin.yaml",
        "name: builtin\nsteps:\n  - name: ingest\n    uses: builtin/csv-ingest\n    with: { source: data.csv }\n    outputs: [dataset]\n",
    );
    let (code, summary, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{summary:#}\n{stderr}");
    let run = summary["run_id"].as_str().unwrap();
    let audit = decisions(&g, run, "ingest");
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["action"], "image.allow");
    assert_eq!(audit[0]["detail"]["rule"], "built-in image");

    // ...while a user image in the same home is denied by that policy.
    let other = g.write(
        "user.yaml",
        "name: user\nsteps:\n  - name: hello\n    image: busybox:1\n    command: [\"true\"]\n",
    );
    denied(&g, &[], &other, "busybox:1", &["no rule"]);
}

// ------------------------------------------------------------------------------------------
// Vulnerability scans
// ------------------------------------------------------------------------------------------

/// `(package, version)` of the installed dpkg package `name` in this machine's status file.
fn installed_version(status: &str, name: &str) -> Option<String> {
    status.split("\n\n").find_map(|para| {
        let mut lines = para.lines();
        if !lines.any(|l| l == format!("Package: {name}")) {
            return None;
        }
        para.lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(str::to_string)
    })
}

/// `(package, version)` of every installed binary package built from the source `source`,
/// sorted.
fn binaries_of(status: &str, source: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = status
        .split("\n\n")
        .filter_map(|para| {
            let field = |k: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                    .map(str::to_string)
            };
            let package = field("Package")?;
            let from = field("Source")
                .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
                .unwrap_or_else(|| package.clone());
            (from == source && field("Status")?.ends_with(" installed"))
                .then(|| Some((package, field("Version")?)))?
        })
        .collect();
    out.sort();
    out
}

/// The `VERSION_ID` major of a Debian os-release, None for another OS.
fn debian_major(os_release: &str) -> Option<String> {
    let field = |k: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(&format!("{k}="))
                .map(|v| v.trim_matches('"').to_string())
        })
    };
    (field("ID")? == "debian").then_some(())?;
    Some(field("VERSION_ID")?.split('.').next()?.to_string())
}

#[test]
fn a_critical_vulnerability_in_an_images_packages_is_reported_and_gates_runs_by_max_severity() {
    let (Ok(status), Ok(os_release)) = (
        std::fs::read_to_string("/var/lib/dpkg/status"),
        std::fs::read_to_string("/etc/os-release"),
    ) else {
        crate::skip::because("this test scans a copy of a Debian machine's /var/lib/dpkg/status");
        return;
    };
    let (Some(major), Some(dpkg_version)) = (
        debian_major(&os_release),
        installed_version(&status, "dpkg"),
    ) else {
        crate::skip::because("this test needs a Debian machine with dpkg installed");
        return;
    };
    let Some(busybox) = oci::busybox_image() else {
        return;
    };
    // Busybox, plus a layer with this machine's package database and os-release laid out as
    // on Debian (etc/os-release -> ../usr/lib/os-release).
    let packages = Layer::new(&[
        TarEntry::dir("etc/"),
        TarEntry::dir("usr/"),
        TarEntry::dir("usr/lib/"),
        TarEntry::file("usr/lib/os-release", os_release.as_bytes()),
        TarEntry::symlink("etc/os-release", "../usr/lib/os-release"),
        TarEntry::dir("var/"),
        TarEntry::dir("var/lib/"),
        TarEntry::dir("var/lib/dpkg/"),
        TarEntry::file("var/lib/dpkg/status", status.as_bytes()),
    ]);
    let image =
        oci::build_image_from_layers(vec![busybox.layers[0].clone(), packages], &["/bin/sh"]);
    let g = Gantry::empty();
    let archive = g.dir.path().join("scanned.oci.tar");
    image.write_oci_archive(&archive, "1");
    g.ok(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "scanned:1",
    ]);

    // Advisories: a critical one (CVSS 9.8) for the installed dpkg, fixed in a later
    // version, and one for base-files fixed long before what is installed.
    let ecosystem = format!("Debian:{major}");
    let fixed = format!("{dpkg_version}+gantry1");
    let advisories = g.dir.path().join("osv");
    std::fs::create_dir_all(&advisories).unwrap();
    std::fs::write(
        advisories.join("DEBIAN-CVE-2099-9001.json"),
        format!(
            r#"{{
  "id": "DEBIAN-CVE-2099-9001",
  "modified": "2099-01-02T03:04:05Z",
  "aliases": ["CVE-2099-9001"],
  "summary": "dpkg: a test advisory affecting the installed version",
  "severity": [{{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}}],
  "affected": [{{
    "package": {{"ecosystem": "{ecosystem}", "name": "dpkg"}},
    "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}, {{"fixed": "{fixed}"}}]}}]
  }}]
}}"#
        ),
    )
    .unwrap();
    std::fs::write(
        advisories.join("DEBIAN-CVE-2099-9002.json"),
        format!(
            r#"{{
  "id": "DEBIAN-CVE-2099-9002",
  "modified": "2099-01-02T03:04:05Z",
  "summary": "base-files: fixed long ago",
  "severity": [{{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}}],
  "affected": [{{
    "package": {{"ecosystem": "{ecosystem}", "name": "base-files"}},
    "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}, {{"fixed": "1.0"}}]}}]
  }}]
}}"#
        ),
    )
    .unwrap();
    g.ok(&["vulndb", "import", advisories.to_str().unwrap()]);
    let db = g.json(&["vulndb", "show"]);
    assert_eq!(db["records"], 2, "{db:#}");

    let scan = g.json(&["image", "scan", "scanned:1"]);
    let report = &scan["report"];
    assert_eq!(report["os"]["ecosystem"], ecosystem.as_str(), "{report:#}");
    assert!(
        report["packages_scanned"].as_u64().unwrap() > 10,
        "{report:#}"
    );
    // Every installed binary package built from the dpkg source is affected, each with its
    // installed version; base-files (fixed long ago) is not.
    let findings = report["findings"].as_array().unwrap();
    let mut found: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            assert_eq!(f["id"], "DEBIAN-CVE-2099-9001", "{f:#}");
            assert_eq!(f["source"], "dpkg", "{f:#}");
            assert_eq!(f["fixed"], fixed.as_str(), "{f:#}");
            assert_eq!(f["severity"], "critical", "{f:#}");
            assert_eq!(f["score"], 9.8, "{f:#}");
            (
                f["package"].as_str().unwrap().to_string(),
                f["installed"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(found, binaries_of(&status, "dpkg"), "{findings:#?}");
    assert!(found.contains(&("dpkg".to_string(), dpkg_version.clone())));
    assert_eq!(scan["worst"], "critical");
    let table = g.ok(&["image", "scan", "scanned:1"]);
    assert!(
        table.contains("DEBIAN-CVE-2099-9001")
            && table.contains(&dpkg_version)
            && table.contains(&fixed)
            && table.contains("critical 9.8"),
        "{table}"
    );

    for (limit, code) in [("critical", 1), ("high", 1), ("low", 1)] {
        let out = g.run(&["image", "scan", "scanned:1", "--fail-on", limit]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "--fail-on {limit}: {}",
            both(&out)
        );
    }

    let file = pipeline(&g, "scanned:1");
    std::fs::write(
        g.home.path().join("policy.yaml"),
        "rules:\n  - images: [\"docker.io/library/scanned\"]\n    max_severity: high\n",
    )
    .unwrap();
    denied(
        &g,
        &[],
        &file,
        "scanned:1",
        &["the worst vulnerability is critical, above max_severity high"],
    );
    std::fs::write(
        g.home.path().join("policy.yaml"),
        "rules:\n  - images: [\"docker.io/library/scanned\"]\n    max_severity: critical\n",
    )
    .unwrap();
    let (run, _) = allowed(&g, &[], &file);
    let audit = decisions(&g, &run, "hello");
    assert_eq!(audit[0]["action"], "image.allow", "{audit:#?}");
    assert!(
        audit[0]["detail"]["reasons"]
            .to_string()
            .contains("worst vulnerability critical"),
        "{audit:#?}"
    );

    // A server on this home exports the stored image's findings, and when the database
    // changes under it (a new advisory, for base-files) it scans again by itself.
    let (child, url) = g.spawn_listening(&["server", "--listen", "127.0.0.1:0"], &[]);
    let _server = crate::support::KillOnDrop(child);
    let critical = format!(
        "gantry_image_vulnerabilities{{image=\"scanned:1\",severity=\"critical\"}} {}",
        found.len()
    );
    let mut metrics = String::new();
    wait_until("the server exports the scan", || {
        metrics = get_text(&url, "/metrics");
        metrics.contains(&critical)
    });
    assert!(
        metrics.contains("gantry_image_vulnerabilities{image=\"scanned:1\",severity=\"high\"} 0"),
        "{metrics}"
    );
    let base_files = installed_version(&status, "base-files").expect("base-files is installed");
    std::fs::write(
        advisories.join("DEBIAN-CVE-2099-9003.json"),
        format!(
            r#"{{
  "id": "DEBIAN-CVE-2099-9003",
  "modified": "2099-01-02T03:04:05Z",
  "summary": "base-files: a test advisory affecting the installed version",
  "severity": [{{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}}],
  "affected": [{{
    "package": {{"ecosystem": "{ecosystem}", "name": "base-files"}},
    "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}, {{"fixed": "{base_files}+gantry1"}}]}}]
  }}]
}}"#
        ),
    )
    .unwrap();
    g.ok(&["vulndb", "import", advisories.to_str().unwrap()]);
    let high = format!(
        "gantry_image_vulnerabilities{{image=\"scanned:1\",severity=\"high\"}} {}",
        binaries_of(&status, "base-files").len()
    );
    wait_until("the server rescans with the new database", || {
        metrics = get_text(&url, "/metrics");
        metrics.contains(&high)
    });
    assert!(metrics.contains(&critical), "{metrics}");
}

/// The body of `GET path` on `url` (plain HTTP/1.1, one connection).
pub(crate) fn get_text(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    text(&raw)
}

#[test]
fn a_signature_kept_only_locally_survives_verifying_the_registry_copy_and_is_pushed_with_the_image()
{
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let g = Gantry::new();
    let (published, published_pub) = generate_key(&g, "published");
    let (local, local_pub) = generate_key(&g, "local");
    let app = format!("{}/team/app:1", reg.addr);
    g.ok(&["image", "push", "busybox:1", &app]);
    g.ok(&["image", "sign", &app, "--key", published.to_str().unwrap()]);
    let signed = g.ok(&[
        "image",
        "sign",
        "busybox:1",
        "--key",
        local.to_str().unwrap(),
        "--local",
    ]);
    assert!(signed.contains("2 signature(s) kept locally"), "{signed}");

    // Checking the registry's copy (which has only the published signature)...
    let (code, v) = verify(&g, &app, &[&published_pub]);
    assert_eq!(code, Some(0), "{v:#}");
    // ...does not forget the local one: pushing with signatures carries both.
    let mirror = format!("{}/team/mirror:1", reg.addr);
    let pushed = g.json(&["image", "push", "busybox:1", &mirror, "--with-signatures"]);
    assert_eq!(pushed["signatures"], true, "{pushed:#}");
    let elsewhere = Gantry::empty();
    for key in [&local_pub, &published_pub] {
        let (code, v) = verify(&elsewhere, &mirror, &[key]);
        assert_eq!(code, Some(0), "{}: {v:#}", key.display());
    }
}

#[test]
fn the_vulnerability_database_imports_from_a_url_and_a_missing_url_is_not_found() {
    let record = br#"{"id": "PYSEC-2099-1", "modified": "2099-01-02T03:04:05Z",
      "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]}"#;
    let server = oci::HostileRegistry::start(vec![(
        "/osv/PYSEC-2099-1.json".to_string(),
        oci::Response::new(
            200,
            &[("Content-Type", "application/json")],
            oci::Body::Bytes(record.to_vec()),
        ),
    )]);
    let g = Gantry::empty();
    let out = g.run(&["vulndb", "show"]);
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    g.ok(&[
        "vulndb",
        "import",
        &format!("{}/osv/PYSEC-2099-1.json", server.url()),
    ]);
    let db = g.json(&["vulndb", "show"]);
    assert_eq!(db["records"], 1, "{db:#}");
    assert_eq!(db["ecosystems"]["PyPI"], 1, "{db:#}");
    let out = g.run(&[
        "vulndb",
        "import",
        &format!("{}/osv/missing.json", server.url()),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(text(&out.stderr).contains("404"), "{}", both(&out));
    assert_eq!(g.json(&["vulndb", "show"])["records"], 1);
}
