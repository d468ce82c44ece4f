//! The binary tensor data extension of the Open Inference Protocol's REST API (what
//! `tritonclient.http` sends by default): the body is a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw tensors, one per input whose
//! `parameters.binary_data_size` gives its length, in input order. Numbers are little-endian in
//! row-major order, BOOL one byte each, BYTES each a 4-byte little-endian length and the bytes.
//! Outputs come back the same way when the request asks (`binary_data: true` on a requested
//! output, or `binary_data_output: true` on the request).

use serde::Serialize;
use serde_json::Value;

use crate::ServeError;
use crate::oip::{
    Datatype, InferenceRequest, InferenceResponse, Parameters, ResponseOutput, TensorData,
    type_elements,
};

/// The header naming the JSON part's length, in requests and answers.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

fn bad(message: String) -> ServeError {
    ServeError::bad_request(message)
}

/// The request's JSON header length from the header's text, if the header was sent.
pub fn header_length(value: Option<&[u8]>) -> Result<Option<usize>, ServeError> {
    let Some(value) = value else {
        return Ok(None);
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            bad(format!(
                "Inference-Header-Content-Length {:?} is not a byte count",
                String::from_utf8_lossy(value)
            ))
        })
}

/// Parses an inference request body: plain JSON without `header_length`, else the JSON
/// header and the binary tensors after it (decoded into typed data).
pub fn parse_request(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<InferenceRequest, ServeError> {
    let (json, mut rest) = split(body, header_length)?;
    // The usual JSON request is read directly (its float tensors without a value per
    // number); anything else, and every error, the general way.
    let mut request = match crate::json_request::read(json) {
        Some(request) => request,
        None => serde_json::from_slice(json).map_err(|e| {
            bad(format!(
                "invalid request body: {e}; send an inference request like {{\"inputs\": [{{\"name\": \"x\", \"shape\": [1, 4], \"datatype\": \"FP64\", \"data\": [[5.1, 3.5, 1.4, 0.2]]}}]}}"
            ))
        })?,
    };
    for input in &mut request.inputs {
        let Some(size) = binary_size(input.parameters.as_ref(), &input.name, "input")? else {
            continue;
        };
        if size > rest.len() {
            return Err(bad(format!(
                "input \"{}\": binary_data_size is {size} bytes but only {} bytes of binary data remain",
                input.name,
                rest.len()
            )));
        }
        let (bytes, after) = rest.split_at(size);
        rest = after;
        let datatype: Datatype = input.parsed_datatype()?;
        input.data = decode(&input.name, datatype, bytes)?;
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data follow the inputs' binary_data_size; the sizes must add up to the body after the header",
            rest.len()
        )));
    }
    Ok(request)
}

/// Parses an inference answer that may carry binary outputs (the proxy reads a replica's).
pub fn parse_response(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<InferenceResponse, ServeError> {
    let (json, mut rest) = split(body, header_length)?;
    let mut response: InferenceResponse = serde_json::from_slice(json)
        .map_err(|e| bad(format!("invalid inference response: {e}")))?;
    for output in &mut response.outputs {
        let Some(size) = binary_size(output.parameters.as_ref(), &output.name, "output")? else {
            continue;
        };
        if size > rest.len() {
            return Err(bad(format!(
                "output \"{}\": binary_data_size {size} exceeds the {} bytes left",
                output.name,
                rest.len()
            )));
        }
        let (bytes, after) = rest.split_at(size);
        rest = after;
        output.data = decode(&output.name, output.datatype, bytes)?;
    }
    Ok(response)
}

fn split(body: &[u8], header_length: Option<usize>) -> Result<(&[u8], &[u8]), ServeError> {
    match header_length {
        None => Ok((body, &[])),
        Some(n) if n <= body.len() => Ok(body.split_at(n)),
        Some(n) => Err(bad(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ))),
    }
}

fn binary_size(
    parameters: Option<&Parameters>,
    name: &str,
    what: &str,
) -> Result<Option<usize>, ServeError> {
    match parameters.and_then(|p| p.get("binary_data_size")) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                bad(format!(
                    "{what} \"{name}\": binary_data_size must be a byte count, got {v}"
                ))
            }),
    }
}

