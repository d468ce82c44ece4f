//! The Argo Workflows target: one `Workflow` whose entrypoint is a DAG, one container template
//! per declared step (a sweep's members share theirs, see [`crate::merge`]), each pod like the
//! Kubernetes runtime's Job: the fetch init container, the step under the wrapper, the same
//! security context, requests = limits.

use std::collections::BTreeMap;

use gantry_kube::contract::{PLAN_ENV, PlannedInput, StepPlan, VERSION, WORK_DIR, WRAPPER_BIN};
use gantry_kube::job::{
    ANNOTATION_STEP, FETCH_CONTAINER, HELPER_BINARY, LABEL_MANAGED_BY, LABEL_STEP, MANAGED_BY,
    STEP_CONTAINER, container_security,
};
use gantry_kube::names::{dns_label, label_value};
use gantry_spec::Pipeline;
use serde_json::{Value, json};

use crate::merge::merge;
use crate::names::Namer;
use crate::units::{Param, Source, Unit, Units};
use crate::{CompileError, CompileOptions, to_yaml};

/// Where the wrapper writes each output's digest (`DIR/<output>`), read as output parameters.
pub(crate) const DIGESTS_DIR: &str = "/gantry/digests";
/// The entrypoint DAG template.
pub(crate) const ENTRYPOINT: &str = "main";
pub(crate) const LABEL_PIPELINE: &str = "gantry.dev/pipeline";
pub(crate) const LABEL_NETWORK: &str = "gantry.dev/network";
pub(crate) const ANNOTATION_PIPELINE: &str = "gantry.dev/pipeline-name";
/// The most tasks in one DAG, templates in a Workflow and input parameters of a template
/// that Argo's Workflow CRD accepts (`maxItems`).
pub(crate) const MAX_ITEMS: usize = 200;

/// An input: its path and either (producer unit, output parameter) or a pinned digest.
type Wired = (String, Result<(usize, String), String>);

