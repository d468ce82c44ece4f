#!/usr/bin/env python3
"""Model serving: Gantry's model server next to MLServer and `mlflow models serve`, measured in
the same run on the same machine, over loopback, with the same model and the same requests.

The model: L2 logistic regression on standardized features, for the 30-feature breast-cancer CSV
(examples/breast-cancer, label `diagnosis`), fit on every row. Gantry trains it the Gantry way
(a pipeline: csv-ingest -> clean {standardize: true} -> train {algorithm: logistic} -> register
as NAME@champion); the peers get scikit-learn's Pipeline([StandardScaler(), LogisticRegression()])
fit on the same rows (bench/serving/train_sklearn.py). Before a server is measured it answers a
few rows once, and the script prints whether its labels agree with the others' and with
scikit-learn's own predictions.

Prints, for each server and each of (1 row, 64 rows) x (concurrency 1, 32): requests/s, rows/s
and p50/p99 latency, from `wrk --latency` (-t1 -c1 and -t2 -c32; a warm-up run, then a fixed
duration of 10 s, 3 s with --quick; one pre-encoded request body per case), then Gantry's
throughput ratio and how many times lower its p99 is, against each peer.
Target: >= 10x MLServer's throughput; p99 < 2 ms for a single row at concurrency 1.

Servers, one at a time (only one is alive while measured; wrk shares the same CPUs):
  * gantry: `gantry serve NAME@champion --listen ...` (release build), OIP v2 REST,
    `POST /v2/models/NAME/infer` with one FP64 [N, 30] tensor in the CSV's column order;
  * gantry-binary: the same `gantry serve`, the same tensor sent with the OIP binary tensor
    data extension (what tritonclient sends by default: a JSON header of
    `Inference-Header-Content-Length` bytes, then the FP64 values little-endian), JSON answer;
  * gantry-deployed: the same model deployed (`gantry deploy`) behind `gantry server`: the
    control plane routes each request into a runc replica's network namespace and commits
    its prediction-log record before answering (the production path; its own ratio line).
    This is where the prediction log's write rate is measured: each record is appended to
    the server's journal before the answer leaves, then copied into the database up to 512
    records a transaction and counted into the monitor's buckets off the request path;
  * gantry-grpc: the same `gantry serve` with `--grpc-listen`, the same tensor through the OIP
    gRPC API's ModelInfer with `raw_input_contents` (what tritonclient.grpc sends), driven by
    crates/gantry-serve/examples/grpc_load.rs (a closed loop like wrk: one HTTP/2 connection
    per concurrent caller; built with cargo when missing), against mlserver-grpc;
  * MLServer 1.7.1 + mlserver-sklearn, the same OIP v2 body; defaults except `debug: false`
    (no access log) and no metrics server: `parallel_workers` stays 1, i.e. one inference
    worker process behind the asyncio front end; mlserver-grpc is the same server's gRPC port
    under the same load generator as gantry-grpc;
  * MLflow 3.17.2 `mlflow models serve --env-manager local` (one uvicorn worker, its default;
    access log off), `POST /invocations` with {"inputs": [[30 floats], ...]}.

Peers run from venvs this script creates and caches: `.venv-bench` (MLflow, shared with
bench/tracking.py) and `.venv-bench/mlserver` (MLServer pins a FastAPI/protobuf older than
MLflow's, so it gets its own); both hold the same scikit-learn, so the pickle loads in both.
Needs `wrk` (installed with apt-get when missing and running as root).

Usage: bench/serving.py [--gantry target/release/gantry] [--quick]
                        [--only gantry,gantry-binary,gantry-grpc,gantry-deployed,mlserver,
                                mlserver-grpc,mlflow]
                        [--json PATH]
"""
import argparse, csv, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.error, urllib.request
from common import free_port, ensure_wrk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPERS = os.path.join(ROOT, "bench", "serving")
CSV_PATH = os.path.join(ROOT, "examples", "breast-cancer", "data", "breast_cancer.csv")
LABEL = "diagnosis"
MODEL = "bc-logistic"
SERVERS = ("gantry", "gantry-binary", "gantry-grpc", "gantry-deployed", "mlserver", "mlserver-grpc",
           "mlflow")
