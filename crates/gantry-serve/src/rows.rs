//! Requests and responses as rows: how tensors map to a model's raw columns, and what a
//! prediction log records per row.

use std::collections::BTreeMap;

use gantry_ml::dataset::ColumnType;
use serde_json::Value;

use crate::ServeError;
use crate::oip::{
    Datatype, DecodedInput, InferenceRequest, InferenceResponse, RequestInput, TensorData,
    shape_text,
};

/// One raw row: column name → value, as `gantry_ml::model::Model::predict` takes it.
pub type Row = BTreeMap<String, Value>;

/// The datatype model metadata gives a raw column.
pub fn column_datatype(ty: ColumnType) -> Datatype {
    match ty {
        ColumnType::Int => Datatype::Int64,
        ColumnType::Float => Datatype::Fp64,
        ColumnType::Bool => Datatype::Bool,
        // Datetimes travel as RFC 3339 text, like the datasets write them.
        ColumnType::Categorical | ColumnType::Text | ColumnType::Datetime => Datatype::Bytes,
    }
}

fn is_numeric_column(ty: ColumnType) -> bool {
    matches!(ty, ColumnType::Int | ColumnType::Float | ColumnType::Bool)
}

fn column_names(schema: &[(String, ColumnType)]) -> String {
    let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
    names.join(", ")
}

/// Decodes a request into raw rows for a model with this column schema. Two forms:
///
/// - one input per column, named like the column, shape `[N]` or `[N,1]`; columns without
///   an input are missing (the model imputes them), but at least one must be there;
/// - a single `[N,F]` tensor with `F` = the number of columns, in schema order (only when
///   every column is numeric or boolean).
pub fn request_rows(
    request: &InferenceRequest,
    schema: &[(String, ColumnType)],
) -> Result<Vec<Row>, ServeError> {
    request_columns(request, schema).map(RowColumns::into_rows)
}

/// A batch of rows held column by column: each column one typed vector (`Bool`, `Int`,
/// `Uint`, `Fp64` or `Bytes`) with one element per row.
#[derive(Clone, Debug, PartialEq)]
pub struct RowColumns {
    pub rows: usize,
    pub columns: Vec<(String, TensorData)>,
}

impl RowColumns {
    /// The rows: column name → value, as [`request_rows`] gives them.
    pub fn into_rows(self) -> Vec<Row> {
        let mut rows = vec![Row::new(); self.rows];
        for (name, data) in &self.columns {
            for (i, row) in rows.iter_mut().enumerate() {
                row.insert(name.clone(), data.json(i));
            }
        }
        rows
    }
}

/// [`request_rows`] as columns: the same checks, the same columns and values, without a
/// map per row (what the prediction log stores).
pub fn request_columns(
    request: &InferenceRequest,
    schema: &[(String, ColumnType)],
) -> Result<RowColumns, ServeError> {
    let all_numeric = schema.iter().all(|(_, ty)| is_numeric_column(*ty));
    let tensor_hint = if all_numeric {
        format!(
            ", or a single [N,{}] tensor of them in that order",
            schema.len()
        )
    } else {
        String::new()
    };
    if request.inputs.is_empty() {
        return Err(ServeError::bad_request(format!(
            "the request has no inputs; send one input per model column ({}){tensor_hint}",
            column_names(schema)
        )));
    }
    if let [only] = request.inputs.as_slice() {
        let dims = only.dims()?;
        let is_column = schema.iter().any(|(n, _)| *n == only.name);
        if dims.len() == 2 && (!is_column || dims[1] > 1) {
            return matrix_columns(only, schema, all_numeric);
        }
    }
    let mut out = RowColumns {
        rows: 0,
        columns: Vec::with_capacity(request.inputs.len()),
    };
    let mut seen: Vec<&str> = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        if !schema.iter().any(|(n, _)| *n == input.name) {
            return Err(ServeError::bad_request(format!(
                "input \"{}\" is not a column of this model; send inputs named after its columns ({}){tensor_hint}",
                input.name,
                column_names(schema)
            )));
        }
        if seen.contains(&input.name.as_str()) {
            return Err(ServeError::bad_request(format!(
                "input \"{}\" is sent twice; send each column once",
                input.name
            )));
        }
        let tensor = input.decode()?;
        if !matches!(tensor.shape.as_slice(), [_] | [_, 1]) {
            return Err(ServeError::bad_request(format!(
                "input \"{}\": shape {} is not one column; send shape [N] or [N,1]",
                input.name,
                shape_text(&tensor.shape)
            )));
        }
        let n = tensor.rows();
        match seen.first() {
            None => out.rows = n,
            Some(first) if out.rows != n => {
                return Err(ServeError::bad_request(format!(
                    "input \"{}\" has {n} rows but input \"{first}\" has {}; send the same number of rows in every input",
                    input.name, out.rows
                )));
            }
            Some(_) => {}
        }
        seen.push(&input.name);
        out.columns.push((input.name.clone(), tensor.data));
    }
    Ok(out)
}

