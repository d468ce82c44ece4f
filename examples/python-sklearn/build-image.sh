#!/usr/bin/env bash
# Builds the example's image: a Debian 12 (bookworm) root filesystem with python3 and
# scikit-learn from Debian's archive and our train.py at /app/train.py, then imports it into
# Gantry's image store as gantry-examples/python-sklearn:1.
#
# Two tars are cached, each named by the sha256 of what it is made from: the Debian base
# (this script, the package list, suite, mirror, apt settings, architecture,
# SOURCE_DATE_EPOCH) and the image (the base and train.py). A second run, or a CI job with the
# cache directory restored, skips mmdebstrap and only imports; a changed train.py costs a
# copy of the base, not a new Debian build.
#
#   examples/python-sklearn/build-image.sh [--no-import] [--print-path]
#
# Environment:
#   GANTRY_EXAMPLE_CACHE   where the tar is kept (default ${XDG_CACHE_HOME:-$HOME/.cache}/gantry/examples)
#   GANTRY_EXAMPLE_IMAGE   the image name to import as (default gantry-examples/python-sklearn:1)
#   GANTRY_EXAMPLE_MIRROR  an apt mirror URL or a sources file (default: this machine's Debian
#                          sources for the suite, else mmdebstrap's default: deb.debian.org
#                          with the updates and security suites)
#   GANTRY                 the gantry binary (default: gantry on PATH, else the repository's target/{release,debug}/gantry)
#   GANTRY_HOME            the Gantry store to import into (gantry's own default: ~/.gantry)
#   SOURCE_DATE_EPOCH      timestamps in the image (default fixed below)
#
# Exit codes: 0 built (or cached) and imported, 2 bad flag, 4 this machine lacks root or
# mmdebstrap (the message says what to install), anything else: the failing command's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

suite=bookworm
variant=essential
# Only what train.py imports; numpy, scipy, joblib and threadpoolctl come as dependencies.
packages=(python3 python3-sklearn)
# Debian 12's python3-scipy depends on python3-pythran, a compiler of Python to C++ that scipy
# needs only to be built: with it come g++, gcc, binutils, boost, python3-dev and more, over
# 500 MiB. After installation the build purges it and everything only it needed
# (dpkg --force-depends; /var/lib/dpkg/status stays the truth about what is installed) and
# then checks that scikit-learn still trains. An empty list keeps them.
prune=(python3-pythran)
image_name=${GANTRY_EXAMPLE_IMAGE:-gantry-examples/python-sklearn:1}
cache_dir=${GANTRY_EXAMPLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry/examples}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1717200000}  # 2024-06-01, any fixed value will do

do_import=1
print_path=0
for arg in "$@"; do
    case $arg in
        --no-import) do_import=0 ;;
        --print-path) print_path=1 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-image.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "build-image.sh: $*" >&2; }