CASES = [(1, 1), (1, 32), (64, 1), (64, 32)]  # (rows per request, concurrent connections)

MLFLOW_VERSION = "3.17.2"  # the same as bench/tracking.py, which shares the venv
MLSERVER_VERSION = "1.7.1"
# Both venvs get these, so the joblib pickle written with one loads in the other unchanged.
SHARED_PINS = {"scikit-learn": "1.9.1", "numpy": "2.4.6", "scipy": "1.17.1", "pandas": "3.1.1",
               "joblib": "1.6.0"}
# uvloop 0.22 removed the implicit event loop that MLServer 1.7.1's inference workers rely on.
MLSERVER_PINS = {"mlserver": MLSERVER_VERSION, "mlserver-sklearn": MLSERVER_VERSION,
                 "uvloop": "0.21.0"}

PIPELINE = f"""\
name: serving-bench
description: the model bench/serving.py serves, trained like its scikit-learn twin
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: {{ source: data.csv }}
    outputs: [dataset]
  - name: clean
    uses: builtin/clean
    inputs: {{ dataset: ingest.dataset }}
    with: {{ label: {LABEL}, standardize: true }}
    outputs: [dataset, transform]
  - name: train
    uses: builtin/train
    inputs: {{ train: clean.dataset, transform: clean.transform }}
    with: {{ label: {LABEL}, algorithm: logistic }}
    outputs: [model]
  - name: register
    uses: builtin/register
    inputs: {{ model: train.model }}
    with: {{ model: {MODEL}, alias: champion }}
    outputs: [registration]
"""


