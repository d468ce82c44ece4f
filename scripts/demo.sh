#!/usr/bin/env bash
# The end-to-end demo on the embedded defaults (runc, SQLite, local artifact store):
# builds gantry, then `gantry demo` writes an example project (the Wisconsin
# breast-cancer data) and runs ingest → profile → validate → clean → split → a training
# sweep → select-best → evaluate → register → deploy in least-privilege containers, then
# serves the champion (a runc replica behind the Open Inference Protocol), sends traffic
# that drifts half-way, posts feedback and prints the monitor's verdict; a second run's
# pipeline is served entirely from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
ensure_packages runc:runc ldd:libc-bin
if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root — gantry will try rootless mode and explain what it needs if the kernel refuses." >&2
fi
# The demo's own build (profile `demo` in Cargo.toml): what the demo runs optimized at
# opt-level 1, what it never runs (the ONNX runtime, Kubernetes, S3, PostgreSQL, TLS) not
# optimized, so the first run waits about 7 minutes on 2 cores instead of 15. Every feature is
# in it; `cargo install --locked --path crates/gantry` builds the fully optimized binary.
if [ ! -x target/demo/gantry ]; then
  echo "building gantry for the demo: the first build compiles about 420 crates, about 7 minutes on 2 cores; later builds take seconds to minutes" >&2
fi
cargo build --profile demo --locked -p gantry
export PATH="$PWD/target/demo:$PATH"
export GANTRY_HOME=${GANTRY_HOME:-$PWD/.gantry-demo}
gantry demo --dir "${DEMO_DIR:-$PWD/gantry-demo}" --force
echo
echo "== the same demo again: every step is a cache hit =="
gantry demo --dir "${DEMO_DIR:-$PWD/gantry-demo}"
echo
gantry models
gantry model show breast-cancer@champion
echo
gantry deployments
echo
gantry monitor breast-cancer
echo
echo "GANTRY_HOME=$GANTRY_HOME — with PATH=$PWD/target/demo:\$PATH try: gantry runs, gantry show <run>,"
echo "  gantry logs <run> evaluate, gantry server (serves the breast-cancer deployment at /v2/models/breast-cancer/infer)"
