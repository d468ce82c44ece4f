//! The Kubeflow Pipelines v2 target: a PipelineSpec (IR, schema 2.1.0) whose root DAG has one
//! task per planned step, one component and executor per declared step (a sweep's members
//! share them, varying only in their arguments), followed by the Kubernetes PlatformSpec
//! (kfp-kubernetes) that gives each executor its volumes, the artifact store's Secret, pull
//! secrets, deadline, node selector, tolerations and security context.
//!
//! KFP substitutes its placeholders in a container's command and arguments only, so everything
//! that depends on an upstream digest or a pipeline parameter travels as an argument of the
//! wrapper: `gantry step-exec --fetch --plan JSON [--env K=V]… [--digest-file OUT=PATH]… --
//! CMD…`. kfp-kubernetes (2.17) cannot add init containers, so the wrapper must already be in
//! the step's image at `/opt/gantry/bin/gantry`, where the built-in image keeps it.

use std::collections::{BTreeMap, BTreeSet};

use gantry_kube::contract::{PlannedInput, StepPlan, VERSION, WORK_DIR};
use gantry_kube::job::{HELPER_BINARY, LABEL_MANAGED_BY, LABEL_STEP, MANAGED_BY};
use gantry_kube::names::{dns_label, label_value};
use gantry_spec::{ParamValue, Pipeline};
use serde_json::{Value, json};

use crate::argo::{LABEL_NETWORK, resources};
use crate::merge::merge;
use crate::names::Namer;
use crate::units::{Param, Source, Unit, Units};
use crate::{CompileError, CompileOptions, to_yaml};

pub(crate) const SCHEMA_VERSION: &str = "2.1.0";

