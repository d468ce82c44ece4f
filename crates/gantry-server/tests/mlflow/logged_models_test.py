"""MLflow 3's logged models through MLflow's own client, against gantry's MLflow API.

Run by tests/mlflow_client.rs with MLFLOW_TRACKING_URI pointing at the server; prints the ids
it created as JSON on the last line so the Rust side can check the store.

First the real thing as users write it: `mlflow.pyfunc.log_model` of a PythonModel inside a
run, loaded back with `mlflow.pyfunc.load_model("models:/<id>")` and used. Then, to check every
field, `log_model` below makes the calls `Model.log` makes, in its order, with a tiny custom
flavor whose files are known: create the logged model (with the run's params), log it as the
run's output, link the run's metrics of its step, save and upload its files to its artifact
location, and finalize it READY.
"""

import json
import os
import sys
import tempfile

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class ToyFlavor:
    """A flavor module: `save_model` writes a linear model y = a*x + b and its MLmodel."""

    __name__ = "toy"

    def __init__(self, a, b):
        self.a, self.b = a, b

    def save_model(self, path, mlflow_model, **kwargs):
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "weights.json"), "w") as f:
            json.dump({"a": self.a, "b": self.b}, f)
        mlflow_model.add_flavor("toy", data="weights.json")
        mlflow_model.save(os.path.join(path, "MLmodel"))


def load_toy(uri):
    """Downloads a logged model and returns its predict function."""
    local = mlflow.artifacts.download_artifacts(uri)
    # (Model.load needs pandas: the MLmodel file is read as the YAML it is.)
    with open(os.path.join(local, "MLmodel")) as f:
        meta = yaml.safe_load(f)
    check(meta["model_id"] == uri.split("/")[-1], f"MLmodel of {uri}: {meta}")
    with open(os.path.join(local, meta["flavors"]["toy"]["data"])) as f:
        w = json.load(f)
    return lambda x: w["a"] * x + w["b"]


def log_model(client, run_id, name, flavor, params=None, tags=None, model_type=None, step=0):
    """What `Model.log` (mlflow/models/model.py) does for a flavor, minus pandas."""
    params = {**(params or {}), **client.get_run(run_id).data.params}
    model = mlflow.initialize_logged_model(
        name=name, source_run_id=run_id, params=params, tags=tags, model_type=model_type
    )
    client.log_outputs(run_id=run_id, models=[LoggedModelOutput(model.model_id, step=step)])
    linked = []
    for key in client.get_run(run_id).data.metrics:
        linked += [
            Metric(key=m.key, value=m.value, timestamp=m.timestamp, step=m.step,
                   run_id=run_id, model_id=model.model_id)
            for m in client.get_metric_history(run_id, key)
            if m.step == step and m.model_id is None
        ]
    client.log_batch(run_id=run_id, metrics=linked)
    with tempfile.TemporaryDirectory() as d:
        local = os.path.join(d, "model")
        mlmodel = Model(artifact_path=model.artifact_location, model_uuid=model.model_id,
                        run_id=run_id, model_id=model.model_id)
        flavor.save_model(path=local, mlflow_model=mlmodel)
        client.log_model_artifacts(model.model_id, local)
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model


client = MlflowClient()
# The pyfunc story has an experiment of its own, so the searches below see two models only.
pyfunc_exp = mlflow.create_experiment("pyfunc-models")
mlflow.set_experiment(experiment_id=pyfunc_exp)


