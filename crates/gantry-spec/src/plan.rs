//! A pipeline with params resolved, templates expanded and steps in run order:
//! matrix steps expanded into one step per combination, built-in `source`s turned
//! into inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dag::Dag;
use crate::error::{Diagnostic, SpecError};
use crate::matrix::{Combination, expand};
use crate::params::ParamValue;
use crate::pipeline::{InputSource, Pipeline, Resources, Step};
use crate::source::{DataSource, classify_source};
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
    /// The declared name, or `step[key=value,…]` for one combination of a matrix step.
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
    /// `retries: { memory_growth: G }`: memory × G for the attempt after an OOM kill, capped
    /// by the machine; `None`: retries get the same memory. Not part of the cache key.
    #[serde(default)]
    pub retry_memory_growth: Option<f64>,
    pub timeout: Option<Duration>,
    /// SIGTERM → SIGKILL on timeout or cancellation; not part of the cache key.
    #[serde(default = "default_timeout_grace")]
    pub timeout_grace: Duration,
    /// Not part of the cache key (nor is `memory: auto`'s recommendation).
    pub resources: Resources,
    /// The log bytes kept for one attempt (`logs.max`); not part of the cache key.
    #[serde(default = "default_logs_max")]
    pub logs_max: u64,
    pub network: bool,
    pub cache: bool,
    /// Where the pod may run on a cluster; not part of the cache key.
    #[serde(default, skip_serializing_if = "crate::KubePlacement::is_empty")]
    pub kubernetes: crate::KubePlacement,
    /// Set on the steps a `matrix:` step expands into.
    #[serde(default)]
    pub sweep: Option<Sweep>,
}

