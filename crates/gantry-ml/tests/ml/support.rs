use std::fs;
use std::path::{Path, PathBuf};

use gantry_ml::{ComponentIo, ComponentOutcome, MlError, run_component};
use serde_json::Value;
use tempfile::TempDir;

/// One step run: its outputs stay alive as long as this value.
pub struct Step {
    pub outcome: ComponentOutcome,
    pub dir: TempDir,
}

impl Step {
    pub fn output(&self, name: &str) -> PathBuf {
        self.dir.path().join("outputs").join(name)
    }

    pub fn metric(&self, name: &str) -> f64 {
        *self
            .outcome
            .metrics
            .get(name)
            .unwrap_or_else(|| panic!("no metric {name} in {:?}", self.outcome.metrics))
    }
}

/// Runs `component` with `with` and inputs copied in like the engine mounts them.
pub fn try_run(component: &str, with: Value, inputs: &[(&str, &Path)]) -> Result<Step, MlError> {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("inputs");
    let output_dir = dir.path().join("outputs");
    fs::create_dir_all(&input_dir).unwrap();
    fs::create_dir_all(&output_dir).unwrap();
    for (name, path) in inputs {
        copy(path, &input_dir.join(name));
    }
    let outcome = run_component(
        component,
        &ComponentIo {
            with: &with,
            inputs: &input_dir,
            outputs: &output_dir,
        },
    )?;
    Ok(Step { outcome, dir })
}

pub fn run(component: &str, with: Value, inputs: &[(&str, &Path)]) -> Step {
    try_run(component, with, inputs).unwrap_or_else(|e| panic!("{component} failed: {e}"))
}

pub fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap();
    }
}

/// Writes `text` to a temp file named `name` and returns (dir guard, path).
pub fn write_source(name: &str, bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// csv-ingest of in-memory CSV text.
pub fn ingest(csv: &str, with: Value) -> Step {
    let (_guard, path) = write_source("data.csv", csv.as_bytes());
    run("csv-ingest", with, &[("source", &path)])
}

/// All files under `dir` with their bytes, for byte-identity checks.
pub fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if dir.is_file() {
        return vec![(String::new(), fs::read(dir).unwrap())];
    }
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        for (rel, bytes) in tree_bytes(&p) {
            out.push((format!("{name}/{rel}"), bytes));
        }
    }
    out
}
