//! The KServe Open Inference Protocol v2 REST payloads, and the validation that turns a
//! request input into typed elements.
//!
//! Tensor `data` is read flat or nested (row-major) and always written flat.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ServeError;

/// `parameters`: free-form name → value pairs.
pub type Parameters = serde_json::Map<String, Value>;

/// The tensor element types of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Datatype {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "UINT16")]
    Uint16,
    #[serde(rename = "UINT32")]
    Uint32,
    #[serde(rename = "UINT64")]
    Uint64,
    #[serde(rename = "INT8")]
    Int8,
    #[serde(rename = "INT16")]
    Int16,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "FP16")]
    Fp16,
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    #[serde(rename = "BYTES")]
    Bytes,
}

impl Datatype {
    pub const ALL: [Datatype; 13] = [
        Datatype::Bool,
        Datatype::Uint8,
        Datatype::Uint16,
        Datatype::Uint32,
        Datatype::Uint64,
        Datatype::Int8,
        Datatype::Int16,
        Datatype::Int32,
        Datatype::Int64,
        Datatype::Fp16,
        Datatype::Fp32,
        Datatype::Fp64,
        Datatype::Bytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Uint16 => "UINT16",
            Datatype::Uint32 => "UINT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Int8 => "INT8",
            Datatype::Int16 => "INT16",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bytes => "BYTES",
        }
    }

    pub fn is_numeric(self) -> bool {
        !matches!(self, Datatype::Bool | Datatype::Bytes)
    }

    /// The largest value an unsigned type holds.
    fn uint_max(self) -> Option<u64> {
        match self {
            Datatype::Uint8 => Some(u8::MAX.into()),
            Datatype::Uint16 => Some(u16::MAX.into()),
            Datatype::Uint32 => Some(u32::MAX.into()),
            Datatype::Uint64 => Some(u64::MAX),
            _ => None,
        }
    }

    /// The range a signed type holds.
    fn int_range(self) -> Option<(i64, i64)> {
        match self {
            Datatype::Int8 => Some((i8::MIN.into(), i8::MAX.into())),
            Datatype::Int16 => Some((i16::MIN.into(), i16::MAX.into())),
            Datatype::Int32 => Some((i32::MIN.into(), i32::MAX.into())),
            Datatype::Int64 => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }

    /// The largest magnitude a float type holds (FP16 is computed as f64).
    pub(crate) fn float_max(self) -> Option<f64> {
        match self {
            Datatype::Fp16 => Some(65504.0),
            Datatype::Fp32 => Some(f64::from(f32::MAX)),
            Datatype::Fp64 => Some(f64::MAX),
            _ => None,
        }
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Datatype {
    type Err = ServeError;

    fn from_str(s: &str) -> Result<Datatype, ServeError> {
        Datatype::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                ServeError::bad_request(format!(
                    "unknown datatype \"{s}\"; use one of {}",
                    Datatype::ALL.map(Datatype::as_str).join(", ")
                ))
            })
    }
}

/// `GET /v2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// One input or output of a model, as model metadata lists it. `-1` is a variable dimension.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// `GET /v2/models/{name}[/versions/{version}]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    pub inputs: Vec<RequestInput>,
    /// The outputs to return, in this order; absent or empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<RequestOutput>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    /// Kept as text so that an unknown datatype is reported with the input's name.
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// Absent when the input's elements follow the JSON as binary data
    /// (`parameters.binary_data_size`, see [`crate::binary`]).
    #[serde(default = "TensorData::none")]
    pub data: TensorData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// The answer to an inference request. `id` is always set: the request's, or a fresh one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceResponse {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutput {
    pub name: String,
    pub shape: Vec<usize>,
    pub datatype: Datatype,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// Absent in the JSON of a binary output (see [`crate::binary`]).
    #[serde(default = "TensorData::none")]
    pub data: TensorData,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

/// One element of tensor data as JSON gave it, before a datatype is applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Uint(u) => write!(f, "{u}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => write!(f, "{}", Value::from(s.as_str())),
        }
    }
}

