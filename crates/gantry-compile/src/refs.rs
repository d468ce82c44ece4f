//! Gantry's own check of an emitted document: every reference in it resolves.
//!
//! Argo: the entrypoint and each task's template exist; `dependencies` name tasks of the same
//! DAG; `{{tasks.T.outputs.parameters.P}}` names a task of the DAG that the task depends on and
//! an output parameter of T's template; every `{{inputs.parameters.X}}` is an input of its
//! template, every `{{workflow.parameters.X}}` a workflow argument; each task passes exactly
//! its template's inputs.
//!
//! KFP: every `componentRef` names a component, every `executorLabel` an executor, every
//! `dependentTasks` / `producerTask` a task of the DAG (the producer also among the
//! dependencies) with that output parameter, every `componentInputParameter` a root input;
//! each task passes exactly its component's inputs; every `{{$.inputs.parameters['x']}}` and
//! `{{$.outputs.parameters['x'].output_file}}` in an executor is declared by each component
//! using it; the platform spec names only executors that exist.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use crate::Target;

/// Checks `doc` (what [`crate::compile`] returned for `target`); `Err` lists every dangling
/// reference found.
pub fn check_references(target: Target, doc: &str) -> Result<(), Vec<String>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(
        doc,
        serde_saphyr::options! { budget: serde_saphyr::budget! { max_reader_input_bytes: Some(64 << 20) } },
    )
    .map_err(|e| vec![format!("not YAML: {e}")])?;
    let mut errors = Vec::new();
    match (target, docs.as_slice()) {
        (Target::Argo, [wf]) => check_argo(wf, &mut errors),
        (Target::Kfp, [spec]) => check_kfp(spec, None, &mut errors),
        (Target::Kfp, [spec, platform]) => check_kfp(spec, Some(platform), &mut errors),
        _ => errors.push(format!(
            "unexpected number of YAML documents: {}",
            docs.len()
        )),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The `{{…}}` expressions in `text`, trimmed.
fn expressions(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push(after[..end].trim());
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    out
}

fn names<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .map(|items| items.iter().filter_map(|i| i[key].as_str()).collect())
        .unwrap_or_default()
}

