//! A deployment's desired state: which model version serves, with which canary and shadow,
//! how many replicas with which resources, what is logged and how it is monitored.
//!
//! Pure: the server keeps a [`DeploymentSpec`] per deployment in the store (one revision per
//! change) and reconciles replicas towards it; the CLI, the API and the `builtin/deploy` step
//! all change it through [`apply`], [`promote`] and [`rollback`], so every way in validates
//! the same way. Model references (`name@alias`) are resolved to a version *before* they get
//! here: a deployment pins versions, and moving an alias later does not silently change what
//! serves.

use serde::{Deserialize, Serialize};

use crate::quantity::{parse_cpu, parse_duration, parse_memory};

/// Most replicas one model version of a deployment may run.
pub const MAX_REPLICAS: u32 = 16;
/// Default CPU of a replica, in millicores.
pub const DEFAULT_CPU_MILLIS: u64 = 1000;
/// Default memory limit of a replica.
pub const DEFAULT_MEMORY_BYTES: u64 = 512 << 20;
/// Predictions kept per deployment by default (older ones are pruned first).
pub const DEFAULT_MAX_PREDICTIONS: i64 = 200_000;
/// How long predictions are kept by default.
pub const DEFAULT_RETENTION: &str = "30d";
/// The window monitoring looks at by default.
pub const DEFAULT_WINDOW: &str = "1h";

/// One model version a deployment serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTarget {
    /// What the user asked for (`churn@champion`), kept for display.
    pub reference: String,
    pub model: String,
    pub version: i64,
}

impl ModelTarget {
    /// `model:version`, the label used in metrics and logs.
    pub fn label(&self) -> String {
        format!("{}:{}", self.model, self.version)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub target: ModelTarget,
    /// Percent of requests (1–99) the canary answers.
    pub weight: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorSettings {
    /// Alert rules (`psi > 0.2 for feature age`, `accuracy < 0.85`): see gantry-monitor.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Alerts are POSTed here as JSON when they fire or resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// How far back drift and latency look (`1h`).
    pub window: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub max_predictions: i64,
    /// Predictions older than this are deleted (`30d`).
    pub max_age: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    pub model: ModelTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Receives a copy of every request; its answers are logged, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ModelTarget>,
    pub replicas: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Fraction of requests written to the prediction log (1 = all).
    pub sample_rate: f64,
    pub monitor: MonitorSettings,
    pub retention: Retention,
}

/// A change asked for by `gantry deploy`, the API or `builtin/deploy`. `None` leaves a field
/// as it is (or at its default for a new deployment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentChange {
    pub model: Option<ModelTarget>,
    pub canary: Option<ModelTarget>,
    pub weight: Option<u8>,
    pub shadow: Option<ModelTarget>,
    pub clear_canary: bool,
    pub clear_shadow: bool,
    pub replicas: Option<u32>,
    /// Kubernetes-style quantities (`500m`, `2`; `256Mi`, `1Gi`).
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub sample_rate: Option<f64>,
    pub rules: Option<Vec<String>>,
    /// `Some("")` removes the webhook.
    pub webhook: Option<String>,
    pub window: Option<String>,
    pub max_predictions: Option<i64>,
    pub max_age: Option<String>,
}

/// A change that cannot be applied, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DeploymentError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> DeploymentError {
    DeploymentError {
        field,
        message: message.into(),
    }
}

/// Checks a deployment name: it is a URL path segment and a metrics label.
pub fn validate_name(name: &str) -> Result<(), DeploymentError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(err(
            "name",
            format!(
                "`{name}` is not a deployment name: use 1–63 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
            ),
        ))
    }
}

