#!/usr/bin/env python3
"""Monitoring at volume: the monitor's answer time and the deployed serving path's throughput
with 0, 1M and 10M logged predictions, in the same run on the same machine.

For each size, in a fresh GANTRY_HOME:
  1. train the breast-cancer logistic regression with its reference profile (a pipeline:
     csv-ingest -> profile -> clean -> train -> register with `profile`), `gantry deploy` it;
  2. log N predictions the way the server's log writer does, aggregates included
     (`crates/gantry-server/examples/monitor_load.rs`, release build: rows of the CSV, 30
     features, spread over the last 55 minutes, every 1000th with feedback), and time the
     monitor in process: 30 evaluations through a server's cache (what `GET .../monitor` and
     every monitor tick compute) and 5 uncached ones (a local `gantry monitor`);
  3. start `gantry server` on that home, time `GET /api/v1/deployments/NAME/monitor` over
     HTTP 30 times while idle, then run wrk (64-row requests, 32 connections, --seconds) against
     the deployed model (each request's prediction is logged and aggregated before the answer)
     while the monitor ticks every second.
Prints a table and the throughput of each size relative to the empty log's.
Targets (issue 14): monitor p95 < 50 ms and a tick < 10 ms at 10M; throughput within 10% of
the empty log's.

Usage: bench/monitor.py [--gantry target/release/gantry]
                        [--loader target/release/examples/monitor_load]
                        [--sizes 0,1000000,10000000] [--seconds 8] [--json PATH]
Build first: cargo build --release -p gantry && cargo build --release -p gantry-server --example monitor_load
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving as S  # noqa: E402  (shares its server, wrk and request helpers)

NAME = "bc-prod"
PIPELINE = f"""\
name: monitor-bench
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: {{ source: data.csv }}
    outputs: [dataset]
  - name: profile
    uses: builtin/profile
    inputs: {{ dataset: ingest.dataset }}
    outputs: [profile, summary]
  - name: clean
    uses: builtin/clean
    inputs: {{ dataset: ingest.dataset }}
    with: {{ label: {S.LABEL}, standardize: true }}
    outputs: [dataset, transform]
  - name: train
    uses: builtin/train
    inputs: {{ train: clean.dataset, transform: clean.transform }}
    with: {{ label: {S.LABEL}, algorithm: logistic }}
    outputs: [model]
  - name: register
    uses: builtin/register
    inputs: {{ model: train.model, profile: profile.profile }}
    with: {{ model: {S.MODEL}, alias: champion }}
    outputs: [registration]
"""


def run(cmd, env, cwd=None):
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd[:3])} … failed ({out.returncode}):\n{out.stdout[-2000:]}\n"
                 f"{out.stderr[-2000:]}")
    return out.stdout


def one_size(n, args, features, x):
    work = tempfile.mkdtemp(prefix=f"gantry-monitor-bench-{n}-")
    env = dict(os.environ, GANTRY_HOME=os.path.join(work, "home"), GANTRY_MONITOR_INTERVAL="1s")
    project = os.path.join(work, "project")
    os.makedirs(project)
    shutil.copy(S.CSV_PATH, os.path.join(project, "data.csv"))
    with open(os.path.join(project, "pipeline.yaml"), "w") as f:
        f.write(PIPELINE)
    run([args.gantry, "run", "pipeline.yaml"], env, cwd=project)
    run([args.gantry, "deploy", NAME, "--model", f"{S.MODEL}@champion", "--cpu", "1",
         "--memory", "512Mi", "--retention", "30d", "--max-predictions", "100000000"], env)
    started = time.time()
    loaded = json.loads(run([args.loader, env["GANTRY_HOME"], NAME, S.CSV_PATH, S.LABEL, str(n)],
                            env).strip().splitlines()[-1])
    print(f"  [{n:,}] loaded in {time.time() - started:.1f} s: {loaded}", file=sys.stderr)

    port = S.free_port()
    srv = S.Server("gantry server", [args.gantry, "server", "--listen", f"127.0.0.1:{port}"], env,
                   work, os.path.join(work, "server.log"))
    base = f"http://127.0.0.1:{port}"
    try:
        srv.wait_ready(f"{base}/v2/models/{NAME}/ready")
        times = []
        for _ in range(30):
            t = time.perf_counter()
            status, body = S.http("GET", f"{base}/api/v1/deployments/{NAME}/monitor")
            times.append((time.perf_counter() - t) * 1000)
            if status != 200:
                sys.exit(f"monitor answered {status}: {str(body)[:300]}")
        times.sort()
        samples = body["report"]["samples"]
        api = {"url": f"{base}/v2/models/{NAME}/infer",
               "body": lambda rows: S.oip_body(rows, "input-0", list(range(len(features))))}
        body_path = os.path.join(work, "body.json")
        with open(body_path, "w") as f:
            json.dump(api["body"](x[:64]), f)
        S.run_wrk(api["url"], body_path, 32, 2)
        w = S.run_wrk(api["url"], body_path, 32, args.seconds)
        srv.alive_or_exit()
    finally:
        srv.stop()
    shutil.rmtree(work, ignore_errors=True)
    return {"predictions": n, "load_s": loaded["load_s"],
            "monitor_p50_ms": loaded["monitor_p50_ms"], "monitor_p95_ms": loaded["monitor_p95_ms"],
            "uncached_monitor_ms": loaded["uncached_monitor_median_ms"],
            "http_monitor_p50_ms": times[14], "http_monitor_p95_ms": times[28],
            "monitor_samples": samples, "req_s": w["req_s"], "p99_ms": w["p99_ms"],
            "errors": w["non_2xx"] + w["socket_errors"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gantry", default=os.path.join(S.ROOT, "target", "release", "gantry"))
    ap.add_argument("--loader",
                    default=os.path.join(S.ROOT, "target", "release", "examples", "monitor_load"))
    ap.add_argument("--sizes", default="0,1000000,10000000")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    for p in (args.gantry, args.loader):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: cargo build --release -p gantry && "
                     "cargo build --release -p gantry-server --example monitor_load")
    S.ensure_wrk()
    features, x, _ = S.read_dataset()
    results = [one_size(int(n), args, features, x) for n in args.sizes.split(",")]
    base = results[0]["req_s"] if results and results[0]["predictions"] == 0 else None
    print(f"{'logged':>12} {'load s':>8} {'monitor p50/p95 ms':>20} {'uncached ms':>12} "
          f"{'HTTP p50/p95 ms':>18} {'req/s 64x32':>12} {'vs empty':>9} {'p99 ms':>8}")
    for r in results:
        ratio = f"{r['req_s'] / base:.2f}x" if base else "-"
        print(f"{r['predictions']:>12,} {r['load_s']:>8.1f} "
              f"{r['monitor_p50_ms']:>9.1f}/{r['monitor_p95_ms']:<9.1f} "
              f"{r['uncached_monitor_ms']:>12.1f} "
              f"{r['http_monitor_p50_ms']:>8.1f}/{r['http_monitor_p95_ms']:<8.1f} "
              f"{r['req_s']:>12,.0f} {ratio:>9} {r['p99_ms']:>8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