fn check_argo(wf: &Value, errors: &mut Vec<String>) {
    let spec = &wf["spec"];
    let templates: HashMap<&str, &Value> = spec["templates"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["name"].as_str().map(|n| (n, t)))
                .collect()
        })
        .unwrap_or_default();
    let workflow_params: HashSet<&str> = names(&spec["arguments"]["parameters"], "name")
        .into_iter()
        .collect();
    match spec["entrypoint"].as_str() {
        Some(e) if templates.contains_key(e) => {}
        other => errors.push(format!("spec.entrypoint {other:?} names no template")),
    }
    for (name, t) in &templates {
        let inputs: HashSet<&str> = names(&t["inputs"]["parameters"], "name")
            .into_iter()
            .collect();
        let mut texts = Vec::new();
        // A DAG's task arguments are resolved in the DAG's scope, not the template's.
        let mut body = (*t).clone();
        if let Some(obj) = body.as_object_mut()
            && obj.remove("dag").is_some()
        {
            // A DAG's outputs re-export its tasks' outputs: checked with the tasks below.
            obj.remove("outputs");
        }
        strings(&body, &mut texts);
        for text in texts {
            for e in expressions(text) {
                if let Some(p) = e.strip_prefix("inputs.parameters.") {
                    if !inputs.contains(p) {
                        errors.push(format!(
                            "template {name}: {{{{{e}}}}} is not an input of the template"
                        ));
                    }
                } else if let Some(p) = e.strip_prefix("workflow.parameters.") {
                    if !workflow_params.contains(p) {
                        errors.push(format!(
                            "template {name}: {{{{{e}}}}} is not a workflow argument"
                        ));
                    }
                } else if e.starts_with("tasks.") {
                    errors.push(format!(
                        "template {name}: {{{{{e}}}}} outside a DAG's task arguments"
                    ));
                }
            }
        }
        let Some(tasks) = t["dag"]["tasks"].as_array() else {
            continue;
        };
        let by_name: HashMap<&str, &Value> = tasks
            .iter()
            .filter_map(|task| task["name"].as_str().map(|n| (n, task)))
            .collect();
        if by_name.len() != tasks.len() {
            errors.push(format!("template {name}: duplicate or unnamed tasks"));
        }
        let mut exported = Vec::new();
        strings(&t["outputs"], &mut exported);
        for text in exported {
            for e in expressions(text) {
                let found = e
                    .strip_prefix("tasks.")
                    .and_then(|rest| rest.split_once(".outputs.parameters."))
                    .and_then(|(producer, param)| {
                        let pt = by_name.get(producer)?["template"].as_str()?;
                        names(&templates.get(pt)?["outputs"]["parameters"], "name")
                            .contains(&param)
                            .then_some(())
                    });
                if found.is_none() {
                    errors.push(format!(
                        "template {name}: output {{{{{e}}}}} names no output of a task of its DAG"
                    ));
                }
            }
        }
        for task in tasks {
            let tname = task["name"].as_str().unwrap_or("?");
            let where_ = format!("template {name}, task {tname}");
            let Some(target) = task["template"].as_str().and_then(|n| templates.get(n)) else {
                errors.push(format!(
                    "{where_}: template {:?} does not exist",
                    task["template"]
                ));
                continue;
            };
            let deps: HashSet<&str> = task["dependencies"]
                .as_array()
                .map(|d| d.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for d in &deps {
                if !by_name.contains_key(d) {
                    errors.push(format!(
                        "{where_}: dependency {d:?} is not a task of this DAG"
                    ));
                }
            }
            let wanted: BTreeSet<&str> = names(&target["inputs"]["parameters"], "name")
                .into_iter()
                .collect();
            let given: BTreeSet<&str> = names(&task["arguments"]["parameters"], "name")
                .into_iter()
                .collect();
            if wanted != given {
                errors.push(format!(
                    "{where_}: passes parameters {given:?}, its template takes {wanted:?}"
                ));
            }
            let mut texts = Vec::new();
            strings(&task["arguments"], &mut texts);
            for text in texts {
                for e in expressions(text) {
                    if let Some(rest) = e.strip_prefix("tasks.") {
                        let Some((producer, param)) = rest.split_once(".outputs.parameters.")
                        else {
                            errors.push(format!("{where_}: unexpected {{{{{e}}}}}"));
                            continue;
                        };
                        let Some(ptask) = by_name.get(producer) else {
                            errors.push(format!("{where_}: {{{{{e}}}}} names no task of this DAG"));
                            continue;
                        };
                        if !deps.contains(producer) {
                            errors.push(format!(
                                "{where_}: {{{{{e}}}}} but {producer} is not among its dependencies"
                            ));
                        }
                        let outputs: Vec<&str> = ptask["template"]
                            .as_str()
                            .and_then(|n| templates.get(n))
                            .map(|pt| names(&pt["outputs"]["parameters"], "name"))
                            .unwrap_or_default();
                        if !outputs.contains(&param) {
                            errors.push(format!(
                                "{where_}: {{{{{e}}}}}: {producer} has no output parameter {param}"
                            ));
                        }
                    } else if let Some(p) = e.strip_prefix("workflow.parameters.") {
                        if !workflow_params.contains(p) {
                            errors
                                .push(format!("{where_}: {{{{{e}}}}} is not a workflow argument"));
                        }
                    } else if let Some(p) = e.strip_prefix("inputs.parameters.") {
                        if !inputs.contains(p) {
                            errors.push(format!(
                                "{where_}: {{{{{e}}}}} is not an input of template {name}"
                            ));
                        }
                    } else {
                        errors.push(format!("{where_}: unexpected {{{{{e}}}}} in arguments"));
                    }
                }
            }
        }
    }
}

