//! From a located YAML tree to a [`Pipeline`]: shape and value checks per key.
//! Checks that need the whole pipeline (references, cycles) live in `validate`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::error::{Diagnostic, Diagnostics, SpecError};
use crate::located::{Key, Node, Pos, Value, parse_document};
use crate::matrix;
use crate::params::ParamValue;
use crate::pipeline::{Pipeline, Resources, Step};
use crate::quantity::{parse_cpu, parse_duration, parse_memory};
use crate::source::{check_url_input, classify_source};
use crate::suggestion::did_you_mean;
use crate::template::{has_references, plain_text, refers_only_to_params};
use crate::validate::validate;

const PIPELINE_KEYS: &[&str] = &["name", "description", "params", "steps"];
const STEP_KEYS: &[&str] = &[
    "name",
    "image",
    "uses",
    "command",
    "env",
    "with",
    "matrix",
    "inputs",
    "outputs",
    "after",
    "retries",
    "timeout",
    "timeout_grace",
    "resources",
    "logs",
    "network",
    "cache",
    "kubernetes",
];
const KUBERNETES_KEYS: &[&str] = &["node_selector", "tolerations"];
const TOLERATION_KEYS: &[&str] = &["key", "operator", "value", "effect", "toleration_seconds"];
const RESOURCE_KEYS: &[&str] = &["cpu", "memory", "gpu"];
const GPU_KEYS: &[&str] = &["count", "memory", "model"];
const RETRIES_KEYS: &[&str] = &["count", "memory_growth"];
const LOGS_KEYS: &[&str] = &["max"];
const INPUT_SOURCE_KEYS: &[&str] = &["path", "url"];
const MAX_RETRIES: i64 = 10;
const MAX_NAME_LEN: usize = 63;
/// Pipeline files are hand-written; anything this big is a mistake, not a pipeline.
const MAX_SPEC_BYTES: u64 = 16 << 20;

const NAME_RULE: &str =
    "names start with a lowercase letter or digit, then lowercase letters, digits, `_`, `.` or `-`";
const IO_NAME_RULE: &str = "input and output names use letters, digits, `_`, `.` and `-`, and do not start with `.` or `-`";
const CPU_HINT: &str =
    "write cores as a number (`cpu: 2`, `cpu: 0.5`) or millicores as a string (`cpu: 500m`)";
const MEMORY_HINT: &str =
    "write bytes with a unit: 512Mi, 2Gi (powers of 1024) or 500M, 1G (powers of 1000)";
const RESOURCE_MEMORY_HINT: &str = "write bytes with a unit: 512Mi, 2Gi (powers of 1024) or 500M, 1G (powers of 1000), or `auto` to size the step from its earlier runs";
const GPU_HINT: &str = "write a whole number of GPUs, e.g. `gpu: 1` (0 for none), or a mapping such as `gpu: { count: 1, memory: 40Gi, model: h200 }`";
const GPU_MODEL_RULE: &str = "name the model as the driver does, in letters, digits, `-`, `_` or `.`, e.g. `model: h200` or `model: a100-80gb`";
const RETRIES_HINT: &str = "e.g. `retries: 2`, or `retries: { count: 2, memory_growth: 2 }` to double the memory after an out-of-memory kill";
const TIMEOUT_HINT: &str =
    "write a duration such as 30s, 20m, 1h30m or 500ms, or whole seconds as an integer";

/// An input as written, before the referenced step is known to exist.
pub(crate) enum InputDraft {
    Reference(String),
    Path(PathBuf),
    Url(String),
}

pub(crate) struct StepInput {
    pub name: String,
    pub source: InputDraft,
    /// Position of the value (`split.train`, `{ path: … }` or `{ url: … }`).
    pub pos: Pos,
}

/// A step that passed the per-key checks, plus the positions cross-checks point at.
pub(crate) struct StepDraft {
    /// `inputs` stays empty until `validate` resolves the references.
    pub step: Step,
    /// False when `name` is missing or invalid: cross-checks then skip the step by name.
    pub named: bool,
    pub name_pos: Pos,
    pub inputs: Vec<StepInput>,
    pub after: Vec<(String, Pos)>,
    /// Every string that may hold `${…}` references, with its position.
    pub templates: Vec<(String, Pos)>,
    /// Matrix values that refer to params, checked against the declared params.
    pub matrix_templates: Vec<(String, Pos)>,
}

impl StepDraft {
    pub(crate) fn label(&self, index: usize) -> String {
        if self.named {
            format!("step '{}'", self.step.name)
        } else {
            format!("step #{}", index + 1)
        }
    }
}

/// Parses and validates a pipeline; every problem found is reported, in file order.
pub fn parse(file_label: &str, base_dir: &Path, text: &str) -> Result<Pipeline, SpecError> {
    let mut diags = Diagnostics::new(file_label);
    let root = match parse_document(text) {
        Ok(root) => root,
        Err(e) => {
            diags.error(e.pos, e.message, e.hint);
            return Err(diags.into_error());
        }
    };
    let mut parser = Parser {
        diags: &mut diags,
        base_dir,
    };
    let Some((mut pipeline, mut drafts)) = parser.pipeline(&root, file_label) else {
        return Err(diags.into_error());
    };
    validate(&pipeline, &mut drafts, &mut diags);
    pipeline.steps = drafts.into_iter().map(|d| d.step).collect();
    diags.into_result(pipeline)
}

/// Reads and parses a pipeline file; relative `path:` inputs resolve against its directory.
pub fn load(path: &Path) -> Result<Pipeline, SpecError> {
    let label = path.display().to_string();
    let unreadable = |reason: String| {
        SpecError::single(Diagnostic {
            location: None,
            message: format!("cannot read pipeline file {label}: {reason}"),
            hint: Some("check that the path exists, is readable and holds UTF-8 YAML".into()),
        })
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut text = String::new();
    // Read one byte past the cap to tell "exactly at the limit" from "too large".
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| unreadable(e.to_string()))?;
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(unreadable(format!(
            "larger than {} MiB",
            MAX_SPEC_BYTES >> 20
        )));
    }
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse(&label, &base_dir, &text)
}

pub(crate) fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
        && s.len() <= MAX_NAME_LEN
}

pub(crate) fn is_valid_io_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s != "."
        && s != ".."
        && s.len() <= 255
}

fn is_valid_gpu_model(s: &str) -> bool {
    s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A Kubernetes label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters (alphanumerics, `-`, `_`, `.`, alphanumeric at both ends).
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes label value (may be empty).
fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))))
}

fn is_valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_valid_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn entry<'a>(entries: &'a [(Key, Node)], key: &str) -> Option<&'a (Key, Node)> {
    entries.iter().find(|(k, _)| k.name == key)
}

/// An optional key: absent and `key:` with no value mean the same.
fn optional<'a>(entries: &'a [(Key, Node)], key: &str) -> Option<&'a Node> {
    entry(entries, key)
        .map(|(_, n)| n)
        .filter(|n| n.value != Value::Null)
}

struct Parser<'d, 'b> {
    diags: &'d mut Diagnostics,
    base_dir: &'b Path,
}

impl Parser<'_, '_> {
    fn type_error(&mut self, node: &Node, what: &str, expected: &str, hint: &str) {
        self.diags.error(
            node.pos,
            format!("{what} must be {expected}, got {}", node.kind()),
            hint,
        );
    }

    fn check_keys(&mut self, entries: &[(Key, Node)], valid: &[&str], owner: &str) {
        for (key, _) in entries {
            if !valid.contains(&key.name.as_str()) {
                self.diags.error(
                    key.pos,
                    format!("unknown key `{}` in {owner}", key.name),
                    did_you_mean(&key.name, valid, "valid keys"),
                );
            }
        }
    }