# --- what the machine must have ------------------------------------------------------------
missing=()
[[ $(id -u) -eq 0 ]] || missing+=("root: mmdebstrap's root mode and runc need it; run as root (e.g. sudo -E $0)")
command -v mmdebstrap >/dev/null 2>&1 || missing+=("mmdebstrap: apt-get install mmdebstrap")
if ((${#missing[@]})); then
    say "this machine lacks what the build needs:"
    for m in "${missing[@]}"; do echo "  - $m" >&2; done
    say "on Debian 12 as root: apt-get install mmdebstrap runc, then run $0 again"
    exit 4
fi

# --- the mirror: this machine's apt configuration for the suite ---------------------------
# A file holding the suite's Debian entries (one-line or deb822) is pasted into the chroot's
# sources as is, so a local mirror, a snapshot or a caching proxy configured there is used.
mirror=${GANTRY_EXAMPLE_MIRROR:-}
if [[ -z $mirror ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        if grep -Eq "^[[:space:]]*(deb[[:space:]].*[[:space:]]$suite([[:space:]]|$)|Suites:.*[[:space:]]$suite([[:space:]]|$))" "$f" &&
            grep -Eq 'debian' "$f"; then
            mirror=$f
            break
        fi
    done
fi
mirror_args=()
mirror_id="mmdebstrap's default"
if [[ -n $mirror ]]; then
    mirror_args=("$mirror")
    mirror_id=$mirror
    [[ -f $mirror ]] && mirror_id="$mirror:$(sha256sum <"$mirror" | cut -d' ' -f1)"
fi

# apt settings of this machine that matter for downloading: a proxy and (for snapshot
# mirrors) accepting old Release files. Passed for the build only, never left in the image.
aptopts=()
while IFS= read -r line; do
    [[ -n $line ]] && aptopts+=("--aptopt=$line")
done < <(apt-config dump 2>/dev/null | grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date) ' || true)

arch=$(dpkg --print-architecture)

# Prints the installed packages not needed by the Essential set and the roots (argv[1],
# comma-separated) once the packages in argv[2] are left out: a dependency is followed through
# its first alternative (or providing package) that is installed and not left out.
prune_py='
import re, sys
roots, skip = sys.argv[1].split(","), set(filter(None, sys.argv[2].split(",")))
pkgs, provides = {}, {}
for block in open("/var/lib/dpkg/status").read().split("\n\n"):
    f, key = {}, None
    for line in block.splitlines():
        if line[:1] in " \t" and key:
            f[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            f[key] = value.strip()
    if "Package" in f and f.get("Status", "").endswith(" installed"):
        pkgs[f["Package"]] = f
        for p in f.get("Provides", "").split(","):
            if p.strip():
                provides.setdefault(p.split()[0], []).append(f["Package"])
keep = set()
todo = [n for n, f in pkgs.items() if f.get("Essential") == "yes"] + roots
while todo:
    n = todo.pop()
    if n in keep or n in skip or n not in pkgs:
        continue
    keep.add(n)
    for field in ("Pre-Depends", "Depends"):
        for alternatives in pkgs[n].get(field, "").split(","):
            for alt in alternatives.split("|"):
                name = re.split(r"[ (:]", alt.strip())[0]
                cands = [c for c in ([name] if name in pkgs else provides.get(name, [])) if c not in skip]
                if cands:
                    todo.append(cands[0])
                    break
print(" ".join(sorted(set(pkgs) - keep)))
'
export prune_py prune_roots prune_skip
prune_roots=$(IFS=,; echo "${packages[*]}")
prune_skip=$(IFS=,; echo "${prune[*]}")
# What the image must do: fit scikit-learn's logistic regression (numpy, scipy's L-BFGS).
check_py='
import sys, numpy, scipy, sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
rng = numpy.random.default_rng(0)
x = rng.normal(size=(200, 5)); y = (x[:, 0] + x[:, 1] > 0).astype(int)
score = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y).score(x, y)
assert score > 0.9, score
print("image check: python3", sys.version.split()[0], "scikit-learn", sklearn.__version__,
      "numpy", numpy.__version__, "scipy", scipy.__version__, "- a logistic regression trains")
'
export check_py

# --- two cached tars ------------------------------------------------------------------------
# base: Debian + packages (slow: downloads and installs); keyed by this script, the package
# list, suite, mirror, apt settings and SOURCE_DATE_EPOCH.
# final: base + /app/train.py (a copy and a tar --append: seconds); keyed by base and train.py,
# so changing train.py does not rebuild Debian.
base_key=$(
    {
        echo "script"; sha256sum <"$here/build-image.sh"
        echo "packages ${packages[*]} prune ${prune[*]}"
        echo "suite $suite variant $variant arch $arch"
        echo "mirror $mirror_id"
        printf 'aptopt %s\n' "${aptopts[@]}"
        echo "epoch $SOURCE_DATE_EPOCH"
    } | sha256sum | cut -c1-16
)
key=$( { echo "base $base_key"; sha256sum <"$here/train.py"; } | sha256sum | cut -c1-16)
base_path=$cache_dir/python-sklearn-base-$base_key.tar
tar_path=$cache_dir/python-sklearn-$key.tar
mkdir -p "$cache_dir"
partial=
staging=
trap 'rm -rf ${partial:+"$partial"} ${staging:+"$staging"}' EXIT

size() { echo "$(du -h "$1" | cut -f1) ($(stat -c %s "$1") bytes)"; }

if [[ -s $tar_path ]]; then
    say "cache hit: $tar_path, $(size "$tar_path"); skipping mmdebstrap"
else
    if [[ -s $base_path ]]; then
        say "cache hit: Debian base $base_path, $(size "$base_path"); skipping mmdebstrap"
    else
        say "building $base_path: Debian $suite ($variant) + ${packages[*]} from $mirror_id"
        start=$(date +%s)
        partial=$base_path.partial.$$
        # path-exclude: no documentation, man pages or locales; the Python packages' test
        # suites are deleted after installation (excluding them upsets py3compile in the
        # packages' postinst). /var/lib/dpkg/status stays, so scanners see every package.
        # resolv.conf and hostname are the build machine's: removed (steps have no network).
        mmdebstrap \
            --mode=root --format=tar \
            --variant="$variant" \
            --include="$(IFS=,; echo "${packages[*]}")" \
            "${aptopts[@]}" \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/lintian/*' \
            --customize-hook='if [ -n "$prune_skip" ]; then
                    set -e
                    drop=$(chroot "$1" python3 -c "$prune_py" "$prune_roots" "$prune_skip")
                    echo "pruning $(echo $drop | wc -w) packages: $drop"
                    chroot "$1" dpkg --purge --force-depends $drop
                fi' \
            --customize-hook='find "$1/usr/lib/python3/dist-packages" -depth -type d -name tests -exec rm -rf {} +' \
            --customize-hook='chroot "$1" python3 -c "$check_py"' \
            --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname" "$1/etc/apt/apt.conf.d/99mmdebstrap"' \
            --customize-hook='rm -f "$1/var/cache/debconf"/*-old "$1/var/lib/dpkg"/*-old' \
            "$suite" "$partial" "${mirror_args[@]}"
        mv "$partial" "$base_path"
        partial=
        say "built the Debian base $base_path, $(size "$base_path"), in $(($(date +%s) - start))s"
    fi
    start=$(date +%s)
    partial=$tar_path.partial.$$
    staging=$(mktemp -d)
    install -d -m 0755 "$staging/app"
    install -m 0644 "$here/train.py" "$staging/app/train.py"
    cp "$base_path" "$partial"
    tar --append -f "$partial" -C "$staging" --owner=0 --group=0 --numeric-owner \
        --mtime="@$SOURCE_DATE_EPOCH" --sort=name ./app
    mv "$partial" "$tar_path"
    partial=
    say "built $tar_path (base + /app/train.py), $(size "$tar_path"), in $(($(date +%s) - start))s"
    # Older builds of this example are no longer wanted: keep the current base and image.
    find "$cache_dir" -maxdepth 1 -name 'python-sklearn-*.tar*' ! -name '*.partial.*' \
        ! -name "$(basename "$tar_path")" ! -name "$(basename "$base_path")" -delete
fi

if ((print_path)); then
    echo "$tar_path"
fi
((do_import)) || exit 0

. "$here/find-gantry.sh"
# Importing hashes and unpacks the whole tar: skip it when this store already has the image
# under this name (the digest of each cached tar is remembered next to it).
digest_file=$tar_path.digest
if [[ -s $digest_file ]]; then
    digest=$(cat "$digest_file")
    listed=$("$gantry" images --output json 2>/dev/null | tr -d ' \n' || true)
    if grep -qE "\"digest\":\"$digest\",\"names\":\[[^]]*\"${image_name//./\\.}\"" <<<"$listed"; then
        say "already imported: $image_name is ${digest:0:19}… in this store"
        exit 0
    fi
fi
start=$(date +%s)
imported=$("$gantry" image import "$tar_path" --name "$image_name" --output json)
digest=$(tr -d ' \n' <<<"$imported" | sed -n 's/^{"digest":"\(sha256:[0-9a-f]*\)".*/\1/p')
[[ -n $digest ]] && echo "$digest" >"$digest_file"
say "imported $tar_path as $image_name (${digest:0:19}…) in $(($(date +%s) - start))s"
