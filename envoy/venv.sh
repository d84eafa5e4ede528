#!/usr/bin/env bash
# Creates the repository's Python venv (<repo>/.venv) when it is missing,
# installing python3-venv first if this Debian lacks it and we are root.
# Shared by envoy/install.sh and tests/tenuo/install.sh. Progress to stderr.
#   ./envoy/venv.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x .venv/bin/python ] && exit 0
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