/// Elements `start`, `start + stride`, … (`n` of them) of `data`, typed alike.
fn strided(data: &TensorData, start: usize, stride: usize, n: usize) -> TensorData {
    fn pick<T: Clone>(v: &[T], start: usize, stride: usize, n: usize) -> Vec<T> {
        v.iter()
            .skip(start)
            .step_by(stride.max(1))
            .take(n)
            .cloned()
            .collect()
    }
    match data {
        TensorData::Bool(v) => TensorData::Bool(pick(v, start, stride, n)),
        TensorData::Int(v) => TensorData::Int(pick(v, start, stride, n)),
        TensorData::Uint(v) => TensorData::Uint(pick(v, start, stride, n)),
        TensorData::Fp32(v) => TensorData::Fp32(pick(v, start, stride, n)),
        TensorData::Fp64(v) => TensorData::Fp64(pick(v, start, stride, n)),
        TensorData::Bytes(v) => TensorData::Bytes(pick(v, start, stride, n)),
        TensorData::Json(v) => TensorData::Json(pick(v, start, stride, n)),
    }
}

/// The single `[N,F]` numeric tensor form of [`request_rows`] as row-major numbers (bools
/// as 0/1), for the built-in flavor's fast path; `None` when the request has another form.
pub(crate) fn numeric_matrix(
    request: &InferenceRequest,
    schema: &[(String, ColumnType)],
) -> Option<Result<Vec<f64>, ServeError>> {
    let [only] = request.inputs.as_slice() else {
        return None;
    };
    let dims = only.dims().ok()?;
    let is_column = schema.iter().any(|(n, _)| *n == only.name);
    if dims.len() != 2 || (is_column && dims[1] <= 1) {
        return None;
    }
    if !schema.iter().all(|(_, ty)| is_numeric_column(*ty)) {
        // request_rows explains what to send instead.
        return Some(request_rows(request, schema).map(|_| Vec::new()));
    }
    let tensor = match only.decode() {
        Ok(t) => t,
        Err(e) => return Some(Err(e)),
    };
    if tensor.shape.get(1).copied() != Some(schema.len()) {
        return Some(request_rows(request, schema).map(|_| Vec::new()));
    }
    let values = match tensor.data {
        TensorData::Fp64(v) => v,
        TensorData::Int(v) => v.into_iter().map(|x| x as f64).collect(),
        TensorData::Uint(v) => v.into_iter().map(|x| x as f64).collect(),
        TensorData::Fp32(v) => v.into_iter().map(f64::from).collect(),
        TensorData::Bool(v) => v.into_iter().map(|b| if b { 1.0 } else { 0.0 }).collect(),
        _ => return Some(request_rows(request, schema).map(|_| Vec::new())),
    };
    Some(Ok(values))
}

