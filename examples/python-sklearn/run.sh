#!/usr/bin/env bash
# The "bring your own code" example end to end: build (cached) and import the Debian 12 +
# scikit-learn image, run the pipeline (built-in ingest, profile and split; train.py in the
# image; built-in evaluate and register), show the run, the metrics and the registered model,
# then serve the model with `gantry serve` and send it two rows.
#
#   examples/python-sklearn/run.sh [gantry run options, e.g. -p C=0.5 --no-cache]
#
# Uses GANTRY_HOME (gantry's default: ~/.gantry); for a throwaway store:
#   GANTRY_HOME=$(mktemp -d) examples/python-sklearn/run.sh
# Other settings: GANTRY (the binary), GANTRY_EXAMPLE_IMAGE, GANTRY_EXAMPLE_CACHE (see
# build-image.sh), GANTRY_EXAMPLE_PORT (where `gantry serve` listens, default 18571),
# GANTRY_EXAMPLE_SERVE=0 to skip serving.
#
# Exit codes: gantry's (0 success, 1 a step failed, 2 bad input, …), 4 when this machine lacks
# root, runc or mmdebstrap (the message says what to install).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${GANTRY_EXAMPLE_IMAGE:-gantry-examples/python-sklearn:1}
port=${GANTRY_EXAMPLE_PORT:-18571}
model=breast-cancer-sklearn

section() { printf '\n== %s\n' "$*"; }

missing=()
[[ $(id -u) -eq 0 ]] || missing+=("root: runc and mmdebstrap's root mode need it; run as root (e.g. sudo -E $0)")
command -v runc >/dev/null 2>&1 || missing+=("runc: apt-get install runc")
command -v mmdebstrap >/dev/null 2>&1 || missing+=("mmdebstrap: apt-get install mmdebstrap")
if ((${#missing[@]})); then
    echo "run.sh: this machine lacks what the example needs:" >&2
    for m in "${missing[@]}"; do echo "  - $m" >&2; done
    exit 4
fi

. "$here/find-gantry.sh"
export GANTRY=$gantry GANTRY_EXAMPLE_IMAGE=$image
echo "gantry: $gantry; store: ${GANTRY_HOME:-~/.gantry}"

section "1. the image: Debian 12 + python3-sklearn + /app/train.py (cached tar), imported as $image"
"$here/build-image.sh"
"$gantry" images

section "2. a registry, a signature and a trust policy"
# The image goes to a registry (GANTRY_EXAMPLE_REGISTRY=host:port, or a throwaway
# docker-registry started here on loopback), is signed with a key made for the example, and
# the pipeline runs under a policy that admits only images of that repository signed by it.
work=$(mktemp -d)
registry_pid=
cleanup() {
    [[ -n $registry_pid ]] && { kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT
registry=${GANTRY_EXAMPLE_REGISTRY:-}
if [[ -z $registry ]]; then
    command -v docker-registry >/dev/null 2>&1 || { echo "run.sh: docker-registry is not installed (apt-get install docker-registry), or set GANTRY_EXAMPLE_REGISTRY=host:port" >&2; exit 4; }
    registry_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    registry=127.0.0.1:$registry_port
    cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $registry}
YAML
    docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "http://$registry/v2/" >/dev/null || { cat "$work/registry.log" >&2; echo "run.sh: the registry did not start" >&2; exit 4; }
    echo "registry: docker-registry on $registry (throwaway)"
fi
registry_image=$registry/examples/python-sklearn:1
"$gantry" image push "$image" "$registry_image"
keys=${GANTRY_HOME:-$HOME/.gantry}/keys
mkdir -p "$keys"
[[ -f $keys/example.key ]] || "$gantry" key generate "$keys/example"
"$gantry" image sign "$registry_image" --key "$keys/example.key"
"$gantry" image verify "$registry_image" --key "$keys/example.pub"
policy=$work/policy.yaml
cat >"$policy" <<YAML
# Only the example's repository, only when signed by the example's key. Built-in steps run
# the built-in image, which is trusted by construction.
registries: [$registry]
rules:
  - images: ["$registry/examples/*"]
    signatures: {any_of: ["$keys/example.pub"]}
YAML
cat "$policy"

section "3. the pipeline, pulling $registry_image and checking it against the policy"
# pipeline.yaml names localhost:5000; run a copy (next to it, so its relative data path still
# holds) that names the registry used here.
local_spec=$here/pipeline.local.yaml
sed "s#^\\(    image: \\)localhost:5000/examples/python-sklearn:1\$#\\1$registry_image#" "$here/pipeline.yaml" >"$local_spec"
grep -q "image: $registry_image\$" "$local_spec" || { echo "run.sh: could not point $local_spec at $registry_image" >&2; exit 5; }
"$gantry" validate "$local_spec"
rc=0
"$gantry" --policy "$policy" run "$local_spec" "$@" || rc=$?
run=$("$gantry" runs --output json | sed -n 's/^ *"id": "\(r-[0-9a-f]*\)".*/\1/p' | head -n 1)

section "4. the run"
"$gantry" runs
[[ -n $run ]] && "$gantry" show "$run"
[[ -n $run ]] && { echo; echo "log of the train step:"; "$gantry" logs "$run" train; }
((rc == 0)) || { echo "run.sh: gantry run exited $rc" >&2; exit "$rc"; }

section "5. the registered model"
"$gantry" models
"$gantry" model show "$model@champion"

if [[ ${GANTRY_EXAMPLE_SERVE:-1} == 0 ]]; then
    exit 0
fi
section "6. serve it (gantry serve, loopback) and predict two rows of the data"
if ! command -v curl >/dev/null 2>&1; then
    echo "curl is not installed: skipping (apt-get install curl)"
    exit 0
fi
serve_log=$(mktemp)
"$gantry" serve "$model@champion" --listen "127.0.0.1:$port" >"$serve_log" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; rm -f "$serve_log"; cleanup' EXIT
for _ in $(seq 100); do
    grep -q '^serving' "$serve_log" && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
done
cat "$serve_log"
grep -q '^serving' "$serve_log" || { echo "run.sh: gantry serve did not start" >&2; exit 1; }
# Rows 1 and 20 of the CSV (malignant, benign) as {"rows": [{column: value, …}, …]}, label left out.
body=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) name[i] = $i; next }
    NR == 2 || NR == 21 {
        row = ""
        for (i = 1; i <= NF; i++) if (name[i] != "diagnosis") row = row (row == "" ? "" : ",") "\"" name[i] "\":" $i
        else truth = truth (truth == "" ? "" : ", ") $i
        rows = rows (rows == "" ? "" : ",") "{" row "}"
    }
    END { print "{\"rows\":[" rows "]}"; print truth > "/dev/stderr" }' \
    "$here/../breast-cancer/data/breast_cancer.csv" 2>"$serve_log.truth")
echo "POST /v2/models/$model/predict (true labels: $(cat "$serve_log.truth"))"
rm -f "$serve_log.truth"
curl -sS --fail-with-body "http://127.0.0.1:$port/v2/models/$model/predict" \
    -H 'content-type: application/json' -d "$body"
echo
