#!/usr/bin/env bash
# Installs the Tenuo Python SDK (PyPI `tenuo`, pinned) into <repo>/.venv
# (once) and prints the path of that venv's python. Progress goes to stderr.
#   TENUO_PYTHON=$(./tests/tenuo/install.sh)
# The integration tests run tests/tenuo/mint.py with it to mint warrants and
# proof-of-possession signatures the way a real Tenuo client does.
set -euo pipefail
TENUO_SDK_VERSION=${TENUO_SDK_VERSION:-0.3.3}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

./envoy/venv.sh
installed=$(.venv/bin/python -m pip show tenuo 2>/dev/null | awk '/^Version:/ {print $2}' || true)
if [ "$installed" != "$TENUO_SDK_VERSION" ]; then
  echo "installing tenuo==${TENUO_SDK_VERSION} into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "tenuo==${TENUO_SDK_VERSION}" >&2
fi
.venv/bin/python -c 'import tenuo, tenuo_core' ||
  { echo "error: tenuo SDK does not import from .venv/bin/python" >&2; exit 1; }
echo "$PWD/.venv/bin/python"
