//! The built-in flavor (`platform: "gantry"`): a `gantry_ml` model artifact, which predicts
//! raw rows itself (its preprocessing is inside it).

use std::path::Path;

use gantry_ml::dataset::ColumnType;
use gantry_ml::model::{Model, Prediction, Task};
use serde_json::Value;

use crate::ServeError;
use crate::oip::{
    Datatype, InferenceRequest, Parameters, ResponseOutput, TensorData, TensorMetadata,
};
use crate::predictor::{Predictor, PredictorMetadata, RowPrediction};
use crate::rows::{Row, column_datatype, request_rows};

pub const PLATFORM: &str = "gantry";
/// The output with the predicted class or value, shape `[N]`.
pub const PREDICT_OUTPUT: &str = "predict";
/// Classification only: class probabilities, shape `[N, C]`.
pub const PROBABILITIES_OUTPUT: &str = "probabilities";

pub struct BuiltinPredictor {
    model: Model,
    schema: Vec<(String, ColumnType)>,
    metadata: PredictorMetadata,
    predict_datatype: Datatype,
    /// The classes typed like the label (`parameters.classes`).
    classes: Vec<Value>,
}

impl BuiltinPredictor {
    /// Loads a model directory (with `model.json`) or the `model.json` file itself.
    pub fn load(path: &Path) -> Result<BuiltinPredictor, ServeError> {
        let model = Model::load(path).map_err(|e| ServeError::load(path, e.to_string()))?;
        Ok(BuiltinPredictor::new(model))
    }

