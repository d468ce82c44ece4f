//! `builtin/drift` as gantry-ml sees it: declared, options checked, inputs read, the
//! report written and the gate applied; the statistics come from a linked reporter
//! (gantry-monitor's in the binary, a stand-in here).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use gantry_ml::dataset::{self, Column, ColumnData, Dataset};
use gantry_ml::drift::{DriftFiles, DriftOptions, DriftReporter};
use gantry_ml::profile::{Profile, profile_dataset};
use gantry_ml::{
    ComponentIo, Extensions, MlError, run_component, run_component_with, validate_with,
};
use serde_json::{Value, json};

/// Reports the columns it was asked to compare as drifted when `drift` is set.
struct StandIn {
    drift: bool,
}

impl DriftReporter for StandIn {
    fn report(
        &self,
        reference: &Profile,
        current: &Dataset,
        options: &DriftOptions,
    ) -> Result<DriftFiles, MlError> {
        let names: Vec<String> = reference.columns.iter().map(|c| c.name.clone()).collect();
        let drifted = if self.drift {
            names.clone()
        } else {
            Vec::new()
        };
        let verdict = format!("{} drifted of {}", drifted.len(), names.len());
        Ok(DriftFiles {
            json: serde_json::to_vec(&json!({
                "reference_rows": reference.rows,
                "current_rows": current.rows(),
                "threshold": options.threshold,
                "columns": options.columns,
            }))
            .unwrap(),
            markdown: format!("| {} |\n\n**{verdict}**\n", names.join(" | ")),
            html: "<!DOCTYPE html>\n<html></html>\n".to_string(),
            verdict,
            drifted,
            metrics: BTreeMap::from([("columns".to_string(), names.len() as f64)]),
        })
    }
}

fn dataset_dir(root: &Path, name: &str, rows: usize) -> std::path::PathBuf {
    let ds = Dataset::new(vec![
        Column::new(
            "x",
            ColumnData::Float((0..rows).map(|i| Some(i as f64)).collect()),
        ),
        Column::new(
            "c",
            ColumnData::Categorical((0..rows).map(|i| Some(format!("k{}", i % 3))).collect()),
        ),
    ])
    .unwrap();
    let dir = root.join(name);
    dataset::write(&ds, &dir).unwrap();
    dir
}

#[test]
fn drift_options_are_checked_before_the_run() {
    assert!(validate_with("drift", &json!({"threshold": 0.1, "fail_on_drift": "true"})).is_ok());
    assert!(validate_with("drift", &json!({"columns": ["x"], "label": "y"})).is_ok());
    let err = validate_with("drift", &json!({"threshold": 0}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`threshold` must be a PSI above 0"), "{err}");
    let err = validate_with("drift", &json!({"fail_on_drfit": true}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `fail_on_drift`"), "{err}");
    let info = gantry_ml::component("builtin/drift").unwrap();
    assert_eq!(
        (info.inputs, info.outputs),
        (&["reference", "current"][..], &["report"][..])
    );
}

#[test]
fn the_report_is_written_and_drift_fails_the_step_when_asked() {
    let root = tempfile::tempdir().unwrap();
    let inputs = root.path().join("inputs");
    let outputs = root.path().join("outputs");
    fs::create_dir_all(&inputs).unwrap();
    dataset_dir(&inputs, "current", 40);
    // The reference as a profile file, as builtin/profile writes it.
    let reference = dataset::read(&dataset_dir(root.path(), "ref", 60)).unwrap();
    fs::write(
        inputs.join("reference"),
        serde_json::to_vec(&profile_dataset(&reference, 10, 20)).unwrap(),
    )
    .unwrap();
    let with = json!({"threshold": "0.3", "columns": ["x"]});
    let io = ComponentIo {
        with: &with,
        inputs: &inputs,
        outputs: &outputs,
    };

    // Without its statistics linked in, it says where they are.
    let err = run_component("drift", &io).unwrap_err().to_string();
    assert!(err.contains("gantry component drift"), "{err}");

    let calm = StandIn { drift: false };
    let outcome = run_component_with("drift", &io, Extensions { drift: Some(&calm) }).unwrap();
    assert_eq!(outcome.metrics["columns"], 2.0);
    let report = outputs.join("report");
    let json: Value =
        serde_json::from_slice(&fs::read(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["reference_rows"], 60);
    assert_eq!(json["current_rows"], 40);
    assert_eq!(json["threshold"], 0.3);
    assert_eq!(json["columns"], json!(["x"]));
    assert!(report.join("report.md").is_file() && report.join("report.html").is_file());

    // Drift without fail_on_drift is a report, not a failure.
    let drifting = StandIn { drift: true };
    run_component_with(
        "drift",
        &io,
        Extensions {
            drift: Some(&drifting),
        },
    )
    .unwrap();
    let with = json!({"fail_on_drift": true});
    let io = ComponentIo {
        with: &with,
        inputs: &inputs,
        outputs: &outputs,
    };
    let err = run_component_with(
        "drift",
        &io,
        Extensions {
            drift: Some(&drifting),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("| x | c |"),
        "the report comes with the error: {err}"
    );
    assert_eq!(
        err.lines().last(),
        Some("drift found and fail_on_drift is set: 2 drifted of 2"),
        "the verdict is the last line (the step's reason): {err}"
    );

    // A reference dataset directory is profiled here.
    fs::remove_file(inputs.join("reference")).unwrap();
    dataset_dir(&inputs, "reference", 60);
    let with = json!({});
    let outcome = run_component_with(
        "drift",
        &ComponentIo {
            with: &with,
            inputs: &inputs,
            outputs: &outputs,
        },
        Extensions { drift: Some(&calm) },
    )
    .unwrap();
    assert_eq!(outcome.metrics["columns"], 2.0);
}
