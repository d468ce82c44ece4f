#!/usr/bin/env python3
"""`gantry usage` (the usage and cost report, docs/resources.md) over a store holding 100,000
step runs, as whole processes. Target: < 200 ms per report.

What it does:
  1. makes a fresh GANTRY_HOME in a temp dir and runs `gantry usage` against it once, which
     creates GANTRY_HOME/gantry.db and applies every migration (any command that opens the
     local store does; `usage` is read-only otherwise). That same empty store is then timed
     (`gantry usage --since 30d`, same repetitions) as the floor: process start, opening the
     store, checking the migrations, an empty report;
  2. checks that every NOT NULL column without a default of `runs`, `step_runs`,
     `replica_usage` and `deployment_revisions` (as the migrations left them) is filled below,
     then inserts synthetic history with Python's sqlite3 in one transaction (seeded, so the
     same rows each time; times relative to now): 20 projects (pipelines) of 6-12 steps, a third
     with a 4-member `matrix:` train step (`train[lr=…]`), ~10,000 runs (`--step-runs` / 10)
     submitted by 8 users, their `--step-runs` step runs (default 100,000) spread over the last
     29.5 days — ~78% succeeded, ~13% cache hits (`status = cached`, `cached_from` an earlier
     succeeded attempt of the same step, wall 0), ~2% failed (some OOM-killed and retried with
     twice the memory as attempt 2), ~7% skipped after a failure (never started); requested
     CPU / memory / GPU, cpu_micros, peak memory, wall time, started/finished times,
     usage_key, cache_key and image digest filled as `gantry run` fills them; the train steps
     of 2 projects on GPUs (H100 ×1, A10G ×2) with utilization, GPU memory peak and idle time.
     No run is left running or queued (a read command would mark it interrupted, i.e.
     write). Plus ~390 `replica_usage` rows: 8 deployments over the last 35 days (so some
     replicas lie partly or wholly before the window), 1-3 replicas at a time, 6 h-3 d each,
     the newest still running; each deployment's first `deployment_revisions` row names its
     creator (what `--by user` groups replicas by). The deployments themselves are not
     inserted, so a `gantry server` on a kept home starts nothing. No ANALYZE (Gantry runs
     none). Nothing ends within 30 min of the 7- or 30-day boundary, so the expected counts
     do not depend on the second a command runs in (the text reports' window is known only
     to the process's start and end, and the checks allow for that);
  3. times, each as a whole process (wall clock around `subprocess.run`, output captured;
     one untimed warm-up, then `--repeat` runs; min / median / max, and the median CPU time
     of the process, user + system, from getrusage):
       gantry usage --since 30d
       gantry usage --since 30d --by step
       gantry usage --since 30d --by user -o json
       gantry usage --since 7d --by pipeline
     and checks every run: exit status 0, and the report's total line against the rows
     inserted — runs (per group, distinct runs with a step run that ended in the window,
     summed over the groups as the report does), step runs (attempts that started a
     container: not cache hits, not skipped), cache hits, replicas (lives overlapping the
     window; none for --by pipeline/step) and the number of groups; for the JSON report also
     the CPU-hours requested and GPU-hours (relative error < 1e-6), so the report provably
     read every row;
  4. prints a table of the figures and whether each median is under the 200 ms target.
     Nothing is asserted about timing. No peer: no other tool reports this over the same
     store, so there is nothing to compare with in the same run.

Usage: bench/usage.py [--step-runs 100000] [--repeat 7] [--keep DIR]
                      [--gantry target/release/gantry]
"""
import argparse, hashlib, json, os, random, resource, shutil, sqlite3, statistics, subprocess
import sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_MS = 200
MIN_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
GIB, MIB = 1 << 30, 1 << 20
# Nothing ends within this of `now - 7d` (see the docstring).
GAP_MS = 30 * MIN_MS

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "ci-bot"]
PROJECTS = ["churn", "fraud-detect", "ranker", "forecast", "recsys", "nlp-intent", "vision-qa",
            "ocr", "pricing", "ltv", "ab-analysis", "etl-events", "etl-billing", "embeddings",
            "search-rerank", "anomaly", "segmentation", "speech", "translation",
            "llm-finetune"]
GPU_PROJECTS = {"vision-qa": ("NVIDIA H100 80GB HBM3", 1), "llm-finetune": ("NVIDIA A10G", 2)}
OPTIONAL_STEPS = ["split", "profile", "report", "export", "publish", "notify", "backfill",
                  "lint-data"]
