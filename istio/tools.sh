# shellcheck shell=bash
# Sourced by istio/validate.sh and charts/test.sh: the pinned validators in the
# repository's .venv and Istio's CRD schemas, one copy for both. Expects VENV (the
# .venv path) and WORK (a scratch directory); defines PY, MISSING_SCHEMA and models_error.

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
# Istio's CRD definitions, as pydantic models generated from Istio 1.24.2's
# crd-all.gen.yaml. Only downloaded and read as data (never installed or imported). To move
# to another version, see istio/schemas/README.md.
ISTIO_MODELS=cloudcoil-models-istio
ISTIO_MODELS_VERSION=1.24.2.1
ISTIO_MODELS_SHA256=c9cfa7deae64861c6e002ddd3208c5bd4d1dd905eaf62171c1f5f03d2161cae1
ISTIO_MODELS_WHEEL=cloudcoil_models_istio-$ISTIO_MODELS_VERSION-py3-none-any.whl
ISTIO_TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# kubernetes-validate and check-jsonschema at the pins, installed into .venv when missing
# or at another version; sets PY.
validator_tools() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  if ! "$PY" - "$KUBERNETES_VALIDATE_VERSION" "$CHECK_JSONSCHEMA_VERSION" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    ok = (version("kubernetes-validate"), version("check-jsonschema")) == tuple(sys.argv[1:3])
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PYEOF
  then
    echo "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION into .venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
  fi
  echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, check-jsonschema $CHECK_JSONSCHEMA_VERSION (.venv)"
}

# The JSON schemas of Istio's CRDs (and the hand-written ones) into OUT, by
# istio/schemas/extract.py from the pinned models wheel (downloaded into
# .venv/istio-models once, its sha256 checked on every run). Sets models_error (empty when
# the wheel was used) and MISSING_SCHEMA: what a check without its schema records — FAIL,
# except SKIP when the download failed outside CI (offline); CI reaches the registry.
# Returns extract.py's status.
istio_schemas() { # OUT
  local wheel="$VENV/istio-models/$ISTIO_MODELS_WHEEL" got
  models_error=""
  if [ ! -f "$wheel" ]; then
    mkdir -p "$WORK/download" "$(dirname "$wheel")"
    if ! "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$WORK/download" "$ISTIO_MODELS==$ISTIO_MODELS_VERSION"; then
      models_error="cannot download $ISTIO_MODELS==$ISTIO_MODELS_VERSION from PyPI (pip's message above)"
    elif [ ! -f "$WORK/download/$ISTIO_MODELS_WHEEL" ]; then
      models_error="pip did not download $ISTIO_MODELS_WHEEL"
    else
      mv "$WORK/download/$ISTIO_MODELS_WHEEL" "$wheel"
    fi
  fi
  # Checked on every run, the cached copy too: the schemas are only as good as this file.
  if [ -z "$models_error" ]; then
    got=$(sha256sum "$wheel" | cut -d' ' -f1)
    if [ "$got" = "$ISTIO_MODELS_SHA256" ]; then
      echo "$ISTIO_MODELS_WHEEL sha256 $got (.venv/istio-models)"
    else
      rm -f "$wheel" # so that the next run downloads it again
      models_error="sha256 mismatch for $ISTIO_MODELS_WHEEL: expected $ISTIO_MODELS_SHA256, got $got; not used"
    fi
  fi
  MISSING_SCHEMA=FAIL
  if [ -n "$models_error" ]; then
    if [ "${CI:-}" != true ] && [[ $models_error == "cannot download"* ]]; then MISSING_SCHEMA=SKIP; fi
    if [ "$MISSING_SCHEMA" = SKIP ]; then
      printf 'warning: %s; the CRD schema checks are skipped (with CI=true they fail)\n' "$models_error" >&2
    else
      printf 'error: %s\n' "$models_error" >&2
    fi
  fi
  local args=(--out "$1")
  if [ -z "$models_error" ]; then args+=(--models-wheel "$wheel"); fi
  "$PY" "$ISTIO_TOOLS_DIR/schemas/extract.py" "${args[@]}"
}