def http(method, url, body=None, timeout=30):
    """One request; returns (status, parsed JSON or raw text), never raises on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


# ---------------------------------------------------------------- environment

def ensure_venv(venv, pins, imports):
    """Creates `venv` or installs `pins` into it unless `imports` import and every pin matches."""
    py = os.path.join(venv, "bin", "python")
    check = (f"import {imports}\nfrom importlib.metadata import version\n"
             f"pins = {pins!r}\n"
             "bad = {p: version(p) for p in pins if version(p) != pins[p]}\n"
             "raise SystemExit(repr(bad) if bad else 0)\n")
    if os.path.exists(py) and subprocess.run([py, "-c", check], capture_output=True).returncode == 0:
        return py
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    print(f"installing into {os.path.relpath(venv, ROOT)}: "
          + " ".join(f"{p}=={v}" for p, v in pins.items()), file=sys.stderr)
    subprocess.run([py, "-m", "pip", "install", "-q"] + [f"{p}=={v}" for p, v in pins.items()],
                   check=True)
    return py


def read_dataset():
    with open(CSV_PATH, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    li = header.index(LABEL)
    features = [h for i, h in enumerate(header) if i != li]
    x = [[float(v) for i, v in enumerate(r) if i != li] for r in rows[1:]]
    y = [r[li] for r in rows[1:]]
    return features, x, y


# ---------------------------------------------------------------- request bodies and answers

def oip_binary_body(rows, input_name, order):
    """The same tensor as `oip_body`, as the binary tensor extension sends it: (bytes, header length)."""
    import struct
    values = [r[j] for r in rows for j in order]
    header = json.dumps({"inputs": [{"name": input_name, "datatype": "FP64",
                                     "shape": [len(rows), len(order)],
                                     "parameters": {"binary_data_size": 8 * len(values)}}]}).encode()
    return header + struct.pack(f"<{len(values)}d", *values), len(header)


def oip_body(rows, input_name, order):
    """OIP v2: one FP64 [N, F] tensor, row-major, columns in `order` (indices into the CSV's)."""
    return {"inputs": [{"name": input_name, "datatype": "FP64", "shape": [len(rows), len(order)],
                        "data": [r[j] for r in rows for j in order]}]}


def mlflow_body(rows):
    return {"inputs": rows}


def flat(v):
    return [w for x in v for w in flat(x)] if isinstance(v, list) else [v]


def oip_labels(answer):
    """The predicted labels in an OIP v2 answer: its BYTES output, or one named like a label."""
    outs = answer.get("outputs", []) if isinstance(answer, dict) else []
    for o in outs:
        if o.get("datatype") == "BYTES":
            return [str(v) for v in flat(o.get("data", []))]
    for o in outs:
        if o.get("name") in ("label", "labels", "predict", "prediction", "predictions", "class"):
            return [str(v) for v in flat(o.get("data", []))]
    return None


def mlflow_labels(answer):
    preds = answer.get("predictions") if isinstance(answer, dict) else None
    return [str(v) for v in flat(preds)] if preds is not None else None


def find_feature_order(meta, features):
    """A list of strings anywhere in the model metadata that is a permutation of the features."""
    if isinstance(meta, list):
        if len(meta) == len(features) and all(isinstance(v, str) for v in meta) \
                and sorted(meta) == sorted(features):
            return meta
        items = meta
    elif isinstance(meta, dict):
        items = meta.values()
    else:
        return None
    for v in items:
        found = find_feature_order(v, features)
        if found:
            return found
    return None


# ---------------------------------------------------------------- servers

class Server:
    """One server process: started in its own session, so stopping it stops its children."""

    def __init__(self, name, cmd, env, cwd, log):
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive_or_exit(self):
        if self.proc.poll() is not None:
            sys.exit(f"{self.name} exited with {self.proc.returncode}; its log:\n{self.tail()}")

    def tail(self, n=40):
        with open(self.log, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def wait_ready(self, url, limit=180):
        deadline = time.time() + limit
        while time.time() < deadline:
            self.alive_or_exit()
            try:
                if http("GET", url, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"{self.name} did not answer 200 on {url} within {limit} s; its log:\n{self.tail()}")

    def stop(self):
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def train_gantry(args, work, env):
    project = os.path.join(work, "gantry-project")
    os.makedirs(project)
    shutil.copy(CSV_PATH, os.path.join(project, "data.csv"))
    with open(os.path.join(project, "pipeline.yaml"), "w") as f:
        f.write(PIPELINE)
    out = subprocess.run([args.gantry, "run", "pipeline.yaml"], cwd=project, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"`gantry run` of the training pipeline failed ({out.returncode}):\n"
                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


def train_peers(py, work, check_rows):
    out = subprocess.run([py, os.path.join(HELPERS, "train_sklearn.py"), CSV_PATH, LABEL, MODEL,
                          os.path.join(work, "sklearn"), json.dumps(check_rows)],
                         capture_output=True, text=True, env=dict(os.environ, **QUIET_MLFLOW))
    if out.returncode:
        sys.exit(f"training the scikit-learn model failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def start_gantry(args, work, env, features, grpc=False):
    port, grpc_port = free_port(), free_port()
    cmd = [args.gantry, "serve", f"{MODEL}@champion", "--listen", f"127.0.0.1:{port}"]
    if grpc:
        cmd += ["--grpc-listen", f"127.0.0.1:{grpc_port}"]
    srv = Server("gantry serve", cmd, env, work, os.path.join(work, "gantry.log"))
    base = f"http://127.0.0.1:{port}"
    srv.wait_ready(base + "/v2/health/ready")
    status, meta = http("GET", f"{base}/v2/models/{MODEL}")
    input_name, order = "input-0", list(range(len(features)))
    if status != 200 or not isinstance(meta, dict):
        print(f"  [gantry] GET /v2/models/{MODEL}: {status} {str(meta)[:200]}; sending input-0 "
              "in the CSV's column order", file=sys.stderr)
    else:
        inputs = meta.get("inputs") or []
        desc = ", ".join(f"{i.get('name')} {i.get('datatype')} {i.get('shape')}" for i in inputs[:3])
        print(f"  [gantry] model inputs: {desc}{' ...' if len(inputs) > 3 else ''}",
              file=sys.stderr)
        if len(inputs) == 1 and inputs[0].get("name"):
            input_name = inputs[0]["name"]
        names = find_feature_order(meta, features)
        if names and names != features:
            order = [features.index(n) for n in names]
            print("  [gantry] the model's column order differs from the CSV's: following the "
                  "model's", file=sys.stderr)
        elif names is None:
            print("  [gantry] no feature names in the model metadata: sending the CSV's column "
                  "order", file=sys.stderr)
    return srv, {"url": f"{base}/v2/models/{MODEL}/infer",
                 "body": lambda rows: oip_body(rows, input_name, order), "labels": oip_labels,
                 "binary": lambda rows: oip_binary_body(rows, input_name, order),
                 "grpc": f"http://127.0.0.1:{grpc_port}", "input": input_name, "order": order}


def start_gantry_deployed(args, work, env, features):
    port = free_port()
    srv = Server("gantry server", [args.gantry, "server", "--listen", f"127.0.0.1:{port}"], env,
                 work, os.path.join(work, "gantry-server.log"))
    base = f"http://127.0.0.1:{port}"
    srv.wait_ready(base + "/healthz")
    name = "bc-prod"
    out = subprocess.run([args.gantry, "--server", base, "deploy", name, "--model",
                          f"{MODEL}@champion", "--cpu", "1", "--memory", "512Mi"],
                         env=env, cwd=work, capture_output=True, text=True)
    if out.returncode:
        srv.stop()
        sys.exit(f"`gantry deploy` failed ({out.returncode}):\n{out.stderr[-2000:]}")
    srv.wait_ready(f"{base}/v2/models/{name}/ready")
    return srv, {"url": f"{base}/v2/models/{name}/infer",
                 "body": lambda rows: oip_body(rows, "input-0", list(range(len(features)))),
                 "labels": oip_labels}


def start_mlserver(py, work, env, features):
    repo = os.path.join(work, "mlserver")
    os.makedirs(os.path.join(repo, MODEL))
    shutil.copy(os.path.join(work, "sklearn", "model.joblib"), os.path.join(repo, MODEL))
    port = free_port()
    settings = {"debug": False, "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                "metrics_endpoint": None}
    with open(os.path.join(repo, "settings.json"), "w") as f:
        json.dump(settings, f)
    with open(os.path.join(repo, MODEL, "model-settings.json"), "w") as f:
        json.dump({"name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
                   "parameters": {"uri": "./model.joblib"}}, f)
    mlserver = os.path.join(os.path.dirname(py), "mlserver")
    srv = Server("mlserver", [mlserver, "start", "."], env, repo, os.path.join(work, "mlserver.log"))
    base = f"http://127.0.0.1:{port}"
    srv.wait_ready(f"{base}/v2/models/{MODEL}/ready")
    order = list(range(len(features)))
    return srv, {"url": f"{base}/v2/models/{MODEL}/infer",
                 "body": lambda rows: oip_body(rows, "input-0", order), "labels": oip_labels,
                 "grpc": f"http://127.0.0.1:{settings['grpc_port']}", "input": "input-0",
                 "order": order}


def start_mlflow(py, work, env):
    port = free_port()
    bindir = os.path.dirname(py)
    # `mlflow models serve` execs `uvicorn` by name, so the venv's bin must lead PATH.
    env = dict(env, PATH=bindir + os.pathsep + env.get("PATH", ""), UVICORN_ACCESS_LOG="false")
    srv = Server("mlflow models serve",
                 [os.path.join(bindir, "mlflow"), "models", "serve", "-m",
                  os.path.join(work, "sklearn", "mlflow-model"), "--env-manager", "local",
                  "-h", "127.0.0.1", "-p", str(port)], env, work, os.path.join(work, "mlflow.log"))
    base = f"http://127.0.0.1:{port}"
    srv.wait_ready(base + "/ping")
    return srv, {"url": base + "/invocations", "body": mlflow_body, "labels": mlflow_labels}


# ---------------------------------------------------------------- load generation

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(text):
    def latency(pct):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        return float(m.group(1)) * UNITS_MS[m.group(2)] if m else float("nan")
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if not rps:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    return {"req_s": float(rps.group(1)), "requests": int(total.group(1)) if total else 0,
            "p50_ms": latency(50), "p99_ms": latency(99),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0}


def run_wrk(url, body_path, conc, seconds, header_length=None):
    threads = 1 if conc == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{conc}", f"-d{seconds}s", "--latency", "--timeout", "30s",
           "-s", os.path.join(HELPERS, "post.lua"), url]
    env = dict(os.environ, BENCH_BODY=body_path, BENCH_HEADER_LENGTH=str(header_length or ""))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


def measure(name, srv, api, x, args, work, binary=False):
    res = {}
    for rows, conc in CASES:
        body = api["body"](x[:rows])
        body_path = os.path.join(work, f"{name}-{rows}.json")
        header_length = None
        if binary:
            raw, header_length = api["binary"](x[:rows])
            with open(body_path, "wb") as f:
                f.write(raw)
            req = urllib.request.Request(api["url"], data=raw, method="POST", headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(header_length)})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status, answer = resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as e:
                status, answer = e.code, e.read()[:500]
            if status == 200 and oip_labels(answer) != oip_labels(http("POST", api["url"], body)[1]):
                srv.stop()
                sys.exit(f"{name}: the binary request's answer differs from the JSON one's")
        else:
            with open(body_path, "w") as f:
                json.dump(body, f)
            status, answer = http("POST", api["url"], body)
        if status != 200:
            srv.stop()
            sys.exit(f"{name}: {rows}-row request answered {status}: {str(answer)[:500]}")
        run_wrk(api["url"], body_path, conc, args.warmup, header_length)
        srv.alive_or_exit()
        r = run_wrk(api["url"], body_path, conc, args.seconds, header_length)
        srv.alive_or_exit()
        r["rows_s"] = r["req_s"] * rows
        res[(rows, conc)] = r
        bad = ""
        if r["non_2xx"] or r["socket_errors"]:
            bad = f"; {r['non_2xx']} non-2xx, {r['socket_errors']} socket errors"
        print(f"  [{name}] {rows:>2} rows, c={conc:<2}: {r['req_s']:>9,.0f} req/s, p50 "
              f"{r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms ({r['requests']:,} requests{bad})",
              file=sys.stderr)
    return res


def run_grpc_load(args, api, rows_path, conc, seconds):
    out = subprocess.run([args.grpc_load, api["grpc"], MODEL, api["input"], rows_path, str(conc),
                          str(seconds)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"grpc_load failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"req_s": r["req_s"], "requests": r["requests"], "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"], "non_2xx": r["errors"], "socket_errors": 0}


def measure_grpc(name, srv, api, x, args, work):
    """The same cases through the OIP gRPC API (ModelInfer, raw_input_contents)."""
    res = {}
    for rows, conc in CASES:
        rows_path = os.path.join(work, f"{name}-{rows}.rows.json")
        with open(rows_path, "w") as f:
            json.dump([[r[i] for i in api["order"]] for r in x[:rows]], f)
        run_grpc_load(args, api, rows_path, conc, args.warmup)
        srv.alive_or_exit()
        r = run_grpc_load(args, api, rows_path, conc, args.seconds)
        srv.alive_or_exit()
        r["rows_s"] = r["req_s"] * rows
        res[(rows, conc)] = r
        bad = f"; {r['non_2xx']} failed calls" if r["non_2xx"] else ""
        print(f"  [{name}] {rows:>2} rows, c={conc:<2}: {r['req_s']:>9,.0f} req/s, p50 "
              f"{r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms ({r['requests']:,} calls{bad})",
              file=sys.stderr)
    return res


# ---------------------------------------------------------------- report

def report(results, labels, expected, args):
    names = [n for n in SERVERS if n in results]
    print(f"{'server':<15} {'rows':>4} {'conc':>4} {'req/s':>10} {'rows/s':>11} {'p50 ms':>8} "
          f"{'p99 ms':>8}  errors")
    for n in names:
        for case in CASES:
            r = results[n][case]
            err = "" if not (r["non_2xx"] or r["socket_errors"]) else \
                f"{r['non_2xx']} non-2xx, {r['socket_errors']} socket"
            print(f"{n:<15} {case[0]:>4} {case[1]:>4} {r['req_s']:>10,.0f} {r['rows_s']:>11,.0f} "
                  f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}  {err}")

    ratios = {}
    if "gantry" in results:
        peers = [p for p in ("mlserver", "mlflow") if p in results]
        if peers:
            print()
            print(f"{'gantry vs':<9} {'rows':>4} {'conc':>4}  "
                  + "  ".join(f"{p + ' throughput':>20} {p + ' p99':>14}" for p in peers))
        for case in CASES:
            g = results["gantry"][case]
            cells = []
            for p in peers:
                m = results[p][case]
                thr = g["req_s"] / m["req_s"] if m["req_s"] else float("nan")
                p99 = m["p99_ms"] / g["p99_ms"] if g["p99_ms"] else float("nan")
                ratios.setdefault(p, {})[f"{case[0]}x{case[1]}"] = {"throughput_x": thr,
                                                                     "p99_lower_x": p99}
                cells.append(f"{thr:>19.1f}x {p99:>8.1f}x lower")
            if peers:
                print(f"{'':<9} {case[0]:>4} {case[1]:>4}  " + "  ".join(cells))

    print()
    print("target: >= 10x MLServer throughput; p99 < 2 ms single row @ c=1")
    verdict = []
    if "gantry" in results and "mlserver" in results:
        worst = min(v["throughput_x"] for v in ratios["mlserver"].values())
        verdict.append(f"throughput vs MLServer at least {worst:.1f}x over the 4 cases: "
                       f"{'met' if worst >= 10 else 'NOT met'}")
    if "gantry" in results:
        p99 = results["gantry"][(1, 1)]["p99_ms"]
        verdict.append(f"single-row c=1 p99 {p99:.2f} ms: {'met' if p99 < 2 else 'NOT met'}")
    if verdict:
        print("; ".join(verdict))
    if "gantry-deployed" in results and "mlserver" in results:
        # The production path (prediction logged before each answer) has its own target.
        cells = []
        for case in CASES:
            d, m = results["gantry-deployed"][case], results["mlserver"][case]
            thr = d["req_s"] / m["req_s"] if m["req_s"] else float("nan")
            ratios.setdefault("deployed_vs_mlserver", {})[f"{case[0]}x{case[1]}"] = {
                "throughput_x": thr}
            cells.append(f"{case[0]}x{case[1]} {thr:.1f}x")
        worst = min(v["throughput_x"] for v in ratios["deployed_vs_mlserver"].values())
        p99 = results["gantry-deployed"][(1, 1)]["p99_ms"]
        print(f"deployed vs MLServer: {', '.join(cells)} (target >= 5x in every case: "
              f"{'met' if worst >= 5 else 'NOT met'}); single-row c=1 p99 {p99:.2f} ms "
              f"(target < 3 ms: {'met' if p99 < 3 else 'NOT met'})")

    if "gantry-grpc" in results and "mlserver-grpc" in results:
        cells = []
        for case in CASES:
            g, m = results["gantry-grpc"][case], results["mlserver-grpc"][case]
            thr = g["req_s"] / m["req_s"] if m["req_s"] else float("nan")
            ratios.setdefault("grpc_vs_mlserver_grpc", {})[f"{case[0]}x{case[1]}"] = {
                "throughput_x": thr}
            cells.append(f"{case[0]}x{case[1]} {thr:.1f}x")
        print(f"gRPC, gantry vs MLServer (same load generator): {', '.join(cells)}")

    agree = {}
    for n in names:
        got = labels.get(n)
        agree[n] = None if got is None else sum(a == b for a, b in zip(got, expected)) / len(expected)
    print("agreement with scikit-learn's own predictions on "
          f"{len(expected)} rows: " + ", ".join(
              f"{n} {'n/a' if agree[n] is None else f'{agree[n]:.0%}'}" for n in names))
    return ratios, agree


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gantry", default=os.path.join(ROOT, "target/release/gantry"))
    ap.add_argument("--quick", action="store_true", help="3 s per case instead of 10, for a smoke run")
    ap.add_argument("--only", default=",".join(SERVERS),
                    help="comma-separated servers to measure (gantry, gantry-deployed, mlserver, mlflow)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    ap.add_argument("--grpc-load", default=os.path.join(ROOT, "target/release/examples/grpc_load"),
                    help="the gRPC load generator (built with cargo when missing)")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SERVERS]
    if unknown or not only:
        sys.exit(f"--only: unknown server(s) {unknown}; choose from {', '.join(SERVERS)}")
    args.gantry = os.path.abspath(args.gantry)  # it also runs from the temp project dir
    args.grpc_load = os.path.abspath(args.grpc_load)
    args.seconds = 3 if args.quick else 10
    args.warmup = 1 if args.quick else 3

    gantry_any = any(n.startswith("gantry") for n in only)
    if gantry_any:
        if not os.path.exists(args.gantry):
            subprocess.run(["cargo", "build", "--release", "-p", "gantry"], cwd=ROOT, check=True)
        probe = subprocess.run([args.gantry, "serve", "--help"], capture_output=True, text=True)
        if probe.returncode:
            sys.exit(f"{args.gantry} has no working `serve` command yet "
                     f"({(probe.stderr.strip().splitlines() or [''])[0][:200]}); measure the peers alone with "
                     "--only mlserver,mlflow")
    ensure_wrk()
    if any(n.endswith("-grpc") for n in only) and not os.path.exists(args.grpc_load):
        subprocess.run(["cargo", "build", "--release", "-p", "gantry-serve", "--example",
                        "grpc_load"], cwd=ROOT, check=True)
    venv = os.path.join(ROOT, ".venv-bench")
    mlflow_py = ensure_venv(venv, {"mlflow": MLFLOW_VERSION, **SHARED_PINS},
                            "mlflow.sklearn, mlflow.server, sqlalchemy, sklearn")
    mlserver_py = None
    if "mlserver" in only or "mlserver-grpc" in only:
        mlserver_py = ensure_venv(os.path.join(venv, "mlserver"), {**MLSERVER_PINS, **SHARED_PINS},
                                  "mlserver, mlserver_sklearn, sklearn")

    features, x, y = read_dataset()
    check_rows = list(range(0, len(x), max(1, len(x) // 16)))[:16]
    work = tempfile.mkdtemp(prefix="gantry-bench-serving-")
    env = dict(os.environ, GANTRY_HOME=os.path.join(work, "gantry-home"), **QUIET_MLFLOW)
    print(f"{', '.join(only)}; model {MODEL} (logistic, {len(features)} features); "
          f"{os.cpu_count()} CPUs shared with wrk; loopback; one server at a time; "
          f"{args.seconds} s per case after {args.warmup} s warm-up", file=sys.stderr)
    results, labels = {}, {}
    started = time.time()
    try:
        # The peers' model is trained even for --only gantry: its predictions are the reference
        # every server is checked against.
        peers_model = train_peers(mlflow_py, work, check_rows)
        expected = peers_model["predictions"]
        if gantry_any:
            train_gantry(args, work, env)
        for name in only:
            if name in ("gantry", "gantry-binary", "gantry-grpc"):
                srv, api = start_gantry(args, work, env, features, grpc=name == "gantry-grpc")
            elif name == "gantry-deployed":
                srv, api = start_gantry_deployed(args, work, env, features)
            elif name in ("mlserver", "mlserver-grpc"):
                srv, api = start_mlserver(mlserver_py, work, env, features)
            else:
                srv, api = start_mlflow(mlflow_py, work, env)
            try:
                status, answer = http("POST", api["url"], api["body"]([x[i] for i in check_rows]))
                got = api["labels"](answer) if status == 200 else None
                if got is None or len(got) != len(check_rows):
                    print(f"  [{name}] no labels to compare in its answer ({status}): "
                          f"{str(answer)[:300]}", file=sys.stderr)
                    got = None
                else:
                    same = sum(a == b for a, b in zip(got, expected))
                    print(f"  [{name}] labels of {len(check_rows)} rows: {same} agree with "
                          f"scikit-learn's" + ("" if same == len(check_rows) else
                                              f" (got {got}, scikit-learn {expected})"),
                          file=sys.stderr)
                labels[name] = got
                if name.endswith("-grpc"):
                    results[name] = measure_grpc(name, srv, api, x, args, work)
                else:
                    results[name] = measure(name, srv, api, x, args, work,
                                            binary=name == "gantry-binary")
            finally:
                srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratios, agree = report(results, labels, expected, args)
    if args.json:
        doc = {"cpus": os.cpu_count(), "seconds_per_case": args.seconds, "model": MODEL,
               "versions": {"mlflow": MLFLOW_VERSION, "mlserver": MLSERVER_VERSION,
                            "scikit-learn": SHARED_PINS["scikit-learn"]},
               "wall_s": round(time.time() - started, 1),
               "results": {n: [{"rows": c[0], "concurrency": c[1], **results[n][c]} for c in CASES]
                           for n in results},
               "gantry_ratios": ratios, "label_agreement": agree,
               "target": {"mlserver_throughput_x": 10, "single_row_c1_p99_ms": 2}}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
