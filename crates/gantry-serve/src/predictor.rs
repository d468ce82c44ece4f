//! What a model flavor implements to be served.

use gantry_ml::dataset::ColumnType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ServeError;
use crate::oip::{InferenceRequest, Parameters, ResponseOutput, TensorMetadata};
use crate::rows::{Row, tensor_rows};

/// What model metadata says about a predictor, apart from its name and versions.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictorMetadata {
    /// `gantry` (built-in models) or `onnx`.
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    pub parameters: Option<Parameters>,
}

/// One prediction of the rows form (`POST …/predict`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowPrediction {
    /// The class (typed like the label) or the regression value.
    pub value: Value,
    /// Classification: class → probability, in the model's class order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<serde_json::Map<String, Value>>,
}

/// A loaded model of some flavor. Implementations are immutable after loading, so
/// concurrent requests share one without locks.
pub trait Predictor: Send + Sync {
    fn metadata(&self) -> &PredictorMetadata;

    /// The model's outputs for a request, all of them, in metadata order. Input errors
    /// are [`ServeError::BadRequest`]; anything else is [`ServeError::Internal`].
    fn infer(&self, request: &InferenceRequest) -> Result<Vec<ResponseOutput>, ServeError>;

    /// The raw column schema, for flavors that predict raw rows (built-in models).
    fn schema(&self) -> Option<&[(String, ColumnType)]> {
        None
    }

    /// Predicts raw rows (the rows form). Only flavors with a column schema can.
    fn predict_rows(&self, rows: &[Row]) -> Result<Vec<RowPrediction>, ServeError> {
        let _ = rows;
        Err(ServeError::bad_request(format!(
            "the rows form (…/predict) needs a model with a column schema, and this {} model has none; \
             send tensors to …/infer instead",
            self.metadata().platform
        )))
    }

    /// The request's inputs as rows, for prediction logs: the flavor's own decoding where
    /// it has one, else [`tensor_rows`]. Empty when the inputs cannot be decoded.
    fn logged_rows(&self, request: &InferenceRequest) -> Vec<Row> {
        tensor_rows(request)
    }
}