DEPLOYMENTS = [("churn-api", "churn"), ("fraud-api", "fraud-detect"), ("ranker-api", "ranker"),
               ("forecast-api", "forecast"), ("recsys-api", "recsys"),
               ("intent-api", "nlp-intent"), ("vision-api", "vision-qa"), ("scratch-api", None)]

STEP_COLUMNS = ["id", "run_id", "step", "seq", "attempt", "status", "exit_code", "reason",
                "cache_key", "cached_from", "image_digest", "started_at_ms", "finished_at_ms",
                "requested_cpu_millis", "requested_memory_bytes", "requested_gpu",
                "peak_memory_bytes", "cpu_micros", "wall_ms", "inputs_json", "outputs_json",
                "gpu_model", "gpu_util_percent", "gpu_memory_peak_bytes", "gpu_idle_ms",
                "resources_note", "usage_key", "gpu_devices"]
RUN_COLUMNS = ["id", "pipeline", "status", "spec_file", "spec_yaml", "params_json",
               "images_json", "no_cache", "rerun_of", "created_at_ms", "started_at_ms",
               "finished_at_ms", "owner_pid", "owner_host", "error", "submitted_by"]
REPLICA_COLUMNS = ["id", "deployment", "project", "model", "version", "requested_cpu_millis",
                   "requested_memory_bytes", "requested_gpu", "gpu_model", "started_at_ms",
                   "last_seen_ms", "stopped_at_ms", "peak_memory_bytes", "cpu_micros"]
REVISION_COLUMNS = ["deployment", "revision", "spec_json", "action", "principal",
                    "created_at_ms"]


def find_gantry(given):
    if given:
        return given
    candidates = [os.path.join(ROOT, "target/release/gantry")]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(os.path.join(ROOT, os.environ["CARGO_TARGET_DIR"], "release/gantry"))
    for c in candidates:
        if os.path.exists(c):
            return c
    sys.exit(f"no gantry binary at {' or '.join(candidates)}: run "
             "`cargo build --release --locked -p gantry` or pass --gantry PATH")


def hexid(rng, prefix, seen):
    while True:
        i = f"{prefix}{rng.getrandbits(48):012x}"
        if i not in seen:
            seen.add(i)
            return i


def sha(*parts):
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def project_steps(rng, project):
    """A pipeline's planned steps: (name, declared, cpu millis, memory bytes, gpu, median wall
    ms, cores-used fraction, peak-memory fraction)."""
    names = ["fetch", "validate", "features"] + rng.sample(OPTIONAL_STEPS, rng.randint(0, 6))
    sweep = rng.random() < 0.35
    steps = []
    for n in names + ["train", "evaluate", "register"]:
        cpu = rng.choice([250, 500, 1000, 2000, 4000] if n == "train" else [100, 250, 500, 1000])
        mem = rng.choice([4, 8, 16] if n == "train" else [0.25, 0.5, 1, 2]) * GIB
        wall = rng.uniform(120_000, 1_800_000) if n == "train" else rng.uniform(800, 90_000)
        gpu = GPU_PROJECTS[project][1] if n == "train" and project in GPU_PROJECTS else 0
        members = [f"train[lr={lr}]" for lr in ("0.1", "0.03", "0.01", "0.003")] \
            if n == "train" and sweep else [n]
        for m in members:
            steps.append((m, n, cpu, int(mem), gpu, wall, rng.uniform(0.1, 0.95),
                          rng.uniform(0.2, 0.9)))
    return steps