/// Which combination of a matrix step a planned step runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// The declared matrix step, e.g. `train`.
    pub step: String,
    /// Position of this combination in expansion order, from 0.
    pub index: usize,
    /// Matrix key -> value, with `${params.x}` already expanded; also merged into `with`.
    pub values: BTreeMap<String, serde_json::Value>,
    /// `key=value,…` with keys in declaration order, e.g. `algorithm=logistic,max_depth=2`.
    pub label: String,
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
            InputSource::Step { step, .. } | InputSource::Sweep { step, .. } => Some(step),
            InputSource::Path(_) | InputSource::Url(_) => None,
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

    // `None` for a plain step; a failed grid is reported and planned as empty.
    let mut grids: Vec<Option<Vec<Combination>>> = Vec::with_capacity(p.steps.len());
    for step in &p.steps {
        if step.matrix.is_empty() {
            grids.push(None);
            continue;
        }
        let scope = Scope {
            params,
            inputs: Vec::new(),
            step: &step.name,
            matrix: None,
        };
        match expand(&step.matrix, &scope) {
            Ok(combinations) => grids.push(Some(combinations)),
            Err(e) => {
                fail(step, e.message, &e.hint);
                grids.push(Some(Vec::new()));
            }
        }
    }
    let instance_names = |i: usize| -> Vec<String> {
        match &grids[i] {
            None => vec![p.steps[i].name.clone()],
            Some(combinations) => combinations
                .iter()
                .map(|c| sweep_member_name(&p.steps[i].name, &c.label))
                .collect(),
        }
    };

    // Expansions of one step stay together where the step was: everything they
    // need comes before it, everything that needs any of them after.
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
        let step_deps: Vec<String> = deps[i].iter().flat_map(|&d| instance_names(d)).collect();
        let inputs: BTreeMap<String, InputSource> = step
            .inputs
            .iter()
            .map(|(name, source)| (name.clone(), fan_in(source, &index_of, &grids)))
            .collect();
        let combinations: Vec<Option<&Combination>> = match &grids[i] {
            None => vec![None],
            Some(combinations) => combinations.iter().map(Some).collect(),
        };
        for (index, combination) in combinations.into_iter().enumerate() {
            let scope = Scope {
                params,
                inputs: step.inputs.keys().map(String::as_str).collect(),
                step: &step.name,
                matrix: combination.map(|c| &c.values),
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
            // One report per declared step, not one per combination.
            let (command, env, mut with) = match expanded {
                Ok(parts) => parts,
                Err(e) => {
                    fail(step, e.message, &e.hint);
                    break;
                }
            };
            if let Some(c) = combination {
                with.extend(c.values.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let mut inputs = inputs.clone();
            if let (ImageRef::Builtin(_), Some(serde_json::Value::String(text)), false) =
                (&image, with.get("source"), inputs.contains_key("source"))
            {
                let source = match classify_source(text) {
                    Ok(DataSource::Url(url)) => InputSource::Url(url),
                    Ok(DataSource::Path(path)) => {
                        InputSource::Path(crate::pipeline::resolve_path(&p.base_dir, &path))
                    }
                    Err(e) => {
                        fail(
                            step,
                            format!("bad `source` of step '{}': {}", step.name, e.reason),
                            e.hint,
                        );
                        break;
                    }
                };
                inputs.insert("source".to_owned(), source);
            }
            planned.push(PlannedStep {
                name: match combination {
                    Some(c) => sweep_member_name(&step.name, &c.label),
                    None => step.name.clone(),
                },
                image: image.clone(),
                command,
                env,
                with,
                inputs,
                outputs: step.outputs.clone(),
                deps: step_deps.clone(),
                retries: step.retries,
                timeout: step.timeout,
                timeout_grace: step.timeout_grace.unwrap_or(crate::DEFAULT_TIMEOUT_GRACE),
                retry_memory_growth: step.retry_memory_growth,
                resources: step.resources.clone(),
                logs_max: step.logs_max.unwrap_or(crate::DEFAULT_LOGS_MAX),
                network: step.network,
                cache: step.cache,
                kubernetes: step.kubernetes.clone(),
                sweep: combination.map(|c| Sweep {
                    step: step.name.clone(),
                    index,
                    values: c.values.clone(),
                    label: c.label.clone(),
                }),
            });
        }
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

fn sweep_member_name(step: &str, label: &str) -> String {
    format!("{step}[{label}]")
}

/// A reference to an output of a matrix step means that output of every combination.
fn fan_in(
    source: &InputSource,
    index_of: &HashMap<&str, usize>,
    grids: &[Option<Vec<Combination>>],
) -> InputSource {
    let (InputSource::Step { step, output } | InputSource::Sweep { step, output, .. }) = source
    else {
        return source.clone();
    };
    match index_of.get(step.as_str()).and_then(|&d| grids[d].as_ref()) {
        Some(combinations) => InputSource::Sweep {
            step: step.clone(),
            output: output.clone(),
            members: combinations
                .iter()
                .map(|c| (c.label.clone(), sweep_member_name(step, &c.label)))
                .collect(),
        },
        None => InputSource::Step {
            step: step.clone(),
            output: output.clone(),
        },
    }
}

fn default_timeout_grace() -> Duration {
    crate::DEFAULT_TIMEOUT_GRACE
}

fn default_logs_max() -> u64 {
    crate::DEFAULT_LOGS_MAX
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

    const SWEEP: &str = r#"name: sweep
params:
  depth: 8
  data: data/train.csv
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: "${params.data}" }
    outputs: [dataset]
  - name: train
    uses: builtin/train
    inputs: { train: ingest.dataset }
    with: { label: diagnosis, seed: 7, algorithm: overridden }
    matrix:
      algorithm: [logistic, random_forest]
      max_depth: [2, 4, "${params.depth}"]
    outputs: [model]
  - name: pick
    uses: builtin/select
    inputs: { candidates: train.model, data: ingest.dataset }
    outputs: [best]
  - name: report
    image: busybox
    command: [sh, -c, "ls ${inputs.candidates}"]
    inputs: { candidates: train.model }
    after: [pick]
  - name: notify
    image: busybox
    after: [train]
  - name: probe
    image: busybox
    matrix: { shard: [a, b] }
    command: [probe, "--shard=${matrix.shard}"]
    env: { SHARD: "${matrix.shard}" }
    with: { n: "${matrix.shard}", tag: "t-${matrix.shard}" }
"#;

    fn sweep_plan(overrides: &[(&str, &str)]) -> Result<Plan, SpecError> {
        let p = parse("p.yaml", Path::new("/base"), SWEEP).unwrap();
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        plan(&p, &resolve_params(&p, &overrides).unwrap())
    }

    fn find<'a>(plan: &'a Plan, name: &str) -> &'a PlannedStep {
        plan.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step {name}"))
    }

    const TRAINS: [&str; 6] = [
        "train[algorithm=logistic,max_depth=2]",
        "train[algorithm=logistic,max_depth=4]",
        "train[algorithm=logistic,max_depth=8]",
        "train[algorithm=random_forest,max_depth=2]",
        "train[algorithm=random_forest,max_depth=4]",
        "train[algorithm=random_forest,max_depth=8]",
    ];

    #[test]
    fn a_matrix_step_expands_in_place_one_step_per_combination() {
        let plan = sweep_plan(&[]).unwrap();
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        let mut expected = vec!["ingest"];
        expected.extend(TRAINS);
        expected.extend([
            "pick",
            "report",
            "notify",
            "probe[shard=a]",
            "probe[shard=b]",
        ]);
        assert_eq!(names, expected);

        let last = find(&plan, TRAINS[5]);
        assert_eq!(last.image, ImageRef::Builtin("train".into()));
        assert_eq!(
            last.with,
            BTreeMap::from([
                ("label".to_owned(), json!("diagnosis")),
                ("seed".to_owned(), json!(7)),
                // The matrix wins over `with`, and a param keeps its type.
                ("algorithm".to_owned(), json!("random_forest")),
                ("max_depth".to_owned(), json!(8)),
            ])
        );
        assert_eq!(
            last.sweep,
            Some(Sweep {
                step: "train".into(),
                index: 5,
                values: BTreeMap::from([
                    ("algorithm".to_owned(), json!("random_forest")),
                    ("max_depth".to_owned(), json!(8)),
                ]),
                label: "algorithm=random_forest,max_depth=8".into(),
            })
        );
        for (index, name) in TRAINS.iter().enumerate() {
            let t = find(&plan, name);
            assert_eq!(t.sweep.as_ref().unwrap().index, index);
            assert_eq!(t.deps, ["ingest"]);
            assert_eq!(t.outputs, ["model"]);
            assert_eq!(
                t.inputs["train"],
                InputSource::Step {
                    step: "ingest".into(),
                    output: "dataset".into()
                }
            );
        }
        assert_eq!(find(&plan, "pick").sweep, None);
        assert_eq!(find(&plan, "ingest").sweep, None);
        // A param override reaches matrix values too.
        let plan = sweep_plan(&[("depth", "16")]).unwrap();
        assert_eq!(
            find(&plan, "train[algorithm=logistic,max_depth=16]").with["max_depth"],
            json!(16)
        );
    }

    #[test]
    fn consumers_of_a_matrix_step_fan_in_over_every_combination() {
        let plan = sweep_plan(&[]).unwrap();
        let members: Vec<(String, String)> = TRAINS
            .iter()
            .map(|name| {
                let label = &name["train[".len()..name.len() - 1];
                (label.to_owned(), (*name).to_owned())
            })
            .collect();
        let pick = find(&plan, "pick");
        assert_eq!(
            pick.inputs["candidates"],
            InputSource::Sweep {
                step: "train".into(),
                output: "model".into(),
                members: members.clone(),
            }
        );
        assert_eq!(
            pick.inputs["data"],
            InputSource::Step {
                step: "ingest".into(),
                output: "dataset".into()
            }
        );
        let mut deps = vec!["ingest"];
        deps.extend(TRAINS);
        assert_eq!(pick.deps, deps);

        let report = find(&plan, "report");
        assert_eq!(report.command, ["sh", "-c", "ls /gantry/inputs/candidates"]);
        let mut deps = TRAINS.to_vec();
        deps.push("pick");
        assert_eq!(report.deps, deps);

        // The declared pipeline keeps the plain reference.
        let p = parse("p.yaml", Path::new("/base"), SWEEP).unwrap();
        assert_eq!(
            p.steps[2].inputs["candidates"],
            InputSource::Step {
                step: "train".into(),
                output: "model".into()
            }
        );
    }

    #[test]
    fn after_a_matrix_step_waits_for_every_combination() {
        let plan = sweep_plan(&[]).unwrap();
        assert_eq!(find(&plan, "notify").deps, TRAINS);
        let position = |name: &str| plan.steps.iter().position(|s| s.name == name).unwrap();
        for name in TRAINS {
            assert!(position(name) < position("notify"));
        }
    }

    #[test]
    fn matrix_values_fill_matrix_references_of_image_steps() {
        let plan = sweep_plan(&[]).unwrap();
        for shard in ["a", "b"] {
            let probe = find(&plan, &format!("probe[shard={shard}]"));
            assert_eq!(
                probe.command,
                ["probe".to_owned(), format!("--shard={shard}")]
            );
            assert_eq!(probe.env["SHARD"], shard);
            assert_eq!(probe.with["n"], json!(shard));
            assert_eq!(probe.with["tag"], json!(format!("t-{shard}")));
            assert_eq!(probe.with["shard"], json!(shard));
            assert!(probe.deps.is_empty());
        }
    }

    #[test]
    fn plan_rejects_grids_that_params_make_invalid() {
        // depth=4 duplicates the literal 4: two steps would share one name.
        let err = sweep_plan(&[("depth", "4")]).unwrap_err();
        assert_eq!(err.diagnostics.len(), 1, "{err}");
        let d = &err.diagnostics[0];
        assert!(
            d.message
                .contains("duplicate value '4' in matrix key 'max_depth' of step 'train'"),
            "{d}"
        );
        assert_eq!(d.location.as_ref().unwrap().line, 10);
        assert!(d.hint.is_some());

        let mut s = step("t", 3, &[]);
        s.matrix.insert("k".into(), vec![]);
        let err = plan(&hand_built(vec![s]), &BTreeMap::new()).unwrap_err();
        assert!(err.diagnostics[0].message.contains("has no values"));
        assert_eq!(err.diagnostics[0].location.as_ref().unwrap().line, 3);

        let mut s = step("t", 3, &[]);
        s.command = vec!["${matrix.k}".into()];
        let err = plan(&hand_built(vec![s]), &BTreeMap::new()).unwrap_err();
        assert!(err.diagnostics[0].message.contains("which has no `matrix`"));
    }

    #[test]
    fn the_source_of_a_builtin_step_becomes_its_source_input() {
        let source = |data: &str| {
            let plan = sweep_plan(&[("data", data)]).unwrap();
            let ingest = find(&plan, "ingest");
            // `source` stays in `with` too.
            assert_eq!(ingest.with["source"], json!(data));
            ingest.inputs["source"].clone()
        };
        assert_eq!(
            source("data/train.csv"),
            InputSource::Path("/base/data/train.csv".into())
        );
        assert_eq!(source("/srv/x.csv"), InputSource::Path("/srv/x.csv".into()));
        assert_eq!(
            source("file:///srv/x.csv"),
            InputSource::Path("/srv/x.csv".into())
        );
        assert_eq!(
            source("file://rel/x.csv"),
            InputSource::Path("/base/rel/x.csv".into())
        );
        assert_eq!(
            source("https://example.com/x.csv"),
            InputSource::Url("https://example.com/x.csv".into())
        );
        let plan = sweep_plan(&[]).unwrap();
        // Only built-in steps, and only when `with.source` is set.
        assert!(!find(&plan, "pick").inputs.contains_key("source"));
        assert!(!find(&plan, "probe[shard=a]").inputs.contains_key("source"));

        // Known only once params are resolved: reported at the step.
        let err = sweep_plan(&[("data", "s3://bucket/x.csv")]).unwrap_err();
        let d = &err.diagnostics[0];
        assert!(
            d.message
                .contains("bad `source` of step 'ingest': unsupported scheme 's3'"),
            "{d}"
        );
        assert_eq!(d.location.as_ref().unwrap().line, 6);
        assert!(d.hint.is_some());
        let err = sweep_plan(&[("data", "")]).unwrap_err();
        assert!(err.diagnostics[0].message.contains("it is empty"));
    }

    #[test]
    fn an_explicit_source_input_wins_over_with_source() {
        let p = parse(
            "p.yaml",
            Path::new("/base"),
            "name: p\nsteps:\n  - name: a\n    uses: builtin/csv-ingest\n    with: { source: https://example.com/x.csv }\n    inputs: { source: { path: local.csv } }\n",
        )
        .unwrap();
        let plan = plan(&p, &BTreeMap::new()).unwrap();
        assert_eq!(
            plan.steps[0].inputs["source"],
            InputSource::Path("/base/local.csv".into())
        );
    }

    #[test]
    fn a_sweep_plan_survives_a_json_round_trip() {
        let plan = sweep_plan(&[]).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        // Plans recorded before `sweep` existed still load.
        let mut value = serde_json::to_value(&plan.steps[0]).unwrap();
        value.as_object_mut().unwrap().remove("sweep");
        let old: PlannedStep = serde_json::from_value(value).unwrap();
        assert_eq!(old, plan.steps[0]);
    }

    const SIZED: &str = r#"name: sized
steps:
  - name: train
    image: busybox
    command: [train, "--shard=${matrix.shard}"]
    matrix: { shard: [a, b] }
    resources: { memory: auto, gpu: { count: 2, memory: 40Gi, model: H200 } }
    retries: { count: 2, memory_growth: 1.5 }
  - name: report
    image: busybox
    retries: 1
    after: [train]
"#;

    #[test]
    fn resources_and_memory_growth_reach_every_planned_step() {
        let p = parse("p.yaml", Path::new("/base"), SIZED).unwrap();
        let plan = plan(&p, &BTreeMap::new()).unwrap();
        let want = Resources {
            memory_auto: true,
            gpu: 2,
            gpu_memory_bytes: 40 << 30,
            gpu_model: Some("h200".into()),
            ..Resources::default()
        };
        for name in ["train[shard=a]", "train[shard=b]"] {
            let member = find(&plan, name);
            assert_eq!(member.resources, want, "{name}");
            assert_eq!(member.retries, 2);
            assert_eq!(member.retry_memory_growth, Some(1.5), "{name}");
        }
        let report = find(&plan, "report");
        assert_eq!(report.resources, Resources::default());
        assert_eq!((report.retries, report.retry_memory_growth), (1, None));

        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        // Plans recorded before these fields existed still load, with the defaults.
        let mut value = serde_json::to_value(find(&plan, "train[shard=a]")).unwrap();
        let step = value.as_object_mut().unwrap();
        step.remove("retry_memory_growth");
        let resources = step["resources"].as_object_mut().unwrap();
        for key in ["memory_auto", "gpu_memory_bytes", "gpu_model"] {
            resources.remove(key).unwrap();
        }
        let old: PlannedStep = serde_json::from_value(value).unwrap();
        assert_eq!(old.retry_memory_growth, None);
        assert_eq!(
            old.resources,
            Resources {
                gpu: 2,
                ..Resources::default()
            }
        );
    }

    #[test]
    fn resources_do_not_change_cache_keys() {
        let keyed = |resources: &str| {
            let text = SIZED.replace(
                "{ memory: auto, gpu: { count: 2, memory: 40Gi, model: H200 } }",
                resources,
            );
            let p = parse("p.yaml", Path::new("/base"), &text).unwrap();
            let plan = plan(&p, &BTreeMap::new()).unwrap();
            let step = find(&plan, "train[shard=a]").clone();
            // The material the engine builds from a planned step (`execute.rs`).
            let key = crate::cache_key(&crate::CacheKeyMaterial {
                image_digest: "sha256:0f3c",
                command: &step.command,
                env: &step.env,
                params: &BTreeMap::new(),
                inputs: &BTreeMap::new(),
                outputs: &step.outputs,
                component_version: None,
                resources_network: step.network,
            });
            (step, key)
        };
        let (auto, auto_key) = keyed("{ memory: auto }");
        let (fixed, fixed_key) = keyed("{ memory: 1Gi }");
        let (gpu, gpu_key) = keyed("{ memory: 1Gi, cpu: 4, gpu: { model: a100 } }");
        assert_ne!(auto.resources, fixed.resources);
        assert_ne!(gpu.resources, fixed.resources);
        assert_eq!(auto_key, fixed_key);
        assert_eq!(gpu_key, fixed_key);
        // Nothing else of the planned step differs either.
        let same_resources = |mut s: PlannedStep| {
            s.resources = Resources::default();
            s
        };
        assert_eq!(same_resources(auto), same_resources(fixed.clone()));
        assert_eq!(same_resources(gpu), same_resources(fixed));
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
            matrix: indexmap::IndexMap::new(),
            inputs: BTreeMap::new(),
            outputs: vec![],
            after: after.iter().map(|s| (*s).to_owned()).collect(),
            retries: 0,
            retry_memory_growth: None,
            timeout: None,
            timeout_grace: None,
            logs_max: None,
            resources: Resources::default(),
            network: false,
            cache: true,
            kubernetes: Default::default(),
            location: crate::Location {
                file: "p.yaml".into(),
                line,
                column: 5,
            },
            input_locations: BTreeMap::new(),
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
