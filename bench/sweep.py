#!/usr/bin/env python3
"""Scale of one pipeline: a `matrix:` sweep of N no-op steps (busybox `true`), then its fully
cached re-run, each a whole `gantry run` process.

Prints the wall time of the first run (every member a container) and of the cached re-run
(no container at all), per step and against the targets (1,000 members < 20 s, cached < 1 s).
No peer is measured: Kubeflow Pipelines, Metaflow and MLflow Projects need a cluster or a
scheduler service that cannot run here.

Usage: bench/sweep.py [--members 1000] [--runs 2] [--gantry target/release/gantry]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=2, help="fresh homes measured, one after the other")
    ap.add_argument("--gantry", default=os.path.join(ROOT, "target/release/gantry"))
    args = ap.parse_args()
    if not os.path.exists(args.gantry):
        subprocess.run(["cargo", "build", "--release", "-p", "gantry"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="gantry-sweep-")
    try:
        tar = os.path.join(work, "busybox.tar")
        subprocess.run([os.path.join(ROOT, "scripts/busybox-rootfs.sh"), tar], check=True,
                       stdout=subprocess.DEVNULL)
        values = ", ".join(str(i) for i in range(args.members))
        spec = os.path.join(work, "sweep.yaml")
        with open(spec, "w") as f:
            f.write(
                "name: sweep\n"
                "steps:\n"
                "  - name: member\n"
                "    image: busybox:1\n"
                "    command: [/bin/true, \"${matrix.i}\"]\n"
                f"    matrix: {{ i: [{values}] }}\n"
                "    resources: { cpu: 100m, memory: 16Mi }\n"
            )
        firsts, cached = [], []
        for run in range(args.runs):
            env = dict(os.environ, GANTRY_HOME=os.path.join(work, f"home{run}"))
            subprocess.run([args.gantry, "image", "import", tar, "--name", "busybox:1"], env=env,
                           check=True, stdout=subprocess.DEVNULL)
            for bucket in (firsts, cached):
                t0 = time.perf_counter()
                out = subprocess.run([args.gantry, "run", spec, "--output", "json"], env=env,
                                     capture_output=True)
                elapsed = time.perf_counter() - t0
                if out.returncode != 0:
                    sys.exit(f"gantry run failed: {out.stderr.decode()[-2000:]}")
                summary = json.loads(out.stdout)
                steps = len(summary["steps"])
                hits = summary.get("cache_hits", 0)
                bucket.append((elapsed, steps, hits))
        for label, samples, target in (("first run", firsts, 20.0), ("cached re-run", cached, 1.0)):
            for elapsed, steps, hits in samples:
                print(f"{label:>14}: {elapsed:7.2f} s for {steps} steps ({hits} cache hits), "
                      f"{elapsed / steps * 1000:6.1f} ms per step")
            best = min(s[0] for s in samples)
            scaled = best * 1000 / args.members
            print(f"{label:>14}: target {target:.0f} s for 1,000 members -> "
                  f"{'met' if scaled < target else 'NOT met'} ({scaled:.2f} s scaled to 1,000)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