def generate(rng, now, n_step_runs):
    """Rows for runs, step_runs, replica_usage and deployment_revisions."""
    ids = set()
    boundary = now - 7 * DAY_MS
    projects = {p: project_steps(rng, p) for p in PROJECTS}
    weights = [rng.uniform(0.3, 3.0) for _ in PROJECTS]
    image = {p: "sha256:" + sha("image", p) for p in PROJECTS}
    mean_rows = sum(w * len(projects[p]) for p, w in zip(PROJECTS, weights)) / sum(weights)
    originals = {}  # (project, step) -> (id, cache key) of the newest succeeded attempt
    runs, steps = [], []

    def one_run(t0, may_hit):
        project = rng.choices(PROJECTS, weights)[0]
        run_id = hexid(rng, "r-", ids)
        t0 = int(t0)
        cursor = t0 + rng.randint(40, 400)
        rows, failed_step = [], None
        no_cache = rng.random() < 0.05
        for seq, (name, declared, cpu, mem, gpu, wall_med, cores, peak) in \
                enumerate(projects[project]):
            base = dict.fromkeys(STEP_COLUMNS)
            base.update(run_id=run_id, step=name, seq=seq, attempt=1, image_digest=image[project],
                        requested_cpu_millis=cpu, requested_memory_bytes=mem, requested_gpu=gpu,
                        inputs_json="{}", outputs_json="{}",
                        usage_key="u" + sha(project, declared, "busybox:1", "{}", name)[:32])
            if failed_step is not None:
                rows.append(dict(base, id=hexid(rng, "s-", ids), status="skipped",
                                 reason=f"dependency {failed_step} did not succeed",
                                 finished_at_ms=cursor))
                continue
            key = (project, name)
            if may_hit and key in originals and not no_cache and rng.random() < 0.15:
                orig_id, cache_key = originals[key]
                rows.append(dict(base, id=hexid(rng, "s-", ids), status="cached", exit_code=0,
                                 cache_key=cache_key, cached_from=orig_id, started_at_ms=cursor,
                                 finished_at_ms=cursor, wall_ms=0,
                                 outputs_json=json.dumps({"out": "sha256:" + sha(orig_id)})))
                cursor += rng.randint(1, 20)
                continue
            attempt, memory = 1, mem
            while True:
                wall = max(50, int(rng.lognormvariate(0, 0.5) * wall_med))
                r = rng.random()
                outcome = "oom" if r < 0.012 else "fail" if r < 0.03 else "ok"
                if outcome == "oom" and attempt > 1:
                    outcome = "ok"
                row = dict(base, id=hexid(rng, "s-", ids), attempt=attempt,
                           requested_memory_bytes=memory, started_at_ms=cursor,
                           finished_at_ms=cursor + wall, wall_ms=wall,
                           cpu_micros=int(wall * 1000 * cpu / 1000 * cores
                                          * rng.uniform(0.7, 1.3)),
                           peak_memory_bytes=memory if outcome == "oom"
                           else int(memory * peak * rng.uniform(0.8, 1.1)),
                           cache_key="sha256:" + sha(project, name, str(rng.getrandbits(20))))
                if attempt > 1:
                    row["resources_note"] = f"memory × 2 after an OOM kill ({mem // MIB}Mi)"
                if gpu:
                    model = GPU_PROJECTS[project][0]
                    util = rng.uniform(5, 98)
                    row.update(gpu_model=model, gpu_util_percent=util, gpu_devices="0",
                               gpu_memory_peak_bytes=int(rng.uniform(4, 70) * GIB),
                               gpu_idle_ms=int(wall * rng.uniform(0.02, 0.6 if util < 40 else 0.1)))
                cursor += wall + rng.randint(30, 300)
                if outcome == "ok":
                    row.update(status="succeeded", exit_code=0,
                               outputs_json=json.dumps({"out": "sha256:" + sha(row["id"])}))
                    rows.append(row)
                    originals[key] = (row["id"], row["cache_key"])
                    break
                if outcome == "oom":
                    row.update(status="failed", exit_code=137, reason=
                               f"oom-killed (memory limit {memory // MIB}Mi)")
                    rows.append(row)
                    attempt, memory = attempt + 1, memory * 2
                    continue
                row.update(status="failed", exit_code=1, reason="exit code 1")
                rows.append(row)
                failed_step = name
                break
        rows = rows[:n_step_runs - len(steps)]
        # Keep every end clear of the 7-day boundary: move the run earlier if it touches it.
        last = max(r["finished_at_ms"] for r in rows)
        if any(abs(r["finished_at_ms"] - boundary) < GAP_MS for r in rows):
            shift = last - (boundary - GAP_MS) + 1000
            t0 -= shift
            for r in rows:
                for c in ("started_at_ms", "finished_at_ms"):
                    if r[c] is not None:
                        r[c] -= shift
            last -= shift
        status = "failed" if any(r["status"] == "failed" and r["reason"] == "exit code 1"
                                 for r in rows) else "succeeded"
        spec = (f"name: {project}\nsteps:\n" +
                "".join(f"  - name: {d}\n    image: busybox:1\n    command: [sh, -c, 'true']\n"
                        for d in dict.fromkeys(p[1] for p in projects[project])))
        runs.append(dict(id=run_id, pipeline=project, status=status,
                         spec_file=f"pipelines/{project}.yaml", spec_yaml=spec, params_json="{}",
                         images_json=json.dumps({"busybox:1": image[project]}),
                         no_cache=int(no_cache), rerun_of=None, created_at_ms=t0,
                         started_at_ms=t0, finished_at_ms=last + rng.randint(5, 50),
                         owner_pid=None, owner_host=None,
                         error="step failed" if status == "failed" else None,
                         submitted_by=rng.choice(USERS)))
        steps.extend(rows)

    # Runs in time order (so a cache hit reuses an earlier attempt) until the step runs are
    # there; the few more that rounding leaves to make are spread over the same range
    # without cache hits.
    for t0 in sorted(rng.uniform(now - 29.5 * DAY_MS, now - 2 * HOUR_MS)
                     for _ in range(int(n_step_runs / mean_rows * 0.97) + 1)):
        if len(steps) >= n_step_runs:
            break
        one_run(t0, True)
    while len(steps) < n_step_runs:
        one_run(rng.uniform(now - 29.5 * DAY_MS, now - 2 * HOUR_MS), False)
    assert len(steps) == n_step_runs

    replicas, revisions = [], []
    for name, project in DEPLOYMENTS:
        start0 = now - 35 * DAY_MS + rng.randint(0, 2 * DAY_MS)
        revisions.append(dict(deployment=name, revision=1, action="create",
                              principal=rng.choice(USERS), created_at_ms=start0 - MIN_MS,
                              spec_json=json.dumps({
                                  "model": {"reference": f"{name}@champion", "model": name,
                                            "version": 1},
                                  "replicas": 2, "cpu_millis": 1000, "memory_bytes": GIB,
                                  "sample_rate": 1.0,
                                  "monitor": {"rules": [], "window": "1h"},
                                  "retention": {"max_predictions": 1000000,
                                                "max_age": "30d"}})))
        gpu, gpu_model = (1, "NVIDIA L4") if name == "vision-api" else (0, None)
        for slot in range(rng.randint(1, 3)):
            t = start0 + slot * rng.randint(0, HOUR_MS)
            version = 1
            while t < now:
                life = rng.randint(6 * HOUR_MS, 3 * DAY_MS)
                end = t + life
                running = end >= now
                ended = now - rng.randint(0, 30_000) if running else end
                if abs(ended - (now - 7 * DAY_MS)) >= GAP_MS and \
                        abs(ended - (now - 30 * DAY_MS)) >= GAP_MS:
                    cpu = rng.choice([500, 1000, 2000])
                    replicas.append(dict(
                        id="c-" + sha(name, str(slot), str(t))[:24], deployment=name,
                        project=project, model=name, version=version, requested_cpu_millis=cpu,
                        requested_memory_bytes=rng.choice([1, 2, 4]) * GIB, requested_gpu=gpu,
                        gpu_model=gpu_model, started_at_ms=t, last_seen_ms=ended,
                        stopped_at_ms=None if running else end,
                        peak_memory_bytes=None if running else int(rng.uniform(0.2, 0.9) * GIB),
                        cpu_micros=None if running else int((end - t) * cpu * rng.uniform(0.05, 0.5))))
                version += rng.random() < 0.3
                t = end + rng.randint(1_000, 60_000)
    return runs, steps, replicas, revisions


