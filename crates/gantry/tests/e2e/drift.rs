//! Offline drift reports: `gantry drift REFERENCE CURRENT` on CSVs, its statistics
//! against numpy/scipy, its outputs and exit codes, and `builtin/drift` gating a pipeline.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// splitmix64: a seeded generator small enough to write here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

const COLUMNS: [&str; 6] = ["x_shift", "y_scale", "color", "steady", "visits", "plan"];
/// The columns `table(.., true)` changes, in column order.
const SHIFTED: [&str; 3] = ["x_shift", "y_scale", "color"];

/// 5000 rows of six columns. With `shifted`: x_shift moves by one standard deviation,
/// y_scale is twice as wide, color's mix changes; steady (float), visits (int) and plan
/// (categorical) are fresh draws of the same distributions either way.
fn table(seed: u64, shifted: bool) -> String {
    let mut rng = Rng(seed);
    let mut csv = COLUMNS.join(",") + "\n";
    let colors = ["red", "green", "blue", "black"];
    let color_mix: [f64; 4] = if shifted {
        [0.1, 0.2, 0.3, 0.4]
    } else {
        [0.4, 0.3, 0.2, 0.1]
    };
    for _ in 0..5000 {
        let x = 10.0 + 2.0 * rng.normal() + if shifted { 2.0 } else { 0.0 };
        let y = 5.0 * rng.normal() * if shifted { 2.0 } else { 1.0 };
        let color = colors[rng.pick(&color_mix)];
        let steady = 100.0 + 15.0 * rng.normal();
        let visits = (20.0 + 4.0 * rng.normal()).round().max(0.0) as i64;
        let plan = ["basic", "pro", "team"][rng.pick(&[0.5, 0.3, 0.2])];
        csv.push_str(&format!(
            "{x:.4},{y:.4},{color},{steady:.3},{visits},{plan}\n"
        ));
    }
    csv
}