fn element_size(datatype: Datatype) -> Option<usize> {
    match datatype {
        Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => Some(1),
        Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 => Some(2),
        Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => Some(4),
        Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => Some(8),
        Datatype::Bytes => None,
    }
}

/// Raw little-endian elements → typed data, as [`RequestInput::decode`](crate::oip::RequestInput::decode)
/// expects it (every float type as `Fp64`).
pub fn decode(name: &str, datatype: Datatype, bytes: &[u8]) -> Result<TensorData, ServeError> {
    let Some(size) = element_size(datatype) else {
        return decode_bytes(name, bytes).map(TensorData::Bytes);
    };
    if !bytes.len().is_multiple_of(size) {
        return Err(bad(format!(
            "\"{name}\": {} bytes of binary data is not a whole number of {datatype} elements ({size} bytes each)",
            bytes.len()
        )));
    }
    let chunks = bytes.chunks_exact(size);
    let arr = |c: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..c.len()].copy_from_slice(c);
        a
    };
    Ok(match datatype {
        Datatype::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 => {
            TensorData::Uint(chunks.map(|c| u64::from_le_bytes(arr(c))).collect())
        }
        Datatype::Int8 => TensorData::Int(bytes.iter().map(|b| i64::from(*b as i8)).collect()),
        Datatype::Int16 => TensorData::Int(
            chunks
                .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        Datatype::Int32 => TensorData::Int(
            chunks
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Datatype::Int64 => TensorData::Int(chunks.map(|c| i64::from_le_bytes(arr(c))).collect()),
        Datatype::Fp16 => TensorData::Fp64(
            chunks
                .map(|c| f64::from(f16_to_f32(u16::from_le_bytes([c[0], c[1]]))))
                .collect(),
        ),
        Datatype::Fp32 => TensorData::Fp64(
            chunks
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Datatype::Fp64 => TensorData::Fp64(chunks.map(|c| f64::from_le_bytes(arr(c))).collect()),
        Datatype::Bytes => unreachable!("handled above"),
    })
}

fn decode_bytes(name: &str, mut bytes: &[u8]) -> Result<Vec<String>, ServeError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let i = out.len();
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(bad(format!(
                "\"{name}\": BYTES element {i} has a truncated 4-byte length"
            )));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(bad(format!(
                "\"{name}\": BYTES element {i} says {len} bytes but {} remain",
                rest.len()
            )));
        }
        let (value, after) = rest.split_at(len);
        let text = std::str::from_utf8(value).map_err(|_| {
            bad(format!(
                "\"{name}\": BYTES element {i} is not UTF-8 text; this server handles text BYTES only"
            ))
        })?;
        out.push(text.to_owned());
        bytes = after;
    }
    Ok(out)
}

/// IEEE half → single precision (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac × 2^-24.
            return (if sign != 0 { -1.0 } else { 1.0 }) * frac as f32 * 2f32.powi(-24);
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Single → half precision, rounding to nearest even.
fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if frac != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = frac | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let rounded = frac + 0xfff + ((frac >> 13) & 1);
    if rounded & 0x80_0000 != 0 {
        // The fraction overflowed into the exponent.
        let e = e + 1;
        if e >= 0x1f {
            return sign | 0x7c00;
        }
        return sign | ((e as u16) << 10);
    }
    sign | ((e as u16) << 10) | ((rounded >> 13) as u16)
}

/// `request` as a binary request body (every input's data binary, every output asked for as
/// binary) and its JSON header's length: what the server's gRPC front sends to a replica.
/// The tensors are written once, straight from the request's data (nothing is cloned).
pub fn encode_request(request: &InferenceRequest) -> Result<(Vec<u8>, usize), ServeError> {
    encode_request_with(request, true)
}

/// `request` with its inputs' data binary and everything else as it came (the outputs in
/// the form the request asked for): what the server's proxy sends a built-in replica for a
/// JSON request it has parsed already, so the replica reads the tensors without parsing
/// their numbers again.
pub fn encode_request_inputs(request: &InferenceRequest) -> Result<(Vec<u8>, usize), ServeError> {
    encode_request_with(request, false)
}

