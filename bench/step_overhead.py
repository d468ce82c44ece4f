#!/usr/bin/env python3
"""Per-step overhead of Gantry over a bare `runc run`, measured in the same run.

Prints, for a no-op step (`true` in busybox):
  * bare runc: median wall time of `runc run` on the very rootfs Gantry uses;
  * gantry, 1 step: median wall time of a whole `gantry run` (process start, store,
    scheduling, container, recording) of a one-step pipeline with caching off;
  * gantry, marginal step: (median of a 21-step chain - median of a 1-step run) / 20,
    i.e. what each additional step costs inside one run;
  * the overheads of both over bare runc, and the wall time of a 50-step fan-out.
Usage: bench/step_overhead.py [--runs 20] [--gantry target/release/gantry]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, **kw):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def median_ms(samples):
    return statistics.median(samples) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--gantry", default=os.path.join(ROOT, "target/release/gantry"))
    args = ap.parse_args()
    if not os.path.exists(args.gantry):
        subprocess.run(["cargo", "build", "--release", "-p", "gantry"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="gantry-bench-")
    env = dict(os.environ, GANTRY_HOME=os.path.join(work, "home"))
    try:
        tar = os.path.join(work, "busybox.tar")
        subprocess.run([os.path.join(ROOT, "scripts/busybox-rootfs.sh"), tar], check=True)
        info = json.loads(subprocess.run([args.gantry, "image", "import", tar, "--name", "busybox:1",
                                          "--output", "json"], env=env, check=True,
                                         capture_output=True).stdout)
        rootfs = os.path.join(env["GANTRY_HOME"], "images/rootfs", info["digest"].split(":")[1])

        # Bare runc on the same rootfs, read-only root like Gantry's.
        bundle = os.path.join(work, "bundle")
        os.makedirs(bundle)
        subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
        spec["root"] = {"path": rootfs, "readonly": True}
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/true"]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        state = os.path.join(work, "runc-state")
        timed(["runc", "--root", state, "run", "--bundle", bundle, "warmup"])
        bare = [timed(["runc", "--root", state, "run", "--bundle", bundle, f"b{i}"]) for i in range(args.runs)]

        def pipeline(name, steps, chain):
            lines = [f"name: {name}", "steps:"]
            for i in range(steps):
                lines += [f"  - name: s{i}", "    image: busybox:1", "    command: [/bin/true]",
                          "    cache: false", "    resources: { cpu: 1, memory: 64Mi }"]
                if chain and i > 0:
                    lines.append(f"    after: [s{i-1}]")
            path = os.path.join(work, f"{name}.yaml")
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            return path

        one = pipeline("one", 1, False)
        chain = pipeline("chain", 21, True)
        fan = pipeline("fan", 50, False)
        run = lambda p, *extra: timed([args.gantry, "run", p, "--output", "json", *extra], env=env)
        run(one)
        g1 = [run(one) for _ in range(args.runs)]
        g21 = [run(chain) for _ in range(max(5, args.runs // 4))]
        # Each step asks for 1 CPU; --cpus sets how many may run at once.
        g50 = [run(fan) for _ in range(3)]
        g50_wide = [run(fan, "--cpus", "8") for _ in range(3)]

        b, o, c, f = median_ms(bare), median_ms(g1), median_ms(g21), median_ms(g50)
        fw = median_ms(g50_wide)
        marginal = (c - o) / 20
        print(f"bare runc run (no-op, median of {len(bare)}):       {b:7.1f} ms")
        print(f"gantry run, 1 no-op step (median of {len(g1)}):     {o:7.1f} ms  "
              f"(overhead over bare runc: {o - b:+.1f} ms, ratio {o / b:.2f}x)")
        print(f"gantry marginal step in a 21-step chain:          {marginal:7.1f} ms  "
              f"(overhead over bare runc: {marginal - b:+.1f} ms per step, ratio {marginal / b:.2f}x)")
        print(f"gantry 50-step fan-out pipeline (median of {len(g50)}): {f:7.1f} ms  "
              f"({f / 50:.1f} ms per step; capacity {os.cpu_count()} CPUs, so {os.cpu_count()} at a time)")
        print(f"same fan-out with --cpus 8 (8 at a time):        {fw:7.1f} ms  ({fw / 50:.1f} ms per step)")
        print(f"target: overhead over bare runc <= 30 ms per step -> "
              f"{'met' if marginal - b <= 30 else 'NOT met'}")
    finally:
        subprocess.run(["runc", "--root", os.path.join(work, "runc-state"), "list", "-q"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
