"""MLflow's own Python client against gantry's MLflow-compatible API.

Run by tests/mlflow_client.rs with MLFLOW_TRACKING_URI pointing at the server; prints the
ids it created as JSON on the last line so the Rust side can check the store.
"""

import json
import math
import os
import sys
import tempfile
import time

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException


def check(cond, what):
    if not cond:
        raise AssertionError(what)


client = MlflowClient()

# Experiments.
exp_id = mlflow.create_experiment("client-test", tags={"owner": "ci"})
check(exp_id not in ("", "0"), f"new experiment id {exp_id!r}")
exp = client.get_experiment_by_name("client-test")
check(exp.experiment_id == exp_id and exp.tags.get("owner") == "ci", f"experiment {exp}")
try:
    mlflow.create_experiment("client-test")
    raise AssertionError("a duplicate experiment was accepted")
except MlflowException as e:
    check(e.error_code == "RESOURCE_ALREADY_EXISTS", f"duplicate error {e.error_code}")
mlflow.set_experiment("client-test")

# Runs: params, metrics with steps, tags, batches, artifacts.
run_ids = []
for i, (lr, accs) in enumerate([("0.1", [0.3, 0.6, 0.9]), ("0.1", [0.2, 0.4]), ("0.01", [0.8]), ("0.1", [0.1])]):
    with mlflow.start_run(run_name=f"run-{i}") as run:
        run_ids.append(run.info.run_id)
        mlflow.log_param("lr", lr)
        mlflow.log_params({"depth": i, "kind": "tree"})
        for step, acc in enumerate(accs):
            mlflow.log_metric("acc", acc, step=step)
        mlflow.set_tag("idx", str(i))
        mlflow.log_metrics({"loss": 1.0 - accs[-1], "nan_metric": float("nan"), "inf_metric": float("inf")})
        if i == 0:
            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "model.txt")
                with open(p, "w") as f:
                    f.write("weights v1")
                mlflow.log_artifact(p)
                sub = os.path.join(d, "tree")
                os.makedirs(os.path.join(sub, "deep"))
                for name, body in [("a.txt", "alpha"), ("deep/b.txt", "beta")]:
                    with open(os.path.join(sub, name), "w") as f:
                        f.write(body)
                mlflow.log_artifacts(sub, artifact_path="tree")
        time.sleep(0.01)

first = run_ids[0]
r = client.get_run(first)
check(r.info.status == "FINISHED", f"status {r.info.status}")
check(r.info.run_name == "run-0", f"run name {r.info.run_name}")
check(r.data.params == {"lr": "0.1", "depth": "0", "kind": "tree"}, f"params {r.data.params}")
check(r.data.metrics["acc"] == 0.9, f"latest acc {r.data.metrics}")
check(math.isnan(r.data.metrics["nan_metric"]), "NaN round trip")
check(r.data.metrics["inf_metric"] == float("inf"), "inf round trip")
check(r.data.tags["idx"] == "0", f"tags {r.data.tags}")

# Params are immutable.
try:
    client.log_param(first, "lr", "0.5")
    raise AssertionError("changing a param was accepted")
except MlflowException as e:
    check(e.error_code == "INVALID_PARAMETER_VALUE", f"param change error {e.error_code}")

# log_batch straight through the client, 1000 entries.
batch_run = client.create_run(exp_id, run_name="batch")
bid = batch_run.info.run_id
now = int(time.time() * 1000)
client.log_batch(
    bid,
    metrics=[Metric("series", float(i), now + i, i) for i in range(990)],
    params=[Param(f"p{i}", str(i)) for i in range(5)],
    tags=[RunTag(f"t{i}", "x") for i in range(5)],
)
history = client.get_metric_history(bid, "series")
check(len(history) == 990, f"history length {len(history)}")
check([m.step for m in history] == list(range(990)), "history order")
client.set_terminated(bid, status="KILLED")
check(client.get_run(bid).info.status == "KILLED", "set_terminated")

# Metric history of a stepped metric.
acc_hist = client.get_metric_history(first, "acc")
check([(m.step, m.value) for m in acc_hist] == [(0, 0.3), (1, 0.6), (2, 0.9)], f"acc history {acc_hist}")