/// Tensor elements in row-major order. Deserializing gives [`TensorData::Json`] (any
/// nesting is flattened); [`RequestInput::decode`] gives a typed variant; serializing
/// writes a flat JSON array.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    /// INT8 … INT64.
    Int(Vec<i64>),
    /// UINT8 … UINT64.
    Uint(Vec<u64>),
    Fp32(Vec<f32>),
    /// FP64, and FP16/FP32 request data (kept exact, so `5.1` stays `5.1`).
    Fp64(Vec<f64>),
    Bytes(Vec<String>),
    /// As read from JSON, not yet typed.
    Json(Vec<Scalar>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::Int(v) => v.len(),
            TensorData::Uint(v) => v.len(),
            TensorData::Fp32(v) => v.len(),
            TensorData::Fp64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
            TensorData::Json(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No elements (yet): what an input without `data` starts as.
    pub fn none() -> TensorData {
        TensorData::Json(Vec::new())
    }

    /// Element `i` as a JSON value (`null` past the end).
    pub fn json(&self, i: usize) -> Value {
        let value = match self {
            TensorData::Bool(v) => v.get(i).map(|b| Value::Bool(*b)),
            TensorData::Int(v) => v.get(i).map(|x| Value::from(*x)),
            TensorData::Uint(v) => v.get(i).map(|x| Value::from(*x)),
            TensorData::Fp32(v) => v.get(i).map(|x| f32_json(*x)),
            TensorData::Fp64(v) => v.get(i).map(|x| Value::from(*x)),
            TensorData::Bytes(v) => v.get(i).map(|s| Value::from(s.as_str())),
            TensorData::Json(v) => v.get(i).map(scalar_json),
        };
        value.unwrap_or(Value::Null)
    }

    /// The elements as scalars: borrowed when already untyped.
    fn scalars(&self) -> Cow<'_, [Scalar]> {
        match self {
            TensorData::Json(v) => Cow::Borrowed(v),
            TensorData::Bool(v) => v.iter().map(|b| Scalar::Bool(*b)).collect(),
            TensorData::Int(v) => v.iter().map(|x| Scalar::Int(*x)).collect(),
            TensorData::Uint(v) => v.iter().map(|x| Scalar::Uint(*x)).collect(),
            TensorData::Fp32(v) => v.iter().map(|x| Scalar::Float(f64::from(*x))).collect(),
            TensorData::Fp64(v) => v.iter().map(|x| Scalar::Float(*x)).collect(),
            TensorData::Bytes(v) => v.iter().map(|s| Scalar::Str(s.clone())).collect(),
        }
    }
}

/// An f32 written with its own shortest form (`0.97`, not `0.9700000286102295`).
fn f32_json(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn scalar_json(s: &Scalar) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Int(x) => Value::from(*x),
        Scalar::Uint(x) => Value::from(*x),
        Scalar::Float(x) => Value::from(*x),
        Scalar::Str(s) => Value::from(s.as_str()),
    }
}

impl Serialize for TensorData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn all<S: Serializer, T: Serialize>(s: S, items: &[T]) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(item)?;
            }
            seq.end()
        }
        match self {
            TensorData::Bool(v) => all(serializer, v),
            TensorData::Int(v) => all(serializer, v),
            TensorData::Uint(v) => all(serializer, v),
            TensorData::Fp32(v) => all(serializer, v),
            TensorData::Fp64(v) => all(serializer, v),
            TensorData::Bytes(v) => all(serializer, v),
            TensorData::Json(v) => {
                let mut seq = serializer.serialize_seq(Some(v.len()))?;
                for s in v {
                    match s {
                        Scalar::Null => seq.serialize_element(&())?,
                        Scalar::Bool(b) => seq.serialize_element(b)?,
                        Scalar::Int(x) => seq.serialize_element(x)?,
                        Scalar::Uint(x) => seq.serialize_element(x)?,
                        Scalar::Float(x) => seq.serialize_element(x)?,
                        Scalar::Str(x) => seq.serialize_element(x)?,
                    }
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TensorData, D::Error> {
        let mut out = Vec::new();
        Flatten(&mut out).deserialize(deserializer)?;
        Ok(TensorData::Json(out))
    }
}

/// Appends every scalar of a (possibly nested) JSON array, without building a tree.
struct Flatten<'a>(&'a mut Vec<Scalar>);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array (flat or nested) of numbers, booleans or strings")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push(Scalar::Bool(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push(Scalar::Int(v));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push(Scalar::Uint(v));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push(Scalar::Float(v));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(Scalar::Str(v.to_owned()));
        Ok(())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.0.push(Scalar::Str(v));
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.push(Scalar::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(hint) = seq.size_hint() {
            self.0.reserve(hint);
        }
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// A request input checked against its shape and datatype.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedInput<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub datatype: Datatype,
    /// `Bool`, `Int`, `Uint`, `Fp64` (every float type) or `Bytes`.
    pub data: TensorData,
}

impl DecodedInput<'_> {
    /// The first dimension (the batch), 1 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
}