def check_schema(db):
    """Every NOT NULL column without a default is one we fill; every column we fill exists."""
    con = sqlite3.connect(db)
    migrations = con.execute("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetchone()[0]
    for table, cols in [("runs", RUN_COLUMNS), ("step_runs", STEP_COLUMNS),
                        ("replica_usage", REPLICA_COLUMNS),
                        ("deployment_revisions", REVISION_COLUMNS)]:
        info = con.execute(f"PRAGMA table_info({table})").fetchall()
        have = {r[1] for r in info}
        required = {r[1] for r in info if r[3] and r[4] is None}
        assert set(cols) <= have, f"{table}: no column {set(cols) - have}"
        assert required <= set(cols), f"{table}: NOT NULL {required - set(cols)} not filled"
        assert have <= set(cols), f"{table}: a migration added {have - set(cols)}; fill it"
    con.close()
    return migrations


def insert(db, runs, steps, replicas, revisions):
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN")
    for table, cols, rows in [("runs", RUN_COLUMNS, runs), ("step_runs", STEP_COLUMNS, steps),
                              ("replica_usage", REPLICA_COLUMNS, replicas),
                              ("deployment_revisions", REVISION_COLUMNS, revisions)]:
        con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})", ([r[c] for c in cols] for r in rows))
    con.execute("COMMIT")
    con.close()


