#!/usr/bin/env python3
"""Train a scikit-learn classifier as a Gantry step, and export it as a built-in Gantry model.

The step contract (README "The step contract"):
  /gantry/inputs/<name>   read-only inputs: here `train`, a Gantry dataset directory
                          (schema.json + data.jsonl, what builtin/csv-ingest and builtin/split
                          write) or a plain CSV file with a header row;
  /gantry/outputs/<name>  declared outputs: here `model`, a directory with model.json;
  /gantry/metrics.json    a JSON object of numbers, recorded as the step's metrics;
  exit code 0 = success; stdout and stderr are the step's log.

The model is scikit-learn's Pipeline(SimpleImputer(median), StandardScaler, LogisticRegression).
Its fitted numbers are written in Gantry's own model format (`gantry.model`, the format
builtin/train writes), so builtin/evaluate, builtin/register, `gantry serve` and deployments use
it like any built-in model: no pickle, no ONNX (skl2onnx is not packaged in Debian), and no
Python at serving time. Before writing it, the script recomputes the probabilities the way
Gantry will (fill, (x - center) / scale, sigmoid or softmax) and fails if they differ from
scikit-learn's.

Only numeric columns (int, float, bool) are used as features; categorical, text and datetime
columns are dropped and listed in the model's `preprocessing.dropped`.

MLflow: when MLFLOW_TRACKING_URI is set (steps run under `gantry server`) and the `mlflow`
package is importable, params and metrics are also logged to MLFLOW_RUN_ID. Debian does not
package mlflow, so in this example's image the contract's metrics.json is the only channel.
"""

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MISSING = {"", "NA", "NaN", "?", "null"}  # csv-ingest's default missing markers
NUMERIC = ("int", "float", "bool")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", default="/gantry/inputs/train",
                   help="Gantry dataset directory or CSV file (default: %(default)s)")
    p.add_argument("--label", required=True, help="the column to predict")
    p.add_argument("--model-out", default="/gantry/outputs/model",
                   help="model directory to write (default: %(default)s)")
    p.add_argument("--metrics", default="/gantry/metrics.json",
                   help="metrics file of the step contract (default: %(default)s)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength")
    p.add_argument("--max-iter", type=int, default=500, help="L-BFGS iterations at most")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation hold-out")
    p.add_argument("--validation-fraction", type=float, default=0.2,
                   help="share of the training rows held out for validation.* metrics; "
                        "the final model is refit on all rows")
    return p.parse_args()


# --- reading data ----------------------------------------------------------------------------

def load_dataset_dir(path):
    """A Gantry dataset: schema.json (columns with name and type) + data.jsonl (one array per row)."""
    with open(os.path.join(path, "schema.json")) as f:
        schema = json.load(f)
    names = [c["name"] for c in schema["columns"]]
    types = [c["type"] for c in schema["columns"]]
    columns = [[] for _ in names]
    with open(os.path.join(path, "data.jsonl")) as f:
        for line in f:
            if line.strip():
                for col, value in zip(columns, json.loads(line)):
                    col.append(value)
    return names, types, columns


def infer_type(values):
    present = [v for v in values if v is not None]
    if present and all(v.lower() in ("true", "false") for v in present):
        return "bool"
    try:
        numbers = [float(v) for v in present]
    except ValueError:
        return "categorical"
    if all(n.is_integer() and "." not in v and "e" not in v.lower() for n, v in zip(numbers, present)):
        return "int"
    return "float"


