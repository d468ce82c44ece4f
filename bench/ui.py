#!/usr/bin/env python3
"""The web UI at scale: every page's server time, page weight and full load in headless
Chromium, with 10,000 runs, a run whose step printed 100,000 log lines, and an MLflow run
with a 100,000-point metric in the store.

Setup (a fresh GANTRY_HOME in a temp dir, SQLite, runc):
  1. Real runs: the iris pipeline below (ingest, profile, split, a 3-member training sweep,
     select, register) twice with different params, a failing two-step run, and a run whose
     step prints --log-lines lines (`seq`).
  2. 10,000 runs in all: the real runs' rows (runs, step runs, metrics, lineage, logs of the
     small runs) are copied in SQL with new ids, other pipeline names (5), statuses (10%
     failed) and creation times spread over 30 days. Copies of real rows, so every page
     renders real data; the metadata store is what a busy team's would hold.
  3. `gantry server` (local mode) on 127.0.0.1; an MLflow experiment and run through the
     MLflow REST API with a metric of --metric-points points (log-batch, 1,000 per call);
     a deployment of the registered model (one runc replica).

Measured per page (the runs list and its filters and deep pages, a run, its logs and a log
search, a comparison, experiments, an experiment, the MLflow run with the 100k-point metric,
models, a model version, deployments, a deployment with its monitor, images, audit):
  * server time: --requests sequential GETs over one keep-alive connection after 2 warm-ups
    (whole request on loopback, so an upper bound of the server's time): p50 and p95; and
    the very first request of the page (cold: e.g. a metric history not yet in the UI's
    cache of reduced series);
  * page weight: the HTML plus the stylesheet and script it loads (uncompressed bytes);
  * full load in headless Chromium (chromium + chromium-driver, WebDriver): navigation
    timing's loadEventEnd of --loads fresh navigations (cache on, as a user would), median;
  * a screenshot of every page (--screenshots DIR) to look at.
Targets (issue 10): p95 <= 50 ms, weight <= 150 KB, loaded <= 300 ms. No timing is asserted.

Usage: bench/ui.py [--gantry target/release/gantry] [--runs 10000] [--log-lines 100000]
                   [--metric-points 100000] [--requests 30] [--loads 5]
                   [--screenshots DIR] [--json PATH] [--keep]
Needs runc, busybox-static, chromium and chromium-driver (scripts/browser-deps.sh).
"""
import argparse, http.client, json, os, random, shutil, socket, sqlite3, statistics, subprocess
import sys, tempfile, time, urllib.request
from common import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PIPELINE = """
name: iris
params:
  seed: 1
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: iris.csv }
    outputs: [dataset]
  - name: profile
    uses: builtin/profile
    inputs: { dataset: ingest.dataset }
    outputs: [profile, summary]
  - name: split
    uses: builtin/split
    inputs: { dataset: ingest.dataset }
    with: { test_fraction: 0.3, seed: 1, stratify: species }
    outputs: [train, test]
  - name: train
    uses: builtin/train
    inputs: { train: split.train }
    with: { label: species, algorithm: decision_tree, seed: "${params.seed}" }
    matrix:
      max_depth: [1, 2, 4]
    outputs: [model]
  - name: select
    uses: builtin/select-best
    inputs: { candidates: train.model }
    with: { metric: validation.accuracy }
    outputs: [model, report]
  - name: register
    uses: builtin/register
    inputs: { model: select.model, profile: profile.profile }
    with: { model: iris, alias: champion }
    outputs: [registration]
"""

FAILING = """
name: broken
steps:
  - name: prepare
    image: busybox:1
    command: ["sh", "-c", "echo preparing; echo '{\\"rows\\": 5}' > /gantry/metrics.json"]
  - name: crash
    image: busybox:1
    after: [prepare]
    command: ["sh", "-c", "echo about to fail >&2; exit 3"]
"""

CHATTY = """
name: chatty
steps:
  - name: talk
    image: busybox:1
    command: ["sh", "-c", "seq 1 {lines}"]
"""


def run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, **kw)


