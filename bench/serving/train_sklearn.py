"""Fits the peers' model and writes it in each peer's format (run with the bench venv's python).

Usage: train_sklearn.py CSV LABEL MODEL_NAME OUT_DIR CHECK_ROWS_JSON

The model is StandardScaler + L2 logistic regression (C=1, L-BFGS), the same preprocessing and
algorithm as Gantry's `clean: {standardize: true}` + `train: {algorithm: logistic}`, fit on
every row of the CSV. It is fit on a bare float matrix, not a DataFrame, so neither server
spends time matching or warning about column names: both receive the columns positionally, in
the CSV's order. Writes OUT_DIR/model.joblib (MLServer), OUT_DIR/mlflow-model (MLflow) and
prints the local predictions for the CHECK_ROWS_JSON rows as JSON on stdout.
"""
import csv, json, os, sys

import joblib
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def main():
    path, label, name, out, check = sys.argv[1:6]
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    li = header.index(label)
    x = np.array([[float(v) for i, v in enumerate(r) if i != li] for r in body], dtype=np.float64)
    y = np.array([r[li] for r in body])
    pipe = Pipeline([("scale", StandardScaler()),
                     ("logistic", LogisticRegression(C=1.0, max_iter=500))])
    pipe.fit(x, y)
    os.makedirs(out, exist_ok=True)
    joblib.dump(pipe, os.path.join(out, "model.joblib"))
    mlflow.sklearn.save_model(pipe, os.path.join(out, "mlflow-model"))
    idx = json.loads(check)
    print(json.dumps({"model": name, "train_accuracy": float(pipe.score(x, y)),
                      "predictions": [str(p) for p in pipe.predict(x[idx])]}))


if __name__ == "__main__":
    main()
