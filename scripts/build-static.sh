#!/usr/bin/env bash
# Builds a static `gantry` (glibc, static-pie): the binary the built-in image must hold for
# Kubernetes, where it is copied into every step's pod and runs in any image.
#
#   scripts/build-static.sh            -> target/x86_64-unknown-linux-gnu/release/gantry
#
# `--target` keeps the static flag off build scripts and proc-macros (they must stay dynamic).
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(rustc -vV | sed -n 's/^host: //p')"
case "$target" in
  *-linux-gnu) ;;
  *) echo "error: a static build needs a *-linux-gnu host (this is $target)" >&2; exit 4 ;;
esac
echo "building a static gantry for $target (a cold release build with whole-program LTO takes about 15 minutes on 2 cores and ~4.5 GB of memory)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" -p gantry
bin="target/$target/release/gantry"
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "error: $bin still loads shared libraries:" >&2
  ldd "$bin" >&2
  exit 5
fi
echo "$bin"
