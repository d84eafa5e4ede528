#!/usr/bin/env bash
# Installs Dex (the OIDC provider of tests/dex.rs) from the Go module proxy
# into .tools/bin/dex and prints that path on stdout (build output goes to
# stderr). Skipped when .tools/bin/dex was built from the pinned version.
#
# The version is pinned by tests/dex/go.mod + go.sum (`tool
# github.com/dexidp/dex/cmd/dex`): v0.0.0-20260303133905-11d2eeb52b42 is the
# commit of Dex's newest tag, v2.45.1, as a pseudo-version, because
#   - Dex's tags (v2.x) are not versions of the module github.com/dexidp/dex
#     (no /v2 suffix), so `go install github.com/dexidp/dex/cmd/dex@v2.45.1`
#     cannot resolve (the proxy's "latest" is v2.13.0+incompatible, 2018);
#   - `go install …@version` refuses Dex's go.mod, which has a `replace`
#     directive (api/v2 => ./api/v2); building it as a tool of this small
#     module is the supported way around (the replace is ignored and
#     github.com/dexidp/dex/api/v2 v2.4.0 comes from the proxy);
#   - Dex's master (the client_credentials grant, RP-initiated logout) needs
#     an api/v2 newer than any the proxy serves, so it does not build this
#     way (tried: master of 2026-08-06, "undefined: api.UserIdentity").
# To move to another version: cd tests/dex && go get -tool
# github.com/dexidp/dex/cmd/dex@<version>.
#
# CGO is off: Dex's sqlite storage needs it, the tests use `storage: memory`.
# Go 1.25 or newer is needed (go.mod); with an older Go, export
# GOTOOLCHAIN=go1.27.3 first. The first build takes about 8 minutes on 2
# cores; later ones reuse Go's build cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=$ROOT/.tools/bin
BIN=$BIN_DIR/dex
STAMP=$BIN_DIR/dex.version

command -v go >/dev/null || { echo "error: go not found (Go 1.25+ builds Dex)" >&2; exit 1; }

version=$(cd "$ROOT/tests/dex" && go list -m -f '{{.Version}}' github.com/dexidp/dex)
want="$version $(go env GOVERSION)"
if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "dex $version already in $BIN" >&2
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN_DIR"
echo "building dex $version with $(go env GOVERSION) (CGO off; a few minutes the first time)" >&2
start=$(date +%s)
(
  cd "$ROOT/tests/dex"
  CGO_ENABLED=0 GOBIN=$BIN_DIR go install \
    -ldflags "-X main.version=$version" github.com/dexidp/dex/cmd/dex
) >&2
echo "$want" > "$STAMP"
echo "dex $version built in $(($(date +%s) - start)) s" >&2
echo "$BIN"
