//! Local `path:` inputs (and a built-in's `with: { source: FILE }`) that do not exist, found
//! before a run starts rather than when its step reads them: `gantry validate` and a local
//! `gantry run` say where each one is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{Diagnostic, InputSource, Pipeline, Plan, SpecError};

/// Every planned `path:` input that `exists` says is not there, one diagnostic per step
/// input and path, at the input's place in the pipeline file.
pub fn check_local_inputs(
    pipeline: &Pipeline,
    plan: &Plan,
    exists: impl Fn(&Path) -> bool,
) -> Result<(), SpecError> {
    let mut seen: BTreeSet<(&str, &str, &PathBuf)> = BTreeSet::new();
    let mut diagnostics = Vec::new();
    for planned in &plan.steps {
        // A sweep's members share their step's inputs as written.
        let name = planned.sweep.as_ref().map_or(&planned.name, |s| &s.step);
        for (input, source) in &planned.inputs {
            let InputSource::Path(path) = source else {
                continue;
            };
            if !seen.insert((name, input, path)) || exists(path) {
                continue;
            }
            let step = pipeline.steps.iter().find(|s| &s.name == name);
            diagnostics.push(Diagnostic {
                location: step.map(|s| {
                    s.input_locations
                        .get(input)
                        .unwrap_or(&s.location)
                        .clone()
                }),
                message: format!(
                    "input '{input}' of step '{name}': {} does not exist",
                    path.display()
                ),
                hint: Some(format!(
                    "a relative `path:` is read from the pipeline file's directory ({}); check the name, or create the file first",
                    pipeline.base_dir.display()
                )),
            });
        }
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(SpecError { diagnostics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(yaml: &str, present: &[&str]) -> Result<(), SpecError> {
        let p = crate::parse("p.yaml", Path::new("/base"), yaml).unwrap();
        let params = crate::resolve_params(&p, &[]).unwrap();
        let plan = crate::plan(&p, &params).unwrap();
        check_local_inputs(&p, &plan, |path| {
            present.iter().any(|x| Path::new(x) == path)
        })
    }

    const SPEC: &str = "name: p
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: data/iris.csv }
    outputs: [dataset]
  - name: look
    image: busybox:1
    command: [ls, /gantry/inputs]
    inputs:
      table: ingest.dataset
      extra: { path: extra.csv }
      site: { url: https://example.com/x.csv }
    matrix: { k: [1, 2] }
";

    #[test]
    fn present_inputs_pass() {
        checked(SPEC, &["/base/data/iris.csv", "/base/extra.csv"]).unwrap();
    }

    #[test]
    fn each_missing_input_is_reported_once_where_it_is_written() {
        let err = checked(SPEC, &[]).unwrap_err();
        let lines: Vec<String> = err.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            lines,
            [
                "p.yaml:5:21: error: input 'source' of step 'ingest': /base/data/iris.csv does not exist\n  hint: a relative `path:` is read from the pipeline file's directory (/base); check the name, or create the file first",
                "p.yaml:12:14: error: input 'extra' of step 'look': /base/extra.csv does not exist\n  hint: a relative `path:` is read from the pipeline file's directory (/base); check the name, or create the file first",
            ]
        );
    }

    #[test]
    fn a_templated_source_is_checked_as_planned() {
        let spec = "name: p
params: { file: a.csv }
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: \"${params.file}\" }
";
        checked(spec, &["/base/a.csv"]).unwrap();
        let err = checked(spec, &["/base/b.csv"]).unwrap_err();
        let loc = err.diagnostics[0].location.clone().unwrap();
        assert_eq!((loc.line, loc.column), (6, 21));
    }
}