pub(crate) fn render(
    p: &Pipeline,
    units: &Units,
    opts: &CompileOptions,
) -> Result<String, CompileError> {
    // Workflow parameters, for the params left free.
    let param_names = units.free_param_names(&mut Namer::params(63, false));
    let placeholder = |param: &Param| -> String {
        let name = param_names
            .get(param.name.as_str())
            .cloned()
            .unwrap_or_default();
        format!("{{{{workflow.parameters.{name}}}}}")
    };

    let mut task_namer = Namer::new(63);
    let tasks: Vec<String> = units
        .units
        .iter()
        .map(|u| task_namer.name(&u.name))
        .collect();
    let outputs: Vec<BTreeMap<&str, String>> = units.units.iter().map(output_names).collect();

    // Each unit's template (no name yet) and its inputs as JSON, in the main DAG's scope.
    let producer = |from: usize, output: &str, unit: &Unit, path: &str| {
        outputs[from]
            .get(output)
            .map(|out| (from, out.clone()))
            .ok_or_else(|| CompileError::Step {
                step: unit.name.clone(),
                message: format!(
                    "input {path}: step '{}' has no output '{output}'",
                    units.units[from].name
                ),
            })
    };
    let mut built = Vec::with_capacity(units.units.len());
    // Per unit: its inputs with (producer unit, output parameter) or a pinned digest.
    let mut wiring: Vec<Vec<Wired>> = Vec::with_capacity(units.units.len());
    for (i, unit) in units.units.iter().enumerate() {
        let mut wired = Vec::with_capacity(unit.inputs.len());
        for input in &unit.inputs {
            let source = match &input.source {
                Source::Pinned(d) => Err(d.clone()),
                Source::Upstream { unit: from, output } => {
                    Ok(producer(*from, output, unit, &input.path)?)
                }
            };
            wired.push((input.path.clone(), source));
        }
        let outs: Vec<(&str, String)> = outputs[i]
            .iter()
            .map(|(o, name)| (*o, name.clone()))
            .collect();
        built.push(template(
            unit,
            units,
            !wired.is_empty(),
            &outs,
            opts,
            &placeholder,
        )?);
        wiring.push(wired);
    }

    // Group the members of each declared step.
    let groups = units.groups();

    let mut template_namer = Namer::new(63);
    let entry = template_namer.name(ENTRYPOINT);
    let end = opts
        .report
        .as_ref()
        .map(|_| template_namer.name(crate::END_NAME));
    let mut templates = Vec::with_capacity(groups.len() + 1);
    // Per unit: its template's name and the values of the template's varying parameters.
    let mut task_template: Vec<(String, Vec<String>)> =
        vec![(String::new(), Vec::new()); units.units.len()];
    for (group, members) in &groups {
        let member_templates: Vec<Value> = members
            .iter()
            .map(|&i| std::mem::take(&mut built[i]))
            .collect();
        let merged = merge(&member_templates, &|_| true, &|j| {
            format!("{{{{inputs.parameters.v-{j}}}}}")
        });
        match merged {
            Some(m) => {
                let name = template_namer.name(group);
                let varying = m.values.first().map_or(0, Vec::len);
                let mut t = m.template;
                add_inputs(&mut t, (0..varying).map(|j| format!("v-{j}")));
                templates.push(named(&name, t));
                for (&i, values) in members.iter().zip(m.values) {
                    task_template[i] = (name.clone(), values);
                }
            }
            None => {
                for (&i, t) in members.iter().zip(member_templates) {
                    let name = template_namer.name(&units.units[i].name);
                    templates.push(named(&name, t));
                    task_template[i] = (name, Vec::new());
                }
            }
        }
    }

    // Argo's CRD allows at most MAX_ITEMS tasks in a DAG: past that, each sweep runs as
    // nested DAGs ("parts") of at most MAX_ITEMS members, whose outputs the part re-exports.
    let mut part_of: Vec<Option<usize>> = vec![None; units.units.len()];
    let mut parts: Vec<(String, Vec<usize>)> = Vec::new();
    if units.units.len() > MAX_ITEMS {
        for (group, members) in groups.iter().filter(|(_, m)| m.len() > 1) {
            for (k, chunk) in members.chunks(MAX_ITEMS).enumerate() {
                let name = task_namer.name(&format!("{group}[part {k}]"));
                for &i in chunk {
                    part_of[i] = Some(parts.len());
                }
                parts.push((name, chunk.to_vec()));
            }
        }
    }
    let outer_ref = |from: usize, out: &str| match part_of[from] {
        Some(k) => format!(
            "{{{{tasks.{}.outputs.parameters.{}_{out}}}}}",
            parts[k].0, tasks[from]
        ),
        None => format!("{{{{tasks.{}.outputs.parameters.{out}}}}}", tasks[from]),
    };
    let outer_name = |i: usize| match part_of[i] {
        Some(k) => parts[k].0.clone(),
        None => tasks[i].clone(),
    };
    // The JSON of a unit's inputs, references resolved in the main DAG.
    let inputs_json = |i: usize| -> Result<Option<String>, CompileError> {
        if wiring[i].is_empty() {
            return Ok(None);
        }
        let planned: Vec<PlannedInput> = wiring[i]
            .iter()
            .map(|(path, source)| PlannedInput {
                path: path.clone(),
                digest: match source {
                    Ok((from, out)) => outer_ref(*from, out),
                    Err(digest) => digest.clone(),
                },
            })
            .collect();
        serde_json::to_string(&planned)
            .map(Some)
            .map_err(|e| CompileError::Serialize(e.to_string()))
    };
    let task = |i: usize, inputs: Option<String>, deps: Vec<String>| {
        let (template, values) = &task_template[i];
        let mut parameters: Vec<Value> = inputs
            .into_iter()
            .map(|v| json!({ "name": "inputs", "value": v }))
            .collect();
        parameters.extend(
            values
                .iter()
                .enumerate()
                .map(|(j, v)| json!({"name": format!("v-{j}"), "value": v})),
        );
        let mut task = json!({ "name": tasks[i], "template": template });
        if !deps.is_empty() {
            task["dependencies"] = json!(deps);
        }
        if !parameters.is_empty() {
            task["arguments"] = json!({ "parameters": parameters });
        }
        task
    };
    let outer_deps = |members: &[usize]| -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let own = part_of[members[0]];
        members
            .iter()
            .flat_map(|&i| units.units[i].deps.iter())
            .filter(|&&d| own.is_none() || part_of[d] != own)
            .map(|&d| outer_name(d))
            .filter(|n| seen.insert(n.clone()))
            .collect()
    };

    let mut dag_tasks = Vec::new();
    let mut done_parts = vec![false; parts.len()];
    for (i, part) in part_of.iter().enumerate() {
        match *part {
            None => dag_tasks.push(task(i, inputs_json(i)?, outer_deps(&[i]))),
            Some(k) if !done_parts[k] => {
                done_parts[k] = true;
                let (part, members) = &parts[k];
                // The members' inputs, each distinct JSON once, as the part's inputs.
                let mut distinct: Vec<String> = Vec::new();
                let mut inner = Vec::with_capacity(members.len());
                for &m in members {
                    let arg = match inputs_json(m)? {
                        Some(json) => {
                            let j = match distinct.iter().position(|d| *d == json) {
                                Some(j) => j,
                                None => {
                                    distinct.push(json);
                                    distinct.len() - 1
                                }
                            };
                            Some(format!("{{{{inputs.parameters.inputs-{j}}}}}"))
                        }
                        None => None,
                    };
                    inner.push(task(m, arg, Vec::new()));
                }
                let exported: Vec<Value> = members
                    .iter()
                    .flat_map(|&m| {
                        let t = &tasks[m];
                        outputs[m].values().map(move |out| {
                            json!({
                                "name": format!("{t}_{out}"),
                                "valueFrom": { "parameter": format!("{{{{tasks.{t}.outputs.parameters.{out}}}}}") },
                            })
                        })
                    })
                    .collect();
                let template_name = template_namer.name(part);
                let mut t = json!({ "name": template_name, "dag": { "tasks": inner } });
                if !distinct.is_empty() {
                    t["inputs"] = json!({ "parameters": (0..distinct.len()).map(|j| json!({ "name": format!("inputs-{j}") })).collect::<Vec<_>>() });
                }
                if !exported.is_empty() {
                    t["outputs"] = json!({ "parameters": exported });
                }
                templates.push(t);
                let mut outer = json!({ "name": part, "template": template_name });
                let deps = outer_deps(members);
                if !deps.is_empty() {
                    outer["dependencies"] = json!(deps);
                }
                if !distinct.is_empty() {
                    outer["arguments"] = json!({ "parameters": distinct.iter().enumerate().map(|(j, v)| json!({ "name": format!("inputs-{j}"), "value": v })).collect::<Vec<_>>() });
                }
                dag_tasks.push(outer);
            }
            Some(_) => {}
        }
    }
    if let Some(end) = &end {
        templates.push(named(end, end_template(units, opts)?));
    }
    if dag_tasks.len() > MAX_ITEMS || templates.len() + 1 > MAX_ITEMS {
        return Err(CompileError::Shape(format!(
            "the Argo Workflow needs {} top-level tasks and {} templates; Argo's Workflow CRD allows at most {MAX_ITEMS} of each (each matrix sweep counts as one task per {MAX_ITEMS} members): merge steps or split the pipeline",
            dag_tasks.len(),
            templates.len() + 1
        )));
    }
    templates.insert(0, json!({ "name": entry, "dag": { "tasks": dag_tasks } }));

    let mut metadata = json!({
        "generateName": format!("{}-", dns_label(&p.name, 52)),
        "labels": {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_PIPELINE: label_value(&p.name),
        },
        "annotations": { ANNOTATION_PIPELINE: p.name },
    });
    if let Some(ns) = &opts.namespace {
        metadata["namespace"] = json!(ns);
    }
    if let Some(d) = &p.description {
        metadata["annotations"]["workflows.argoproj.io/description"] = json!(d);
    }
    let mut spec = json!({ "entrypoint": entry });
    if let Some(end) = &end {
        spec["onExit"] = json!(end);
    }
    let arguments: Vec<Value> = units
        .params
        .iter()
        .filter(|param| param.free)
        .map(|param| json!({ "name": param_names[param.name.as_str()], "value": param.value.to_string() }))
        .collect();
    if !arguments.is_empty() {
        spec["arguments"] = json!({ "parameters": arguments });
    }
    if let Some(sa) = &opts.service_account {
        spec["serviceAccountName"] = json!(sa);
    }
    // Steps never get a token; Argo's own executor (the `wait` container) needs one.
    spec["automountServiceAccountToken"] = json!(false);
    let executor_sa = opts
        .executor_service_account
        .clone()
        .or_else(|| opts.service_account.clone())
        .unwrap_or_else(|| "default".into());
    spec["executor"] = json!({ "serviceAccountName": executor_sa });
    spec["securityContext"] = json!({
        "runAsNonRoot": true,
        "runAsUser": opts.uid,
        "runAsGroup": opts.gid,
        "fsGroup": opts.gid,
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    if !opts.image_pull_secrets.is_empty() {
        spec["imagePullSecrets"] = json!(
            opts.image_pull_secrets
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    spec["volumes"] = json!(["work", "bin", "tmp"].map(|v| json!({ "name": v, "emptyDir": {} })));
    spec["templates"] = Value::Array(templates);

    let workflow = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": spec,
    });
    to_yaml(&workflow)
}

/// Output name → output parameter name (valid and distinct within the step).
fn output_names(unit: &Unit) -> BTreeMap<&str, String> {
    let mut namer = Namer::params(63, false);
    unit.outputs
        .iter()
        .map(|o| (o.as_str(), namer.name(o)))
        .collect()
}

fn named(name: &str, template: Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("name".into(), json!(name));
    if let Value::Object(map) = template {
        out.extend(map);
    }
    Value::Object(out)
}

fn add_inputs(template: &mut Value, names: impl Iterator<Item = String>) {
    let extra: Vec<Value> = names.map(|n| json!({ "name": n })).collect();
    if extra.is_empty() {
        return;
    }
    let params = &mut template["inputs"]["parameters"];
    match params.as_array_mut() {
        Some(list) => list.extend(extra),
        None => *params = Value::Array(extra),
    }
}

#[allow(clippy::too_many_arguments)]
fn template(
    unit: &Unit,
    units: &Units,
    has_inputs: bool,
    outputs: &[(&str, String)],
    opts: &CompileOptions,
    placeholder: &dyn Fn(&Param) -> String,
) -> Result<Value, CompileError> {
    let plan = StepPlan {
        v: VERSION,
        artifacts: opts.artifacts.clone(),
        inputs: Vec::new(),
        outputs: unit.outputs.clone(),
        params: unit.params_json.clone(),
        report: crate::report_plan(units, unit, opts, crate::Target::Argo),
    };
    let plan_value =
        serde_json::to_value(&plan).map_err(|e| CompileError::Serialize(e.to_string()))?;
    let mut plan_text = units.json(&plan_value, placeholder)?;
    if has_inputs {
        // The task passes its inputs (digests from upstream outputs) as one JSON parameter.
        plan_text = plan_text.replacen(
            "\"inputs\":[]",
            "\"inputs\":{{inputs.parameters.inputs}}",
            1,
        );
    }

    let mut command = vec![
        WRAPPER_BIN.to_string(),
        "step-exec".to_string(),
        "--digests-dir".to_string(),
        DIGESTS_DIR.to_string(),
    ];
    if let Some(t) = unit.timeout {
        command.push(format!("--timeout-ms={}", t.as_millis()));
        command.push(format!("--grace-ms={}", unit.grace.as_millis()));
    }
    command.push("--".to_string());
    for arg in &unit.argv {
        command.push(units.arg(arg, placeholder)?);
    }

    let mut env = vec![
        env("HOME", "/tmp"),
        env("GANTRY_RUN_ID", "{{workflow.name}}"),
        env("GANTRY_STEP", &unit.name),
    ];
    for (k, v) in &unit.env {
        env.retain(|e| e["name"] != json!(k));
        env.push(self::env(k, &units.text(v, placeholder)));
    }
    env.push(self::env(PLAN_ENV, &plan_text));
    if let Some(to) = &opts.report {
        env.push(self::env(crate::SEQ_ENV, &unit.seq.to_string()));
        env.push(json!({
            "name": gantry_kube::exported::TOKEN_ENV,
            "valueFrom": { "secretKeyRef": {
                "name": to.token_secret,
                "key": gantry_kube::exported::TOKEN_KEY,
            }},
        }));
    }
    let security = serde_json::to_value(container_security(opts.uid, opts.gid))
        .map_err(|e| CompileError::Serialize(e.to_string()))?;
    let (resources, fetch_resources) = resources(unit);

    let mut main = json!({
        "name": STEP_CONTAINER,
        "image": unit.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": env,
        "resources": resources,
        "securityContext": security,
        "volumeMounts": [
            mount("work", WORK_DIR, false, None),
            mount("work", "/gantry/inputs", true, Some("inputs")),
            mount("bin", "/gantry/bin", true, None),
            mount("tmp", "/tmp", false, None),
        ],
        "terminationMessagePolicy": "File",
    });
    let mut fetch = json!({
        "name": FETCH_CONTAINER,
        "image": opts.helper_image,
        "imagePullPolicy": "IfNotPresent",
        "command": [HELPER_BINARY, "step-fetch"],
        "env": [self::env(PLAN_ENV, &plan_text), self::env("GANTRY_HOME", "/tmp/gantry-home")],
        "resources": fetch_resources,
        "securityContext": security,
        "volumeMounts": [
            mount("work", WORK_DIR, false, None),
            mount("bin", "/gantry/bin", false, None),
            mount("tmp", "/tmp", false, None),
        ],
    });
    if let Some(secret) = &opts.artifacts_secret {
        let from = json!([{ "secretRef": { "name": secret, "optional": false } }]);
        main["envFrom"] = from.clone();
        fetch["envFrom"] = from;
    }

    let mut t = json!({
        "metadata": {
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_STEP: label_value(&unit.group),
                LABEL_NETWORK: if unit.network { "egress" } else { "none" },
            },
            "annotations": { ANNOTATION_STEP: unit.name },
        },
    });
    if has_inputs {
        t["inputs"] = json!({ "parameters": [{ "name": "inputs" }] });
    }
    if !outputs.is_empty() {
        t["outputs"] = json!({
            "parameters": outputs.iter().map(|(output, name)| json!({
                "name": name,
                "valueFrom": { "path": format!("{DIGESTS_DIR}/{output}") },
            })).collect::<Vec<_>>(),
        });
    }
    if unit.retries > 0 {
        t["retryStrategy"] = json!({ "limit": unit.retries, "retryPolicy": "Always" });
    }
    if let Some(timeout) = unit.timeout {
        // The wrapper stops the command itself first and still uploads; this is the second line.
        let deadline = timeout + unit.grace + std::time::Duration::from_secs(60);
        t["activeDeadlineSeconds"] = json!(deadline.as_secs());
    }
    if !unit.placement.node_selector.is_empty() {
        t["nodeSelector"] = json!(unit.placement.node_selector);
    }
    if !unit.placement.tolerations.is_empty() {
        t["tolerations"] = json!(unit.placement.tolerations);
    }
    t["podSpecPatch"] = json!(format!(
        "{{\"terminationGracePeriodSeconds\":{}}}",
        unit.grace.as_secs().max(1)
    ));
    t["initContainers"] = json!([fetch]);
    t["container"] = main;
    Ok(t)
}

