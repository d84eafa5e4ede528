#!/usr/bin/env bash
# The Helm chart charts/portcullis, proven with the real helm (no cluster needed):
#
#   charts/test.sh            (from anywhere)
#
# 1. helm lint --strict, with the default values and each charts/portcullis/ci/*-values.yaml;
# 2. helm template + NOTES.txt (rendered through a copy of the chart, see below) for each of those
#    cases, each into its own namespace, then, as istio/validate.sh does for istio/ (charts/validate.py imports its
#    cross-checks): kubernetes-validate --strict (Kubernetes 1.32 and 1.37 schemas); the
#    AuthorizationPolicies and PeerAuthentication against Istio's CRD schemas, and the mesh
#    config and CUSTOM policy that NOTES.txt prints against the same schemas as istio/mesh and
#    istio/policies; ServiceMonitor/PrometheusRule against closed structural schemas, the rules
#    with `promtool check rules`; the hardening, probe, port, selector and shutdown cross-checks;
#    `portcullis check-config` on every rendered portcullis.yaml (secrets faked);
# 3. the values schema and guards: a misspelt key, `image.tag: latest`, a grace period below the
#    shutdown delay, a listener off `ports` all fail `helm template`; no PodDisruptionBudget with
#    one replica; a config change changes checksum/config; existingConfigMap replaces the chart's;
# 4. drift: the chart's defaults agree with istio/base: the Deployment's security context,
#    probes, ports, resources, strategy, grace period, sidecar settings; the Service ports; the
#    PodDisruptionBudget; the config's listeners, shutdown timing, headers and cache; the dashboard
#    and alert rules in the chart are byte-identical to deploy/observability/.
#
# Tools: helm, built by charts/install-helm.sh (`go install`, once, into <repo>/.tools/bin);
# kubernetes-validate, check-jsonschema and the Istio models wheel (sha256-checked) in
# <repo>/.venv by istio/tools.sh, the same functions istio/validate.sh uses;
# promtool from PATH or .venv/bin (quickstart/validate.sh puts it there): missing, its check is
# SKIP, or FAIL under CI=true. PORTCULLIS_BIN as in istio/validate.sh (default: cargo build).
# About 20 s once helm and the portcullis binary are built (the first helm build takes minutes).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CHART=$HERE/portcullis
VENV=$ROOT/.venv
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
declare -a SUMMARY=()
FAILED=0
record() { # record STATUS LABEL
  SUMMARY+=("$(printf '%-4s %s' "$1" "$2")")
  if [ "$1" = FAIL ]; then FAILED=1; fi
}

# --- tools ---------------------------------------------------------------------------
step "tools"
HELM=$(./charts/install-helm.sh) || die "helm could not be built (charts/install-helm.sh)"
echo "helm $("$HELM" version --template '{{.Version}} ({{.GoVersion}})')"
# helm keeps its caches and config under these; nothing of the caller's is read or written.
HELM_HOME=$(mktemp -d)
WORK=$(mktemp -d)
trap 'rm -rf "$HELM_HOME" "$WORK"' EXIT
export HELM_CACHE_HOME=$HELM_HOME/cache HELM_CONFIG_HOME=$HELM_HOME/config HELM_DATA_HOME=$HELM_HOME/data

# The validators and Istio's CRD schemas exactly as istio/validate.sh gets them.
# shellcheck source=istio/tools.sh
. istio/tools.sh
validator_tools
istio_schemas "$WORK/schemas" || die "istio/schemas/extract.py failed (see above)"

PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ] && [ -x "$VENV/bin/promtool" ]; then PROMTOOL=$VENV/bin/promtool; fi

DEFAULT_BIN=target/debug/portcullis
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$DEFAULT_BIN}
if [ "$PORTCULLIS_BIN" = "$DEFAULT_BIN" ]; then
  cargo build --quiet --bin portcullis
  PORTCULLIS_BIN=${CARGO_TARGET_DIR:-target}/debug/portcullis