def expected(runs, steps, replicas, revisions, since, until, by):
    """What the report must say, from the rows inserted (crates/gantry-store/src/usage.rs)."""
    pipeline = {r["id"]: r["pipeline"] for r in runs}
    user = {r["id"]: r["submitted_by"] or "-" for r in runs}
    creator = {r["deployment"]: r["principal"] for r in revisions if r["revision"] == 1}
    by_id = {s["id"]: s for s in steps}
    groups = {}
    tot = dict(runs=0, step_runs=0, cache_hits=0, replicas=0, cpu_ms=0.0, gpu_ms=0.0)
    for s in steps:
        if not (since <= s["finished_at_ms"] < until):
            continue
        p = pipeline[s["run_id"]]
        key = {"project": p, "pipeline": p, "step": f"{p}/{s['step'].split('[')[0]}",
               "user": user[s["run_id"]]}[by]
        groups.setdefault(key, set()).add(s["run_id"])
        wall = s["wall_ms"] or 0
        if s["cached_from"] is None:
            tot["step_runs"] += s["started_at_ms"] is not None
        else:
            tot["cache_hits"] += 1
        tot["cpu_ms"] += s["requested_cpu_millis"] * wall
        o = by_id.get(s["cached_from"])
        if s["requested_gpu"] > 0 or (o and o["requested_gpu"] > 0):
            tot["gpu_ms"] += s["requested_gpu"] * wall
    tot["runs"] = sum(len(v) for v in groups.values())
    keys = set(groups)
    if by in ("project", "user"):
        for u in replicas:
            ended = u["stopped_at_ms"] or u["last_seen_ms"]
            if ended > since and u["started_at_ms"] < until:
                tot["replicas"] += 1
                keys.add((u["project"] or "-") if by == "project" else creator[u["deployment"]])
                inside = max(0, min(ended, until) - max(u["started_at_ms"], since))
                tot["cpu_ms"] += u["requested_cpu_millis"] * inside
                tot["gpu_ms"] += u["requested_gpu"] * inside
    tot["groups"] = len(keys)
    return tot


def parse_table(out):
    """The text report's total line and number of groups."""
    lines = [l.split() for l in out.splitlines()[2:] if l.strip()]
    total = [l for l in lines if l[0] == "total"]
    assert len(total) == 1, out[-2000:]
    t = total[0]
    return dict(runs=int(t[1]), step_runs=int(t[2]), cache_hits=int(t[3]),
                replicas=int(t[4]), groups=len(lines) - 1)


def check(label, out, want_lo, want_hi, is_json):
    if is_json:
        report = json.loads(out)
        t = report["total"]
        got = dict(runs=t["runs"], step_runs=t["step_runs"], cache_hits=t["cache_hits"],
                   replicas=t["replicas"], groups=len(report["lines"]))
        want = want_lo(report["since_ms"], report["until_ms"])
        for name, have, exp in [("cpu_hours_requested", t["cpu_hours_requested"],
                                 want["cpu_ms"] / 1000 / HOUR_MS),
                                ("gpu_hours", sum(t["gpu_hours"].values()),
                                 want["gpu_ms"] / HOUR_MS)]:
            assert abs(have - exp) <= 1e-6 * max(1.0, exp), f"{label}: {name} {have} != {exp}"
        lo = hi = want
    else:
        got = parse_table(out)
        lo, hi = want_lo, want_hi
    for k in ("runs", "step_runs", "cache_hits", "replicas", "groups"):
        assert lo[k] <= got[k] <= hi[k] or hi[k] <= got[k] <= lo[k], \
            f"{label}: {k} = {got[k]}, expected {lo[k]}..{hi[k]}"
    return got


