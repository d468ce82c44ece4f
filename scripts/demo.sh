#!/usr/bin/env bash
# The end-to-end demo on the embedded defaults (runc, SQLite, local artifact store):
# builds gantry, imports a busybox image, validates and runs examples/hello twice
# (the second run is served from the cache), then shows the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
ensure_packages runc:runc /bin/busybox:busybox-static
if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root — gantry will try rootless mode and explain what it needs if the kernel refuses." >&2
fi
cargo build --release --locked -p gantry
export PATH="$PWD/target/release:$PATH"
export GANTRY_HOME=${GANTRY_HOME:-$PWD/.gantry-demo}
tar=$(mktemp --suffix=.tar)
trap 'rm -f "$tar"' EXIT
scripts/busybox-rootfs.sh "$tar"
gantry image import "$tar" --name busybox:1
gantry images
gantry validate examples/hello/pipeline.yaml
gantry run examples/hello/pipeline.yaml -p greeting=hi
echo
echo "== the same run again: every step is a cache hit =="
gantry run examples/hello/pipeline.yaml -p greeting=hi
echo
gantry runs
run=$(gantry runs --output json --limit 1 | sed -n 's/.*"id": "\(r-[0-9a-f]*\)".*/\1/p' | head -1)
gantry show "$run"
echo
echo "GANTRY_HOME=$GANTRY_HOME — try: gantry logs $run, gantry artifacts $run, gantry rerun $run"
