#!/usr/bin/env bash
# Runs every test against real components: runc containers on a busybox rootfs
# (Debian's busybox-static), a real PostgreSQL started here, the real mlflow client,
# scikit-learn + skl2onnx (ONNX flavor), promtool (Debian's prometheus) for /metrics, a real
# OCI registry (Debian's docker-registry, htpasswd from apache2-utils) with images pushed by
# skopeo, Python's `cryptography` as an independent cosign implementation, and the
# bring-your-own-code example (a Debian 12 image built with mmdebstrap, cached by its inputs),
# and the web UI in headless Chromium (Debian's chromium + chromium-driver over WebDriver)
# checked with axe-core (pinned and checksum-verified, cached under ~/.cache/gantry/axe-core),
# and emitted Kubernetes manifests, Argo Workflows and KFP pipeline specs checked by
# kubernetes-validate, Argo's CRD schema and the KFP SDK (testing/kube.rs, self-tested first).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
ensure_packages runc:runc /bin/busybox:busybox-static pg_ctlcluster:postgresql promtool:prometheus \
  docker-registry:docker-registry skopeo:skopeo htpasswd:apache2-utils mmdebstrap:mmdebstrap curl:curl
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the container tests need root (they run runc with cgroup limits); run: sudo scripts/test.sh" >&2
  exit 4
fi

# PostgreSQL: the store tests run against it as well as SQLite.
if [ -z "${GANTRY_TEST_POSTGRES_URL:-}" ]; then
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h | grep -q "^$ver main"; then pg_createcluster "$ver" main >/dev/null; fi
  pg_ctlcluster "$ver" main start 2>/dev/null || true
  for _ in $(seq 50); do pg_isready -q -h /var/run/postgresql && break; sleep 0.2; done
  su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='root'\" | grep -q 1 || createuser -s root"
  export GANTRY_TEST_POSTGRES_URL="postgres:///postgres?host=/var/run/postgresql&user=root"
fi

# Python for the tests (venvs, cached across runs): MLflow's client tests the MLflow API;
# scikit-learn, skl2onnx and onnx make the ONNX models the ONNX flavor is checked against;
# scipy gives the reference values of the drift statistics; cryptography writes and checks
# cosign signatures independently of Gantry; tritonclient is the OIP client (HTTP with binary
# tensors, gRPC); pandas lets mlflow.pyfunc log and load models; moto's server is the S3 API the
# artifact store is tested against (on 127.0.0.1); kubernetes-validate checks emitted Kubernetes
# manifests against the Kubernetes schemas it bundles, and jsonschema emitted Argo Workflows
# against Argo's CRD schema (testing/kube.rs). The Kubeflow Pipelines SDK (with kfp-kubernetes,
# whose executor config the platform spec must match), which checks emitted
# KFP pipeline specs, has a venv of its own: kfp pins requests and urllib3 exactly, which would
# move them under the other clients. Each venv's pins are the one list both the install and
# the check of a reused venv read.
test_pins=('mlflow-skinny==3.17.2' 'scikit-learn==1.9.1' 'skl2onnx==1.20.0' 'onnx==1.23.2' 'scipy==1.17.1' 'cryptography==50.0.2' 'tritonclient[http,grpc]==2.73.0' 'pandas==3.1.1' 'moto[server]==5.2.6' 'kubernetes-validate==1.37.0' 'jsonschema==4.26.0')
test_imports='import mlflow, sklearn, skl2onnx, onnx, scipy, cryptography, tritonclient.http, tritonclient.grpc, pandas, mlflow.pyfunc, moto.server, kubernetes_validate.utils, jsonschema, yaml'
kfp_pins=('kfp==2.17.3' 'kfp-kubernetes==2.17.3')
kfp_imports='import kfp.components, kfp.compiler, kfp.dsl, yaml; from kfp.pipeline_spec import pipeline_spec_pb2; from kfp.kubernetes import kubernetes_executor_config_pb2; from google.protobuf import json_format'
# venv_differs_from_pins VENV IMPORTS PIN...: true when VENV differs from the pins (or has no
# python), printing each pin it misses (not installed, or another version) or the import that
# fails.
venv_differs_from_pins() {
  local venv=$1 imports=$2; shift 2
  "$venv/bin/python" - "$imports" "$@" <<'PY' 2>/dev/null || return 0
import sys
from importlib import metadata
wrong = []
for pin in sys.argv[2:]:
    name, want = pin.split("==")
    name = name.split("[")[0]  # extras
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = "missing"
    if have != want:
        wrong.append(f"{name} {have} (pinned {want})")
try:
    exec(sys.argv[1])
except Exception as e:
    wrong.append(f"imports fail: {e}")
print("; ".join(wrong))
sys.exit(1 if wrong else 0)
PY
  return 1
}
# ensure_venv VENV IMPORTS PIN...: (re)installs the pins into VENV unless it already matches.
ensure_venv() {
  local venv=$1 imports=$2 differs; shift 2
  if differs=$(venv_differs_from_pins "$venv" "$imports" "$@"); then
    [ -x "$venv/bin/python" ] && echo "$venv differs from the pins (${differs:-no python}): reinstalling" >&2
    ensure_packages python3:python3
    # Debian's python3 needs python3-venv for `-m venv`.
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q "$@"
    if differs=$(venv_differs_from_pins "$venv" "$imports" "$@"); then
      echo "error: $venv still differs from the pins after installing them: $differs" >&2
      exit 4
    fi
  fi
}
venv=.venv-test
ensure_venv "$venv" "$test_imports" "${test_pins[@]}"
ensure_venv .venv-kfp "$kfp_imports" "${kfp_pins[@]}"
export GANTRY_TEST_MLFLOW_PYTHON="${GANTRY_TEST_MLFLOW_PYTHON:-$PWD/$venv/bin/python}"
export GANTRY_TEST_SKLEARN_PYTHON="${GANTRY_TEST_SKLEARN_PYTHON:-$PWD/$venv/bin/python}"
export GANTRY_TEST_TRITON_PYTHON="${GANTRY_TEST_TRITON_PYTHON:-$PWD/$venv/bin/python}"
export GANTRY_TEST_MOTO_SERVER="${GANTRY_TEST_MOTO_SERVER:-$PWD/$venv/bin/moto_server}"
export GANTRY_TEST_KUBERNETES_VALIDATE="${GANTRY_TEST_KUBERNETES_VALIDATE:-$PWD/$venv/bin/kubernetes-validate}"
export GANTRY_TEST_JSONSCHEMA_PYTHON="${GANTRY_TEST_JSONSCHEMA_PYTHON:-$PWD/$venv/bin/python}"
export GANTRY_TEST_KFP_PYTHON="${GANTRY_TEST_KFP_PYTHON:-$PWD/.venv-kfp/bin/python}"
# The validators of emitted manifests and pipeline specs (testing/kube.rs) must accept the
# valid examples in testing/selftest/ and reject the invalid ones before anything relies on them.
selftest_log=$(mktemp)
testing/selftest/run.sh >"$selftest_log" 2>&1 || { cat "$selftest_log" >&2; echo "error: testing/selftest/run.sh failed: a validator of testing/kube.rs is broken" >&2; exit 1; }
rm -f "$selftest_log"

