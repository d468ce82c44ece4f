//! Independent validators for what Gantry emits for other orchestrators: Kubernetes
//! manifests, Argo Workflows and Kubeflow Pipelines v2 pipeline specs.
//!
//! - [`validate_kubernetes`]: `kubernetes-validate --strict` (the Kubernetes OpenAPI schemas,
//!   unknown fields rejected) for every version in [`KUBERNETES_VERSIONS`]; any warning fails
//!   too, notably "Couldn't find schema for kind ..." (the tool's verdict on a kind it has no
//!   schema for, an Argo `Workflow` say, is a warning and exit 0).
//! - [`validate_argo_workflow`]: `testing/argo_check.py`, Argo's full Workflow CRD schema made
//!   strict (`testing/fixtures/argo/`, see its README.md for the release), with `jsonschema`.
//! - [`check_kfp_pipeline_spec`]: `testing/kfp_check.py`, the KFP SDK's own loader plus
//!   protobuf parsing of the IR with unknown fields rejected, reference checks and a
//!   recompile.
//!
//! Each runs a program named by an environment variable, which scripts/test.sh sets to its
//! `.venv-test` ([`KUBERNETES_VALIDATE_ENV`], [`JSONSCHEMA_PYTHON_ENV`], [`KFP_PYTHON_ENV`]).
//! Unset, the function returns `None` after `skip::because` (so the test returns, or fails
//! under `GANTRY_TEST_REQUIRE_ALL`); otherwise `Some(Ok(()))` or `Some(Err(report))`, the
//! report holding the tool's whole output and the documents with line numbers. A tool that
//! gives no verdict (it does not start, a Python import fails) panics: a broken setup must not
//! read as a rejection. The `assert_*` forms panic with the report, readably.
//!
//! Include it next to skip.rs (it calls `crate::skip::unless_env`, so `mod skip` must sit at the
//! crate root of the test binary); it needs nothing but std:
//!
//! ```ignore
//! #[path = "../../../testing/skip.rs"]
//! mod skip;
//! #[path = "../../../testing/kube.rs"]
//! mod kube;
//!
//! #[test]
//! fn the_training_job_is_a_valid_kubernetes_job() {
//!     kube::assert_valid_kubernetes(&job_yaml());
//! }
//!
//! #[test]
//! fn a_misspelt_field_is_caught() {
//!     let Some(verdict) = kube::validate_kubernetes(BAD) else { return };
//!     assert!(verdict.is_err());
//! }
//! ```
//!
//! Inputs are YAML or JSON text (JSON is YAML); several Kubernetes documents may be separated by
//! `---`. Each call is one process (about 0.15 s for kubernetes-validate and Argo, 0.6 s for
//! KFP); the `*_many` forms check several named inputs in one process.

// Not every test binary that includes this uses all of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The `kubernetes-validate` executable (pip package `kubernetes-validate`).
pub const KUBERNETES_VALIDATE_ENV: &str = "GANTRY_TEST_KUBERNETES_VALIDATE";
/// A python with `jsonschema` and PyYAML, for `testing/argo_check.py`.
pub const JSONSCHEMA_PYTHON_ENV: &str = "GANTRY_TEST_JSONSCHEMA_PYTHON";
/// A python with the Kubeflow Pipelines SDK (`kfp`), for `testing/kfp_check.py`.
pub const KFP_PYTHON_ENV: &str = "GANTRY_TEST_KFP_PYTHON";
/// The Kubernetes versions every manifest must be valid for.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.33.0"];

/// Checks Kubernetes manifests (one or more YAML/JSON documents) with
/// `kubernetes-validate --strict` for each of [`KUBERNETES_VERSIONS`]. `None`: skipped.
pub fn validate_kubernetes(yaml_docs: &str) -> Option<Result<(), String>> {
    validate_kubernetes_many(&[("manifest.yaml", yaml_docs)])
}

