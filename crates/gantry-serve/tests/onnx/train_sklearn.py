"""Trains scikit-learn models, exports them with skl2onnx and writes what scikit-learn
itself predicts, for gantry-serve's ONNX test (tests/serve/onnx.rs).

usage: python train_sklearn.py OUT_DIR

Writes OUT_DIR/<name>.onnx per model, OUT_DIR/logistic_zipmap.onnx (a classifier
exported with its default ZipMap output, which gantry refuses with a hint) and
OUT_DIR/expected.json: {"models": [{"name", "file", "task", "rows", "label",
"probabilities"?}]}.
"""

import json
import sys
from pathlib import Path

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

# tract implements the classic ai.onnx.ml tree ops (ml opset 3) and is tested up to opset 18.
OPSET = {"": 17, "ai.onnx.ml": 3}


def export(model, features, path, zipmap=False):
    options = None
    if hasattr(model, "predict_proba"):
        options = {id(model): {"zipmap": zipmap}}
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, features]))],
        options=options,
        target_opset=OPSET,
    )
    path.write_bytes(onx.SerializeToString())


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    models = []

    iris = load_iris()
    x, y = iris.data, iris.target
    species = iris.target_names[y]

    # String labels: the ONNX label output is a string tensor (BYTES).
    logistic = LogisticRegression(max_iter=2000).fit(x, species)
    export(logistic, 4, out / "logistic.onnx")
    export(logistic, 4, out / "logistic_zipmap.onnx", zipmap=True)
    models.append(
        {
            "name": "logistic",
            "file": "logistic.onnx",
            "task": "classification",
            "rows": x.tolist(),
            "label": logistic.predict(x).tolist(),
            "probabilities": logistic.predict_proba(x).tolist(),
        }
    )

    # Integer labels and a tree ensemble (TreeEnsembleClassifier).
    forest = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0).fit(x, y)
    export(forest, 4, out / "forest.onnx")
    models.append(
        {
            "name": "forest",
            "file": "forest.onnx",
            "task": "classification",
            "rows": x.tolist(),
            "label": [int(v) for v in forest.predict(x)],
            "probabilities": forest.predict_proba(x).tolist(),
        }
    )

    diabetes = load_diabetes()
    dx, dy = diabetes.data, diabetes.target
    linear = LinearRegression().fit(dx, dy)
    export(linear, dx.shape[1], out / "linear.onnx")
    rows = dx[:60]
    models.append(
        {
            "name": "linear",
            "file": "linear.onnx",
            "task": "regression",
            "rows": rows.tolist(),
            "label": np.asarray(linear.predict(rows), dtype=float).tolist(),
        }
    )

    (out / "expected.json").write_text(json.dumps({"models": models}))


if __name__ == "__main__":
    main()