class AddOne(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [x + 1 for x in model_input]


with mlflow.start_run(run_name="pyfunc") as pyfunc_run:
    mlflow.log_metric("loss", 0.25)
    # (pip_requirements given: inferring them would import-scan this script.)
    pyfunc_info = mlflow.pyfunc.log_model(name="adder", python_model=AddOne(),
                                          pip_requirements=[])
check(pyfunc_info.model_id and pyfunc_info.model_id.startswith("m-"),
      f"pyfunc model id {pyfunc_info.model_id!r}")
adder = mlflow.get_logged_model(pyfunc_info.model_id)
check(adder.status == LoggedModelStatus.READY, f"pyfunc status {adder.status}")
check(adder.source_run_id == pyfunc_run.info.run_id, f"pyfunc source {adder.source_run_id}")
check([(x.key, x.value) for x in adder.metrics] == [("loss", 0.25)], f"pyfunc metrics {adder.metrics}")
outputs = client.get_run(pyfunc_run.info.run_id).outputs
check([o.model_id for o in outputs.model_outputs] == [adder.model_id], f"pyfunc run outputs {outputs}")
loaded = mlflow.pyfunc.load_model(f"models:/{adder.model_id}")
check(list(loaded.predict([1, 2])) == [2, 3], f"pyfunc prediction {loaded.predict([1, 2])}")
pyfunc_found = mlflow.search_logged_models(experiment_ids=[pyfunc_exp],
                                           filter_string="name = 'adder'", output_format="list")
check([x.model_id for x in pyfunc_found] == [adder.model_id], f"pyfunc search {pyfunc_found}")

exp_id = mlflow.create_experiment("logged-models")
mlflow.set_experiment(experiment_id=exp_id)

with mlflow.start_run(run_name="trainer") as run:
    run_id = run.info.run_id
    mlflow.log_param("lr", "0.1")
    # Logged at step 0 before the model: logging a model links the run's metrics of its step.
    mlflow.log_metric("acc", 0.75, step=0)
    info = log_model(client, run_id, "model", ToyFlavor(2.0, 1.0), params={"depth": "3"},
                     tags={"team": "ml"}, model_type="toy-regressor")
    check(info.model_id and info.model_id.startswith("m-"), f"model id {info.model_id!r}")
    check(info.status == LoggedModelStatus.PENDING, f"status before upload {info.status}")
    model_id = info.model_id
    # A second model of the same run, for paging and ordering.
    other = log_model(client, run_id, "other", ToyFlavor(0.0, 5.0))
    # A metric logged for a model after the fact.
    mlflow.log_metric("f1", 0.5, step=1, model_id=model_id)

m = mlflow.get_logged_model(model_id)
check(m.status == LoggedModelStatus.READY, f"status {m.status}")
check(m.name == "model" and m.model_type == "toy-regressor", f"name/type {m.name} {m.model_type}")
check(m.source_run_id == run_id and m.experiment_id == exp_id, f"source {m.source_run_id} {m.experiment_id}")
check(m.tags.get("team") == "ml", f"tags {m.tags}")
# Model.log passes the run's params along with its own.
check(m.params == {"depth": "3", "lr": "0.1"}, f"params {m.params}")
check(
    m.artifact_location == f"mlflow-artifacts:/{exp_id}/models/{model_id}/artifacts",
    f"artifact location {m.artifact_location}",
)
linked = sorted((x.key, x.value, x.step, x.run_id) for x in m.metrics)
check(linked == [("acc", 0.75, 0, run_id), ("f1", 0.5, 1, run_id)], f"metrics {linked}")
check(m.creation_timestamp > 0 and m.last_updated_timestamp >= m.creation_timestamp, "timestamps")

# (MLflow lists a URI's last segment as the folder: paths start with "artifacts/".)
files = sorted(a.path for a in mlflow.artifacts.list_artifacts(m.artifact_location))
check(files == ["artifacts/MLmodel", "artifacts/weights.json"], f"artifacts {files}")

# The run lists both models as outputs.
outputs = client.get_run(run_id).outputs
got = sorted(o.model_id for o in outputs.model_outputs) if outputs else []
check(got == sorted([model_id, other.model_id]), f"run outputs {got}")

# Loaded back through models:/<id> and used.
predict = load_toy(f"models:/{model_id}")
check(predict(3.0) == 7.0, f"prediction {predict(3.0)}")

# Search: by name, tags, params, status, source run; ordered; paged.
found = mlflow.search_logged_models(
    experiment_ids=[exp_id], filter_string="name = 'model'", output_format="list"
)
check([x.model_id for x in found] == [model_id], f"search by name {found}")
for f in ["tags.team = 'ml'", "params.depth = '3'", "status = 'READY' AND name = 'model'",
          f"source_run_id = '{run_id}' AND params.lr = '0.1' AND tags.team = 'ml'"]:
    hits = client.search_logged_models(experiment_ids=[exp_id], filter_string=f)
    check([x.model_id for x in hits] == [model_id], f"search {f!r}: {[x.model_id for x in hits]}")
ordered = client.search_logged_models(
    experiment_ids=[exp_id], order_by=[{"field_name": "name", "ascending": False}]
)
check([x.name for x in ordered] == ["other", "model"], f"ordered by name {[x.name for x in ordered]}")
newest = client.search_logged_models(experiment_ids=[exp_id])
check([x.model_id for x in newest] == [other.model_id, model_id], "newest first by default")
first = client.search_logged_models(experiment_ids=[exp_id], max_results=1)
check(len(first) == 1 and first.token, f"first page {first} {first.token}")
rest = client.search_logged_models(experiment_ids=[exp_id], max_results=5, page_token=first.token)
check(len(rest) == 1 and not rest.token, f"second page {rest} {rest.token}")
check({first[0].model_id, rest[0].model_id} == {model_id, other.model_id}, "pages cover both")
try:
    client.search_logged_models(experiment_ids=[exp_id], filter_string="metrics.acc > 0.5")
    raise AssertionError("an unsupported filter was accepted")
except MlflowException as e:
    check(e.error_code == "INVALID_PARAMETER_VALUE", f"unsupported filter error {e.error_code}")

# Tags: set, overwrite, delete.
client.set_logged_model_tags(model_id, {"stage": "candidate", "team": "platform"})
m = client.get_logged_model(model_id)
check(m.tags.get("stage") == "candidate" and m.tags.get("team") == "platform", f"set tags {m.tags}")
client.delete_logged_model_tag(model_id, "stage")
check("stage" not in client.get_logged_model(model_id).tags, "deleted tag")
try:
    client.delete_logged_model_tag(model_id, "stage")
    raise AssertionError("deleting a missing tag succeeded")
except MlflowException as e:
    check(e.error_code == "RESOURCE_DOES_NOT_EXIST", f"missing tag error {e.error_code}")

# Finalize by hand, as a client that uploads on its own does.
pending = mlflow.initialize_logged_model(name="pending", experiment_id=exp_id)
check(pending.status == LoggedModelStatus.PENDING and pending.source_run_id is None
      or pending.source_run_id == "", f"new model {pending}")
failed = client.finalize_logged_model(pending.model_id, LoggedModelStatus.FAILED)
check(failed.status == LoggedModelStatus.FAILED, f"finalized status {failed.status}")
hits = client.search_logged_models(experiment_ids=[exp_id], filter_string="status = 'FAILED'")
check([x.model_id for x in hits] == [pending.model_id], f"search by status FAILED {hits}")

# Delete: gone from get and search, still readable with allow_deleted.
client.delete_logged_model(other.model_id)
try:
    client.get_logged_model(other.model_id)
    raise AssertionError("a deleted model was found")
except MlflowException as e:
    check(e.error_code == "RESOURCE_DOES_NOT_EXIST", f"deleted model error {e.error_code}")
left = client.search_logged_models(experiment_ids=[exp_id], filter_string="name = 'other'")
check(len(left) == 0, f"deleted model still searched: {left}")
try:
    client.get_logged_model("m-" + "0" * 32)
    raise AssertionError("an unknown model was found")
except MlflowException as e:
    check(e.error_code == "RESOURCE_DOES_NOT_EXIST", f"unknown model error {e.error_code}")

print(json.dumps({"experiment_id": exp_id, "run_id": run_id, "model_id": model_id,
                  "deleted_model_id": other.model_id}))
sys.stdout.flush()