/// [`validate_kubernetes`] for several named inputs in one process; the names (plain file
/// names) appear in the report.
pub fn validate_kubernetes_many(inputs: &[(&str, &str)]) -> Option<Result<(), String>> {
    let exe = crate::skip::unless_env(
        KUBERNETES_VALIDATE_ENV,
        "a kubernetes-validate executable (pip install kubernetes-validate)",
    )?;
    // kubernetes-validate passes a file without documents.
    if let Some((name, _)) = inputs.iter().find(|(_, text)| !has_content(text)) {
        return Some(Err(format!("{name}: no document to validate")));
    }
    let dir = Scratch::new(inputs);
    let mut cmd = Command::new(&exe);
    cmd.args(["--strict", "--quiet"]);
    for v in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", v]);
    }
    cmd.args(&dir.files);
    let what = format!(
        "{KUBERNETES_VALIDATE_ENV}={exe} --strict --quiet{}",
        KUBERNETES_VERSIONS.map(|v| format!(" -k {v}")).concat()
    );
    let (code, output) = run(cmd, &what, &dir);
    // --quiet: nothing printed means every document passed for every version. The tool says
    // WARN (exit 0) for a kind or apiVersion it has no schema for, ERROR for a document that
    // fails; with `metadata.generateName` and no `name`, its report of a failure crashes
    // (KeyError 'name') after raising ValidationError, and that traceback is the verdict.
    if code == Some(0) && output.trim().is_empty() {
        return Some(Ok(()));
    }
    let verdict = output.lines().any(|l| {
        l.starts_with("ERROR ")
            || l.starts_with("WARN ")
            || l.starts_with("kubernetes_validate.utils.ValidationError:")
    });
    assert!(
        verdict,
        "{what} gave no verdict ({}); is the tool broken?\n{output}",
        exit(code)
    );
    Some(Err(report(
        &format!(
            "kubernetes-validate --strict rejected the manifests (Kubernetes {}; any WARN counts)",
            KUBERNETES_VERSIONS.join(", ")
        ),
        code,
        &output,
        inputs,
    )))
}

/// Checks one Argo `Workflow` (YAML or JSON; several `---`-separated Workflows are each
/// checked) against Argo's full Workflow CRD schema made strict. `None`: skipped.
pub fn validate_argo_workflow(yaml_or_json: &str) -> Option<Result<(), String>> {
    validate_argo_workflows_many(&[("workflow.yaml", yaml_or_json)])
}

/// [`validate_argo_workflow`] for several named inputs in one process.
pub fn validate_argo_workflows_many(inputs: &[(&str, &str)]) -> Option<Result<(), String>> {
    let python = crate::skip::unless_env(
        JSONSCHEMA_PYTHON_ENV,
        "a python with jsonschema and PyYAML (pip install jsonschema)",
    )?;
    Some(python_checker(
        &python,
        JSONSCHEMA_PYTHON_ENV,
        "argo_check.py",
        "the strict Argo Workflow CRD schema",
        inputs,
    ))
}

/// Checks a KFP v2 IR YAML pipeline spec (what `kfp.compiler.Compiler().compile` writes) with
/// the KFP SDK and protobuf parsing, unknown fields rejected. `None`: skipped.
pub fn check_kfp_pipeline_spec(yaml: &str) -> Option<Result<(), String>> {
    check_kfp_pipeline_specs_many(&[("pipeline.yaml", yaml)])
}

/// [`check_kfp_pipeline_spec`] for several named inputs (one pipeline spec each) in one
/// process.
pub fn check_kfp_pipeline_specs_many(inputs: &[(&str, &str)]) -> Option<Result<(), String>> {
    let python = crate::skip::unless_env(
        KFP_PYTHON_ENV,
        "a python with the KFP SDK (pip install kfp)",
    )?;
    Some(python_checker(
        &python,
        KFP_PYTHON_ENV,
        "kfp_check.py",
        "the KFP v2 pipeline spec checks",
        inputs,
    ))
}

/// Panics with the report unless [`validate_kubernetes`] accepts the manifests (or skips).
#[track_caller]
pub fn assert_valid_kubernetes(yaml_docs: &str) {
    if let Some(Err(report)) = validate_kubernetes(yaml_docs) {
        panic!("{report}");
    }
}