fn drift(g: &Gantry, args: &[&str]) -> std::process::Output {
    let mut all = vec!["drift"];
    all.extend(args);
    g.run(&all)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The venv Python with numpy and scipy (scripts/test.sh sets the variable); without it the
/// scipy comparison is skipped, or fails under GANTRY_TEST_REQUIRE_ALL.
#[track_caller]
fn scipy_python() -> Option<String> {
    crate::skip::unless_env(
        "GANTRY_TEST_SKLEARN_PYTHON",
        "a Python with numpy and scipy for the reference statistics",
    )
}

/// Every statistic recomputed from the two CSVs with numpy/scipy, the way the profile
/// and the monitor define them (one line each):
/// - numeric bins: edges `[mn + (mx-mn)/10*i for i in range(10)] + [mx]` over the
///   reference (the profile's formula, so the floats are the same bits);
///   `E = np.histogram(ref, edges)[0]`, `A = np.histogram(np.clip(cur, mn, mx), edges)[0]`
///   (current values outside the range count in the end bins);
/// - categorical bins: the reference's 20 most frequent values (ties by value) plus the
///   rest; `A` counts the current values in the same bins;
/// - PSI `np.sum((a - e) * np.log(a / e))` over proportions floored at 1e-4;
/// - JS `scipy.spatial.distance.jensenshannon(E, A, base=2)`;
/// - KS `scipy.stats.ks_2samp(sample, cur, method="asymp")`, `sample` being the profile's
///   1000 values: `np.sort(ref)[(2*np.arange(1000)*(n-1) + 999) // 1998]`;
/// - chi² `scipy.stats.chisquare(A[k], E[k] / E.sum() * A.sum())` over the bins `k`
///   non-empty on either side.
const SCIPY_SCRIPT: &str = r#"
import csv, json, sys
import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

def columns(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}

ref, cur = columns(sys.argv[1]), columns(sys.argv[2])
out = {}
for name in ref:
    try:
        r = np.array(ref[name], dtype=float); c = np.array(cur[name], dtype=float)
        numeric = True
    except ValueError:
        numeric = False
    if numeric:
        mn, mx = r.min(), r.max()
        edges = [mn + (mx - mn) / 10 * i for i in range(10)] + [mx]
        E = np.histogram(r, edges)[0].astype(float)
        A = np.histogram(np.clip(c, mn, mx), edges)[0].astype(float)
        n = len(r)
        sample = np.sort(r)[(2 * np.arange(1000) * (n - 1) + 999) // 1998]
        ks = stats.ks_2samp(sample, c, method="asymp")
        extra = {"edges": edges, "ks_statistic": float(ks.statistic), "ks_p": float(ks.pvalue)}
    else:
        values, counts = np.unique(ref[name], return_counts=True)
        top = sorted(zip(values, counts), key=lambda vc: (-vc[1], vc[0]))[:20]
        keys = [v for v, _ in top]
        E = np.array([k for _, k in top] + [len(ref[name]) - sum(k for _, k in top)], dtype=float)
        A = np.array([sum(1 for v in cur[name] if v == k) for k in keys]
                     + [sum(1 for v in cur[name] if v not in keys)], dtype=float)
        k = (E > 0) | (A > 0)
        chi = stats.chisquare(A[k], E[k] / E.sum() * A.sum())
        extra = {"chi_square": float(chi.statistic), "chi_p": float(chi.pvalue)}
    e = np.maximum(E / E.sum(), 1e-4); a = np.maximum(A / A.sum(), 1e-4)
    out[name] = dict(psi=float(np.sum((a - e) * np.log(a / e))),
                     js=float(jensenshannon(E, A, base=2)), **extra)
print(json.dumps(out))
"#;

fn close(what: &str, got: &Value, want: &Value) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    let tolerance = 1e-9 * w.abs().max(1e-3);
    assert!((g - w).abs() <= tolerance, "{what}: gantry {g}, scipy {w}");
}

fn feature<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["feature"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

#[test]
fn drift_between_two_csvs_matches_scipy_and_flags_exactly_the_shifted_columns() {
    let g = Gantry::empty();
    let reference = g.write("ref.csv", &table(1, false));
    let current = g.write("cur.csv", &table(2, true));
    let out = drift(&g, &[path(&reference), path(&current), "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["format"], "gantry.drift-report");
    assert_eq!(
        (
            report["reference_rows"].as_u64(),
            report["current_rows"].as_u64()
        ),
        (Some(5000), Some(5000))
    );
    assert_eq!(report["drifted"], serde_json::json!(SHIFTED), "{report:#}");
    assert_eq!(
        report["verdict"],
        "drift on 3 of 6 features (x_shift, y_scale, color)"
    );
    for name in COLUMNS {
        let d = feature(&report, name);
        let expected = if SHIFTED.contains(&name) {
            "drift"
        } else {
            "ok"
        };
        assert_eq!(d["status"], expected, "{name}: {d:#}");
        let numeric = !["color", "plan"].contains(&name);
        assert_eq!(d["kind"], if numeric { "numeric" } else { "categorical" });
        assert_eq!(d["ks"].is_null(), !numeric);
        assert_eq!(d["chi_square"].is_null(), numeric);
    }

    let Some(python) = scipy_python() else { return };
    let scipy = Command::new(&python)
        .args(["-c", SCIPY_SCRIPT, path(&reference), path(&current)])
        .output()
        .unwrap();
    assert!(
        scipy.status.success(),
        "{}",
        String::from_utf8_lossy(&scipy.stderr)
    );
    let want: Value = serde_json::from_slice(&scipy.stdout).unwrap();
    for name in COLUMNS {
        let (d, w) = (feature(&report, name), &want[name]);
        close(&format!("{name} psi"), &d["psi"], &w["psi"]);
        close(&format!("{name} js"), &d["jensen_shannon"], &w["js"]);
        if d["kind"] == "numeric" {
            assert_eq!(d["edges"], w["edges"], "{name}: the same bins");
            close(
                &format!("{name} ks"),
                &d["ks"]["statistic"],
                &w["ks_statistic"],
            );
            close(&format!("{name} ks p"), &d["ks"]["p_value"], &w["ks_p"]);
        } else {
            close(
                &format!("{name} chi²"),
                &d["chi_square"]["statistic"],
                &w["chi_square"],
            );
            close(
                &format!("{name} chi² p"),
                &d["chi_square"]["p_value"],
                &w["chi_p"],
            );
        }
    }
}

/// Checks that `text` is well-formed XML as far as tags go (every element closed in
/// order, quoted attributes, only the five XML entities) and returns the element names.
fn elements(text: &str) -> Vec<String> {
    let (mut stack, mut seen): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut rest = text;
    while let Some(i) = rest.find(['<', '&']) {
        let at = &rest[i..];
        assert!(!rest[..i].contains('>'), "stray > before {at:.60}");
        let end = at
            .find(if at.starts_with('&') { ';' } else { '>' })
            .unwrap();
        let token = &at[1..end];
        rest = &at[end + 1..];
        if at.starts_with('&') {
            assert!(
                ["amp", "lt", "gt", "quot", "#39"].contains(&token),
                "&{token};"
            );
        } else if let Some(name) = token.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !token.starts_with('!') {
            assert_eq!(token.matches('"').count() % 2, 0, "quotes in <{token}>");
            let name = token
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/');
            seen.push(name.to_string());
            if !token.ends_with('/') {
                stack.push(name.to_string());
            }
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    seen
}

#[test]
fn markdown_and_html_reports_name_every_feature_and_the_html_parses_as_xml() {
    let g = Gantry::empty();
    let reference = g.write("ref.csv", &table(3, false));
    let current = g.write("cur.csv", &table(4, true));
    let md = g.ok(&[
        "drift",
        path(&reference),
        path(&current),
        "--output",
        "markdown",
    ]);
    assert!(md.starts_with("# Drift report"), "{md}");
    for name in COLUMNS {
        assert!(
            md.contains(&format!("\n| {name} |")),
            "{name} missing:\n{md}"
        );
    }
    assert!(
        md.contains("**drift on 3 of 6 features (x_shift, y_scale, color)**"),
        "{md}"
    );

    let html = g.ok(&[
        "drift",
        path(&reference),
        path(&current),
        "--output",
        "html",
    ]);
    let names = elements(&html);
    assert_eq!(
        names.iter().filter(|n| *n == "svg").count(),
        6,
        "a histogram per feature"
    );
    assert!(
        !names
            .iter()
            .any(|n| ["script", "link", "img"].contains(&n.as_str()))
    );
    assert!(html.contains("prefers-color-scheme: dark"));
    for name in COLUMNS {
        assert!(
            html.contains(&format!("histogram of {name}: reference and current")),
            "{name}"
        );
    }
    // The same page through a real XML parser, when there is a Python.
    if let Some(python) = scipy_python() {
        let file = g.write("report.html", &html);
        let parsed = Command::new(&python)
            .args([
                "-c",
                "import sys, xml.etree.ElementTree as ET; t = open(sys.argv[1]).read(); \
                 root = ET.fromstring(t[t.index('<html'):]); \
                 print(len(root.findall('.//{http://www.w3.org/2000/svg}svg')))",
                path(&file),
            ])
            .output()
            .unwrap();
        assert!(
            parsed.status.success(),
            "{}",
            String::from_utf8_lossy(&parsed.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&parsed.stdout).trim(), "6");
    }
}

#[test]
fn exit_codes_say_drift_bad_input_and_missing_file() {
    let g = Gantry::empty();
    let reference = g.write("ref.csv", &table(5, false));
    let same = g.write("same.csv", &table(6, false));
    let shifted = g.write("shifted.csv", &table(7, true));

    let out = drift(&g, &[path(&reference), path(&shifted), "--fail-on-drift"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let table_out = String::from_utf8_lossy(&out.stdout);
    assert!(
        table_out.contains("FEATURE") && table_out.contains("x_shift"),
        "{table_out}"
    );
    assert!(
        table_out
            .trim_end()
            .ends_with("drift on 3 of 6 features (x_shift, y_scale, color)")
    );
    // Without the flag drift is reported, not an error.
    assert_eq!(
        drift(&g, &[path(&reference), path(&shifted)]).status.code(),
        Some(0)
    );
    let out = drift(&g, &[path(&reference), path(&same), "--fail-on-drift"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no drift on 6 features"));

    // A ragged row: exit 2, file:line.
    let mut bad = table(8, false);
    let mut lines: Vec<&str> = bad.lines().collect();
    lines[6] = "1.5,2.5,red";
    bad = lines.join("\n") + "\n";
    let bad = g.write("bad.csv", &bad);
    let out = drift(&g, &[path(&reference), path(&bad)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:7: expected 6 fields", bad.display())),
        "{err}"
    );

    // A missing file: exit 3.
    let missing = g.dir.path().join("nope.csv");
    let out = drift(&g, &[path(&reference), path(&missing)]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.csv"));
    // Unknown columns are bad input.
    let out = drift(&g, &[path(&reference), path(&same), "--label", "churn"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("its columns are: x_shift"));
}

#[test]
fn a_profile_json_is_a_reference_and_label_reports_prediction_drift() {
    let g = Gantry::empty();
    let reference = g.write("ref.csv", &table(9, false));
    let current = g.write("cur.csv", &table(10, true));
    let from_csv: Value = serde_json::from_slice(
        &drift(
            &g,
            &[
                path(&reference),
                path(&current),
                "-o",
                "json",
                "--label",
                "plan",
            ],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(from_csv["prediction_drift"]["feature"], "prediction (plan)");
    assert_eq!(from_csv["drift"].as_array().unwrap().len(), 5);

    // The profile builtin/profile would write for ref.csv, through a pipeline.
    let pipeline = g.write(
        "profile.yaml",
        "name: profile-ref\nsteps:\n  - name: ingest\n    uses: builtin/csv-ingest\n    with: { source: ref.csv }\n    outputs: [dataset]\n  - name: profile\n    uses: builtin/profile\n    inputs: { dataset: ingest.dataset }\n    outputs: [profile, summary]\n",
    );
    let (code, s, err) = g.run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{s:#}\n{err}");
    let digest = step(&s, "profile")["outputs"]["profile"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let profile = PathBuf::from(
        g.ok(&["artifact", "get", &digest, "--out", path(out.path())])
            .trim(),
    );
    let from_profile: Value = serde_json::from_slice(
        &drift(
            &g,
            &[
                path(&profile),
                path(&current),
                "-o",
                "json",
                "--label",
                "plan",
            ],
        )
        .stdout,
    )
    .unwrap();
    let strip = |mut v: Value| {
        v["reference"] = Value::Null;
        v
    };
    assert_eq!(
        strip(from_profile),
        strip(from_csv.clone()),
        "same report from the profile"
    );

    // And by digest, from GANTRY_HOME's artifacts.
    let by_digest: Value = serde_json::from_slice(
        &drift(
            &g,
            &[
                "--reference-digest",
                &digest,
                path(&current),
                "-o",
                "json",
                "--label",
                "plan",
            ],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(by_digest["drifted"], from_csv["drifted"]);
    let absent = format!("sha256:{}", "0".repeat(64));
    let out = drift(&g, &["--reference-digest", &absent, path(&current)]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = drift(&g, &["--reference-digest", "sha256:0000", path(&current)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

fn gate_pipeline(
    g: &Gantry,
    name: &str,
    current_csv: &str,
    reference_from_profile: bool,
) -> PathBuf {
    let reference_input = if reference_from_profile {
        "profile.profile"
    } else {
        "reference.dataset"
    };
    g.write(
        &format!("{name}.yaml"),
        &format!(
            r#"
name: {name}
steps:
  - name: reference
    uses: builtin/csv-ingest
    with: {{ source: ref.csv }}
    outputs: [dataset]
  - name: profile
    uses: builtin/profile
    inputs: {{ dataset: reference.dataset }}
    outputs: [profile, summary]
  - name: current
    uses: builtin/csv-ingest
    with: {{ source: {current_csv} }}
    outputs: [dataset]
  - name: drift
    uses: builtin/drift
    inputs: {{ reference: {reference_input}, current: current.dataset }}
    with: {{ fail_on_drift: true, threshold: 0.2 }}
    outputs: [report]
  - name: after
    uses: builtin/validate
    inputs: {{ dataset: current.dataset }}
    after: [drift]
    outputs: [report]
"#
        ),
    )
}

#[test]
fn builtin_drift_fails_a_pipeline_on_drift_and_passes_an_unshifted_pair() {
    let g = Gantry::empty();
    g.write("ref.csv", &table(11, false));
    g.write("same.csv", &table(12, false));
    g.write("shifted.csv", &table(13, true));

    let gated = gate_pipeline(&g, "gated", "shifted.csv", false);
    let (code, s, err) = g.run_pipeline(&gated, &[]);
    assert_eq!(code, 1, "{s:#}\n{err}");
    let d = step(&s, "drift");
    assert_eq!(d["status"], "failed");
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("drift on 3 of 6 features (x_shift, y_scale, color)"),
        "{reason}"
    );
    assert_eq!(step(&s, "after")["status"], "skipped");
    let logs = g.ok(&["logs", s["run_id"].as_str().unwrap(), "drift"]);
    assert!(
        logs.contains("| x_shift |"),
        "the report is in the step log:\n{logs}"
    );

    // The unshifted pair passes, against the profile this time.
    let passing = gate_pipeline(&g, "passing", "same.csv", true);
    let (code, s, err) = g.run_pipeline(&passing, &[]);
    assert_eq!(code, 0, "{s:#}\n{err}");
    assert_eq!(step(&s, "after")["status"], "succeeded");
    let show = g.show(s["run_id"].as_str().unwrap());
    let metrics = &step(&show, "drift")["metrics"];
    assert_eq!(metrics["drifted"], 0.0, "{metrics:#}");
    assert_eq!(metrics["columns"], 6.0);
    assert!(metrics["psi.x_shift"].as_f64().unwrap() < 0.2);
    let report = step(&s, "drift")["outputs"]["report"].as_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = PathBuf::from(
        g.ok(&["artifact", "get", report, "--out", path(out.path())])
            .trim(),
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "no drift on 6 features");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for name in COLUMNS {
        assert!(md.contains(&format!("| {name} |")), "{name}");
        assert!(html.contains(&format!("histogram of {name}")), "{name}");
    }
    elements(&html);
}
