#!/usr/bin/env bash
# Installs the Tenuo Python SDK (PyPI `tenuo`, pinned) into <repo>/.venv
# (once) and prints the path of that venv's python. Progress goes to stderr.
#   TENUO_PYTHON=$(./tests/tenuo/install.sh)
# The integration tests run tests/tenuo/mint.py with it to mint warrants and
# proof-of-possession signatures the way a real Tenuo client does.
set -euo pipefail
TENUO_SDK_VERSION=${TENUO_SDK_VERSION:-0.3.3}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [ ! -x .venv/bin/python ]; then
  PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
  [ -n "$PYTHON" ] || { echo "error: python3 not found" >&2; exit 1; }
  if ! "$PYTHON" -m venv .venv >&2; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "python venv support missing; installing python3-venv" >&2
      apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
      "$PYTHON" -m venv .venv >&2
    else
      echo "error: cannot create .venv: install python3-venv" >&2
      exit 1
    fi
  fi
fi
installed=$(.venv/bin/python -m pip show tenuo 2>/dev/null | awk '/^Version:/ {print $2}' || true)
if [ "$installed" != "$TENUO_SDK_VERSION" ]; then
  echo "installing tenuo==${TENUO_SDK_VERSION} into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "tenuo==${TENUO_SDK_VERSION}" >&2
fi
.venv/bin/python -c 'import tenuo, tenuo_core' ||
  { echo "error: tenuo SDK does not import from .venv/bin/python" >&2; exit 1; }
echo "$PWD/.venv/bin/python"
