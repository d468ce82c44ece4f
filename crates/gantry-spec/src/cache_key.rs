//! The content address of a step execution: equal keys mean the outputs can be reused.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::params::ParamValue;

/// Bump when the material or its encoding changes, so old cache entries stop matching.
const CACHE_KEY_VERSION: u64 = 1;

/// Everything that determines a step's outputs.
#[derive(Clone, Copy, Debug)]
pub struct CacheKeyMaterial<'a> {
    pub image_digest: &'a str,
    pub command: &'a [String],
    /// Secret values must already be left out by the caller (names stay in).
    pub env: &'a BTreeMap<String, String>,
    pub params: &'a BTreeMap<String, ParamValue>,
    /// Input name -> artifact digest.
    pub inputs: &'a BTreeMap<String, String>,
    pub outputs: &'a [String],
    pub component_version: Option<&'a str>,
    pub resources_network: bool,
}

/// `sha256:<hex>` of the canonical JSON (sorted keys, no whitespace) of the material.
pub fn cache_key(m: &CacheKeyMaterial) -> String {
    let mut outputs: Vec<&str> = m.outputs.iter().map(String::as_str).collect();
    // Declaring outputs in another order produces the same artifacts.
    outputs.sort_unstable();
    let material = json!({
        "v": CACHE_KEY_VERSION,
        "image_digest": m.image_digest,
        "command": m.command,
        "env": m.env,
        "params": m.params,
        "inputs": m.inputs,
        "outputs": outputs,
        "component_version": m.component_version,
        "network": m.resources_network,
    });
    let canonical = canonicalize(material).to_string();
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

/// Rebuilds objects with sorted keys: serde_json keeps insertion order in this
/// workspace (`preserve_order`), and the key must not depend on it.
fn canonicalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonicalize(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        image_digest: String,
        command: Vec<String>,
        env: BTreeMap<String, String>,
        params: BTreeMap<String, ParamValue>,
        inputs: BTreeMap<String, String>,
        outputs: Vec<String>,
        component_version: Option<String>,
        network: bool,
    }

    impl Owned {
        fn key(&self) -> String {
            cache_key(&CacheKeyMaterial {
                image_digest: &self.image_digest,
                command: &self.command,
                env: &self.env,
                params: &self.params,
                inputs: &self.inputs,
                outputs: &self.outputs,
                component_version: self.component_version.as_deref(),
                resources_network: self.network,
            })
        }
    }

    fn base() -> Owned {
        Owned {
            image_digest: "sha256:aaaa".into(),
            command: vec!["python".into(), "train.py".into()],
            env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
            params: BTreeMap::from([
                ("depth".into(), ParamValue::Int(4)),
                ("frac".into(), ParamValue::Float(0.2)),
            ]),
            inputs: BTreeMap::from([("train".into(), "sha256:bbbb".into())]),
            outputs: vec!["model".into(), "report".into()],
            component_version: None,
            network: false,
        }
    }

    #[test]
    fn same_material_gives_the_same_key() {
        let k = base().key();
        assert_eq!(k, base().key());
        assert!(k.starts_with("sha256:"));
        assert_eq!(k.len(), "sha256:".len() + 64);
    }

    #[test]
    fn the_key_is_pinned_to_its_canonical_encoding() {
        // Guards against silent changes to the encoding, which would invalidate every cache.
        let canonical = r#"{"command":["python","train.py"],"component_version":null,"env":{"A":"1","B":"2"},"image_digest":"sha256:aaaa","inputs":{"train":"sha256:bbbb"},"network":false,"outputs":["model","report"],"params":{"depth":4,"frac":0.2},"v":1}"#;
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(base().key(), expected);
    }

    #[test]
    fn any_field_change_gives_another_key() {
        let k = base().key();
        let changes: Vec<fn(&mut Owned)> = vec![
            |m| m.image_digest = "sha256:cccc".into(),
            |m| m.command.push("--fast".into()),
            |m| m.command.reverse(),
            |m| {
                m.env.insert("A".into(), "9".into());
            },
            |m| {
                m.env.insert("C".into(), String::new());
            },
            |m| {
                m.params.insert("depth".into(), ParamValue::Int(5));
            },
            // An int and a float with the same value are different params.
            |m| {
                m.params.insert("depth".into(), ParamValue::Float(4.0));
            },
            |m| {
                m.params
                    .insert("depth".into(), ParamValue::String("4".into()));
            },
            |m| {
                m.inputs.insert("train".into(), "sha256:dddd".into());
            },
            |m| m.outputs.push("extra".into()),
            |m| m.component_version = Some("1.0.0".into()),
            |m| m.network = true,
        ];
        let mut seen = std::collections::HashSet::from([k.clone()]);
        for change in changes {
            let mut m = base();
            change(&mut m);
            let changed = m.key();
            assert_ne!(changed, k);
            assert!(seen.insert(changed), "two different changes collided");
        }
    }

    #[test]
    fn map_and_output_order_do_not_matter() {
        let mut a = base();
        a.env = [("B", "2"), ("A", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        a.outputs.reverse();
        assert_eq!(a.key(), base().key());
    }

    #[test]
    fn canonical_json_sorts_nested_objects() {
        let v = json!({"b": {"y": 1, "x": [{"d": 1, "c": 2}]}, "a": null});
        assert_eq!(
            canonicalize(v).to_string(),
            r#"{"a":null,"b":{"x":[{"c":2,"d":1}],"y":1}}"#
        );
    }
}