fi
[ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable file"
echo "$("$PORTCULLIS_BIN" --version) ($PORTCULLIS_BIN)"

# --- 1. lint ---------------------------------------------------------------------------
CASES=(default)
for f in "$CHART"/ci/*-values.yaml; do CASES+=("$(basename "$f" -values.yaml)"); done
values_args() { [ "$1" = default ] || printf -- '--values\0%s\0' "$CHART/ci/$1-values.yaml"; }

step "1. helm lint --strict (${CASES[*]})"
for case in "${CASES[@]}"; do
  mapfile -d '' args < <(values_args "$case")
  if out=$("$HELM" lint --strict "$CHART" "${args[@]}" 2>&1); then
    record ok "helm lint --strict: $case"
  else
    printf '%s\n' "$out"
    record FAIL "helm lint --strict: $case"
  fi
done

# --- 2. render and validate ----------------------------------------------------------------
step "2. helm template + NOTES for each case, validated"
# NOTES.txt is rendered only by `helm install`, and even --dry-run=client asks a cluster for
# its version. So a copy of the chart renders it through the same engine and values as one
# more template (tpl of the file), shown with --show-only.
cp -r "$CHART" "$WORK/notes-chart"
cp "$CHART/templates/NOTES.txt" "$WORK/notes-chart/files/NOTES.txt"
cat >"$WORK/notes-chart/templates/zz-notes.yaml" <<'EOF'
notes: |
  {{- tpl (.Files.Get "files/NOTES.txt") . | nindent 2 }}
EOF
for case in "${CASES[@]}"; do
  mapfile -d '' args < <(values_args "$case")
  mkdir -p "$WORK/cases/$case"
  # Namespace per case: the cross-checks look up objects by namespace.
  if "$HELM" template portcullis "$CHART" --namespace "chart-$case" "${args[@]}" \
      >"$WORK/cases/$case/manifests.yaml" &&
    "$HELM" template portcullis "$WORK/notes-chart" --namespace "chart-$case" "${args[@]}" \
      --show-only templates/zz-notes.yaml | "$PY" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["notes"])' \
      >"$WORK/cases/$case/notes.txt"; then
    record ok "helm template + NOTES: $case ($(grep -c '^kind:' "$WORK/cases/$case/manifests.yaml") objects)"
  else
    record FAIL "helm template: $case"
  fi
done
if "$PY" "$HERE/validate.py" prepare "$WORK" "$WORK"/cases/*/; then
  record ok "cross-checks (istio/validate.py's, per case, + NOTES, monitoring, secrets)"
else
  record FAIL "cross-checks (see FAIL lines above)"
fi

shopt -s nullglob
k_args=()
for v in ${K8S_VERSIONS:-1.32.0 1.37.0}; do k_args+=(-k "$v"); done
k8s_files=("$WORK"/k8s/*.json)
kv_rc=0
kv_out=$("$VENV/bin/kubernetes-validate" --strict --quiet "${k_args[@]}" "${k8s_files[@]}" 2>&1) || kv_rc=$?
[ -z "$kv_out" ] || printf '%s\n' "$kv_out"
if [ ${#k8s_files[@]} -eq 0 ] || [ "$kv_rc" -ne 0 ] || grep -q '^WARN' <<<"$kv_out"; then
  record FAIL "kubernetes-validate --strict"
else
  record ok "kubernetes-validate --strict: ${#k8s_files[@]} objects x Kubernetes ${K8S_VERSIONS:-1.32.0 1.37.0}"
fi

for dir in "$WORK"/schema/*/; do
  schema=$(basename "$dir")
  files=("$dir"*.json)
  schemafile=$WORK/schemas/$schema
  status=FAIL
  if [ ! -f "$schemafile" ]; then
    record "$MISSING_SCHEMA" "check-jsonschema: ${#files[@]} x $schema (no schema)"
    continue
  fi
  if "$VENV/bin/check-jsonschema" --schemafile "$schemafile" "${files[@]}"; then status=ok; fi
  record "$status" "check-jsonschema: ${#files[@]} x $schema"
done

rules=("$WORK"/promrules/*.yaml)
if [ ${#rules[@]} -eq 0 ]; then
  record FAIL "promtool: no PrometheusRule rendered"
elif [ -z "$PROMTOOL" ]; then
  record "$([ "${CI:-}" = true ] && echo FAIL || echo SKIP)" "promtool check rules (no promtool; quickstart/validate.sh installs one)"
elif "$PROMTOOL" check rules "${rules[@]}" >/dev/null; then
  record ok "promtool check rules: ${#rules[@]} PrometheusRule"
else
  "$PROMTOOL" check rules "${rules[@]}" || true
  record FAIL "promtool check rules"
fi

for cfg in "$WORK"/portcullis/*.yaml; do
  mapfile -t env < "${cfg%.yaml}.env"
  label="check-config: $(basename "$cfg" .yaml | sed 's/^[0-9]*_//; s/_manifests.yaml__ConfigMap-/: /')"
  if env -i PATH="$PATH" "${env[@]}" "$PORTCULLIS_BIN" check-config --config "$cfg" >/dev/null; then
    record ok "$label"
  else
    env -i PATH="$PATH" "${env[@]}" "$PORTCULLIS_BIN" check-config --config "$cfg" || true
    record FAIL "$label"
  fi
done

# --- 3. schema and guards ------------------------------------------------------------------
step "3. values that must fail helm template; PDB, checksum, existingConfigMap"
must_fail() { # must_fail LABEL EXPECTED-MESSAGE-PART HELM-ARGS...
  local label=$1 want=$2 out
  shift 2
  if out=$("$HELM" template portcullis "$CHART" "$@" 2>&1); then
    record FAIL "refused: $label (helm template succeeded)"
  elif grep -qF -- "$want" <<<"$out"; then
    record ok "refused: $label"
  else
    printf '%s\n' "$out" | tail -n 5
    record FAIL "refused: $label (not with \"$want\")"
  fi
}
must_fail "misspelt top-level key replicaCont" "replicaCont" --set replicaCont=3
must_fail "misspelt nested key istio.authorizationPolicy.enabeld" "enabeld" --set istio.authorizationPolicy.enabeld=true
must_fail "image.tag latest" "/image/tag" --set image.tag=latest
must_fail "a secret value instead of a Secret (sessionKey)" "sessionKey" --set sessionKey=abc
must_fail "grace period not above the shutdown delay + grace" "terminationGracePeriodSeconds" \
  --set terminationGracePeriodSeconds=15
must_fail "config.listen on another port than ports.grpc" "must use port" --set config.listen=0.0.0.0:8080
must_fail "secretEnv without existingSecret" "secretEnv needs existingSecret" \
  --set 'secretEnv[0].name=X' --set 'secretEnv[0].key=x'
pdbs() { "$HELM" template portcullis "$CHART" "$@" | grep -c '^kind: PodDisruptionBudget$' || true; }
n1=$(pdbs --set replicaCount=1)
n2=$(pdbs)
n3=$(pdbs --set replicaCount=1 --set autoscaling.enabled=true)
if [ "$n1" = 0 ] && [ "$n2" = 1 ] && [ "$n3" = 1 ]; then
  record ok "PodDisruptionBudget: none with replicaCount=1, one with 2 or an HPA floor of 2"
else
  record FAIL "PodDisruptionBudget: replicaCount=1 -> $n1 (want 0), default -> $n2 (want 1), HPA -> $n3 (want 1)"
fi

checksum() { "$HELM" template portcullis "$CHART" "$@" | sed -n 's/^ *checksum\/config: //p'; }
c1=$(checksum)
c2=$(checksum --set config.debug=true)
if [ -n "$c1" ] && [ -n "$c2" ] && [ "$c1" != "$c2" ]; then
  record ok "checksum/config: a config change changes the pod template (rolls the pods)"
else
  record FAIL "checksum/config: '$c1' vs '$c2' (want two different checksums)"
fi
ecm=$("$HELM" template portcullis "$CHART" --set existingConfigMap=my-config)
if ! grep -q '^kind: ConfigMap$' <<<"$ecm" && ! grep -q 'checksum/config' <<<"$ecm" &&
  grep -q '^ *name: my-config$' <<<"$ecm"; then
  record ok "existingConfigMap: mounted, no ConfigMap or checksum of the chart's own"
else
  record FAIL "existingConfigMap: expected the volume to name my-config and no chart ConfigMap"
fi

# --- 4. drift ------------------------------------------------------------------------------
step "4. drift: chart defaults vs istio/base, chart files vs deploy/observability"
if "$PY" "$HERE/validate.py" drift "$WORK/cases/default/manifests.yaml" istio/base; then
  record ok "defaults agree with istio/base (Deployment, Service, PDB, config timing/listeners/headers/cache)"
else
  record FAIL "defaults differ from istio/base (above)"
fi
for f in portcullis-dashboard.json portcullis-alerts.yaml; do
  if cmp -s "$CHART/files/$f" "deploy/observability/$f"; then
    record ok "charts/portcullis/files/$f = deploy/observability/$f"
  else
    record FAIL "charts/portcullis/files/$f differs from deploy/observability/$f (copy it over)"
  fi
done

# --- summary --------------------------------------------------------------------------------
step "summary"
printf '%s\n' "${SUMMARY[@]}"
passed=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^ok' || true)
failed=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^FAIL' || true)
skipped=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^SKIP' || true)
echo "charts: $passed passed, $failed failed, $skipped skipped"
[ "$FAILED" -eq 0 ]
