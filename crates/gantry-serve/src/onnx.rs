//! The ONNX flavor (`platform: "onnx"`), run by tract. The graph is optimised once at load
//! with a symbolic batch dimension, so one plan serves every batch size.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::ServeError;
use crate::oip::{
    Datatype, DecodedInput, InferenceRequest, ResponseOutput, TensorData, TensorMetadata,
    shape_text,
};
use crate::predictor::{Predictor, PredictorMetadata};

pub const PLATFORM: &str = "onnx";

const ZIPMAP_HINT: &str = "export with zipmap disabled (options={id(model): {'zipmap': False}})";

/// One graph input: its element type and its dimensions (`None`: set per request).
struct GraphInput {
    name: String,
    datum_type: DatumType,
    dims: Vec<Option<usize>>,
    /// The first dimension is the batch (symbolic in the graph).
    batched: bool,
}

pub struct OnnxPredictor {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<GraphInput>,
    output_names: Vec<String>,
    /// Graph outputs that carry class indexes standing for these string labels.
    string_labels: HashMap<String, Vec<String>>,
    metadata: PredictorMetadata,
}

/// A `.onnx` file, or the only `.onnx` file of a directory.
pub fn onnx_file(path: &Path) -> Result<PathBuf, ServeError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let entries = fs::read_dir(path).map_err(|e| ServeError::load(path, e.to_string()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ServeError::load(path, e.to_string()))?;
        let file = entry.path();
        if file.is_file() && file.extension().is_some_and(|x| x == "onnx") {
            found.push(file);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ServeError::load(
            path,
            "the directory has no .onnx file; pass the .onnx file or a directory holding exactly one",
        )),
        n => Err(ServeError::load(
            path,
            format!("the directory has {n} .onnx files; pass the one to serve"),
        )),
    }
}

fn datatype_of(dt: DatumType) -> Option<Datatype> {
    Some(match dt {
        DatumType::Bool => Datatype::Bool,
        DatumType::U8 => Datatype::Uint8,
        DatumType::U16 => Datatype::Uint16,
        DatumType::U32 => Datatype::Uint32,
        DatumType::U64 => Datatype::Uint64,
        DatumType::I8 => Datatype::Int8,
        DatumType::I16 => Datatype::Int16,
        DatumType::I32 => Datatype::Int32,
        DatumType::I64 => Datatype::Int64,
        DatumType::F16 => Datatype::Fp16,
        DatumType::F32 => Datatype::Fp32,
        DatumType::F64 => Datatype::Fp64,
        DatumType::String => Datatype::Bytes,
        _ => return None,
    })
}

impl OnnxPredictor {
    /// Loads and optimises a `.onnx` file (or the only one in a directory).
    pub fn load(path: &Path) -> Result<OnnxPredictor, ServeError> {
        let file = onnx_file(path)?;
        let fail = |reason: String| ServeError::load(&file, reason);
        let bytes = fs::read(&file).map_err(|e| fail(e.to_string()))?;
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| fail(format!("not an ONNX model: {e:#}")))?;
        let graph = proto
            .graph
            .as_mut()
            .ok_or_else(|| fail("the ONNX model has no graph".to_string()))?;
        check_tensor_outputs(graph).map_err(&fail)?;
        let string_labels = index_string_labels(graph).map_err(&fail)?;
        let inputs = graph_inputs(graph).map_err(&fail)?;
        let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();

