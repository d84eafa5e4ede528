#!/usr/bin/env bash
# Static validation of the Istio deployment in istio/. No cluster, no network after
# the one-time install.
#
#   istio/validate.sh            (from the repository root, or from anywhere)
#
# 1. every Kubernetes object (istio/base rendered with kustomize, plus the plain
#    manifests) against the Kubernetes OpenAPI schemas shipped by kubernetes-validate,
#    strict (unknown fields fail), for each version in K8S_VERSIONS;
# 2. every Istio object, the mesh config (IstioOperator spec.meshConfig and the `mesh`
#    key of the istio ConfigMap) and the proxy.istio.io/config annotation with
#    check-jsonschema, against schemas that istio/schemas/extract.py builds for this run,
#    closed against unknown fields: AuthorizationPolicy and PeerAuthentication from the
#    PyPI package cloudcoil-models-istio (models of Istio's CRD definitions; pinned,
#    sha256-checked, cached in .venv), the mesh/proxy config from hand-written subsets
#    (no registry ships Istio's protos); see istio/schemas/README.md;
# 3. the portcullis config in the ConfigMap with `portcullis check-config`, with the
#    container's literal PORTCULLIS_*/OIDC_PROXY_HEADER env values applied;
# plus cross-checks no schema can express (validate.py): references between objects,
# ports, selectors, the hardening of the Deployment, and the mesh wiring.
#
# Environment:
#   PORTCULLIS_BIN  portcullis binary (default target/debug/portcullis, which is
#                   brought up to date with `cargo build` first)
#   K8S_VERSIONS    Kubernetes versions to validate against (default "1.32.0 1.37.0":
#                   the oldest Istio 1.30 supports and the newest schemas shipped)
#   ISTIO_DIR       the directory to validate (default: the one holding this script)
#   CI              when "true", a package that cannot be downloaded fails the run; otherwise
#                   the checks that need it are reported as SKIP
#
# Installs kubernetes-validate and check-jsonschema (pinned) into the repository's
# .venv when they are missing or at another version, and downloads the pinned
# cloudcoil-models-istio wheel into .venv/istio-models/ once; otherwise changes nothing.
set -euo pipefail

K8S_VERSIONS=${K8S_VERSIONS:-"1.32.0 1.37.0"}
DEFAULT_BIN=target/debug/portcullis
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$DEFAULT_BIN}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ISTIO_DIR=$(cd "${ISTIO_DIR:-$HERE}" && pwd)
VENV="$ROOT/.venv"
cd "$ROOT"
# shellcheck source=istio/tools.sh
. "$HERE/tools.sh" # the pins, validator_tools, istio_schemas

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# --- tools ------------------------------------------------------------------------
step "tools"
validator_tools

if [ "$PORTCULLIS_BIN" = "$DEFAULT_BIN" ]; then
  command -v cargo >/dev/null || die "cargo not found (needed to build $DEFAULT_BIN; or set PORTCULLIS_BIN)"
  cargo build --quiet --bin portcullis