pub(crate) fn render(
    p: &Pipeline,
    units: &Units,
    opts: &CompileOptions,
) -> Result<String, CompileError> {
    let param_names = units.free_param_names(&mut Namer::params(63, true));
    let placeholder = |param: &Param| -> String {
        let name = param_names
            .get(param.name.as_str())
            .cloned()
            .unwrap_or_default();
        input_placeholder(&name)
    };

    let mut task_namer = Namer::new(63);
    // With --report-to the steps run inside an exit handler's DAG, after which a task reports
    // the pipeline's final status (`gantry step-end`).
    let exit_names = opts
        .report
        .as_ref()
        .map(|_| (task_namer.name(EXIT_DAG), task_namer.name(crate::END_NAME)));
    let tasks: Vec<String> = units
        .units
        .iter()
        .map(|u| task_namer.name(&u.name))
        .collect();
    let outputs: Vec<BTreeMap<String, String>> = units
        .units
        .iter()
        .map(|u| {
            let mut namer = Namer::params(63, true);
            u.outputs
                .iter()
                .map(|o| (o.clone(), namer.name(o)))
                .collect()
        })
        .collect();

    // Per unit: {component, container, platform} and the task's digest inputs.
    let mut built = Vec::with_capacity(units.units.len());
    for (i, unit) in units.units.iter().enumerate() {
        let mut task_inputs = serde_json::Map::new();
        let mut planned = Vec::with_capacity(unit.inputs.len());
        for input in &unit.inputs {
            let digest = match &input.source {
                Source::Pinned(d) => d.clone(),
                Source::Upstream { unit: from, output } => {
                    let name = format!("in_{}", task_inputs.len());
                    let key = outputs[*from]
                        .get(output)
                        .ok_or_else(|| CompileError::Step {
                            step: unit.name.clone(),
                            message: format!(
                                "input {}: step '{}' has no output '{output}'",
                                input.path, units.units[*from].name
                            ),
                        })?;
                    task_inputs.insert(
                        name.clone(),
                        json!({ "taskOutputParameter": {
                            "producerTask": tasks[*from],
                            "outputParameterKey": key,
                        }}),
                    );
                    input_placeholder(&name)
                }
            };
            planned.push(PlannedInput {
                path: input.path.clone(),
                digest,
            });
        }
        let (container, used) = container(unit, units, planned, &outputs[i], opts, &placeholder)?;
        let mut defs = serde_json::Map::new();
        for name in task_inputs.keys() {
            defs.insert(name.clone(), json!({ "parameterType": "STRING" }));
        }
        for param in units
            .params
            .iter()
            .filter(|q| used.contains(q.name.as_str()))
        {
            let name = &param_names[param.name.as_str()];
            defs.insert(
                name.clone(),
                json!({ "parameterType": parameter_type(&param.value) }),
            );
            task_inputs.insert(name.clone(), json!({ "componentInputParameter": name }));
        }
        let mut component = json!({});
        if !defs.is_empty() {
            component["inputDefinitions"] = json!({ "parameters": defs });
        }
        if !outputs[i].is_empty() {
            let outs: serde_json::Map<String, Value> = outputs[i]
                .values()
                .map(|name| (name.clone(), json!({ "parameterType": "STRING" })))
                .collect();
            component["outputDefinitions"] = json!({ "parameters": outs });
        }
        let platform = platform(unit, opts)?;
        built.push((
            json!({ "component": component, "container": container, "platform": platform }),
            task_inputs,
        ));
    }

    // One component per declared step where its members differ only in arguments.
    let groups = units.groups();
    let mut component_namer = Namer::new(58);
    let exit_components = exit_names.as_ref().map(|_| {
        (
            component_namer.name(EXIT_DAG),
            component_namer.name(crate::END_NAME),
        )
    });
    let mut components = serde_json::Map::new();
    let mut executors = serde_json::Map::new();
    let mut platform_executors = serde_json::Map::new();
    let mut task_component: Vec<(String, Vec<String>)> =
        vec![(String::new(), Vec::new()); units.units.len()];
    let mut add = |name: &str, mut parts: Value, varying: usize| {
        let comp = format!("comp-{name}");
        let exec = format!("exec-{name}");
        let mut component = parts["component"].take();
        component["executorLabel"] = json!(exec);
        if varying > 0 {
            let defs = &mut component["inputDefinitions"]["parameters"];
            if !defs.is_object() {
                *defs = json!({});
            }
            for j in 0..varying {
                defs[format!("v_{j}")] = json!({ "parameterType": "STRING" });
            }
        }
        components.insert(comp.clone(), sorted(component));
        executors.insert(
            exec.clone(),
            json!({ "container": parts["container"].take() }),
        );
        platform_executors.insert(exec, parts["platform"].take());
        comp
    };
    for (group, members) in &groups {
        let parts: Vec<Value> = members
            .iter()
            .map(|&i| std::mem::take(&mut built[i].0))
            .collect();
        let allowed = |path: &[&str]| {
            path.len() == 2 && path[0] == "container" && matches!(path[1], "args" | "command")
        };
        match merge(&parts, &allowed, &|j| input_placeholder(&format!("v_{j}"))) {
            Some(m) => {
                let name = component_namer.name(group);
                let varying = m.values.first().map_or(0, Vec::len);
                let comp = add(&name, m.template, varying);
                for (&i, values) in members.iter().zip(m.values) {
                    task_component[i] = (comp.clone(), values);
                }
            }
            None => {
                for (&i, part) in members.iter().zip(parts) {
                    let name = component_namer.name(&units.units[i].name);
                    let comp = add(&name, part, 0);
                    task_component[i] = (comp, Vec::new());
                }
            }
        }
    }

    let mut dag_tasks = serde_json::Map::new();
    for (i, unit) in units.units.iter().enumerate() {
        let (comp, values) = &task_component[i];
        let mut inputs = built[i].1.clone();
        for (j, v) in values.iter().enumerate() {
            inputs.insert(
                format!("v_{j}"),
                json!({ "runtimeValue": { "constant": v } }),
            );
        }
        let mut task = json!({
            "taskInfo": { "name": tasks[i] },
            "componentRef": { "name": comp },
            "cachingOptions": { "enableCache": unit.cache },
        });
        if !unit.deps.is_empty() {
            task["dependentTasks"] = json!(
                unit.deps
                    .iter()
                    .map(|&d| tasks[d].clone())
                    .collect::<Vec<_>>()
            );
        }
        if !inputs.is_empty() {
            task["inputs"] = json!({ "parameters": sorted(Value::Object(inputs)) });
        }
        if unit.retries > 0 {
            task["retryPolicy"] = json!({ "maxRetryCount": unit.retries });
        }
        dag_tasks.insert(tasks[i].clone(), task);
    }

    let mut root = json!({ "dag": { "tasks": dag_tasks } });
    if let (Some((dag_task, end_task)), Some((dag_comp, end_comp))) =
        (&exit_names, &exit_components)
    {
        let free: Vec<&Param> = units.params.iter().filter(|q| q.free).collect();
        let comp_dag = format!("comp-{dag_comp}");
        let mut sub = json!({ "dag": root["dag"].take() });
        let mut pass = serde_json::Map::new();
        if !free.is_empty() {
            let defs: serde_json::Map<String, Value> = free
                .iter()
                .map(|q| {
                    let name = param_names[q.name.as_str()].clone();
                    (name, json!({ "parameterType": parameter_type(&q.value) }))
                })
                .collect();
            for name in defs.keys() {
                pass.insert(name.clone(), json!({ "componentInputParameter": name }));
            }
            sub["inputDefinitions"] = json!({ "parameters": defs });
        }
        components.insert(comp_dag.clone(), sub);
        let mut dag = json!({
            "taskInfo": { "name": dag_task },
            "componentRef": { "name": comp_dag },
        });
        if !pass.is_empty() {
            dag["inputs"] = json!({ "parameters": pass });
        }
        let (comp, exec, container, platform) = end_parts(end_comp, units, opts)?;
        components.insert(comp.clone(), comp_value(&exec));
        executors.insert(exec.clone(), json!({ "container": container }));
        platform_executors.insert(exec, platform);
        let end = json!({
            "taskInfo": { "name": end_task },
            "componentRef": { "name": comp },
            "dependentTasks": [dag_task],
            "inputs": { "parameters": { END_STATUS: {
                "taskFinalStatus": { "producerTask": dag_task },
            }}},
            "triggerPolicy": { "strategy": "ALL_UPSTREAM_TASKS_COMPLETED" },
        });
        root = json!({ "dag": { "tasks": { dag_task.clone(): dag, end_task.clone(): end } } });
    }
    let root_params: serde_json::Map<String, Value> = units
        .params
        .iter()
        .filter(|param| param.free)
        .map(|param| {
            (
                param_names[param.name.as_str()].clone(),
                json!({
                    "parameterType": parameter_type(&param.value),
                    "defaultValue": param.value,
                    "isOptional": true,
                }),
            )
        })
        .collect();
    if !root_params.is_empty() {
        root["inputDefinitions"] = json!({ "parameters": root_params });
    }
    let mut info = json!({ "name": dns_label(&p.name, 63), "displayName": p.name });
    if let Some(d) = &p.description {
        info["description"] = json!(d);
    }
    let spec = json!({
        "components": components,
        "deploymentSpec": { "executors": executors },
        "pipelineInfo": info,
        "root": root,
        "schemaVersion": SCHEMA_VERSION,
        "sdkVersion": format!("gantry-{}", env!("CARGO_PKG_VERSION")),
    });
    let platform = json!({
        "platforms": { "kubernetes": { "deploymentSpec": { "executors": platform_executors } } }
    });
    let mut text = to_yaml(&spec)?;
    text.push_str("---\n");
    text.push_str(&to_yaml(&platform)?);
    Ok(text)
}

