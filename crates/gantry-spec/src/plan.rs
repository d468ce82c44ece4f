//! A pipeline with params resolved, templates expanded and steps in run order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dag::Dag;
use crate::error::{Diagnostic, SpecError};
use crate::params::ParamValue;
use crate::pipeline::{InputSource, Pipeline, Resources, Step};
use crate::template::Scope;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub pipeline: String,
    /// Topological order; ties keep declaration order, so the same spec always
    /// yields the same order.
    pub steps: Vec<PlannedStep>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageRef {
    /// An OCI image reference, as written after `image:`.
    Image(String),
    /// The component name after `uses: builtin/`.
    Builtin(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub name: String,
    pub image: ImageRef,
    /// Expanded; empty means the image's default command.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub with: BTreeMap<String, serde_json::Value>,
    pub inputs: BTreeMap<String, InputSource>,
    pub outputs: Vec<String>,
    /// Steps this one waits for (inputs plus `after`), in declaration order.
    pub deps: Vec<String>,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub resources: Resources,
    pub network: bool,
    pub cache: bool,
}

/// Expands templates with `params` (from [`crate::resolve_params`]) and orders the steps.
///
/// `parse` has already checked a loaded pipeline; these checks repeat the ones a
/// hand-built [`Pipeline`] could break, pointing at the step's location.
pub fn plan(p: &Pipeline, params: &BTreeMap<String, ParamValue>) -> Result<Plan, SpecError> {
    let mut diagnostics = Vec::new();
    let mut fail = |step: &Step, message: String, hint: &str| {
        diagnostics.push(Diagnostic {
            location: Some(step.location.clone()),
            message,
            hint: Some(hint.to_owned()),
        });
    };

    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for (i, step) in p.steps.iter().enumerate() {
        if index_of.insert(step.name.as_str(), i).is_some() {
            fail(
                step,
                format!("duplicate step name '{}'", step.name),
                "step names must be unique; rename one of them",
            );
        }
    }

    let mut dag = Dag::new(p.steps.len());
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); p.steps.len()];
    for (i, step) in p.steps.iter().enumerate() {
        let input_steps = step.inputs.values().filter_map(|source| match source {
            InputSource::Step { step, .. } => Some(step),
            InputSource::Path(_) => None,
        });
        for dep_name in input_steps.chain(&step.after) {
            match index_of.get(dep_name.as_str()) {
                Some(&dep) if dep == i => fail(
                    step,
                    format!("step '{}' depends on itself", step.name),
                    "a step cannot consume its own output or wait for itself",
                ),
                Some(&dep) => {
                    dag.add_dependency(i, dep);
                    deps[i].insert(dep);
                }
                None => fail(
                    step,
                    format!("step '{}' depends on unknown step '{dep_name}'", step.name),
                    "name a step of this pipeline",
                ),
            }
        }
    }
    for cycle in dag.cycles() {
        let path: Vec<&str> = cycle.iter().map(|&i| p.steps[i].name.as_str()).collect();
        fail(
            &p.steps[cycle[0]],
            format!("dependency cycle: {}", path.join(" -> ")),
            "each step here needs the one before it; remove one of these dependencies",
        );
    }

    let order = dag.topological_order().unwrap_or_default();
    let mut planned = Vec::with_capacity(order.len());
    for i in order {
        let step = &p.steps[i];
        let image = match (&step.image, &step.uses) {
            (Some(image), None) => ImageRef::Image(image.clone()),
            (None, Some(uses)) => match uses.strip_prefix("builtin/") {
                Some(name) => ImageRef::Builtin(name.to_owned()),
                None => {
                    fail(
                        step,
                        format!(
                            "`uses: {uses}` of step '{}' is not a built-in component",
                            step.name
                        ),
                        "write `uses: builtin/<component>`",
                    );
                    continue;
                }
            },
            _ => {
                fail(
                    step,
                    format!(
                        "step '{}' must set exactly one of `image` and `uses`",
                        step.name
                    ),
                    "a step runs either an OCI image or a built-in component",
                );
                continue;
            }
        };
        let scope = Scope {
            params,
            inputs: step.inputs.keys().map(String::as_str).collect(),
            step: &step.name,
        };
        let expanded = (|| {
            let command = step
                .command
                .iter()
                .map(|c| scope.render(c))
                .collect::<Result<Vec<_>, _>>()?;
            let env = step
                .env
                .iter()
                .map(|(k, v)| Ok((k.clone(), scope.render(v)?)))
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let with = step
                .with
                .iter()
                .map(|(k, v)| Ok((k.clone(), scope.render_json(v)?)))
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            Ok::<_, crate::template::TemplateError>((command, env, with))
        })();
        let (command, env, with) = match expanded {
            Ok(parts) => parts,
            Err(e) => {
                fail(step, e.message, &e.hint);
                continue;
            }
        };
        planned.push(PlannedStep {
            name: step.name.clone(),
            image,
            command,
            env,
            with,
            inputs: step.inputs.clone(),
            outputs: step.outputs.clone(),
            deps: deps[i].iter().map(|&d| p.steps[d].name.clone()).collect(),
            retries: step.retries,
            timeout: step.timeout,
            resources: step.resources,
            network: step.network,
            cache: step.cache,
        });
    }

    if diagnostics.is_empty() {
        Ok(Plan {
            pipeline: p.name.clone(),
            steps: planned,
        })
    } else {
        Err(SpecError { diagnostics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, resolve_params};
    use serde_json::json;
    use std::path::Path;

    const SPEC: &str = r#"name: iris
params:
  test_fraction: 0.2
  max_depth: 4
  seed: 7
steps:
  - name: evaluate
    uses: builtin/evaluate
    inputs: { model: train.model, test: split.test }
    outputs: [report]
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: data/iris.csv }
    outputs: [dataset]
  - name: split
    uses: builtin/split
    inputs: { dataset: ingest.dataset }
    with: { test_fraction: "${params.test_fraction}", seed: "${params.seed}", tag: "s${params.seed}" }
    outputs: [train, test]
  - name: lint
    image: busybox
    command: [echo, "$${literal}"]
  - name: train
    image: registry.example.com/trainer@sha256:0f3c
    command: [python, /app/train.py, --max-depth, "${params.max_depth}", --data, "${inputs.train}"]
    env: { DEPTH: "${params.max_depth}" }
    inputs: { train: split.train }
    outputs: [model]
    after: [lint, ingest]
"#;

    fn planned(overrides: &[(&str, &str)]) -> Plan {
        let p = parse("p.yaml", Path::new("/base"), SPEC).unwrap();
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let params = resolve_params(&p, &overrides).unwrap();
        plan(&p, &params).unwrap()
    }

    #[test]
    fn order_is_topological_with_ties_in_declaration_order() {
        let plan = planned(&[]);
        let order: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["ingest", "split", "lint", "train", "evaluate"]);
        assert_eq!(plan.pipeline, "iris");
        // Deterministic across runs.
        assert_eq!(planned(&[]), plan);
    }

    #[test]
    fn deps_combine_inputs_and_after_in_declaration_order() {
        let plan = planned(&[]);
        let deps = |name: &str| {
            plan.steps
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .deps
                .clone()
        };
        assert_eq!(deps("train"), ["ingest", "split", "lint"]);
        assert_eq!(deps("evaluate"), ["split", "train"]);
        assert!(deps("ingest").is_empty());
    }

    #[test]
    fn templates_are_expanded_with_resolved_params() {
        let plan = planned(&[("max_depth", "6"), ("seed", "11")]);
        let train = plan.steps.iter().find(|s| s.name == "train").unwrap();
        assert_eq!(
            train.command,
            [
                "python",
                "/app/train.py",
                "--max-depth",
                "6",
                "--data",
                "/gantry/inputs/train"
            ]
        );
        assert_eq!(train.env["DEPTH"], "6");
        assert_eq!(
            train.image,
            ImageRef::Image("registry.example.com/trainer@sha256:0f3c".into())
        );
        let split = plan.steps.iter().find(|s| s.name == "split").unwrap();
        assert_eq!(split.image, ImageRef::Builtin("split".into()));
        assert_eq!(split.with["test_fraction"], json!(0.2));
        assert_eq!(split.with["seed"], json!(11));
        assert_eq!(split.with["tag"], json!("s11"));
        let lint = plan.steps.iter().find(|s| s.name == "lint").unwrap();
        assert_eq!(lint.command, ["echo", "${literal}"]);
        assert_eq!(lint.resources, Resources::default());
        assert!(lint.cache);
    }

    fn hand_built(steps: Vec<Step>) -> Pipeline {
        Pipeline {
            name: "p".into(),
            description: None,
            params: indexmap::IndexMap::new(),
            steps,
            file: "p.yaml".into(),
            base_dir: ".".into(),
        }
    }

    fn step(name: &str, line: usize, after: &[&str]) -> Step {
        Step {
            name: name.into(),
            image: Some("busybox".into()),
            uses: None,
            command: vec![],
            env: BTreeMap::new(),
            with: BTreeMap::new(),
            inputs: BTreeMap::new(),
            outputs: vec![],
            after: after.iter().map(|s| (*s).to_owned()).collect(),
            retries: 0,
            timeout: None,
            resources: Resources::default(),
            network: false,
            cache: true,
            location: crate::Location {
                file: "p.yaml".into(),
                line,
                column: 5,
            },
        }
    }

    #[test]
    fn hand_built_pipelines_are_checked_too() {
        let p = hand_built(vec![step("a", 3, &["b"]), step("b", 6, &["a"])]);
        let err = plan(&p, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.diagnostics.len(), 1);
        let d = &err.diagnostics[0];
        assert_eq!(d.message, "dependency cycle: a -> b -> a");
        assert_eq!(d.location.as_ref().unwrap().line, 3);

        let mut s = step("a", 3, &[]);
        s.command = vec!["${params.missing}".into()];
        let err = plan(&hand_built(vec![s]), &BTreeMap::new()).unwrap_err();
        assert!(
            err.diagnostics[0]
                .message
                .contains("unknown param 'missing'")
        );
        assert_eq!(err.diagnostics[0].location.as_ref().unwrap().line, 3);

        let err = plan(&hand_built(vec![step("a", 3, &["zz"])]), &BTreeMap::new()).unwrap_err();
        assert!(err.diagnostics[0].message.contains("unknown step 'zz'"));
    }
}