def timed(cmd, env):
    """Wall ms, stdout, the wall clock (ms) before and after, and the child's CPU ms."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - p0
    t1 = time.time()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr[-2000:]}")
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000
    return elapsed * 1000, p.stdout, int(t0 * 1000), int(t1 * 1000) + 1, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--step-runs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--keep", metavar="DIR", help="make the GANTRY_HOME here and keep it")
    ap.add_argument("--gantry", help="default: target/release/gantry, else "
                    "$CARGO_TARGET_DIR/release/gantry")
    args = ap.parse_args()
    gantry = find_gantry(args.gantry)
    if args.keep:
        if os.path.exists(args.keep) and os.listdir(args.keep):
            sys.exit(f"--keep {args.keep}: not empty")
        home = os.path.abspath(args.keep)
        work = None
    else:
        work = tempfile.mkdtemp(prefix="gantry-bench-usage-")
        home = os.path.join(work, "home")
    env = dict(os.environ, GANTRY_HOME=home)
    for v in ("GANTRY_DB", "GANTRY_SERVER", "GANTRY_TOKEN"):
        env.pop(v, None)
    try:
        os.makedirs(home, exist_ok=True)
        timed([gantry, "usage"], env)
        db = os.path.join(home, "gantry.db")
        assert os.path.exists(db), "gantry usage did not create gantry.db"
        migrations = check_schema(db)
        empty = [timed([gantry, "usage", "--since", "30d"], env) for _ in range(args.repeat)]
        empty = ([e[0] for e in empty], [e[4] for e in empty])

        rng = random.Random(20261205)
        now = int(time.time() * 1000)
        t = time.perf_counter()
        runs, steps, replicas, revisions = generate(rng, now, args.step_runs)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        insert(db, runs, steps, replicas, revisions)
        insert_s = time.perf_counter() - t
        size = sum(os.path.getsize(db + x) for x in ("", "-wal") if os.path.exists(db + x))
        n_cached = sum(s["status"] == "cached" for s in steps)
        n_gpu = sum(s["requested_gpu"] > 0 and s["status"] != "cached" for s in steps)
        print(f"store: {len(runs):,} runs, {len(steps):,} step runs ({n_cached:,} cache hits, "
              f"{sum(s['status'] == 'failed' for s in steps):,} failed, "
              f"{sum(s['status'] == 'skipped' for s in steps):,} skipped, {n_gpu:,} on GPUs), "
              f"{len(replicas)} replicas of {len(revisions)} deployments, {len(PROJECTS)} "
              f"projects, {len(USERS)} users; {migrations} migrations")
        print(f"generated in {gen_s:.2f} s, inserted in one transaction in {insert_s:.2f} s; "
              f"gantry.db {size / MIB:.1f} MiB")

        cases = [("usage --since 30d", ["--since", "30d"], 30, "project", False),
                 ("usage --since 30d --by step", ["--since", "30d", "--by", "step"], 30, "step",
                  False),
                 ("usage --since 30d --by user -o json",
                  ["--since", "30d", "--by", "user", "-o", "json"], 30, "user", True),
                 ("usage --since 7d --by pipeline", ["--since", "7d", "--by", "pipeline"], 7,
                  "pipeline", False)]
        results = []
        for label, extra, days, by, is_json in cases:
            samples, cpus, got = [], [], None
            for i in range(args.repeat + 1):
                ms, out, t0, t1, cpu = timed([gantry, "usage", *extra], env)
                span = days * DAY_MS
                if is_json:
                    want = lambda s, u: expected(runs, steps, replicas, revisions, s, u, by)
                    got = check(label, out, want, None, True)
                else:
                    # The window starts between (start - span) and (end - span).
                    lo = expected(runs, steps, replicas, revisions, t1 - span, t0, by)
                    hi = expected(runs, steps, replicas, revisions, t0 - span, t1, by)
                    got = check(label, out, lo, hi, False)
                if i:
                    samples.append(ms)
                    cpus.append(cpu)
            results.append((label, (samples, cpus), got))

        print()
        print(f"gantry usage, whole process, {args.repeat} runs after one warm-up "
              f"(ms; target < {TARGET_MS} ms)")
        print(f"{'command':<40} {'min':>7} {'median':>7} {'max':>7} {'CPU':>7}  {'< 200 ms':<8}  "
              f"checked (runs / step runs / cache hits / replicas / groups)")
        rows = [("empty store: usage --since 30d", empty, None)] + results
        for label, (samples, cpus), got in rows:
            med = statistics.median(samples)
            counts = "" if got is None else \
                f"{got['runs']:,} / {got['step_runs']:,} / {got['cache_hits']:,} / " \
                f"{got['replicas']} / {got['groups']}"
            print(f"{label:<40} {min(samples):7.1f} {med:7.1f} {max(samples):7.1f} "
                  f"{statistics.median(cpus):7.1f}  "
                  f"{'yes' if med < TARGET_MS else 'NO':<8}  {counts}")
        print("(CPU: median user + system time of the process, which other load on the "
              "machine moves less than wall time)")
        print("(counts: the report's total line, equal to what was inserted in the window; "
              "runs summed over groups, so a run counts once per step group with --by step)")
        print(f"no peer: nothing else reports over this store; the empty store is the floor "
              f"(process start, opening the store, migrations check). gantry: {gantry}")
        if args.keep:
            print(f"kept GANTRY_HOME={home}")
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
