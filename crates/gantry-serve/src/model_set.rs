//! Loaded models by name and version, and the protocol logic shared by every flavor:
//! requested outputs, request ids, the rows form.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ServeError;
use crate::builtin::BuiltinPredictor;
use crate::oip::{InferenceRequest, InferenceResponse, ModelMetadata, ResponseOutput};
use crate::onnx::OnnxPredictor;
use crate::predictor::{Predictor, RowPrediction};
use crate::rows::Row;

/// How a model file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// A `gantry_ml` model directory (or its `model.json`).
    Builtin,
    /// A `.onnx` file (or a directory holding exactly one).
    Onnx,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Builtin => "builtin",
            Flavor::Onnx => "onnx",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavor {
    type Err = ServeError;

    fn from_str(s: &str) -> Result<Flavor, ServeError> {
        match s {
            "builtin" => Ok(Flavor::Builtin),
            "onnx" => Ok(Flavor::Onnx),
            other => Err(ServeError::Config(format!(
                "unknown model flavor \"{other}\"; use builtin or onnx"
            ))),
        }
    }
}

/// Loads a model of `flavor` (`builtin` or `onnx`) from `path` to serve as `name`/`version`.
pub fn load(
    flavor: &str,
    path: &Path,
    name: &str,
    version: &str,
) -> Result<LoadedModel, ServeError> {
    let predictor: Arc<dyn Predictor> = match flavor.parse::<Flavor>()? {
        Flavor::Builtin => Arc::new(BuiltinPredictor::load(path)?),
        Flavor::Onnx => Arc::new(OnnxPredictor::load(path)?),
    };
    LoadedModel::new(name, version, predictor)
}

/// A fresh request id: a UUID version 7 (RFC 9562) — 48 bits of Unix time in milliseconds,
/// then 74 random bits — so ids made one after another sort by time, and the prediction log,
/// keyed by request id, grows at its end instead of at random places in its index.
pub fn new_request_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        & ((1u128 << 48) - 1);
    let random = rand::random::<u128>();
    let rand_a = (random >> 64) & 0xfff;
    let rand_b = random & ((1u128 << 62) - 1);
    let bits = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `POST /v2/models/{name}[/versions/{version}]/predict`: raw rows in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub rows: Vec<Row>,
}

/// One prediction per row out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowsResponse {
    pub id: String,
    pub model_name: String,
    pub model_version: String,
    pub predictions: Vec<RowPrediction>,
}

/// A model ready to serve under a name and version.
pub struct LoadedModel {
    name: String,
    version: String,
    predictor: Arc<dyn Predictor>,
}

