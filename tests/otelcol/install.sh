#!/usr/bin/env bash
# Builds the OpenTelemetry Collector that tests/tracing.rs sends spans to
# (main.go: the collector's OTLP receiver + the contrib file exporter, at
# the versions go.mod and go.sum pin: collector v0.161.0) into
# .tools/bin/otelcol and prints that path on stdout (build output goes to
# stderr). Skipped when .tools/bin/otelcol was built from this go.mod and
# main.go with this Go.
#
# v0.161.0: the newest release at which the contrib file exporter passes
# `go get` and `go mod tidy` on the Go module proxy here. To move: edit the
# versions with `go get …@vX` in this folder and `go mod tidy`.
# The first build takes about 1-2 minutes on 2 cores; later ones reuse
# Go's build cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SRC=$ROOT/tests/otelcol
BIN_DIR=$ROOT/.tools/bin
BIN=$BIN_DIR/otelcol
STAMP=$BIN_DIR/otelcol.version

command -v go >/dev/null || { echo "error: go not found (Go 1.26+ builds the collector)" >&2; exit 1; }

want="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "otelcol already in $BIN" >&2
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN_DIR"
echo "building the OpenTelemetry Collector (OTLP receiver, file exporter) with $(go env GOVERSION)" >&2
start=$(date +%s)
(cd "$SRC" && CGO_ENABLED=0 go build -trimpath -o "$BIN" .) >&2
echo "$want" > "$STAMP"
echo "otelcol built in $(($(date +%s) - start)) s" >&2
echo "$BIN"