fn encode_request_with(
    request: &InferenceRequest,
    binary_outputs: bool,
) -> Result<(Vec<u8>, usize), ServeError> {
    let with = |p: &Option<Parameters>, key: &str, value: Value| {
        let mut p = p.clone().unwrap_or_default();
        p.insert(key.into(), value);
        p
    };
    let mut tensors = Vec::new();
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        let datatype = input.parsed_datatype()?;
        let start = tensors.len();
        encode_tensor(&input.name, datatype, &input.data, &mut tensors)
            .map_err(|e| bad(format!("input {e}")))?;
        inputs.push(HeaderInput {
            name: &input.name,
            shape: &input.shape,
            datatype: &input.datatype,
            parameters: with(
                &input.parameters,
                "binary_data_size",
                (tensors.len() - start).into(),
            ),
        });
    }
    let outputs: Vec<HeaderRequestOutput> = request
        .outputs
        .iter()
        .map(|o| HeaderRequestOutput {
            name: &o.name,
            parameters: if binary_outputs {
                with(&o.parameters, "binary_data", true.into())
            } else {
                o.parameters.clone().unwrap_or_default()
            },
        })
        .collect();
    let header = HeaderRequest {
        id: &request.id,
        parameters: if binary_outputs {
            with(&request.parameters, "binary_data_output", true.into())
        } else {
            request.parameters.clone().unwrap_or_default()
        },
        inputs,
        outputs,
    };
    let mut body = serde_json::to_vec(&header).map_err(|e| ServeError::internal(e.to_string()))?;
    let length = body.len();
    body.extend_from_slice(&tensors);
    Ok((body, length))
}

/// The JSON part of a binary request: inputs without `data`.
#[derive(Serialize)]
struct HeaderRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: &'a Option<String>,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: Parameters,
    inputs: Vec<HeaderInput<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<HeaderRequestOutput<'a>>,
}

#[derive(Serialize)]
struct HeaderInput<'a> {
    name: &'a str,
    shape: &'a [i64],
    datatype: &'a str,
    parameters: Parameters,
}

#[derive(Serialize)]
struct HeaderRequestOutput<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: Parameters,
}

/// Whether `output` is to be sent as binary data for `request`.
pub fn wants_binary(request: &InferenceRequest, output: &str) -> bool {
    let flag =
        |p: Option<&Parameters>, key: &str| p.and_then(|p| p.get(key)).and_then(Value::as_bool);
    let default = flag(request.parameters.as_ref(), "binary_data_output").unwrap_or(false);
    request
        .outputs
        .iter()
        .find(|o| o.name == output)
        .and_then(|o| flag(o.parameters.as_ref(), "binary_data"))
        .unwrap_or(default)
}

/// Appends `output`'s elements in the binary layout of its datatype.
pub fn encode(output: &ResponseOutput, buf: &mut Vec<u8>) -> Result<(), ServeError> {
    encode_tensor(&output.name, output.datatype, &output.data, buf)
        .map_err(|e| ServeError::internal(format!("output {e}")))
}

