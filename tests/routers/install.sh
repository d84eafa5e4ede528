#!/usr/bin/env bash
# Installs the real upstream routers that tests/path_differential.rs puts
# behind Envoy + portcullis, and prints `export` lines for their locations:
#   eval "$(./tests/routers/install.sh)"
# - nginx: the Debian package (apt-get) when no `nginx` is on PATH;
# - Express: `npm ci` in tests/routers (pinned by package-lock.json);
# - Starlette + uvicorn: pinned PyPI versions into <repo>/.venv.
# Each step is skipped when already installed. Progress goes to stderr.
set -euo pipefail
STARLETTE_VERSION=1.10.0
UVICORN_VERSION=0.54.0
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

log() { printf '%s\n' "$*" >&2; }

# --- nginx -----------------------------------------------------------------------
nginx_bin=$(command -v nginx || true)
[ -n "$nginx_bin" ] || { [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx; } || true
if [ -z "$nginx_bin" ]; then
  log "installing nginx (apt-get)"
  # The package's postinst would start the system nginx on port 80 (all
  # interfaces). The test runs its own loopback instance only, so service
  # starts are refused for the duration of the install, as Debian's
  # policy-rc.d interface allows; an existing policy is left as it is.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends nginx >&2
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
fi
[ -x "$nginx_bin" ] || { log "error: nginx not found after install"; exit 1; }

# --- Express (npm ci, pinned by the lock file) -------------------------------------
command -v node >/dev/null || { log "error: node not found (Node 20+ is needed)"; exit 1; }
lock_sum=$(cat tests/routers/package.json tests/routers/package-lock.json | sha256sum | cut -d' ' -f1)
stamp=tests/routers/node_modules/.portcullis-installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  log "npm ci in tests/routers"
  (cd tests/routers && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$lock_sum" > "$stamp"
fi

# --- Starlette + uvicorn in .venv ---------------------------------------------------
./envoy/venv.sh >&2
want="starlette==${STARLETTE_VERSION} uvicorn==${UVICORN_VERSION}"
have=$(.venv/bin/python -c 'from importlib.metadata import version as v
print("starlette==" + v("starlette"), "uvicorn==" + v("uvicorn"))' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  log "installing ${want} into .venv"
  # shellcheck disable=SC2086 # two requirement words
  .venv/bin/python -m pip install --quiet --disable-pip-version-check ${want} >&2
fi
.venv/bin/python -c 'import starlette, uvicorn' ||
  { log "error: starlette/uvicorn do not import from .venv/bin/python"; exit 1; }

printf 'export NGINX_BIN=%q\n' "$nginx_bin"
printf 'export ROUTERS_PYTHON=%q\n' "$PWD/.venv/bin/python"