/// The exit handler (`--report-to`): `gantry step-end` in the helper image tells the server
/// how the workflow ended, so that a step that died before it could report (evicted,
/// OOM-killed, deadline) does not leave the run `running`. It needs the network (the server).
fn end_template(units: &Units, opts: &CompileOptions) -> Result<Value, CompileError> {
    let (plan, to, cpu, memory) = crate::end_parts(units, opts, crate::Target::Argo)?;
    let security = serde_json::to_value(container_security(opts.uid, opts.gid))
        .map_err(|e| CompileError::Serialize(e.to_string()))?;
    let quota = json!({ "cpu": cpu, "memory": memory });
    Ok(json!({
        "metadata": {
            "labels": { LABEL_MANAGED_BY: MANAGED_BY, LABEL_NETWORK: "egress" },
        },
        "container": {
            "name": STEP_CONTAINER,
            "image": opts.helper_image,
            "imagePullPolicy": "IfNotPresent",
            "command": [
                HELPER_BINARY, "step-end",
                "--status", "{{workflow.status}}",
                "--failures", "{{workflow.failures}}",
            ],
            "env": [
                env("HOME", "/tmp"),
                env(PLAN_ENV, &plan),
                {
                    "name": gantry_kube::exported::TOKEN_ENV,
                    "valueFrom": { "secretKeyRef": {
                        "name": to.token_secret,
                        "key": gantry_kube::exported::TOKEN_KEY,
                    }},
                },
            ],
            "resources": { "requests": quota, "limits": quota },
            "securityContext": security,
            "volumeMounts": [mount("tmp", "/tmp", false, None)],
        },
    }))
}

/// Requests = limits, the GPU on the step only (the fetch shares the step's budget).
pub(crate) fn resources(unit: &Unit) -> (Value, Value) {
    let mut amounts = serde_json::Map::new();
    amounts.insert("cpu".into(), json!(format!("{}m", unit.cpu_millis.max(1))));
    amounts.insert(
        "memory".into(),
        json!(unit.memory_bytes.max(1 << 20).to_string()),
    );
    let fetch = json!({ "limits": amounts, "requests": amounts });
    if let Some(gpu) = &unit.gpu {
        amounts.insert(gpu.resource.clone(), json!(gpu.count.to_string()));
    }
    (json!({ "limits": amounts, "requests": amounts }), fetch)
}

fn env(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

fn mount(volume: &str, path: &str, read_only: bool, sub_path: Option<&str>) -> Value {
    let mut m = json!({ "name": volume, "mountPath": path });
    if read_only {
        m["readOnly"] = json!(true);
    }
    if let Some(s) = sub_path {
        m["subPath"] = json!(s);
    }
    m
}