# Artifacts: list and download back.
arts = sorted(a.path for a in client.list_artifacts(first))
check(arts == ["model.txt", "tree"], f"artifacts {arts}")
deep = [a.path for a in client.list_artifacts(first, "tree/deep")]
check(deep == ["tree/deep/b.txt"], f"deep artifacts {deep}")
with tempfile.TemporaryDirectory() as d:
    local = mlflow.artifacts.download_artifacts(run_id=first, artifact_path="model.txt", dst_path=d)
    with open(local) as f:
        check(f.read() == "weights v1", "downloaded file")
    tree = mlflow.artifacts.download_artifacts(run_id=first, artifact_path="tree", dst_path=d)
    with open(os.path.join(tree, "deep", "b.txt")) as f:
        check(f.read() == "beta", "downloaded directory")

# Search with filters, ordering and pagination.
found = client.search_runs(
    [exp_id], filter_string="metrics.acc > 0.5 and params.lr = '0.1'", order_by=["metrics.acc DESC"]
)
check([x.info.run_name for x in found] == ["run-0"], f"filtered {[x.info.run_name for x in found]}")
ordered = client.search_runs([exp_id], filter_string="params.kind = 'tree'", order_by=["metrics.acc ASC"])
check([x.info.run_name for x in ordered] == ["run-3", "run-1", "run-2", "run-0"], f"ordered {[x.info.run_name for x in ordered]}")
names = []
page = client.search_runs([exp_id], max_results=2, order_by=["attributes.start_time ASC"])
pages = 1
names += [x.info.run_name for x in page]
while page.token:
    page = client.search_runs([exp_id], max_results=2, order_by=["attributes.start_time ASC"], page_token=page.token)
    names += [x.info.run_name for x in page]
    pages += 1
check(names == ["run-0", "run-1", "run-2", "run-3", "batch"], f"paged {names}")
check(pages == 3, f"pages {pages}")
# MLflow's tokens are offsets: the next page may be asked with another page size.
page_of_1 = client.search_runs([exp_id], max_results=1, order_by=["attributes.start_time ASC"])
page_of_3 = client.search_runs([exp_id], max_results=3, order_by=["attributes.start_time ASC"], page_token=page_of_1.token)
check([x.info.run_name for x in page_of_1] + [x.info.run_name for x in page_of_3] == ["run-0", "run-1", "run-2", "run-3"],
      f"a page size changed between pages {[x.info.run_name for x in page_of_1]} {[x.info.run_name for x in page_of_3]}")
page_of_10 = client.search_runs([exp_id], max_results=10, order_by=["attributes.start_time ASC"], page_token=page_of_3.token)
check([x.info.run_name for x in page_of_10] == ["batch"] and not page_of_10.token, f"last page {[x.info.run_name for x in page_of_10]}")
tagged = client.search_runs([exp_id], filter_string="tags.idx = '2' and attributes.status = 'FINISHED'")
check(len(tagged) == 1 and tagged[0].data.params["lr"] == "0.01", f"search by tag {tagged}")

# Delete and restore.
client.delete_run(run_ids[3])
check(len(client.search_runs([exp_id], filter_string="params.kind = 'tree'")) == 3, "deleted run hidden")
client.restore_run(run_ids[3])
check(len(client.search_runs([exp_id], filter_string="params.kind = 'tree'")) == 4, "restored run back")

# Model registry.
client.create_registered_model("iris-model", tags={"team": "ml"}, description="flowers")
v1 = client.create_model_version("iris-model", f"runs:/{first}/model", run_id=first)
v2 = client.create_model_version("iris-model", f"runs:/{run_ids[2]}/model", run_id=run_ids[2], tags={"good": "yes"})
check((v1.version, v2.version) in [("1", "2"), (1, 2)], f"versions {v1.version} {v2.version}")
client.set_registered_model_alias("iris-model", "champion", v2.version)
champ = client.get_model_version_by_alias("iris-model", "champion")
check(str(champ.version) == "2" and champ.run_id == run_ids[2], f"alias {champ}")
rm = client.get_registered_model("iris-model")
check(rm.aliases == {"champion": "2"} or rm.aliases == {"champion": 2}, f"aliases {rm.aliases}")
check(rm.description == "flowers", f"description {rm.description}")
models = client.search_registered_models(filter_string="name LIKE 'iris%'")
check([m.name for m in models] == ["iris-model"], f"models {models}")
versions = client.search_model_versions("name = 'iris-model'")
check(sorted(str(v.version) for v in versions) == ["1", "2"], f"model versions {versions}")
client.update_model_version("iris-model", v1.version, description="first")
check(client.get_model_version("iris-model", v1.version).description == "first", "version description")
client.delete_registered_model_alias("iris-model", "champion")
try:
    client.get_model_version_by_alias("iris-model", "champion")
    raise AssertionError("a deleted alias still resolves")