def load_csv(path):
    """A CSV with a header row; types inferred like csv-ingest does for int, float, bool."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    names, body = [h.strip() for h in rows[0]], rows[1:]
    columns = [[None if r[i].strip() in MISSING else r[i].strip() for r in body] for i in range(len(names))]
    types = [infer_type(c) for c in columns]
    for i, t in enumerate(types):
        if t == "bool":
            columns[i] = [None if v is None else v.lower() == "true" for v in columns[i]]
        elif t in ("int", "float"):
            columns[i] = [None if v is None else (int(v) if t == "int" else float(v)) for v in columns[i]]
    return names, types, columns


def label_text(value, ty):
    """The class name the way Gantry writes it (bool: true/false, int: decimal)."""
    if ty == "bool":
        return "true" if value else "false"
    return str(value)


# --- metrics -------------------------------------------------------------------------------------

def classification_metrics(prefix, y, proba, n_classes):
    pred = proba.argmax(axis=1)
    labels = list(range(n_classes))
    m = {
        f"{prefix}.accuracy": accuracy_score(y, pred),
        f"{prefix}.precision_macro": precision_score(y, pred, labels=labels, average="macro", zero_division=0),
        f"{prefix}.recall_macro": recall_score(y, pred, labels=labels, average="macro", zero_division=0),
        f"{prefix}.f1_macro": f1_score(y, pred, labels=labels, average="macro", zero_division=0),
        f"{prefix}.log_loss": log_loss(y, proba, labels=labels),
        f"{prefix}.rows": float(len(y)),
    }
    if n_classes == 2 and len(set(y)) == 2:
        m[f"{prefix}.auc"] = roc_auc_score(y, proba[:, 1])
    return {k: float(v) for k, v in m.items()}


# --- the Gantry model format ---------------------------------------------------------------------

def gantry_probabilities(model, x):
    """What Gantry's built-in server computes from model.json for raw rows `x` (NaN = missing)."""
    steps = model["preprocessing"]["columns"]
    fill = np.array([s["encoding"]["fill"] for s in steps])
    center = np.array([s["encoding"]["center"] for s in steps])
    scale = np.array([s["encoding"]["scale"] for s in steps])
    z = (np.where(np.isnan(x), fill, x) - center) / scale
    est = model["estimator"]
    logits = z @ np.array(est["weights"]).T + np.array(est["intercepts"])
    if est["classes"] == 2:
        p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.column_stack([1.0 - p1, p1])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def to_gantry_model(pipe, args, label, label_type, classes, features, feature_types, dropped, metrics, info):
    imputer, scaler, clf = pipe.named_steps["impute"], pipe.named_steps["scale"], pipe.named_steps["model"]
    columns = [
        {
            "name": name,
            "type": ty,
            "encoding": {
                "kind": "numeric",
                "fill": float(fill),
                "center": float(center),
                "scale": float(scale),
            },
        }
        for name, ty, fill, center, scale in zip(
            features, feature_types, imputer.statistics_, scaler.mean_, scaler.scale_)
    ]
    # Binary: one row of weights, the log-odds of classes[1] (scikit-learn's coef_ has the same
    # shape); K classes: one row per class, softmax (scikit-learn's multinomial lbfgs).
    return {
        "format": "gantry.model",
        "format_version": 1,
        "task": "classification",
        "algorithm": "logistic",
        "hyperparameters": {"C": args.C, "max_iter": args.max_iter},
        "seed": args.seed,
        "label": label,
        "label_type": label_type,
        "classes": classes,
        "preprocessing": {
            "format": "gantry.transform",
            "format_version": 1,
            "label": label,
            "columns": columns,
            "features": list(features),
            "dropped": dropped,
        },
        "metrics": dict(sorted(metrics.items())),
        "training": info,
        "estimator": {
            "kind": "logistic",
            "classes": len(classes),
            "weights": [[float(w) for w in row] for row in clf.coef_],
            "intercepts": [float(b) for b in clf.intercept_],
            "iterations": int(np.max(clf.n_iter_)),
        },
    }


def log_to_mlflow(args, metrics):
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print("MLflow: MLFLOW_TRACKING_URI is not set (steps get it under `gantry server`); "
              "metrics go through /gantry/metrics.json")
        return
    try:
        import mlflow
    except ImportError:
        print("MLflow: the mlflow package is not in this image; metrics go through /gantry/metrics.json only")
        return
    with mlflow.start_run(run_id=os.environ.get("MLFLOW_RUN_ID")):
        mlflow.log_params({"C": args.C, "max_iter": args.max_iter, "seed": args.seed,
                           "validation_fraction": args.validation_fraction})
        mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
    print(f"MLflow: logged {len(metrics)} metrics to {os.environ['MLFLOW_TRACKING_URI']}")