    fn map<'n>(&mut self, node: &'n Node, what: &str, hint: &str) -> Option<&'n [(Key, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            _ => {
                self.type_error(node, what, "a mapping", hint);
                None
            }
        }
    }

    fn seq<'n>(&mut self, node: &'n Node, what: &str, hint: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(s) => Some(s),
            _ => {
                self.type_error(node, what, "a list", hint);
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, what: &str, hint: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            _ => {
                self.type_error(node, what, "a string", hint);
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.type_error(
                    node,
                    what,
                    "true or false",
                    "write `true` or `false` without quotes",
                );
                None
            }
        }
    }

    fn pipeline(&mut self, root: &Node, file: &str) -> Option<(Pipeline, Vec<StepDraft>)> {
        if root.value == Value::Null {
            self.diags.error(
                root.pos,
                "the pipeline file is empty",
                "a pipeline needs at least `name:` and a list of `steps:`",
            );
            return None;
        }
        let entries = self.map(
            root,
            "the pipeline",
            "the top level holds `name`, `description`, `params` and `steps`",
        )?;
        self.check_keys(entries, PIPELINE_KEYS, "the pipeline");

        let name = match entry(entries, "name") {
            None => {
                self.diags.error(
                    root.pos,
                    "the pipeline is missing required key `name`",
                    "add `name: <pipeline-name>` at the top level",
                );
                String::new()
            }
            Some((_, node)) => match self.string(node, "`name` of the pipeline", NAME_RULE) {
                Some(n) if is_valid_name(n) => n.to_owned(),
                Some(n) => {
                    self.diags
                        .error(node.pos, format!("invalid pipeline name '{n}'"), NAME_RULE);
                    String::new()
                }
                None => String::new(),
            },
        };

        let description = optional(entries, "description").and_then(|node| {
            self.string(
                node,
                "`description`",
                "quote the description if it looks like a number",
            )
            .map(str::to_owned)
        });

        let params = optional(entries, "params")
            .map(|node| self.params(node))
            .unwrap_or_default();

        let mut drafts = Vec::new();
        match entry(entries, "steps") {
            None => self.diags.error(
                root.pos,
                "the pipeline is missing required key `steps`",
                "add `steps:` with a list of steps, each with `name` and `image` or `uses`",
            ),
            Some((_, node)) => {
                if let Some(items) = self.seq(
                    node,
                    "`steps`",
                    "write steps as a list: `steps:` then `- name: …` entries",
                ) {
                    if items.is_empty() {
                        self.diags.error(
                            node.pos,
                            "`steps` is empty",
                            "a pipeline needs at least one step",
                        );
                    }
                    for (index, item) in items.iter().enumerate() {
                        if let Some(draft) = self.step(index, item) {
                            drafts.push(draft);
                        }
                    }
                }
            }
        }

        Some((
            Pipeline {
                name,
                description,
                params,
                steps: Vec::new(),
                file: file.to_owned(),
                base_dir: self.base_dir.to_path_buf(),
            },
            drafts,
        ))
    }

    fn params(&mut self, node: &Node) -> IndexMap<String, ParamValue> {
        let mut params = IndexMap::new();
        let Some(entries) = self.map(
            node,
            "`params`",
            "write params as `name: default`, e.g. `max_depth: 4`",
        ) else {
            return params;
        };
        for (key, value) in entries {
            if !is_valid_param_name(&key.name) {
                self.diags.error(
                    key.pos,
                    format!("invalid param name '{}'", key.name),
                    "param names start with a letter or `_`, then letters, digits, `_` or `-`",
                );
                continue;
            }
            let typed = match &value.value {
                Value::Bool(b) => ParamValue::Bool(*b),
                Value::Int(i) => ParamValue::Int(*i),
                Value::Float(f) => ParamValue::Float(*f),
                Value::Str(s) => ParamValue::String(s.clone()),
                Value::Null => {
                    self.diags.error(
                        key.pos,
                        format!("param '{}' has no default", key.name),
                        "give it a default value; its type (integer, number, boolean, string) fixes the param's type",
                    );
                    continue;
                }
                Value::Seq(_) | Value::Map(_) => {
                    self.type_error(
                        value,
                        &format!("the default of param '{}'", key.name),
                        "an integer, number, boolean or string",
                        "params are scalars; pass structured settings through a step's `with:`",
                    );
                    continue;
                }
            };
            params.insert(key.name.clone(), typed);
        }
        params
    }

    fn step(&mut self, index: usize, node: &Node) -> Option<StepDraft> {
        let entries = self.map(
            node,
            &format!("step #{}", index + 1),
            "each step is a mapping with `name` and `image` or `uses`",
        )?;
        let location = self.diags.location(node.pos);
        let mut draft = StepDraft {
            step: Step {
                name: String::new(),
                image: None,
                uses: None,
                command: Vec::new(),
                env: BTreeMap::new(),
                with: BTreeMap::new(),
                matrix: IndexMap::new(),
                inputs: BTreeMap::new(),
                outputs: Vec::new(),
                after: Vec::new(),
                retries: 0,
                retry_memory_growth: None,
                timeout: None,
                timeout_grace: None,
                resources: Resources::default(),
                logs_max: None,
                network: false,
                cache: true,
                kubernetes: Default::default(),
                location,
                input_locations: BTreeMap::new(),
            },
            named: false,
            name_pos: node.pos,
            inputs: Vec::new(),
            after: Vec::new(),
            templates: Vec::new(),
            matrix_templates: Vec::new(),
        };

        match entry(entries, "name") {
            None => self.diags.error(
                node.pos,
                format!("step #{} is missing required key `name`", index + 1),
                format!("add `name: <step-name>`; {NAME_RULE}"),
            ),
            Some((_, value)) => {
                draft.name_pos = value.pos;
                let what = format!("`name` of step #{}", index + 1);
                match self.string(value, &what, NAME_RULE) {
                    Some(n) if is_valid_name(n) => {
                        draft.step.name = n.to_owned();
                        draft.named = true;
                    }
                    Some(n) => {
                        self.diags
                            .error(value.pos, format!("invalid step name '{n}'"), NAME_RULE);
                    }
                    None => {}
                }
            }
        }
        let label = draft.label(index);
        self.check_keys(entries, STEP_KEYS, &label);

        self.step_runner(entries, node.pos, &label, &mut draft);
        self.step_command(entries, &label, &mut draft);
        self.step_env(entries, &label, &mut draft);
        if let Some(value) = optional(entries, "with") {
            let what = format!("`with` of {label}");
            if let Some(map) = self.map(value, &what, "write settings as `key: value` pairs") {
                for (key, v) in map {
                    let json = node_to_json(v, &mut draft.templates);
                    draft.step.with.insert(key.name.clone(), json);
                }
            }
        }
        self.step_matrix(entries, &label, &mut draft);
        self.step_inputs(entries, &label, &mut draft);
        self.step_source(entries, &label, &mut draft);
        self.step_outputs(entries, &label, &mut draft);
        self.step_after(entries, &label, &mut draft);
        self.step_limits(entries, &label, &mut draft);
        if let Some(value) = optional(entries, "network") {
            draft.step.network = self
                .boolean(value, &format!("`network` of {label}"))
                .unwrap_or(false);
        }
        if let Some(value) = optional(entries, "cache") {
            draft.step.cache = self
                .boolean(value, &format!("`cache` of {label}"))
                .unwrap_or(true);
        }
        self.step_kubernetes(entries, &label, &mut draft);
        Some(draft)
    }

    /// `kubernetes: { node_selector: {KEY: VALUE}, tolerations: [{key, operator, value,
    /// effect, toleration_seconds}] }`.
    fn step_kubernetes(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        let Some(value) = optional(entries, "kubernetes") else {
            return;
        };
        let what = format!("`kubernetes` of {label}");
        let hint = "e.g. `kubernetes: { node_selector: { pool: gpu }, tolerations: [{ key: nvidia.com/gpu, operator: Exists }] }`";
        let Some(map) = self.map(value, &what, hint) else {
            return;
        };
        self.check_keys(map, KUBERNETES_KEYS, &what);
        if let Some(value) = optional(map, "node_selector") {
            let what = format!("`kubernetes.node_selector` of {label}");
            if let Some(labels) = self.map(value, &what, "write node labels as `key: value` pairs")
            {
                for (key, v) in labels {
                    if !is_label_key(&key.name) {
                        self.diags.error(
                            key.pos,
                            format!("'{}' in {what} is not a Kubernetes label key", key.name),
                            "a label key is an optional DNS prefix and `/`, then up to 63 characters of letters, digits, `-`, `_` and `.`",
                        );
                        continue;
                    }
                    match v.scalar_text() {
                        Some(text) if is_label_value(&text) => {
                            draft.step.kubernetes.node_selector.insert(key.name.clone(), text);
                        }
                        Some(text) => self.diags.error(
                            v.pos,
                            format!("'{text}' in {what} is not a Kubernetes label value"),
                            "a label value is up to 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit",
                        ),
                        None => self.type_error(v, &what, "a string", "quote the value"),
                    }
                }
            }
        }
        if let Some(value) = optional(map, "tolerations") {
            let what = format!("`kubernetes.tolerations` of {label}");
            let Some(items) = self.seq(value, &what, hint) else {
                return;
            };
            for item in items {
                let one = format!("a toleration in {what}");
                let Some(fields) = self.map(item, &one, hint) else {
                    continue;
                };
                self.check_keys(fields, TOLERATION_KEYS, &one);
                let mut t = crate::Toleration::default();
                let text = |this: &mut Self, key: &str| -> Option<(String, Pos)> {
                    let v = optional(fields, key)?;
                    match v.scalar_text() {
                        Some(s) => Some((s, v.pos)),
                        None => {
                            this.type_error(
                                v,
                                &format!("`{key}` of {one}"),
                                "a string",
                                "quote it",
                            );
                            None
                        }
                    }
                };
                t.key = text(self, "key").map(|(k, _)| k);
                if let Some((op, pos)) = text(self, "operator") {
                    if op == "Equal" || op == "Exists" {
                        t.operator = Some(op);
                    } else {
                        self.diags.error(
                            pos,
                            format!("operator '{op}' in {one}"),
                            "use Equal or Exists",
                        );
                    }
                }
                t.value = text(self, "value").map(|(v, _)| v);
                if let Some((effect, pos)) = text(self, "effect") {
                    if ["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect.as_str()) {
                        t.effect = Some(effect);
                    } else {
                        self.diags.error(
                            pos,
                            format!("effect '{effect}' in {one}"),
                            "use NoSchedule, PreferNoSchedule or NoExecute (or leave it out for all)",
                        );
                    }
                }
                if let Some(v) = optional(fields, "toleration_seconds") {
                    match v.value {
                        Value::Int(n) if n >= 0 => t.toleration_seconds = Some(n),
                        _ => self.type_error(
                            v,
                            &format!("`toleration_seconds` of {one}"),
                            "a whole number of seconds",
                            "e.g. `toleration_seconds: 300`",
                        ),
                    }
                }
                if t.operator.as_deref() == Some("Exists") && t.value.is_some() {
                    self.diags.error(
                        item.pos,
                        format!("{one} has operator Exists and a value"),
                        "Exists matches any value: drop `value`, or use Equal",
                    );
                    continue;
                }
                if t.key.is_none() && t.operator.as_deref() != Some("Exists") {
                    self.diags.error(item.pos, format!("{one} has no key"), "only `operator: Exists` may leave out the key (it then tolerates every taint)");
                    continue;
                }
                draft.step.kubernetes.tolerations.push(t);
            }
        }
    }

    fn step_runner(
        &mut self,
        entries: &[(Key, Node)],
        step_pos: Pos,
        label: &str,
        draft: &mut StepDraft,
    ) {
        let image = entry(entries, "image").filter(|(_, n)| n.value != Value::Null);
        let uses = entry(entries, "uses").filter(|(_, n)| n.value != Value::Null);
        match (image, uses) {
            (Some((ik, _)), Some((uk, _))) => {
                let later = if ik.pos > uk.pos { ik.pos } else { uk.pos };
                self.diags.error(
                    later,
                    format!("{label} sets both `image` and `uses`"),
                    "a step runs either an OCI image (`image:`) or a component (`uses:`); remove one",
                );
            }
            (None, None) => self.diags.error(
                step_pos,
                format!("{label} needs `image` or `uses`"),
                "add `image: <oci-image>` or `uses: builtin/<component>`",
            ),
            (Some((_, node)), None) => {
                let what = format!("`image` of {label}");
                if let Some(image) = self.string(
                    node,
                    &what,
                    "write an image reference such as `python:3.12-slim`",
                ) {
                    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                        self.diags.error(
                            node.pos,
                            format!("invalid image reference '{image}' in {label}"),
                            "an image reference has no spaces, e.g. `registry.example.com/team/trainer@sha256:…`",
                        );
                    } else {
                        draft.step.image = Some(image.to_owned());
                    }
                }
            }
            (None, Some((_, node))) => {
                let what = format!("`uses` of {label}");
                if let Some(uses) = self.string(node, &what, "write `uses: builtin/<component>`") {
                    if let Some(component) = uses.strip_prefix("builtin/") {
                        if is_valid_name(component) {
                            draft.step.uses = Some(uses.to_owned());
                        } else {
                            self.diags.error(
                                node.pos,
                                format!("invalid builtin component name '{component}' in {label}"),
                                format!("write `uses: builtin/<component>`; {NAME_RULE}"),
                            );
                        }
                    } else if uses.starts_with("./")
                        || uses.starts_with("../")
                        || uses.starts_with('/')
                        || uses.ends_with(".yaml")
                        || uses.ends_with(".yml")
                    {
                        self.diags.error(
                            node.pos,
                            format!("component files (`uses: {uses}`) are not supported yet"),
                            "use a built-in component (`uses: builtin/<component>`) or an `image:`",
                        );
                    } else {
                        self.diags.error(
                            node.pos,
                            format!("`uses` of {label} must be `builtin/<component>`, got '{uses}'"),
                            "built-in components are named like `builtin/split`; to run an OCI image use `image:`",
                        );
                    }
                }
            }
        }
    }

    fn step_command(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        let Some((key, value)) = entry(entries, "command") else {
            return;
        };
        if value.value == Value::Null {
            return;
        }
        if entry(entries, "uses").is_some() && entry(entries, "image").is_none() {
            self.diags.error(
                key.pos,
                format!("{label} uses a built-in component, which takes no `command`"),
                "configure built-in components through `with:`; remove `command`",
            );
            return;
        }
        let what = format!("`command` of {label}");
        let Some(items) = self.seq(
            value,
            &what,
            "write the command as a list: `command: [python, train.py, --epochs, \"3\"]`",
        ) else {
            return;
        };
        for item in items {
            match item.scalar_text() {
                Some(text) => {
                    if matches!(item.value, Value::Str(_)) {
                        draft.templates.push((text.clone(), item.pos));
                    }
                    draft.step.command.push(text);
                }
                None => self.type_error(
                    item,
                    &format!("each item of `command` of {label}"),
                    "a string or number",
                    "quote arguments that contain `:` or start with `[` or `{`",
                ),
            }
        }
    }

    fn step_env(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        let Some(value) = optional(entries, "env") else {
            return;
        };
        let what = format!("`env` of {label}");
        let Some(map) = self.map(value, &what, "write variables as `NAME: value` pairs") else {
            return;
        };
        for (key, v) in map {
            if !is_valid_env_name(&key.name) {
                self.diags.error(
                    key.pos,
                    format!("invalid env name '{}' in {label}", key.name),
                    "env names start with a letter or `_`, then letters, digits or `_`",
                );
                continue;
            }
            if key.name.starts_with("GANTRY_") {
                self.diags.error(
                    key.pos,
                    format!("env name '{}' in {label} is reserved", key.name),
                    "names starting with GANTRY_ are set by gantry itself; rename the variable",
                );
                continue;
            }
            match v.scalar_text() {
                Some(text) => {
                    if matches!(v.value, Value::Str(_)) {
                        draft.templates.push((text.clone(), v.pos));
                    }
                    draft.step.env.insert(key.name.clone(), text);
                }
                None => self.type_error(
                    v,
                    &format!("env '{}' of {label}", key.name),
                    "a string or number",
                    "write `NAME: \"\"` for an empty value",
                ),
            }
        }
    }

    fn step_inputs(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        let Some(value) = optional(entries, "inputs") else {
            return;
        };
        let what = format!("`inputs` of {label}");
        let Some(map) = self.map(
            value,
            &what,
            "write inputs as `name: step.output`, `name: { path: data/file.csv }` or `name: { url: https://… }`",
        ) else {
            return;
        };
        for (key, v) in map {
            if !is_valid_io_name(&key.name) {
                self.diags.error(
                    key.pos,
                    format!("invalid input name '{}' in {label}", key.name),
                    IO_NAME_RULE,
                );
                continue;
            }
            let source = match &v.value {
                Value::Str(reference) => {
                    let looks_like_path = reference.starts_with("./")
                        || reference.starts_with("../")
                        || reference.starts_with('/');
                    if looks_like_path {
                        self.diags.error(
                            v.pos,
                            format!(
                                "input '{}' of {label} is a path, not `step.output`",
                                key.name
                            ),
                            format!(
                                "to read a file or directory write `{}: {{ path: {reference} }}`",
                                key.name
                            ),
                        );
                        continue;
                    }
                    if !reference.contains('.') {
                        self.diags.error(
                            v.pos,
                            format!(
                                "input '{}' of {label} must be `step.output`, got '{reference}'",
                                key.name
                            ),
                            "name the producing step and its output, e.g. `split.train`",
                        );
                        continue;
                    }
                    InputDraft::Reference(reference.clone())
                }
                Value::Map(fields) => match self.input_source(&key.name, v, fields, label) {
                    Some(source) => source,
                    None => continue,
                },
                _ => {
                    self.type_error(
                        v,
                        &format!("input '{}' of {label}", key.name),
                        "`step.output`, `{ path: … }` or `{ url: … }`",
                        "e.g. `train: split.train`, `data: { path: data/iris.csv }` or `data: { url: https://example.com/iris.csv }`",
                    );
                    continue;
                }
            };
            draft
                .step
                .input_locations
                .insert(key.name.clone(), self.diags.location(v.pos));
            draft.inputs.push(StepInput {
                name: key.name.clone(),
                source,
                pos: v.pos,
            });
        }
    }

    /// `{ path: … }` or `{ url: … }`; `None` once the problem is reported.
    fn input_source(
        &mut self,
        name: &str,
        node: &Node,
        fields: &[(Key, Node)],
        label: &str,
    ) -> Option<InputDraft> {
        self.check_keys(
            fields,
            INPUT_SOURCE_KEYS,
            &format!("input '{name}' of {label}"),
        );
        let (key, value) = match (entry(fields, "path"), entry(fields, "url")) {
            (Some((pk, _)), Some((uk, _))) => {
                self.diags.error(
                    if pk.pos > uk.pos { pk.pos } else { uk.pos },
                    format!("input '{name}' of {label} sets both `path` and `url`"),
                    "an input is read from a file or fetched from a URL; remove one",
                );
                return None;
            }
            (Some((_, path)), None) => ("path", path),
            (None, Some((_, url))) => ("url", url),
            (None, None) => {
                self.diags.error(
                    node.pos,
                    format!("input '{name}' of {label} is missing required key `path` or `url`"),
                    "write `{ path: data/file.csv }` (relative to the pipeline file) or `{ url: https://example.com/file.csv }`",
                );
                return None;
            }
        };
        let what = format!("`{key}` of input '{name}' of {label}");
        let text = if key == "path" {
            self.string(value, &what, "write a file or directory path")?
        } else {
            self.string(value, &what, "write an http(s) URL")?
        };
        if text.trim().is_empty() {
            self.diags.error(
                value.pos,
                format!("{what} is empty"),
                if key == "path" {
                    "write a file or directory path, relative to the pipeline file or absolute"
                } else {
                    "write an http(s) URL such as `https://example.com/iris.csv`"
                },
            );
            return None;
        }
        if key == "path" {
            return Some(InputDraft::Path(crate::pipeline::resolve_path(
                self.base_dir,
                text,
            )));
        }
        match check_url_input(text) {
            Ok(()) => Some(InputDraft::Url(text.to_owned())),
            Err(e) => {
                self.diags
                    .error(value.pos, format!("bad {what}: {}", e.reason), e.hint);
                None
            }
        }
    }

    fn step_matrix(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        let Some(value) = optional(entries, "matrix") else {
            return;
        };
        let what = format!("`matrix` of {label}");
        let Some(map) = self.map(
            value,
            &what,
            "write `matrix:` as `with:` keys with lists of values, e.g. `max_depth: [2, 4, 8]`",
        ) else {
            return;
        };
        if map.is_empty() {
            self.diags
                .error(value.pos, format!("{what} is empty"), matrix::EMPTY_HINT);
            return;
        }
        let mut combinations: usize = 1;
        for (key, list) in map {
            if !matrix::is_valid_key(&key.name) {
                self.diags.error(
                    key.pos,
                    format!("invalid matrix key '{}' in {label}", key.name),
                    matrix::KEY_RULE,
                );
                continue;
            }
            let what = format!("matrix key '{}' of {label}", key.name);
            let Some(items) = self.seq(
                list,
                &what,
                "list the values to sweep, e.g. `max_depth: [2, 4, 8]`",
            ) else {
                continue;
            };
            if items.is_empty() {
                self.diags.error(
                    list.pos,
                    format!("{what} has no values"),
                    "list at least one value, e.g. `max_depth: [2, 4, 8]`, or remove the key",
                );
                continue;
            }
            combinations = combinations.saturating_mul(items.len());
            let mut values = Vec::with_capacity(items.len());
            let mut seen: Vec<(String, Pos)> = Vec::new();
            for item in items {
                if matches!(item.value, Value::Null | Value::Seq(_) | Value::Map(_)) {
                    self.type_error(
                        item,
                        &format!("each value of {what}"),
                        "a string, number or boolean",
                        "matrix values are scalars; pass structured settings through `with:`",
                    );
                    continue;
                }
                let json = node_to_json(item, &mut Vec::new());
                if let Value::Str(text) = &item.value {
                    match refers_only_to_params(text) {
                        // Known only once params are resolved; `plan` checks the result.
                        Ok(true) => {
                            draft.matrix_templates.push((text.clone(), item.pos));
                            values.push(json);
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            self.diags.error(item.pos, e.message, e.hint);
                            continue;
                        }
                    }
                }
                let text = plain_text(&json);
                if let Err(reason) = matrix::check_value_text(&text) {
                    self.diags.error(
                        item.pos,
                        format!("{what} has value {reason}"),
                        matrix::VALUE_RULE,
                    );
                    continue;
                }
                if let Some((_, first)) = seen.iter().find(|(t, _)| *t == text) {
                    self.diags.error(
                        item.pos,
                        format!(
                            "duplicate value '{text}' in {what} (first listed at line {})",
                            first.line
                        ),
                        "each value may appear once per key; remove the repeat",
                    );
                    continue;
                }
                seen.push((text, item.pos));
                values.push(json);
            }
            draft.step.matrix.insert(key.name.clone(), values);
        }
        if combinations > matrix::MAX_COMBINATIONS {
            self.diags.error(
                value.pos,
                format!(
                    "{what} has {combinations} combinations, more than {}",
                    matrix::MAX_COMBINATIONS
                ),
                matrix::GRID_HINT,
            );
        }
    }

    /// `with: { source: … }` of a built-in step becomes an input in `plan`; a literal
    /// one is checked here, where its position is known.
    fn step_source(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        if draft.step.uses.is_none() || draft.inputs.iter().any(|i| i.name == "source") {
            return;
        }
        let Some(Value::Map(with)) = optional(entries, "with").map(|n| &n.value) else {
            return;
        };
        let Some(node) = optional(with, "source") else {
            return;
        };
        draft
            .step
            .input_locations
            .insert("source".into(), self.diags.location(node.pos));
        let Value::Str(text) = &node.value else {
            return;
        };
        if has_references(text) {
            return;
        }
        if let Err(e) = classify_source(text) {
            self.diags.error(
                node.pos,
                format!("bad `source` of {label}: {}", e.reason),
                e.hint,
            );
        }
    }

    fn step_outputs(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        let Some(value) = optional(entries, "outputs") else {
            return;
        };
        let what = format!("`outputs` of {label}");
        let Some(items) = self.seq(
            value,
            &what,
            "write outputs as a list: `outputs: [model, report]`",
        ) else {
            return;
        };
        let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
        for item in items {
            let what = format!("each output of {label}");
            let Some(name) = self.string(item, &what, IO_NAME_RULE) else {
                continue;
            };
            if !is_valid_io_name(name) {
                self.diags.error(
                    item.pos,
                    format!("invalid output name '{name}' in {label}"),
                    IO_NAME_RULE,
                );
                continue;
            }
            if let Some(first) = seen.get(name) {
                self.diags.error(
                    item.pos,
                    format!(
                        "duplicate output '{name}' in {label} (first listed at line {})",
                        first.line
                    ),
                    "each output name may appear once; remove or rename one",
                );
                continue;
            }
            seen.insert(name, item.pos);
            draft.step.outputs.push(name.to_owned());
        }
    }

    fn step_after(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        let Some(value) = optional(entries, "after") else {
            return;
        };
        let what = format!("`after` of {label}");
        let Some(items) = self.seq(value, &what, "write `after: [step-a, step-b]`") else {
            return;
        };
        for item in items {
            let what = format!("each entry of `after` of {label}");
            if let Some(name) = self.string(item, &what, "name a step of this pipeline") {
                if !draft.step.after.iter().any(|a| a == name) {
                    draft.step.after.push(name.to_owned());
                }
                draft.after.push((name.to_owned(), item.pos));
            }
        }
    }

    fn step_limits(&mut self, entries: &[(Key, Node)], label: &str, draft: &mut StepDraft) {
        if let Some(value) = optional(entries, "retries") {
            self.retries(value, label, &mut draft.step);
        }
        if let Some(value) = optional(entries, "timeout") {
            let parsed = match &value.value {
                Value::Int(n) => u64::try_from(*n)
                    .map(std::time::Duration::from_secs)
                    .map_err(|_| format!("invalid duration '{n}'")),
                Value::Str(s) => parse_duration(s),
                _ => Err(format!("expected a duration, got {}", value.kind())),
            };
            match parsed {
                Ok(d) if !d.is_zero() => draft.step.timeout = Some(d),
                Ok(_) => self.diags.error(
                    value.pos,
                    format!("`timeout` of {label} is zero"),
                    "omit `timeout` for no limit, or give a positive duration such as 20m",
                ),
                Err(e) => self.diags.error(
                    value.pos,
                    format!("bad `timeout` of {label}: {e}"),
                    TIMEOUT_HINT,
                ),
            }
        }
        if let Some(value) = optional(entries, "timeout_grace") {
            let parsed = match &value.value {
                Value::Int(n) => u64::try_from(*n)
                    .map(std::time::Duration::from_secs)
                    .map_err(|_| format!("invalid duration '{n}'")),
                Value::Str(s) => parse_duration(s),
                _ => Err(format!("expected a duration, got {}", value.kind())),
            };
            match parsed {
                Ok(d) if d <= crate::MAX_TIMEOUT_GRACE => draft.step.timeout_grace = Some(d),
                Ok(_) => self.diags.error(
                    value.pos,
                    format!("`timeout_grace` of {label} is longer than 1h"),
                    "give the seconds a step needs to save its work after SIGTERM, such as 30s",
                ),
                Err(e) => self.diags.error(
                    value.pos,
                    format!("bad `timeout_grace` of {label}: {e}"),
                    TIMEOUT_HINT,
                ),
            }
        }
        if let Some(value) = optional(entries, "logs") {
            let what = format!("`logs` of {label}");
            if let Some(map) = self.map(value, &what, "e.g. `logs: { max: 1Gi }`") {
                self.check_keys(map, LOGS_KEYS, &what);
                if let Some(v) = optional(map, "max") {
                    let parsed = match (&v.value, v.scalar_text()) {
                        (Value::Int(_) | Value::Str(_), Some(text)) => parse_memory(&text),
                        _ => Err(format!("expected a size such as 1Gi, got {}", v.kind())),
                    };
                    match parsed {
                        Ok(b) if b > crate::MAX_LOGS_MAX => self.diags.error(
                            v.pos,
                            format!("`logs.max` of {label} is over the 16Gi maximum"),
                            "logs live in the metadata database; keep them to what you will read, e.g. `logs: { max: 1Gi }`",
                        ),
                        Ok(b) if b >= crate::MIN_LOGS_MAX => draft.step.logs_max = Some(b),
                        Ok(b) => self.diags.error(
                            v.pos,
                            format!("`logs.max` of {label} is {b} bytes, below the 64Ki minimum"),
                            "keep at least 64Ki of log, e.g. `logs: { max: 100Mi }`",
                        ),
                        Err(e) => self.diags.error(
                            v.pos,
                            format!("bad `logs.max` of {label}: {e}"),
                            MEMORY_HINT,
                        ),
                    }
                }
            }
        }
        if let Some(value) = optional(entries, "resources") {
            let what = format!("`resources` of {label}");
            if let Some(map) = self.map(
                value,
                &what,
                "e.g. `resources: { cpu: 2, memory: 2Gi, gpu: 0 }`",
            ) {
                self.check_keys(map, RESOURCE_KEYS, &what);
                self.resources(map, label, &mut draft.step.resources);
            }
        }
    }

    /// `retries: N` or `retries: { count: N, memory_growth: G }`.
    fn retries(&mut self, value: &Node, label: &str, step: &mut Step) {
        let (count, what) = match &value.value {
            Value::Map(map) => {
                self.check_keys(map, RETRIES_KEYS, &format!("`retries` of {label}"));
                if let Some(g) = optional(map, "memory_growth") {
                    step.retry_memory_growth = self.memory_growth(g, label);
                }
                match optional(map, "count") {
                    Some(count) => (count, "`retries.count`"),
                    None => {
                        self.diags.error(
                            value.pos,
                            format!("`retries` of {label} is missing required key `count`"),
                            RETRIES_HINT,
                        );
                        return;
                    }
                }
            }
            _ => (value, "`retries`"),
        };
        match count.value {
            Value::Int(n) if (0..=MAX_RETRIES).contains(&n) => {
                step.retries = u32::try_from(n).unwrap_or(0);
            }
            Value::Int(n) => self.diags.error(
                count.pos,
                format!("{what} of {label} is {n}, outside 0..={MAX_RETRIES}"),
                format!("use at most {MAX_RETRIES} retries; a step that keeps failing needs fixing, not retrying"),
            ),
            _ => {
                let expected = if std::ptr::eq(count, value) {
                    "an integer or a mapping"
                } else {
                    "an integer"
                };
                self.type_error(count, &format!("{what} of {label}"), expected, RETRIES_HINT);
            }
        }
    }

    /// `retries.memory_growth`: a factor above 1 and at most [`crate::MAX_RETRY_MEMORY_GROWTH`].
    fn memory_growth(&mut self, node: &Node, label: &str) -> Option<f64> {
        let what = format!("`retries.memory_growth` of {label}");
        let growth = match node.value {
            Value::Int(n) => n as f64,
            Value::Float(f) => f,
            _ => {
                self.type_error(
                    node,
                    &what,
                    "a number",
                    "e.g. `memory_growth: 2` doubles the memory after an out-of-memory kill",
                );
                return None;
            }
        };
        if growth.is_finite() && growth > 1.0 && growth <= crate::MAX_RETRY_MEMORY_GROWTH {
            return Some(growth);
        }
        let text = node.scalar_text().unwrap_or_else(|| growth.to_string());
        self.diags.error(
            node.pos,
            format!("{what} is {text}; it must be above 1 and at most 16"),
            "the memory of the attempt after an out-of-memory kill is multiplied by it, e.g. `memory_growth: 1.5`",
        );
        None
    }

    fn resources(&mut self, map: &[(Key, Node)], label: &str, out: &mut Resources) {
        if let Some(v) = optional(map, "cpu") {
            let parsed = match (&v.value, v.scalar_text()) {
                (Value::Int(_) | Value::Float(_) | Value::Str(_), Some(text)) => parse_cpu(&text),
                _ => Err(format!("expected cores or millicores, got {}", v.kind())),
            };
            match parsed {
                Ok(m) => out.cpu_millis = m,
                Err(e) => self
                    .diags
                    .error(v.pos, format!("bad `cpu` of {label}: {e}"), CPU_HINT),
            }
        }
        if let Some(v) = optional(map, "memory") {
            if v.value == Value::Str("auto".to_owned()) {
                // The engine replaces the default with what earlier runs needed, when it knows.
                out.memory_auto = true;
            } else if let Some(b) =
                self.size(v, &format!("`memory` of {label}"), RESOURCE_MEMORY_HINT)
            {
                out.memory_bytes = b;
            }
        }
        if let Some(v) = optional(map, "gpu") {
            match &v.value {
                Value::Int(n) => match u32::try_from(*n) {
                    Ok(g) => out.gpu = g,
                    Err(_) => self.diags.error(
                        v.pos,
                        format!("bad `gpu` of {label}: {n} is not a GPU count"),
                        GPU_HINT,
                    ),
                },
                Value::Map(gpu) => self.gpu(gpu, label, out),
                _ => self.type_error(
                    v,
                    &format!("`gpu` of {label}"),
                    "an integer or a mapping",
                    GPU_HINT,
                ),
            }
        }
    }

    /// A size such as `2Gi` (above zero); `None` once the problem is reported.
    fn size(&mut self, v: &Node, what: &str, hint: &str) -> Option<u64> {
        let parsed = match (&v.value, v.scalar_text()) {
            (Value::Int(_) | Value::Float(_) | Value::Str(_), Some(text)) => parse_memory(&text),
            _ => Err(format!("expected a size such as 2Gi, got {}", v.kind())),
        };
        match parsed {
            Ok(b) => Some(b),
            Err(e) => {
                self.diags.error(v.pos, format!("bad {what}: {e}"), hint);
                None
            }
        }
    }

    /// `gpu: { count: N, memory: SIZE, model: NAME }`; `count` defaults to 1.
    fn gpu(&mut self, map: &[(Key, Node)], label: &str, out: &mut Resources) {
        self.check_keys(map, GPU_KEYS, &format!("`gpu` of {label}"));
        out.gpu = 1;
        if let Some(v) = optional(map, "count") {
            match v.value {
                Value::Int(n) if n >= 1 => match u32::try_from(n) {
                    Ok(g) => out.gpu = g,
                    Err(_) => self.diags.error(
                        v.pos,
                        format!("bad `gpu.count` of {label}: {n} is not a GPU count"),
                        GPU_HINT,
                    ),
                },
                Value::Int(n) => self.diags.error(
                    v.pos,
                    format!(
                        "`gpu.count` of {label} is {n}; a `gpu:` mapping asks for at least 1 GPU"
                    ),
                    "leave `gpu` out (or write `gpu: 0`) for a step without GPUs",
                ),
                _ => self.type_error(
                    v,
                    &format!("`gpu.count` of {label}"),
                    "an integer",
                    "write a whole number of GPUs, e.g. `count: 2`",
                ),
            }
        }
        if let Some(v) = optional(map, "memory")
            && let Some(b) = self.size(v, &format!("`gpu.memory` of {label}"), MEMORY_HINT)
        {
            out.gpu_memory_bytes = b;
        }
        if let Some(v) = optional(map, "model") {
            let what = format!("`gpu.model` of {label}");
            let text = match (&v.value, v.scalar_text()) {
                (Value::Str(_) | Value::Int(_), Some(text)) => text,
                _ => {
                    self.type_error(v, &what, "a string", GPU_MODEL_RULE);
                    return;
                }
            };
            if text.is_empty() {
                self.diags
                    .error(v.pos, format!("{what} is empty"), GPU_MODEL_RULE);
            } else if !is_valid_gpu_model(&text) {
                self.diags.error(
                    v.pos,
                    format!("invalid GPU model '{text}' in {label}"),
                    GPU_MODEL_RULE,
                );
            } else {
                out.gpu_model = Some(text.to_ascii_lowercase());
            }
        }
    }
}

