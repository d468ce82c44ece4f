#!/usr/bin/env bash
# What the browser tests (testing/browser.rs) need: Debian's chromium and chromium-driver, and
# axe-core (the accessibility checker the tests run inside each page), downloaded once from the
# npm registry, verified against the checksums pinned here, and cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/gantry/axe-core/$AXE_VERSION/axe.min.js
# Idempotent: a cached file whose checksum matches is kept. Prints the path of axe.min.js on
# stdout (everything else goes to stderr), so
#   export GANTRY_TEST_AXE_JS=$(scripts/browser-deps.sh)
# points the tests at it.
#
# Exit status: 0 ready; 1 chromium/chromium-driver missing and we are not root to install
# them, or the download failed or did not match its checksum.
set -euo pipefail

# Pinned axe-core: to move to another version, take `dist.tarball` and `dist.integrity` (base64
# sha512) from https://registry.npmjs.org/axe-core, convert the integrity to hex
# (`base64 -d | od -An -tx1 | tr -d ' \n'`), and record the sha256 of package/axe.min.js.
# testing/browser.rs names the same version (AXE_VERSION) for its default path.
AXE_VERSION=4.14.1
AXE_TARBALL_URL="https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz"
# = dist.integrity sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==
AXE_TARBALL_SHA512=1477dafa598d8d065f273d6af302aa203c02e83131707b7fa648cd41bd3d6b734f8c22a0dab86ee6a6f64b8afbe804b214d36db85a2826965edfb3a0b9d546b5
AXE_MIN_JS_SHA256=29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c

# --- chromium and chromedriver -------------------------------------------------------------
# GANTRY_TEST_CHROMIUM / GANTRY_TEST_CHROMEDRIVER, when set, name binaries to use instead of
# Debian's (testing/browser.rs reads the same variables).
chromium=${GANTRY_TEST_CHROMIUM:-/usr/bin/chromium}
chromedriver=${GANTRY_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}
missing=()
[ -x "$chromium" ] || missing+=(chromium)
[ -x "$chromedriver" ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ -n "${GANTRY_TEST_CHROMIUM:-}${GANTRY_TEST_CHROMEDRIVER:-}" ]; then
    echo "error: not executable: $chromium and/or $chromedriver (GANTRY_TEST_CHROMIUM / GANTRY_TEST_CHROMEDRIVER)" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be stale or absent (fresh container): update once and retry.
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "error: missing packages: ${missing[*]}" >&2
    echo "       install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# --- axe-core --------------------------------------------------------------------------------
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

dir="${XDG_CACHE_HOME:-$HOME/.cache}/gantry/axe-core/$AXE_VERSION"
js="$dir/axe.min.js"
if [ -f "$js" ] && [ "$(sha256_of "$js")" = "$AXE_MIN_JS_SHA256" ]; then
  echo "$js"
  exit 0
fi
[ -f "$js" ] && echo "$js does not match its pinned sha256: downloading it again" >&2

if ! command -v curl >/dev/null 2>&1; then
  echo "error: curl is needed to download axe-core: sudo apt-get install curl" >&2
  exit 1
fi
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.download.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "downloading axe-core $AXE_VERSION from $AXE_TARBALL_URL" >&2
if ! curl -sSfL --retry 3 --max-time 120 -o "$tmp/axe-core.tgz" "$AXE_TARBALL_URL"; then
  echo "error: could not download $AXE_TARBALL_URL" >&2
  exit 1
fi
got=$(sha512sum "$tmp/axe-core.tgz" | cut -d' ' -f1)
if [ "$got" != "$AXE_TARBALL_SHA512" ]; then
  echo "error: $AXE_TARBALL_URL has sha512 $got, expected $AXE_TARBALL_SHA512" >&2
  exit 1
fi
tar --no-same-owner -xzf "$tmp/axe-core.tgz" -C "$tmp" package/axe.min.js package/LICENSE
got=$(sha256_of "$tmp/package/axe.min.js")
if [ "$got" != "$AXE_MIN_JS_SHA256" ]; then
  echo "error: package/axe.min.js in $AXE_TARBALL_URL has sha256 $got, expected $AXE_MIN_JS_SHA256" >&2
  exit 1
fi
# axe-core is MPL-2.0: keep its license next to it. Rename last, so a reader never sees a
# partial axe.min.js.
mv -f "$tmp/package/LICENSE" "$dir/LICENSE"
mv -f "$tmp/package/axe.min.js" "$js"
echo "$js"