/// The exit handler's DAG of all the steps (KFP's `dsl.ExitHandler`).
const EXIT_DAG: &str = "exit-handler";
/// The end task's input: the DAG's final status (`PipelineTaskFinalStatus`).
const END_STATUS: &str = "status";

/// The end task's component's interface.
fn comp_value(exec: &str) -> Value {
    json!({
        "executorLabel": exec,
        "inputDefinitions": { "parameters": { END_STATUS: {
            "parameterType": "TASK_FINAL_STATUS",
            "isOptional": true,
        }}},
    })
}

/// `(component, executor, container, platform)` of the end task: `gantry step-end` in the
/// helper image with the final status, the plan and the token.
fn end_parts(
    name: &str,
    units: &Units,
    opts: &CompileOptions,
) -> Result<(String, String, Value, Value), CompileError> {
    let (plan, to, cpu, memory) = crate::end_parts(units, opts, crate::Target::Kfp)?;
    let container = json!({
        "image": opts.helper_image,
        "command": [HELPER_BINARY, "step-end"],
        "args": ["--kfp-status", input_placeholder(END_STATUS), "--plan", plan],
        "resources": {
            "resourceCpuLimit": cpu,
            "resourceCpuRequest": cpu,
            "resourceMemoryLimit": memory,
            "resourceMemoryRequest": memory,
        },
    });
    let mut platform = json!({
        "emptyDirMounts": [{ "volumeName": "gantry-tmp", "mountPath": "/tmp" }],
        "securityContext": {
            "runAsUser": opts.uid,
            "runAsGroup": opts.gid,
            "runAsNonRoot": true,
        },
        "podMetadata": {
            "labels": { LABEL_MANAGED_BY: MANAGED_BY, LABEL_NETWORK: "egress" },
        },
        "secretAsEnv": [{
            "secretName": to.token_secret,
            "keyToEnv": [{
                "secretKey": gantry_kube::exported::TOKEN_KEY,
                "envVar": gantry_kube::exported::TOKEN_ENV,
            }],
        }],
    });
    pull_secrets(&mut platform, opts);
    Ok((
        format!("comp-{name}"),
        format!("exec-{name}"),
        container,
        platform,
    ))
}