/// Appends a tensor's elements in the binary layout of `datatype`; the error names the
/// tensor but not whether it is an input or an output.
fn encode_tensor(
    name: &str,
    datatype: Datatype,
    data: &TensorData,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    let typed;
    let data = match data {
        TensorData::Json(scalars) => {
            typed = type_elements(name, datatype, scalars).map_err(|e| e.to_string())?;
            &typed
        }
        data => data,
    };
    let mismatch = || format!("\"{name}\": its data does not match its datatype {datatype}");
    let out_of_range =
        |v: &dyn std::fmt::Display| format!("\"{name}\": {v} does not fit {datatype}");
    match (datatype, data) {
        (Datatype::Bool, TensorData::Bool(v)) => buf.extend(v.iter().map(|b| u8::from(*b))),
        (Datatype::Bytes, TensorData::Bytes(v)) => {
            for s in v {
                let len = u32::try_from(s.len()).map_err(|_| out_of_range(&s.len()))?;
                buf.extend_from_slice(&len.to_le_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        }
        (
            Datatype::Int8 | Datatype::Int16 | Datatype::Int32 | Datatype::Int64,
            TensorData::Int(v),
        ) => {
            let size = element_size(datatype).unwrap_or(8);
            let (min, max) = match size {
                1 => (i64::from(i8::MIN), i64::from(i8::MAX)),
                2 => (i64::from(i16::MIN), i64::from(i16::MAX)),
                4 => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            for x in v {
                if !(min..=max).contains(x) {
                    return Err(out_of_range(x));
                }
                buf.extend_from_slice(&x.to_le_bytes()[..size]);
            }
        }
        (
            Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64,
            TensorData::Uint(v),
        ) => {
            let size = element_size(datatype).unwrap_or(8);
            let max = if size == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * size)) - 1
            };
            for x in v {
                if *x > max {
                    return Err(out_of_range(x));
                }
                buf.extend_from_slice(&x.to_le_bytes()[..size]);
            }
        }
        (Datatype::Fp64, TensorData::Fp64(v)) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        (Datatype::Fp64, TensorData::Fp32(v)) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&f64::from(*x).to_le_bytes())),
        (Datatype::Fp32, TensorData::Fp32(v)) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        (Datatype::Fp32, TensorData::Fp64(v)) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&(*x as f32).to_le_bytes())),
        (Datatype::Fp16, TensorData::Fp32(v)) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&f32_to_f16(*x).to_le_bytes())),
        (Datatype::Fp16, TensorData::Fp64(v)) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&f32_to_f16(*x as f32).to_le_bytes())),
        _ => return Err(mismatch()),
    }
    Ok(())
}

#[derive(Serialize)]
struct Header<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: &'a Option<String>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: &'a Option<Parameters>,
    outputs: Vec<HeaderOutput<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum HeaderOutput<'a> {
    Json(&'a ResponseOutput),
    Binary {
        name: &'a str,
        shape: &'a [usize],
        datatype: Datatype,
        parameters: Parameters,
    },
}

