#!/usr/bin/env python3
"""The per-step cost of the Kubernetes step wrapper's transfers (docs/kubernetes.md, "The step
contract in a pod"): `gantry step-exec` uploading a 100 MB output and `gantry step-fetch`
downloading it as the next step's input, both against a real S3 API (moto_server on
127.0.0.1), next to a plain object_store transfer of the same file to the same server (what
`aws s3 cp` does), measured in the same run. Plus the manifest build time of a 1,000-member
sweep (`gantry compile`'s Argo and KFP targets, target < 100 ms), when its example is built.

What it does:
  1. starts moto_server (`--moto`, else $GANTRY_TEST_MOTO_SERVER, else
     .venv-test/bin/moto_server; scripts/test.sh installs it) on a free 127.0.0.1 port, creates
     a bucket with an unsigned PUT (moto accepts it), and writes a `--size-mb` (100) MB file of
     seeded random bytes (incompressible; nothing compresses in either path anyway) under a
     temp dir ($BENCH_DIR, else /tmp). Every process gets the S3 settings testing/moto.rs
     gives the tests (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/SECRET=testing, AWS_REGION,
     AWS_ALLOW_HTTP);
  2. times, as whole processes (wall clock around `subprocess.run`, output captured; one
     untimed warm-up round, then `--repeat` rounds; min / median / max, and the median CPU
     time of the process, user + system, from getrusage), in each round:
       baseline up    `s3_transfer --op up`: a multipart PUT of the file in 8 MiB parts, 4 in
                      flight (crates/gantry-artifacts/examples/s3_transfer.rs; the part size
                      and concurrency ArtifactStore uses), to one key overwritten each round;
       baseline down  `s3_transfer --op down`: one streamed GET into a new file;
       step-exec      `gantry step-exec -- true` with GANTRY_STEP_PLAN declaring the output
                      `out` in the store `s3://BUCKET/rN` (a fresh prefix each round, so the
                      content is never there yet), GANTRY_STEP_WORK a fresh dir whose
                      outputs/out is a hard link to the file (made outside the timing) and
                      GANTRY_STEP_TERMINATION_LOG a temp file; the digest is read from the
                      report in it (and checked to be the file's sha256);
       step-fetch     `gantry step-fetch` with a plan whose one input is that digest in that
                      prefix, into a fresh work dir; the fetched inputs/in is checked to have
                      the file's size (Gantry itself verified the digest);
     and, to split the wrapper's fixed costs from the transfer:
       exec, stored   the same step-exec again on the same prefix: the content is already
                      there, so it only hashes the file and reads the meta object;
       exec, no output  step-exec with no output written (the plan still declares one):
                      process start, running `true`, the report;
       fetch, no input  step-fetch with a plan without inputs: process start, params.json,
                      and the copy of its own binary to bin/gantry that the init container
                      leaves for the wrapper (every fetch does it; the binary is ~70 MB);
     plus one in-process sha256 of the file with Python's hashlib (OpenSSL), from the page
     cache, for scale. Each round's Gantry objects are deleted afterwards (moto keeps them
     in memory);
  3. prints a table, each Gantry upload/fetch against the baseline's (ratio of medians and
     the difference in seconds: the overhead), and the per-step total (upload + fetch vs
     up + down). Gantry does work the baseline does not, and the figures include it:
     step-exec reads the file twice (a hashing pass that decides whether to upload at all,
     then a second pass that hashes again while uploading and refuses the upload if the bytes
     changed), checks for the meta object first and writes it last; step-fetch reads the
     meta object, hashes while downloading and refuses content that does not match;
  4. runs the compile_bench example (`--compile-bench PATH`, else
     target/release/examples/compile_bench or $CARGO_TARGET_DIR's) when it is built, and
     prints its lines; otherwise says how to build it.
Nothing is asserted about timing.

Build first:
  cargo build --release --locked -p gantry
  cargo build --release --locked -p gantry-artifacts --example s3_transfer
  cargo build --release --locked -p gantry-compile --example compile_bench \\
      --features k8s-openapi/v1_33          # optional, for step 4

Usage: bench/kube_wrapper.py [--size-mb 100] [--repeat 5] [--seed 13] [--moto PATH]
                             [--gantry PATH] [--s3-transfer PATH] [--compile-bench PATH]
"""
import argparse, hashlib, http.client, json, os, random, resource, shutil, socket, statistics
import subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
BUCKET = "gantry-bench"


def find(given, rel, what, build):
    if given:
        if not os.path.exists(given):
            sys.exit(f"{what}: {given} does not exist")
        return given
    candidates = [os.path.join(ROOT, "target", rel)]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(os.path.join(ROOT, os.environ["CARGO_TARGET_DIR"], rel))
    for c in candidates:
        if os.path.exists(c):
            return c
    if build is None:
        return None
    sys.exit(f"no {what} at {' or '.join(candidates)}: run `{build}` or pass its path")