fn matrix_columns(
    input: &RequestInput,
    schema: &[(String, ColumnType)],
    all_numeric: bool,
) -> Result<RowColumns, ServeError> {
    if !all_numeric {
        let text: Vec<String> = schema
            .iter()
            .filter(|(_, ty)| !is_numeric_column(*ty))
            .map(|(n, ty)| format!("{n}: {ty}"))
            .collect();
        return Err(ServeError::bad_request(format!(
            "input \"{}\": a single [N,F] tensor only carries numbers, and this model has non-numeric columns ({}); \
             send one input per column, named after it",
            input.name,
            text.join(", ")
        )));
    }
    let tensor: DecodedInput = input.decode()?;
    let width = tensor.shape.get(1).copied().unwrap_or(0);
    if width != schema.len() {
        return Err(ServeError::bad_request(format!(
            "input \"{}\": a [N,F] tensor needs F = {} (the model's columns {} in this order), got shape {}",
            input.name,
            schema.len(),
            column_names(schema),
            shape_text(&tensor.shape)
        )));
    }
    let rows = tensor.rows();
    Ok(RowColumns {
        rows,
        columns: schema
            .iter()
            .enumerate()
            .map(|(j, (name, _))| (name.clone(), strided(&tensor.data, j, width, rows)))
            .collect(),
    })
}

/// A request's inputs as rows without a column schema (ONNX): `{"<input>": value}` for an
/// `[N]` input and `{"<input>[j]": value}` for an `[N,F]` one (higher ranks are flattened
/// per row). Inputs that do not decode, or whose row count differs from the first
/// decodable input's, are left out.
pub fn tensor_rows(request: &InferenceRequest) -> Vec<Row> {
    tensor_columns(request).into_rows()
}

/// [`tensor_rows`] as columns.
pub fn tensor_columns(request: &InferenceRequest) -> RowColumns {
    let mut out = RowColumns {
        rows: 0,
        columns: Vec::new(),
    };
    let mut count: Option<usize> = None;
    for input in &request.inputs {
        let Ok(tensor) = input.decode() else {
            continue;
        };
        let Some(&n) = tensor.shape.first() else {
            continue;
        };
        match count {
            None => {
                count = Some(n);
                out.rows = n;
            }
            Some(m) if m != n => continue,
            Some(_) => {}
        }
        if n == 0 {
            continue;
        }
        if tensor.shape.len() == 1 {
            out.columns.push((input.name.clone(), tensor.data));
        } else {
            let width = tensor.data.len() / n;
            for j in 0..width {
                out.columns.push((
                    format!("{}[{j}]", input.name),
                    strided(&tensor.data, j, width, n),
                ));
            }
        }
    }
    out
}

