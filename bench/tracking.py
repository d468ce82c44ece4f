#!/usr/bin/env python3
"""Experiment tracking: Gantry's MLflow-compatible API next to MLflow's own server, measured
in the same run on the same machine, over loopback, with the same requests.

Prints, for each server:
  * ingest: metrics per second through `runs/log-batch` (1000 metrics per request, 8
    concurrent clients, each logging to its own run, pre-encoded bodies);
  * log-metric: p50/p99 latency of a single `runs/log-metric` (one client, one at a time);
  * log-metric-rate: `runs/log-metric` requests per second from 32 concurrent connections
    (`wrk`, each connection's thread logging its own key with increasing steps);
  * get-history: p50/p99 latency of reading a 100k-point metric (every page);
  * search: p50/p99 latency of `runs/search` with a metric+param filter and a metric order
    over 10k runs;
and Gantry's advantage (targets: >= 50x the ingest rate and the log-metric rate, >= 10x
lower p99).

MLflow runs as `mlflow server --backend-store-uri sqlite:///...` from a venv this script
creates (`.venv-bench`, cached). Gantry runs as `gantry server` (release build).
Needs `wrk` for log-metric-rate (installed with apt-get when missing and running as root).
Usage: bench/tracking.py [--gantry target/release/gantry] [--quick]
                         [--only ingest,log-metric,log-metric-rate,history,search]
"""
import argparse, http.client, json, os, shutil, socket, statistics, subprocess, sys, tempfile
import re, threading, time
from common import free_port, ensure_wrk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLFLOW_VERSION = "3.17.2"
MEASUREMENTS = ["ingest", "log-metric", "log-metric-rate", "history", "search"]


class Api:
    """One keep-alive connection to a server's MLflow API."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def call(self, method, path, body=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):
            try:
                self.conn.request(method, "/api/2.0/mlflow/" + path, body=data, headers=headers)
                resp = self.conn.getresponse()
                out = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                if attempt:
                    raise
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: {resp.status} {out[:300]!r}")
        return json.loads(out) if out else {}


def wait_up(port, proc, name):
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode} before serving")
        try:
            Api(port).call("GET", "experiments/get?experiment_id=0")
            return
        except Exception:
            time.sleep(0.3)
    sys.exit(f"{name} did not answer on 127.0.0.1:{port} within 180 s")


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000


def new_run(api, exp, name):
    r = api.call("POST", "runs/create", {"experiment_id": exp, "run_name": name,
                                         "start_time": int(time.time() * 1000)})
    return r["run"]["info"]["run_id"]


def batch_body(run_id, key, base_step, n=1000):
    ts = int(time.time() * 1000)
    return json.dumps({"run_id": run_id, "metrics": [
        {"key": key, "value": (base_step + i) * 0.001, "timestamp": ts, "step": base_step + i}
        for i in range(n)]}).encode()


def measure(port, args, label):
    api = Api(port)
    exp = api.call("POST", "experiments/create", {"name": f"bench-{time.time()}"})["experiment_id"]
    res = {}
    if "ingest" in args.only:
        res["ingest"] = measure_ingest(api, port, exp, args, label)
    if "log-metric" in args.only:
        res["log_metric"] = measure_log_metric(api, exp, args)
    if "log-metric-rate" in args.only:
        res["log_metric_rate"] = measure_log_metric_rate(api, port, exp, args, label)
    if "history" in args.only:
        res["history"] = measure_history(api, exp, args, label)
    if "search" in args.only:
        res["search"] = measure_search(api, port, args, label)
    return res


def measure_ingest(api, port, exp, args, label):
    # Ingest: 8 clients, own runs, pre-encoded 1000-metric batches, bounded by count and time.
    runs = [new_run(api, exp, f"ingest-{c}") for c in range(args.clients)]
    bodies = [[batch_body(runs[c], "m", b * 1000) for b in range(args.batches)]
              for c in range(args.clients)]
    done = [0] * args.clients
    failed = [0] * args.clients
    deadline = time.time() + args.ingest_seconds

    def client(c):
        a = Api(port)
        for body in bodies[c]:
            if time.time() > deadline:
                break
            try:
                a.call("POST", "runs/log-batch", body)
                done[c] += 1
            except Exception:
                failed[c] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    print(f"  [{label}] ingest: {sum(done)} batches in {wall:.1f}s, {sum(failed)} refused",
          file=sys.stderr)
    return sum(done) * 1000 / wall


def measure_log_metric(api, exp, args):
    # Single log-metric latency.
    run = new_run(api, exp, "latency")
    lat = []
    for i in range(args.single):
        body = json.dumps({"run_id": run, "key": "x", "value": i, "timestamp": int(time.time() * 1000),
                           "step": i}).encode()
        t = time.perf_counter()
        api.call("POST", "runs/log-metric", body)
        lat.append(time.perf_counter() - t)
    return (pct(lat, 50), pct(lat, 99))


WRK_SCRIPT = r"""
-- Each wrk thread logs its own key with increasing steps, so no point repeats.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
function request()
  n = n + 1
  local body = string.format(
    '{"run_id":"%s","key":"rate%d","value":%d,"timestamp":%s,"step":%d}',
    os.getenv("BENCH_RUN"), tid, n, os.getenv("BENCH_TS"), n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def measure_log_metric_rate(api, port, exp, args, label):
    # log-metric throughput: wrk, 2 threads, 32 connections, a warm-up then the measurement.
    run = new_run(api, exp, "rate")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    env = dict(os.environ, BENCH_RUN=run, BENCH_TS=str(int(time.time() * 1000)))
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/log-metric"
    try:
        for seconds in (args.rate_warmup, args.rate_seconds):
            out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--timeout", "30s",
                                  "-s", f.name, url], env=env, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    finally:
        os.unlink(f.name)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out.stdout, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    if not rps:
        raise RuntimeError(f"cannot read wrk's output:\n{out.stdout}")
    if bad:
        raise RuntimeError(f"{label}: {bad.group(1)} log-metric requests failed under load")
    print(f"  [{label}] log-metric at c=32: {float(rps.group(1)):,.0f} req/s", file=sys.stderr)
    return float(rps.group(1))


