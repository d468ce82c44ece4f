//! Checks across steps: unique names, references, templates and cycles.

use std::collections::{BTreeMap, HashMap};

use crate::dag::Dag;
use crate::error::Diagnostics;
use crate::located::Pos;
use crate::params::ParamValue;
use crate::parse::{InputDraft, StepDraft};
use crate::pipeline::{InputSource, Pipeline};
use crate::suggestion::did_you_mean;
use crate::template::Scope;

/// Resolves input references into `step.inputs` and reports every cross-step problem.
pub(crate) fn validate(p: &Pipeline, drafts: &mut [StepDraft], diags: &mut Diagnostics) {
    let mut index_of: HashMap<String, usize> = HashMap::new();
    // Owned: `drafts` is borrowed mutably below while hints still list these.
    let mut known_names: Vec<String> = Vec::new();
    for (i, d) in drafts.iter().enumerate() {
        if !d.named {
            continue;
        }
        match index_of.get(&d.step.name) {
            Some(&first) => diags.error(
                d.name_pos,
                format!(
                    "duplicate step name '{}' (first declared at line {})",
                    d.step.name, drafts[first].name_pos.line
                ),
                "step names must be unique; rename one of them",
            ),
            None => {
                index_of.insert(d.step.name.clone(), i);
                known_names.push(d.step.name.clone());
            }
        }
    }
    let step_names: Vec<&str> = known_names.iter().map(String::as_str).collect();
    let outputs: Vec<Vec<String>> = drafts.iter().map(|d| d.step.outputs.clone()).collect();
    let params: BTreeMap<String, ParamValue> = p
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let mut dag = Dag::new(drafts.len());
    // Where each dependency was declared, to point a cycle report at it.
    let mut edge_pos: HashMap<(usize, usize), Pos> = HashMap::new();

    for (i, draft) in drafts.iter_mut().enumerate() {
        let label = draft.label(i);
        let own = draft.named.then(|| draft.step.name.clone());

        for (name, pos) in &draft.after {
            if own.as_deref() == Some(name.as_str()) {
                diags.error(
                    *pos,
                    format!("{label} lists itself in `after`"),
                    "remove it; a step cannot wait for itself",
                );
            } else if let Some(&dep) = index_of.get(name) {
                dag.add_dependency(i, dep);
                edge_pos.entry((i, dep)).or_insert(*pos);
            } else {
                diags.error(
                    *pos,
                    format!("`after` of {label} names unknown step '{name}'"),
                    did_you_mean(name, &step_names, "steps of this pipeline"),
                );
            }
        }

        for input in &draft.inputs {
            let reference = match &input.source {
                InputDraft::Path(path) => {
                    draft
                        .step
                        .inputs
                        .insert(input.name.clone(), InputSource::Path(path.clone()));
                    continue;
                }
                InputDraft::Url(url) => {
                    draft
                        .step
                        .inputs
                        .insert(input.name.clone(), InputSource::Url(url.clone()));
                    continue;
                }
                InputDraft::Reference(r) => r,
            };
            let Some((dep, step, output)) = resolve_reference(reference, &index_of, &outputs)
            else {
                let step = reference.split('.').next().unwrap_or(reference);
                diags.error(
                    input.pos,
                    format!(
                        "input '{}' of {label} refers to unknown step '{step}'",
                        input.name
                    ),
                    did_you_mean(step, &step_names, "steps of this pipeline"),
                );
                continue;
            };
            if dep == i {
                diags.error(
                    input.pos,
                    format!(
                        "input '{}' of {label} refers to the step's own output '{output}'",
                        input.name
                    ),
                    "a step cannot consume its own output; take it from an earlier step",
                );
                continue;
            }
            if !outputs[dep].contains(&output) {
                let declared: Vec<&str> = outputs[dep].iter().map(String::as_str).collect();
                let hint = if declared.is_empty() {
                    format!("step '{step}' declares no outputs; add `outputs: [{output}]` to it")
                } else {
                    did_you_mean(&output, &declared, &format!("outputs of step '{step}'"))
                };
                diags.error(
                    input.pos,
                    format!(
                        "input '{}' of {label} refers to '{reference}', but step '{step}' has no output '{output}'",
                        input.name
                    ),
                    hint,
                );
                continue;
            }
            dag.add_dependency(i, dep);
            edge_pos.entry((i, dep)).or_insert(input.pos);
            draft
                .step
                .inputs
                .insert(input.name.clone(), InputSource::Step { step, output });
        }

        let step_name = own.as_deref().unwrap_or(&label);
        // Any combination will do to check which `${matrix.x}` keys exist.
        let first_combination: BTreeMap<String, serde_json::Value> = draft
            .step
            .matrix
            .iter()
            .map(|(k, values)| (k.clone(), values.first().cloned().unwrap_or_default()))
            .collect();
        let scope = Scope {
            params: &params,
            inputs: draft.inputs.iter().map(|inp| inp.name.as_str()).collect(),
            step: step_name,
            matrix: (!draft.step.matrix.is_empty()).then_some(&first_combination),
        };
        for (text, pos) in &draft.templates {
            if let Err(e) = scope.render(text) {
                diags.error(*pos, e.message, e.hint);
            }
        }
        let params_only = Scope {
            params: &params,
            inputs: Vec::new(),
            step: step_name,
            matrix: None,
        };
        for (text, pos) in &draft.matrix_templates {
            if let Err(e) = params_only.render(text) {
                diags.error(*pos, e.message, e.hint);
            }
        }
    }

    for cycle in dag.cycles() {
        let path: Vec<&str> = cycle
            .iter()
            .map(|&i| drafts[i].step.name.as_str())
            .collect();
        let pos = match cycle.as_slice() {
            [from, to, ..] => edge_pos
                .get(&(*to, *from))
                .copied()
                .unwrap_or(drafts[*to].name_pos),
            _ => drafts[cycle[0]].name_pos,
        };
        diags.error(
            pos,
            format!("dependency cycle: {}", path.join(" -> ")),
            "each step here needs the one before it; remove one of these input references or `after` entries",
        );
    }
}