impl RequestInput {
    pub fn parsed_datatype(&self) -> Result<Datatype, ServeError> {
        self.datatype
            .parse()
            .map_err(|e| ServeError::bad_request(format!("input \"{}\": {e}", self.name)))
    }

    /// The shape as sizes; negative dimensions are refused (a request sends actual sizes).
    pub fn dims(&self) -> Result<Vec<usize>, ServeError> {
        self.shape
            .iter()
            .map(|d| usize::try_from(*d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                ServeError::bad_request(format!(
                    "input \"{}\": shape {} has a negative dimension; send the actual sizes",
                    self.name,
                    shape_text(&self.shape)
                ))
            })
    }

    /// Checks that the element count equals the product of `shape` and that every
    /// element fits `datatype`, and returns the typed elements.
    pub fn decode(&self) -> Result<DecodedInput<'_>, ServeError> {
        let datatype = self.parsed_datatype()?;
        let shape = self.dims()?;
        let needed = shape
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| {
                ServeError::bad_request(format!(
                    "input \"{}\": shape {} is too large",
                    self.name,
                    shape_text(&self.shape)
                ))
            })?;
        if needed != self.data.len() {
            return Err(ServeError::bad_request(format!(
                "input \"{}\": shape {} needs {needed} elements, got {}",
                self.name,
                shape_text(&self.shape),
                self.data.len()
            )));
        }
        let data = match (&self.data, datatype) {
            // Binary data arrives typed by its datatype already.
            (TensorData::Bool(_), Datatype::Bool)
            | (TensorData::Bytes(_), Datatype::Bytes)
            | (
                TensorData::Int(_),
                Datatype::Int8 | Datatype::Int16 | Datatype::Int32 | Datatype::Int64,
            )
            | (
                TensorData::Uint(_),
                Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64,
            )
            | (TensorData::Fp64(_), Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64) => {
                self.data.clone()
            }
            _ => type_elements(&self.name, datatype, &self.data.scalars())?,
        };
        Ok(DecodedInput {
            name: &self.name,
            shape,
            datatype,
            data,
        })
    }
}

/// `[2,4]`, as the protocol writes shapes.
pub(crate) fn shape_text<T: fmt::Display>(shape: &[T]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(","))
}

