//! The planned steps as what both targets need: images resolved, inputs as digests (an
//! upstream step's output or a pinned digest), the step's argv, and params either compiled
//! in or left as sentinels that each target turns into its own placeholder.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use gantry_kube::job::{GpuRequest, HELPER_BINARY};
use gantry_spec::{ImageRef, InputSource, ParamValue, Pipeline, Plan, plan, resolve_params};

use crate::{CompileError, CompileOptions, Target, pinned};

const SENTINEL_OPEN: &str = "⟦gantry-param:";
const SENTINEL_CLOSE: char = '⟧';

/// A declared param: compiled in (`free == false`) or a parameter of the exported workflow.
#[derive(Clone, Debug)]
pub(crate) struct Param {
    pub name: String,
    pub value: ParamValue,
    pub free: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The output `output` of unit `unit` (an earlier one).
    Upstream { unit: usize, output: String },
    /// A digest given at compile time.
    Pinned(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Input {
    /// Below `/gantry/inputs` (`model`, or `models/<label>` for a sweep member).
    pub path: String,
    pub source: Source,
}

/// One planned step.
#[derive(Clone, Debug)]
pub(crate) struct Unit {
    /// The planned name (`train[lr=0.1]` for a sweep member).
    pub name: String,
    /// The declared step (a sweep's members share it).
    pub group: String,
    pub image: String,
    /// The step's command (with sentinels).
    pub argv: Vec<String>,
    /// The step's own `env:` (values with sentinels).
    pub env: Vec<(String, String)>,
    pub inputs: Vec<Input>,
    pub outputs: Vec<String>,
    pub deps: Vec<usize>,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu: Option<GpuRequest>,
    pub network: bool,
    pub cache: bool,
    /// What `/gantry/params.json` holds (with sentinels).
    pub params_json: serde_json::Value,
    /// The step's `kubernetes:` placement.
    pub placement: gantry_spec::KubePlacement,
    /// Its position in the plan.
    pub seq: u32,
    /// A built-in component's name (run from the helper image).
    pub builtin: Option<String>,
}

pub(crate) struct Units {
    pub units: Vec<Unit>,
    /// In declaration order.
    pub params: Vec<Param>,
    /// The pipeline's name.
    pub pipeline: String,
}

impl Units {
    /// The units of each declared step (a sweep's members), in order of first appearance:
    /// `(declared name, unit indexes)`.
    pub fn groups(&self) -> Vec<(&str, Vec<usize>)> {
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, unit) in self.units.iter().enumerate() {
            match group_of.get(unit.group.as_str()) {
                Some(&g) => groups[g].1.push(i),
                None => {
                    group_of.insert(unit.group.as_str(), groups.len());
                    groups.push((unit.group.as_str(), vec![i]));
                }
            }
        }
        groups
    }

    /// The target's name of each param left free (a workflow parameter), by the spec's name.
    pub fn free_param_names(&self, namer: &mut crate::names::Namer) -> HashMap<&str, String> {
        self.params
            .iter()
            .filter(|param| param.free)
            .map(|param| (param.name.as_str(), namer.name(&param.name)))
            .collect()
    }

    /// `text` with each free param's sentinel replaced by `placeholder(param)`.
    pub fn text(&self, text: &str, placeholder: &dyn Fn(&Param) -> String) -> String {
        if !text.contains(SENTINEL_OPEN) {
            return text.to_string();
        }
        let mut out = text.to_string();
        for p in self.params.iter().filter(|p| p.free) {
            out = out.replace(&sentinel(&p.name), &placeholder(p));
        }
        out
    }

    /// `value` as compact JSON text with the sentinels replaced: a free param that is a
    /// whole JSON string and not a string param loses its quotes, so the orchestrator's
    /// substitution makes it a number or a boolean again.
    pub fn json(
        &self,
        value: &serde_json::Value,
        placeholder: &dyn Fn(&Param) -> String,
    ) -> Result<String, CompileError> {
        let text =
            serde_json::to_string(value).map_err(|e| CompileError::Serialize(e.to_string()))?;
        if !text.contains(SENTINEL_OPEN) {
            return Ok(text);
        }
        let mut out = text;
        for p in self.params.iter().filter(|p| p.free) {
            if !matches!(p.value, ParamValue::String(_)) {
                out = out.replace(&format!("\"{}\"", sentinel(&p.name)), &placeholder(p));
            }
            out = out.replace(&sentinel(&p.name), &placeholder(p));
        }
        Ok(out)
    }

    /// The free params `text` refers to (by sentinel).
    pub fn params_in<'a>(&'a self, text: &str, found: &mut BTreeSet<&'a str>) {
        if !text.contains(SENTINEL_OPEN) {
            return;
        }
        for p in self.params.iter().filter(|p| p.free) {
            if text.contains(&sentinel(&p.name)) {
                found.insert(p.name.as_str());
            }
        }
    }
}