/// Splits `step.output`; step and output names may both contain dots, so the split
/// that names an existing step with that output wins, then any existing step.
fn resolve_reference(
    reference: &str,
    index_of: &HashMap<String, usize>,
    outputs: &[Vec<String>],
) -> Option<(usize, String, String)> {
    let splits = reference
        .match_indices('.')
        .map(|(k, _)| (&reference[..k], &reference[k + 1..]));
    let mut fallback = None;
    for (step, output) in splits {
        if let Some(&i) = index_of.get(step) {
            if outputs[i].iter().any(|o| o == output) {
                return Some((i, step.to_owned(), output.to_owned()));
            }
            fallback.get_or_insert((i, step.to_owned(), output.to_owned()));
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{errors, only_error};
    use crate::{InputSource, parse};
    use std::path::Path;

    const HEAD: &str = "name: p\nsteps:\n";

    #[test]
    fn duplicate_step_names_point_at_the_second_and_mention_the_first() {
        only_error(
            &format!(
                "{HEAD}  - name: a\n    image: x\n  - name: b\n    image: x\n  - name: a\n    image: y\n"
            ),
            7,
            11,
            &["duplicate step name 'a'", "line 3"],
        );
    }

    #[test]
    fn cycles_list_the_path() {
        let d = only_error(
            &format!(
                "{HEAD}  - name: a\n    image: x\n    inputs: {{ i: b.o }}\n    outputs: [o]\n  - name: b\n    image: x\n    inputs: {{ i: a.o }}\n    outputs: [o]\n"
            ),
            9,
            18,
            &["dependency cycle: a -> b -> a"],
        );
        assert!(d.hint.unwrap().contains("remove one"));
        only_error(
            &format!(
                "{HEAD}  - name: a\n    image: x\n    after: [c]\n  - name: b\n    image: x\n    after: [a]\n  - name: c\n    image: x\n    after: [b]\n"
            ),
            8,
            13,
            &["dependency cycle: a -> b -> c -> a"],
        );
    }

    #[test]
    fn dangling_inputs_name_the_step_and_list_its_outputs() {
        let yaml = |inp: &str| {
            format!(
                "{HEAD}  - name: train\n    image: x\n    outputs: [model, metrics]\n  - name: eval\n    image: x\n    inputs: {{ m: {inp} }}\n"
            )
        };
        let d = only_error(
            &yaml("trian.model"),
            8,
            18,
            &["input 'm' of step 'eval' refers to unknown step 'trian'"],
        );
        assert!(d.hint.unwrap().contains("did you mean `train`"));
        let d = only_error(
            &yaml("train.modle"),
            8,
            18,
            &[
                "refers to 'train.modle'",
                "step 'train' has no output 'modle'",
            ],
        );
        let hint = d.hint.unwrap();
        assert!(hint.contains("did you mean `model`"), "{hint}");
        assert!(
            hint.contains("outputs of step 'train': model, metrics"),
            "{hint}"
        );
        let d = only_error(
            &format!(
                "{HEAD}  - name: a\n    image: x\n  - name: b\n    image: x\n    inputs: {{ m: a.out }}\n"
            ),
            7,
            18,
            &["step 'a' has no output 'out'"],
        );
        assert!(d.hint.unwrap().contains("declares no outputs"));
        only_error(
            &format!(
                "{HEAD}  - name: a\n    image: x\n    outputs: [o]\n    inputs: {{ m: a.o }}\n"
            ),
            6,
            18,
            &["own output 'o'"],
        );
    }

    #[test]
    fn after_must_name_another_existing_step() {
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    after: [a]\n"),
            5,
            13,
            &["step 'a' lists itself in `after`"],
        );
        let d = only_error(
            &format!(
                "{HEAD}  - name: build\n    image: x\n  - name: b\n    image: x\n    after: [biuld]\n"
            ),
            7,
            13,
            &["`after` of step 'b' names unknown step 'biuld'"],
        );
        assert!(d.hint.unwrap().contains("build"));
    }

    #[test]
    fn unknown_template_references_are_located_at_the_string() {
        let base = "name: p\nparams: { depth: 4 }\nsteps:\n  - name: a\n    image: x\n    outputs: [o]\n  - name: b\n    image: x\n    inputs: { data: a.o }\n";
        let d = only_error(
            &format!("{base}    command: [run, \"${{params.nope}}\"]\n"),
            10,
            20,
            &["unknown param 'nope'", "${params.nope}"],
        );
        assert!(d.hint.unwrap().contains("depth"));
        let d = only_error(
            &format!("{base}    env: {{ F: \"${{inputs.nope}}\" }}\n"),
            10,
            15,
            &["unknown input 'nope'", "step 'b'"],
        );
        assert!(d.hint.unwrap().contains("data"));
        only_error(
            &format!("{base}    with:\n      nested: {{ list: [1, \"x-${{params.dpth}}\"] }}\n"),
            11,
            27,
            &["unknown param 'dpth'"],
        );
        only_error(
            &format!("{base}    command: [sh, -c, \"echo ${{HOME}}\"]\n"),
            10,
            23,
            &["unsupported reference `${HOME}`"],
        );
        // Escaped and valid references pass.
        let ok = format!(
            "{base}    command: [sh, -c, \"echo $${{HOME}} ${{params.depth}} ${{inputs.data}}\"]\n"
        );
        parse("p.yaml", Path::new("."), &ok).unwrap();
    }

    #[test]
    fn matrix_references_are_checked_against_the_step_matrix() {
        let base = "name: p\nparams: { depth: 4 }\nsteps:\n  - name: t\n    image: x\n    matrix: { algo: [a, b], max_depth: [2, \"${params.depth}\"] }\n";
        let ok = format!(
            "{base}    command: [fit, \"${{matrix.algo}}\", \"--d=${{matrix.max_depth}}\"]\n    env: {{ A: \"${{matrix.algo}}\" }}\n    with: {{ tag: \"${{matrix.algo}}\" }}\n"
        );
        parse("p.yaml", Path::new("."), &ok).unwrap();
        let d = only_error(
            &format!("{base}    command: [fit, \"${{matrix.max_dept}}\"]\n"),
            7,
            20,
            &["unknown matrix key 'max_dept' in `${matrix.max_dept}` of step 't'"],
        );
        let hint = d.hint.unwrap();
        assert!(
            hint.contains("did you mean `${matrix.max_depth}`"),
            "{hint}"
        );
        assert!(hint.contains("algo, max_depth"), "{hint}");
        let d = only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    env: {{ A: \"${{matrix.algo}}\" }}\n"),
            5,
            15,
            &["`${matrix.algo}` in step 'a', which has no `matrix`"],
        );
        assert!(d.hint.unwrap().contains("matrix:"));
        only_error(
            "name: p\nparams: { depth: 4 }\nsteps:\n  - name: t\n    image: x\n    matrix: { d: [\"${params.dpth}\"] }\n",
            6,
            19,
            &["unknown param 'dpth'"],
        );
    }

    #[test]
    fn dotted_step_and_output_names_resolve_to_the_declared_pair() {
        let p = parse(
            "p.yaml",
            Path::new("."),
            &format!(
                "{HEAD}  - name: prep.v2\n    image: x\n    outputs: [data.csv]\n  - name: b\n    image: x\n    inputs: {{ d: prep.v2.data.csv }}\n"
            ),
        )
        .unwrap();
        assert_eq!(
            p.steps[1].inputs["d"],
            InputSource::Step {
                step: "prep.v2".into(),
                output: "data.csv".into()
            }
        );
    }

    #[test]
    fn problems_across_steps_are_all_reported() {
        let errs = errors(&format!(
            "{HEAD}  - name: a\n    image: x\n    after: [zz]\n  - name: a\n    image: x\n    inputs: {{ i: q.o }}\n    command: [\"${{params.x}}\"]\n"
        ));
        let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errs.len(), 4, "{messages:#?}");
        assert!(messages[0].contains("unknown step 'zz'"));
        assert!(messages[1].contains("duplicate step name 'a'"));
        assert!(messages[2].contains("unknown step 'q'"));
        assert!(messages[3].contains("unknown param 'x'"));
    }
}