/// `with:` values become JSON; strings are remembered for template checks.
fn node_to_json(node: &Node, templates: &mut Vec<(String, Pos)>) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or_else(|| J::String(f.to_string())),
        Value::Str(s) => {
            templates.push((s.clone(), node.pos));
            J::String(s.clone())
        }
        Value::Seq(items) => J::Array(items.iter().map(|n| node_to_json(n, templates)).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), node_to_json(v, templates)))
                .collect(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::InputSource;
    use std::time::Duration;

    pub(crate) fn errors(yaml: &str) -> Vec<Diagnostic> {
        parse("p.yaml", Path::new("/base"), yaml)
            .expect_err("spec should be rejected")
            .diagnostics
    }

    /// The only diagnostic, checked to be at `line:column` and to mention every `needle`.
    pub(crate) fn only_error(
        yaml: &str,
        line: usize,
        column: usize,
        needles: &[&str],
    ) -> Diagnostic {
        let errs = errors(yaml);
        assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
        let d = errs.into_iter().next().unwrap();
        let loc = d.location.clone().expect("diagnostic has a location");
        assert_eq!(
            (loc.file.as_str(), loc.line, loc.column),
            ("p.yaml", line, column),
            "{d}"
        );
        for needle in needles {
            assert!(d.message.contains(needle), "{needle:?} not in: {d}");
        }
        assert!(
            d.hint.as_deref().is_some_and(|h| !h.is_empty()),
            "no hint: {d}"
        );
        d
    }

    fn ok(yaml: &str) -> Pipeline {
        parse("p.yaml", Path::new("/base"), yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const HEAD: &str = "name: p\nsteps:\n";

    #[test]
    fn a_full_step_is_parsed_with_defaults_filled_in() {
        let p = ok(r#"name: iris
description: Train it
params: { depth: 4 }
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: data/iris.csv }
    outputs: [dataset]
  - name: train
    image: python:3.12
    command: [python, train.py, --lr, 0.010, "${params.depth}", 3]
    env: { LR: 1.10, MODE: fast, DEBUG: true }
    inputs:
      data: ingest.dataset
      extra: { path: extra/x.csv }
      abs: { path: /srv/data }
    outputs: [model]
    after: [ingest]
    retries: 2
    timeout: 20m
    resources: { cpu: 0.5, memory: 2Gi, gpu: 1 }
    network: true
    cache: false
"#);
        assert_eq!(p.name, "iris");
        assert_eq!(p.description.as_deref(), Some("Train it"));
        assert_eq!(p.file, "p.yaml");
        let ingest = &p.steps[0];
        assert_eq!(ingest.uses.as_deref(), Some("builtin/csv-ingest"));
        assert_eq!(ingest.resources, Resources::default());
        assert_eq!(ingest.resources.memory_bytes, 512 * 1024 * 1024);
        assert!(ingest.cache && !ingest.network);
        assert_eq!(ingest.retries, 0);
        assert_eq!(ingest.timeout, None);
        assert_eq!(ingest.location.line, 5);
        assert_eq!(ingest.location.column, 5);
        let t = &p.steps[1];
        assert_eq!(t.image.as_deref(), Some("python:3.12"));
        assert_eq!(
            t.command,
            [
                "python",
                "train.py",
                "--lr",
                "0.010",
                "${params.depth}",
                "3"
            ]
        );
        assert_eq!(t.env["LR"], "1.10");
        assert_eq!(t.env["DEBUG"], "true");
        assert_eq!(
            t.inputs["data"],
            InputSource::Step {
                step: "ingest".into(),
                output: "dataset".into()
            }
        );
        assert_eq!(
            t.inputs["extra"],
            InputSource::Path("/base/extra/x.csv".into())
        );
        assert_eq!(t.inputs["abs"], InputSource::Path("/srv/data".into()));
        assert_eq!(t.after, ["ingest"]);
        assert_eq!(t.retries, 2);
        assert_eq!(t.timeout, Some(Duration::from_secs(1200)));
        assert_eq!(
            t.resources,
            Resources {
                cpu_millis: 500,
                memory_bytes: 2 << 30,
                gpu: 1,
                ..Resources::default()
            }
        );
        assert_eq!(t.retry_memory_growth, None);
        assert!(t.network && !t.cache);
    }

    #[test]
    fn yaml_syntax_error_is_located() {
        only_error("name: p\nsteps: [a, b\nx: 1\n", 3, 2, &["invalid YAML"]);
    }

    #[test]
    fn logs_max_is_a_size_of_at_least_64ki() {
        let ok = "name: p\nsteps:\n  - name: a\n    image: busybox\n    logs: { max: 1Gi }\n";
        let p = parse("p.yaml", Path::new("."), ok).unwrap();
        assert_eq!(p.steps[0].logs_max, Some(1 << 30));
        let none = "name: p\nsteps:\n  - name: a\n    image: busybox\n";
        assert_eq!(
            parse("p.yaml", Path::new("."), none).unwrap().steps[0].logs_max,
            None
        );
        for (spec, want) in [
            ("logs: { max: 1Ki }", "below the 64Ki minimum"),
            ("logs: { max: 1Ti }", "over the 16Gi maximum"),
            ("logs: { max: lots }", "bad `logs.max`"),
            ("logs: { maximum: 1Gi }", "maximum"),
            ("logs: 1Gi", "`logs` of"),
        ] {
            let text = format!("name: p\nsteps:\n  - name: a\n    image: busybox\n    {spec}\n");
            let err = parse("p.yaml", Path::new("."), &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains("p.yaml:5:"),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn a_steps_kubernetes_placement_is_parsed_and_checked_with_locations() {
        let ok = "name: p\nsteps:\n  - name: a\n    image: busybox\n    kubernetes:\n      node_selector: { nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3, pool: gpu }\n      tolerations:\n        - { key: nvidia.com/gpu, operator: Exists, effect: NoSchedule }\n        - { key: dedicated, value: ml, toleration_seconds: 60 }\n";
        let p = parse("p.yaml", Path::new("."), ok).unwrap();
        let k = &p.steps[0].kubernetes;
        assert_eq!(k.node_selector["pool"], "gpu");
        assert_eq!(
            k.node_selector["nvidia.com/gpu.product"],
            "NVIDIA-H100-80GB-HBM3"
        );
        assert_eq!(k.tolerations.len(), 2);
        assert_eq!(k.tolerations[0].operator.as_deref(), Some("Exists"));
        assert_eq!(k.tolerations[1].toleration_seconds, Some(60));
        let json = serde_json::to_value(&k.tolerations[1]).unwrap();
        assert_eq!(json["tolerationSeconds"], 60);
        for (spec, want) in [
            (
                "kubernetes: { node_selector: { 'bad key!': x } }",
                "not a Kubernetes label key",
            ),
            (
                "kubernetes: { node_selector: { pool: 'a b' } }",
                "not a Kubernetes label value",
            ),
            (
                "kubernetes: { tolerations: [{ key: k, operator: Maybe }] }",
                "operator 'Maybe'",
            ),
            (
                "kubernetes: { tolerations: [{ key: k, effect: Never }] }",
                "effect 'Never'",
            ),
            ("kubernetes: { tolerations: [{ value: v }] }", "has no key"),
            (
                "kubernetes: { tolerations: [{ key: k, operator: Exists, value: v }] }",
                "Exists and a value",
            ),
            (
                "kubernetes: { tolerations: [{ key: k, toleration_seconds: -1 }] }",
                "toleration_seconds",
            ),
            ("kubernetes: { node_selectors: {} }", "node_selectors"),
            ("kubernetes: gpu", "`kubernetes` of"),
        ] {
            let text = format!("name: p\nsteps:\n  - name: a\n    image: busybox\n    {spec}\n");
            let err = parse("p.yaml", Path::new("."), &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains("p.yaml:5:"),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn empty_file_is_an_error() {
        only_error("", 1, 1, &["empty"]);
        only_error("# nothing\n", 2, 1, &["empty"]);
    }

    #[test]
    fn unknown_keys_suggest_the_closest_valid_key() {
        let d = only_error(
            &format!("{HEAD}  - name: a\n    imagee: busybox\n    image: busybox\n"),
            4,
            5,
            &["unknown key `imagee`", "step 'a'"],
        );
        let hint = d.hint.unwrap();
        assert!(hint.starts_with("did you mean `image`?"), "{hint}");
        assert!(hint.contains("name, image, uses, command"), "{hint}");
        let errs = errors("name: p\nstep:\n  - name: a\n");
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].message.contains("missing required key `steps`"));
        assert_eq!(errs[0].location.as_ref().unwrap().line, 1);
        assert!(errs[1].message.contains("unknown key `step`"));
        assert_eq!(errs[1].location.as_ref().unwrap().line, 2);
        assert!(
            errs[1]
                .hint
                .as_deref()
                .unwrap()
                .contains("did you mean `steps`")
        );
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    resources: {{ cpus: 2 }}\n"),
            5,
            18,
            &["unknown key `cpus`"],
        );
    }

    #[test]
    fn missing_required_keys() {
        only_error(
            "steps:\n  - name: a\n    image: x\n",
            1,
            1,
            &["missing required key `name`"],
        );
        only_error(
            &format!("{HEAD}  - image: x\n"),
            3,
            5,
            &["step #1 is missing required key `name`"],
        );
        let errs = errors(&format!(
            "{HEAD}  - name: a\n    inputs: {{ d: {{ pth: x }} }}\n    image: x\n"
        ));
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(
            errs[0].message.contains("missing required key `path`"),
            "{}",
            errs[0]
        );
        assert_eq!(errs[0].location.as_ref().unwrap().column, 18);
        assert!(errs[1].message.contains("unknown key `pth`"), "{}", errs[1]);
        assert_eq!(errs[1].location.as_ref().unwrap().column, 20);
    }

    #[test]
    fn wrong_value_types_name_the_key_and_the_found_type() {
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    retries: two\n"),
            5,
            14,
            &["`retries` of step 'a' must be an integer or a mapping, got a string"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    command: python train.py\n"),
            5,
            14,
            &["`command` of step 'a' must be a list"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    network: \"yes\"\n"),
            5,
            14,
            &["`network` of step 'a' must be true or false"],
        );
        only_error(
            "name: p\nsteps: {a: 1}\n",
            2,
            8,
            &["`steps` must be a list, got a mapping"],
        );
        only_error(
            "name: [p]\nsteps:\n  - name: a\n    image: x\n",
            1,
            7,
            &["`name` of the pipeline"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    env: {{ A: [1] }}\n"),
            5,
            15,
            &["env 'A' of step 'a' must be a string or number, got a list"],
        );
    }

    #[test]
    fn steps_must_not_be_empty() {
        only_error("name: p\nsteps: []\n", 2, 8, &["`steps` is empty"]);
    }

    #[test]
    fn image_xor_uses() {
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    uses: builtin/split\n"),
            5,
            5,
            &["step 'a' sets both `image` and `uses`"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    outputs: [o]\n"),
            3,
            5,
            &["step 'a' needs `image` or `uses`"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    uses: ./comp.yaml\n"),
            4,
            11,
            &["not supported yet"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    uses: split\n"),
            4,
            11,
            &["must be `builtin/<component>`", "'split'"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    uses: builtin/split\n    command: [x]\n"),
            5,
            5,
            &["takes no `command`"],
        );
    }

    #[test]
    fn bad_names_are_rejected() {
        only_error(
            "name: My-Pipe\nsteps:\n  - name: a\n    image: x\n",
            1,
            7,
            &["invalid pipeline name 'My-Pipe'"],
        );
        only_error(
            &format!("{HEAD}  - name: Train\n    image: x\n"),
            3,
            11,
            &["invalid step name 'Train'"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    outputs: [ok, ../x]\n"),
            5,
            19,
            &["invalid output name '../x'"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    inputs: {{ .hidden: {{ path: x }} }}\n"),
            5,
            15,
            &["invalid input name '.hidden'"],
        );
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    env: {{ 1BAD: x }}\n"),
            5,
            12,
            &["invalid env name '1BAD'"],
        );
        only_error(
            "name: p\nparams: { 9x: 1 }\nsteps:\n  - name: a\n    image: x\n",
            2,
            11,
            &["invalid param name '9x'"],
        );
        assert!(!is_valid_io_name("."));
        assert!(!is_valid_io_name(".."));
        assert!(is_valid_io_name("model.onnx"));
        assert!(!is_valid_name(&"a".repeat(64)));
    }

    #[test]
    fn reserved_env_names() {
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    env:\n      GANTRY_STEP: x\n"),
            6,
            7,
            &["env name 'GANTRY_STEP' in step 'a' is reserved"],
        );
    }

    #[test]
    fn duplicate_outputs_point_at_the_second() {
        only_error(
            &format!(
                "{HEAD}  - name: a\n    image: x\n    outputs:\n      - model\n      - model\n"
            ),
            7,
            9,
            &["duplicate output 'model'", "line 6"],
        );
    }

    #[test]
    fn bad_quantities() {
        let step = |res: &str| format!("{HEAD}  - name: a\n    image: x\n    resources: {res}\n");
        only_error(
            &step("{ cpu: abc }"),
            5,
            23,
            &["bad `cpu` of step 'a'", "'abc'"],
        );
        only_error(
            &step("{ memory: 2Gx }"),
            5,
            26,
            &["bad `memory` of step 'a'", "unknown unit 'Gx'"],
        );
        only_error(&step("{ cpu: 0 }"), 5, 23, &["greater than zero"]);
        only_error(&step("{ memory: 0 }"), 5, 26, &["greater than zero"]);
        only_error(&step("{ gpu: -1 }"), 5, 23, &["bad `gpu`"]);
        only_error(&step("{ cpu: true }"), 5, 23, &["bad `cpu`"]);
        let p = ok(&step("{ cpu: \"500m\", memory: 1048576 }"));
        assert_eq!(p.steps[0].resources.cpu_millis, 500);
        assert_eq!(p.steps[0].resources.memory_bytes, 1_048_576);
    }

    #[test]
    fn bad_timeouts_and_retries() {
        let step = |kv: &str| format!("{HEAD}  - name: a\n    image: x\n    {kv}\n");
        only_error(
            &step("timeout: 10x"),
            5,
            14,
            &["bad `timeout` of step 'a'", "'10x'"],
        );
        only_error(
            &step("timeout: 0"),
            5,
            14,
            &["`timeout` of step 'a' is zero"],
        );
        only_error(&step("timeout: 1.5"), 5, 14, &["bad `timeout`"]);
        only_error(
            &step("retries: 11"),
            5,
            14,
            &["`retries` of step 'a' is 11"],
        );
        only_error(
            &step("retries: -1"),
            5,
            14,
            &["`retries` of step 'a' is -1"],
        );
        assert_eq!(
            ok(&step("timeout: 90")).steps[0].timeout,
            Some(Duration::from_secs(90))
        );
        assert_eq!(ok(&step("retries: 10")).steps[0].retries, 10);
    }

    #[test]
    fn timeout_grace_is_a_duration_up_to_an_hour() {
        let step = |kv: &str| format!("{HEAD}  - name: a\n    image: x\n    {kv}\n");
        assert_eq!(ok(&step("timeout: 5m")).steps[0].timeout_grace, None);
        assert_eq!(
            ok(&step("timeout_grace: 30s")).steps[0].timeout_grace,
            Some(Duration::from_secs(30))
        );
        // Zero: SIGKILL at once, as before there was a grace.
        assert_eq!(
            ok(&step("timeout_grace: 0")).steps[0].timeout_grace,
            Some(Duration::ZERO)
        );
        only_error(
            &step("timeout_grace: 2h"),
            5,
            20,
            &["`timeout_grace` of step 'a' is longer than 1h"],
        );
        only_error(
            &step("timeout_grace: soon"),
            5,
            20,
            &["bad `timeout_grace` of step 'a'", "'soon'"],
        );
        only_error(
            &step("timeout_grace: [1]"),
            5,
            20,
            &["bad `timeout_grace`", "expected a duration"],
        );
    }

    #[test]
    fn memory_auto_keeps_the_default_until_the_engine_knows_better() {
        let step = |res: &str| format!("{HEAD}  - name: a\n    image: x\n    resources: {res}\n");
        let r = &ok(&step("{ memory: auto }")).steps[0].resources;
        assert!(r.memory_auto);
        assert_eq!(r.memory_bytes, crate::DEFAULT_MEMORY_BYTES);
        let r = &ok(&step("{ memory: 1Gi }")).steps[0].resources;
        assert!(!r.memory_auto);
        assert_eq!(r.memory_bytes, 1 << 30);
        assert!(!ok(&step("{ cpu: 1 }")).steps[0].resources.memory_auto);
        let d = only_error(
            &step("{ memory: automatic }"),
            5,
            26,
            &["bad `memory` of step 'a'", "'automatic'"],
        );
        assert!(d.hint.unwrap().contains("`auto`"));
        // `auto` is a word of `memory`, not a size anywhere else.
        only_error(
            &format!("{HEAD}  - name: a\n    image: x\n    logs: {{ max: auto }}\n"),
            5,
            18,
            &["bad `logs.max` of step 'a'"],
        );
        only_error(
            &step("{ gpu: { memory: auto } }"),
            5,
            33,
            &["bad `gpu.memory` of step 'a'", "'auto'"],
        );
    }

    #[test]
    fn gpu_is_a_count_or_a_mapping() {
        let step = |res: &str| format!("{HEAD}  - name: a\n    image: x\n    resources: {res}\n");
        let r = ok(&step("{ gpu: 2 }")).steps[0].resources.clone();
        assert_eq!((r.gpu, r.gpu_memory_bytes, r.gpu_model), (2, 0, None));
        let r = ok(&step("{ gpu: { count: 2, memory: 40Gi, model: H200 } }")).steps[0]
            .resources
            .clone();
        assert_eq!(r.gpu, 2);
        assert_eq!(r.gpu_memory_bytes, 40 << 30);
        assert_eq!(r.gpu_model.as_deref(), Some("h200"));
        // Without `count` a mapping means one GPU.
        let r = ok(&step("{ gpu: { model: a100-80gb } }")).steps[0]
            .resources
            .clone();
        assert_eq!((r.gpu, r.gpu_memory_bytes), (1, 0));
        assert_eq!(r.gpu_model.as_deref(), Some("a100-80gb"));
        let r = ok(&step("{ gpu: { memory: 20G } }")).steps[0]
            .resources
            .clone();
        assert_eq!(
            (r.gpu, r.gpu_memory_bytes, r.gpu_model),
            (1, 20_000_000_000, None)
        );
        // A numeric model name is taken as written.
        let r = ok(&step("{ gpu: { model: 4090 } }")).steps[0]
            .resources
            .clone();
        assert_eq!(r.gpu_model.as_deref(), Some("4090"));
        // Written over several lines too.
        let p = ok(&format!(
            "{HEAD}  - name: a\n    image: x\n    resources:\n      gpu:\n        count: 1\n        model: l4\n"
        ));
        assert_eq!(p.steps[0].resources.gpu_model.as_deref(), Some("l4"));
    }

    #[test]
    fn bad_gpu_mappings_are_located() {
        let step = |res: &str| format!("{HEAD}  - name: a\n    image: x\n    resources: {res}\n");
        only_error(
            &step("{ gpu: { count: 0 } }"),
            5,
            32,
            &["`gpu.count` of step 'a' is 0", "at least 1 GPU"],
        );
        only_error(
            &step("{ gpu: { count: -2 } }"),
            5,
            32,
            &["`gpu.count` of step 'a' is -2"],
        );
        only_error(
            &step("{ gpu: { count: 1.5 } }"),
            5,
            32,
            &["`gpu.count` of step 'a' must be an integer, got a number"],
        );
        only_error(
            &step("{ gpu: { count: 5000000000 } }"),
            5,
            32,
            &["bad `gpu.count` of step 'a'", "not a GPU count"],
        );
        only_error(
            &step("{ gpu: { memory: 40Gx } }"),
            5,
            33,
            &["bad `gpu.memory` of step 'a'", "unknown unit 'Gx'"],
        );
        only_error(
            &step("{ gpu: { memory: 0 } }"),
            5,
            33,
            &["bad `gpu.memory`", "greater than zero"],
        );
        only_error(
            &step("{ gpu: { model: \"\" } }"),
            5,
            32,
            &["`gpu.model` of step 'a' is empty"],
        );
        let d = only_error(
            &step("{ gpu: { model: \"h100 sxm\" } }"),
            5,
            32,
            &["invalid GPU model 'h100 sxm' in step 'a'"],
        );
        assert!(d.hint.unwrap().contains("`model: h200`"));
        only_error(
            &step("{ gpu: { model: nvidia/h100 } }"),
            5,
            32,
            &["invalid GPU model 'nvidia/h100'"],
        );
        only_error(
            &step("{ gpu: { model: [h100] } }"),
            5,
            32,
            &["`gpu.model` of step 'a' must be a string, got a list"],
        );
        let d = only_error(
            &step("{ gpu: { cout: 1 } }"),
            5,
            25,
            &["unknown key `cout` in `gpu` of step 'a'"],
        );
        let hint = d.hint.unwrap();
        assert!(hint.contains("did you mean `count`?"), "{hint}");
        assert!(hint.contains("count, memory, model"), "{hint}");
        only_error(
            &step("{ gpu: [1] }"),
            5,
            23,
            &["`gpu` of step 'a' must be an integer or a mapping, got a list"],
        );
        only_error(&step("{ gpu: one }"), 5, 23, &["`gpu` of step 'a' must be"]);
        // Every problem of one mapping is reported.
        let errs = errors(&step("{ gpu: { count: 0, model: \"a b\", size: 1 } }"));
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn retries_is_a_count_or_a_mapping_with_memory_growth() {
        let step = |kv: &str| format!("{HEAD}  - name: a\n    image: x\n    {kv}\n");
        let s = &ok(&step("retries: 3")).steps[0];
        assert_eq!((s.retries, s.retry_memory_growth), (3, None));
        let s = &ok(&step("retries: { count: 2, memory_growth: 2 }")).steps[0];
        assert_eq!((s.retries, s.retry_memory_growth), (2, Some(2.0)));
        let s = &ok(&step("retries: { count: 1, memory_growth: 1.5 }")).steps[0];
        assert_eq!(s.retry_memory_growth, Some(1.5));
        let s = &ok(&step("retries: { count: 0 }")).steps[0];
        assert_eq!((s.retries, s.retry_memory_growth), (0, None));
        let s = &ok(&step("retries: { count: 10, memory_growth: 16 }")).steps[0];
        assert_eq!((s.retries, s.retry_memory_growth), (10, Some(16.0)));
        let s = &ok(&step("retries:\n      count: 4\n      memory_growth: 3")).steps[0];
        assert_eq!((s.retries, s.retry_memory_growth), (4, Some(3.0)));
    }

    #[test]
    fn bad_retry_mappings_are_located() {
        let step = |kv: &str| format!("{HEAD}  - name: a\n    image: x\n    {kv}\n");
        only_error(
            &step("retries: { count: 11 }"),
            5,
            23,
            &["`retries.count` of step 'a' is 11, outside 0..=10"],
        );
        only_error(
            &step("retries: { count: two }"),
            5,
            23,
            &["`retries.count` of step 'a' must be an integer, got a string"],
        );
        only_error(
            &step("retries: { memory_growth: 2 }"),
            5,
            14,
            &["`retries` of step 'a' is missing required key `count`"],
        );
        for growth in ["1", "1.0", "0.5", "17", "-2"] {
            only_error(
                &step(&format!("retries: {{ count: 2, memory_growth: {growth} }}")),
                5,
                41,
                &[
                    &format!("`retries.memory_growth` of step 'a' is {growth}"),
                    "above 1 and at most 16",
                ],
            );
        }
        only_error(
            &step("retries: { count: 2, memory_growth: .nan }"),
            5,
            41,
            &["not a finite number"],
        );
        only_error(
            &step("retries: { count: 2, memory_growth: double }"),
            5,
            41,
            &["`retries.memory_growth` of step 'a' must be a number, got a string"],
        );
        let d = only_error(
            &step("retries: { count: 2, growth: 2 }"),
            5,
            26,
            &["unknown key `growth` in `retries` of step 'a'"],
        );
        assert!(d.hint.unwrap().contains("count, memory_growth"));
        only_error(
            &step("retries: [2]"),
            5,
            14,
            &["`retries` of step 'a' must be an integer or a mapping, got a list"],
        );
    }

    #[test]
    fn param_defaults_must_be_scalars() {
        only_error(
            "name: p\nparams:\n  a:\n  b: 1\nsteps:\n  - name: s\n    image: x\n",
            3,
            3,
            &["param 'a' has no default"],
        );
        only_error(
            "name: p\nparams:\n  a: [1]\nsteps:\n  - name: s\n    image: x\n",
            3,
            6,
            &["param 'a'", "got a list"],
        );
    }

    #[test]
    fn input_shapes() {
        let step =
            |inp: &str| format!("{HEAD}  - name: a\n    image: x\n    inputs: {{ d: {inp} }}\n");
        let d = only_error(
            &step("./data.csv"),
            5,
            18,
            &["input 'd' of step 'a' is a path"],
        );
        assert!(d.hint.unwrap().contains("{ path: ./data.csv }"));
        only_error(&step("split"), 5, 18, &["must be `step.output`"]);
        only_error(&step("{ path: \"\" }"), 5, 26, &["is empty"]);
        only_error(&step("3"), 5, 18, &["input 'd' of step 'a' must be"]);
    }

    fn matrix_step(matrix: &str) -> String {
        format!(
            "{HEAD}  - name: train\n    uses: builtin/train\n    with: {{ seed: 7 }}\n    matrix: {matrix}\n"
        )
    }

    #[test]
    fn a_matrix_keeps_its_keys_and_values_in_declaration_order() {
        let p = ok(
            &matrix_step("{ zeta: [b, a], alpha: [2, 1.5, true, \"${params.x}\"] }")
                .replace("name: p\n", "name: p\nparams: { x: 3 }\n"),
        );
        let m = &p.steps[0].matrix;
        assert_eq!(m.keys().collect::<Vec<_>>(), ["zeta", "alpha"]);
        assert_eq!(m["zeta"], [serde_json::json!("b"), serde_json::json!("a")]);
        assert_eq!(
            m["alpha"],
            [
                serde_json::json!(2),
                serde_json::json!(1.5),
                serde_json::json!(true),
                serde_json::json!("${params.x}")
            ]
        );
        // `with` is kept as written; `plan` merges each combination into it.
        assert_eq!(p.steps[0].with["seed"], serde_json::json!(7));
        assert!(
            ok(&format!("{HEAD}  - name: a\n    image: x\n")).steps[0]
                .matrix
                .is_empty()
        );
    }

    #[test]
    fn bad_matrices_are_located() {
        only_error(
            &matrix_step("[1, 2]"),
            6,
            13,
            &["`matrix` of step 'train' must be a mapping, got a list"],
        );
        only_error(
            &matrix_step("{}"),
            6,
            13,
            &["`matrix` of step 'train' is empty"],
        );
        only_error(
            &matrix_step("{ 9lives: [1] }"),
            6,
            15,
            &["invalid matrix key '9lives' in step 'train'"],
        );
        only_error(
            &matrix_step("{ depth: 4 }"),
            6,
            22,
            &["matrix key 'depth' of step 'train' must be a list, got an integer"],
        );
        only_error(
            &matrix_step("{ depth: [] }"),
            6,
            22,
            &["matrix key 'depth' of step 'train' has no values"],
        );
        only_error(
            &matrix_step("{ depth: [2, [4]] }"),
            6,
            26,
            &[
                "each value of matrix key 'depth' of step 'train' must be a string, number or boolean, got a list",
            ],
        );
        only_error(
            &matrix_step("{ depth: [2, ~] }"),
            6,
            26,
            &["must be a string, number or boolean, got nothing"],
        );
        only_error(
            &matrix_step("{ algo: [logistic, a/b] }"),
            6,
            32,
            &["matrix key 'algo' of step 'train' has value 'a/b', which contains '/'"],
        );
        only_error(
            &matrix_step("{ algo: [\"\"] }"),
            6,
            22,
            &["has value an empty string"],
        );
        only_error(
            &matrix_step("{ algo: [\"${inputs.x}\"] }"),
            6,
            22,
            &["refers to `${inputs.x}`", "may only use `${params.NAME}`"],
        );
        only_error(
            &matrix_step("{ algo: [\"x${matrix.y}\"] }"),
            6,
            22,
            &["refers to `${matrix.y}`"],
        );
    }

    #[test]
    fn duplicate_matrix_values_point_at_the_repeat() {
        only_error(
            &matrix_step("\n      depth:\n        - 2\n        - 4\n        - 2"),
            10,
            11,
            &[
                "duplicate value '2' in matrix key 'depth' of step 'train'",
                "line 8",
            ],
        );
        // `4` and "4" would both be named `depth=4`.
        only_error(
            &matrix_step("{ depth: [4, \"4\"] }"),
            6,
            26,
            &["duplicate value '4'"],
        );
        // The same value under two keys is fine.
        ok(&matrix_step("{ a: [1, 2], b: [1, 2] }"));
    }

    #[test]
    fn grids_over_4096_combinations_are_rejected() {
        let values = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        let d = only_error(
            &matrix_step(&format!("{{ a: [{}], b: [{}] }}", values(64), values(65))),
            6,
            13,
            &["`matrix` of step 'train' has 4160 combinations, more than 4096"],
        );
        assert!(d.hint.unwrap().contains("reduce the grid"));
        ok(&matrix_step(&format!(
            "{{ a: [{}], b: [{}] }}",
            values(64),
            values(64)
        )));
    }

    #[test]
    fn literal_sources_of_builtin_steps_are_checked() {
        let step = |source: &str| {
            format!(
                "{HEAD}  - name: ingest\n    uses: builtin/csv-ingest\n    with: {{ source: {source} }}\n"
            )
        };
        ok(&step("data/iris.csv"));
        ok(&step("https://example.com/iris.csv"));
        ok(&step("file:///srv/iris.csv"));
        ok(&step("7"));
        let d = only_error(
            &step("\"\""),
            5,
            21,
            &["bad `source` of step 'ingest': it is empty"],
        );
        assert!(d.hint.unwrap().contains("https://"));
        only_error(
            &step("s3://bucket/iris.csv"),
            5,
            21,
            &["bad `source` of step 'ingest'", "unsupported scheme 's3'"],
        );
        only_error(
            &step("\"https:///iris.csv\""),
            5,
            21,
            &["bad `source`", "has no host"],
        );
        // Known only after params are resolved: `plan` checks it.
        ok(&step("\"${params.src}\"").replace("name: p\n", "name: p\nparams: { src: \"\" }\n"));
        // Not a built-in step, or `source` given as an input: nothing to convert.
        ok(&format!(
            "{HEAD}  - name: a\n    image: x\n    with: {{ source: \"s3://x\" }}\n"
        ));
        ok(&format!(
            "{HEAD}  - name: a\n    uses: builtin/csv-ingest\n    with: {{ source: \"s3://x\" }}\n    inputs: {{ source: {{ path: x.csv }} }}\n"
        ));
    }

    #[test]
    fn url_inputs() {
        let step =
            |inp: &str| format!("{HEAD}  - name: a\n    image: x\n    inputs: {{ d: {inp} }}\n");
        let p = ok(&step("{ url: \"https://example.com/iris.csv\" }"));
        assert_eq!(
            p.steps[0].inputs["d"],
            InputSource::Url("https://example.com/iris.csv".into())
        );
        only_error(
            &step("{ url: \"ftp://example.com/x\" }"),
            5,
            25,
            &[
                "bad `url` of input 'd' of step 'a'",
                "unsupported scheme 'ftp'",
            ],
        );
        let d = only_error(
            &step("{ url: data/x.csv }"),
            5,
            25,
            &["bad `url` of input 'd' of step 'a'", "not a URL"],
        );
        assert!(d.hint.unwrap().contains("{ path: … }"));
        only_error(
            &step("{ url: \"\" }"),
            5,
            25,
            &["`url` of input 'd' of step 'a' is empty"],
        );
        only_error(
            &step("{ path: x, url: \"https://e.com\" }"),
            5,
            29,
            &["input 'd' of step 'a' sets both `path` and `url`"],
        );
        only_error(
            &step("{ url: [x] }"),
            5,
            25,
            &["`url` of input 'd' of step 'a' must be a string, got a list"],
        );
    }

    #[test]
    fn all_problems_are_reported_together_in_file_order() {
        let errs = errors(&format!(
            "{HEAD}  - name: a\n    image: x\n    retries: 11\n    timeout: nope\n  - name: b\n    imag: y\n"
        ));
        let lines: Vec<usize> = errs
            .iter()
            .map(|e| e.location.as_ref().unwrap().line)
            .collect();
        assert_eq!(lines, [5, 6, 7, 8], "{errs:#?}");
    }

    #[test]
    fn load_reads_the_file_and_resolves_paths_next_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gantry.yaml");
        std::fs::write(
            &file,
            "name: p\nsteps:\n  - name: a\n    image: x\n    inputs: { d: { path: data/x.csv } }\n",
        )
        .unwrap();
        let p = load(&file).unwrap();
        assert_eq!(p.base_dir, dir.path());
        assert_eq!(p.file, file.display().to_string());
        assert_eq!(
            p.steps[0].inputs["d"],
            InputSource::Path(dir.path().join("data/x.csv"))
        );
        assert_eq!(p.steps[0].location.file, file.display().to_string());

        let missing = dir.path().join("nope.yaml");
        let err = load(&missing).unwrap_err();
        assert_eq!(err.diagnostics.len(), 1);
        assert!(err.diagnostics[0].location.is_none());
        assert!(err.diagnostics[0].message.contains("nope.yaml"));

        std::fs::write(&file, "name: p\nsteps: [\n").unwrap();
        let err = load(&file).unwrap_err();
        let loc = err.diagnostics[0].location.as_ref().unwrap();
        assert_eq!(loc.file, file.display().to_string());
    }
}