    pub fn new(model: Model) -> BuiltinPredictor {
        let schema = model.input_schema();
        let classes: Vec<Value> = (0..model.classes().len())
            .map(|i| model.class_value(i))
            .collect();
        let predict_datatype = match (model.task, model.label_type) {
            (Task::Regression, _) | (Task::Classification, ColumnType::Float) => Datatype::Fp64,
            (Task::Classification, ColumnType::Int) => Datatype::Int64,
            (Task::Classification, ColumnType::Bool) => Datatype::Bool,
            (Task::Classification, _) => Datatype::Bytes,
        };
        let inputs = schema
            .iter()
            .map(|(name, ty)| TensorMetadata {
                name: name.clone(),
                datatype: column_datatype(*ty),
                shape: vec![-1],
                parameters: Some(Parameters::from_iter([(
                    "column_type".to_string(),
                    Value::from(ty.name()),
                )])),
            })
            .collect();
        let mut outputs = vec![TensorMetadata {
            name: PREDICT_OUTPUT.to_string(),
            datatype: predict_datatype,
            shape: vec![-1],
            parameters: None,
        }];
        let mut parameters = Parameters::new();
        parameters.insert("task".into(), Value::from(model.task.name()));
        parameters.insert("algorithm".into(), Value::from(model.algorithm.as_str()));
        parameters.insert("label".into(), Value::from(model.label.as_str()));
        if model.task == Task::Classification {
            outputs.push(TensorMetadata {
                name: PROBABILITIES_OUTPUT.to_string(),
                datatype: Datatype::Fp64,
                shape: vec![-1, classes.len() as i64],
                parameters: Some(classes_parameter(&classes)),
            });
            parameters.insert("classes".into(), Value::Array(classes.clone()));
        }
        BuiltinPredictor {
            metadata: PredictorMetadata {
                platform: PLATFORM.to_string(),
                inputs,
                outputs,
                parameters: Some(parameters),
            },
            model,
            schema,
            predict_datatype,
            classes,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    fn predict(&self, rows: &[Row]) -> Result<Vec<Prediction>, ServeError> {
        // Every failure of predict on decoded rows is about the values sent (a column that
        // is not a number, …): the client's to fix.
        self.model
            .predict(rows)
            .map_err(|e| ServeError::bad_request(e.to_string()))
    }
}

fn classes_parameter(classes: &[Value]) -> Parameters {
    Parameters::from_iter([("classes".to_string(), Value::Array(classes.to_vec()))])
}

/// The predicted values as a tensor of `datatype`, or as text when one does not fit it.
fn value_tensor(values: &[Value], datatype: Datatype) -> (Datatype, TensorData) {
    let typed = match datatype {
        Datatype::Int64 => values
            .iter()
            .map(Value::as_i64)
            .collect::<Option<Vec<_>>>()
            .map(TensorData::Int),
        Datatype::Bool => values
            .iter()
            .map(Value::as_bool)
            .collect::<Option<Vec<_>>>()
            .map(TensorData::Bool),
        Datatype::Fp64 => values
            .iter()
            .map(Value::as_f64)
            .collect::<Option<Vec<_>>>()
            .map(TensorData::Fp64),
        _ => None,
    };
    match typed {
        Some(data) => (datatype, data),
        None => (
            Datatype::Bytes,
            TensorData::Bytes(
                values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ),
        ),
    }
}

impl Predictor for BuiltinPredictor {
    fn metadata(&self) -> &PredictorMetadata {
        &self.metadata
    }

    fn infer(&self, request: &InferenceRequest) -> Result<Vec<ResponseOutput>, ServeError> {
        // A single numeric [N,F] tensor skips building a map per row (the common, hot form).
        let predictions = match crate::rows::numeric_matrix(request, &self.schema) {
            Some(values) => self
                .model
                .predict_numeric(&values?)
                .map_err(|e| ServeError::bad_request(e.to_string()))?,
            None => self.predict(&request_rows(request, &self.schema)?)?,
        };
        let n = predictions.len();
        let values: Vec<Value> = predictions.iter().map(|p| p.value.clone()).collect();
        let (datatype, data) = value_tensor(&values, self.predict_datatype);
        let mut outputs = vec![ResponseOutput {
            name: PREDICT_OUTPUT.to_string(),
            shape: vec![n],
            datatype,
            parameters: None,
            data,
        }];
        if self.model.task == Task::Classification {
            let width = self.classes.len();
            let mut probabilities = Vec::with_capacity(n * width);
            for p in &predictions {
                let row = p.probabilities.as_deref().unwrap_or_default();
                if row.len() != width {
                    return Err(ServeError::internal(format!(
                        "the model gave {} probabilities for {width} classes",
                        row.len()
                    )));
                }
                probabilities.extend_from_slice(row);
            }
            outputs.push(ResponseOutput {
                name: PROBABILITIES_OUTPUT.to_string(),
                shape: vec![n, width],
                datatype: Datatype::Fp64,
                parameters: Some(classes_parameter(&self.classes)),
                data: TensorData::Fp64(probabilities),
            });
        }
        Ok(outputs)
    }

    fn schema(&self) -> Option<&[(String, ColumnType)]> {
        Some(&self.schema)
    }

    fn predict_rows(&self, rows: &[Row]) -> Result<Vec<RowPrediction>, ServeError> {
        // A misspelt column would otherwise be imputed silently.
        for (i, row) in rows.iter().enumerate() {
            if let Some(key) = row
                .keys()
                .find(|k| !self.schema.iter().any(|(c, _)| c == *k))
            {
                let columns: Vec<&str> = self.schema.iter().map(|(c, _)| c.as_str()).collect();
                return Err(ServeError::bad_request(format!(
                    "rows[{i}]: \"{key}\" is not a column of this model; its columns are {}",
                    columns.join(", ")
                )));
            }
        }
        let classes = self.model.classes();
        Ok(self
            .predict(rows)?
            .into_iter()
            .map(|p| RowPrediction {
                probabilities: p.probabilities.map(|probs| {
                    classes
                        .iter()
                        .zip(probs)
                        .map(|(class, prob)| (class.clone(), Value::from(prob)))
                        .collect()
                }),
                value: p.value,
            })
            .collect())
    }

    fn logged_rows(&self, request: &InferenceRequest) -> Vec<Row> {
        request_rows(request, &self.schema).unwrap_or_default()
    }
}