impl LoadedModel {
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        predictor: Arc<dyn Predictor>,
    ) -> Result<LoadedModel, ServeError> {
        let name = name.into();
        let version = version.into();
        // Both become URL path segments.
        for (what, text) in [("name", &name), ("version", &version)] {
            if text.is_empty() || text.contains('/') {
                return Err(ServeError::Config(format!(
                    "model {what} \"{text}\" cannot be served: it must be non-empty and without '/'"
                )));
            }
        }
        Ok(LoadedModel {
            name,
            version,
            predictor,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn predictor(&self) -> &Arc<dyn Predictor> {
        &self.predictor
    }

    /// Model metadata; `versions` lists every version served under this name.
    pub fn metadata(&self, versions: Vec<String>) -> ModelMetadata {
        let meta = self.predictor.metadata();
        ModelMetadata {
            name: self.name.clone(),
            versions,
            platform: meta.platform.clone(),
            inputs: meta.inputs.clone(),
            outputs: meta.outputs.clone(),
            parameters: meta.parameters.clone(),
        }
    }

    /// Runs a request: the requested outputs (all when none are named), in the requested
    /// order, under the request's id or a fresh one.
    pub fn infer(&self, request: &InferenceRequest) -> Result<InferenceResponse, ServeError> {
        let known = &self.predictor.metadata().outputs;
        for wanted in &request.outputs {
            if !known.iter().any(|o| o.name == wanted.name) {
                let names: Vec<&str> = known.iter().map(|o| o.name.as_str()).collect();
                return Err(ServeError::bad_request(format!(
                    "requested output \"{}\" is not an output of model \"{}\"; its outputs are {}",
                    wanted.name,
                    self.name,
                    names.join(", ")
                )));
            }
        }
        let computed = self.predictor.infer(request)?;
        let outputs = if request.outputs.is_empty() {
            computed
        } else {
            let mut slots: Vec<Option<ResponseOutput>> = computed.into_iter().map(Some).collect();
            request
                .outputs
                .iter()
                .filter_map(|wanted| {
                    slots
                        .iter_mut()
                        .find(|s| s.as_ref().is_some_and(|o| o.name == wanted.name))
                        .and_then(Option::take)
                })
                .collect()
        };
        Ok(InferenceResponse {
            model_name: self.name.clone(),
            model_version: Some(self.version.clone()),
            id: request_id(request.id.as_deref()),
            parameters: None,
            outputs,
        })
    }

    /// The rows form: raw rows in, one prediction per row out.
    pub fn predict(&self, request: &RowsRequest) -> Result<RowsResponse, ServeError> {
        let predictions = self.predictor.predict_rows(&request.rows)?;
        Ok(RowsResponse {
            id: request_id(request.id.as_deref()),
            model_name: self.name.clone(),
            model_version: self.version.clone(),
            predictions,
        })
    }
}

/// The client's id, or a fresh one: every answer carries an id (the prediction-log key).
pub(crate) fn request_id(sent: Option<&str>) -> String {
    match sent {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => new_request_id(),
    }
}

/// Versions compare as numbers when both are, else as text: `10` is above `9`.
fn compare_versions(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The models a server serves. Built before serving and never changed after, so lookups
/// take no lock.
#[derive(Default)]
pub struct ModelSet {
    models: Vec<Arc<LoadedModel>>,
    /// name → indexes into `models`, lowest version first (the last is the default).
    names: BTreeMap<String, Vec<usize>>,
}

impl ModelSet {
    pub fn new() -> ModelSet {
        ModelSet::default()
    }

    /// Adds a model; a name and version served twice is refused.
    pub fn insert(&mut self, model: LoadedModel) -> Result<(), ServeError> {
        if let Some(versions) = self.names.get(&model.name)
            && versions
                .iter()
                .any(|&i| self.models[i].version == model.version)
        {
            return Err(ServeError::Config(format!(
                "model \"{}\" version \"{}\" is given twice; give each model a distinct name or version",
                model.name, model.version
            )));
        }
        let index = self.models.len();
        let versions = self.names.entry(model.name.clone()).or_default();
        self.models.push(Arc::new(model));
        versions.push(index);
        let models = &self.models;
        versions.sort_by(|&a, &b| compare_versions(&models[a].version, &models[b].version));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.iter()
    }

    /// The index of `name` at `version`, or at its default (highest) version.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Result<usize, ServeError> {
        let Some(versions) = self.names.get(name) else {
            let names: Vec<&str> = self.names.keys().map(String::as_str).collect();
            return Err(ServeError::NotFound(format!(
                "model \"{name}\" is not served here; the served models are: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        match version {
            None => versions
                .last()
                .copied()
                .ok_or_else(|| ServeError::NotFound(format!("model \"{name}\" has no versions"))),
            Some(v) => versions
                .iter()
                .copied()
                .find(|&i| self.models[i].version == v)
                .ok_or_else(|| {
                    ServeError::NotFound(format!(
                        "model \"{name}\" has no version \"{v}\"; its versions are: {}",
                        self.versions(name).join(", ")
                    ))
                }),
        }
    }

    pub fn model(&self, index: usize) -> Option<&Arc<LoadedModel>> {
        self.models.get(index)
    }

    pub fn get(&self, name: &str, version: Option<&str>) -> Result<&Arc<LoadedModel>, ServeError> {
        let index = self.resolve(name, version)?;
        self.models
            .get(index)
            .ok_or_else(|| ServeError::internal(format!("model index {index} is out of range")))
    }

    /// The versions served under `name`, lowest first.
    pub fn versions(&self, name: &str) -> Vec<String> {
        self.names
            .get(name)
            .map(|v| v.iter().map(|&i| self.models[i].version.clone()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oip::{Datatype, TensorData, TensorMetadata};
    use crate::predictor::PredictorMetadata;

    #[test]
    fn request_ids_are_uuid_v7_and_sort_by_time() {
        let first = new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later: Vec<String> = (0..1000).map(|_| new_request_id()).collect();
        for id in std::iter::once(&first).chain(&later) {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(parts[2].starts_with('7'), "version 7: {id}");
            assert!(
                matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "variant: {id}"
            );
            assert!(*id >= first, "{id} sorts before {first}");
        }
        let millis = u64::from_str_radix(&first.replace('-', "")[..12], 16).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now - millis < 60_000, "the id carries the time");
        let distinct: std::collections::HashSet<&String> = later.iter().collect();
        assert_eq!(distinct.len(), later.len());
    }

    struct Constant(PredictorMetadata);

    impl Predictor for Constant {
        fn metadata(&self) -> &PredictorMetadata {
            &self.0
        }
        fn infer(&self, _: &InferenceRequest) -> Result<Vec<ResponseOutput>, ServeError> {
            Ok(self
                .0
                .outputs
                .iter()
                .map(|o| ResponseOutput {
                    name: o.name.clone(),
                    shape: vec![1],
                    datatype: Datatype::Int64,
                    parameters: None,
                    data: TensorData::Int(vec![1]),
                })
                .collect())
        }
    }

    fn model(name: &str, version: &str) -> LoadedModel {
        let output = |name: &str| TensorMetadata {
            name: name.into(),
            datatype: Datatype::Int64,
            shape: vec![-1],
            parameters: None,
        };
        let meta = PredictorMetadata {
            platform: "test".into(),
            inputs: vec![],
            outputs: vec![output("a"), output("b")],
            parameters: None,
        };
        LoadedModel::new(name, version, Arc::new(Constant(meta))).unwrap()
    }

    #[test]
    fn the_default_version_is_the_highest() {
        let mut set = ModelSet::new();
        for v in ["9", "10", "2"] {
            set.insert(model("m", v)).unwrap();
        }
        set.insert(model("other", "b")).unwrap();
        set.insert(model("other", "a")).unwrap();
        assert_eq!(set.get("m", None).unwrap().version(), "10");
        assert_eq!(set.get("other", None).unwrap().version(), "b");
        assert_eq!(set.versions("m"), ["2", "9", "10"]);
        assert_eq!(set.get("m", Some("9")).unwrap().version(), "9");
        let err = set.get("m", Some("3")).err().unwrap();
        assert_eq!(err.status(), 404);
        assert_eq!(
            err.to_string(),
            "model \"m\" has no version \"3\"; its versions are: 2, 9, 10"
        );
        let err = set.get("x", None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "model \"x\" is not served here; the served models are: m, other"
        );
        assert!(set.insert(model("m", "9")).is_err());
        assert!(
            LoadedModel::new("a/b", "1", set.get("m", None).unwrap().predictor().clone()).is_err()
        );
    }

    #[test]
    fn requested_outputs_filter_and_order_and_ids_are_fresh() {
        let m = model("m", "1");
        let request: InferenceRequest = serde_json::from_value(serde_json::json!({
            "inputs": [], "outputs": [{"name": "b"}, {"name": "a"}]
        }))
        .unwrap();
        let response = m.infer(&request).unwrap();
        let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(response.id.len(), 36);
        assert_eq!(&response.id[14..15], "7", "a UUID version 7");
        assert_ne!(response.id, m.infer(&request).unwrap().id);
        let unknown: InferenceRequest = serde_json::from_value(serde_json::json!({
            "id": "r1", "inputs": [], "outputs": [{"name": "c"}]
        }))
        .unwrap();
        assert_eq!(
            m.infer(&unknown).unwrap_err().to_string(),
            "requested output \"c\" is not an output of model \"m\"; its outputs are a, b"
        );
        assert_eq!(
            m.predict(&RowsRequest {
                id: None,
                rows: vec![]
            })
            .unwrap_err()
            .status(),
            400
        );
    }
}