def measure_history(api, exp, args, label):
    # get-history of a 100k-point metric, read page by page as MLflow's client does.
    run = new_run(api, exp, "history")
    for b in range(args.history_points // 1000):
        api.call("POST", "runs/log-batch", batch_body(run, "h", b * 1000))
    lat = []
    for _ in range(args.history_reads):
        t = time.perf_counter()
        token, n = None, 0
        while True:
            q = f"metrics/get-history?run_id={run}&metric_key=h&max_results=25000"
            if token:
                q += f"&page_token={token}"
            page = api.call("GET", q)
            n += len(page.get("metrics", []))
            token = page.get("next_page_token")
            if not token:
                break
        lat.append(time.perf_counter() - t)
        assert n == args.history_points, f"{label}: history returned {n} points"
    return (pct(lat, 50), pct(lat, 99))


def measure_search(api, port, args, label):
    # runs/search over 10k runs with metrics and params, created by 4 concurrent clients.
    sexp = api.call("POST", "experiments/create", {"name": f"search-{time.time()}"})["experiment_id"]

    def creator(k):
        a = Api(port)
        for i in range(k, args.search_runs, 4):
            rid = new_run(a, sexp, f"s{i}")
            a.call("POST", "runs/log-batch", {"run_id": rid, "metrics": [
                {"key": "acc", "value": (i % 1000) / 1000, "timestamp": 1, "step": 0}],
                "params": [{"key": "lr", "value": "0.1" if i % 2 else "0.01"}]})
    t0 = time.perf_counter()
    threads = [threading.Thread(target=creator, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"  [{label}] created {args.search_runs} runs in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)
    query = {"experiment_ids": [sexp], "filter": "metrics.acc > 0.5 and params.lr = '0.1'",
             "order_by": ["metrics.acc DESC"], "max_results": 100}
    lat = []
    for _ in range(args.searches):
        t = time.perf_counter()
        out = api.call("POST", "runs/search", query)
        lat.append(time.perf_counter() - t)
        assert len(out.get("runs", [])) == 100, f"{label}: search returned {len(out.get('runs', []))}"
    return (pct(lat, 50), pct(lat, 99))


def mlflow_python():
    venv = os.path.join(ROOT, ".venv-bench")
    py = os.path.join(venv, "bin", "python")
    ok = os.path.exists(py) and subprocess.run(
        [py, "-c", "import mlflow.server, sqlalchemy"], capture_output=True).returncode == 0
    if not ok:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}"], check=True)
    return venv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gantry", default=os.path.join(ROOT, "target/release/gantry"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--only", default=",".join(MEASUREMENTS),
                    help="comma-separated measurements to run (default: all)")
    args = ap.parse_args()
    args.only = set(args.only.split(","))
    unknown = args.only - set(MEASUREMENTS)
    if unknown:
        ap.error(f"unknown measurements: {', '.join(sorted(unknown))}")
    args.clients = 8
    args.batches = 25 if args.quick else 250
    args.ingest_seconds = 20 if args.quick else 60
    args.rate_warmup = 1 if args.quick else 2
    args.rate_seconds = 3 if args.quick else 10
    args.single = 100 if args.quick else 500
    args.history_points = 20_000 if args.quick else 100_000
    args.history_reads = 3 if args.quick else 10
    args.search_runs = 1_000 if args.quick else 10_000
    args.searches = 5 if args.quick else 20

    if "log-metric-rate" in args.only:
        ensure_wrk()
    if not os.path.exists(args.gantry):
        subprocess.run(["cargo", "build", "--release", "-p", "gantry"], cwd=ROOT, check=True)
    venv = mlflow_python()
    work = tempfile.mkdtemp(prefix="gantry-bench-tracking-")
    gantry_cmd = [args.gantry, "server", "--listen", "127.0.0.1:{port}"]
    mlflow_cmd = [os.path.join(venv, "bin", "mlflow"), "server",
                  "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
                  "--artifacts-destination", os.path.join(work, "mlflow-artifacts"),
                  "--host", "127.0.0.1", "--port", "{port}"]
    env = dict(os.environ, GANTRY_HOME=os.path.join(work, "gantry-home"),
               MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    print(f"gantry: {args.gantry}; mlflow {MLFLOW_VERSION} server with SQLite; "
          f"{os.cpu_count()} CPUs; loopback; one server at a time", file=sys.stderr)
    results = {}
    try:
        # One server at a time, so neither steals the other's CPU (MLflow's workers take
        # seconds to start).
        for name, cmd in [("gantry", gantry_cmd), ("mlflow", mlflow_cmd)]:
            port = free_port()
            proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_up(port, proc, f"{name} server")
                time.sleep(5)
                results[name] = measure(port, args, name)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    g, m = results["gantry"], results["mlflow"]

    rows = []
    if "ingest" in g:
        rows.append(("ingest (metrics/s, log-batch 1000 x 8 clients)",
                     f"{g['ingest']:,.0f}", f"{m['ingest']:,.0f}",
                     f"{g['ingest'] / m['ingest']:.1f}x"))
    if "log_metric_rate" in g:
        rows.append(("log-metric (req/s, 32 connections)",
                     f"{g['log_metric_rate']:,.0f}", f"{m['log_metric_rate']:,.0f}",
                     f"{g['log_metric_rate'] / m['log_metric_rate']:.1f}x"))
    for key, name in [("log_metric", "log-metric latency p50/p99 (ms)"),
                      ("history", f"get-history {args.history_points // 1000}k points p50/p99 (ms)"),
                      ("search", f"runs/search over {args.search_runs // 1000}k runs p50/p99 (ms)")]:
        if key not in g:
            continue
        rows.append((name, f"{g[key][0]:.2f} / {g[key][1]:.2f}", f"{m[key][0]:.2f} / {m[key][1]:.2f}",
                     f"p99 {m[key][1] / g[key][1]:.1f}x lower"))
    w = max(len(r[0]) for r in rows)
    print(f"{'':{w}}  {'gantry':>18}  {'mlflow server':>18}  gantry advantage")
    for r in rows:
        print(f"{r[0]:{w}}  {r[1]:>18}  {r[2]:>18}  {r[3]}")
    if args.only != set(MEASUREMENTS):
        return
    ingest_ok = g["ingest"] >= 50 * m["ingest"]
    rate_ok = g["log_metric_rate"] >= 50 * m["log_metric_rate"]
    p99_ok = all(m[k][1] >= 10 * g[k][1] for k in ("log_metric", "history", "search"))
    print(f"target >= 50x ingest: {'met' if ingest_ok else 'NOT met'}; "
          f">= 50x log-metric rate: {'met' if rate_ok else 'NOT met'}; "
          f">= 10x lower p99: {'met' if p99_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