        let dir = file.parent().and_then(Path::to_str);
        let parsed = onnx
            .parse(&proto, dir)
            .map_err(|e| fail(format!("cannot read the graph: {e:#}")))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(fail(format!(
                "the graph uses values it never defines: {}",
                parsed.unresolved_inputs.join(", ")
            )));
        }
        let mut model = parsed.model;
        let batch = model.symbols.sym("N");
        for (i, input) in inputs.iter().enumerate() {
            let shape: TVec<TDim> = input
                .dims
                .iter()
                .enumerate()
                .map(|(j, d)| match d {
                    Some(size) => size.to_dim(),
                    None if j == 0 => batch.to_dim(),
                    None => model.symbols.sym(&format!("{}_{j}", input.name)).to_dim(),
                })
                .collect();
            model
                .set_input_fact(i, InferenceFact::dt_shape(input.datum_type, shape))
                .map_err(|e| fail(format!("input \"{}\": {e:#}", input.name)))?;
        }
        let typed = model
            .into_optimized()
            .map_err(|e| fail(format!("tract cannot run this graph: {e:#}")))?;
        let mut outputs = Vec::with_capacity(output_names.len());
        for (i, name) in output_names.iter().enumerate() {
            let fact = typed
                .output_fact(i)
                .map_err(|e| fail(format!("output \"{name}\": {e:#}")))?;
            let datatype = if string_labels.contains_key(name) {
                Datatype::Bytes
            } else {
                datatype_of(fact.datum_type).ok_or_else(|| {
                    fail(format!(
                        "output \"{name}\" has element type {:?}, which the protocol cannot carry",
                        fact.datum_type
                    ))
                })?
            };
            outputs.push(TensorMetadata {
                name: name.clone(),
                datatype,
                shape: fact
                    .shape
                    .iter()
                    .map(|d| d.to_i64().unwrap_or(-1))
                    .collect(),
                parameters: None,
            });
        }
        let metadata_inputs = inputs
            .iter()
            .map(|input| {
                Ok(TensorMetadata {
                    name: input.name.clone(),
                    datatype: datatype_of(input.datum_type).ok_or_else(|| {
                        fail(format!(
                            "input \"{}\" has element type {:?}, which the protocol cannot carry",
                            input.name, input.datum_type
                        ))
                    })?,
                    shape: input
                        .dims
                        .iter()
                        .map(|d| d.map_or(-1, |size| size as i64))
                        .collect(),
                    parameters: None,
                })
            })
            .collect::<Result<Vec<_>, ServeError>>()?;
        let plan = typed
            .into_runnable()
            .map_err(|e| fail(format!("tract cannot plan this graph: {e:#}")))?;
        Ok(OnnxPredictor {
            plan,
            inputs,
            output_names,
            string_labels,
            metadata: PredictorMetadata {
                platform: PLATFORM.to_string(),
                inputs: metadata_inputs,
                outputs,
                parameters: None,
            },
        })
    }

    fn input_tensor(
        &self,
        input: &GraphInput,
        tensor: &DecodedInput,
    ) -> Result<Tensor, ServeError> {
        let name = tensor.name;
        let wants = datatype_of(input.datum_type).map_or("?", Datatype::as_str);
        let fits = tensor.shape.len() == input.dims.len()
            && tensor
                .shape
                .iter()
                .zip(&input.dims)
                .all(|(got, want)| want.is_none_or(|w| w == *got));
        if !fits {
            let model_shape: Vec<i64> = input
                .dims
                .iter()
                .map(|d| d.map_or(-1, |s| s as i64))
                .collect();
            return Err(ServeError::bad_request(format!(
                "input \"{name}\": shape {} does not fit the model's {} (-1: any size)",
                shape_text(&tensor.shape),
                shape_text(&model_shape)
            )));
        }
        let wrong_type = || {
            ServeError::bad_request(format!(
                "input \"{name}\": the model takes {wants}, got {}",
                tensor.datatype
            ))
        };
        let shape = tensor.shape.as_slice();
        let source = match (&tensor.data, input.datum_type) {
            (TensorData::Bytes(v), DatumType::String) => array_tensor(shape, v.clone()),
            (TensorData::Bytes(_), _) | (_, DatumType::String) => return Err(wrong_type()),
            (TensorData::Bool(v), _) => array_tensor(shape, v.clone()),
            (TensorData::Int(v), _) => array_tensor(shape, v.clone()),
            (TensorData::Uint(v), _) => array_tensor(shape, v.clone()),
            (TensorData::Fp64(v), dt) => {
                if dt.is_integer()
                    && let Some((i, x)) = v.iter().enumerate().find(|(_, x)| x.fract() != 0.0)
                {
                    return Err(ServeError::bad_request(format!(
                        "input \"{name}\": element {i} is {x}, but the model takes {wants} (integers)"
                    )));
                }
                array_tensor(shape, v.clone())
            }
            (TensorData::Fp32(v), _) => array_tensor(shape, v.clone()),
            (TensorData::Json(_), _) => {
                return Err(ServeError::internal(format!(
                    "input \"{name}\" reached the model undecoded"
                )));
            }
        }?;
        if source.datum_type() == input.datum_type {
            return Ok(source);
        }
        source
            .cast_to_dt(input.datum_type)
            .map(|t| t.into_owned())
            .map_err(|e| {
                ServeError::bad_request(format!(
                    "input \"{name}\": cannot convert {} to {wants}: {e:#}",
                    tensor.datatype
                ))
            })
    }
}

fn array_tensor<T: Datum>(shape: &[usize], data: Vec<T>) -> Result<Tensor, ServeError> {
    tract_ndarray::ArrayD::from_shape_vec(shape, data)
        .map(IntoTensor::into_tensor)
        .map_err(|e| ServeError::internal(format!("cannot shape a tensor: {e}")))
}