def run_pipeline(gantry, env, path, *extra):
    out = subprocess.run([gantry, "run", path, "--output", "json", *extra], env=env,
                         capture_output=True, text=True)
    try:
        return json.loads(out.stdout)["run_id"]
    except (ValueError, KeyError):
        sys.exit(f"gantry run {path} failed: {out.stderr}")


def new_id(prefix):
    return prefix + "%012x" % random.getrandbits(48)


def multiply_runs(db_path, target, seed_runs):
    """Copies the seed runs' rows until the store holds `target` runs."""
    con = sqlite3.connect(db_path)
    con.row_factory = sqlite3.Row
    cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")]
            for t in ("runs", "step_runs", "metrics", "lineage", "logs")}
    have = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    now = int(time.time() * 1000)
    pipelines = ["iris", "churn", "fraud", "forecast", "ranking"]
    rng = random.Random(7)
    small = [r for r in seed_runs if r["logs"] < 1000]
    n = 0
    con.execute("BEGIN")
    while have + n < target:
        src = small[n % len(small)]["id"]
        run = dict(con.execute("SELECT * FROM runs WHERE id = ?", (src,)).fetchone())
        rid = new_id("r-")
        created = now - rng.randrange(30 * 86_400_000)
        dur = (run["finished_at_ms"] or run["created_at_ms"]) - run["created_at_ms"]
        run.update(id=rid, created_at_ms=created, started_at_ms=created,
                   finished_at_ms=created + dur + rng.randrange(5000),
                   status="failed" if rng.random() < 0.1 else run["status"])
        if run["pipeline"] == "iris":
            run["pipeline"] = pipelines[n % len(pipelines)]
        con.execute(f"INSERT INTO runs ({','.join(run)}) VALUES ({','.join('?' * len(run))})",
                    list(run.values()))
        for sr in con.execute("SELECT * FROM step_runs WHERE run_id = ?", (src,)).fetchall():
            sr = dict(sr)
            old = sr["id"]
            sr.update(id=new_id("s-"), run_id=rid)
            con.execute(f"INSERT INTO step_runs ({','.join(sr)}) VALUES "
                        f"({','.join('?' * len(sr))})", list(sr.values()))
            for table in ("metrics", "lineage"):
                rows = con.execute(f"SELECT * FROM {table} WHERE step_run_id = ?", (old,))
                for row in rows.fetchall():
                    row = dict(row)
                    row["step_run_id"] = sr["id"]
                    if table == "metrics":
                        row["value"] = row["value"] * (0.9 + rng.random() * 0.2)
                    con.execute(f"INSERT INTO {table} ({','.join(row)}) VALUES "
                                f"({','.join('?' * len(row))})", list(row.values()))
            for row in con.execute("SELECT * FROM logs WHERE step_run_id = ?", (old,)).fetchall():
                row = dict(row)
                row.pop("id")
                row.update(run_id=rid, step_run_id=sr["id"])
                con.execute(f"INSERT INTO logs ({','.join(row)}) VALUES "
                            f"({','.join('?' * len(row))})", list(row.values()))
        n += 1
    con.execute("COMMIT")
    con.close()
    return have + n


def mlflow(url, path, body):
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"{}")