# Browser tests of the web UI (testing/browser.rs): chromium, chromium-driver and axe-core.
axe_js=$(scripts/browser-deps.sh)
export GANTRY_TEST_AXE_JS="${GANTRY_TEST_AXE_JS:-$axe_js}"

# Every component is installed above: a test that would skip for lack of one fails instead
# (see testing/skip.rs, which every crate's tests include).
export GANTRY_TEST_REQUIRE_ALL=1

cargo test --workspace --locked --no-fail-fast "$@"
# The server's REST, auth and deployment suites once more, on PostgreSQL.
# The million-prediction monitor comparison runs once, on SQLite, above; the smaller aggregate
# tests cover the same SQL on PostgreSQL. The targets are picked by name from the whole
# workspace, not with `-p gantry-server`: cargo unifies dependency features over the packages
# a command selects, so `-p` would build every dependency and test binary a second time with
# other features (gigabytes of disk; a CI run once ran out of it here). gantry-store's `auth`
# suite, which shares a name, runs again with them (a second).
GANTRY_TEST_SERVER_ON_POSTGRES=1 cargo test --workspace --locked --test api --test auth --test deployments --test uploads --test exported "$@" -- --skip a_million_predictions
# Bring your own code, end to end: the example's Debian 12 + scikit-learn image (built once
# with mmdebstrap, then cached under ~/.cache/gantry/examples by a key of its inputs) pushed to
# a throwaway registry, signed, pulled by tag under a trust policy, trained, registered, served.
cargo build --locked -p gantry
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$PWD/$target_dir
example_home=$(mktemp -d)
trap 'rm -rf "$example_home"' EXIT
GANTRY="$target_dir/debug/gantry" GANTRY_HOME="$example_home" examples/python-sklearn/run.sh >"$example_home.log" 2>&1 \
  || { tail -n 60 "$example_home.log" >&2; echo "examples/python-sklearn/run.sh failed (whole log: $example_home.log)" >&2; exit 1; }
grep -E '^(pushed|signed|verified|run r-)' "$example_home.log"
rm -f "$example_home.log"
# The docs' own test: every `sh runnable` block of README.md, CONTRIBUTING.md, bench/README.md
# and docs/ runs against a fresh GANTRY_HOME, and every relative link and anchor resolves.
python3 scripts/doc-test.py --gantry "$target_dir/debug/gantry"