/// An answer body and, when any output is binary, its JSON header's length.
pub struct Encoded {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Writes `response` as JSON, or as a JSON header and binary outputs where `binary(name)`.
pub fn encode_response(
    response: &InferenceResponse,
    binary: impl Fn(&str) -> bool,
) -> Result<Encoded, ServeError> {
    let any_binary = response.outputs.iter().any(|o| binary(&o.name));
    if !any_binary {
        let body = serde_json::to_vec(response).map_err(|e| ServeError::internal(e.to_string()))?;
        return Ok(Encoded {
            body,
            header_length: None,
        });
    }
    let mut tensors = Vec::new();
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for output in &response.outputs {
        if !binary(&output.name) {
            outputs.push(HeaderOutput::Json(output));
            continue;
        }
        let start = tensors.len();
        encode(output, &mut tensors)?;
        let mut parameters = output.parameters.clone().unwrap_or_default();
        parameters.insert("binary_data_size".into(), (tensors.len() - start).into());
        outputs.push(HeaderOutput::Binary {
            name: &output.name,
            shape: &output.shape,
            datatype: output.datatype,
            parameters,
        });
    }
    let header = Header {
        model_name: &response.model_name,
        model_version: &response.model_version,
        id: &response.id,
        parameters: &response.parameters,
        outputs,
    };
    let mut body = serde_json::to_vec(&header).map_err(|e| ServeError::internal(e.to_string()))?;
    let header_length = body.len();
    body.extend_from_slice(&tensors);
    Ok(Encoded {
        body,
        header_length: Some(header_length),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(header: Value, tensors: &[&[u8]]) -> (Vec<u8>, usize) {
        let mut body = serde_json::to_vec(&header).unwrap();
        let n = body.len();
        for t in tensors {
            body.extend_from_slice(t);
        }
        (body, n)
    }

    #[test]
    fn binary_inputs_decode_like_json_ones() {
        let floats: Vec<u8> = [5.1f32, 3.5, 1.4, 0.2]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let ints: Vec<u8> = [-3i32, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut text = Vec::new();
        for s in ["setosa", "ü"] {
            text.extend_from_slice(&(s.len() as u32).to_le_bytes());
            text.extend_from_slice(s.as_bytes());
        }
        let (body, n) = body(
            json!({"inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
                {"name": "j", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                {"name": "i", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
                {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": text.len()}},
                {"name": "b", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}}
            ]}),
            &[&floats, &ints, &text, &[1, 0, 1]],
        );
        let request = parse_request(&body, Some(n)).unwrap();
        let decoded: Vec<_> = request.inputs.iter().map(|i| i.decode().unwrap()).collect();
        assert_eq!(
            decoded[0].data,
            TensorData::Fp64(
                [5.1f32, 3.5, 1.4, 0.2]
                    .iter()
                    .map(|x| f64::from(*x))
                    .collect()
            )
        );
        assert_eq!(decoded[1].data, TensorData::Int(vec![1, 2]));
        assert_eq!(decoded[2].data, TensorData::Int(vec![-3, 7]));
        assert_eq!(
            decoded[3].data,
            TensorData::Bytes(vec!["setosa".into(), "ü".into()])
        );
        assert_eq!(decoded[4].data, TensorData::Bool(vec![true, false, true]));
        // Without the header the same JSON parses too, and binary-less requests are plain JSON.
        let plain =
            br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.5]}]}"#;
        assert_eq!(
            parse_request(plain, None).unwrap().inputs[0]
                .decode()
                .unwrap()
                .data,
            TensorData::Fp64(vec![1.5])
        );
    }

    #[test]
    fn bad_binary_requests_say_what_is_wrong() {
        let err = |header: Value, tensors: &[&[u8]]| {
            let (b, n) = body(header, tensors);
            parse_request(&b, Some(n)).unwrap_err().to_string()
        };
        let x = |size: Value, datatype: &str| json!({"inputs": [{"name": "x", "shape": [2], "datatype": datatype, "parameters": {"binary_data_size": size}}]});
        assert!(
            err(x(json!(16), "FP32"), &[&[0; 8]])
                .contains("binary_data_size is 16 bytes but only 8 bytes of binary data remain")
        );
        assert!(err(x(json!(6), "FP32"), &[&[0; 6]]).contains("not a whole number of FP32"));
        assert!(err(x(json!(8), "FP32"), &[&[0; 12]]).contains("4 bytes of binary data follow"));
        assert!(err(x(json!(-1), "FP32"), &[]).contains("binary_data_size must be a byte count"));
        assert!(err(x(json!(4), "BYTES"), &[&[9, 0, 0, 0]]).contains("says 9 bytes"));
        assert!(err(x(json!(5), "BYTES"), &[&[1, 0, 0, 0, 0xff]]).contains("not UTF-8"));
        let e = parse_request(b"{}", Some(10)).unwrap_err().to_string();
        assert!(e.contains("Inference-Header-Content-Length is 10"), "{e}");
        assert!(header_length(Some(b"12x")).is_err());
        assert_eq!(header_length(Some(b" 12")).unwrap(), Some(12));
        assert_eq!(header_length(None).unwrap(), None);
        // The shape still has to match what the binary data holds.
        let (b, n) = body(x(json!(4), "FP32"), &[&[0; 4]]);
        let request = parse_request(&b, Some(n)).unwrap();
        assert_eq!(
            request.inputs[0].decode().unwrap_err().to_string(),
            "input \"x\": shape [2] needs 2 elements, got 1"
        );
    }

    #[test]
    fn outputs_are_binary_where_asked_and_round_trip() {
        let response = InferenceResponse {
            model_name: "m".into(),
            model_version: Some("1".into()),
            id: "r1".into(),
            parameters: None,
            outputs: vec![
                ResponseOutput {
                    name: "label".into(),
                    shape: vec![2],
                    datatype: Datatype::Bytes,
                    parameters: None,
                    data: TensorData::Bytes(vec!["a".into(), "bb".into()]),
                },
                ResponseOutput {
                    name: "probabilities".into(),
                    shape: vec![2, 2],
                    datatype: Datatype::Fp64,
                    parameters: None,
                    data: TensorData::Fp64(vec![0.25, 0.75, 1.0, 0.0]),
                },
                ResponseOutput {
                    name: "class".into(),
                    shape: vec![2],
                    datatype: Datatype::Int32,
                    parameters: None,
                    data: TensorData::Int(vec![-1, 2]),
                },
            ],
        };
        let plain = encode_response(&response, |_| false).unwrap();
        assert_eq!(plain.header_length, None);
        assert_eq!(
            serde_json::from_slice::<Value>(&plain.body).unwrap(),
            serde_json::to_value(&response).unwrap()
        );
        let mixed = encode_response(&response, |name| name != "probabilities").unwrap();
        let n = mixed.header_length.unwrap();
        let header: Value = serde_json::from_slice(&mixed.body[..n]).unwrap();
        assert_eq!(
            header["outputs"][0]["parameters"]["binary_data_size"],
            4 + 1 + 4 + 2
        );
        assert!(header["outputs"][0].get("data").is_none());
        assert_eq!(header["outputs"][1]["data"], json!([0.25, 0.75, 1.0, 0.0]));
        assert_eq!(header["outputs"][2]["parameters"]["binary_data_size"], 8);
        assert_eq!(&mixed.body[n + 11..], &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]);
        let back = parse_response(&mixed.body, Some(n)).unwrap();
        assert_eq!(back.outputs[0].data, response.outputs[0].data);
        assert_eq!(back.outputs[2].data, response.outputs[2].data);
        // An INT8 output holding 300 is the model's bug, reported as such.
        let mut wrong = response.clone();
        wrong.outputs[2].datatype = Datatype::Int8;
        wrong.outputs[2].data = TensorData::Int(vec![300]);
        assert!(encode_response(&wrong, |_| true).is_err());
    }