/// skl2onnx classifiers end in a ZipMap (a sequence of maps) unless told otherwise; tract
/// only runs tensors, so say how to export instead of failing deep in the graph.
fn check_tensor_outputs(graph: &pb::GraphProto) -> Result<(), String> {
    if let Some(node) = graph.node.iter().find(|n| n.op_type == "ZipMap") {
        let output = node.output.first().map_or("", String::as_str);
        return Err(format!(
            "output \"{output}\" comes from a ZipMap (a sequence of maps), which is not supported; {ZIPMAP_HINT}"
        ));
    }
    for output in &graph.output {
        // The tract protobuf only knows tensor types: a sequence or map type decodes empty.
        if output
            .r#type
            .as_ref()
            .and_then(|t| t.value.as_ref())
            .is_none()
        {
            return Err(format!(
                "output \"{}\" is not a tensor (a sequence or map?), which is not supported; {ZIPMAP_HINT}",
                output.name
            ));
        }
    }
    Ok(())
}

/// The ai.onnx.ml classifiers tract runs, with the attribute holding integer class labels.
const CLASSIFIERS: [(&str, &str); 2] = [
    ("LinearClassifier", "classlabels_ints"),
    ("TreeEnsembleClassifier", "classlabels_int64s"),
];

/// tract cannot build these classifiers with string class labels (it needs a zero string),
/// so they are given the labels' indexes instead, and the indexes are mapped back to the
/// strings after each run. Returns graph output name → labels.
fn index_string_labels(graph: &mut pb::GraphProto) -> Result<HashMap<String, Vec<String>>, String> {
    use pb::attribute_proto::AttributeType;
    const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;
    let mut relabelled: Vec<(String, Vec<String>)> = Vec::new();
    for node in &mut graph.node {
        let Some((_, ints_name)) = CLASSIFIERS.iter().find(|(op, _)| *op == node.op_type) else {
            continue;
        };
        let Some(attribute) = node
            .attribute
            .iter_mut()
            .find(|a| a.name == "classlabels_strings")
        else {
            continue;
        };
        let labels: Vec<String> = attribute
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        attribute.name = (*ints_name).to_string();
        attribute.r#type = AttributeType::Ints as i32;
        attribute.ints = (0..labels.len() as i64).collect();
        attribute.strings.clear();
        if let Some(label_output) = node.output.first() {
            relabelled.push((label_output.clone(), labels));
        }
    }
    let mut outputs = HashMap::new();
    for (label_output, labels) in relabelled {
        // Follow Identity nodes (skl2onnx adds some) to the value that leaves the graph.
        let mut chain = vec![label_output];
        while let Some(next) = chain.last().and_then(|name| {
            graph
                .node
                .iter()
                .find(|n| n.op_type == "Identity" && n.input.first() == Some(name))
                .and_then(|n| n.output.first().cloned())
        }) {
            if chain.contains(&next) {
                break;
            }
            chain.push(next);
        }
        let consumed_elsewhere = graph
            .node
            .iter()
            .any(|n| n.op_type != "Identity" && n.input.iter().any(|input| chain.contains(input)));
        let Some(output) = chain
            .iter()
            .find(|name| graph.output.iter().any(|o| &o.name == *name))
        else {
            continue;
        };
        if consumed_elsewhere {
            return Err(format!(
                "the string class labels of output \"{output}\" feed other nodes, which tract cannot run; \
                 train the classifier with integer labels"
            ));
        }
        // Declared types must follow, or tract would check indexes against strings.
        for info in graph.output.iter_mut().chain(graph.value_info.iter_mut()) {
            if chain.contains(&info.name)
                && let Some(pb::type_proto::Value::TensorType(tensor)) =
                    info.r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                tensor.elem_type = INT64;
            }
        }
        outputs.insert(output.clone(), labels);
    }
    Ok(outputs)
}

/// Class indexes back to their string labels.
fn label_strings(output: ResponseOutput, labels: &[String]) -> Result<ResponseOutput, ServeError> {
    let TensorData::Int(indexes) = &output.data else {
        return Err(ServeError::internal(format!(
            "output \"{}\" should hold class indexes",
            output.name
        )));
    };
    let strings = indexes
        .iter()
        .map(|i| {
            usize::try_from(*i)
                .ok()
                .and_then(|i| labels.get(i))
                .cloned()
                .ok_or_else(|| {
                    ServeError::internal(format!(
                        "output \"{}\": class index {i} is not one of the {} labels",
                        output.name,
                        labels.len()
                    ))
                })
        })
        .collect::<Result<Vec<String>, ServeError>>()?;
    Ok(ResponseOutput {
        datatype: Datatype::Bytes,
        data: TensorData::Bytes(strings),
        ..output
    })
}