except MlflowException as e:
    check(e.error_code == "RESOURCE_DOES_NOT_EXIST", f"alias error {e.error_code}")
client.set_registered_model_alias("iris-model", "champion", v1.version)
# Aliases as MLflow accepts them: any case, leading digits or underscores; `latest` (any case)
# and v<digits> are reserved.
client.set_registered_model_alias("iris-model", "Prod_2024-Q1", v2.version)
check(str(client.get_model_version_by_alias("iris-model", "Prod_2024-Q1").version) == "2", "a mixed-case alias")
for reserved in ["Latest", "v3"]:
    try:
        client.set_registered_model_alias("iris-model", reserved, v1.version)
        raise AssertionError(f"the reserved alias {reserved} was accepted")
    except MlflowException as e:
        check(e.error_code == "INVALID_PARAMETER_VALUE", f"reserved alias error {e.error_code}")
client.delete_registered_model_alias("iris-model", "Prod_2024-Q1")

# Stages (deprecated by MLflow in favour of aliases, still used by many clients), version
# numbers never reused after a delete, and rename.
client.create_registered_model("stage-model")
s1 = client.create_model_version("stage-model", f"runs:/{first}/model", run_id=first)
s2 = client.create_model_version("stage-model", f"runs:/{first}/model", run_id=first)
check(s1.current_stage == "None", f"a new version's stage {s1.current_stage}")
moved = client.transition_model_version_stage("stage-model", s1.version, "staging")
check(moved.current_stage == "Staging", f"stage after transition {moved.current_stage}")
client.transition_model_version_stage("stage-model", s2.version, "Production")
client.transition_model_version_stage("stage-model", s1.version, "Production", archive_existing_versions=True)
check(client.get_model_version("stage-model", s2.version).current_stage == "Archived", "archive_existing_versions")
prod = client.get_latest_versions("stage-model", stages=["Production"])
check([str(v.version) for v in prod] == [str(s1.version)], f"latest Production {prod}")
every = client.get_latest_versions("stage-model")
check(sorted((v.current_stage, str(v.version)) for v in every) == [("Archived", "2"), ("Production", "1")],
      f"latest of each stage {[(v.current_stage, v.version) for v in every]}")
try:
    client.transition_model_version_stage("stage-model", s1.version, "Bogus")
    raise AssertionError("an unknown stage was accepted")
except MlflowException as e:
    check(e.error_code == "INVALID_PARAMETER_VALUE", f"unknown stage error {e.error_code}")
client.delete_model_version("stage-model", s2.version)
s3 = client.create_model_version("stage-model", f"runs:/{first}/model", run_id=first)
check(str(s3.version) == "3", f"a deleted version's number was reused: {s3.version}")
client.set_registered_model_alias("stage-model", "live", s1.version)
client.rename_registered_model("stage-model", "renamed-model")
renamed = client.get_registered_model("renamed-model")
check(renamed.aliases in ({"live": "1"}, {"live": 1}), f"renamed model {renamed}")
check(client.get_model_version("renamed-model", s1.version).current_stage == "Production", "stage kept by rename")
check(str(client.get_model_version_by_alias("renamed-model", "live").version) == "1", "alias kept by rename")
try:
    client.get_registered_model("stage-model")
    raise AssertionError("the old name still resolves after rename")
except MlflowException as e:
    check(e.error_code == "RESOURCE_DOES_NOT_EXIST", f"old name error {e.error_code}")
s4 = client.create_model_version("renamed-model", f"runs:/{first}/model", run_id=first)
check(str(s4.version) == "4", f"numbering continues after rename: {s4.version}")
try:
    client.rename_registered_model("renamed-model", "iris-model")
    raise AssertionError("a rename onto an existing model was accepted")
except MlflowException as e:
    check(e.error_code == "RESOURCE_ALREADY_EXISTS", f"rename onto existing error {e.error_code}")

try:
    client.get_run("0" * 32)
    raise AssertionError("an unknown run was found")
except MlflowException as e:
    check(e.error_code == "RESOURCE_DOES_NOT_EXIST", f"unknown run error {e.error_code}")

print(json.dumps({"experiment_id": exp_id, "runs": run_ids, "batch_run": bid}))
sys.stdout.flush()