/// The desired state after `change`, from `current` (None: a new deployment).
pub fn apply(
    current: Option<&DeploymentSpec>,
    change: DeploymentChange,
) -> Result<DeploymentSpec, DeploymentError> {
    let mut spec = match (current, change.model.clone()) {
        (Some(c), _) => c.clone(),
        (None, Some(model)) => DeploymentSpec {
            model,
            canary: None,
            shadow: None,
            replicas: 1,
            cpu_millis: DEFAULT_CPU_MILLIS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            sample_rate: 1.0,
            monitor: MonitorSettings {
                rules: Vec::new(),
                webhook: None,
                window: DEFAULT_WINDOW.into(),
            },
            retention: Retention {
                max_predictions: DEFAULT_MAX_PREDICTIONS,
                max_age: DEFAULT_RETENTION.into(),
            },
        },
        (None, None) => {
            return Err(err(
                "model",
                "a new deployment needs a model (`--model NAME@ALIAS` or `NAME@VERSION`)",
            ));
        }
    };
    if let Some(model) = change.model {
        spec.model = model;
    }
    if change.clear_canary {
        spec.canary = None;
    }
    match (change.canary, change.weight) {
        (Some(target), weight) => {
            let weight = weight
                .or(spec.canary.as_ref().map(|c| c.weight))
                .unwrap_or(10);
            spec.canary = Some(Canary { target, weight });
        }
        (None, Some(weight)) => match spec.canary.as_mut() {
            Some(c) => c.weight = weight,
            None => {
                return Err(err(
                    "weight",
                    "there is no canary to weigh: give `--canary MODEL@VERSION` too",
                ));
            }
        },
        (None, None) => {}
    }
    if change.clear_shadow {
        spec.shadow = None;
    }
    if let Some(shadow) = change.shadow {
        spec.shadow = Some(shadow);
    }
    if let Some(r) = change.replicas {
        spec.replicas = r;
    }
    if let Some(cpu) = change.cpu {
        spec.cpu_millis = parse_cpu(&cpu).map_err(|e| err("cpu", e))?;
    }
    if let Some(memory) = change.memory {
        spec.memory_bytes = parse_memory(&memory).map_err(|e| err("memory", e))?;
    }
    if let Some(rate) = change.sample_rate {
        spec.sample_rate = rate;
    }
    if let Some(rules) = change.rules {
        spec.monitor.rules = rules;
    }
    if let Some(hook) = change.webhook {
        spec.monitor.webhook = (!hook.is_empty()).then_some(hook);
    }
    if let Some(window) = change.window {
        spec.monitor.window = window;
    }
    if let Some(n) = change.max_predictions {
        spec.retention.max_predictions = n;
    }
    if let Some(age) = change.max_age {
        spec.retention.max_age = age;
    }
    validate(&spec)?;
    Ok(spec)
}

/// Everything [`apply`] guarantees of a spec (also run on specs read back from the store).
pub fn validate(spec: &DeploymentSpec) -> Result<(), DeploymentError> {
    if spec.replicas == 0 || spec.replicas > MAX_REPLICAS {
        return Err(err(
            "replicas",
            format!(
                "{} replicas: use 1–{MAX_REPLICAS} (undeploy to stop serving)",
                spec.replicas
            ),
        ));
    }
    if spec.cpu_millis < 10 {
        return Err(err("cpu", "a replica needs at least 10m of CPU"));
    }
    if spec.memory_bytes < (32 << 20) {
        return Err(err("memory", "a replica needs at least 32Mi of memory"));
    }
    if !(0.0..=1.0).contains(&spec.sample_rate) || spec.sample_rate.is_nan() {
        return Err(err(
            "sample_rate",
            format!("{} is not a fraction between 0 and 1", spec.sample_rate),
        ));
    }
    if let Some(c) = &spec.canary {
        if !(1..=99).contains(&c.weight) {
            return Err(err(
                "weight",
                format!(
                    "{}% is not a canary weight: use 1–99 (promote to send it everything)",
                    c.weight
                ),
            ));
        }
        if c.target.model == spec.model.model && c.target.version == spec.model.version {
            return Err(err(
                "canary",
                format!("{} already serves as the primary model", c.target.label()),
            ));
        }
    }
    for (field, target) in [
        ("model", Some(&spec.model)),
        ("shadow", spec.shadow.as_ref()),
    ]
    .into_iter()
    .chain(std::iter::once((
        "canary",
        spec.canary.as_ref().map(|c| &c.target),
    ))) {
        if let Some(t) = target
            && t.version < 1
        {
            return Err(err(
                field,
                format!("version {} of {} does not exist", t.version, t.model),
            ));
        }
    }
    parse_duration(&spec.monitor.window).map_err(|e| err("window", e))?;
    parse_duration(&spec.retention.max_age).map_err(|e| err("max_age", e))?;
    if spec.retention.max_predictions < 1 {
        return Err(err("max_predictions", "keep at least 1 prediction"));
    }
    if let Some(hook) = &spec.monitor.webhook
        && !(hook.starts_with("http://") || hook.starts_with("https://"))
    {
        return Err(err("webhook", format!("`{hook}` is not an http(s) URL")));
    }
    Ok(())
}

/// The canary takes all traffic: it becomes the primary model and the canary is cleared.
pub fn promote(spec: &DeploymentSpec) -> Result<DeploymentSpec, DeploymentError> {
    let Some(canary) = &spec.canary else {
        return Err(err(
            "canary",
            "this deployment has no canary to promote: add one with `gantry deploy NAME --canary MODEL@VERSION --weight N`",
        ));
    };
    let mut next = spec.clone();
    next.model = canary.target.clone();
    next.canary = None;
    Ok(next)
}

/// The state before the last change. `history` is every revision of the deployment, oldest
/// first and the current one last, as (action, spec). Changes stack up; a `rollback`
/// revision undid the change on top of the stack, and `undeploy` ended a deployment's life
/// (a later create starts a new one). So rolling back twice undoes the last two changes
/// rather than flipping between two states.
pub fn rollback<'a>(
    history: impl IntoIterator<Item = (&'a str, &'a DeploymentSpec)>,
) -> Result<DeploymentSpec, DeploymentError> {
    let mut stack: Vec<&DeploymentSpec> = Vec::new();
    for (action, spec) in history {
        match action {
            "rollback" => {
                stack.pop();
            }
            "undeploy" => stack.clear(),
            _ => stack.push(spec),
        }
    }
    match stack.len() {
        n if n >= 2 => Ok(stack[n - 2].clone()),
        _ => Err(err(
            "revision",
            "there is no earlier revision to roll back to",
        )),
    }
}