def main():
    args = parse_args()
    started = time.monotonic()
    print(f"python {sys.version.split()[0]}, scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
          f"uid {os.getuid()}, run {os.environ.get('GANTRY_RUN_ID', '-')}, step {os.environ.get('GANTRY_STEP', '-')}")

    loader = load_dataset_dir if os.path.isdir(args.train) else load_csv
    names, types, columns = loader(args.train)
    if args.label not in names:
        sys.exit(f"error: label column `{args.label}` is not in {args.train} (columns: {', '.join(names)})")
    li = names.index(args.label)
    label_type = types[li]
    if label_type not in ("int", "bool", "categorical", "text"):
        sys.exit(f"error: label `{args.label}` is {label_type}: this example trains classifiers "
                 "(int, bool or categorical labels)")

    # Rows with a missing label are skipped, like builtin/train does.
    keep = [i for i, v in enumerate(columns[li]) if v is not None]
    texts = [label_text(columns[li][i], label_type) for i in keep]
    classes = sorted(set(texts), key=(lambda t: float(t)) if label_type == "int" else None)
    if len(classes) < 2:
        sys.exit(f"error: label `{args.label}` has {len(classes)} class(es); a classifier needs two")
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[t] for t in texts])

    features, feature_types, dropped, x_cols = [], [], [], []
    for name, ty, col in zip(names, types, columns):
        if name == args.label:
            continue
        if ty not in NUMERIC:
            dropped.append({"name": name, "reason": f"{ty} column: this example uses numeric columns only"})
            continue
        values = [col[i] for i in keep]
        if all(v is None for v in values):
            dropped.append({"name": name, "reason": "no values"})
            continue
        features.append(name)
        feature_types.append(ty)
        x_cols.append([math.nan if v is None else float(v) for v in values])
    if not features:
        sys.exit("error: no numeric feature columns")
    x = np.array(x_cols, dtype=float).T
    print(f"read {len(keep)} rows × {len(features)} numeric features from {args.train}; "
          f"label `{args.label}` ({label_type}) with classes {classes}"
          + (f"; dropped {', '.join(d['name'] for d in dropped)}" if dropped else ""))

    def pipeline():
        return Pipeline([
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=args.C, max_iter=args.max_iter, random_state=args.seed)),
        ])

    # Validation metrics on a seeded, stratified hold-out; then the final model on all rows.
    metrics = {}
    n_val = round(len(y) * args.validation_fraction)
    if 0 < n_val < len(y) and len(y) >= 10:
        x_fit, x_val, y_fit, y_val = train_test_split(
            x, y, test_size=n_val, random_state=args.seed, stratify=y)
        held_out = pipeline().fit(x_fit, y_fit)
        metrics.update(classification_metrics("validation", y_val, held_out.predict_proba(x_val), len(classes)))
        how = (f"a seeded, stratified hold-out of {n_val} of the {len(y)} training rows "
               f"({args.validation_fraction:.0%}) with scikit-learn; the final model is refit on all rows")
    else:
        how = "no hold-out: validation.* are computed on the training rows (optimistic)"
    pipe = pipeline().fit(x, y)
    proba = pipe.predict_proba(x)
    training = classification_metrics("training", y, proba, len(classes))
    metrics.update(training)
    if "validation.accuracy" not in metrics:
        metrics.update({k.replace("training.", "validation.", 1): v for k, v in training.items()})

    info = {"rows": len(y), "features": len(features), "validation": how}
    model = to_gantry_model(pipe, args, args.label, label_type, classes, features, feature_types,
                            dropped, metrics, info)

    # The exported numbers must give scikit-learn's answers, or nothing is written.
    diff = float(np.max(np.abs(gantry_probabilities(model, x) - proba)))
    if not diff < 1e-9:
        sys.exit(f"error: the exported model's probabilities differ from scikit-learn's by {diff:g}")
    print(f"export check: Gantry's formula reproduces scikit-learn's probabilities (max difference {diff:.1e})")

    os.makedirs(args.model_out, exist_ok=True)
    with open(os.path.join(args.model_out, "model.json"), "w") as f:
        json.dump(model, f, separators=(",", ":"))
        f.write("\n")
    with open(args.metrics, "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)

    width = max(len(k) for k in metrics)
    print("\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items())))
    print(f"wrote {os.path.join(args.model_out, 'model.json')} (format gantry.model, algorithm logistic, "
          f"{pipe.named_steps['model'].n_iter_.max()} L-BFGS iterations) in {time.monotonic() - started:.2f}s")
    log_to_mlflow(args, metrics)


if __name__ == "__main__":
    main()