fn sentinel(name: &str) -> String {
    format!("{SENTINEL_OPEN}{name}{SENTINEL_CLOSE}")
}

/// The params `${params.NAME}` in `text` refers to (`$${` is a literal).
fn referenced_params(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("$${") {
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${params.") {
            match after.find('}') {
                Some(end) => {
                    out.insert(after[..end].to_string());
                    rest = &after[end + 1..];
                }
                None => return,
            }
        } else {
            let mut chars = rest.chars();
            chars.next();
            rest = chars.as_str();
        }
    }
}

fn json_params(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::String(s) => referenced_params(s, out),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_params(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| json_params(v, out)),
        _ => {}
    }
}

/// Params that decide the shape of the workflow (matrix values, built-in `source`s) and so are
/// compiled in; also any whose name would not survive inside JSON text untouched.
fn fixed_params(p: &Pipeline) -> BTreeSet<String> {
    let mut fixed = BTreeSet::new();
    for step in &p.steps {
        for values in step.matrix.values() {
            values.iter().for_each(|v| json_params(v, &mut fixed));
        }
        if step.uses.is_some()
            && let Some(source) = step.with.get("source")
        {
            json_params(source, &mut fixed);
        }
    }
    for name in p.params.keys() {
        let plain = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            fixed.insert(name.clone());
        }
    }
    fixed
}

