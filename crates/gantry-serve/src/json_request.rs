//! A direct reader for the usual JSON inference request: numeric tensors of a float datatype
//! are read straight from the text into `f64`s — no element-by-element visitor, no
//! intermediate value per number — which is most of the work of a 64-row request.
//!
//! It reads the request's own structure (the top object, `inputs` and each input's fields) and
//! the `data` arrays of plain numbers; every other value (`id`, `parameters`, `outputs`,
//! `shape`, names with escapes, `data` of strings or booleans, unknown fields) is handed to
//! serde as the slice it spans, so it is read and checked exactly as before. Anything it does
//! not expect — malformed text, a duplicate key, a missing field, a number beyond the
//! datatype — returns None and the caller parses the whole body with serde, which then words
//! the error. Numbers convert exactly as serde_json's `float_roundtrip` does (correctly
//! rounded): the exact fast path when the digits and the power of ten allow it, the standard
//! library's correctly rounded parse otherwise.

use crate::oip::{Datatype, InferenceRequest, RequestInput, TensorData};

/// Deepest nesting of a `data` array read here (deeper goes to serde).
const MAX_DEPTH: usize = 32;

/// `request` when it is a JSON inference request this reader handles, else None.
pub(crate) fn read(json: &[u8]) -> Option<InferenceRequest> {
    let mut r = Reader { b: json, at: 0 };
    let request = r.request()?;
    r.ws();
    (r.at == r.b.len()).then_some(request)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

/// An input's `data` as read: plain numbers (and their text, should the datatype not be a
/// float one), or the text serde is to read.
enum Data<'a> {
    Numbers(Vec<f64>, &'a [u8]),
    Text(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// The members of an object, calling `member` with each key (the reader then stands
    /// before the value, which `member` must read).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.ws();
                }
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes or control characters (keys and the usual names); None for
    /// anything else, which serde then reads.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let len = memchr::memchr2(b'"', b'\\', self.b.get(start..)?)?;
        let text = &self.b[start..start + len];
        if self.b[start + len] != b'"' || text.iter().any(|c| *c < 0x20) {
            return None;
        }
        self.at = start + len + 1;
        Some(text)
    }

    /// The slice one JSON value spans (checked by serde when it is read).
    fn value_slice(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.at;
        match self.peek()? {
            b'"' => self.skip_string()?,
            b'[' | b'{' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => self.skip_string()?,
                        b'[' | b'{' => {
                            depth += 1;
                            self.at += 1;
                        }
                        b']' | b'}' => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => self.at += 1,
                    }
                }
            }
            _ => {
                while matches!(self.peek(), Some(c) if is_scalar_byte(c)) {
                    self.at += 1;
                }
            }
        }
        (self.at > start).then(|| &self.b[start..self.at])
    }

    /// Moves past the string that starts here.
    fn skip_string(&mut self) -> Option<()> {
        self.at += 1;
        loop {
            let rest = self.b.get(self.at..)?;
            let i = memchr::memchr2(b'"', b'\\', rest)?;
            self.at += i + 1;
            if rest[i] == b'"' {
                return Some(());
            }
            self.at += 1; // the escaped character
        }
    }

    fn serde<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let slice = self.value_slice()?;
        serde_json::from_slice(slice).ok()
    }

    fn string(&mut self) -> Option<String> {
        match self.plain_string() {
            Some(s) => String::from_utf8(s.to_vec()).ok(),
            None => self.serde(),
        }
    }

    fn request(&mut self) -> Option<InferenceRequest> {
        let mut id = None;
        let mut parameters = None;
        let mut inputs = None;
        let mut outputs = None;
        self.object(|r, key| match key {
            b"id" => once(&mut id, r.serde::<Option<String>>()?),
            b"parameters" => once(&mut parameters, r.serde()?),
            b"outputs" => once(&mut outputs, r.serde()?),
            b"inputs" => {
                let list = r.inputs()?;
                once(&mut inputs, list)
            }
            _ => r.unknown_member(),
        })?;
        Some(InferenceRequest {
            id: id.flatten(),
            parameters: parameters.flatten(),
            inputs: inputs?,
            outputs: outputs.unwrap_or_default(),
        })
    }

    /// The value of a member this reader does not know: ignored, as serde ignores unknown
    /// fields, but still checked to be JSON.
    fn unknown_member(&mut self) -> Option<()> {
        self.serde::<serde::de::IgnoredAny>().map(drop)
    }

    /// The elements of an array, each read by `element`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.ws();
            element(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn inputs(&mut self) -> Option<Vec<RequestInput>> {
        let mut inputs = Vec::new();
        self.array(|r| {
            inputs.push(r.input()?);
            Some(())
        })?;
        Some(inputs)
    }

    fn input(&mut self) -> Option<RequestInput> {
        let mut name = None;
        let mut shape = None;
        let mut datatype = None;
        let mut parameters = None;
        let mut data = None;
        self.object(|r, key| match key {
            b"name" => {
                let s = r.string()?;
                once(&mut name, s)
            }
            b"shape" => once(&mut shape, r.serde::<Vec<i64>>()?),
            b"datatype" => {
                let s = r.string()?;
                once(&mut datatype, s)
            }
            b"parameters" => once(&mut parameters, r.serde()?),
            b"data" => {
                let d = r.data()?;
                once(&mut data, d)
            }
            _ => r.unknown_member(),
        })?;
        let datatype: String = datatype?;
        let data = match data {
            None => TensorData::none(),
            Some(Data::Numbers(values, text)) => match datatype
                .parse::<Datatype>()
                .ok()
                .and_then(|d| d.float_max())
            {
                // A float datatype takes the numbers as they are (one beyond it goes to
                // serde's path, which names the element it refuses); any other is typed the
                // usual way.
                Some(max) if values.iter().all(|v| v.abs() <= max) => TensorData::Fp64(values),
                Some(_) => return None,
                None => serde_json::from_slice(text).ok()?,
            },
            Some(Data::Text(text)) => serde_json::from_slice(text).ok()?,
        };
        Some(RequestInput {
            name: name?,
            shape: shape?,
            datatype,
            parameters: parameters.flatten(),
            data,
        })
    }

    /// An input's `data`: an array (flat or nested) of plain numbers read here, or the slice
    /// of anything else for serde.
    fn data(&mut self) -> Option<Data<'a>> {
        self.ws();
        let start = self.at;
        let mut values = Vec::new();
        if self.numbers(&mut values, 0).is_some() {
            return Some(Data::Numbers(values, &self.b[start..self.at]));
        }
        self.at = start;
        self.value_slice().map(Data::Text)
    }

    fn numbers(&mut self, out: &mut Vec<f64>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.array(|r| {
            match r.peek()? {
                b'[' => r.numbers(out, depth + 1)?,
                b'-' | b'0'..=b'9' => out.push(r.number()?),
                _ => return None,
            }
            Some(())
        })
    }

    /// One JSON number (RFC 8259 grammar), correctly rounded to f64.
    fn number(&mut self) -> Option<f64> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        // Significant digits, up to 19 of them in a u64; more go to the slow path.
        let mut mantissa: u64 = 0;
        let mut digits = 0u32;
        let mut exponent: i64 = 0;
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    digit(c, &mut mantissa, &mut digits, &mut exponent, false);
                    self.at += 1;
                }
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let first = self.at;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                digit(c, &mut mantissa, &mut digits, &mut exponent, true);
                self.at += 1;
            }
            if self.at == first {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            let sign = match self.peek()? {
                b'-' => {
                    self.at += 1;
                    -1
                }
                b'+' => {
                    self.at += 1;
                    1
                }
                _ => 1,
            };
            let first = self.at;
            let mut e: i64 = 0;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                e = (e * 10 + i64::from(c - b'0')).min(1 << 32);
                self.at += 1;
            }
            if self.at == first {
                return None;
            }
            exponent += sign * e;
        }
        if matches!(self.peek(), Some(c) if is_scalar_byte(c)) {
            return None;
        }
        const EXACT: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let value = if digits <= 19 && mantissa <= 1 << 53 && (-22..=22).contains(&exponent) {
            // Both operands exact: one correctly rounded operation.
            let m = mantissa as f64;
            let p = EXACT[exponent.unsigned_abs() as usize];
            if exponent < 0 { m / p } else { m * p }
        } else {
            std::str::from_utf8(&self.b[start..self.at])
                .ok()?
                .trim_start_matches('-')
                .parse::<f64>()
                .ok()?
        };
        Some(if negative { -value } else { value })
    }
}