class WebDriver:
    """Just enough W3C WebDriver over urllib for timing page loads and screenshots."""

    def __init__(self, chromium, driver):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="gantry-bench-chromium-")
        self.proc = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self._raw("GET", "/status")
                break
            except OSError:
                time.sleep(0.05)
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", f"--user-data-dir={self.profile}"]}}}}
        self.session = self._raw("POST", "/session", caps)["value"]["sessionId"]

    def _raw(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def cmd(self, method, path, body=None):
        return self._raw(method, f"/session/{self.session}{path}", body)["value"]

    def load_ms(self, url):
        self.cmd("POST", "/url", {"url": url})
        return self.cmd("POST", "/execute/sync", {"script": (
            "const n = performance.getEntriesByType('navigation')[0];"
            "return n.loadEventEnd - n.startTime;"), "args": []})

    def screenshot(self, path):
        import base64
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)

    def close(self):
        try:
            self._raw("DELETE", f"/session/{self.session}")
        except OSError:
            pass
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def time_page(host, port, path, requests):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    samples = []
    body = b""
    for i in range(requests + 2):
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        dt = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            sys.exit(f"GET {path}: {r.status} {body[:300]!r}")
        if i == 0:
            first = dt
        if i >= 2:
            samples.append(dt)
    conn.close()
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return first, statistics.median(samples), p95, body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gantry", default=os.path.join(ROOT, "target/release/gantry"))
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--log-lines", type=int, default=100_000)
    ap.add_argument("--metric-points", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--screenshots")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    chromium = os.environ.get("GANTRY_TEST_CHROMIUM", "/usr/bin/chromium")
    driver = os.environ.get("GANTRY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
    for need in (args.gantry, chromium, driver):
        if not os.path.exists(need):
            sys.exit(f"{need} is missing (cargo build --release -p gantry; scripts/browser-deps.sh)")

    work = tempfile.mkdtemp(prefix="gantry-bench-ui-")
    home = os.path.join(work, "home")
    env = dict(os.environ, GANTRY_HOME=home)
    env.pop("GANTRY_DB", None)
    server = None
    try:
        tar = os.path.join(work, "busybox.tar")
        subprocess.run([os.path.join(ROOT, "scripts/busybox-rootfs.sh"), tar], check=True,
                       capture_output=True)
        run([args.gantry, "image", "import", tar, "--name", "busybox:1"], env)
        with open(os.path.join(work, "iris.csv"), "w") as f:
            f.write(run([args.gantry, "dataset", "iris"], env).stdout)
        specs = {}
        for name, text in (("iris", PIPELINE), ("broken", FAILING),
                           ("chatty", CHATTY.replace("{lines}", str(args.log_lines)))):
            specs[name] = os.path.join(work, f"{name}.yaml")
            with open(specs[name], "w") as f:
                f.write(text)
        t0 = time.time()
        seeds = [run_pipeline(args.gantry, env, specs["iris"]),
                 run_pipeline(args.gantry, env, specs["iris"], "-p", "seed=2"),
                 run_pipeline(args.gantry, env, specs["iris"], "-p", "seed=3"),
                 run_pipeline(args.gantry, env, specs["broken"])]
        chatty = run_pipeline(args.gantry, env, specs["chatty"])
        print(f"real runs: {len(seeds) + 1} in {time.time() - t0:.1f} s")
        db = os.path.join(home, "gantry.db")
        con = sqlite3.connect(db)
        seed_runs = [{"id": r, "logs": con.execute("SELECT COUNT(*) FROM logs WHERE run_id = ?",
                                                   (r,)).fetchone()[0]} for r in seeds]
        log_rows = con.execute("SELECT COUNT(*) FROM logs WHERE run_id = ?", (chatty,)).fetchone()[0]
        con.close()
        t0 = time.time()
        total = multiply_runs(db, args.runs, seed_runs)
        print(f"store: {total} runs ({time.time() - t0:.1f} s to copy rows); "
              f"run {chatty} has {log_rows} log rows")

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([args.gantry, "server", "--listen", f"127.0.0.1:{port}"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        exp = mlflow(url, "experiments/create", {"name": "bench-metrics"})["experiment_id"]
        mrun = mlflow(url, "runs/create", {"experiment_id": exp, "run_name": "long-training",
                                           "start_time": int(time.time() * 1000)})["run"]["info"]["run_id"]
        t0 = time.time()
        ts = int(time.time() * 1000) - args.metric_points * 100
        rng = random.Random(3)
        for start in range(0, args.metric_points, 1000):
            batch = [{"key": "loss", "value": 2.0 / (1 + i / 500) + rng.random() * 0.05
                      + (5.0 if i == args.metric_points // 2 else 0.0),
                      "timestamp": ts + i * 100, "step": i}
                     for i in range(start, min(start + 1000, args.metric_points))]
            mlflow(url, "runs/log-batch", {"run_id": mrun, "metrics": batch})
        mlflow(url, "runs/log-batch", {"run_id": mrun, "params": [{"key": "lr", "value": "0.01"}]})
        print(f"mlflow: {args.metric_points} points of `loss` in {time.time() - t0:.1f} s")
        deployed = subprocess.run([args.gantry, "--server", url, "deploy", "flowers", "--model",
                                   "iris@1"], env=env, capture_output=True, text=True)
        if deployed.returncode != 0:
            print(f"(no deployment: {deployed.stderr.strip()})")

        con = sqlite3.connect(db)
        after = con.execute("SELECT created_at_ms || '.' || id FROM runs ORDER BY created_at_ms DESC, "
                            "id DESC LIMIT 1 OFFSET ?", (total // 2,)).fetchone()[0]
        con.close()
        pages = [
            ("runs", "/runs"),
            ("runs, failed", "/runs?status=failed"),
            ("runs, param filter", "/runs?param=seed%3D2"),
            ("runs, metric filter (most runs)", "/runs?metric=rows%3E4"),
            ("runs, metric filter (no run)", "/runs?metric=rows%3E1000"),
            ("runs, by duration", "/runs?sort=duration&order=desc"),
            ("runs, a page in the middle", f"/runs?after={after}"),
            ("run", f"/runs/{seeds[0]}"),
            ("failed run", f"/runs/{seeds[3]}"),
            (f"logs ({log_rows} lines), first page", f"/runs/{chatty}/logs?step=talk"),
            ("logs, search", f"/runs/{chatty}/logs?step=talk&q=99999"),
            ("compare 3 runs", f"/compare?runs={seeds[0]}&runs={seeds[1]}&runs={seeds[2]}"),
            ("experiments", "/experiments"),
            ("experiment", f"/experiments/{exp}"),
            (f"mlflow run, {args.metric_points}-point metric", f"/experiments/{exp}/runs/{mrun}"),
            ("models", "/models"),
            ("model", "/models/iris"),
            ("model version", "/models/iris/versions/1"),
            ("deployments", "/deployments"),
            ("deployment + monitor", "/deployments/flowers"),
            ("images", "/images"),
            ("audit", "/audit"),
        ]
        css = len(urllib.request.urlopen(f"{url}/static/app.css").read())
        js = len(urllib.request.urlopen(f"{url}/static/app.js").read())
        results = []
        for name, path in pages:
            first, p50, p95, body = time_page("127.0.0.1", port, path, args.requests)
            results.append({"page": name, "path": path, "first_ms": first, "p50_ms": p50, "p95_ms": p95,
                            "html_bytes": len(body), "weight_bytes": len(body) + css + js})
        wd = WebDriver(chromium, driver)
        try:
            if args.screenshots:
                os.makedirs(args.screenshots, exist_ok=True)
            for i, r in enumerate(results):
                loads = [wd.load_ms(url + r["path"]) for _ in range(args.loads)]
                r["load_ms"] = statistics.median(loads)
                if args.screenshots:
                    wd.screenshot(os.path.join(args.screenshots, f"{i:02d}.png"))
        finally:
            wd.close()

        print(f"\n{'page':44} {'first ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'weight KB':>10} {'load ms':>8}")
        for r in results:
            print(f"{r['page'][:44]:44} {r['first_ms']:8.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
                  f"{r['weight_bytes'] / 1000:10.1f} {r['load_ms']:8.1f}")
        worst = lambda k: max(results, key=lambda r: r[k])
        print(f"\ntargets: server p95 <= 50 ms (worst {worst('p95_ms')['p95_ms']:.1f} ms, "
              f"{worst('p95_ms')['page']}); weight <= 150 KB (worst "
              f"{worst('weight_bytes')['weight_bytes'] / 1000:.1f} KB, {worst('weight_bytes')['page']}); "
              f"loaded <= 300 ms (worst {worst('load_ms')['load_ms']:.1f} ms, {worst('load_ms')['page']})")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"runs": total, "log_rows": log_rows, "metric_points": args.metric_points,
                           "pages": results}, f, indent=2)
    finally:
        if server:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