/// The prediction per row of a response: the `predict` output if there is one, else the
/// first output (an ONNX classifier's label). A row with one element gives that element,
/// a wider row an array.
pub fn response_predictions(response: &InferenceResponse) -> Vec<Value> {
    let Some(output) = response
        .outputs
        .iter()
        .find(|o| o.name == "predict")
        .or_else(|| response.outputs.first())
    else {
        return Vec::new();
    };
    let Some(&n) = output.shape.first() else {
        return vec![output.data.json(0)];
    };
    if n == 0 {
        return Vec::new();
    }
    let width = output.data.len() / n;
    (0..n)
        .map(|i| {
            if width == 1 {
                output.data.json(i)
            } else {
                Value::Array(
                    (0..width)
                        .map(|j| output.data.json(i * width + j))
                        .collect(),
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oip::{ResponseOutput, TensorData};
    use serde_json::json;

    fn request(v: Value) -> InferenceRequest {
        serde_json::from_value(v).unwrap()
    }

    fn schema() -> Vec<(String, ColumnType)> {
        vec![
            ("a".to_string(), ColumnType::Float),
            ("b".to_string(), ColumnType::Int),
        ]
    }

    #[test]
    fn named_columns_and_a_matrix_give_the_same_rows() {
        let named = request(json!({"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},
            {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": [[3], [4]]},
        ]}));
        let matrix = request(json!({"inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1.5, 3], [2.5, 4]]},
        ]}));
        let rows = request_rows(&named, &schema()).unwrap();
        assert_eq!(
            rows[0],
            serde_json::from_value::<Row>(json!({"a": 1.5, "b": 3})).unwrap()
        );
        let from_matrix = request_rows(&matrix, &schema()).unwrap();
        assert_eq!(from_matrix.len(), 2);
        assert_eq!(from_matrix[1]["a"], json!(2.5));
        assert_eq!(from_matrix[1]["b"].as_f64(), Some(4.0));
        let partial = request(
            json!({"inputs": [{"name": "b", "shape": [1], "datatype": "INT64", "data": [7]}]}),
        );
        assert_eq!(
            request_rows(&partial, &schema()).unwrap(),
            vec![serde_json::from_value::<Row>(json!({"b": 7})).unwrap()]
        );
    }

    #[test]
    fn unusable_inputs_are_refused_with_what_to_send() {
        let err = |v: Value, schema: &[(String, ColumnType)]| {
            request_rows(&request(v), schema).unwrap_err().to_string()
        };
        assert_eq!(
            err(
                json!({"inputs": [{"name": "c", "shape": [1], "datatype": "FP64", "data": [1]}]}),
                &schema()
            ),
            "input \"c\" is not a column of this model; send inputs named after its columns (a, b), or a single [N,2] tensor of them in that order"
        );
        assert_eq!(
            err(
                json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}),
                &schema()
            ),
            "input \"x\": a [N,F] tensor needs F = 2 (the model's columns a, b in this order), got shape [1,3]"
        );
        assert_eq!(
            err(
                json!({"inputs": [
                    {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                    {"name": "b", "shape": [1], "datatype": "INT64", "data": [1]},
                ]}),
                &schema()
            ),
            "input \"b\" has 1 rows but input \"a\" has 2; send the same number of rows in every input"
        );
        let mixed = vec![
            ("a".to_string(), ColumnType::Float),
            ("c".to_string(), ColumnType::Categorical),
        ];
        let text = err(
            json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}),
            &mixed,
        );
        assert!(
            text.contains("non-numeric columns (c: categorical)"),
            "{text}"
        );
        assert!(err(json!({"inputs": []}), &schema()).starts_with("the request has no inputs"));
    }

    #[test]
    fn tensor_rows_and_predictions_per_row() {
        let req = request(json!({"inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "k", "shape": [2], "datatype": "BYTES", "data": ["p", "q"]},
            {"name": "bad", "shape": [3], "datatype": "FP32", "data": [1]},
        ]}));
        let rows = tensor_rows(&req);
        assert_eq!(
            serde_json::to_value(&rows).unwrap(),
            json!([{"k": "p", "x[0]": 1.0, "x[1]": 2.0}, {"k": "q", "x[0]": 3.0, "x[1]": 4.0}])
        );
        let out = |name: &str, shape: Vec<usize>, data: TensorData| ResponseOutput {
            name: name.into(),
            shape,
            datatype: crate::oip::Datatype::Fp64,
            parameters: None,
            data,
        };
        let response = InferenceResponse {
            model_name: "m".into(),
            model_version: None,
            id: "1".into(),
            parameters: None,
            outputs: vec![
                out(
                    "probabilities",
                    vec![2, 2],
                    TensorData::Fp64(vec![0.1, 0.9, 0.8, 0.2]),
                ),
                out(
                    "predict",
                    vec![2],
                    TensorData::Bytes(vec!["b".into(), "a".into()]),
                ),
            ],
        };
        assert_eq!(
            response_predictions(&response),
            vec![json!("b"), json!("a")]
        );
        let first_only = InferenceResponse {
            outputs: vec![out(
                "variable",
                vec![2, 1],
                TensorData::Fp32(vec![1.5, 2.5]),
            )],
            ..response
        };
        assert_eq!(
            response_predictions(&first_only),
            vec![json!(1.5), json!(2.5)]
        );
    }
}