fi
[ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable file"
echo "$("$PORTCULLIS_BIN" --version) ($PORTCULLIS_BIN)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

declare -a SUMMARY=()
FAILED=0
record() { # record STATUS LABEL
  SUMMARY+=("$(printf '%-4s %s' "$1" "$2")")
  if [ "$1" = FAIL ]; then FAILED=1; fi
}

# --- Istio schemas ------------------------------------------------------------------------
step "Istio schemas: $ISTIO_MODELS $ISTIO_MODELS_VERSION (PyPI) -> istio/schemas/extract.py"
istio_schemas "$WORK/schemas" || record FAIL "istio/schemas/extract.py (see above)"

# --- collect + cross-checks ------------------------------------------------------------
step "collect manifests and cross-check them (validate.py)"
if "$PY" "$HERE/validate.py" prepare "$ISTIO_DIR" "$WORK"; then
  record ok "cross-checks: references, ports, selectors, hardening, mesh wiring"
else
  record FAIL "cross-checks (see FAIL lines above)"
fi
if [ -f "$WORK/renderer" ]; then
  echo "kustomize rendering: $(cat "$WORK/renderer")"
fi

# --- 1. Kubernetes objects ----------------------------------------------------------------
shopt -s nullglob
k8s_files=("$WORK"/k8s/*.json)
k_args=()
for v in $K8S_VERSIONS; do k_args+=(-k "$v"); done
step "1. Kubernetes objects: kubernetes-validate --strict, Kubernetes ${K8S_VERSIONS// /, }"
if [ ${#k8s_files[@]} -eq 0 ]; then
  record FAIL "kubernetes-validate: no Kubernetes objects found"
else
  kv_rc=0
  kv_out=$("$VENV/bin/kubernetes-validate" --strict --quiet "${k_args[@]}" "${k8s_files[@]}" 2>&1) || kv_rc=$?
  [ -z "$kv_out" ] || printf '%s
' "$kv_out"
  if [ "$kv_rc" -ne 0 ]; then
    record FAIL "kubernetes-validate (Kubernetes ${K8S_VERSIONS// /, })"
  elif grep -q '^WARN' <<<"$kv_out"; then
    # kubernetes-validate only warns (exit 0) when it has no schema for a kind.
    record FAIL "kubernetes-validate: an object has no Kubernetes schema (WARN above)"
  else
    echo "${#k8s_files[@]} objects passed"
    record ok "kubernetes-validate: ${#k8s_files[@]} objects x Kubernetes ${K8S_VERSIONS// /, } (strict)"
  fi
fi

# --- 2. Istio objects and embedded Istio config ------------------------------------------------
step "2. Istio objects and mesh/proxy config: check-jsonschema against the schemas built above"
n_schema=0
for dir in "$WORK"/schema/*/; do
  schema=$(basename "$dir")
  files=("$dir"*.json)
  n_schema=$((n_schema + ${#files[@]}))
  if [ ! -f "$WORK/schemas/$schema" ]; then
    record "$MISSING_SCHEMA" "check-jsonschema: ${#files[@]} x $schema (no schema: ${models_error:-extract.py failed})"
    continue
  fi
  if "$VENV/bin/check-jsonschema" --schemafile "$WORK/schemas/$schema" "${files[@]}"; then
    record ok "check-jsonschema: ${#files[@]} x $schema"
  else
    record FAIL "check-jsonschema: $schema"
  fi
done
[ "$n_schema" -gt 0 ] || record FAIL "check-jsonschema: no Istio objects found"

# --- 3. portcullis config ------------------------------------------------------------------
step "3. portcullis config from the ConfigMap: portcullis check-config"
configs=("$WORK"/portcullis/*.yaml)
[ ${#configs[@]} -gt 0 ] || record FAIL "check-config: no portcullis.yaml found in a ConfigMap"
for cfg in "${configs[@]}"; do
  mapfile -t deploy_env < "${cfg%.yaml}.env"
  label="check-config: $(basename "$cfg" .yaml | sed 's/^[0-9]*_//')"
  if [ ${#deploy_env[@]} -gt 0 ]; then label+=" with ${deploy_env[*]}"; fi
  # A clean environment, so the caller's own PORTCULLIS_* / OIDC_PROXY_HEADER cannot leak in.
  if env -i PATH="$PATH" "${deploy_env[@]}" "$PORTCULLIS_BIN" check-config --config "$cfg"; then
    record ok "$label"
  else
    record FAIL "$label"
  fi
done

# --- summary --------------------------------------------------------------------------
step "summary"
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
  echo "istio/validate.sh: FAILED"
  exit 1
fi
skipped=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^SKIP' || true)
if [ "$skipped" -gt 0 ]; then
  echo "istio/validate.sh: all checks passed, $skipped skipped (SKIP above)"
else
  echo "istio/validate.sh: all checks passed"
fi