/// Which pool answers a request: `roll` is uniform in 0..100.
pub fn route(spec: &DeploymentSpec, roll: u8) -> Route {
    match &spec.canary {
        Some(c) if roll < c.weight => Route::Canary,
        _ => Route::Primary,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Primary,
    Canary,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn target(v: i64) -> ModelTarget {
        ModelTarget {
            reference: format!("m@{v}"),
            model: "m".into(),
            version: v,
        }
    }

    fn base() -> DeploymentSpec {
        apply(
            None,
            DeploymentChange {
                model: Some(target(1)),
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_new_deployment_needs_a_model_and_gets_defaults() {
        let e = apply(None, DeploymentChange::default()).unwrap_err();
        assert_eq!(e.field, "model");
        let s = base();
        assert_eq!(s.replicas, 1);
        assert_eq!(s.sample_rate, 1.0);
        assert_eq!(s.memory_bytes, DEFAULT_MEMORY_BYTES);
        assert!(s.canary.is_none());
    }

    #[test]
    fn canary_weight_and_promotion() {
        let s = apply(
            Some(&base()),
            DeploymentChange {
                canary: Some(target(2)),
                weight: Some(25),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.canary.as_ref().unwrap().weight, 25);
        assert_eq!(route(&s, 24), Route::Canary);
        assert_eq!(route(&s, 25), Route::Primary);
        let reweighed = apply(
            Some(&s),
            DeploymentChange {
                weight: Some(50),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(reweighed.canary.as_ref().unwrap().target.version, 2);
        let p = promote(&reweighed).unwrap();
        assert_eq!(p.model.version, 2);
        assert!(p.canary.is_none());
        assert_eq!(promote(&p).unwrap_err().field, "canary");
    }

    #[test]
    fn bad_changes_name_their_field() {
        let b = base();
        let cases: Vec<(DeploymentChange, &str)> = vec![
            (
                DeploymentChange {
                    weight: Some(10),
                    ..Default::default()
                },
                "weight",
            ),
            (
                DeploymentChange {
                    canary: Some(target(2)),
                    weight: Some(100),
                    ..Default::default()
                },
                "weight",
            ),
            (
                DeploymentChange {
                    canary: Some(target(1)),
                    ..Default::default()
                },
                "canary",
            ),
            (
                DeploymentChange {
                    replicas: Some(0),
                    ..Default::default()
                },
                "replicas",
            ),
            (
                DeploymentChange {
                    cpu: Some("lots".into()),
                    ..Default::default()
                },
                "cpu",
            ),
            (
                DeploymentChange {
                    memory: Some("1Mi".into()),
                    ..Default::default()
                },
                "memory",
            ),
            (
                DeploymentChange {
                    sample_rate: Some(1.5),
                    ..Default::default()
                },
                "sample_rate",
            ),
            (
                DeploymentChange {
                    webhook: Some("ftp://x".into()),
                    ..Default::default()
                },
                "webhook",
            ),
            (
                DeploymentChange {
                    window: Some("soon".into()),
                    ..Default::default()
                },
                "window",
            ),
        ];
        for (change, field) in cases {
            let e = apply(Some(&b), change.clone()).unwrap_err();
            assert_eq!(e.field, field, "{change:?}: {e}");
        }
    }

    #[test]
    fn rollback_undoes_changes_one_by_one() {
        let v1 = base();
        let change = |from: &DeploymentSpec, c: DeploymentChange| apply(Some(from), c).unwrap();
        let v2 = change(
            &v1,
            DeploymentChange {
                canary: Some(target(2)),
                ..Default::default()
            },
        );
        let v3 = promote(&v2).unwrap();
        let mut history = vec![
            ("create", v1.clone()),
            ("update", v2.clone()),
            ("promote", v3),
        ];
        let as_refs = |h: &[(&'static str, DeploymentSpec)]| {
            rollback(h.iter().map(|(a, s)| (*a, s)).collect::<Vec<_>>())
        };
        let back = as_refs(&history).unwrap();
        assert_eq!(back, v2, "first rollback undoes the promotion");
        history.push(("rollback", back));
        let back = as_refs(&history).unwrap();
        assert_eq!(back, v1, "the second undoes the canary");
        history.push(("rollback", back));
        assert_eq!(as_refs(&history).unwrap_err().field, "revision");
        // A new life after undeploy does not roll back into the old one.
        history.push(("undeploy", v1.clone()));
        history.push(("create", v1.clone()));
        assert_eq!(as_refs(&history).unwrap_err().field, "revision");
    }

    #[test]
    fn names_are_path_segments() {
        assert!(validate_name("churn-prod_2").is_ok());
        for bad in ["", "Churn", "a/b", "-x", "x y", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