fn keys(value: &Value) -> HashSet<&str> {
    value
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn check_kfp(spec: &Value, platform: Option<&Value>, errors: &mut Vec<String>) {
    let components = &spec["components"];
    let executors = &spec["deploymentSpec"]["executors"];
    let executor_names = keys(executors);
    // Which components use each executor: their declarations must cover its placeholders.
    let mut users: HashMap<&str, Vec<&str>> = HashMap::new();
    if let Some(map) = components.as_object() {
        for (name, c) in map {
            match c["executorLabel"].as_str() {
                None if c.get("dag").is_some() => {}
                Some(e) if executor_names.contains(e) => users.entry(e).or_default().push(name),
                Some(e) => errors.push(format!(
                    "component {name}: executorLabel {e} names no executor"
                )),
                None => errors.push(format!("component {name}: no executorLabel")),
            }
        }
    }
    if let Some(map) = executors.as_object() {
        for (exec, e) in map {
            let comps = users.get(exec.as_str()).cloned().unwrap_or_default();
            if comps.is_empty() {
                errors.push(format!("executor {exec} is used by no component"));
            }
            let mut texts = Vec::new();
            strings(e, &mut texts);
            for text in texts {
                for ex in expressions(text) {
                    let (kind, rest) = if let Some(r) = ex.strip_prefix("$.inputs.parameters['") {
                        ("inputDefinitions", r)
                    } else if let Some(r) = ex.strip_prefix("$.outputs.parameters['") {
                        ("outputDefinitions", r)
                    } else if ex == "$.pipeline_job_name" || ex == "$.pipeline_job_uuid" {
                        continue;
                    } else {
                        errors.push(format!(
                            "executor {exec}: unexpected placeholder {{{{{ex}}}}}"
                        ));
                        continue;
                    };
                    let Some((param, _)) = rest.split_once("']") else {
                        errors.push(format!("executor {exec}: malformed {{{{{ex}}}}}"));
                        continue;
                    };
                    for c in &comps {
                        if !keys(&components[*c][kind]["parameters"]).contains(param) {
                            errors.push(format!("executor {exec}: {{{{{ex}}}}} but component {c} has no such parameter in {kind}"));
                        }
                    }
                }
            }
        }
    }
    check_kfp_dag("root", &spec["root"], components, errors);
    if let Some(map) = components.as_object() {
        for (name, c) in map.iter().filter(|(_, c)| c.get("dag").is_some()) {
            check_kfp_dag(&format!("component {name}"), c, components, errors);
        }
    }
    if let Some(platform) = platform {
        let pexecs = &platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"];
        for name in keys(pexecs) {
            if !executor_names.contains(name) {
                errors.push(format!(
                    "platform spec: executor {name} is not in deploymentSpec.executors"
                ));
            }
        }
    }
}

/// The tasks of one DAG (the root's or a DAG component's): components, dependencies, inputs
/// from the DAG's own inputs or its other tasks' outputs.
fn check_kfp_dag(scope: &str, dag: &Value, components: &Value, errors: &mut Vec<String>) {
    let tasks = &dag["dag"]["tasks"];
    let scope_inputs = keys(&dag["inputDefinitions"]["parameters"]);
    let task_names = keys(tasks);
    if let Some(map) = tasks.as_object() {
        for (tname, task) in map {
            let where_ = format!("{scope} task {tname}");
            let comp_name = task["componentRef"]["name"].as_str().unwrap_or("");
            let Some(comp) = components.get(comp_name) else {
                errors.push(format!(
                    "{where_}: componentRef {comp_name:?} names no component"
                ));
                continue;
            };
            let deps: HashSet<&str> = task["dependentTasks"]
                .as_array()
                .map(|d| d.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for d in &deps {
                if !task_names.contains(d) {
                    errors.push(format!("{where_}: dependentTasks names {d:?}, not a task"));
                }
            }
            let given = keys(&task["inputs"]["parameters"]);
            let wanted = keys(&comp["inputDefinitions"]["parameters"]);
            if given != wanted {
                let mut g: Vec<_> = given.iter().collect();
                let mut w: Vec<_> = wanted.iter().collect();
                g.sort();
                w.sort();
                errors.push(format!("{where_}: passes {g:?}, {comp_name} takes {w:?}"));
            }
            if let Some(inputs) = task["inputs"]["parameters"].as_object() {
                for (input, v) in inputs {
                    if let Some(p) = v["componentInputParameter"].as_str()
                        && !scope_inputs.contains(p)
                    {
                        errors.push(format!(
                            "{where_}.{input}: componentInputParameter {p} is not an input of {scope}"
                        ));
                    }
                    if let Some(producer) = v["taskFinalStatus"]["producerTask"].as_str()
                        && (!deps.contains(producer) || !task_names.contains(producer))
                    {
                        errors.push(format!(
                            "{where_}.{input}: taskFinalStatus of {producer:?}, not a task it depends on"
                        ));
                    }
                    let top = &v["taskOutputParameter"];
                    if let Some(producer) = top["producerTask"].as_str() {
                        let key = top["outputParameterKey"].as_str().unwrap_or("");
                        if !deps.contains(producer) {
                            errors.push(format!("{where_}.{input}: producerTask {producer} is not among dependentTasks"));
                        }
                        let produced = tasks
                            .get(producer)
                            .and_then(|t| t["componentRef"]["name"].as_str())
                            .and_then(|c| components.get(c))
                            .map(|c| keys(&c["outputDefinitions"]["parameters"]).contains(key));
                        match produced {
                            Some(true) => {}
                            Some(false) => errors.push(format!(
                                "{where_}.{input}: {producer} has no output parameter {key}"
                            )),
                            None => errors.push(format!(
                                "{where_}.{input}: producerTask {producer} is not a task"
                            )),
                        }
                    }
                }
            }
        }
    }
}