    #[test]
    fn a_request_encoded_as_binary_reads_back_the_same() {
        let json: InferenceRequest = serde_json::from_value(json!({
            "id": "r9",
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1.5, 2], [3, 4]]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "é"]},
                {"name": "i", "shape": [2], "datatype": "INT16", "data": [-7, 300]}
            ],
            "outputs": [{"name": "predict"}]
        }))
        .unwrap();
        let (body, n) = encode_request(&json).unwrap();
        let header: Value = serde_json::from_slice(&body[..n]).unwrap();
        assert!(header["inputs"][0].get("data").is_none(), "{header}");
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(header["outputs"][0]["parameters"]["binary_data"], true);
        assert_eq!(header["parameters"]["binary_data_output"], true);
        let back = parse_request(&body, Some(n)).unwrap();
        assert_eq!(back.id.as_deref(), Some("r9"));
        for (a, b) in json.inputs.iter().zip(&back.inputs) {
            assert_eq!(a.decode().unwrap(), b.decode().unwrap());
        }
        let mut wrong = json.clone();
        wrong.inputs[2].data = TensorData::Int(vec![1, 40_000]);
        assert!(
            encode_request(&wrong)
                .unwrap_err()
                .to_string()
                .contains("40000")
        );
    }

    #[test]
    fn which_outputs_are_binary() {
        let request = |v: Value| serde_json::from_value::<InferenceRequest>(v).unwrap();
        let r = request(json!({"inputs": [], "parameters": {"binary_data_output": true}}));
        assert!(wants_binary(&r, "any"));
        let r = request(json!({"inputs": [], "outputs": [
            {"name": "a", "parameters": {"binary_data": true}},
            {"name": "b", "parameters": {"binary_data": false}},
            {"name": "c"}
        ]}));
        assert!(wants_binary(&r, "a"));
        assert!(!wants_binary(&r, "b"));
        assert!(!wants_binary(&r, "c"));
        assert!(!wants_binary(&request(json!({"inputs": []})), "a"));
    }

    #[test]
    fn half_precision_converts_both_ways() {
        for (bits, value) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0x3555, 0.333_251_95),
            (0x0000, 0.0),
        ] {
            assert_eq!(f16_to_f32(bits), value, "{bits:#x}");
            assert_eq!(f32_to_f16(value), bits, "{value}");
        }
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00, "ties to even");
        let (b, n) = body(
            json!({"inputs": [{"name": "h", "shape": [2], "datatype": "FP16", "parameters": {"binary_data_size": 4}}]}),
            &[&[0x00, 0x3c, 0x00, 0xc0]],
        );
        assert_eq!(
            parse_request(&b, Some(n)).unwrap().inputs[0].data,
            TensorData::Fp64(vec![1.0, -2.0])
        );
    }
}