fn input_placeholder(name: &str) -> String {
    format!("{{{{$.inputs.parameters['{name}']}}}}")
}

fn parameter_type(value: &ParamValue) -> &'static str {
    match value {
        ParamValue::Bool(_) => "BOOLEAN",
        ParamValue::Int(_) => "NUMBER_INTEGER",
        ParamValue::Float(_) => "NUMBER_DOUBLE",
        ParamValue::String(_) => "STRING",
    }
}

/// Keys in order (serde_json keeps insertion order here).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        other => other,
    }
}

/// The executor's container and the free params it refers to.
fn container<'a>(
    unit: &Unit,
    units: &'a Units,
    inputs: Vec<PlannedInput>,
    outputs: &BTreeMap<String, String>,
    opts: &CompileOptions,
    placeholder: &dyn Fn(&Param) -> String,
) -> Result<(Value, BTreeSet<&'a str>), CompileError> {
    let mut used = BTreeSet::new();
    let plan = StepPlan {
        v: VERSION,
        artifacts: opts.artifacts.clone(),
        inputs,
        outputs: unit.outputs.clone(),
        params: unit.params_json.clone(),
        report: crate::report_plan(units, unit, opts, crate::Target::Kfp),
    };
    let plan_value =
        serde_json::to_value(&plan).map_err(|e| CompileError::Serialize(e.to_string()))?;
    units.params_in(&plan_value.to_string(), &mut used);
    let mut args = vec![
        "--fetch".to_string(),
        "--plan".to_string(),
        units.json(&plan_value, placeholder)?,
    ];
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), "/tmp".into()),
        ("GANTRY_RUN_ID".into(), "{{$.pipeline_job_name}}".into()),
    ];
    if opts.report.is_some() {
        // Position and name in one argument: a sweep's members differ in it alone, one task
        // input each (a 1,000-member sweep stays under the size limit).
        args.push("--step".into());
        args.push(format!("{}:{}", unit.seq, unit.name));
    } else {
        env.push(("GANTRY_STEP".into(), unit.name.clone()));
    }
    for (k, v) in &unit.env {
        units.params_in(v, &mut used);
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), units.text(v, placeholder)));
    }
    for (k, v) in env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    for (output, name) in outputs {
        args.push("--digest-file".into());
        args.push(format!(
            "{output}={{{{$.outputs.parameters['{name}'].output_file}}}}"
        ));
    }
    if let Some(t) = unit.timeout {
        args.push(format!("--timeout-ms={}", t.as_millis()));
        args.push(format!("--grace-ms={}", unit.grace.as_millis()));
    }
    args.push("--".into());
    for arg in &unit.argv {
        units.params_in(arg, &mut used);
        args.push(units.arg(arg, placeholder)?);
    }
    let (res, _) = resources(unit);
    let mut resources = json!({
        "resourceCpuLimit": res["limits"]["cpu"],
        "resourceCpuRequest": res["requests"]["cpu"],
        "resourceMemoryLimit": res["limits"]["memory"],
        "resourceMemoryRequest": res["requests"]["memory"],
    });
    if let Some(gpu) = &unit.gpu {
        resources["accelerator"] = json!({
            "resourceType": gpu.resource,
            "resourceCount": gpu.count.to_string(),
        });
    }
    Ok((
        json!({
            "image": unit.image,
            // The wrapper where the built-in image keeps it (outside the /gantry emptyDir);
            // other step images must carry it there too.
            "command": [HELPER_BINARY, "step-exec"],
            "args": args,
            "resources": resources,
        }),
        used,
    ))
}

