"""The tiny two-step pipeline whose compiled IR is kfp_valid.yaml (regenerate with
`.venv-kfp/bin/python testing/selftest/kfp_pipeline.py testing/selftest/kfp_valid.yaml`;
run.sh checks it is current).

Container components, as Gantry emits them: an image, a command, artifacts passed between
steps, resource limits, a retry policy and caching off."""
import sys

from kfp import compiler, dsl


@dsl.container_component
def prepare(rows: int, dataset: dsl.Output[dsl.Dataset]):
    return dsl.ContainerSpec(
        image="registry.example.com/gantry/prepare:1.0",
        command=["gantry-step", "prepare"],
        args=["--rows", rows, "--out", dataset.path],
    )


@dsl.container_component
def train(dataset: dsl.Input[dsl.Dataset], learning_rate: float, model: dsl.Output[dsl.Model]):
    return dsl.ContainerSpec(
        image="registry.example.com/gantry/train:1.0",
        command=["gantry-step", "train"],
        args=["--data", dataset.path, "--lr", learning_rate, "--model", model.path],
    )


@dsl.pipeline(name="gantry-selftest", description="Two steps: prepare a dataset, train on it.")
def pipeline(rows: int = 100, learning_rate: float = 0.1):
    p = prepare(rows=rows).set_caching_options(False)
    t = train(dataset=p.outputs["dataset"], learning_rate=learning_rate)
    t.set_cpu_limit("2").set_memory_limit("4G").set_retry(num_retries=2)
    t.set_display_name("train the model")


if __name__ == "__main__":
    compiler.Compiler().compile(pipeline, sys.argv[1])