pub(crate) fn type_elements(
    name: &str,
    datatype: Datatype,
    scalars: &[Scalar],
) -> Result<TensorData, ServeError> {
    let wrong = |i: usize, s: &Scalar, what: &str| {
        ServeError::bad_request(format!(
            "input \"{name}\": element {i} is {s}, which is not {what}"
        ))
    };
    match datatype {
        Datatype::Bool => scalars
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Scalar::Bool(b) => Ok(*b),
                _ => Err(wrong(i, s, "a BOOL (true or false)")),
            })
            .collect::<Result<_, _>>()
            .map(TensorData::Bool),
        Datatype::Bytes => scalars
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Scalar::Str(text) => Ok(text.clone()),
                _ => Err(wrong(i, s, "a BYTES value (a JSON string)")),
            })
            .collect::<Result<_, _>>()
            .map(TensorData::Bytes),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 => {
            let max = datatype.uint_max().unwrap_or(u64::MAX);
            let what = format!("a {datatype} (an integer from 0 to {max})");
            scalars
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let value = match s {
                        Scalar::Uint(u) => Some(*u),
                        Scalar::Int(x) => u64::try_from(*x).ok(),
                        _ => None,
                    };
                    value
                        .filter(|v| *v <= max)
                        .ok_or_else(|| wrong(i, s, &what))
                })
                .collect::<Result<_, _>>()
                .map(TensorData::Uint)
        }
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 | Datatype::Int64 => {
            let (min, max) = datatype.int_range().unwrap_or((i64::MIN, i64::MAX));
            let what = format!("an {datatype} (an integer from {min} to {max})");
            scalars
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let value = match s {
                        Scalar::Int(x) => Some(*x),
                        Scalar::Uint(u) => i64::try_from(*u).ok(),
                        _ => None,
                    };
                    value
                        .filter(|v| (min..=max).contains(v))
                        .ok_or_else(|| wrong(i, s, &what))
                })
                .collect::<Result<_, _>>()
                .map(TensorData::Int)
        }
        Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64 => {
            let max = datatype.float_max().unwrap_or(f64::MAX);
            let what = format!("an {datatype} number");
            scalars
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let value = match s {
                        Scalar::Float(x) => Some(*x),
                        Scalar::Int(x) => Some(*x as f64),
                        Scalar::Uint(x) => Some(*x as f64),
                        _ => None,
                    };
                    value
                        .filter(|v| v.abs() <= max)
                        .ok_or_else(|| wrong(i, s, &what))
                })
                .collect::<Result<_, _>>()
                .map(TensorData::Fp64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> RequestInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn nested_and_flat_data_decode_alike() {
        let flat = input(
            json!({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2.5, 3, 4]}),
        );
        let nested = input(
            json!({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [3, 4]]}),
        );
        let a = flat.decode().unwrap();
        assert_eq!(a, nested.decode().unwrap());
        assert_eq!(a.data, TensorData::Fp64(vec![1.0, 2.5, 3.0, 4.0]));
        assert_eq!(a.rows(), 2);
    }

    #[test]
    fn errors_name_the_input_and_the_problem() {
        let err = |v: Value| input(v).decode().unwrap_err().to_string();
        assert_eq!(
            err(
                json!({"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6, 7]})
            ),
            "input \"x\": shape [2,4] needs 8 elements, got 7"
        );
        assert_eq!(
            err(json!({"name": "b", "shape": [2], "datatype": "UINT8", "data": [1, 300]})),
            "input \"b\": element 1 is 300, which is not a UINT8 (an integer from 0 to 255)"
        );
        assert_eq!(
            err(json!({"name": "i", "shape": [1], "datatype": "INT32", "data": [1.5]})),
            "input \"i\": element 0 is 1.5, which is not an INT32 (an integer from -2147483648 to 2147483647)"
        );
        assert_eq!(
            err(json!({"name": "s", "shape": [1], "datatype": "BYTES", "data": [1]})),
            "input \"s\": element 0 is 1, which is not a BYTES value (a JSON string)"
        );
        assert_eq!(
            err(json!({"name": "f", "shape": [1], "datatype": "FP64", "data": ["a"]})),
            "input \"f\": element 0 is \"a\", which is not an FP64 number"
        );
        assert_eq!(
            err(json!({"name": "h", "shape": [1], "datatype": "FP16", "data": [70000]})),
            "input \"h\": element 0 is 70000, which is not an FP16 number"
        );
        assert!(
            err(json!({"name": "q", "shape": [1], "datatype": "FLOAT", "data": [1]}))
                .starts_with("input \"q\": unknown datatype \"FLOAT\"; use one of BOOL, UINT8,")
        );
        assert_eq!(
            err(json!({"name": "n", "shape": [-1, 2], "datatype": "FP64", "data": [1, 2]})),
            "input \"n\": shape [-1,2] has a negative dimension; send the actual sizes"
        );
        assert_eq!(
            err(json!({"name": "z", "shape": [2], "datatype": "BOOL", "data": [true, null]})),
            "input \"z\": element 1 is null, which is not a BOOL (true or false)"
        );
    }

    #[test]
    fn typed_data_round_trips_flat() {
        let out = ResponseOutput {
            name: "p".into(),
            shape: vec![1, 2],
            datatype: Datatype::Fp32,
            parameters: None,
            data: TensorData::Fp32(vec![0.97, 0.03]),
        };
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(
            text,
            r#"{"name":"p","shape":[1,2],"datatype":"FP32","data":[0.97,0.03]}"#
        );
        let back: ResponseOutput = serde_json::from_str(&text).unwrap();
        assert_eq!(back.data.json(0), json!(0.97));
        assert_eq!(TensorData::Fp32(vec![0.97]).json(0), json!(0.97));
        let int64 = TensorData::Int(vec![i64::MIN]);
        assert_eq!(serde_json::to_value(&int64).unwrap(), json!([i64::MIN]));
        assert!("BOOL".parse::<Datatype>().is_ok());
        for d in Datatype::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), json!(d.as_str()));
        }
    }

    #[test]
    fn maps_in_data_are_refused() {
        let err = serde_json::from_value::<RequestInput>(
            json!({"name": "x", "shape": [1], "datatype": "FP32", "data": [{"a": 1}]}),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("an array (flat or nested)"),
            "{err}"
        );
    }
}