/// The kfp-kubernetes executor config: volumes for `/gantry` and `/tmp`, the store's Secret,
/// pull secrets, the deadline, the step's node selector and tolerations.
fn platform(unit: &Unit, opts: &CompileOptions) -> Result<Value, CompileError> {
    let volumes = [("gantry-work", WORK_DIR), ("gantry-tmp", "/tmp")];
    let mut config = json!({
        "emptyDirMounts": volumes.map(|(v, path)| json!({ "volumeName": v, "mountPath": path })),
        "securityContext": {
            "runAsUser": opts.uid,
            "runAsGroup": opts.gid,
            "runAsNonRoot": true,
        },
        "podMetadata": {
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_STEP: label_value(&unit.group),
                LABEL_NETWORK: if unit.network { "egress" } else { "none" },
            },
        },
    });
    let mut secrets = Vec::new();
    if let Some(secret) = &opts.artifacts_secret {
        secrets.push(json!({
            "secretName": secret,
            "keyToEnv": opts.artifacts_secret_keys.iter()
                .map(|k| json!({ "secretKey": k, "envVar": k }))
                .collect::<Vec<_>>(),
        }));
    }
    if let Some(to) = &opts.report {
        secrets.push(json!({
            "secretName": to.token_secret,
            "keyToEnv": [{
                "secretKey": gantry_kube::exported::TOKEN_KEY,
                "envVar": gantry_kube::exported::TOKEN_ENV,
            }],
        }));
    }
    if !secrets.is_empty() {
        config["secretAsEnv"] = json!(secrets);
    }
    pull_secrets(&mut config, opts);
    if let Some(timeout) = unit.timeout {
        let deadline = timeout + unit.grace + std::time::Duration::from_secs(60);
        config["activeDeadlineSeconds"] = json!(deadline.as_secs().to_string());
    }
    if !unit.placement.node_selector.is_empty() {
        config["nodeSelector"] = json!({ "labels": unit.placement.node_selector });
    }
    if !unit.placement.tolerations.is_empty() {
        config["tolerations"] = json!(unit.placement.tolerations);
    }
    Ok(config)
}

/// The image pull secrets of an executor's config.
fn pull_secrets(config: &mut Value, opts: &CompileOptions) {
    if !opts.image_pull_secrets.is_empty() {
        config["imagePullSecret"] = json!(
            opts.image_pull_secrets
                .iter()
                .map(|n| json!({ "secretName": n }))
                .collect::<Vec<_>>()
        );
    }
}