pub(crate) fn build(
    p: &Pipeline,
    _target: Target,
    opts: &CompileOptions,
) -> Result<Units, CompileError> {
    let resolved = resolve_params(p, &opts.params)?;
    // The real plan: validation, the shape, compiled-in values.
    let real = plan(p, &resolved)?;
    let fixed = fixed_params(p);
    let with_sentinels: BTreeMap<String, ParamValue> = resolved
        .iter()
        .map(|(name, value)| {
            let v = if fixed.contains(name) {
                value.clone()
            } else {
                ParamValue::String(sentinel(name))
            };
            (name.clone(), v)
        })
        .collect();
    // The same plan with free params as sentinels; should it differ in shape (it cannot as
    // far as the spec goes), every param is compiled in.
    let (chosen, all_fixed) = match plan(p, &with_sentinels) {
        Ok(s) if same_shape(&s, &real) => (s, false),
        _ => (real, true),
    };
    let params: Vec<Param> = p
        .params
        .keys()
        .filter_map(|name| {
            resolved.get(name).map(|value| Param {
                name: name.clone(),
                value: value.clone(),
                free: !all_fixed && !fixed.contains(name),
            })
        })
        .collect();
    let params_json = serde_json::Value::Object(
        params
            .iter()
            .map(|param| {
                let v = if param.free {
                    serde_json::Value::String(sentinel(&param.name))
                } else {
                    serde_json::to_value(&param.value).unwrap_or(serde_json::Value::Null)
                };
                (param.name.clone(), v)
            })
            .collect(),
    );

    let index: HashMap<&str, usize> = chosen
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut units = Vec::with_capacity(chosen.steps.len());
    for step in &chosen.steps {
        let fail = |message: String| CompileError::Step {
            step: step.name.clone(),
            message,
        };
        let group = step
            .sweep
            .as_ref()
            .map_or_else(|| step.name.clone(), |s| s.step.clone());
        let (image, argv) = match &step.image {
            ImageRef::Image(image) => {
                if !opts.allow_tags && !pinned(image) {
                    return Err(fail(format!(
                        "image '{image}' is not pinned by digest; the exported workflow must run the image Gantry would run: write `image: {image}@sha256:…` (`gantry image ls` shows digests), or pass --allow-tags"
                    )));
                }
                if step.command.is_empty() {
                    return Err(fail(
                        "no `command`: the exported workflow runs the step under the gantry wrapper, which needs the command to run (the image's entrypoint is not known at compile time); add `command:` to the step".into(),
                    ));
                }
                (image.clone(), step.command.clone())
            }
            ImageRef::Builtin(name) => {
                let with = serde_json::to_value(&step.with)
                    .map_err(|e| CompileError::Serialize(e.to_string()))?;
                // The argv the engine runs a built-in with; `with` is JSON, rendered per target.
                let argv = vec![
                    HELPER_BINARY.to_string(),
                    "component".into(),
                    name.clone(),
                    "--with".into(),
                    JSON_MARK.to_string() + &with.to_string(),
                ];
                (opts.helper_image.clone(), argv)
            }
        };
        let mut inputs = Vec::new();
        for (name, source) in &step.inputs {
            let upstream = |unit: &str, output: &str| {
                index
                    .get(unit)
                    .map(|&u| Source::Upstream {
                        unit: u,
                        output: output.to_string(),
                    })
                    .ok_or_else(|| fail(format!("input {name}: no step '{unit}'")))
            };
            match source {
                InputSource::Step { step: from, output } => inputs.push(Input {
                    path: name.clone(),
                    source: upstream(from, output)?,
                }),
                InputSource::Sweep {
                    output, members, ..
                } => {
                    for (label, member) in members {
                        inputs.push(Input {
                            path: format!("{name}/{}", label.replace('/', "_")),
                            source: upstream(member, output)?,
                        });
                    }
                }
                InputSource::Path(_) | InputSource::Url(_) => {
                    let key = format!("{group}/{name}");
                    let Some(digest) = opts.input_digests.get(&key) else {
                        let what = match source {
                            InputSource::Path(path) => format!("the local path {}", path.display()),
                            InputSource::Url(url) => format!("the URL {url}"),
                            _ => String::new(),
                        };
                        return Err(fail(format!(
                            "input '{name}' reads {what}, which a workflow running elsewhere cannot read; store it in the artifact store first (`gantry upload`) and pass its digest as {key}=sha256:… (--input-digest)"
                        )));
                    };
                    inputs.push(Input {
                        path: name.clone(),
                        source: Source::Pinned(digest.clone()),
                    });
                }
            }
        }
        let deps = step
            .deps
            .iter()
            .filter_map(|d| index.get(d.as_str()).copied())
            .collect();
        let r = &step.resources;
        let seq = units.len() as u32;
        units.push(Unit {
            seq,
            builtin: match &step.image {
                ImageRef::Builtin(name) => Some(name.clone()),
                ImageRef::Image(_) => None,
            },
            name: step.name.clone(),
            group,
            image,
            argv,
            env: step
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            inputs,
            outputs: step.outputs.clone(),
            deps,
            retries: step.retries,
            timeout: step.timeout,
            grace: step.timeout_grace,
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpu: (r.gpu > 0).then(|| GpuRequest::for_model(r.gpu_model.as_deref(), r.gpu)),
            network: step.network,
            cache: step.cache,
            params_json: params_json.clone(),
            placement: step.kubernetes.clone(),
        });
    }
    Ok(Units {
        units,
        params,
        pipeline: p.name.clone(),
    })
}

/// Marks an argv element that is JSON text (a built-in's `--with`): rendered with
/// [`Units::json`] so typed params keep their type.
pub(crate) const JSON_MARK: &str = "\u{0}json:";

impl Units {
    /// One argv element for the target.
    pub fn arg(
        &self,
        arg: &str,
        placeholder: &dyn Fn(&Param) -> String,
    ) -> Result<String, CompileError> {
        match arg.strip_prefix(JSON_MARK) {
            Some(json) => {
                let value: serde_json::Value = serde_json::from_str(json)
                    .map_err(|e| CompileError::Serialize(e.to_string()))?;
                self.json(&value, placeholder)
            }
            None => Ok(self.text(arg, placeholder)),
        }
    }
}

fn same_shape(a: &Plan, b: &Plan) -> bool {
    a.steps.len() == b.steps.len()
        && a.steps.iter().zip(&b.steps).all(|(x, y)| {
            x.name == y.name && x.deps == y.deps && x.inputs == y.inputs && x.outputs == y.outputs
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_references_are_found_and_escapes_skipped() {
        let mut out = BTreeSet::new();
        referenced_params("a ${params.x} $${params.y} ${params.z}", &mut out);
        assert_eq!(out, BTreeSet::from(["x".to_string(), "z".to_string()]));
    }
}
