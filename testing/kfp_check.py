#!/usr/bin/env python3
"""Checks Kubeflow Pipelines v2 IR YAML files (what `kfp.compiler.Compiler().compile` writes:
a PipelineSpec document, optionally followed by a PlatformSpec document).

Usage: kfp_check.py FILE...   (exit 0: every file passes; 1: some file fails; 2: usage)

Each file must pass all of:
1. `kfp.components.load_component_from_file` (the SDK's own loader);
2. protobuf parsing of the first document as `pipeline_spec_pb2.PipelineSpec` and of the
   second, if any, as `PlatformSpec`, with `ignore_unknown_fields=False`, so a misspelt or
   unknown field anywhere in the typed part is an error;
3. the same for every executor in `deploymentSpec` (a free-form `google.protobuf.Struct` in
   PipelineSpec) as `PipelineDeploymentConfig.ExecutorSpec`, as the KFP backend reads it;
4. references: every `componentRef` names a component, every component's `executorLabel` an
   executor (or it has a `dag`), every `dependentTasks` / `producerTask` a task of the same
   DAG, every `componentInputParameter` / `componentInputArtifact` an input of the enclosing
   component;
5. the loaded component compiles again (`Compiler().compile` of what step 1 returned).

Errors go to stdout, one block per file, naming the file and the step.
"""
import os
import sys
import tempfile

import yaml
from google.protobuf import json_format
from kfp import compiler, components
from kfp.pipeline_spec import pipeline_spec_pb2
from kfp.kubernetes import kubernetes_executor_config_pb2

KNOWN_SCHEMA_VERSIONS = {"2.0.0", "2.1.0"}


def parse(message, value, what):
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        raise CheckError(f"{what} is not a valid {type(message).__name__}: {e}") from None
    return message


class CheckError(Exception):
    pass


def check_references(spec: dict) -> list:
    """Dangling names in a PipelineSpec dict (step 4)."""
    errors = []
    comps = spec.get("components") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}

    def inputs_of(component):
        defs = component.get("inputDefinitions") or {}
        return set(defs.get("parameters") or {}), set(defs.get("artifacts") or {})

    def check_component(name, component):
        label = component.get("executorLabel")
        if label is not None and label not in executors:
            errors.append(f"{name}: executorLabel {label!r} names no executor in deploymentSpec.executors")
        dag = component.get("dag")
        if label is None and dag is None:
            errors.append(f"{name}: neither executorLabel nor dag")
        if dag is None:
            return
        params, artifacts = inputs_of(component)
        tasks = dag.get("tasks") or {}
        for task_name, task in tasks.items():
            where = f"{name}.dag.tasks.{task_name}"
            ref = (task.get("componentRef") or {}).get("name")
            if ref not in comps:
                errors.append(f"{where}: componentRef {ref!r} names no component")
            for dep in task.get("dependentTasks") or []:
                if dep not in tasks:
                    errors.append(f"{where}: dependentTasks names {dep!r}, not a task of this DAG")
            task_inputs = task.get("inputs") or {}
            for kind, values in (("parameters", task_inputs.get("parameters") or {}),
                                 ("artifacts", task_inputs.get("artifacts") or {})):
                for input_name, value in values.items():
                    producer = ((value.get("taskOutputParameter") or value.get("taskOutputArtifact") or {})
                                .get("producerTask"))
                    if producer is not None and producer not in tasks:
                        errors.append(f"{where}.inputs.{kind}.{input_name}: producerTask {producer!r} is not a task of this DAG")
                    p = value.get("componentInputParameter")
                    if p is not None and p not in params:
                        errors.append(f"{where}.inputs.{kind}.{input_name}: componentInputParameter {p!r} is not an input parameter of {name}")
                    a = value.get("componentInputArtifact")
                    if a is not None and a not in artifacts:
                        errors.append(f"{where}.inputs.{kind}.{input_name}: componentInputArtifact {a!r} is not an input artifact of {name}")

    for name, component in comps.items():
        check_component(f"components.{name}", component)
    if "root" in spec:
        check_component("root", spec["root"])
    return errors


def check_file(path: str) -> list:
    errors = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        docs = [d for d in yaml.safe_load_all(text)]
    except yaml.YAMLError as e:
        return [f"not YAML: {e}"]
    if len(docs) not in (1, 2) or not all(isinstance(d, dict) for d in docs):
        return [f"expected one or two YAML mappings (PipelineSpec, then optionally PlatformSpec), got {len(docs)} document(s) of types {[type(d).__name__ for d in docs]}"]
    spec = docs[0]
    if "pipelineSpec" in spec:
        return ["the document wraps the spec in `pipelineSpec` (a PipelineJob); Compiler().compile's IR YAML has the PipelineSpec fields at the top level"]

    # 1. The SDK's loader.
    loaded = None
    try:
        loaded = components.load_component_from_file(path)
    except Exception as e:  # noqa: BLE001 -- every loader failure is a finding
        errors.append(f"kfp.components.load_component_from_file: {type(e).__name__}: {e}")

    # 2, 3. Typed protobuf parsing, unknown fields rejected.
    try:
        parse(pipeline_spec_pb2.PipelineSpec(), spec, "document 1")
        if len(docs) == 2:
            parse(pipeline_spec_pb2.PlatformSpec(), docs[1], "document 2")
            # Each executor's Kubernetes config is a free-form Struct in PlatformSpec; the KFP
            # backend reads it as kfp-kubernetes' KubernetesExecutorConfig, unknown fields
            # refused, so a field the released kfp-kubernetes lacks is an error here too.
            k8s = ((docs[1].get("platforms") or {}).get("kubernetes") or {})
            configs = ((k8s.get("deploymentSpec") or {}).get("executors") or {})
            if not isinstance(configs, dict):
                raise CheckError("platforms.kubernetes.deploymentSpec.executors is not a mapping")
            for name, config in configs.items():
                parse(kubernetes_executor_config_pb2.KubernetesExecutorConfig(), config,
                      f"platforms.kubernetes.deploymentSpec.executors.{name}")
        executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
        if not isinstance(executors, dict):
            raise CheckError("deploymentSpec.executors is not a mapping")
        for name, executor in executors.items():
            parse(pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec(), executor,
                  f"deploymentSpec.executors.{name}")
    except CheckError as e:
        errors.append(str(e))

    for field in ("pipelineInfo", "root", "schemaVersion", "components", "deploymentSpec"):
        if field not in spec:
            errors.append(f"missing top-level field {field!r}")
    version = spec.get("schemaVersion")
    if version is not None and version not in KNOWN_SCHEMA_VERSIONS:
        errors.append(f"schemaVersion {version!r} is not one of {sorted(KNOWN_SCHEMA_VERSIONS)}")

    # 4. References.
    if not errors:
        errors.extend(check_references(spec))

    # 5. Round trip through the compiler.
    if loaded is not None and not errors:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                compiler.Compiler().compile(loaded, os.path.join(tmp, "again.yaml"))
            except Exception as e:  # noqa: BLE001
                errors.append(f"compiling the loaded pipeline again: {type(e).__name__}: {e}")
    return errors


def main(argv):
    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    failed = False
    for path in argv:
        try:
            errors = check_file(path)
        except OSError as e:
            errors = [f"cannot read: {e}"]
        if errors:
            failed = True
            print(f"FAIL {path}:")
            for e in errors:
                print(f"  {e}")
        else:
            print(f"ok {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
