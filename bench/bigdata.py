#!/usr/bin/env python3
"""Big data through a pipeline: step logs and large artifacts, measured in the same run.

Logs (a step printing N short lines, `seq 1 N`):
  * the step's own wall time (as `gantry show` records it) printing to its log, against the
    same command in a step writing to /dev/null and against a bare shell on the host;
  * the peak memory of the `gantry run` process at 1M and 10M lines (flat is the goal);
  * `gantry logs RUN STEP` printing the 1M-line log (whole-process time).
Artifacts (a step writing a SIZE file with dd, the next step reading it with `wc -c`):
  * Gantry's own overhead: run wall time minus the two steps' wall times, minus the same for
    a 1 MiB file (the fixed cost of two steps), against one `sha256sum` of the same file on
    this machine (target: <= 1.5x); peak memory of `gantry run`; and, for reference, what
    writing, hashing and copying the file once in a shell costs.
Usage: bench/bigdata.py [--gantry target/release/gantry] [--runs 3] [--size-mb 2048]
       [--lines 1000000] [--big-lines 10000000] [--only logs|artifacts]
Needs root, runc and busybox-static (like the tests). Builds target/release/gantry when missing.
"""
import argparse, hashlib, json, os, resource, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_gantry(gantry, env, args):
    """Runs gantry; returns (stdout, wall seconds, peak RSS in MiB of that process)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([gantry] + args, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"gantry {' '.join(args)} failed with {p.returncode}")
    return out, wall, usage.ru_maxrss / 1024


def pipeline(path, steps):
    lines = ["name: bench", "steps:"]
    for name, command, extra in steps:
        lines += [f"  - name: {name}", "    image: busybox:1",
                  f"    command: [sh, -c, {json.dumps(command)}]", "    cache: false",
                  "    resources: { memory: 2Gi }"]
        lines += [f"    {e}" for e in extra]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def step_walls(gantry, env, run_id):
    show, _, _ = run_gantry(gantry, env, ["show", run_id, "--output", "json"])
    return {s["step"]: s["usage"]["wall_ms"] / 1000 for s in json.loads(show)["steps"]}


def run_pipeline(gantry, env, path):
    out, wall, rss = run_gantry(gantry, env, ["run", path, "--output", "json"])
    summary = json.loads(out)
    if summary["status"] != "succeeded":
        sys.exit(f"the bench pipeline failed: {summary}")
    return summary["run_id"], wall, rss


def med(xs):
    return statistics.median(xs)


def bench_logs(args, work, env):
    print(f"== logs: a step printing seq 1 {args.lines:,} ==")
    p = os.path.join(work, "logs.yaml")
    pipeline(p, [("print", f"seq 1 {args.lines}", []),
                 ("quiet", f"seq 1 {args.lines} > /dev/null", ["after: [print]"])])
    printed, quiet, rss, logs_s = [], [], [], []
    for _ in range(args.runs):
        run_id, _, peak = run_pipeline(args.gantry, env, p)
        w = step_walls(args.gantry, env, run_id)
        printed.append(w["print"])
        quiet.append(w["quiet"])
        rss.append(peak)
        out, secs, _ = run_gantry(args.gantry, env, ["logs", run_id, "print"])
        printed_lines = out.count(b"\n")
        if printed_lines != args.lines:
            sys.exit(f"gantry logs printed {printed_lines} lines, not {args.lines}")
        logs_s.append(secs)
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", f"seq 1 {args.lines} > /dev/null"], check=True)
    bare = time.perf_counter() - t0
    added = med(printed) - med(quiet)
    print(f"  step printing to its log   {med(printed)*1000:8.0f} ms  (runs: "
          + ", ".join(f"{x*1000:.0f}" for x in printed) + ")")
    print(f"  same step to /dev/null     {med(quiet)*1000:8.0f} ms")
    print(f"  bare shell on the host     {bare*1000:8.0f} ms")
    print(f"  added by the log           {added*1000:8.0f} ms   (target < 1000 ms)")
    print(f"  gantry logs RUN STEP       {med(logs_s)*1000:8.0f} ms for {args.lines:,} lines "
          f"(target < 1000 ms)")
    print(f"  gantry run peak RSS        {med(rss):8.1f} MiB")
    if args.big_lines:
        p = os.path.join(work, "biglogs.yaml")
        pipeline(p, [("print", f"seq 1 {args.big_lines}", [])])
        run_id, _, peak = run_pipeline(args.gantry, env, p)
        w = step_walls(args.gantry, env, run_id)
        print(f"  {args.big_lines:,} lines: step {w['print']*1000:.0f} ms, gantry run peak RSS "
              f"{peak:.1f} MiB (vs {med(rss):.1f} MiB at {args.lines:,}: flat is the goal)")


def bench_artifacts(args, work, env):
    size = args.size_mb
    print(f"== artifacts: a {size} MiB file from one step to the next ==")
    def handoff(mb, name):
        p = os.path.join(work, f"{name}.yaml")
        pipeline(p, [("produce", f"dd if=/dev/urandom of=/gantry/outputs/f bs=1M count={mb} 2>/dev/null",
                      ["outputs: [f]"]),
                     ("consume", "wc -c < ${inputs.f}", ["inputs: { f: produce.f }"])])
        return p
    big, small = handoff(size, "big"), handoff(1, "small")
    overheads, rss = [], []
    for _ in range(args.runs):
        run_id, wall, _ = run_pipeline(args.gantry, env, small)
        w = step_walls(args.gantry, env, run_id)
        fixed = wall - w["produce"] - w["consume"]
        run_id, wall, peak = run_pipeline(args.gantry, env, big)
        w = step_walls(args.gantry, env, run_id)
        overheads.append(wall - w["produce"] - w["consume"] - fixed)
        rss.append(peak)
        # gc keeps what was stored in the last minute: drop the run's objects by hand so
        # that disk use stays at one copy of the file.
        for sub in ("objects/sha256", "objects/meta", "materialized"):
            d = os.path.join(env["GANTRY_HOME"], "artifacts", sub)
            for name in os.listdir(d) if os.path.isdir(d) else []:
                p = os.path.join(d, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    # One sha256 pass over the same amount of data, from the page cache, and a shell doing
    # write + hash + copy once.
    f = os.path.join(work, "file")
    subprocess.run(["dd", "if=/dev/urandom", f"of={f}", "bs=1M", f"count={size}"], check=True,
                   capture_output=True)
    subprocess.run(["cat", f], check=True, stdout=subprocess.DEVNULL)
    sha, sha_cli = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        sha.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", f], check=True, capture_output=True)
        sha_cli.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", f"sha256sum {f} >/dev/null && cp {f} {f}.copy"], check=True)
    shell = time.perf_counter() - t0
    os.remove(f + ".copy")
    os.remove(f)
    ratio = med(overheads) / med(sha)
    print(f"  gantry's own overhead      {med(overheads)*1000:8.0f} ms  (runs: "
          + ", ".join(f"{x*1000:.0f}" for x in overheads) + ")")
    print(f"  one sha256 pass (hashlib)  {med(sha)*1000:8.0f} ms   (coreutils sha256sum: "
          f"{med(sha_cli)*1000:.0f} ms)")
    print(f"  overhead / sha256 pass     {ratio:8.2f}x   (target <= 1.5x)")
    print(f"  shell: hash + copy once    {shell*1000:8.0f} ms")
    print(f"  gantry run peak RSS        {med(rss):8.1f} MiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gantry", default=os.path.join(ROOT, "target/release/gantry"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--big-lines", type=int, default=10_000_000)
    ap.add_argument("--only", choices=["logs", "artifacts"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/bigdata.py runs real containers: run it as root")
    if not os.path.exists(args.gantry):
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "gantry"], cwd=ROOT,
                       check=True)
    work = tempfile.mkdtemp(prefix="gantry-bench-bigdata-", dir=os.environ.get("BENCH_DIR"))
    env = dict(os.environ, GANTRY_HOME=os.path.join(work, "home"))
    try:
        tar = os.path.join(work, "busybox.tar")
        subprocess.run([os.path.join(ROOT, "scripts/busybox-rootfs.sh"), tar], check=True)
        run_gantry(args.gantry, env, ["image", "import", tar, "--name", "busybox:1"])
        if args.only != "artifacts":
            bench_logs(args, work, env)
        if args.only != "logs":
            bench_artifacts(args, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