/// Adds a digit to the mantissa; leading zeros are not significant, and digits past 19
/// only mark the number for the slow path.
fn digit(c: u8, mantissa: &mut u64, digits: &mut u32, exponent: &mut i64, frac: bool) {
    if *mantissa == 0 && c == b'0' {
        if frac {
            *exponent -= 1;
        }
        return;
    }
    *digits += 1;
    if *digits <= 19 {
        *mantissa = *mantissa * 10 + u64::from(c - b'0');
        if frac {
            *exponent -= 1;
        }
    } else if !frac {
        *exponent += 1;
    }
}

/// Bytes that continue a number or a literal (so a value has not ended yet).
fn is_scalar_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.')
}

/// Sets a field once; a key given twice falls back to serde, which refuses it.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_read(json: &str) -> Option<InferenceRequest> {
        let mut r: InferenceRequest = serde_json::from_str(json).ok()?;
        for i in &mut r.inputs {
            if let Ok(d) = i.decode() {
                i.data = d.data;
            }
        }
        Some(r)
    }

    fn both(json: &str) -> (Option<InferenceRequest>, Option<InferenceRequest>) {
        let fast = read(json.as_bytes()).map(|mut r| {
            for i in &mut r.inputs {
                if let Ok(d) = i.decode() {
                    i.data = d.data;
                }
            }
            r
        });
        (fast, serde_read(json))
    }

    #[test]
    fn numbers_read_exactly_as_serde_reads_them() {
        let cases = [
            "0",
            "-0",
            "-0.0",
            "1",
            "-1",
            "17.99",
            "0.1184",
            "1001.0",
            "0.000001",
            "1e-7",
            "2.5E+3",
            "123456789012345678",
            "1234567890123456789012",
            "0.1",
            "0.3",
            "9007199254740993",
            "9007199254740993.0",
            "1.7976931348623157e308",
            "4.9e-324",
            "2.2250738585072014e-308",
            "0.30000000000000004",
            "123.456e-10",
            "1e22",
            "1e23",
            "3.141592653589793238462643383279",
            "-98765.4321",
            "5e-324",
            "0.0000000000000000001",
        ];
        for n in cases {
            let json = format!(
                r#"{{"inputs": [{{"name": "x", "shape": [1], "datatype": "FP64", "data": [{n}]}}]}}"#
            );
            let (fast, serde) = both(&json);
            let fast = fast.unwrap_or_else(|| panic!("{n}: not read directly"));
            let serde = serde.unwrap();
            match (&fast.inputs[0].data, &serde.inputs[0].data) {
                (TensorData::Fp64(a), TensorData::Fp64(b)) => {
                    assert_eq!(a[0].to_bits(), b[0].to_bits(), "{n}: {} vs {}", a[0], b[0])
                }
                other => panic!("{n}: {other:?}"),
            }
        }
    }

    #[test]
    fn many_numbers_in_many_forms_read_as_serde_reads_them() {
        // A fixed pseudo-random sequence: values of every magnitude, written the shortest
        // way, with fixed decimals, in scientific form and as integers.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut texts = Vec::new();
        for _ in 0..20_000 {
            let bits = next();
            let x = f64::from_bits(bits);
            if x.is_finite() {
                texts.push(format!("{x}"));
                texts.push(format!("{x:e}"));
            }
            let small = (next() % 2_000_000) as f64 / 1000.0 - 1000.0;
            texts.push(format!("{small}"));
            texts.push(format!("{small:.4}"));
            texts.push(format!("{:.17}", small / 7.0));
            texts.push(format!("{}", next() as i64));
            texts.push(format!("{}", next() % 100_000));
        }
        let json = format!(
            r#"{{"inputs": [{{"name": "x", "shape": [{}], "datatype": "FP64", "data": [{}]}}]}}"#,
            texts.len(),
            texts.join(", ")
        );
        let (fast, serde) = both(&json);
        let (fast, serde) = (fast.unwrap(), serde.unwrap());
        let (TensorData::Fp64(a), TensorData::Fp64(b)) =
            (&fast.inputs[0].data, &serde.inputs[0].data)
        else {
            panic!("not read as floats");
        };
        for ((x, y), text) in a.iter().zip(b).zip(&texts) {
            assert_eq!(x.to_bits(), y.to_bits(), "{text}: {x} vs {y}");
        }
    }

    #[test]
    fn a_usual_request_reads_as_serde_reads_it() {
        let json = r#" {
            "id" : "r-1", "parameters": {"binary_data_output": false},
            "inputs": [
              {"name": "input-0", "shape": [2, 3], "datatype": "FP64",
               "data": [[1.5, -2, 3e2], [0.25, 4, 5.125]], "parameters": {"a": 1}},
              {"datatype": "FP32", "data": [1, 2], "shape": [2], "name": "b\u00e9"},
              {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [true, false]},
              {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a,b]"]},
              {"name": "n", "shape": [2], "datatype": "INT64", "data": [1, -2]},
              {"name": "bin", "shape": [2], "datatype": "FP64",
               "parameters": {"binary_data_size": 16}}
            ],
            "outputs": [{"name": "predict"}],
            "extra": {"ignored": [1, "x"]}
        } "#;
        let (fast, serde) = both(json);
        assert_eq!(fast, serde);
        assert!(fast.is_some());
        let fast = read(json.as_bytes()).unwrap();
        assert!(matches!(fast.inputs[0].data, TensorData::Fp64(_)));
        assert!(matches!(fast.inputs[2].data, TensorData::Json(_)));
        // Numbers of another datatype are typed the usual way.
        for datatype in ["INT32", "UINT8", "FP99"] {
            let json = format!(
                r#"{{"inputs": [{{"name": "x", "shape": [2], "datatype": "{datatype}", "data": [1, 300]}}]}}"#
            );
            let (fast, serde) = both(&json);
            assert!(fast.is_some(), "{datatype}");
            assert_eq!(fast, serde, "{datatype}");
        }
    }

    #[test]
    fn anything_unusual_or_wrong_is_left_to_serde() {
        for json in [
            // Malformed numbers and structure.
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [01]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [.5]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [+1]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1,]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1 2]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1e]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]} x"#,
            // Beyond the datatype, a duplicate key, a missing field.
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1e39]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1e400]}]}"#,
            r#"{"inputs": [{"name": "x", "name": "y", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
            r#"{"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}"#,
            r#"{"inputs": []}, "inputs": []}"#,
        ] {
            assert!(read(json.as_bytes()).is_none(), "read directly: {json}");
        }
    }

    #[test]
    fn nesting_and_spacing_do_not_matter() {
        let a = read(
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[[1,2],[3,4]]}]}"#,
        );
        let b = read(
            b"{ \"inputs\" : [ { \"name\" : \"x\" , \"shape\" : [ 2 , 2 ] , \"datatype\" : \"FP64\" ,\n \"data\" : [ 1 , 2 ,\t3 , 4 ] } ] }",
        );
        assert_eq!(a, b);
        assert_eq!(
            a.unwrap().inputs[0].data,
            TensorData::Fp64(vec![1.0, 2.0, 3.0, 4.0])
        );
    }
}
