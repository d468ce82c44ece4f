"""Asks an Open Inference Protocol server for iris predictions with the real tritonclient.

Usage: tritonclient_check.py PROTOCOL ADDRESS MODEL [ID_PREFIX]
  PROTOCOL   http or grpc
  ADDRESS    host:port
  ID_PREFIX  request ids are ID_PREFIX-WAY (default triton-PROTOCOL)

Sends the same two rows several ways (binary inputs and outputs, tritonclient's default; JSON
inputs with binary outputs; JSON both ways; only some outputs requested) and prints one JSON
object: the server's liveness/readiness, the model's metadata, and for each way the `predict`
labels and the `probabilities` matrix, so the caller compares them with what it expects.
"""

import json
import sys

import numpy as np

ROWS = [(5.1, 3.5, 1.4, 0.2), (6.7, 3.0, 5.2, 2.3)]
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def main():
    protocol, address, model = sys.argv[1:4]
    prefix = sys.argv[4] if len(sys.argv) > 4 else f"triton-{protocol}"
    if protocol == "http":
        import tritonclient.http as client_module
    else:
        import tritonclient.grpc as client_module
    client = client_module.InferenceServerClient(url=address)
    result = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
    }
    meta = client.get_model_metadata(model)
    if protocol == "grpc":
        from google.protobuf.json_format import MessageToDict

        meta = MessageToDict(meta, preserving_proto_field_name=True)
    result["inputs"] = [i["name"] for i in meta["inputs"]]
    result["outputs"] = [o["name"] for o in meta["outputs"]]

    def inputs(binary):
        made = []
        for c, name in enumerate(COLUMNS):
            tensor = client_module.InferInput(name, [len(ROWS)], "FP64")
            data = np.array([r[c] for r in ROWS], dtype=np.float64)
            if protocol == "http":
                tensor.set_data_from_numpy(data, binary_data=binary)
            else:
                tensor.set_data_from_numpy(data)
            made.append(tensor)
        return made

    def outputs(names, binary):
        if protocol == "http":
            return [client_module.InferRequestedOutput(n, binary_data=binary) for n in names]
        return [client_module.InferRequestedOutput(n) for n in names]

    def answer(response, names):
        got = {}
        for name in names:
            array = response.as_numpy(name)
            if array is None:
                got[name] = None
            elif array.dtype == object:
                got[name] = [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
            else:
                got[name] = array.tolist()
        return got

    both = ["predict", "probabilities"]
    ways = {
        "default": dict(inputs=inputs(True), outputs=None),
        "json_inputs": dict(inputs=inputs(False), outputs=None),
        "json_both": dict(inputs=inputs(False), outputs=outputs(both, False)),
        "binary_outputs": dict(inputs=inputs(True), outputs=outputs(both, True)),
        "only_predict": dict(inputs=inputs(True), outputs=outputs(["predict"], True)),
    }
    for way, kwargs in ways.items():
        response = client.infer(model, request_id=f"{prefix}-{way}", **kwargs)
        names = ["predict"] if way == "only_predict" else both
        got = answer(response, names)
        if way == "only_predict":
            got["probabilities_present"] = response.get_output("probabilities") is not None
        got["id"] = response.get_response().id if protocol == "grpc" else response.get_response()["id"]
        result[way] = got

    # A bad request: the error reaches the client as an exception carrying the server's message.
    try:
        bad = client_module.InferInput("petal_colour", [2], "FP64")
        bad.set_data_from_numpy(np.array([1.0, 2.0]))
        client.infer(model, [bad])
        result["bad_request"] = "accepted"
    except Exception as e:  # tritonclient raises InferenceServerException
        result["bad_request"] = str(e)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