/// Panics with the report unless [`validate_argo_workflow`] accepts the Workflow (or skips).
#[track_caller]
pub fn assert_valid_argo_workflow(yaml_or_json: &str) {
    if let Some(Err(report)) = validate_argo_workflow(yaml_or_json) {
        panic!("{report}");
    }
}

/// Panics with the report unless [`check_kfp_pipeline_spec`] accepts the spec (or skips).
#[track_caller]
pub fn assert_valid_kfp_pipeline_spec(yaml: &str) {
    if let Some(Err(report)) = check_kfp_pipeline_spec(yaml) {
        panic!("{report}");
    }
}

/// Runs `python testing/<script> FILE...`. The scripts print `ok FILE...` or `FAIL FILE...`
/// per file and exit 0 (all ok) or 1 (some FAIL); anything else is a broken setup.
fn python_checker(
    python: &str,
    env: &str,
    script: &str,
    what: &str,
    inputs: &[(&str, &str)],
) -> Result<(), String> {
    let script = testing_dir().join(script);
    let dir = Scratch::new(inputs);
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(&dir.files)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let how = format!("{env}={python} {}", script.display());
    let (code, output) = run(cmd, &how, &dir);
    let fails = output.lines().any(|l| l.starts_with("FAIL "));
    let oks = output.lines().filter(|l| l.starts_with("ok ")).count();
    match code {
        Some(0) if !fails && oks >= inputs.len() => Ok(()),
        Some(1) if fails => Err(report(
            &format!("{what} rejected it"),
            code,
            &output,
            inputs,
        )),
        _ => panic!(
            "{how} gave no verdict ({}); is the tool broken?\n{output}",
            exit(code)
        ),
    }
}

/// Runs the command with stdout and stderr together (stderr appended), in `dir`.
fn run(mut cmd: Command, what: &str, dir: &Scratch) -> (Option<i32>, String) {
    let out = cmd
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// "exit N", or "killed by a signal".
fn exit(code: Option<i32>) -> String {
    code.map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}"))
}

/// The failure report: a headline, the tool's whole output, then each input with line
/// numbers (the tools name paths, not lines; the first 400 lines of each).
fn report(headline: &str, code: Option<i32>, output: &str, inputs: &[(&str, &str)]) -> String {
    let mut r = format!("{headline} ({}):\n{}\n", exit(code), output.trim_end());
    for (name, text) in inputs {
        let _ = writeln!(r, "--- {name}:");
        for (i, line) in text.lines().enumerate().take(400) {
            let _ = writeln!(r, "{:4} | {line}", i + 1);
        }
        if text.lines().count() > 400 {
            let _ = writeln!(r, "     | ...");
        }
    }
    r
}

/// Whether YAML text has anything but blank lines, comments and document markers.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        !(l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
    })
}

/// `testing/` of this repository: the folder of this file, found from the including crate's
/// manifest directory (file!() is relative to the workspace root, or absolute).
fn testing_dir() -> PathBuf {
    let this = Path::new(file!());
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join(this))
        .find(|p| p.is_file())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .and_then(|p| p.canonicalize().ok())
        .filter(|p| p.join("argo_check.py").is_file())
        .unwrap_or_else(|| {
            panic!(
                "cannot find testing/ (from {} and {})",
                file!(),
                env!("CARGO_MANIFEST_DIR")
            )
        })
}

/// A temporary folder holding the inputs as files, removed on drop.
struct Scratch {
    path: PathBuf,
    files: Vec<PathBuf>,
}

impl Scratch {
    fn new(inputs: &[(&str, &str)]) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gantry-kube-check-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let mut files = Vec::new();
        for (i, (name, text)) in inputs.iter().enumerate() {
            // A folder per input keeps the given name (reports show it) and names unique.
            // Relative to the folder the tool runs in: shorter reports.
            let file = Path::new(&i.to_string())
                .join(Path::new(name).file_name().unwrap_or("input.yaml".as_ref()));
            let full = path.join(&file);
            std::fs::create_dir_all(path.join(i.to_string()))
                .and_then(|()| std::fs::write(&full, text))
                .unwrap_or_else(|e| panic!("writing {}: {e}", full.display()));
            files.push(file);
        }
        Scratch { path, files }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
