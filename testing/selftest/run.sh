#!/usr/bin/env bash
# Proves the validators of testing/kube.rs: every *_valid.yaml here must pass its checker and
# every other file must fail it (k8s_*: kubernetes-validate --strict for each Kubernetes
# version kube.rs uses, any output counting as failure, as kube.rs does; argo_*:
# testing/argo_check.py; kfp_*: testing/kfp_check.py). Uses the GANTRY_TEST_* variables
# scripts/test.sh exports, defaulting to .venv-test and .venv-kfp. Also checks that
# kfp_valid.yaml is what kfp_pipeline.py compiles to with the pinned SDK. Exit 1 when a checker
# accepts a bad file or rejects a good one.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$root/.venv-test
kv=${GANTRY_TEST_KUBERNETES_VALIDATE:-$venv/bin/kubernetes-validate}
jpy=${GANTRY_TEST_JSONSCHEMA_PYTHON:-$venv/bin/python}
kpy=${GANTRY_TEST_KFP_PYTHON:-$root/.venv-kfp/bin/python}
export PYTHONDONTWRITEBYTECODE=1
wrong=0
# check WANT FILE CHECKER: runs CHECKER (k8s, argo or kfp) on FILE; the verdict is "pass"
# only with exit 0 and, for kubernetes-validate --quiet, no output (a WARN fails, as in
# kube.rs); WANT is pass, fail, or "name" (pass for *_valid.yaml, fail otherwise).
check() {
  local want=$1 file=$2 checker=$3 out rc start=$EPOCHREALTIME
  case $checker in
    k8s) out=$("$kv" --strict --quiet -k 1.30.0 -k 1.33.0 "$file" 2>&1); rc=$?
         [ -n "$out" ] && [ "$rc" -eq 0 ] && rc=1 ;;
    argo) out=$("$jpy" "$root/testing/argo_check.py" "$file" 2>&1); rc=$? ;;
    kfp) out=$("$kpy" "$root/testing/kfp_check.py" "$file" 2>&1); rc=$? ;;
  esac
  local ms=$(( (${EPOCHREALTIME/./} - ${start/./}) / 1000 ))
  local verdict=fail
  [ "$rc" -eq 0 ] && verdict=pass
  if [ "$want" = name ]; then
    want=fail
    [[ $(basename "$file") == *_valid.yaml ]] && want=pass
  fi
  if [ "$verdict" = "$want" ]; then
    printf 'ok    %-26s %-4s %s as it should (%d ms)\n' "$(basename "$file")" "$checker" "$verdict" "$ms"
    [ "$want" = fail ] && printf '%s\n' "$out" | head -n 4 | sed 's/^/        /'
  else
    printf 'WRONG %-26s %-4s %s, should %s (%d ms)\n' "$(basename "$file")" "$checker" "$verdict" "$want" "$ms"
    printf '%s\n' "$out" | sed 's/^/        /'
    wrong=1
  fi
}
for f in "$here"/k8s_*.yaml; do check name "$f" k8s; done
for f in "$here"/argo_*.yaml; do check name "$f" argo; done
for f in "$here"/kfp_*.yaml; do check name "$f" kfp; done
# No checker accepts another's valid documents (kubernetes-validate only warns on a Workflow).
check fail "$here/argo_valid.yaml" k8s
check fail "$here/kfp_valid.yaml" k8s
check fail "$here/k8s_valid.yaml" argo
check fail "$here/kfp_valid.yaml" argo
check fail "$here/argo_valid.yaml" kfp
# The valid KFP spec is the SDK's own output, not hand-written.
compiled=$(mktemp --suffix=.yaml)
if "$kpy" "$here/kfp_pipeline.py" "$compiled" && cmp -s "$compiled" "$here/kfp_valid.yaml"; then
  echo "ok    kfp_valid.yaml             kfp  is what kfp_pipeline.py compiles to"
else
  echo "WRONG kfp_valid.yaml             kfp  differs from what kfp_pipeline.py compiles to (regenerate it: see kfp_pipeline.py)"
  diff "$compiled" "$here/kfp_valid.yaml" | head -n 20
  wrong=1
fi
rm -f "$compiled"
[ $wrong -eq 0 ] && echo "selftest: every checker accepts the valid files and rejects the invalid ones"
exit $wrong
