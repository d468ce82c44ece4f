//! `deploy`: the pure part of deploying from a pipeline. The component checks its options
//! and writes the requested change; the engine, which holds the metadata store, records it
//! as the deployment's new desired state, and `gantry server` reconciles replicas to it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::MlError;
use crate::components::{ComponentIo, ComponentOutcome, json_bytes};
use crate::options::{OptionInfo, OptionKind, Options};

pub(crate) const NAME: &str = "deploy";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "deployment",
        kind: OptionKind::String,
        default: "(required)",
        description: "Deployment name (lowercase letters, digits, `-`, `_`); served at `/v2/models/<deployment>/infer`.",
    },
    OptionInfo {
        name: "model",
        kind: OptionKind::String,
        default: "",
        description: "Model to serve: `NAME@ALIAS`, `NAME@VERSION` or `NAME` (latest). Required for a new deployment.",
    },
    OptionInfo {
        name: "canary",
        kind: OptionKind::String,
        default: "",
        description: "Model version to send `weight` percent of traffic to.",
    },
    OptionInfo {
        name: "weight",
        kind: OptionKind::Integer,
        default: "10",
        description: "Canary traffic percentage (1–99).",
    },
    OptionInfo {
        name: "shadow",
        kind: OptionKind::String,
        default: "",
        description: "Model version that receives a copy of every request (answers logged, never returned).",
    },
    OptionInfo {
        name: "replicas",
        kind: OptionKind::Integer,
        default: "1",
        description: "Replicas per model version (1–16).",
    },
    OptionInfo {
        name: "cpu",
        kind: OptionKind::String,
        default: "1",
        description: "CPU per replica (`500m`, `2`).",
    },
    OptionInfo {
        name: "memory",
        kind: OptionKind::String,
        default: "512Mi",
        description: "Memory limit per replica (`256Mi`, `1Gi`).",
    },
    OptionInfo {
        name: "sample_rate",
        kind: OptionKind::Number,
        default: "1",
        description: "Fraction of requests written to the prediction log.",
    },
    OptionInfo {
        name: "rules",
        kind: OptionKind::StringList,
        default: "[]",
        description: "Alert rules, e.g. `psi > 0.2 for feature age`, `accuracy < 0.85`.",
    },
    OptionInfo {
        name: "webhook",
        kind: OptionKind::String,
        default: "",
        description: "URL alerts are POSTed to as JSON.",
    },
    OptionInfo {
        name: "window",
        kind: OptionKind::String,
        default: "1h",
        description: "Monitoring window for drift and latency.",
    },
];

pub(crate) const NOTES: &str = "\
Options left out keep the deployment's current values (or the defaults for a new one). Output \
`deployment` is a JSON file (`format: gantry.deployment-request`) with the deployment name and \
the change; after the step succeeds the engine resolves the model references to versions and \
records the new desired state (a revision of the deployment), and `gantry server` rolls it out. \
Give the step `after: [register]` (or the registration as an input) so it deploys what was just \
registered.";

pub const FORMAT: &str = "gantry.deployment-request";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

pub(crate) fn check_options(opts: &Options) -> Result<(), MlError> {
    if let Some(name) = opts.string("deployment")?
        && !name.contains("${")
        && !valid_name(&name)
    {
        return Err(opts.error(format!(
            "`deployment` `{name}` must be 1–63 lowercase letters, digits, `-` or `_`"
        )));
    }
    if let Some(w) = opts.integer("weight")?
        && !(1..=99).contains(&w)
    {
        return Err(opts.error(format!("`weight` {w} must be 1–99")));
    }
    if let Some(r) = opts.integer("replicas")?
        && !(1..=16).contains(&r)
    {
        return Err(opts.error(format!("`replicas` {r} must be 1–16")));
    }
    if let Some(rate) = opts.number("sample_rate")?
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(opts.error(format!("`sample_rate` {rate} must be between 0 and 1")));
    }
    Ok(())
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    check_options(opts)?;
    let name = opts.required_string(
        "deployment",
        "name the deployment, e.g. `deployment: churn-prod`",
    )?;
    if !valid_name(&name) {
        return Err(opts.error(format!(
            "`deployment` `{name}` must be 1–63 lowercase letters, digits, `-` or `_`"
        )));
    }
    let mut change = Map::new();
    for key in [
        "model", "canary", "shadow", "cpu", "memory", "webhook", "window",
    ] {
        if let Some(v) = opts.string(key)? {
            change.insert(key.into(), Value::from(v));
        }
    }
    if (opts.has("canary") || opts.has("weight"))
        && let Some(w) = opts.integer("weight")?
    {
        change.insert("weight".into(), Value::from(w));
    }
    if let Some(r) = opts.integer("replicas")? {
        change.insert("replicas".into(), Value::from(r));
    }
    if let Some(rate) = opts.number("sample_rate")? {
        change.insert("sample_rate".into(), Value::from(rate));
    }
    if let Some(rules) = opts.string_list("rules")? {
        change.insert("rules".into(), Value::from(rules));
    }
    let mut doc = Map::new();
    doc.insert("format".into(), Value::from(FORMAT));
    doc.insert("deployment".into(), Value::from(name.clone()));
    doc.insert("change".into(), Value::Object(change));
    io.write_file_output("deployment", &json_bytes(&Value::Object(doc))?)?;
    Ok(ComponentOutcome {
        metrics: BTreeMap::new(),
        summary: format!("deployment `{name}` requested"),
    })
}