class Moto:
    def __init__(self, exe):
        self.port = free_port()
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    sys.exit(f"moto_server ({exe}) did not listen on {self.endpoint}")
                time.sleep(0.05)

    def request(self, method, path):
        """An unsigned request (moto accepts them); returns the status."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            c.request(method, path, headers={"Content-Length": "0"})
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def timed(cmd, env):
    """Wall seconds, stdout and the child's CPU seconds of one whole process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr[-2000:]}")
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return elapsed, p.stdout, cpu


def write_random(path, size, seed):
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MIB)
            f.write(rng.randbytes(n))
            left -= n


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def plan(prefix, inputs=(), outputs=("out",)):
    return json.dumps({"v": 1, "artifacts": f"s3://{BUCKET}/{prefix}",
                       "inputs": [{"path": p, "digest": d} for p, d in inputs],
                       "outputs": list(outputs), "params": {}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=100, help="the artifact's size (MB = 10^6 B)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--moto", help="moto_server executable (default: $GANTRY_TEST_MOTO_SERVER, "
                    "else .venv-test/bin/moto_server)")
    ap.add_argument("--gantry", help="default: target/release/gantry, else "
                    "$CARGO_TARGET_DIR/release/gantry")
    ap.add_argument("--s3-transfer", help="the baseline's binary (default: "
                    "target/release/examples/s3_transfer, else $CARGO_TARGET_DIR's)")
    ap.add_argument("--compile-bench", help="the compile_bench example's binary (default: "
                    "target/release/examples/compile_bench, else $CARGO_TARGET_DIR's; "
                    "skipped when not built)")
    args = ap.parse_args()

    gantry = find(args.gantry, "release/gantry", "gantry binary",
                  "cargo build --release --locked -p gantry")
    s3_transfer = find(args.s3_transfer, "release/examples/s3_transfer", "s3_transfer example",
                       "cargo build --release --locked -p gantry-artifacts --example s3_transfer")
    compile_bench = find(args.compile_bench, "release/examples/compile_bench",
                         "compile_bench example", None)
    moto_exe = args.moto or os.environ.get("GANTRY_TEST_MOTO_SERVER") or \
        os.path.join(ROOT, ".venv-test/bin/moto_server")
    if not os.path.exists(moto_exe):
        sys.exit(f"no moto_server at {moto_exe}: pass --moto PATH (pip install 'moto[server]')")

    work = tempfile.mkdtemp(prefix="gantry-bench-kube-", dir=os.environ.get("BENCH_DIR"))
    moto = Moto(moto_exe)
    try:
        if moto.request("PUT", f"/{BUCKET}") != 200:
            sys.exit(f"creating bucket {BUCKET} on {moto.endpoint} failed")
        env = dict(os.environ, AWS_ENDPOINT_URL=moto.endpoint, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
                   AWS_ALLOW_HTTP="true")
        for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        size = args.size_mb * 1_000_000
        data = os.path.join(work, "data.bin")
        write_random(data, size, args.seed)
        digest = "sha256:" + sha256_file(data)
        t0 = time.perf_counter()
        sha256_file(data)
        hash_s = time.perf_counter() - t0

        names = ["baseline up", "baseline down", "step-exec", "step-fetch", "exec, stored",
                 "exec, no output", "fetch, no input"]
        wall = {n: [] for n in names}
        cpu = {n: [] for n in names}

        def exec_env(run_dir, prefix, with_output):
            os.makedirs(os.path.join(run_dir, "outputs"))
            if with_output:
                os.link(data, os.path.join(run_dir, "outputs", "out"))
            e = dict(env, GANTRY_STEP_PLAN=plan(prefix), GANTRY_STEP_WORK=run_dir,
                     GANTRY_STEP_TERMINATION_LOG=os.path.join(run_dir, "termination-log"))
            return e

        def report_of(run_dir):
            with open(os.path.join(run_dir, "termination-log")) as f:
                return json.load(f)

        for rnd in range(args.repeat + 1):
            warm = rnd == 0
            got = {}
            r = os.path.join(work, f"round{rnd}")
            os.makedirs(r)
            # Baseline: up, then down into a new file.
            got["baseline up"] = timed([s3_transfer, "--bucket", BUCKET, "--file", data,
                                        "--key", "plain/data.bin", "--op", "up"], env)
            out = os.path.join(r, "plain.bin")
            got["baseline down"] = timed([s3_transfer, "--bucket", BUCKET, "--file", data,
                                          "--key", "plain/data.bin", "--op", "down",
                                          "--out", out], env)
            if os.path.getsize(out) != size:
                sys.exit(f"the baseline downloaded {os.path.getsize(out)} bytes, not {size}")
            os.remove(out)
            # Gantry: upload as the step's output, into a fresh prefix.
            prefix = f"r{rnd}"
            d = os.path.join(r, "exec")
            got["step-exec"] = timed([gantry, "step-exec", "--", "true"],
                                     exec_env(d, prefix, True))
            report = report_of(d)
            if report.get("outputs", {}).get("out") != digest or report.get("error"):
                sys.exit(f"step-exec reported {report}, expected out = {digest}")
            d = os.path.join(r, "fetch")
            os.makedirs(d)
            got["step-fetch"] = timed([gantry, "step-fetch"], dict(
                env, GANTRY_STEP_PLAN=plan(prefix, [("in", digest)], ()), GANTRY_STEP_WORK=d))
            if os.path.getsize(os.path.join(d, "inputs", "in")) != size:
                sys.exit("step-fetch placed a file of the wrong size")
            shutil.rmtree(d)
            # The fixed costs.
            d = os.path.join(r, "stored")
            got["exec, stored"] = timed([gantry, "step-exec", "--", "true"],
                                        exec_env(d, prefix, True))
            if report_of(d).get("outputs", {}).get("out") != digest:
                sys.exit(f"step-exec (stored) reported {report_of(d)}")
            d = os.path.join(r, "nothing")
            got["exec, no output"] = timed([gantry, "step-exec", "--", "true"],
                                           exec_env(d, prefix, False))
            if report_of(d).get("outputs"):
                sys.exit(f"step-exec without an output reported {report_of(d)}")
            d = os.path.join(r, "noinput")
            os.makedirs(d)
            got["fetch, no input"] = timed([gantry, "step-fetch"], dict(
                env, GANTRY_STEP_PLAN=plan(prefix, (), ()), GANTRY_STEP_WORK=d))
            shutil.rmtree(r)
            hexd = digest.split(":")[1]
            for key in (f"{prefix}/sha256/{hexd}", f"{prefix}/meta/{hexd}.json"):
                moto.request("DELETE", f"/{BUCKET}/{key}")
            if not warm:
                for n in names:
                    wall[n].append(got[n][0])
                    cpu[n].append(got[n][2])
            print(f"round {rnd}{' (warm-up)' if warm else ''}: " +
                  ", ".join(f"{n} {got[n][0]:.3f}s" for n in names), file=sys.stderr)
        moto.request("DELETE", f"/{BUCKET}/plain/data.bin")
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)

    med = {n: statistics.median(wall[n]) for n in names}
    mb = size / 1e6
    print(f"\n{args.size_mb} MB of random bytes through moto_server at 127.0.0.1, whole "
          f"processes, {args.repeat} rounds after a warm-up (seconds)\n")
    print(f"{'':18} {'min':>7} {'median':>7} {'max':>7} {'CPU med':>8} {'MB/s':>7}")
    for n in names:
        w = wall[n]
        rate = f"{mb / med[n]:7.0f}" if n in names[:5] else f"{'':7}"
        print(f"{n:18} {min(w):7.3f} {med[n]:7.3f} {max(w):7.3f} "
              f"{statistics.median(cpu[n]):8.3f} {rate}")
    print(f"{'sha256 (hashlib)':18} {'':7} {hash_s:7.3f} {'':7} {'':8} {mb / hash_s:7.0f}")

    print("\nGantry vs the plain transfer (medians)")
    for g, b in (("step-exec", "baseline up"), ("step-fetch", "baseline down")):
        print(f"  {g:10} {med[g]:.3f} s vs {b} {med[b]:.3f} s: {med[g] / med[b]:.2f}×, "
              f"+{med[g] - med[b]:.3f} s")
    total_g = med["step-exec"] + med["step-fetch"]
    total_b = med["baseline up"] + med["baseline down"]
    print(f"  per step   upload + fetch {total_g:.3f} s vs up + down {total_b:.3f} s: "
          f"{total_g / total_b:.2f}×, +{total_g - total_b:.3f} s")
    print(f"  of which fixed: step-exec with no output {med['exec, no output']:.3f} s, "
          f"step-fetch with no input {med['fetch, no input']:.3f} s (copies its own binary); "
          f"a stored output costs {med['exec, stored']:.3f} s (hash + meta check)")
    print("  Gantry's side hashes (sha256) the output twice on upload and the input once on "
          "fetch, verifies it, and reads/writes a meta object; the baseline does none of it.")

    print("\nManifest build of a 1,000-member sweep (target < 100 ms)")
    if compile_bench:
        p = subprocess.run([compile_bench], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{compile_bench} exited {p.returncode}: {p.stderr[-2000:]}")
        for line in p.stdout.splitlines():
            print(f"  {line}")
    else:
        print("  skipped: build it with `cargo build --release --locked -p gantry-compile "
              "--example compile_bench --features k8s-openapi/v1_33` or pass --compile-bench")


if __name__ == "__main__":
    main()