fn graph_inputs(graph: &pb::GraphProto) -> Result<Vec<GraphInput>, String> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut inputs = Vec::new();
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
    {
        let Some(pb::type_proto::Value::TensorType(tensor)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(format!(
                "input \"{}\" is not a tensor, which is not supported",
                input.name
            ));
        };
        let datum_type = pb::tensor_proto::DataType::try_from(tensor.elem_type)
            .ok()
            .and_then(|dt| DatumType::try_from(dt).ok())
            .ok_or_else(|| {
                format!(
                    "input \"{}\" has ONNX element type {}, which is not supported",
                    input.name, tensor.elem_type
                )
            })?;
        let Some(shape) = &tensor.shape else {
            return Err(format!(
                "input \"{}\" has no shape; export the model with a known input rank",
                input.name
            ));
        };
        let dims: Vec<Option<usize>> = shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Dim::DimValue(v)) => usize::try_from(v).ok(),
                _ => None,
            })
            .collect();
        inputs.push(GraphInput {
            name: input.name.clone(),
            datum_type,
            batched: dims.first().is_some_and(Option::is_none),
            dims,
        });
    }
    Ok(inputs)
}

/// The elements in row-major order, whatever the tensor's memory layout.
fn elements<D: Datum + Clone>(tensor: &Tensor) -> TractResult<Vec<D>> {
    Ok(tensor.to_plain_array_view::<D>()?.iter().cloned().collect())
}

fn output_tensor(name: &str, tensor: &Tensor) -> Result<ResponseOutput, ServeError> {
    let fail = |e: TractError| ServeError::internal(format!("output \"{name}\": {e:#}"));
    let datatype = datatype_of(tensor.datum_type()).ok_or_else(|| {
        ServeError::internal(format!(
            "output \"{name}\" has element type {:?}, which the protocol cannot carry",
            tensor.datum_type()
        ))
    })?;
    let data = match datatype {
        Datatype::Bool => TensorData::Bool(elements(tensor).map_err(fail)?),
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 | Datatype::Int64 => TensorData::Int(
            elements(tensor.cast_to::<i64>().map_err(fail)?.as_ref()).map_err(fail)?,
        ),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 => {
            TensorData::Uint(
                elements(tensor.cast_to::<u64>().map_err(fail)?.as_ref()).map_err(fail)?,
            )
        }
        Datatype::Fp32 => TensorData::Fp32(elements(tensor).map_err(fail)?),
        Datatype::Fp16 | Datatype::Fp64 => TensorData::Fp64(
            elements(tensor.cast_to::<f64>().map_err(fail)?.as_ref()).map_err(fail)?,
        ),
        Datatype::Bytes => TensorData::Bytes(elements(tensor).map_err(fail)?),
    };
    Ok(ResponseOutput {
        name: name.to_string(),
        shape: tensor.shape().to_vec(),
        datatype,
        parameters: None,
        data,
    })
}

impl Predictor for OnnxPredictor {
    fn metadata(&self) -> &PredictorMetadata {
        &self.metadata
    }

    fn infer(&self, request: &InferenceRequest) -> Result<Vec<ResponseOutput>, ServeError> {
        for sent in &request.inputs {
            if !self.inputs.iter().any(|i| i.name == sent.name) {
                let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(ServeError::bad_request(format!(
                    "input \"{}\" is not an input of this model; its inputs are {}",
                    sent.name,
                    names.join(", ")
                )));
            }
        }
        let mut values: TVec<TValue> = TVec::with_capacity(self.inputs.len());
        let mut batch: Option<(usize, &str)> = None;
        for input in &self.inputs {
            let mut sent = request.inputs.iter().filter(|i| i.name == input.name);
            let (Some(sent), None) = (sent.next(), sent.next()) else {
                return Err(ServeError::bad_request(format!(
                    "input \"{}\" must be sent exactly once",
                    input.name
                )));
            };
            let decoded = sent.decode()?;
            if input.batched {
                let rows = decoded.rows();
                match batch {
                    Some((n, first)) if n != rows => {
                        return Err(ServeError::bad_request(format!(
                            "input \"{}\" has {rows} rows but input \"{first}\" has {n}; send the same number of rows in every input",
                            input.name
                        )));
                    }
                    Some(_) => {}
                    None => batch = Some((rows, &input.name)),
                }
            }
            values.push(self.input_tensor(input, &decoded)?.into_tvalue());
        }
        let results = self
            .plan
            .run(values)
            .map_err(|e| ServeError::internal(format!("the ONNX model failed: {e:#}")))?;
        self.output_names
            .iter()
            .zip(results.iter())
            .map(|(name, value)| {
                let output = output_tensor(name, value)?;
                match self.string_labels.get(name) {
                    Some(labels) => label_strings(output, labels),
                    None => Ok(output),
                }
            })
            .collect()
    }
}
